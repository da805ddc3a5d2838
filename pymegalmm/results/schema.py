"""The posterior's schema: names, dims and descriptions of every quantity; coordinates.

The loadings prior adds its own recorded state (ARD: ``delta``), see
:func:`param_dims`.

Every recorded quantity is on the user's scale of ``Y`` with factors of unit
variance (R MegaLMM's ``save_posterior_sample`` conventions, METHOD.md section 5):

================  ==========================  ============================================
name              dims (after chain, draw)    meaning
================  ==========================  ============================================
``Lambda``        factor, trait               loadings (unit-variance factors)
``F``             row, factor                 factor scores
``U_F``           level, factor               factors' random effects per level
``U_R``           level, trait                trait-specific random effects per level
``B1``            fixed, trait                fixed effects (incl. the trait mean)
``F_h2``          component, factor           factors' variance proportions
``resid_h2``      component, trait            residual models' variance proportions
``tot_Eta_prec``  trait                       total precision of each residual model
``tot_F_prec``    factor                      factors' working precision (internal)
``Eta``           row, trait                  latent traits (not recorded by default)
``delta``         factor                      ARD multiplicative shrinkage increments
``B2_F``          marker, factor              extra regressions' effects on the factors
``B2_R``          marker, trait               extra regressions' direct effects on traits
``Lambda_beta``   factor, covariate           loadings' coefficients on trait covariates
                                              (ARD with ``trait_covariates``; working scale)
``cis_effects``   trait, cis                  each trait's own regression coefficients
                                              (``cis_genotypes``; NaN beyond the trait's
                                              columns; ``MegaLMM.cis_names`` names them)
``U``             level, trait                genetic values ``U_F Lambda + U_R``
``G``             component, trait, trait2    covariance of each random effect
``R``             trait, trait2               residual covariance
``h2``            component, trait            share of variance per random effect
================  ==========================  ============================================

``G_m = Lambda' diag(F_h2[m]) Lambda + diag(resid_h2[m] / tot_Eta_prec)``,
``R = Lambda' diag(1 - sum_m F_h2[m]) Lambda + diag((1 - sum_m resid_h2[m]) / tot_Eta_prec)``,
``h2[m, j] = G_m[j, j] / (sum_m G_m[j, j] + R[j, j])``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..priors import ARDPrior, LambdaPrior

if TYPE_CHECKING:
    from ..design import Design

#: Statistics recorded with every draw (ArviZ's ``sample_stats`` group), and their dims.
SAMPLE_STATS: dict[str, tuple[str, ...]] = {"lp": ()}

#: Dims of the factor model's parameters (after ``chain`` and ``draw``).
CORE_PARAM_DIMS: dict[str, tuple[str, ...]] = {
    "Lambda": ("factor", "trait"),
    "F": ("row", "factor"),
    "U_F": ("level", "factor"),
    "U_R": ("level", "trait"),
    "B1": ("fixed", "trait"),
    "F_h2": ("component", "factor"),
    "resid_h2": ("component", "trait"),
    "tot_Eta_prec": ("trait",),
    "tot_F_prec": ("factor",),
    "Eta": ("row", "trait"),
}


def param_dims(lambda_prior: LambdaPrior | None = None) -> dict[str, tuple[str, ...]]:
    """Dims of every recordable parameter of a model with this loadings prior (default ARD)."""
    prior = ARDPrior() if lambda_prior is None else lambda_prior
    return {**CORE_PARAM_DIMS, **{name: tuple(prior.state_dims[name]) for name in prior.recorded},
            **SAMPLE_STATS}


def param_descriptions(lambda_prior: LambdaPrior | None = None) -> dict[str, str]:
    """``description`` attribute of every quantity of a model with this loadings prior."""
    prior = ARDPrior() if lambda_prior is None else lambda_prior
    return {**DESCRIPTIONS, **prior.recorded}


def default_record(lambda_prior: LambdaPrior | None = None) -> list[str]:
    """Parameters recorded by default: :data:`DEFAULT_RECORD` with this prior's recordables."""
    prior = ARDPrior() if lambda_prior is None else lambda_prior
    core = [n for n in DEFAULT_RECORD if n in CORE_PARAM_DIMS]
    return core + [n for n in prior.records_with() if n not in core] + list(prior.recorded)


#: Dims of each recordable parameter with the default (ARD) loadings prior.
PARAM_DIMS: dict[str, tuple[str, ...]] = param_dims()

