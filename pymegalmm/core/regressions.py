"""The extra regressions ``X2 B2_F`` (factors) and ``X2 B2_R`` (traits) inside the sampler.

:class:`RegressionData` holds ``X2`` rotated into each trait group's rows and into the
factors' rows; the helpers below are what :mod:`pymegalmm.core.iteration`,
:mod:`pymegalmm.core.initialize` and :mod:`pymegalmm.core.reorder` call when a model
has extra regressions (``ModelData.regressions``; None otherwise, and then nothing
here runs and no random number is drawn).  State arrays live in ``ChainState.extra``:
``B2_F`` (x2, k), ``B2_R`` (x2, t) and the horseshoe's ``B2_F.phi2`` ... (see
:class:`pymegalmm.regressions.RegressionHorseshoePrior`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg import matmul
from ..regressions import PRIOR_COLUMN_AXIS, RegressionHorseshoePrior


@dataclass(frozen=True, eq=False)
class RegressionData:
    """``X2`` as the chains need it.

    Attributes
    ----------
    X2 : (n, x2) in the original rows.
    QtX2 : per trait group, ``X2`` of the group's rows rotated by its back-end
        (group 0's rotation is the factors').
    factors, resids : which of ``B2_F`` and ``B2_R`` the model has.
    prior : the coefficients' prior.
    """

    X2: np.ndarray
    QtX2: list[np.ndarray]
    factors: bool
    resids: bool
    prior: RegressionHorseshoePrior

    @property
    def p(self) -> int:
        """Number of covariates."""
        return self.X2.shape[1]

    @property
    def n(self) -> int:
        """Rows of data (sets the horseshoe's global scale)."""
        return self.X2.shape[0]


def _prior_state(extra: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {k: extra[f"{name}.{k}"] for k in PRIOR_COLUMN_AXIS}


def _with_prior_state(name: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{name}.{k}": v for k, v in state.items()}


def initial_regressions(rd: RegressionData, k: int, t: int, rng: np.random.Generator
                        ) -> dict[str, np.ndarray]:
    """Starting ``B2_F``, ``B2_R`` and their prior scales, from the prior (B2_F first)."""
    out: dict[str, np.ndarray] = {}
    for name, c, on in (("B2_F", k, rd.factors), ("B2_R", t, rd.resids)):
        if on:
            B, state = rd.prior.initialize(rd.p, c, rd.n, rng)
            out[name] = B
            out.update(_with_prior_state(name, state))
    return out


def precision(extra: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``(x2, c)`` prior precisions of ``name`` (``"B2_F"`` or ``"B2_R"``) relative to tau."""
    return RegressionHorseshoePrior.precision(_prior_state(extra, name))


def update_precisions(rd: RegressionData, extra: dict[str, np.ndarray],
                      tot_F_prec: np.ndarray, tot_Eta_prec: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Step 8: the horseshoe scales of ``B2_F`` then ``B2_R`` given the coefficients."""
    out = dict(extra)
    for name, tau in (("B2_F", tot_F_prec), ("B2_R", tot_Eta_prec)):
        if name in extra:
            state = rd.prior.update(extra[name], tau, _prior_state(extra, name), rd.n, rng)
            out.update(_with_prior_state(name, state))
    return out


def factor_mean(rd: RegressionData | None, extra: dict[str, np.ndarray],
                genetic: np.ndarray) -> np.ndarray:
    """The factors' prior mean in rotated rows: ``Z U_F`` (``genetic``) ``+ X2 B2_F``."""
    if rd is None or "B2_F" not in extra:
        return genetic
    return matmul(rd.QtX2[0], extra["B2_F"], out=genetic, beta=1.0)


def permute_factors(extra: dict[str, np.ndarray], order: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """``B2_F`` and its prior's per-factor arrays with the factors reordered."""
    out = dict(extra)
    if "B2_F" in extra:
        out["B2_F"] = np.asfortranarray(extra["B2_F"][:, order])
        for k, axis in PRIOR_COLUMN_AXIS.items():
            v = extra[f"B2_F.{k}"]
            out[f"B2_F.{k}"] = np.asfortranarray(v[:, order]) if axis else v[order].copy()
    return out
