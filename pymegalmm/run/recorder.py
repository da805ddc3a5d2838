"""Recording policy of a chain: which iterations are kept, what is kept, on which scale.

After ``burn`` iterations, every ``thin``-th iteration is recorded: the chosen
parameters on the user's scale (:class:`~pymegalmm.run.transform.UserScale`),
the statistics of the draw (``lp``, :data:`~pymegalmm.results.schema.SAMPLE_STATS`),
the running sum of the predictions ``E[Y]``, and the user's functions of the draw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..core.data import ModelData
from ..core.state import ChainState
from ..errors import SamplerError
from ..results.derived import add_derived
from ..results.functions import evaluate_function
from ..results.schema import Coordinates
from .draws import DrawStore
from .transform import UserScale


class Recorder:
    """Records the draws of one chain into its :class:`~pymegalmm.run.draws.DrawStore`.

    Parameters
    ----------
    names : parameters recorded per draw.
    burn, thin : iterations discarded first; then one kept every ``thin``.
    transform : the map to the user's scale.
    coords, dims : names and dims of the parameters (for user functions).
    functions : name -> function of a one-draw Dataset, evaluated on every draw.
    label : names the chain in error messages.
    """

    def __init__(self, names: list[str], burn: int, thin: int, transform: UserScale,
                 coords: Coordinates, dims: Mapping[str, tuple[str, ...]],
                 functions: Mapping[str, Callable[[xr.Dataset], Any]] | None = None,
                 label: str = "") -> None:
        self.burn, self.thin = int(burn), int(thin)
        self.transform = transform
        self.coords, self.dims = coords, dims
        self.functions = dict(functions or {})
        self.draws = DrawStore(names)
        self.label = f"{label}: " if label else ""

    def is_recorded(self, nrun: int) -> bool:
        """Whether the draw after iteration ``nrun`` is recorded."""
        return nrun > self.burn and (nrun - self.burn) % self.thin == 0

    def n_recorded(self, start: int, n_iter: int) -> int:
        """Draws recorded over iterations ``start + 1 .. start + n_iter``."""
        return sum(self.is_recorded(i) for i in range(start + 1, start + int(n_iter) + 1))

    def record(self, s: ChainState, d: ModelData) -> None:
        """Record the chain's current state, whole or not at all.

        Everything (parameters, predictions, user functions) is computed first and
        added to the draws only when all of it succeeded: a failing function or an
        interrupt leaves the recorded draws as they were.
        """
        values, expected = self.transform.record_values(s, d)
        values["lp"] = np.float64(self.transform.eta_log_density(s, d, expected))
        padded = self.transform.nan_padded(d)
        for name, value in [*values.items(), ("Eta_mean", expected)]:
            if name in padded:  # NaN by design where a parameter does not exist
                value = np.where(np.isnan(value), 0.0, value)
            if not np.all(np.isfinite(value)):
                raise SamplerError(f"{self.label}iteration {s.nrun}: {name} has non-finite "
                                   "values on the user's scale")
        functions = {}
        if self.functions:
            draw = self.draw_dataset(values)
            for name, fn in self.functions.items():
                functions[name] = evaluate_function(fn, draw, name)
        self.draws.add(s.nrun, values, functions, {"Eta_mean": expected})

    def draw_dataset(self, values: dict[str, np.ndarray]) -> xr.Dataset:
        """One draw as a labelled Dataset with the derived quantities."""
        data_vars = {name: (self.dims[name], value) for name, value in values.items()}
        all_dims = {d for dims in self.dims.values() for d in dims}
        ds = xr.Dataset(data_vars, coords=self.coords.for_dims(all_dims))
        return add_derived(ds.expand_dims(chain=1, draw=1)).isel(chain=0, draw=0)
