"""User functions evaluated on every recorded draw (R MegaLMM's ``posterior_FUN``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from ..errors import PosteriorFunctionError


def evaluate_function(
    fn: Callable[[xr.Dataset], xr.DataArray | np.ndarray | float], draw: xr.Dataset, name: str
) -> xr.DataArray:
    """Evaluate a user function on one draw and return it as a DataArray.

    Raises
    ------
    PosteriorFunctionError
        When ``fn`` raises; the message names the function (the original error is
        chained).
    """
    try:
        value = fn(draw)
    except Exception as exc:
        raise PosteriorFunctionError(
            f"posterior function {name!r} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(value, xr.DataArray):
        return value.drop_vars([c for c in ("chain", "draw") if c in value.coords])
    value = np.asarray(value, dtype=float)
    if value.ndim:
        dims = tuple(f"{name}_dim_{i}" for i in range(value.ndim))
        return xr.DataArray(value, dims=dims)
    return xr.DataArray(value)
