"""The written contract every random-effect back-end fulfils.

A back-end holds everything that depends only on the random-effect design and
the h2 grid, for one set of rows (a trait group of a missing-data map), and
offers the same operations whatever the number of random effects, so that the
column-LMM step (:mod:`pymegalmm.core.column_lmm`) never branches on it:

==============================  ===================================================
``rotate(A)`` / ``unrotate(A)``  to / from the back-end's row basis (``Qt A`` / ``Q A``)
``gram_stats(X, Y, index)``      whitened Gram matrices and cross-products (step 1)
``grid_quadratic_forms(E)``      ``E_j' V_g^-1 E_j`` for every column and grid point
``quadratic_forms_at(E, index)``  ``E_j' V_g^-1 E_j`` at one grid point per column (MH step)
``log_det``                      ``log |V_g|`` per grid point
``sample_effects(...)``          draw the coefficients (``r x c``)
``sample_effects_and_residual``  the same, plus ``base - Z u`` (rotated)
``genetic_values(v)``            ``Z u`` in the rotated rows
``genetic_values_all_rows(v)``   ``Z u`` over every row of the data (not rotated)
``to_levels(v)``                 random effects per level of K
``levels_map_rows``              whether ``genetic_values_all_rows(v, levels)`` is a
                                 sparse product of the levels (cheaper than ``unrotate``)
``n_coef``                       coefficients per column
==============================  ===================================================

Every method returns one type.  Implementations: :class:`DiagonalRandomEffect`
(one random effect, rotation to a diagonal covariance),
:class:`LowRankRandomEffects` (several, rotation for the largest, a Woodbury form
for the others when their total rank is low) and :class:`DenseRandomEffects`
(several, Cholesky factors per grid point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp


def _as_dense(a: np.ndarray | sp.spmatrix) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a, dtype=float)


@dataclass
class GramStats:
    """Whitened sufficient statistics of the per-trait regressions (step 1)."""

    gram: np.ndarray  # (G', p, p)
    gram_index: np.ndarray  # (t,) into gram
    XtWy: np.ndarray  # (p, t) Fortran-ordered
    yWy: np.ndarray  # (t,)


class RandomEffectsBackend(Protocol):
    """Protocol of a random-effect back-end (see the module docstring)."""

    n: int
    r: int
    grid: np.ndarray
    log_det: np.ndarray
    to_levels_matrix: np.ndarray
    #: ``genetic_values_all_rows(v, levels)`` maps the levels to rows with a sparse
    #: product (one random effect of full rank, a sparse ``Z``)
    levels_map_rows: bool

    @property
    def n_coef(self) -> int:
        """Coefficients per column."""

    def rotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``A`` to the back-end's basis, Fortran-ordered."""

    def unrotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``A`` back from the back-end's basis, Fortran-ordered."""

    def gram_stats(self, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray) -> GramStats:
        """Whitened sufficient statistics of the per-column regressions."""

    def grid_quadratic_forms(self, E: np.ndarray) -> np.ndarray:
        """``(c, G)`` quadratic forms ``E_j' V_g^-1 E_j``."""

    def quadratic_forms_at(self, E: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
        """``(c,)`` quadratic forms ``E_j' V_{g_j}^-1 E_j`` at grid point ``g_j`` of each column."""

    def sample_effects(self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray,
                       z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Coefficients ``(n_coef, c)`` given the residuals ``E``."""

    def sample_effects_and_residual(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray, out: np.ndarray | None = None, resid_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and ``base - Z u`` (rotated); ``resid_out`` may be ``base`` itself."""

    def genetic_values(self, v: np.ndarray) -> np.ndarray:
        """``Z u`` in the rotated rows."""

    def genetic_values_all_rows(self, v: np.ndarray, levels: np.ndarray | None = None
                                ) -> np.ndarray:
        """``Z u`` over every row of the data; ``levels`` (``to_levels(v)``, optional) may
        be used instead of ``v`` when that is cheaper."""

    def to_levels(self, v: np.ndarray) -> np.ndarray:
        """Random effects per level of K."""
