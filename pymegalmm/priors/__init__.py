"""Priors: total precisions, the h2 grid, and the loadings prior (a plug-in).

==================  ============================================================
module              what it holds
==================  ============================================================
``variance``        :class:`VariancePrior` (R's ``list(V, nu)``), :class:`GammaPrior`
``h2``              prior weights of the discrete h2 grid
``base``            :class:`LambdaPrior`, the protocol every loadings prior follows
``ard``             :class:`ARDPrior`, the multiplicative gamma process (default)
``horseshoe``       :class:`HorseshoePrior`, R MegaLMM's nominal default
``bayesc``          :class:`BayesCPrior`, spike and slab (its own loadings draw)
``container``       :class:`Priors`, all priors of a model
==================  ============================================================
"""

from .ard import ARDPrior
from .base import LambdaPrior, LoadingsRegression, PriorState
from .bayesc import BayesCPrior, BetaPrior
from .container import Priors
from .h2 import H2Prior, h2_log_prior
from .horseshoe import HorseshoePrior
from .variance import GammaPrior, VariancePrior

#: Former name of :data:`H2Prior`.
H2PriorSpec = H2Prior

__all__ = ["ARDPrior", "BayesCPrior", "BetaPrior", "GammaPrior", "H2Prior", "HorseshoePrior",
           "LambdaPrior", "LoadingsRegression", "PriorState", "Priors", "VariancePrior",
           "h2_log_prior"]
