# cython: language_level=3
"""Hot loops of one Gibbs iteration, in Cython with OpenMP over traits.

Every kernel works on plain contiguous float64 arrays and knows nothing about
names, formulas or pandas.  Per-trait arrays (``n x t``, ``p x t``, ...) are
Fortran-ordered so that one trait's column is contiguous.  All random numbers
are drawn beforehand by the chain's ``numpy.random.Generator`` and passed in,
and each trait is processed by exactly one thread with a fixed operation order,
so the results are bit-identical for any number of threads.

The slow, obvious NumPy versions of these kernels live in ``tests/reference.py``;
the tests check that both agree on the same pre-drawn random numbers.
"""

import numpy as np

cimport cython
from cython.parallel cimport parallel, prange
from libc.math cimport exp, log, sqrt, INFINITY
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from scipy.special.cython_special cimport gammainc, gammaincinv

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define PYMEGALMM_OPENMP 1
    #else
    #define PYMEGALMM_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static void omp_set_num_threads(int n) { (void)n; }
    #endif
    """
    int PYMEGALMM_OPENMP
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil


# ---------------------------------------------------------------------------
# Small dense linear algebra for per-trait work inside parallel loops.
# LAPACK/BLAS calls on tiny matrices from many threads serialise on OpenBLAS's
# internal lock (measured: the regression kernel got slower with 2 threads), so
# the per-trait factorisations use these plain loops.  Matrices are column-major
# with leading dimension ``ld``: element (r, c) is ``A[r + c * ld]``.
# ---------------------------------------------------------------------------

cdef inline int chol_upper(double *A, int m, int ld) noexcept nogil:
    """In place: upper triangle of ``A`` becomes ``U`` with ``U'U = A``; 0 or the failing column."""
    cdef int i, j, k
    cdef double acc, diag
    for j in range(m):
        acc = A[j + j * ld]
        for k in range(j):
            acc = acc - A[k + j * ld] * A[k + j * ld]
        if not acc > 0.0:
            return j + 1
        diag = sqrt(acc)
        A[j + j * ld] = diag
        for i in range(j + 1, m):
            acc = A[j + i * ld]
            for k in range(j):
                acc = acc - A[k + j * ld] * A[k + i * ld]
            A[j + i * ld] = acc / diag
    return 0


cdef inline void solve_upper_t(const double *U, int m, int ld, double *x) noexcept nogil:
    """In place ``x <- U'^-1 x`` (forward substitution)."""
    cdef int i, k
    cdef double acc
    for i in range(m):
        acc = x[i]
        for k in range(i):
            acc = acc - U[k + i * ld] * x[k]
        x[i] = acc / U[i + i * ld]


cdef inline void solve_upper(const double *U, int m, int ld, double *x) noexcept nogil:
    """In place ``x <- U^-1 x`` (back substitution)."""
    cdef int i, k
    cdef double acc
    for i in range(m - 1, -1, -1):
        acc = x[i]
        for k in range(i + 1, m):
            acc = acc - U[i + k * ld] * x[k]
        x[i] = acc / U[i + i * ld]



def openmp_enabled() -> bool:
    """Return True when the kernels were compiled with OpenMP."""
    return PYMEGALMM_OPENMP == 1


def openmp_max_threads() -> int:
    """Return the number of threads OpenMP regions will use."""
    return omp_get_max_threads()


def set_num_threads(int n) -> None:
    """Set the number of OpenMP threads used by the kernels (no-op when serial)."""
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    omp_set_num_threads(n)


# ---------------------------------------------------------------------------
# Step 1: weighted sufficient statistics for the diagonal (one random effect) case
# ---------------------------------------------------------------------------

