"""All priors of a model in one object, :class:`Priors`.

Defaults are those of the MultiEnvironmentTrial vignette of R MegaLMM 0.9.5
(``tot_Y_var = list(V = 0.5, nu = 5)``, ``tot_F_var = list(V = 18/20, nu = 20)``,
flat discrete h2 priors, ARD ``Lambda_prior`` with ``Lambda_df = 3``,
``delta_1 = list(shape = 2, rate = 1)``, ``delta_2 = list(shape = 3, rate = 1)``,
``delta_iterations_factor = 100``), so an R user's settings carry over one to one.
R's nominal default Lambda prior, the horseshoe, fails as shipped (METHOD.md Q1);
its corrected version is :class:`~pymegalmm.priors.HorseshoePrior`
(``Priors(Lambda_prior=HorseshoePrior())``), see ``docs/priors.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputTypeError
from .ard import ARDPrior
from .base import LambdaPrior
from .h2 import H2Prior, check_h2_prior
from .variance import VariancePrior, as_prior


@dataclass
class Priors:
    """All priors of the model.

    Parameters
    ----------
    tot_Y_var : VariancePrior or dict
        Prior of each trait's total residual-model precision ``tot_Eta_prec``; a
        dict ``{"V": ..., "nu": ...}`` (R's ``list(V = , nu = )``) is accepted.
        Default ``V = 0.5, nu = 5`` (MegaLMM vignette), i.e. Gamma(4, rate 2.5).
    tot_F_var : VariancePrior or dict
        Prior of each factor's total precision ``tot_F_prec`` (a working
        parameter; reported factors have unit variance).  Default ``V = 18/20, nu = 20``.
    h2_prior_resids, h2_prior_factors : callable, array or None
        Prior weights over the discrete h2 grid for the traits' residual models
        and for the factors.  ``None`` (default) is flat; a callable receives the
        ``(m, G)`` grid and returns ``G`` weights; an array gives the weights.
    Lambda_prior : LambdaPrior
        Shrinkage prior on the loadings (any :class:`~pymegalmm.priors.LambdaPrior`).
        Default :class:`~pymegalmm.priors.ARDPrior` with R's vignette values.
    """

    tot_Y_var: VariancePrior = field(default_factory=lambda: VariancePrior(0.5, 5.0))
    tot_F_var: VariancePrior = field(default_factory=lambda: VariancePrior(18 / 20, 20.0))
    h2_prior_resids: H2Prior = None
    h2_prior_factors: H2Prior = None
    Lambda_prior: LambdaPrior = field(default_factory=ARDPrior)

    def __post_init__(self) -> None:
        self.tot_Y_var = as_prior("tot_Y_var", self.tot_Y_var, VariancePrior)
        self.tot_F_var = as_prior("tot_F_var", self.tot_F_var, VariancePrior)
        for name in ("h2_prior_resids", "h2_prior_factors"):
            check_h2_prior(name, getattr(self, name))
        prior = self.Lambda_prior
        if isinstance(prior, type) and issubclass(prior, LambdaPrior):
            raise InputTypeError(f"Lambda_prior must be an instance, e.g. {prior.__name__}(), "
                                 "not the class")
        if not isinstance(prior, LambdaPrior):
            raise InputTypeError("Lambda_prior must be a pymegalmm.priors.LambdaPrior (e.g. "
                                 f"ARDPrior()), got {type(prior).__name__}")
