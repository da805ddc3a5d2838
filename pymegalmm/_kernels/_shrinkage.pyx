# cython: language_level=3
"""Step 7: ARD global shrinkage (multiplicative gamma process)."""

from scipy.special.cython_special cimport gammainc, gammaincinv


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
