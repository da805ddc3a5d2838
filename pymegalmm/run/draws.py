"""Recorded draws of one chain, held in memory until they are saved or cleared."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr


class DrawStore:
    """Recorded draws of one chain, kept in memory as lists of arrays."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.draws: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        self.functions: dict[str, list[xr.DataArray]] = {}
        self.mean_sums: dict[str, np.ndarray] = {}
        self.n_means = 0

    def __len__(self) -> int:
        return len(next(iter(self.draws.values()))) if self.draws else 0

    def add(self, values: dict[str, np.ndarray]) -> None:
        """Append one draw of every recorded parameter."""
        for name in self.names:
            self.draws[name].append(np.array(values[name], copy=True))

    def add_function(self, name: str, value: xr.DataArray) -> None:
        """Append one draw of a user function's value."""
        self.functions.setdefault(name, []).append(value)

    def add_to_mean(self, name: str, value: np.ndarray) -> None:
        """Accumulate ``value`` into the running posterior mean of ``name``."""
        if name in self.mean_sums:
            self.mean_sums[name] += value
        else:
            self.mean_sums[name] = np.array(value, dtype=float, copy=True)

    def clear(self) -> None:
        """Forget all recorded draws and means."""
        for name in self.names:
            self.draws[name].clear()
        self.functions.clear()
        self.mean_sums.clear()
        self.n_means = 0
