"""Recorded draws of one chain, held in memory until they are saved or cleared."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr


class DrawStore:
    """Recorded draws of one chain, kept in memory as lists of arrays.

    Every draw is added whole by :meth:`add` (parameters, function values and the
    iteration it was recorded at) or not at all, so the lists always have the same
    length.  ``iterations`` says at which iteration each draw was recorded: draws
    of different chains are matched by it.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.draws: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        self.functions: dict[str, list[xr.DataArray]] = {}
        self.iterations: list[int] = []
        self.mean_sums: dict[str, np.ndarray] = {}
        self.n_means = 0

    def __len__(self) -> int:
        return len(self.iterations)

    def add(self, iteration: int, values: Mapping[str, np.ndarray],
            functions: Mapping[str, xr.DataArray] | None = None,
            means: Mapping[str, np.ndarray] | None = None) -> None:
        """Append one whole draw: every recorded parameter, every function's value, and
        its contribution to the running posterior means."""
        for name in self.names:
            self.draws[name].append(np.array(values[name], copy=True))
        for name, value in (functions or {}).items():
            self.functions.setdefault(name, []).append(value)
        for name, value in (means or {}).items():
            if name in self.mean_sums:
                self.mean_sums[name] += value
            else:
                self.mean_sums[name] = np.array(value, dtype=float, copy=True)
        if means:
            self.n_means += 1
        self.iterations.append(int(iteration))

    def extend(self, other: DrawStore) -> None:
        """Append the draws and means of ``other`` (later draws of the same chain)."""
        for name in self.names:
            self.draws[name].extend(other.draws[name])
        for name, values in other.functions.items():
            self.functions.setdefault(name, []).extend(values)
        for name, value in other.mean_sums.items():
            if name in self.mean_sums:
                self.mean_sums[name] += value
            else:
                self.mean_sums[name] = np.array(value, dtype=float, copy=True)
        self.n_means += other.n_means
        self.iterations.extend(other.iterations)

    def keep(self, indices: Iterable[int]) -> None:
        """Keep only the draws at ``indices`` (in that order); means are left as they are."""
        idx = list(indices)
        for name in self.names:
            values = self.draws[name]
            self.draws[name] = [values[i] for i in idx]
        for name, values in self.functions.items():
            self.functions[name] = [values[i] for i in idx]
        self.iterations = [self.iterations[i] for i in idx]

    def select(self, indices: Iterable[int]) -> DrawStore:
        """A new store with the draws at ``indices`` (sharing the arrays), without means."""
        idx = list(indices)
        out = DrawStore(self.names)
        out.draws = {name: [values[i] for i in idx] for name, values in self.draws.items()}
        out.functions = {name: [values[i] for i in idx] for name, values in self.functions.items()}
        out.iterations = [self.iterations[i] for i in idx]
        return out

    def clear_means(self) -> None:
        """Forget the running sums of the posterior means."""
        self.mean_sums.clear()
        self.n_means = 0

    def clear(self) -> None:
        """Forget all recorded draws and means."""
        self.keep([])
        self.functions.clear()
        self.clear_means()
