"""A fit as ArviZ data: ``InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x).

:func:`to_arviz` puts a posterior and, when given, the sampler's statistics per
draw, the data, the design and posterior predictive draws in the groups ArviZ
expects (``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``,
``posterior_predictive``), so that ``arviz.summary``, ``arviz.rhat``,
``arviz.ess``, ``arviz.plot_trace`` and the rest work on a MegaLMM fit.

========================  ===================================================
installed                 :func:`to_arviz` returns
========================  ===================================================
ArviZ 0.x (Python 3.10+)  ``arviz.InferenceData``
ArviZ 1.x (Python 3.12+)  ``xarray.DataTree`` (ArviZ 1.x works on DataTrees)
no ArviZ                  ``xarray.DataTree`` (needs xarray >= 2024.10)
========================  ===================================================

The same groups in either case: ``tree["posterior"]`` / ``idata.posterior`` and so on.

ArviZ 1.x renamed some arguments: ``hdi_prob`` is ``prob`` (``az.hdi``) or
``ci_prob`` (``az.summary``), and its tail ESS defaults to the 11% and 89%
quantiles instead of 5% and 95% (pass ``prob=(0.05, 0.95)`` to ``az.ess`` for the
number :func:`pymegalmm.results.tables.ess_tail` gives).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from ..errors import InputError, InputTypeError, LabelError
from .schema import SAMPLE_STATS

__all__ = ["GROUPS", "arviz_major_version", "to_arviz"]

#: The groups :func:`to_arviz` fills, in ArviZ's order.
GROUPS: tuple[str, ...] = ("posterior", "posterior_predictive", "sample_stats",
                           "observed_data", "constant_data")

_SAMPLE = ("chain", "draw")


def arviz_major_version() -> int | None:
    """Major version of the installed ArviZ (0 or 1), None when it is not installed.

    Read from the package metadata: ArviZ is not imported.
    """
    if importlib.util.find_spec("arviz") is None:
        return None
    return int(version("arviz").split(".")[0])


def _draws(ds: Any, what: str, like: xr.Dataset | None) -> xr.Dataset:
    """A Dataset of draws with dims ``chain, draw`` first and their coordinates.

    ``like``: the posterior, whose chain and draw sizes and labels ``ds`` must share.
    """
    if not isinstance(ds, xr.Dataset):
        raise InputTypeError(f"{what} must be an xarray.Dataset with dims (chain, draw, ...), "
                             f"got {type(ds).__name__}")
    if "draw" not in ds.dims:
        raise InputError(f"{what} has no 'draw' dim (dims: {list(ds.dims)}); pass draws, "
                         "not their means")
    if "chain" not in ds.dims:
        ds = ds.expand_dims("chain")
    for dim in _SAMPLE:
        if like is not None and ds.sizes[dim] != like.sizes[dim]:
            raise InputError(f"{what} has {ds.sizes[dim]} {dim}s, the posterior "
                             f"{like.sizes[dim]}")
        if like is not None:
            ds = ds.assign_coords({dim: like[dim].values})
        elif dim not in ds.coords:
            ds = ds.assign_coords({dim: np.arange(ds.sizes[dim])})
    return ds.transpose(*_SAMPLE, ...)


def _check_labels(dim: str, labels: list, posterior: xr.Dataset, what: str) -> None:
    """``labels`` along ``dim`` must be the posterior's, when the posterior has that dim."""
    if dim not in posterior.coords:
        return
    expected = posterior[dim].values.tolist()
    if labels != expected:
        if len(labels) == len(expected) and set(labels) == set(expected):
            return  # same labels in another order: put in the posterior's
        raise LabelError(f"{what} has {dim} labels {labels[:5]}{' ...' if len(labels) > 5 else ''}"
                         f"; the posterior has {expected[:5]}"
                         f"{' ...' if len(expected) > 5 else ''}")


def _observed(observed: Any, posterior: xr.Dataset) -> xr.Dataset:
    """Y as ``observed_data``: variable ``Y`` with dims ``row, trait``."""
    if isinstance(observed, xr.DataArray):
        if set(observed.dims) != {"row", "trait"}:
            raise InputError(f"observed must have dims (row, trait), got {observed.dims}")
        da = observed.transpose("row", "trait")
    elif isinstance(observed, pd.DataFrame):
        da = xr.DataArray(observed.to_numpy(dtype=float), dims=("row", "trait"),
                          coords={"row": observed.index.to_numpy(),
                                  "trait": observed.columns.to_numpy()})
    else:
        raise InputTypeError("observed must be a pandas.DataFrame (rows x traits, e.g. Y), got "
                             f"{type(observed).__name__}")
    for dim in ("trait", "row"):
        if dim in da.coords:
            _check_labels(dim, da[dim].values.tolist(), posterior, "observed")
    for dim in ("trait", "row"):  # the posterior's order and labels
        if dim in posterior.coords and dim in da.coords and da.sizes[dim] == posterior.sizes[dim]:
            da = da.sel({dim: posterior[dim].values}).assign_coords({dim: posterior[dim].values})
    return xr.Dataset({"Y": da.rename("Y")})


