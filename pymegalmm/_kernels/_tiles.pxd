# cython: language_level=3
"""Tile routines shared by several kernel modules (``cimport`` only)."""

from scipy.linalg.cython_blas cimport dgemm


cdef inline void weighted_squares_tile(const double *E, int n, int width, const double *W,
                                       int G, double *E2, double *out) noexcept nogil:
    """``out = W (E o E)`` for one tile: ``E`` is ``n x width`` (leading dimension ``n``),
    ``W`` is ``G x n`` (leading dimension ``G``), ``out`` is ``G x width`` (leading
    dimension ``G``); ``E2`` is an ``n x width`` buffer.  One serial ``dgemm``."""
    cdef Py_ssize_t i, jj
    cdef double one = 1.0, zero = 0.0
    for jj in range(width):
        for i in range(n):
            E2[i + jj * n] = E[i + jj * n] * E[i + jj * n]
    dgemm("N", "N", &G, &width, &n, &one, <double *>W, &G, E2, &n, &zero, out, &G)
