"""Individual curves: several observations per individual along a covariate.

R MegaLMM's ``regression_model`` (Gaussian observations) and ``bs_binomial_model``
(binomial observations).  Each individual ``i`` (a row of ``data``) has observations
``o`` (rows of the ``observations`` table, e.g. heights at several times) with
covariates ``x_o`` (the row of the individual-level design built by formulaic from
``formula``'s right-hand side, e.g. ``bs(time, df=5)``).  The latent ``Eta`` holds each
individual's coefficients ``beta_i``: ``k`` per response, and the factor model
describes them (their genetic covariance, their fixed effects).

Gaussian family, per response ``r``::

    y_o = x_o' beta_i,r + e_o,      e_o ~ N(0, 1 / tau_r)

Binomial family (one response, successes out of ``trials``)::

    y_o ~ Binomial(N_o, expit(x_o' beta_i))

With ``differences=True`` the basis columns other than the intercept are
reparameterised as R's ``bs_diff``: their coefficients become the level (the mean of
the original coefficients) and the successive differences between consecutive
coefficients, which is how the factor model then sees them (the fitted curves are
the same functions of the data; only the prior on the coefficients changes).

Every iteration, for every individual, given the factor model's mean ``mu_i`` and
residual variances ``v`` of its coefficients (sampler's scale)::

    beta_i ~ N(P^-1 b, P^-1),  P = X_i' W_i X_i + diag(1 / v),  b = X_i' c_i + mu_i / v

Gaussian: ``W = tau I``, ``c = tau y``; binomial (Polya-Gamma augmentation, given
``omega_o ~ PG(N_o, x_o' beta_i)`` at the current coefficients): ``W = diag(omega)``,
``c = y - N / 2``.  Then (Gaussian) each response's precision from its Gamma full
conditional ``Gamma(a + n_r / 2, rate = b + SS_r / 2)`` over its ``n_r`` observations.

Random numbers, from the chain's generator in this order: (binomial) one
Polya-Gamma draw per observation (in the order of the sorted observations); one
``n x K`` block of standard normals (:func:`pymegalmm.linalg.standard_normal`,
independent of the thread count); (Gaussian) one Gamma draw per response.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.special import expit

from ..errors import InputError, InputTypeError, LabelError
from ..linalg import standard_normal
from ..priors.variance import GammaPrior, as_prior
from ._common import require_one_group
from .base import LatentScale, ObservationModel, SimulatedObservations
from .gaussian import GaussianMissing

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState
    from ..design import Design

#: Default prior of each response's residual precision, on the scale of the response
#: divided by its standard deviation over the observations: Gamma(shape 2, rate 0.5),
#: mean 4 (noise variance a quarter of the response's), 90 % in about (0.7, 9.5).
DEFAULT_OBSERVATION_PRECISION_PRIOR = GammaPrior(shape=2.0, rate=0.5)

_DESCRIPTION = ("residual precision of the observations of each response (1 / the noise "
                "variance around the individual curves), on the scale of the response")

#: Weight of the ridge penalty (times the mean diagonal of an individual's ``X'X``) that
#: pulls its starting coefficients towards the pooled fit (few observations: the pooled fit).
_START_RIDGE = 1e-2


@dataclass(frozen=True)
class CurveData:
    """The observations aligned with the design's rows (sampler's parameterisation).

    Attributes
    ----------
    row : (m,) row of ``Eta`` (individual) of each observation, sorted.
    X : (R, m, k) each response's design on the sampler's scale (columns scaled by the
        coefficients' scales over the response's scale).
    y : (m, R) responses (Gaussian: over their scale, minus the coefficients' centres'
        fit; binomial: successes), 0 where missing.
    observed : (m, R) bool.
    trials : (m,) trials (binomial), else None.
    response_scale : (R,) each response's scale (Gaussian), else ones.
    incidence : (n, m) sparse 0/1, individual -> observation.
    k : coefficients per response.
    """

    row: np.ndarray
    X: np.ndarray
    y: np.ndarray
    observed: np.ndarray
    trials: np.ndarray | None
    response_scale: np.ndarray
    incidence: Any
    k: int


@dataclass(frozen=True, eq=False)
class Regression(ObservationModel):
    """Several observations per individual: ``Eta`` holds each individual's curve coefficients.

    Parameters
    ----------
    observations : pandas.DataFrame
        One row per observation: the individual (column ``id``), the response(s) and
        the covariates of ``formula``.  Individuals may have any number of observations
        (missing responses: NaN); individuals of ``data`` without observations are
        dropped from the fit (their genetic values are still predicted through K).
    formula : str
        The individual-level model, e.g. ``"height ~ bs(time, df=5)"``, built by
        formulaic (stateful transforms such as ``bs`` keep their knots for
        predictions); several responses as ``"height + width ~ ..."`` (Gaussian).
        ``k`` columns give ``k`` latent traits per response, named by the columns
        (``"<response>::<column>"`` with several responses).
    id : str
        The column of ``observations`` naming each observation's individual, matched
        (as strings) with the column of the same name of ``data`` if there is one,
        else with ``data``'s index.
    family : {"gaussian", "binomial"}
        Gaussian observations around each curve, or binomial successes (the response)
        out of ``trials`` with a logit link (R's ``bs_binomial_model``).
    trials : str, optional
        With ``family="binomial"``: the column of ``observations`` holding each
        observation's number of trials.
    differences : bool
        Reparameterise the non-intercept columns as R's ``bs_diff``: level and
        successive differences of their coefficients (module docstring).
    precision : GammaPrior
        Gaussian: prior of each response's residual precision, on the scale of the
        response divided by its standard deviation (default
        :data:`DEFAULT_OBSERVATION_PRECISION_PRIOR`); sampled and recorded as
        ``observation_precision`` (dims ``response``, user's scale).
    scale_response : bool
        Gaussian: put the precision prior on the scale of each response divided by its
        standard deviation over the observations (default True).  False: on the
        response's own scale, a prior that does not depend on the data (needed by
        simulation-based calibration, :meth:`simulate`).

    Notes
    -----
    Pass ``Y=None`` to :class:`~pymegalmm.MegaLMM`: the observations are the data.
    Gaussian: with ``Control.scale_Y`` the coefficients are centred and scaled (by
    their starting values' means and SDs across individuals), as traits are.
    Binomial: the coefficients are on the logit scale, not standardised.
    ``predict(scale="response", at=...)`` gives each row's curve (binomial: the
    probability) at the covariate values ``at`` (a DataFrame; default the distinct
    covariate values of the observations), for fitted rows or new rows
    (``new_data``).
    """

    observations: pd.DataFrame
    formula: str
    id: str
    family: str = "gaussian"
    trials: str | None = None
    differences: bool = False
    precision: GammaPrior = DEFAULT_OBSERVATION_PRECISION_PRIOR
    scale_response: bool = True

    def __post_init__(self) -> None:
        obs = self.observations
        if not isinstance(obs, pd.DataFrame):
            raise InputTypeError(f"observations must be a pandas DataFrame (one row per "
                                 f"observation), got {type(obs).__name__}")
        if not isinstance(self.id, str) or self.id not in obs.columns:
            raise LabelError(f"id must name a column of observations, got {self.id!r} "
                             f"(columns: {list(obs.columns)[:10]})")
        if self.family not in ("gaussian", "binomial"):
            raise InputError(f"family must be 'gaussian' or 'binomial', got {self.family!r}")
        if self.family == "binomial":
            if not isinstance(self.trials, str) or self.trials not in obs.columns:
                raise LabelError(f"trials must name the column of observations holding the "
                                 f"number of trials (family='binomial'), got {self.trials!r}")
        elif self.trials is not None:
            raise InputError("trials only applies with family='binomial'")
        if not isinstance(self.differences, bool | np.bool_):
            raise InputTypeError(f"differences must be True or False, got {self.differences!r}")
        if not isinstance(self.scale_response, bool | np.bool_):
            raise InputTypeError(f"scale_response must be True or False, got "
                                 f"{self.scale_response!r}")
        object.__setattr__(self, "precision", as_prior("precision", self.precision, GammaPrior))
        object.__setattr__(self, "_parsed", self._parse())

    # ------------------------------------------------------------------ the design

    def _parse(self) -> dict[str, Any]:
        """Build the observations' design once (checks the formula and the columns)."""
        from formulaic import Formula, model_matrix

        obs = self.observations
        if not isinstance(self.formula, str) or not self.formula.split("~")[0].strip():
            raise InputError(f"formula must be a two-sided formula such as "
                             f"'height ~ bs(time, df=5)', got {self.formula!r}")
        try:
            f = Formula(self.formula)
            responses = [str(v) for v in f.lhs.required_variables]
        except Exception as exc:  # noqa: BLE001 - formulaic's own errors
            raise InputError(f"formula {self.formula!r} cannot be parsed: {exc}") from exc
        lhs_terms = [str(t) for t in f.lhs]
        if not responses or sorted(lhs_terms) != sorted(responses):
            responses = []
        responses = lhs_terms if responses else []  # in the formula's order
        if not responses:
            raise InputError(f"formula's left-hand side must name response column(s) of "
                             f"observations, e.g. 'height ~ ...' or 'height + width ~ ...', "
                             f"got {self.formula!r}")
        missing = [v for v in responses if v not in obs.columns]
        if missing:
            raise LabelError(f"formula {self.formula!r} uses {missing} which are not columns "
                             f"of observations (columns: {list(obs.columns)[:10]})")
        if self.family == "binomial" and len(responses) != 1:
            raise InputError("family='binomial' takes one response (the successes)")
        for r in responses:
            if not (pd.api.types.is_numeric_dtype(obs[r]) or pd.api.types.is_bool_dtype(obs[r])):
                raise InputTypeError(f"response {r!r} of observations must be numeric, got "
                                     f"dtype {obs[r].dtype}")
        try:
            mm = model_matrix(f.rhs, obs, na_action="ignore", output="pandas")
        except Exception as exc:  # noqa: BLE001 - formulaic runs the formula's code
            raise InputError(f"formula {self.formula!r}: formulaic cannot build the design "
                             f"from observations: {exc}") from exc
        covariates = sorted(str(v) for v in mm.model_spec.required_variables)
        bad = [v for v in covariates if v in obs.columns and obs[v].isna().any()]
        if bad or obs[self.id].isna().any():
            raise InputError(f"observations have missing values in {bad or [self.id]}; remove "
                             "those observations (missing responses may be NaN)")
        X = mm.to_numpy(dtype=float)
        if not np.all(np.isfinite(X)):
            raise InputError(f"formula {self.formula!r} gives non-finite covariates")
        names = [str(c) for c in mm.columns]
        transform = self._difference_transform(names)
        if transform is not None:
            X = X @ transform
            names = _difference_names(names)
        k = len(names)
        if np.linalg.matrix_rank(X) < k:
            raise InputError(f"formula {self.formula!r}: the design of the observations has "
                             f"rank {np.linalg.matrix_rank(X)} < {k} columns")
        Y = obs[responses].to_numpy(dtype=float, na_value=np.nan)
        if np.isinf(Y).any():
            raise InputError("observations: responses must be finite (NaN = missing)")
        trials = None
        if self.family == "binomial":
            trials = pd.to_numeric(obs[self.trials], errors="coerce").to_numpy(dtype=float)
            has = ~np.isnan(Y[:, 0])
            for name, v in (("response", Y[has, 0]), ("trials", trials[has])):
                if not np.all(np.isfinite(v) & (v >= 0) & (v == np.round(v))):
                    raise InputError(f"observations: {name} must hold non-negative whole "
                                     "numbers where the response is observed")
            if np.any(Y[has, 0] > trials[has]):
                raise InputError("observations: successes exceed trials")
        latent = (names if len(responses) == 1
                  else [f"{r}::{c}" for r in responses for c in names])
        return {"spec": mm.model_spec, "X": X, "Y": Y, "trials": trials,
                "responses": responses, "names": names, "latent": latent,
                "covariates": covariates, "transform": transform,
                "ids": obs[self.id].map(str).to_numpy()}

    def _difference_transform(self, names: list[str]) -> np.ndarray | None:
        """``T`` with ``beta_original = T gamma`` (identity on the intercept)."""
        if not self.differences:
            return None
        idx = [j for j, c in enumerate(names) if c != "Intercept"]
        m = len(idx)
        if m < 2:
            raise InputError("differences=True needs at least two non-intercept columns")
        D = np.zeros((m, m))
        D[0] = 1.0 / m  # level: the mean of the coefficients
        for j in range(1, m):
            D[j, j - 1], D[j, j] = -1.0, 1.0
        T = np.eye(len(names))
        T[np.ix_(idx, idx)] = np.linalg.inv(D)
        return T

    def design_at(self, at: pd.DataFrame) -> np.ndarray:
        """The basis (with the differences transform) at new covariate values ``at``."""
        p = self._parsed
        if not isinstance(at, pd.DataFrame):
            raise InputTypeError(f"at must be a DataFrame of the covariates {p['covariates']}, "
                                 f"got {type(at).__name__}")
        missing = [v for v in p["covariates"] if v not in at.columns]
        if missing:
            raise LabelError(f"at lacks the covariate column(s) {missing}")
        try:
            X = p["spec"].get_model_matrix(at, output="pandas").to_numpy(dtype=float)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"at: the curve's basis cannot be built: {exc}") from exc
        return X if p["transform"] is None else X @ p["transform"]

    @property
    def latent_traits(self) -> list[str]:
        """Names of the latent traits (the coefficients)."""
        return list(self._parsed["latent"])

    # ------------------------------------------------------------------ set-up

    def _rows(self, data: pd.DataFrame) -> pd.Index:
        """The individual's label of each row of ``data`` (as strings)."""
        if not isinstance(data, pd.DataFrame):
            raise InputTypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        labels = data[self.id] if self.id in data.columns else pd.Series(data.index)
        keys = pd.Index(labels.map(str))
        if keys.has_duplicates:
            by = f"column {self.id!r}" if self.id in data.columns else "index"
            raise LabelError(f"data has repeated individuals {list(keys[keys.duplicated()][:5])} "
                             f"(by {by}); one row per individual")
        return keys

    def _positions(self, keys: pd.Index, where: str) -> np.ndarray:
        """Row among ``keys`` of each observation's id; LabelError naming the unknown ids."""
        ids = self._parsed["ids"]
        pos = keys.get_indexer(ids)
        if (pos < 0).any():
            unknown = list(dict.fromkeys(ids[pos < 0]))
            raise LabelError(f"observations: {len(unknown)} id(s) in column {self.id!r} are "
                             f"not {where}, e.g. {unknown[:5]}")
        return pos

    def _starts(self, keys: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row of each observation among ``keys``; starting coefficients (user's scale,
        NaN for individuals without an observation of a response); the observed mask."""
        p = self._parsed
        pos = self._positions(keys, "individuals of data")
        X, Y = p["X"], p["Y"]
        if self.family == "binomial":
            N = p["trials"]
            has = ~np.isnan(Y[:, 0]) & (N > 0)
            z = np.where(has, np.log((np.nan_to_num(Y[:, 0]) + 0.5)
                                     / (np.where(has, N, 1) - np.nan_to_num(Y[:, 0]) + 0.5)), 0)
            Y = np.where(has, z, np.nan)[:, None]
        n, k, R = len(keys), X.shape[1], Y.shape[1]
        start = np.full((n, R * k), np.nan)
        for r in range(R):
            has = ~np.isnan(Y[:, r])
            if not has.any():
                raise InputError(f"response {p['responses'][r]!r} has no observation")
            pooled = np.linalg.lstsq(X[has], Y[has, r], rcond=None)[0]
            XtX = np.zeros((n, k, k))
            Xty = np.zeros((n, k))
            np.add.at(XtX, pos[has], X[has, :, None] * X[has, None, :])
            np.add.at(Xty, pos[has], X[has] * Y[has, r][:, None])
            count = np.bincount(pos[has], minlength=n)
            lam = _START_RIDGE * np.trace(XtX, axis1=1, axis2=2) / k + 1e-8
            A = XtX + lam[:, None, None] * np.eye(k)
            b = Xty + lam[:, None] * pooled
            sol = np.linalg.solve(A, b[..., None])[..., 0]
            start[:, r * k:(r + 1) * k] = np.where(count[:, None] > 0, sol, np.nan)
        return pos, start, ~np.isnan(start)

    def latent_frame(self, Y: Any, data: pd.DataFrame) -> pd.DataFrame:
        """Each individual of ``data``'s starting coefficients (NaN without observations)."""
        if Y is not None:
            raise InputError("Y must be None with Regression: the observations table holds "
                             "the data")
        keys = self._rows(data)
        _, start, _ = self._starts(keys)
        return pd.DataFrame(start, index=data.index, columns=pd.Index(self.latent_traits))

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """Not used: :meth:`prepare_design` prepares the observations."""
        raise NotImplementedError("Regression prepares its data with prepare_design")

    def prepare_design(self, Y: Any, data: pd.DataFrame, design: Design, scale: bool
                       ) -> LatentScale:
        """Align the observations with the design's rows; scale the coefficients."""
        p = self._parsed
        keys_all = self._rows(data)
        kept = (data.index.get_indexer(design.rows) if not (
            len(design.rows) == len(data) and design.rows.equals(pd.Index(data.index)))
            else np.arange(len(data)))
        keys = keys_all[kept]
        pos, start, _ = self._starts(keys)
        use = pos >= 0
        X, k, R = p["X"], p["X"].shape[1], len(p["responses"])
        binomial = self.family == "binomial"
        if binomial or not scale:
            center, sd = np.zeros(R * k), np.ones(R * k)
            base_Y = start
        else:
            base = GaussianMissing().prepare(start, self.latent_traits, True)
            center, sd, base_Y = base.center, base.scale, base.Y
        order = np.argsort(pos[use], kind="stable")
        obs_idx = np.flatnonzero(use)[order]
        row = pos[obs_idx]
        Xo = X[obs_idx]
        Yo = p["Y"][obs_idx]
        observed = ~np.isnan(Yo)
        trials = None
        if binomial:
            trials = p["trials"][obs_idx]
            observed &= (trials > 0)[:, None]
            resp_scale = np.ones(1)
            Xs = Xo[None, :, :].copy()
            y = np.where(observed, Yo, 0.0)
        else:
            spread = np.array([np.nanstd(Yo[:, r], ddof=1) if observed[:, r].sum() > 1
                               else 0.0 for r in range(R)])
            resp_scale = (np.where(spread > 0, spread, 1.0) if self.scale_response
                          else np.ones(R))
            Xs = np.empty((R, Xo.shape[0], k))
            y = np.empty_like(Yo)
            for r in range(R):
                c = slice(r * k, (r + 1) * k)
                Xs[r] = Xo * (sd[c] / resp_scale[r])[None, :]
                y[:, r] = (Yo[:, r] - Xo @ center[c]) / resp_scale[r]
            y = np.where(observed, y, 0.0)
        n = len(keys)
        incidence = scipy.sparse.csr_matrix((np.ones(row.size), (row, np.arange(row.size))),
                                            shape=(n, row.size))
        extra = CurveData(row, Xs, y, observed, trials, resp_scale, incidence, k)
        return LatentScale(np.asfortranarray(base_Y), center, sd, extra)

    # ------------------------------------------------------------------ state

    @property
    def state_dims(self) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """``observation_precision`` per response (Gaussian)."""
        return {} if self.family == "binomial" else {"observation_precision": ("response",)}

    @property
    def recorded(self) -> dict[str, str]:  # type: ignore[override]
        """``observation_precision`` per response (Gaussian)."""
        return {} if self.family == "binomial" else {"observation_precision": _DESCRIPTION}

    def coordinates(self, latent: LatentScale) -> dict[str, list]:
        """The responses (dim ``response``)."""
        return {"response": list(self._parsed["responses"])}

    def initialize(self, latent: LatentScale, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
        """Gaussian: each response's precision at the prior mean (no random number)."""
        if self.family == "binomial":
            return {}
        data: CurveData = latent.extra
        tau = np.full(data.response_scale.size, self.precision.shape / self.precision.rate)
        return {"observation_precision": tau / data.response_scale**2}

    # ------------------------------------------------------------------ sampling

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every individual's coefficients, then (Gaussian) the precisions."""
        require_one_group(d, "Regression")
        data: CurveData = d.latent.extra
        g = d.groups[0]
        mean = conditional.block_mean(0)
        var = conditional.residual_variance(g.cols)
        if self.family == "binomial":
            new = binomial_curve_update(data, s.Eta, mean, var, rng)
        else:
            tau = s.observation["observation_precision"] * data.response_scale**2
            new, tau = gaussian_curve_update(data, tau, mean, var, self.precision.shape,
                                             self.precision.rate, rng)
            s.observation["observation_precision"] = tau / data.response_scale**2
        s.Eta[...] = new
        g.re.rotate(s.Eta[g.block], out=s.QtEta[0])

    # ------------------------------------------------------------------ output

    def default_at(self) -> pd.DataFrame:
        """The distinct covariate values of the observations, sorted; when there are more
        than 200 and one numeric covariate, 100 evenly spaced values over its range."""
        cov = self._parsed["covariates"]
        distinct = (self.observations[cov].drop_duplicates().sort_values(cov)
                    .reset_index(drop=True))
        if len(distinct) <= 200:
            return distinct
        if len(cov) == 1 and pd.api.types.is_numeric_dtype(distinct[cov[0]]):
            x = distinct[cov[0]].to_numpy(dtype=float)
            return pd.DataFrame({cov[0]: np.linspace(x.min(), x.max(), 100)})
        raise InputError(f"the observations have {len(distinct)} distinct covariate values: "
                         "give the points of the curves with at=")

    def response(self, eta: np.ndarray, traits: Sequence[Hashable], latent: LatentScale,
                 at: pd.DataFrame | None = None, **options: Any) -> tuple[np.ndarray, list]:
        """Each row's curve at the covariate values ``at`` (binomial: probabilities).

        Labels: the covariate's values when ``at`` has one covariate column, else the
        points' positions; ``"<response>@<label>"`` with several responses.
        """
        if options:
            raise InputError(f"Regression's response-scale option is at, got "
                             f"{sorted(options)}")
        if at is None:
            at = self.default_at()
        Xa = self.design_at(at)
        p = self._parsed
        k, R = Xa.shape[1], len(p["responses"])
        cov = p["covariates"]
        points = (list(at[cov[0]]) if len(cov) == 1 else list(range(len(at))))
        parts, labels = [], []
        for r in range(R):
            parts.append(eta[..., r * k:(r + 1) * k] @ Xa.T)
            labels += (points if R == 1 else [f"{p['responses'][r]}@{v}" for v in points])
        out = np.concatenate(parts, axis=-1)
        return (expit(out) if self.family == "binomial" else out), labels

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None,
                 data: pd.DataFrame | None = None) -> SimulatedObservations:
        """New responses for the observations table, given the coefficients ``Eta``.

        The observations keep their ids, covariates, trials and missing responses;
        each observed response is drawn anew from the curve of its individual (``Eta``'s
        row, found by the ids as the fit finds them: ``data``'s column ``id`` if it has
        one, else the rows' labels ``rows``), with ``Eta`` on the coefficients' user
        scale (the sampler's with ``scale_Y=False``):

        * Gaussian: each response's precision ``tau_r`` from the prior ``precision``, on
          the response's own scale (which needs ``scale_response=False``: otherwise the
          fit puts the prior on the scale of the data's standard deviation), then
          ``y_o = x_o' beta_i,r + e_o``, ``e_o ~ N(0, 1 / tau_r)``.  Random numbers: ``R``
          Gamma draws, then ``m x R`` standard normals (row-major);
        * binomial: ``y_o ~ Binomial(N_o, expit(x_o' beta_i))``.

        Every cell of ``Eta`` must be ``observed`` (the coefficients are seen through the
        observations, not missing at random).

        Returns
        -------
        SimulatedObservations
            ``data``: the observations table with the new responses (what
            :meth:`with_data` fits); ``Y``: the coefficients' table :meth:`latent_frame`
            builds from it (NaN for an individual without observations of a
            response); ``parameters``: ``observation_precision`` ``(R,)`` (Gaussian;
            ``labels``: the responses).
        """
        p = self._parsed
        Eta = np.asarray(Eta, dtype=float)
        n, K = Eta.shape
        if traits is not None and [str(v) for v in traits] != self.latent_traits:
            raise LabelError(f"Regression.simulate: traits must be the coefficients "
                             f"{self.latent_traits}, got {[str(v) for v in traits]}")
        if K != len(self.latent_traits):
            raise InputError(f"Regression.simulate: Eta has {K} columns for "
                             f"{len(self.latent_traits)} coefficients")
        if not np.asarray(observed, dtype=bool).all():
            raise InputError("Regression.simulate: every coefficient is seen through the "
                             "observations; use missing=0")
        if self.family == "gaussian" and self.scale_response:
            raise InputError("Regression.simulate needs scale_response=False: with the "
                             "response scaled by its own standard deviation the precision "
                             "prior changes with the data, so the fitted model is not the one "
                             "simulated from")
        index = pd.Index(range(n) if rows is None else list(rows))
        frame = pd.DataFrame(index=index) if data is None else data
        keys = self._rows(frame)
        if len(keys) != n:
            raise InputError(f"Regression.simulate: data has {len(keys)} rows for {n} rows "
                             "of Eta")
        pos = self._positions(keys, "among the rows simulated")
        X, Y0 = p["X"], p["Y"]
        k, R = X.shape[1], len(p["responses"])
        curves = np.stack([np.einsum("ij,ij->i", X, Eta[pos, r * k:(r + 1) * k])
                           for r in range(R)], axis=1)
        has = ~np.isnan(Y0)
        table = self.observations.copy()
        params: dict[str, np.ndarray] = {}
        labels: dict[str, list] = {}
        if self.family == "binomial":
            N = np.where(has[:, 0], p["trials"], 0).astype(np.int64)
            y = rng.binomial(N, expit(curves[:, 0])).astype(float)
            table[p["responses"][0]] = np.where(has[:, 0], y, np.nan)
        else:
            tau = rng.gamma(self.precision.shape, 1.0 / self.precision.rate, size=R)
            y = curves + rng.standard_normal(curves.shape) / np.sqrt(tau)[None, :]
            for r, name in enumerate(p["responses"]):
                table[name] = np.where(has[:, r], y[:, r], np.nan)
            params["observation_precision"] = tau
            labels["observation_precision"] = list(p["responses"])
        start = replace(self, observations=table).latent_frame(None, frame)
        return SimulatedObservations(start.to_numpy(), params, data=table, labels=labels)

    def with_data(self, simulated: SimulatedObservations, Y: pd.DataFrame
                  ) -> tuple[Any, ObservationModel]:
        """``Y=None`` and this model holding the simulated observations table."""
        if not isinstance(simulated.data, pd.DataFrame):
            raise InputError("Regression fits an observations table: simulate it with "
                             "Regression.simulate")
        return None, replace(self, observations=simulated.data)


def _difference_names(names: list[str]) -> list[str]:
    out, j = [], 0
    for c in names:
        if c == "Intercept":
            out.append(c)
        else:
            out.append("level" if j == 0 else f"diff{j}")
            j += 1
    return out


def _solve_draw(P: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``P^-1 b + L^-T z`` per individual (``P = L L'``), batched."""
    L = np.linalg.cholesky(P)
    m = np.linalg.solve(P, b[..., None])[..., 0]
    return m + np.linalg.solve(np.swapaxes(L, -1, -2), z[..., None])[..., 0]


def gaussian_curve_update(data: CurveData, tau: np.ndarray, mean: np.ndarray, var: np.ndarray,
                          shape: float, rate: float, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients then precisions, Gaussian observations (module docstring).

    Parameters
    ----------
    data : the prepared observations.
    tau : (R,) current precisions (sampler's scale).
    mean : (n, R k) the factor model's means; var : (R k,) its residual variances.
    shape, rate : the precisions' Gamma prior.
    rng : ``n x R k`` standard normals (block scheme), then ``R`` Gamma draws.
    """
    n, K = mean.shape
    k, R = data.k, data.X.shape[0]
    z = standard_normal(rng, n, K)
    out = np.empty((n, K), order="F")
    S = data.incidence
    for r in range(R):
        c = slice(r * k, (r + 1) * k)
        w = data.observed[:, r] * tau[r]
        X = data.X[r]
        xx = (X[:, :, None] * X[:, None, :]).reshape(X.shape[0], k * k)
        P = np.asarray(S @ (w[:, None] * xx)).reshape(n, k, k)
        P[:, np.arange(k), np.arange(k)] += 1.0 / var[c]
        b = np.asarray(S @ ((w * data.y[:, r])[:, None] * X)) + mean[:, c] / var[c]
        out[:, c] = _solve_draw(P, b, z[:, c])
    shapes, rates = np.empty(R), np.empty(R)
    for r in range(R):
        c = slice(r * k, (r + 1) * k)
        fit = np.einsum("ij,ij->i", data.X[r], out[data.row, c])
        e = np.where(data.observed[:, r], data.y[:, r] - fit, 0.0)
        shapes[r] = shape + 0.5 * data.observed[:, r].sum()
        rates[r] = rate + 0.5 * float(e @ e)
    return out, rng.gamma(shapes, 1.0 / rates)


def binomial_curve_update(data: CurveData, eta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Coefficients of binomial observations by Polya-Gamma augmentation (module docstring).

    ``rng``: one Polya-Gamma draw per observed observation (sorted order), then
    ``n x k`` standard normals (block scheme).
    """
    from polyagamma import random_polyagamma

    n, k = mean.shape
    X = data.X[0]
    obs = data.observed[:, 0]
    psi = np.einsum("ij,ij->i", X, eta[data.row])
    omega = np.zeros(X.shape[0])
    omega[obs] = random_polyagamma(data.trials[obs], psi[obs], random_state=rng)
    kappa = np.where(obs, data.y[:, 0] - np.where(obs, data.trials, 0.0) / 2, 0.0)
    z = standard_normal(rng, n, k)
    xx = (X[:, :, None] * X[:, None, :]).reshape(X.shape[0], k * k)
    P = np.asarray(data.incidence @ (omega[:, None] * xx)).reshape(n, k, k)
    P[:, np.arange(k), np.arange(k)] += 1.0 / var
    b = np.asarray(data.incidence @ (kappa[:, None] * X)) + mean / var
    return np.asfortranarray(_solve_draw(P, b, z))


def simulate_curves(coefficients: pd.DataFrame, observations: pd.DataFrame, formula: str,
                    id: str, rng: np.random.Generator, precision: float | None = None,
                    trials: str | None = None, response: str = "y") -> pd.DataFrame:
    """Observations along individual curves (for examples and tests).

    Parameters
    ----------
    coefficients : pandas.DataFrame
        One row per individual (index: the ids), one column per column of ``formula``'s
        basis, in order (the true ``Eta``).
    observations : pandas.DataFrame
        The observations' ids (column ``id``) and covariates.
    formula : str
        The right-hand side of the individual-level model, e.g. ``"~ bs(time, df=4)"``
        (a left-hand side, if any, is ignored).
    id : str
        The column of ``observations`` naming the individual.
    rng : numpy.random.Generator
        Source of the random numbers.
    precision : float, optional
        Gaussian noise precision (default: no noise unless ``trials``).
    trials : str, optional
        A column of ``observations`` with trials: binomial successes ``expit(curve)``.
    response : str
        The name of the simulated column.

    Returns
    -------
    pandas.DataFrame
        ``observations`` with the column ``response`` added (and ``"curve"``, the true
        value of the curve, on the logit scale for binomial data).
    """
    from formulaic import Formula, model_matrix

    f = Formula(formula)
    rhs = f.rhs if hasattr(f, "rhs") else f
    X = model_matrix(rhs, observations, output="pandas").to_numpy(dtype=float)
    if X.shape[1] != coefficients.shape[1]:
        raise InputError(f"coefficients has {coefficients.shape[1]} columns but the basis of "
                         f"{formula!r} has {X.shape[1]}")
    beta = coefficients.loc[observations[id].to_numpy()].to_numpy(dtype=float)
    curve = np.einsum("ij,ij->i", X, beta)
    out = observations.copy()
    out["curve"] = curve
    if trials is not None:
        out[response] = rng.binomial(observations[trials].to_numpy(dtype=np.int64),
                                     expit(curve)).astype(float)
    elif precision is not None:
        out[response] = curve + rng.standard_normal(curve.size) / np.sqrt(precision)
    else:
        out[response] = curve
    return out
