# cython: language_level=3
"""Step 1: weighted sufficient statistics and the collapsed coefficient draw per trait."""

import numpy as np

from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from scipy.linalg.cython_blas cimport dgemm

from ._dense cimport LANES, chol_upper_lanes, solve_upper_lanes, solve_upper_t_lanes


# ---------------------------------------------------------------------------
# Step 1: weighted sufficient statistics for the diagonal (one random effect) case
# ---------------------------------------------------------------------------

def weighted_grams(
    const double[:, ::1] X,
    const double[:, ::1] W,
    const Py_ssize_t[::1] used,
    double[:, :, ::1] gram,
):
    """``gram[u] = X' diag(W[used[u]]) X`` for the grid points in use, exactly symmetric.

    One thread per grid point: it weights the rows of ``X`` into a thread-local
    buffer, makes one serial ``dgemm`` call and mirrors the upper triangle onto the
    lower, so every Gram matrix is symmetric to the last bit.  Bit-identical for
    any thread count (call it with the BLAS library limited to one thread, as the
    sampler does).

    Parameters
    ----------
    X : (n, p) C-ordered design (rotated).
    W : (G, n) whitening weights per grid point.
    used : (u,) grid points, each in ``[0, G)``.
    gram : (u, p, p) C-ordered output.
    """
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], U = used.shape[0], G = W.shape[0]
    cdef Py_ssize_t i, l, a, b, u, g
    cdef int i_n = <int>n, i_p = <int>p
    cdef double one = 1.0, zero = 0.0
    cdef double *Xw
    if W.shape[1] != n or gram.shape[0] != U or gram.shape[1] != p or gram.shape[2] != p:
        raise ValueError("weighted_grams: inconsistent shapes")
    for u in range(U):
        if not 0 <= used[u] < G:
            raise ValueError("weighted_grams: grid point out of range")
    if U == 0 or p == 0:
        return
    if n == 0:
        for u in range(U):
            for a in range(p):
                for b in range(p):
                    gram[u, a, b] = 0.0
        return
    with nogil, parallel():
        Xw = <double *> malloc(n * p * sizeof(double))  # thread-local weighted rows
        for u in prange(U, schedule="static"):
            if Xw == NULL:
                with gil:
                    raise MemoryError("weighted_grams: no memory for the weighted rows")
            g = used[u]
            for i in range(n):
                for l in range(p):
                    Xw[l + i * p] = W[g, i] * X[i, l]
            # (p x n, column-major: X's C-ordered rows) times X' -> p x p
            dgemm("N", "T", &i_p, &i_p, &i_n, &one, Xw, &i_p, <double *>&X[0, 0], &i_p,
                  &zero, &gram[u, 0, 0], &i_p)
            for a in range(p):
                for b in range(a + 1, p):
                    gram[u, b, a] = gram[u, a, b]
        free(Xw)


#: Columns per tile of :func:`weighted_cross_products` (one ``dgemm`` call each).
CROSS_BLOCK = 256


