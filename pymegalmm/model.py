"""The user-facing :class:`MegaLMM` object: data and formula in, labelled posterior out."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .control import Control
from .design import Design, build_design
from .linalg import sampling_threads
from .posterior import (
    DEFAULT_RECORD,
    DESCRIPTIONS,
    PARAM_DIMS,
    Coordinates,
    DrawStore,
    add_derived,
    draws_to_dataset,
    evaluate_function,
)
from .precompute import (
    DenseRandomEffects,
    DiagonalRandomEffect,
    estimate_precompute_bytes,
    h2_log_prior,
    make_h2_grid,
    unidentifiable_fixed_effects,
)
from .priors import Priors
from .sampler import (
    GroupData,
    RowPatterns,
    SamplerData,
    eta_mean,
    gibbs_iteration,
    initial_state,
    reorder_factors,
)
from .state import ChainState
from .store import PosteriorStore
from .summaries import posterior_function

#: Above this size (bytes) per posterior variable, G and R are not added to ``posterior``.
DERIVED_MEMORY_LIMIT = 2**30


class MegaLMM:
    """Multi-trait linear mixed model fitted by MegaLMM's Gibbs sampler.

    ``Y = X1 B1 + F Lambda + Z U_R + E_R`` with ``F = Z U_F + E_F``: the traits'
    covariance is modelled by ``n_factors`` latent factors, each with its own
    variance proportions, plus one independent mixed model per trait.

    Parameters
    ----------
    Y : pandas.DataFrame or array (n x t)
        Traits, one column each; NaN marks a missing cell, which is imputed
        every iteration (and predicted by :meth:`predict`).
    formula : str
        One-sided lme4-style formula, e.g. ``"~ Population + (1|Line)"``.
        Fixed part parsed by formulaic; random terms ``(1|g)``, ``(1|a:b)``,
        ``(0 + x|g)`` / ``(x||g)`` (independent component per column, as in R MegaLMM).
    data : pandas.DataFrame
        One row per row of ``Y`` with the formula's variables.
    relmat : dict, optional
        Grouping name -> covariance of its levels (labelled DataFrame, or
        ``{"K": ..., "levels": ...}`` / ``{"K_inv": ..., "levels": ...}``).
        Levels in K but not in the data are predicted.  Missing -> identity.
    n_factors, h2_divisions, burn, thin, scale_Y : optional
        Shortcuts for the fields of :class:`~pymegalmm.control.Control`
        (defaults: R MegaLMM 0.9.5's ``MegaLMM_control``: 20, 100, 100, 2, True).
    control : Control, optional
        All run settings; the shortcuts above override its fields.
    priors : Priors, optional
        Priors; default :class:`~pymegalmm.priors.Priors` (R MegaLMM vignette values).
    chains : int
        Number of independent chains (default 1), each with its own generator
        spawned from ``seed``.
    seed : int or None
        Seed of the random numbers; same seed and data give bit-identical draws
        for any number of threads.
    record : iterable of str
        Parameters stored per recorded draw (see :mod:`pymegalmm.posterior`).
    functions : dict of str -> callable, optional
        Functions evaluated on every recorded draw: each receives a one-draw
        ``xarray.Dataset`` of all parameters (user's scale, with coordinates) and
        returns a DataArray (dims kept) or an array.
    run_dir : str or path
        Directory of the on-disk posterior written by :meth:`save_posterior_chunk`
        (a zarr store; created when first written).  Default ``"MegaLMM_run"``, as R.
    verbose : bool
        Print the memory estimate and a short setup summary.

    Examples
    --------
    >>> from pymegalmm import MegaLMM, datasets
    >>> sim = datasets.simulate_factor_data(n=200, t=10, seed=1)
    >>> m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
    ...             n_factors=5, h2_divisions=20, burn=50, seed=1, verbose=False)
    >>> m.sample(100, progress=False)
    >>> m.posterior["G"].mean(("chain", "draw")).shape
    (1, 10, 10)
    """

    def __init__(
        self,
        Y: pd.DataFrame | np.ndarray,
        formula: str,
        data: pd.DataFrame,
        relmat: Mapping[str, Any] | None = None,
        *,
        n_factors: int | None = None,
        h2_divisions: int | list[int] | None = None,
        burn: int | None = None,
        thin: int | None = None,
        scale_Y: bool | None = None,
        control: Control | None = None,
        priors: Priors | None = None,
        chains: int = 1,
        seed: int | None = None,
        record: Iterable[str] = DEFAULT_RECORD,
        functions: Mapping[str, Callable[[xr.Dataset], Any]] | None = None,
        run_dir: str | os.PathLike = "MegaLMM_run",
        verbose: bool = True,
    ) -> None:
        shortcuts = {"n_factors": n_factors, "h2_divisions": h2_divisions, "burn": burn,
                     "thin": thin, "scale_Y": scale_Y}
        control = control or Control()
        self.control = replace(control, **{k: v for k, v in shortcuts.items() if v is not None})
        self.priors = priors or Priors()
        if int(chains) < 1:
            raise ValueError(f"chains must be >= 1, got {chains}")
        self.record = list(record)
        unknown = [name for name in self.record if name not in PARAM_DIMS]
        if unknown:
            raise ValueError(f"cannot record {unknown}; choose among {sorted(PARAM_DIMS)}")
        self.functions = dict(functions or {})
        self.verbose = verbose
        self.store = PosteriorStore(run_dir)
        # All numerical setup runs with a single-threaded BLAS: eigendecompositions with
        # near-degenerate eigenvalues return different (equally valid) bases for
        # different thread counts, and the draws must not depend on the thread count.
        with threadpool_limits(limits=1, user_api="blas"):
            self._setup(Y, formula, data, relmat, chains, seed)
        if verbose:
            print(self.summary())

    def _setup(self, Y, formula, data, relmat, chains, seed) -> None:
        t0 = time.perf_counter()

        self.design: Design = build_design(
            Y, formula, data, relmat, K_eigen_tol=self.control.K_eigen_tol
        )
        if not self.design.random:
            raise ValueError(
                "the formula has no random-effect term; MegaLMM needs at least one, "
                "e.g. '~ 1 + (1|Line)'"
            )
        self._set_scaling()
        self.grid = make_h2_grid(len(self.design.random), self.control.h2_divisions)
        n, t = self.design.Y.shape
        self._groups: list[tuple[np.ndarray, np.ndarray]] = [(np.arange(n), np.arange(t))]
        self._check_memory(self._groups)
        self.data = self._build_data(self._groups)
        self.coords = self._coordinates()
        self._seed = seed
        self._n_chains = int(chains)
        self._start_chains()
        self.setup_seconds = time.perf_counter() - t0
        self.sampling_seconds = 0.0
        self.iterations_timed = 0

    # ------------------------------------------------------------------ setup

    def _set_scaling(self) -> None:
        Y = self.design.Y
        if self.control.scale_Y:
            self.Y_mean = np.nanmean(Y, axis=0)
            n_obs = np.sum(~np.isnan(Y), axis=0)
            sd = np.nanstd(Y, axis=0, ddof=1)
            bad = [str(self.design.traits[j]) for j in np.flatnonzero((n_obs < 2) | ~(sd > 0))]
            if bad:
                raise ValueError(
                    f"trait(s) {bad[:10]} have fewer than 2 observations or no variation; "
                    "remove them or set scale_Y=False"
                )
            self.Y_sd = sd
        else:
            self.Y_mean = np.zeros(Y.shape[1])
            self.Y_sd = np.ones(Y.shape[1])
        # B1 is reported on the user's scale: the trait mean goes to the combination
        # of X1's columns that equals 1 on every row (the intercept), when there is one.
        X1 = self.design.X1
        if X1.shape[1]:
            c, *_ = np.linalg.lstsq(X1, np.ones(X1.shape[0]), rcond=None)
            c[np.abs(c) < 1e-10] = 0.0
            self._mean_in_B1 = c if np.allclose(X1 @ c, 1.0, atol=1e-8) else None
        else:
            self._mean_in_B1 = None

    def _start_chains(self) -> None:
        """Draw each chain's starting state; chain generators are spawned from ``seed``."""
        seeds = np.random.SeedSequence(self._seed).spawn(self._n_chains + 1)
        self._search_seed = seeds[-1]  # for the missing-data map search
        self.states: list[ChainState] = [
            initial_state(self.data, np.random.default_rng(s)) for s in seeds[:-1]
        ]
        self.stores = [DrawStore(self.record) for _ in self.states]

    def _group_bytes(self, n_rows: int) -> int:
        """Bytes of the precomputes of one trait group with ``n_rows`` rows."""
        n_all = self.design.n
        r = sum(re.K_tilde.shape[0] for re in self.design.random)
        return (estimate_precompute_bytes(n_rows, r, self.grid.shape[1], len(self.design.random))
                + 8 * n_all * r)

    def estimate_memory_initialization(self) -> int:
        """Bytes of the precomputed factors of the current missing-data map (R:
        ``estimate_memory_initialization_MegaLMM``)."""
        return sum(self._group_bytes(rows.size) for rows, _ in self._groups)

    def _check_memory(self, groups: list[tuple[np.ndarray, np.ndarray]]) -> None:
        nbytes = sum(self._group_bytes(rows.size) for rows, _ in groups)
        gb = nbytes / 2**30
        r = sum(re.K_tilde.shape[0] for re in self.design.random)
        if self.verbose:
            print(f"pymegalmm: precomputed factors need about {gb:.2f} GB "
                  f"({len(groups)} trait group(s), {self.grid.shape[1]} grid points, "
                  f"n = {self.design.n}, {r} random-effect levels)")
        if gb > self.control.max_precompute_gb:
            raise MemoryError(
                f"the precomputed factors would need {gb:.2f} GB, above "
                f"max_precompute_gb = {self.control.max_precompute_gb}; reduce h2_divisions "
                f"(now {self.control.h2_divisions}, {self.grid.shape[1]} grid points), use a "
                "missing-data map with fewer groups, or raise Control.max_precompute_gb"
            )

    def _build_random_effects(self, rows: np.ndarray) -> DiagonalRandomEffect | DenseRandomEffects:
        res = self.design.random
        if len(res) == 1:
            return DiagonalRandomEffect(res[0].ZL[rows], res[0].K_tilde, res[0].L, self.grid,
                                        Z_all=res[0].ZL)
        return DenseRandomEffects([r.ZL[rows] for r in res], [r.K_tilde for r in res],
                                  [r.L for r in res], self.grid, Z_all=[r.ZL for r in res])

    def _build_data(self, groups: list[tuple[np.ndarray, np.ndarray]]) -> SamplerData:
        """Precompute everything the sampler needs for the given trait groups."""
        Ys = (self.design.Y - self.Y_mean) / self.Y_sd
        observed = ~np.isnan(Ys)
        X1 = self.design.X1
        drop = unidentifiable_fixed_effects(X1, observed)
        n, t = Ys.shape
        used = np.zeros((n, t), dtype=bool)
        group_data = []
        for rows, cols in groups:
            re = self._build_random_effects(rows)
            block_missing = ~observed[np.ix_(rows, cols)]
            group_data.append(GroupData(
                rows=rows, cols=cols, re=re, QtX1=np.ascontiguousarray(re.rotate(X1[rows])),
                drop_fixed=np.ascontiguousarray(drop[cols]),
                imputed=np.nonzero(block_missing),
            ))
            used[np.ix_(rows, cols)] = True
        return SamplerData(
            Y=np.asfortranarray(Ys),
            X1=np.ascontiguousarray(X1),
            groups=group_data,
            row_patterns=RowPatterns.from_mask(used),
            grid=self.grid,
            log_prior_resid=h2_log_prior(self.priors.h2_prior_resids, self.grid, "h2_prior_resids"),
            log_prior_factor=h2_log_prior(self.priors.h2_prior_factors, self.grid,
                                          "h2_prior_factors"),
            priors=self.priors,
            n_factors=int(self.control.n_factors),
        )

    # ------------------------------------------------------- missing-data maps

    def missing_data_maps(self, max_groups: int = 20) -> tuple[list, pd.DataFrame]:
        """Search groupings of traits by shared missingness (R: ``make_Missing_data_map``).

        Cells of a trait outside its group's rows are *predicted* from the posterior
        instead of imputed every iteration, which improves mixing; each group costs
        its own precomputed rotation.  The search splits the group with the most
        imputed cells in two (k-means on the traits' missingness) until
        ``max_groups``, with exact pattern keys and this model's seeded generator,
        so it is deterministic.

        Parameters
        ----------
        max_groups : int
            Largest number of groups to consider.

        Returns
        -------
        maps : list of MissingDataMap
            Candidate maps, from full imputation (index 0) onwards.
        table : pandas.DataFrame
            One row per map: groups, imputed cells, predicted-only cells, largest
            group, precompute memory (MB).
        """
        from .missing import search_maps

        observed = ~np.isnan(self.design.Y)
        rng = np.random.default_rng(self._search_seed)
        return search_maps(observed, int(max_groups), rng, bytes_per_group=self._group_bytes)

    def set_missing_data_map(self, mdmap) -> MegaLMM:
        """Use a missing-data map (R: ``set_Missing_data_map``); only before sampling.

        Parameters
        ----------
        mdmap : MissingDataMap
            From :meth:`missing_data_maps` (or built by hand).

        Returns
        -------
        MegaLMM
            ``self``, with precomputes rebuilt and chains restarted from their seeds.
        """
        if any(s.nrun for s in self.states):
            raise RuntimeError("set the missing-data map before sampling (chains have run); "
                               "create a new MegaLMM object to change it")
        observed = ~np.isnan(self.design.Y)
        mdmap.validate(observed)
        groups = [(np.asarray(g.rows, dtype=np.intp), np.asarray(g.cols, dtype=np.intp))
                  for g in mdmap.groups]
        self._check_memory(groups)
        with threadpool_limits(limits=1, user_api="blas"):
            self.data = self._build_data(groups)
            self._groups = groups
            self._start_chains()
        return self

    def _coordinates(self) -> Coordinates:
        res = self.design.random
        if len(res) == 1:
            levels = [str(v) for v in res[0].levels]
            level_effect: list[str] = []
        else:
            levels = [f"{r.name}:{v}" for r in res for v in r.levels]
            level_effect = [r.name for r in res for _ in r.levels]
        return Coordinates(
            trait=[str(v) for v in self.design.traits],
            factor=[f"F{i + 1}" for i in range(self.data.n_factors)],
            fixed=list(self.design.fixed_names),
            level=levels,
            component=[r.name for r in res],
            row=list(self.design.rows),
            level_effect=level_effect,
        )

    # --------------------------------------------------------------- sampling

    def sample(self, n_iter: int, progress: bool = True) -> MegaLMM:
        """Run ``n_iter`` Gibbs iterations on every chain, recording after ``burn``.

        Parameters
        ----------
        n_iter : int
            Iterations per chain.
        progress : bool
            Show a progress bar (tqdm).

        Returns
        -------
        MegaLMM
            ``self``, for chaining.
        """
        if int(n_iter) < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        t0 = time.perf_counter()
        bar = tqdm(total=int(n_iter) * len(self.states), disable=not progress,
                   desc="MegaLMM", unit="it")
        with sampling_threads(self.control.n_threads):
            for _ in range(int(n_iter)):
                for state, store in zip(self.states, self.stores, strict=True):
                    gibbs_iteration(state, self.data)
                    if self._is_recorded(state.nrun):
                        self._record(state, store)
                    bar.update(1)
        bar.close()
        self.sampling_seconds += time.perf_counter() - t0
        self.iterations_timed += int(n_iter) * len(self.states)
        self._check_finite()
        return self

    def _is_recorded(self, nrun: int) -> bool:
        burn, thin = self.control.burn, self.control.thin
        return nrun > burn and (nrun - burn) % thin == 0

    def _check_finite(self) -> None:
        for c, state in enumerate(self.states):
            for name in state.array_names():
                value = getattr(state, name)
                blocks = value if isinstance(value, list) else [value]
                if any(b.dtype.kind == "f" and not np.all(np.isfinite(b)) for b in blocks):
                    raise FloatingPointError(
                        f"chain {c}: {name} has non-finite values after iteration {state.nrun}"
                    )

    def user_scale(self, state: ChainState) -> dict[str, np.ndarray]:
        """All parameters of ``state`` on the user's scale, factors of unit variance.

        Parameters
        ----------
        state : ChainState
            A chain's current state.

        Returns
        -------
        dict of str -> numpy.ndarray
            Keys of :data:`pymegalmm.posterior.PARAM_DIMS`.
        """
        sd, grid = self.Y_sd, self.grid
        re = self.data.factor_re
        f_sd = np.sqrt(state.tot_F_prec)
        B1 = state.B1 * sd
        if self._mean_in_B1 is not None:
            B1 = B1 + np.outer(self._mean_in_B1, self.Y_mean)
            B1[self.data.drop_fixed.T.astype(bool)] = 0.0  # not identifiable: fixed at 0
        return {
            "Lambda": state.Lambda / f_sd[:, None] * sd,
            "F": re.unrotate(state.QtF) * f_sd,
            "U_F": re.to_levels(state.U_F) * f_sd,
            "U_R": self._residual_effects_levels(state) * sd,
            "B1": B1,
            "F_h2": grid[:, state.F_h2_index],
            "resid_h2": grid[:, state.resid_h2_index],
            "tot_Eta_prec": state.tot_Eta_prec / sd**2,
            "tot_F_prec": state.tot_F_prec.copy(),
            "delta": state.delta.copy(),
        }

    def _residual_effects_levels(self, state: ChainState) -> np.ndarray:
        """U_R per level of K (scaled units), each trait mapped from its group's basis."""
        groups = self.data.groups
        if len(groups) == 1:
            return groups[0].re.to_levels(state.U_R)
        out = np.empty((groups[0].re.to_levels_matrix.shape[0], self.data.t))
        for g in groups:
            out[:, g.cols] = g.re.to_levels(state.U_R[:, g.cols])
        return out

    def _record(self, state: ChainState, store: DrawStore) -> None:
        values = self.user_scale(state)
        store.add(values)
        store.add_to_mean("Eta_mean", eta_mean(state, self.data) * self.Y_sd + self.Y_mean)
        store.n_means += 1
        if self.functions:
            draw = self._draw_dataset(values)
            for name, fn in self.functions.items():
                store.add_function(name, evaluate_function(fn, draw, name))

    def _draw_dataset(self, values: dict[str, np.ndarray]) -> xr.Dataset:
        data_vars = {name: (PARAM_DIMS[name], value) for name, value in values.items()}
        dims = {d for dims in PARAM_DIMS.values() for d in dims}
        ds = xr.Dataset(data_vars, coords=self.coords.for_dims(dims))
        return add_derived(ds.expand_dims(chain=1, draw=1)).isel(chain=0, draw=0)

    def reorder_factors(self, drop_cor_threshold: float = 0.6) -> MegaLMM:
        """Drop redundant factors and sort factors by size, in every chain (R: ``reorder_factors``).

        Factors whose scores (then genetic values) correlate above
        ``drop_cor_threshold`` with an earlier factor are zeroed; factors are then
        sorted by ``sum(Lambda^2) * mean(F^2)``, every factor-indexed parameter is
        permuted with them, and the ARD prior is refreshed.  Recorded draws are
        cleared, saved chunks too (their factor order no longer matches), and
        ``burn`` moves to the current iteration.  Call it between burn-in rounds;
        it helps chains out of bad factor orders.

        Parameters
        ----------
        drop_cor_threshold : float
            Correlation above which a later factor is zeroed.  Default 0.6.

        Returns
        -------
        MegaLMM
            ``self``.
        """
        if not 0 < drop_cor_threshold <= 1:
            raise ValueError(f"drop_cor_threshold must be in (0, 1], got {drop_cor_threshold}")
        with sampling_threads(self.control.n_threads):
            for state in self.states:
                reorder_factors(state, self.data, drop_cor_threshold)
        self.clear_posterior()
        self.control.burn = max(self.control.burn, max(s.nrun for s in self.states))
        return self

    def burn_in(self, rounds: int = 5, iterations: int = 100, drop_cor_threshold: float = 0.6,
                progress: bool = True) -> MegaLMM:
        """Burn-in by rounds as in R MegaLMM's vignettes: sample, reorder factors, repeat.

        Parameters
        ----------
        rounds : int
            Number of rounds (vignette: 5).
        iterations : int
            Iterations per round (vignette: 100).
        drop_cor_threshold : float
            Passed to :meth:`reorder_factors`.
        progress : bool
            Progress bars.

        Returns
        -------
        MegaLMM
            ``self``; no draws are recorded and ``burn`` is set to the last iteration.
        """
        for _ in range(int(rounds)):
            self.control.burn = max(self.control.burn, self.states[0].nrun + int(iterations))
            self.sample(iterations, progress=progress)
            self.reorder_factors(drop_cor_threshold)
        return self

    def clear_posterior(self, disk: bool = True) -> None:
        """Forget the recorded draws and posterior means (R: ``clear_Posterior``).

        Parameters
        ----------
        disk : bool
            Also delete the chunks saved in ``run_dir``.  Default True.
        """
        for store in self.stores:
            store.clear()
        if disk:
            self.store.clear()

    # ------------------------------------------------------------ on-disk draws

    def save_posterior_chunk(self) -> int:
        """Append the draws held in memory to the zarr store in ``run_dir``, then free them.

        The chunk holds every recorded parameter, the derived ``U``, ``h2`` (and
        ``G``, ``R`` when small enough) and user functions; the running sums of the
        posterior means go along, so :attr:`posterior_means` stays exact (weighted
        by draws).  R: ``save_posterior_chunk``.

        Returns
        -------
        int
            Number of draws (per chain) written.
        """
        n = self.n_draws
        if n == 0:
            return 0
        self.store.append(self.posterior)
        count = sum(s.n_means for s in self.stores)
        self.store.append_means(self._memory_means() * count, count)
        self.clear_posterior(disk=False)
        return n

    def load_posterior(self, names: Iterable[str] | None = None, lazy: bool = True
                       ) -> xr.Dataset:
        """All draws saved in ``run_dir`` (R: ``load_posterior_param``).

        Parameters
        ----------
        names : iterable of str, optional
            Variables to load (default all).
        lazy : bool
            Return lazily loaded (dask-backed when dask is installed) arrays, read
            only when used.

        Returns
        -------
        xarray.Dataset
            Dims ``chain, draw, ...`` like :attr:`posterior`.  Draws still in memory
            (not saved yet) are not included: call :meth:`save_posterior_chunk` first.
        """
        return self.store.load(None if names is None else list(names), lazy=lazy)

    def reload_posterior(self) -> xr.Dataset:
        """Every draw of the run, saved chunks and draws in memory, read into memory.

        R: ``reload_Posterior``.
        """
        parts = []
        if self.store.n_draws:
            parts.append(self.store.load(lazy=False))
        if self.n_draws:
            parts.append(self.posterior)
        if not parts:
            raise RuntimeError("no draws recorded yet: call sample() past burn-in first")
        ds = xr.concat(parts, dim="draw", data_vars="all", coords="minimal",
                       compat="override", join="override") if len(parts) > 1 else parts[0]
        return ds.assign_coords(draw=np.arange(ds.sizes["draw"]))

    def posterior_function(self, fn: Callable[[xr.Dataset], Any]) -> xr.DataArray:
        """Evaluate ``fn`` on every draw of the run (R: ``get_posterior_FUN``).

        Parameters
        ----------
        fn : callable
            Receives a one-draw ``xarray.Dataset`` (all parameters, with coordinates)
            and returns a DataArray or array.

        Returns
        -------
        xarray.DataArray
            Dims ``chain, draw`` followed by the result's dims.
        """
        return posterior_function(self.reload_posterior(), fn)

    def estimate_memory(self, n_iter: int) -> int:
        """Bytes the draws recorded over the next ``n_iter`` iterations will take in memory.

        R: ``estimate_memory_posterior``.  Counts the recorded parameters and the
        derived ``U``, ``h2``, ``G`` and ``R``; call :meth:`save_posterior_chunk`
        between blocks of iterations to keep memory bounded.
        """
        sizes = {"trait": len(self.coords.trait), "factor": len(self.coords.factor),
                 "fixed": len(self.coords.fixed), "level": len(self.coords.level),
                 "component": len(self.coords.component), "row": len(self.coords.row)}
        sizes["trait2"] = sizes["trait"]
        nrun = self.states[0].nrun
        recorded = sum(self._is_recorded(i) for i in range(nrun + 1, nrun + int(n_iter) + 1))
        dims = {name: PARAM_DIMS[name] for name in self.record}
        dims.update({"U": ("level", "trait"), "h2": ("component", "trait")})
        if self._covariances_fit(self.n_draws + recorded):
            dims.update({"G": ("component", "trait", "trait2"), "R": ("trait", "trait2")})
        per_draw = sum(8 * int(np.prod([sizes[d] for d in ds])) for ds in dims.values())
        return per_draw * recorded * len(self.states)

    def _covariances_fit(self, n_draws: int) -> bool:
        """Whether G and R for ``n_draws`` draws per chain stay within DERIVED_MEMORY_LIMIT."""
        t, m = len(self.coords.trait), len(self.coords.component)
        return len(self.stores) * n_draws * m * t * t * 8 <= DERIVED_MEMORY_LIMIT

    # ---------------------------------------------------------------- results

    @property
    def n_draws(self) -> int:
        """Recorded draws per chain."""
        return len(self.stores[0])

    @property
    def posterior(self) -> xr.Dataset:
        """Recorded draws plus ``U``, ``G``, ``R`` and ``h2`` as a labelled ``xarray.Dataset``.

        Dims: ``chain, draw`` then among ``trait, trait2, factor, fixed, level,
        component, row``.  Everything is on the user's scale of Y with factors
        of unit variance; each variable's ``description`` attribute says what
        it is (see :mod:`pymegalmm.posterior`).  ``G`` and ``R`` are left out
        when they would exceed 1 GiB; compute them from a subset with
        :func:`pymegalmm.posterior.add_derived`.
        """
        ds = draws_to_dataset(self.stores, self.coords)
        fit = self._covariances_fit(self.n_draws)
        which = ["U", "h2"] + (["G", "R"] if fit else [])
        if not fit and not getattr(self, "_warned_covariances", False):
            self._warned_covariances = True  # once per model, not at every chunk
            warnings.warn(
                "G and R would take more than 1 GiB; not added to posterior (use "
                "pymegalmm.posterior.add_derived on a selection of traits)",
                stacklevel=2,
            )
        return add_derived(ds, which)

    def _memory_means(self) -> xr.Dataset:
        total = sum(s.n_means for s in self.stores)
        mean = sum(s.mean_sums["Eta_mean"] for s in self.stores) / total
        da = xr.DataArray(mean, dims=("row", "trait"),
                          coords={"row": self.coords.row, "trait": self.coords.trait},
                          attrs={"description": DESCRIPTIONS["Eta_mean"]})
        return xr.Dataset({"Eta_mean": da})

    @property
    def posterior_means(self) -> xr.Dataset:
        """Posterior means accumulated while sampling (``Eta_mean``: predicted Y).

        The plain mean over every recorded draw of every chain, in memory and
        saved in ``run_dir`` (R MegaLMM's chunk averaging is mis-weighted,
        METHOD.md Q5).
        """
        n_mem = sum(s.n_means for s in self.stores)
        n_disk = self.store.n_draws * len(self.states)
        if n_mem + n_disk == 0:
            raise RuntimeError("no draws recorded yet: call sample() past burn-in first")
        if n_disk == 0:
            return self._memory_means()
        disk = self.store.load_means()
        if n_mem == 0:
            return disk
        with xr.set_options(keep_attrs=True):
            return (disk * n_disk + self._memory_means() * n_mem) / (n_disk + n_mem)

    def predict(self) -> pd.DataFrame:
        """Posterior mean of ``E[Y]`` for every row and trait (observed or not), user's scale.

        Returns
        -------
        pandas.DataFrame
            Columns labelled like ``Y``; rows are those kept by the design (rows
            of ``Y`` with no observed trait are dropped with a warning at setup;
            their lines' genetic values are in :meth:`genetic_values`).
        """
        return self.posterior_means["Eta_mean"].to_pandas()

    def genetic_values(self) -> pd.DataFrame:
        """Posterior mean of the genetic values ``U = U_F Lambda + U_R`` (levels x traits).

        Uses every draw of the run, in memory and saved in ``run_dir``.

        Returns
        -------
        pandas.DataFrame
            Levels of K (including levels without data) by traits.
        """
        if self.store.n_draws:
            parts = [self.store.load(["U"])["U"]]
            if self.n_draws:
                parts.append(self.posterior["U"])
            total = sum(p.sizes["draw"] for p in parts)
            mean = sum(p.sum("draw") for p in parts) / total
            return mean.mean("chain").compute().to_pandas()
        return self.posterior["U"].mean(("chain", "draw")).to_pandas()

    @property
    def seconds_per_iteration(self) -> float:
        """Average wall time of one iteration of one chain so far."""
        return self.sampling_seconds / max(self.iterations_timed, 1)

    def summary(self) -> str:
        """Short text: data size, model dimensions, iterations, draws, speed."""
        d, c = self.design, self.control
        miss = float(np.isnan(d.Y).mean()) * 100
        res = ", ".join(f"{r.name} ({r.n_levels} levels, rank {r.rank})" for r in d.random)
        lines = [
            "MegaLMM model",
            f"  data          {d.n} rows x {d.n_traits} traits, {miss:.1f}% missing (imputed)",
            f"  fixed         {len(d.fixed_names)} columns: {', '.join(d.fixed_names[:6])}"
            + (" ..." if len(d.fixed_names) > 6 else ""),
            f"  random        {res}",
            f"  factors       {c.n_factors}; h2 grid {self.grid.shape[1]} points",
            f"  chains        {len(self.states)}; iterations {self.states[0].nrun} "
            f"(burn {c.burn}, thin {c.thin}); draws stored {self.n_draws}",
            f"  time          setup {self.setup_seconds:.2f} s"
            + (f"; {self.seconds_per_iteration * 1e3:.2f} ms / iteration"
               if self.iterations_timed else ""),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()
