"""Random-effect back-ends behind one protocol (:class:`RandomEffectsBackend`)."""

from .base import GramStats, RandomEffectsBackend
from .dense import DenseRandomEffects
from .diagonal import DiagonalRandomEffect
from .lowrank import LowRankRandomEffects

__all__ = ["DenseRandomEffects", "DiagonalRandomEffect", "GramStats", "LowRankRandomEffects",
           "RandomEffectsBackend"]
