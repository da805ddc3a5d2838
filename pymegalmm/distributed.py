"""Analyses as tasks: the chains of a model, or cross-validation folds, run one task each.

:func:`run_chains` runs each chain of a model as a task, :func:`cross_validate`
each chain of each fold.  A task rebuilds the model from a template, an unsampled
:class:`~pymegalmm.MegaLMM` (its specification ``model._spec``: data, formula,
relationship matrices, control, priors, observation model, recorded parameters,
seed; for chain ``c`` with ``chain_ids=[c]``, for a fold with the fold's cells of
``Y`` set to NaN), samples it in a run folder of its own, saves it there and
returns a few numbers; the results are combined where the function was called.

**Where the tasks run.**

* ``client=None``: one after the other, in this process.  Each task samples with
  ``Control.n_threads`` threads (default: every core).  To run the chains of one
  model in parallel on one machine, ``MegaLMM(..., chains=4)`` already uses one
  process per chain.
* ``client=`` a :class:`dask.distributed.Client`: one Dask task per chain (per fold
  and chain), run by the cluster's workers (``pip install 'pymegalmm[distributed]'``).
  The template's specification is sent to the cluster once (``Client.scatter``) and
  reaches each worker once; each task samples with ``Control.n_threads`` threads, or
  with one when it is None (Dask runs one task per worker thread).

**Files.** ``run_dir`` is a folder on a file system that every worker sees at the same path
(for a cluster, a shared file system such as NFS or Lustre).  URLs (``s3://``, any
fsspec location) are not supported: give a local or mounted path.  Each task
writes one ordinary run folder (:mod:`pymegalmm.run.run_dir`)::

    <run_dir>/chain-<c>/               run_chains: chain c
    <run_dir>/fold-<f>/chain-<c>/      cross_validate: chain c of fold f

so every chain can be continued with ``MegaLMM.resume(path)``.  Folders that already
hold a run are refused unless ``overwrite=True``.  A task that finds its folder
holding a run saved by an earlier attempt of the same task (Dask runs the tasks of a
worker that died again elsewhere) continues it from its last saved chunk with
:meth:`~pymegalmm.MegaLMM.resume`, which gives the draws of an uninterrupted run.

**Draws.** Chain ``c`` has the generator it has in ``MegaLMM(..., chains=N)`` (spawned from
the template's seed), so its draws are exactly those of chain ``c`` of the model
run in one process (:meth:`~pymegalmm.MegaLMM.burn_in` with ``burn_in``, then
:meth:`~pymegalmm.MegaLMM.sample` with ``iterations``), whichever worker runs it
and however many threads it uses.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError, InputTypeError, LabelError, RunDirectoryError, StoreError
from .observation.base import ObservationModel
from .validate import check_bool, check_float, check_instance, check_int, check_path, check_seed

if TYPE_CHECKING:
    from .model import MegaLMM
    from .results.tables import Summary

__all__ = ["ChainRuns", "CrossValidation", "cross_validate", "run_chains"]

#: The extra that installs dask.distributed.
EXTRA = "pymegalmm[distributed]"

#: Keys of ``burn_in`` and their defaults (those of :meth:`pymegalmm.MegaLMM.burn_in`).
BURN_IN_DEFAULTS: dict[str, Any] = {"rounds": 5, "iterations": 100, "drop_cor_threshold": 0.6}


# --------------------------------------------------------------------------------------
# checking the arguments
# --------------------------------------------------------------------------------------


def _distributed() -> Any:
    """``dask.distributed``, or an ImportError naming the extra."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("client= needs dask.distributed, which is not installed: pip "
                          f"install '{EXTRA}' (or pip install distributed)") from exc
    return distributed


def _check_client(client: Any) -> Any:
    if client is None:
        return None
    distributed = _distributed()
    if not isinstance(client, distributed.Client):
        raise InputTypeError("client must be a dask.distributed.Client or None (run here), "
                             f"got {type(client).__name__}")
    return client


def _check_template(model: Any) -> MegaLMM:
    from .model import MegaLMM

    check_instance("model", model, MegaLMM, "an unsampled pymegalmm.MegaLMM (the template)")
    if max(c.nrun for c in model.chains) > 0 or model.store.owned:
        raise InputError(
            f"model has already run {max(c.nrun for c in model.chains)} iterations; the tasks "
            "start new chains from its specification, not from its state: pass a new, "
            "unsampled MegaLMM as the template (or continue each run with MegaLMM.resume)")
    return model


def _check_chains(chains: Any, spec: Mapping[str, Any]) -> tuple[int, list[int]]:
    """(chains of the analysis, chain numbers to run)."""
    if chains is None:
        n = int(spec["chains"])
        return n, list(spec["chain_ids"] or range(n))
    if isinstance(chains, Sequence) and not isinstance(chains, str):
        n = int(spec["chains"])
        ids = [check_int("chains", c, minimum=0) for c in chains]
        if not ids or len(set(ids)) < len(ids) or max(ids) >= n:
            raise InputError(f"chains: chain numbers must be distinct and in 0 .. {n - 1} (the "
                             f"template has chains={n}), got {list(chains)}")
        return n, sorted(ids)
    n = check_int("chains", chains, minimum=1)
    return n, list(range(n))


