"""Observation models Voom, Binomial, NegativeBinomial and Combined: inputs, the
Polya-Gamma update against references, threads, exact resume, recording, prediction.

Recovery of parameters from simulated data is in ``test_observation_recovery.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from polyagamma import random_polyagamma
from scipy import integrate
from scipy.special import expit, gammaln

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.core.state import ChainState
from pymegalmm.errors import InputError, InputTypeError, LabelError
from pymegalmm.observation import (
    Binomial,
    Combined,
    GaussianMissing,
    MissingDataMap,
    NegativeBinomial,
    TraitGroup,
    Voom,
    _common,
)
from pymegalmm.observation._common import pg_latent_update
from pymegalmm.observation.negative_binomial import nb_log_likelihood

# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="module")
def sim():
    """40 rows x 6 traits of a 2-factor model (latent values on a unit scale)."""
    return datasets.simulate_factor_data(n=40, t=6, k_true=2, n_markers=200, seed=3)


def counts(sim, seed=0):
    """Binomial and negative-binomial counts and Voom data made from ``sim``'s traits."""
    rng = np.random.default_rng(seed)
    eta = sim.Y - sim.Y.mean()
    N = pd.DataFrame(rng.integers(5, 25, size=eta.shape), index=eta.index, columns=eta.columns)
    Yb = pd.DataFrame(rng.binomial(N, expit(eta)), index=eta.index, columns=eta.columns)
    lib = pd.Series(rng.uniform(0.5, 2.0, len(eta)), index=eta.index)
    mean = lib.to_numpy()[:, None] * np.exp(2.0 + eta.to_numpy())
    Yn = pd.DataFrame(rng.negative_binomial(8.0, 8.0 / (8.0 + mean)).astype(float),
                      index=eta.index, columns=eta.columns)
    W = pd.DataFrame(rng.uniform(0.5, 4.0, eta.shape), index=eta.index, columns=eta.columns)
    Yv = sim.Y + rng.standard_normal(eta.shape) / np.sqrt(W)
    return {"N": N, "Yb": Yb, "lib": lib, "Yn": Yn, "W": W, "Yv": Yv}


def fit(sim, Y, observation, run_dir, n_iter=8, threads=None, record=None, **kw):
    m = MegaLMM(Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=2,
                h2_divisions=5, burn=2, seed=7, verbose=False, observation=observation,
                run_dir=run_dir, control=Control(n_threads=threads),
                record=record, **kw)
    m.sample(n_iter, progress=False)
    return m


def models(sim, c):
    cols = list(sim.Y.columns)
    return {
        "voom": (c["Yv"], Voom(c["W"])),
        "binomial": (c["Yb"], Binomial(c["N"])),
        "negbin": (c["Yn"], NegativeBinomial(library_size=c["lib"])),
        "combined": (pd.concat([c["Yn"][cols[:2]], c["Yb"][cols[2:4]], c["Yv"][cols[4:]]],
                               axis=1),
                     Combined({tuple(cols[:2]): NegativeBinomial(library_size=c["lib"]),
                               tuple(cols[2:4]): Binomial(c["N"]),
                               tuple(cols[4:]): GaussianMissing()})),
    }


# ----------------------------------------------------------------------------- inputs

