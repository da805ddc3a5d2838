"""Tidy tables of a posterior and an lme4-style printed summary.

Every function takes a posterior :class:`xarray.Dataset` (``m.posterior``, or one
loaded from disk with :meth:`pymegalmm.MegaLMM.load_posterior`, lazy or dask-backed:
only the variables needed are read, once) and returns a :class:`pandas.DataFrame`
with one row per quantity, like R's ``broom`` tables:

=================================  ================================================
function                           R counterpart
=================================  ================================================
:func:`variance_components`        lme4 ``VarCorr`` (here as h2 and variances)
:func:`fixed_effects`              lme4 ``fixef`` + ``confint``
:func:`genetic_correlations`       ``cov2cor`` of MegaLMM's ``G`` per draw
:func:`factor_table`               (share of variance and size of each factor)
:func:`convergence_table`          posterior ``rhat``, ``ess_bulk``, ``ess_tail``
:class:`Summary`                   lme4 ``summary(merMod)``
=================================  ================================================

Means are over every draw of every chain (:func:`~.summaries.posterior_mean`);
intervals are highest posterior density intervals with coda's convention
(:func:`~.summaries.hpd_interval`).  ``G``, ``R`` and ``h2`` are taken from the
posterior when present; a posterior without them (too large to store, or not
loaded) is summarised from the parameters ``Lambda, F_h2, resid_h2, tot_Eta_prec``
with the formulas of :mod:`pymegalmm.results.derived`.

:func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` are NumPy implementations of the
rank-normalised split R-hat and the bulk and tail effective sample sizes of Vehtari,
Gelman, Simpson, Carpenter and Bürkner (2021, *Bayesian Analysis* 16(2), 667-718),
equal to ArviZ's ``rhat(method="rank")`` and ``ess(method="bulk" / "tail")`` (ArviZ
is not needed at run time); :mod:`pymegalmm.results.diagnostics` applies them to the
quantities identified across chains.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike
from scipy import special, stats
from scipy.fft import next_fast_len

from ..errors import InputError, InputTypeError, LabelError
from ..validate import check_bool, check_float, check_int
from .derived import variance_diagonals
from .summaries import hpd_interval, posterior_mean

__all__ = [
    "RESIDUAL",
    "TAIL_QUANTILES",
    "Summary",
    "convergence_measures",
    "convergence_table",
    "ess_bulk",
    "ess_tail",
    "factor_table",
    "fixed_effects",
    "genetic_correlations",
    "rhat",
    "variance_components",
]

#: Name of the residual in the ``component`` column of :func:`variance_components`.
RESIDUAL = "Residual"

#: Parameters from which ``G``, ``R`` and ``h2`` are derived when the posterior lacks them.
_PARAMS = ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec")

#: Float64 elements of one block of per-draw pair values (128 MiB).
_BLOCK_ELEMENTS = 2**24

_SAMPLE = ("chain", "draw")


# --------------------------------------------------------------------------------------
# reading a posterior
# --------------------------------------------------------------------------------------


class _Draws:
    """A posterior's draws as NumPy arrays ``(chain, draw, ...)``, each read once.

    Lazily loaded or dask-backed variables are computed when first asked for; a
    posterior without a ``chain`` dim (one chain selected) gets one.
    """

    def __init__(self, post: Any) -> None:
        if not isinstance(post, xr.Dataset):
            raise InputTypeError(
                "post must be an xarray.Dataset of posterior draws (m.posterior or "
                f"m.load_posterior()), got {type(post).__name__}")
        if "draw" not in post.dims:
            raise InputError(f"post has no 'draw' dim (dims: {list(post.dims)}); pass the "
                             "posterior draws, not their means")
        if "chain" not in post.dims:
            post = post.expand_dims("chain")
        self.post = post
        self.n_chains = int(post.sizes["chain"])
        self.n_draws = int(post.sizes["draw"])
        if self.n_chains * self.n_draws < 2:
            raise InputError(f"post holds {self.n_chains * self.n_draws} draw; need at least 2")
        self._cache: dict[str, np.ndarray] = {}

    def has(self, *names: str) -> bool:
        """Whether every one of ``names`` is a variable of the posterior."""
        return all(n in self.post.data_vars for n in names)

    def require(self, what: str, *alternatives: Sequence[str]) -> tuple[str, ...]:
        """The first group of variables all present; LabelError naming them if none is."""
        for group in alternatives:
            if self.has(*group):
                return tuple(group)
        need = " or ".join("(" + ", ".join(g) + ")" for g in alternatives)
        raise LabelError(f"{what} needs the posterior variables {need}; post has "
                         f"{sorted(map(str, self.post.data_vars))}")

    def coord(self, dim: str) -> list:
        """Labels along ``dim`` as Python objects (str or int)."""
        return self.post[dim].values.tolist()

    def array(self, name: str, dims: tuple[str, ...]) -> np.ndarray:
        """Variable ``name`` as a float array with dims ``(chain, draw, *dims)``."""
        if name not in self._cache:
            da = self.post[name]
            if set(da.dims) != {*_SAMPLE, *dims}:
                raise InputError(f"post[{name!r}] has dims {da.dims}; expected "
                                 f"{(*_SAMPLE, *dims)}")
            self._cache[name] = np.asarray(da.transpose(*_SAMPLE, *dims).values, dtype=float)
        return self._cache[name]

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.array("Lambda", ("factor", "trait")),
                self.array("F_h2", ("component", "factor")),
                self.array("resid_h2", ("component", "trait")),
                1.0 / self.array("tot_Eta_prec", ("trait",)))

    def diag_G(self) -> np.ndarray:
        """Genetic variances ``G_m[j, j]``, ``(chain, draw, component, trait)``."""
        if "_diag_G" not in self._cache:
            if self.has("G"):
                G = self.array("G", ("component", "trait", "trait2"))
                out = np.diagonal(G, axis1=3, axis2=4).copy()
            else:
                self.require("G", ("G",), _PARAMS)
                out = variance_diagonals(*self._params())[0]
            self._cache["_diag_G"] = out
        return self._cache["_diag_G"]

    def diag_R(self) -> np.ndarray:
        """Residual variances ``R[j, j]``, ``(chain, draw, trait)``."""
        if "_diag_R" not in self._cache:
            if self.has("R"):
                out = np.diagonal(self.array("R", ("trait", "trait2")), axis1=2, axis2=3).copy()
            else:
                self.require("R", ("R",), _PARAMS)
                out = variance_diagonals(*self._params())[1]
            self._cache["_diag_R"] = out
        return self._cache["_diag_R"]

    def h2(self) -> np.ndarray:
        """``h2``, ``(chain, draw, component, trait)``: the variable, else derived."""
        if self.has("h2"):
            return self.array("h2", ("component", "trait"))
        dG = self.diag_G()
        return dG / (dG.sum(axis=2) + self.diag_R())[:, :, None, :]

    def covariances(self, m: int, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        """``G_m[a, b]`` for the pairs ``(ia[p], ib[p])``, ``(chain, draw, pair)``."""
        if self.has("G"):
            G = self.array("G", ("component", "trait", "trait2"))
            return G[:, :, m, ia, ib]
        lam, fh2, rh2, var_r = self._params()
        out = np.einsum("cdkp,cdk,cdkp->cdp", lam[..., ia], fh2[:, :, m], lam[..., ib])
        same = ia == ib
        if same.any():
            out[..., same] += rh2[:, :, m, ia[same]] * var_r[..., ia[same]]
        return out


def _check_prob(prob: Any) -> float:
    return check_float("prob", prob, low=0.0, high=1.0, low_open=True)


def _sample_da(x: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    """Wrap ``(chain, draw, *dims)`` draws as a DataArray for the summaries module."""
    return xr.DataArray(x, dims=(*_SAMPLE, *dims))


def _mean_and_hpd(x: np.ndarray, dims: tuple[str, ...], prob: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean, HPD lower and upper bounds of ``(chain, draw, *dims)`` draws."""
    da = _sample_da(x, dims)
    hpd = hpd_interval(da, prob).values
    return posterior_mean(da).values, hpd[0], hpd[1]


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------


