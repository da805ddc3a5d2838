"""One run per folder: the run directory, its manifest, crash-safe commits and resume.

A run directory holds one model's run and nothing of any other model's::

    <run_dir>/zarr.json            root zarr group (xarray.open_datatree reads the run)
    <run_dir>/posterior/           committed draws, dims ``chain, draw, ...`` (zarr)
    <run_dir>/sample_stats/        statistics of each draw (``lp``), same dims
    <run_dir>/observed_data/       the data ``Y``; constant_data/: the fixed-effect design
                                   (ArviZ's groups: ``arviz.from_datatree`` reads the run)
    <run_dir>/.pymegalmm/manifest.json
                                   what is committed: owner, fingerprint, draws,
                                   iteration, burn, the files and their sizes
    <run_dir>/.pymegalmm/spec.pkl  the model's specification (for ``MegaLMM.resume``)
    <run_dir>/.pymegalmm/state-<commit>-chain<c>.npz
                                   every chain's state at the last commit (arrays
                                   and generator), so a resumed chain continues exactly
    <run_dir>/.pymegalmm/means-<commit>.npz
                                   running sums of the posterior means

**Commit protocol.**  A commit (``save_posterior_chunk``, ``clear_posterior``)
appends the draws to the zarr group (zarr replaces each file atomically), writes
the new states and sums under new names (write, fsync, rename), fsyncs the new
zarr files, and only then replaces the manifest atomically; files of the
previous commit are deleted last.  A process killed at any moment therefore
leaves the previous commit intact and readable: draws appended after it are cut
off (:meth:`RunDirectory.repair`) and never read.

**Ownership.**  The manifest names the run (a random id) and the fingerprint of
its model (:mod:`pymegalmm.run.fingerprint`).  A model writes only to a run
directory that is empty, new, or already its own; a model created on a folder
holding another run is refused with the choices (``overwrite=True``, another
``run_dir``, or ``MegaLMM.resume``), and nothing ever deletes or appends to
another model's draws.  Commits hold an exclusive lock on the folder.

**Damage.**  Loads compare the committed files with the manifest: a missing or
truncated file raises :class:`~pymegalmm.errors.StoreError` naming the file and
the variable, never NaN.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core.state import ChainState
from ..errors import RunDirectoryError, StoreError
from ..results.schema import SAMPLE_STATS
from .atomic import fsync_dir, fsync_files, write_atomic, write_json_atomic
from .store import PosteriorStore

__all__ = ["META_DIR", "RunDirectory", "read_manifest"]

#: Folder of pymegalmm's own files inside a run directory.
META_DIR = ".pymegalmm"
_MANIFEST = "manifest.json"
_SPEC = "spec.pkl"
_LOCK = "lock"
#: Format of the manifest; bumped when the layout changes.
FORMAT = 1
#: Entries a run directory may hold that belong to pymegalmm (current and older layouts).
_OWN_ENTRIES = {META_DIR, "posterior", "sample_stats", "observed_data", "constant_data",
                "zarr.json", ".zgroup", ".zattrs", ".zmetadata", "draws", "means"}


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the run in ``path``, or None when there is none."""
    import json

    file = Path(path) / META_DIR / _MANIFEST
    try:
        text = file.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:  # written atomically: only outside damage gets here
        raise StoreError(f"run_dir {str(path)!r}: {file} is damaged ({exc})") from exc


