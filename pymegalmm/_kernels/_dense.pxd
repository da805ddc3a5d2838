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


# ---------------------------------------------------------------------------
# The same three routines for LANES independent problems at once, stored lane by
# lane: element (r, c) of problem ``q`` is ``A[(r + c * ld) * LANES + q]`` (vectors:
# ``x[i * LANES + q]``).  Each problem goes through exactly the operations of the
# routines above, in the same order, so its result is bit-identical to theirs; the
# innermost loops run over the problems, which are independent, so the compiler
# vectorises them and the chains of dependent additions of one problem overlap
# with the others'.
# ---------------------------------------------------------------------------

cdef enum:
    LANES = 8


cdef inline void _minus_dots_lanes(double *acc, const double *A, int j, int i,
                                   int ld) noexcept nogil:
    """Per problem: ``acc = A[j, i] - sum_{k < j} A[k, j] A[k, i]`` (summed in order of k)."""
    cdef int k, q
    for q in range(LANES):
        acc[q] = A[(j + i * ld) * LANES + q]
    for k in range(j):
        for q in range(LANES):
            acc[q] = acc[q] - A[(k + j * ld) * LANES + q] * A[(k + i * ld) * LANES + q]


cdef inline void chol_upper_lanes(double *A, int m, int ld, int *failed) noexcept nogil:
    """In place, per problem: as :func:`chol_upper`; ``failed[q]`` set to 1 where a pivot
    is not positive (that problem's factor is then meaningless, the others unaffected)."""
    cdef int i, j, q
    cdef double acc[LANES]
    cdef double diag[LANES]
    for j in range(m):
        _minus_dots_lanes(acc, A, j, j, ld)
        for q in range(LANES):
            if not acc[q] > 0.0:
                failed[q] = 1
                acc[q] = 1.0
            diag[q] = sqrt(acc[q])
            A[(j + j * ld) * LANES + q] = diag[q]
        for i in range(j + 1, m):
            _minus_dots_lanes(acc, A, j, i, ld)
            for q in range(LANES):
                A[(j + i * ld) * LANES + q] = acc[q] / diag[q]


cdef inline void solve_upper_t_lanes(const double *U, int m, int ld, double *x) noexcept nogil:
    """In place, per problem: ``x <- U'^-1 x``, as :func:`solve_upper_t`."""
    cdef int i, k, q
    cdef double acc[LANES]
    for i in range(m):
        for q in range(LANES):
            acc[q] = x[i * LANES + q]
        for k in range(i):
            for q in range(LANES):
                acc[q] = acc[q] - U[(k + i * ld) * LANES + q] * x[k * LANES + q]
        for q in range(LANES):
            x[i * LANES + q] = acc[q] / U[(i + i * ld) * LANES + q]


cdef inline void solve_upper_lanes(const double *U, int m, int ld, double *x) noexcept nogil:
    """In place, per problem: ``x <- U^-1 x``, as :func:`solve_upper`."""
    cdef int i, k, q
    cdef double acc[LANES]
    for i in range(m - 1, -1, -1):
        for q in range(LANES):
            acc[q] = x[i * LANES + q]
        for k in range(i + 1, m):
            for q in range(LANES):
                acc[q] = acc[q] - U[(i + k * ld) * LANES + q] * x[k * LANES + q]
        for q in range(LANES):
            x[i * LANES + q] = acc[q] / U[(i + i * ld) * LANES + q]
