"""ARD loadings prior: the multiplicative gamma process of Bhattacharya & Dunson (2011)."""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import cho_solve, cholesky, solve_triangular

from .._config import kernels_module
from ..errors import InputError, InputTypeError, LabelError
from ..linalg import standard_gamma
from ..validate import check_float, check_int
from .base import LambdaPrior, PriorState
from .variance import GammaPrior, as_prior

#: State arrays of the prior without trait covariates, and their dims.
_STATE_DIMS: dict[str, tuple[str, ...]] = {
    "Lambda_phi": ("factor", "trait"), "delta": ("factor",),
}
#: State arrays added by trait covariates, and their dims.
_COVARIATE_STATE_DIMS: dict[str, tuple[str, ...]] = {
    "Lambda_beta": ("factor", "covariate"), "Lambda_beta_var": ("factor", "covariate_group"),
}
_RECORDED: dict[str, str] = {
    "delta": "ARD multiplicative shrinkage increments (tauh = cumprod(delta))",
}
_COVARIATE_RECORDED: dict[str, str] = {
    "Lambda_beta": "coefficients of the loadings on the trait covariates (prior mean of "
                   "factor k's loadings = trait_covariates @ Lambda_beta[k]), on the "
                   "sampler's working scale: divide factor k by sqrt(tot_F_prec_k) for "
                   "unit-variance factors; the traits are those of the sampler (scaled Y)",
}


