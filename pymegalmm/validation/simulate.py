"""Draw every parameter of a model from its priors, then data from the model.

The generative model is the one the sampler targets (METHOD.md section 1; sampler's
scale, which is the user's with ``scale_Y=False``)::

    tot_Eta_prec_j ~ tot_Y_var prior          resid_h2_j ~ h2_prior_resids (grid)
    tot_F_prec_k   ~ tot_F_var prior          F_h2_k     ~ h2_prior_factors (grid)
    Lambda, loadings-prior state ~ Lambda_prior.sample_prior(k, tot_Eta_prec)
        (with Lambda_fixed: its k_f rows first, tot_F_prec = 1 for them, and the
        loadings prior draws the k - k_f free rows)
    B1 ~ N(0, B1_sd^2)                        (flat prior: see ModelSpec)
    U_F^(m)[:, k] ~ N(0, F_h2[m, k] / tot_F_prec_k K_m)
    F   = sum_m Z_m U_F^(m) + E_F,   E_F[:, k] ~ N(0, (1 - sum_m F_h2[m, k]) / tot_F_prec_k)
    U_R^(m)[:, j] ~ N(0, resid_h2[m, j] / tot_Eta_prec_j K_m)
    Eta = X1 B1 + F Lambda + sum_m Z_m U_R^(m) + E_R,
                                     E_R[:, j] ~ N(0, (1 - sum_m resid_h2[m, j]) / tot_Eta_prec_j)
          (+ X_cis,j b_cis,j with cis_genotypes, b_cis ~ N(0, cis_sd^2): flat prior)
    Y, observation parameters = observation.simulate(Eta, observed; rows, traits, data)
        (inputs labelled like Y matched by the rows' and traits' labels; models whose
        data are not laid out like Eta, e.g. probes or observations along curves, draw
        them in their own layout, and the fit gets them from Simulation.fit_arguments)

Each part draws its own parameters next to its update: the loadings prior's
:meth:`~pymegalmm.priors.LambdaPrior.sample_prior`, the precision priors'
:meth:`~pymegalmm.priors.VariancePrior.sample_prior`, the discrete h2 priors'
:func:`~pymegalmm.priors.h2.sample_h2_prior` and the observation model's
:meth:`~pymegalmm.observation.ObservationModel.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from ..core.grid import make_h2_grid
from ..design import Design
from ..observation import ObservationModel, SimulatedObservations, simulate_observations
from ..priors import LambdaPrior
from ..priors.h2 import sample_h2_prior
from ..validate import check_instance
from .spec import ModelSpec

__all__ = ["Simulation", "simulate_from_prior"]


@dataclass(eq=False)
class Simulation:
    """One draw of parameters from the priors and of data from the model.

    Attributes
    ----------
    spec : ModelSpec
        The specification drawn from.
    Y : pandas.DataFrame
        ``(n, t)`` data, NaN where missing; index = the rows of ``data`` kept.  For an
        observation model whose data are not laid out like ``Eta`` (probes, observations
        along curves), the latent traits' table built from its data (its
        ``latent_frame``); the data themselves are ``observations.data``.
    data : pandas.DataFrame
        The covariates of those rows (``spec.fit_data``).
    observed : numpy.ndarray
        ``(n, t)`` bool, True where a cell is observed.
    parameters : dict of str -> numpy.ndarray
        The true parameters on the sampler's scale: ``Lambda`` (k, t), ``tot_Eta_prec``
        (t,), ``resid_h2_index`` (t,), ``tot_F_prec`` (k,), ``F_h2_index`` (k,), ``B1``
        (b1, t), ``U_R`` (levels, t) and ``U_F`` (levels, k) (random effects stacked
        in formula order), ``F`` (n, k), ``Eta`` (n, t), the loadings prior's state
        under ``lambda_prior.<name>`` (free factors only), and with ``cis_genotypes``
        ``cis_effects`` (t, c_max; 0 beyond a trait's ``c_j``).  With ``Lambda_fixed``
        the first rows of ``Lambda`` are the fixed loadings and the first entries of
        ``tot_F_prec`` are 1.
    grid : numpy.ndarray
        ``(m, G)`` grid of variance proportions.
    lambda_prior : LambdaPrior
        The loadings prior as the model uses it on these data (after its
        ``for_data`` and ``for_traits`` hooks, e.g. the horseshoe's ``tau_0``).
    observations : SimulatedObservations, optional
        What the observation model drew (its data in its own layout, if any, and its
        parameters).
    """

    spec: ModelSpec
    Y: pd.DataFrame
    data: pd.DataFrame
    observed: np.ndarray
    parameters: dict[str, np.ndarray]
    grid: np.ndarray
    lambda_prior: LambdaPrior
    observations: SimulatedObservations | None = None

    def fit_arguments(self, observation: ObservationModel | None = None
                      ) -> tuple[Any, ObservationModel]:
        """The ``Y`` and ``observation`` arguments of :class:`~pymegalmm.MegaLMM` that fit
        these data: ``observation.with_data`` (default the spec's observation model;
        another model, e.g. a deliberately wrong one, fits the same simulated data).

        Returns
        -------
        (Y, observation)
            ``self.Y`` and the model for data laid out like ``Eta``; the model's own
            data (probes table; ``None`` and a model holding the new observations).
        """
        model = self.spec.observation if observation is None else observation
        drawn = self.observations
        if drawn is None:
            drawn = SimulatedObservations(self.Y.to_numpy())
        return model.with_data(drawn, self.Y)

    def user_scale(self) -> dict[str, np.ndarray]:
        """The true parameters as the fitted model reports them.

        The conventions of :class:`pymegalmm.run.transform.UserScale` with
        ``scale_Y=False`` (user's scale = sampler's scale): factors of unit variance
        (``Lambda / sqrt(tot_F_prec)``), variance proportions from the grid, and the
        loadings prior's recorded state.  ``Eta`` is the latent data, missing cells included.
        With ``cis_genotypes``, ``cis_effects`` (t, c_max), NaN beyond each trait's
        columns, as the model records them.  The observation model's drawn parameters
        under their recorded names (e.g. ``dispersion``; the link scale of count models
        is never scaled, and ``scale_Y=False`` leaves the others as drawn).
        """
        p = self.parameters
        prior = self.lambda_prior
        state = {name[len("lambda_prior."):]: value for name, value in p.items()
                 if name.startswith("lambda_prior.")}
        return {
            "Lambda": p["Lambda"] / np.sqrt(p["tot_F_prec"])[:, None],
            "F_h2": self.grid[:, p["F_h2_index"]],
            "resid_h2": self.grid[:, p["resid_h2_index"]],
            "tot_Eta_prec": p["tot_Eta_prec"].copy(),
            "tot_F_prec": p["tot_F_prec"].copy(),
            "B1": p["B1"].copy(),
            "Eta": p["Eta"].copy(),
            **prior.record(state),
            **_regressions_user_scale(p),
            **self._cis_record(),
            **{name[len("observation."):]: value.copy() for name, value in p.items()
               if name.startswith("observation.")},
        }

    def _cis_record(self) -> dict[str, np.ndarray]:
        """``cis_effects`` as the model records it (NaN beyond each trait's ``c_j``)."""
        if "cis_effects" not in self.parameters:
            return {}
        cis = self.parameters["cis_effects"].copy()
        n_cis = self.spec.cis_design.n_cis
        cis[np.arange(cis.shape[1])[None, :] >= n_cis[:, None]] = np.nan
        return {"cis_effects": cis}


@dataclass(frozen=True, eq=False)
class _Effect:
    """One random effect ready to draw from: ``U = root @ z`` has covariance ``K``."""

    Z: object  # scipy sparse or dense (n, r)
    root: np.ndarray  # (r, r_tilde)


def _effects(design: Design) -> list[_Effect]:
    out = []
    roots: dict[int, np.ndarray] = {}
    for re in design.random:
        key = id(re.K_tilde)  # components of one grouping factor share K
        if key not in roots:
            K = re.K_tilde
            if not np.any(K - np.diag(np.diag(K))):  # diagonal (e.g. no relmat): no eigh
                roots[key] = re.L * np.sqrt(np.clip(np.diag(K), 0.0, None))[None, :]
            else:
                values, vectors = scipy.linalg.eigh(K, check_finite=False)
                roots[key] = re.L @ (vectors * np.sqrt(np.clip(values, 0.0, None)))
        out.append(_Effect(re.Z, roots[key]))
    return out


def _draw_effects(effects: list[_Effect], h2: np.ndarray, prec: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random effects per level (stacked) and their sum ``sum_m Z_m U_m`` over the rows."""
    per_level, total = [], None
    for m, eff in enumerate(effects):
        z = rng.standard_normal((eff.root.shape[1], prec.size))
        U = eff.root @ z * np.sqrt(h2[m] / prec)[None, :]
        per_level.append(U)
        value = np.asarray(eff.Z @ U)
        total = value if total is None else total + value
    return np.vstack(per_level), total


def _missing_mask(spec: ModelSpec, n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, t)`` bool, True where missing: the spec's array, or a fresh random pattern."""
    if isinstance(spec.missing, np.ndarray):
        return spec.missing.copy()
    per_trait = int(round(spec.missing * n))
    if per_trait == 0:
        return np.zeros((n, t), dtype=bool)
    for _ in range(1000):  # no row may lose every trait (MegaLMM would drop it)
        mask = np.zeros((n, t), dtype=bool)
        for j in range(t):
            mask[rng.permutation(n)[:per_trait], j] = True
        if not mask.all(axis=1).any():
            return mask
    raise ValueError(f"missing = {spec.missing:g} leaves some row without observations in "
                     "1000 random patterns; use a smaller fraction")


def _with_fixed_factors(spec: ModelSpec, tau_F: np.ndarray, Lambda: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The fixed factors put first: total precision 1 (as the sampler holds it) and their
    given loadings (sampler's scale = user's with ``scale_Y=False``)."""
    fixed = spec.fixed_factors
    return (np.concatenate([np.ones(fixed.n), tau_F]),
            np.vstack([fixed.scaled, np.asarray(Lambda)]))


def _draw_cis_effects(spec: ModelSpec, rng: np.random.Generator) -> np.ndarray | None:
    """``(t, c_max)`` cis effects from ``N(0, cis_sd^2)`` (flat prior: see ModelSpec), 0
    beyond each trait's ``c_j``; None without ``cis_genotypes`` (no random number used)."""
    cis = spec.cis_design
    if cis is None:
        return None
    n_cis = cis.n_cis
    b = np.zeros((n_cis.size, cis.width))
    inside = np.arange(cis.width)[None, :] < n_cis[:, None]
    b[inside] = spec.cis_sd * rng.standard_normal(int(n_cis.sum()))
    return b


def simulate_from_prior(model_spec: ModelSpec, rng: np.random.Generator) -> Simulation:
    """Draw every parameter of ``model_spec`` from its prior, then data from the model.

    The draws follow exactly the priors the sampler uses (see the module docstring):
    discrete h2 priors on the same grid, the loadings prior's own ``sample_prior``
    (ARD: ``delta_l >= 1`` for ``l >= 2``), the total precisions of the factors from
    ``tot_F_var``.  ``B1`` (flat prior) is drawn from ``N(0, B1_sd^2)``.

    Parameters
    ----------
    model_spec : ModelSpec
        The model.
    rng : numpy.random.Generator
        Source of every random number (same generator state, same draw).

    Returns
    -------
    Simulation
        The data, the true parameters and their values on the user's scale
        (:meth:`Simulation.user_scale`).

    Examples
    --------
    >>> import numpy as np
    >>> from pymegalmm.validation import example_spec, simulate_from_prior
    >>> sim = simulate_from_prior(example_spec(n=40, traits=3), np.random.default_rng(1))
    >>> sim.Y.shape
    (40, 3)
    """
    spec = check_instance("model_spec", model_spec, ModelSpec, "a pymegalmm.validation.ModelSpec")
    check_instance("rng", rng, np.random.Generator, "a numpy.random.Generator")
    design = spec.design
    effects = spec.__dict__.get("_effects")
    if effects is None:
        effects = _effects(design)
        object.__setattr__(spec, "_effects", effects)
    pri, names = spec.priors, spec.trait_names
    n, t, k, b1 = design.n, len(names), spec.n_factors, design.X1.shape[1]
    grid = make_h2_grid(len(design.random), spec.control.h2_divisions)

    tau = pri.tot_Y_var.sample_prior(t, rng)
    resid_idx = sample_h2_prior(pri.h2_prior_resids, grid, t, rng, "h2_prior_resids")
    kf = spec.n_fixed  # fixed factors first: total precision 1, loadings as given
    tau_F = pri.tot_F_var.sample_prior(k - kf, rng)
    F_idx = sample_h2_prior(pri.h2_prior_factors, grid, k, rng, "h2_prior_factors")
    # the prior as the model uses it on these data (ModelData's: for_data, then for_traits)
    lambda_prior = pri.Lambda_prior.for_data(n).for_traits(list(names))
    Lambda, prior_state = lambda_prior.sample_prior(k - kf, tau, rng)
    if kf:
        tau_F, Lambda = _with_fixed_factors(spec, tau_F, Lambda)
    B1 = spec.B1_sd * rng.standard_normal((b1, t))
    cis_effects = _draw_cis_effects(spec, rng)

    h_F, h_R = grid[:, F_idx], grid[:, resid_idx]
    U_F, ZU_F = _draw_effects(effects, h_F, tau_F, rng)
    F = ZU_F + rng.standard_normal((n, k)) * np.sqrt((1.0 - h_F.sum(axis=0)) / tau_F)
    U_R, ZU_R = _draw_effects(effects, h_R, tau, rng)
    Eta = (design.X1 @ B1 + F @ Lambda + ZU_R
           + rng.standard_normal((n, t)) * np.sqrt((1.0 - h_R.sum(axis=0)) / tau))
    regression_parameters = {}
    if spec.extra_regressions is not None:  # X2 B2_F into F (and F Lambda), X2 B2_R into Eta
        F, Eta, regression_parameters = _add_regressions(spec, F, Eta, Lambda, tau, tau_F, rng)
    if cis_effects is not None:
        Eta += spec.cis_design.mean(cis_effects)
    observed = ~_missing_mask(spec, n, t, rng)
    drawn = simulate_observations(spec.observation, Eta, observed, rng, rows=list(design.rows),
                                  traits=names, data=spec.fit_data)
    Y = drawn.Y

    parameters = {
        "Lambda": np.asarray(Lambda), "tot_Eta_prec": tau, "resid_h2_index": resid_idx,
        "tot_F_prec": tau_F, "F_h2_index": F_idx, "B1": B1, "U_R": U_R, "U_F": U_F, "F": F,
        "Eta": Eta,
        **{f"lambda_prior.{name}": value for name, value in prior_state.items()},
        **regression_parameters,
        **{f"observation.{name}": value for name, value in drawn.parameters.items()},
    }
    if cis_effects is not None:
        parameters["cis_effects"] = cis_effects
    rows = design.rows
    return Simulation(spec=spec, Y=pd.DataFrame(Y, index=rows, columns=names),
                      data=spec.data.loc[rows], observed=observed, parameters=parameters,
                      grid=grid, lambda_prior=lambda_prior, observations=drawn)


# ----------------------------------------------------------------------------- extra regressions

def _add_regressions(spec: ModelSpec, F: np.ndarray, Eta: np.ndarray, Lambda: np.ndarray,
                     tau: np.ndarray, tau_F: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``B2_F`` (with ``tot_F_prec``) then ``B2_R`` (with ``tot_Eta_prec``) from the prior's
    ``sample_prior``; ``F += X2 B2_F`` (so ``Eta += X2 B2_F Lambda``), ``Eta += X2 B2_R``.

    The prior's ``n`` (the horseshoe's global scale) is the number of rows, as the
    model's.  Returns the new ``F`` and ``Eta`` and the parameters ``B2_F``, ``B2_R`` and
    the prior's state (``B2_F.<key>``).
    """
    extra, X2 = spec.extra_regressions, spec.X2
    n, p = X2.shape
    out: dict[str, np.ndarray] = {}
    if extra.factors:
        B2_F, state = extra.prior.sample_prior(p, tau_F.size, n, tau_F, rng)
        part = X2 @ B2_F
        F = F + part
        Eta = Eta + part @ Lambda
        out.update({"B2_F": B2_F, **{f"B2_F.{k}": v for k, v in state.items()}})
    if extra.resids:
        B2_R, state = extra.prior.sample_prior(p, tau.size, n, tau, rng)
        Eta = Eta + X2 @ B2_R
        out.update({"B2_R": B2_R, **{f"B2_R.{k}": v for k, v in state.items()}})
    return F, Eta, out


def _regressions_user_scale(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``B2_F`` with unit-variance factors (``B2_F sqrt(tot_F_prec)``) and ``B2_R``
    (``scale_Y=False``: as drawn), as :class:`pymegalmm.run.transform.UserScale`."""
    out = {}
    if "B2_F" in p:
        out["B2_F"] = p["B2_F"] * np.sqrt(p["tot_F_prec"])[None, :]
    if "B2_R" in p:
        out["B2_R"] = p["B2_R"].copy()
    return out
