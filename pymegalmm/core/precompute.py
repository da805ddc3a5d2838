"""Assemble :class:`~pymegalmm.core.data.ModelData`: everything computed once per model.

Specification in (design, data on the sampler's scale, trait groups, grid,
priors), precomputes out: one random-effect back-end per trait group, rotated
fixed-effect designs, identifiability flags, row patterns and grid priors.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..design import Design
from ..observation.base import LatentScale, ObservationModel
from ..priors import Priors, h2_log_prior
from ..regressions import ExtraRegression
from .cis import CisDesign
from .data import GroupData, ModelData, RowPatterns
from .fixed_factors import FixedFactors
from .h2_metropolis import grid_neighbourhoods
from .identifiability import unidentifiable_fixed_effects
from .memory import estimate_precompute_bytes
from .random_effects import (
    DenseRandomEffects,
    DiagonalRandomEffect,
    LowRankRandomEffects,
    RandomEffectsBackend,
)
from .regressions import RegressionData

Groups = list[tuple[np.ndarray, np.ndarray]]


#: The low-rank back-end is chosen when the random effects other than the largest have
#: at most this fraction of the group's rows as coefficients in total (r_o <= n / 4).
LOWRANK_MAX_FRACTION = 0.25


def backend_kind(sizes: list[int], n_rows: int) -> str:
    """Which back-end suits random effects with ``sizes`` coefficients on ``n_rows`` rows.

    ``"diagonal"`` with one random effect; with several, ``"lowrank"`` when the
    effects other than the largest have ``r_o <= LOWRANK_MAX_FRACTION * n_rows``
    coefficients in total (a quadratic form then costs ``O(n r_o)`` per grid point
    instead of the dense back-end's ``O(n^2)``, and the precomputes ``G n r_o``
    numbers instead of ``G n^2``), else ``"dense"``.
    """
    if len(sizes) == 1:
        return "diagonal"
    other = sum(sizes) - max(sizes)
    return "lowrank" if other <= LOWRANK_MAX_FRACTION * n_rows else "dense"


def build_random_effects(design: Design, rows: np.ndarray, grid: np.ndarray
                         ) -> RandomEffectsBackend:
    """The back-end for ``rows``: see :func:`backend_kind`."""
    res = design.random
    kind = backend_kind([r.K_tilde.shape[0] for r in res], rows.size)
    if kind == "diagonal":
        return DiagonalRandomEffect(res[0].ZL[rows], res[0].K_tilde, res[0].L, grid,
                                    Z_all=res[0].ZL, eig=res[0].K_tilde_eig())
    args = ([r.ZL[rows] for r in res], [r.K_tilde for r in res], [r.L for r in res], grid)
    if kind == "lowrank":
        first = int(np.argmax([r.K_tilde.shape[0] for r in res]))
        return LowRankRandomEffects(*args, Z_all=[r.ZL for r in res],
                                    eigs=[r.K_tilde_eig() if m == first else None
                                          for m, r in enumerate(res)])
    return DenseRandomEffects(*args, Z_all=[r.ZL for r in res])


def group_bytes(design: Design, n_grid: int, n_rows: int) -> int:
    """Bytes of the precomputes of one trait group with ``n_rows`` rows."""
    sizes = [re.K_tilde.shape[0] for re in design.random]
    r = sum(sizes)
    low_rank = (r - max(sizes) if backend_kind(sizes, n_rows) == "lowrank" else None)
    return (estimate_precompute_bytes(n_rows, r, n_grid, len(design.random),
                                      low_rank=low_rank)
            + 8 * design.n * r)


def precompute_bytes(design: Design, n_grid: int, groups: Groups) -> int:
    """Bytes of the precomputes of every trait group."""
    return sum(group_bytes(design, n_grid, rows.size) for rows, _ in groups)


def check_memory(design: Design, n_grid: int, groups: Groups, limit_gb: float,
                 h2_divisions: object) -> str:
    """Raise ``MemoryError`` above ``limit_gb``; return a one-line report of the size."""
    r = sum(re.K_tilde.shape[0] for re in design.random)
    gb = precompute_bytes(design, n_grid, groups) / 2**30
    detail = (f"{len(groups)} trait group(s), {n_grid} grid points, n = {design.n}, "
              f"{r} random-effect levels")
    if gb > limit_gb:
        raise MemoryError(
            f"the precomputed factors would need {gb:.2f} GB, above max_precompute_gb = "
            f"{limit_gb}; reduce h2_divisions (now {h2_divisions}, {n_grid} grid points), use "
            f"a missing-data map with fewer groups, or raise Control.max_precompute_gb "
            f"({detail})")
    return f"pymegalmm: precomputed factors need about {gb:.2f} GB ({detail})"


def build_model_data(design: Design, latent: LatentScale, observation: ObservationModel,
                     groups: Groups, grid: np.ndarray, priors: Priors, n_factors: int,
                     h2_step_size: float | None = None,
                     extra: ExtraRegression | None = None,
                     X2: np.ndarray | None = None, *, fixed: FixedFactors | None = None,
                     cis: CisDesign | None = None) -> ModelData:
    """Precompute everything the chains need for the given trait groups.

    With ``h2_step_size`` (``Control.h2_step_size``), also the grid's neighbourhoods
    for the Metropolis-Hastings h2 step; with ``extra`` and its ``X2`` (``n x x2``, rows of
    the data), ``X2`` rotated into each group's rows; with ``fixed`` (fixed factors) and
    ``cis`` (each trait's own regressors, prepared here for the groups' rows), those parts.
    """
    observed = latent.observed
    X1 = design.X1
    drop = unidentifiable_fixed_effects(X1, observed)
    n, t = latent.Y.shape
    used = np.zeros((n, t), dtype=bool)
    group_data = []
    for rows, cols in groups:
        re = build_random_effects(design, rows, grid)
        block_missing = ~observed[np.ix_(rows, cols)]
        group_data.append(GroupData(
            rows=rows, cols=cols, re=re, QtX1=np.ascontiguousarray(re.rotate(X1[rows])),
            drop_fixed=np.ascontiguousarray(drop[cols]),
            imputed=np.nonzero(block_missing),
        ))
        used[np.ix_(rows, cols)] = True
    lambda_prior = priors.Lambda_prior.for_data(n).for_traits(list(design.traits))
    if lambda_prior is not priors.Lambda_prior:  # depends on the number of rows or the traits
        priors = dataclasses.replace(priors, Lambda_prior=lambda_prior)
    return ModelData(
        Y=latent.Y,
        X1=np.ascontiguousarray(X1),
        groups=group_data,
        row_patterns=RowPatterns.from_mask(used),
        grid=grid,
        log_prior_resid=h2_log_prior(priors.h2_prior_resids, grid, "h2_prior_resids"),
        log_prior_factor=h2_log_prior(priors.h2_prior_factors, grid, "h2_prior_factors"),
        priors=priors,
        n_factors=int(n_factors),
        observation=observation,
        h2_neighbourhoods=(None if h2_step_size is None
                           else grid_neighbourhoods(grid, h2_step_size)),
        regressions=None if extra is None else RegressionData(
            X2=np.ascontiguousarray(X2, dtype=float),
            QtX2=[np.ascontiguousarray(g.re.rotate(X2[g.rows])) for g in group_data],
            factors=extra.factors, resids=extra.resids, prior=extra.prior),
        fixed=fixed,
        cis=None if cis is None else cis.for_groups(groups, list(design.traits)),
        latent=latent,
    )
