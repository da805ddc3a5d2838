"""Tests of :mod:`pymegalmm.store`: streaming posterior draws to a zarr store."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.run import store
from pymegalmm.store import PosteriorStore


@pytest.fixture(scope="module")
def fit() -> MegaLMM:
    """A small fitted model with 9 draws in each of 2 chains."""
    sim = datasets.simulate_factor_data(n=40, t=5, k_true=2, seed=1)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
                h2_divisions=5, burn=2, thin=1, seed=1, chains=2, verbose=False)
    m.sample(11, progress=False)
    return m


@pytest.fixture(scope="module")
def posterior(fit: MegaLMM) -> xr.Dataset:
    ds = fit.posterior
    ds.attrs = {"model": "MegaLMM", "n_factors": 3}
    ds["level_effect"] = ("level", [f"ID:{v}" for v in ds["level"].values])
    ds = ds.set_coords("level_effect")
    assert ds.sizes["draw"] == 9
    return ds


def split(ds: xr.Dataset, sizes: list[int]) -> list[xr.Dataset]:
    """Chunks of ``ds`` along draw, each with its own draw coordinate 0..k-1."""
    out, start = [], 0
    for k in sizes:
        chunk = ds.isel(draw=slice(start, start + k))
        out.append(chunk.assign_coords(draw=np.arange(k)))
        start += k
    return out


def small(n_draws: int, n_chains: int = 2, seed: int = 0) -> xr.Dataset:
    """A synthetic chunk of draws."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "Lambda": (("chain", "draw", "factor", "trait"),
                       rng.normal(size=(n_chains, n_draws, 2, 3)), {"description": "loadings"}),
            "delta": (("chain", "draw", "factor"), rng.gamma(2.0, size=(n_chains, n_draws, 2))),
        },
        coords={"chain": np.arange(n_chains), "draw": np.arange(n_draws),
                "factor": ["F1", "F2"], "trait": ["a", "bb", "ccc"]},
        attrs={"model": "small"},
    )


def test_three_appends_round_trip(tmp_path, posterior):
    chunks = split(posterior, [3, 5, 1])
    ps = PosteriorStore(tmp_path / "run" / "posterior")
    assert ps.n_draws == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zarr warnings (unstable dtypes, consolidation)
        for chunk in chunks:
            ps.append(chunk)
        loaded = ps.load(lazy=False)
    assert ps.n_draws == 9
    expected = xr.concat(chunks, "draw").assign_coords(draw=np.arange(9))
    xr.testing.assert_identical(loaded, expected)
    xr.testing.assert_identical(loaded, posterior)
    np.testing.assert_array_equal(loaded["draw"].values, np.arange(9))
    for name in ("trait", "trait2", "factor", "fixed", "level", "component", "row",
                 "level_effect"):
        assert loaded[name].dtype == posterior[name].dtype, name
    assert loaded.attrs == {"model": "MegaLMM", "n_factors": 3}
    assert loaded["Lambda"].attrs["description"] == posterior["Lambda"].attrs["description"]
    assert isinstance(loaded["Lambda"].variable._data, np.ndarray)
    # chunked along draw by the first chunk's size, whole along other dims
    assert loaded["Lambda"].encoding["chunks"] == (2, 3, 3, 5)
    assert loaded["U_R"].encoding["chunks"] == (2, 3, 40, 5)


def test_attrs_kept_from_first_append(tmp_path):
    ps = PosteriorStore(tmp_path / "p")
    first, second = small(2), small(3, seed=1)
    second.attrs = {"other": 1}
    second["Lambda"].attrs = {"description": "changed"}
    ps.append(first)
    ps.append(second)
    ds = ps.load()
    assert ds.attrs == {"model": "small"}
    assert ds["Lambda"].attrs == {"description": "loadings"}


def test_load_names(tmp_path, posterior):
    ps = PosteriorStore(tmp_path)
    ps.append(posterior)
    ds = ps.load(names=["Lambda"])
    assert list(ds.data_vars) == ["Lambda"]
    xr.testing.assert_identical(ds.load(), posterior[["Lambda"]])
    eager = ps.load(names=["Lambda", "h2"], lazy=False)
    assert sorted(eager.data_vars) == ["Lambda", "h2"]
    with pytest.raises(KeyError, match="available.*Lambda"):
        ps.load(names=["Lambda", "nope"])


