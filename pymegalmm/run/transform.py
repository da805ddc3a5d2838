"""From a chain's state (sampler's scale) to the parameters users see (user's scale).

Conventions of R MegaLMM's ``save_posterior_sample`` (METHOD.md section 5): every
quantity on the scale of ``Y``, factors of unit variance, the trait mean in the
intercept of ``B1``, random effects per level of K.
"""

from __future__ import annotations

import numpy as np

from ..core.data import ModelData
from ..core.factor_scores import factor_scores_in_rows
from ..core.fixed_factors import pad_prior_record
from ..core.mean import eta_mean, residual_proportion
from ..core.regressions import precision, recorded_state
from ..core.state import ChainState
from ..observation.base import LatentScale


def intercept_combination(X1: np.ndarray) -> np.ndarray | None:
    """Coefficients ``c`` with ``X1 c = 1`` on every row (the intercept), or None."""
    if not X1.shape[1]:
        return None
    c, *_ = np.linalg.lstsq(X1, np.ones(X1.shape[0]), rcond=None)
    c[np.abs(c) < 1e-10] = 0.0
    return c if np.allclose(X1 @ c, 1.0, atol=1e-8) else None


class UserScale:
    """Map a state to its parameters on the user's scale.

    Parameters
    ----------
    latent : the data's scaling (``user = sampler * scale + center``).
    X1 : (n, b1) fixed-effect design (where the trait mean goes).
    """

    def __init__(self, latent: LatentScale, X1: np.ndarray) -> None:
        self.center, self.scale = latent.center, latent.scale
        self.mean_in_B1 = intercept_combination(X1)

    def record_values(self, s: ChainState, d: ModelData
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`parameters` and ``E[Y]`` of every cell (user's scale) of one state.

        The factor scores in the original rows and ``U_R`` per level of K are computed
        once for both.
        """
        F = factor_scores_in_rows(s, d)
        levels = self.residual_effects_levels(s, d)
        values = self.parameters(s, d, F=F, U_R_levels=levels)
        expected = eta_mean(s, d, F=F, U_R_levels=levels) * self.scale + self.center
        return values, expected

    def parameters(self, s: ChainState, d: ModelData, F: np.ndarray | None = None,
                   U_R_levels: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """All parameters of ``s``, including the loadings prior's recorded state.

        ``F`` (:func:`~pymegalmm.core.factor_scores.factor_scores_in_rows`) and
        ``U_R_levels`` (:meth:`residual_effects_levels`) are used when given instead of
        being computed.
        """
        sd, grid = self.scale, d.grid
        re = d.factor_re
        f_sd = np.sqrt(s.tot_F_prec)
        B1 = s.B1 * sd
        if self.mean_in_B1 is not None:
            B1 = B1 + np.outer(self.mean_in_B1, self.center)
            B1[d.drop_fixed.T.astype(bool)] = 0.0  # not identifiable: fixed at 0
        Lambda = s.Lambda / f_sd[:, None] * sd
        prior_record = d.priors.Lambda_prior.record(s.lambda_prior)
        if d.fixed is not None:  # fixed rows recorded exactly as given; prior: free rows
            Lambda[:d.n_fixed] = d.fixed.user
            prior_record = pad_prior_record(prior_record, d.priors.Lambda_prior.state_dims,
                                            d.n_fixed)
        cis_record = {}
        if d.cis is not None:  # each trait's own effects, NaN beyond its c_j
            cis = s.cis_effects * sd[:, None]
            cis[np.arange(cis.shape[1])[None, :] >= d.cis.n_cis[:, None]] = np.nan
            cis_record["cis_effects"] = cis
        return {
            "Lambda": Lambda,
            "F": (factor_scores_in_rows(s, d) if F is None else F) * f_sd,
            "U_F": re.to_levels(s.U_F) * f_sd,
            "U_R": (self.residual_effects_levels(s, d) if U_R_levels is None
                    else U_R_levels) * sd,
            "B1": B1,
            "F_h2": grid[:, s.F_h2_index],
            "resid_h2": grid[:, s.resid_h2_index],
            "tot_Eta_prec": s.tot_Eta_prec / sd**2,
            "tot_F_prec": s.tot_F_prec.copy(),
            "Eta": s.Eta * sd + self.center,
            **prior_record,
            **cis_record,
            **(d.observation.record(s.observation) if s.observation else {}),
            **self.regression_parameters(s, d, f_sd),
        }

    def regression_parameters(self, s: ChainState, d: ModelData, f_sd: np.ndarray
                              ) -> dict[str, np.ndarray]:
        """``B2_F`` (unit-variance factors), ``B2_R`` (user's scale), their prior
        precisions on those scales (absolute, not relative to the total precisions) and
        the prior's recorded (scale-free) state, e.g. the spike and slab's ``B2_F_pi``."""
        out = {}
        rd = d.regressions
        if "B2_F" in s.extra:
            out["B2_F"] = s.extra["B2_F"] * f_sd
            out["B2_F_prec"] = precision(rd, s.extra, "B2_F")  # var(B2_F*) = 1 / prec
            out.update(recorded_state(rd, s.extra, "B2_F"))
        if "B2_R" in s.extra:
            out["B2_R"] = s.extra["B2_R"] * self.scale
            out["B2_R_prec"] = precision(rd, s.extra, "B2_R") * s.tot_Eta_prec / self.scale**2
            out.update(recorded_state(rd, s.extra, "B2_R"))
        return out

    @staticmethod
    def nan_padded(d: ModelData) -> frozenset[str]:
        """Recorded names that hold NaN by design: ``cis_effects`` beyond each trait's
        columns, and with fixed factors the loadings prior's factor-indexed arrays at the
        fixed factors (which it does not shrink)."""
        names = set(d.observation.nan_padded) if d.observation is not None else set()
        if d.cis is not None:
            names.add("cis_effects")
        if d.fixed is not None:
            prior = d.priors.Lambda_prior
            names.update(n for n in prior.recorded if "factor" in prior.state_dims.get(n, ()))
        return frozenset(names)

    def expected_Y(self, s: ChainState, d: ModelData) -> np.ndarray:
        """``E[Y]`` of every cell on the user's scale (:meth:`record_values` computes it
        together with the parameters)."""
        return eta_mean(s, d) * self.scale + self.center

    def eta_log_density(self, s: ChainState, d: ModelData, expected: np.ndarray) -> float:
        """Log density of the latent ``Eta`` under the factor model, user's scale.

        ``sum log N(Eta_ij; E[Y]_ij, (1 - sum_m resid_h2_mj) / tot_Eta_prec_j)`` over the
        cells of each trait group's block (the cells the sampler draws), with
        ``expected`` the user-scale ``E[Y]`` of :meth:`record_values`.  ArviZ's
        ``sample_stats["lp"]`` (a trace to watch, not a model-comparison criterion).
        """
        var = residual_proportion(d.grid, s.resid_h2_index) / s.tot_Eta_prec * self.scale**2
        total = 0.0
        for g in d.groups:
            whole = g.rows.size == s.Eta.shape[0] and g.cols.size == s.Eta.shape[1]
            eta = s.Eta if whole else s.Eta[np.ix_(g.rows, g.cols)]
            mean = expected if whole else expected[np.ix_(g.rows, g.cols)]
            v = var if whole else var[g.cols]
            r = eta * self.scale[g.cols] + self.center[g.cols] - mean if not whole else (
                eta * self.scale + self.center - mean)
            total += -0.5 * (eta.shape[0] * np.sum(np.log(2 * np.pi * v))
                             + float(np.sum(r * r / v)))
        return float(total)

    @staticmethod
    def residual_effects_levels(s: ChainState, d: ModelData) -> np.ndarray:
        """U_R per level of K (sampler's scale), each trait mapped from its group's basis."""
        groups = d.groups
        if len(groups) == 1:
            return groups[0].re.to_levels(s.U_R)
        out = np.empty((groups[0].re.to_levels_matrix.shape[0], d.t))
        for g in groups:
            out[:, g.cols] = g.re.to_levels(s.U_R[:, g.cols])
        return out
