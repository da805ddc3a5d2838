"""One random effect: rows rotated so that ``h Z K Z' + (1 - h) I`` is diagonal for every h.

The rows are rotated by ``Qt``, the eigenvectors of ``Z K Z'``.  The random effect
itself is sampled in the basis ``S`` that simultaneously diagonalises ``K`` and
``Z'Z`` (``S S' = K``, ``S' Z'Z S = diag(d)``): then ``Z S`` has orthogonal
columns, which are the first columns of ``Q``, so every full conditional is
elementwise in rotated space and needs no ``n x n`` work per iteration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..._config import kernels_module
from ...linalg import matmul, product, symmetric_eig
from .base import GramStats, _as_dense


@dataclass(frozen=True)
class DiagonalBasis:
    """Rows and coefficients in which one random effect's covariance is diagonal.

    Attributes
    ----------
    Q : (n, n) orthogonal; its columns are the rotated coordinates (``Qt = Q'``).
    d : (r,) eigenvalues of ``S' Z'Z S``, decreasing; those below the tolerance are 0.
    S : (r, r) coefficient basis: ``S S' = K_tilde`` and ``S' Z'Z S = diag(d)``.
    n_pos : number of positive ``d``: rotated row ``i < n_pos`` is ``Z S_i / sqrt(d_i)``.
    ZS : (n, n_pos) ``Z S``'s columns with positive ``d`` (kept for reuse).
    """

    Q: np.ndarray
    d: np.ndarray
    S: np.ndarray
    n_pos: int
    ZS: np.ndarray


def incidence_product(Z: np.ndarray | sp.spmatrix, A: np.ndarray) -> np.ndarray:
    """``Z @ A`` for a design ``Z``; a row gather when ``Z`` is an incidence matrix.

    When every row of ``Z`` holds exactly one non-zero value, equal to 1 (a random
    intercept: each row belongs to one level), ``Z @ A`` is ``A``'s rows of the
    rows' levels: gathered in ``O(n c)`` instead of a dense ``O(n r c)`` product.  The
    result equals the dense product exactly (each entry of the product is one value
    of ``A`` plus exact zeros).

    Parameters
    ----------
    Z : (n, r) array or sparse matrix.
    A : (r, c) array.

    Returns
    -------
    numpy.ndarray
        ``(n, c)``, Fortran-ordered for an incidence ``Z``: the rows are gathered column
        by column, straight into the order the back-ends keep (at ``n = 5000`` the
        setup copied two such gathers and the basis, C-ordered, into Fortran order: about
        0.9 s).
    """
    levels = incidence_levels(Z)
    if levels is not None:
        return gather_rows(A, levels)
    return _as_dense(Z) @ A


def gather_rows(A: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``A[rows]``, Fortran-ordered, gathered column by column (``Z @ A`` for an
    incidence ``Z`` whose row ``i`` is level ``rows[i]``: the same numbers)."""
    return np.take(np.asarray(A).T, rows, axis=1).T


def incidence_levels(Z: np.ndarray | sp.spmatrix) -> np.ndarray | None:
    """Each row's level when ``Z`` is an incidence matrix, else None.

    A ``Z`` (sparse or dense) whose every row holds exactly one non-zero value, equal to 1
    (a random intercept: each row belongs to one level), is the row gather
    ``Z @ A = A[levels]``.
    """
    if sp.issparse(Z):
        Zc = Z.tocsr()
        if (Zc.nnz == Zc.shape[0] and np.all(np.diff(Zc.indptr) == 1)
                and np.all(Zc.data == 1.0)):
            return Zc.indices
        return None
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[1] == 0:
        return None
    levels = np.argmax(Z != 0, axis=1)
    if (np.count_nonzero(Z) == Z.shape[0]
            and np.all(Z[np.arange(Z.shape[0]), levels] == 1.0)):
        return levels
    return None


def replicate_count(Z: np.ndarray | sp.spmatrix) -> int | None:
    """``c`` when ``Z'Z = c I`` for an incidence ``Z`` (every level on ``c`` rows), else None."""
    levels = incidence_levels(Z)
    if levels is None:
        return None
    counts = np.bincount(levels, minlength=Z.shape[1])
    c = int(counts[0]) if counts.size else 0
    return c if c > 0 and np.all(counts == c) else None


def diagonal_basis(Z: np.ndarray | sp.spmatrix, K_tilde: np.ndarray, eig_tol: float = 1e-10,
                   eig: tuple[np.ndarray, np.ndarray] | None = None) -> DiagonalBasis:
    """Simultaneously diagonalise ``K_tilde`` and ``Z'Z``; rotate the rows to match.

    ``K_tilde = T T'`` with ``T = U diag(sqrt(lambda))`` (eigenvectors ``U``), and
    ``S = T O`` where ``O`` diagonalises ``T'Z'ZT`` (``O = I`` when every level has
    the same number of rows, ``Z'Z = c I``: then ``T'Z'ZT = c diag(lambda)``, and the
    second eigendecomposition, as costly as the first, is skipped).  Then ``Z S`` has
    orthogonal columns; the normalised ones with ``d_i > 0`` are the first columns of ``Q``, an
    orthonormal completion the rest, so that ``Q' Z K_tilde Z' Q = diag(d, 0)``.

    Parameters
    ----------
    Z : (n, r) design (after rank handling), dense or sparse.
    K_tilde : (r, r) covariance of the coefficients, positive definite.
    eig_tol : relative tolerance below which an eigenvalue counts as 0.
    eig : ``scipy.linalg.eigh(K_tilde)`` when already known (it is the same for
        every trait group: :meth:`pymegalmm.design.RandomEffect.K_tilde_eig`).

    Returns
    -------
    DiagonalBasis
    """
    n = Z.shape[0]
    lam, U = symmetric_eig(K_tilde) if eig is None else eig
    if lam.min() <= 0:
        raise ValueError(
            "the covariance of the random effect is not positive definite after "
            "rank handling; increase K_eigen_tol"
        )
    c = replicate_count(Z)
    if c is not None:  # Z'Z = c I: T'Z'ZT = c T'T = c diag(lam), so O = I
        d = c * lam
        order = np.argsort(-d, kind="stable")
        # T = U diag(sqrt(lam)), columns in order: scaled in place (at n = 5000, 0.03 s
        # against 0.9 s for U[:, order] * sqrt(lam)[order] into a new array)
        S = U[:, order]
        S *= np.sqrt(lam)[order]
    else:
        T = U * np.sqrt(lam)
        ZT = incidence_product(Z, T)
        d, O = symmetric_eig(ZT.T @ ZT)
        order = np.argsort(-d, kind="stable")
        S = T @ O[:, order]
    d = d[order]
    d[d < eig_tol * max(d.max(), 1.0)] = 0.0
    n_pos = int(np.count_nonzero(d))
    ZS = incidence_product(Z, S[:, :n_pos])
    Q_obs = ZS / np.sqrt(d[:n_pos])
    # Orthonormal completion: rotated rows with no random-effect signal.
    if n_pos < n:
        Q_rest = sla.null_space(Q_obs.T) if n_pos > 0 else np.eye(n)
        Q = np.hstack([Q_obs, Q_rest])
    else:
        Q = Q_obs
    return DiagonalBasis(Q, d, S, n_pos, ZS)


def grid_points_in_use(grid_index: np.ndarray, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(grid_index, return_inverse=True)`` for indices in ``0..n_grid - 1``, by
    counting rather than sorting (about 3 against 15 us: it runs once per trait group and
    iteration)."""
    grid_index = np.asarray(grid_index, dtype=np.intp)
    used = np.flatnonzero(np.bincount(grid_index, minlength=n_grid))
    return used, np.searchsorted(used, grid_index)


def weighted_gram_stats(W: np.ndarray, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray
                        ) -> GramStats:
    """Gram statistics under diagonal covariances: ``X' diag(W_g) X``, ``X' diag(W_g) y_j``, ...

    Parameters
    ----------
    W : (G, n) C-ordered weights ``1 / V_g`` (diagonal of the inverse covariance).
    X : (n, p) regressors; Y : (n, t) Fortran-ordered responses (same rows as ``W``).
    grid_index : (t,) grid point of each column.

    Returns
    -------
    GramStats
        One Gram matrix per grid point in use.
    """
    K = kernels_module()
    used, gram_index = grid_points_in_use(grid_index, W.shape[0])
    p = X.shape[1]
    X = np.ascontiguousarray(X)
    gram = np.empty((len(used), p, p))
    K.weighted_grams(X, W, used.astype(np.intp), gram)
    XtWy = np.empty((p, Y.shape[1]), order="F")
    yWy = np.empty(Y.shape[1])
    K.weighted_cross_products(X, Y, W, np.ascontiguousarray(grid_index, dtype=np.intp),
                              XtWy, yWy)
    return GramStats(gram, gram_index.astype(np.intp), XtWy, yWy)


def _is_identity(L: np.ndarray | sp.spmatrix) -> bool:
    """Whether ``L`` is a square identity matrix (a full-rank K: no basis change)."""
    if sp.issparse(L) or L.ndim != 2 or L.shape[0] != L.shape[1]:
        return False
    return bool(np.count_nonzero(L) == L.shape[0] and np.all(np.diag(L) == 1.0))


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
    eig : tuple of arrays, optional
        ``scipy.linalg.eigh(K_tilde)``, when already computed.
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
        eig: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        n, r = ZL.shape
        basis = diagonal_basis(ZL, K_tilde, eig_tol, eig)
        Q, d, S, n_pos = basis.Q, basis.d, basis.S, basis.n_pos
        self.n, self.r = n, r
        self.Q = np.asfortranarray(Q)  # columns = rotated coordinates
        self.d_coef = np.ascontiguousarray(d)  # (r,) d' of each coefficient
        self.d_rows = np.zeros(n)  # (n,) eigenvalue of ZKZ' per rotated row
        self.d_rows[:n_pos] = d[:n_pos]
        self.n_pos = n_pos
        self.to_levels_matrix = np.asfortranarray(  # (r_levels, r); L = I: S itself
            S if _is_identity(L) else _as_dense(L) @ S)
        # Z S over all rows; the basis's own Z S when it is the same product (a group
        # with every row and no zero d)
        self.Z_all = np.asfortranarray(
            basis.ZS if Z_all is None and n_pos == r
            else incidence_product(ZL if Z_all is None else Z_all, S))
        # the incidence of the levels over all rows, when per-level effects map to rows
        # directly (K of full rank, L = I, and a sparse Z): then Z u = Z_levels u_levels
        all_rows = ZL if Z_all is None else Z_all
        self.Z_levels_all = (sp.csr_matrix(all_rows) if _is_identity(L) and sp.issparse(all_rows)
                             else None)
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
        """``Q' @ A``, Fortran-ordered (``Q`` read transposed in place)."""
        return matmul(self.Q, A, out, trans_a=True)

    def unrotate(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Q @ A``, Fortran-ordered."""
        return matmul(self.Q, A, out)

    def gram_stats(self, X: np.ndarray, Y: np.ndarray, grid_index: np.ndarray) -> GramStats:
        """Weighted Gram matrices and cross-products for step 1 (rotated ``X``, ``Y``)."""
        return weighted_gram_stats(self.W, X, Y, grid_index)

    def grid_quadratic_forms(self, E: np.ndarray) -> np.ndarray:
        """``SS[j, g] = E_j' V_g^-1 E_j`` for all columns and grid points, ``(t, G)``."""
        out = np.empty((E.shape[1], self.W.shape[0]))
        kernels_module().grid_sums_of_squares(np.asfortranarray(E), self.W_T, out)
        return out

    @property
    def quadratic_form_weights(self) -> np.ndarray:
        """``W_T`` (``(n, G)``): :meth:`grid_quadratic_forms` is ``(E o E)' W_T``, so a
        kernel that produces ``E`` can form them on the way (``linalg.subtract_products``)."""
        return self.W_T

    def quadratic_forms_at(self, E: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
        """``E_j' V_{g_j}^-1 E_j`` at one grid point per column, ``(c,)``: ``O(n)`` per column."""
        return np.einsum("ij,ij->j", self.W_T[:, grid_index], np.square(E))

    def sample_effects(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw the coefficients ``v`` (``r x c``) given rotated residuals ``E``.

        ``out`` is an optional Fortran-ordered output buffer.
        """
        return self._draw(E, grid_index, tau, z, out)[0]

    def sample_effects_and_residual(
        self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
        base: np.ndarray, out: np.ndarray | None = None, resid_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`sample_effects`, also returning ``base - Z v`` (rotated, ``n x c``).

        The kernel writes the residual as it draws each column (no second pass).
        """
        resid = np.empty_like(E, order="F") if resid_out is None else resid_out
        return self._draw(E, grid_index, tau, z, out, np.asfortranarray(base), resid)

    def _draw(self, E: np.ndarray, grid_index: np.ndarray, tau: np.ndarray, z: np.ndarray,
              out: np.ndarray | None, base: np.ndarray | None = None,
              resid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The effects kernel with the per-grid-point tables; ``(v, resid)``."""
        v = np.empty((self.r, E.shape[1]), order="F") if out is None else out
        inv, sqrt_inv = self.effect_tables
        kernels_module().sample_diagonal_effects(
            E, self.d_coef, self.grid_h, np.ascontiguousarray(grid_index, dtype=np.intp), tau,
            z, v, base, resid, inv=inv, sqrt_inv=sqrt_inv)
        return v, resid

    @property
    def grid_h(self) -> np.ndarray:
        """The grid's variance proportions, ``(G,)``."""
        return np.ascontiguousarray(self.grid[0])

    @functools.cached_property
    def effect_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``1 / (d_i h_g + 1 - h_g)`` and its square root per grid point and coefficient
        (``(G, r)`` each), looked up by the effects kernel instead of computed per entry."""
        return kernels_module().effect_tables(self.d_coef, self.grid_h)

    def genetic_values(self, v: np.ndarray) -> np.ndarray:
        """Rotated genetic values ``Qt Z u`` for coefficients ``v`` (``n x t``)."""
        out = np.zeros((self.n, v.shape[1]), order="F")
        k = self.n_pos
        out[:k] = np.sqrt(self.d_coef[:k])[:, None] * v[:k]
        return out

    def to_levels(self, v: np.ndarray) -> np.ndarray:
        """Random effects per level of K (original basis) from coefficients ``v``."""
        return product(self.to_levels_matrix, v)

    @property
    def levels_map_rows(self) -> bool:
        """Whether :meth:`genetic_values_all_rows` maps given levels with a sparse ``Z``."""
        return self.Z_levels_all is not None

    def genetic_values_all_rows(self, v: np.ndarray, levels: np.ndarray | None = None
                                ) -> np.ndarray:
        """``Z u`` over all rows of the data (not rotated), ``(N, t)``.

        ``levels``, the same effects per level of K (``to_levels(v)``, when already
        computed), turns the dense ``(Z S) v`` into a sparse product ``Z u_levels``
        when ``Z`` is sparse and K of full rank (the same numbers up to rounding); a
        random intercept's ``Z`` (one 1 per row) gathers the rows instead, the same
        numbers as the sparse product (at 500 x 20,000: 26 against 52-93 ms, each record
        of ``E[Y]`` makes one).
        """
        if levels is not None and self.Z_levels_all is not None:
            if self._row_levels is not None:
                return gather_rows(levels, self._row_levels)
            return np.asfortranarray(self.Z_levels_all @ levels)
        return matmul(self.Z_all, v)

    @functools.cached_property
    def _row_levels(self) -> np.ndarray | None:
        """Each row's level when ``Z_levels_all`` is an incidence matrix, else None."""
        return None if self.Z_levels_all is None else incidence_levels(self.Z_levels_all)
