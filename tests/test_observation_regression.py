"""Regression: individual curves from observations along a covariate (R MegaLMM's
regression_model and bs_binomial_model, with R's bs_diff as differences=True).

Inputs, the conditionals against slow NumPy references on the same random numbers,
threads, exact resume, response scale and predictions of new lines, then recovery on
simulations made for them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from formulaic import model_matrix
from polyagamma import random_polyagamma

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.errors import InputError, InputTypeError, LabelError
from pymegalmm.linalg import standard_normal
from pymegalmm.observation import Regression
from pymegalmm.observation.regression import (
    CurveData,
    binomial_curve_update,
    gaussian_curve_update,
    simulate_curves,
)

BASIS = "bs(time, df=4)"  # with the intercept: 5 coefficients per individual


def growth(n, seed, n_obs=(3, 13), precision=4.0, scale=1.0):
    """``n`` individuals with 5 curve coefficients from a 2-factor model (their G known),
    each observed 3-12 times (unequal numbers) at random times in [0, 10]."""
    sim = datasets.simulate_factor_data(n=n, t=5, k_true=2, n_markers=300 if n < 100 else 2000,
                                        seed=seed)
    coefs = sim.Y * scale
    rng = np.random.default_rng(seed + 100)
    counts = rng.integers(*n_obs, size=n)
    obs = pd.DataFrame({"ID": np.repeat(sim.data.index.to_numpy(), counts)})
    obs["time"] = rng.uniform(0, 10, len(obs))
    obs["n"] = rng.integers(10, 40, len(obs))
    if precision is None:
        obs = simulate_curves(coefs, obs, "~ " + BASIS, "ID", rng, trials="n",
                              response="alive")
    else:
        obs = simulate_curves(coefs, obs, "~ " + BASIS, "ID", rng, precision=precision,
                              response="height")
    return sim, coefs, obs


def fit(sim, obs, n_iter=8, threads=None, run_dir=None, burn=2, n_factors=2, **kw):
    model_kw = {k: kw.pop(k) for k in list(kw) if k in ("record", "data")}
    data = model_kw.pop("data", sim.data)
    m = MegaLMM(None, sim.formula, data=data, relmat={"ID": sim.K}, n_factors=n_factors,
                h2_divisions=5 if n_iter < 50 else 10, burn=burn, seed=7, verbose=False,
                observation=Regression(obs, **kw), run_dir=run_dir,
                control=Control(n_threads=threads), **model_kw)
    m.sample(n_iter, progress=False)
    return m


@pytest.fixture(scope="module")
def small():
    return growth(40, 3)


def true_curves(coefs, obs, rows, at):
    X = model_matrix(BASIS, obs[["time"]]).model_spec.get_model_matrix(at).to_numpy()
    return coefs.loc[list(rows)].to_numpy() @ X.T


# ----------------------------------------------------------------------------- inputs

def test_inputs_are_checked(small, tmp_path):
    sim, _, obs = small
    f = "height ~ " + BASIS
    with pytest.raises(InputTypeError, match="observations must be a pandas DataFrame"):
        Regression(obs.to_numpy(), f, id="ID")
    with pytest.raises(LabelError, match="id must name a column of observations"):
        Regression(obs, f, id="line")
    with pytest.raises(InputError, match="family must be"):
        Regression(obs, f, id="ID", family="poisson")
    with pytest.raises(LabelError, match="trials must name the column"):
        Regression(obs, "alive ~ " + BASIS, id="ID", family="binomial")
    with pytest.raises(InputError, match="trials only applies"):
        Regression(obs, f, id="ID", trials="n")
    with pytest.raises(InputError, match="two-sided formula"):
        Regression(obs, "~ " + BASIS, id="ID")
    with pytest.raises(LabelError, match=r"uses \['weight'\] which are not columns"):
        Regression(obs, "weight ~ " + BASIS, id="ID")
    with pytest.raises(InputError, match="formulaic cannot build"):
        Regression(obs, "height ~ bs(age, df=4)", id="ID")
    with pytest.raises(InputError, match="formulaic cannot build"):
        Regression(obs, "height ~ nosuchfunction(time)", id="ID")
    text = obs.assign(height=obs["height"].astype(str))
    with pytest.raises(InputTypeError, match="response 'height' of observations must be "
                                             "numeric"):
        Regression(text, f, id="ID")
    hole = obs.copy()
    hole.loc[3, "time"] = np.nan
    with pytest.raises(InputError, match=r"missing values in \['time'\]"):
        Regression(hole, f, id="ID")
    over = obs.assign(alive=obs["n"] + 1)
    with pytest.raises(InputError, match="successes exceed trials"):
        Regression(over, "alive ~ " + BASIS, id="ID", family="binomial", trials="n")
    with pytest.raises(InputError, match="differences=True needs at least two"):
        Regression(obs, "height ~ time", id="ID", differences=True)
    stranger = pd.concat([obs, obs.iloc[:2].assign(ID="nobody")], ignore_index=True)
    with pytest.raises(LabelError, match=r"1 id\(s\) in column 'ID' are not individuals of "
                                         r"data, e.g. \['nobody'\]"):
        fit(sim, stranger, formula=f, id="ID", run_dir=tmp_path / "a")
    with pytest.raises(InputError, match="Y must be None with Regression"):
        MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, verbose=False,
                observation=Regression(obs, f, id="ID"), run_dir=tmp_path / "b")


def test_latent_traits_names_and_data_matched_by_index_or_column(small):
    sim, _, obs = small
    plain = Regression(obs, "height ~ " + BASIS, id="ID")
    assert plain.latent_traits == ["Intercept"] + [f"{BASIS}[{j}]" for j in range(1, 5)]
    diff = Regression(obs, "height ~ " + BASIS, id="ID", differences=True)
    assert diff.latent_traits == ["Intercept", "level", "diff1", "diff2", "diff3"]
    two = Regression(obs.assign(width=obs["height"] * 2), "height + width ~ " + BASIS, id="ID")
    assert two.latent_traits[:2] == ["height::Intercept", f"height::{BASIS}[1]"]
    assert two.latent_traits[5] == "width::Intercept"
    by_index = plain.latent_frame(None, sim.data)
    by_column = plain.latent_frame(None, sim.data.reset_index(drop=True))  # column ID
    np.testing.assert_array_equal(by_index.to_numpy(), by_column.to_numpy())


# ----------------------------------------------------------------------------- numerics

def curve_data(rng, n=5, k=2, R=2, m=17):
    row = np.sort(rng.integers(0, n - 1, size=m))  # the last individual has no observation
    X = rng.standard_normal((R, m, k))
    y = rng.standard_normal((m, R))
    observed = rng.random((m, R)) > 0.2
    y = np.where(observed, y, 0.0)
    inc = scipy.sparse.csr_matrix((np.ones(m), (row, np.arange(m))), shape=(n, m))
    return CurveData(row, X, y, observed, None, np.ones(R), inc, k)


def test_gaussian_update_matches_a_slow_reference_on_the_same_numbers():
    rng = np.random.default_rng(4)
    d = curve_data(rng)
    n, k, R = 5, 2, 2
    tau, mean, var = np.array([1.5, 0.7]), rng.standard_normal((n, R * k)), rng.uniform(
        0.3, 2, R * k)
    out, tau_new = gaussian_curve_update(d, tau, mean, var, 2.0, 0.5, np.random.default_rng(9))
    ref_rng = np.random.default_rng(9)
    z = standard_normal(ref_rng, n, R * k)
    ref = np.empty((n, R * k))
    for i in range(n):
        for r in range(R):
            c = slice(r * k, (r + 1) * k)
            P, b = np.diag(1 / var[c]), mean[i, c] / var[c]
            for o in range(d.row.size):
                if d.row[o] == i and d.observed[o, r]:
                    P = P + tau[r] * np.outer(d.X[r, o], d.X[r, o])
                    b = b + tau[r] * d.X[r, o] * d.y[o, r]
            L = np.linalg.cholesky(P)
            ref[i, c] = np.linalg.solve(P, b) + np.linalg.solve(L.T, z[i, c])
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    # the individual without observations is drawn from the factor model's conditional
    np.testing.assert_allclose(out[4], mean[4] + np.sqrt(var) * z[4], rtol=1e-12)
    shapes, rates = [], []
    for r in range(R):
        c = slice(r * k, (r + 1) * k)
        ss = sum((d.y[o, r] - d.X[r, o] @ ref[d.row[o], c]) ** 2
                 for o in range(d.row.size) if d.observed[o, r])
        shapes.append(2.0 + 0.5 * d.observed[:, r].sum())
        rates.append(0.5 + 0.5 * ss)
    np.testing.assert_allclose(tau_new, ref_rng.gamma(shapes, 1 / np.array(rates)), rtol=1e-10)


def test_binomial_update_matches_a_slow_reference_on_the_same_numbers():
    rng = np.random.default_rng(5)
    base = curve_data(rng, R=1)
    trials = rng.integers(0, 6, size=base.row.size).astype(float)  # some 0: no data
    observed = base.observed & (trials > 0)[:, None]
    y = np.where(observed, rng.binomial(trials.astype(int), 0.4)[:, None], 0.0)
    d = CurveData(base.row, base.X, y, observed, trials, np.ones(1), base.incidence, 2)
    n, k = 5, 2
    eta, mean, var = rng.standard_normal((n, k)), rng.standard_normal((n, k)), rng.uniform(
        0.3, 2, k)
    out = binomial_curve_update(d, eta, mean, var, np.random.default_rng(3))
    ref_rng = np.random.default_rng(3)
    obs = observed[:, 0]
    psi = np.array([base.X[0, o] @ eta[base.row[o]] for o in range(base.row.size)])
    omega = np.zeros(base.row.size)
    omega[obs] = random_polyagamma(trials[obs], psi[obs], random_state=ref_rng)
    z = standard_normal(ref_rng, n, k)
    for i in range(n):
        P, b = np.diag(1 / var), mean[i] / var
        for o in np.flatnonzero((base.row == i) & obs):
            P = P + omega[o] * np.outer(base.X[0, o], base.X[0, o])
            b = b + (y[o, 0] - trials[o] / 2) * base.X[0, o]
        L = np.linalg.cholesky(P)
        np.testing.assert_allclose(out[i], np.linalg.solve(P, b) + np.linalg.solve(L.T, z[i]),
                                   rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_draws_do_not_depend_on_the_number_of_threads(family, tmp_path):
    sim, _, obs = growth(40, 3, precision=None if family == "binomial" else 4.0)
    kw = ({"formula": "alive ~ " + BASIS, "family": "binomial", "trials": "n"}
          if family == "binomial" else {"formula": "height ~ " + BASIS})
    a = fit(sim, obs, threads=1, run_dir=tmp_path / "a", id="ID", record=["Eta", "Lambda"],
            **kw)
    b = fit(sim, obs, threads=2, run_dir=tmp_path / "b", id="ID", record=["Eta", "Lambda"],
            **kw)
    assert a._kernel_threads == 1 and b._kernel_threads == 2
    np.testing.assert_array_equal(a.posterior["Eta"].values, b.posterior["Eta"].values)
    for key, value in a.states[0].observation.items():
        np.testing.assert_array_equal(value, b.states[0].observation[key])


def test_resumes_exactly(small, tmp_path):
    sim, _, obs = small
    kw = {"formula": "height ~ " + BASIS, "id": "ID"}
    whole = fit(sim, obs, n_iter=12, run_dir=tmp_path / "whole", **kw)
    whole.save_posterior_chunk()
    part = fit(sim, obs, n_iter=5, run_dir=tmp_path / "part", **kw)
    part.save_posterior_chunk()
    del part
    again = MegaLMM.resume(tmp_path / "part", verbose=False)
    again.sample(7, progress=False)
    again.save_posterior_chunk()
    np.testing.assert_array_equal(again.states[0].Eta, whole.states[0].Eta)
    saved = again.load_posterior(lazy=False)["observation_precision"]
    assert saved.dims == ("chain", "draw", "response")
    np.testing.assert_array_equal(saved.values,
                                  whole.load_posterior(lazy=False)["observation_precision"].values)


def test_individuals_without_observations_and_curves_of_new_lines(small, tmp_path):
    """Ten individuals of data have no observation: dropped from the fit (a warning), their
    curves predicted from K through new_data, as any line's."""
    sim, coefs, obs = small
    absent = list(sim.data.index[-10:])
    kept = obs[~obs["ID"].isin(absent)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = fit(sim, kept, run_dir=tmp_path / "c", formula="height ~ " + BASIS, id="ID",
                record=["B1", "F", "Lambda", "U_R", "U_F", "Eta",
                        "observation_precision"])
    assert any("dropped 10 of 40 rows" in str(w.message) for w in caught)
    assert m.design.n == 30 and absent[0] not in m.coords.row
    at = pd.DataFrame({"time": [1.0, 5.0, 9.0]})
    curves = m.predict(sim.data.loc[absent], scale="response", at=at)
    assert curves.shape == (10, 3) and list(curves.columns) == [1.0, 5.0, 9.0]
    # linear in the coefficients: the mean curve is the mean coefficients' curve
    coef_mean = m.predict(sim.data.loc[absent])
    X = m.observation.design_at(at)
    np.testing.assert_allclose(curves.to_numpy(), coef_mean.to_numpy() @ X.T, rtol=1e-10)
    fitted = m.predict(scale="response")  # default points: 100 over the times' range
    assert kept["time"].nunique() > 200 and fitted.shape == (30, 100)
    assert fitted.columns[0] == kept["time"].min() and fitted.columns[-1] == kept["time"].max()
    with pytest.raises(InputError, match="at only applies with scale='response'"):
        m.predict(at=at)
    with pytest.raises(LabelError, match=r"at lacks the covariate column\(s\) \['time'\]"):
        m.predict(scale="response", at=pd.DataFrame({"age": [1.0]}))
    assert "observation_precision" in m.posterior


# ----------------------------------------------------------------------------- recovery

def test_gaussian_curves_and_genetic_covariance_are_recovered(tmp_path):
    """200 individuals, 3-12 observations each (noise SD 0.5 against curves of SD ~1.3)."""
    sim, coefs, obs = growth(200, 4)
    m = fit(sim, obs, n_iter=400, burn=100, n_factors=4, run_dir=tmp_path / "g",
            formula="height ~ " + BASIS, id="ID")
    at = pd.DataFrame({"time": np.linspace(0.5, 9.5, 10)})
    est = m.predict(scale="response", at=at).to_numpy()
    true = true_curves(coefs, obs, m.coords.row, at)
    r = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(est, true, strict=True)])
    rmse = np.sqrt(np.mean((est - true) ** 2))
    # measured: mean correlation 0.93, RMSE 0.46 against a curve SD of 1.3 (an individual
    # with 3 noisy points cannot pin down 5 coefficients: the factor model shrinks it)
    assert r > 0.88 and rmse < 0.55 * true.std()
    G = m.posterior["G"].mean(("chain", "draw")).values[0]
    # the coefficients' genetic covariance: 0.95 measured; 0.75 fails for a G that ignores
    # the coefficients' covariances (the true G's diagonal alone gives 0.58 here)
    assert np.corrcoef(G.ravel(), np.asarray(sim.truth["G"]).ravel())[0, 1] > 0.75
    # noise precision 4 on the user's scale: posterior mean 4.3 measured (1800 observations)
    assert 3.5 < float(m.posterior["observation_precision"].mean()) < 5.0

    # differences=True (R's bs_diff): same likelihood, other coefficients (and prior on
    # them); the fitted curves agree up to Monte Carlo error and that prior's effect
    d = fit(sim, obs, n_iter=400, burn=100, n_factors=4, run_dir=tmp_path / "d",
            formula="height ~ " + BASIS, id="ID", differences=True)
    est_d = d.predict(scale="response", at=at).to_numpy()
    assert list(d.coords.trait) == ["Intercept", "level", "diff1", "diff2", "diff3"]
    # measured: RMS difference 0.09 between the two fits' curves, vs 0.46 from the truth
    assert np.sqrt(np.mean((est_d - est) ** 2)) < 0.2 * true.std()


