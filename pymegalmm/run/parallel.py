"""Chains in parallel processes, with the cores split between them.

:class:`ChainProcesses` keeps a few worker processes (:mod:`pymegalmm.run.worker`)
for a model's lifetime.  Each receives the model's read-only data once; every
:meth:`~ChainProcesses.sample` call sends each chain's state to a worker, which
runs the chain and sends back its new state and the draws it recorded.  The
parent's chains are updated only from completed results, so they stay
consistent whatever happens to a worker.  A chain run in a worker gives the same
draws as in the parent: the same code, the chain's own generator, and draws that
do not depend on the number of threads.

Threads: ``processes x threads`` never exceeds the cores given (``n_threads``,
default the cores this process may use), and idle OpenMP threads spin only briefly
before they sleep (see :func:`pymegalmm._config.set_wait_policy`), so chains do not
steal each other's cores.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..core.data import ModelData
from .chain import Chain
from .worker import receive, send

__all__ = ["ChainProcesses", "available_cores", "pack_functions", "split_cores"]


def pack_functions(functions: Mapping[str, Callable]) -> bytes | None:
    """The posterior functions serialised for the workers, or None when impossible.

    With ``cloudpickle`` installed (it comes with dask) any function travels,
    lambdas and functions of the user's script included; otherwise only functions
    importable by name (defined at module level in an importable module).
    """
    import pickle

    try:
        import cloudpickle
    except ImportError:
        cloudpickle = None
    functions = dict(functions)
    if cloudpickle is not None:
        try:
            return cloudpickle.dumps(functions)
        except Exception:  # noqa: BLE001 - e.g. a function holding a lock
            return None
    if any(getattr(fn, "__module__", None) == "__main__" for fn in functions.values()):
        return None  # the worker's __main__ is not the user's script
    try:
        return pickle.dumps(functions)
    except Exception:  # noqa: BLE001 - lambdas, local functions, closures
        return None


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def split_cores(chains: int, processes: int | None, cores: int) -> tuple[int, int]:
    """Processes and threads per process for ``chains`` chains on ``cores`` cores."""
    n_proc = min(chains, cores) if processes is None else min(processes, chains)
    return max(1, n_proc), max(1, cores // max(1, n_proc))


#: Started by ``python -c``: sets this process's ``sys.path`` before anything is imported,
#: so that a worker imports exactly the modules the parent would (``python -m`` would put
#: the current folder first, e.g. a source tree without compiled kernels).
_BOOTSTRAP = ("import json, os, sys; sys.path[:] = json.loads(os.environ['PYMEGALMM_SYS_PATH']); "
              "from pymegalmm.run.worker import main; main()")


def _worker_environment() -> dict[str, str]:
    """This process's environment and ``sys.path`` (the user's functions' modules included)."""
    import json

    env = os.environ.copy()
    env["PYMEGALMM_SYS_PATH"] = json.dumps(sys.path)
    return env


class _Worker:
    def __init__(self, events: queue.Queue) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env=_worker_environment(),
            start_new_session=True)  # the terminal's Ctrl-C goes to the parent only
        self.alive = True
        self.reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self.reader.start()

    def _read(self, events: queue.Queue) -> None:
        while True:
            try:
                message = receive(self.proc.stdout)
            except (EOFError, OSError, ValueError):
                events.put(("dead", self, None))
                return
            events.put((message[0], self, message))

    def send(self, message: Any) -> None:
        try:
            send(self.proc.stdin, message)
        except (BrokenPipeError, OSError, ValueError) as exc:
            self.alive = False
            raise RuntimeError(f"a chain worker process stopped (exit code "
                               f"{self.proc.wait()}).  Its output:\n{self.stderr_tail()}"
                               ) from exc

    def stderr_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(OSError, ValueError):
                self.send(("exit",))
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.alive = False
        self.log.close()


class ChainProcesses:
    """Worker processes running a model's chains (see the module docstring).

    Parameters
    ----------
    data : the model's data, sent to each worker once.
    recorder_kwargs : arguments of each chain's :class:`~pymegalmm.run.recorder.Recorder`
        (without ``burn`` and ``label``, sent with each task).
    processes, threads : worker processes and OpenMP threads in each.
    """

    def __init__(self, data: ModelData, recorder_kwargs: Mapping[str, Any], processes: int,
                 threads: int) -> None:
        self.data, self.recorder_kwargs = data, dict(recorder_kwargs)
        self.processes, self.threads = int(processes), int(threads)
        self.events: queue.Queue = queue.Queue()
        self.workers: list[_Worker] = []

    def _start(self) -> None:
        self.workers = [w for w in self.workers if w.alive]
        while len(self.workers) < self.processes:
            w = _Worker(self.events)
            w.send(("init", self.data, self.recorder_kwargs, self.threads))
            self.workers.append(w)

    def sample(self, chains: list[Chain], todo: list[int], progress: Callable[[int], None],
               stop: Callable[[], bool]) -> list[BaseException]:
        """Run chain ``c`` for ``todo[c]`` iterations in the workers.

        Each chain's state and draws are updated when its worker finishes.  A stop
        request (``stop()`` True), or an error in any chain, asks the running chains to
        stop after their current iteration and starts no others.  Returns the errors met.
        """
        self._start()
        try:
            return self._sample(chains, todo, progress, stop)
        except BaseException:
            # e.g. a second Ctrl-C: workers still running would later report results the
            # chains no longer expect; stop them (the chains keep their states)
            self.terminate()
            raise

    def _sample(self, chains: list[Chain], todo: list[int], progress: Callable[[int], None],
                stop: Callable[[], bool]) -> list[BaseException]:
        pending = deque(c for c, n in enumerate(todo) if n > 0)
        idle, running = list(self.workers), {}
        errors: list[BaseException] = []
        stop_sent = False

        def halt() -> bool:  # a stop request, or an error: the other chains stop too
            return stop() or bool(errors)

        while pending or running:
            while pending and idle and not halt():
                w, c = idle.pop(), pending.popleft()
                chain = chains[c]
                w.send(("sample", c, chain.state, int(todo[c]), chain.recorder.burn))
                running[w] = c
            if not running:
                break
            try:
                kind, w, message = self.events.get(timeout=0.1)
            except queue.Empty:
                kind = None
            if kind == "progress":
                progress(message[2])
            elif kind == "done":
                _, c, state, draws, _done, torn, error = message
                chain = chains[c]
                chain.state = state
                chain.recorder.draws.extend(draws)
                chain.torn = chain.torn or torn
                if error is not None:
                    errors.append(error)
                running.pop(w, None)
                idle.append(w)
            elif kind == "dead":
                w.alive = False
                if w in running:
                    c = running.pop(w)
                    errors.append(RuntimeError(
                        f"the process running chain {c} stopped (exit code "
                        f"{w.proc.wait()}); that chain keeps its state from before this "
                        f"call.  Its output:\n{w.stderr_tail()}"))
                with contextlib.suppress(ValueError):
                    idle.remove(w)
            if halt() and running and not stop_sent:
                for w in running:
                    with contextlib.suppress(OSError):
                        w.proc.send_signal(signal.SIGUSR1)
                stop_sent = True
        return errors

    def close(self) -> None:
        """Stop the workers."""
        for w in self.workers:
            w.close()
        self.workers = []

    def terminate(self) -> None:
        """Kill the workers at once and forget their pending messages."""
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.proc.kill()
            w.alive = False
            w.close()
        self.workers = []
        self.events = queue.Queue()
