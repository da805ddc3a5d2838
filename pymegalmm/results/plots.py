"""Diagnostic plots: trace plots of posterior draws and heatmaps of matrices.

Python counterparts of R MegaLMM's ``traceplot_array`` and ``Image``.  matplotlib
is an optional dependency, imported only when a plot is made
(``pip install "pymegalmm[plot]"``).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from .schema import PARAM_DIMS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["heatmap", "traceplot"]

#: Dims that index posterior draws.
_SAMPLE_DIMS: tuple[str, str] = ("chain", "draw")

#: Named dims a posterior variable can have (after chain, draw).
_POSTERIOR_DIMS: frozenset[str] = frozenset(
    itertools.chain.from_iterable(PARAM_DIMS.values())
) | {"trait2"}

#: Above this many rows or columns, heatmap tick labels are thinned out.
_MAX_LABELS = 40

_INSTALL_HINT = 'plotting needs matplotlib: pip install "pymegalmm[plot]"'


def _pyplot() -> Any:
    """Import and return ``matplotlib.pyplot``, with an install hint when it is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(_INSTALL_HINT) from err
    return plt


def _figure_class() -> type[Figure]:
    """Import and return :class:`matplotlib.figure.Figure` (not managed by pyplot)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(_INSTALL_HINT) from err
    return Figure


def _element_title(dims: list[Hashable], values: tuple[Any, ...]) -> str:
    """``"dim=value, dim=value"`` label of one element."""
    return ", ".join(f"{d}={v}" for d, v in zip(dims, values, strict=True))


def traceplot(
    da: xr.DataArray,
    facet: str | None = "factor",
    top: int | None = None,
    file: str | os.PathLike[str] | None = None,
    n_per_page: int = 16,
) -> list[Figure]:
    """Trace plots of the elements of a posterior array, one line per chain.

    Equivalent of R MegaLMM's ``traceplot_array``.  Each subplot shows one
    element (e.g. one loading ``Lambda[factor, trait]``) against ``draw``, one
    line per chain, titled with the element's coordinates.

    Parameters
    ----------
    da : xarray.DataArray
        Posterior draws with dims ``chain, draw`` and any others, e.g.
        ``model.posterior["Lambda"]``.
    facet : str or None, default "factor"
        Dim giving one page per value (e.g. one page per factor of ``Lambda``).
        When it is not a dim of ``da`` but is one of the posterior's dim names
        (e.g. the default ``"factor"`` for ``h2``), or is None, all elements are
        laid out on consecutive pages instead.  A facet holding more than
        ``n_per_page`` elements (after ``top``) continues on further pages.
    top : int, optional
        Keep only the ``top`` elements with the largest posterior mean absolute
        value (mean over chains and draws) in each facet, plotted in decreasing
        order; by default all elements are shown in their natural order.
    file : str or path-like, optional
        Write all pages to this multi-page PDF file (e.g. ``"Lambda.pdf"``).
        The figures are then created outside pyplot (not shown or kept open
        by it); without ``file`` they are pyplot figures, shown by notebooks.
    n_per_page : int, default 16
        Maximum number of subplots per page.

    Returns
    -------
    list of matplotlib.figure.Figure
        One figure per page.

    Raises
    ------
    TypeError
        If ``da`` is not a DataArray.
    ValueError
        If ``da`` lacks a ``chain`` or ``draw`` dim, ``facet`` is neither a dim
        of ``da`` nor a posterior dim name, ``top`` or ``n_per_page`` is not a
        positive integer, or there is nothing to plot.
    ImportError
        If matplotlib is not installed.
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"da must be an xarray.DataArray, not {type(da).__name__}")
    missing = [d for d in _SAMPLE_DIMS if d not in da.dims]
    if missing:
        raise ValueError(f"da must have dims 'chain' and 'draw'; missing {missing}: {da.dims}")
    if facet is not None:
        if facet in _SAMPLE_DIMS:
            raise ValueError(f"facet cannot be a sample dim ({facet!r})")
        if facet not in da.dims:
            if facet not in _POSTERIOR_DIMS:
                raise ValueError(
                    f"unknown facet {facet!r}: not a dim of da {tuple(da.dims)} "
                    f"nor a posterior dim {sorted(_POSTERIOR_DIMS)}"
                )
            facet = None
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
    if isinstance(n_per_page, bool) or int(n_per_page) != n_per_page or n_per_page < 1:
        raise ValueError(f"n_per_page must be a positive integer, got {n_per_page!r}")
    n_per_page = int(n_per_page)

    other = [d for d in da.dims if d not in (*_SAMPLE_DIMS, facet)]
    lead = ["chain", "draw"] + ([facet] if facet is not None else [])
    x = np.asarray(da.transpose(*lead, *other).values, dtype=float)
    n_chain, n_draw = x.shape[:2]
    n_facet = da.sizes[facet] if facet is not None else 1
    x = x.reshape(n_chain, n_draw, n_facet, -1)
    n_elem = x.shape[-1]
    if n_elem == 0 or n_facet == 0 or n_draw == 0:
        raise ValueError("nothing to plot: da has no elements or no draws")
    elements = list(itertools.product(*(da[d].values for d in other)))
    facet_values = da[facet].values if facet is not None else [None]

    pages: list[tuple[int, int, int, np.ndarray]] = []
    for f in range(n_facet):
        idx = np.arange(n_elem)
        if top is not None:
            with np.errstate(invalid="ignore"):
                score = np.abs(x[:, :, f, :].mean(axis=(0, 1)))
            idx = np.argsort(-score, kind="stable")[: int(top)]
        chunks = [idx[i : i + n_per_page] for i in range(0, len(idx), n_per_page)]
        pages.extend((f, p, len(chunks), c) for p, c in enumerate(chunks))

    per_page = max(len(c) for *_, c in pages)
    ncols = math.ceil(math.sqrt(per_page))
    nrows = math.ceil(per_page / ncols)
    figsize = (max(4.0, 3.0 * ncols), max(2.5, 2.2 * nrows + 0.6))
    if file is None:
        plt = _pyplot()

        def new_figure() -> Figure:
            return plt.figure(figsize=figsize, layout="constrained")
    else:
        figure_class = _figure_class()

        def new_figure() -> Figure:
            return figure_class(figsize=figsize, layout="constrained")

    draws = da["draw"].values
    chains = da["chain"].values
    name = str(da.name) if da.name is not None else "posterior"
    figures: list[Figure] = []
    for f, p, n_pages, chunk in pages:
        fig = new_figure()
        for i, e in enumerate(chunk):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            for c in range(n_chain):
                ax.plot(draws, x[c, :, f, e], lw=0.7, label=f"chain {chains[c]}")
            dims = ([facet] if facet is not None else []) + other
            vals = ((facet_values[f],) if facet is not None else ()) + tuple(elements[e])
            ax.set_title(_element_title(dims, vals) or name, fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0 and n_chain > 1:
                ax.legend(fontsize=6, loc="best")
        head = name if facet is None else f"{name}: {facet}={facet_values[f]}"
        if n_pages > 1:
            head += f" (page {p + 1}/{n_pages})"
        fig.suptitle(head, fontsize=10)
        figures.append(fig)

    if file is not None:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(file) as pdf:
            for fig in figures:
                pdf.savefig(fig)
    return figures


def _thinned_ticks(labels: np.ndarray | None) -> tuple[np.ndarray, list[str]] | None:
    """Tick positions and labels, every k-th one when there are more than ~40."""
    if labels is None:
        return None
    n = len(labels)
    step = max(1, math.ceil(n / _MAX_LABELS))
    pos = np.arange(0, n, step)
    return pos, [str(labels[i]) for i in pos]


def heatmap(
    matrix: pd.DataFrame | xr.DataArray | np.ndarray,
    title: str | None = None,
    ax: Axes | None = None,
    cmap: str | Colormap = "RdBu_r",
    symmetric: bool = True,
    labels: bool = True,
) -> Figure:
    """Show a matrix as an image with a colour bar.

    Equivalent of R MegaLMM's ``Image``: for a relationship matrix ``K``, an
    incidence table, a covariance ``G`` or a posterior mean of ``Lambda``.
    Missing values (NaN) are left blank.

    Parameters
    ----------
    matrix : pandas.DataFrame, xarray.DataArray or array_like
        Two-dimensional numeric (or boolean) data; rows are drawn top to bottom.
    title : str, optional
        Axes title.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; by default a new pyplot figure is created.
    cmap : str or matplotlib.colors.Colormap, default "RdBu_r"
        Colour map.
    symmetric : bool, default True
        Colour scale symmetric around 0, from ``-max|x|`` to ``max|x|``.
        Otherwise it spans the data's range.
    labels : bool, default True
        Label the rows and columns with the DataFrame's index/columns or the
        DataArray's coordinates when available (only every k-th label when
        there are more than about 40); False hides the tick labels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the image (that of ``ax`` when given).

    Raises
    ------
    ValueError
        If ``matrix`` is not two-dimensional or not numeric.
    ImportError
        If matplotlib is not installed.
    """
    row_labels: np.ndarray | None = None
    col_labels: np.ndarray | None = None
    row_name: Hashable | None = None
    col_name: Hashable | None = None
    if isinstance(matrix, pd.DataFrame):
        values = matrix.to_numpy(dtype=float, na_value=np.nan)
        row_labels, col_labels = np.asarray(matrix.index), np.asarray(matrix.columns)
        row_name, col_name = matrix.index.name, matrix.columns.name
    elif isinstance(matrix, xr.DataArray):
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-D, got dims {matrix.dims}")
        values = np.asarray(matrix.values, dtype=float)
        row_name, col_name = matrix.dims
        if row_name in matrix.coords:
            row_labels = np.asarray(matrix[row_name].values)
        if col_name in matrix.coords:
            col_labels = np.asarray(matrix[col_name].values)
    else:
        values = np.asarray(matrix, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {values.shape}")

    plt = _pyplot()
    import matplotlib

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    cm = cm.with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
    data = np.ma.masked_invalid(values)
    vmin = vmax = None
    if symmetric:
        finite = np.abs(values[np.isfinite(values)])
        m = float(finite.max()) if finite.size else 0.0
        m = m if m > 0 else 1.0
        vmin, vmax = -m, m

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    else:
        fig = ax.figure
    im = ax.imshow(data, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    fig.colorbar(im, ax=ax)
    if labels:
        rows, cols = _thinned_ticks(row_labels), _thinned_ticks(col_labels)
        if rows is not None:
            ax.set_yticks(rows[0], rows[1], fontsize=7)
        if cols is not None:
            ax.set_xticks(cols[0], cols[1], fontsize=7, rotation=90)
        if row_name is not None:
            ax.set_ylabel(str(row_name))
        if col_name is not None:
            ax.set_xlabel(str(col_name))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return fig