#: Parameters recorded per draw by default.
DEFAULT_RECORD: tuple[str, ...] = (
    "Lambda", "F_h2", "resid_h2", "tot_Eta_prec", "B1", "U_F", "U_R", "F", "delta",
)

#: Derived quantities and the parameters each needs.
DERIVED_NEEDS: dict[str, tuple[str, ...]] = {
    "U": ("U_F", "Lambda", "U_R"),
    "G": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
    "R": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
    "h2": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
}

DESCRIPTIONS: dict[str, str] = {
    "Lambda": "factor loadings (factors scaled to unit variance), user's scale of Y",
    "F": "factor scores (unit variance)",
    "U_F": "random effects of the factors per level (unit-variance factors)",
    "U_R": "trait-specific random effects per level, user's scale",
    "B1": "fixed effects, user's scale (the trait mean is in the intercept)",
    "F_h2": "variance proportion of each factor per random effect",
    "resid_h2": "variance proportion of each trait's residual model per random effect",
    "tot_Eta_prec": "total precision of each trait's residual model, user's scale",
    "tot_F_prec": "working precision of each factor (parameter expansion, internal)",
    "delta": "ARD multiplicative shrinkage increments (tauh = cumprod(delta))",
    "Eta": "latent traits Eta, user's scale: the data where observed for Gaussian data "
           "(missing cells drawn); the latent value of every cell for Voom and count models "
           "(count models: the link scale); not recorded by default",
    "U": "genetic values U_F Lambda + U_R per level and trait, user's scale",
    "G": "covariance between traits of each random effect, user's scale",
    "R": "residual covariance between traits, user's scale",
    "h2": "share of each trait's variance due to each random effect",
    "Eta_mean": "posterior mean of the expected value of Y (predictions), user's scale",
    "lp": "log density of the latent Eta under the factor model (user's scale), per draw",
    "cis_effects": "each trait's own (cis) regression coefficients on its cis_genotypes "
                   "columns, user's scale; NaN beyond the trait's columns",
}

#: Dims of the cis effects (a model with ``cis_genotypes``).
CIS_DIMS: dict[str, tuple[str, ...]] = {"cis_effects": ("trait", "cis")}


@dataclass
class Coordinates:
    """User names attached to the posterior's dims."""

    trait: list[str]
    factor: list[str]
    fixed: list[str]
    level: list[str]
    component: list[str]
    row: list[object]
    level_effect: list[str] = field(default_factory=list)
    #: Trait covariates of the loadings prior (ARD's ``trait_covariates``), if any.
    covariate: list[str] = field(default_factory=list)
    #: Covariates of the extra regressions (``X2``'s columns), if any.
    marker: list[str] = field(default_factory=list)
    #: Positions of the cis effects (``cis_genotypes``): ``0 .. max c_j - 1``.
    cis: list[int] = field(default_factory=list)
    #: The observation model's own dims (e.g. ``probe``), from its ``coordinates``.
    observation: dict[str, list] = field(default_factory=dict)

    def for_dims(self, dims: Iterable[str]) -> dict[str, list]:
        """Coordinate values for the given dims."""
        out: dict[str, list] = {}
        for dim in dims:
            if dim == "trait2":
                out[dim] = self.trait
            elif dim in ("chain", "draw"):
                continue
            elif dim in self.observation:
                out[dim] = self.observation[dim]
            else:
                out[dim] = getattr(self, dim)
        return out

    @classmethod
    def from_design(cls, design: Design, n_factors: int,
                    lambda_prior: LambdaPrior | None = None) -> Coordinates:
        """The user's names of a model's dims, from its design and loadings prior
        (attached once, here)."""
        res = design.random
        if len(res) == 1:
            levels = [str(v) for v in res[0].levels]
            level_effect: list[str] = []
        else:
            levels = [f"{r.name}:{v}" for r in res for v in r.levels]
            level_effect = [r.name for r in res for _ in r.levels]
        return cls(
            trait=_labels(design.traits),
            factor=[f"F{i + 1}" for i in range(int(n_factors))],
            fixed=list(design.fixed_names),
            level=levels,
            component=[r.name for r in res],
            row=list(design.rows),
            level_effect=level_effect,
            covariate=list((lambda_prior.coordinates() if lambda_prior is not None
                            else {}).get("covariate", [])),
        )


def _labels(index: object) -> list:
    """Trait labels as the user gave them: integers stay integers, anything else is str."""
    values = list(index)
    if values and all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)
                      for v in values):
        return [int(v) for v in values]
    return [str(v) for v in values]
