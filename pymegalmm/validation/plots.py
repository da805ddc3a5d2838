"""Plots of simulation-based calibration: ECDF differences and rank histograms.

matplotlib is optional and imported only when a plot is made
(``pip install "pymegalmm[plot]"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..validate import check_float, check_int, check_names
from .uniformity import ecdf_band

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .sbc import SBCResult

__all__ = ["sbc_ecdf", "sbc_histogram"]

_INSTALL_HINT = ('SBC plots need matplotlib, the "plot" extra of pymegalmm: '
                 'pip install "pymegalmm[plot]"')


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float]) -> tuple[Figure, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    ncols = min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _select(result: SBCResult, quantities: Sequence[str] | None) -> list[str]:
    if quantities is None:
        return result.quantities
    if isinstance(quantities, str):
        quantities = [quantities]
    return check_names("quantities", quantities, result.quantities)


def sbc_ecdf(result: SBCResult, quantities: Sequence[str] | None = None, *,
             prob: float = 0.95, ncols: int = 4, panel_size: tuple[float, float] = (3.2, 2.6)
             ) -> Figure:
    """ECDF of the ranks minus the uniform CDF, one panel per quantity, with its band.

    Each line is one entry of the quantity (e.g. one trait's ``h2``); the grey
    area is the simultaneous band of Säilynoja et al. (2022) that holds a single
    entry's whole line with probability ``prob`` when ranks are uniform.  Lines
    above zero mean ranks too low (the posterior sits above the truth), below
    zero too high; a smile/frown shape means a posterior too narrow/too wide.

    Parameters
    ----------
    result : SBCResult
        What :func:`pymegalmm.validation.sbc` returned.
    quantities : sequence of str, optional
        Quantities to show (default all).
    prob : float
        Coverage of the band.
    ncols : int
        Panels per row.
    panel_size : (float, float)
        Width and height of one panel, inches.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot: save it with ``fig.savefig(...)``.
    """
    names = _select(result, quantities)
    prob = check_float("prob", prob, low=0.0, high=1.0, low_open=True, high_open=True)
    ncols = check_int("ncols", ncols, minimum=1)
    L = result.n_draws
    fig, axes = _figure(len(names), ncols, panel_size)
    for ax, name in zip(axes, names, strict=False):
        ranks = result.ranks[name]
        n = int(ranks.notna().sum().max())
        band = ecdf_band(n, L, prob)
        z = np.concatenate([[0.0], band.z, [1.0]])
        ax.fill_between(z, np.concatenate([[0.0], band.lower - band.z, [0.0]]),
                        np.concatenate([[0.0], band.upper - band.z, [0.0]]),
                        step="post", color="0.85", label=f"{prob:.0%} band")
        outside = 0
        for entry in ranks.columns:
            r = ranks[entry].dropna().to_numpy().astype(int)
            below = np.searchsorted(np.sort(r), np.arange(1, L + 1), side="left") / max(r.size, 1)
            diff = np.concatenate([[0.0], below - band.z, [0.0]])
            ax.step(z, diff, where="post", lw=0.8, alpha=0.7)
            outside += bool(np.any(below < band.lower - 1e-12) or
                            np.any(below > band.upper + 1e-12))
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_title(f"{name} ({outside}/{ranks.shape[1]} outside)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("fractional rank", fontsize=8)
        ax.set_ylabel("ECDF - uniform", fontsize=8)
    fig.suptitle(f"SBC: {len(result.ranks)} replications, {L} draws each", fontsize=10)
    return fig


def sbc_histogram(result: SBCResult, quantities: Sequence[str] | None = None, *,
                  bins: int | None = None, prob: float = 0.99, ncols: int = 4,
                  panel_size: tuple[float, float] = (3.2, 2.6)) -> Figure:
    """Histogram of the ranks of each quantity (entries pooled) with a binomial band.

    Each bar is the count of its bin per rank value it holds, so that uniform ranks
    give bars of equal height (the line) even when the bins hold unequal numbers of
    rank values.

    Parameters
    ----------
    result : SBCResult
        What :func:`pymegalmm.validation.sbc` returned.
    quantities : sequence of str, optional
        Quantities to show (default all).
    bins : int, optional
        Bins over ``0..L`` (default one per rank value up to 30 values, else
        ``result.settings["bins"]``).
    prob : float
        Pointwise coverage of the band of a bin's count under uniformity (entries of a
        quantity are pooled, so the band is only a guide).
    ncols : int
        Panels per row.
    panel_size : (float, float)
        Width and height of one panel, inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy import stats

    names = _select(result, quantities)
    prob = check_float("prob", prob, low=0.0, high=1.0, low_open=True, high_open=True)
    ncols = check_int("ncols", ncols, minimum=1)
    L = result.n_draws
    if bins is None:
        bins = L + 1 if L + 1 <= 30 else int(result.settings.get("bins") or 20)
    bins = check_int("bins", bins, minimum=2, maximum=L + 1)
    edges = np.floor(np.linspace(0, L + 1, bins + 1)).astype(int)
    values = np.diff(edges)  # rank values per bin
    width = values / (L + 1)
    fig, axes = _figure(len(names), ncols, panel_size)
    for ax, name in zip(axes, names, strict=False):
        r = result.ranks[name].to_numpy().ravel()
        r = r[~np.isnan(r)]
        counts = np.histogram(r, bins=edges)[0] / values
        lo = stats.binom.ppf((1 - prob) / 2, r.size, width) / values
        hi = stats.binom.ppf(1 - (1 - prob) / 2, r.size, width) / values
        x = np.arange(bins)
        ax.fill_between(np.r_[x - 0.5, bins - 0.5], np.r_[lo, lo[-1]], np.r_[hi, hi[-1]],
                        step="post", color="0.85")
        ax.bar(x, counts, width=0.9, color="C0")
        ax.axhline(r.size / (L + 1), color="k", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"rank (0..{L}), {bins} bins", fontsize=8)
        ax.set_ylabel("ranks per value", fontsize=8)
    fig.suptitle(f"SBC rank histograms: {len(result.ranks)} replications", fontsize=10)
    return fig
