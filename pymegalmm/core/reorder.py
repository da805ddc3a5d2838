"""Dropping redundant factors and sorting factors by size (R MegaLMM's ``reorder_factors``).

METHOD.md section 6.
"""

from __future__ import annotations

import numpy as np

from .data import ModelData
from .factor_scores import factor_scores_in_rows
from .regressions import permute_factors
from .state import ChainState

#: Name of the loadings prior's state array that, when present, orders the factors.
_M_EFF = "Lambda_m_eff"


def _correlated_columns(A: np.ndarray, threshold: float) -> np.ndarray:
    """Columns to drop so that no remaining pair has ``|cor| > threshold`` (first one kept)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.abs(np.nan_to_num(np.corrcoef(A, rowvar=False)))
    C = np.triu(np.atleast_2d(C), k=1)
    drop = np.zeros(A.shape[1], dtype=bool)
    for i in range(A.shape[1] - 1):
        J = C[i] > threshold
        drop |= J
        C[:, J] = 0.0
    return drop


def _zero_factor_scores(s: ChainState, columns: np.ndarray) -> None:
    """Set the scores of the factors ``columns`` to 0 in ``QtF`` (and in ``F``, which
    several trait groups keep in the original rows too)."""
    s.QtF[:, columns] = 0.0
    if s.F.size:
        s.F[:, columns] = 0.0


def reorder_factors(s: ChainState, d: ModelData, drop_cor_threshold: float = 0.6) -> np.ndarray:
    """Zero redundant factors and sort the factors by decreasing size (in place).

    1. Factors whose scores correlate above ``drop_cor_threshold`` with an earlier
       factor get their scores set to 0; then the same with the factors' genetic
       values ``Z U_F``.
    2. Factors are sorted by decreasing size: the loadings prior's
       ``Lambda_m_eff`` (effective number of non-zero loadings) when its state has
       one (the horseshoe), with the zeroed factors' set to 0; otherwise
       ``sum_j Lambda_kj^2 * mean_i F_ik^2``.  Zeroed factors go last.  Every
       factor-indexed parameter is permuted with them (including ``F_h2_index`` and
       the loadings prior's factor-indexed state, which R MegaLMM 0.9.5 leaves
       unpermuted, METHOD.md Q6), and ``B2_F`` with its prior's per-factor scales.
       Fixed factors (``Lambda_fixed``) are never zeroed and stay first, in their
       order; only the free factors are sorted.
    3. The loadings prior re-tunes its state
       (:meth:`~pymegalmm.priors.LambdaPrior.refresh`; ARD: ``delta_1`` reset to 1,
       then 10 updates; horseshoe: 10 updates).

    Returns
    -------
    numpy.ndarray
        The permutation applied (new position -> old factor index).
    """
    re_F = d.factor_re
    kf = d.n_fixed
    F = factor_scores_in_rows(s, d)
    zero = _correlated_columns(F, drop_cor_threshold)
    zero[:kf] = False  # fixed factors are kept
    _zero_factor_scores(s, zero)
    genetic_F = re_F.unrotate(re_F.genetic_values(s.U_F))
    zero_g = _correlated_columns(np.where(zero, 0.0, genetic_F), drop_cor_threshold)
    zero_g[:kf] = False
    _zero_factor_scores(s, zero_g)
    if _M_EFF in s.lambda_prior:  # the prior measures its factors (horseshoe): as R
        m_eff = np.array(s.lambda_prior[_M_EFF], dtype=float, copy=True)  # free factors
        m_eff[(zero | zero_g)[kf:]] = 0.0
        s.lambda_prior = {**s.lambda_prior, _M_EFF: m_eff}
        free_order = np.argsort(-m_eff, kind="stable")
    else:
        F = factor_scores_in_rows(s, d)
        size = np.square(s.Lambda).sum(axis=1) * np.square(F).mean(axis=0)
        free_order = np.argsort(-size[kf:], kind="stable")
    order = np.concatenate([np.arange(kf), kf + free_order]).astype(np.intp)
    s.Lambda = np.asfortranarray(s.Lambda[order])
    s.QtF = np.asfortranarray(s.QtF[:, order])
    s.F = np.asfortranarray(s.F[:, order]) if s.F.size else s.F
    s.U_F = np.asfortranarray(s.U_F[:, order])
    s.tot_F_prec = s.tot_F_prec[order].copy()
    s.F_h2_index = s.F_h2_index[order].copy()
    s.extra = permute_factors(d.regressions, s.extra, order)  # B2_F and its per-factor scales
    prior = d.priors.Lambda_prior
    state = prior.permute(s.lambda_prior, free_order)
    s.lambda_prior = prior.refresh(s.Lambda[kf:] if kf else s.Lambda, s.tot_Eta_prec, state,
                                   s.rng)
    return order
