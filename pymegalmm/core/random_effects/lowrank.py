"""Several random effects, all but one of low rank: a diagonal covariance plus a Woodbury term.

With random effects ``m = 1..M`` and grid point ``g`` (proportions ``h_m``, residual
share ``e = 1 - sum h``) the covariance of a column is
``V_g = h_1 Z_1 K_1 Z_1' + sum_{m >= 2} h_m Z_m K_m Z_m' + e I``.  The effect with
the most coefficients is the *diagonalised* one (effect 1 here, whatever its place in
the formula): the rows are rotated by ``Qt``, the eigenvectors of ``Z_1 K_1 Z_1'``
(exactly as :class:`~pymegalmm.core.random_effects.DiagonalRandomEffect` does), so
that in rotated rows::

    V_g = Lambda_g + C A_g^2 C',   Lambda_g = diag(h_1 d + e),   C = Qt [Z_2 T_2, ..., Z_M T_M]

with ``T_m T_m' = K_m`` (Cholesky) and ``A_g = diag(sqrt(h_m))`` repeated over each
effect's ``r_m`` columns.  ``C`` has ``r_o = r_2 + ... + r_M`` columns (the *low rank*).
With ``M_g = I + A_g C' Lambda_g^-1 C A_g = R_g' R_g`` (``r_o x r_o``, one Cholesky
factor per grid point, shared by every column) the Woodbury identity and the
matrix determinant lemma give::

    V_g^-1 = Lambda_g^-1 - H_g H_g',   H_g = Lambda_g^-1 C A_g R_g^-1   (n x r_o)
    log |V_g| = sum_i log (h_1 d_i + e) + 2 sum_k log (R_g)_kk

so a quadratic form costs ``O(n r_o)`` per column and grid point instead of ``O(n^2)``.
Better still, ``Lambda_g = e_g diag(1 + s_g d)`` depends on the grid point only through
``s_g = h_1 / e`` and a scalar, and many grid points share ``s`` (32 distinct values
among 55 points with two effects and ``h2_divisions=10``; every point with ``h_1 = 0``
has ``s = 0``), and rows with ``d_i = 0`` do not depend on ``s`` at all.  So
``H_g' E = B_g P_s' E`` with ``P_s = diag(1 / (1 + s d)) C`` computed once per distinct
``s`` and ``B_g = R_g^-T A_g / e_g`` (``r_o x r_o``) per grid point (kernel
``grid_sums_of_squares_lowrank``).

Random effects in whitened coefficients: ``v_1`` in the basis ``S`` of the
diagonalised effect (``S S' = K_1``, ``S' Z_1'Z_1 S = diag(d)``) and ``v_m`` in the
basis ``T_m``, all with prior ``N(0, h_m / tau I)``.  Given a column's rotated
residual ``y`` they are drawn jointly and exactly: ``v_o = (v_2, ..., v_M)`` from its
posterior with ``v_1`` integrated out, ``v_o = A_g w`` with
``w ~ N(R_g^-1 H_g' y, (tau M_g)^-1)``, then ``v_1`` given ``v_o``, elementwise as
with one random effect (residual share ``e``) on ``y - C v_o``.  This is the upper
Cholesky factor of the joint posterior precision taken in the order ``(v_1, v_o)``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..._config import kernels_module
from ...linalg import matmul, product
from .base import GramStats, _as_dense
from .diagonal import diagonal_basis, weighted_gram_stats


def _whitening_factor(K: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor ``T`` with ``T T' = K``, with a clear error when ``K`` is not PD."""
    try:
        return sla.cholesky(K, lower=True)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "the covariance of a random effect is not positive definite after rank "
            "handling; increase K_eigen_tol"
        ) from exc