def weighted_cross_products(
    const double[:, ::1] X,
    const double[::1, :] Y,
    const double[:, ::1] W,
    const Py_ssize_t[::1] grid_index,
    double[::1, :] XtWy,
    double[::1] yWy,
    Py_ssize_t block=CROSS_BLOCK,
):
    """Per trait j with grid point g = grid_index[j]: ``X' diag(W[g]) y_j`` and ``y_j' diag(W[g]) y_j``.

    The columns are processed in fixed tiles of ``block`` columns, one thread per
    tile: the thread forms the weighted tile ``Y_w[:, j] = W[g_j] o y_j`` in a
    thread-local buffer (accumulating ``yWy`` on the way, row by row), then
    ``X' Y_w`` in one serial ``dgemm`` call.  The tiling does not depend on the
    number of threads, so the result is bit-identical for any thread count (call
    it with the BLAS library limited to one thread, as the sampler does).

    Parameters
    ----------
    X : (n, p) C-ordered design (rotated), shared by all traits.
    Y : (n, t) Fortran-ordered data (rotated).
    W : (G, n) whitening weights ``1 / (h_g d_i + 1 - h_g)`` per grid point.
    grid_index : (t,) grid point of each trait.
    XtWy : (p, t) Fortran-ordered output.
    yWy : (t,) output.
    block : columns of ``Y`` per tile.
    """
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], t = Y.shape[1]
    cdef Py_ssize_t i, j, jj, l, g, tile, n_tiles, j0
    cdef int width, i_n = <int>n, i_p = <int>p
    cdef double wy, acc, one = 1.0, zero = 0.0
    cdef double *Yw
    if Y.shape[0] != n or XtWy.shape[0] != p or XtWy.shape[1] != t or yWy.shape[0] != t:
        raise ValueError("weighted_cross_products: inconsistent shapes")
    if grid_index.shape[0] != t:
        raise ValueError("weighted_cross_products: grid_index needs one entry per column")
    for j in range(t):
        if not 0 <= grid_index[j] < W.shape[0]:
            raise ValueError("weighted_cross_products: grid point out of range")
    if W.shape[1] != n:
        raise ValueError("weighted_cross_products: W needs one weight per row")
    if block < 1:
        raise ValueError("weighted_cross_products: block must be >= 1")
    if t == 0:
        return
    if n == 0:
        for j in range(t):
            yWy[j] = 0.0
            for l in range(p):
                XtWy[l, j] = 0.0
        return
    block = min(block, t)  # one tile at most t wide (the same tiles; a bounded buffer)
    n_tiles = (t + block - 1) // block
    with nogil, parallel():
        Yw = <double *> malloc(n * block * sizeof(double))  # thread-local weighted tile
        for tile in prange(n_tiles, schedule="static"):
            if Yw == NULL:
                with gil:
                    raise MemoryError("weighted_cross_products: no memory for a tile")
            j0 = tile * block
            width = <int>min(block, t - j0)
            for jj in range(width):
                j = j0 + jj
                g = grid_index[j]
                acc = 0.0
                for i in range(n):
                    wy = W[g, i] * Y[i, j]
                    acc = acc + wy * Y[i, j]
                    Yw[i + jj * n] = wy
                yWy[j] = acc
            if p > 0:  # XtWy[:, j0:j0+width] = X' Y_w (X is p x n column-major)
                dgemm("N", "N", &i_p, &width, &i_n, &one, <double *>&X[0, 0], &i_p,
                      Yw, &i_n, &zero, &XtWy[0, j0], &i_p)
        free(Yw)


# ---------------------------------------------------------------------------
# Step 1: collapsed draw of (flat coefficients, tot_prec, penalised coefficients)
# ---------------------------------------------------------------------------

