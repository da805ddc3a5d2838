"""The user-facing :class:`MegaLMM`: a façade that validates, builds the parts and delegates.

The data flow one way: specification (formula, :class:`~pymegalmm.control.Control`,
:class:`~pymegalmm.priors.Priors`, observation model) -> design
(:mod:`pymegalmm.design`) -> precomputes (:mod:`pymegalmm.core.precompute`) ->
chains (:mod:`pymegalmm.run`) -> results (:mod:`pymegalmm.results`).  No numerics
live here; ``docs/architecture.md`` describes every module.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from ._logging import emit
from .control import Control
from .core.cis import CisDesign
from .core.data import ModelData
from .core.fixed_factors import FixedFactors, free_factor_names
from .core.grid import make_h2_grid
from .core.precompute import build_model_data, check_memory, group_bytes
from .core.state import ChainState
from .design import Design, build_design
from .errors import ConcurrencyError, InputError, InputTypeError, RunDirectoryError, StoreError
from .linalg import sampling_threads, single_threaded_blas
from .model_parts import parse_cis_genotypes, parse_lambda_fixed
from .observation import GaussianMissing, MissingDataMap, ObservationModel
from .priors import LambdaPrior, Priors
from .regressions import REGRESSION_DESCRIPTIONS, ExtraRegression, regression_dims
from .results import tables
from .results.arviz_export import to_arviz
from .results.diagnostics import diagnostics, factor_report
from .results.prediction import response_predictions
from .results.run_results import RunResults
from .results.schema import (
    CIS_DIMS,
    DERIVED_NEEDS,
    SAMPLE_STATS,
    Coordinates,
    default_record,
    param_descriptions,
    param_dims,
)
from .results.tables import Summary
from .run import Chain, DrawStore, Recorder, UserScale
from .run.fingerprint import fingerprint, fingerprint_parts
from .run.interrupt import deferred_interrupt
from .run.parallel import ChainProcesses, available_cores, pack_functions, split_cores
from .run.run_dir import RunDirectory
from .validate import (
    check_bool,
    check_float,
    check_functions,
    check_instance,
    check_int,
    check_names,
    check_path,
    check_seed,
)
from .warnings_ import warn_about_data


def _picklable(functions: Mapping[str, Any]) -> dict[str, Any]:
    """The posterior functions that can be saved with a run (pickled by reference)."""
    import pickle

    out = {}
    for name, fn in functions.items():
        try:
            pickle.dumps(fn)
        except Exception:  # noqa: BLE001 - lambdas, local functions, closures
            continue
        out[name] = fn
    return out


#: Below this many cells (rows x traits) the kernels run on one thread unless
#: ``Control.n_threads`` says otherwise.  Measured on 2 idle cores, n = 500, 15 factors,
#: OpenMP threads spinning briefly (the default): t = 20: 1 thread 1.24 ms/iteration,
#: 2 threads 1.59; t = 100: 2.03 vs 2.04; t = 1000: 11.6 vs 7.3
#: (``python benchmarks/chains.py --small``).
SMALL_PROBLEM_CELLS = 150_000


class _States(Sequence[ChainState]):
    """The chains' states as a list; assigning one continues that chain from it."""

    def __init__(self, chains: list[Chain]) -> None:
        self._chains = chains

    def __len__(self) -> int:
        return len(self._chains)

    def __getitem__(self, i: int) -> ChainState:  # type: ignore[override]
        return self._chains[i].state

    def __setitem__(self, i: int, state: ChainState) -> None:
        self._chains[i].state = state

    def __iter__(self) -> Iterator[ChainState]:
        return (c.state for c in self._chains)