def variance_components(post: xr.Dataset, prob: float = 0.95) -> pd.DataFrame:
    """Share and size of each random effect and of the residual, per trait (lme4's ``VarCorr``).

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws (``m.posterior`` or a loaded posterior) holding ``G`` and
        ``R``, or the parameters ``Lambda, F_h2, resid_h2, tot_Eta_prec``.
    prob : float, default 0.95
        Probability content of the HPD intervals (coda convention).

    Returns
    -------
    pandas.DataFrame
        One row per trait and component, then the trait's residual (component
        ``"Residual"``), traits in the posterior's order.  Columns: ``trait,
        component, h2_mean, h2_lower, h2_upper, variance_mean``.  ``h2`` is the
        share of the trait's total variance (``h2`` of the posterior for each
        component, ``R_jj / (sum_m G_m,jj + R_jj)`` per draw for the residual, so
        the shares of a trait sum to one); ``variance_mean`` is the posterior mean
        of ``diag(G_m)`` or ``diag(R)``, on the user's scale of ``Y``.

    Raises
    ------
    LabelError
        If the posterior has neither ``G`` and ``R`` nor the parameters.
    """
    prob = _check_prob(prob)
    src = _Draws(post)
    src.require("variance_components", ("G", "R"), _PARAMS)
    dG, dR = src.diag_G(), src.diag_R()
    share = np.concatenate([src.h2(), (dR / (dG.sum(axis=2) + dR))[:, :, None, :]], axis=2)
    var = np.concatenate([dG, dR[:, :, None, :]], axis=2)
    h_mean, h_lo, h_hi = _mean_and_hpd(share, ("component", "trait"), prob)
    v_mean = posterior_mean(_sample_da(var, ("component", "trait"))).values
    comps = [*src.coord("component"), RESIDUAL]
    rows = [(trait, comp, h_mean[i, j], h_lo[i, j], h_hi[i, j], v_mean[i, j])
            for j, trait in enumerate(src.coord("trait")) for i, comp in enumerate(comps)]
    return pd.DataFrame(rows, columns=["trait", "component", "h2_mean", "h2_lower",
                                       "h2_upper", "variance_mean"])


def fixed_effects(post: xr.Dataset, prob: float = 0.95) -> pd.DataFrame:
    """Fixed effects of every trait (lme4's ``fixef`` with ``confint``).

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws holding ``B1`` (dims ``chain, draw, fixed, trait``).
    prob : float, default 0.95
        Probability content of the HPD intervals (coda convention).

    Returns
    -------
    pandas.DataFrame
        One row per fixed effect and trait (fixed effects outer, traits inner), columns
        ``fixed, trait, mean, sd, lower, upper``: posterior mean, posterior standard
        deviation (pooled draws, ``ddof=1`` as R's ``sd``) and HPD bounds, on the
        user's scale of ``Y`` (the trait mean is in the intercept).

    Raises
    ------
    LabelError
        If the posterior has no ``B1``.
    """
    prob = _check_prob(prob)
    src = _Draws(post)
    src.require("fixed_effects", ("B1",))
    B = src.array("B1", ("fixed", "trait"))
    mean, lo, hi = _mean_and_hpd(B, ("fixed", "trait"), prob)
    sd = B.reshape(-1, *B.shape[2:]).std(axis=0, ddof=1)
    rows = [(fx, trait, mean[i, j], sd[i, j], lo[i, j], hi[i, j])
            for i, fx in enumerate(src.coord("fixed"))
            for j, trait in enumerate(src.coord("trait"))]
    return pd.DataFrame(rows, columns=["fixed", "trait", "mean", "sd", "lower", "upper"])


def _select_components(component: str | Sequence[str] | None, names: list) -> list[int]:
    """Indices of the requested components (all when ``None``)."""
    if component is None:
        return list(range(len(names)))
    wanted = [component] if isinstance(component, str) else list(component)
    unknown = [c for c in wanted if c not in names]
    if unknown or not wanted:
        raise LabelError(f"component {unknown or component!r} is not a random effect of the "
                         f"posterior; components: {names}")
    return [names.index(c) for c in wanted]