def weighted_cross_products(
    const double[:, ::1] X,
    const double[::1, :] Y,
    const double[:, ::1] W,
    const Py_ssize_t[::1] grid_index,
    double[::1, :] XtWy,
    double[::1] yWy,
):
    """Per trait j with grid point g = grid_index[j]: ``X' diag(W[g]) y_j`` and ``y_j' diag(W[g]) y_j``.

    Parameters
    ----------
    X : (n, p) C-ordered design (rotated), shared by all traits.
    Y : (n, t) Fortran-ordered data (rotated).
    W : (G, n) whitening weights ``1 / (h_g d_i + 1 - h_g)`` per grid point.
    grid_index : (t,) grid point of each trait.
    XtWy : (p, t) Fortran-ordered output.
    yWy : (t,) output.
    """
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], t = Y.shape[1]
    cdef Py_ssize_t i, j, l, g
    cdef double wy, acc
    cdef double *c
    cdef const double *xi
    if Y.shape[0] != n or XtWy.shape[0] != p or XtWy.shape[1] != t or yWy.shape[0] != t:
        raise ValueError("weighted_cross_products: inconsistent shapes")
    with nogil, parallel():
        c = <double *> malloc((p + 1) * sizeof(double))  # thread-local accumulators
        for j in prange(t, schedule="static"):
            g = grid_index[j]
            for l in range(p):
                c[l] = 0.0
            acc = 0.0
            for i in range(n):
                wy = W[g, i] * Y[i, j]
                acc = acc + wy * Y[i, j]
                xi = &X[i, 0]
                for l in range(p):
                    c[l] = c[l] + xi[l] * wy
            for l in range(p):
                XtWy[l, j] = c[l]
            yWy[j] = acc
        free(c)


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
    cdef Py_ssize_t j, l, m, g
    cdef int n_flat = <int>(p - p_pen), ip = <int>max(p, 1), ipen = <int>p_pen, one = 1, info
    cdef int n_bad = 0
    cdef double *P
    cdef double *w
    cdef double *alpha
    cdef double *xr
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
    with nogil, parallel():
        P = <double *> malloc(p * p * sizeof(double))
        w = <double *> malloc(p * sizeof(double))
        alpha = <double *> malloc((n_flat + 1) * sizeof(double))
        xr = <double *> malloc((p_pen + 1) * sizeof(double))
        for j in prange(t, schedule="static"):
            g = gram_index[j]
            # P = gram + diag(prior), column-major view (symmetric, so identical)
            memcpy(P, &gram[g, 0, 0], p * p * sizeof(double))
            for l in range(p_pen):
                P[l * p + l] = P[l * p + l] + prior_prec[l, j]
            if has_drop:
                for m in range(n_flat):
                    if drops[j, m]:
                        for l in range(p):
                            P[(p_pen + m) * p + l] = 0.0
                            P[l * p + p_pen + m] = 0.0
                        P[(p_pen + m) * p + p_pen + m] = 1.0
            info = chol_upper(P, ip, ip) if p > 0 else 0
            if info != 0:
                n_bad += 1
                for l in range(p):
                    coef[l, j] = 0.0
                tau[j] = tau_old[j]
                continue
            # w = U^-T c
            for l in range(p):
                w[l] = XtWy[l, j]
            if has_drop:
                for m in range(n_flat):
                    if drops[j, m]:
                        w[p_pen + m] = 0.0
            if p > 0:
                solve_upper_t(P, ip, ip, w)
            # (1a) alpha = U_aa^-1 (w_a + z_a / sqrt(tau_old))
            sd = 1.0 / sqrt(tau_old[j])
            for m in range(n_flat):
                alpha[m] = w[p_pen + m] + z[p_pen + m, j] * sd
            if n_flat > 0:
                solve_upper(&P[p_pen * p + p_pen], n_flat, ip, alpha)
            if has_drop:
                for m in range(n_flat):
                    if drops[j, m]:
                        alpha[m] = 0.0
            # (1b) SS = r'Wr - || U_bb^-T X_pen' W r ||^2 with r = y - X_flat alpha
            rwr = yWy[j]
            for m in range(n_flat):
                rwr = rwr - 2.0 * alpha[m] * XtWy[p_pen + m, j]
                for l in range(n_flat):
                    rwr = rwr + alpha[m] * gram[g, p_pen + m, p_pen + l] * alpha[l]
            for l in range(p_pen):
                xr[l] = XtWy[l, j]
                for m in range(n_flat):
                    xr[l] = xr[l] - gram[g, l, p_pen + m] * alpha[m]
            if p_pen > 0:
                solve_upper_t(P, ipen, ip, xr)
            q2 = 0.0
            for l in range(p_pen):
                q2 = q2 + xr[l] * xr[l]
            ss = rwr - q2
            if ss < 0.0:
                ss = 0.0
            tau[j] = gamma_draw[j] / (tau_rate[j] + 0.5 * ss)
            # (1c) beta = U_bb^-1 (U_bb^-T X_pen' W r + z_b / sqrt(tau))
            sd = 1.0 / sqrt(tau[j])
            for l in range(p_pen):
                xr[l] = xr[l] + z[l, j] * sd
            if p_pen > 0:
                solve_upper(P, ipen, ip, xr)
            for l in range(p_pen):
                coef[l, j] = xr[l]
            for m in range(n_flat):
                coef[p_pen + m, j] = alpha[m]
        free(P)
        free(w)
        free(alpha)
        free(xr)
    return n_bad


