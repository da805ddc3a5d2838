"""Genetic values of traits without any observation, from their trait covariates.

With ``ARDPrior(trait_covariates=W)`` each factor's loadings have the prior mean
``W beta_k`` (Hu et al. 2024).  A new trait (e.g. an environment that was never
observed) with covariates ``w`` then has, per draw, the loadings ``beta w``
(its own deviation from that mean has prior mean 0) and no trait-specific
random effect (``U_R`` has prior mean 0), so its genetic values per level of K are

``U_new = U_F (W_new beta')' * scale``

with ``U_F`` the factors' random effects (unit-variance factors),
``beta = Lambda_beta / sqrt(tot_F_prec)`` (the coefficients of unit-variance
factors, on the sampler's scale of standardised traits) and ``scale`` the new
trait's standard deviation on the user's scale, which the data cannot tell:
by default the mean of the fitted traits' scales (:func:`default_scale`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError, LabelError
from ..priors.ard import ARDPrior, check_covariates
from ..validate import check_float
from .prediction import check_kind, summarise

if TYPE_CHECKING:
    from .run_results import RunResults

#: Recorded parameters the prediction needs.
NEEDS = ("U_F", "Lambda_beta", "tot_F_prec")


def default_scale(scale: np.ndarray) -> float:
    """The new traits' scale by default: the mean of the fitted traits' scales.

    Parameters
    ----------
    scale : numpy.ndarray
        ``(t,)`` the fitted traits' scales (``user = sampler * scale + center``; their
        standard deviations with ``scale_Y=True``, 1 otherwise).

    Returns
    -------
    float
    """
    return float(np.mean(scale))


def align_new_covariates(W_new: object, prior: ARDPrior) -> pd.DataFrame:
    """``W_new`` checked and with the columns of the prior's ``trait_covariates``, in order.

    Raises
    ------
    InputTypeError, InputError, LabelError
        ``W_new`` is not a DataFrame of finite numbers with unique trait names, or its
        columns are not those of ``trait_covariates``.
    """
    W_new = check_covariates("W_new", W_new)
    columns = list(prior.trait_covariates.columns)
    missing = [c for c in columns if c not in W_new.columns]
    extra = [c for c in W_new.columns if c not in columns]
    if missing or extra:
        raise LabelError(f"W_new must have the columns of the prior's trait_covariates "
                         f"{columns}: missing {missing}, unknown {extra}")
    return W_new[columns]


def new_trait_draws(results: RunResults, prior: ARDPrior, W_new: pd.DataFrame,
                    scale: float) -> xr.DataArray:
    """Draws of the new traits' genetic values, ``(chain, draw, level, trait)``.

    Parameters
    ----------
    results : RunResults
        The run's draws (saved and in memory).
    prior : ARDPrior
        The model's loadings prior, with ``trait_covariates``.
    W_new : pandas.DataFrame
        Checked covariates of the new traits (:func:`align_new_covariates`).
    scale : float
        The new traits' scale on the user's scale of ``Y``.
    """
    recorded = set(results.chains[0].recorder.draws.names)
    missing = [n for n in NEEDS if n not in recorded]
    if missing:
        raise InputError(f"predict_new_traits needs the draws of {list(NEEDS)}; {missing} "
                         "are not recorded: add them to record= when creating the model "
                         "(recorded by default with ARDPrior(trait_covariates=...))")
    parts = []
    if results.store.n_draws:
        parts.append(results.store.load(list(NEEDS), lazy=False))
    if results.n_draws:
        parts.append(results._memory_draws(list(NEEDS)))
    ds = results._join(parts)
    U_F = ds["U_F"].transpose("chain", "draw", "level", "factor").values
    beta = ds["Lambda_beta"].transpose("chain", "draw", "factor", "covariate").values
    f_sd = np.sqrt(ds["tot_F_prec"].transpose("chain", "draw", "factor").values)
    loadings = np.einsum("cdkq,nq->cdkn", beta / f_sd[..., None], W_new.to_numpy())
    values = np.einsum("cdlk,cdkn->cdln", U_F, loadings) * scale
    return xr.DataArray(
        values, dims=("chain", "draw", "level", "trait"),
        coords={"chain": ds["chain"].values, "draw": np.arange(values.shape[1]),
                "level": ds["level"].values, "trait": list(W_new.index)},
        name="U_new",
        attrs={"description": "genetic values of new traits predicted from their trait "
                              f"covariates, U_F (W_new beta)' x scale ({scale:g})",
               "scale": scale},
    )


def predict_new_traits(results: RunResults, prior: object, W_new: object, kind: str,
                       prob: float, interval: str, scale: float | None,
                       fitted_scale: np.ndarray) -> pd.DataFrame | xr.DataArray:
    """Genetic values of new traits (see :meth:`pymegalmm.MegaLMM.predict_new_traits`)."""
    if not isinstance(prior, ARDPrior) or not prior.has_covariates:
        raise InputError(
            "predict_new_traits needs a model fitted with trait covariates, "
            "Priors(Lambda_prior=ARDPrior(trait_covariates=W)): without them nothing maps "
            f"a new trait to the factors (the loadings prior is {prior!r})")
    kind, prob, interval = check_kind(kind, prob, interval)
    W_new = align_new_covariates(W_new, prior)
    scale = (default_scale(fitted_scale) if scale is None
             else check_float("scale", scale, low=0.0, low_open=True))
    draws = new_trait_draws(results, prior, W_new, scale)
    return summarise(draws, kind, prob, interval, "level")
