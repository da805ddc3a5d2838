"""Trait-specific ("cis") regressions: each trait's own design of local genotypes.

With ``MegaLMM(..., cis_genotypes={trait: X_j})`` the latent trait ``j`` gets an
extra term ``X_j b_j`` (``X_j``: ``n x c_j``, e.g. for an eQTL study the genotypes
of the markers near gene ``j``), a design that differs from trait to trait.  As R
MegaLMM's ``cis_eQTL_model``, ``b_j`` has a flat prior and is drawn in a separate
conditional step at the start of every iteration, given the rest of the model
(``X1 B1``, ``F Lambda``, ``Z U_R``, ``tot_Eta_prec``, ``resid_h2``)::

    b_j | . ~ N((X_j' X_j)^-1 X_j' r_j, (X_j' X_j)^-1 psi_j),
    r_j = Eta_j - X1 b1_j - F lambda_j - Z u_j,   psi_j = (1 - sum h2_j) / tot_Eta_prec_j,

over the rows of trait ``j``'s trait group.  It is not drawn jointly with the fixed
effects because the traits' step shares one regressor matrix (and one Gram matrix
per grid point) between the traits of a group, which per-trait designs would break.
The traits' step then regresses ``Eta - X_cis b_cis``.  The effects are recorded as
``cis_effects`` (dims ``trait, cis``; user's scale; NaN beyond a trait's ``c_j``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from ..errors import InputError


@dataclass(frozen=True, eq=False)
class CisDesign:
    """Each trait's own regressors.

    Attributes
    ----------
    X : list (one per trait) of ``(n, c_j)`` float arrays (``c_j = 0``: no cis term).
    names : list (one per trait) of the ``c_j`` column names.
    chol : list (one per trait) of the lower Cholesky factor of ``X_j' X_j`` over the
        rows of the trait's group, or None (``c_j = 0``).
    rows : list (one per trait) of the rows of the trait's group.
    """

    X: list[np.ndarray]
    names: list[list[str]]
    chol: list[np.ndarray | None] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    @property
    def n_cis(self) -> np.ndarray:
        """``(t,)`` number of columns of each trait."""
        return np.array([x.shape[1] for x in self.X], dtype=int)

    @property
    def width(self) -> int:
        """The largest ``c_j`` (the length of the ``cis`` dim)."""
        return int(self.n_cis.max(initial=0))

    def for_groups(self, groups: list[tuple[np.ndarray, np.ndarray]], traits: list
                   ) -> CisDesign:
        """The design with each trait's rows and ``chol(X_j' X_j)`` for its group's rows.

        Raises ``InputError`` (naming ``cis_genotypes``) when a trait's columns are
        linearly dependent over those rows (the flat prior needs full column rank).
        """
        rows: list[np.ndarray] = [np.empty(0, dtype=np.intp)] * len(self.X)
        for g_rows, g_cols in groups:
            for j in g_cols:
                rows[j] = g_rows
        chol: list[np.ndarray | None] = []
        for j, X in enumerate(self.X):
            if not X.shape[1]:
                chol.append(None)
                continue
            Xr = X[rows[j]]
            try:
                L = np.linalg.cholesky(Xr.T @ Xr)
                ok = np.all(np.diag(L) > 1e-8 * max(1.0, np.sqrt(np.abs(Xr).max())))
            except np.linalg.LinAlgError:
                ok = False
            if not ok or np.linalg.matrix_rank(Xr) < X.shape[1]:
                raise InputError(f"cis_genotypes[{traits[j]!r}]: the {X.shape[1]} columns are "
                                 "linearly dependent (or constant zero) over the trait's rows; "
                                 "the flat prior of the cis effects needs full column rank")
            chol.append(L)
        return CisDesign(X=self.X, names=self.names, chol=chol, rows=rows)

    def mean(self, cis_effects: np.ndarray) -> np.ndarray:
        """``(n, t)``: ``X_j b_j`` of every trait (zero without cis columns)."""
        n = self.X[0].shape[0]
        out = np.zeros((n, len(self.X)), order="F")
        for j, X in enumerate(self.X):
            c = X.shape[1]
            if c:
                out[:, j] = X @ cis_effects[j, :c]
        return out


def sample_cis_effects(cis_effects: np.ndarray, cis: CisDesign, residual: np.ndarray,
                       psi: np.ndarray, rng: np.random.Generator) -> None:
    """Draw every trait's ``b_j`` from its flat-prior conditional (in place).

    Parameters
    ----------
    cis_effects : (t, c_max) current effects (sampler's scale), overwritten.
    cis : the design, prepared by :meth:`CisDesign.for_groups`.
    residual : (n, t) ``Eta - X1 B1 - F Lambda - Z U_R`` (original rows).
    psi : (t,) residual variances ``(1 - sum h2) / tot_Eta_prec``.
    rng : the chain's generator (one block of ``sum c_j`` normals, traits in order).
    """
    n_cis = cis.n_cis
    z = rng.standard_normal(int(n_cis.sum()))
    start = 0
    for j, c in enumerate(n_cis):
        if not c:
            continue
        rows, L = cis.rows[j], cis.chol[j]
        X = cis.X[j][rows]
        mean = sla.cho_solve((L, True), X.T @ residual[rows, j])
        dev = sla.solve_triangular(L, z[start:start + c], lower=True, trans="T")
        cis_effects[j, :c] = mean + np.sqrt(psi[j]) * dev
        start += c
