"""The column-LMM step: one routine for the traits' residual models and for the factors.

Given the rest of the model, every column ``y_j`` of a response (a trait's
``Eta - F Lambda`` part, or a factor's scores) is its own univariate LMM::

    y_j = X_pen b_j + X_flat a_j + Z u_j + e_j,
    u_j ~ N(0, h2_j / tau_j K),   e_j ~ N(0, (1 - sum h2_j) / tau_j I),
    b_j ~ N(m_j, (tau_j D_j)^-1),  a_j flat,  tau_j ~ Gamma(shape, rate),

with ``h2_j`` on the discrete grid.  One step draws, per column (METHOD.md §3):

1. ``[a_j, tau_j, b_j]`` jointly given ``h2_j`` with ``u_j`` integrated out
   (partially collapsed: ``a`` with ``b`` integrated out, ``tau`` given ``a``,
   then ``b``); without regressors, ``tau_j`` from its Gamma conditional;
2. ``h2_j`` from its discrete posterior over the whole grid (``u`` integrated out),
   or, with ``Control(h2_step_size=...)``, by one Metropolis-Hastings step on the grid
   (:mod:`pymegalmm.core.h2_metropolis`);
3. ``u_j`` given ``h2_j`` and ``tau_j``.

The traits use it with ``X_pen = F`` (the loadings, under the loadings prior) and
``X_flat = X1``; the factors with no regressors (their regressions ``X2_F B2_F``
plug in here).  Random numbers are drawn in a fixed order from the chain's
generator, outside the parallel kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._config import kernels_module
from ..errors import SamplerError
from ..linalg import matmul, standard_normal, subtract_products
from ..priors import VariancePrior
from ..priors.base import LoadingsRegression
from .data import Workspace
from .h2_metropolis import GridNeighbourhoods, sample_grid_index_metropolis
from .random_effects import RandomEffectsBackend


@dataclass
class ColumnLMMDraw:
    """One draw of the column-LMM step for ``c`` columns.

    Attributes
    ----------
    coef : (p, c) regression coefficients ``[b; a]`` (penalised first); ``(0, c)`` without.
    tau : (c,) total precisions.
    h2_index : (c,) grid indices.
    effects : (n_coef, c) random-effect coefficients (back-end basis).
    residual : (n, c) ``y - X_flat a - Z u`` (rotated), what the penalised regressors
        and the residual explain; only when asked for (``residual=True``).
    """

    coef: np.ndarray
    tau: np.ndarray
    h2_index: np.ndarray
    effects: np.ndarray
    residual: np.ndarray | None


def sample_grid_index(
    SS: np.ndarray, log_det: np.ndarray, log_prior: np.ndarray, tau: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Grid index per column from its discrete posterior (one uniform per column).

    ``log p(g | .) = log prior_g - log|V_g| / 2 - tau SS[:, g] / 2 + const``.
    """
    out = np.empty(SS.shape[0], dtype=np.intp)
    kernels_module().sample_grid_index(SS, log_det, log_prior, np.ascontiguousarray(tau),
                                       rng.random(SS.shape[0]), out)
    return out


