"""On-disk posterior through the model: chunks, reload, weighted means, memory estimate."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets


def _model(tmp_path, seed=1):
    sim = datasets.simulate_factor_data(n=80, t=5, k_true=2, missing=0.1, seed=3)
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
                   h2_divisions=10, burn=10, thin=1, seed=seed, chains=2,
                   run_dir=tmp_path / "run", verbose=False)


def test_chunks_equal_the_in_memory_posterior(tmp_path):
    chunked, whole = _model(tmp_path / "a"), _model(tmp_path / "b")
    chunked.sample(10, progress=False)  # burn-in only
    whole.sample(10, progress=False)
    for n in (7, 2, 5):  # unequal chunks
        chunked.sample(n, progress=False)
        assert chunked.save_posterior_chunk() == n
        assert chunked.n_draws == 0
    whole.sample(14, progress=False)
    disk = chunked.load_posterior()
    mem = whole.posterior
    assert disk.sizes["draw"] == 14 and disk.sizes["chain"] == 2
    for name in ("Lambda", "U", "h2", "B1", "G"):
        np.testing.assert_array_equal(disk[name].values, mem[name].values)
    assert list(disk.trait.values) == list(mem.trait.values)
    # means weighted by draws, not by chunk
    xr.testing.assert_allclose(chunked.posterior_means, whole.posterior_means, rtol=1e-12)
    np.testing.assert_allclose(chunked.genetic_values(), whole.genetic_values(), rtol=1e-12)
    # memory and disk together
    chunked.sample(3, progress=False)
    whole.sample(3, progress=False)
    full = chunked.reload_posterior()
    assert full.sizes["draw"] == 17
    np.testing.assert_array_equal(full["Lambda"].values, whole.posterior["Lambda"].values)
    xr.testing.assert_allclose(chunked.posterior_means, whole.posterior_means, rtol=1e-12)
    g = chunked.posterior_function(lambda d: d["h2"].sum("trait"))
    assert g.dims == ("chain", "draw", "component") and g.sizes["draw"] == 17
    only = chunked.load_posterior(["Lambda"])
    assert list(only.data_vars) == ["Lambda"]


def test_clear_and_errors(tmp_path):
    m = _model(tmp_path)
    with pytest.raises(RuntimeError, match="no draws"):
        m.reload_posterior()
    m.sample(15, progress=False)
    m.save_posterior_chunk()
    assert m.store.n_draws == 5
    m.clear_posterior()
    assert m.store.n_draws == 0
    with pytest.raises(FileNotFoundError):
        m.load_posterior()
    assert m.save_posterior_chunk() == 0


def test_memory_estimate_matches_recorded_bytes(tmp_path):
    m = _model(tmp_path)
    m.sample(10, progress=False)
    est = m.estimate_memory(6)
    m.sample(6, progress=False)
    post = m.posterior
    actual = sum(post[v].nbytes for v in post.data_vars)
    assert est == actual


def test_large_covariances_left_out_consistently(tmp_path, monkeypatch):
    from pymegalmm.results import run_results as model_module

    monkeypatch.setattr(model_module, "DERIVED_MEMORY_LIMIT", 1000)  # bytes
    m = _model(tmp_path)
    m.sample(10, progress=False)
    est = m.estimate_memory(6)
    m.sample(6, progress=False)
    with pytest.warns(UserWarning, match="G and R"):
        post = m.posterior
    assert "G" not in post and "R" not in post and "U" in post
    assert est == sum(post[v].nbytes for v in post.data_vars)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per model, not at every access
        assert "G" not in m.posterior