def sample_coefficients(
    const double[:, :, ::1] gram,
    const Py_ssize_t[::1] gram_index,
    const double[::1, :] XtWy,
    const double[::1] yWy,
    const double[::1, :] prior_prec,
    const double[::1] tau_old,
    const double[::1] tau_rate,
    const double[::1] gamma_draw,
    const double[::1, :] z,
    double[::1, :] coef,
    double[::1] tau,
    const unsigned char[:, ::1] drop_flat=None,
):
    """Partially collapsed Gibbs draw of ``[beta, alpha]`` and ``tau`` per trait.

    Model per trait (whitened): ``y = X_pen beta + X_flat alpha + e``,
    ``e ~ N(0, I / tau)``, ``beta ~ N(0, (tau D)^-1)``, ``alpha`` flat,
    ``tau ~ Gamma(shape, rate)``.  With ``P = X'X + diag(D, 0)`` (penalised
    columns first) and its upper Cholesky factor ``U``:

    1. ``alpha ~ N(mean, (tau_old S)^-1)`` with ``beta`` integrated out
       (``S`` = Schur complement of the penalised block, ``U_aa' U_aa``);
    2. ``tau | alpha ~ Gamma(shape, rate + SS/2)``, ``SS = r' Sigma^-1 r``,
       ``r = y - X_flat alpha`` with ``beta`` integrated out;
    3. ``beta | alpha, tau ~ N(P_bb^-1 X_pen' r, (tau P_bb)^-1)``.

    Parameters
    ----------
    gram : (G', p, p) Gram matrices ``X' W_g X``, one per group of traits.
    gram_index : (t,) which Gram matrix each trait uses.
    XtWy, yWy : sufficient statistics per trait, (p, t) and (t,).
    prior_prec : (p_pen, t) prior precisions of the penalised coefficients,
        relative to tau (the flat coefficients are the last ``p - p_pen``).
    tau_old : (t,) current tau, used for the alpha draw.
    tau_rate : (t,) prior rate of tau.
    gamma_draw : (t,) standard Gamma(shape + n/2) draws; ``tau = gamma_draw / rate``.
    z : (p, t) standard normal draws.
    coef : (p, t) output ``[beta; alpha]``; tau : (t,) output.
    drop_flat : (t, p - p_pen) uint8 or None
        Non-zero where a flat coefficient is not identifiable for that trait: it is
        removed from the model (decoupled in ``P``) and its coefficient set to 0.

    Returns
    -------
    int
        Number of traits whose precision matrix was not positive definite (0 when all fine).
    """
    cdef Py_ssize_t p = gram.shape[1], t = XtWy.shape[1], p_pen = prior_prec.shape[0]
    cdef Py_ssize_t j, l, m, g, batch, q, n_batches = (t + LANES - 1) // LANES
    cdef int n_flat = <int>(p - p_pen), ip = <int>max(p, 1), ipen = <int>p_pen
    cdef int n_bad = 0
    cdef double *P
    cdef double *w
    cdef double *alpha
    cdef double *xr
    cdef Py_ssize_t *cols
    cdef int *failed
    cdef double *tau_new
    cdef double ss, rwr, sd, q2
    cdef bint has_drop = drop_flat is not None
    cdef const unsigned char[:, ::1] drops
    if has_drop:
        if drop_flat.shape[0] != t or drop_flat.shape[1] != p - p_pen:
            raise ValueError("sample_coefficients: drop_flat must be (t, number of flat columns)")
        drops = drop_flat
    else:
        drops = np.zeros((1, 1), dtype=np.uint8)
    if gram.shape[2] != p or XtWy.shape[0] != p or z.shape[0] != p or coef.shape[0] != p:
        raise ValueError("sample_coefficients: inconsistent number of coefficients")
    if p_pen > p:
        raise ValueError("sample_coefficients: more penalised than total coefficients")
    # The traits go LANES at a time (lane q: trait j0 + q; a last, partial batch repeats
    # trait j0 in its spare lanes and does not write them), each through the operations
    # of the one-trait algorithm above in the same order (_dense.pxd's *_lanes routines):
    # bit-identical to solving one trait after the other, about twice as fast (t = 20,000
    # on 2 threads: 3.3 against 6.7 ms, benchmarks/README.md round seven).
    with nogil, parallel():
        P = <double *> malloc((p * p + 1) * LANES * sizeof(double))
        w = <double *> malloc((p + 1) * LANES * sizeof(double))
        alpha = <double *> malloc((n_flat + 1) * LANES * sizeof(double))
        xr = <double *> malloc((p_pen + 1) * LANES * sizeof(double))
        cols = <Py_ssize_t *> malloc(LANES * sizeof(Py_ssize_t))
        failed = <int *> malloc(LANES * sizeof(int))
        tau_new = <double *> malloc(LANES * sizeof(double))
        for batch in prange(n_batches, schedule="static"):
            if (P == NULL or w == NULL or alpha == NULL or xr == NULL or cols == NULL
                    or failed == NULL or tau_new == NULL):
                with gil:
                    raise MemoryError("sample_coefficients: no memory for a batch")
            for q in range(LANES):
                cols[q] = batch * LANES + q if batch * LANES + q < t else batch * LANES
                failed[q] = 0
            # P = gram + diag(prior) (gram[g] read as a column-major matrix, as before)
            for q in range(LANES):
                j = cols[q]
                g = gram_index[j]
                for m in range(p):
                    for l in range(p):
                        P[(l + m * p) * LANES + q] = gram[g, m, l]
                for l in range(p_pen):
                    P[(l + l * p) * LANES + q] = P[(l + l * p) * LANES + q] + prior_prec[l, j]
                if has_drop:
                    for m in range(n_flat):
                        if drops[j, m]:
                            for l in range(p):
                                P[(l + (p_pen + m) * p) * LANES + q] = 0.0
                                P[(p_pen + m + l * p) * LANES + q] = 0.0
                            P[(p_pen + m + (p_pen + m) * p) * LANES + q] = 1.0
            if p > 0:
                chol_upper_lanes(P, ip, ip, failed)
            # w = U^-T c
            for q in range(LANES):
                j = cols[q]
                for l in range(p):
                    w[l * LANES + q] = XtWy[l, j]
                if has_drop:
                    for m in range(n_flat):
                        if drops[j, m]:
                            w[(p_pen + m) * LANES + q] = 0.0
            if p > 0:
                solve_upper_t_lanes(P, ip, ip, w)
            # (1a) alpha = U_aa^-1 (w_a + z_a / sqrt(tau_old))
            for q in range(LANES):
                j = cols[q]
                sd = 1.0 / sqrt(tau_old[j])
                for m in range(n_flat):
                    alpha[m * LANES + q] = w[(p_pen + m) * LANES + q] + z[p_pen + m, j] * sd
            if n_flat > 0:
                solve_upper_lanes(&P[(p_pen + p_pen * p) * LANES], n_flat, ip, alpha)
            # (1b) SS = r'Wr - || U_bb^-T X_pen' W r ||^2 with r = y - X_flat alpha
            for q in range(LANES):
                j = cols[q]
                g = gram_index[j]
                if has_drop:
                    for m in range(n_flat):
                        if drops[j, m]:
                            alpha[m * LANES + q] = 0.0
                rwr = yWy[j]
                for m in range(n_flat):
                    rwr = rwr - 2.0 * alpha[m * LANES + q] * XtWy[p_pen + m, j]
                    for l in range(n_flat):
                        rwr = rwr + (alpha[m * LANES + q] * gram[g, p_pen + m, p_pen + l]
                                     * alpha[l * LANES + q])
                tau_new[q] = rwr  # r'Wr until the quadratic form below
                for l in range(p_pen):
                    xr[l * LANES + q] = XtWy[l, j]
                    for m in range(n_flat):
                        xr[l * LANES + q] = (xr[l * LANES + q]
                                             - gram[g, l, p_pen + m] * alpha[m * LANES + q])
            if p_pen > 0:
                solve_upper_t_lanes(P, ipen, ip, xr)
            for q in range(LANES):
                j = cols[q]
                q2 = 0.0
                for l in range(p_pen):
                    q2 = q2 + xr[l * LANES + q] * xr[l * LANES + q]
                ss = tau_new[q] - q2
                if ss < 0.0:
                    ss = 0.0
                tau_new[q] = gamma_draw[j] / (tau_rate[j] + 0.5 * ss)
                # (1c) beta = U_bb^-1 (U_bb^-T X_pen' W r + z_b / sqrt(tau))
                sd = 1.0 / sqrt(tau_new[q])
                for l in range(p_pen):
                    xr[l * LANES + q] = xr[l * LANES + q] + z[l, j] * sd
            if p_pen > 0:
                solve_upper_lanes(P, ipen, ip, xr)
            for q in range(LANES):
                if batch * LANES + q >= t:
                    break
                j = cols[q]
                if failed[q]:
                    n_bad += 1
                    for l in range(p):
                        coef[l, j] = 0.0
                    tau[j] = tau_old[j]
                    continue
                for l in range(p_pen):
                    coef[l, j] = xr[l * LANES + q]
                for m in range(n_flat):
                    coef[p_pen + m, j] = alpha[m * LANES + q]
                tau[j] = tau_new[q]
        free(P)
        free(w)
        free(alpha)
        free(xr)
        free(cols)
        free(failed)
        free(tau_new)
    return n_bad
