# cython: language_level=3
"""Steps 2 and 5: random effects in the simultaneously diagonalised basis."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt


def effect_tables(const double[::1] d, const double[::1] grid_h):
    """``inv[g, i] = 1 / (d_i h_g + 1 - h_g)`` and ``sqrt_inv = sqrt(inv)``, ``(G, r)`` each.

    What :func:`sample_diagonal_effects` needs per grid point, computed once per model
    (the back-end keeps them) instead of once per column and row.
    """
    cdef Py_ssize_t G = grid_h.shape[0], r = d.shape[0], g, i
    inv_arr = np.empty((G, r))
    sq_arr = np.empty((G, r))
    cdef double[:, ::1] inv = inv_arr
    cdef double[:, ::1] sq = sq_arr
    for g in range(G):
        for i in range(r):
            inv[g, i] = 1.0 / (d[i] * grid_h[g] + 1.0 - grid_h[g])
            sq[g, i] = sqrt(inv[g, i])
    return inv_arr, sq_arr


def sample_diagonal_effects(
    const double[::1, :] E,
    const double[::1] d,
    const double[::1] grid_h,
    const Py_ssize_t[::1] grid_index,
    const double[::1] tau,
    const double[::1, :] z,
    double[::1, :] v_out,
    const double[::1, :] base=None,
    double[::1, :] resid_out=None,
    const double[:, ::1] inv=None,
    const double[:, ::1] sqrt_inv=None,
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
    grid_h : (G,) the grid's variance proportions; grid_index : (t,) each column's point.
    tau : (t,) total precisions.
    z : (r, t) standard normal draws.
    v_out : (r, t) output coefficients.
    base, resid_out : (n, t), optional
        When given, ``resid_out = base - (sqrt(d) v, 0)`` (rotated rows), e.g. the
        residual ``Eta - X1 B1 - Z U_R`` the factor scores need.  ``resid_out`` may be
        ``base`` itself (each entry is read before it is written): in place, the
        residual needs no separate ``n x t`` array, which the CPU would first read into
        its cache (``500 x 20,000`` on 2 threads: 8.5 against 10.4 ms,
        ``benchmarks/kernels.py``).
    inv, sqrt_inv : (G, r), optional
        :func:`effect_tables` of ``d`` and ``grid_h`` (computed here when not given).
        Looked up instead of a division and a square root per entry, the same numbers
        (``500 x 20,000`` on 2 threads: 10.4 against 12.2 ms).
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], r = d.shape[0], G = grid_h.shape[0]
    cdef Py_ssize_t i, j, g
    cdef double hj, sdj, sdi
    cdef bint want_resid = resid_out is not None
    cdef const double[::1, :] B
    cdef double[::1, :] R
    if z.shape[0] != r or v_out.shape[0] != r or E.shape[1] != v_out.shape[1] \
            or z.shape[1] != t or grid_index.shape[0] != t or tau.shape[0] != t:
        raise ValueError("sample_diagonal_effects: inconsistent shapes")
    for j in range(t):
        if not 0 <= grid_index[j] < G:
            raise ValueError("sample_diagonal_effects: grid point out of range")
    if want_resid:
        if base is None or base.shape[0] != n or base.shape[1] != t or resid_out.shape[0] != n \
                or resid_out.shape[1] != t:
            raise ValueError("sample_diagonal_effects: base and resid_out must be (n, t)")
        B = base
        R = resid_out
    else:
        B = E
        R = v_out
    if inv is None or sqrt_inv is None:
        inv, sqrt_inv = effect_tables(d, grid_h)
    if inv.shape[0] != G or inv.shape[1] != r or sqrt_inv.shape[0] != G or sqrt_inv.shape[1] != r:
        raise ValueError("sample_diagonal_effects: inv and sqrt_inv must be (G, r)")
    cdef double[::1] sqrt_d = np.sqrt(np.maximum(np.asarray(d), 0.0))
    # the leading coefficients observed by the data (i < n, d_i > 0: all of them, in the
    # back-end's order) take the first, branch-free loop, which the compiler vectorises;
    # the same arithmetic per element as the general loop after it
    cdef Py_ssize_t lead = 0
    while lead < min(n, r) and d[lead] > 0.0:
        lead += 1
    with nogil:
        for j in prange(t, schedule="static"):
            g = grid_index[j]
            hj = grid_h[g]
            if hj <= 0.0:
                for i in range(r):
                    v_out[i, j] = 0.0
                if want_resid:
                    for i in range(n):
                        R[i, j] = B[i, j]
                continue
            if want_resid:  # rows past the leading ones: the base, unless set below
                for i in range(lead, n):
                    R[i, j] = B[i, j]
            sdj = sqrt(hj * (1.0 - hj) / tau[j])
            for i in range(lead):
                v_out[i, j] = (sqrt_d[i] * hj * E[i, j] * inv[g, i]
                               + z[i, j] * (sdj * sqrt_inv[g, i]))
            if want_resid:
                for i in range(lead):
                    R[i, j] = B[i, j] - sqrt_d[i] * v_out[i, j]
            for i in range(lead, r):
                sdi = sdj * sqrt_inv[g, i]
                if i < n and d[i] > 0.0:
                    v_out[i, j] = sqrt_d[i] * hj * E[i, j] * inv[g, i] + z[i, j] * sdi
                    if want_resid:
                        R[i, j] = B[i, j] - sqrt_d[i] * v_out[i, j]
                else:
                    v_out[i, j] = z[i, j] * sdi
