"""A model specification without data: what :func:`simulate_from_prior` draws from.

:class:`ModelSpec` holds everything of a :class:`~pymegalmm.MegaLMM` model except
``Y``: the formula, the covariates, the relationship matrices, the number of
traits and factors, the priors, the observation model, the run settings and which
cells are missing.  Simulation-based calibration (:func:`pymegalmm.validation.sbc`)
draws parameters and data from it and fits the same model to each data set.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..control import Control
from ..core.cis import CisDesign
from ..core.fixed_factors import FixedFactors
from ..design import Design, build_design
from ..errors import InputError, InputTypeError, MegaLMMError
from ..model_parts import parse_cis_genotypes, parse_lambda_fixed
from ..observation import GaussianMissing, ObservationModel, simulate_observations
from ..priors import Priors
from ..regressions import ExtraRegression
from ..validate import check_float, check_instance, check_int

__all__ = ["ModelSpec", "example_spec"]


def _default_control() -> Control:
    return Control(h2_divisions=20, burn=100, scale_Y=False)


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A MegaLMM model without its data ``Y``.

    Parameters
    ----------
    formula : str
        lme4-style formula, as for :class:`~pymegalmm.MegaLMM` (at least one random term).
    data : pandas.DataFrame
        One row per row of the simulated ``Y``, holding the formula's variables.
        Rows that :class:`~pymegalmm.MegaLMM` would drop (a missing grouping
        variable or covariate) are dropped here too.
    relmat : dict, optional
        Grouping name -> covariance of its levels, as for :class:`~pymegalmm.MegaLMM`.
    traits : int or sequence of str
        Number of traits (named ``y1``, ``y2``, ...) or their names.  Default 5.
    n_factors : int
        Number of factors ``k``, both simulated and fitted (it replaces
        ``control.n_factors``).  Default 2.
    priors : Priors, optional
        Priors the parameters are drawn from and the model is fitted with
        (default :class:`~pymegalmm.Priors`).  Every part must implement its draw
        (``sample_prior`` of the loadings prior).
    observation : ObservationModel, optional
        Observation model (default :class:`~pymegalmm.observation.GaussianMissing`);
        it must implement ``simulate``.
    control : Control, optional
        Run settings of the fits; ``burn`` is the burn-in of every fit.  Must have
        ``scale_Y=False``: scaling ``Y`` by its own mean and SD makes the fitted prior
        depend on the data, so draws from the prior would no longer be draws from
        the model that is fitted.  Default ``Control(h2_divisions=20, burn=100,
        scale_Y=False)``.
    missing : float or array of bool
        A fraction in ``[0, 1)``: that many cells of each trait (rounded) are missing,
        completely at random, drawn anew for every data set (no row is left without
        an observation).  Or an ``(n, t)`` boolean array, True where a cell is
        missing, used for every data set (needed with a missing-data map).
        Default 0.
    B1_sd : float
        SD of the normal distribution the fixed effects ``B1`` are drawn from.  ``B1``
        has a flat prior, which cannot be drawn from; a flat prior on a location
        parameter gives calibrated posteriors whatever the true value, so any
        distribution works.  Default 1.
    extra_regressions : ExtraRegression, optional
        Extra regressions ``X2 B2_F`` on the factors and ``X2 B2_R`` on the traits, as for
        :class:`~pymegalmm.MegaLMM`; ``X`` must have a row for every row (or level of
        ``by``) of ``data``.  ``B2_F`` and ``B2_R`` are drawn from their prior's
        ``sample_prior``.
    Lambda_fixed : pandas.DataFrame, optional
        Fixed factors, as for :class:`~pymegalmm.MegaLMM` (one row per fixed factor,
        one column per trait; with ``scale_Y=False`` the user's scale is the
        sampler's).  Their loadings are not drawn; their ``F_h2`` is drawn from
        ``h2_prior_factors`` and their total precision is 1, as the sampler holds it.
        ``n_factors`` counts them (at least one factor must be free).
    cis_genotypes : dict of trait -> pandas.DataFrame or array, optional
        Each trait's own regressors, as for :class:`~pymegalmm.MegaLMM` (``n`` rows:
        the rows of ``data`` the design keeps).  Full column rank is required over
        all ``n`` rows.
    cis_sd : float
        SD of the normal distribution the cis effects are drawn from (their prior is
        flat, as ``B1``'s: any distribution gives calibrated ranks).  Default 1.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from pymegalmm.validation import ModelSpec
    >>> data = pd.DataFrame({"Line": [f"L{i}" for i in range(30)]})
    >>> spec = ModelSpec("~ 1 + (1|Line)", data, traits=3, n_factors=1)
    >>> spec.n, spec.trait_names
    (30, ['y1', 'y2', 'y3'])
    """

    formula: str
    data: pd.DataFrame
    relmat: Mapping[str, Any] | None = None
    traits: int | Sequence[str] = 5
    n_factors: int = 2
    priors: Priors = field(default_factory=Priors)
    observation: ObservationModel = field(default_factory=GaussianMissing)
    control: Control = field(default_factory=_default_control)
    missing: float | np.ndarray = 0.0
    B1_sd: float = 1.0
    extra_regressions: ExtraRegression | None = None
    # fixed factors and cis effects (model parts of pymegalmm.model_parts)
    Lambda_fixed: pd.DataFrame | None = None
    cis_genotypes: Mapping[Any, Any] | None = None
    cis_sd: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.formula, str):
            raise InputTypeError(f"formula must be a str such as '~ 1 + (1|Line)', got "
                                 f"{type(self.formula).__name__}")
        check_instance("data", self.data, pd.DataFrame, "a pandas DataFrame")
        if self.relmat is not None and not isinstance(self.relmat, Mapping):
            raise InputTypeError("relmat must be a dict of grouping name -> covariance, got "
                                 f"{type(self.relmat).__name__}")
        object.__setattr__(self, "traits", _check_traits(self.traits))
        object.__setattr__(self, "n_factors", check_int("n_factors", self.n_factors, minimum=1))
        check_instance("priors", self.priors, Priors, "a pymegalmm.Priors")
        check_instance("observation", self.observation, ObservationModel,
                       "a pymegalmm.observation model")
        check_instance("control", self.control, Control, "a pymegalmm.Control")
        if self.control.scale_Y:
            raise InputError(
                "control.scale_Y must be False for simulation-based calibration: scaling Y by "
                "its own mean and SD changes the prior with the data, so the fitted model is not "
                "the one simulated from; use Control(..., scale_Y=False)")
        object.__setattr__(self, "control", replace(self.control, n_factors=self.n_factors))
        object.__setattr__(self, "B1_sd", check_float("B1_sd", self.B1_sd, low=0.0))
        design = self.design  # checks formula, data and relmat
        if not design.random:
            raise InputError(f"formula {self.formula!r} has no random-effect term; MegaLMM needs "
                             "at least one, e.g. '~ 1 + (1|Line)'")
        object.__setattr__(self, "missing", _check_missing(self.missing, design.n,
                                                           len(self.trait_names)))
        if (getattr(self.observation, "missing_data_map", None) is not None
                and not isinstance(self.missing, np.ndarray)):
            raise InputError("missing must be a fixed (n, t) boolean array when the observation "
                             "model has a missing-data map (the map fits one pattern)")
        self._check_observation()
        self._check_extra_regressions()
        self._check_model_parts()

    def _check_observation(self) -> dict[str, np.ndarray]:
        """Simulate once from the observation model on the spec's rows and traits (its
        inputs labelled like ``Y`` must match them; NotImplementedError names a model
        that cannot simulate); cache the names, shapes and labels of its drawn
        parameters."""
        design = self.design
        n, t = design.n, len(self.trait_names)
        if isinstance(self.missing, np.ndarray):
            observed = ~self.missing
        else:  # a pattern with the fraction's number of missing cells per trait
            observed = np.ones((n, t), dtype=bool)
            per_trait = int(round(self.missing * n))
            for j in range(t):
                observed[(j * per_trait + np.arange(per_trait)) % n, j] = False
        try:
            draw = simulate_observations(self.observation, np.zeros(observed.shape), observed,
                                         np.random.default_rng(0), rows=list(design.rows),
                                         traits=self.trait_names, data=self.fit_data)
        except MegaLMMError as exc:  # the model's inputs do not fit the spec's rows/traits
            raise type(exc)(f"observation: {exc}") from exc
        except (ValueError, KeyError) as exc:
            raise InputError(f"missing does not fit the observation model: {exc}") from exc
        labels = {name: list(draw.labels[name]) if name in draw.labels else
                  (list(self.trait_names) if np.shape(value) == (t,) else None)
                  for name, value in draw.parameters.items()}
        object.__setattr__(self, "_observation_parameters", draw.parameters)
        object.__setattr__(self, "_observation_labels", labels)
        return draw.parameters

    @property
    def observation_parameters(self) -> dict[str, np.ndarray]:
        """Entries of each parameter the observation model draws (and records) that are
        ranked: name -> bool array, True where the entry exists (e.g. NegativeBinomial's
        ``dispersion``, ``(t,)``, under Combined only its blocks' traits; ProbesToGenes'
        ``probe_precision``, one per probe).  Parameters that are neither per trait nor
        labelled by the model's ``simulate`` are left out."""
        params = self.__dict__.get("_observation_parameters")
        if params is None:  # after unpickling: caches are rebuilt
            params = self._check_observation()
        labels = self.__dict__["_observation_labels"]
        return {name: ~np.isnan(np.asarray(v, dtype=float)) for name, v in params.items()
                if labels.get(name) is not None and np.ndim(v) == 1}

    @property
    def observation_labels(self) -> dict[str, list]:
        """Labels of the entries of :attr:`observation_parameters` (traits, probes,
        responses), those that exist only."""
        masks = self.observation_parameters
        labels = self.__dict__["_observation_labels"]
        return {name: [lab for lab, has in zip(labels[name], mask, strict=True) if has]
                for name, mask in masks.items()}

    def _check_model_parts(self) -> None:
        """Check ``Lambda_fixed``, ``cis_genotypes`` and ``cis_sd`` as MegaLMM would."""
        object.__setattr__(self, "cis_sd", check_float("cis_sd", self.cis_sd, low=0.0))
        if self.Lambda_fixed is not None:
            _ = self.fixed_factors
        if self.cis_genotypes is not None:
            _ = self.cis_design

    # ------------------------------------------------------------------ extra regressions

    def _check_extra_regressions(self) -> None:
        """``extra_regressions``: an :class:`~pymegalmm.ExtraRegression` with a row of ``X``
        for every row of data (its ``X2`` is cached for the simulations)."""
        extra = self.extra_regressions
        if extra is None:
            return
        check_instance("extra_regressions", extra, ExtraRegression,
                       "a pymegalmm.ExtraRegression")
        object.__setattr__(self, "_X2", extra.rows_for(self.fit_data))

    @property
    def X2(self) -> np.ndarray | None:
        """``(n, x2)`` extra-regression covariates of the rows (None without them)."""
        if self.extra_regressions is None:
            return None
        if "_X2" not in self.__dict__:  # after unpickling: caches are rebuilt
            self._check_extra_regressions()
        return self.__dict__["_X2"]

    # ------------------------------------------------------------------ derived

    @property
    def trait_names(self) -> list[str]:
        """Names of the traits."""
        if isinstance(self.traits, int):
            return [f"y{j + 1}" for j in range(self.traits)]
        return list(self.traits)

    @property
    def design(self) -> Design:
        """The model's design (fixed effects, random effects), built once and cached."""
        cached = self.__dict__.get("_design")
        if cached is None:
            t = len(self.trait_names)
            Y = pd.DataFrame(np.zeros((len(self.data), t)), index=self.data.index,
                             columns=self.trait_names)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # dropped rows: reported by n
                cached = build_design(Y, self.formula, self.data, self.relmat,
                                      K_eigen_tol=self.control.K_eigen_tol)
            object.__setattr__(self, "_design", cached)
        return cached

    @property
    def fixed_factors(self) -> FixedFactors | None:
        """The fixed factors (``Lambda_fixed`` checked and in the traits' order), or None."""
        if self.Lambda_fixed is None:
            return None
        cached = self.__dict__.get("_fixed")
        if cached is None:
            t = len(self.trait_names)
            cached = parse_lambda_fixed(self.Lambda_fixed, self.trait_names, self.n_factors,
                                        np.ones(t))
            object.__setattr__(self, "_fixed", cached)
        return cached

    @property
    def n_fixed(self) -> int:
        """Number of fixed factors ``k_f`` (0 without ``Lambda_fixed``)."""
        fixed = self.fixed_factors
        return 0 if fixed is None else fixed.n

    @property
    def cis_design(self) -> CisDesign | None:
        """Each trait's cis regressors over the design's rows (checked), or None."""
        if self.cis_genotypes is None:
            return None
        cached = self.__dict__.get("_cis")
        if cached is None:
            names, n = self.trait_names, self.design.n
            cached = parse_cis_genotypes(self.cis_genotypes, names, list(self.design.rows))
            # the fit checks the rank over each trait group's rows; here over every row
            cached = cached.for_groups([(np.arange(n), np.arange(len(names)))], names)
            object.__setattr__(self, "_cis", cached)
        return cached

    @property
    def n(self) -> int:
        """Number of rows of the simulated data (rows of ``data`` the design keeps)."""
        return self.design.n

    @property
    def fit_data(self) -> pd.DataFrame:
        """The rows of ``data`` kept by the design, in its order."""
        return self.data.loc[self.design.rows]

    def __getstate__(self) -> dict[str, Any]:
        # caches (the design, with formulaic objects) are rebuilt where they are needed
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        missing = (f"array ({int(self.missing.sum())} cells)"
                   if isinstance(self.missing, np.ndarray) else f"{self.missing:g}")
        return (f"ModelSpec(formula={self.formula!r}, n={self.n}, traits={len(self.trait_names)}, "
                f"n_factors={self.n_factors}, h2_divisions={self.control.h2_divisions}, "
                f"burn={self.control.burn}, missing={missing}, "
                f"Lambda_prior={self.priors.Lambda_prior!r}, "
                f"observation={type(self.observation).__name__}"
                f"{self._extra_regressions_repr()}{self._parts_repr()})")

    def _extra_regressions_repr(self) -> str:
        extra = self.extra_regressions
        if extra is None:
            return ""
        return (f", extra_regressions=({len(extra.names)} covariates, factors={extra.factors}, "
                f"resids={extra.resids}, prior={extra.prior!r})")

    def _parts_repr(self) -> str:
        """``, Lambda_fixed=[...]``, ``, cis=...`` when the model has those parts."""
        out = ""
        if self.fixed_factors is not None:
            out += f", Lambda_fixed={self.fixed_factors.names}"
        if self.cis_design is not None:
            out += f", cis_effects={int(self.cis_design.n_cis.sum())}"
        return out


