# cython: language_level=3
"""Dense products over fixed tiles (threads over tiles, BLAS serial)."""

from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport dgemm, dgemv


GEMM_BLOCK = 64
GEMM_ROW_BLOCK = 128
#: Products with at most this many columns go column by column through ``dgemv``:
#: OpenBLAS's ``dgemm`` is slow on so few columns (one thread, ``(502 x 502)' @ (502 x c)``
#: with the ``dgemm`` tiles and now: c = 1 68 and 26 us, c = 2 112 and 49, c = 4 114 and
#: 95; ``python benchmarks/kernels.py --threads 1``, benchmarks/README.md round six).
GEMV_MAX_COLUMNS = 4


def gemm_columns(
    const double[::1, :] A,
    const double[::1, :] B,
    double[::1, :] C,
    double alpha=1.0,
    double beta=0.0,
    Py_ssize_t block=GEMM_BLOCK,
    Py_ssize_t row_block=GEMM_ROW_BLOCK,
    const double[::1, :] source=None,
    bint trans_a=False,
):
    """``C = alpha op(A) B + beta S`` over fixed tiles of ``row_block x block``.

    ``op(A)`` is ``A``, or ``A'`` with ``trans_a`` (no transposed copy of ``A`` is
    needed: a rotation ``Q' X`` and its inverse ``Q X`` share one matrix).

    ``S`` is ``source`` when given (copied tile by tile inside the parallel
    region, so ``C = Y - X B`` needs no separate copy), else ``C`` itself.

    Each tile is one serial ``dgemm`` call processed by one OpenMP thread.  The
    tiling does not depend on the number of threads, so the result is
    bit-identical for any thread count (call it with the BLAS library limited
    to one thread, as the sampler does).  Different tilings may differ in the
    last bits: BLAS kernels treat edge tiles differently.

    Parameters
    ----------
    A : (m, k) Fortran-ordered; ``(k, m)`` with ``trans_a``.
    B : (k, n) Fortran-ordered.
    C : (m, n) Fortran-ordered output (read only when ``beta != 0``).
    alpha, beta : scalars.
    block, row_block : columns and rows per tile.

    With at most :data:`GEMV_MAX_COLUMNS` columns the tiles are ``row_block x 1``, each
    one ``dgemv`` (``block`` is not used).
    """
    cdef int m = <int>A.shape[1 if trans_a else 0], kk = <int>A.shape[0 if trans_a else 1]
    cdef int n = <int>B.shape[1]
    cdef char *op = "T" if trans_a else "N"
    cdef Py_ssize_t a_step = A.shape[0] if trans_a else 1  # offset of op(A)'s row i: i * a_step
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
            f"gemm_columns: shapes {m}x{kk} @ {B.shape[0]}x{B.shape[1]} "
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
    lda = A.shape[0]
    ldb = kk
    ldc = m
    n_cb = (n + block - 1) // block
    n_rb = (m + row_block - 1) // row_block
    cdef int one = 1
    if n <= GEMV_MAX_COLUMNS:  # tiles of row_block x 1, each one dgemv
        with nogil:
            for tile in prange(n * n_rb, schedule="static"):
                rb = tile % n_rb
                j = tile // n_rb
                height = <int>min(row_block, m - rb * row_block)
                if has_source:
                    for i in range(rb * row_block, rb * row_block + height):
                        C[i, j] = S[i, j]
                elif beta == 0.0:  # dgemv may scale the old contents (NaN * 0) instead
                    for i in range(rb * row_block, rb * row_block + height):
                        C[i, j] = 0.0
                if trans_a:
                    dgemv(op, &kk, &height, &alpha, <double *>&A[0, 0] + rb * row_block * a_step,
                          &lda, <double *>&B[0, j], &one, &beta, &C[rb * row_block, j], &one)
                else:
                    dgemv(op, &height, &kk, &alpha, <double *>&A[0, 0] + rb * row_block,
                          &lda, <double *>&B[0, j], &one, &beta, &C[rb * row_block, j], &one)
        return
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
            dgemm(op, "N", &height, &width, &kk, &alpha,
                  <double *>&A[0, 0] + rb * row_block * a_step, &lda,
                  <double *>&B[0, cb * block], &ldb, &beta, &C[rb * row_block, cb * block], &ldc)
