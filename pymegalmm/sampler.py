"""Former home of the iteration; kept so that old imports keep working.

The iteration now lives in :mod:`pymegalmm.core` (one concept per module: see
``docs/architecture.md``).  New code imports from there.
"""

from __future__ import annotations

import numpy as np

from .core.data import GroupData, ModelData, RowPatterns, SamplerData
from .core.factor_scores import sample_factor_scores
from .core.initialize import initial_state
from .core.iteration import gibbs_iteration
from .core.mean import eta_mean
from .core.reorder import reorder_factors
from .priors import Priors

__all__ = ["GroupData", "ModelData", "RowPatterns", "SamplerData", "eta_mean",
           "gibbs_iteration", "initial_state", "reorder_factors", "sample_ard",
           "sample_factor_scores"]


def sample_ard(Lambda: np.ndarray, tau: np.ndarray, phi: np.ndarray, delta: np.ndarray,
               priors: Priors, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One update of the ARD prior (:meth:`pymegalmm.priors.ARDPrior.update`); returns
    the new ``phi`` and ``delta``."""
    state = priors.Lambda_prior.update(Lambda, tau, {"Lambda_phi": phi, "delta": delta}, rng)
    return state["Lambda_phi"], state["delta"]
