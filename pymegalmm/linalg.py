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

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from ._config import kernels_module


def matmul(
    A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None, alpha: float = 1.0,
    beta: float = 0.0,
) -> np.ndarray:
    """``out = alpha A @ B + beta out``, Fortran-ordered, column blocks over threads.

    Parameters
    ----------
    A : (m, k) array.
    B : (k, n) array.
    out : (m, n) Fortran-ordered array or None (allocated).
    alpha, beta : scalars.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    A = np.asfortranarray(A, dtype=float)
    B = np.asfortranarray(B, dtype=float)
    if out is None:
        out = np.empty((A.shape[0], B.shape[1]), order="F")
        beta = 0.0
    kernels_module().gemm_columns(A, B, out, alpha, beta)
    return out


@contextmanager
def sampling_threads(n_threads: int | None = None) -> Iterator[None]:
    """Context in which BLAS is single-threaded and the kernels use ``n_threads`` threads."""
    kern = kernels_module()
    before = kern.openmp_max_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads is not None:
            kern.set_num_threads(int(n_threads))
        try:
            yield
        finally:
            kern.set_num_threads(before)
