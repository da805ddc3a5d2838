# cython: language_level=3
"""Dense products over fixed tiles (threads over tiles, BLAS serial)."""

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm, dgemv

from ._grid import grid_sums_of_squares
from ._tiles cimport weighted_squares_tile


GEMM_BLOCK = 64
GEMM_ROW_BLOCK = 128
#: Products with at most this many columns go column by column through ``dgemv``:
#: OpenBLAS's ``dgemm`` is slow on so few columns (one thread, ``(502 x 502)' @ (502 x c)``
#: with the ``dgemm`` tiles and now: c = 1 68 and 26 us, c = 2 112 and 49, c = 4 114 and
#: 95; ``python benchmarks/kernels.py --threads 1``, benchmarks/README.md round six).
GEMV_MAX_COLUMNS = 4
#: Numbers per tile of :func:`subtract_two_products` (whole columns): 500 rows x 65
#: columns, three arrays of it (``S``, ``C1``, ``C2``) 780 KB, within a 1 MB L2 cache.
PAIR_TILE_CELLS = 2**15


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


cdef inline void _subtract_tile(const double *S, const double *A, int lda, const double *B,
                                int k, double *C, int ld, int height, int width) noexcept nogil:
    """One tile of ``C = S - A B`` (``height x width``; ``S`` and ``C`` with leading
    dimension ``ld``, ``B`` with ``k``): copy ``S`` into ``C``, then one ``dgemm``."""
    cdef Py_ssize_t i, j
    cdef double minus_one = -1.0, one = 1.0
    for j in range(width):
        for i in range(height):
            C[i + j * ld] = S[i + j * ld]
    dgemm("N", "N", &height, &width, &k, &minus_one, <double *>A, &lda, <double *>B, &k,
          &one, C, &ld)


