"""A worker process that runs chains for :mod:`pymegalmm.run.parallel`.

Started as ``python -c`` with the parent's ``sys.path`` (see
:mod:`pymegalmm.run.parallel`): a fresh interpreter, so the user's
script is never re-run (as ``multiprocessing``'s spawn would) and no OpenMP
runtime is inherited through ``fork`` (GNU OpenMP is not fork-safe).  It talks
to the parent over its stdin/stdout with length-prefixed pickles:

* parent -> worker: ``("init", data, recorder_kwargs, n_threads)`` once (the
  posterior functions pickled apart, see :func:`~pymegalmm.run.parallel.pack_functions`), then
  ``("sample", chain_index, state, n_iter, burn)`` per task, ``("exit",)`` at the end;
* worker -> parent: ``("progress", chain_index, k)`` while sampling (every ~0.2 s),
  then ``("done", chain_index, state, draws, n_done, torn, error)``.

``SIGUSR1`` asks the running chain to stop at the end of its iteration (the
parent's Ctrl-C); ``SIGINT`` is ignored here, the parent decides.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
from typing import IO, Any

_HEADER = struct.Struct("<Q")


def send(fh: IO[bytes], message: Any) -> None:
    """Write one message (length-prefixed pickle) and flush."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(payload)))
    fh.write(payload)
    fh.flush()


def receive(fh: IO[bytes]) -> Any:
    """Read one message; raise EOFError when the other side has gone."""
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(head)[0]
    payload = fh.read(size)
    if len(payload) < size:
        raise EOFError
    return pickle.loads(payload)  # noqa: S301 - our own parent process


def main() -> None:
    """Serve tasks until told to exit or the parent goes away."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the message stream
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = {"requested": False}
    signal.signal(signal.SIGUSR1, lambda *_: stop.update(requested=True))

    from ..linalg import sampling_threads
    from .chain import Chain
    from .recorder import Recorder

    data = recorder_kwargs = None
    n_threads = 1
    while True:
        try:
            message = receive(inp)
        except EOFError:
            return
        if message[0] == "exit":
            return
        if message[0] == "init":
            _, data, recorder_kwargs, n_threads = message
            recorder_kwargs["functions"] = pickle.loads(recorder_kwargs["functions"])  # noqa: S301
            continue
        _, index, state, n_iter, burn = message
        stop["requested"] = False
        recorder = Recorder(**{**recorder_kwargs, "burn": burn, "label": f"chain {index}"})
        chain = Chain(data, state.rng, recorder, state=state)
        last = [time.monotonic(), 0]

        def progress(last=last, index=index) -> None:
            last[1] += 1
            now = time.monotonic()
            if now - last[0] > 0.2:
                send(out, ("progress", index, last[1]))
                last[0], last[1] = now, 0

        start, error = state.nrun, None
        try:
            with sampling_threads(n_threads):
                chain.sample(n_iter, callback=progress, stop=lambda: stop["requested"])
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which re-raises
            error = exc
        done = chain.state.nrun - start
        if last[1]:
            send(out, ("progress", index, last[1]))
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: describe it
            error = RuntimeError(f"{type(error).__name__}: {error}")
        send(out, ("done", index, chain.state, recorder.draws, done, chain.torn, error))


if __name__ == "__main__":
    os.environ.setdefault("PYMEGALMM_WORKER", "1")
    main()