def _check_burn_in(burn_in: Any) -> dict[str, Any] | None:
    if burn_in is None:
        return None
    if not isinstance(burn_in, Mapping):
        raise InputTypeError("burn_in must be a dict such as dict(rounds=5, iterations=100) or "
                             f"None (the template's Control.burn only), got "
                             f"{type(burn_in).__name__}")
    unknown = sorted(map(str, set(burn_in) - set(BURN_IN_DEFAULTS)))
    if unknown:
        raise LabelError(f"burn_in: unknown key(s) {unknown}; choose among "
                         f"{sorted(BURN_IN_DEFAULTS)}")
    out = {**BURN_IN_DEFAULTS, **burn_in}
    out["rounds"] = check_int("burn_in['rounds']", out["rounds"], minimum=0)
    out["iterations"] = check_int("burn_in['iterations']", out["iterations"], minimum=0)
    out["drop_cor_threshold"] = check_float("burn_in['drop_cor_threshold']",
                                            out["drop_cor_threshold"], low=0.0, high=1.0,
                                            low_open=True)
    return out


def _pre_iterations(burn_in: Mapping[str, Any] | None) -> int:
    """Iterations of the burn-in rounds."""
    return burn_in["rounds"] * burn_in["iterations"] if burn_in else 0


def _check_draws(model: MegaLMM, burn_in: Mapping[str, Any] | None, iterations: int) -> int:
    """Draws each chain will record; raise when none."""
    control = model.control
    pre = _pre_iterations(burn_in)
    burn = max(control.burn, pre) if burn_in and burn_in["rounds"] else control.burn
    total = pre + iterations
    n = (total - burn) // control.thin if total > burn else 0
    if n == 0:
        raise InputError(f"iterations: {iterations} iterations after {pre} of burn-in rounds "
                         f"record no draw (burn = {burn}, thin = {control.thin}); run more")
    return n


def _check_run(model: Any, chains: Any, iterations: Any, burn_in: Any, save_every: Any
               ) -> tuple[MegaLMM, int, list[int], int, dict[str, Any] | None, int | None]:
    """The arguments every analysis takes, checked in this order."""
    model = _check_template(model)
    n_chains, ids = _check_chains(chains, model._spec)
    iterations = check_int("iterations", iterations, minimum=1)
    burn_in = _check_burn_in(burn_in)
    if save_every is not None:
        save_every = check_int("save_every", save_every, minimum=1)
    return model, n_chains, ids, iterations, burn_in, save_every


def _check_base(run_dir: Any) -> Path:
    """The base folder as an absolute path; URLs refused."""
    if isinstance(run_dir, str) and "://" in run_dir:
        raise InputError(f"run_dir {run_dir!r}: URLs (fsspec) are not supported; give a folder "
                         "that every worker sees at the same path (a shared file system), "
                         "e.g. '/shared/project/runs'")
    path = Path(os.path.abspath(check_path("run_dir", run_dir).expanduser()))
    from .run.run_dir import read_manifest

    if read_manifest(path) is not None:
        raise RunDirectoryError(f"run_dir {str(path)!r} holds a single model's run; give a "
                                "folder for the analysis, whose runs go in its subfolders")
    return path


def _holds_run(path: Path) -> bool:
    """Whether ``path`` holds a run (of any model), as a new model would find it."""
    from .run.run_dir import RunDirectory

    if path.exists() and not path.is_dir():
        raise InputError(f"run_dir: {str(path)!r} is an existing file, not a directory")
    try:
        RunDirectory(path, "").check_available(overwrite=False)
    except RunDirectoryError:
        return True
    return False