def _check_traits(value: Any) -> int | tuple[str, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return check_int("traits", value, minimum=1)
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray | pd.Index):
        raise InputTypeError(f"traits must be a number of traits or a list of names, got "
                             f"{type(value).__name__}")
    names = [str(v) for v in value]
    if not names:
        raise InputError("traits must name at least one trait")
    if len(set(names)) != len(names):
        repeated = sorted({v for v in names if names.count(v) > 1})
        raise InputError(f"traits has repeated names: {repeated}")
    return tuple(names)


def _check_missing(value: Any, n: int, t: int) -> float | np.ndarray:
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        frac = check_float("missing", value, low=0.0, high=1.0, high_open=True)
        if n - round(frac * n) < 2:
            raise InputError(f"missing = {frac:g} leaves fewer than 2 observed rows per trait "
                             f"(n = {n}); use a smaller fraction")
        return frac
    try:
        mask = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not an array
        mask = None
    if mask is None or mask.dtype != bool:
        raise InputTypeError("missing must be a fraction in [0, 1) or a boolean (n, t) array, "
                             f"True where a cell is missing; got {type(value).__name__}")
    if mask.shape != (n, t):
        raise InputError(f"missing must have shape (n, t) = ({n}, {t}), got {mask.shape}")
    if mask.all(axis=1).any():
        raise InputError(f"missing leaves row(s) {np.flatnonzero(mask.all(axis=1))[:10].tolist()} "
                         "without any observed trait; MegaLMM would drop them")
    if mask.all(axis=0).any():
        raise InputError("missing leaves trait(s) "
                         f"{np.flatnonzero(mask.all(axis=0))[:10].tolist()} without observations")
    return mask.copy()


