"""A run's results: the labelled posterior, posterior means, predictions, genetic values.

Reads the chains' in-memory draws and the run's on-disk store; never runs the sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from ..core.state import ChainState
from ..design import Design
from ..errors import InputError
from ..regressions import (
    ExtraRegression,
    genetic_values_with_markers,
    regression_draws,
    regression_names,
)
from ..run.chain import Chain
from ..run.draws import DrawStore
from ..run.run_dir import RunDirectory
from .dataset import draws_to_dataset
from .derived import add_derived
from .prediction import check_kind, expected_draws, summarise
from .schema import Coordinates
from .summaries import posterior_function

#: Above this size (bytes) per posterior variable, G and R are not added to ``posterior``.
DERIVED_MEMORY_LIMIT = 2**30


class RunResults:
    """Results of the chains of one model (see :class:`pymegalmm.MegaLMM` for each method).

    Parameters
    ----------
    chains : the model's chains.
    chain_ids : their numbers (the ``chain`` coordinate; default 0, 1, ...).
    store : the run's folder (committed draws and means; none until the model saves).
    coords : names of the dims.
    dims, descriptions : of the recordable parameters.
    regression : the model's extra regressions, used by the predictions (or None).
    """

    def __init__(self, chains: list[Chain], store: RunDirectory, coords: Coordinates,
                 dims: Mapping[str, tuple[str, ...]], descriptions: Mapping[str, str],
                 chain_ids: list[int] | None = None,
                 regression: ExtraRegression | None = None) -> None:
        self.chains, self.store, self.coords = chains, store, coords
        self.chain_ids = list(range(len(chains))) if chain_ids is None else list(chain_ids)
        self.dims, self.descriptions = dims, descriptions
        self.regression = regression
        self._warned_covariances = False

    def _common(self) -> list[DrawStore]:
        """Each chain's in-memory draws at the iterations every chain recorded.

        Chains record at the same iterations; they differ only after an interrupted
        ``sample()`` (a chain ahead of the others, or a draw dropped because a
        posterior function raised), and then only the draws common to all are used.
        """
        stores = [c.recorder.draws for c in self.chains]
        common = set(stores[0].iterations).intersection(*(s.iterations for s in stores[1:]))
        if all(len(s) == len(common) for s in stores):
            return stores
        return [s.select(i for i, it in enumerate(s.iterations) if it in common)
                for s in stores]

    @property
    def n_draws(self) -> int:
        """Recorded draws per chain in memory (those recorded by every chain)."""
        return len(self._common()[0])

    def _no_draws(self, where: str) -> str:
        chain = self.chains[0]
        return (f"no draws {where} yet: call sample() past burn-in (burn = "
                f"{chain.recorder.burn}, iterations run = {chain.nrun})")

    def covariances_fit(self, n_draws: int) -> bool:
        """Whether G and R for ``n_draws`` draws per chain stay within DERIVED_MEMORY_LIMIT."""
        t, m = len(self.coords.trait), len(self.coords.component)
        return len(self.chains) * n_draws * m * t * t * 8 <= DERIVED_MEMORY_LIMIT

    def posterior(self) -> xr.Dataset:
        """Draws in memory plus ``U``, ``h2`` (and ``G``, ``R`` when small enough)."""
        if self.n_draws == 0:
            raise RuntimeError(self._no_draws("in memory") + "; draws saved with "
                               "save_posterior_chunk() are in load_posterior()")
        ds = draws_to_dataset(self._common(), self.coords, self.dims, self.descriptions
                              ).assign_coords(chain=self.chain_ids)
        fit = self.covariances_fit(self.n_draws)
        if not fit and not self._warned_covariances:
            self._warned_covariances = True  # once per model, not at every chunk
            warnings.warn(
                "G and R would take more than 1 GiB; not added to posterior (use "
                "pymegalmm.results.derived.add_derived on a selection of traits)",
                stacklevel=3,
            )
        return add_derived(ds, ["U", "h2"] + (["G", "R"] if fit else []))

    def _means_dataset(self, sums: Mapping[str, np.ndarray], count: int) -> xr.Dataset:
        da = xr.DataArray(sums["Eta_mean"] / count, dims=("row", "trait"),
                          coords={"row": self.coords.row, "trait": self.coords.trait},
                          attrs={"description": self.descriptions["Eta_mean"]})
        return xr.Dataset({"Eta_mean": da})

    def memory_sums(self) -> dict[str, np.ndarray]:
        """Running sums of the posterior means over the draws in memory (all chains)."""
        draws = [c.recorder.draws for c in self.chains if c.recorder.draws.n_means]
        return {name: sum(s.mean_sums[name] for s in draws) for name in draws[0].mean_sums
                } if draws else {}

    def memory_means(self) -> xr.Dataset:
        """Posterior means of the draws in memory."""
        return self._means_dataset(self.memory_sums(), self.n_means_in_memory())

    def n_means_in_memory(self) -> int:
        """Draws summed in the in-memory means (all chains)."""
        return sum(c.recorder.draws.n_means for c in self.chains)

    def posterior_means(self) -> xr.Dataset:
        """Means over every recorded draw of every chain, in memory and on disk."""
        disk, n_disk = self.store.mean_sums()
        n_mem = self.n_means_in_memory()
        if n_mem + n_disk == 0:
            raise RuntimeError(self._no_draws("recorded"))
        sums = {k: disk.get(k, 0.0) + v for k, v in self.memory_sums().items()} or disk
        return self._means_dataset(sums, n_disk + n_mem)

    def reload_posterior(self) -> xr.Dataset:
        """Saved chunks and draws in memory, in one Dataset read into memory."""
        parts = []
        if self.store.n_draws:
            parts.append(self.store.load(lazy=False))
        if self.n_draws:
            parts.append(self.posterior())
        return self._join(parts)

    def _join(self, parts: list[xr.Dataset]) -> xr.Dataset:
        """Saved draws then draws in memory along ``draw``, numbered from 0."""
        if not parts:
            raise RuntimeError(self._no_draws("recorded"))
        ds = xr.concat(parts, dim="draw", data_vars="all", coords="minimal",
                       compat="override", join="override") if len(parts) > 1 else parts[0]
        return ds.assign_coords(draw=np.arange(ds.sizes["draw"]))

    def _memory_draws(self, names: list[str]) -> xr.Dataset:
        """The draws in memory of ``names`` (``U`` derived), without ``G``, ``R``, ``h2``."""
        ds = draws_to_dataset(self._common(), self.coords, self.dims, self.descriptions
                              ).assign_coords(chain=self.chain_ids)
        if "U" in names:
            ds = add_derived(ds, ["U"])
        return ds[names]

    def posterior_function(self, fn: Callable[[xr.Dataset], Any]) -> xr.DataArray:
        """``fn`` evaluated on every draw of the run."""
        return posterior_function(self.reload_posterior(), fn)

    def genetic_values(self) -> pd.DataFrame:
        """Posterior mean of ``U`` over every draw of the run, levels x traits."""
        if self.store.n_draws == 0 and self.n_draws == 0:
            raise RuntimeError(self._no_draws("recorded"))
        if self.store.n_draws:  # summed chunk by chunk: the stored draws stay on disk
            parts = [self.store.load(["U"])["U"]]
            if self.n_draws:
                parts.append(self._memory_draws(["U"])["U"])
            total = sum(p.sizes["draw"] for p in parts)
            mean = sum(p.sum("draw") for p in parts) / total
            return mean.mean("chain").compute().to_pandas()
        return self._memory_draws(["U"])["U"].mean(("chain", "draw")).to_pandas()

    def draws_of(self, names: list[str], traits: slice = slice(None)) -> xr.Dataset:
        """Draws of ``names`` for a block of traits, saved and in memory, read into memory.

        ``U`` is derived when not stored.  Raises when a needed parameter is not recorded.
        """
        recorded = set(self.chains[0].recorder.draws.names) | {"U"}
        missing = [n for n in names if n not in recorded]
        if missing:
            raise InputError(f"this needs the draws of {missing}, which are not recorded: add "
                             "them to record= when creating the model")
        parts = []
        if self.store.n_draws:
            parts.append(self.store.load(names, lazy=True).isel(trait=traits).load())
        if self.n_draws:
            parts.append(self._memory_draws(names).isel(trait=traits))
        return self._join(parts)

    def predict(self, design: Design, new_data: pd.DataFrame | None, kind: str, prob: float,
                interval: str) -> pd.DataFrame | xr.DataArray:
        """``E[Y]`` for the fitted rows or ``new_data`` (see :meth:`pymegalmm.MegaLMM.predict`)."""
        kind, prob, interval = check_kind(kind, prob, interval)
        if new_data is None and kind == "mean":
            return self.posterior_means()["Eta_mean"].to_pandas()
        extra, X2 = self.regression, None
        if new_data is None:
            X, rows = design.X1, pd.Index(self.coords.row, name="row")
            Z = sp.csr_matrix(sp.hstack([eff.Z for eff in design.random]))
        elif extra is not None:  # rows whose level has covariates only: Z U = 0
            X, rows = design.fixed_for(new_data), new_data.index
            X2 = extra.rows_for(new_data, "new_data")
            Z = self._random_for_known(design, new_data)
        else:
            X, Z, rows = design.fixed_for(new_data), design.random_for(new_data), new_data.index
        draws = expected_draws(self.draws_of, X, Z, rows, self.coords.trait,
                               fitted_rows=new_data is None, n_draws=self.n_draws_total)
        if extra is not None:  # + X2 (B2_F Lambda + B2_R); fitted rows: F holds X2 B2_F
            fitted = new_data is None
            if fitted:
                X2 = self.chains[0].data.regressions.X2
            names = regression_names(extra, with_factors=not fitted)
            if names:
                draws = draws + regression_draws(self.draws_of(names), X2,
                                                 with_factors=not fitted)
        return summarise(draws, kind, prob, interval, "row")

    def _random_for_known(self, design: Design, new_data: pd.DataFrame) -> sp.csr_matrix:
        """``Z`` of new rows with zero rows for levels of ``by`` that are not levels of its
        random effect (lines known by their covariates only)."""
        by = self.regression.by if self.regression is not None else None
        effects = [e for e in design.random if e.group == by]
        if by is None or not effects or by not in new_data.columns:
            return design.random_for(new_data)
        known = new_data[by].astype(str).isin([str(v) for v in effects[0].levels]).to_numpy()
        n_cols = sum(e.n_levels for e in design.random)
        idx = np.flatnonzero(known)
        if not idx.size:
            return sp.csr_matrix((len(new_data), n_cols))
        place = sp.csr_matrix((np.ones(idx.size), (idx, np.arange(idx.size))),
                              shape=(len(new_data), idx.size))
        return sp.csr_matrix(place @ design.random_for(new_data.iloc[idx]))

    def genetic_value_draws(self, kind: str, prob: float, interval: str
                            ) -> pd.DataFrame | xr.DataArray:
        """``U`` as requested (see :meth:`pymegalmm.MegaLMM.genetic_values`)."""
        kind, prob, interval = check_kind(kind, prob, interval)
        extra = self.regression
        if extra is not None and extra.by is not None and self._by_is_effect():
            names = regression_names(extra, with_factors=True)
            ds = self.draws_of(["U", *names])
            U = genetic_values_with_markers(ds["U"], extra, ds)
            return summarise(U, kind, prob, interval, "level") if kind != "mean" else (
                U.mean(("chain", "draw")).to_pandas())
        if kind == "mean":
            return self.genetic_values()
        return summarise(self.draws_of(["U"])["U"], kind, prob, interval, "level")

    def _by_is_effect(self) -> bool:
        """Whether the regressions' ``by`` is the grouping of the model's one random effect."""
        return (len(self.coords.component) == 1 and self.regression is not None
                and self.coords.component[0] == self.regression.by)

    @property
    def n_draws_total(self) -> int:
        """Draws of all chains, saved and in memory."""
        return (self.store.n_draws + self.n_draws) * len(self.chains)

    def save_chunk(self, states: list[ChainState], burn: int, spec: Mapping[str, Any],
                   static: Mapping[str, xr.Dataset], info: Mapping[str, Any]) -> int:
        """Commit the draws in memory, the posterior-mean sums and the chains' ``states`` to
        the run folder, then free them; returns the draws per chain written.

        Every chain must be at the same iteration; draws recorded by some chains only
        (their iteration was interrupted in another) are dropped.
        """
        n = self.n_draws
        draws = self.posterior() if n else None
        self.store.commit(draws=draws, mean_sums=self.memory_sums(),
                          n_means=self.n_means_in_memory(), states=states, burn=burn,
                          spec=spec, static=static, info=info)
        self.clear(disk=False)
        return n

    def clear(self, disk: bool = True, states: list[ChainState] | None = None,
              burn: int = 0, spec: Mapping[str, Any] | None = None) -> None:
        """Forget the draws in memory and, with ``disk``, the committed ones (a new commit
        of ``states`` with no draws, when the model owns its folder)."""
        for c in self.chains:
            c.recorder.draws.clear()
        if disk and self.store.owned and states is not None:
            self.store.commit(draws=None, mean_sums=None, n_means=0, states=states,
                              burn=burn, spec=spec, clear=True)

    def estimate_memory(self, n_iter: int, record: Iterable[str]) -> int:
        """Bytes of the draws the next ``n_iter`` iterations will record in memory."""
        sizes = {"trait": len(self.coords.trait), "factor": len(self.coords.factor),
                 "fixed": len(self.coords.fixed), "level": len(self.coords.level),
                 "component": len(self.coords.component), "row": len(self.coords.row)}
        sizes["trait2"] = sizes["trait"]
        chain = self.chains[0]
        recorded = chain.recorder.n_recorded(chain.nrun, n_iter)
        dims = {name: self.dims[name] for name in record}
        dims.update({"U": ("level", "trait"), "h2": ("component", "trait")})
        if self.covariances_fit(self.n_draws + recorded):
            dims.update({"G": ("component", "trait", "trait2"), "R": ("trait", "trait2")})
        per_draw = sum(8 * int(np.prod([sizes[d] for d in ds])) for ds in dims.values())
        return per_draw * recorded * len(self.chains)
