"""Extra regressions (``X2 B2_F`` on the factors, ``X2 B2_R`` on the traits).

Simulation (fixed seed): 300 lines with 60 centred markers (binomial(2, 0.3)); each of
2 factors has 6 causal markers, its marker part scaled to variance 0.6 plus noise of
variance 0.4; 10 traits ``Y = F Lambda + e`` (sd 0.5).  240 lines have data (identity
K), 60 have markers only.  The marker signal is strong (0.6 of each factor's variance,
12 causal markers among 60 with 240 rows), so the posterior mean of ``B2_F Lambda``
and the marker-based predictions of the 60 new lines correlate with the truth at
0.967-0.978 (data seeds 1, 2, 3; seed 1 is tested); the bound 0.85 leaves room for Monte Carlo error
of a 500-iteration run while failing clearly if the markers were ignored (then the
predictions of new lines would be 0, correlation undefined/near 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pymegalmm import ExtraRegression, MegaLMM, RegressionHorseshoePrior
from pymegalmm.core.state import ChainState
from pymegalmm.errors import InputError, InputTypeError, LabelError

N_LINES, P, T, K, TRAIN = 300, 60, 10, 2, 240


def simulate(seed: int = 1):
    rng = np.random.default_rng(seed)
    M = rng.binomial(2, 0.3, size=(N_LINES, P)).astype(float)
    M -= M.mean(axis=0)
    lines = [f"L{i}" for i in range(N_LINES)]
    markers = pd.DataFrame(M, index=lines, columns=[f"m{j}" for j in range(P)])
    B2F = np.zeros((P, K))
    for f in range(K):
        B2F[rng.choice(P, 6, replace=False), f] = rng.normal(0, 0.6, 6)
    B2F = B2F / (M @ B2F).std(axis=0) * np.sqrt(0.6)  # marker part of variance 0.6
    Lam = rng.normal(0, 1, (K, T))
    F = M[:TRAIN] @ B2F + rng.normal(0, np.sqrt(0.4), (TRAIN, K))
    Y = pd.DataFrame(F @ Lam + rng.normal(0, 0.5, (TRAIN, T)),
                     columns=[f"t{j}" for j in range(T)])
    data = pd.DataFrame({"Line": lines[:TRAIN]})
    Kmat = pd.DataFrame(np.eye(TRAIN), index=lines[:TRAIN], columns=lines[:TRAIN])
    return dict(Y=Y, data=data, K=Kmat, markers=markers, lines=lines,
                marker_effect=B2F @ Lam, genetic=M @ B2F @ Lam)


def fit(sim, tmp_path, n_iter=500, name="run", **kw):
    m = MegaLMM(sim["Y"], "~ 1 + (1|Line)", data=sim["data"], relmat={"Line": sim["K"]},
                n_factors=4, h2_divisions=10, burn=200, thin=2, seed=1, verbose=False,
                run_dir=tmp_path / name,
                extra_regressions=kw.pop("extra", ExtraRegression(X=sim["markers"],
                                                                  by="Line")), **kw)
    m.sample(n_iter, progress=False)
    return m


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    sim = simulate()
    return sim, fit(sim, tmp_path_factory.mktemp("x2"))


def test_marker_effects_on_factors_recovered(fitted):
    sim, m = fitted
    post = m.posterior
    assert post["B2_F"].dims == ("chain", "draw", "marker", "factor")
    assert post["B2_R"].dims == ("chain", "draw", "marker", "trait")
    assert "description" in post["B2_F"].attrs
    BL = np.einsum("cdmk,cdkt->cdmt",
                   post["B2_F"].transpose("chain", "draw", "marker", "factor").values,
                   post["Lambda"].transpose("chain", "draw", "factor", "trait").values
                   ).mean(axis=(0, 1))
    r = np.corrcoef(BL.ravel(), sim["marker_effect"].ravel())[0, 1]
    assert r > 0.85


def test_new_lines_predicted_from_markers(fitted):
    sim, m = fitted
    new = sim["lines"][TRAIN:]
    truth = sim["genetic"][TRAIN:]
    gv = m.genetic_values()
    assert list(gv.index[:TRAIN]) == sim["lines"][:TRAIN] and list(gv.index[TRAIN:]) == new
    r_gv = np.corrcoef(gv.loc[new].values.ravel(), truth.ravel())[0, 1]
    pred = m.predict(pd.DataFrame({"Line": new}, index=range(TRAIN, N_LINES)))
    r_pred = np.corrcoef(pred.values.ravel(), truth.ravel())[0, 1]
    assert r_gv > 0.85 and r_pred > 0.85
    # new rows: intercept + genetic values, so predictions minus B1 equal genetic values
    B1 = m.posterior["B1"].mean(("chain", "draw")).values[0]
    np.testing.assert_allclose(pred.values - B1, gv.loc[new].values, atol=1e-8)
    draws = m.genetic_values(kind="draws")
    assert draws.sizes["level"] == N_LINES


def test_fitted_predictions_include_B2_R(fitted):
    _, m = fitted
    mean = m.predict()
    from_draws = m.predict(kind="draws").mean(("chain", "draw")).values
    np.testing.assert_allclose(mean.values, from_draws, atol=1e-8)


def test_state_save_load_and_reorder(fitted, tmp_path):
    _, m = fitted
    s = m.chains[0].state
    assert set(s.extra) >= {"B2_F", "B2_R", "B2_F.phi2", "B2_F.t2", "B2_R.xi"}
    s.save(tmp_path / "s.npz")
    t = ChainState.load(tmp_path / "s.npz")
    assert set(t.extra) == set(s.extra)
    for key in s.extra:
        np.testing.assert_array_equal(t.extra[key], s.extra[key])
    B2F, t2 = s.extra["B2_F"].copy(), s.extra["B2_F.t2"].copy()
    order = m.chains[0].reorder_factors(0.6)
    np.testing.assert_array_equal(s.extra["B2_F"], B2F[:, order])
    np.testing.assert_array_equal(s.extra["B2_F.t2"], t2[order])


def test_resume_continues_exactly(tmp_path):
    sim = simulate(2)
    whole = fit(sim, tmp_path, n_iter=0, name="whole")
    whole.sample(30, progress=False)
    part = fit(sim, tmp_path, n_iter=0, name="part")
    part.sample(15, progress=False)
    part.save_posterior_chunk()
    resumed = MegaLMM.resume(tmp_path / "part", verbose=False)
    resumed.sample(15, progress=False)
    for key, value in whole.chains[0].state.extra.items():
        np.testing.assert_array_equal(resumed.chains[0].state.extra[key], value)
    np.testing.assert_array_equal(resumed.chains[0].state.Lambda, whole.chains[0].state.Lambda)


def test_rows_and_options(tmp_path):
    sim = simulate(3)
    by_row = pd.DataFrame(sim["markers"].loc[sim["lines"][:TRAIN]].to_numpy(),
                          index=sim["data"].index, columns=sim["markers"].columns)
    m = fit(sim, tmp_path, n_iter=220, extra=ExtraRegression(
        X=by_row, factors=False, prior=RegressionHorseshoePrior(prop_0=0.2)))
    assert "B2_F" not in m.posterior and "B2_R" in m.posterior
    m2 = fit(sim, tmp_path, n_iter=220, name="f", extra=ExtraRegression(
        X=sim["markers"], by="Line", resids=False), record=["Lambda", "B2_F", "B2_F_prec"])
    assert set(m2.posterior.data_vars) >= {"B2_F", "B2_F_prec"}


def test_bad_inputs(tmp_path):
    sim = simulate()
    X = sim["markers"]
    with pytest.raises(LabelError, match="L5"):
        fit(sim, tmp_path, n_iter=0, extra=ExtraRegression(X=X.drop(index="L5"), by="Line"))
    with pytest.raises(InputTypeError, match="non-numeric.*m0"):
        ExtraRegression(X=X.assign(m0="a"), by="Line")
    with pytest.raises(InputError, match="NaN"):
        ExtraRegression(X=X.mask(X > 1.5), by="Line")
    with pytest.raises(InputTypeError, match="extra_regressions.X"):
        ExtraRegression(X=X.to_numpy())
    with pytest.raises(InputError, match="factors and resids"):
        ExtraRegression(X=X, factors=False, resids=False)
    with pytest.raises(LabelError, match="by='Plot'"):
        fit(sim, tmp_path, n_iter=0, extra=ExtraRegression(X=X, by="Plot"))
    with pytest.raises(LabelError, match="no row for"):
        fit(sim, tmp_path, n_iter=0, extra=ExtraRegression(X=X))
    with pytest.raises(InputError, match="prop_0"):
        RegressionHorseshoePrior(prop_0=1.5)
    with pytest.raises(InputTypeError, match="extra_regressions"):
        MegaLMM(sim["Y"], "~ 1 + (1|Line)", data=sim["data"], relmat={"Line": sim["K"]},
                verbose=False, run_dir=tmp_path / "bad", extra_regressions=X)


def test_own_loadings_draw_without_spike_and_slab_needs_resids_false(tmp_path):
    """A loadings prior with its own draw that is not spike and slab cannot share the
    traits' regression with B2_R (BayesC can: tests/test_b2_priors.py)."""
    from dataclasses import dataclass

    from pymegalmm import Priors
    from pymegalmm.priors import ARDPrior

    @dataclass(frozen=True)
    class OwnDraw(ARDPrior):
        def sample_loadings(self, regression, state, rng):
            return None

    sim = simulate()
    with pytest.raises(InputError, match="resids=False"):
        fit(sim, tmp_path, n_iter=0, priors=Priors(Lambda_prior=OwnDraw()))


def test_documented_example_runs(capsys, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # the example's default run_dir
    text = (Path(__file__).resolve().parents[1] / "docs" / "priors.md").read_text()
    match = re.search(r"<!-- example: extra-regressions -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the extra-regressions example is missing from docs/priors.md"
    namespace: dict = {"__name__": "docs_priors_example"}
    exec(compile(match.group(1), "docs/priors.md", "exec", dont_inherit=True), namespace)
    assert "L164" in capsys.readouterr().out
