"""In-memory draws of every chain -> one labelled ``xarray.Dataset``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..run.draws import DrawStore
from .schema import DESCRIPTIONS, PARAM_DIMS, Coordinates


def draws_to_dataset(
    stores: list[DrawStore], coords: Coordinates,
    dims: Mapping[str, tuple[str, ...]] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Stack the draws of all chains into a Dataset with dims ``chain, draw, ...``.

    ``dims`` and ``descriptions`` of the recorded parameters default to those of
    the default model (:data:`~pymegalmm.results.schema.PARAM_DIMS`).
    """
    dims_of = PARAM_DIMS if dims is None else dims
    described = DESCRIPTIONS if descriptions is None else descriptions
    n_draws = {len(s) for s in stores}
    if len(n_draws) != 1:
        raise ValueError(f"chains have different numbers of draws: {sorted(n_draws)}")
    n = n_draws.pop()
    data_vars = {}
    for name in stores[0].names:
        var_dims = ("chain", "draw", *dims_of[name])
        if n:
            values = np.stack([np.stack(s.draws[name]) for s in stores])
        else:
            shape = [len(stores), 0] + [len(coords.for_dims([d])[d]) for d in dims_of[name]]
            values = np.empty(shape)
        data_vars[name] = xr.Variable(var_dims, values,
                                      attrs={"description": described[name]})
    for name in stores[0].functions:
        per_chain = [xr.concat(s.functions[name], dim="draw") for s in stores]
        data_vars[name] = xr.concat(per_chain, dim="chain").variable
    all_dims = {d for v in data_vars.values() for d in v.dims}
    ds_coords: dict[str, object] = {"chain": np.arange(len(stores)), "draw": np.arange(n)}
    ds_coords.update(coords.for_dims(d for d in all_dims if d not in ("chain", "draw")))
    if coords.level_effect and "level" in all_dims:
        ds_coords["level_effect"] = ("level", coords.level_effect)
    return xr.Dataset(data_vars, coords=ds_coords)
