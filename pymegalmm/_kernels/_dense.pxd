# cython: language_level=3

from libc.math cimport sqrt

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