def _prepare_folders(base: Path, paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse task folders holding runs, or delete those runs when ``overwrite``."""
    from .run.run_dir import RunDirectory

    busy = [p for p in paths if _holds_run(p)]
    if busy and not overwrite:
        raise RunDirectoryError(
            f"run_dir {str(base)!r}: {len(busy)} of the {len(paths)} task folders already "
            f"hold runs (e.g. {str(busy[0])!r}): pass overwrite=True to delete them and start "
            "again, choose another run_dir, or continue a run with MegaLMM.resume(path)")
    for p in busy:  # deletes pymegalmm's files only
        RunDirectory(p, "").check_available(overwrite=True)


# --------------------------------------------------------------------------------------
# rows and cells of Y
# --------------------------------------------------------------------------------------


def _values(Y: Any) -> np.ndarray:
    """``Y`` as a float array (a copy)."""
    if isinstance(Y, pd.DataFrame):
        return np.array(Y.to_numpy(dtype=float, na_value=np.nan), dtype=float)
    return np.array(Y, dtype=float)


def _alignment(Y: Any, data: pd.DataFrame) -> tuple[pd.Index, np.ndarray, pd.DataFrame]:
    """Row labels of the model, the model row (position in ``data``) of each row of ``Y``,
    and ``data`` labelled as the model labels it (rows matched as ``MegaLMM`` does)."""
    from .design import _align_rows

    y_index = Y.index if isinstance(Y, pd.DataFrame) else None
    n_y = len(Y)
    pos, data_al = _align_rows(np.arange(n_y, dtype=float)[:, None], y_index, data)
    inv = np.full(n_y, -1, dtype=np.intp)
    inv[pos[:, 0].astype(np.intp)] = np.arange(pos.shape[0])
    return pd.Index(data_al.index), inv, data_al


def _masked(Y: Any, cells: np.ndarray) -> Any:
    """``Y`` with ``cells`` (rows, columns of Y) set to NaN."""
    values = _values(Y)
    values[cells[:, 0], cells[:, 1]] = np.nan
    if isinstance(Y, pd.DataFrame):
        return pd.DataFrame(values, index=Y.index, columns=Y.columns)
    return values


def _predict_cells(m: MegaLMM, Y: Any, data: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
    """Posterior mean of ``Y`` at ``cells`` of a fitted model: ``E[Y]`` of the model's rows
    (``X1 B1 + F Lambda + Z U_R``), or ``X1 B1 + Z U`` for rows the model dropped (every
    cell of the row missing in the fold)."""
    labels, inv, data_al = _alignment(Y, data)
    rows = inv[cells[:, 0]]
    fitted = m.predict()
    index = fitted.index.get_indexer(labels[rows])
    out = np.full(len(cells), np.nan)
    ok = index >= 0
    out[ok] = fitted.to_numpy(dtype=float)[index[ok], cells[ok, 1]]
    if not ok.all():
        new_rows = np.unique(rows[~ok])
        new = m.predict(new_data=data_al.iloc[new_rows]).to_numpy(dtype=float)
        out[~ok] = new[np.searchsorted(new_rows, rows[~ok]), cells[~ok, 1]]
    return out


# --------------------------------------------------------------------------------------
# the tasks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """One chain to run (of a fold when ``cells`` is given)."""

    label: str
    path: str
    n_chains: int
    chain: int
    iterations: int
    burn_in: dict[str, Any] | None
    save_every: int | None
    threads: int | None
    fold: Hashable = None
    cells: np.ndarray | None = None


def _annotate(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(text)


def _start(payload: Mapping[str, Any], task: _Task) -> tuple[MegaLMM, bool]:
    """The task's model: its earlier attempt's run continued, or a new one."""
    from .model import MegaLMM
    from .run.run_dir import read_manifest

    functions = payload["functions"] or None
    if read_manifest(task.path) is not None:
        m = MegaLMM.resume(task.path, functions=functions, processes=1, verbose=False)
        if m.iteration >= _pre_iterations(task.burn_in):
            return m, True
    spec = dict(payload["spec"])
    if task.cells is not None:
        spec["Y"] = _masked(spec["Y"], task.cells)
    if payload["plain_observation"]:
        spec["observation"] = replace(spec["observation"], missing_data_map=None)
    spec.update(chains=task.n_chains, chain_ids=[task.chain], functions=functions)
    m = MegaLMM(**spec, run_dir=task.path, overwrite=True, processes=1, verbose=False)
    if payload["setup"] is not None:
        payload["setup"](m)
    if task.burn_in and task.burn_in["rounds"]:
        m.burn_in(**task.burn_in, progress=False)
    return m, False


#: The warning of rows dropped only because every cell is missing (a fold held them out).
_DROPPED_EMPTY_ROWS = r"dropped \d+ of \d+ rows \(\d+ rows with every trait missing\)$"


def _run_task(payload: Mapping[str, Any], task: _Task) -> dict[str, Any]:
    """Run one task (in this process or on a Dask worker); returns a few numbers."""
    from .linalg import sampling_threads

    t0 = time.perf_counter()
    threads = (contextlib.nullcontext() if task.threads is None
               else sampling_threads(task.threads))
    try:
        with threads, warnings.catch_warnings():
            # a fold holding out whole rows drops them from its model, as expected
            warnings.filterwarnings("ignore", message=_DROPPED_EMPTY_ROWS)
            m, resumed = _start(payload, task)
            remaining = _pre_iterations(task.burn_in) + task.iterations - m.iteration
            while remaining > 0:
                n = min(task.save_every or remaining, remaining)
                m.sample(n, progress=False)
                m.save_posterior_chunk()
                remaining -= n
            predictions = None
            if task.cells is not None:
                predictions = _predict_cells(m, payload["spec"]["Y"], payload["spec"]["data"],
                                             task.cells)
        return {"fold": task.fold, "chain": task.chain, "path": task.path,
                "iteration": m.iteration, "n_draws": m.store.n_draws, "resumed": resumed,
                "seconds": time.perf_counter() - t0, "host": socket.gethostname(),
                "pid": os.getpid(), "predictions": predictions}
    except Exception as exc:
        _annotate(exc, f"in the pymegalmm task of {task.label} (run folder {task.path})")
        raise


def _payload(model: MegaLMM, setup: Callable | None = None,
             plain_observation: bool = False) -> dict[str, Any]:
    spec = {k: v for k, v in model._spec.items() if k != "functions"}
    return {"spec": spec, "functions": dict(model.functions), "setup": setup,
            "plain_observation": plain_observation}


def _key(label: str, token: str) -> str:
    return f"pymegalmm-{re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-')}-{token}"


def _execute(tasks: Sequence[_Task], payload: Mapping[str, Any], client: Any, progress: bool,
             desc: str) -> list[dict[str, Any]]:
    """Run the tasks here or on ``client``; results in the tasks' order."""
    from tqdm.auto import tqdm

    if client is None:
        return [_run_task(payload, t)
                for t in tqdm(tasks, disable=not progress, desc=desc, unit="task")]
    distributed = _distributed()
    [remote] = client.scatter([payload], hash=False)
    token = uuid.uuid4().hex[:8]
    futures = [client.submit(_run_task, remote, t, key=_key(t.label, token), pure=False)
               for t in tasks]
    try:
        with tqdm(total=len(futures), disable=not progress, desc=desc, unit="task") as bar:
            for future in distributed.as_completed(futures):
                if future.status == "error":
                    future.result()  # raises the task's exception here
                bar.update(1)
        return client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.cancel([remote])


def _thread_count(model: MegaLMM, client: Any) -> int | None:
    """OpenMP threads per task: Control.n_threads wins; one per task on Dask otherwise."""
    if model.control.n_threads is not None or client is None:
        return None
    return 1


# --------------------------------------------------------------------------------------
# chains
# --------------------------------------------------------------------------------------


def _open_run(path: Path) -> Any:
    from .run.run_dir import RunDirectory

    run, _ = RunDirectory.adopt(path)
    return run


def _pool_chains(parts: Sequence[xr.Dataset], where: str) -> xr.Dataset:
    """Datasets of single chains, concatenated along ``chain`` (same draws required)."""
    draws = {int(p.sizes["draw"]) for p in parts}
    if len(draws) > 1:
        raise StoreError(f"{where}: the chains hold different numbers of draws "
                         f"({sorted(draws)}); a task did not finish: run it again or resume "
                         "it with MegaLMM.resume(path)")
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim="chain", data_vars="all", coords="minimal",
                     compat="override", join="override")