def _distinct(x: np.ndarray, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value of ``x`` among its distinct values (equal up to ``rtol``)."""
    order = np.argsort(x, kind="stable")
    index = np.empty(x.size, dtype=np.intp)
    values: list[float] = []
    for i in order:
        if not values or x[i] - values[-1] > rtol * abs(values[-1]):
            values.append(float(x[i]))
        index[i] = len(values) - 1
    return index, np.asarray(values)


class LowRankRandomEffects:
    """Several random effects: rotation to one effect's eigenbasis, Woodbury for the others.

    Parameters
    ----------
    ZLs : list of (n, r_m) arrays or sparse matrices
        Designs after rank handling, one per random effect (formula order).
    K_tildes : list of (r_m, r_m) arrays
        Covariances of the coefficients, positive definite.
    Ls : list of (levels_m, r_m) arrays
        Maps back to the levels of each K.
    grid : (M, G) array
        The h2 grid (rows in formula order).
    eig_tol : float
        Relative tolerance below which an eigenvalue of the diagonalised effect's
        ``S' Z'Z S`` counts as 0.
    Z_all : list of (N, r_m) arrays or sparse matrices, optional
        The designs over all rows of the data when ``ZLs`` hold a subset of them;
        default ``ZLs``.
    diagonalised : int, optional
        Which effect the rows are rotated for; default the one with the most
        coefficients (the first of them on a tie).
    eigs : list of (eigenvalues, eigenvectors) or None, optional
        ``scipy.linalg.eigh`` of each ``K_tilde`` when already computed (only the
        diagonalised effect's is used).

    Notes
    -----
    The coefficients (``n_coef = r_1 + r_o``) are ordered with the diagonalised
    effect first, then the others in formula order; :meth:`to_levels` returns the
    levels in formula order, as the other back-ends do.
    """

    def __init__(
        self,
        ZLs: list[np.ndarray | sp.spmatrix],
        K_tildes: list[np.ndarray],
        Ls: list[np.ndarray],
        grid: np.ndarray,
        eig_tol: float = 1e-10,
        Z_all: list[np.ndarray | sp.spmatrix] | None = None,
        diagonalised: int | None = None,
        eigs: list[tuple[np.ndarray, np.ndarray] | None] | None = None,
    ) -> None:
        n_effects = len(ZLs)
        sizes = [K.shape[0] for K in K_tildes]
        first = int(np.argmax(sizes)) if diagonalised is None else int(diagonalised)
        others = [m for m in range(n_effects) if m != first]
        Z_all = ZLs if Z_all is None else Z_all
        self.n_effects = n_effects
        self.diagonalised, self.others = first, others
        self.grid = grid

        # Rows rotated to the diagonalised effect's eigenbasis.
        n = ZLs[first].shape[0]
        basis = diagonal_basis(ZLs[first], K_tildes[first], eig_tol,
                               None if eigs is None else eigs[first])
        self.Q = np.asfortranarray(basis.Q)
        self.n, self.n_pos = n, basis.n_pos
        self.r1 = basis.d.shape[0]
        self.d_coef = np.ascontiguousarray(basis.d)  # (r_1,)
        self.sqrt_d = np.sqrt(self.d_coef[:self.n_pos])
        d_rows = np.zeros(n)
        d_rows[:self.n_pos] = basis.d[:self.n_pos]

        # The other effects, whitened and rotated: C = Qt [Z_m T_m].
        T = [_whitening_factor(K_tildes[m]) for m in others]
        self.rank = sum(sizes[m] for m in others)  # r_o
        ZT = (np.hstack([_as_dense(ZLs[m]) @ Tm for m, Tm in zip(others, T, strict=True)])
              if others else np.zeros((n, 0)))
        self.C = matmul(self.Q, ZT, trans_a=True)  # (n, r_o)
        self.r = self.r1 + self.rank

        # Coefficients -> levels (formula order) and -> genetic values over all rows.
        level_sizes = [Ls[m].shape[0] for m in range(n_effects)]
        level_start = np.concatenate([[0], np.cumsum(level_sizes)]).astype(int)
        col_start = {first: 0}
        pos = self.r1
        for m in others:
            col_start[m] = pos
            pos += sizes[m]
        bases = {first: basis.S, **dict(zip(others, T, strict=True))}
        self.to_levels_matrix = np.zeros((int(level_start[-1]), self.r), order="F")
        Z_basis = np.empty((_as_dense(Z_all[0]).shape[0], self.r), order="F")
        for m in range(n_effects):
            cols = slice(col_start[m], col_start[m] + sizes[m])
            self.to_levels_matrix[level_start[m]:level_start[m + 1], cols] = (
                _as_dense(Ls[m]) @ bases[m])
            Z_basis[:, cols] = _as_dense(Z_all[m]) @ bases[m]
        self.Z_all = Z_basis

        # Per grid point: diagonal part, Woodbury factors, log-determinants.
        n_grid = grid.shape[1]
        self.h1 = np.ascontiguousarray(grid[first])
        self.e = 1.0 - grid.sum(axis=0)
        lam = self.h1[:, None] * d_rows[None, :] + self.e[:, None]  # (G, n)
        self.W = np.ascontiguousarray(1.0 / lam)
        self.W_T = np.ascontiguousarray(self.W.T)
        a = np.zeros((n_grid, self.rank))
        for m in others:
            a[:, col_start[m] - self.r1:col_start[m] - self.r1 + sizes[m]] = np.sqrt(
                grid[m])[:, None]
        self.a = a
        # Lambda_g = e_g diag(1 + s_g d): grid points with the same s = h_1 / e share
        # C' Lambda_g^-1 up to the factor 1 / e_g.
        self.s_index, s_values = _distinct(self.h1 / self.e)
        self.n_diagonals = s_values.size
        f = 1.0 / (1.0 + s_values[:, None] * d_rows[None, :self.n_pos])  # (S, n_pos)
        C_pos = self.C[:self.n_pos]
        self.U = np.asfortranarray(np.hstack([f_s[:, None] * C_pos for f_s in f])
                                   if self.rank else np.zeros((self.n_pos, 0)))
        self.C_rest = np.asfortranarray(self.C[self.n_pos:])
        self.R = np.empty((n_grid, self.rank, self.rank))
        self.B = np.empty((self.rank, self.rank, n_grid), order="F")
        self.H = np.empty((n, n_grid * self.rank), order="F")
        self.log_det = np.log(lam).sum(axis=1)
        for g in range(n_grid):
            lam_inv = np.ones(n)
            lam_inv[:self.n_pos] = f[self.s_index[g]]
            lam_inv /= self.e[g]
            WCA = lam_inv[:, None] * self.C * a[g][None, :]  # Lambda^-1 C A
            M = (self.C * a[g][None, :]).T @ WCA
            M[np.diag_indices_from(M)] += 1.0
            R = sla.cholesky(M, lower=False, check_finite=False)
            self.R[g] = R
            self.B[:, :, g] = sla.solve_triangular(R, np.diag(a[g] / self.e[g]), trans="T",
                                                   lower=False, check_finite=False)
            self.H[:, g * self.rank:(g + 1) * self.rank] = WCA @ sla.solve_triangular(
                R, np.eye(self.rank), lower=False, check_finite=False)
            self.log_det[g] += 2.0 * np.log(np.diag(R)).sum()
        self.log_det = np.ascontiguousarray(self.log_det)

    @property
    def n_coef(self) -> int:
        """Number of random-effect coefficients per column (all effects)."""
        return self.r

    def rotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Q' @ A``, Fortran-ordered (``Q`` read transposed in place)."""
        return matmul(self.Q, A, out, trans_a=True)

    def unrotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Q @ A``, Fortran-ordered."""
        return matmul(self.Q, A, out)

    def _H(self, g: int) -> np.ndarray:
        return self.H[:, g * self.rank:(g + 1) * self.rank]

    def gram_stats(self, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray) -> GramStats:
        """Whitened Gram matrices and cross-products for step 1 (rotated ``X``, ``Y``).

        The diagonal part as with one random effect, minus the Woodbury term
        ``(H_g' X)' (H_g' y)`` for each grid point in use.
        """
        stats = weighted_gram_stats(self.W, X, Y, grid_index)
        if not self.rank:
            return stats
        used = np.unique(grid_index)
        for i, g in enumerate(used):  # loop over grid points in use, not traits
            cols = np.flatnonzero(stats.gram_index == i)
            H = self._H(g)
            HX = H.T @ X
            HY = H.T @ Y[:, cols]
            stats.gram[i] -= HX.T @ HX
            stats.XtWy[:, cols] -= HX.T @ HY
            stats.yWy[cols] -= np.einsum("kj,kj->j", HY, HY)
        return stats

    def grid_quadratic_forms(self, E: np.ndarray) -> np.ndarray:
        """``SS[j, g] = E_j' V_g^-1 E_j`` for all columns and grid points, ``(c, G)``."""
        out = np.empty((E.shape[1], self.W.shape[0]))
        kernels_module().grid_sums_of_squares_lowrank(np.asfortranarray(E), self.W_T, self.U,
                                                      self.C_rest, self.B, self.s_index, out)
        return out

    def quadratic_forms_at(self, E: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
        """``E_j' V_{g_j}^-1 E_j`` at one grid point per column, ``(c,)``.

        The diagonal part, minus ``|H_g' E_j|^2`` per grid point in use: ``O(n r_o)``
        per column.
        """
        out = np.einsum("ij,ij->j", self.W_T[:, grid_index], np.square(E))
        if self.rank:
            for g in np.unique(grid_index):  # grid points in use, not the whole grid
                cols = np.flatnonzero(grid_index == g)
                HE = self._H(g).T @ E[:, cols]
                out[cols] -= np.einsum("kj,kj->j", HE, HE)
        return out

    def sample_effects(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw all random effects (``n_coef x c``) given rotated residuals ``E``.

        ``z`` (``n_coef x c``) are standard normals: the first ``r_1`` rows for the
        diagonalised effect, the rest for the others.  Effects with ``h_m = 0`` are
        exactly 0.  ``out`` is an optional Fortran-ordered buffer.
        """
        return self._draw(E, grid_index, tau, z, out)[0]

    def sample_effects_and_residual(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray, out: np.ndarray | None = None, resid_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`sample_effects`, also returning ``base - Qt Z u`` (rotated, ``n x c``)."""
        resid = np.empty(base.shape, order="F") if resid_out is None else resid_out
        return self._draw(E, grid_index, tau, z, out, base, resid)

    def _draw(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        out: np.ndarray | None, base: np.ndarray | None = None,
        resid: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        c = E.shape[1]
        r1, k = self.r1, self.n_pos
        v = np.empty((self.r, c), order="F") if out is None else out
        sqrt_tau = np.sqrt(np.asarray(tau, dtype=float))
        for g in np.unique(grid_index):  # loop over grid points in use, not traits
            cols = np.flatnonzero(grid_index == g)
            y = E[:, cols]
            fitted = None
            if self.rank:  # v_o = A w, w ~ N(R^-1 H'y, (tau R'R)^-1); then y - C v_o
                w = self._H(g).T @ y + z[r1:, cols] / sqrt_tau[cols]
                w = sla.solve_triangular(self.R[g], w, lower=False, check_finite=False)
                v_o = self.a[g][:, None] * w
                v[r1:, cols] = v_o
                fitted = self.C @ v_o
                y = y - fitted
            h1, e = self.h1[g], self.e[g]
            if h1 > 0.0:  # v_1 | v_o elementwise: precision tau (d / e + 1 / h1)
                denom = self.d_coef * h1 + e
                v1 = z[:r1, cols] * (np.sqrt(h1 * e / denom)[:, None] / sqrt_tau[cols])
                v1[:k] += (self.sqrt_d * h1 / denom[:k])[:, None] * y[:k]
            else:
                v1 = np.zeros((r1, cols.size))
            v[:r1, cols] = v1
            if resid is not None:
                rc = base[:, cols] if fitted is None else base[:, cols] - fitted
                rc[:k] -= self.sqrt_d[:, None] * v1[:k]
                resid[:, cols] = rc
        return v, resid

    def genetic_values(self, v: np.ndarray) -> np.ndarray:
        """Rotated genetic values ``Qt Z u`` for coefficients ``v`` (``n x c``)."""
        out = matmul(self.C, v[self.r1:])
        out[:self.n_pos] += self.sqrt_d[:, None] * v[:self.n_pos]
        return out

    def to_levels(self, v: np.ndarray) -> np.ndarray:
        """Random effects per level (all effects stacked, formula order) from coefficients."""
        return product(self.to_levels_matrix, v)

    #: levels are not mapped to rows by a sparse product here
    levels_map_rows = False

    def genetic_values_all_rows(self, v: np.ndarray, levels: np.ndarray | None = None
                                ) -> np.ndarray:
        """``Z u`` over all rows of the data (not rotated), ``(N, c)``; ``levels`` unused."""
        return matmul(self.Z_all, v)
