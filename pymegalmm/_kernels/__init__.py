"""Hot loops of one Gibbs iteration, in Cython with OpenMP over traits.

Every kernel works on plain contiguous float64 arrays and knows nothing about
names, formulas or pandas.  Per-trait arrays (``n x t``, ``p x t``, ...) are
Fortran-ordered so that one trait's column is contiguous.  Random numbers are
drawn beforehand by the chain's ``numpy.random.Generator`` and passed in, or, where
their count is not known beforehand (``fill_random_blocks``; the rejection draws of
``sample_ard_delta``, which run serially), drawn inside from NumPy bit generators
passed in, with NumPy's own distribution functions.  Each trait is processed by
exactly one thread with a fixed operation order, so the results are bit-identical
for any number of threads.

The slow, obvious NumPy versions of these kernels live in ``tests/reference.py``;
the tests check that both agree on the same random numbers (the same pre-drawn
arrays, or bit generators in the same state).

The kernels are split by topic into compiled modules; this package re-exports
all of them, so callers use ``pymegalmm._kernels.<name>`` only:

``_openmp``
    ``openmp_enabled``, ``openmp_max_threads``, ``set_num_threads``.  The thread
    count is process-wide (one OpenMP runtime), so it governs every module.
``_regression``
    ``weighted_grams``, ``weighted_cross_products``, ``sample_coefficients`` (step 1).
``_grid``
    ``sample_grid_index``, ``grid_sums_of_squares`` (steps 2 and 4, h2 grid),
    ``grid_sums_of_squares_lowrank`` (the same with a low-rank Woodbury correction).
``_effects``
    ``sample_diagonal_effects``, ``effect_tables`` (steps 2 and 5, random effects).
``_shrinkage``
    ``sample_ard_delta`` (step 7, ARD global shrinkage).
``_gemm``
    ``gemm_columns``, ``subtract_two_products``, ``GEMM_BLOCK``, ``GEMM_ROW_BLOCK``,
    ``GEMV_MAX_COLUMNS`` (tiled dense products).
``_factor_scores``
    ``sample_factor_scores_by_pattern`` (step 6 with several trait groups).
``_random``
    ``fill_random_blocks`` (random draws in fixed column blocks).

Shared Cython declarations (``cimport`` only, nothing at run time):
``_openmp_helpers.pxd``, the one OpenMP shim that lets the same sources build
with or without OpenMP, and ``_dense.pxd``, the small inline Cholesky factor and
triangular solves used inside the parallel loops.
"""

from ._effects import effect_tables, sample_diagonal_effects
from ._factor_scores import sample_factor_scores_by_pattern
from ._gemm import (
    GEMM_BLOCK,
    GEMM_ROW_BLOCK,
    GEMV_MAX_COLUMNS,
    gemm_columns,
    subtract_two_products,
)
from ._grid import (
    LOWRANK_BLOCK,
    grid_sums_of_squares,
    grid_sums_of_squares_lowrank,
    sample_grid_index,
)
from ._openmp import openmp_enabled, openmp_max_threads, set_num_threads
from ._random import fill_random_blocks
from ._regression import sample_coefficients, weighted_cross_products, weighted_grams
from ._shrinkage import sample_ard_delta

__all__ = [
    "GEMM_BLOCK",
    "GEMM_ROW_BLOCK",
    "GEMV_MAX_COLUMNS",
    "LOWRANK_BLOCK",
    "effect_tables",
    "fill_random_blocks",
    "gemm_columns",
    "grid_sums_of_squares",
    "grid_sums_of_squares_lowrank",
    "openmp_enabled",
    "openmp_max_threads",
    "sample_ard_delta",
    "sample_coefficients",
    "sample_diagonal_effects",
    "sample_factor_scores_by_pattern",
    "sample_grid_index",
    "set_num_threads",
    "subtract_two_products",
    "weighted_cross_products",
    "weighted_grams",
]