@dataclass(frozen=True)
class ARDPrior(LambdaPrior):
    """ARD (multiplicative gamma process) shrinkage prior on the factor loadings Lambda.

    ``lambda_kj ~ N(0, 1 / (tot_Eta_prec_j * phi_kj * tauh_k))`` with
    ``phi_kj ~ Gamma(Lambda_df/2, rate Lambda_df/2)``, ``tauh_k = prod_{l<=k} delta_l``,
    ``delta_1 ~ Gamma(delta_1)`` and ``delta_l ~ Gamma(delta_2)`` truncated to
    ``[1, inf)`` for ``l >= 2`` (Bhattacharya & Dunson 2011), so later factors
    are shrunk more.  ``delta`` is updated by ``delta_iterations_factor`` Gibbs
    sweeps per iteration.

    State: ``Lambda_phi`` (factor, trait), the local precisions, and ``delta``
    (factor), the multiplicative global increments (recorded).

    Parameters
    ----------
    Lambda_df : float
        Degrees of freedom of the local (t-like) shrinkage.  Default 3.
    delta_1 : GammaPrior
        Prior of the first global precision.  Default shape 2, rate 1.
    delta_2 : GammaPrior
        Prior of the later multiplicative increments.  Default shape 3, rate 1.
    delta_iterations_factor : int
        Sweeps of the delta update per iteration.  Default 100.
    trait_covariates : pandas.DataFrame, optional
        Covariates of the traits (R's ``Lambda_prior$X``; Hu et al. 2024), one row per
        trait (indexed by the trait names of ``Y``, any order, extra rows ignored) and
        one numeric column per covariate, e.g. the weather and soil of each
        environment.  Each factor's loadings then get the prior mean
        ``mu_k = W beta_k`` (``W`` the covariates in the model's trait order), with
        ``beta_kq ~ N(0, v_{k,g(q)} / tauh_k)`` and ``v_{k,g} ~ IG(beta_var)``; state
        ``Lambda_beta`` (factor, covariate, recorded) and ``Lambda_beta_var``
        (factor, covariate group).  Used as given (not centred or scaled).
        Default None: no covariates, the plain ARD prior.
    covariate_groups : sequence or mapping, optional
        Group of each covariate (R's ``X_group``), each group with its own variances
        ``v_{k,g}``: a sequence with one label per column of ``trait_covariates``,
        or a mapping from column name to label.  Default: one group.
    beta_var : GammaPrior or dict
        Prior of the group variances as ``GammaPrior(shape, rate)`` of their inverses,
        ``1 / v ~ Gamma(shape, rate)`` (R's ``Lambda_beta_var_shape`` and
        ``Lambda_beta_var_rate``).  Default shape 3, rate 1.  Used only with
        ``trait_covariates``.

    Notes
    -----
    With covariates, each update first draws ``beta_k`` (given the previous ``phi``,
    ``delta`` and ``v``), then ``v``, then ``phi`` and ``delta`` from the loadings'
    deviations ``Lambda - mu`` (METHOD.md section 3, step 7, as R): the ``delta``
    shapes gain ``q K/2`` and ``q (K - h + 1)/2`` and ``s_k`` gains
    ``sum_q beta_kq^2 / (2 v_{k,g(q)})``.  The prior learns the model's trait order
    when the model is built (:meth:`for_traits`).
    """

    Lambda_df: float = 3.0
    delta_1: GammaPrior = GammaPrior(2.0, 1.0)
    delta_2: GammaPrior = GammaPrior(3.0, 1.0)
    delta_iterations_factor: int = 100
    trait_covariates: pd.DataFrame | None = field(default=None, compare=False)
    covariate_groups: Sequence[Hashable] | Mapping[str, Hashable] | None = field(
        default=None, compare=False)
    beta_var: GammaPrior = GammaPrior(3.0, 1.0)
    #: Values of the covariates as compared and hashed (set from ``trait_covariates``).
    _covariates_key: tuple | None = field(default=None, init=False, repr=False)
    #: Group index of each covariate (set from ``covariate_groups``).
    _group_index: tuple[int, ...] = field(default=(), init=False, repr=False)
    #: ``(t, q)`` covariates in the model's trait order (set by :meth:`for_traits`).
    _W: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check = {
            "Lambda_df": check_float("Lambda_df", self.Lambda_df, low=0.0, low_open=True),
            "delta_1": as_prior("delta_1", self.delta_1, GammaPrior),
            "delta_2": as_prior("delta_2", self.delta_2, GammaPrior),
            "delta_iterations_factor": check_int("delta_iterations_factor",
                                                 self.delta_iterations_factor, minimum=1),
            "beta_var": as_prior("beta_var", self.beta_var, GammaPrior),
        }
        if self.trait_covariates is not None:
            W = check_covariates("trait_covariates", self.trait_covariates)
            groups, index = _covariate_groups(self.covariate_groups, list(W.columns))
            check.update(trait_covariates=W, covariate_groups=groups)
            object.__setattr__(self, "_group_index", index)
            object.__setattr__(self, "_covariates_key", (
                tuple(W.index), tuple(W.columns), W.to_numpy().tobytes(), groups))
        elif self.covariate_groups is not None:
            raise InputError("covariate_groups needs trait_covariates (the covariates it "
                             "groups); got trait_covariates=None")
        for name, value in check.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        text = (f"ARDPrior(Lambda_df={self.Lambda_df!r}, delta_1={self.delta_1!r}, "
                f"delta_2={self.delta_2!r}, delta_iterations_factor="
                f"{self.delta_iterations_factor!r}")
        if self.trait_covariates is not None:
            W = self.trait_covariates
            text += (f", trait_covariates=<{W.shape[0]} traits x {W.shape[1]} covariates "
                     f"{list(W.columns)}>, covariate_groups={self.covariate_groups!r}, "
                     f"beta_var={self.beta_var!r}")
        return text + ")"

    # ------------------------------------------------------------------ covariates

    @property
    def has_covariates(self) -> bool:
        """Whether the loadings are regressed on trait covariates."""
        return self.trait_covariates is not None

    @property
    def state_dims(self) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """``Lambda_phi``, ``delta``; with covariates also ``Lambda_beta``, ``Lambda_beta_var``."""
        return {**_STATE_DIMS, **(_COVARIATE_STATE_DIMS if self.has_covariates else {})}

    @property
    def recorded(self) -> dict[str, str]:  # type: ignore[override]
        """``delta``; with covariates also ``Lambda_beta``."""
        return {**_RECORDED, **(_COVARIATE_RECORDED if self.has_covariates else {})}

    def records_with(self) -> tuple[str, ...]:
        """With covariates, ``tot_F_prec`` (puts ``Lambda_beta`` on unit-variance factors)."""
        return ("tot_F_prec",) if self.has_covariates else ()

    def coordinates(self) -> dict[str, list]:
        """With covariates, the ``covariate`` dim's labels (the columns of ``trait_covariates``)."""
        if not self.has_covariates:
            return {}
        return {"covariate": [str(c) for c in self.trait_covariates.columns]}

    def for_traits(self, traits: Sequence[Hashable]) -> ARDPrior:
        """With covariates, a copy holding them in the model's trait order; else itself.

        Parameters
        ----------
        traits : sequence
            The names of the traits (columns of ``Y``), in the model's order.

        Returns
        -------
        ARDPrior
            ``self`` without covariates; otherwise a copy bound to ``traits``.

        Raises
        ------
        LabelError
            A trait of ``Y`` has no row in ``trait_covariates``.
        """
        if not self.has_covariates:
            return self
        W = self.trait_covariates
        labels = list(traits)
        pos = W.index.get_indexer(labels)
        if (pos < 0).any():
            missing = [t for t, p in zip(labels, pos, strict=True) if p < 0]
            raise LabelError(f"trait_covariates has no row for the trait(s) {missing[:10]} of "
                             f"Y ({len(missing)} of {len(labels)} missing); its index must "
                             f"hold every trait name of Y (it has {list(W.index[:10])}...)")
        bound = copy.copy(self)
        object.__setattr__(bound, "_W", np.ascontiguousarray(W.to_numpy()[pos]))
        return bound

    def _bound_W(self) -> np.ndarray:
        if self._W is None:
            raise InputError("ARDPrior with trait_covariates needs the model's trait order: "
                             "MegaLMM sets it; to use the prior on its own, call "
                             "prior.for_traits(trait_names) first")
        return self._W

    def mean(self, state: PriorState) -> np.ndarray | None:
        """Without covariates None (zero); with covariates ``mu = Lambda_beta W'`` ``(k, t)``."""
        if not self.has_covariates:
            return None
        return np.asfortranarray(state["Lambda_beta"] @ self._bound_W().T)

    def initialize(self, Lambda: np.ndarray, tot_prec: np.ndarray,
                   rng: np.random.Generator) -> PriorState:
        """``delta = max(1, draw from its prior)``, ``phi = 1``, then one update (as R)."""
        k, t = Lambda.shape
        delta = np.concatenate([
            rng.gamma(self.delta_1.shape, 1.0 / self.delta_1.rate, size=1),
            rng.gamma(self.delta_2.shape, 1.0 / self.delta_2.rate, size=k - 1),
        ])
        state = {"Lambda_phi": np.ones((k, t), order="F"), "delta": np.maximum(delta, 1.0)}
        if self.has_covariates:  # as R: beta = 0, v = 1, then drawn by the update
            q = self._bound_W().shape[1]
            state["Lambda_beta"] = np.zeros((k, q), order="F")
            state["Lambda_beta_var"] = np.ones((k, max(self._group_index) + 1), order="F")
        return self.update(Lambda, tot_prec, state, rng)

    def precision(self, state: PriorState) -> np.ndarray:
        """``phi_kj * prod_{l<=k} delta_l``, Fortran-ordered."""
        return np.asfortranarray(state["Lambda_phi"] * np.cumprod(state["delta"])[:, None])

    def update(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
               rng: np.random.Generator) -> PriorState:
        """``phi`` given the previous ``delta``, then ``delta_iterations_factor`` ``delta`` sweeps.

        ``phi_kj ~ Gamma((nu+1)/2, rate (nu + tauh_k tau_j lambda_kj^2)/2)`` with the
        previous ``tauh = cumprod(delta)``; then, with
        ``s_k = sum_j tau_j phi_kj lambda_kj^2 / 2``, ``delta`` is swept as in
        :func:`pymegalmm._kernels.sample_ard_delta`.  With trait covariates, see
        :meth:`_update_covariates`.
        """
        if self.has_covariates:
            return self._update_covariates(Lambda, tot_prec, state, rng)
        nu = self.Lambda_df
        k, t = Lambda.shape
        lam2_tau = np.square(Lambda) * tot_prec  # tau_j lambda_kj^2
        tauh = np.cumprod(state["delta"])
        gamma = standard_gamma(rng, 0.5 * (nu + 1.0), k, t)
        phi = np.asfortranarray(gamma / (0.5 * (nu + tauh[:, None] * lam2_tau)))
        s_k = 0.5 * (lam2_tau * phi).sum(axis=1)
        delta = np.array(state["delta"], dtype=float, copy=True)
        kernels_module().sample_ard_delta(
            delta, s_k, float(t), self.delta_1.shape, self.delta_1.rate,
            self.delta_2.shape, self.delta_2.rate, self.delta_iterations_factor,
            rng.bit_generator,
        )
        return {"Lambda_phi": phi, "delta": delta}

    def _update_covariates(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
                           rng: np.random.Generator) -> PriorState:
        """The update with trait covariates (METHOD.md section 3, step 7, before 7a; as R).

        With the previous ``phi``, ``tauh = cumprod(delta)`` and ``v``:

        1. for each factor, ``beta_k ~ N(C_k^-1 W' D_k lambda_k, C_k^-1)`` with
           ``D_k = diag(tau_j phi_kj tauh_k)`` and ``C_k = W' D_k W + diag(tauh_k / v_k)``;
        2. ``v_{k,g} ~ IG(beta_var.shape + |g|/2,
           beta_var.rate + tauh_k sum_{q in g} beta_kq^2 / 2)``;
        3. ``phi`` and ``delta`` as without covariates, from ``Lambda - beta W'``, with
           ``s_k`` increased by ``sum_q beta_kq^2 / (2 v_{k,g(q)})`` and the ``delta``
           shapes computed with ``t + q`` in place of ``t``.

        Random numbers, in this order: ``(k, q)`` standard normals, ``(k, groups)``
        standard gammas, then those of the update without covariates.
        """
        W = self._bound_W()
        nu = self.Lambda_df
        k, t = Lambda.shape
        q = W.shape[1]
        grp = np.asarray(self._group_index)
        n_groups = int(grp.max()) + 1
        tauh = np.cumprod(state["delta"])
        v = state["Lambda_beta_var"]
        z = rng.standard_normal((k, q))
        beta = np.empty((k, q))
        for f in range(k):
            w = tot_prec * state["Lambda_phi"][f] * tauh[f]
            C = (W * w[:, None]).T @ W
            C[np.diag_indices(q)] += tauh[f] / v[f, grp]
            R = cholesky(C, lower=False)  # C = R'R
            mean = cho_solve((R, False), W.T @ (w * Lambda[f]))
            beta[f] = mean + solve_triangular(R, z[f], lower=False)
        sizes = np.bincount(grp, minlength=n_groups)
        sums = np.zeros((k, n_groups))
        np.add.at(sums.T, grp, np.square(beta).T)
        rate = self.beta_var.rate + 0.5 * tauh[:, None] * sums
        v = np.asfortranarray(rate / rng.standard_gamma(self.beta_var.shape + 0.5 * sizes,
                                                        size=(k, n_groups)))
        dev = Lambda - beta @ W.T
        lam2_tau = np.square(dev) * tot_prec
        gamma = standard_gamma(rng, 0.5 * (nu + 1.0), k, t)
        phi = np.asfortranarray(gamma / (0.5 * (nu + tauh[:, None] * lam2_tau)))
        s_k = 0.5 * (lam2_tau * phi).sum(axis=1) + 0.5 * (np.square(beta) / v[:, grp]).sum(axis=1)
        delta = np.array(state["delta"], dtype=float, copy=True)
        kernels_module().sample_ard_delta(
            delta, s_k, float(t + q), self.delta_1.shape, self.delta_1.rate,
            self.delta_2.shape, self.delta_2.rate, self.delta_iterations_factor,
            rng.bit_generator,
        )
        return {"Lambda_phi": phi, "delta": delta, "Lambda_beta": np.asfortranarray(beta),
                "Lambda_beta_var": v}

    def sample_prior(self, n_factors: int, tot_prec: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, PriorState]:
        """Draw ``delta``, ``phi`` and the loadings from the prior that :meth:`update` targets.

        ``delta_1 ~ Gamma(delta_1)``; ``delta_l ~ Gamma(delta_2)`` truncated to
        ``[1, inf)`` for ``l >= 2`` (drawn exactly, by the inverse of the upper
        incomplete gamma function); ``phi_kj ~ Gamma(Lambda_df/2, rate Lambda_df/2)``;
        ``lambda_kj ~ N(0, 1 / (tot_prec_j * phi_kj * prod_{l<=k} delta_l))``.

        Parameters
        ----------
        n_factors : int
            Number of factors ``k``.
        tot_prec : numpy.ndarray
            ``(t,)`` total precision of each trait's residual model.
        rng : numpy.random.Generator
            Source of every random number.

        Returns
        -------
        Lambda : numpy.ndarray
            ``(k, t)`` loadings (Fortran-ordered).
        state : PriorState
            ``{"Lambda_phi": (k, t), "delta": (k,)}``; with covariates also
            ``Lambda_beta`` ``(k, q)`` (``beta_kq ~ N(0, v_{k,g(q)} / tauh_k)``, added to the
            loadings as ``beta_k W'``) and ``Lambda_beta_var`` ``(k, groups)``.
        """
        from scipy.special import gammaincc, gammainccinv

        k = check_int("n_factors", n_factors, minimum=1)
        tot_prec = np.asarray(tot_prec, dtype=float)
        t = tot_prec.shape[0]
        a2, b2 = self.delta_2.shape, self.delta_2.rate
        first = rng.gamma(self.delta_1.shape, 1.0 / self.delta_1.rate, size=1)
        upper_at_1 = gammaincc(a2, b2 * 1.0)  # P(delta_l > 1) before truncation
        # 1 - u is in (0, 1]: the draw is in [1, inf)
        later = gammainccinv(a2, upper_at_1 * (1.0 - rng.random(k - 1))) / b2
        delta = np.concatenate([first, np.maximum(later, 1.0)])
        nu = self.Lambda_df
        phi = np.asfortranarray(rng.gamma(0.5 * nu, 2.0 / nu, size=(k, t)))
        precision = tot_prec[None, :] * phi * np.cumprod(delta)[:, None]
        Lambda = np.asfortranarray(rng.standard_normal((k, t)) / np.sqrt(precision))
        if not self.has_covariates:
            return Lambda, {"Lambda_phi": phi, "delta": delta}
        W = self._bound_W()
        grp = np.asarray(self._group_index)
        v = np.asfortranarray(self.beta_var.rate / rng.standard_gamma(
            self.beta_var.shape, size=(k, int(grp.max()) + 1)))
        sd = np.sqrt(v[:, grp] / np.cumprod(delta)[:, None])
        beta = np.asfortranarray(rng.standard_normal((k, W.shape[1])) * sd)
        Lambda = np.asfortranarray(Lambda + beta @ W.T)
        return Lambda, {"Lambda_phi": phi, "delta": delta, "Lambda_beta": beta,
                        "Lambda_beta_var": v}

    def permute(self, state: PriorState, order: np.ndarray) -> PriorState:
        """Local precisions follow their factors; ``delta`` belongs to the *positions*.

        ``tauh_k = prod_{l<=k} delta_l`` is the shrinkage of the k-th position in the
        ordering, which is what reordering is for, so ``delta`` is not permuted.
        The covariate coefficients ``Lambda_beta`` and their variances follow their factors.
        """
        out = {"Lambda_phi": np.asfortranarray(state["Lambda_phi"][order]),
               "delta": state["delta"].copy()}
        for name in _COVARIATE_STATE_DIMS:
            if name in state:
                out[name] = np.asfortranarray(state[name][order])
        return out

    def refresh(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
                rng: np.random.Generator) -> PriorState:
        """R's ``reorder_factors``: ``delta_1`` reset to 1, then 10 updates."""
        state = {**state, "delta": state["delta"].copy()}
        state["delta"][0] = 1.0
        for _ in range(10):
            state = self.update(Lambda, tot_prec, state, rng)
        return state


