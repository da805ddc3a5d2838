"""Posterior summaries: means, HPD intervals and functions of every draw.

Python counterparts of R MegaLMM's ``get_posterior_mean``, ``get_posterior_HPDinterval``
and ``get_posterior_FUN``, working on the labelled posterior returned by
:attr:`pymegalmm.MegaLMM.posterior` (an :class:`xarray.Dataset` with dims
``chain, draw`` followed by named dims, see :mod:`pymegalmm.posterior`).

==============================  ==========================================
pymegalmm                       R MegaLMM
==============================  ==========================================
:func:`posterior_mean`          ``get_posterior_mean`` / ``load_posterior_param``
:func:`hpd_interval`            ``get_posterior_HPDinterval`` (coda ``HPDinterval``)
:func:`posterior_function`      ``get_posterior_FUN``
==============================  ==========================================
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr

__all__ = ["SAMPLE_DIMS", "hpd_interval", "posterior_function", "posterior_mean"]

#: Dims that index posterior draws.
SAMPLE_DIMS: tuple[str, str] = ("chain", "draw")

XrObj = TypeVar("XrObj", xr.Dataset, xr.DataArray)


def _as_dims(dims: Hashable | Sequence[Hashable]) -> tuple[Hashable, ...]:
    """Turn a single dim name or a sequence of names into a tuple."""
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        return (dims,)
    return tuple(dims)


def _check_xr(obj: Any, what: str = "obj") -> None:
    """Raise TypeError unless ``obj`` is an xarray Dataset or DataArray."""
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise TypeError(
            f"{what} must be an xarray.Dataset or xarray.DataArray, not {type(obj).__name__}"
        )


def _check_dims_present(obj: xr.Dataset | xr.DataArray, dims: tuple[Hashable, ...]) -> None:
    """Raise ValueError when some of ``dims`` are not dims of ``obj``."""
    missing = [d for d in dims if d not in obj.dims]
    if missing:
        raise ValueError(f"dims {missing} not found; available dims: {list(obj.dims)}")


def posterior_mean(
    obj: XrObj | Sequence[XrObj],
    dims: Hashable | Sequence[Hashable] = SAMPLE_DIMS,
) -> XrObj:
    """Posterior mean over all draws of all chains.

    Equivalent of R MegaLMM's ``get_posterior_mean``.  ``obj`` may also be a
    list of chunks of draws (e.g. posterior batches read back one at a time);
    the result is then the mean of all their draws pooled, i.e. chunk means
    weighted by each chunk's number of draws.  R MegaLMM's
    ``load_posterior_param``/``get_posterior_mean`` average the chunk means
    with *equal* weights, which is wrong (biased towards the draws of small
    chunks) whenever chunks hold different numbers of draws; this function
    always returns the mean of the concatenation.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray, or a list of them
        Posterior draws with the dims in ``dims``.  Chunks in a list must all be
        of the same type and have identical coordinates along every other dim.
    dims : str or sequence of str, default ("chain", "draw")
        Dims averaged over.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as the input(s), without ``dims``; attributes (e.g.
        ``description``) are kept.  Missing values (NaN) are skipped, so with a
        list each element is the mean of its non-missing pooled draws.

    Raises
    ------
    TypeError
        If an input is not an xarray object or the chunks are of mixed types.
    ValueError
        If a dim in ``dims`` is missing, the list is empty or chunk coordinates differ.
    """
    red = _as_dims(dims)
    if isinstance(obj, (xr.Dataset, xr.DataArray)):
        _check_dims_present(obj, red)
        return obj.mean(red, keep_attrs=True)
    if not isinstance(obj, (list, tuple)):
        _check_xr(obj)
    chunks = list(obj)
    if not chunks:
        raise ValueError("posterior_mean needs at least one chunk")
    for i, c in enumerate(chunks):
        _check_xr(c, f"chunk {i}")
        _check_dims_present(c, red)
    kind = type(chunks[0])
    if any(type(c) is not kind for c in chunks):
        raise TypeError("chunks must be all Datasets or all DataArrays")
    if len(chunks) == 1:
        return chunks[0].mean(red, keep_attrs=True)
    sums = [c.sum(red, skipna=True) for c in chunks]
    counts = [c.notnull().sum(red) for c in chunks]
    try:
        sums = list(xr.align(*sums, join="exact"))
        counts = list(xr.align(*counts, join="exact"))
    except ValueError as err:
        raise ValueError(f"chunks have different coordinates outside {red}: {err}") from err
    total = sum(sums[1:], sums[0])
    n = sum(counts[1:], counts[0])
    out = total / n.where(n > 0)
    first = chunks[0]
    out.attrs = dict(first.attrs)
    if isinstance(out, xr.Dataset):
        for name in out.data_vars:
            out[name].attrs = dict(first[name].attrs)
    else:
        out.name = first.name
    return out


def _hpd_gap(n: int, prob: float) -> int:
    """coda's interval width in order statistics: ``max(1, min(n - 1, round(n * prob)))``.

    R's ``round`` (IEC 60559) rounds halves to even, as :func:`numpy.rint` does.
    """
    return int(max(1, min(n - 1, int(np.rint(n * prob)))))


def _hpd_dataarray(da: xr.DataArray, prob: float) -> xr.DataArray:
    """HPD interval of one DataArray over its sample dims (see :func:`hpd_interval`)."""
    sample = [d for d in SAMPLE_DIMS if d in da.dims]
    if not sample:
        raise ValueError(
            f"{da.name or 'DataArray'} has none of the sample dims {SAMPLE_DIMS}: {da.dims}"
        )
    other = [d for d in da.dims if d not in sample]
    x = da.transpose(*other, *sample).values
    shape = x.shape[: len(other)]
    x = x.reshape(*shape, -1)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"need at least 2 draws for an HPD interval, got {n}")
    gap = _hpd_gap(n, prob)
    x = np.sort(x, axis=-1)
    width = x[..., gap:] - x[..., : n - gap]
    init = np.argmin(width, axis=-1)[..., None]
    lower = np.take_along_axis(x, init, axis=-1)[..., 0]
    upper = np.take_along_axis(x, init + gap, axis=-1)[..., 0]
    res = np.stack([lower, upper])
    if np.issubdtype(x.dtype, np.inexact):
        bad = np.isnan(x).any(axis=-1)
        if bad.any():
            res = np.where(bad, np.nan, res)
    coords = {
        k: v.variable
        for k, v in da.coords.items()
        if k not in sample and not set(v.dims) & set(sample)
    }
    coords["bound"] = np.array(["lower", "upper"])
    attrs = dict(da.attrs)
    attrs["hpd_probability"] = gap / n
    return xr.DataArray(res, dims=("bound", *other), coords=coords, name=da.name, attrs=attrs)


def hpd_interval(obj: XrObj, prob: float = 0.95) -> XrObj:
    """Highest posterior density interval of every element, over all draws of all chains.

    Equivalent of R MegaLMM's ``get_posterior_HPDinterval``, which calls coda's
    ``HPDinterval`` on the pooled draws.  For each element the ``n`` pooled
    ``chain x draw`` samples are sorted into ``x``; the interval spans
    ``gap = max(1, min(n - 1, round(n * prob)))`` order statistics, and is the
    shortest such window, ``[x[init], x[init + gap]]`` with
    ``init = argmin(x[gap:] - x[:n - gap])`` (the first one in case of ties).
    As in R (IEC 60559), ``round`` rounds halves to even (``round(2.5) = 2``).
    All elements are handled at once (one sort along the sample axis).

    ArviZ's :func:`arviz.hdi` uses ``floor(n * prob)`` for the width instead, so
    whenever the fractional part of ``n * prob`` exceeds one half (e.g. ``n = 27``,
    ``prob = 0.95``) its upper or lower bound can differ from this one (and
    from R MegaLMM) by one order statistic.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Posterior draws with dims ``chain`` and/or ``draw`` (pooled) and any others.
        Dataset variables without a sample dim are left out.
    prob : float, default 0.95
        Target probability content, in (0, 1].  The actual content is
        ``gap / n`` (stored in the ``hpd_probability`` attribute).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``; the sample dims are replaced by a leading dim
        ``bound`` with coordinates ``["lower", "upper"]``.  Other coordinates
        and attributes are kept.  Elements with a missing (NaN) draw get NaN bounds.

    Raises
    ------
    ValueError
        If ``prob`` is not in (0, 1], there are fewer than 2 draws, or no sample dim.
    """
    _check_xr(obj)
    prob = float(prob)
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob must be in (0, 1], got {prob}")
    if isinstance(obj, xr.DataArray):
        return _hpd_dataarray(obj, prob)
    out = {
        name: _hpd_dataarray(var, prob)
        for name, var in obj.data_vars.items()
        if any(d in var.dims for d in SAMPLE_DIMS)
    }
    if not out:
        raise ValueError(f"no variable has any of the sample dims {SAMPLE_DIMS}")
    ds = xr.Dataset(coords={"bound": np.array(["lower", "upper"])}, attrs=dict(obj.attrs))
    return ds.assign(out)


def posterior_function(
    ds: xr.Dataset | xr.DataArray,
    fn: Callable[[Any], Any],
    dims: Sequence[Hashable] | None = None,
) -> xr.DataArray:
    """Evaluate a function of the parameters on every posterior draw.

    Equivalent of R MegaLMM's ``get_posterior_FUN``.  For each chain and draw,
    ``fn`` receives the one-draw Dataset (``ds.isel(chain=c, draw=d)``: the
    ``chain`` and ``draw`` dims removed, every other coordinate kept) and
    returns a DataArray, an array or a scalar of the same shape for every draw.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Posterior with dims ``chain`` and/or ``draw``, e.g.
        :attr:`pymegalmm.MegaLMM.posterior`.  A DataArray is passed to ``fn``
        as a one-draw DataArray.
    fn : callable
        ``fn(one_draw) -> DataArray | array_like``, e.g.
        ``lambda d: d["G"].isel(component=0).sel(trait="T01")``.
    dims : sequence of str, optional
        Names of the result's dims.  Required to name the dims of plain
        array results meaningfully (else ``dim_0, dim_1, ...``); for DataArray
        results they rename the returned dims (same number needed).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, *result dims)``; coordinates of ``ds`` along
        ``chain``/``draw`` plus the coordinates of the first draw's result (including
        scalar coordinates such as a selected ``trait``); the name and attributes
        of the first result when it is a DataArray.

    Raises
    ------
    TypeError
        If ``fn`` returns a Dataset.
    ValueError
        If ``ds`` has no sample dim, the results of different draws differ in
        dims or shape, or ``dims`` has the wrong length.
    """
    _check_xr(ds, "ds")
    sample = [d for d in SAMPLE_DIMS if d in ds.dims]
    if not sample:
        raise ValueError(f"ds has none of the sample dims {SAMPLE_DIMS}: {tuple(ds.dims)}")
    sizes = [ds.sizes[d] for d in sample]
    values: np.ndarray | None = None
    first: Any = None
    rdims: tuple[Hashable, ...] = ()
    for idx in itertools.product(*(range(s) for s in sizes)):
        res = fn(ds.isel(dict(zip(sample, idx, strict=True)), drop=True))
        if isinstance(res, xr.Dataset):
            raise TypeError("fn must return a DataArray, an array or a scalar, not a Dataset")
        if isinstance(res, xr.DataArray):
            these = tuple(res.dims)
            arr = res.values
        else:
            arr = np.asarray(res)
            these = tuple(f"dim_{i}" for i in range(arr.ndim))
        if values is None:
            first, rdims = res, these
            clash = [d for d in these if d in SAMPLE_DIMS]
            if clash:
                raise ValueError(f"fn's result must not have sample dims, got {clash}")
            values = np.empty((*sizes, *arr.shape), dtype=arr.dtype)
        elif these != rdims or arr.shape != values.shape[len(sizes):]:
            where = dict(zip(sample, idx, strict=True))
            raise ValueError(
                f"fn returned dims {these} shape {arr.shape} at {where}"
                f" but {rdims} shape {values.shape[len(sizes):]} at the first draw"
            )
        values[idx] = arr
    assert values is not None
    coords: dict[Hashable, Any] = {d: ds[d].variable for d in sample if d in ds.coords}
    out = xr.DataArray(values, dims=(*sample, *rdims), coords=coords)
    if isinstance(first, xr.DataArray):
        out = out.assign_coords(first.coords)
        out.name = first.name
        out.attrs = dict(first.attrs)
    if dims is not None:
        names = tuple(dims)
        if len(names) != len(rdims):
            raise ValueError(f"dims has {len(names)} names but the result has {len(rdims)} dims")
        if names != rdims:
            out = out.rename(dict(zip(rdims, names, strict=True)))
    return out