def example_spec(n: int = 100, traits: int = 5, n_factors: int = 2, *, fixed: bool = True,
                 missing: float = 0.0, h2_divisions: int = 20, burn: int = 100,
                 seed: int = 1, priors: Priors | None = None) -> ModelSpec:
    """A small model on simulated covariates: one random effect with a marker-based K.

    ``n`` individuals with a genomic relationship matrix from
    :func:`pymegalmm.datasets.simulate_factor_data`, a standard-normal covariate
    ``x``, formula ``"~ 1 + x + (1|ID)"`` (``"~ 0 + (1|ID)"`` without fixed
    effects), the default priors (ARD loadings, flat h2 priors) and Gaussian data.

    Parameters
    ----------
    n, traits, n_factors : int
        Rows, traits and factors.
    fixed : bool
        Include the intercept and the covariate ``x``.
    missing : float
        Fraction of each trait's cells missing at random.
    h2_divisions, burn : int
        Settings of :class:`~pymegalmm.Control` (``scale_Y=False``).
    seed : int
        Seed of the simulated relationship matrix and covariate.
    priors : Priors, optional
        Priors (default :class:`~pymegalmm.Priors`).

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> from pymegalmm.validation import example_spec
    >>> example_spec(n=40, traits=3).formula
    '~ 1 + x + (1|ID)'
    """
    from ..datasets import simulate_factor_data

    n = check_int("n", n, minimum=3)
    sim = simulate_factor_data(n=n, t=1, k_true=0, n_markers=500, seed=check_int("seed", seed))
    rng = np.random.default_rng(seed)
    data = sim.data.assign(x=rng.standard_normal(n))
    return ModelSpec(
        "~ 1 + x + (1|ID)" if fixed else "~ 0 + (1|ID)", data, {"ID": sim.K}, traits=traits,
        n_factors=n_factors, priors=Priors() if priors is None else priors,
        control=Control(h2_divisions=h2_divisions, burn=burn, scale_Y=False), missing=missing,
    )