class MegaLMM:
    """Multi-trait linear mixed model fitted by MegaLMM's Gibbs sampler.

    ``Y = X1 B1 + F Lambda + Z U_R + E_R`` with ``F = Z U_F + E_F``: the traits'
    covariance is modelled by ``n_factors`` latent factors, each with its own
    variance proportions, plus one independent mixed model per trait.

    Parameters
    ----------
    Y : pandas.DataFrame or array (n x t), or None
        Traits, one column each; NaN marks a missing cell, which is imputed
        every iteration (and predicted by :meth:`predict`).  With an observation
        model whose latent traits are not ``Y``'s columns
        (:class:`~pymegalmm.observation.ProbesToGenes`: probes of genes), ``Y`` holds
        that model's data; None when the observation model holds its own data
        (:class:`~pymegalmm.observation.Regression`).
    formula : str
        One-sided lme4-style formula, e.g. ``"~ Population + (1|Line)"``.
        Fixed part parsed by formulaic; random terms ``(1|g)``, ``(1|a:b)``,
        ``(0 + x|g)`` / ``(x||g)`` (independent component per column, as in R MegaLMM).
    data : pandas.DataFrame
        One row per row of ``Y`` with the formula's variables.  Rows are matched by
        position when ``Y`` is an array or either index is pandas' default
        ``RangeIndex`` (R's habit), and by label when both are labelled (``Y`` is put
        in ``data``'s order; labels missing on either side are named in the error).
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
        Its ``Lambda_prior`` may be any :class:`~pymegalmm.priors.LambdaPrior`.
    observation : ObservationModel, optional
        How ``Y`` is seen through the latent traits; default
        :class:`~pymegalmm.observation.GaussianMissing` (Gaussian, missing cells imputed).
    extra_regressions : ExtraRegression, optional
        Covariates ``X2`` regressing the factors (``F = X2 B2_F + Z U_F + E_F``) and/or
        the traits (``Eta = ... + X2 B2_R``), e.g. a marker matrix by line; horseshoe
        prior on ``B2_F`` and ``B2_R`` (``docs/priors.md``, "Extra regressions").
    chains : int
        Number of independent chains (default 1, as R MegaLMM; use 2-4 to check
        convergence with :meth:`diagnostics`), each with its own generator spawned
        from ``seed`` (``numpy.random.SeedSequence.spawn``).
    processes : int, optional
        Worker processes that run the chains in parallel.  Default: one per chain,
        at most one per core (:func:`os.sched_getaffinity`); 1 runs the chains one
        after the other in this process.  The cores (``Control.n_threads``, default
        all) are split between the processes, so threads never outnumber cores.
        Each chain's draws are the same however it is run.
    chain_ids : sequence of int, optional
        Run only these chains (numbered from 0) of the ``chains`` chains: each has
        the generator, and so the draws, it has in the full run.  For running the
        chains of one analysis in separate jobs or machines
        (:func:`pymegalmm.run_chains`).  Default: all.
    seed : int or None
        Seed of the random numbers; same seed and data give bit-identical draws
        for any number of threads.
    record : iterable of str, optional
        Parameters stored per recorded draw (see :mod:`pymegalmm.results.schema`).
        Default: :data:`~pymegalmm.results.schema.DEFAULT_RECORD`'s parameters of the
        factor model plus what the loadings prior records (ARD: ``delta``).
    functions : dict of str -> callable, optional
        Functions evaluated on every recorded draw: each receives a one-draw
        ``xarray.Dataset`` of all parameters (user's scale, with coordinates) and
        returns a DataArray (dims kept) or an array.
    run_dir : str or path
        Folder of this run on disk, written by :meth:`save_posterior_chunk` (a zarr
        store of the draws plus the chains' states; created when first written).
        Default ``"MegaLMM_run"``, as R.  One run per folder: a folder that holds
        another run (another model's, or an earlier run of this one) is refused,
        so that nothing is mixed with, appended to or deleted from it; continue
        such a run with :meth:`MegaLMM.resume`.
    overwrite : bool
        Delete the run held in ``run_dir`` (only pymegalmm's own files) and start
        this one there.  Default False.
    verbose : bool
        Show the memory estimate and a short setup summary on stderr (always logged
        at INFO on the ``"pymegalmm"`` logger).
    Lambda_fixed : pandas.DataFrame, optional
        Fixed factors (R's ``Lambda_fixed``): one row per fixed factor (the index names
        it), one column per trait (matched by name), loadings on the user's scale of
        ``Y`` per unit-variance factor.  They become the first of the ``n_factors``
        factors (at least one must stay free), are held at these values, and are not
        shrunk by the loadings prior; their scores are sampled
        (:mod:`pymegalmm.core.fixed_factors`).
    cis_genotypes : dict of trait -> pandas.DataFrame or array (n x c_j), optional
        Each trait's own regressors (R's ``cis_genotypes``, e.g. the genotypes of the
        markers near a gene), flat prior, recorded as ``cis_effects``
        (:mod:`pymegalmm.core.cis`).

    Examples
    --------
    >>> from pymegalmm import MegaLMM, datasets
    >>> sim = datasets.simulate_factor_data(n=200, t=10, seed=1)
    >>> m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
    ...             n_factors=5, h2_divisions=20, burn=50, seed=1, verbose=False)
    >>> _ = m.sample(100, progress=False)
    >>> m.posterior["G"].mean(("chain", "draw")).shape
    (1, 10, 10)
    """

    def __init__(
        self,
        Y: pd.DataFrame | np.ndarray | None,
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
        observation: ObservationModel | None = None,
        extra_regressions: ExtraRegression | None = None,
        chains: int = 1,
        processes: int | None = None,
        chain_ids: Sequence[int] | None = None,
        seed: int | None = None,
        record: Iterable[str] | None = None,
        functions: Mapping[str, Callable[[xr.Dataset], Any]] | None = None,
        run_dir: str | os.PathLike = "MegaLMM_run",
        overwrite: bool = False,
        verbose: bool = True,
        Lambda_fixed: pd.DataFrame | None = None,
        cis_genotypes: Mapping[Any, Any] | None = None,
        _resume: RunDirectory | None = None,
    ) -> None:
        t0 = time.perf_counter()
        shortcuts = {"n_factors": n_factors, "h2_divisions": h2_divisions, "burn": burn,
                     "thin": thin, "scale_Y": scale_Y}
        control = Control() if control is None else check_instance(
            "control", control, Control, "a pymegalmm.Control")
        self._control = replace(control, **{k: v for k, v in shortcuts.items() if v is not None})
        self.priors = Priors() if priors is None else check_instance(
            "priors", priors, Priors, "a pymegalmm.Priors")
        self.observation = GaussianMissing() if observation is None else check_instance(
            "observation", observation, ObservationModel, "a pymegalmm.observation model")
        self._n_chains = check_int("chains", chains, minimum=1)
        self._chain_ids = list(range(self._n_chains))
        if chain_ids is not None:
            ids = [check_int("chain_ids", c, minimum=0) for c in
                   (chain_ids if isinstance(chain_ids, Sequence) else [chain_ids])]
            bad = [c for c in ids if c >= self._n_chains]
            if not ids or bad or len(set(ids)) < len(ids):
                raise InputError(f"chain_ids must be distinct chain numbers in 0 .. "
                                 f"{self._n_chains - 1} (chains={self._n_chains}), got "
                                 f"{list(chain_ids)}")
            self._chain_ids = ids
        if processes is not None:
            processes = check_int("processes", processes, minimum=1)
        self._processes, self._threads = split_cores(
            len(self._chain_ids), processes, self._control.n_threads or available_cores())
        self._pool: ChainProcesses | None = None
        self._seed = check_seed(seed)
        self.extra_regressions = None if extra_regressions is None else check_instance(
            "extra_regressions", extra_regressions, ExtraRegression,
            "a pymegalmm.ExtraRegression")
        extra = self.extra_regressions
        lam_prior = self.priors.Lambda_prior
        if (extra is not None and extra.resids and lam_prior.has_loadings_sampler
                and type(lam_prior).spike_and_slab is LambdaPrior.spike_and_slab):
            raise InputError(f"extra_regressions with resids=True needs a loadings prior drawn "
                             f"by the Gaussian step or by spike and slab (BayesC); "
                             f"{type(lam_prior).__name__} draws its own loadings otherwise: "
                             "use resids=False or another prior")
        if extra is not None and extra.factors and Lambda_fixed is not None:
            raise InputError("Lambda_fixed with extra_regressions on the factors "
                             "(factors=True) is not supported: the fixed factors' total "
                             "precision is held at 1, which the joint draw of B2_F and "
                             "tot_F_prec does not allow; use factors=False")
        obs_dims = self.observation.record_dims()
        self._dims = {**param_dims(self.priors.Lambda_prior),
                      **(regression_dims(extra) if extra is not None else {}),
                      **(CIS_DIMS if cis_genotypes is not None else {}), **obs_dims}
        self.record = ([*default_record(self.priors.Lambda_prior),
                        *(n for n in ("B2_F", "B2_R", "B2_F_pi", "B2_R_pi", "B2_F_inclusion",
                                      "B2_R_inclusion") if n in self._dims), *obs_dims]
                       if record is None else check_names("record", record, self._dims))
        if record is None and cis_genotypes is not None:
            self.record = [*self.record, "cis_effects"]
        self.functions = check_functions(
            functions, [*self._dims, *DERIVED_NEEDS, "Eta_mean"])
        self.verbose = check_bool("verbose", verbose)
        run_dir = check_path("run_dir", run_dir)
        overwrite = check_bool("overwrite", overwrite)
        self._spec = {"Y": Y, "formula": formula, "data": data, "relmat": relmat,
                      "control": self._control, "priors": self.priors,
                      "observation": self.observation, "chains": self._n_chains,
                      **({"extra_regressions": extra} if extra is not None else {}),
                      "chain_ids": self._chain_ids if chain_ids is not None else None,
                      "seed": self._seed, "record": list(self.record),
                      "functions": _picklable(self.functions)}
        if Lambda_fixed is not None:  # only when given: other runs' fingerprints unchanged
            self._spec["Lambda_fixed"] = Lambda_fixed
        if cis_genotypes is not None:
            self._spec["cis_genotypes"] = cis_genotypes
        if _resume is None:
            self.store = self._run_directory(run_dir)
            self.store.check_available(overwrite)  # before the setup: fail fast
        else:
            self.store = _resume
        self._lock = threading.Lock()
        # Numerical setup runs with a single-threaded BLAS: eigendecompositions with
        # near-degenerate eigenvalues return different (equally valid) bases for
        # different thread counts, and the draws must not depend on the thread count.
        with single_threaded_blas():
            # the latent traits' table: Y itself, unless the observation model sees Y (or
            # its own data) through other latent traits (genes of probes, curve coefficients)
            self.design: Design = build_design(self.observation.latent_frame(Y, data), formula,
                                               data, relmat,
                                               K_eigen_tol=self._control.K_eigen_tol)
            self._kernel_threads = self._control.n_threads
            if self._kernel_threads is None and \
                    self.design.n * self.design.n_traits < SMALL_PROBLEM_CELLS:
                # a small iteration gains less from a second thread than waking it costs
                # (idle OpenMP threads soon sleep: _config.set_wait_policy); same draws
                self._kernel_threads, self._threads = 1, 1
            if not self.design.random:
                raise ValueError("the formula has no random-effect term; MegaLMM needs at "
                                 "least one, e.g. '~ 1 + (1|Line)'")
            self.latent = self.observation.prepare_design(Y, data, self.design,
                                                          self._control.scale_Y)
            self.grid = make_h2_grid(len(self.design.random), self._control.h2_divisions)
            self.coords = Coordinates.from_design(self.design, self._control.n_factors,
                                                 self.priors.Lambda_prior)
            self.coords.observation = self.observation.coordinates(self.latent)
            self._X2 = None
            if extra is not None:
                self.coords.marker = extra.names
                kept = data if len(data) == self.design.n else data.loc[self.design.rows]
                self._X2 = extra.rows_for(kept)
            self._fixed, self._cis = self._model_parts(Lambda_fixed, cis_genotypes)
            self._transform = UserScale(self.latent, self.design.X1)
            self._build(self.observation)
        warn_about_data(self.design, self.latent, self._control.scale_Y, self.priors,
                        self.data.drop_fixed)
        self.setup_seconds = time.perf_counter() - t0
        self.sampling_seconds, self.iterations_timed = 0.0, 0
        emit(self.describe(), self.verbose)

    def _model_parts(self, Lambda_fixed: Any, cis_genotypes: Any
                     ) -> tuple[FixedFactors | None, CisDesign | None]:
        """Check ``Lambda_fixed`` and ``cis_genotypes``; label what they add."""
        traits = list(self.coords.trait)
        fixed = cis = None
        if Lambda_fixed is not None:
            fixed = parse_lambda_fixed(Lambda_fixed, traits, self._control.n_factors,
                                       self.latent.scale)
            self.coords.factor = fixed.names + free_factor_names(
                self._control.n_factors - fixed.n)
        if cis_genotypes is not None:
            cis = parse_cis_genotypes(cis_genotypes, traits, list(self.design.rows))
            self.coords.cis = list(range(cis.width))
        return fixed, cis

    @property
    def cis_names(self) -> dict[Any, list[str]]:
        """Names of each trait's ``cis_genotypes`` columns (the ``cis`` positions of
        ``cis_effects``), traits with cis effects only; empty without ``cis_genotypes``."""
        if self._cis is None:
            return {}
        return {t: names for t, names in zip(self.coords.trait, self._cis.names, strict=True)
                if names}

    def _build(self, observation: ObservationModel) -> None:
        """Precompute for ``observation``'s trait groups and start the chains from ``seed``."""
        groups = observation.trait_groups(self.latent.observed)
        report = check_memory(self.design, self.grid.shape[1], groups,
                              self._control.max_precompute_gb, self._control.h2_divisions)
        emit(report, self.verbose)
        with single_threaded_blas():  # see __init__
            self.data: ModelData = build_model_data(
                self.design, self.latent, observation, groups, self.grid, self.priors,
                self._control.n_factors, self._control.h2_step_size,
                self.extra_regressions, self._X2, fixed=self._fixed, cis=self._cis)
            seeds = np.random.SeedSequence(self._seed).spawn(self._n_chains + 1)
            self._search_seed = seeds[-1]  # for the missing-data map search
            self.chains = [Chain(self.data, np.random.default_rng(seeds[c]),
                                 self._recorder(f"chain {c}")) for c in self._chain_ids]
        if getattr(self, "_pool", None) is not None:  # the workers hold the old data
            self.close()
        self.observation, self._groups = observation, groups
        self._spec["observation"] = observation
        self._results = RunResults(self.chains, self.store, self.coords, self._dims,
                                   {**param_descriptions(self.priors.Lambda_prior),
                                    **REGRESSION_DESCRIPTIONS, **observation.recorded},
                                   self._chain_ids,
                                   regression=self.extra_regressions)

    def _run_directory(self, path: os.PathLike) -> RunDirectory:
        """This model's run folder, with the fingerprint of its specification."""
        import pymegalmm

        spec = {**self._spec, "functions": sorted(self.functions),
                "version": pymegalmm.__version__}
        return RunDirectory(path, fingerprint(spec), fingerprint_parts(spec))

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, *,
               functions: Mapping[str, Callable[[xr.Dataset], Any]] | None = None,
               processes: int | None = None, verbose: bool = True) -> MegaLMM:
        """Continue a run saved in ``run_dir`` exactly where its last saved chunk left it.

        The model is rebuilt from the specification saved with the run, every chain
        continues from its state at the last :meth:`save_posterior_chunk` (arrays and
        random-number generator), and the saved draws stay the run's: ``m.sample(n)``
        then records exactly the draws an uninterrupted run would have recorded.
        Draws recorded after the last saved chunk (e.g. before a crash) are drawn
        again, identically.

        Parameters
        ----------
        run_dir : str or path
            The run's folder.
        functions : dict of str -> callable, optional
            The run's posterior functions, needed when they could not be saved with
            it (lambdas and local functions cannot be pickled); same names.
        verbose : bool
            Setup messages.

        Returns
        -------
        MegaLMM
            The model, at iteration :attr:`iteration`.

        Notes
        -----
        The specification is stored with :mod:`pickle`: resume only runs you trust,
        as with any pickle.
        """
        check_path("run_dir", run_dir)
        run, spec = RunDirectory.adopt(run_dir)
        saved = spec.pop("functions") or {}
        wanted = run.manifest.get("info", {}).get("functions", list(saved))
        given = dict(saved) if functions is None else dict(functions)
        missing = sorted(set(wanted) - set(given))
        if missing:
            raise InputError(f"the run in {str(run_dir)!r} evaluates the posterior functions "
                             f"{missing}, which could not be saved with it: pass them as "
                             "functions={...} to MegaLMM.resume")
        observation = spec.pop("observation")
        m = cls(**spec, observation=observation, functions=given or None, run_dir=run_dir,
                processes=processes, verbose=verbose, _resume=run)
        if m._run_directory(run_dir).fingerprint != run.fingerprint:
            raise InputError(f"the model rebuilt from {str(run_dir)!r} does not match the "
                             "run's fingerprint (different package version or functions)")
        states = run.states()
        if not states:  # claimed but never committed: the chains start from their seeds
            return m
        if len(states) != len(m.chains):
            raise InputError(f"run_dir {str(run_dir)!r} holds {len(states)} chain states for "
                             f"{len(m.chains)} chains")
        for chain, state in zip(m.chains, states, strict=True):
            chain.state = state
        m._set_burn(int(run.manifest["burn"]))
        return m

    @property
    def iteration(self) -> int:
        """Iterations completed by every chain (chains advance together; after an
        interrupted :meth:`sample` the least advanced chain's count)."""
        return min(c.nrun for c in self.chains)

    def _level(self, what: str) -> None:
        """Raise unless every chain is at the same iteration."""
        runs = [c.nrun for c in self.chains]
        if len(set(runs)) > 1:
            raise RuntimeError(
                f"{what}: the chains are at different iterations {runs} after an interrupted "
                "sample(); call sample(0) to bring them level first")

    def _static_groups(self) -> dict[str, xr.Dataset]:
        """The data as ArviZ's ``observed_data`` and ``constant_data`` groups."""
        row, trait = {"row": self.coords.row}, {"trait": self.coords.trait}
        own = type(self.observation).latent_frame is not ObservationModel.latent_frame
        Y = xr.DataArray(self.design.Y, dims=("row", "trait"), coords={**row, **trait},
                         attrs={"description": (
                             "starting values of the latent traits, NaN where nothing is "
                             f"observed (the data are held by {type(self.observation).__name__})"
                             if own else "the data Y, NaN where missing")})
        X1 = xr.DataArray(self.design.X1, dims=("row", "fixed"),
                          coords={**row, "fixed": self.coords.fixed},
                          attrs={"description": "fixed-effect design matrix"})
        return {"observed_data": xr.Dataset({"Y": Y}), "constant_data": xr.Dataset({"X1": X1})}

    def _commit_info(self) -> dict[str, Any]:
        return {"functions": sorted(self.functions),
                "sampling_seconds": self.sampling_seconds,
                "iterations_timed": self.iterations_timed}

    def _recorder_kwargs(self) -> dict[str, Any]:
        names = [*self.record, *(n for n in SAMPLE_STATS if n not in self.record)]
        return {"names": names, "thin": self._control.thin, "transform": self._transform,
                "coords": self.coords, "dims": self._dims, "functions": self.functions}

    def _recorder(self, label: str) -> Recorder:
        return Recorder(**self._recorder_kwargs(), burn=self._control.burn, label=label)

    def _processes_pool(self) -> ChainProcesses | None:
        """The worker processes for the chains (started on first use), or None to run here."""
        if self._processes < 2:
            return None
        if self._pool is None:
            packed = pack_functions(self.functions)
            if packed is None:
                if not getattr(self, "_warned_functions", False):
                    self._warned_functions = True
                    warnings.warn(
                        "the posterior functions cannot be sent to worker processes (lambdas "
                        "or functions of the script need cloudpickle, which comes with dask): "
                        "the chains run one after the other in this process", UserWarning,
                        stacklevel=3)
                return None
            self._pool = ChainProcesses(self.data, {**self._recorder_kwargs(),
                                                    "functions": packed},
                                        self._processes, self._threads)
            weakref.finalize(self, self._pool.close)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes of the chains (they also stop with the model)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # ------------------------------------------------------------------ the run

    @property
    def control(self) -> Control:
        """Run settings in force: the specification's, with ``burn`` moved by reordering."""
        return replace(self._control, burn=self.chains[0].recorder.burn)

    @property
    def states(self) -> _States:
        """Each chain's current state (assign one to continue a chain from a saved state)."""
        return _States(self.chains)

    @property
    def stores(self) -> list[DrawStore]:
        """Each chain's recorded draws in memory."""
        return [c.recorder.draws for c in self.chains]

    def _set_burn(self, burn: int) -> None:
        for c in self.chains:
            c.recorder.burn = int(burn)

    def sample(self, n_iter: int, progress: bool = True) -> MegaLMM:
        """Run ``n_iter`` Gibbs iterations on every chain, recording after ``burn``.

        Ctrl-C stops at the end of the current iteration and leaves the model
        consistent (press it twice to stop at once; the chain cut mid-iteration then
        refuses to continue).  When an interruption or a failing posterior function
        left the chains at different iterations, the chains behind are first brought
        level with the most advanced one; ``sample(0)`` does only that.

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
        n_iter = check_int("n_iter", n_iter, minimum=0)
        progress = check_bool("progress", progress)
        with self._exclusive("sample"):
            torn = [c for c, chain in enumerate(self.chains) if chain.torn]
            if torn:  # here, not in the chain: a worker would not know
                raise RuntimeError(
                    f"chain(s) {torn} were interrupted in the middle of an iteration, so their "
                    "arrays may disagree; resume the run from its last saved chunk "
                    "(MegaLMM.resume) or create the model again")
            target = max(c.nrun for c in self.chains) + n_iter
            todo = [target - c.nrun for c in self.chains]
            t0 = time.perf_counter()
            before = sum(c.nrun for c in self.chains)
            pool = self._processes_pool()
            try:
                with tqdm(total=sum(todo), disable=not progress, desc="MegaLMM",
                          unit="it") as bar, deferred_interrupt() as stop:
                    if pool is None:
                        with sampling_threads(self._kernel_threads):
                            for chain, n in zip(self.chains, todo, strict=True):
                                chain.sample(n, callback=lambda: bar.update(1), stop=stop)
                                if stop():
                                    break
                    else:
                        errors = pool.sample(self.chains, todo, bar.update, stop)
                        if errors:
                            raise errors[0]
                    if stop():
                        raise KeyboardInterrupt(
                            "sampling stopped at the end of an iteration; the model is "
                            "consistent (sample() brings every chain level again)")
            finally:
                self.sampling_seconds += time.perf_counter() - t0
                self.iterations_timed += sum(c.nrun for c in self.chains) - before
            for c, chain in enumerate(self.chains):
                chain.check_finite(f"chain {c}")
        return self

    @contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        """One running call per model: another thread's call raises instead of interleaving."""
        if not self._lock.acquire(blocking=False):
            raise ConcurrencyError(
                f"{what}() was called while this model is sampling in another thread; a model's "
                "chains advance one call at a time (use one model per thread)")
        try:
            yield
        finally:
            self._lock.release()

    def reorder_factors(self, drop_cor_threshold: float = 0.6) -> MegaLMM:
        """Drop redundant factors and sort factors by size, in every chain (R: ``reorder_factors``).

        Factors whose scores (then genetic values) correlate above
        ``drop_cor_threshold`` with an earlier factor are zeroed; factors are then
        sorted by ``sum(Lambda^2) * mean(F^2)``, every factor-indexed parameter is
        permuted with them, and the loadings prior re-tunes its state.  Recorded
        draws are cleared, saved chunks too (their factor order no longer matches),
        and ``burn`` moves to the current iteration.  Call it between burn-in rounds.

        Parameters
        ----------
        drop_cor_threshold : float
            Correlation above which a later factor is zeroed.  Default 0.6.
        """
        drop_cor_threshold = check_float("drop_cor_threshold", drop_cor_threshold, low=0.0,
                                         high=1.0, low_open=True)
        self._level("reorder_factors")
        with self._exclusive("reorder_factors"), sampling_threads(self._kernel_threads):
            for chain in self.chains:
                chain.reorder_factors(drop_cor_threshold)
        self.clear_posterior()
        self._set_burn(max(self.control.burn, max(c.nrun for c in self.chains)))
        return self

    def burn_in(self, rounds: int = 5, iterations: int = 100, drop_cor_threshold: float = 0.6,
                progress: bool = True) -> MegaLMM:
        """Burn-in by rounds as in R MegaLMM's vignettes: sample, reorder factors, repeat.

        Parameters
        ----------
        rounds, iterations : int
            Rounds (vignette: 5) of ``iterations`` each (vignette: 100).
        drop_cor_threshold : float
            Passed to :meth:`reorder_factors`.
        progress : bool
            Progress bars.
        """
        rounds = check_int("rounds", rounds, minimum=0)
        iterations = check_int("iterations", iterations, minimum=0)
        check_float("drop_cor_threshold", drop_cor_threshold, low=0.0, high=1.0, low_open=True)
        for _ in range(rounds):
            self._set_burn(max(self.control.burn, self.chains[0].nrun + iterations))
            self.sample(iterations, progress=progress)
            self.reorder_factors(drop_cor_threshold)
        return self

    def user_scale(self, state: ChainState) -> dict[str, np.ndarray]:
        """All parameters of ``state`` on the user's scale, factors of unit variance."""
        return self._transform.parameters(state, self.data)

    @property
    def seconds_per_iteration(self) -> float:
        """Wall time of sampling so far divided by the iterations of all chains (with
        chains in parallel processes, less than one chain's time per iteration)."""
        return self.sampling_seconds / max(self.iterations_timed, 1)

    # ------------------------------------------------------- missing-data maps

    def missing_data_maps(self, max_groups: int = 20) -> tuple[list, pd.DataFrame]:
        """Search groupings of traits by shared missingness (R: ``make_Missing_data_map``).

        Cells of a trait outside its group's rows are *predicted* from the posterior
        instead of imputed every iteration, which improves mixing; each group costs
        its own precomputed rotation.  See :func:`pymegalmm.observation.maps.search_maps`
        (deterministic: this model's seeded generator).

        Returns
        -------
        maps : list of MissingDataMap
            Candidate maps, from full imputation (index 0) onwards.
        table : pandas.DataFrame
            One row per map: groups, imputed cells, predicted-only cells, largest
            group, precompute memory (MB).
        """
        from .observation.maps import search_maps

        max_groups = check_int("max_groups", max_groups, minimum=1)
        rng = np.random.default_rng(self._search_seed)
        return search_maps(self.latent.observed, max_groups, rng,
                           bytes_per_group=lambda n: group_bytes(self.design,
                                                                 self.grid.shape[1], n))

    def set_missing_data_map(self, mdmap) -> MegaLMM:
        """Use a missing-data map (R: ``set_Missing_data_map``); only before sampling.

        Precomputes are rebuilt and the chains restart from their seeds.
        """
        check_instance("mdmap", mdmap, MissingDataMap,
                       "a MissingDataMap from missing_data_maps()")
        if any(c.nrun for c in self.chains):
            raise RuntimeError("set the missing-data map before sampling (chains have run); "
                               "create a new MegaLMM object to change it")
        try:
            observation = replace(self.observation, missing_data_map=mdmap)
        except TypeError as exc:
            raise InputTypeError(f"{type(self.observation).__name__} takes no missing-data "
                                 "map (mdmap)") from exc
        try:
            mdmap.validate(self.latent.observed)
        except ValueError as exc:
            raise InputError(f"mdmap does not fit this model's Y: {exc}") from exc
        self._build(observation)
        if self.store.owned:  # a run of 0 iterations: start it again with the new map
            self.store.clear_files()
        self.store = self._run_directory(self.store.path)
        self._results.store = self.store
        return self

    def estimate_memory_initialization(self) -> int:
        """Bytes of the precomputed factors of the current map (R:
        ``estimate_memory_initialization_MegaLMM``)."""
        return sum(group_bytes(self.design, self.grid.shape[1], rows.size)
                   for rows, _ in self._groups)

    # ---------------------------------------------------------------- results

    def estimate_memory(self, n_iter: int) -> int:
        """Bytes the draws recorded over the next ``n_iter`` iterations will take in memory.

        R: ``estimate_memory_posterior``.  Counts the recorded parameters and the
        derived ``U``, ``h2``, ``G`` and ``R``; call :meth:`save_posterior_chunk`
        between blocks of iterations to keep memory bounded.
        """
        return self._results.estimate_memory(check_int("n_iter", n_iter, minimum=0),
                                             self._recorder_kwargs()["names"])

    @property
    def n_draws(self) -> int:
        """Recorded draws per chain (in memory)."""
        return self._results.n_draws

    @property
    def posterior(self) -> xr.Dataset:
        """Recorded draws plus ``U``, ``G``, ``R`` and ``h2`` as a labelled ``xarray.Dataset``.

        Dims: ``chain, draw`` then among ``trait, trait2, factor, fixed, level,
        component, row``.  Everything is on the user's scale of Y with factors
        of unit variance; each variable's ``description`` attribute says what
        it is (see :mod:`pymegalmm.results.schema`).  ``G`` and ``R`` are left out
        when they would exceed 1 GiB; compute them from a subset with
        :func:`pymegalmm.results.derived.add_derived`.
        """
        return self._results.posterior()

    @property
    def posterior_means(self) -> xr.Dataset:
        """Posterior means accumulated while sampling (``Eta_mean``: predicted Y).

        The plain mean over every recorded draw of every chain, in memory and
        saved in ``run_dir`` (R MegaLMM's chunk averaging is mis-weighted,
        METHOD.md Q5).
        """
        return self._results.posterior_means()

    def predict(self, new_data: pd.DataFrame | None = None, *, kind: str = "mean",
                prob: float = 0.95, interval: str = "hpd", scale: str = "latent",
                library_size: Any = None, at: pd.DataFrame | None = None
                ) -> pd.DataFrame | xr.DataArray:
        """Expected value of Y for the fitted rows or for new rows, user's scale (lme4's
        ``predict(newdata=)``), from every draw of the run (memory and ``run_dir``).

        Parameters
        ----------
        new_data : pandas.DataFrame, optional
            New rows with the formula's variables.  Each draw gives
            ``X1_new B1 + Z_new U``: fixed effects encoded as for the data, plus the
            genetic values of the rows' levels (levels of K without data included;
            other levels raise ``KeyError``).  Default: the fitted rows, for which
            each draw gives ``X1 B1 + F Lambda + Z U_R`` (observed or not).
        kind : {"mean", "draws", "interval"}
            The posterior mean (DataFrame rows x traits), the draws (DataArray
            ``chain, draw, row, trait``) or a tidy table (rows, trait) of ``mean``,
            ``lower``, ``upper``.
        prob : float
            Probability of the interval.  Default 0.95.
        interval : {"hpd", "equal-tailed"}
            Highest posterior density (coda's ``HPDinterval``) or quantiles.
        scale : {"latent", "response"}
            ``"latent"`` (default): the expected latent value, the scale of ``Y`` for
            Gaussian data and the link scale for counts (log-odds for
            :class:`~pymegalmm.observation.Binomial`, log expected count per unit library
            size for :class:`~pymegalmm.observation.NegativeBinomial`).  ``"response"``:
            each draw's expected latent value through the observation model's response
            map (``expit`` for Binomial: a probability; ``exp`` for NegativeBinomial:
            the expected count per unit library size, times ``library_size`` if given;
            the identity for Gaussian data; :class:`~pymegalmm.observation.ProbesToGenes`:
            each probe's expected value, labelled by probe;
            :class:`~pymegalmm.observation.Regression`: each row's curve at the points
            ``at``).  The map is applied to the factor model's expected latent value,
            not averaged over the trait's residual.
        library_size : number, pandas.Series or array, optional
            With ``scale="response"`` and negative-binomial traits: the library size of
            each predicted row (a Series indexed like the rows, or one value per row in
            order) or one number for every row.
        at : pandas.DataFrame, optional
            With ``scale="response"`` and :class:`~pymegalmm.observation.Regression`:
            the covariate values at which each row's curve is evaluated (one row per
            point; default: the distinct covariate values of the observations).
        """
        if scale not in ("latent", "response"):
            raise InputError(f"scale must be 'latent' or 'response', got {scale!r}")
        if scale == "latent":
            if library_size is not None or at is not None:
                raise InputError(f"{'library_size' if library_size is not None else 'at'} "
                                 "only applies with scale='response'")
            return self._results.predict(self.design, new_data, kind, prob, interval)
        return response_predictions(self._results, self.design, self.observation, self.latent,
                                    list(self.coords.trait), new_data, kind, prob, interval,
                                    library_size=library_size, at=at)

    def genetic_values(self, *, kind: str = "mean", prob: float = 0.95, interval: str = "hpd"
                       ) -> pd.DataFrame | xr.DataArray:
        """Genetic values ``U = U_F Lambda + U_R`` per level of K and trait, from every draw
        of the run; levels of K without data are included.  ``kind``, ``prob`` and
        ``interval`` as in :meth:`predict` (dim ``level`` instead of ``row``)."""
        return self._results.genetic_value_draws(kind, prob, interval)

    def predict_new_traits(self, W_new: pd.DataFrame, *, kind: str = "mean", prob: float = 0.95,
                           interval: str = "hpd", scale: float | None = None
                           ) -> pd.DataFrame | xr.DataArray:
        """Genetic values of traits with no observation at all, from their trait covariates.

        Needs ``Priors(Lambda_prior=ARDPrior(trait_covariates=W))``.  Per draw, a new
        trait with covariates ``w`` has the loadings ``beta w`` (the prior mean of a
        trait's loadings; its own deviation and trait-specific random effect have prior
        mean 0), so its genetic values are ``U_F (W_new beta')' * scale`` for every
        level of K (:mod:`pymegalmm.results.new_traits`).  A model without trait
        covariates has nothing that maps a new trait to the factors and raises.

        Parameters
        ----------
        W_new : pandas.DataFrame
            Covariates of the new traits: one row per new trait (its index names them),
            the same columns as ``trait_covariates`` (any order).
        kind : {"mean", "draws", "interval"}
            Posterior mean (DataFrame levels x new traits), every draw (DataArray
            ``chain, draw, level, trait``) or intervals (tidy table), as in :meth:`predict`.
        prob : float
            Interval probability.
        interval : {"hpd", "equal-tailed"}
            Interval convention.
        scale : float, optional
            The new traits' scale (standard deviation) on the user's scale of ``Y``,
            which the data cannot tell.  Default: the mean of the fitted traits' scales
            (their standard deviations with ``scale_Y=True``); ``scale=1.0`` gives the
            sampler's scale of standardised traits.

        Returns
        -------
        pandas.DataFrame or xarray.DataArray
        """
        from .results.new_traits import predict_new_traits

        return predict_new_traits(self._results, self.data.priors.Lambda_prior, W_new, kind,
                                  prob, interval, scale, self.latent.scale)

    def clear_posterior(self, disk: bool = True) -> None:
        """Forget the recorded draws and posterior means (R: ``clear_Posterior``);
        with ``disk``, also the chunks this model saved in ``run_dir`` (the chains'
        states are saved instead, so the run stays resumable)."""
        disk = check_bool("disk", disk)
        if disk and self.store.owned:
            self._level("clear_posterior")
        self._results.clear(disk, [c.state for c in self.chains], self.control.burn,
                            self._spec)

    def save_posterior_chunk(self) -> int:
        """Append the draws held in memory to the run in ``run_dir``, then free them.

        The running sums of the posterior means and every chain's state go along, in
        one crash-safe commit: a process killed at any moment leaves the previous
        chunk readable, and :meth:`resume` continues from the last chunk exactly.
        The first call claims ``run_dir`` for this model.  R: ``save_posterior_chunk``.
        Returns the draws per chain written.
        """
        self._level("save_posterior_chunk")
        try:
            return self._results.save_chunk([c.state for c in self.chains],
                                            self.control.burn, self._spec,
                                            self._static_groups(), self._commit_info())
        except OSError as exc:
            if isinstance(exc, RunDirectoryError | StoreError):
                raise
            raise OSError(exc.errno, f"run_dir {str(self.store.path)!r} cannot be written: "
                          f"{exc.strerror or exc}") from exc

    def load_posterior(self, names: Iterable[str] | None = None, lazy: bool = True
                       ) -> xr.Dataset:
        """All draws saved in ``run_dir`` (R: ``load_posterior_param``), lazily by default.

        Draws still in memory are not included: call :meth:`save_posterior_chunk` first.
        """
        lazy = check_bool("lazy", lazy)
        if names is not None and self.store.n_draws:
            names = check_names("names", [names] if isinstance(names, str) else names,
                                self.store.load().data_vars)
        return self.store.load(names, lazy=lazy)

    def reload_posterior(self) -> xr.Dataset:
        """Every draw of the run, saved and in memory, read into memory.

        R: ``reload_Posterior``.
        """
        return self._results.reload_posterior()

    def posterior_function(self, fn: Callable[[xr.Dataset], Any]) -> xr.DataArray:
        """Evaluate ``fn`` on every draw of the run (R: ``get_posterior_FUN``); dims
        ``chain, draw`` then the result's."""
        if not callable(fn):
            raise InputTypeError(f"fn must be callable, got {type(fn).__name__}")
        return self._results.posterior_function(fn)

    def summary(self, prob: float = 0.95) -> Summary:
        """lme4-style tables of every draw of the run: variance components (h2 with
        intervals), the largest genetic correlations, fixed effects, factors, and
        convergence diagnostics with two or more chains.  ``print(m.summary())`` shows
        them; ``.to_frame(section)`` gives each as a DataFrame.  ``print(m)`` stays short.
        """
        return Summary.from_posterior(self.reload_posterior(), self.describe(),
                                      prob=check_float("prob", prob, low=0.0, high=1.0,
                                                       low_open=True))

    def variance_components(self, prob: float = 0.95) -> pd.DataFrame:
        """h2 per trait and random effect (and residual) with HPD intervals (lme4: ``VarCorr``)."""
        return tables.variance_components(self.reload_posterior(), prob)

    def fixed_effects(self, prob: float = 0.95) -> pd.DataFrame:
        """Fixed effects per trait: mean, sd, HPD interval (lme4: ``fixef`` and ``confint``)."""
        return tables.fixed_effects(self.reload_posterior(), prob)

    def genetic_correlations(self, component: str | None = None, top: int | None = None,
                             prob: float = 0.95) -> pd.DataFrame:
        """Genetic correlations of every pair of traits (or the ``top`` largest) with HPD
        intervals, per random effect (or ``component``)."""
        return tables.genetic_correlations(self.reload_posterior(), component, top, prob)

    def diagnostics(self, variables: Sequence[str] | None = None, **options: Any
                    ) -> pd.DataFrame:
        """Convergence diagnostics of every draw of the run: rank-normalised split R-hat,
        bulk and tail ESS (Vehtari et al. 2021) of the quantities identified across
        chains (``h2``, ``G``, ``R``, ``U``, ``B1``, ``Lambda' Lambda``, ``lp``); warns
        (``ConvergenceWarning``) when R-hat > 1.01 or ESS < 100 per chain.  Factor
        order and signs are not identified, so ``Lambda`` itself is not diagnosed.
        Options and columns: :func:`pymegalmm.results.diagnostics.diagnostics`.
        """
        return diagnostics(self.reload_posterior(), variables, **options)

    def factor_report(self, threshold: float = 0.01, **options: Any) -> pd.DataFrame:
        """Per chain and factor: share of variance, effective number of loadings, and
        whether the last factors still carry signal (``TooFewFactorsWarning``: then
        refit with more ``n_factors``).  See
        :func:`pymegalmm.results.diagnostics.factor_report`."""
        return factor_report(self.reload_posterior(), threshold, **options)

    def to_arviz(self, posterior_predictive: bool = False, seed: int | None = 0) -> Any:
        """Every draw of the run as ArviZ data: ``arviz.InferenceData`` with ArviZ 0.x, an
        ``xarray.DataTree`` with ArviZ 1.x (or without ArviZ).

        Groups ``posterior``, ``sample_stats`` (``lp``), ``observed_data`` (``Y``),
        ``constant_data`` (``X1``) and, on request, ``posterior_predictive``: ``Y``
        replicated from each draw, ``E[Y] + e`` with ``e ~ N(0, residual variance)``
        of the trait (seeded by ``seed``).
        """
        post = self.reload_posterior()
        observed = pd.DataFrame(self.design.Y, index=pd.Index(self.coords.row),
                                columns=pd.Index(self.coords.trait))
        constant = dict(self._static_groups()["constant_data"].data_vars)
        predictive = None
        if check_bool("posterior_predictive", posterior_predictive):
            if type(self.observation).latent_frame is not ObservationModel.latent_frame:
                raise InputError(f"posterior_predictive is not available with "
                                 f"{type(self.observation).__name__}: its data are not the "
                                 "latent traits")
            expected = self.predict(kind="draws")
            var = (1 - post["resid_h2"].sum("component")) / post["tot_Eta_prec"]
            rng = np.random.default_rng(check_seed(seed))
            noise = rng.standard_normal(expected.shape) * np.sqrt(
                var.transpose("chain", "draw", "trait").values[:, :, None, :])
            predictive = xr.Dataset({"Y": expected + noise})
        return to_arviz(post, observed=observed, constant=constant,
                        posterior_predictive=predictive)

    def describe(self) -> str:
        """Short text: data size, model dimensions, iterations, draws, speed (``print(m)``)."""
        d, c = self.design, self.control
        miss = float(np.isnan(d.Y).mean()) * 100
        res = ", ".join(f"{r.name} ({r.n_levels} levels, rank {r.rank})" for r in d.random)
        lines = [
            "MegaLMM model",
            (f"  data          {d.n} rows x {d.n_traits} traits, {miss:.1f}% missing (imputed)"
             if type(self.observation).latent_frame is ObservationModel.latent_frame else
             f"  data          {d.n} rows x {d.n_traits} latent traits seen through "
             f"{type(self.observation).__name__}"),
            f"  fixed         {len(d.fixed_names)} columns: {', '.join(d.fixed_names[:6])}"
            + (" ..." if len(d.fixed_names) > 6 else ""),
            f"  random        {res}",
            f"  factors       {c.n_factors}; h2 grid {self.grid.shape[1]} points",
            f"  chains        {len(self.chains)}; iterations {self.chains[0].nrun} "
            f"(burn {c.burn}, thin {c.thin}); draws stored {self.n_draws}",
            f"  time          setup {self.setup_seconds:.2f} s"
            + (f"; {self.seconds_per_iteration * 1e3:.2f} ms / iteration"
               if self.iterations_timed else ""),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()
