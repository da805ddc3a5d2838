# cython: language_level=3
"""Steps 2 and 5: random effects in the simultaneously diagonalised basis."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt


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
    # the leading coefficients observed by the data (i < n, d_i > 0: all of them, in the
    # back-end's order) take the first, branch-free loop, which the compiler vectorises;
    # the same arithmetic per element as the general loop after it
    cdef Py_ssize_t lead = 0
    while lead < min(n, r) and d[lead] > 0.0:
        lead += 1
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
            for i in range(lead):
                inv = 1.0 / (d[i] * hj + 1.0 - hj)
                v_out[i, j] = sqrt_d[i] * hj * E[i, j] * inv + z[i, j] * (sdj * sqrt(inv))
            if want_resid:
                for i in range(lead):
                    R[i, j] = B[i, j] - sqrt_d[i] * v_out[i, j]
            for i in range(lead, r):
                inv = 1.0 / (d[i] * hj + 1.0 - hj)
                sdi = sdj * sqrt(inv)
                if i < n and d[i] > 0.0:
                    v_out[i, j] = sqrt_d[i] * hj * E[i, j] * inv + z[i, j] * sdi
                    if want_resid:
                        R[i, j] = B[i, j] - sqrt_d[i] * v_out[i, j]
                else:
                    v_out[i, j] = z[i, j] * sdi