def test_binomial_inputs_are_checked(sim):
    c = counts(sim)
    Y, N = c["Yb"], c["N"]
    with pytest.raises(InputError, match="trials"):
        Binomial(-1)
    with pytest.raises(InputTypeError, match="trials"):
        Binomial("many")
    with pytest.raises(InputError, match="exceeds trials"):
        Binomial(N).prepare_data((Y + N).to_numpy(), list(Y.index), list(Y.columns), True)
    bad = Y.to_numpy().astype(float)
    bad[0, 0] = 1.5
    with pytest.raises(InputError, match="Y must hold non-negative whole"):
        Binomial(N).prepare_data(bad, list(Y.index), list(Y.columns), True)
    bad[0, 0] = -1
    with pytest.raises(InputError, match="Y must hold non-negative whole"):
        Binomial(N).prepare_data(bad, list(Y.index), list(Y.columns), True)
    with pytest.raises(LabelError, match="trials lacks 1 trait"):
        Binomial(N.iloc[:, 1:]).prepare_data(Y.to_numpy(), list(Y.index), list(Y.columns), True)
    with pytest.raises(InputError, match="trials must have the shape of Y"):
        Binomial(N.to_numpy()[:5]).prepare(Y.to_numpy(), list(Y.columns), True)
    # through the model, labels are matched: trials in another row order give the same data
    shuffled = N.sample(frac=1.0, random_state=1)
    a = Binomial(N).prepare_data(Y.to_numpy(), list(Y.index), list(Y.columns), True)
    b = Binomial(shuffled).prepare_data(Y.to_numpy(), list(Y.index), list(Y.columns), True)
    np.testing.assert_array_equal(a.Y, b.Y)
    # 0 trials = not observed; start at the empirical logit
    N0 = N.copy()
    N0.iloc[0, 0] = 0
    lat = Binomial(N0).prepare_data(np.where(N0 == 0, 0, Y), list(Y.index), list(Y.columns),
                                    True)
    assert np.isnan(lat.Y[0, 0]) and not lat.observed[0, 0]
    y, n = Y.iloc[1, 0], N.iloc[1, 0]
    assert lat.Y[1, 0] == pytest.approx(np.log((y + 0.5) / (n - y + 0.5)))
    assert np.all(lat.center == 0) and np.all(lat.scale == 1)


def test_negative_binomial_inputs_are_checked(sim):
    c = counts(sim)
    Y = c["Yn"]
    with pytest.raises(InputError, match="library_size"):
        NegativeBinomial(library_size=0)
    with pytest.raises(InputError, match="dispersion"):
        NegativeBinomial(dispersion=-2.0)
    with pytest.raises(InputError, match="dispersion must have exactly the keys"):
        NegativeBinomial(dispersion={"shape": 1.0})
    with pytest.raises(InputError, match="mh_steps"):
        NegativeBinomial(mh_steps=0)
    bad = Y.to_numpy().copy()
    bad[2, 3] = 2.5
    with pytest.raises(InputError, match="Y must hold non-negative whole"):
        NegativeBinomial().prepare(bad, list(Y.columns), True)
    lib = c["lib"].copy()
    lib.iloc[0] = -1.0
    with pytest.raises(InputError, match="library_size must be finite and > 0"):
        NegativeBinomial(library_size=lib).prepare_data(Y.to_numpy(), list(Y.index),
                                                        list(Y.columns), True)
    with pytest.raises(LabelError, match="library_size"):
        NegativeBinomial(library_size=c["lib"].iloc[3:]).prepare_data(
            Y.to_numpy(), list(Y.index), list(Y.columns), True)
    with pytest.raises(InputError, match="library_size must have the shape"):
        NegativeBinomial(library_size=np.ones(3)).prepare(Y.to_numpy(), list(Y.columns), True)
    lat = NegativeBinomial(library_size=c["lib"]).prepare_data(
        Y.to_numpy(), list(Y.index), list(Y.columns), True)
    assert lat.Y[0, 0] == pytest.approx(np.log((Y.iloc[0, 0] + 0.5) / c["lib"].iloc[0]))
    # fixed size: nothing sampled, nothing recorded
    assert NegativeBinomial(dispersion=5).recorded == {}
    assert set(NegativeBinomial().recorded) == {"dispersion"}


def test_voom_inputs_are_checked(sim):
    c = counts(sim)
    Y, W = c["Yv"], c["W"]
    with pytest.raises(InputTypeError, match="weights"):
        Voom([1, 2])
    for value in (0.0, -1.0, np.nan):
        bad = W.copy()
        bad.iloc[1, 1] = value
        with pytest.raises(InputError, match="weights must be finite and > 0"):
            Voom(bad).prepare_data(Y.to_numpy(), list(Y.index), list(Y.columns), True)
    with pytest.raises(LabelError, match="weights lacks"):
        Voom(W.iloc[:10]).prepare_data(Y.to_numpy(), list(Y.index), list(Y.columns), True)
    # a missing cell may have any weight; scaled Y: weights times SD^2
    Ym = Y.to_numpy().copy()
    Ym[0, 0] = np.nan
    bad = W.copy()
    bad.iloc[0, 0] = np.nan
    lat = Voom(bad).prepare_data(Ym, list(Y.index), list(Y.columns), True)
    np.testing.assert_allclose(lat.extra.weights[1:, 0], W.to_numpy()[1:, 0] * lat.scale[0] ** 2)
    assert lat.extra.weights[0, 0] == 0