def test_lazy_load_does_not_materialise(tmp_path, posterior):
    ps = PosteriorStore(tmp_path)
    for chunk in split(posterior, [4, 5]):
        ps.append(chunk)
    ds = ps.load()
    for name in ds.data_vars:
        data = ds[name].variable._data
        assert not isinstance(data, np.ndarray), name
        if store._has_dask():
            import dask.array as da

            assert isinstance(data, da.Array), name
    # a selection reads only what it needs and equals the original
    sel = ds["Lambda"].sel(trait="T02").isel(draw=6)
    xr.testing.assert_identical(sel.load(), posterior["Lambda"].sel(trait="T02").isel(draw=6))
    assert not isinstance(ds["Lambda"].variable._data, np.ndarray)
    xr.testing.assert_identical(ds.load(), posterior)


def test_means_weighted_by_draws(tmp_path, fit):
    base = fit.posterior_means
    counts = [3, 5, 1]
    ps = PosteriorStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="no posterior means"):
        ps.load_means()
    with xr.set_options(keep_attrs=True):  # older xarray (2025.6) drops attrs
        chunk_means = [base + i for i in range(3)]  # means of each chunk
        for mean, count in zip(chunk_means, counts, strict=True):
            ps.append_means(mean * count, count)
    ps.append_means(base * 0, 0)  # no-op
    got = ps.load_means()
    weighted = sum(m * c for m, c in zip(chunk_means, counts, strict=True)) / sum(counts)
    xr.testing.assert_allclose(got, weighted)
    np.testing.assert_allclose(got["Eta_mean"].values, base["Eta_mean"].values + 7 / 9)
    assert got["row"].dtype == base["row"].dtype and got["trait"].dtype == base["trait"].dtype
    assert got["Eta_mean"].attrs["description"] == base["Eta_mean"].attrs["description"]
    equal_weights = sum(chunk_means) / 3
    assert not np.allclose(got["Eta_mean"].values, equal_weights["Eta_mean"].values)
    # means do not disturb the draws group, and vice versa
    ps.append(small(2))
    xr.testing.assert_allclose(ps.load_means(), weighted)
    assert ps.n_draws == 2


def test_means_mismatch(tmp_path, fit):
    ps = PosteriorStore(tmp_path)
    ps.append_means(fit.posterior_means, 1)
    with pytest.raises(ValueError, match="missing \\['Eta_mean'\\]"):
        ps.append_means(fit.posterior_means.rename(Eta_mean="other"), 1)
    with pytest.raises(ValueError, match="coordinate 'trait'"):
        ps.append_means(fit.posterior_means.assign_coords(trait=list("vwxyz")), 1)
    with pytest.raises(ValueError, match="count"):
        ps.append_means(fit.posterior_means, -1)


def test_mismatched_chunks_raise(tmp_path):
    ps = PosteriorStore(tmp_path)
    ps.append(small(2))
    with pytest.raises(ValueError, match="missing \\['delta'\\]"):
        ps.append(small(2).drop_vars("delta"))
    with pytest.raises(ValueError, match="not in the store \\['extra'\\]"):
        ps.append(small(2).assign(extra=small(2)["delta"]))
    with pytest.raises(ValueError, match="coordinate 'trait'"):
        ps.append(small(2).assign_coords(trait=["a", "bb", "cc"]))
    with pytest.raises(ValueError, match="'Lambda' has dims"):
        ps.append(small(2).assign(Lambda=small(2)["Lambda"].transpose(
            "chain", "draw", "trait", "factor")))
    with pytest.raises(ValueError, match="along 'factor'"):
        wide = small(2).isel(factor=[0, 1, 1]).assign_coords(factor=["F1", "F2", "F3"])
        ps.append(wide)
    with pytest.raises(ValueError, match="dtype"):
        ps.append(small(2).astype(np.float32))
    with pytest.raises(ValueError, match="3 chains but the store has 2"):
        ps.append(small(2, n_chains=3))
    with pytest.raises(ValueError, match="'chain' and 'draw'"):
        ps.append(small(2).isel(chain=0))
    assert ps.n_draws == 2  # nothing was written by the failed appends
    xr.testing.assert_identical(ps.load(lazy=False), small(2))


