"""Everything that depends only on the data and the h2 grid, computed once.

Two back-ends share one interface, so that :mod:`pymegalmm.sampler` reads the
same whatever the number of random effects:

* :class:`DiagonalRandomEffect` (one random effect, the fast path).  The rows
  are rotated by ``Qt``, the eigenvectors of ``Z K Z'``, so that the covariance
  ``h Z K Z' + (1 - h) I`` is diagonal for every grid point ``h``.  The random
  effect itself is sampled in the basis ``S`` that simultaneously diagonalises
  ``K`` and ``Z'Z`` (``S S' = K``, ``S' Z'Z S = diag(d)``): then ``Z S`` has
  orthogonal columns, which we take as the first columns of ``Q``, so every
  full conditional is elementwise in rotated space and needs no ``n x n`` work.
* :class:`DenseRandomEffects` (two or more random effects).  Rows are not
  rotated; one Cholesky factor of ``V(h) = sum_m h_m Z_m K_m Z_m' + (1 - sum h) I``
  (``n x n``) and one of the mixed-model equations (``r x r``) are stored per
  grid point.  Memory grows as ``G (n^2 + r^2)``: use
  :func:`estimate_precompute_bytes` before building.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ._config import kernels_module
from .linalg import matmul

H2Prior = Callable[[np.ndarray], np.ndarray] | np.ndarray | None


def make_h2_grid(n_effects: int, divisions: int | list[int]) -> np.ndarray:
    """Return MegaLMM's discrete grid of variance proportions.

    For random effect ``m`` the candidate values are ``0, 1/d_m, ..., 1``; all
    combinations are formed (first random effect varying fastest) and those whose
    sum is strictly below 1 are kept.  The test uses exact integer arithmetic
    (``sum_m i_m / d_m < 1``), unlike R MegaLMM, whose floating-point test keeps
    some vectors summing to exactly 1 with two or more random effects (METHOD.md
    Q8); with one random effect both give ``0, 1/d, ..., (d-1)/d``.

    Parameters
    ----------
    n_effects : int
        Number of random effects ``m`` (>= 1).
    divisions : int or list of int
        ``h2_divisions`` per random effect.

    Returns
    -------
    numpy.ndarray
        ``(m, G)`` array, one grid point per column; column 0 is all zeros.
    """
    if n_effects < 1:
        raise ValueError("the h2 grid needs at least one random effect")
    divs = [divisions] * n_effects if np.isscalar(divisions) else list(divisions)
    if len(divs) != n_effects or any(int(d) < 1 for d in divs):
        raise ValueError(f"h2_divisions must be positive integers, one per random effect: {divs}")
    divs = [int(d) for d in divs]
    common = int(np.lcm.reduce(divs))
    columns = []
    # itertools.product varies the last factor fastest; reverse to make the first fastest
    for combo in itertools.product(*[range(d + 1) for d in reversed(divs)]):
        idx = combo[::-1]
        if sum(i * (common // d) for i, d in zip(idx, divs, strict=True)) < common:
            columns.append([i / d for i, d in zip(idx, divs, strict=True)])
    return np.asarray(columns, dtype=float).T.copy()


def h2_log_prior(prior: H2Prior, grid: np.ndarray, what: str) -> np.ndarray:
    """Normalised log prior weights of the grid points.

    Parameters
    ----------
    prior : callable, array or None
        ``None`` is the flat prior.  A callable receives the ``(m, G)`` grid and
        returns ``G`` non-negative weights; an array gives the weights directly.
    grid : numpy.ndarray
        ``(m, G)`` grid from :func:`make_h2_grid`.
    what : str
        Name used in error messages ("h2_prior_resids" or "h2_prior_factors").

    Returns
    -------
    numpy.ndarray
        ``(G,)`` log weights summing (after exp) to one; ``-inf`` where the weight is 0.
    """
    n_grid = grid.shape[1]
    if prior is None:
        weights = np.ones(n_grid)
    elif callable(prior):
        weights = np.asarray(prior(grid), dtype=float).reshape(-1)
    else:
        weights = np.asarray(prior, dtype=float).reshape(-1)
    if weights.shape != (n_grid,):
        raise ValueError(
            f"{what} must give one weight per grid point ({n_grid}), got {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"{what} weights must be finite, non-negative and not all zero")
    with np.errstate(divide="ignore"):
        return np.log(weights / weights.sum())


def unidentifiable_fixed_effects(
    X1: np.ndarray, observed: np.ndarray, rtol: float = 1e-7
) -> np.ndarray:
    """Flag, per trait, the columns of ``X1`` its observed rows cannot identify.

    Going left to right, a column is kept when it raises the rank of the kept
    columns restricted to the trait's observed rows (relative tolerance ``rtol``
    on the singular values, like the pivoted QR of R's ``caret::findLinearCombos``
    that R MegaLMM uses per missing-data group); otherwise it is flagged.
    Example: a population never observed in an environment.  With a flat prior
    such a coefficient would only be informed by the imputed cells and wander;
    the sampler fixes it at 0 for that trait instead.

    Parameters
    ----------
    X1 : (n, b1) fixed-effect design.
    observed : (n, t) bool, True where Y is observed.
    rtol : float
        Relative tolerance of the rank test.

    Returns
    -------
    numpy.ndarray
        ``(t, b1)`` uint8, 1 where the coefficient is dropped for that trait.
    """
    n, b1 = X1.shape
    t = observed.shape[1]
    drop = np.zeros((t, b1), dtype=np.uint8)
    if b1 == 0:
        return drop
    patterns, inverse = np.unique(observed.T, axis=0, return_inverse=True)
    for i, rows in enumerate(patterns):
        X = X1[rows]
        kept: list[int] = []
        flags = np.zeros(b1, dtype=np.uint8)
        for c in range(b1):
            cols = X[:, [*kept, c]]
            sv = np.linalg.svd(cols, compute_uv=False) if cols.size else np.zeros(0)
            scale = max(np.abs(X).max(initial=0.0), 1.0)
            if sv.size == len(kept) + 1 and sv[-1] > rtol * max(sv[0], scale):
                kept.append(c)
            else:
                flags[c] = 1
        drop[np.asarray(inverse).reshape(-1) == i] = flags
    return drop


def estimate_precompute_bytes(n: int, r: int, n_grid: int, n_effects: int) -> int:
    """Bytes of float64 precomputes for ``n`` rows, ``r`` random-effect levels, ``G`` grid points.

    One random effect: the rotation ``Q`` (``n x n``), the basis change ``L S``
    (``r x r``) and the weight table (``G x n``).  Several random effects: one
    ``n x n`` and one ``r x r`` Cholesky factor per grid point, plus ``Z K Z'``
    per random effect.
    """
    if n_effects == 1:
        return 8 * (n * n + r * r + n_grid * n)
    return 8 * (n_grid * (n * n + r * r) + n_effects * n * n + n * r)


def _as_dense(a: np.ndarray | sp.spmatrix) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a, dtype=float)


@dataclass
class GramStats:
    """Whitened sufficient statistics of the per-trait regressions (step 1)."""

    gram: np.ndarray  # (G', p, p)
    gram_index: np.ndarray  # (t,) into gram
    XtWy: np.ndarray  # (p, t) Fortran-ordered
    yWy: np.ndarray  # (t,)


class DiagonalRandomEffect:
    """One random effect: rotation to diagonal covariance, elementwise updates.

    Parameters
    ----------
    ZL : (n, r) array or sparse matrix
        Design of the random effect after the rank handling of K (``Z L``).
    K_tilde : (r, r) array
        Covariance of the ``r`` coefficients (positive definite).
    L : (r_levels, r) array
        Map from coefficients back to the levels of K.
    grid : (1, G) array
        The h2 grid.
    eig_tol : float
        Relative tolerance below which an eigenvalue of ``S'Z'ZS`` counts as 0.
    Z_all : (N, r) array or sparse matrix, optional
        The design over all rows of the data when ``ZL`` holds a subset of them
        (a trait group of a missing-data map); default ``ZL``.  Used to predict
        cells outside the group's rows.
    """

    n_effects = 1

    def __init__(
        self,
        ZL: np.ndarray | sp.spmatrix,
        K_tilde: np.ndarray,
        L: np.ndarray,
        grid: np.ndarray,
        eig_tol: float = 1e-10,
        Z_all: np.ndarray | sp.spmatrix | None = None,
    ) -> None:
        Z = _as_dense(ZL)
        n, r = Z.shape
        # K_tilde = T T' with T = U diag(sqrt(lambda)); S = T O where O diagonalises T'Z'ZT
        lam, U = sla.eigh(K_tilde)
        if lam.min() <= 0:
            raise ValueError(
                "the covariance of the random effect is not positive definite after "
                "rank handling; increase K_eigen_tol"
            )
        T = U * np.sqrt(lam)
        ZT = Z @ T
        d, O = sla.eigh(ZT.T @ ZT)
        order = np.argsort(-d, kind="stable")
        d, O = d[order], O[:, order]
        d[d < eig_tol * max(d.max(), 1.0)] = 0.0
        S = T @ O
        n_pos = int(np.count_nonzero(d))
        ZS = Z @ S[:, :n_pos]
        Q_obs = ZS / np.sqrt(d[:n_pos])
        # Orthonormal completion: rotated rows with no random-effect signal.
        if n_pos < n:
            Q_rest = sla.null_space(Q_obs.T) if n_pos > 0 else np.eye(n)
            Q = np.hstack([Q_obs, Q_rest])
        else:
            Q = Q_obs
        self.n, self.r = n, r
        self.Q = np.asfortranarray(Q)  # columns = rotated coordinates
        self.Qt = np.asfortranarray(Q.T)
        self.d_coef = np.ascontiguousarray(d)  # (r,) d' of each coefficient
        self.d_rows = np.zeros(n)  # (n,) eigenvalue of ZKZ' per rotated row
        self.d_rows[:n_pos] = d[:n_pos]
        self.n_pos = n_pos
        self.to_levels_matrix = np.ascontiguousarray(_as_dense(L) @ S)  # (r_levels, r)
        self.Z_all = np.asfortranarray(_as_dense(Z if Z_all is None else Z_all) @ S)  # (N, r)
        self.grid = grid
        h = grid[0]
        denom = h[:, None] * self.d_rows[None, :] + (1.0 - h)[:, None]  # (G, n)
        self.W = np.ascontiguousarray(1.0 / denom)
        self.W_T = np.ascontiguousarray(self.W.T)  # (n, G)
        self.log_det = np.ascontiguousarray(np.log(denom).sum(axis=1))

    @property
    def n_coef(self) -> int:
        """Number of random-effect coefficients per column."""
        return self.r


    def rotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Qt @ A``, Fortran-ordered."""
        return matmul(self.Qt, A, out)

    def unrotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Q @ A``, Fortran-ordered."""
        return matmul(self.Q, A, out)

    def gram_stats(self, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray) -> GramStats:
        """Weighted Gram matrices and cross-products for step 1 (rotated ``X``, ``Y``)."""
        K = kernels_module()
        used, gram_index = np.unique(grid_index, return_inverse=True)
        n, p = X.shape
        outer = (X[:, :, None] * X[:, None, :]).reshape(n, p * p)
        gram = np.ascontiguousarray((self.W[used] @ outer).reshape(len(used), p, p))
        XtWy = np.empty((p, Y.shape[1]), order="F")
        yWy = np.empty(Y.shape[1])
        K.weighted_cross_products(
            np.ascontiguousarray(X), Y, self.W, np.ascontiguousarray(grid_index, dtype=np.intp),
            XtWy, yWy,
        )
        return GramStats(gram, gram_index.astype(np.intp), XtWy, yWy)

    def grid_quadratic_forms(self, E: np.ndarray) -> np.ndarray:
        """``SS[j, g] = E_j' V_g^-1 E_j`` for all columns and grid points, ``(t, G)``."""
        out = np.empty((E.shape[1], self.W.shape[0]))
        kernels_module().grid_sums_of_squares(np.asfortranarray(E), self.W_T, out)
        return out

    def sample_effects(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray | None = None, out: np.ndarray | None = None,
        resid_out: np.ndarray | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Draw the coefficients ``v`` (``r x t``) given rotated residuals ``E``.

        With ``base`` (rotated, ``n x t``), also return ``base - Z v`` (rotated).
        ``out`` and ``resid_out`` are optional Fortran-ordered output buffers.
        """
        h = np.ascontiguousarray(self.grid[0, grid_index])
        v = np.empty((self.r, E.shape[1]), order="F") if out is None else out
        if base is None:
            kernels_module().sample_diagonal_effects(E, self.d_coef, h, tau, z, v)
            return v
        resid = np.empty_like(E, order="F") if resid_out is None else resid_out
        kernels_module().sample_diagonal_effects(E, self.d_coef, h, tau, z, v,
                                                 np.asfortranarray(base), resid)
        return v, resid

    def genetic_values(self, v: np.ndarray) -> np.ndarray:
        """Rotated genetic values ``Qt Z u`` for coefficients ``v`` (``n x t``)."""
        out = np.zeros((self.n, v.shape[1]), order="F")
        k = self.n_pos
        out[:k] = np.sqrt(self.d_coef[:k])[:, None] * v[:k]
        return out

    def to_levels(self, v: np.ndarray) -> np.ndarray:
        """Random effects per level of K (original basis) from coefficients ``v``."""
        return self.to_levels_matrix @ v

    def genetic_values_all_rows(self, v: np.ndarray) -> np.ndarray:
        """``Z u`` over all rows of the data (not rotated), ``(N, t)``."""
        return matmul(self.Z_all, v)


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
        self.to_levels_matrix = sla.block_diag(*[_as_dense(L) for L in Ls])
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

    def sample_effects(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray | None = None, out: np.ndarray | None = None,
        resid_out: np.ndarray | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Draw all random effects ``u`` (``r x t``) given residuals ``E``.

        With ``base`` (``n x t``), also return ``base - Z u``; ``out`` and
        ``resid_out`` are optional Fortran-ordered output buffers.

        ``u ~ N(C^-1 Z'e / (1 - sum h), (tau C)^-1)`` with
        ``C = Z'Z / (1 - sum h) + blockdiag(K_m^-1 / h_m)``; effects with
        ``h_m = 0`` are exactly 0.
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
        if base is None:
            return u
        resid = np.empty_like(base, order="F") if resid_out is None else resid_out
        np.subtract(base, self.Z @ u, out=resid)
        return u, resid

    def genetic_values(self, u: np.ndarray) -> np.ndarray:
        """Genetic values ``Z u`` (``n x t``, no rotation)."""
        return np.asfortranarray(self.Z @ u)

    def to_levels(self, u: np.ndarray) -> np.ndarray:
        """Random effects per level (all effects stacked) from coefficients ``u``."""
        return self.to_levels_matrix @ u

    def genetic_values_all_rows(self, u: np.ndarray) -> np.ndarray:
        """``Z u`` over all rows of the data, ``(N, t)``."""
        return np.asfortranarray(self.Z_all @ u)
