"""A chain's starting state, drawn from the priors (METHOD.md section 4)."""

from __future__ import annotations

import numpy as np

from ..linalg import standard_normal
from .data import ModelData
from .mean import EtaConditional
from .regressions import factor_mean, initial_regressions
from .state import ChainState


def initial_state(d: ModelData, rng: np.random.Generator) -> ChainState:
    """Draw a starting state from the priors, as R MegaLMM's ``initialize_variables``.

    Loadings ``N(0, 1)``, ``tot_Eta_prec`` from its prior, ``tot_F_prec = 1``, grid
    indices uniform over points with positive prior weight, random effects from
    their priors, ``B1 ~ N(0, 1)``, factor scores from their prior, the loadings
    prior's own starting state (:meth:`~pymegalmm.priors.LambdaPrior.initialize`, on the
    free rows of ``Lambda``; fixed rows as given), cis effects at 0,
    the extra regressions' coefficients and scales from their prior (``F`` then gets
    ``X2 B2_F`` added),
    the observation model's own parameters
    (:meth:`~pymegalmm.observation.ObservationModel.initialize`),
    and the latent ``Eta`` drawn by the observation model given these values.
    """
    k, t, n, b1 = d.n_factors, d.t, d.n, d.X1.shape[1]
    pri = d.priors
    re_F = d.factor_re
    r = re_F.n_coef
    Lambda = standard_normal(rng, k, t)
    kf = d.n_fixed
    if kf:  # fixed factors: their rows as given (R: overwritten after the draw)
        Lambda[:kf] = d.fixed.scaled
    tau = rng.gamma(pri.tot_Y_var.shape, 1.0 / pri.tot_Y_var.rate, size=t)
    tau_F = np.ones(k)
    resid_idx = rng.choice(np.flatnonzero(np.isfinite(d.log_prior_resid)), size=t)
    F_idx = rng.choice(np.flatnonzero(np.isfinite(d.log_prior_factor)), size=k)
    h_R = d.grid[:, resid_idx].sum(axis=0)
    h_F = d.grid[:, F_idx].sum(axis=0)
    U_R = np.asfortranarray(standard_normal(rng, r, t) * np.sqrt(h_R / tau))
    U_F = np.asfortranarray(standard_normal(rng, r, k) * np.sqrt(h_F / tau_F))
    B1 = np.asfortranarray(np.where(d.drop_fixed.T, 0.0, standard_normal(rng, b1, t)))
    QtF = np.asfortranarray(
        re_F.genetic_values(U_F) + standard_normal(rng, n, k) * np.sqrt((1.0 - h_F) / tau_F)
    )
    prior_state = pri.Lambda_prior.initialize(Lambda[kf:] if kf else Lambda, tau, rng)
    Eta = np.asfortranarray(np.where(np.isnan(d.Y), 0.0, d.Y))
    s = ChainState(
        Eta=Eta, QtEta=[g.re.rotate(Eta[g.block]) for g in d.groups], B1=B1, Lambda=Lambda,
        tot_Eta_prec=tau, resid_h2_index=resid_idx.astype(np.intp), U_R=U_R, QtF=QtF,
        tot_F_prec=tau_F, F_h2_index=F_idx.astype(np.intp), U_F=U_F, nrun=0, rng=rng,
        lambda_prior=prior_state,
    )
    if d.regressions is not None:  # B2_F, B2_R and their scales from the prior; F += X2 B2_F
        s.extra = initial_regressions(d.regressions, k, t, rng)
        s.QtF = factor_mean(d.regressions, s.extra, s.QtF)
    if not d.single_group:  # several trait groups keep F in the original rows
        s.F = re_F.unrotate(s.QtF)
    if d.cis is not None:  # each trait's own effects start at 0 (drawn first in step 0)
        s.cis_effects = np.zeros((t, d.cis.width))
    if d.latent is not None:  # the observation model's own parameters (Gaussian: none)
        s.observation = d.observation.initialize(d.latent, rng)
    d.observation.sample_latent(s, d, EtaConditional(s, d), rng)  # E[Eta] when needed
    return s