def sample_column_lmm(
    re: RandomEffectsBackend,
    y: np.ndarray,
    h2_index: np.ndarray,
    tau_prior: VariancePrior,
    log_prior_h2: np.ndarray,
    rng: np.random.Generator,
    work: Workspace,
    *,
    X_pen: np.ndarray | None = None,
    X_flat: np.ndarray | None = None,
    prior_prec: np.ndarray | None = None,
    prior_mean: np.ndarray | None = None,
    tau: np.ndarray | None = None,
    drop_flat: np.ndarray | None = None,
    residual: bool = False,
    effects_out: np.ndarray | None = None,
    key: str = "",
    pen_sampler: Callable[[LoadingsRegression], tuple[np.ndarray, np.ndarray] | None]
    | None = None,
    coef_old: np.ndarray | None = None,
    h2_neighbourhoods: GridNeighbourhoods | None = None,
    keep_tau: np.ndarray | None = None,
) -> ColumnLMMDraw:
    """Draw coefficients, total precisions, h2 and random effects of ``c`` columns.

    Parameters
    ----------
    re : the random-effect back-end of the rows of ``y``.
    y : (n, c) response in the back-end's rotated rows, Fortran-ordered.
    h2_index : (c,) current grid indices (the regression is drawn given them).
    tau_prior : prior of the total precisions.
    log_prior_h2 : (G,) log prior weights of the grid.
    rng : the chain's generator.
    work : the chain's work arrays.
    X_pen : (n, p_pen) rotated penalised regressors, optional.
    X_flat : (n, p_flat) rotated regressors with a flat prior, optional.
    prior_prec : (p_pen, c) prior precisions of the penalised coefficients,
        relative to ``tau``.
    prior_mean : (p_pen, c) prior means of the penalised coefficients; None is zero.
    tau : (c,) current total precisions (used by the collapsed draw of ``a``).
    drop_flat : (c, p_flat) uint8: flat coefficients fixed at 0 per column.
    residual : also return ``y - X_flat a - Z u``.
    effects_out : (n_coef, c) Fortran-ordered array to write the effects into.
    key : distinguishes the work arrays of several calls per iteration.
    pen_sampler : the loadings prior's own draw of ``[b, a]`` and ``tau``
        (:meth:`~pymegalmm.priors.LambdaPrior.sample_loadings`, bound to its state and
        the generator); used instead of the Gaussian step unless it returns None.
    coef_old : (p_pen + p_flat, c) current ``[b; a]``, for ``pen_sampler``.
    h2_neighbourhoods : the grid's neighbourhoods for a Metropolis-Hastings step on h2
        (evaluated at the current and proposed points only); None draws h2 from its
        exact conditional over the whole grid.
    keep_tau : (c,) bool, columns whose total precision stays at ``tau`` (without
        regressors only: the fixed factors, whose loadings fix their scale); the
        random numbers drawn are the same.

    Returns
    -------
    ColumnLMMDraw
    """
    n, c = y.shape
    p_pen = 0 if X_pen is None else X_pen.shape[1]
    p_flat = 0 if X_flat is None else X_flat.shape[1]
    if p_pen + p_flat:
        X = np.hstack([a for a in (X_pen, X_flat) if a is not None])
        if prior_mean is not None:  # b ~ N(m, .): regress y - X_pen m on a zero-mean b - m
            y = matmul(X_pen, prior_mean, alpha=-1.0, beta=1.0, source=y)
        if pen_sampler is not None and prior_mean is not None and coef_old is not None:
            coef_old = np.concatenate([coef_old[:p_pen] - prior_mean, coef_old[p_pen:]])
        coef, tau_new = _sample_regression(re, X, y, h2_index, tau_prior, rng, p_pen,
                                           prior_prec, tau, drop_flat, pen_sampler, coef_old)
        # residuals without the flat part (kept), then without the penalised part; a
        # back-end whose quadratic forms are weighted sums of squares gets them in the
        # same pass
        weights = (None if h2_neighbourhoods is not None
                   else getattr(re, "quadratic_form_weights", None))
        E_flat, E, SS = subtract_products(y, X[:, p_pen:], coef[p_pen:], X[:, :p_pen],
                                          coef[:p_pen], work.buffer(f"E_fixed{key}", (n, c)),
                                          work.buffer(f"E{key}", (n, c)), weights=weights)
        if prior_mean is not None:
            coef[:p_pen] += prior_mean
            E_flat = matmul(X_pen, prior_mean, out=E_flat, beta=1.0)
        ss = None
        if h2_neighbourhoods is None and SS is None:
            SS = re.grid_quadratic_forms(E)
    else:  # no regressors: tau from its Gamma conditional given the current h2
        coef = np.empty((0, c), order="F")
        E = E_flat = y
        if h2_neighbourhoods is None:
            SS = re.grid_quadratic_forms(y)
            ss = SS[np.arange(c), h2_index]
        else:
            ss = re.quadratic_forms_at(y, np.asarray(h2_index, dtype=np.intp))
        tau_new = (rng.standard_gamma(tau_prior.shape + 0.5 * n, size=c)
                   / (tau_prior.rate + 0.5 * ss))
        if keep_tau is not None:
            tau_new = np.where(keep_tau, tau, tau_new)
    if h2_neighbourhoods is None:
        h2_new = sample_grid_index(SS, re.log_det, log_prior_h2, tau_new, rng)
    else:
        h2_new = sample_grid_index_metropolis(re, E, h2_index, tau_new, log_prior_h2,
                                              h2_neighbourhoods, rng, ss_current=ss)
    z = standard_normal(rng, re.n_coef, c, out=work.buffer(f"z_effects{key}", (re.n_coef, c)))
    if residual:  # y - X_flat a - Z u, in place of y - X_flat a (our own buffer, not y)
        effects, resid = re.sample_effects_and_residual(
            E, h2_new, tau_new, z, base=E_flat, out=effects_out,
            resid_out=E_flat if E_flat is not y else work.buffer(f"residual{key}", (n, c)),
        )
    else:
        effects, resid = re.sample_effects(E, h2_new, tau_new, z, out=effects_out), None
    return ColumnLMMDraw(coef, tau_new, h2_new, effects, resid)


