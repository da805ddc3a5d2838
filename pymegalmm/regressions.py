"""Extra regressions on the factors and the traits' residual models (R's ``extra_regressions``).

The model with a matrix ``X2`` (``n x x2``, one row per row of data)::

    Eta = X1 B1 + X2 B2_R + F Lambda + Z U_R + E_R
    F   =         X2 B2_F +            Z U_F + E_F

``B2_F`` (``x2 x k``) are the covariates' effects on the factors, ``B2_R``
(``x2 x t``) their direct effects on each trait; ``X2 B2_F Lambda + X2 B2_R`` is
their total effect on the traits.  Both are penalised by a horseshoe prior
(:class:`RegressionHorseshoePrior`, R's ``sample_B2_prec_horseshoe``, METHOD.md
step 8) and drawn in the column-LMM step (:mod:`pymegalmm.core.column_lmm`) as
penalised regressors: next to ``F`` for the traits, alone for the factors.

``X2`` is given by row (a DataFrame indexed like ``data``) or by level of a
grouping variable (``ExtraRegression(X=markers, by="Line")``: one row per line,
e.g. a marker matrix).  With ``by``, lines that have markers but no data (and are
not in ``K``) are predicted from their markers alone (:meth:`pymegalmm.MegaLMM.predict`,
:meth:`pymegalmm.MegaLMM.genetic_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError, InputTypeError, LabelError
from .validate import check_bool, check_float

#: The regressions' parameters: dims (after chain, draw) and descriptions.
REGRESSION_DIMS: dict[str, tuple[str, ...]] = {
    "B2_F": ("marker", "factor"),
    "B2_R": ("marker", "trait"),
    "B2_F_prec": ("marker", "factor"),
    "B2_R_prec": ("marker", "trait"),
}
REGRESSION_DESCRIPTIONS: dict[str, str] = {
    "B2_F": "effects of the extra regressors (X2) on the factors (unit-variance factors)",
    "B2_R": "direct effects of the extra regressors (X2) on each trait, user's scale",
    "B2_F_prec": "prior precision of each B2_F coefficient (horseshoe, unit-variance factors)",
    "B2_R_prec": "prior precision of each B2_R coefficient (horseshoe), user's scale",
}


@dataclass(frozen=True)
class RegressionHorseshoePrior:
    """Horseshoe prior on the extra-regression coefficients (R's ``sample_B2_prec_horseshoe``).

    For each column ``j`` (a trait for ``B2_R``, a factor for ``B2_F``) with total
    precision ``tau_j``::

        B2_ij ~ N(0, phi2_ij t2_j / tau_j),
        phi2_ij | nu_ij ~ IG(1/2, 1/nu_ij),  nu_ij ~ IG(1/2, 1),
        t2_j | xi_j ~ IG(1/2, 1/xi_j),       xi_j ~ IG(1/2, 1/tau_0^2),

    with ``tau_0 = prop_0 / (1 - prop_0) / sqrt(n)`` (``n`` rows): half-Cauchy local
    and global scales, about a share ``prop_0`` of the coefficients escaping the
    shrinkage a priori.  ``IG(a, b)``: shape ``a``, scale ``b``.

    Parameters
    ----------
    prop_0 : float
        Prior guess of the proportion of non-zero coefficients, in ``(0, 1)``.
        Default 0.1 (R).
    """

    prop_0: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "prop_0", check_float("prop_0", self.prop_0, low=0.0,
                                                       high=1.0, low_open=True,
                                                       high_open=True))

    def tau_0(self, n: int) -> float:
        """Global scale of the half-Cauchy prior of ``sqrt(t2)`` for ``n`` rows."""
        return self.prop_0 / (1.0 - self.prop_0) / math.sqrt(n)

    def initialize(self, p: int, c: int, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scales from the prior, then ``B2 ~ N(0, phi2 t2)`` (METHOD.md section 4, item 8).

        Random numbers: ``c`` gammas (``xi``), ``c`` (``t2``), ``(p, c)`` (``nu``),
        ``(p, c)`` (``phi2``), ``(p, c)`` normals (``B2``).
        """
        t0 = self.tau_0(n)
        xi = (1.0 / t0**2) / rng.standard_gamma(0.5, size=c)
        t2 = (1.0 / xi) / rng.standard_gamma(0.5, size=c)
        nu = 1.0 / rng.standard_gamma(0.5, size=(p, c))
        phi2 = (1.0 / nu) / rng.standard_gamma(0.5, size=(p, c))
        B = np.asfortranarray(rng.standard_normal((p, c)) * np.sqrt(phi2 * t2))
        return B, {"phi2": np.asfortranarray(phi2), "nu": np.asfortranarray(nu),
                   "t2": t2, "xi": xi}

    @staticmethod
    def precision(state: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` prior precisions relative to ``tau``: ``1 / (phi2 t2)``."""
        return np.asfortranarray(1.0 / (state["phi2"] * state["t2"]))

    def update(self, B: np.ndarray, tau: np.ndarray, state: dict[str, np.ndarray], n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One Gibbs update of the scales given ``B`` (METHOD.md step 8, in R's order).

        ``nu ~ IG(1, 1 + 1/phi2)``; ``phi2 ~ IG(1, 1/nu + tau B^2 / (2 t2))``;
        ``xi ~ IG(1, 1/tau_0^2 + 1/t2)``; ``t2 ~ IG((p + 1)/2, 1/xi + sum_i tau B^2/(2 phi2))``.
        Random numbers: ``(p, c)`` exponentials, ``(p, c)``, then ``c`` gammas, ``c``.
        """
        p, c = B.shape
        b = 0.5 * np.square(B) * tau
        t2 = state["t2"]
        nu = (1.0 + 1.0 / state["phi2"]) / rng.standard_exponential((p, c))
        phi2 = (1.0 / nu + b / t2) / rng.standard_exponential((p, c))
        xi = (1.0 / self.tau_0(n) ** 2 + 1.0 / t2) / rng.standard_exponential(c)
        t2 = (1.0 / xi + (b / phi2).sum(axis=0)) / rng.standard_gamma(0.5 * (p + 1), size=c)
        return {"phi2": np.asfortranarray(phi2), "nu": np.asfortranarray(nu),
                "t2": t2, "xi": xi}


#: State arrays of the prior and whether they have a column per factor/trait (axis 1 or 0).
PRIOR_COLUMN_AXIS = {"phi2": 1, "nu": 1, "t2": 0, "xi": 0}


@dataclass(frozen=True, eq=False)
class ExtraRegression:
    """Covariates that regress the factors and/or the traits' residual models (``X2``).

    Parameters
    ----------
    X : pandas.DataFrame
        Numeric covariates, one column each (their names label the ``marker`` dim of
        ``B2_F`` and ``B2_R``).  Without ``by``: one row per row of ``data``, indexed
        like it (every row of ``data`` must be in ``X``'s index).  With ``by``: one row
        per level of the grouping variable ``by`` (e.g. a marker matrix indexed by
        line); every level in ``data`` must have a row, and extra rows (lines without
        data) are predicted from their covariates.  Columns are used as given:
        centre them (e.g. markers minus their mean) so that ``X2 B2`` has mean zero,
        as the factors do.
    by : str, optional
        Column of ``data`` whose levels index ``X``.
    factors : bool
        Regress the factors on ``X`` (``B2_F``).  Default True.
    resids : bool
        Regress the traits' residual models on ``X`` (``B2_R``).  Default True.
    prior : RegressionHorseshoePrior
        Prior of ``B2_F`` and ``B2_R`` (the horseshoe, R's default).

    Notes
    -----
    R's low-rank form ``X = U V'`` (``X2_F`` given as ``U2_F`` and ``V2_F``) is not
    supported: pass ``X`` whole.
    """

    X: pd.DataFrame
    by: str | None = None
    factors: bool = True
    resids: bool = True
    prior: RegressionHorseshoePrior = field(default_factory=RegressionHorseshoePrior)

    def __post_init__(self) -> None:
        X = self.X
        if not isinstance(X, pd.DataFrame):
            raise InputTypeError(f"extra_regressions.X must be a pandas DataFrame (rows x "
                                 f"covariates), got {type(X).__name__}")
        if X.shape[1] == 0:
            raise InputError("extra_regressions.X has no columns")
        bad = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
               or pd.api.types.is_bool_dtype(X[c])]
        if bad:
            raise InputTypeError(f"extra_regressions.X has non-numeric column(s) {bad[:10]}")
        values = X.to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            rows, cols = np.nonzero(~np.isfinite(values))
            raise InputError(f"extra_regressions.X has {rows.size} NaN or infinite value(s), "
                             f"e.g. row {X.index[rows[0]]!r}, column {X.columns[cols[0]]!r}")
        if X.index.has_duplicates:
            dup = X.index[X.index.duplicated()].unique()[:10]
            raise InputError(f"extra_regressions.X has duplicated index labels {list(dup)}")
        if X.columns.has_duplicates:
            raise InputError("extra_regressions.X has duplicated column names")
        if self.by is not None and not isinstance(self.by, str):
            raise InputTypeError(f"extra_regressions.by must be a column name (str) or None, "
                                 f"got {type(self.by).__name__}")
        object.__setattr__(self, "factors", check_bool("extra_regressions.factors",
                                                       self.factors))
        object.__setattr__(self, "resids", check_bool("extra_regressions.resids", self.resids))
        if not (self.factors or self.resids):
            raise InputError("extra_regressions: factors and resids are both False; set one")
        if not isinstance(self.prior, RegressionHorseshoePrior):
            raise InputTypeError("extra_regressions.prior must be a RegressionHorseshoePrior, "
                                 f"got {type(self.prior).__name__}")

    @property
    def names(self) -> list[str]:
        """The covariates' names (the ``marker`` coordinate)."""
        return [str(c) for c in self.X.columns]

    def rows_for(self, data: pd.DataFrame, what: str = "data") -> np.ndarray:
        """``X2`` for the rows of ``data`` (``len(data) x x2``), by row label or by level.

        Raises ``LabelError`` naming the rows or levels of ``data`` without a row in ``X``.
        """
        if self.by is None:
            pos = self.X.index.get_indexer(data.index)
            if (pos < 0).any():
                missing = [str(v) for v in data.index[pos < 0][:10]]
                raise LabelError(f"extra_regressions.X has no row for {int((pos < 0).sum())} "
                                 f"row(s) of {what}, e.g. {missing} (X is indexed like the "
                                 "data's rows; or give by= a grouping column)")
        else:
            if self.by not in data.columns:
                raise LabelError(f"extra_regressions.by={self.by!r} is not a column of {what}")
            keys = data[self.by]
            if pd.isna(keys).any():
                raise InputError(f"{what}'s column {self.by!r} (extra_regressions.by) has "
                                 "missing values")
            pos = pd.Index(self.level_keys()).get_indexer(keys.astype(str))
            if (pos < 0).any():
                missing = [str(v) for v in pd.unique(keys[pos < 0].astype(str))[:10]]
                raise LabelError(f"extra_regressions.X has no row for level(s) {missing} of "
                                 f"{self.by!r} in {what}")
        return np.ascontiguousarray(self.X.to_numpy(dtype=float)[pos])

    def level_keys(self) -> list[str]:
        """``X``'s index as strings (the levels of ``by``)."""
        return [str(v) for v in self.X.index]


def regression_dims(extra: ExtraRegression) -> dict[str, tuple[str, ...]]:
    """Dims of the recordable parameters of ``extra`` (``B2_F`` with ``factors``, ``B2_R``
    with ``resids``, and their prior precisions)."""
    on = {"B2_F": extra.factors, "B2_R": extra.resids}
    return {name: dims for name, dims in REGRESSION_DIMS.items() if on[name[:4]]}


def regression_draws(ds: xr.Dataset, X2: np.ndarray, with_factors: bool) -> np.ndarray:
    """``X2 (B2_F Lambda + B2_R)`` per draw, ``(chain, draw, row, trait)``, user's scale.

    Parameters
    ----------
    ds : draws with ``B2_F`` and ``Lambda`` (when ``with_factors`` and recorded) and
        ``B2_R`` (when recorded).
    X2 : (rows, x2) covariates of the rows.
    with_factors : include ``X2 B2_F Lambda`` (False for the fitted rows, whose factor
        scores ``F`` already hold it).
    """
    c, d, t = ds.sizes["chain"], ds.sizes["draw"], ds.sizes["trait"]
    coef = np.zeros((c, d, X2.shape[1], t))
    if with_factors and "B2_F" in ds:
        B2_F = ds["B2_F"].transpose("chain", "draw", "marker", "factor").values
        Lam = ds["Lambda"].transpose("chain", "draw", "factor", "trait").values
        coef += np.einsum("cdmk,cdkt->cdmt", B2_F, Lam)
    if "B2_R" in ds:
        coef += ds["B2_R"].transpose("chain", "draw", "marker", "trait").values
    return np.einsum("rm,cdmt->cdrt", X2, coef)


def regression_names(extra: ExtraRegression, with_factors: bool) -> list[str]:
    """The draws :func:`regression_draws` needs."""
    return ([*(["B2_F", "Lambda"] if with_factors and extra.factors else []),
             *(["B2_R"] if extra.resids else [])])


def genetic_values_with_markers(U: xr.DataArray, extra: ExtraRegression, ds: xr.Dataset
                                ) -> xr.DataArray:
    """Genetic values over the levels of ``K`` and the levels of ``extra.X`` (``by`` levels).

    ``U_ext[l] = U[l] + X2[l] (B2_F Lambda + B2_R)``: ``U[l] = U_F Lambda + U_R`` for a level
    of ``K`` (0 for a level with covariates only) plus the covariates' part for a level
    with a row in ``X`` (0 for a level of ``K`` without one).  Levels of ``K`` first, in
    their order, then the levels with covariates only, in ``X``'s order.
    """
    k_levels = [str(v) for v in U["level"].values]
    x_levels = extra.level_keys()
    only_x = [v for v in x_levels if v not in set(k_levels)]
    levels = k_levels + only_x
    X_all = np.zeros((len(levels), extra.X.shape[1]))
    pos = pd.Index(levels).get_indexer(x_levels)
    X_all[pos] = extra.X.to_numpy(dtype=float)
    values = regression_draws(ds, X_all, with_factors=True)
    values[:, :, :len(k_levels)] += U.transpose("chain", "draw", "level", "trait").values
    return xr.DataArray(values, dims=("chain", "draw", "level", "trait"),
                        coords={"chain": U["chain"].values, "draw": U["draw"].values,
                                "level": levels, "trait": U["trait"].values},
                        name="U", attrs={"description": "genetic values U_F Lambda + U_R "
                                         "+ X2 (B2_F Lambda + B2_R) per level, user's scale"})
