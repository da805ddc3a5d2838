# cython: language_level=3
"""Dense products over fixed tiles (threads over tiles, BLAS serial)."""

from cython.parallel cimport prange
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