def _sample_regression(
    re: RandomEffectsBackend, X: np.ndarray, y: np.ndarray, h2_index: np.ndarray,
    tau_prior: VariancePrior, rng: np.random.Generator, p_pen: int,
    prior_prec: np.ndarray | None, tau: np.ndarray | None, drop_flat: np.ndarray | None,
    pen_sampler: Callable[[LoadingsRegression], tuple[np.ndarray, np.ndarray] | None]
    | None = None,
    coef_old: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: ``[b, a]`` and ``tau`` per column, jointly, given ``h2`` (``u`` integrated out).

    With ``pen_sampler`` (a loadings prior's own draw), the sufficient statistics go
    to it; when it returns None, or without it, the Gaussian step below runs.
    """
    n, c = y.shape
    p = X.shape[1]
    stats = re.gram_stats(X, y, np.ascontiguousarray(h2_index))
    if pen_sampler is not None:
        if coef_old is None or tau is None:
            raise ValueError("a loadings prior's own draw needs the current coefficients and tau")
        drawn = pen_sampler(LoadingsRegression(
            gram=stats.gram, gram_index=stats.gram_index, XtWy=stats.XtWy, yWy=stats.yWy,
            n_pen=p_pen, n_rows=n, coef=coef_old, tau=np.asarray(tau, dtype=float),
            tau_shape=tau_prior.shape, tau_rate=tau_prior.rate,
            drop_flat=None if drop_flat is None else np.ascontiguousarray(drop_flat,
                                                                          dtype=np.uint8),
        ))
        if drawn is not None:
            return np.asfortranarray(drawn[0]), np.ascontiguousarray(drawn[1])
    coef = np.empty((p, c), order="F")
    tau_new = np.empty(c)
    z = standard_normal(rng, p, c)
    gamma = rng.standard_gamma(tau_prior.shape + 0.5 * n, size=c)
    prec = np.zeros((0, c), order="F") if prior_prec is None else np.asfortranarray(prior_prec)
    tau_old = np.ones(c) if tau is None else np.ascontiguousarray(tau)
    n_bad = kernels_module().sample_coefficients(
        stats.gram, stats.gram_index, stats.XtWy, stats.yWy, prec, tau_old,
        np.full(c, tau_prior.rate), gamma, z, coef, tau_new,
        None if drop_flat is None else np.ascontiguousarray(drop_flat, dtype=np.uint8),
    )
    if n_bad:
        raise SamplerError(
            f"the regression of {n_bad} column(s) was not positive definite; the "
            "fixed-effect design may be collinear"
        )
    return coef, tau_new