class ChainRuns:
    """The chains of one analysis, each saved in a run folder of its own.

    Returned by :func:`run_chains`; :meth:`open` reads the chains back from the
    analysis's folder later, in any process.

    Parameters
    ----------
    paths : dict of int -> path
        Run folder of each chain, by chain number.
    info : sequence of dict, optional
        What each task returned (chain, path, iteration, draws, seconds, host, ...).

    Attributes
    ----------
    paths : dict of int -> pathlib.Path
        Run folder of each chain, by chain number; continue one with
        ``MegaLMM.resume(paths[c])`` (or :meth:`resume`).
    info : pandas.DataFrame
        One row per task: ``chain``, ``path``, ``iteration``, ``n_draws``, ``resumed``
        (it continued an earlier attempt's run), ``seconds``, ``host``, ``pid``.
    """

    def __init__(self, paths: Mapping[int, str | os.PathLike],
                 info: Sequence[Mapping[str, Any]] = ()) -> None:
        self.paths = {int(c): Path(p) for c, p in sorted(paths.items())}
        self.info = pd.DataFrame([{k: v for k, v in row.items()
                                   if k not in ("fold", "predictions")} for row in info])

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> ChainRuns:
        """The chains saved in the ``chain-<c>`` folders of an analysis's ``run_dir``."""
        from .run.run_dir import read_manifest

        base = check_path("run_dir", run_dir)
        found = {}
        for p in sorted(base.glob("chain-*")) if base.is_dir() else []:
            match = re.fullmatch(r"chain-(\d+)", p.name)
            if match and read_manifest(p) is not None:
                found[int(match.group(1))] = p
        if not found:
            raise FileNotFoundError(f"run_dir {str(base)!r} holds no saved chain (chain-<c> "
                                    "folders written by pymegalmm.run_chains)")
        return cls(found)

    @property
    def chains(self) -> list[int]:
        """The chain numbers."""
        return list(self.paths)

    @property
    def posterior(self) -> xr.Dataset:
        """Every chain's saved draws, lazily (dask-backed when dask is installed).

        Dims ``chain, draw, ...``; the ``chain`` coordinate holds the chain numbers.
        Read from the run folders at each access, so draws saved since are included.
        """
        parts = [_open_run(p).load(lazy=True) for p in self.paths.values()]
        return _pool_chains(parts, f"run_dir {str(next(iter(self.paths.values())).parent)!r}")

    @property
    def posterior_means(self) -> xr.Dataset:
        """Posterior mean of ``E[Y]`` of the fitted rows (``Eta_mean``) over every draw of
        every chain, as :attr:`pymegalmm.MegaLMM.posterior_means`."""
        total, count = None, 0
        for p in self.paths.values():
            sums, n = _open_run(p).mean_sums()
            if n:
                total = sums["Eta_mean"] if total is None else total + sums["Eta_mean"]
                count += n
        if total is None:
            raise RuntimeError("no posterior means were saved in these runs")
        post = self.posterior
        coords = {d: post[d].values for d in ("row", "trait") if d in post.coords}
        da = xr.DataArray(total / count, dims=("row", "trait"), coords=coords,
                          attrs={"description": "posterior mean of E[Y] of the fitted rows"})
        return xr.Dataset({"Eta_mean": da})

    def diagnostics(self, variables: Sequence[str] | None = None, **kwargs: Any
                    ) -> pd.DataFrame:
        """R-hat and bulk and tail ESS over the chains
        (:func:`pymegalmm.results.diagnostics.diagnostics` on :attr:`posterior`; keyword
        arguments are passed on)."""
        from .results.diagnostics import diagnostics

        return diagnostics(self.posterior, variables, **kwargs)

    def summary(self, prob: float = 0.95) -> Summary:
        """lme4-style tables of the pooled posterior, as :meth:`pymegalmm.MegaLMM.summary`
        (the draws are read into memory)."""
        from .results.tables import Summary

        prob = check_float("prob", prob, low=0.0, high=1.0, low_open=True)
        return Summary.from_posterior(self.posterior.load(), repr(self), prob=prob)

    def resume(self, chain: int, *, functions: Mapping[str, Callable] | None = None,
               verbose: bool = False) -> MegaLMM:
        """Chain ``chain``'s model, continued from its run folder
        (:meth:`pymegalmm.MegaLMM.resume`)."""
        from .model import MegaLMM

        chain = check_int("chain", chain, minimum=0)
        if chain not in self.paths:
            raise LabelError(f"chain: no chain {chain} here; chains are {self.chains}")
        return MegaLMM.resume(self.paths[chain], functions=functions, verbose=verbose)

    def __repr__(self) -> str:
        where = str(next(iter(self.paths.values())).parent) if self.paths else "?"
        return f"ChainRuns: chains {self.chains} in {where}"


