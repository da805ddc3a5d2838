"""The extra regressions ``X2 B2_F`` (factors) and ``X2 B2_R`` (traits) inside the sampler.

:class:`RegressionData` holds ``X2`` rotated into each trait group's rows and into the
factors' rows; the helpers below are what :mod:`pymegalmm.core.iteration`,
:mod:`pymegalmm.core.initialize` and :mod:`pymegalmm.core.reorder` call when a model
has extra regressions (``ModelData.regressions``; None otherwise, and then nothing
here runs and no random number is drawn).  State arrays live in ``ChainState.extra``:
``B2_F`` (x2, k), ``B2_R`` (x2, t) and their prior's state, e.g. the horseshoe's
``B2_F.phi2`` ... (see :class:`pymegalmm.regressions.RegressionPrior`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..linalg import matmul
from ..priors.base import LoadingsRegression
from ..priors.bayesc import sample_spike_slab
from ..regressions import RegressionPrior


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
    prior: RegressionPrior

    @property
    def p(self) -> int:
        """Number of covariates."""
        return self.X2.shape[1]

    @property
    def n(self) -> int:
        """Rows of data (sets the horseshoe's global scale)."""
        return self.X2.shape[0]


def _prior_state(rd: RegressionData, extra: dict[str, np.ndarray], name: str
                 ) -> dict[str, np.ndarray]:
    return {k: extra[f"{name}.{k}"] for k in rd.prior.state_axes}


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


def precision(rd: RegressionData, extra: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``(x2, c)`` prior precisions of ``name`` (``"B2_F"`` or ``"B2_R"``) relative to tau
    (spike and slab: of the slab)."""
    return rd.prior.precision(_prior_state(rd, extra, name))


def sites(rd: RegressionData, extra: dict[str, np.ndarray], name: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """Spike-and-slab priors: ``(x2, c)`` slab variances and inclusion probabilities."""
    return rd.prior.sites(_prior_state(rd, extra, name))


def recorded_state(rd: RegressionData, extra: dict[str, np.ndarray], name: str
                   ) -> dict[str, np.ndarray]:
    """The prior's recorded state of ``name`` as ``{name}_{key}`` copies."""
    return {f"{name}_{k}": np.array(extra[f"{name}.{k}"], copy=True) for k in rd.prior.recorded}


def update_precisions(rd: RegressionData, extra: dict[str, np.ndarray],
                      tot_F_prec: np.ndarray, tot_Eta_prec: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Step 8: the prior's state of ``B2_F`` then ``B2_R`` given the coefficients."""
    out = dict(extra)
    for name, tau in (("B2_F", tot_F_prec), ("B2_R", tot_Eta_prec)):
        if name in extra:
            state = rd.prior.update(extra[name], tau, _prior_state(rd, extra, name), rd.n, rng)
            out.update(_with_prior_state(name, state))
    return out


def factor_mean(rd: RegressionData | None, extra: dict[str, np.ndarray],
                genetic: np.ndarray) -> np.ndarray:
    """The factors' prior mean in rotated rows: ``Z U_F`` (``genetic``) ``+ X2 B2_F``."""
    if rd is None or "B2_F" not in extra:
        return genetic
    return matmul(rd.QtX2[0], extra["B2_F"], out=genetic, beta=1.0)


def permute_factors(rd: RegressionData | None, extra: dict[str, np.ndarray],
                    order: np.ndarray) -> dict[str, np.ndarray]:
    """``B2_F`` and its prior's per-factor arrays with the factors reordered."""
    out = dict(extra)
    if rd is not None and "B2_F" in extra:
        out["B2_F"] = np.asfortranarray(extra["B2_F"][:, order])
        for k, axis in rd.prior.state_axes.items():
            v = extra[f"B2_F.{k}"]
            out[f"B2_F.{k}"] = np.asfortranarray(v[:, order]) if axis else v[order].copy()
    return out


def spike_slab_sampler(rd: RegressionData, extra: dict[str, np.ndarray], name: str,
                       cols: slice | np.ndarray,
                       lambda_sites: tuple[np.ndarray, np.ndarray] | None, n_loadings: int,
                       pen_prec: np.ndarray | None, rng: np.random.Generator
                       ) -> Callable[[LoadingsRegression], tuple[np.ndarray, np.ndarray]]:
    """The column-LMM step's own draw when some penalised coefficients are spike and slab.

    The penalised columns are ``[X2, F]`` for the traits (``name = "B2_R"``, then
    ``n_loadings`` loadings) and ``X2`` alone for the factors (``"B2_F"``).  Sites: the
    ``B2`` rows when the regression prior is spike and slab, the loadings when
    ``lambda_sites`` (the loadings prior's ``(sigma2, pi)`` per factor, BayesC) is given;
    the other penalised rows are Gaussian with the relative precisions ``pen_prec``.
    Returns the callable :func:`pymegalmm.core.column_lmm.sample_column_lmm` takes as
    ``pen_sampler`` (:func:`pymegalmm.priors.bayesc.sample_spike_slab`).
    """
    p = rd.p
    idx, var, prob = [], [], []
    if rd.prior.spike_slab:
        slab, pi = sites(rd, extra, name)
        idx.append(np.arange(p))
        var.append(slab[:, cols])
        prob.append(pi[:, cols])
    if lambda_sites is not None:
        sigma2, pi = lambda_sites
        c = var[0].shape[1] if var else np.zeros(extra[name].shape[1])[cols].size
        idx.append(p + np.arange(n_loadings))
        var.append(np.broadcast_to(np.asarray(sigma2, dtype=float)[:, None], (n_loadings, c)))
        prob.append(np.broadcast_to(np.asarray(pi, dtype=float)[:, None], (n_loadings, c)))
    site_rows = np.concatenate(idx)
    slab_var = np.ascontiguousarray(np.vstack(var))
    pi_all = np.clip(np.vstack(prob), 1e-300, 1.0 - 1e-16)
    logit_pi = np.log(pi_all) - np.log1p(-pi_all)
    n_pen = p + (n_loadings if name == "B2_R" else 0)
    gauss = None if site_rows.size == n_pen else np.asarray(pen_prec, dtype=float)

    def sampler(regression: LoadingsRegression) -> tuple[np.ndarray, np.ndarray]:
        return sample_spike_slab(regression, site_rows, slab_var, logit_pi, gauss, rng)

    return sampler
