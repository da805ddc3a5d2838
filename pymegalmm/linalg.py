"""Dense products for the sampler's hot path, reproducible for any thread count.

Large ``n x t`` products go through :func:`matmul`, which splits the columns of
the result into fixed blocks computed by one serial BLAS call each, in parallel
over OpenMP threads.  :func:`sampling_threads` pins the BLAS library to one
thread while the sampler runs: OpenBLAS's own spinning worker threads otherwise
compete with the OpenMP kernels for the same cores (measured: 30x slower
iterations on 2 cores), and a single-threaded BLAS makes every product's
summation order independent of the number of threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.linalg
from threadpoolctl import ThreadpoolController

from ._config import kernels_module


def matmul(
    A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None, alpha: float = 1.0,
    beta: float = 0.0, source: np.ndarray | None = None, trans_a: bool = False,
) -> np.ndarray:
    """``out = alpha op(A) @ B + beta S``, Fortran-ordered, computed in tiles over threads.

    Parameters
    ----------
    A : (m, k) array; ``(k, m)`` with ``trans_a``, then ``op(A) = A'`` (read in place:
        a rotation and its inverse share one Fortran-ordered matrix).
    B : (k, n) array.
    out : (m, n) Fortran-ordered array or None (allocated).
    alpha, beta : scalars.
    source : (m, n) Fortran-ordered array, optional
        ``S``; default ``out`` itself.  ``matmul(X, C, alpha=-1, beta=1, source=Y)``
        forms ``Y - X C`` without a separate copy of ``Y``.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    A = np.asfortranarray(A, dtype=float)
    B = np.asfortranarray(B, dtype=float)
    if out is None:
        out = np.empty((A.shape[1 if trans_a else 0], B.shape[1]), order="F")
        if source is None:
            beta = 0.0
    if source is not None:
        source = np.asfortranarray(source, dtype=float)
    kernels_module().gemm_columns(A, B, out, alpha, beta, source=source, trans_a=trans_a)
    return out