def run_chains(model: MegaLMM, chains: int | Sequence[int] | None = None, *, iterations: int,
               burn_in: Mapping[str, Any] | None = None, save_every: int | None = None,
               client: Any = None, run_dir: str | os.PathLike = "MegaLMM_chains",
               overwrite: bool = False, progress: bool = False) -> ChainRuns:
    """Run the chains of a model as separate tasks, here or on a Dask cluster.

    Chain ``c`` is ``MegaLMM(**model's specification, chains=N, chain_ids=[c])``:
    it has the generator, and so the draws, it has in ``MegaLMM(..., chains=N)``
    run in one process.  Each task runs the burn-in rounds (``burn_in``), then
    ``iterations`` iterations, saving every ``save_every`` iterations to its own
    run folder ``<run_dir>/chain-<c>``.  See :mod:`pymegalmm.distributed` for
    where the tasks run and what they write.

    Parameters
    ----------
    model : MegaLMM
        The template: an unsampled model, built as for one process (any
        ``chains``, ``run_dir``, ``processes``; nothing of it is run or written).
    chains : int or sequence of int, optional
        The number of chains of the analysis (all are run), or the numbers of the
        chains to run among the template's ``chains``.  Default: the template's chains.
    iterations : int
        Iterations per chain after the burn-in rounds; draws are recorded after
        ``Control.burn`` iterations (counted from the start), every ``Control.thin``.
    burn_in : dict, optional
        ``dict(rounds=..., iterations=..., drop_cor_threshold=...)``: burn-in rounds
        with factor reordering first (:meth:`~pymegalmm.MegaLMM.burn_in`; missing keys
        take its defaults 5, 100, 0.6).  Default: none, the template's
        ``Control.burn`` only.
    save_every : int, optional
        Save a chunk every this many iterations (memory stays bounded and a task
        that is run again continues from its last chunk).  Default: one chunk at the end.
    client : dask.distributed.Client, optional
        Run the chains as tasks on this client's workers.  Default: one after the
        other in this process.
    run_dir : str or path
        Folder of the analysis, seen by every worker at the same path (no URLs).
        Default ``"MegaLMM_chains"``.
    overwrite : bool
        Delete runs already in the chains' folders (pymegalmm's files only) instead
        of refusing them.
    progress : bool
        A progress bar over the tasks.

    Returns
    -------
    ChainRuns
        ``.posterior`` (lazy, every chain along ``chain``), ``.diagnostics()``,
        ``.summary()``, ``.paths`` (each chain's run, for ``MegaLMM.resume``).

    Raises
    ------
    RunDirectoryError
        When a chain's folder already holds a run and ``overwrite`` is False.
    ImportError
        When ``client`` is given but dask.distributed is not installed.

    Examples
    --------
    >>> import pymegalmm
    >>> from pymegalmm import MegaLMM, datasets
    >>> sim = datasets.simulate_factor_data(n=60, t=5, n_markers=200, seed=1)
    >>> m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
    ...             h2_divisions=5, burn=10, chains=2, seed=1, verbose=False)
    >>> runs = pymegalmm.run_chains(m, iterations=30, run_dir="chains")
    >>> runs.posterior.sizes["chain"], runs.posterior.sizes["draw"]
    (2, 10)
    >>> table = runs.diagnostics(warn=False)
    """
    model, n_chains, ids, iterations, burn_in, save_every = _check_run(
        model, chains, iterations, burn_in, save_every)
    client = _check_client(client)
    overwrite = check_bool("overwrite", overwrite)
    progress = check_bool("progress", progress)
    base = _check_base(run_dir)
    _check_draws(model, burn_in, iterations)
    threads = _thread_count(model, client)
    tasks = [_Task(label=f"chain {c}", path=str(base / f"chain-{c}"), n_chains=n_chains,
                   chain=c, iterations=iterations, burn_in=burn_in, save_every=save_every,
                   threads=threads) for c in ids]
    _prepare_folders(base, [Path(t.path) for t in tasks], overwrite)
    results = _execute(tasks, _payload(model), client, progress, "chains")
    return ChainRuns({r["chain"]: r["path"] for r in results}, results)


# --------------------------------------------------------------------------------------
# cross-validation
# --------------------------------------------------------------------------------------


def _normalise_label(label: Any) -> Hashable:
    if isinstance(label, (np.generic,)):
        label = label.item()
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return label


def _folder_names(labels: Sequence[Hashable]) -> list[str]:
    names = [re.sub(r"[^A-Za-z0-9_.-]+", "_", str(lab)) for lab in labels]
    if len(set(names)) < len(names):
        names = [f"{i}_{n}" for i, n in enumerate(names)]
    return [f"fold-{n}" for n in names]


def _candidates(model: MegaLMM, Y: Any) -> np.ndarray:
    """Cells of ``Y`` (its rows and columns) that the template observes."""
    labels, inv, _ = _alignment(Y, model._spec["data"])
    if not labels.is_unique:
        dup = labels[labels.duplicated()]
        raise InputError(f"cross_validate needs unique row labels in data (the model's rows), "
                         f"got duplicates {list(dup[:5])}")
    ypos = np.empty(len(labels), dtype=np.intp)
    ypos[inv[inv >= 0]] = np.flatnonzero(inv >= 0)
    kept = ypos[labels.get_indexer(model.design.rows)]
    out = np.zeros(_values(Y).shape, dtype=bool)
    out[kept] = ~np.isnan(model.design.Y)
    return out


