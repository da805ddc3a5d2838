"""Tests of :mod:`pymegalmm.summaries`: posterior means, HPD intervals, functions of draws."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.summaries import hpd_interval, posterior_function, posterior_mean

# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------


def coda_hpd(samples: np.ndarray, prob: float) -> tuple[float, float]:
    """Brute-force transcription of coda's ``HPDinterval.mcmc`` for one parameter.

    Python's ``round`` rounds halves to even, like R's ``round`` (IEC 60559).
    """
    vals = sorted(np.asarray(samples).ravel().tolist())
    n = len(vals)
    gap = max(1, min(n - 1, round(n * prob)))
    best, init = None, 0
    for i in range(n - gap):  # R: init <- 1:(nsamp - gap); which.min -> first minimum
        width = vals[i + gap] - vals[i]
        if best is None or width < best:
            best, init = width, i
    return vals[init], vals[init + gap]


def brute_hpd(da: xr.DataArray, prob: float) -> np.ndarray:
    """Loop over every element of ``da`` (dims chain, draw, ...): array (2, ...)."""
    other = [d for d in da.dims if d not in ("chain", "draw")]
    x = da.transpose(*other, "chain", "draw").values
    out = np.empty((2, *x.shape[: len(other)]))
    for idx in np.ndindex(*x.shape[: len(other)]):
        lo, hi = coda_hpd(x[idx], prob)
        out[(0, *idx)] = lo
        out[(1, *idx)] = hi
    return out


def random_draws(
    rng: np.random.Generator, chains: int, draws: int, ties: bool, name: str = "theta"
) -> xr.DataArray:
    """Labelled draws with dims (chain, draw, trait, factor); integers when ``ties``."""
    shape = (chains, draws, 3, 2)
    if ties:
        x = rng.integers(0, 4, size=shape).astype(float)
    else:
        x = rng.standard_normal(shape) * rng.uniform(0.5, 3, size=(1, 1, 3, 2))
        x = x + rng.gamma(1.0, size=shape)  # skewed, so the interval is not central
    return xr.DataArray(
        x,
        dims=("chain", "draw", "trait", "factor"),
        coords={
            "chain": np.arange(chains),
            "draw": np.arange(draws),
            "trait": ["T1", "T2", "T3"],
            "factor": ["F1", "F2"],
        },
        name=name,
        attrs={"description": "test parameter"},
    )


@pytest.fixture(scope="module")
def post() -> xr.Dataset:
    """A real (small) posterior: 2 chains x 20 draws."""
    sim = datasets.simulate_factor_data(n=100, t=6, k_true=2, seed=1)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=4,
                h2_divisions=10, burn=20, thin=2, seed=1, chains=2, verbose=False)
    m.sample(60, progress=False)
    return m.posterior


# --------------------------------------------------------------------------------------
# hpd_interval
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("chains,draws", [(1, 5), (2, 5), (1, 2), (3, 9), (2, 27), (4, 50)])
@pytest.mark.parametrize("ties", [True, False])
def test_hpd_matches_coda_brute_force(prob, chains, draws, ties):
    rng = np.random.default_rng(1000 * chains + draws + int(100 * prob) + ties)
    da = random_draws(rng, chains, draws, ties)
    got = hpd_interval(da, prob)
    assert isinstance(got, xr.DataArray)
    assert got.dims == ("bound", "trait", "factor")
    np.testing.assert_array_equal(got.values, brute_hpd(da, prob))
    n = chains * draws
    assert got.attrs["hpd_probability"] == max(1, min(n - 1, round(n * prob))) / n


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.95])
def test_hpd_dataset_matches_brute_force_per_variable(prob):
    rng = np.random.default_rng(7)
    ds = xr.Dataset({
        "a": random_draws(rng, 2, 11, ties=True, name="a"),
        "b": random_draws(rng, 2, 11, ties=False, name="b").isel(factor=0, drop=True),
    }, attrs={"source": "test"})
    got = hpd_interval(ds, prob)
    assert isinstance(got, xr.Dataset)
    assert set(got.data_vars) == {"a", "b"}
    assert "chain" not in got.dims and "draw" not in got.dims
    assert got.attrs == {"source": "test"}
    for name in ds.data_vars:
        assert got[name].dims[0] == "bound"
        np.testing.assert_array_equal(got[name].values, brute_hpd(ds[name], prob))
        xr.testing.assert_identical(got[name], hpd_interval(ds[name], prob))


def test_hpd_labels_and_attrs():
    da = random_draws(np.random.default_rng(2), 2, 30, ties=False)
    da = da.assign_coords(trait_group=("trait", ["x", "y", "x"]))
    got = hpd_interval(da)
    assert list(got["bound"].values) == ["lower", "upper"]
    assert list(got["trait"].values) == ["T1", "T2", "T3"]
    assert list(got["trait_group"].values) == ["x", "y", "x"]
    assert "chain" not in got.coords and "draw" not in got.coords
    assert got.name == "theta"
    assert got.attrs["description"] == "test parameter"
    assert (got.sel(bound="lower") <= got.sel(bound="upper")).all()


def test_hpd_rounds_half_to_even_like_r():
    # n * prob = 5 * 0.5 = 2.5: R's round gives 2 (half to even), not 3.
    da = xr.DataArray(np.array([[0.0, 1.0, 2.0, 10.0, 11.0]]), dims=("chain", "draw"))
    got = hpd_interval(da, 0.5)
    np.testing.assert_array_equal(got.values, [0.0, 2.0])  # gap 3 would give [0, 10]
    assert got.attrs["hpd_probability"] == 2 / 5
    # 4.5 -> 4 (and the first minimum wins among equally wide windows)
    da = xr.DataArray(np.array([[0.0, 1.0, 2.0, 3.0, 4.0]]), dims=("chain", "draw"))
    np.testing.assert_array_equal(hpd_interval(da, 0.9).values, [0.0, 4.0])


def test_hpd_differs_from_arviz_by_one_order_statistic():
    """n = 27, prob = 0.95: n * prob = 25.65.

    coda (and pymegalmm) span round(25.65) = 26 order statistics, ArviZ's ``hdi``
    floor(25.65) = 25.  With 27 draws 0, 1, ..., 25, 25.5 the only 26-gap window is
    [0, 25.5], while ArviZ's shortest 25-gap window is [1, 25.5] (width 24.5 < 25):
    the lower bounds differ by one order statistic.
    """
    az = pytest.importorskip("arviz")
    x = np.append(np.arange(26.0), 25.5)
    da = xr.DataArray(x[None, :], dims=("chain", "draw"), name="theta")
    ours = hpd_interval(da, 0.95)
    np.testing.assert_array_equal(ours.values, [0.0, 25.5])
    np.testing.assert_array_equal(ours.values, coda_hpd(x, 0.95))
    # ArviZ 1.x renamed hdi_prob to prob (and returns a DataArray for a DataArray)
    prob = {"hdi_prob": 0.95} if int(az.__version__.split(".")[0]) < 1 else {"prob": 0.95}
    theirs = az.hdi(da.to_dataset(), **prob)["theta"].values
    np.testing.assert_array_equal(theirs, [1.0, 25.5])
    xs = np.sort(x)
    assert np.searchsorted(xs, theirs[0]) == np.searchsorted(xs, ours.values[0]) + 1


def test_hpd_contains_mean_for_symmetric_unimodal_draws():
    rng = np.random.default_rng(3)
    centre = np.array([-5.0, 0.0, 2.0, 40.0])
    scale = np.array([0.1, 1.0, 3.0, 10.0])
    x = centre + scale * rng.standard_normal((4, 500, 4))
    da = xr.DataArray(x, dims=("chain", "draw", "trait"))
    for prob in (0.5, 0.9, 0.95):
        got = hpd_interval(da, prob)
        mean = da.mean(("chain", "draw"))
        assert (got.sel(bound="lower") < mean).all()
        assert (got.sel(bound="upper") > mean).all()
    # roughly the central interval of a normal: +-1.96 sd for 95 %
    half = (got.sel(bound="upper") - got.sel(bound="lower")).values / 2
    np.testing.assert_allclose(half / scale, 1.96, rtol=0.1)


def test_hpd_real_posterior(post):
    got = hpd_interval(post, 0.9)
    assert set(got.data_vars) == set(post.data_vars)
    assert got["G"].dims == ("bound", "component", "trait", "trait2")
    assert got["Lambda"].attrs["description"] == post["Lambda"].attrs["description"]
    np.testing.assert_array_equal(got["h2"].values, brute_hpd(post["h2"], 0.9))


def test_hpd_nan_and_errors():
    x = np.random.default_rng(4).standard_normal((2, 10, 2))
    x[1, 3, 0] = np.nan
    got = hpd_interval(xr.DataArray(x, dims=("chain", "draw", "trait")))
    assert np.isnan(got.values[:, 0]).all() and np.isfinite(got.values[:, 1]).all()
    da = xr.DataArray(x, dims=("chain", "draw", "trait"))
    with pytest.raises(ValueError, match="prob"):
        hpd_interval(da, 0.0)
    with pytest.raises(ValueError, match="prob"):
        hpd_interval(da, 1.5)
    with pytest.raises(ValueError, match="at least 2"):
        hpd_interval(da.isel(chain=[0], draw=[0]))
    with pytest.raises(ValueError, match="sample dims"):
        hpd_interval(xr.DataArray(np.zeros((3, 2)), dims=("a", "b")))
    with pytest.raises(TypeError):
        hpd_interval(np.zeros((2, 10)))


# --------------------------------------------------------------------------------------
# posterior_mean
# --------------------------------------------------------------------------------------


def test_posterior_mean_single_object(post):
    got = posterior_mean(post)
    xr.testing.assert_allclose(got, post.mean(("chain", "draw")))
    assert got["Lambda"].attrs["description"] == post["Lambda"].attrs["description"]
    da = posterior_mean(post["G"])
    assert da.dims == ("component", "trait", "trait2")
    assert da.attrs == post["G"].attrs
    xr.testing.assert_allclose(posterior_mean(post["U"], dims="draw"), post["U"].mean("draw"))


def test_posterior_mean_unequal_chunks_weighted_by_draws(post):
    chunks = [post.isel(draw=slice(0, 3)), post.isel(draw=slice(3, None))]  # 3 and 17 draws
    got = posterior_mean(chunks)
    concat = xr.concat(chunks, dim="draw")
    xr.testing.assert_allclose(got, concat.mean(("chain", "draw")))
    xr.testing.assert_allclose(got, post.mean(("chain", "draw")))
    # R's load_posterior_param: equal-weight average of chunk means -- different
    equal = (chunks[0].mean(("chain", "draw")) + chunks[1].mean(("chain", "draw"))) / 2
    assert not np.allclose(got["Lambda"].values, equal["Lambda"].values)
    assert got["Lambda"].attrs["description"] == post["Lambda"].attrs["description"]

    # DataArrays, chunks of chains of different lengths
    da = post["h2"]
    parts = [da.isel(chain=0, draw=slice(0, 15)).expand_dims("chain"),
             da.isel(chain=[1], draw=slice(0, 4)), da.isel(chain=[1], draw=slice(4, 5))]
    got = posterior_mean(parts)
    assert isinstance(got, xr.DataArray) and got.name == "h2"
    pooled = np.concatenate([p.values.reshape(-1, *p.shape[2:]) for p in parts]).mean(axis=0)
    np.testing.assert_allclose(got.values, pooled)
    equal = sum(p.mean(("chain", "draw")) for p in parts) / 3
    assert not np.allclose(got.values, equal.values)


def test_posterior_mean_errors(post):
    with pytest.raises(ValueError, match="at least one"):
        posterior_mean([])
    with pytest.raises(ValueError, match="not found"):
        posterior_mean(post["h2"], dims=("sample",))
    with pytest.raises(TypeError):
        posterior_mean([post, post["h2"]])
    with pytest.raises(ValueError, match="coordinates"):
        posterior_mean([post["Lambda"].isel(trait=[0, 1]), post["Lambda"].isel(trait=[2, 3])])
    with pytest.raises(TypeError):
        posterior_mean(np.zeros((2, 3)))


# --------------------------------------------------------------------------------------
# posterior_function
# --------------------------------------------------------------------------------------


def test_posterior_function_labels_and_values(post):
    got = posterior_function(post, lambda d: d["G"].isel(component=0).sel(trait="T01"))
    assert got.dims == ("chain", "draw", "trait2")
    assert list(got["trait2"].values) == list(post["trait2"].values)
    assert got["trait"].item() == "T01" and got["component"].item() == "ID"
    np.testing.assert_array_equal(got["chain"].values, post["chain"].values)
    np.testing.assert_array_equal(got["draw"].values, post["draw"].values)
    assert got.name == "G"
    xr.testing.assert_identical(got, post["G"].isel(component=0).sel(trait="T01"))


def test_posterior_function_manual_computation(post):
    def genetic_correlation(d: xr.Dataset) -> xr.DataArray:
        g = d["G"].sel(component="ID")
        sd = np.sqrt(np.diag(g.values))
        return g / np.outer(sd, sd)

    got = posterior_function(post, genetic_correlation)
    assert got.dims == ("chain", "draw", "trait", "trait2")
    g = post["G"].sel(component="ID").values
    for c in range(g.shape[0]):
        for k in range(g.shape[1]):
            sd = np.sqrt(np.diag(g[c, k]))
            np.testing.assert_allclose(got.values[c, k], g[c, k] / np.outer(sd, sd))
    np.testing.assert_allclose(got.sel(trait="T02", trait2="T02"), 1.0)


def test_posterior_function_arrays_and_scalars(post):
    got = posterior_function(post, lambda d: d["Lambda"].values @ d["Lambda"].values.T)
    assert got.dims == ("chain", "draw", "dim_0", "dim_1")
    lam = post["Lambda"].values
    np.testing.assert_allclose(got.values, np.einsum("cdkt,cdjt->cdkj", lam, lam))
    named = posterior_function(post, lambda d: d["Lambda"].values @ d["Lambda"].values.T,
                               dims=("factor", "factor2"))
    assert named.dims == ("chain", "draw", "factor", "factor2")
    total = posterior_function(post, lambda d: float(d["h2"].sum()))
    assert total.dims == ("chain", "draw")
    np.testing.assert_allclose(total.values, post["h2"].sum(("component", "trait")).values)
    renamed = posterior_function(post["Lambda"], lambda d: d.sel(factor="F1"), dims=("t",))
    assert renamed.dims == ("chain", "draw", "t")
    assert list(renamed["t"].values) == list(post["trait"].values)


def test_posterior_function_errors(post):
    calls = iter(range(10**6))
    with pytest.raises(ValueError, match="first draw"):
        posterior_function(post, lambda d: np.zeros(1 + next(calls) % 2))
    with pytest.raises(TypeError, match="Dataset"):
        posterior_function(post, lambda d: d[["h2"]])
    with pytest.raises(ValueError, match="names"):
        posterior_function(post, lambda d: d["h2"], dims=("a",))
    with pytest.raises(ValueError, match="sample dims"):
        posterior_function(xr.Dataset({"x": ("a", [1.0, 2.0])}), lambda d: d["x"])