def test_zero_draws_reopen_and_clear(tmp_path):
    path = tmp_path / "posterior"
    ps = PosteriorStore(path)
    ps.append(small(0))
    assert ps.n_draws == 0 and not path.exists()
    with pytest.raises(FileNotFoundError, match="no posterior chunk"):
        ps.load()
    chunks = [small(3, seed=0), small(2, seed=1), small(4, seed=2)]
    ps.append(chunks[0])
    ps.append(small(0))
    assert ps.n_draws == 3
    again = PosteriorStore(str(path))  # reopen from a new object, continue appending
    assert again.n_draws == 3
    again.append(chunks[1])
    PosteriorStore(path).append(chunks[2])
    assert ps.n_draws == 9
    expected = xr.concat(chunks, "draw").assign_coords(draw=np.arange(9))
    xr.testing.assert_identical(PosteriorStore(path).load(lazy=False), expected)
    ps.append_means(small(1).isel(chain=0, draw=0, drop=True), 1)

    (path / "notes.txt").write_text("kept")
    again.clear()
    assert ps.n_draws == 0
    assert [p.name for p in path.iterdir()] == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="no posterior chunk"):
        ps.load()
    with pytest.raises(FileNotFoundError):
        ps.load_means()
    # a cleared store starts afresh, with new chunking
    ps.append(chunks[1])
    assert ps.n_draws == 2
    assert ps.load()["Lambda"].encoding["chunks"] == (2, 2, 2, 3)
    (path / "notes.txt").unlink()
    ps.clear()
    assert not path.exists()
    ps.clear()  # clearing a missing store is fine


def test_chunks_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_CHUNK_BYTES", 2 * 3 * 8)  # Lambda: one draw of one chain
    ps = PosteriorStore(tmp_path)
    chunks = [small(5, seed=0), small(4, seed=1)]
    for chunk in chunks:
        ps.append(chunk)
    ds = ps.load()
    assert ds["Lambda"].encoding["chunks"] == (1, 1, 2, 3)
    assert ds["delta"].encoding["chunks"] == (2, 1, 2)
    expected = xr.concat(chunks, "draw").assign_coords(draw=np.arange(9))
    xr.testing.assert_identical(ds.load(), expected)


def test_nbytes_estimate(posterior):
    per_draw = PosteriorStore.nbytes_estimate(posterior)
    assert per_draw * posterior.sizes["draw"] == sum(v.nbytes for v in posterior.data_vars.values())
    one = posterior.isel(draw=0)
    assert PosteriorStore.nbytes_estimate(one) == per_draw
    assert PosteriorStore.nbytes_estimate(posterior.isel(draw=slice(0, 0))) == per_draw


def test_chunk_shape_splits_largest_dim_last():
    var = xr.Variable(("chain", "draw", "factor", "trait"), np.zeros((2, 5, 2, 3)))
    assert store._chunks_for(var, 5, 10**6) == (2, 5, 2, 3)
    assert store._chunks_for(var, 5, 2 * 2 * 6 * 8) == (2, 2, 2, 3)
    assert store._chunks_for(var, 5, 24) == (1, 1, 1, 2)
    empty = xr.Variable(("chain", "draw", "fixed"), np.zeros((2, 4, 0)))
    assert store._chunks_for(empty, 4, 10**6) == (2, 4, 1)


def test_append_lazily_loaded_chunks(tmp_path, posterior):
    """Chunks read lazily from another store (carrying zarr encodings) append fine."""
    source = PosteriorStore(tmp_path / "a")
    for chunk in split(posterior, [2, 7]):
        source.append(chunk)
    copy = PosteriorStore(tmp_path / "b")
    lazy = source.load()
    for start, stop in [(0, 4), (4, 9)]:
        copy.append(lazy.isel(draw=slice(start, stop)))
    loaded = copy.load(lazy=False)
    xr.testing.assert_identical(loaded, posterior)
    assert loaded["Lambda"].encoding["chunks"][1] == 4


def test_draws_are_stored_uncompressed(tmp_path):
    """Draws are written without a compression codec (they barely compress; module
    docstring), also after an append, and load back exactly."""
    import zarr

    ds = small(4)
    st = PosteriorStore(tmp_path / "s.zarr")
    st.append(ds.isel(draw=slice(0, 2)))
    st.append(ds.isel(draw=slice(2, 4)))
    for name in ds.data_vars:
        arr = zarr.open_array(str(tmp_path / "s.zarr"), path=f"draws/{name}", mode="r")
        codecs = (arr.compressor,) if zarr.__version__.startswith("2.") else arr.compressors
        assert all(c is None for c in codecs), (name, codecs)
    xr.testing.assert_equal(st.load(lazy=False).drop_vars("draw"), ds.drop_vars("draw"))
