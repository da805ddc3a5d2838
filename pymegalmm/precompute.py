"""Former home of the precomputes; kept so that old imports keep working.

See :mod:`pymegalmm.core` (grid, identifiability, memory, random-effect back-ends)
and :mod:`pymegalmm.priors.h2`.
"""

from .core.grid import make_h2_grid
from .core.identifiability import unidentifiable_fixed_effects
from .core.memory import estimate_precompute_bytes
from .core.random_effects import DenseRandomEffects, DiagonalRandomEffect, GramStats
from .priors.h2 import H2Prior, h2_log_prior

__all__ = ["DenseRandomEffects", "DiagonalRandomEffect", "GramStats", "H2Prior",
           "estimate_precompute_bytes", "h2_log_prior", "make_h2_grid",
           "unidentifiable_fixed_effects"]