def _describe_run(manifest: Mapping[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(manifest.get("updated", 0)))
    return (f"{manifest.get('iteration', 0)} iterations, {manifest.get('n_draws', 0)} draws "
            f"per chain saved, last saved {when}")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (POSIX; nothing elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / _LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RunDirectory:
    """The run directory of one model (see the module docstring).

    Parameters
    ----------
    path : the folder.
    fingerprint : digest of the model's specification.
    parts : digest of each part (to say which parts differ from another run's).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str,
                 parts: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.parts = dict(parts or {})
        self.run_id = uuid.uuid4().hex
        self.posterior = PosteriorStore(self.path, draws_group="posterior")
        self.sample_stats = PosteriorStore(self.path, draws_group="sample_stats")
        #: The committed manifest while this model owns the folder, else None.
        self.manifest: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (f"RunDirectory({str(self.path)!r}, owned={self.owned}, "
                f"n_draws={self.n_draws})")

    @property
    def meta(self) -> Path:
        return self.path / META_DIR

    @property
    def owned(self) -> bool:
        """Whether this model has claimed the folder (saved to it)."""
        return self.manifest is not None

    # ---------------------------------------------------------------- ownership

    def _refusal(self, manifest: dict[str, Any] | None, resumable: bool) -> RunDirectoryError:
        where = f"run_dir {str(self.path)!r}"
        if manifest is None:
            what = "holds a posterior store of an older pymegalmm version (no manifest)"
        elif manifest.get("fingerprint") == self.fingerprint:
            what = f"holds a run of this same model ({_describe_run(manifest)})"
        else:
            theirs = manifest.get("parts", {})
            differ = sorted(k for k in set(theirs) | set(self.parts)
                            if theirs.get(k) != self.parts.get(k))
            what = (f"holds another model's run ({_describe_run(manifest)}; differs in: "
                    f"{', '.join(differ) or 'its specification'})")
        choices = ["pass overwrite=True to delete it and start this run there",
                   "choose another run_dir"]
        if resumable:
            choices.append(f"continue it with MegaLMM.resume({str(self.path)!r})")
        return RunDirectoryError(f"{where} {what}: " + "; or ".join(choices))

    def check_available(self, overwrite: bool) -> None:
        """Refuse a folder holding another run, or clear it when ``overwrite``.

        Files in the folder that pymegalmm did not write (plots, notes) are kept and
        never block it.

        Raises
        ------
        RunDirectoryError
            When the folder holds a run (any model's, this one's included: a new
            model object starts a new run) and ``overwrite`` is False.
        """
        if not self.path.exists():
            return
        entries = [p for p in self.path.iterdir() if p.name in _OWN_ENTRIES - {META_DIR}]
        manifest = read_manifest(self.path)
        if manifest is None and not entries:
            return  # an empty folder, or only a lock left by a run that never committed
        if not overwrite:
            raise self._refusal(manifest, resumable=manifest is not None)
        self._delete_all()

    def _delete_all(self) -> None:
        """Delete everything pymegalmm wrote in the folder: the manifest first."""
        with contextlib.suppress(FileNotFoundError):
            (self.meta / _MANIFEST).unlink()
        for name in sorted(_OWN_ENTRIES - {META_DIR}):
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        if self.meta.is_dir():
            shutil.rmtree(self.meta)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def _claim(self, spec: Mapping[str, Any] | None,
               static: Mapping[str, xr.Dataset] | None) -> None:
        """Make the folder this model's: write the specification, the data groups that do
        not grow (``static``), and an empty manifest."""
        manifest = read_manifest(self.path)
        if manifest is not None and manifest.get("run_id") != self.run_id:
            raise self._refusal(manifest, resumable=True)
        self.check_available(overwrite=False)
        if spec is not None:
            payload = pickle.dumps(dict(spec), protocol=pickle.HIGHEST_PROTOCOL)
            write_atomic(self.meta / _SPEC, lambda fh: fh.write(payload))
        for name, ds in (static or {}).items():
            PosteriorStore(self.path, draws_group=name).write_static(ds)
        self.manifest = {
            "format": FORMAT, "run_id": self.run_id, "fingerprint": self.fingerprint,
            "parts": self.parts, "created": time.time(), "updated": time.time(),
            "sequence": 0, "n_draws": 0, "n_means": 0, "means": None, "states": [],
            "iteration": 0, "burn": 0, "files": {}, "info": {},
        }
        write_json_atomic(self.meta / _MANIFEST, self.manifest)

    @classmethod
    def adopt(cls, path: str | os.PathLike) -> tuple[RunDirectory, dict[str, Any]]:
        """Open an existing run to continue it (``MegaLMM.resume``): the folder and its spec.

        The folder is repaired (draws of an interrupted commit are cut off).
        """
        manifest = read_manifest(path)
        if manifest is None:
            raise RunDirectoryError(
                f"run_dir {str(path)!r} holds no pymegalmm run to resume (no "
                f"{META_DIR}/{_MANIFEST}); runs are resumable once save_posterior_chunk() "
                "has been called")
        if manifest.get("format") != FORMAT:
            raise RunDirectoryError(f"run_dir {str(path)!r} was written in format "
                                    f"{manifest.get('format')}, this version reads {FORMAT}")
        try:
            with open(Path(path) / META_DIR / _SPEC, "rb") as fh:
                spec = pickle.load(fh)  # noqa: S301 - the user's own run folder
        except FileNotFoundError as exc:
            raise StoreError(f"run_dir {str(path)!r}: {META_DIR}/{_SPEC} is missing; the "
                             "run cannot be resumed") from exc
        run = cls(path, manifest["fingerprint"], manifest.get("parts"))
        run.run_id, run.manifest = manifest["run_id"], manifest
        with _locked(run.meta):
            run.repair()
        return run, spec

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        """Replace the stored specification (after ``set_missing_data_map``)."""
        payload = pickle.dumps(dict(spec), protocol=pickle.HIGHEST_PROTOCOL)
        write_atomic(self.meta / _SPEC, lambda fh: fh.write(payload))

    # ---------------------------------------------------------------- commits

    def repair(self) -> None:
        """Return the folder to its last commit: cut uncommitted draws, drop stray files."""
        m = self.manifest
        if m is None:
            return
        self.posterior.truncate(int(m["n_draws"]))
        self.sample_stats.truncate(int(m["n_draws"]))
        keep = {_MANIFEST, _SPEC, _LOCK, *(m["states"] or [])}
        if m.get("means"):
            keep.add(m["means"])
        if self.meta.is_dir():
            for p in self.meta.iterdir():
                if p.name not in keep:
                    p.unlink()

    def commit(self, *, draws: xr.Dataset | None, mean_sums: Mapping[str, np.ndarray] | None,
               n_means: int, states: list[ChainState], burn: int,
               spec: Mapping[str, Any] | None, static: Mapping[str, xr.Dataset] | None = None,
               info: Mapping[str, Any] | None = None, clear: bool = False) -> None:
        """Commit draws, posterior-mean sums and the chains' states, atomically.

        Parameters
        ----------
        draws : draws to append (dims ``chain, draw, ...``), or None.
        mean_sums, n_means : running sums over ``n_means`` more draws, added to the
            committed ones.
        states : every chain's state now (all at the same iteration).
        burn : the recorders' burn-in now.
        spec : the model's specification, written when the folder is first claimed.
        static : groups written once then (``observed_data``, ``constant_data``).
        info : small JSON-able facts kept in the manifest (timings).
        clear : forget the committed draws and sums first (``clear_posterior``).
        """
        iterations = {s.nrun for s in states}
        if len(iterations) != 1:
            raise RuntimeError(f"chains are at different iterations {sorted(iterations)}")
        with _locked(self.meta):
            if self.manifest is None:
                self._claim(spec, static)
            else:
                current = read_manifest(self.path)
                if current is None or current.get("run_id") != self.run_id:
                    raise self._refusal(current, resumable=current is not None)
                self.repair()
            m = dict(self.manifest)
            n_draws, n_total = (0, 0) if clear else (int(m["n_draws"]), int(m["n_means"]))
            if clear:  # forget the draws in the manifest first: a half-done delete is unseen
                m.update(n_draws=0, n_means=0, means=None, files={})
                write_json_atomic(self.meta / _MANIFEST, m)
                self.manifest = dict(m)
                self.posterior.truncate(0)
                self.sample_stats.truncate(0)
            if draws is not None and draws.sizes.get("draw", 0):
                stats = [n for n in SAMPLE_STATS if n in draws.data_vars]
                self.posterior.append(draws.drop_vars(stats))
                if stats:
                    self.sample_stats.append(draws[stats])
                n_draws += int(draws.sizes["draw"])
            seq = int(m["sequence"]) + 1
            means_file = None
            sums = {} if clear or not m.get("means") else self._read_means(m["means"])
            if mean_sums and n_means:
                sums = {k: sums[k] + v if k in sums else np.array(v, dtype=float)
                        for k, v in mean_sums.items()}
                n_total += int(n_means)
            if sums:
                means_file = f"means-{seq:06d}.npz"
                buf = io.BytesIO()
                np.savez(buf, **sums)
                write_atomic(self.meta / means_file, lambda fh: fh.write(buf.getvalue()))
            state_files = []
            for c, state in enumerate(states):
                name = f"state-{seq:06d}-chain{c}.npz"
                write_atomic(self.meta / name, state.save)
                state_files.append(name)
            files = self.files()
            old = m.get("files", {})
            fsync_files(self.path / f for f, size in files.items() if old.get(f) != size)
            for d in {(self.path / f).parent for f in files}:
                fsync_dir(d)
            m.update(sequence=seq, n_draws=n_draws, n_means=n_total, means=means_file,
                     states=state_files, iteration=int(states[0].nrun), burn=int(burn),
                     files=files, updated=time.time(), chains=len(states),
                     info={**m.get("info", {}), **dict(info or {})})
            write_json_atomic(self.meta / _MANIFEST, m)
            self.manifest = m
            self.repair()  # the previous commit's states and sums

    def files(self) -> dict[str, int]:
        """Size of every file of the zarr groups and root metadata, by relative path."""
        out = {}
        for name in sorted(_OWN_ENTRIES - {META_DIR}):
            p = self.path / name
            if p.is_file():
                out[name] = p.stat().st_size
            elif p.is_dir():
                out.update(PosteriorStore(self.path, draws_group=name).files())
        return out

    # ---------------------------------------------------------------- reading

    @property
    def n_draws(self) -> int:
        """Committed draws per chain of this model's run (0 when it owns no folder)."""
        return int(self.manifest["n_draws"]) if self.manifest else 0

    @property
    def n_means(self) -> int:
        """Draws (all chains) summed in the committed posterior means."""
        return int(self.manifest["n_means"]) if self.manifest else 0

    def _read_means(self, name: str) -> dict[str, np.ndarray]:
        path = self.meta / name
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise StoreError(f"run_dir {str(self.path)!r}: {path} cannot be read ({exc}); "
                             "the posterior means of the saved draws are lost") from exc

    def mean_sums(self) -> tuple[dict[str, np.ndarray], int]:
        """Committed sums of the posterior means and the number of draws summed."""
        if not self.manifest or not self.manifest.get("means"):
            return {}, 0
        return self._read_means(self.manifest["means"]), self.n_means

    def states(self) -> list[ChainState]:
        """Every chain's state at the last commit."""
        assert self.manifest is not None
        out = []
        for name in self.manifest["states"]:
            path = self.meta / name
            try:
                out.append(ChainState.load(path))
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"run_dir {str(self.path)!r}: chain state {path} cannot be "
                                 f"read ({exc})") from exc
        return out

    def verify(self) -> None:
        """Check that every committed file is present and whole.

        Raises
        ------
        StoreError
            Naming the file and its variable.
        """
        if not self.manifest:
            return
        for rel, size in self.manifest["files"].items():
            path = self.path / rel
            variable = rel.split("/")[1] if rel.count("/") >= 2 else rel
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                raise StoreError(f"run_dir {str(self.path)!r} is damaged: file {rel!r} of "
                                 f"variable {variable!r} is missing") from None
            if actual != size:
                # a file rewritten by an append that was cut short is whole but larger;
                # only reading it tells whether it is damaged
                group = PosteriorStore(self.path, draws_group=rel.split("/")[0])
                try:
                    group.load([variable], lazy=False)
                except Exception as exc:  # noqa: BLE001 - any decoding failure
                    raise StoreError(
                        f"run_dir {str(self.path)!r} is damaged: file {rel!r} of variable "
                        f"{variable!r} has {actual} bytes where {size} were written and "
                        f"cannot be read ({type(exc).__name__}: {exc})") from exc

    def load(self, names: list[str] | None = None, lazy: bool = True) -> xr.Dataset:
        """The committed draws (see :meth:`PosteriorStore.load`), checked first."""
        if not self.n_draws:
            raise FileNotFoundError(
                f"no posterior chunk of this model was saved in {str(self.path)!r} yet: "
                "call save_posterior_chunk() after sampling")
        self.verify()
        lengths = [*self.posterior.draw_lengths().values(),
                   *self.sample_stats.draw_lengths().values()]
        if any(v != self.n_draws for v in lengths):
            with _locked(self.meta):
                self.repair()
        ds = self.posterior.load(None, lazy=True)
        if self.sample_stats.n_draws:
            ds = ds.merge(self.sample_stats.load(None, lazy=True), compat="override",
                          join="override", combine_attrs="override")
        if names is not None:
            unknown = [n for n in names if n not in ds.data_vars]
            if unknown:
                raise KeyError(f"not in the posterior store: {unknown}; available: "
                               f"{sorted(map(str, ds.data_vars))}")
            ds = ds[list(names)]
        if lazy:
            return ds
        for name in list(ds.variables):
            try:
                ds.variables[name].load()
            except Exception as exc:  # noqa: BLE001 - name the variable whatever failed
                raise StoreError(f"run_dir {str(self.path)!r}: variable {name!r} cannot be "
                                 f"read ({type(exc).__name__}: {exc})") from exc
        return ds

    def clear_files(self) -> None:
        """Delete this model's run (manifest first); the folder is free again."""
        if self.manifest is None:
            return
        with _locked(self.meta):
            self._delete_all()
        self.manifest = None
