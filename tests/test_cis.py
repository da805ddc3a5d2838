"""cis effects (``cis_genotypes``): recovery, labels, resume, inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pymegalmm import MegaLMM
from pymegalmm.errors import InputError, InputTypeError, LabelError

N, T = 200, 6
TRAITS = [f"g{j}" for j in range(T)]
#: true cis effects: trait -> effect per column
TRUE = {"g0": [0.8, -0.5], "g2": [1.0], "g3": [-0.7, 0.4, 0.3]}


def simulate(seed: int = 5):
    """One factor, noise sd 0.5, and each gene's own markers (0/1/2 genotypes)."""
    rng = np.random.default_rng(seed)
    lam = rng.uniform(0.5, 1.0, T)
    Y = rng.standard_normal((N, 1)) * lam + 0.5 * rng.standard_normal((N, T))
    cis = {}
    for trait, effects in TRUE.items():
        G = rng.binomial(2, 0.4, (N, len(effects))).astype(float)
        Y[:, TRAITS.index(trait)] += G @ np.array(effects)
        cis[trait] = pd.DataFrame(G, columns=[f"{trait}_m{i}" for i in range(len(effects))])
    data = pd.DataFrame({"ID": [f"i{i}" for i in range(N)]})
    return pd.DataFrame(Y, columns=TRAITS), data, cis


def fit(tmp_path, name="run", cis=None, **kw):
    Y, data, default = simulate()
    return MegaLMM(Y, "~ 1 + (1|ID)", data=data, n_factors=2, h2_divisions=5,
                   burn=kw.pop("burn", 0), thin=1, seed=kw.pop("seed", 2), verbose=False,
                   run_dir=tmp_path / name, cis_genotypes=default if cis is None else cis, **kw)


def test_cis_effects_are_recovered_and_labelled(tmp_path):
    # Each effect's posterior sd is about 0.5 / sqrt(N var(G)) ~ 0.5 / sqrt(200 * 0.48)
    # ~ 0.05 (a little more with the other columns), so |mean - truth| < 4 posterior sd
    # fails with probability ~1e-4 per effect for a calibrated posterior, and the sd is
    # also required to be small (< 0.15) so that the check is informative.
    m = fit(tmp_path, burn=100)
    m.sample(300, progress=False)
    post = m.posterior["cis_effects"]
    assert post.dims == ("chain", "draw", "trait", "cis")
    assert list(post.cis.values) == [0, 1, 2]
    assert post.attrs["description"].startswith("each trait's own")
    assert m.cis_names == {t: [f"{t}_m{i}" for i in range(len(e))] for t, e in TRUE.items()}
    mean, sd = post.mean(("chain", "draw")), post.std(("chain", "draw"))
    for trait in TRAITS:
        effects = TRUE.get(trait, [])
        assert np.isnan(mean.sel(trait=trait).values[len(effects):]).all()  # padding
        for i, b in enumerate(effects):
            mu, s = float(mean.sel(trait=trait, cis=i)), float(sd.sel(trait=trait, cis=i))
            assert 0 < s < 0.15 and abs(mu - b) < 4 * s, (trait, i, mu, b, s)
    # the fitted values include the cis term: the posterior mean of E[Y] tracks Y closely
    Y = simulate()[0]
    resid = (Y.values - m.posterior_means["Eta_mean"].values).std(axis=0)
    assert np.all(resid < 0.6)


def test_resume_with_cis_effects(tmp_path):
    whole = fit(tmp_path, "whole")
    whole.sample(10, progress=False)
    m = fit(tmp_path, "run")
    m.sample(6, progress=False)
    m.save_posterior_chunk()
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    again.sample(4, progress=False)
    np.testing.assert_array_equal(again.states[0].cis_effects, whole.states[0].cis_effects)
    again.save_posterior_chunk()
    saved = again.load_posterior(["cis_effects"], lazy=False)["cis_effects"]
    xr.testing.assert_identical(saved.isel(draw=slice(6, None)).drop_vars("draw"),
                                whole.posterior["cis_effects"].isel(draw=slice(6, None))
                                .drop_vars("draw"))


def test_record_names_cis_effects_only_with_cis(tmp_path):
    m = fit(tmp_path, record=["Lambda", "cis_effects"])
    assert m.record == ["Lambda", "cis_effects"]
    Y, data, _ = simulate()
    with pytest.raises(LabelError, match="cis_effects"):
        MegaLMM(Y, "~ 1 + (1|ID)", data=data, n_factors=2, h2_divisions=5, verbose=False,
                run_dir=tmp_path / "x", record=["cis_effects"])


def _bad():
    g = np.random.default_rng(0).binomial(2, 0.5, (N, 2)).astype(float)
    return [
        ([g], InputTypeError, "cis_genotypes must be a dict"),
        ({"nope": g}, LabelError, r"cis_genotypes has keys that are not traits: \['nope'\]"),
        ({"g0": g[:-1]}, InputError, r"cis_genotypes\['g0'\] has 199 rows, the data 200"),
        ({"g0": np.where(np.arange(N)[:, None] == 0, np.nan, g)}, InputError,
         r"cis_genotypes\['g0'\] has missing"),
        ({"g0": g[:, :, None]}, InputError, r"cis_genotypes\['g0'\] must be 2-D"),
        ({"g0": np.ones((N, 1))}, InputError, r"cis_genotypes\['g0'\] has constant columns"),
        ({"g0": np.c_[g, g.sum(axis=1)]}, InputError,
         r"cis_genotypes\['g0'\].*linearly dependent"),
        ({"g0": pd.DataFrame({"a": ["x"] * N})}, InputTypeError,
         r"cis_genotypes\['g0'\] must hold numbers"),
        ({"g0": pd.DataFrame(g, index=[f"r{i}" for i in range(N)])}, LabelError,
         r"cis_genotypes\['g0'\] has no row for the data's rows"),
        ({"g0": np.zeros((N, 0))}, InputError, r"cis_genotypes\['g0'\] has no columns"),
    ]


@pytest.mark.parametrize("bad, error, match", _bad())
def test_bad_cis_genotypes(tmp_path, bad, error, match):
    with pytest.raises(error, match=match):
        fit(tmp_path, cis=bad)


def test_documented_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "model_parts.md").read_text()
    match = re.search(r"<!-- example: cis -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the example is missing from docs/model_parts.md"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_model_parts_example"}
    exec(compile(match.group(1), "docs/model_parts.md", "exec", dont_inherit=True), namespace)
    assert namespace["m"].iteration > 0
