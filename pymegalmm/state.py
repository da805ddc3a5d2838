"""Former home of :class:`ChainState`, now :mod:`pymegalmm.core.state`."""

from .core.state import ChainState

__all__ = ["ChainState"]