def subtract_two_products(
    const double[::1, :] source,
    const double[::1, :] A1,
    const double[::1, :] B1,
    double[::1, :] C1,
    const double[::1, :] A2,
    const double[::1, :] B2,
    double[::1, :] C2,
    Py_ssize_t block=0,
    Py_ssize_t row_block=0,
    const double[:, ::1] weights=None,
    double[:, ::1] sums_out=None,
):
    """``C1 = S - A1 B1`` and then ``C2 = C1 - A2 B2`` in one pass over the tiles.

    With ``weights`` (``m x G``) also ``sums_out[j, g] = sum_i weights[i, g] C2[i, j]^2``
    (``n x G``), as :func:`pymegalmm._kernels.grid_sums_of_squares` computes them (the
    quadratic forms of every grid point), each tile's while it is in cache when tiles
    are whole columns, else in a second pass over ``C2``.

    Each tile does what two :func:`gemm_columns` calls (``alpha = -1``, ``beta = 1``,
    with ``source``) do for it, one after the other, while the tile is in cache: copy
    ``S`` into ``C1``, one ``dgemm``, copy ``C1`` into ``C2``, one ``dgemm``.  ``S`` is
    read once and ``C1`` is not read back from memory.  The tiling depends on the
    shapes only, so the result is bit-identical for any thread count.

    By default (``block = row_block = 0``) a tile is whole columns, about
    :data:`PAIR_TILE_CELLS` numbers (``m <= PAIR_TILE_CELLS / 16``; taller matrices
    get :func:`gemm_columns`' tiles): reading whole columns streams memory in order.
    At ``500 x 20,000`` with ``k1 = 1``, ``k2 = 15`` on 2 threads: 9.3 ms against
    13.0 ms for the two :func:`gemm_columns` calls (``benchmarks/kernels.py``).  Other tiles than :func:`gemm_columns`' can change the
    last bits (the BLAS treats tile edges differently); with ``gemm_columns``' tiles
    passed explicitly the results equal the two calls bit for bit.

    Parameters
    ----------
    source : (m, n) Fortran-ordered ``S``.
    A1 : (m, k1), B1 : (k1, n); A2 : (m, k2), B2 : (k2, n); all Fortran-ordered,
        ``k1, k2 >= 1``.
    C1, C2 : (m, n) Fortran-ordered outputs.
    block, row_block : columns and rows per tile; 0: the default above.  ``n`` must
        exceed :data:`GEMV_MAX_COLUMNS` (this kernel has no ``dgemv`` tiles).
    weights : (m, G) C-ordered, optional.
    sums_out : (n, G) C-ordered output, with ``weights``.
    """
    cdef int m = <int>source.shape[0], n = <int>source.shape[1]
    cdef int k1 = <int>A1.shape[1], k2 = <int>A2.shape[1]
    cdef int lda1 = <int>A1.shape[0], lda2 = <int>A2.shape[0], ldc = m
    cdef Py_ssize_t n_cb, n_rb, tile, cb, rb, i, j
    cdef int width, height, G = 0
    cdef bint sums = weights is not None
    cdef double *E2
    if (A1.shape[0] != m or A2.shape[0] != m or B1.shape[0] != k1 or B2.shape[0] != k2
            or B1.shape[1] != n or B2.shape[1] != n or C1.shape[0] != m or C1.shape[1] != n
            or C2.shape[0] != m or C2.shape[1] != n):
        raise ValueError("subtract_two_products: shapes do not match")
    if k1 < 1 or k2 < 1:
        raise ValueError("subtract_two_products: both products need at least one column")
    if n <= GEMV_MAX_COLUMNS:
        raise ValueError(f"subtract_two_products: needs more than {GEMV_MAX_COLUMNS} columns")
    if block < 0 or row_block < 0:
        raise ValueError("subtract_two_products: block sizes must be >= 0")
    if sums:
        G = <int>weights.shape[1]
        if (sums_out is None or weights.shape[0] != m or sums_out.shape[0] != n
                or sums_out.shape[1] != G):
            raise ValueError("subtract_two_products: weights must be (m, G) and sums_out (n, G)")
    if m == 0:
        if sums:
            sums_out[:, :] = 0.0
        return
    if block == 0 and row_block == 0:
        if 16 * m <= PAIR_TILE_CELLS:
            row_block, block = m, max(1, PAIR_TILE_CELLS // m)
        else:
            row_block, block = GEMM_ROW_BLOCK, GEMM_BLOCK
    elif block == 0 or row_block == 0:
        raise ValueError("subtract_two_products: give both block sizes or neither")
    n_cb = (n + block - 1) // block
    n_rb = (m + row_block - 1) // row_block
    cdef bint sums_in_tiles = sums and n_rb == 1 and G > 0
    with nogil, parallel():
        E2 = <double *> malloc(m * block * sizeof(double)) if sums_in_tiles else NULL
        for tile in prange(n_cb * n_rb, schedule="static"):
            if sums_in_tiles and E2 == NULL:
                with gil:
                    raise MemoryError("subtract_two_products: no memory for a tile")
            rb = tile % n_rb
            cb = tile // n_rb
            height = <int>min(row_block, m - rb * row_block)
            width = <int>min(block, n - cb * block)
            _subtract_tile(&source[rb * row_block, cb * block], &A1[rb * row_block, 0], lda1,
                           &B1[0, cb * block], k1, &C1[rb * row_block, cb * block], ldc,
                           height, width)
            _subtract_tile(&C1[rb * row_block, cb * block], &A2[rb * row_block, 0], lda2,
                           &B2[0, cb * block], k2, &C2[rb * row_block, cb * block], ldc,
                           height, width)
            if sums_in_tiles:  # the tile is whole columns: their quadratic forms now
                weighted_squares_tile(&C2[0, cb * block], m, width, &weights[0, 0], G, E2,
                                      &sums_out[cb * block, 0])
        free(E2)
    if sums and not sums_in_tiles:
        grid_sums_of_squares(C2, weights, sums_out)
