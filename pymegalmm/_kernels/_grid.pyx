# cython: language_level=3
"""Steps 2 and 4: the h2 grid (quadratic forms per grid point, discrete posterior draw)."""

from cython.parallel cimport parallel, prange
from libc.math cimport exp, INFINITY
from libc.stdlib cimport free, malloc


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
                if G == 0:  # W_T[i, 0] does not exist
                    break
                e2 = E[i, j] * E[i, j]
                wi = &W_T[i, 0]
                for g in range(G):
                    acc[g] = acc[g] + wi[g] * e2
            for g in range(G):
                out[j, g] = acc[g]
        free(acc)