def _inverse_sd(src: _Draws, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``1 / sqrt(G_m,jj)`` per draw (0 where the variance is 0) and where it is defined."""
    dG = src.diag_G()[:, :, m]
    ok = dG > 0
    return np.where(ok, 1.0 / np.sqrt(np.where(ok, dG, 1.0)), 0.0), ok


def _mean_correlations(src: _Draws, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the draws of ``G_m`` as correlations, and the draws defining each, ``(t, t)``.

    From the parameters the sum over draws of ``S Lambda' diag(F_h2) Lambda S`` (``S``
    the inverse standard deviations) is one matrix product; from ``G`` it is summed by
    blocks of rows.  Off-diagonal entries only are meaningful.
    """
    inv_sd, ok = _inverse_sd(src, m)
    t = inv_sd.shape[-1]
    okf = ok.reshape(-1, t).astype(float)
    count = okf.T @ okf
    if src.has("G"):
        G = src.array("G", ("component", "trait", "trait2"))
        rows = max(1, _BLOCK_ELEMENTS // (src.n_chains * src.n_draws * t))
        total = np.empty((t, t))
        for i0 in range(0, t, rows):
            sl = slice(i0, i0 + rows)
            total[sl] = (G[:, :, m, sl, :] * inv_sd[:, :, sl, None]
                         * inv_sd[:, :, None, :]).sum(axis=(0, 1))
    else:
        lam, fh2, _, _ = src._params()
        a = lam * inv_sd[:, :, None, :] * np.sqrt(fh2[:, :, m, :, None])
        a = a.reshape(-1, t)
        total = a.T @ a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan), count


def _pair_correlations(src: _Draws, m: int, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Correlations in ``G_m`` of the pairs ``(ia[p], ib[p])`` per draw, NaN where undefined."""
    inv_sd, ok = _inverse_sd(src, m)
    cov = src.covariances(m, ia, ib)
    return np.where(ok[:, :, ia] & ok[:, :, ib], cov * inv_sd[:, :, ia] * inv_sd[:, :, ib],
                    np.nan)


def _hpd_defined(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """HPD bounds of ``(chain, draw, pair)`` draws over each pair's finite draws.

    NaN bounds where fewer than 2 draws are defined.
    """
    ok = np.isfinite(x)
    lower, upper = np.full(x.shape[2], np.nan), np.full(x.shape[2], np.nan)
    clean = ok.all(axis=(0, 1))
    if clean.any():
        lower[clean], upper[clean] = hpd_interval(_sample_da(x[:, :, clean], ("pair",)),
                                                  prob).values
    for p in np.flatnonzero(~clean & (ok.sum(axis=(0, 1)) >= 2)):
        v = x[:, :, p][ok[:, :, p]]
        lower[p], upper[p] = hpd_interval(xr.DataArray(v, dims=("draw",)), prob).values
    return lower, upper


def genetic_correlations(post: xr.Dataset, component: str | Sequence[str] | None = None,
                         top: int | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Correlations between traits of each random effect, ``G_ij / sqrt(G_ii G_jj)``.

    The correlation is computed per draw, then averaged over the draws; its HPD
    interval is over the same per-draw values.  Each unordered pair of traits
    appears once (``trait_a`` before ``trait_b`` in the posterior's trait order).
    Draws in which ``G_ii`` or ``G_jj`` is zero (h2 of zero on the grid) leave the
    correlation undefined; they are skipped for that pair, with a warning.
    Memory stays bounded for many traits: the means come from one ``t x t``
    accumulation and, with ``top``, intervals are computed only for the pairs kept.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws holding ``G``, or ``Lambda, F_h2, resid_h2, tot_Eta_prec``.
    component : str or sequence of str, optional
        Random effects to include (default: all).
    top : int, optional
        Keep the ``top`` pairs of largest absolute mean correlation (over all the
        components included), sorted by it.  Default: every pair, components outer.
    prob : float, default 0.95
        Probability content of the HPD intervals (coda convention).

    Returns
    -------
    pandas.DataFrame
        Columns ``trait_a, trait_b, component, mean, lower, upper``.

    Raises
    ------
    LabelError
        If a component is unknown or the posterior lacks ``G`` and the parameters.
    """
    prob = _check_prob(prob)
    if top is not None:
        top = check_int("top", top, minimum=1)
    src = _Draws(post)
    src.require("genetic_correlations", ("G",), _PARAMS)
    comp_names = src.coord("component")
    picked = _select_components(component, comp_names)
    traits = src.coord("trait")
    tri_a, tri_b = np.triu_indices(len(traits), k=1)
    means, counts = zip(*(_mean_correlations(src, m) for m in picked), strict=True)
    ia, ib = np.tile(tri_a, len(picked)), np.tile(tri_b, len(picked))
    comp = np.repeat(picked, tri_a.size).astype(int)
    mean = np.concatenate([mc[tri_a, tri_b] for mc in means])
    n_defined = np.concatenate([nc[tri_a, tri_b] for nc in counts])
    if top is not None:
        key = np.where(np.isnan(mean), -np.inf, np.abs(mean))
        keep = np.argsort(-key, kind="stable")[:top]
        ia, ib, comp, mean, n_defined = (a[keep] for a in (ia, ib, comp, mean, n_defined))
    lower, upper = np.full(mean.size, np.nan), np.full(mean.size, np.nan)
    k = src.post.sizes.get("factor", 1) if not src.has("G") else 1
    block = max(1, _BLOCK_ELEMENTS // (src.n_chains * src.n_draws * max(k, 1)))
    for m in picked:
        rows = np.flatnonzero(comp == m)
        for start in range(0, rows.size, block):
            sel = rows[start:start + block]
            x = _pair_correlations(src, m, ia[sel], ib[sel])
            lower[sel], upper[sel] = _hpd_defined(x, prob)
    undefined = int((src.n_chains * src.n_draws - n_defined).sum())
    if undefined:
        warnings.warn(f"genetic_correlations: {undefined} draw(s) of a pair had a zero "
                      "genetic variance (correlation undefined) and were skipped",
                      RuntimeWarning, stacklevel=2)
    return pd.DataFrame({
        "trait_a": [traits[i] for i in ia],
        "trait_b": [traits[j] for j in ib],
        "component": [comp_names[m] for m in comp],
        "mean": mean, "lower": lower, "upper": upper,
    })


def factor_table(post: xr.Dataset) -> pd.DataFrame:
    """Size, heritability and spread of each factor.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws holding ``Lambda`` and ``F_h2``, and ``G`` and ``R`` or
        ``resid_h2`` and ``tot_Eta_prec``.

    Returns
    -------
    pandas.DataFrame
        One row per factor, columns ``factor``, ``variance_share`` (per draw
        ``sum_j Lambda_kj^2`` over the total variance ``sum_j (sum_m G_m,jj + R_jj)``,
        averaged), ``F_h2_<component>`` for each random effect (posterior mean of
        ``F_h2``) and ``eff_loadings``, the effective number of loadings
        ``(sum_j l^2)^2 / sum_j l^4`` per draw, averaged (0 in draws where every
        loading is 0, e.g. a factor dropped by ``reorder_factors``).

    Raises
    ------
    LabelError
        If needed variables are missing.
    """
    src = _Draws(post)
    fd = _factor_draws(src, "factor_table")
    fh2 = posterior_mean(_sample_da(src.array("F_h2", ("component", "factor")),
                                    ("component", "factor"))).values
    out = pd.DataFrame({"factor": src.coord("factor"),
                        "variance_share": posterior_mean(_sample_da(fd["share"],
                                                                    ("factor",))).values})
    for i, comp in enumerate(src.coord("component")):
        out[f"F_h2_{comp}"] = fh2[i]
    out["eff_loadings"] = posterior_mean(_sample_da(fd["eff_loadings"], ("factor",))).values
    return out


def _factor_draws(src: _Draws, what: str) -> dict[str, np.ndarray]:
    """Per draw and factor, ``(chain, draw, factor)``: ``share`` of the total variance,
    ``max_trait_share`` (largest share of one trait's variance) and ``eff_loadings``.

    With unit-variance factors, factor ``k`` adds ``Lambda_kj^2`` to trait ``j``'s variance
    ``V_j = sum_m G_m,jj + R_jj``: ``share = sum_j Lambda_kj^2 / sum_j V_j``,
    ``max_trait_share = max_j Lambda_kj^2 / V_j`` and ``eff_loadings =
    (sum_j Lambda_kj^2)^2 / sum_j Lambda_kj^4`` (0 where every loading is 0).
    """
    src.require(what, ("Lambda", "F_h2"))
    src.require(what, ("G", "R"), _PARAMS)
    l2 = src.array("Lambda", ("factor", "trait")) ** 2
    ss = l2.sum(axis=3)
    var = src.diag_G().sum(axis=2) + src.diag_R()
    l4 = (l2**2).sum(axis=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        trait_share = np.where(var[:, :, None, :] > 0, l2 / var[:, :, None, :], np.nan)
    return {"share": ss / var.sum(axis=2)[:, :, None],
            "max_trait_share": np.nanmax(trait_share, axis=3, initial=0.0),
            "eff_loadings": np.where(l4 > 0, ss**2 / np.where(l4 > 0, l4, 1.0), 0.0)}


# --------------------------------------------------------------------------------------
# convergence diagnostics (Vehtari et al. 2021), NumPy only
# --------------------------------------------------------------------------------------

#: Quantiles whose indicator draws define the tail ESS (Vehtari et al. 2021, section 4.3).
TAIL_QUANTILES: tuple[float, float] = (0.05, 0.95)


def _elements(draws: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(chain, draw, *shape)`` draws -> ``(element, chain, draw)`` and ``shape``."""
    x = np.asarray(draws, dtype=float)
    if x.ndim < 2:
        raise InputError(f"draws must have dims (chain, draw, ...), got shape {x.shape}")
    c, d = x.shape[:2]
    return np.moveaxis(x.reshape(c, d, -1), 2, 0), x.shape[2:]


def _split_chains(x: np.ndarray) -> np.ndarray:
    """Each chain's first and last ``draw // 2`` draws as two chains (middle draw dropped)."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half:]], axis=1)


def _ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks 1..S of each row, ties given their average rank (``scipy.stats.rankdata``)."""
    e, n = flat.shape
    order = np.argsort(flat, axis=1)
    ranks = np.empty((e, n))
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1.0, n + 1.0), (e, n)), axis=1)
    tied = (np.diff(np.take_along_axis(flat, order, axis=1), axis=1) == 0).any(axis=1)
    if tied.any():
        ranks[tied] = stats.rankdata(flat[tied], method="average", axis=1)
    return ranks


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalise each element's pooled draws: ``Phi^-1((r - 3/8) / (S + 1/4))``."""
    flat = x.reshape(x.shape[0], -1)
    ranks = _ranks(flat)
    return special.ndtri((ranks - 0.375) / (flat.shape[1] + 0.25)).reshape(x.shape)


def _basic_rhat(x: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of ``(element, chain, draw)``.

    Infinite when every chain is constant but the chains differ (stuck chains), NaN
    when all draws are equal.
    """
    n = x.shape[2]
    between = n * x.mean(axis=2).var(axis=1, ddof=1)
    within = x.var(axis=2, ddof=1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _rank_rhat(split: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """Rank-normalised R-hat of split chains ``(element, chain, draw)``: max of bulk and tail.

    ``z``: ``_z_scale(split)`` when already computed.  As ArviZ, the tail R-hat is
    ignored when NaN (the folded draws all tie), the bulk R-hat is not.
    """
    bulk = _basic_rhat(_z_scale(split) if z is None else z)
    med = np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None]
    tail = _basic_rhat(_z_scale(np.abs(split - med)))
    return np.where(tail > bulk, tail, bulk)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance at every lag along the last axis (FFT, divided by ``n``)."""
    n = x.shape[-1]
    m = next_fast_len(2 * n, real=True)
    y = x - x.mean(axis=-1, keepdims=True)
    f = np.fft.rfft(y, n=m, axis=-1)
    f *= np.conjugate(f)
    return np.fft.irfft(f, n=m, axis=-1)[..., :n] / n


def _geyer_tau(rho: np.ndarray, size: int) -> np.ndarray:
    """Integrated autocorrelation time of each row of autocorrelations ``(element, lag)``.

    Geyer's initial positive sequence: the sums ``P_m = rho_2m + rho_2m+1`` (``rho_0 = 1``)
    are kept up to, not including, the first pair ``m >= 1`` that is not positive (or
    the last pair the lags allow); Geyer's initial monotone sequence: each kept
    ``P_m`` is replaced by the running minimum of ``P_0..P_m``.  As in Stan and
    ArviZ, the even autocorrelation of the pair that stopped the sequence is added
    when positive (or when that pair was kept), and ``tau`` is bounded below by
    ``1 / log10(size)``.  Vectorised over the elements; NaN where ``rho_1`` is.
    """
    e, n = rho.shape
    r = rho.copy()
    r[:, 0] = 1.0
    n_more = max(0, (n - 1) // 2 - 1)  # pairs m >= 1 the lags allow (Stan: 2m + 2 < n)
    pairs = r[:, 0: 2 * n_more + 1: 2] + r[:, 1: 2 * n_more + 2: 2]  # P_0 .. P_n_more
    stop = np.concatenate([~(pairs[:, :n_more] > 0), np.ones((e, 1), bool)], axis=1)
    last = stop.argmax(axis=1)  # last pair examined (a NaN stops the sequence too)
    kept = np.arange(n_more + 1)[None, :] < last[:, None]
    running_min = np.minimum.accumulate(pairs, axis=1)
    total = np.where(kept, running_min, 0.0).sum(axis=1)
    rows = np.arange(e)
    even = r[rows, 2 * last]
    stored = (last == 0) | (pairs[rows, last] >= 0)
    extra = np.where((even > 0) | stored, even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * total + extra, 1.0 / np.log10(size))
    return np.where(np.isnan(r[:, 1]), np.nan, tau)


def _ess_split(x: np.ndarray) -> np.ndarray:
    """ESS of split chains ``(element, chain, draw)`` (no transformation): ``S / tau``.

    Autocorrelations are combined across chains as in Vehtari et al. (2021, eq. 10);
    a constant element gets ``S``, the number of draws.
    """
    _, c, n = x.shape
    size = c * n
    acov = _autocov(x)
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + x.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    flat = x.reshape(x.shape[0], -1)
    constant = flat.max(axis=1) - flat.min(axis=1) < np.finfo(float).resolution
    return np.where(constant, float(size), size / _geyer_tau(rho, size))


def _tail_ess_split(x: np.ndarray) -> np.ndarray:
    """Tail ESS of ``(element, chain, draw)`` unsplit draws: the smaller ESS of the
    indicators ``x <= q`` for the pooled 5% and 95% quantiles (NumPy's default, type 7)."""
    q = np.quantile(x.reshape(x.shape[0], -1), TAIL_QUANTILES, axis=1)
    low, high = (_ess_split(_split_chains((x <= qi[:, None, None]).astype(float))) for qi in q)
    return np.minimum(low, high)


def _by_element(draws: ArrayLike, min_chains: int, compute) -> np.ndarray:
    """Apply ``compute`` to the valid elements of ``(chain, draw, ...)`` draws (NaN elsewhere)."""
    x, shape = _elements(draws)
    out = np.full(x.shape[0], np.nan)
    valid = ~np.isnan(x).any(axis=(1, 2))
    if x.shape[1] >= min_chains and x.shape[2] >= 4 and valid.any():
        out[valid] = compute(x[valid])
    return out.reshape(shape)


def rhat(draws: ArrayLike, *, one_chain: bool = False) -> np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021), as ``arviz.rhat`` (method "rank").

    The maximum of the bulk R-hat (split chains, rank-normalised) and the tail R-hat
    (the same on draws folded about their median).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, ...)
        Draws of any number of quantities.
    one_chain : bool, default False
        Whether one chain gets an R-hat: the split R-hat of its two halves, which
        detects a chain that has not settled (a trend, a jump).  ArviZ (0.x and 1.x)
        returns NaN for one chain, as this function does by default.

    Returns
    -------
    numpy.ndarray, shape (...)
        R-hat of each quantity; NaN with fewer than 2 chains (unless ``one_chain``)
        or 4 draws per chain, with a missing draw, or for a constant quantity;
        infinite when each (split) chain is constant but they differ (stuck chains).

    Examples
    --------
    >>> import numpy as np
    >>> from pymegalmm.results.tables import rhat
    >>> draws = np.random.default_rng(0).standard_normal((2, 500))
    >>> bool(rhat(draws) < 1.01)
    True
    """
    one_chain = check_bool("one_chain", one_chain)
    return _by_element(draws, 1 if one_chain else 2, lambda x: _rank_rhat(_split_chains(x)))


def ess_bulk(draws: ArrayLike) -> np.ndarray:
    """Bulk effective sample size (Vehtari et al. 2021), as ``arviz.ess`` (method "bulk").

    Rank-normalised split chains; autocorrelations combined across chains and
    truncated by Geyer's initial positive and monotone sequences.

    Parameters
    ----------
    draws : array_like, shape (chain, draw, ...)
        Draws of any number of quantities.

    Returns
    -------
    numpy.ndarray, shape (...)
        Bulk ESS of each quantity; NaN with fewer than 4 draws per chain or a
        missing draw.
    """
    return _by_element(draws, 1, lambda x: _ess_split(_z_scale(_split_chains(x))))


def ess_tail(draws: ArrayLike) -> np.ndarray:
    """Tail effective sample size (Vehtari et al. 2021), as ``arviz.ess`` (method "tail").

    The smaller of the ESS of the indicators ``x <= q05`` and ``x <= q95``, where
    ``q05`` and ``q95`` are the 5% and 95% quantiles of the pooled draws (NumPy's
    default quantile, type 7 as R's); the indicators' chains are split as for the
    bulk ESS, without rank-normalisation.  It measures how well the draws pin down
    the tails, hence the ends of intervals.  ArviZ 0.x's default; ArviZ 1.x defaults
    to the 11% and 89% quantiles (``rcParams["stats.ci_prob"] = 0.89``): pass
    ``prob=(0.05, 0.95)`` to ``arviz.ess`` there for the same number.  ArviZ 0.x
    computes the quantile with ``scipy.stats.mstats.mquantiles``, which can round
    just below an order statistic when ``(S - 1) q`` is a whole number (``S`` the
    number of draws, e.g. ``S = 61``); the one draw on the quantile is then left
    out of the indicator and the two ESS differ.

    Parameters
    ----------
    draws : array_like, shape (chain, draw, ...)
        Draws of any number of quantities.

    Returns
    -------
    numpy.ndarray, shape (...)
        Tail ESS of each quantity; NaN with fewer than 4 draws per chain or a
        missing draw.

    Examples
    --------
    >>> import numpy as np
    >>> from pymegalmm.results.tables import ess_tail
    >>> draws = np.random.default_rng(0).standard_normal((2, 500))
    >>> bool(600 < ess_tail(draws) < 1400)  # independent draws: about 1000
    True
    """
    return _by_element(draws, 1, _tail_ess_split)


def convergence_measures(draws: ArrayLike, *, one_chain: bool = False
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` of the same draws, sharing work.

    Parameters
    ----------
    draws : array_like, shape (chain, draw, ...)
        Draws of any number of quantities.
    one_chain : bool, default False
        As in :func:`rhat`.

    Returns
    -------
    tuple of numpy.ndarray, each of shape (...)
        R-hat, bulk ESS, tail ESS.
    """
    one_chain = check_bool("one_chain", one_chain)
    x, shape = _elements(draws)
    out = np.full((3, x.shape[0]), np.nan)
    valid = ~np.isnan(x).any(axis=(1, 2))
    if x.shape[2] >= 4 and valid.any():
        xv = x[valid]
        split = _split_chains(xv)
        z = _z_scale(split)
        if x.shape[1] >= (1 if one_chain else 2):
            out[0, valid] = _rank_rhat(split, z)
        out[1, valid] = _ess_split(z)
        out[2, valid] = _tail_ess_split(xv)
    return out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape)


def convergence_table(post: xr.Dataset,
                      variables: Sequence[str] = ("h2", "tot_Eta_prec")) -> pd.DataFrame:
    """Split R-hat, bulk and tail ESS of every element of some posterior variables.

    :func:`pymegalmm.results.diagnostics.diagnostics` covers the quantities identified
    across chains with bounded memory; this table lists every element of any variable.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws (2 chains or more for R-hat).
    variables : sequence of str, default ("h2", "tot_Eta_prec")
        Variables to diagnose; ``h2`` is derived from the parameters when the
        posterior does not hold it.

    Returns
    -------
    pandas.DataFrame
        One row per element: ``variable``, one column per dim of the variables
        (default ``trait, component``; empty where a variable lacks the dim),
        ``rhat`` (:func:`rhat`), ``ess_bulk`` (:func:`ess_bulk`) and ``ess_tail``
        (:func:`ess_tail`).

    Raises
    ------
    LabelError
        If a variable is not in the posterior.
    """
    src = _Draws(post)
    names = [variables] if isinstance(variables, str) else list(variables)
    blocks: list[dict[Hashable, Any]] = []
    label_dims: list[str] = []
    for name in names:
        if name == "h2" and not src.has("h2"):
            x, dims = src.h2(), ("component", "trait")
        elif src.has(name):
            dims = tuple(str(d) for d in src.post[name].dims if d not in _SAMPLE)
            x = src.array(name, dims)
        else:
            raise LabelError(f"variable {name!r} is not in the posterior; variables: "
                             f"{sorted(map(str, src.post.data_vars))}")
        r, eb, et = convergence_measures(x)
        labels = [src.coord(d) for d in dims]
        label_dims += [d for d in dims if d not in label_dims]
        for idx in np.ndindex(*x.shape[2:]):
            row: dict[Hashable, Any] = {"variable": name}
            row.update({d: labels[i][j] for i, (d, j) in enumerate(zip(dims, idx, strict=True))})
            row.update(rhat=float(r[idx]), ess_bulk=float(eb[idx]), ess_tail=float(et[idx]))
            blocks.append(row)
    order = sorted(label_dims, key=lambda d: (d != "trait", label_dims.index(d)))
    return pd.DataFrame(blocks, columns=["variable", *order, "rhat", "ess_bulk", "ess_tail"])


# --------------------------------------------------------------------------------------
# the printed summary
# --------------------------------------------------------------------------------------


def _f(x: float, spec: str) -> str:
    """Format a number, ``NA`` when missing."""
    return "NA" if x is None or not np.isfinite(x) else format(x, spec)


def _ci(lo: float, hi: float, spec: str) -> str:
    return f"[{_f(lo, spec)}, {_f(hi, spec)}]"


def _table(header: list[str], rows: list[list[str]], n_left: int) -> list[str]:
    """Aligned text columns: the first ``n_left`` left-justified, the others right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < n_left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(header)] + [line(r) for r in rows]


class Summary:
    """lme4-style summary of a fit: variance components, correlations, fixed effects, factors.

    Build it with :meth:`from_posterior`; print it (``str``/``repr``) for the text, and
    take each section as a DataFrame with the attributes or :meth:`to_frame`.

    Attributes
    ----------
    model_text : str
        The run's short description (printed first).
    variance_components, genetic_correlations, fixed_effects, factors : pandas.DataFrame or None
        :func:`variance_components`, :func:`genetic_correlations` (the ``top`` largest),
        :func:`fixed_effects`, :func:`factor_table`; None when the posterior lacks
        what the section needs (the text says which variables).
    factor_report : pandas.DataFrame or None
        :func:`~pymegalmm.results.diagnostics.factor_report` (per chain; printed
        under the factors: the smallest factor's share and whether ``n_factors``
        looks too small).
    convergence : pandas.DataFrame or None
        :func:`~pymegalmm.results.diagnostics.diagnostics` (R-hat, bulk and tail ESS
        of ``h2, G, R, U, B1``, ``Lambda' Lambda`` and ``lp``), when computed; printed as
        one line per quantity (worst values and where) and the elements outside
        Vehtari et al.'s (2021) limits, worst first.
    prob : float
        Probability content of the intervals.
    n_chains, n_draws : int
        Chains and draws per chain summarised.
    max_rows : int
        Rows printed per section before a "... (N more rows; ...)" line.
    """

    #: Names of the sections, as accepted by :meth:`to_frame`.
    SECTIONS: tuple[str, ...] = ("variance_components", "genetic_correlations",
                                 "fixed_effects", "factors", "factor_report", "convergence")

    def __init__(self, model_text: str, *, prob: float, n_chains: int, n_draws: int,
                 frames: dict[str, pd.DataFrame | None], missing: dict[str, str] | None = None,
                 max_rows: int = 20) -> None:
        self.model_text = model_text
        self.prob, self.n_chains, self.n_draws, self.max_rows = prob, n_chains, n_draws, max_rows
        self.variance_components = frames.get("variance_components")
        self.genetic_correlations = frames.get("genetic_correlations")
        self.fixed_effects = frames.get("fixed_effects")
        self.factors = frames.get("factors")
        self.factor_report = frames.get("factor_report")
        self.convergence = frames.get("convergence")
        self._missing = dict(missing or {})

    @classmethod
    def from_posterior(cls, post: xr.Dataset, model_text: str, prob: float = 0.95,
                       diagnostics: bool | None = None, *, top_correlations: int = 10,
                       max_rows: int = 20) -> Summary:
        """Summarise a posterior.

        Parameters
        ----------
        post : xarray.Dataset
            Posterior draws (``m.posterior`` or a loaded posterior).
        model_text : str
            The run's short description, printed first (e.g. ``MegaLMM.summary()``).
        prob : float, default 0.95
            Probability content of the HPD intervals.
        diagnostics : bool, optional
            Add the "Convergence" section
            (:func:`~pymegalmm.results.diagnostics.diagnostics`: rank-normalised
            split R-hat, bulk and tail ESS of ``h2, G, R, U, B1``, ``Lambda'
            Lambda`` and ``lp``).  Default: when the posterior has 2 chains or more.  ``True``
            with one chain compares the chain's two halves.
        top_correlations : int, default 10
            Pairs kept in :attr:`genetic_correlations`.
        max_rows : int, default 20
            Rows printed per section.

        Returns
        -------
        Summary
        """
        if not isinstance(model_text, str):
            raise InputTypeError(f"model_text must be a str, got {type(model_text).__name__}")
        prob = _check_prob(prob)
        top_correlations = check_int("top_correlations", top_correlations, minimum=1)
        max_rows = check_int("max_rows", max_rows, minimum=1)
        src = _Draws(post)
        if diagnostics is None:
            diagnostics = src.n_chains >= 2
        diagnostics = check_bool("diagnostics", diagnostics)
        from .diagnostics import diagnostics as convergence_diagnostics
        from .diagnostics import factor_report

        makers = {
            "variance_components": lambda: variance_components(src.post, prob),
            "genetic_correlations": lambda: genetic_correlations(src.post, top=top_correlations,
                                                                 prob=prob),
            "fixed_effects": lambda: fixed_effects(src.post, prob),
            "factors": lambda: factor_table(src.post),
            "factor_report": lambda: factor_report(src.post, warn=False),
        }
        if diagnostics:
            makers["convergence"] = lambda: convergence_diagnostics(src.post, warn=False)
        frames: dict[str, pd.DataFrame | None] = {}
        missing: dict[str, str] = {}
        for name, make in makers.items():
            try:
                frames[name] = make()
            except LabelError as exc:  # a variable the section needs was not recorded
                frames[name], missing[name] = None, str(exc)
        return cls(model_text, prob=prob, n_chains=src.n_chains, n_draws=src.n_draws,
                   frames=frames, missing=missing, max_rows=max_rows)

    def to_frame(self, section: str) -> pd.DataFrame:
        """One section as a DataFrame (a copy).

        Parameters
        ----------
        section : str
            One of :attr:`SECTIONS`.

        Raises
        ------
        LabelError
            If ``section`` is unknown or was not computed.
        """
        if section not in self.SECTIONS:
            raise LabelError(f"section {section!r} unknown; sections: {list(self.SECTIONS)}")
        frame = getattr(self, section)
        if frame is None:
            why = self._missing.get(section, "diagnostics were not requested")
            raise LabelError(f"section {section!r} was not computed: {why}")
        return frame.copy()

    # ------------------------------------------------------------------ text

    def _section(self, title: str, attr: str, header: list[str], rows: list[list[str]],
                 n_left: int) -> list[str]:
        if attr in self._missing:
            return [title, f"  not available: {self._missing[attr]}"]
        if not rows:
            return [title, "  (none)"]
        out = [title, *_table(header, rows[: self.max_rows], n_left)]
        if len(rows) > self.max_rows:
            out.append(f"  ... ({len(rows) - self.max_rows} more rows; see .{attr})")
        return out

    def _variance_text(self, pct: str) -> list[str]:
        vc = self.variance_components
        title = (f"Variance components (h2: posterior mean [{pct} HPD]; "
                 "var: posterior mean, scale of Y)")
        if vc is None:
            return self._section(title, "variance_components", [], [], 0)
        comps = list(dict.fromkeys(vc["component"]))
        genetic = [c for c in comps if c != RESIDUAL]
        header = ["trait", *[f"h2 {c}" for c in genetic], *[f"var {c}" for c in comps]]
        rows = []
        for trait, g in vc.groupby("trait", sort=False):
            by = g.set_index("component")
            rows.append([str(trait)]
                        + [f"{_f(by.at[c, 'h2_mean'], '.2f')} "
                           + _ci(by.at[c, "h2_lower"], by.at[c, "h2_upper"], ".2f")
                           for c in genetic]
                        + [_f(by.at[c, "variance_mean"], "#.4g") for c in comps])
        return self._section(title, "variance_components", header, rows, 1)

    def _correlation_text(self, pct: str) -> list[str]:
        gc = self.genetic_correlations
        title = f"Largest genetic correlations (posterior mean [{pct} HPD])"
        rows = [] if gc is None else [
            [str(r.trait_a), str(r.trait_b), str(r.component), _f(r.mean, ".2f"),
             _ci(r.lower, r.upper, ".2f")] for r in gc.itertuples(index=False)]
        header = ["trait_a", "trait_b", "component", "mean", f"{pct} HPD"]
        return self._section(title, "genetic_correlations", header, rows, 3)

    def _fixed_text(self, pct: str) -> list[str]:
        fe = self.fixed_effects
        title = f"Fixed effects (posterior mean, sd, {pct} HPD)"
        rows = [] if fe is None else [
            [str(r.fixed), str(r.trait), _f(r.mean, "#.4g"), _f(r.sd, "#.3g"),
             _ci(r.lower, r.upper, "#.4g")] for r in fe.itertuples(index=False)]
        header = ["fixed", "trait", "estimate", "sd", f"{pct} HPD"]
        return self._section(title, "fixed_effects", header, rows, 2)

    def _factor_text(self) -> list[str]:
        ft = self.factors
        title = ("Factors (share of total variance, F_h2 posterior mean, "
                 "effective number of loadings)")
        if ft is None:
            return self._section(title, "factors", [], [], 0)
        h2cols = [c for c in ft.columns if c.startswith("F_h2_")]
        header = ["factor", "var share", *[c.replace("F_h2_", "F_h2 ") for c in h2cols],
                  "eff. loadings"]
        rows = [[str(r["factor"]), _f(r["variance_share"], ".3f"),
                 *[_f(r[c], ".2f") for c in h2cols], _f(r["eff_loadings"], ".1f")]
                for _, r in ft.iterrows()]
        return self._section(title, "factors", header, rows, 1) + self._factor_check()

    def _factor_check(self) -> list[str]:
        """The smallest factor's share by chain, and whether n_factors looks too small."""
        fr = self.factor_report
        if fr is None or not len(fr):
            return []
        a = fr.attrs
        pct = f"{a['threshold']:.0%}"
        chains = list(a["smallest"])
        lines = ["  smallest factor's share of the variance per draw, by chain "
                 f"({', '.join(map(str, chains))}): median "
                 + ", ".join(f"{a['smallest'][c]['median']:.2%}" for c in chains)
                 + f"; P(> {pct}) "
                 + ", ".join(f"{a['smallest'][c]['prob_above']:.2f}" for c in chains)]
        if a["too_few"]:
            which = ", ".join(map(str, a["too_few"]))
            lines.append(f"  WARNING: too few factors? In chain {which} "
                         f"even the smallest factor explains more than {pct} of the variance in "
                         f"more than {a['prob']:.0%} of the draws: increase n_factors.")
        else:
            lines.append(f"  no sign of too few factors (that needs P(> {pct}) above "
                         f"{a['prob']:.2f} in a chain)")
        return lines

    def _convergence_text(self) -> list[str]:
        cv = self.convergence
        limit = (f"{_f(cv.attrs['ess_threshold'], '.0f')}" if cv is not None
                 and "ess_threshold" in cv.attrs else "100 per chain")
        title = ("Convergence (rank-normalised split R-hat, bulk and tail ESS; Vehtari et al. "
                 f"2021: aim for R-hat < 1.01 and ESS > 100 per chain, here {limit})")
        if cv is None:
            return self._section(title, "convergence", [], [], 0)
        from .diagnostics import diagnostics_overview

        ov = diagnostics_overview(cv)
        header = ["quantity", "diagnosed", "max R-hat", "where", "min bulk ESS", "where",
                  "min tail ESS", "where"]
        def inside(where: str) -> str:  # "G[ID, T01, T02]" -> "ID, T01, T02"
            return where[where.find("[") + 1:-1] if where.endswith("]") else where

        rows = [[r.variable, str(r.diagnosed), _f(r.rhat, ".3f"), inside(r.rhat_where),
                 _f(r.ess_bulk, ".0f"), inside(r.ess_bulk_where), _f(r.ess_tail, ".0f"),
                 inside(r.ess_tail_where)] for r in ov.itertuples(index=False)]
        lines = [title, *_table(header, rows, 1)]
        sampled = ov[ov["diagnosed"] < ov["elements"]]
        if len(sampled):
            lines.append("  " + ", ".join(f"{r.variable}: {r.diagnosed} of {r.elements}"
                                          for r in sampled.itertuples(index=False))
                         + " elements diagnosed (the diagonal and a random subset; all: "
                         "diagnostics(post, max_diagnosed=None))")
        for name, why in cv.attrs.get("skipped", {}).items():
            lines.append(f"  {name}: not available ({why})")
        n_total, n_out = int(ov["diagnosed"].sum()), int(ov["flagged"].sum())
        if not n_out:
            return lines + [f"  all {n_total} quantities within these limits"]
        rh, ess_min = cv.attrs["rhat_threshold"], cv.attrs["ess_threshold"]
        ess = np.fmin(cv["ess_bulk"].to_numpy(float), cv["ess_tail"].to_numpy(float))
        r = cv["rhat"].to_numpy(float)
        bad = (r > rh) | (ess < ess_min)
        with np.errstate(invalid="ignore", divide="ignore"):  # times over the limit
            score = np.fmax((r - 1.0) / (rh - 1.0), ess_min / ess)
        worst = cv[bad].assign(_score=score[bad]).sort_values("_score", ascending=False,
                                                              kind="stable")
        dims = list(cv.columns[1:-4])
        listed = [[r["variable"], ", ".join(str(r[d]) for d in dims if not pd.isna(r[d])),
                   _f(r["rhat"], ".3f"), _f(r["ess_bulk"], ".0f"), _f(r["ess_tail"], ".0f")]
                  for _, r in worst.iterrows()]
        lines.append(f"  {n_out} of {n_total} quantities outside these limits; the worst:")
        return lines + self._section("", "convergence", ["variable", "element", "R-hat",
                                                         "bulk ESS", "tail ESS"],
                                     listed, 2)[1:]

    def __str__(self) -> str:
        pct = f"{self.prob * 100:g}%"
        parts = [[self.model_text.rstrip()],
                 [f"Posterior: {self.n_chains} chain(s) x {self.n_draws} draws; intervals are "
                  f"{pct} highest posterior density (coda)"],
                 self._variance_text(pct), self._correlation_text(pct),
                 self._fixed_text(pct), self._factor_text()]
        if self.convergence is not None or "convergence" in self._missing:
            parts.append(self._convergence_text())
        return "\n\n".join("\n".join(p) for p in parts)

    def __repr__(self) -> str:
        return self.__str__()