def _constant(constant: Any) -> xr.Dataset:
    """Named arrays as ``constant_data``; arrays without dims get ``<name>_dim_<i>``."""
    if not isinstance(constant, Mapping):
        raise InputTypeError("constant must be a dict of name -> xarray.DataArray or array, got "
                             f"{type(constant).__name__}")
    out = {}
    for name, value in constant.items():
        if not isinstance(name, str):
            raise InputTypeError(f"constant names must be str, got {name!r}")
        if isinstance(value, xr.DataArray):
            out[name] = value
        elif isinstance(value, pd.DataFrame | pd.Series):
            frame = value.to_frame() if isinstance(value, pd.Series) else value
            dims = [ax.name if isinstance(ax.name, str) else f"{name}_dim_{i}"
                    for i, ax in enumerate((frame.index, frame.columns))]
            da = xr.DataArray(frame.to_numpy(), dims=dims,
                              coords={dims[0]: frame.index.to_numpy(),
                                      dims[1]: frame.columns.to_numpy()})
            out[name] = da.squeeze(dims[1], drop=True) if isinstance(value, pd.Series) else da
        else:
            arr = np.asarray(value)
            out[name] = xr.DataArray(arr, dims=[f"{name}_dim_{i}" for i in range(arr.ndim)])
    return xr.Dataset(out)


def to_arviz(posterior: xr.Dataset, *, sample_stats: xr.Dataset | None = None,
             observed: pd.DataFrame | None = None,
             constant: Mapping[str, xr.DataArray | ArrayLike] | None = None,
             posterior_predictive: xr.Dataset | None = None) -> Any:
    """A fit as ArviZ data: ``arviz.InferenceData`` with ArviZ 0.x, else ``xarray.DataTree``.

    Parameters
    ----------
    posterior : xarray.Dataset
        Posterior draws (``m.posterior`` or a loaded posterior, lazy or not), dims
        ``chain, draw`` then the quantity's.  A posterior without ``chain`` (one
        chain selected) gets one.  Its statistics per draw
        (:data:`~pymegalmm.results.schema.SAMPLE_STATS`: ``lp``) go to
        ``sample_stats``, where ArviZ expects them.
    sample_stats : xarray.Dataset, optional
        Statistics per draw (e.g. ``lp``, the log density of ``Eta``, total
        precisions), dims ``chain, draw`` (the posterior's sizes; its chain and draw
        labels are used); a variable also in the posterior replaces it.
    observed : pandas.DataFrame, optional
        The data ``Y`` (rows x traits), stored as ``observed_data["Y"]`` with dims
        ``row, trait`` (traits in the posterior's order; labels must match the
        posterior's ``row`` and ``trait`` labels when it has them).
    constant : dict of str to xarray.DataArray or array, optional
        Design and labels as ``constant_data``, e.g. ``{"X1": DataArray(X1,
        dims=("row", "fixed"))}`` or level names.  DataArrays keep their dims;
        pandas objects keep their index and columns; arrays get dims
        ``<name>_dim_0, <name>_dim_1, ...``.
    posterior_predictive : xarray.Dataset, optional
        Draws of predictions (e.g. ``m.predict(kind="draws")`` as a Dataset), dims
        ``chain, draw`` like the posterior.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        With ArviZ 0.x installed, ``InferenceData``; with ArviZ 1.x (which works on
        ``DataTree``) or without ArviZ, a ``DataTree`` with the same groups: the
        groups given among ``posterior``, ``posterior_predictive``,
        ``sample_stats``, ``observed_data``, ``constant_data``.

    Raises
    ------
    InputTypeError
        If an argument has the wrong type.
    InputError
        If draws lack the ``draw`` dim or do not match the posterior's chains and draws.
    LabelError
        If ``observed``'s trait or row labels are not the posterior's.
    ImportError
        Without ArviZ, if xarray is older than 2024.10 (no ``xarray.DataTree``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from pymegalmm.results.arviz_export import to_arviz
    >>> post = xr.Dataset({"h2": (("chain", "draw", "trait"),
    ...                           np.random.default_rng(0).uniform(size=(2, 100, 3)))})
    >>> data = to_arviz(post)  # InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x / none)
    >>> dict(data["posterior"].sizes)
    {'chain': 2, 'draw': 100, 'trait': 3}
    """
    post = _draws(posterior, "posterior", None)
    stats = [name for name in SAMPLE_STATS if name in post.data_vars]
    if stats:
        moved = post[stats]
        post = post.drop_vars(stats)
        sample_stats = (moved if sample_stats is None else
                        moved.drop_vars([n for n in stats if n in getattr(
                            sample_stats, "data_vars", ())]).merge(
                                _draws(sample_stats, "sample_stats", moved)))
    groups: dict[str, xr.Dataset] = {"posterior": post}
    if posterior_predictive is not None:
        groups["posterior_predictive"] = _draws(posterior_predictive, "posterior_predictive",
                                                post)
    if sample_stats is not None:
        groups["sample_stats"] = _draws(sample_stats, "sample_stats", post)
    if observed is not None:
        groups["observed_data"] = _observed(observed, post)
    if constant is not None:
        groups["constant_data"] = _constant(constant)
    major = arviz_major_version()
    if major == 0:
        import arviz

        return arviz.InferenceData(**groups)
    if not hasattr(xr, "DataTree"):
        raise ImportError("to_arviz without ArviZ returns an xarray.DataTree, which needs "
                          f"xarray >= 2024.10 (installed: {xr.__version__}); install arviz or "
                          "upgrade xarray")
    return xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