def _random_folds(cand: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number of each candidate cell (-1 elsewhere): each trait's cells split evenly."""
    fold = np.full(cand.shape, -1, dtype=np.intp)
    for j in range(cand.shape[1]):
        rows = np.flatnonzero(cand[:, j])
        order = rng.permutation(rows.size)
        fold[rows[order], j] = (int(rng.integers(k)) + np.arange(rows.size)) % k
    return fold


def _group_folds(cand: np.ndarray, groups: pd.Series, k: int, rng: np.random.Generator,
                 name: str) -> np.ndarray:
    """Fold number of each candidate cell: whole groups (of rows) per fold."""
    codes, uniques = pd.factorize(groups, use_na_sentinel=False)
    used = np.unique(codes[cand.any(axis=1)])
    if used.size < k:
        raise InputError(f"folds: {k} folds need at least {k} groups of folds_by={name!r} with "
                         f"observed cells; there are {used.size}")
    group_fold = np.full(len(uniques), -1, dtype=np.intp)
    group_fold[used[rng.permutation(used.size)]] = np.arange(used.size) % k
    fold = np.repeat(group_fold[codes][:, None], cand.shape[1], axis=1)
    fold[~cand] = -1
    return fold


def _matrix_folds(folds: Any, Y: Any, cand: np.ndarray) -> tuple[np.ndarray, list[Hashable]]:
    """Fold of each cell from a user's matrix of labels (NaN: never held out)."""
    if isinstance(folds, pd.DataFrame) and isinstance(Y, pd.DataFrame):
        extra_rows = folds.index.difference(Y.index)
        extra_cols = folds.columns.difference(Y.columns)
        if len(extra_rows) or len(extra_cols):
            raise LabelError(f"folds: labels that are not in Y: rows {list(extra_rows[:5])}, "
                             f"columns {list(extra_cols[:5])}")
        folds = folds.reindex(index=Y.index, columns=Y.columns)
    values = np.asarray(folds.to_numpy() if isinstance(folds, pd.DataFrame) else folds,
                        dtype=object)
    if values.shape != cand.shape:
        raise InputError(f"folds: a matrix of fold labels must have Y's shape {cand.shape}, "
                         f"got {values.shape}")
    present = pd.notna(values)
    labels = sorted({_normalise_label(v) for v in values[present]}, key=lambda v: (str(type(v)),
                                                                                    v))
    if not labels:
        raise InputError("folds: the matrix of fold labels holds no label (NaN everywhere)")
    fold = np.full(cand.shape, -1, dtype=np.intp)
    lookup = {lab: i for i, lab in enumerate(labels)}
    rows, cols = np.nonzero(present & cand)
    fold[rows, cols] = [lookup[_normalise_label(v)] for v in values[rows, cols]]
    return fold, labels


def _assign_folds(model: MegaLMM, folds: Any, folds_by: Any, seed: int | None
                  ) -> tuple[np.ndarray, list[Hashable], int]:
    """Fold index of each cell of Y (-1: not held out), the fold labels, the seed used."""
    spec = model._spec
    Y = spec["Y"]
    cand = _candidates(model, Y)
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss)
    if isinstance(folds, pd.DataFrame | np.ndarray):
        if folds_by is not None:
            raise InputError("folds_by: give it with a number of folds, not with a matrix of "
                             "fold labels")
        fold, labels = _matrix_folds(folds, Y, cand)
    else:
        k = check_int("folds", folds, minimum=2)
        if folds_by is None:
            fold = _random_folds(cand, k, rng)
        else:
            if not isinstance(folds_by, str):
                raise InputTypeError(f"folds_by must be the name of a column of data (str), "
                                     f"got {type(folds_by).__name__}")
            data = spec["data"]
            if folds_by not in data.columns:
                raise LabelError(f"folds_by: {folds_by!r} is not a column of data; columns "
                                 f"are {list(map(str, data.columns))[:20]}")
            _, inv, data_al = _alignment(Y, data)
            groups = data_al[folds_by].iloc[inv].reset_index(drop=True)
            fold = _group_folds(cand, groups, k, rng, folds_by)
        labels = list(range(k))
    traits = list(model.design.traits)
    for f, label in enumerate(labels):
        left = (cand & (fold != f)).sum(axis=0)
        empty = [traits[j] for j in np.flatnonzero(left == 0)]
        if empty:
            raise InputError(f"folds: fold {label!r} holds out every observed cell of the "
                             f"trait(s) {empty[:5]}, which the model cannot fit; use fewer "
                             "folds or other groups")
    return fold, labels, int(ss.entropy)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / den if den > 0 else float("nan")


