"""Tests of :mod:`pymegalmm.plots`: trace plots (multi-page PDF) and heatmaps."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pymegalmm.plots import heatmap, traceplot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def pdf_pages(path) -> int:
    """Number of pages of a PDF file: ``/Type /Page`` objects, not ``/Pages``."""
    data = path.read_bytes()
    return data.count(b"/Type /Page") - data.count(b"/Type /Pages")


def lambda_draws(chains: int = 3, draws: int = 12, factors: int = 3,
                 traits: int = 5) -> xr.DataArray:
    """Fake Lambda draws whose posterior mean |value| grows with the trait index."""
    rng = np.random.default_rng(0)
    means = np.arange(1, traits + 1) * np.where(np.arange(traits) % 2, -1.0, 1.0)
    x = means + 0.01 * rng.standard_normal((chains, draws, factors, traits))
    return xr.DataArray(
        x,
        dims=("chain", "draw", "factor", "trait"),
        coords={"chain": np.arange(chains), "draw": np.arange(draws),
                "factor": [f"F{k + 1}" for k in range(factors)],
                "trait": [f"T{j + 1:02d}" for j in range(traits)]},
        name="Lambda",
    )


def lines_per_axes(fig: Figure) -> list[int]:
    return [len(ax.lines) for ax in fig.axes]


# --------------------------------------------------------------------------------------
# traceplot
# --------------------------------------------------------------------------------------


def test_traceplot_one_page_per_factor(tmp_path):
    da = lambda_draws()
    file = tmp_path / "Lambda.pdf"
    figs = traceplot(da, file=file)
    assert len(figs) == 3 and all(isinstance(f, Figure) for f in figs)
    assert pdf_pages(file) == 3
    for k, fig in enumerate(figs):
        assert len(fig.axes) == 5
        assert lines_per_axes(fig) == [3] * 5  # one line per chain
        assert fig.axes[0].get_title() == f"factor=F{k + 1}, trait=T01"
        np.testing.assert_array_equal(fig.axes[2].lines[1].get_ydata(),
                                      da.isel(chain=1, factor=k, trait=2).values)
        np.testing.assert_array_equal(fig.axes[2].lines[1].get_xdata(), da["draw"].values)
    # written to file: not kept open by pyplot
    assert plt.get_fignums() == []


def test_traceplot_top_selects_largest(tmp_path):
    da = lambda_draws(traits=7)
    figs = traceplot(da, top=3, file=tmp_path / "top.pdf")
    assert pdf_pages(tmp_path / "top.pdf") == 3
    for k, fig in enumerate(figs):
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == [f"factor=F{k + 1}, trait=T{j:02d}" for j in (7, 6, 5)]
        assert lines_per_axes(fig) == [3, 3, 3]
    # per facet: make factor F2's largest element a different trait
    da2 = da.copy()
    da2.loc[{"factor": "F2", "trait": "T01"}] = 100.0
    figs = traceplot(da2, top=1)
    assert [f.axes[0].get_title() for f in figs] == [
        "factor=F1, trait=T07", "factor=F2, trait=T01", "factor=F3, trait=T07"]


def test_traceplot_without_facet_pages(tmp_path):
    da = lambda_draws(chains=2, traits=6).rename(factor="component")  # 3 x 6 = 18 elements
    da = da * xr.DataArray([1.0, 2.0, 3.0], dims="component")
    file = tmp_path / "h2.pdf"
    figs = traceplot(da, file=file, n_per_page=4)  # "factor" absent: plain pages
    assert len(figs) == 5 and pdf_pages(file) == 5
    assert [len(f.axes) for f in figs] == [4, 4, 4, 4, 2]
    assert all(n == 2 for f in figs for n in lines_per_axes(f))
    assert figs[0].axes[1].get_title() == "component=F1, trait=T02"
    # facet=None with a top: the largest elements overall
    figs = traceplot(da, facet=None, top=2)
    assert len(figs) == 1
    assert [ax.get_title() for ax in figs[0].axes] == [
        "component=F3, trait=T06", "component=F3, trait=T05"]
    # a facet with more elements than n_per_page continues on further pages
    figs = traceplot(da, facet="component", n_per_page=4)
    assert [len(f.axes) for f in figs] == [4, 2] * 3
    # pyplot figures when not writing a file
    assert len(plt.get_fignums()) == 1 + 6


def test_traceplot_scalar_elements_and_real_dims():
    da = lambda_draws().isel(trait=0, drop=True).rename("delta")
    figs = traceplot(da)
    assert len(figs) == 3
    assert [ax.get_title() for ax in figs[1].axes] == ["factor=F2"]
    one = traceplot(da.isel(factor=0, drop=True))
    assert len(one) == 1 and one[0].axes[0].get_title() == "delta"


def test_traceplot_errors():
    da = lambda_draws()
    with pytest.raises(ValueError, match="chain"):
        traceplot(da.isel(chain=0))
    with pytest.raises(ValueError, match="draw"):
        traceplot(da.isel(draw=0))
    with pytest.raises(ValueError, match="unknown facet"):
        traceplot(da, facet="fctor")
    with pytest.raises(ValueError, match="sample dim"):
        traceplot(da, facet="chain")
    with pytest.raises(ValueError, match="top"):
        traceplot(da, top=0)
    with pytest.raises(ValueError, match="n_per_page"):
        traceplot(da, n_per_page=0)
    with pytest.raises(TypeError):
        traceplot(da.values)


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "pymegalmm\[plot\]"'):
        traceplot(lambda_draws())
    with pytest.raises(ImportError, match=r'pip install "pymegalmm\[plot\]"'):
        heatmap(np.eye(2))


# --------------------------------------------------------------------------------------
# heatmap
# --------------------------------------------------------------------------------------


def test_heatmap_image_equals_input_with_nan_masked():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4))
    x[2, 1] = np.nan
    df = pd.DataFrame(x, index=[f"r{i}" for i in range(6)], columns=list("abcd"))
    fig = heatmap(df, title="test")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    img = ax.images[0].get_array()
    assert np.ma.isMaskedArray(img)
    np.testing.assert_array_equal(np.ma.getmaskarray(img), np.isnan(x))
    np.testing.assert_array_equal(img.filled(np.nan), x)
    vmin, vmax = ax.images[0].get_clim()
    assert vmin == -vmax == -np.nanmax(np.abs(x))
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in ax.get_yticklabels()] == list(df.index)
    assert ax.get_title() == "test"
    assert len(fig.axes) == 2  # image and colour bar


def test_heatmap_dataarray_array_and_options():
    n = 100
    k = np.eye(n) + 0.1
    da = xr.DataArray(k, dims=("level", "level2"),
                      coords={"level": [f"L{i}" for i in range(n)],
                              "level2": [f"L{i}" for i in range(n)]})
    fig = heatmap(da, symmetric=False, cmap="viridis")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), k)
    assert ax.images[0].get_clim() == (0.1, 1.1)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert 20 <= len(labels) <= 40 and labels[:2] == ["L0", "L3"]  # thinned out
    assert ax.get_ylabel() == "level" and ax.get_xlabel() == "level2"

    fig2, ax2 = plt.subplots()
    out = heatmap(np.array([[True, False], [False, True]]), ax=ax2, labels=False)
    assert out is fig2
    np.testing.assert_array_equal(ax2.images[0].get_array(), [[1.0, 0.0], [0.0, 1.0]])
    assert list(ax2.get_xticks()) == [] and list(ax2.get_yticks()) == []
    # all-zero/all-NaN matrices still plot
    heatmap(np.zeros((3, 3)))
    heatmap(np.full((2, 2), np.nan))


def test_heatmap_errors():
    with pytest.raises(ValueError, match="2-D"):
        heatmap(np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        heatmap(xr.DataArray(np.zeros((2, 2, 2))))
