"""Prior distributions, as small dataclasses whose defaults follow R MegaLMM 0.9.5.

Defaults are those of the MultiEnvironmentTrial vignette of R MegaLMM 0.9.5
(``tot_Y_var = list(V = 0.5, nu = 5)``, ``tot_F_var = list(V = 18/20, nu = 20)``,
flat discrete h2 priors, ARD ``Lambda_prior`` with ``Lambda_df = 3``,
``delta_1 = list(shape = 2, rate = 1)``, ``delta_2 = list(shape = 3, rate = 1)``,
``delta_iterations_factor = 100``), so an R user's settings carry over one to one.
R's nominal default Lambda prior, the horseshoe, fails as shipped (METHOD.md Q1)
and is not offered yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VariancePrior:
    """Prior on a total precision: ``prec ~ Gamma(shape = nu - 1, rate = nu * V)``.

    This is R MegaLMM's parameterisation (``list(V = ..., nu = ...)``): ``V`` is a
    prior guess of the variance and ``nu`` its weight.

    Parameters
    ----------
    V : float
        Prior variance scale (> 0).
    nu : float
        Prior degrees of freedom (> 1).
    """

    V: float
    nu: float

    def __post_init__(self) -> None:
        if not (self.V > 0 and self.nu > 1):
            raise ValueError(f"VariancePrior needs V > 0 and nu > 1, got V={self.V}, nu={self.nu}")

    @property
    def shape(self) -> float:
        """Gamma shape ``nu - 1``."""
        return self.nu - 1.0

    @property
    def rate(self) -> float:
        """Gamma rate ``nu * V``."""
        return self.nu * self.V


@dataclass(frozen=True)
class GammaPrior:
    """A Gamma(shape, rate) prior."""

    shape: float
    rate: float

    def __post_init__(self) -> None:
        if not (self.shape > 0 and self.rate > 0):
            raise ValueError(f"Gamma prior needs shape > 0 and rate > 0, got {self}")


@dataclass(frozen=True)
class ARDPrior:
    """ARD (multiplicative gamma process) shrinkage prior on the factor loadings Lambda.

    ``lambda_kj ~ N(0, 1 / (tot_Eta_prec_j * phi_kj * tauh_k))`` with
    ``phi_kj ~ Gamma(Lambda_df/2, rate Lambda_df/2)``, ``tauh_k = prod_{l<=k} delta_l``,
    ``delta_1 ~ Gamma(delta_1)`` and ``delta_l ~ Gamma(delta_2)`` truncated to
    ``[1, inf)`` for ``l >= 2`` (Bhattacharya & Dunson 2011), so later factors
    are shrunk more.  ``delta`` is updated by ``delta_iterations_factor`` Gibbs
    sweeps per iteration.

    Parameters
    ----------
    Lambda_df : float
        Degrees of freedom of the local (t-like) shrinkage.  Default 3.
    delta_1 : GammaPrior
        Prior of the first global precision.  Default shape 2, rate 1.
    delta_2 : GammaPrior
        Prior of the later multiplicative increments.  Default shape 3, rate 1.
    delta_iterations_factor : int
        Sweeps of the delta update per iteration.  Default 100.
    """

    Lambda_df: float = 3.0
    delta_1: GammaPrior = GammaPrior(2.0, 1.0)
    delta_2: GammaPrior = GammaPrior(3.0, 1.0)
    delta_iterations_factor: int = 100

    def __post_init__(self) -> None:
        if self.Lambda_df <= 0:
            raise ValueError(f"Lambda_df must be > 0, got {self.Lambda_df}")
        if self.delta_iterations_factor < 1:
            raise ValueError("delta_iterations_factor must be >= 1")


H2PriorSpec = Callable[[np.ndarray], np.ndarray] | np.ndarray | None


@dataclass
class Priors:
    """All priors of the model.

    Parameters
    ----------
    tot_Y_var : VariancePrior
        Prior of each trait's total residual-model precision ``tot_Eta_prec``.
        Default ``V = 0.5, nu = 5`` (MegaLMM vignette), i.e. Gamma(4, rate 2.5).
    tot_F_var : VariancePrior
        Prior of each factor's total precision ``tot_F_prec`` (a working
        parameter; reported factors have unit variance).  Default ``V = 18/20, nu = 20``.
    h2_prior_resids, h2_prior_factors : callable, array or None
        Prior weights over the discrete h2 grid for the traits' residual models
        and for the factors.  ``None`` (default) is flat; a callable receives the
        ``(m, G)`` grid and returns ``G`` weights; an array gives the weights.
    Lambda_prior : ARDPrior
        Shrinkage prior on the loadings.
    """

    tot_Y_var: VariancePrior = field(default_factory=lambda: VariancePrior(0.5, 5.0))
    tot_F_var: VariancePrior = field(default_factory=lambda: VariancePrior(18 / 20, 20.0))
    h2_prior_resids: H2PriorSpec = None
    h2_prior_factors: H2PriorSpec = None
    Lambda_prior: ARDPrior = field(default_factory=ARDPrior)