def check_covariates(name: str, W: Any) -> pd.DataFrame:
    """``W`` as a float DataFrame of trait covariates, or an error naming ``name``.

    Parameters
    ----------
    name : str
        The argument's name, for the messages.
    W : object
        Should be a pandas DataFrame indexed by trait name, with numeric, finite
        values, at least one column and unique index labels and column names.

    Returns
    -------
    pandas.DataFrame
        A float64 copy.
    """
    if not isinstance(W, pd.DataFrame):
        raise InputTypeError(f"{name} must be a pandas DataFrame indexed by trait name (one "
                             f"numeric column per covariate), got {type(W).__name__}")
    if W.shape[1] == 0 or W.shape[0] == 0:
        raise InputError(f"{name} must have at least one row and one column, got shape "
                         f"{W.shape}")
    if W.index.has_duplicates:
        dup = list(W.index[W.index.duplicated()].unique()[:10])
        raise InputError(f"{name} has duplicated trait names in its index: {dup}")
    if W.columns.has_duplicates:
        dup = list(W.columns[W.columns.duplicated()].unique()[:10])
        raise InputError(f"{name} has duplicated column names: {dup}")
    bad = [c for c in W.columns if not pd.api.types.is_numeric_dtype(W[c])
           or pd.api.types.is_bool_dtype(W[c])]
    if bad:
        raise InputTypeError(f"{name} must have numeric columns only; column(s) {bad[:10]} are "
                             f"not (encode categories as indicator columns first)")
    values = W.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        rows, cols = np.nonzero(~np.isfinite(values))
        where = [(W.index[r], W.columns[c]) for r, c in zip(rows[:5], cols[:5], strict=True)]
        raise InputError(f"{name} has NaN or infinite values (trait, column): {where}")
    return pd.DataFrame(values, index=W.index.copy(), columns=W.columns.copy())


