"""The ``pymegalmm`` logger and :func:`emit`, which replaces ``print`` for setup messages.

Design
------
Every informational message of the package (the memory estimate and the setup summary
that ``MegaLMM(..., verbose=True)`` shows) is logged at ``INFO`` on the logger named
``"pymegalmm"``.  As the logging HOWTO recommends for libraries, that logger only has a
:class:`logging.NullHandler`: the package never configures logging for the user.

``verbose`` keeps its meaning ("show me these messages") without any logging setup:

* :func:`emit` always logs the message at ``INFO`` through :data:`logger`, so standard
  logging configuration routes it, e.g. ``logging.basicConfig(level=logging.INFO)``, or
  ``logging.getLogger("pymegalmm").setLevel(logging.INFO)`` plus a handler of your own
  (to a file, to a notebook widget, ...).
* With ``verbose=True``, if that configuration delivers the record to no real handler
  (the default: the logger is below ``INFO`` and has only the ``NullHandler``), the
  message is written to the *current* ``sys.stderr`` as plain ``%(message)s``, once,
  by a handler private to this module.  So out of the box ``verbose=True`` shows the
  messages as ``print`` did (on stderr rather than stdout, with the progress bars),
  and once the user routes the logger somewhere the message goes there instead of
  appearing twice.
* With ``verbose=False`` nothing is written to stderr by this module; the message still
  reaches the user's handlers if they enabled ``INFO`` for ``pymegalmm``.

The private handler is never attached to :data:`logger` (so ``verbose=False`` messages
cannot leak through it, and the user's view of the logger's handlers is unchanged) and
looks up ``sys.stderr`` at every write (so redirections such as pytest's ``capsys`` or
``contextlib.redirect_stderr`` work).  Handlers hold their own lock: models emitting
from several threads write whole lines.

Usage inside the package::

    from ._logging import emit
    emit(report, self.verbose)
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "emit"]

logger = logging.getLogger("pymegalmm")
logger.addHandler(logging.NullHandler())


class _CurrentStderrHandler(logging.StreamHandler):
    """A ``StreamHandler`` writing to whatever ``sys.stderr`` is at the time of the call."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.setStream; ignored
        pass


_stderr_handler = _CurrentStderrHandler()


def _routed(level: int) -> bool:
    """True if a record of ``level`` on :data:`logger` reaches a real handler.

    Mirrors :meth:`logging.Logger.callHandlers`: the logger's effective level, then
    each handler's level up the hierarchy while ``propagate`` holds.  ``NullHandler``
    instances do not count.
    """
    if logger.disabled or not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not isinstance(handler, logging.NullHandler) and level >= handler.level:
                return True
        current = current.parent if current.propagate else None
    return False


def emit(message: str, verbose: bool) -> None:
    """Log ``message`` at ``INFO`` on ``"pymegalmm"``; with ``verbose``, make sure it is shown.

    Parameters
    ----------
    message : str
        The text, possibly several lines (e.g. a model summary).
    verbose : bool
        If true and the user's logging configuration does not deliver ``INFO`` records
        of ``pymegalmm`` to any handler, write ``message`` to ``sys.stderr`` (one
        write per call).  If false, only the logger sees the message.
    """
    routed = _routed(logging.INFO)
    # stacklevel=2: the record names the caller (e.g. pymegalmm/model.py), not this module
    logger.info(message, stacklevel=2)
    if verbose and not routed:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message,
                                   None, None)
        _stderr_handler.handle(record)
