"""Slow, obvious NumPy/SciPy reference implementations of the sampler kernels.

Each function restates one kernel of :mod:`pymegalmm._kernels` (or one NumPy-level
sampler piece of :mod:`pymegalmm.sampler`) directly from the mathematics
(``/work/shared/METHOD.md`` section 3), looping over traits in plain Python and
using dense linear algebra (full posterior precision matrices, Cholesky
factorisations, triangular solves, Schur complements, conjugate-normal formulas).
They are deliberately *not* transliterations of the Cython code: the tests check
that both agree on the same pre-drawn random numbers.

The only convention shared with the kernels is how a standard-normal vector ``z``
is turned into a ``N(0, A^-1)`` draw: ``solve_triangular(chol_upper(A), z)``,
i.e. ``U^-1 z`` with ``U' U = A`` (covariance ``U^-1 U^-T = A^-1``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.special import gammainc, gammaincinv, softmax

from pymegalmm.linalg import standard_gamma

__all__ = [
    "chol_upper",
    "normal_from_precision",
    "ref_weighted_cross_products",
    "ref_sample_coefficients",
    "ref_schur_complement",
    "ref_sample_grid_index",
    "ref_grid_probabilities",
    "ref_sample_diagonal_effects",
    "ref_lowrank_log_likelihood_terms",
    "ref_grid_sums_of_squares_lowrank",
    "ref_sample_lowrank_effects",
    "ref_sample_ard_delta",
    "ref_sample_factor_scores",
    "ref_sample_ard",
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def chol_upper(A: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor ``U`` with ``U' U = A``.

    Parameters
    ----------
    A : numpy.ndarray
        Symmetric positive definite ``(m, m)`` matrix.

    Returns
    -------
    numpy.ndarray
        Upper-triangular ``(m, m)`` matrix.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``A`` is not positive definite.
    """
    return np.linalg.cholesky(A).T