def test_combined_inputs_are_checked(sim):
    c = counts(sim)
    cols = list(sim.Y.columns)
    with pytest.raises(InputTypeError, match="blocks"):
        Combined([Voom(c["W"])])
    with pytest.raises(InputError, match="more than one block"):
        Combined({tuple(cols[:3]): GaussianMissing(), tuple(cols[2:]): GaussianMissing()})
    with pytest.raises(InputTypeError, match=r"blocks\['T01'\] must be an observation model"):
        Combined({"T01": "gaussian"})
    mdmap = MissingDataMap([TraitGroup(np.arange(40), np.arange(6))])
    with pytest.raises(InputError, match="missing-data map is not supported"):
        Combined({tuple(cols): GaussianMissing(missing_data_map=mdmap)})
    Y = c["Yv"].to_numpy()
    with pytest.raises(LabelError, match="in no block"):
        Combined({tuple(cols[:3]): GaussianMissing()}).prepare(Y, cols, True)
    with pytest.raises(LabelError, match="not traits of Y"):
        Combined({("T01", "nope"): GaussianMissing(), tuple(cols[1:]): GaussianMissing()}
                 ).prepare(Y, cols, True)
    # a block's own errors name the block
    with pytest.raises(InputError, match=r"blocks\[.*\]: Y must hold non-negative whole"):
        Combined({tuple(cols[:3]): NegativeBinomial(), tuple(cols[3:]): GaussianMissing()}
                 ).prepare(Y, cols, True)


# ----------------------------------------------------------------------------- the update

def test_pg_update_matches_a_slow_reference_on_the_same_numbers():
    """Cell by cell, given the same generator: omega of the observed cells in column-major
    order, then one normal per cell; NB-style offset included."""
    rng = np.random.default_rng(1)
    n, c = 7, 3
    eta, mean = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    var = rng.uniform(0.2, 2.0, c)
    obs = rng.random((n, c)) < 0.8
    y = rng.integers(0, 20, (n, c)).astype(float)
    r = rng.uniform(1, 10, c)
    h, kappa = y + r, (y - r) / 2
    offset = rng.normal(size=(n, c))
    new = pg_latent_update(eta, mean, var, obs, h, kappa, offset, np.random.default_rng(5))

    gen = np.random.default_rng(5)
    omegas = {}
    for j in range(c):  # column-major order of the observed cells
        for i in range(n):
            if obs[i, j]:
                omegas[i, j] = None
    keys = list(omegas)
    draws = random_polyagamma(np.array([h[k] for k in keys]),
                              np.array([eta[k] + offset[k] for k in keys]), random_state=gen)
    z = gen.standard_normal(n * c)
    ref = np.empty((n, c))
    for j in range(c):
        for i in range(n):
            w = draws[keys.index((i, j))] if obs[i, j] else 0.0
            P = w + 1 / var[j]
            lin = mean[i, j] / var[j] + (kappa[i, j] - w * offset[i, j] if obs[i, j] else 0.0)
            ref[i, j] = lin / P + z[j * n + i] / np.sqrt(P)
    np.testing.assert_allclose(new, ref, rtol=1e-12, atol=1e-12)


def _exact_moments(log_lik, mu, s2):
    """Mean and variance of eta under N(mu, s2) * likelihood, by quadrature."""
    sd = np.sqrt(s2)
    lo, hi = mu - 12 * sd, mu + 12 * sd
    dens = lambda x: np.exp(log_lik(x) - 0.5 * (x - mu) ** 2 / s2)  # noqa: E731
    z = integrate.quad(dens, lo, hi, limit=200)[0]
    m1 = integrate.quad(lambda x: x * dens(x), lo, hi, limit=200)[0] / z
    m2 = integrate.quad(lambda x: x * x * dens(x), lo, hi, limit=200)[0] / z
    return m1, m2 - m1 * m1


