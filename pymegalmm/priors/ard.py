"""ARD loadings prior: the multiplicative gamma process of Bhattacharya & Dunson (2011)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._config import kernels_module
from ..linalg import standard_gamma
from ..validate import check_float, check_int
from .base import LambdaPrior, PriorState
from .variance import GammaPrior, as_prior


@dataclass(frozen=True)
class ARDPrior(LambdaPrior):
    """ARD (multiplicative gamma process) shrinkage prior on the factor loadings Lambda.

    ``lambda_kj ~ N(0, 1 / (tot_Eta_prec_j * phi_kj * tauh_k))`` with
    ``phi_kj ~ Gamma(Lambda_df/2, rate Lambda_df/2)``, ``tauh_k = prod_{l<=k} delta_l``,
    ``delta_1 ~ Gamma(delta_1)`` and ``delta_l ~ Gamma(delta_2)`` truncated to
    ``[1, inf)`` for ``l >= 2`` (Bhattacharya & Dunson 2011), so later factors
    are shrunk more.  ``delta`` is updated by ``delta_iterations_factor`` Gibbs
    sweeps per iteration.

    State: ``Lambda_phi`` (factor, trait), the local precisions, and ``delta``
    (factor), the multiplicative global increments (recorded).

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

    state_dims: ClassVar[dict[str, tuple[str, ...]]] = {
        "Lambda_phi": ("factor", "trait"), "delta": ("factor",),
    }
    recorded: ClassVar[dict[str, str]] = {
        "delta": "ARD multiplicative shrinkage increments (tauh = cumprod(delta))",
    }

    def __post_init__(self) -> None:
        check = {
            "Lambda_df": check_float("Lambda_df", self.Lambda_df, low=0.0, low_open=True),
            "delta_1": as_prior("delta_1", self.delta_1, GammaPrior),
            "delta_2": as_prior("delta_2", self.delta_2, GammaPrior),
            "delta_iterations_factor": check_int("delta_iterations_factor",
                                                 self.delta_iterations_factor, minimum=1),
        }
        for name, value in check.items():
            object.__setattr__(self, name, value)

    def initialize(self, Lambda: np.ndarray, tot_prec: np.ndarray,
                   rng: np.random.Generator) -> PriorState:
        """``delta = max(1, draw from its prior)``, ``phi = 1``, then one update (as R)."""
        k, t = Lambda.shape
        delta = np.concatenate([
            rng.gamma(self.delta_1.shape, 1.0 / self.delta_1.rate, size=1),
            rng.gamma(self.delta_2.shape, 1.0 / self.delta_2.rate, size=k - 1),
        ])
        state = {"Lambda_phi": np.ones((k, t), order="F"), "delta": np.maximum(delta, 1.0)}
        return self.update(Lambda, tot_prec, state, rng)

    def precision(self, state: PriorState) -> np.ndarray:
        """``phi_kj * prod_{l<=k} delta_l``, Fortran-ordered."""
        return np.asfortranarray(state["Lambda_phi"] * np.cumprod(state["delta"])[:, None])

    def update(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
               rng: np.random.Generator) -> PriorState:
        """``phi`` given the previous ``delta``, then ``delta_iterations_factor`` ``delta`` sweeps.

        ``phi_kj ~ Gamma((nu+1)/2, rate (nu + tauh_k tau_j lambda_kj^2)/2)`` with the
        previous ``tauh = cumprod(delta)``; then, with
        ``s_k = sum_j tau_j phi_kj lambda_kj^2 / 2``, ``delta`` is swept as in
        :func:`pymegalmm._kernels.sample_ard_delta`.
        """
        nu = self.Lambda_df
        k, t = Lambda.shape
        lam2_tau = np.square(Lambda) * tot_prec  # tau_j lambda_kj^2
        tauh = np.cumprod(state["delta"])
        gamma = standard_gamma(rng, 0.5 * (nu + 1.0), k, t)
        phi = np.asfortranarray(gamma / (0.5 * (nu + tauh[:, None] * lam2_tau)))
        s_k = 0.5 * (lam2_tau * phi).sum(axis=1)
        delta = np.array(state["delta"], dtype=float, copy=True)
        u = rng.random((self.delta_iterations_factor, k))
        kernels_module().sample_ard_delta(
            delta, s_k, float(t), self.delta_1.shape, self.delta_1.rate,
            self.delta_2.shape, self.delta_2.rate, u,
        )
        return {"Lambda_phi": phi, "delta": delta}

    def sample_prior(self, n_factors: int, tot_prec: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, PriorState]:
        """Draw ``delta``, ``phi`` and the loadings from the prior that :meth:`update` targets.

        ``delta_1 ~ Gamma(delta_1)``; ``delta_l ~ Gamma(delta_2)`` truncated to
        ``[1, inf)`` for ``l >= 2`` (drawn exactly, by the inverse of the upper
        incomplete gamma function); ``phi_kj ~ Gamma(Lambda_df/2, rate Lambda_df/2)``;
        ``lambda_kj ~ N(0, 1 / (tot_prec_j * phi_kj * prod_{l<=k} delta_l))``.

        Parameters
        ----------
        n_factors : int
            Number of factors ``k``.
        tot_prec : numpy.ndarray
            ``(t,)`` total precision of each trait's residual model.
        rng : numpy.random.Generator
            Source of every random number.

        Returns
        -------
        Lambda : numpy.ndarray
            ``(k, t)`` loadings (Fortran-ordered).
        state : PriorState
            ``{"Lambda_phi": (k, t), "delta": (k,)}``.
        """
        from scipy.special import gammaincc, gammainccinv

        k = check_int("n_factors", n_factors, minimum=1)
        tot_prec = np.asarray(tot_prec, dtype=float)
        t = tot_prec.shape[0]
        a2, b2 = self.delta_2.shape, self.delta_2.rate
        first = rng.gamma(self.delta_1.shape, 1.0 / self.delta_1.rate, size=1)
        upper_at_1 = gammaincc(a2, b2 * 1.0)  # P(delta_l > 1) before truncation
        # 1 - u is in (0, 1]: the draw is in [1, inf)
        later = gammainccinv(a2, upper_at_1 * (1.0 - rng.random(k - 1))) / b2
        delta = np.concatenate([first, np.maximum(later, 1.0)])
        nu = self.Lambda_df
        phi = np.asfortranarray(rng.gamma(0.5 * nu, 2.0 / nu, size=(k, t)))
        precision = tot_prec[None, :] * phi * np.cumprod(delta)[:, None]
        Lambda = np.asfortranarray(rng.standard_normal((k, t)) / np.sqrt(precision))
        return Lambda, {"Lambda_phi": phi, "delta": delta}

    def permute(self, state: PriorState, order: np.ndarray) -> PriorState:
        """Local precisions follow their factors; ``delta`` belongs to the *positions*.

        ``tauh_k = prod_{l<=k} delta_l`` is the shrinkage of the k-th position in the
        ordering, which is what reordering is for, so ``delta`` is not permuted.
        """
        return {"Lambda_phi": np.asfortranarray(state["Lambda_phi"][order]),
                "delta": state["delta"].copy()}

    def refresh(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
                rng: np.random.Generator) -> PriorState:
        """R's ``reorder_factors``: ``delta_1`` reset to 1, then 10 updates."""
        state = {**state, "delta": state["delta"].copy()}
        state["delta"][0] = 1.0
        for _ in range(10):
            state = self.update(Lambda, tot_prec, state, rng)
        return state
