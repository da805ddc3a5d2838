# cython: language_level=3
"""Step 6 with several trait groups: factor scores by pattern of used traits."""

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from ._dense cimport chol_upper, solve_upper, solve_upper_t


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