@pytest.mark.parametrize("kind", ["binomial", "negbin"])
def test_augmented_update_leaves_the_exact_posterior_of_a_cell_invariant(kind):
    """20,000 independent chains of one cell, 40 augmented updates each from a start far
    off: the mean and variance of eta must match the exact posterior (quadrature).
    Monte Carlo SE of the mean ~ sd / sqrt(20000) ~ 0.004 sd (the chains are
    independent); the bound 0.03 sd is 7 SE, small next to the offset a wrong
    parameterisation gives (e.g. dropping the NB offset -log r shifts eta by ~0.6)."""
    mu, s2, m = 0.3, 0.8, 20000
    if kind == "binomial":
        y, N = 7.0, 10.0
        h, kappa, offset = N, y - N / 2, None

        def log_lik(x):
            return y * x - N * np.logaddexp(0, x)
    else:
        y, r, lib = 12.0, 4.0, 2.0
        h, kappa, offset = y + r, (y - r) / 2, np.log(lib) - np.log(r)

        def log_lik(x):
            return float(nb_log_likelihood(np.array([[y]]), np.array([[x + np.log(lib)]]),
                                           np.array([r]), np.array([[True]]))[0])
    gen = np.random.default_rng(3)
    eta = np.full((1, m), -2.0)
    ones = np.ones((1, m))
    for _ in range(40):
        eta = pg_latent_update(eta, mu * ones, np.full(m, s2), ones.astype(bool), h * ones,
                               kappa * ones, None if offset is None else offset * ones, gen)
    mean, var = _exact_moments(np.vectorize(log_lik), mu, s2)
    sd = np.sqrt(var)
    assert abs(eta.mean() - mean) < 0.03 * sd, (eta.mean(), mean)
    assert abs(eta.var() / var - 1) < 0.05, (eta.var(), var)


def test_nb_log_likelihood_is_the_negative_binomial_pmf():
    from scipy.stats import nbinom
    y = np.array([[0.0, 3.0], [17.0, 1.0]])
    log_mean = np.array([[0.2, 1.5], [2.5, -0.3]])
    r = np.array([2.5, 11.0])
    ll = nb_log_likelihood(y, log_mean, r, np.ones_like(y, dtype=bool))
    mean = np.exp(log_mean)
    exact = nbinom.logpmf(y, r[None, :], r[None, :] / (r[None, :] + mean)) + gammaln(y + 1)
    np.testing.assert_allclose(ll, exact.sum(axis=0), rtol=1e-12)


# ----------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("name", ["voom", "binomial", "negbin", "combined"])
def test_draws_do_not_depend_on_the_number_of_threads(sim, name, monkeypatch, tmp_path):
    """Several blocks of columns (a small block size), run on 1 and on 2 threads."""
    monkeypatch.setattr(_common, "PG_BLOCK_CELLS", 80)  # 2 columns per block at n = 40
    assert len(_common.column_blocks(40, 6)) == 3
    Y, obs = models(sim, counts(sim))[name]
    a = fit(sim, Y, obs, run_dir=tmp_path / "a", threads=1, record=["Lambda", "Eta"])
    b = fit(sim, Y, obs, run_dir=tmp_path / "b", threads=2, record=["Lambda", "Eta"])
    assert a._kernel_threads == 1 and b._kernel_threads == 2
    np.testing.assert_array_equal(a.states[0].Eta, b.states[0].Eta)
    np.testing.assert_array_equal(a.posterior["Eta"].values, b.posterior["Eta"].values)
    for key, value in a.states[0].observation.items():
        np.testing.assert_array_equal(value, b.states[0].observation[key])


def test_negative_binomial_resumes_exactly(sim, tmp_path):
    c = counts(sim)
    obs = NegativeBinomial(library_size=c["lib"])
    whole = fit(sim, c["Yn"], obs, tmp_path / "whole", n_iter=12)
    whole.save_posterior_chunk()
    part = fit(sim, c["Yn"], obs, tmp_path / "part", n_iter=5)
    part.save_posterior_chunk()
    assert "dispersion" in part.states[0].observation
    del part
    again = MegaLMM.resume(tmp_path / "part", verbose=False)
    again.sample(7, progress=False)
    again.save_posterior_chunk()
    np.testing.assert_array_equal(again.states[0].Eta, whole.states[0].Eta)
    np.testing.assert_array_equal(again.states[0].observation["dispersion"],
                                  whole.states[0].observation["dispersion"])
    np.testing.assert_array_equal(again.load_posterior(lazy=False)["dispersion"].values,
                                  whole.load_posterior(lazy=False)["dispersion"].values)


