"""Extra regressions on the factors and the traits' residual models (R's ``extra_regressions``).

The model with a matrix ``X2`` (``n x x2``, one row per row of data)::

    Eta = X1 B1 + X2 B2_R + F Lambda + Z U_R + E_R
    F   =         X2 B2_F +            Z U_F + E_F

``B2_F`` (``x2 x k``) are the covariates' effects on the factors, ``B2_R``
(``x2 x t``) their direct effects on each trait; ``X2 B2_F Lambda + X2 B2_R`` is
their total effect on the traits.  Both are penalised by a horseshoe prior
(:class:`RegressionHorseshoePrior`, R's ``sample_B2_prec_horseshoe``, METHOD.md
step 8) and drawn in the column-LMM step (:mod:`pymegalmm.core.column_lmm`) as
penalised regressors: next to ``F`` for the traits, alone for the factors.

``X2`` is given by row (a DataFrame indexed like ``data``) or by level of a
grouping variable (``ExtraRegression(X=markers, by="Line")``: one row per line,
e.g. a marker matrix).  With ``by``, lines that have markers but no data (and are
not in ``K``) are predicted from their markers alone (:meth:`pymegalmm.MegaLMM.predict`,
:meth:`pymegalmm.MegaLMM.genetic_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError, InputTypeError, LabelError
from .priors.bayesc import BetaPrior, _as_pi
from .priors.variance import GammaPrior, as_prior
from .validate import check_bool, check_float

#: The regressions' parameters: dims (after chain, draw) and descriptions.  The
#: spike-and-slab priors' ``_pi`` and ``_inclusion`` exist only with those priors.
REGRESSION_DIMS: dict[str, tuple[str, ...]] = {
    "B2_F": ("marker", "factor"),
    "B2_R": ("marker", "trait"),
    "B2_F_prec": ("marker", "factor"),
    "B2_R_prec": ("marker", "trait"),
    "B2_F_pi": ("factor",),
    "B2_R_pi": ("trait",),
    "B2_F_inclusion": ("marker", "factor"),
    "B2_R_inclusion": ("marker", "trait"),
}
REGRESSION_DESCRIPTIONS: dict[str, str] = {
    "B2_F": "effects of the extra regressors (X2) on the factors (unit-variance factors)",
    "B2_R": "direct effects of the extra regressors (X2) on each trait, user's scale",
    "B2_F_prec": "prior precision of each B2_F coefficient (horseshoe; spike and slab: "
                 "of its slab), unit-variance factors",
    "B2_R_prec": "prior precision of each B2_R coefficient (horseshoe; spike and slab: "
                 "of its slab), user's scale",
    "B2_F_pi": "spike-and-slab prior probability that a B2_F coefficient of each factor "
               "is non-zero",
    "B2_R_pi": "spike-and-slab prior probability that a B2_R coefficient of each trait "
               "is non-zero",
    "B2_F_inclusion": "indicator that each B2_F coefficient is non-zero in this draw (its "
                      "posterior mean is the coefficient's posterior inclusion probability)",
    "B2_R_inclusion": "indicator that each B2_R coefficient is non-zero in this draw (its "
                      "posterior mean is the coefficient's posterior inclusion probability)",
}


class RegressionPrior:
    """Protocol of the priors on the extra-regression coefficients ``B2_F`` and ``B2_R``.

    A prior is a frozen dataclass (its parameters) whose *state* is a dict of arrays
    per coefficient matrix (``p`` covariates x ``c`` columns: factors for ``B2_F``,
    traits for ``B2_R``), kept in the chain's state as ``B2_F.<key>`` / ``B2_R.<key>``.
    Every prior is *relative to the column's total precision* ``tau_j``
    (``tot_F_prec`` or ``tot_Eta_prec``), as the loadings priors are.

    Attributes
    ----------
    state_axes : mapping of str -> int
        The state arrays and the axis of each that indexes the columns (1 for
        ``(p, c)`` arrays, 0 for ``(c,)`` arrays): what :func:`reorder_factors
        <pymegalmm.core.regressions.permute_factors>` permutes.
    recorded : tuple of str
        State keys recorded in the posterior as ``B2_F_<key>`` / ``B2_R_<key>``
        (dims and descriptions in :data:`REGRESSION_DIMS`, :data:`REGRESSION_DESCRIPTIONS`).
    spike_slab : bool
        Whether the coefficients are spike and slab: then the sampler draws them by
        single-site Gibbs (:func:`pymegalmm.priors.bayesc.sample_spike_slab`) with the
        slab variances and inclusion log-odds of :meth:`sites`; otherwise jointly
        from their Gaussian conditional with the precisions of :meth:`precision`.
    """

    state_axes: ClassVar[dict[str, int]] = {}
    recorded: ClassVar[tuple[str, ...]] = ()
    spike_slab: ClassVar[bool] = False

    def initialize(self, p: int, c: int, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Starting ``(p, c)`` coefficients and state (``n``: rows of data)."""
        raise NotImplementedError

    def precision(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` prior precisions relative to ``tau`` (spike and slab: of the slab)."""
        raise NotImplementedError

    def update(self, B: np.ndarray, tau: np.ndarray, state: dict[str, np.ndarray], n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The state given the coefficients ``B`` and the columns' total precisions."""
        raise NotImplementedError

    def sample_prior(self, p: int, c: int, n: int, tau: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Coefficients and state drawn from exactly the prior :meth:`update` assumes
        (for simulation-based calibration), given the columns' total precisions ``tau``."""
        raise NotImplementedError

    def sites(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Spike and slab only: ``(p, c)`` slab variances (relative to ``tau``) and
        ``(p, c)`` inclusion probabilities."""
        raise NotImplementedError


@dataclass(frozen=True)
class RegressionHorseshoePrior(RegressionPrior):
    """Horseshoe prior on the extra-regression coefficients (R's ``sample_B2_prec_horseshoe``).

    For each column ``j`` (a trait for ``B2_R``, a factor for ``B2_F``) with total
    precision ``tau_j``::

        B2_ij ~ N(0, phi2_ij t2_j / tau_j),
        phi2_ij | nu_ij ~ IG(1/2, 1/nu_ij),  nu_ij ~ IG(1/2, 1),
        t2_j | xi_j ~ IG(1/2, 1/xi_j),       xi_j ~ IG(1/2, 1/tau_0^2),

    with ``tau_0 = prop_0 / (1 - prop_0) / sqrt(n)`` (``n`` rows): half-Cauchy local
    and global scales, about a share ``prop_0`` of the coefficients escaping the
    shrinkage a priori.  ``IG(a, b)``: shape ``a``, scale ``b``.

    Parameters
    ----------
    prop_0 : float
        Prior guess of the proportion of non-zero coefficients, in ``(0, 1)``.
        Default 0.1 (R).
    """

    prop_0: float = 0.1

    state_axes: ClassVar[dict[str, int]] = {"phi2": 1, "nu": 1, "t2": 0, "xi": 0}

    def __post_init__(self) -> None:
        object.__setattr__(self, "prop_0", check_float("prop_0", self.prop_0, low=0.0,
                                                       high=1.0, low_open=True,
                                                       high_open=True))

    def tau_0(self, n: int) -> float:
        """Global scale of the half-Cauchy prior of ``sqrt(t2)`` for ``n`` rows."""
        return self.prop_0 / (1.0 - self.prop_0) / math.sqrt(n)

    def initialize(self, p: int, c: int, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scales from the prior, then ``B2 ~ N(0, phi2 t2)`` (METHOD.md section 4, item 8).

        Random numbers: ``c`` gammas (``xi``), ``c`` (``t2``), ``(p, c)`` (``nu``),
        ``(p, c)`` (``phi2``), ``(p, c)`` normals (``B2``).
        """
        t0 = self.tau_0(n)
        xi = (1.0 / t0**2) / rng.standard_gamma(0.5, size=c)
        t2 = (1.0 / xi) / rng.standard_gamma(0.5, size=c)
        nu = 1.0 / rng.standard_gamma(0.5, size=(p, c))
        phi2 = (1.0 / nu) / rng.standard_gamma(0.5, size=(p, c))
        B = np.asfortranarray(rng.standard_normal((p, c)) * np.sqrt(phi2 * t2))
        return B, {"phi2": np.asfortranarray(phi2), "nu": np.asfortranarray(nu),
                   "t2": t2, "xi": xi}

    def sample_prior(self, p: int, c: int, n: int, tau: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scales as :meth:`initialize`, then ``B2 ~ N(0, phi2 t2 / tau)`` (the prior
        :meth:`update` assumes; :meth:`initialize`, as R, leaves out ``tau``)."""
        B, state = self.initialize(p, c, n, rng)
        return np.asfortranarray(B / np.sqrt(np.asarray(tau, dtype=float))), state

    @staticmethod
    def precision(state: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` prior precisions relative to ``tau``: ``1 / (phi2 t2)``."""
        return np.asfortranarray(1.0 / (state["phi2"] * state["t2"]))

    def update(self, B: np.ndarray, tau: np.ndarray, state: dict[str, np.ndarray], n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One Gibbs update of the scales given ``B`` (METHOD.md step 8, in R's order).

        ``nu ~ IG(1, 1 + 1/phi2)``; ``phi2 ~ IG(1, 1/nu + tau B^2 / (2 t2))``;
        ``xi ~ IG(1, 1/tau_0^2 + 1/t2)``; ``t2 ~ IG((p + 1)/2, 1/xi + sum_i tau B^2/(2 phi2))``.
        Random numbers: ``(p, c)`` exponentials, ``(p, c)``, then ``c`` gammas, ``c``.
        """
        p, c = B.shape
        b = 0.5 * np.square(B) * tau
        t2 = state["t2"]
        nu = (1.0 + 1.0 / state["phi2"]) / rng.standard_exponential((p, c))
        phi2 = (1.0 / nu + b / t2) / rng.standard_exponential((p, c))
        xi = (1.0 / self.tau_0(n) ** 2 + 1.0 / t2) / rng.standard_exponential(c)
        t2 = (1.0 / xi + (b / phi2).sum(axis=0)) / rng.standard_gamma(0.5 * (p + 1), size=c)
        return {"phi2": np.asfortranarray(phi2), "nu": np.asfortranarray(nu),
                "t2": t2, "xi": xi}


#: State arrays of the horseshoe and the axis of each that indexes the columns (1 or 0).
PRIOR_COLUMN_AXIS = RegressionHorseshoePrior.state_axes


def _beta_draw(pi: BetaPrior | float, a_add: np.ndarray, b_add: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """``Beta(a + a_add, b + b_add)`` per column, or the fixed ``pi`` (no draw)."""
    if isinstance(pi, BetaPrior):
        return rng.beta(pi.a + a_add, pi.b + b_add)
    return np.full(np.shape(a_add), float(pi))


def _pi_prior(pi: BetaPrior | float, c: int, rng: np.random.Generator) -> np.ndarray:
    """``c`` inclusion probabilities from their prior (fixed ``pi``: no draw)."""
    if isinstance(pi, BetaPrior):
        return rng.beta(pi.a, pi.b, size=c)
    return np.full(c, float(pi))


def _pi_mean(pi: BetaPrior | float) -> float:
    return pi.a / (pi.a + pi.b) if isinstance(pi, BetaPrior) else float(pi)


@dataclass(frozen=True)
class RegressionBayesCPrior(RegressionPrior):
    """BayesC (spike-and-slab) prior on the extra-regression coefficients.

    For each column ``j`` (a factor for ``B2_F``, a trait for ``B2_R``) with total
    precision ``tau_j``, independently over the ``p`` covariates ``i``::

        B2_ij = 0                          with probability 1 - pi_j,
        B2_ij ~ N(0, sigma2_j / tau_j)     otherwise,
        pi_j ~ Beta(pi.a, pi.b),           1 / sigma2_j ~ Gamma(slab.shape, rate = slab.rate),

    one inclusion probability and one slab variance per column (``sigma2_j ~
    IG(slab.shape, scale = slab.rate)``; R's scaled-inverse-chi-square ``(df, scale)`` is
    ``shape = df / 2``, ``rate = df scale / 2``).

    Sampling: the coefficients of a column are drawn by single-site Gibbs, each
    indicator with its value integrated out, then the value (the sweep the BayesC
    loadings use, :func:`pymegalmm.priors.bayesc.sample_spike_slab`), jointly with the
    other coefficients of the same regression (``B2_R`` with the loadings and ``B1``;
    ``B2_F`` alone) and ``tau``.  Step 8 then draws ``pi_j ~ Beta(a + m_j, b + p - m_j)``
    and ``sigma2_j ~ IG(slab.shape + m_j / 2, slab.rate + tau_j sum_i B2_ij^2 / 2)``
    (``m_j`` the non-zero coefficients).

    State (per ``B2_F`` / ``B2_R``): ``pi`` (c), ``sigma2`` (c), ``inclusion`` (p, c).
    Recorded: ``B2_F_pi``, ``B2_F_inclusion`` (and ``B2_R_...``); the posterior mean of
    an inclusion indicator is the coefficient's posterior inclusion probability.

    Parameters
    ----------
    pi : BetaPrior, dict or float
        Prior of the inclusion probabilities, ``BetaPrior(a, b)`` (a dict works), or a
        fixed probability in ``(0, 1)``.  Default ``BetaPrior(1, 1)`` (uniform, as R).
    slab : GammaPrior or dict
        Prior of the slab precisions ``1 / sigma2_j``.  Default shape 2, rate 1.

    Notes
    -----
    Differences from R MegaLMM 0.9.5 (``sample_B2_prec_BayesC`` with the single-site
    ``which_sampler = 4``):

    - R's ``B2_*_pi`` is the probability that a coefficient is *zero*
      (``Beta(p - m + 1, m + 1)``); here ``pi`` is the probability of inclusion, and
      ``Beta(1, 1)`` is R's prior.
    - R draws the slab variance from ``(sum B^2 + df scale) / chi2(m + df)`` without the
      columns' total precisions, although its sampler reads the slab precision relative
      to them (as every prior here): the conditional is off by ``tau_j``.  Here the
      conditional includes ``tau_j``.
    - R's ``B2_F`` update uses ``B2_R_df`` and ``B2_R_scale`` (not ``B2_F_...``); here one
      ``slab`` prior serves both, as one ``prior`` serves both in :class:`ExtraRegression`.
    - R initialises ``pi = 1`` (its ``pi``: all zero) and the coefficients at 0; here the
      coefficients start at 0, ``pi`` at its prior mean and ``sigma2`` at ``rate / shape``.

    Examples
    --------
    >>> from pymegalmm import RegressionBayesCPrior
    >>> RegressionBayesCPrior(pi={"a": 1, "b": 9})
    RegressionBayesCPrior(pi=BetaPrior(a=1.0, b=9.0), slab=GammaPrior(shape=2.0, rate=1.0))
    """

    pi: BetaPrior | float = BetaPrior(1.0, 1.0)
    slab: GammaPrior = GammaPrior(2.0, 1.0)

    state_axes: ClassVar[dict[str, int]] = {"pi": 0, "sigma2": 0, "inclusion": 1}
    recorded: ClassVar[tuple[str, ...]] = ("pi", "inclusion")
    spike_slab: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pi", _as_pi(self.pi))
        object.__setattr__(self, "slab", as_prior("slab", self.slab, GammaPrior))

    def initialize(self, p: int, c: int, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``B2 = 0``, ``pi`` at its prior mean, ``sigma2 = rate / shape`` (no random number)."""
        return np.zeros((p, c), order="F"), {
            "pi": np.full(c, _pi_mean(self.pi)),
            "sigma2": np.full(c, self.slab.rate / self.slab.shape),
            "inclusion": np.zeros((p, c), order="F")}

    def precision(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` slab precisions ``1 / sigma2_j`` relative to ``tau``."""
        p = state["inclusion"].shape[0]
        return np.asfortranarray(np.broadcast_to(1.0 / state["sigma2"], (p, state["sigma2"].size)))

    def sites(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Slab variances and inclusion probabilities, ``(p, c)`` each."""
        shape = state["inclusion"].shape
        return (np.broadcast_to(state["sigma2"], shape), np.broadcast_to(state["pi"], shape))

    def update(self, B: np.ndarray, tau: np.ndarray, state: dict[str, np.ndarray], n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``pi`` then ``sigma2`` given ``B`` (random numbers: ``c`` Betas, ``c`` gammas)."""
        p, c = B.shape
        inclusion = np.asfortranarray((B != 0.0).astype(float))
        m = inclusion.sum(axis=0)
        pi = _beta_draw(self.pi, m, p - m, rng)
        ss = 0.5 * (np.square(B).sum(axis=0) * tau)
        sigma2 = (self.slab.rate + ss) / rng.standard_gamma(self.slab.shape + 0.5 * m)
        return {"pi": pi, "sigma2": sigma2, "inclusion": inclusion}

    def sample_prior(self, p: int, c: int, n: int, tau: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``pi_j ~ Beta``, ``sigma2_j ~ IG``, indicators ``~ Bernoulli(pi_j)``, then
        ``B2_ij ~ N(0, sigma2_j / tau_j)`` where included."""
        pi = _pi_prior(self.pi, c, rng)
        sigma2 = self.slab.rate / rng.standard_gamma(self.slab.shape, size=c)
        inclusion = np.asfortranarray((rng.random((p, c)) < pi).astype(float))
        B = np.asfortranarray(inclusion * rng.standard_normal((p, c))
                              * np.sqrt(sigma2 / np.asarray(tau, dtype=float)))
        return B, {"pi": pi, "sigma2": sigma2, "inclusion": inclusion}


@dataclass(frozen=True)
class RegressionBayesBPrior(RegressionPrior):
    """BayesB (spike-and-slab, one slab variance per coefficient) on the extra regressions.

    For each column ``j`` (factor or trait) with total precision ``tau_j``::

        B2_ij = 0                            with probability 1 - pi_j,
        B2_ij ~ N(0, sigma2_ij / tau_j)      otherwise,
        sigma2_ij ~ IG(df / 2, scale = df s2_j / 2)   (scaled inverse chi-square),
        s2_j ~ Gamma(scale.shape, rate = scale.rate),  pi_j ~ Beta(pi.a, pi.b).

    Each coefficient has its own slab variance (a Student-t slab with ``df`` degrees of
    freedom and scale ``s2_j``, learnt per column), so a few large effects are not
    shrunk as a common slab variance shrinks them (Meuwissen et al. 2001's BayesB with
    a learnt scale).  Sampling: the single-site sweep of
    :class:`RegressionBayesCPrior` with ``sigma2_ij`` in place of ``sigma2_j``; step 8 then
    draws ``pi_j ~ Beta(a + m_j, b + p - m_j)``, ``sigma2_ij ~ IG((df + 1) / 2, (df s2_j +
    tau_j B2_ij^2) / 2)`` for a non-zero coefficient and from its prior ``IG(df / 2,
    df s2_j / 2)`` for a zero one, and ``s2_j ~ Gamma(scale.shape + p df / 2, rate =
    scale.rate + df / 2 sum_i 1 / sigma2_ij)``.  (This is Gibbs sampling with the
    indicator drawn given ``sigma2_ij``, the value integrated out; Meuwissen et al.'s
    Metropolis-Hastings joint move of both is not used.)

    State: ``pi`` (c), ``s2`` (c), ``sigma2`` (p, c), ``inclusion`` (p, c).  Recorded:
    ``B2_*_pi``, ``B2_*_inclusion``; ``B2_*_prec`` records the slab precisions ``1 /
    sigma2_ij`` (on the user's scale for ``B2_R``).

    Parameters
    ----------
    pi : BetaPrior, dict or float
        Prior of the inclusion probabilities, or a fixed probability in ``(0, 1)``.
        Default ``BetaPrior(1, 1)``.
    df : float
        Degrees of freedom of the slab variances (> 0).  Default 4.
    scale : GammaPrior or dict
        Prior of the per-column scales ``s2_j``.  Default shape 2, rate 4 (prior mean of
        ``s2`` 0.5, so that ``E[sigma2] = df s2 / (df - 2)`` is about 1 with ``df = 4``).

    Notes
    -----
    R MegaLMM 0.9.5 has no BayesB prior on ``B2`` (its ``sample_B2_prec_*`` are the
    horseshoe and BayesC); this is new.

    Examples
    --------
    >>> from pymegalmm import RegressionBayesBPrior
    >>> RegressionBayesBPrior(pi=0.05, df=5)
    RegressionBayesBPrior(pi=0.05, df=5.0, scale=GammaPrior(shape=2.0, rate=4.0))
    """

    pi: BetaPrior | float = BetaPrior(1.0, 1.0)
    df: float = 4.0
    scale: GammaPrior = GammaPrior(2.0, 4.0)

    state_axes: ClassVar[dict[str, int]] = {"pi": 0, "s2": 0, "sigma2": 1, "inclusion": 1}
    recorded: ClassVar[tuple[str, ...]] = ("pi", "inclusion")
    spike_slab: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pi", _as_pi(self.pi))
        object.__setattr__(self, "df", check_float("df", self.df, low=0.0, low_open=True))
        object.__setattr__(self, "scale", as_prior("scale", self.scale, GammaPrior))

    def initialize(self, p: int, c: int, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``B2 = 0``, ``pi`` at its prior mean, ``s2`` at its prior mean, ``sigma2 = s2``
        (no random number)."""
        s2 = np.full(c, self.scale.shape / self.scale.rate)
        return np.zeros((p, c), order="F"), {
            "pi": np.full(c, _pi_mean(self.pi)), "s2": s2,
            "sigma2": np.asfortranarray(np.broadcast_to(s2, (p, c))),
            "inclusion": np.zeros((p, c), order="F")}

    def precision(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` slab precisions ``1 / sigma2_ij`` relative to ``tau``."""
        return np.asfortranarray(1.0 / state["sigma2"])

    def sites(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Slab variances and inclusion probabilities, ``(p, c)`` each."""
        return state["sigma2"], np.broadcast_to(state["pi"], state["sigma2"].shape)

    def update(self, B: np.ndarray, tau: np.ndarray, state: dict[str, np.ndarray], n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``pi``, then ``sigma2``, then ``s2`` given ``B``.

        Random numbers: ``c`` Betas, ``(p, c)`` standard gammas, ``c`` standard gammas.
        """
        p, c = B.shape
        inclusion = np.asfortranarray((B != 0.0).astype(float))
        m = inclusion.sum(axis=0)
        pi = _beta_draw(self.pi, m, p - m, rng)
        half_df = 0.5 * self.df
        rate = half_df * state["s2"] + 0.5 * np.square(B) * tau
        sigma2 = np.asfortranarray(rate / rng.standard_gamma(half_df + 0.5 * inclusion))
        s2 = (rng.standard_gamma(self.scale.shape + p * half_df, size=c)
              / (self.scale.rate + half_df * (1.0 / sigma2).sum(axis=0)))
        return {"pi": pi, "s2": s2, "sigma2": sigma2, "inclusion": inclusion}

    def sample_prior(self, p: int, c: int, n: int, tau: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``pi_j``, ``s2_j``, ``sigma2_ij``, indicators, then ``B2_ij ~ N(0, sigma2_ij /
        tau_j)`` where included, each from its prior."""
        pi = _pi_prior(self.pi, c, rng)
        s2 = rng.standard_gamma(self.scale.shape, size=c) / self.scale.rate
        half_df = 0.5 * self.df
        sigma2 = np.asfortranarray(half_df * s2 / rng.standard_gamma(half_df, size=(p, c)))
        inclusion = np.asfortranarray((rng.random((p, c)) < pi).astype(float))
        B = np.asfortranarray(inclusion * rng.standard_normal((p, c))
                              * np.sqrt(sigma2 / np.asarray(tau, dtype=float)))
        return B, {"pi": pi, "s2": s2, "sigma2": sigma2, "inclusion": inclusion}


#: The priors :class:`ExtraRegression` accepts.
REGRESSION_PRIORS = (RegressionHorseshoePrior, RegressionBayesCPrior, RegressionBayesBPrior)


@dataclass(frozen=True, eq=False)
class ExtraRegression:
    """Covariates that regress the factors and/or the traits' residual models (``X2``).

    Parameters
    ----------
    X : pandas.DataFrame
        Numeric covariates, one column each (their names label the ``marker`` dim of
        ``B2_F`` and ``B2_R``).  Without ``by``: one row per row of ``data``, indexed
        like it (every row of ``data`` must be in ``X``'s index).  With ``by``: one row
        per level of the grouping variable ``by`` (e.g. a marker matrix indexed by
        line); every level in ``data`` must have a row, and extra rows (lines without
        data) are predicted from their covariates.  Columns are used as given:
        centre them (e.g. markers minus their mean) so that ``X2 B2`` has mean zero,
        as the factors do.
    by : str, optional
        Column of ``data`` whose levels index ``X``.
    factors : bool
        Regress the factors on ``X`` (``B2_F``).  Default True.
    resids : bool
        Regress the traits' residual models on ``X`` (``B2_R``).  Default True.
    prior : RegressionHorseshoePrior, RegressionBayesCPrior or RegressionBayesBPrior
        Prior of ``B2_F`` and ``B2_R``: the horseshoe (R's default), BayesC or BayesB
        (spike and slab, drawn by single-site Gibbs).

    Notes
    -----
    Low-rank ``X``: ``ExtraRegression(X=(U, V))`` means ``X = U V'`` with ``U`` a
    DataFrame of ``n x r`` scores (indexed as ``X`` would be: by row, or by level with
    ``by``) and ``V`` a DataFrame of ``p x r`` loadings indexed by the covariates (e.g.
    ``U`` principal-component scores of a marker matrix and ``V`` its loadings, so that
    ``U V'`` approximates the markers).  As R's ``X2_F = U2_F V2_F``, the model is the one
    with the full ``X = U V'``: the coefficients ``B2`` are the effects of the ``p``
    original covariates (labelled by ``V``'s index), penalised and recorded as with a
    plain ``X``; ``predict`` and ``genetic_values`` of new lines use their rows of ``U``.
    The sampler currently forms ``U V'`` (``n x p``) once: the posterior is exactly that
    of the full ``X``, without R's saving of memory and time (its Woodbury step in the
    ``r``-dimensional space is not implemented).
    """

    X: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]
    by: str | None = None
    factors: bool = True
    resids: bool = True
    prior: RegressionPrior = field(default_factory=RegressionHorseshoePrior)
    #: ``(U, V)`` when ``X`` was given in low-rank form, else None.
    low_rank: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, init=False,
                                                               repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.X, tuple | list):
            U, V = _check_low_rank(self.X)
            object.__setattr__(self, "low_rank", (U, V))
            object.__setattr__(self, "X", pd.DataFrame(U.to_numpy(dtype=float)
                                                       @ V.to_numpy(dtype=float).T,
                                                       index=U.index, columns=V.index))
        X = self.X
        if not isinstance(X, pd.DataFrame):
            raise InputTypeError(f"extra_regressions.X must be a pandas DataFrame (rows x "
                                 f"covariates) or a pair (U, V) of DataFrames (X = U V'), "
                                 f"got {type(X).__name__}")
        if X.shape[1] == 0:
            raise InputError("extra_regressions.X has no columns")
        bad = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
               or pd.api.types.is_bool_dtype(X[c])]
        if bad:
            raise InputTypeError(f"extra_regressions.X has non-numeric column(s) {bad[:10]}")
        values = X.to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            rows, cols = np.nonzero(~np.isfinite(values))
            raise InputError(f"extra_regressions.X has {rows.size} NaN or infinite value(s), "
                             f"e.g. row {X.index[rows[0]]!r}, column {X.columns[cols[0]]!r}")
        if X.index.has_duplicates:
            dup = X.index[X.index.duplicated()].unique()[:10]
            raise InputError(f"extra_regressions.X has duplicated index labels {list(dup)}")
        if X.columns.has_duplicates:
            raise InputError("extra_regressions.X has duplicated column names")
        if self.by is not None and not isinstance(self.by, str):
            raise InputTypeError(f"extra_regressions.by must be a column name (str) or None, "
                                 f"got {type(self.by).__name__}")
        object.__setattr__(self, "factors", check_bool("extra_regressions.factors",
                                                       self.factors))
        object.__setattr__(self, "resids", check_bool("extra_regressions.resids", self.resids))
        if not (self.factors or self.resids):
            raise InputError("extra_regressions: factors and resids are both False; set one")
        if not isinstance(self.prior, REGRESSION_PRIORS):
            raise InputTypeError("extra_regressions.prior must be a RegressionHorseshoePrior, "
                                 "RegressionBayesCPrior or RegressionBayesBPrior, got "
                                 f"{type(self.prior).__name__}")

    @property
    def names(self) -> list[str]:
        """The covariates' names (the ``marker`` coordinate)."""
        return [str(c) for c in self.X.columns]

    def rows_for(self, data: pd.DataFrame, what: str = "data") -> np.ndarray:
        """``X2`` for the rows of ``data`` (``len(data) x x2``), by row label or by level.

        Raises ``LabelError`` naming the rows or levels of ``data`` without a row in ``X``.
        """
        if self.by is None:
            pos = self.X.index.get_indexer(data.index)
            if (pos < 0).any():
                missing = [str(v) for v in data.index[pos < 0][:10]]
                raise LabelError(f"extra_regressions.X has no row for {int((pos < 0).sum())} "
                                 f"row(s) of {what}, e.g. {missing} (X is indexed like the "
                                 "data's rows; or give by= a grouping column)")
        else:
            if self.by not in data.columns:
                raise LabelError(f"extra_regressions.by={self.by!r} is not a column of {what}")
            keys = data[self.by]
            if pd.isna(keys).any():
                raise InputError(f"{what}'s column {self.by!r} (extra_regressions.by) has "
                                 "missing values")
            pos = pd.Index(self.level_keys()).get_indexer(keys.astype(str))
            if (pos < 0).any():
                missing = [str(v) for v in pd.unique(keys[pos < 0].astype(str))[:10]]
                raise LabelError(f"extra_regressions.X has no row for level(s) {missing} of "
                                 f"{self.by!r} in {what}")
        return np.ascontiguousarray(self.X.to_numpy(dtype=float)[pos])

    def level_keys(self) -> list[str]:
        """``X``'s index as strings (the levels of ``by``)."""
        return [str(v) for v in self.X.index]


def _check_low_rank(pair: tuple | list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(U, V)`` of a low-rank ``X = U V'``, checked (errors name ``extra_regressions.X``)."""
    if len(pair) != 2:
        raise InputError(f"extra_regressions.X as a low-rank pair must be (U, V) with X = "
                         f"U V', got {len(pair)} item(s)")
    U, V = pair
    for name, M, rows in (("U", U, "rows (as X's rows) x rank"),
                          ("V", V, "covariates x rank")):
        if not isinstance(M, pd.DataFrame):
            raise InputTypeError(f"extra_regressions.X=(U, V): {name} must be a pandas "
                                 f"DataFrame ({rows}), got {type(M).__name__}")
        if M.shape[1] == 0 or M.shape[0] == 0:
            raise InputError(f"extra_regressions.X=(U, V): {name} is empty ({M.shape})")
        bad = [str(c) for c in M.columns if not pd.api.types.is_numeric_dtype(M[c])
               or pd.api.types.is_bool_dtype(M[c])]
        if bad:
            raise InputTypeError(f"extra_regressions.X=(U, V): {name} has non-numeric "
                                 f"column(s) {bad[:10]}")
        if not np.all(np.isfinite(M.to_numpy(dtype=float))):
            raise InputError(f"extra_regressions.X=(U, V): {name} has NaN or infinite values")
    if U.shape[1] != V.shape[1]:
        raise InputError(f"extra_regressions.X=(U, V): U has {U.shape[1]} column(s) (rank) "
                         f"but V has {V.shape[1]}; X = U V' needs the same rank r (U: n x r, "
                         "V: covariates x r)")
    if [str(c) for c in U.columns] != [str(c) for c in V.columns]:
        raise LabelError(f"extra_regressions.X=(U, V): U's columns {list(U.columns)[:5]} "
                         f"and V's columns {list(V.columns)[:5]} differ; they name the same "
                         "r components, in the same order")
    if V.index.has_duplicates:
        raise InputError("extra_regressions.X=(U, V): V's index (the covariates) has "
                         "duplicated labels")
    return U, V


def regression_dims(extra: ExtraRegression) -> dict[str, tuple[str, ...]]:
    """Dims of the recordable parameters of ``extra`` (``B2_F`` with ``factors``, ``B2_R``
    with ``resids``, their prior precisions, and the prior's recorded state)."""
    on = {"B2_F": extra.factors, "B2_R": extra.resids}
    own = {"", "_prec", *(f"_{key}" for key in extra.prior.recorded)}
    return {name: dims for name, dims in REGRESSION_DIMS.items()
            if on[name[:4]] and name[4:] in own}


def regression_draws(ds: xr.Dataset, X2: np.ndarray, with_factors: bool) -> np.ndarray:
    """``X2 (B2_F Lambda + B2_R)`` per draw, ``(chain, draw, row, trait)``, user's scale.

    Parameters
    ----------
    ds : draws with ``B2_F`` and ``Lambda`` (when ``with_factors`` and recorded) and
        ``B2_R`` (when recorded).
    X2 : (rows, x2) covariates of the rows.
    with_factors : include ``X2 B2_F Lambda`` (False for the fitted rows, whose factor
        scores ``F`` already hold it).
    """
    c, d, t = ds.sizes["chain"], ds.sizes["draw"], ds.sizes["trait"]
    coef = np.zeros((c, d, X2.shape[1], t))
    if with_factors and "B2_F" in ds:
        B2_F = ds["B2_F"].transpose("chain", "draw", "marker", "factor").values
        Lam = ds["Lambda"].transpose("chain", "draw", "factor", "trait").values
        coef += np.einsum("cdmk,cdkt->cdmt", B2_F, Lam)
    if "B2_R" in ds:
        coef += ds["B2_R"].transpose("chain", "draw", "marker", "trait").values
    return np.einsum("rm,cdmt->cdrt", X2, coef)


def regression_names(extra: ExtraRegression, with_factors: bool) -> list[str]:
    """The draws :func:`regression_draws` needs."""
    return ([*(["B2_F", "Lambda"] if with_factors and extra.factors else []),
             *(["B2_R"] if extra.resids else [])])


def genetic_values_with_markers(U: xr.DataArray, extra: ExtraRegression, ds: xr.Dataset
                                ) -> xr.DataArray:
    """Genetic values over the levels of ``K`` and the levels of ``extra.X`` (``by`` levels).

    ``U_ext[l] = U[l] + X2[l] (B2_F Lambda + B2_R)``: ``U[l] = U_F Lambda + U_R`` for a level
    of ``K`` (0 for a level with covariates only) plus the covariates' part for a level
    with a row in ``X`` (0 for a level of ``K`` without one).  Levels of ``K`` first, in
    their order, then the levels with covariates only, in ``X``'s order.
    """
    k_levels = [str(v) for v in U["level"].values]
    x_levels = extra.level_keys()
    only_x = [v for v in x_levels if v not in set(k_levels)]
    levels = k_levels + only_x
    X_all = np.zeros((len(levels), extra.X.shape[1]))
    pos = pd.Index(levels).get_indexer(x_levels)
    X_all[pos] = extra.X.to_numpy(dtype=float)
    values = regression_draws(ds, X_all, with_factors=True)
    values[:, :, :len(k_levels)] += U.transpose("chain", "draw", "level", "trait").values
    return xr.DataArray(values, dims=("chain", "draw", "level", "trait"),
                        coords={"chain": U["chain"].values, "draw": U["draw"].values,
                                "level": levels, "trait": U["trait"].values},
                        name="U", attrs={"description": "genetic values U_F Lambda + U_R "
                                         "+ X2 (B2_F Lambda + B2_R) per level, user's scale"})