def _covariate_groups(groups: Sequence[Hashable] | Mapping[str, Hashable] | None,
                      columns: list) -> tuple[tuple | None, tuple[int, ...]]:
    """Normalised ``covariate_groups`` (one label per column) and each column's group index."""
    if groups is None:
        return None, (0,) * len(columns)
    if isinstance(groups, Mapping):
        missing = [c for c in columns if c not in groups]
        extra = [g for g in groups if g not in columns]
        if missing or extra:
            raise LabelError(f"covariate_groups must map every column of trait_covariates to "
                             f"a group: columns missing {missing[:10]}, unknown {extra[:10]}")
        labels = [groups[c] for c in columns]
    elif isinstance(groups, str) or not isinstance(groups, Sequence | np.ndarray | pd.Index):
        raise InputTypeError("covariate_groups must be a sequence with one group label per "
                             "column of trait_covariates, or a mapping column -> label; got "
                             f"{type(groups).__name__}")
    else:
        labels = list(groups)
        if len(labels) != len(columns):
            raise InputError(f"covariate_groups has {len(labels)} labels but trait_covariates "
                             f"has {len(columns)} columns")
    try:
        order = list(dict.fromkeys(labels))  # groups in order of first appearance
    except TypeError as exc:
        raise InputTypeError(f"covariate_groups labels must be hashable: {exc}") from None
    return tuple(labels), tuple(order.index(g) for g in labels)
