"""Two or more random effects: a Cholesky factor per grid point, no rotation.

Used when the random effects other than the largest have too many coefficients for
the low-rank back-end (:mod:`.lowrank`; rule in
:func:`pymegalmm.core.precompute.backend_kind`).

One Cholesky factor of ``V(h) = sum_m h_m Z_m K_m Z_m' + (1 - sum h) I`` (``n x n``)
and one of the mixed-model equations (``r x r``) are stored per grid point.
Memory grows as ``G (n^2 + r^2)``: :func:`pymegalmm.core.memory.estimate_precompute_bytes`
reports it before anything is built.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...linalg import product
from .base import GramStats, _as_dense


class DenseRandomEffects:
    """Two or more random effects: Cholesky factors per grid point, no rotation.

    Parameters
    ----------
    ZLs : list of (n, r_m) arrays or sparse matrices
        Designs after rank handling, one per random effect.
    K_tildes : list of (r_m, r_m) arrays
        Covariances of the coefficients, positive definite.
    Ls : list of (levels_m, r_m) arrays
        Maps back to the levels of each K.
    grid : (m, G) array
        The h2 grid.
    Z_all : list of (N, r_m) arrays or sparse matrices, optional
        The designs over all rows of the data when ``ZLs`` hold a subset of them;
        default ``ZLs``.
    """

    def __init__(
        self,
        ZLs: list[np.ndarray | sp.spmatrix],
        K_tildes: list[np.ndarray],
        Ls: list[np.ndarray],
        grid: np.ndarray,
        Z_all: list[np.ndarray | sp.spmatrix] | None = None,
    ) -> None:
        self.n_effects = len(ZLs)
        self.grid = grid
        self.Z = sp.csr_matrix(sp.hstack([sp.csr_matrix(z) for z in ZLs]))
        self.Z_all = (self.Z if Z_all is None
                      else sp.csr_matrix(sp.hstack([sp.csr_matrix(z) for z in Z_all])))
        self.n, self.r = self.Z.shape
        self.sizes = [z.shape[1] for z in ZLs]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.to_levels_matrix = np.asfortranarray(sla.block_diag(*[_as_dense(L) for L in Ls]))
        ZK = [_as_dense(z @ K @ z.T) if sp.issparse(z) else z @ K @ z.T
              for z, K in zip(ZLs, K_tildes, strict=True)]
        K_inv = [sla.inv(K) for K in K_tildes]
        ZtZ = _as_dense(self.Z.T @ self.Z)
        n_grid = grid.shape[1]
        self.chol_V = np.empty((n_grid, self.n, self.n))
        self.chol_C = np.empty((n_grid, self.r, self.r))
        self.active = np.zeros((n_grid, self.r), dtype=bool)
        self.log_det = np.empty(n_grid)
        for g in range(n_grid):
            h = grid[:, g]
            V = (1.0 - h.sum()) * np.eye(self.n)
            for m in range(self.n_effects):
                V += h[m] * ZK[m]
            self.chol_V[g] = sla.cholesky(V, lower=True)
            self.log_det[g] = 2.0 * np.log(np.diag(self.chol_V[g])).sum()
            C = ZtZ / (1.0 - h.sum())
            for m in range(self.n_effects):
                sl = slice(self.offsets[m], self.offsets[m + 1])
                if h[m] > 0:
                    C[sl, sl] += K_inv[m] / h[m]
                    self.active[g, sl] = True
            act = self.active[g]
            C_act = C[np.ix_(act, act)]
            U = np.eye(self.r)
            if act.any():
                U[np.ix_(act, act)] = sla.cholesky(C_act, lower=False)
            self.chol_C[g] = U

    @property
    def n_coef(self) -> int:
        """Number of random-effect coefficients per column (all effects)."""
        return self.r


    def rotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Identity (no rotation with several random effects), Fortran-ordered copy."""
        if out is None:
            return np.array(A, order="F", dtype=float, copy=True)
        out[...] = A
        return out

    unrotate = rotate

    def _whiten(self, g: int, A: np.ndarray) -> np.ndarray:
        return sla.solve_triangular(self.chol_V[g], A, lower=True, check_finite=False)

    def gram_stats(self, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray) -> GramStats:
        """Whitened Gram matrices and cross-products for step 1, one group per grid point."""
        used, gram_index = np.unique(grid_index, return_inverse=True)
        p, t = X.shape[1], Y.shape[1]
        gram = np.empty((len(used), p, p))
        XtWy = np.empty((p, t), order="F")
        yWy = np.empty(t)
        for i, g in enumerate(used):  # loop over grid points in use, not traits
            cols = np.flatnonzero(gram_index == i)
            Xw = self._whiten(g, X)
            Yw = self._whiten(g, Y[:, cols])
            gram[i] = Xw.T @ Xw
            XtWy[:, cols] = Xw.T @ Yw
            yWy[cols] = np.square(Yw).sum(axis=0)
        return GramStats(gram, gram_index.astype(np.intp), XtWy, yWy)

    def grid_quadratic_forms(self, E: np.ndarray) -> np.ndarray:
        """``SS[j, g] = E_j' V_g^-1 E_j`` for all columns and grid points, ``(t, G)``."""
        SS = np.empty((E.shape[1], self.grid.shape[1]))
        for g in range(self.grid.shape[1]):
            SS[:, g] = np.square(self._whiten(g, E)).sum(axis=0)
        return SS

    def quadratic_forms_at(self, E: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
        """``E_j' V_{g_j}^-1 E_j`` at one grid point per column, ``(c,)``.

        One triangular solve per grid point in use: ``O(n^2)`` per column.
        """
        out = np.empty(E.shape[1])
        for g in np.unique(grid_index):  # grid points in use, not the whole grid
            cols = np.flatnonzero(grid_index == g)
            out[cols] = np.square(self._whiten(g, E[:, cols])).sum(axis=0)
        return out

    def sample_effects(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw all random effects ``u`` (``r x c``) given residuals ``E``.

        ``u ~ N(C^-1 Z'e / (1 - sum h), (tau C)^-1)`` with
        ``C = Z'Z / (1 - sum h) + blockdiag(K_m^-1 / h_m)``; effects with
        ``h_m = 0`` are exactly 0.  ``out`` is an optional Fortran-ordered buffer.
        """
        u = np.zeros((self.r, E.shape[1]), order="F") if out is None else out
        u[...] = 0.0
        ZtE = np.asarray(self.Z.T @ E)
        for g in np.unique(grid_index):
            cols = np.flatnonzero(grid_index == g)
            act = self.active[g]
            if not act.any():
                continue
            U = self.chol_C[g][np.ix_(act, act)]
            b = ZtE[np.ix_(act, cols)] / (1.0 - self.grid[:, g].sum())
            mean = sla.cho_solve((U, False), b, check_finite=False)
            noise = sla.solve_triangular(U, z[np.ix_(act, cols)], lower=False, check_finite=False)
            u[np.ix_(act, cols)] = mean + noise / np.sqrt(tau[cols])
        return u

    def sample_effects_and_residual(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray, out: np.ndarray | None = None, resid_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`sample_effects`, also returning ``base - Z u`` (``n x c``)."""
        u = self.sample_effects(E, grid_index, tau, z, out=out)
        resid = np.empty_like(base, order="F") if resid_out is None else resid_out
        np.subtract(base, self.Z @ u, out=resid)
        return u, resid

    def genetic_values(self, u: np.ndarray) -> np.ndarray:
        """Genetic values ``Z u`` (``n x t``, no rotation)."""
        return np.asfortranarray(self.Z @ u)

    def to_levels(self, u: np.ndarray) -> np.ndarray:
        """Random effects per level (all effects stacked) from coefficients ``u``."""
        return product(self.to_levels_matrix, u)

    #: levels are not mapped to rows by a sparse product here
    levels_map_rows = False

    def genetic_values_all_rows(self, u: np.ndarray, levels: np.ndarray | None = None
                                ) -> np.ndarray:
        """``Z u`` over all rows of the data, ``(N, t)``; ``levels`` unused."""
        return np.asfortranarray(self.Z_all @ u)