def test_binomial_curves_are_recovered(tmp_path):
    """200 individuals, 3-12 doses each with 10-39 trials, logit curves of SD ~0.9."""
    sim, coefs, obs = growth(200, 4, precision=None, scale=0.7)
    m = fit(sim, obs, n_iter=400, burn=100, n_factors=4, run_dir=tmp_path / "b",
            formula="alive ~ " + BASIS, id="ID", family="binomial", trials="n",
            record=["Eta", "B1", "F", "Lambda", "U_R"])
    assert "observation_precision" not in m.posterior
    eta = m.posterior["Eta"].mean(("chain", "draw")).to_numpy()
    truth = coefs.loc[list(m.coords.row)].to_numpy()
    # the intercept (the mean logit of the curve) is well determined: 0.94 measured
    assert np.corrcoef(eta[:, 0], truth[:, 0])[0, 1] > 0.85
    at = pd.DataFrame({"time": np.linspace(0.5, 9.5, 10)})
    true = true_curves(coefs, obs, m.coords.row, at)
    est = eta @ m.observation.design_at(at).T
    # logit curves: mean correlation 0.92 measured (0.85: a curve fitted from the
    # intercept alone, a flat line, would have no correlation)
    assert np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(est, true, strict=True)]) > 0.85
    prob = m.predict(scale="response", at=at)
    assert prob.to_numpy().min() > 0 and prob.to_numpy().max() < 1


def test_scale_response_false_puts_the_precision_prior_on_the_response_scale(small, tmp_path):
    """scale_response=False: the sampler sees the response on its own scale (response
    scale 1, the prior's mean precision as the starting value); the default divides by the
    response's SD (unchanged); a non-boolean is refused by name."""
    sim, _, obs = small
    scaled = fit(sim, obs, n_iter=1, formula="height ~ " + BASIS, id="ID",
                 run_dir=tmp_path / "a")
    raw = fit(sim, obs, n_iter=1, formula="height ~ " + BASIS, id="ID",
              scale_response=False, run_dir=tmp_path / "b")
    sd = obs["height"].std(ddof=1)
    np.testing.assert_allclose(scaled.latent.extra.response_scale, [sd])
    np.testing.assert_array_equal(raw.latent.extra.response_scale, [1.0])
    np.testing.assert_allclose(raw.latent.extra.y[:, 0] * 1.0,
                               scaled.latent.extra.y[:, 0] * sd)
    with pytest.raises(InputTypeError, match="scale_response"):
        Regression(obs, "height ~ " + BASIS, id="ID", scale_response="no")
