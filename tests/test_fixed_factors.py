"""Fixed factors (``Lambda_fixed``): rows held exactly, free part recovered, resume, inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pymegalmm import MegaLMM
from pymegalmm.errors import InputError, InputTypeError, LabelError

N, T = 240, 8
TRAITS = [f"T{j}" for j in range(T)]


def simulate(seed: int = 3):
    """``Y = f0 L0 + f1 L1 + e`` with unit-variance factors, noise sd 0.3 (scale_Y=False)."""
    rng = np.random.default_rng(seed)
    L0 = np.linspace(-1.0, 1.0, T)  # the known factor
    L1 = rng.choice([-1.0, 1.0], T) * rng.uniform(0.6, 1.2, T)  # the one to recover
    f = rng.standard_normal((N, 2))
    Y = f[:, :1] * L0 + f[:, 1:] * L1 + 0.3 * rng.standard_normal((N, T))
    data = pd.DataFrame({"ID": [f"i{i}" for i in range(N)]})
    return pd.DataFrame(Y, columns=TRAITS), data, L0, L1


def fit(tmp_path, name="run", n_factors=3, seed=1, **kw):
    Y, data, L0, _ = simulate()
    # columns in reverse order: matched to the traits by name
    default = pd.DataFrame([L0[::-1]], index=["known"], columns=TRAITS[::-1])
    Lf = kw.pop("Lambda_fixed", default)
    return MegaLMM(Y, "~ 1 + (1|ID)", data=data, n_factors=n_factors, h2_divisions=5,
                   burn=kw.pop("burn", 0), thin=1, scale_Y=False, seed=seed, verbose=False,
                   run_dir=tmp_path / name, Lambda_fixed=Lf, **kw)


def test_fixed_rows_stay_exact_in_every_draw_and_after_reordering(tmp_path):
    _, _, L0, _ = simulate()
    m = fit(tmp_path, chains=2, processes=1)
    m.sample(15, progress=False)
    post = m.posterior
    assert list(post.factor.values) == ["known", "F1", "F2"]
    lam = post["Lambda"].sel(factor="known").transpose("chain", "draw", "trait").values
    assert np.array_equal(lam, np.broadcast_to(L0, lam.shape))  # exact, every draw
    # the loadings prior covers the free factors only: NaN at the fixed factor
    assert np.isnan(post["delta"].sel(factor="known")).all()
    assert np.isfinite(post["delta"].sel(factor=["F1", "F2"])).all()
    for _ in range(2):
        m.reorder_factors()
        m.sample(5, progress=False)
        lam = m.posterior["Lambda"].sel(factor="known").transpose("chain", "draw", "trait")
        assert np.array_equal(lam.values, np.broadcast_to(L0, lam.shape))
        for s in m.states:
            np.testing.assert_array_equal(s.Lambda[0], L0)  # scale_Y=False: sampler's scale
            assert s.tot_F_prec[0] == 1.0 and s.delta.shape == (2,)


def test_free_part_is_recovered(tmp_path):
    # With n = 240 and noise sd 0.3, a loading's posterior sd is about 0.3 / sqrt(240) ~
    # 0.02, against loadings of size 0.6-1.2: the posterior mean of the free factors'
    # covariance Lambda_free' Lambda_free matches L1 L1' to within a few percent, so a
    # correlation above 0.95 (and the fixed factor's loadings absorbing nothing) has a
    # wide margin.
    _, _, _, L1 = simulate()
    m = fit(tmp_path, burn=100)
    m.sample(200, progress=False)
    lam = m.posterior["Lambda"].sel(factor=["F1", "F2"])
    cov = xr.dot(lam, lam.rename(trait="trait2"), dim="factor").mean(("chain", "draw"))
    truth = np.outer(L1, L1)
    r = np.corrcoef(cov.values.ravel(), truth.ravel())[0, 1]
    assert r > 0.95, r
    assert np.allclose(np.diag(cov.values), L1**2, rtol=0.35)


def test_resume_with_fixed_factors(tmp_path):
    whole = fit(tmp_path, "whole")
    whole.sample(12, progress=False)
    m = fit(tmp_path, "run")
    m.sample(7, progress=False)
    m.save_posterior_chunk()
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert list(again.coords.factor) == ["known", "F1", "F2"]
    again.sample(5, progress=False)
    np.testing.assert_array_equal(again.states[0].Lambda, whole.states[0].Lambda)
    np.testing.assert_array_equal(again.states[0].QtF, whole.states[0].QtF)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((1, T)), InputTypeError, "Lambda_fixed must be a pandas DataFrame"),
    (pd.DataFrame([np.zeros(T - 1)], index=["a"], columns=TRAITS[:-1]), LabelError,
     r"Lambda_fixed.*missing \['T7'\]"),
    (pd.DataFrame([np.zeros(T + 1)], index=["a"], columns=[*TRAITS, "x"]), LabelError,
     r"Lambda_fixed.*not traits \['x'\]"),
    (pd.DataFrame([[np.nan] + [0.0] * (T - 1)], index=["a"], columns=TRAITS), InputError,
     "Lambda_fixed has missing"),
    (pd.DataFrame([["a"] * T], index=["a"], columns=TRAITS), InputTypeError,
     "Lambda_fixed must hold numbers"),
    (pd.DataFrame(np.zeros((3, T)), index=["a", "b", "c"], columns=TRAITS), InputError,
     "Lambda_fixed has 3 rows.*n_factors is 3"),
    (pd.DataFrame(np.zeros((2, T)), index=["a", "a"], columns=TRAITS), InputError,
     "Lambda_fixed's row names.*distinct"),
    (pd.DataFrame(np.zeros((1, T)), index=["F1"], columns=TRAITS), InputError,
     "Lambda_fixed's row names.*clash"),
])
def test_bad_lambda_fixed(tmp_path, bad, error, match):
    with pytest.raises(error, match=match):
        fit(tmp_path, Lambda_fixed=bad)


def test_documented_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "model_parts.md").read_text()
    match = re.search(r"<!-- example: fixed-factors -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the example is missing from docs/model_parts.md"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_model_parts_example"}
    exec(compile(match.group(1), "docs/model_parts.md", "exec", dont_inherit=True), namespace)
    assert namespace["m"].iteration > 0
