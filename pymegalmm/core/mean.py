"""The factor model's expected value of the latent ``Eta``, for every cell or per group block.

This is the conditional the observation model draws ``Eta`` from
(:mod:`pymegalmm.observation`): ``Eta ~ N(X1 B1 + F Lambda + Z U_R, diag(residual variance))``.
"""

from __future__ import annotations

import numpy as np

from ..linalg import matmul
from .data import ModelData
from .factor_scores import factor_scores_in_rows
from .state import ChainState


def residual_proportion(grid: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``1 - sum_m h2_m`` for each column's grid point."""
    return 1.0 - grid[:, index].sum(axis=0)


def eta_mean(s: ChainState, d: ModelData, cis: bool = True, F: np.ndarray | None = None,
             U_R_levels: np.ndarray | None = None) -> np.ndarray:
    """Expected value of ``Eta`` for every cell: ``X1 B1 + F Lambda + Z U_R`` (scaled units),
    plus ``X2 B2_R`` with extra regressions on the traits, and each trait's own
    ``X_cis b_cis`` (``cis_genotypes``) unless ``cis`` is False.

    Cells outside their group's rows (predicted only) get the same formula, with the
    random effects mapped to all rows.  With several trait groups, ``F`` (the factor
    scores in the original rows) and ``U_R_levels`` (``U_R`` per
    level of K, as recorded) are used when given instead of being computed again; the
    recorder has both.
    """
    if cis and d.cis is not None:
        out = eta_mean(s, d, cis=False, F=F, U_R_levels=U_R_levels)
        out += d.cis.mean(s.cis_effects)
        return out
    if d.single_group and not (U_R_levels is not None and d.groups[0].re.levels_map_rows):
        g = d.groups[0]  # rotated Z U_R + F Lambda + X1 B1, then back to the original rows
        mean = matmul(s.QtF, s.Lambda, out=g.re.genetic_values(s.U_R), beta=1.0)
        if "B2_R" in s.extra:  # extra regressions X2 B2_R
            mean = matmul(d.regressions.QtX2[0], s.extra["B2_R"], out=mean, beta=1.0)
        return g.re.unrotate(matmul(g.QtX1, s.B1, out=mean, beta=1.0))
    # in the original rows: with one group this avoids the n x n x t unrotation when the
    # levels map to rows by a sparse Z (the recorder has them)
    out = matmul(factor_scores_in_rows(s, d) if F is None else F, s.Lambda)
    matmul(d.X1, s.B1, out=out, beta=1.0)
    if "B2_R" in s.extra:
        matmul(d.regressions.X2, s.extra["B2_R"], out=out, beta=1.0)
    for g in d.groups:
        if g.cols.size == d.t:  # every trait: no gather/scatter copies
            out += g.re.genetic_values_all_rows(s.U_R, levels=U_R_levels)
        elif g.cols.size:
            out[:, g.cols] += g.re.genetic_values_all_rows(
                np.asfortranarray(s.U_R[:, g.cols]),
                levels=None if U_R_levels is None else U_R_levels[:, g.cols])
    return out


class EtaConditional:
    """``E[Eta]`` per group block and the residual variances, as the observation model needs.

    Means are computed only for the blocks asked for.

    Parameters
    ----------
    s, d : the chain's state and data.
    mean : (n, t) expected value of every cell, or None to compute each block from
        ``residuals`` (rotated ``Eta - X1 B1 - Z U_R`` per group, from the column-LMM
        step) and the current factor scores (``F``, original rows, with several groups).
        A block's mean must be asked for before the block of ``Eta`` is redrawn.
        Without ``mean`` and ``residuals``, :func:`eta_mean` of every cell is computed
        when a block's mean is first asked for (never, when no cell is drawn).
    residuals_in_rows : (n, t) the same residuals in the original rows (with several
        groups, as the factor scores used them), optional: then a block's mean is
        ``F Lambda + Eta - E`` in the original rows, with no rotation.
    """

    def __init__(self, s: ChainState, d: ModelData, mean: np.ndarray | None = None,
                 residuals: list[np.ndarray] | None = None,
                 F: np.ndarray | None = None,
                 residuals_in_rows: np.ndarray | None = None) -> None:
        self._s, self._d = s, d
        self._mean, self._residuals, self._F = mean, residuals, F
        self._E_rows = residuals_in_rows

    def block_mean(self, gi: int) -> np.ndarray:
        """``E[Eta]`` over group ``gi``'s block (``n_s x t_s``, original rows)."""
        s, g = self._s, self._d.groups[gi]
        if self._mean is None and self._residuals is None:
            self._mean = eta_mean(s, self._d)
        if self._mean is not None:
            return self._mean[g.block]
        if self._E_rows is not None and self._F is not None:
            # X1 B1 + Z U_R = Eta - E in the original rows; add the new F Lambda
            return matmul(self._F[g.rows], s.Lambda[:, g.cols], beta=1.0,
                          source=np.asfortranarray(s.Eta[g.block] - self._E_rows[g.block]))
        QtF = s.QtF if gi == 0 else g.re.rotate(self._F[g.rows])
        # rotated X1 B1 + Z U_R = QtEta - residual; add the new F Lambda
        mean = matmul(QtF, s.Lambda[:, g.cols], beta=1.0,
                      source=np.asfortranarray(s.QtEta[gi] - self._residuals[gi]))
        return g.re.unrotate(mean)

    def residual_variance(self, traits: np.ndarray) -> np.ndarray:
        """``(1 - sum h2) / tot_Eta_prec`` of each trait in ``traits``."""
        s = self._s
        return residual_proportion(self._d.grid, s.resid_h2_index[traits]) / s.tot_Eta_prec[traits]