@dataclass
class CrossValidation:
    """Cross-validated accuracy of a model, fold by fold and trait by trait.

    Returned by :func:`cross_validate`.

    Attributes
    ----------
    accuracy : pandas.DataFrame
        One row per fold and trait: ``fold``, ``trait``, ``n_heldout`` (cells held
        out and scored), ``correlation`` (Pearson, of the predicted and held-out
        values; NaN below 3 cells or for constant values), ``rmse``.
    predictions : pandas.DataFrame
        One row per held-out cell: ``fold``, ``row`` (the model's row label),
        ``trait``, ``observed``, ``predicted`` (posterior mean over every draw of
        the fold's chains).
    folds : pandas.DataFrame
        Y's shape: the fold holding out each cell, NaN for cells never held out.
    paths : dict of (fold, chain) -> pathlib.Path
        Run folder of each fold's chains (``MegaLMM.resume(path)``).
    info : pandas.DataFrame
        One row per task (fold, chain, path, iteration, draws, seconds, host, ...).
    seed : int
        Entropy of the ``numpy.random.SeedSequence`` that drew the folds (pass it as
        ``seed`` to draw them again).
    """

    accuracy: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.DataFrame
    paths: dict[tuple[Hashable, int], Path]
    info: pd.DataFrame
    seed: int | None

    def summary(self) -> pd.DataFrame:
        """Accuracy per trait over the folds.

        Returns
        -------
        pandas.DataFrame
            Indexed by trait: ``folds`` (folds scoring the trait), ``n_heldout``,
            ``correlation`` (mean of the folds' correlations), ``correlation_sd``
            (their standard deviation), ``pooled_correlation`` (of every held-out
            cell of the trait, all folds together) and ``rmse`` (over every held-out cell).
        """
        acc = self.accuracy
        rows = {}
        for trait in pd.unique(acc["trait"]):
            a = acc[acc["trait"] == trait]
            part = self.predictions[self.predictions["trait"] == trait]
            err = part["predicted"].to_numpy() - part["observed"].to_numpy()
            rows[trait] = {
                "folds": int((a["n_heldout"] > 0).sum()),
                "n_heldout": int(a["n_heldout"].sum()),
                "correlation": float(a["correlation"].mean()),
                "correlation_sd": float(a["correlation"].std()),
                "pooled_correlation": _correlation(part["predicted"].to_numpy(),
                                                   part["observed"].to_numpy()),
                "rmse": float(np.sqrt(np.mean(err**2))),
            }
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "trait"
        return out

    def __repr__(self) -> str:
        s = self.summary()
        n_folds = self.accuracy["fold"].nunique()
        chains = sorted({c for _, c in self.paths})
        return (f"CrossValidation: {n_folds} folds x {len(chains)} chain(s), "
                f"{len(self.predictions)} cells held out; mean correlation over traits "
                f"{s['correlation'].mean():.3f}\n{s.to_string(float_format=lambda v: f'{v:.3f}')}")


def cross_validate(model: MegaLMM, folds: int | pd.DataFrame | np.ndarray = 5, *,
                   iterations: int, folds_by: str | None = None,
                   chains: int | Sequence[int] | None = None,
                   burn_in: Mapping[str, Any] | None = None, save_every: int | None = None,
                   seed: int | None = None, setup: Callable[[MegaLMM], Any] | None = None,
                   client: Any = None, run_dir: str | os.PathLike = "MegaLMM_cv",
                   overwrite: bool = False, progress: bool = False) -> CrossValidation:
    """Cross-validate a model: hold out cells of Y, fit, and score the predictions.

    For each fold the model is rebuilt from the template with the fold's cells of
    ``Y`` set to NaN, each of its chains runs as a task (as in :func:`run_chains`,
    in ``<run_dir>/fold-<f>/chain-<c>``), and the held-out cells are predicted by
    the posterior mean over every draw of the fold's chains: ``E[Y]`` of the row
    (:meth:`~pymegalmm.MegaLMM.predict`: ``X1 B1 + F Lambda + Z U_R``), or
    ``X1 B1 + Z U`` for a row every cell of which is held out (the model drops
    such rows; its genetic values come from the relationship matrix).  Accuracy is
    the correlation of predicted and held-out values per fold and trait.

    Cells missing in ``Y`` (or in rows the template drops) stay missing in every
    fold and are never scored.

    Parameters
    ----------
    model : MegaLMM
        The template: an unsampled model of the full data (see :func:`run_chains`).
    folds : int or matrix of fold labels
        The number of folds (at least 2), or a matrix of Y's shape (a DataFrame
        labelled like ``Y``, or an array) giving the fold of each cell to hold out,
        NaN for cells never held out (e.g. R MegaLMM's ``fold_ID_matrix``; keep only
        one label, ``folds.where(folds == 1)``, to run one fold).  Default 5.
    iterations : int
        Iterations per chain after the burn-in rounds (see :func:`run_chains`).
    folds_by : str, optional
        With a number of folds: a column of ``data``; its groups are held out whole
        (e.g. ``"Line"``: every observed cell of a line is held out in the same
        fold), the groups shuffled and dealt to the folds in turn.  Default: single
        cells, each trait's observed cells shuffled and dealt to the folds in turn,
        so that every fold holds out about ``1/folds`` of every trait.
    chains : int or sequence of int, optional
        Chains per fold (see :func:`run_chains`).  Default: the template's.
    burn_in, save_every
        As in :func:`run_chains`.
    seed : int, optional
        Seed of the fold assignment (``numpy.random.SeedSequence(seed)``); the
        chains' generators come from the template's seed, the same in every fold.
        Default: fresh entropy, kept in the result's ``seed``.
    setup : callable, optional
        Called with each fold's new model before sampling, e.g. to choose a
        missing-data map for the fold's cells:
        ``setup=lambda m: m.set_missing_data_map(m.missing_data_maps()[0][5])``.  A
        template's own map fits only its own missing cells, so folds are built
        without it.
    client : dask.distributed.Client, optional
        Run the tasks (folds x chains) on this client's workers.  Default: one
        after the other in this process.
    run_dir : str or path
        Folder of the analysis, seen by every worker at the same path (no URLs).
        Default ``"MegaLMM_cv"``.
    overwrite, progress : bool
        As in :func:`run_chains`.

    Returns
    -------
    CrossValidation
        ``.accuracy`` (fold, trait, n_heldout, correlation, rmse), ``.summary()``
        (per trait), ``.predictions``, ``.folds``, ``.paths``.

    Examples
    --------
    >>> import pymegalmm
    >>> from pymegalmm import MegaLMM, datasets
    >>> sim = datasets.simulate_factor_data(n=60, t=5, n_markers=200, seed=1)
    >>> m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
    ...             h2_divisions=5, burn=10, seed=1, verbose=False)
    >>> cv = pymegalmm.cross_validate(m, folds=2, iterations=30, seed=2, run_dir="cv")
    >>> list(cv.accuracy.columns)
    ['fold', 'trait', 'n_heldout', 'correlation', 'rmse']
    >>> int(cv.accuracy["n_heldout"].sum()) == int(sim.Y.notna().sum().sum())
    True
    """
    model, n_chains, ids, iterations, burn_in, save_every = _check_run(
        model, chains, iterations, burn_in, save_every)
    seed = check_seed(seed)
    if setup is not None and not callable(setup):
        raise InputTypeError(f"setup must be a function of the fold's model, got "
                             f"{type(setup).__name__}")
    client = _check_client(client)
    overwrite = check_bool("overwrite", overwrite)
    progress = check_bool("progress", progress)
    if not isinstance(folds, pd.DataFrame | np.ndarray) and (
            isinstance(folds, bool) or not isinstance(folds, int | np.integer | float)):
        raise InputTypeError("folds must be a number of folds or a matrix of fold labels "
                             f"(DataFrame or array of Y's shape), got {type(folds).__name__}")
    obs = type(model.observation)
    if obs.latent_frame is not ObservationModel.latent_frame:
        raise InputError(f"cross_validate holds out cells of Y as latent traits; the "
                         f"observation model {obs.__name__} sees its data through other "
                         "latent traits, which it does not support yet")
    base = _check_base(run_dir)
    _check_draws(model, burn_in, iterations)
    fold, labels, entropy = _assign_folds(model, folds, folds_by, seed)

    plain = getattr(model.observation, "missing_data_map", None) is not None
    if plain and setup is None:
        warnings.warn("the template's missing-data map fits its own missing cells, not a "
                      "fold's: the folds impute every missing cell (pass setup= to choose a "
                      "map per fold)", UserWarning, stacklevel=2)
    threads = _thread_count(model, client)
    names = _folder_names(labels)
    tasks, cells_of = [], {}
    for f, (label, name) in enumerate(zip(labels, names, strict=True)):
        cells = np.argwhere(fold == f)
        if not len(cells):
            continue
        cells_of[label] = cells
        for c in ids:
            tasks.append(_Task(label=f"fold {label}, chain {c}",
                               path=str(base / name / f"chain-{c}"), n_chains=n_chains,
                               chain=c, iterations=iterations, burn_in=burn_in,
                               save_every=save_every, threads=threads, fold=label, cells=cells))
    _prepare_folders(base, [Path(t.path) for t in tasks], overwrite)
    results = _execute(tasks, _payload(model, setup, plain), client, progress, "folds")
    return _score(model, labels, fold, cells_of, results, entropy)