# ---------------------------------------------------------------------------
# Steps 2 and 4: discrete h2 posterior over the grid
# ---------------------------------------------------------------------------

def sample_grid_index(
    const double[:, ::1] SS,
    const double[::1] log_det,
    const double[::1] log_prior,
    const double[::1] tau,
    const double[::1] u,
    Py_ssize_t[::1] index_out,
):
    """Draw each column's h2 grid point from its discrete posterior by inverse CDF.

    ``log p(g | .) = -log|V_g|/2 - tau_j SS[j, g]/2 + log prior_g`` (+ const);
    the index is the number of grid points whose cumulative probability is
    below ``u_j`` (MegaLMM's ``sample_h2s`` rule).

    Parameters
    ----------
    SS : (t, G) quadratic forms ``y_j' V_g^-1 y_j`` per column and grid point.
    log_det : (G,) ``log|V_g|``.
    log_prior : (G,) log prior weights (``-inf`` for excluded points).
    tau : (t,) total precisions.
    u : (t,) uniform draws.
    index_out : (t,) output grid indices.
    """
    cdef Py_ssize_t t = SS.shape[0], G = SS.shape[1]
    cdef Py_ssize_t j, g, k
    cdef double mx, total, cum, target
    cdef double *lp
    if log_det.shape[0] != G or log_prior.shape[0] != G:
        raise ValueError("sample_grid_index: grid sizes differ")
    with nogil, parallel():
        lp = <double *> malloc(G * sizeof(double))
        for j in prange(t, schedule="static"):
            mx = -INFINITY
            for g in range(G):
                lp[g] = -0.5 * log_det[g] - 0.5 * tau[j] * SS[j, g] + log_prior[g]
                if lp[g] > mx:
                    mx = lp[g]
            total = 0.0
            for g in range(G):
                lp[g] = exp(lp[g] - mx)
                total = total + lp[g]
            target = u[j] * total
            cum = 0.0
            k = 0
            for g in range(G):
                cum = cum + lp[g]
                if cum < target:
                    k = k + 1
            if k > G - 1:
                k = G - 1
            index_out[j] = k
        free(lp)


# ---------------------------------------------------------------------------
# Steps 2 and 5: random effects in the simultaneously diagonalised basis
# ---------------------------------------------------------------------------

