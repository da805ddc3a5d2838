# cython: language_level=3
"""Step 7: ARD global shrinkage (multiplicative gamma process)."""

from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdlib cimport free, malloc
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_gamma, random_standard_uniform
from scipy.special.cython_special cimport gammainc, gammaincinv

#: ``P0 = F(trunc_point)`` above which ``delta_h = trunc_point`` (R MegaLMM's rule)
P0_SNAP = 0.999
#: ``P0`` up to which ``delta_h`` is drawn by rejection from the untruncated gamma
#: (acceptance ``1 - P0 >= 1/2``: at most two proposals on average)
P0_REJECT = 0.5


def sample_ard_delta(
    double[::1] delta,
    const double[::1] s,
    double n_traits,
    double a1,
    double b1,
    double a2,
    double b2,
    Py_ssize_t sweeps,
    bit_generator,
    double trunc_point=1.0,
):
    """Sweeps of the multiplicative gamma process update of ``delta`` (in place).

    For each of ``sweeps`` sweeps and ``h = 1..k`` in order, with
    ``tauh = cumprod(delta)`` kept up to date:
    ``delta_1 ~ Gamma(a1 + p k/2, b1 + sum_k tauh_k/delta_1 s_k)`` (no truncation),
    ``delta_h ~ Gamma(a2 + p (k-h+1)/2, b2 + sum_{l>=h} tauh_l/delta_h s_l)``
    left-truncated at ``trunc_point``.  With ``P0 = F(trunc_point)`` the draw is

    * ``trunc_point`` when ``P0 > 0.999`` (R MegaLMM's rule);
    * else, when ``P0 <= 1/2``, a draw of the untruncated gamma repeated until it is
      ``>= trunc_point`` (exact; two proposals on average at most);
    * else ``F^-1(P0 + (1 - P0) u)`` (inverse CDF, ``u`` uniform).

    ``P0`` is compared through the gamma quantiles of 0.999 and 1/2, computed once
    per ``h`` and call, so the incomplete gamma function and its inverse are only
    evaluated for the draws of the last branch (the costly part of the old
    all-inverse-CDF sweeps: about 1 ms of an iteration at 15 factors).  Every random
    number comes from ``bit_generator`` (a NumPy ``BitGenerator``, used under its
    lock) through NumPy's own distribution functions, in the order of the sweeps:
    ``Generator(bit_generator).standard_gamma`` and ``.random`` reproduce them.

    Parameters
    ----------
    delta : (k,) current values, updated in place.
    s : (k,) ``0.5 * sum_j tau_j phi_kj lambda_kj^2``.
    n_traits : number of traits p.
    a1, b1, a2, b2 : shape and rate of delta_1 and delta_h (h >= 2).
    sweeps : number of sweeps (``delta_iterations_factor``).
    bit_generator : numpy.random.BitGenerator, the source of every random number.
    trunc_point : lower truncation of delta_h for h >= 2.
    """
    cdef Py_ssize_t k = delta.shape[0]
    cdef Py_ssize_t hh
    cdef double shape
    cdef double *snap
    cdef double *reject
    cdef bitgen_t *bg
    if s.shape[0] != k:
        raise ValueError("sample_ard_delta: inconsistent shapes")
    if sweeps < 0:
        raise ValueError("sample_ard_delta: sweeps must be >= 0")
    if k == 0 or sweeps == 0:
        return
    bg = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    snap = <double *> malloc(k * sizeof(double))
    reject = <double *> malloc(k * sizeof(double))
    if snap == NULL or reject == NULL:
        free(snap)
        free(reject)
        raise MemoryError()
    try:
        # P0 = F(x) > c  <=>  x > F^-1(c): the quantiles of each h's shape, once
        for hh in range(1, k):
            shape = a2 + 0.5 * n_traits * (k - hh)
            snap[hh] = gammaincinv(shape, P0_SNAP)
            reject[hh] = gammaincinv(shape, P0_REJECT)
        with bit_generator.lock:
            with nogil:
                _sweeps(delta, s, n_traits, a1, b1, a2, b2, sweeps, trunc_point, snap,
                        reject, bg)
    finally:
        free(snap)
        free(reject)


cdef void _sweeps(double[::1] delta, const double[::1] s, double n_traits, double a1,
                  double b1, double a2, double b2, Py_ssize_t sweeps, double trunc_point,
                  const double *snap, const double *reject, bitgen_t *bg) noexcept nogil:
    """The sweeps of :func:`sample_ard_delta` (arguments checked there)."""
    cdef Py_ssize_t k = delta.shape[0]
    cdef Py_ssize_t it, hh, l
    cdef double shape, rate, tauh, p0, x, point
    for it in range(sweeps):
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
                delta[hh] = random_standard_gamma(bg, shape) / (b1 + rate)
                continue
            shape = a2 + 0.5 * n_traits * (k - hh)
            rate = b2 + rate
            point = rate * trunc_point  # the truncation point on the standard scale
            if point > snap[hh]:
                delta[hh] = trunc_point
            elif point <= reject[hh]:
                x = random_standard_gamma(bg, shape)
                while x < point:
                    x = random_standard_gamma(bg, shape)
                delta[hh] = x / rate
            else:
                p0 = gammainc(shape, point)
                x = p0 + (1.0 - p0) * random_standard_uniform(bg)
                delta[hh] = gammaincinv(shape, x) / rate