def _score(model: MegaLMM, labels: list[Hashable], fold: np.ndarray,
           cells_of: Mapping[Hashable, np.ndarray], results: Sequence[Mapping[str, Any]],
           entropy: int) -> CrossValidation:
    """Pool each fold's chains and score its predictions."""
    Y = model._spec["Y"]
    values = _values(Y)
    row_labels, inv, _ = _alignment(Y, model._spec["data"])
    traits = list(model.design.traits)
    accuracy, predictions = [], []
    for label, cells in cells_of.items():
        runs = [r for r in results if r["fold"] == label]
        weights = np.array([r["n_draws"] for r in runs], dtype=float)
        predicted = (runs[0]["predictions"] if len(runs) == 1 else
                     sum(w * r["predictions"] for w, r in zip(weights, runs, strict=True))
                     / weights.sum())
        observed = values[cells[:, 0], cells[:, 1]]
        for j, trait in enumerate(traits):
            sel = cells[:, 1] == j
            x, y = predicted[sel], observed[sel]
            accuracy.append({"fold": label, "trait": trait, "n_heldout": int(sel.sum()),
                             "correlation": _correlation(x, y),
                             "rmse": float(np.sqrt(np.mean((x - y) ** 2))) if sel.any()
                             else float("nan")})
        predictions.append(pd.DataFrame({
            "fold": [label] * len(cells), "row": row_labels[inv[cells[:, 0]]],
            "trait": [traits[j] for j in cells[:, 1]], "observed": observed,
            "predicted": predicted}))
    assignment = np.full(fold.shape, np.nan, dtype=object)
    held = fold >= 0
    assignment[held] = np.asarray(labels, dtype=object)[fold[held]]
    if isinstance(Y, pd.DataFrame):
        frame = pd.DataFrame(assignment, index=Y.index, columns=Y.columns)
    else:
        frame = pd.DataFrame(assignment, columns=traits)
    frame = frame.infer_objects()
    info = pd.DataFrame([{k: v for k, v in r.items() if k != "predictions"} for r in results])
    paths = {(r["fold"], r["chain"]): Path(r["path"]) for r in results}
    return CrossValidation(accuracy=pd.DataFrame(accuracy),
                           predictions=pd.concat(predictions, ignore_index=True),
                           folds=frame, paths=paths, info=info, seed=entropy)
