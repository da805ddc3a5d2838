# cython: language_level=3
"""OpenMP build flag and thread count of the kernels.

``omp_set_num_threads`` changes the OpenMP runtime of the whole process (one shared
libgomp/libomp), so :func:`set_num_threads` governs the ``prange`` loops of every
kernel module, not only this one.
"""

from ._openmp_helpers cimport PYMEGALMM_OPENMP, omp_get_max_threads, omp_set_num_threads


def openmp_enabled() -> bool:
    """Return True when the kernels were compiled with OpenMP."""
    return PYMEGALMM_OPENMP == 1


def openmp_max_threads() -> int:
    """Return the number of threads OpenMP regions will use."""
    return omp_get_max_threads()


def set_num_threads(int n) -> None:
    """Set the number of OpenMP threads used by the kernels (no-op when serial)."""
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    omp_set_num_threads(n)