def normal_from_precision(A: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Map standard normals ``z`` to a ``N(0, A^-1)`` draw: ``chol_upper(A)^-1 z``.

    Parameters
    ----------
    A : numpy.ndarray
        ``(m, m)`` precision matrix.
    z : numpy.ndarray
        ``(m,)`` standard normal draws.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` draw with covariance ``A^-1``.
    """
    if A.shape[0] == 0:
        return np.zeros(0)
    return sla.solve_triangular(chol_upper(A), z, lower=False)


# ---------------------------------------------------------------------------
# weighted_cross_products
# ---------------------------------------------------------------------------


def ref_weighted_cross_products(
    X: np.ndarray, Y: np.ndarray, W: np.ndarray, grid_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sufficient statistics ``X' diag(w_g) y_j`` and ``y_j' diag(w_g) y_j``.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, p)`` design shared by all traits.
    Y : numpy.ndarray
        ``(n, t)`` data.
    W : numpy.ndarray
        ``(G, n)`` weights per grid point.
    grid_index : numpy.ndarray
        ``(t,)`` grid point of each trait.

    Returns
    -------
    XtWy : numpy.ndarray
        ``(p, t)``.
    yWy : numpy.ndarray
        ``(t,)``.
    """
    n, p = X.shape
    t = Y.shape[1]
    XtWy = np.zeros((p, t))
    yWy = np.zeros(t)
    for j in range(t):
        Wg = np.diag(W[grid_index[j]])
        y = Y[:, j]
        XtWy[:, j] = X.T @ Wg @ y
        yWy[j] = y @ Wg @ y
    return XtWy, yWy


# ---------------------------------------------------------------------------
# sample_coefficients
# ---------------------------------------------------------------------------


def ref_schur_complement(P: np.ndarray, p_pen: int) -> np.ndarray:
    """Schur complement ``S = P_aa - P_ab P_bb^-1 P_ba`` of the penalised block.

    The penalised block ``b`` is the first ``p_pen`` rows/columns of ``P`` and the
    flat block ``a`` the rest.  ``S`` is the precision (relative to tau) of the flat
    coefficients once the penalised ones are integrated out.

    Parameters
    ----------
    P : numpy.ndarray
        ``(p, p)`` posterior precision matrix.
    p_pen : int
        Number of penalised (leading) columns.

    Returns
    -------
    numpy.ndarray
        ``(p - p_pen, p - p_pen)`` Schur complement.
    """
    b, a = slice(0, p_pen), slice(p_pen, P.shape[0])
    if p_pen == 0:
        return P[a, a].copy()
    return P[a, a] - P[a, b] @ np.linalg.solve(P[b, b], P[b, a])


def ref_sample_coefficients(
    gram: np.ndarray,
    gram_index: np.ndarray,
    XtWy: np.ndarray,
    yWy: np.ndarray,
    prior_prec: np.ndarray,
    tau_old: np.ndarray,
    tau_rate: np.ndarray,
    gamma_draw: np.ndarray,
    z: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Partially collapsed Gibbs draw of ``[beta; alpha]`` and ``tau`` per trait.

    Per trait ``j`` (whitened model ``y = X_b beta + X_a alpha + e``, ``e ~ N(0, I/tau)``,
    ``beta ~ N(0, (tau D)^-1)``, ``alpha`` flat), with ``c = X'Wy`` and
    ``P = X'WX + diag(D, 0)`` (penalised block ``b`` first):

    (1a) ``alpha ~ N(S^-1 c_a*, (tau_old S)^-1)`` with ``S`` the Schur complement
    ``P_aa - P_ab P_bb^-1 P_ba`` and ``c_a* = c_a - P_ab P_bb^-1 c_b``; the noise is
    ``chol_upper(S)^-1 z_a / sqrt(tau_old)``.

    (1b) ``tau = gamma_draw / (tau_rate + SS/2)`` with, for ``r = y - X_a alpha``,
    ``SS = r'Wr - (X_b'Wr)' P_bb^-1 (X_b'Wr)`` (Woodbury form of ``r' Sigma^-1 r``),
    where ``r'Wr = y'Wy - 2 alpha'c_a + alpha' G_aa alpha`` and
    ``X_b'Wr = c_b - G_ba alpha``.  Negative rounding noise is clipped at 0.

    (1c) ``beta ~ N(P_bb^-1 (c_b - P_ba alpha), (tau P_bb)^-1)``; the noise is
    ``chol_upper(P_bb)^-1 z_b / sqrt(tau)``.

    A trait whose ``P`` is not positive definite gets zero coefficients and keeps
    ``tau_old``; it is counted in the returned ``n_bad``.

    Parameters
    ----------
    gram : numpy.ndarray
        ``(G', p, p)`` Gram matrices ``X' W X``.
    gram_index : numpy.ndarray
        ``(t,)`` Gram matrix of each trait.
    XtWy : numpy.ndarray
        ``(p, t)``.
    yWy : numpy.ndarray
        ``(t,)``.
    prior_prec : numpy.ndarray
        ``(p_pen, t)`` prior precisions of the penalised coefficients (relative to tau).
    tau_old, tau_rate, gamma_draw : numpy.ndarray
        ``(t,)`` each.
    z : numpy.ndarray
        ``(p, t)`` standard normal draws.

    Returns
    -------
    coef : numpy.ndarray
        ``(p, t)`` ``[beta; alpha]``.
    tau : numpy.ndarray
        ``(t,)`` new total precisions.
    n_bad : int
        Number of traits whose ``P`` was not positive definite.
    """
    p = gram.shape[1]
    t = XtWy.shape[1]
    p_pen = prior_prec.shape[0]
    b, a = slice(0, p_pen), slice(p_pen, p)
    coef = np.zeros((p, t))
    tau = np.zeros(t)
    n_bad = 0
    for j in range(t):
        G = gram[gram_index[j]]
        P = G + np.diag(np.concatenate([prior_prec[:, j], np.zeros(p - p_pen)]))
        try:
            np.linalg.cholesky(P)
        except np.linalg.LinAlgError:
            n_bad += 1
            tau[j] = tau_old[j]
            continue
        c = XtWy[:, j]
        # (1a) flat coefficients, beta integrated out
        S = ref_schur_complement(P, p_pen)
        if p_pen > 0:
            c_star = c[a] - P[a, b] @ np.linalg.solve(P[b, b], c[b])
        else:
            c_star = c[a]
        if p - p_pen > 0:
            alpha_mean = np.linalg.solve(S, c_star)
            alpha = alpha_mean + normal_from_precision(S, z[a, j]) / np.sqrt(tau_old[j])
        else:
            alpha = np.zeros(0)
        # (1b) tau given alpha, beta integrated out
        rWr = yWy[j] - 2.0 * alpha @ c[a] + alpha @ G[a, a] @ alpha
        xr = c[b] - G[b, a] @ alpha
        SS = rWr - (xr @ np.linalg.solve(P[b, b], xr) if p_pen > 0 else 0.0)
        SS = max(SS, 0.0)
        tau[j] = gamma_draw[j] / (tau_rate[j] + 0.5 * SS)
        # (1c) penalised coefficients given alpha and tau
        if p_pen > 0:
            beta_mean = np.linalg.solve(P[b, b], xr)
            beta = beta_mean + normal_from_precision(P[b, b], z[b, j]) / np.sqrt(tau[j])
        else:
            beta = np.zeros(0)
        coef[b, j] = beta
        coef[a, j] = alpha
    return coef, tau, n_bad


# ---------------------------------------------------------------------------
# sample_grid_index
# ---------------------------------------------------------------------------


def ref_grid_probabilities(
    SS: np.ndarray, log_det: np.ndarray, log_prior: np.ndarray, tau: np.ndarray
) -> np.ndarray:
    """Normalised posterior probabilities of each grid point, per column.

    ``log p(g | .) = -log|V_g|/2 - tau_j SS[j, g]/2 + log prior_g`` (+ const).

    Parameters
    ----------
    SS : numpy.ndarray
        ``(t, G)`` quadratic forms.
    log_det : numpy.ndarray
        ``(G,)`` log determinants.
    log_prior : numpy.ndarray
        ``(G,)`` log prior weights (``-inf`` allowed).
    tau : numpy.ndarray
        ``(t,)`` total precisions.

    Returns
    -------
    numpy.ndarray
        ``(t, G)`` probabilities, each row summing to one.
    """
    t, G = SS.shape
    prob = np.zeros((t, G))
    for j in range(t):
        logp = -0.5 * log_det - 0.5 * tau[j] * SS[j] + log_prior
        prob[j] = softmax(logp)
    return prob


def ref_sample_grid_index(
    SS: np.ndarray,
    log_det: np.ndarray,
    log_prior: np.ndarray,
    tau: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    """Grid index per column by inverse CDF: ``#{g : cdf_g < u}``, clamped to ``G - 1``.

    Parameters
    ----------
    SS, log_det, log_prior, tau : numpy.ndarray
        As in :func:`ref_grid_probabilities`.
    u : numpy.ndarray
        ``(t,)`` uniform draws.

    Returns
    -------
    numpy.ndarray
        ``(t,)`` intp grid indices.
    """
    prob = ref_grid_probabilities(SS, log_det, log_prior, tau)
    G = SS.shape[1]
    out = np.zeros(SS.shape[0], dtype=np.intp)
    for j in range(SS.shape[0]):
        # divide by the last partial sum so that the CDF ends at exactly 1.0 (and
        # trailing zero-probability points can never be selected by rounding)
        cum = np.cumsum(prob[j])
        cdf = cum / cum[-1]
        out[j] = min(int(np.sum(cdf < u[j])), G - 1)
    return out


# ---------------------------------------------------------------------------
# sample_diagonal_effects
# ---------------------------------------------------------------------------


def ref_sample_diagonal_effects(
    E: np.ndarray, d: np.ndarray, h: np.ndarray, tau: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Random-effect coefficients in the diagonalised basis, by conjugate normal updates.

    Component ``i`` of trait ``j`` has prior ``v_i ~ N(0, h/tau)`` (precision
    ``tau/h``).  When ``d_i > 0`` (and row ``i`` exists) it is observed as
    ``E_i = sqrt(d_i) v_i + N(0, (1-h)/tau)``, which adds data precision
    ``d_i tau/(1-h)``; the posterior precision is the sum, and the posterior mean
    is ``(sqrt(d_i) tau/(1-h) E_i) / precision``.  Otherwise the prior is used.
    ``h = 0`` gives ``v = 0``.  Draw: ``mean + z / sqrt(precision)``.

    Parameters
    ----------
    E : numpy.ndarray
        ``(n, t)`` rotated residuals.
    d : numpy.ndarray
        ``(r,)`` eigenvalues, positive first then zeros.
    h : numpy.ndarray
        ``(t,)`` variance proportions in ``[0, 1)``.
    tau : numpy.ndarray
        ``(t,)`` total precisions.
    z : numpy.ndarray
        ``(r, t)`` standard normal draws.

    Returns
    -------
    numpy.ndarray
        ``(r, t)`` coefficients.
    """
    n, t = E.shape
    r = d.shape[0]
    v = np.zeros((r, t))
    for j in range(t):
        if h[j] <= 0.0:
            continue
        prior_prec = tau[j] / h[j]
        noise_prec = tau[j] / (1.0 - h[j])
        for i in range(r):
            if i < n and d[i] > 0.0:
                post_prec = prior_prec + d[i] * noise_prec
                mean = np.sqrt(d[i]) * noise_prec * E[i, j] / post_prec
            else:
                post_prec = prior_prec
                mean = 0.0
            v[i, j] = mean + z[i, j] / np.sqrt(post_prec)
    return v


# ---------------------------------------------------------------------------
# LowRankRandomEffects: quadratic forms, log-determinants and effect draws
# ---------------------------------------------------------------------------


def ref_lowrank_log_likelihood_terms(
    E: np.ndarray, d_rows: np.ndarray, C: np.ndarray, h1: np.ndarray, h_cols: np.ndarray,
    e: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``E_j' V_g^-1 E_j`` and ``log |V_g|`` from the dense covariance of every grid point.

    In the rotated rows ``V_g = diag(h1_g d + e_g) + C diag(h_cols[g]) C'`` (the
    diagonalised effect, the residual and the other effects), built in full and
    solved with a dense solver; no Woodbury identity.

    Parameters
    ----------
    E : numpy.ndarray
        ``(n, c)`` rotated residuals.
    d_rows : numpy.ndarray
        ``(n,)`` eigenvalues of the diagonalised effect per rotated row.
    C : numpy.ndarray
        ``(n, r_o)`` rotated, whitened designs of the other effects.
    h1 : numpy.ndarray
        ``(G,)`` proportion of the diagonalised effect per grid point.
    h_cols : numpy.ndarray
        ``(G, r_o)`` proportion of the effect of each column of ``C`` per grid point.
    e : numpy.ndarray
        ``(G,)`` residual proportion per grid point.

    Returns
    -------
    SS : numpy.ndarray
        ``(c, G)`` quadratic forms.
    log_det : numpy.ndarray
        ``(G,)`` log-determinants.
    """
    G = h1.shape[0]
    SS = np.zeros((E.shape[1], G))
    log_det = np.zeros(G)
    for g in range(G):
        V = np.diag(h1[g] * d_rows + e[g]) + C @ np.diag(h_cols[g]) @ C.T
        sign, log_det[g] = np.linalg.slogdet(V)
        assert sign > 0
        for j in range(E.shape[1]):
            SS[j, g] = E[:, j] @ np.linalg.solve(V, E[:, j])
    return SS, log_det


def ref_grid_sums_of_squares_lowrank(
    E: np.ndarray, W_T: np.ndarray, U: np.ndarray, C_rest: np.ndarray, B: np.ndarray,
    s_index: np.ndarray,
) -> np.ndarray:
    """``E_j' (diag(W_T[:, g]) - H_g H_g') E_j`` for every column and grid point.

    ``H_g = P_s B_g'`` with ``s = s_index[g]`` and ``P_s`` the ``(n, rank)`` stack of
    the columns ``s * rank`` to ``(s + 1) * rank`` of ``U`` over ``C_rest``.

    Parameters
    ----------
    E : numpy.ndarray
        ``(n, c)`` residuals.
    W_T : numpy.ndarray
        ``(n, G)`` diagonal weights.
    U : numpy.ndarray
        ``(n_pos, S * rank)``.
    C_rest : numpy.ndarray
        ``(n - n_pos, rank)``.
    B : numpy.ndarray
        ``(rank, rank, G)``.
    s_index : numpy.ndarray
        ``(G,)`` in ``[0, S)``.

    Returns
    -------
    numpy.ndarray
        ``(c, G)``.
    """
    n, G = W_T.shape
    rank = C_rest.shape[1]
    out = np.zeros((E.shape[1], G))
    for g in range(G):
        s = s_index[g]
        P = np.vstack([U[:, s * rank:(s + 1) * rank], C_rest])
        H = P @ B[:, :, g].T
        Vinv = np.diag(W_T[:, g]) - H @ H.T
        for j in range(E.shape[1]):
            out[j, g] = E[:, j] @ Vinv @ E[:, j]
    return out


def ref_sample_lowrank_effects(
    E: np.ndarray, d_coef: np.ndarray, C: np.ndarray, h1: np.ndarray, h_cols: np.ndarray,
    e: np.ndarray, tau: np.ndarray, z: np.ndarray,
) -> np.ndarray:
    """All random-effect coefficients of each column from their joint conjugate posterior.

    Column ``j`` has rotated residual ``E_j = A v + N(0, e_j / tau_j I)`` with
    ``A = [D, C]`` (``D[i, i] = sqrt(d_i)`` for the diagonalised effect's ``r_1``
    coefficients, rows ``i < n`` with ``d_i > 0``) and prior ``v ~ N(0, diag(h) /
    tau_j)`` (``h1_j`` for the first ``r_1``, ``h_cols[j]`` for the others).
    Coefficients with ``h = 0`` are 0; the others have posterior precision
    ``P = tau_j (A'A / e_j + diag(1 / h))`` and mean ``P^-1 tau_j A' E_j / e_j``; the
    draw is ``mean + chol_upper(P)^-1 z`` over them, in the order ``(v_1, v_o)``.

    Parameters
    ----------
    E : numpy.ndarray
        ``(n, c)`` rotated residuals.
    d_coef : numpy.ndarray
        ``(r_1,)`` eigenvalues of the diagonalised effect (positive first).
    C : numpy.ndarray
        ``(n, r_o)`` rotated, whitened designs of the other effects.
    h1 : numpy.ndarray
        ``(c,)`` proportion of the diagonalised effect per column.
    h_cols : numpy.ndarray
        ``(c, r_o)`` proportion of the effect of each column of ``C``, per column of ``E``.
    e : numpy.ndarray
        ``(c,)`` residual proportion per column.
    tau : numpy.ndarray
        ``(c,)`` total precisions.
    z : numpy.ndarray
        ``(r_1 + r_o, c)`` standard normal draws.

    Returns
    -------
    numpy.ndarray
        ``(r_1 + r_o, c)`` coefficients.
    """
    n, c = E.shape
    r1 = d_coef.shape[0]
    D = np.zeros((n, r1))
    for i in range(min(n, r1)):
        if d_coef[i] > 0:
            D[i, i] = np.sqrt(d_coef[i])
    A = np.hstack([D, C])
    v = np.zeros((A.shape[1], c))
    for j in range(c):
        h = np.concatenate([np.full(r1, h1[j]), h_cols[j]])
        act = h > 0
        if not act.any():
            continue
        Aa = A[:, act]
        P = tau[j] * (Aa.T @ Aa / e[j] + np.diag(1.0 / h[act]))
        mean = np.linalg.solve(P, tau[j] * Aa.T @ E[:, j] / e[j])
        v[act, j] = mean + normal_from_precision(P, z[act, j])
    return v


# ---------------------------------------------------------------------------
# sample_ard_delta
# ---------------------------------------------------------------------------


def ref_sample_ard_delta(
    delta: np.ndarray,
    s: np.ndarray,
    n_traits: float,
    a1: float,
    b1: float,
    a2: float,
    b2: float,
    sweeps: int,
    bit_generator: np.random.BitGenerator,
    trunc_point: float = 1.0,
) -> np.ndarray:
    """Multiplicative-gamma-process sweeps of ``delta`` (returns a copy).

    For each of ``sweeps`` sweeps and ``h = 0..k-1`` (0-based) in order, with
    ``tauh = cumprod(delta)`` recomputed from the current values:
    ``rate_h = b + sum_{l >= h} (tauh_l / delta_h) s_l``;
    ``delta_0 ~ Gamma(a1 + n_traits k/2, rate b1 + ...)``;
    ``delta_h`` (``h >= 1``) from ``Gamma(shape_h = a2 + n_traits (k-h)/2, rate b2 + ...)``
    left-truncated at ``trunc_point``, with ``p0 = F(trunc_point)``:
    ``trunc_point`` if ``p0 > 0.999``; else, if ``p0 <= 1/2``, untruncated draws repeated
    until one is ``>= trunc_point``; else ``F^-1(p0 + (1 - p0) u)``.  ``p0`` is compared
    through the quantiles ``F^-1(0.999)`` and ``F^-1(1/2)`` of ``Gamma(shape_h, 1)``.
    The random numbers come one by one from ``Generator(bit_generator)``.

    Parameters
    ----------
    delta : numpy.ndarray
        ``(k,)`` starting values (not modified).
    s : numpy.ndarray
        ``(k,)`` sufficient statistics ``0.5 sum_j tau_j phi_kj lambda_kj^2``.
    n_traits : float
        Number of traits.
    a1, b1, a2, b2 : float
        Shapes and rates of ``delta_1`` and ``delta_h``.
    sweeps : int
        Number of sweeps.
    bit_generator : numpy.random.BitGenerator
        Source of the random numbers.
    trunc_point : float
        Lower truncation point of ``delta_h``, ``h >= 1``.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` updated ``delta``.
    """
    gen = np.random.Generator(bit_generator)
    delta = np.array(delta, dtype=float, copy=True)
    k = delta.shape[0]
    shapes = a2 + 0.5 * n_traits * (k - np.arange(k))
    for _ in range(sweeps):
        for h in range(k):
            tauh = np.cumprod(delta)
            rate = np.sum(tauh[h:] / delta[h] * s[h:])
            if h == 0:
                delta[h] = gen.standard_gamma(a1 + 0.5 * n_traits * k) / (b1 + rate)
                continue
            shape, rate = shapes[h], b2 + rate
            point = rate * trunc_point
            if point > gammaincinv(shape, 0.999):  # p0 > 0.999
                delta[h] = trunc_point
            elif point <= gammaincinv(shape, 0.5):  # p0 <= 1/2: rejection
                x = gen.standard_gamma(shape)
                while x < point:
                    x = gen.standard_gamma(shape)
                delta[h] = x / rate
            else:
                p0 = gammainc(shape, point)
                delta[h] = gammaincinv(shape, p0 + (1.0 - p0) * gen.random()) / rate
    return delta


# ---------------------------------------------------------------------------
# sampler.sample_factor_scores and sampler.sample_ard
# ---------------------------------------------------------------------------


def ref_sample_factor_scores(
    E: np.ndarray,
    Lambda: np.ndarray,
    resid_prec: np.ndarray,
    prior_mean: np.ndarray,
    factor_prec: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Factor scores row by row from the explicit ``k x k`` posterior.

    Row ``i``: likelihood ``E_i ~ N(f_i Lambda, diag(1/resid_prec))``, prior
    ``f_i ~ N(m_i, diag(1/factor_prec))``; posterior precision
    ``Sigma = sum_j resid_prec_j lambda_j lambda_j' + diag(factor_prec)`` and mean
    ``Sigma^-1 (sum_j resid_prec_j lambda_j E_ij + factor_prec * m_i)``; noise
    ``chol_upper(Sigma)^-1 z_i``.

    Parameters
    ----------
    E : numpy.ndarray
        ``(n, t)`` residuals.
    Lambda : numpy.ndarray
        ``(k, t)`` loadings.
    resid_prec : numpy.ndarray
        ``(t,)`` residual precisions.
    prior_mean : numpy.ndarray
        ``(n, k)`` prior means.
    factor_prec : numpy.ndarray
        ``(k,)`` factor residual precisions.
    z : numpy.ndarray
        ``(n, k)`` standard normals.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` factor scores.
    """
    n, t = E.shape
    k = Lambda.shape[0]
    F = np.zeros((n, k))
    for i in range(n):
        Sigma = np.diag(factor_prec).astype(float)
        rhs = factor_prec * prior_mean[i]
        for j in range(t):
            lam = Lambda[:, j]
            Sigma = Sigma + resid_prec[j] * np.outer(lam, lam)
            rhs = rhs + resid_prec[j] * lam * E[i, j]
        F[i] = np.linalg.solve(Sigma, rhs) + normal_from_precision(Sigma, z[i])
    return F


def ref_sample_ard(
    Lambda: np.ndarray,
    tau: np.ndarray,
    delta: np.ndarray,
    nu: float,
    a1: float,
    b1: float,
    a2: float,
    b2: float,
    n_sweeps: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """ARD update: local ``phi`` then ``n_sweeps`` sweeps of ``delta``.

    ``phi_kj ~ Gamma((nu+1)/2, rate (nu + tauh_k tau_j lambda_kj^2)/2)`` with
    ``tauh = cumprod(delta)`` (previous ``delta``), drawn as standard gammas
    ``pymegalmm.linalg.standard_gamma(rng, ., k, t)`` divided by the rate; then
    ``s_k = 0.5 sum_j tau_j phi_kj lambda_kj^2`` and the sweeps of
    :func:`ref_sample_ard_delta` drawing from ``rng``'s bit generator.

    Parameters
    ----------
    Lambda : numpy.ndarray
        ``(k, t)`` loadings.
    tau : numpy.ndarray
        ``(t,)`` total precisions.
    delta : numpy.ndarray
        ``(k,)`` previous global increments.
    nu : float
        ``Lambda_df``.
    a1, b1, a2, b2 : float
        Gamma priors of ``delta``.
    n_sweeps : int
        ``delta_iterations_factor``.
    rng : numpy.random.Generator
        Generator, consumed in the sampler's order.

    Returns
    -------
    phi : numpy.ndarray
        ``(k, t)``.
    delta : numpy.ndarray
        ``(k,)``.
    """
    k, t = Lambda.shape
    gamma = standard_gamma(rng, 0.5 * (nu + 1.0), k, t)
    tauh = np.cumprod(delta)
    phi = np.zeros((k, t))
    for kk in range(k):
        for j in range(t):
            rate = 0.5 * (nu + tauh[kk] * tau[j] * Lambda[kk, j] ** 2)
            phi[kk, j] = gamma[kk, j] / rate
    s = np.array([
        0.5 * sum(tau[j] * phi[kk, j] * Lambda[kk, j] ** 2 for j in range(t)) for kk in range(k)
    ])
    new_delta = ref_sample_ard_delta(delta, s, float(t), a1, b1, a2, b2, n_sweeps,
                                     rng.bit_generator)
    return phi, new_delta