def test_state_file_keeps_the_observation_state(tmp_path):
    rng = np.random.default_rng(0)
    s = ChainState(Eta=np.zeros((2, 2)), QtEta=[np.zeros((2, 2))], B1=np.zeros((1, 2)),
                   Lambda=np.zeros((1, 2)), tot_Eta_prec=np.ones(2),
                   resid_h2_index=np.zeros(2, dtype=np.intp), U_R=np.zeros((2, 2)),
                   QtF=np.zeros((2, 1)), tot_F_prec=np.ones(1),
                   F_h2_index=np.zeros(1, dtype=np.intp), U_F=np.zeros((2, 1)), nrun=3, rng=rng)
    s.save(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz") as f:  # Gaussian data: nothing added to the file
        assert not [k for k in f.files if k.startswith("observation.")]
    s.observation = {"dispersion": np.array([2.0, 3.0])}
    s.save(tmp_path / "nb.npz")
    back = ChainState.load(tmp_path / "nb.npz")
    np.testing.assert_array_equal(back.observation["dispersion"], [2.0, 3.0])
    assert back.dispersion is back.observation["dispersion"]


def test_recorded_parameters_and_response_scale(sim, tmp_path):
    c = counts(sim)
    cols = list(sim.Y.columns)
    Y, obs = models(sim, c)["combined"]
    m = fit(sim, Y, obs, run_dir=tmp_path / "c", record=["B1", "F", "Lambda", "U_R", "Eta",
                                                          "dispersion"])
    post = m.posterior
    disp = post["dispersion"]
    assert disp.dims == ("chain", "draw", "trait")
    assert "negative-binomial size" in disp.attrs["description"]
    assert np.all(np.isfinite(disp.sel(trait=cols[:2])))
    assert np.all(disp.sel(trait=cols[2:]).isnull())
    # the NB block's draws are the chain's state at the last draw
    np.testing.assert_array_equal(disp.values[0, -1, :2],
                                  m.states[0].observation["0.dispersion"])
    # response scale: expit (Binomial), exp times library size (NB), identity (Gaussian)
    lat = m.predict(kind="draws")
    resp = m.predict(kind="draws", scale="response", library_size=c["lib"])
    np.testing.assert_allclose(resp.sel(trait=cols[2:4]), expit(lat.sel(trait=cols[2:4])))
    np.testing.assert_allclose(resp.sel(trait=cols[:2]),
                               np.exp(lat.sel(trait=cols[:2])) * c["lib"].to_numpy()[:, None])
    np.testing.assert_allclose(resp.sel(trait=cols[4:]), lat.sel(trait=cols[4:]))
    mean = m.predict(scale="response")
    np.testing.assert_allclose(mean.loc[:, cols[2]],
                               expit(lat.sel(trait=cols[2])).mean(("chain", "draw")))
    with pytest.raises(InputError, match="scale must be"):
        m.predict(scale="probability")
    with pytest.raises(InputError, match="library_size only applies"):
        m.predict(library_size=2.0)
    with pytest.raises(InputError, match="library_size must be a number or one value per row"):
        m.predict(scale="response", library_size=np.ones(3))
    # a Gaussian model has the identity response and no option
    g = fit(sim, sim.Y, None, tmp_path / "g", n_iter=4)
    pd.testing.assert_frame_equal(g.predict(scale="response"), g.predict(kind="draws").mean(
        ("chain", "draw")).to_pandas(), check_exact=False, rtol=1e-12)
    with pytest.raises(InputError, match="takes no response-scale options"):
        g.predict(scale="response", library_size=1.0)


def test_docs_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/observation_models.md runs, in order, in one namespace
    (in a temporary folder: the examples write run folders)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "observation_models.md").read_text()
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 7
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"observation_models.md block {i + 1}", "exec"), ns)  # noqa: S102
    assert ns["expected"].shape == (60, 6) and (ns["expected"].to_numpy() > 0).all()
    assert ns["probability"].to_numpy().min() > 0 and ns["probability"].to_numpy().max() < 1
    assert ns["m"].posterior["dispersion"].isnull().sum() > 0  # the Combined example
    assert ns["probe_values"].shape == (60, 18) and ns["gene_G"].shape == (1, 6, 6)
    assert ns["curves"].shape == (60, 21) and ns["new_line"].shape == (1, 21)