def sample_diagonal_effects(
    const double[::1, :] E,
    const double[::1] d,
    const double[::1] h,
    const double[::1] tau,
    const double[::1, :] z,
    double[::1, :] v_out,
    const double[::1, :] base=None,
    double[::1, :] resid_out=None,
):
    """Random-effect coefficients ``v`` (prior ``N(0, h/tau)``) given rotated residuals.

    Rotated row ``i < r'`` observes ``sqrt(d_i) v_i`` plus noise of variance
    ``(1-h)/tau``; components ``i >= r'`` (``d_i = 0``) are drawn from the prior.
    Posterior: mean ``sqrt(d_i) h E_i / (d_i h + 1 - h)``, variance
    ``h (1-h) / (tau (d_i h + 1 - h))``.  ``h = 0`` gives ``v = 0``.

    Parameters
    ----------
    E : (n, t) rotated residuals, Fortran-ordered.
    d : (r,) eigenvalues ``d'`` of ``S' Z'Z S``; the first ``r'`` are positive.
    h : (t,) variance proportions; tau : (t,) total precisions.
    z : (r, t) standard normal draws.
    v_out : (r, t) output coefficients.
    base, resid_out : (n, t), optional
        When given, ``resid_out = base - (sqrt(d) v, 0)`` (rotated rows), e.g. the
        residual ``Eta - X1 B1 - Z U_R`` the factor scores need.
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], r = d.shape[0]
    cdef Py_ssize_t i, j
    cdef double hj, denom, sdi
    cdef bint want_resid = resid_out is not None
    cdef const double[::1, :] B
    cdef double[::1, :] R
    if z.shape[0] != r or v_out.shape[0] != r or E.shape[1] != v_out.shape[1]:
        raise ValueError("sample_diagonal_effects: inconsistent shapes")
    if want_resid:
        if base is None or base.shape[0] != n or base.shape[1] != t or resid_out.shape[0] != n \
                or resid_out.shape[1] != t:
            raise ValueError("sample_diagonal_effects: base and resid_out must be (n, t)")
        B = base
        R = resid_out
    else:
        B = E
        R = v_out
    cdef double[::1] sqrt_d = np.sqrt(np.maximum(np.asarray(d), 0.0))
    cdef double sdj, inv
    with nogil:
        for j in prange(t, schedule="static"):
            hj = h[j]
            if want_resid:
                for i in range(n):
                    R[i, j] = B[i, j]
            if hj <= 0.0:
                for i in range(r):
                    v_out[i, j] = 0.0
                continue
            sdj = sqrt(hj * (1.0 - hj) / tau[j])
            for i in range(r):
                inv = 1.0 / (d[i] * hj + 1.0 - hj)
                sdi = sdj * sqrt(inv)
                if i < n and d[i] > 0.0:
                    v_out[i, j] = sqrt_d[i] * hj * E[i, j] * inv + z[i, j] * sdi
                    if want_resid:
                        R[i, j] = B[i, j] - sqrt_d[i] * v_out[i, j]
                else:
                    v_out[i, j] = z[i, j] * sdi


# ---------------------------------------------------------------------------
# Step 7: ARD global shrinkage (multiplicative gamma process)
# ---------------------------------------------------------------------------

def sample_ard_delta(
    double[::1] delta,
    const double[::1] s,
    double n_traits,
    double a1,
    double b1,
    double a2,
    double b2,
    const double[:, ::1] u,
    double trunc_point=1.0,
):
    """Sweeps of the multiplicative gamma process update of ``delta`` (in place).

    For each sweep (a row of ``u``) and ``h = 1..k`` in order, with
    ``tauh = cumprod(delta)`` kept up to date:
    ``delta_1 ~ Gamma(a1 + p k/2, b1 + sum_k tauh_k/delta_1 s_k)`` (no truncation),
    ``delta_h ~ Gamma(a2 + p (k-h+1)/2, b2 + sum_{l>=h} tauh_l/delta_h s_l)``
    left-truncated at ``trunc_point``; drawn by inverse CDF from ``u``.

    Parameters
    ----------
    delta : (k,) current values, updated in place.
    s : (k,) ``0.5 * sum_j tau_j phi_kj lambda_kj^2``.
    n_traits : number of traits p.
    a1, b1, a2, b2 : shape and rate of delta_1 and delta_h (h >= 2).
    u : (T, k) uniform draws, one row per sweep.
    trunc_point : lower truncation of delta_h for h >= 2.
    """
    cdef Py_ssize_t k = delta.shape[0], T = u.shape[0]
    cdef Py_ssize_t it, hh, l
    cdef double shape, rate, tauh, p0, uu
    if s.shape[0] != k or u.shape[1] != k:
        raise ValueError("sample_ard_delta: inconsistent shapes")
    with nogil:
        for it in range(T):
            for hh in range(k):
                # rate = b + sum_{l >= hh} (prod_{m <= l, m != hh} delta_m) s_l
                rate = 0.0
                tauh = 1.0
                for l in range(hh):
                    tauh = tauh * delta[l]
                for l in range(hh, k):
                    if l > hh:
                        tauh = tauh * delta[l]
                    rate = rate + tauh * s[l]
                if hh == 0:
                    shape = a1 + 0.5 * n_traits * k
                    rate = b1 + rate
                    delta[hh] = gammaincinv(shape, u[it, hh]) / rate
                else:
                    shape = a2 + 0.5 * n_traits * (k - hh)
                    rate = b2 + rate
                    p0 = gammainc(shape, rate * trunc_point)
                    if p0 > 0.999:
                        delta[hh] = trunc_point
                    else:
                        uu = p0 + (1.0 - p0) * u[it, hh]
                        delta[hh] = gammaincinv(shape, uu) / rate


# ---------------------------------------------------------------------------
# Dense products over fixed tiles (threads over tiles, BLAS serial)
# ---------------------------------------------------------------------------

from scipy.linalg.cython_blas cimport dgemm

GEMM_BLOCK = 64
GEMM_ROW_BLOCK = 128


def gemm_columns(
    const double[::1, :] A,
    const double[::1, :] B,
    double[::1, :] C,
    double alpha=1.0,
    double beta=0.0,
    Py_ssize_t block=GEMM_BLOCK,
    Py_ssize_t row_block=GEMM_ROW_BLOCK,
    const double[::1, :] source=None,
):
    """``C = alpha A B + beta S`` computed over fixed tiles of ``row_block x block``.

    ``S`` is ``source`` when given (copied tile by tile inside the parallel
    region, so ``C = Y - X B`` needs no separate copy), else ``C`` itself.

    Each tile is one serial ``dgemm`` call processed by one OpenMP thread.  The
    tiling does not depend on the number of threads, so the result is
    bit-identical for any thread count (call it with the BLAS library limited
    to one thread, as the sampler does).  Different tilings may differ in the
    last bits: BLAS kernels treat edge tiles differently.

    Parameters
    ----------
    A : (m, k) Fortran-ordered.
    B : (k, n) Fortran-ordered.
    C : (m, n) Fortran-ordered output (read only when ``beta != 0``).
    alpha, beta : scalars.
    block, row_block : columns and rows per tile.
    """
    cdef int m = <int>A.shape[0], kk = <int>A.shape[1], n = <int>B.shape[1]
    cdef Py_ssize_t n_cb, n_rb, tile, cb, rb, i, j
    cdef int width, height, lda, ldb, ldc
    cdef bint has_source = source is not None
    cdef const double[::1, :] S
    if has_source:
        if source.shape[0] != C.shape[0] or source.shape[1] != C.shape[1]:
            raise ValueError("gemm_columns: source must have the shape of C")
        S = source
    else:
        S = C
    if B.shape[0] != kk or C.shape[0] != m or C.shape[1] != n:
        raise ValueError(
            f"gemm_columns: shapes {A.shape[0]}x{A.shape[1]} @ {B.shape[0]}x{B.shape[1]} "
            f"-> {C.shape[0]}x{C.shape[1]} do not match"
        )
    if block < 1 or row_block < 1:
        raise ValueError("gemm_columns: block sizes must be >= 1")
    if m == 0 or n == 0:
        return
    if kk == 0:
        for j in range(n):
            for i in range(m):
                C[i, j] = 0.0 if beta == 0.0 else beta * S[i, j]
        return
    lda = m
    ldb = kk
    ldc = m
    n_cb = (n + block - 1) // block
    n_rb = (m + row_block - 1) // row_block
    with nogil:
        for tile in prange(n_cb * n_rb, schedule="static"):
            rb = tile % n_rb
            cb = tile // n_rb
            height = <int>min(row_block, m - rb * row_block)
            width = <int>min(block, n - cb * block)
            if has_source:
                for j in range(cb * block, cb * block + width):
                    for i in range(rb * row_block, rb * row_block + height):
                        C[i, j] = S[i, j]
            dgemm("N", "N", &height, &width, &kk, &alpha, <double *>&A[rb * row_block, 0], &lda,
                  <double *>&B[0, cb * block], &ldb, &beta, &C[rb * row_block, cb * block], &ldc)


# ---------------------------------------------------------------------------
# Step 6 with several trait groups: factor scores by pattern of used traits
# ---------------------------------------------------------------------------

def sample_factor_scores_by_pattern(
    const double[::1, :] E,
    const double[::1, :] Lambda,
    const double[::1] resid_prec,
    const double[::1, :] prior_mean,
    const double[::1] factor_prec,
    const double[::1, :] z,
    const unsigned char[:, ::1] used,
    const Py_ssize_t[::1] pattern_start,
    const Py_ssize_t[::1] pattern_rows,
    double[::1, :] F_out,
):
    """Factor scores row by row when rows use different sets of traits.

    For pattern ``p`` (traits ``J = used[p]``) and each of its rows ``i``:
    ``Sigma = sum_{j in J} resid_prec_j lambda_j lambda_j' + diag(factor_prec)``,
    ``f_i = Sigma^-1 (sum_{j in J} resid_prec_j lambda_j E_ij + factor_prec * m_i) + U^-1 z_i``
    with ``U'U = Sigma`` (upper Cholesky factor).  One factorisation per pattern.

    Parameters
    ----------
    E : (n, t) residuals ``Eta - X1 B1 - Z U_R`` in the original rows.
    Lambda : (k, t) loadings.
    resid_prec : (t,) residual precisions of the traits.
    prior_mean : (n, k) prior means ``Z U_F`` of the factor scores.
    factor_prec : (k,) residual precisions of the factors.
    z : (n, k) standard normal draws.
    used : (n_patterns, t) uint8, traits used by each pattern.
    pattern_start : (n_patterns + 1,) offsets into ``pattern_rows``.
    pattern_rows : (n,) row indices grouped by pattern.
    F_out : (n, k) output.

    Returns
    -------
    int
        Number of patterns whose ``Sigma`` was not positive definite (0 when all fine).
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], k = Lambda.shape[0]
    cdef Py_ssize_t n_pat = used.shape[0]
    cdef Py_ssize_t p, a, b, j, r, i
    cdef int ik = <int>max(k, 1), one = 1, info
    cdef int n_bad = 0
    cdef double *S
    cdef double *w
    cdef double *noise
    cdef double acc
    if Lambda.shape[1] != t or used.shape[1] != t or F_out.shape[0] != n or z.shape[0] != n:
        raise ValueError("sample_factor_scores_by_pattern: inconsistent shapes")
    if pattern_start.shape[0] != n_pat + 1:
        raise ValueError("sample_factor_scores_by_pattern: pattern_start must have n_patterns + 1")
    with nogil, parallel():
        S = <double *> malloc(k * k * sizeof(double) + 1)
        w = <double *> malloc(k * sizeof(double) + 1)
        noise = <double *> malloc(k * sizeof(double) + 1)
        for p in prange(n_pat, schedule="dynamic"):
            # Sigma (column-major, symmetric)
            for a in range(k):
                for b in range(k):
                    S[a * k + b] = 0.0
                S[a * k + a] = factor_prec[a]
            for j in range(t):
                if used[p, j]:
                    for a in range(k):
                        for b in range(k):
                            S[a * k + b] += resid_prec[j] * Lambda[a, j] * Lambda[b, j]
            info = chol_upper(S, ik, ik) if k > 0 else 0
            if info != 0:
                n_bad += 1
                continue
            for r in range(pattern_start[p], pattern_start[p + 1]):
                i = pattern_rows[r]
                for a in range(k):
                    acc = factor_prec[a] * prior_mean[i, a]
                    for j in range(t):
                        if used[p, j]:
                            acc = acc + resid_prec[j] * Lambda[a, j] * E[i, j]
                    w[a] = acc
                    noise[a] = z[i, a]
                if k > 0:
                    solve_upper_t(S, ik, ik, w)
                    solve_upper(S, ik, ik, w)
                    solve_upper(S, ik, ik, noise)
                for a in range(k):
                    F_out[i, a] = w[a] + noise[a]
        free(S)
        free(w)
        free(noise)
    return n_bad


