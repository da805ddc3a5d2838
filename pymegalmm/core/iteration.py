"""One Gibbs iteration of MegaLMM, as a short sequence of steps.

The model (sampler's scale; ``Eta`` is the latent ``Y`` of the observation model)::

    Eta = X1 B1 + X2 B2_R + F Lambda + Z U_R + E_R   (t independent LMMs given F, Lambda)
    F   =         X2 B2_F +            Z U_F + E_F   (k independent LMMs)

(``X2``: the optional extra regressions, :mod:`pymegalmm.core.regressions`.)

Step numbers follow METHOD.md section 3; the conditionals are in ``docs/sampler.md``.
Every random number of an iteration is drawn here, in a fixed order, by the
chain's ``numpy.random.Generator``; kernels only consume them, so draws do not
depend on the number of threads.  The loadings prior and the observation model
are plug-ins (:mod:`pymegalmm.priors`, :mod:`pymegalmm.observation`): the
iteration calls them and never asks what they are.
"""

from __future__ import annotations

import numpy as np

from ..errors import SamplerError
from ..linalg import matmul, standard_normal
from .cis import sample_cis_effects
from .column_lmm import sample_column_lmm
from .data import ModelData, Workspace
from .factor_scores import (
    factor_scores_in_rows,
    residuals_in_rows,
    sample_factor_scores,
    sample_factor_scores_by_pattern,
)
from .mean import EtaConditional, eta_mean, residual_proportion
from .regressions import factor_mean, precision, spike_slab_sampler, update_precisions
from .state import ChainState


def gibbs_iteration(s: ChainState, d: ModelData, work: Workspace | None = None) -> None:
    """Advance the chain ``s`` by one Gibbs iteration (in place).

    Parameters
    ----------
    s : the chain's state.
    d : the model's data.
    work : the chain's work arrays (a fresh set when None).
    """
    try:
        _iteration(s, d, Workspace() if work is None else work)
    except FloatingPointError as exc:
        raise SamplerError(f"iteration {s.nrun + 1}: {exc}") from exc


