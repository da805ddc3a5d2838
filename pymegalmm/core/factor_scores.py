"""Step 6: the factor scores ``F``, row by row, given everything else.

Each row ``f_i`` has likelihood ``E_i ~ N(f_i Lambda, diag(1/resid_prec))`` (``E`` =
``Eta - X1 B1 - Z U_R``) and prior ``f_i ~ N(m_i, diag(1/factor_prec))`` with
``m = Z U_F`` the factors' genetic values.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._config import kernels_module
from ..errors import SamplerError
from ..linalg import matmul
from .data import ModelData
from .state import ChainState


def sample_factor_scores(
    E: np.ndarray,
    Lambda: np.ndarray,
    resid_prec: np.ndarray,
    prior_mean: np.ndarray,
    factor_prec: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Draw factor scores row-wise when every row informs every trait.

    ``f_i ~ N(Sigma^-1 (Lambda diag(resid_prec) E_i' + diag(factor_prec) m_i'), Sigma^-1)``
    with ``Sigma = Lambda diag(resid_prec) Lambda' + diag(factor_prec)``.  The rows
    are exchangeable under any orthogonal rotation, so this is applied to rotated
    rows directly.

    Parameters
    ----------
    E : (n, t) residuals ``Eta - X1 B1 - Z U_R`` (rotated).
    Lambda : (k, t) loadings.
    resid_prec : (t,) residual precision of each trait.
    prior_mean : (n, k) factors' genetic values ``Z U_F`` (rotated).
    factor_prec : (k,) residual precision of each factor.
    z : (n, k) standard normal draws.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` Fortran-ordered factor scores (rotated).
    """
    L_w = Lambda * resid_prec  # Lambda diag(resid_prec)
    Sigma = L_w @ Lambda.T
    Sigma[np.diag_indices_from(Sigma)] += factor_prec
    U = sla.cholesky(Sigma, lower=False, check_finite=False)
    rhs = matmul(E, L_w.T, beta=1.0, source=prior_mean * factor_prec)
    mean = sla.cho_solve((U, False), rhs.T, check_finite=False)
    noise = sla.solve_triangular(U, z.T, lower=False, check_finite=False)
    return np.asfortranarray((mean + noise).T)


def factor_scores_in_rows(s: ChainState, d: ModelData) -> np.ndarray:
    """The factor scores ``F`` in the original rows: the state's own with several trait
    groups (step 6 draws them there), else ``unrotate(QtF)``.  Not a copy."""
    return s.F if s.F.size else d.factor_re.unrotate(s.QtF)


def residuals_in_rows(d: ModelData, residuals: list[np.ndarray]) -> np.ndarray:
    """Each group's rotated residuals back in the original rows, ``(n, t)`` (0 outside
    the groups' blocks)."""
    E = np.zeros((d.n, d.t), order="F")
    for g, res in zip(d.groups, residuals, strict=True):
        E[g.block] = g.re.unrotate(res)
    return E


def sample_factor_scores_by_pattern(
    d: ModelData,
    E: np.ndarray,
    Lambda: np.ndarray,
    resid_prec: np.ndarray,
    prior_mean: np.ndarray,
    factor_prec: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Draw factor scores in the original rows when rows inform different traits.

    With several trait groups a row's likelihood involves only the traits whose
    group holds that row, so rows are grouped by that pattern (``d.row_patterns``)
    and each pattern gets its own ``Sigma``.

    Parameters
    ----------
    d : the model data (groups and row patterns).
    E : (n, t) ``Eta - X1 B1 - Z U_R`` in the original rows over each group's block
        (:func:`residuals_in_rows` of each group's rotated residuals).
    Lambda, resid_prec, factor_prec, z : as :func:`sample_factor_scores`.
    prior_mean : (n, k) factors' genetic values, original rows.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` Fortran-ordered factor scores (original rows).
    """
    n, k = d.n, d.n_factors
    F = np.empty((n, k), order="F")
    pat = d.row_patterns
    n_bad = kernels_module().sample_factor_scores_by_pattern(
        E, Lambda, resid_prec, prior_mean, factor_prec, np.asfortranarray(z),
        pat.used, pat.start, pat.rows, F,
    )
    if n_bad:
        raise SamplerError("factor-score precision not positive definite")
    return F