# ---------------------------------------------------------------------------
# Steps 2 and 4: quadratic forms for every grid point (one random effect)
# ---------------------------------------------------------------------------

def grid_sums_of_squares(
    const double[::1, :] E,
    const double[:, ::1] W_T,
    double[:, ::1] out,
):
    """``out[j, g] = sum_i W_T[i, g] E[i, j]^2`` for all columns and grid points.

    Parameters
    ----------
    E : (n, t) rotated residuals, Fortran-ordered.
    W_T : (n, G) weights ``1 / (h_g d_i + 1 - h_g)``, C-ordered.
    out : (t, G) output, C-ordered.
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], G = W_T.shape[1]
    cdef Py_ssize_t i, j, g
    cdef double e2
    cdef double *acc
    cdef const double *wi
    if W_T.shape[0] != n or out.shape[0] != t or out.shape[1] != G:
        raise ValueError("grid_sums_of_squares: inconsistent shapes")
    with nogil, parallel():
        acc = <double *> malloc((G + 1) * sizeof(double))  # thread-local accumulators
        for j in prange(t, schedule="static"):
            for g in range(G):
                acc[g] = 0.0
            for i in range(n):
                e2 = E[i, j] * E[i, j]
                wi = &W_T[i, 0]
                for g in range(G):
                    acc[g] = acc[g] + wi[g] * e2
            for g in range(G):
                out[j, g] = acc[g]
        free(acc)


# ---------------------------------------------------------------------------
# Random draws in fixed column blocks, one NumPy bit generator per block
# ---------------------------------------------------------------------------

from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_gamma, random_standard_normal_fill


def fill_random_blocks(list bit_generators, double[::1, :] out, Py_ssize_t width,
                       bint gamma=False, double shape=1.0):
    """Fill ``out`` with standard normal (or standard Gamma(``shape``)) draws by blocks.

    Columns ``b * width`` to ``(b + 1) * width - 1`` are filled, in column-major
    order, from ``bit_generators[b]`` with NumPy's own distribution functions, so
    block ``b`` holds exactly what ``Generator(bit_generators[b]).standard_normal``
    (or ``.standard_gamma(shape)``) would return.  Blocks run in parallel; the
    result does not depend on the number of threads.

    Parameters
    ----------
    bit_generators : list of numpy.random.BitGenerator
        One per block, used by one thread only.
    out : (rows, cols) Fortran-ordered output.
    width : columns per block.
    gamma : draw standard Gamma(``shape``) instead of standard normals.
    shape : Gamma shape.
    """
    cdef Py_ssize_t rows = out.shape[0], cols = out.shape[1]
    cdef Py_ssize_t n_blocks = len(bit_generators)
    cdef Py_ssize_t b, start, count, i
    cdef double *dst
    if width < 1 or n_blocks != (cols + width - 1) // width:
        raise ValueError("fill_random_blocks: need one bit generator per block of columns")
    if rows == 0 or cols == 0:
        return
    states = <bitgen_t **> malloc(n_blocks * sizeof(bitgen_t *))
    if states == NULL:
        raise MemoryError()
    try:
        for b in range(n_blocks):
            states[b] = <bitgen_t *> PyCapsule_GetPointer(bit_generators[b].capsule,
                                                         "BitGenerator")
        with nogil:
            for b in prange(n_blocks, schedule="static"):
                start = b * width
                count = rows * min(width, cols - start)
                dst = &out[0, start]
                if gamma:
                    for i in range(count):
                        dst[i] = random_standard_gamma(states[b], shape)
                else:
                    random_standard_normal_fill(states[b], count, dst)
    finally:
        free(states)