def _iteration(s: ChainState, d: ModelData, work: Workspace) -> None:
    rng, k, n, pri = s.rng, d.n_factors, d.n, d.priors
    lambda_prior = pri.Lambda_prior
    kf = d.n_fixed  # fixed factors: the first kf rows of Lambda, held at their values
    F = None if d.single_group else factor_scores_in_rows(s, d)

    # Step 0 (cis_genotypes only). Each trait's own regression X_cis b_cis given the rest
    # (U_R included), flat prior, as R's cis_eQTL_model; step 1 then regresses Eta - X_cis b.
    cis_part = None
    if d.cis is not None:
        psi = residual_proportion(d.grid, s.resid_h2_index) / s.tot_Eta_prec
        sample_cis_effects(s.cis_effects, d.cis, s.Eta - eta_mean(s, d, cis=False), psi, rng)
        cis_part = d.cis.mean(s.cis_effects)

    # Steps 1-2. Traits, group by group in the group's own rotated rows: loadings (under the
    # loadings prior), fixed effects and tot_Eta_prec jointly given resid_h2 (or by the
    # prior's own draw, LambdaPrior.sample_loadings), then resid_h2 and U_R.  Keep
    # Eta - X1 B1 - Z U_R for the factor scores.
    free = s.Lambda[kf:] if kf else s.Lambda
    prior_prec = np.broadcast_to(lambda_prior.precision(s.lambda_prior), free.shape)
    prior_mean = lambda_prior.mean(s.lambda_prior)
    if prior_mean is not None:
        prior_mean = np.broadcast_to(prior_mean, free.shape)
    pen_sampler = None
    if lambda_prior.has_loadings_sampler:  # the prior's own draw (BayesC); else the Gaussian
        def pen_sampler(regression, _state=s.lambda_prior):
            return lambda_prior.sample_loadings(regression, _state, rng)
    residuals = []
    rd = d.regressions
    b2 = rd.p if rd is not None and rd.resids else 0  # X2 B2_R: penalised, before F
    for gi, g in enumerate(d.groups):
        every = g.cols.size == d.t  # one group with every trait: no gather/scatter copies
        cols = slice(None) if every else g.cols
        QtF_g = s.QtF if gi == 0 else g.re.rotate(F[g.rows])  # F in the group's rows
        X_pen = QtF_g
        y = s.QtEta[gi]
        if cis_part is not None:
            y = np.asfortranarray(y - g.re.rotate(cis_part[g.block]))
        if kf:  # the fixed factors' part is known: regress on the free factors only
            y = matmul(X_pen[:, :kf], s.Lambda[:kf, cols], alpha=-1.0, beta=1.0, source=y)
            X_pen = np.asfortranarray(X_pen[:, kf:])
        pen_prec, pen_mean = prior_prec[:, cols], (None if prior_mean is None
                                                   else prior_mean[:, cols])
        sampler, coef_old = pen_sampler, None
        if b2:
            X_pen = np.hstack([rd.QtX2[gi], X_pen])
            pen_prec = np.vstack([precision(rd, s.extra, "B2_R")[:, cols], pen_prec])
            if pen_mean is not None:
                pen_mean = np.vstack([np.zeros((b2, pen_mean.shape[1])), pen_mean])
            if rd.prior.spike_slab or lambda_prior.has_loadings_sampler:
                # single-site sweep over the spike-and-slab rows of [B2_R; Lambda], the
                # Gaussian ones (and B1) jointly given them
                lambda_sites = (lambda_prior.spike_and_slab(s.lambda_prior)
                                if lambda_prior.has_loadings_sampler else None)
                sampler = spike_slab_sampler(rd, s.extra, "B2_R", cols, lambda_sites,
                                             k - kf, pen_prec, rng)
                coef_old = np.concatenate([s.extra["B2_R"][:, cols], s.Lambda[kf:, cols],
                                           s.B1[:, cols]])
        if sampler is not None and coef_old is None:
            coef_old = np.concatenate([s.Lambda[kf:, cols], s.B1[:, cols]])
        draw = sample_column_lmm(
            g.re, y, s.resid_h2_index[cols], pri.tot_Y_var, d.log_prior_resid, rng,
            work, X_pen=X_pen, X_flat=g.QtX1, prior_prec=pen_prec, prior_mean=pen_mean,
            tau=s.tot_Eta_prec[cols], drop_flat=g.drop_fixed, residual=True,
            effects_out=s.U_R if every else None, key=str(gi), pen_sampler=sampler,
            coef_old=coef_old, h2_neighbourhoods=d.h2_neighbourhoods,
        )
        if b2:  # keep Eta - X1 B1 - X2 B2_R - Z U_R for the factor scores
            s.extra["B2_R"][:, cols] = draw.coef[:b2]
            matmul(rd.QtX2[gi], draw.coef[:b2], out=draw.residual, alpha=-1.0, beta=1.0)
        s.Lambda[kf:, cols], s.B1[:, cols] = draw.coef[b2:b2 + k - kf], draw.coef[b2 + k - kf:]
        s.tot_Eta_prec[cols], s.resid_h2_index[cols] = draw.tau, draw.h2_index
        if not every:
            s.U_R[:, cols] = draw.effects
        residual = draw.residual
        if kf:  # the factor scores need Eta - X1 B1 - Z U_R (- X_cis b_cis): add F_fixed back
            residual = matmul(QtF_g[:, :kf], s.Lambda[:kf, cols], out=residual, beta=1.0)
        residuals.append(residual)

    # Steps 3-5. Factors: tot_F_prec given the previous F_h2, then F_h2 and U_F.  (With
    # Control.h2_step_size, resid_h2 and F_h2 move by one Metropolis-Hastings step.)
    # With extra regressions on the factors, B2_F is drawn with tot_F_prec (X2 penalised).
    re_F = d.factor_re
    on_F = rd is not None and rd.factors
    on_F_args = {}
    if on_F:
        on_F_args = {"X_pen": rd.QtX2[0], "prior_prec": precision(rd, s.extra, "B2_F"),
                     "tau": s.tot_F_prec}
        if rd.prior.spike_slab:  # single-site sweep over B2_F
            on_F_args.update(pen_sampler=spike_slab_sampler(rd, s.extra, "B2_F", slice(None),
                                                            None, 0, None, rng),
                             coef_old=s.extra["B2_F"])
    draw = sample_column_lmm(re_F, s.QtF, s.F_h2_index, pri.tot_F_var, d.log_prior_factor,
                             rng, work, key="F", h2_neighbourhoods=d.h2_neighbourhoods,
                             **on_F_args,
                             **({"tau": s.tot_F_prec, "keep_tau": np.arange(k) < kf}
                                if kf else {}))
    s.tot_F_prec, s.F_h2_index, s.U_F = draw.tau, draw.h2_index, draw.effects
    if on_F:
        s.extra["B2_F"] = draw.coef

    # Step 6. Factor scores F, row by row, given Lambda, the traits' residual precisions
    # and the factors' prior mean Z U_F.
    resid_prec = s.tot_Eta_prec / residual_proportion(d.grid, s.resid_h2_index)
    factor_prec = s.tot_F_prec / residual_proportion(d.grid, s.F_h2_index)
    z = standard_normal(rng, n, k)
    if d.single_group:  # rows are exchangeable: sample directly in rotated space
        s.QtF = sample_factor_scores(residuals[0], s.Lambda, resid_prec,
                                     factor_mean(rd, s.extra, re_F.genetic_values(s.U_F)),
                                     factor_prec, z)
        F = E_rows = None
    else:  # rows use different traits: sample in the original rows, by row pattern
        E_rows = residuals_in_rows(d, residuals)
        F = sample_factor_scores_by_pattern(
            d, E_rows, s.Lambda, resid_prec,
            re_F.unrotate(factor_mean(rd, s.extra, re_F.genetic_values(s.U_F))), factor_prec, z)
        s.QtF, s.F = re_F.rotate(F), F

    # Step 7. The loadings prior's own parameters (ARD: local phi, then global deltas).
    s.lambda_prior = lambda_prior.update(s.Lambda[kf:] if kf else s.Lambda, s.tot_Eta_prec,
                                         s.lambda_prior, rng)

    # Step 8. The extra regressions' prior (horseshoe scales; spike and slab: pi, slab
    # variances), only with extra_regressions.
    if rd is not None:
        s.extra = update_precisions(rd, s.extra, s.tot_F_prec, s.tot_Eta_prec, rng)

    # Step 9. The latent Eta given this iteration's factor model (the observation model).
    d.observation.sample_latent(
        s, d, EtaConditional(s, d, residuals=residuals, F=F, residuals_in_rows=E_rows), rng)

    s.nrun += 1