def subtract_products(
    S: np.ndarray, A1: np.ndarray, B1: np.ndarray, A2: np.ndarray, B2: np.ndarray,
    out1: np.ndarray, out2: np.ndarray, weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``out1 = S - A1 B1`` and ``out2 = out1 - A2 B2``; optionally the weighted sums of
    squares of ``out2``'s columns.

    The same numbers as ``matmul(A1, B1, out=out1, alpha=-1, beta=1, source=S)``
    followed by ``matmul(A2, B2, out=out2, alpha=-1, beta=1, source=out1)`` up to the
    tiling of the products (the last bits); with more than ``GEMV_MAX_COLUMNS`` columns
    and both products non-empty, in one pass over the tiles (``S`` read once, ``out1``
    not read back: at ``500 x 20,000``, an 80 MB pass less), else as those two calls.

    Parameters
    ----------
    S : (m, n) array.
    A1 : (m, k1), B1 : (k1, n), A2 : (m, k2), B2 : (k2, n) arrays.
    out1, out2 : (m, n) Fortran-ordered arrays.
    weights : (m, G) C-ordered array, optional
        Then also ``sums[j, g] = sum_i weights[i, g] out2[i, j]^2`` (``(n, G)``, the
        quadratic forms of every grid point of a diagonal random effect), computed on
        each tile of ``out2`` while it is in cache.

    Returns
    -------
    tuple
        ``(out1, out2, sums)``; ``sums`` is None without ``weights``.
    """
    km = kernels_module()
    sums = None if weights is None else np.empty((S.shape[1], weights.shape[1]))
    if S.shape[1] <= km.GEMV_MAX_COLUMNS or not A1.shape[1] or not A2.shape[1]:
        matmul(A1, B1, out=out1, alpha=-1.0, beta=1.0, source=S)
        matmul(A2, B2, out=out2, alpha=-1.0, beta=1.0, source=out1)
        if sums is not None:
            km.grid_sums_of_squares(out2, weights, sums)
        return out1, out2, sums
    km.subtract_two_products(
        *(np.asfortranarray(a, dtype=float) for a in (S, A1, B1)), out1,
        *(np.asfortranarray(a, dtype=float) for a in (A2, B2)), out2,
        weights=weights, sums_out=sums)
    return out1, out2, sums


#: Flops (``2 m k n``) from which :func:`product` uses the tiled :func:`matmul`.
TILED_FROM_FLOPS = 2**26


def product(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B``: the tiled :func:`matmul` when large, NumPy's product when small.

    The choice depends on the shapes only, so the result does not depend on the number
    of threads either way (the sampler pins NumPy's BLAS to one thread).  Below
    :data:`TILED_FROM_FLOPS` (67 Mflop) the tiles' overhead outweighs the second thread:
    on 2 cores, ``(502 x 502) @ (502 x 15)`` took 237 us with NumPy and 279 us tiled on
    one thread, ``(502 x 150) @ (150 x 2)`` 26 and 36 us.  Products with at most
    ``GEMV_MAX_COLUMNS`` (4) columns always take :func:`matmul`, whose ``dgemv`` tiles
    beat NumPy's ``dgemm`` there (one thread, ``(502 x 502) @ (502 x 2)``: 50 against
    96 us).
    """
    if (B.shape[1] <= kernels_module().GEMV_MAX_COLUMNS
            or 2.0 * A.shape[0] * A.shape[1] * B.shape[1] >= TILED_FROM_FLOPS):
        return matmul(A, B)
    return A @ B


def symmetric_eig(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, by divide and conquer.

    LAPACK's ``dsyevd`` (``scipy.linalg.eigh(driver="evd")``) rather than SciPy's default
    MRRR (``evr``): on a relationship matrix with a large cluster of equal eigenvalues (a
    marker-based ``K`` of rank below ``n`` plus a small ridge) MRRR took 49.6 s for
    ``n = 5000`` on one thread and divide and conquer 15.8 s (benchmarks/README.md).  It
    needs about ``2 n^2`` doubles of workspace (0.4 GB at ``n = 5000``).
    """
    return scipy.linalg.eigh(A, check_finite=False, driver="evd")


#: Random draws are made in blocks of about this many numbers, each block from its own
#: generator seeded by the chain's generator (an array of one block: the chain's generator
#: itself); blocks depend only on the array's shape.
RNG_BLOCK = 2**16
#: An array of one block with at least this many numbers (and two columns) is split in two
#: blocks, so that both threads draw it (e.g. the coefficients' 16 x 1,000 normals and
#: the ARD prior's 15 x 1,000 gammas at t = 1,000).
RNG_SPLIT_FROM = 2**13


def _fill_blocks(rng: np.random.Generator, out: np.ndarray, gamma: bool = False,
                 shape: float = 1.0) -> np.ndarray:
    """Fill the columns of ``out`` (Fortran-ordered) block by block, in parallel.

    Block ``b`` (``width`` columns, fixed by the shape) gets its own SFC64 bit
    generator seeded from ``rng``; the kernel fills the blocks over OpenMP threads.
    SFC64 rather than PCG64: NumPy's normals from it take 3.78 against 4.39 ns each on
    2 threads (500 x 20,000 in 153 blocks, benchmarks/README.md round seven); both are
    NumPy's own bit generators, and the normals come from NumPy's own ziggurat either way.
    An array of one block with fewer than :data:`RNG_SPLIT_FROM` numbers (or one column)
    is filled by ``rng`` itself, column by column: a child generator would cost more than
    the draws (seeding one takes about 6 us; an iteration of the vignette's 16 trait
    groups makes 35 such small draws); a larger one is split in two blocks.
    """
    rows, cols = out.shape
    width = max(1, RNG_BLOCK // max(rows, 1))
    if cols <= width and out.size >= RNG_SPLIT_FROM and cols >= 2:
        width = -(-cols // 2)
    n_blocks = -(-cols // width)
    if n_blocks <= 1:
        if out.size:
            target = out.T  # C-ordered view: memory order, i.e. column by column
            if gamma:
                rng.standard_gamma(shape, out=target)
            else:
                rng.standard_normal(out=target)
        return out
    seeds = rng.integers(0, 2**63 - 1, size=n_blocks, dtype=np.int64)
    bit_generators = [np.random.SFC64(int(seed)) for seed in seeds]
    kernels_module().fill_random_blocks(bit_generators, out, width, gamma, shape)
    return out


def standard_normal(rng: np.random.Generator, rows: int, cols: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Standard normals, ``rows x cols`` Fortran-ordered, drawn in parallel blocks.

    The result depends on ``rng`` and the shape only, not on the number of threads.
    ``out`` (Fortran-ordered, ``rows x cols``) is filled when given.
    """
    if out is None:
        out = np.empty((rows, cols), order="F")
    elif out.shape != (rows, cols) or not out.flags.f_contiguous:
        raise ValueError("out must be a Fortran-ordered array of shape (rows, cols)")
    return _fill_blocks(rng, out)


def standard_gamma(rng: np.random.Generator, shape: float, rows: int, cols: int
                   ) -> np.ndarray:
    """Standard Gamma(``shape``) draws, ``rows x cols`` Fortran-ordered, parallel blocks."""
    out = np.empty((rows, cols), order="F")
    return _fill_blocks(rng, out, gamma=True, shape=float(shape))


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITS = None  # threadpoolctl's limiter while a context is open
_BLAS_CONTROLLER: ThreadpoolController | None = None


def _blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the loaded thread pools, built once per process.

    Building it scans the process's shared libraries (about 3 ms, measured at every
    ``sample()`` call before it was kept); the BLAS libraries the sampler calls, NumPy's
    and SciPy's, are loaded when pymegalmm is imported (this module imports
    ``scipy.linalg``), before the first use.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context in which the BLAS library runs on one thread, process-wide.

    The BLAS thread count is a process-wide setting: contexts entered from several
    Python threads (two models sampling side by side) are counted, the first one
    sets the limit and the last one to leave restores it, so a model that finishes
    first does not give the other a multi-threaded BLAS halfway through.
    """
    global _BLAS_USERS, _BLAS_LIMITS
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITS = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0 and _BLAS_LIMITS is not None:
                _BLAS_LIMITS.restore_original_limits()
                _BLAS_LIMITS = None


@contextmanager
def sampling_threads(n_threads: int | None = None) -> Iterator[None]:
    """Context in which BLAS is single-threaded and the kernels use ``n_threads`` threads.

    OpenMP's thread count is set for the calling thread only (an OpenMP ICV), so
    models sampled from different Python threads do not change each other's.
    """
    kern = kernels_module()
    before = kern.openmp_max_threads()
    with single_threaded_blas():
        if n_threads is not None:
            kern.set_num_threads(int(n_threads))
        try:
            yield
        finally:
            kern.set_num_threads(before)
