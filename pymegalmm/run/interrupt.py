"""Ctrl-C during sampling stops at the end of the current iteration, not in its middle.

An iteration updates many arrays in turn; stopping halfway would leave a chain
whose arrays disagree (``Eta`` drawn, its rotated copy not yet).  While
:func:`deferred_interrupt` is active in the main thread, the first Ctrl-C only
sets a flag that the chains check after each iteration; a second Ctrl-C
interrupts at once (the chain hit is then marked as torn and refuses to continue).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["StopFlag", "deferred_interrupt"]


class StopFlag:
    """Set when a stop was requested (first Ctrl-C)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def deferred_interrupt() -> Iterator[StopFlag]:
    """Defer the first SIGINT to the end of the current iteration (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        flag.requested = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not allowed here (e.g. embedded interpreters)
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
