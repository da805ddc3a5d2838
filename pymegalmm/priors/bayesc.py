"""BayesC loadings prior: spike and slab, each loading zero or Gaussian (R MegaLMM's
``sample_Lambda_prec_BayesC`` and ``..._onePi``, with the Y sampler 4).

Differences from R MegaLMM 0.9.5 are listed in :class:`BayesCPrior`'s notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from ..errors import InputTypeError, SamplerError
from ..validate import check_bool, check_float
from .base import LambdaPrior, LoadingsRegression, PriorState
from .variance import GammaPrior, as_prior


@dataclass(frozen=True)
class BetaPrior:
    """A Beta(a, b) prior (of an inclusion probability: mean ``a / (a + b)``)."""

    a: float
    b: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", check_float("a", self.a, low=0.0, low_open=True))
        object.__setattr__(self, "b", check_float("b", self.b, low=0.0, low_open=True))


def _as_pi(value: Any) -> float | BetaPrior:
    """``pi`` as a fixed probability in (0, 1) or a :class:`BetaPrior` (a dict works)."""
    if isinstance(value, BetaPrior | Mapping):
        return as_prior("pi", value, BetaPrior)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.floating
                                                             | np.integer):
        raise InputTypeError(f"pi must be a BetaPrior(a=..., b=...), a dict with keys "
                             f"['a', 'b'], or a fixed probability in (0, 1), got "
                             f"{type(value).__name__} {value!r}")
    return check_float("pi", value, low=0.0, high=1.0, low_open=True, high_open=True)


@dataclass(frozen=True)
class BayesCPrior(LambdaPrior):
    """BayesC (spike-and-slab) prior on the factor loadings: each loading is 0 or Gaussian.

    ``lambda_kj = 0`` with probability ``1 - pi_k``, otherwise
    ``lambda_kj ~ N(0, sigma2_k / tot_Eta_prec_j)``, independently, with

    - inclusion probabilities ``pi_k ~ Beta(pi.a, pi.b)``, one per factor, or one
      shared by all factors (``one_pi=True``), or fixed (``pi`` a number);
    - slab variances ``sigma2_k ~ IG(slab.shape, scale = slab.rate)``, one per factor,
      i.e. the slab precision ``1 / sigma2_k ~ Gamma(slab.shape, rate = slab.rate)``
      (relative to the trait's ``tot_Eta_prec``, as every loadings prior here).

    The loadings are drawn by their own step (:meth:`sample_loadings`): per trait,
    given ``h2`` (random effects integrated out), a single-site Gibbs sweep over the
    ``k`` loadings, each drawing its indicator with the value integrated out and then
    the value; then the fixed effects ``B1`` given the loadings; then ``tot_Eta_prec``.
    The prior's :meth:`update` (step 7) draws ``pi`` and ``sigma2`` given the loadings.

    State: ``Lambda_pi`` and ``Lambda_sigma2`` (factor) and ``Lambda_inclusion``
    (factor, trait), the indicators ``lambda_kj != 0`` of the current loadings.
    Recorded: ``Lambda_pi`` and ``Lambda_inclusion``, whose posterior mean is each
    loading's posterior inclusion probability.

    Parameters
    ----------
    pi : BetaPrior, dict or float
        Prior of the inclusion probabilities, ``BetaPrior(a, b)`` (a dict
        ``{"a": ..., "b": ...}`` works), or a fixed probability in ``(0, 1)`` (R's
        ``fixed_pi``, read as an inclusion probability).  Default ``BetaPrior(1, 1)``
        (uniform, as R).
    slab : GammaPrior or dict
        Prior of the slab precisions ``1 / sigma2_k`` as ``GammaPrior(shape, rate)``.
        Default shape 2, rate 1 (prior median of ``sigma2`` about 0.6; ``sigma2`` is
        the loadings' variance times ``tot_Eta_prec``, of order 1 for standardised traits).
    one_pi : bool
        One inclusion probability shared by all factors (R's ``BayesC_onePi``)
        instead of one per factor.  Default False.

    Notes
    -----
    Differences from R MegaLMM 0.9.5 (``sample_Lambda_prec_BayesC``):

    - R's ``Lambda_pi`` is the probability that a loading is *zero* (its sampler
      weighs the spike by ``log pi``); here ``pi`` is the probability of inclusion.
      R's ``Beta(p - nLoci + 1, nLoci + 1)`` on its ``pi`` is ``Beta(1, 1)`` here.
    - R draws one slab variance for all factors (a scaled inverse chi-square with
      ``Lambda_df``, ``Lambda_scale``) and multiplies the precisions by an ARD-like
      ``tauh = cumprod(delta)``.  Here each factor has its own slab variance and
      there is no ``delta`` sequence: factors are ordered by
      :func:`~pymegalmm.core.reorder.reorder_factors` (by size) and emptied through
      their ``pi_k``.
    - R's single-site sampler draws the fixed effects one coefficient at a time and
      the excluded loadings' values from a pseudo-prior; here ``B1`` is drawn as a
      block, and an excluded loading is exactly 0 (nothing else is drawn for it).

    Examples
    --------
    >>> from pymegalmm import Priors
    >>> from pymegalmm.priors import BayesCPrior, BetaPrior, GammaPrior
    >>> prior = BayesCPrior(pi=BetaPrior(a=1, b=4), slab=GammaPrior(shape=2, rate=1))
    >>> Priors(Lambda_prior=prior).Lambda_prior
    BayesCPrior(pi=BetaPrior(a=1.0, b=4.0), slab=GammaPrior(shape=2.0, rate=1.0), one_pi=False)
    """

    pi: BetaPrior | float = BetaPrior(1.0, 1.0)
    slab: GammaPrior = GammaPrior(2.0, 1.0)
    one_pi: bool = False

    state_dims: ClassVar[dict[str, tuple[str, ...]]] = {
        "Lambda_pi": ("factor",), "Lambda_sigma2": ("factor",),
        "Lambda_inclusion": ("factor", "trait"),
    }
    recorded: ClassVar[dict[str, str]] = {
        "Lambda_pi": "BayesC prior probability that a loading of each factor is non-zero",
        "Lambda_inclusion": "BayesC indicator that each loading is non-zero in this draw "
                            "(its posterior mean is the loading's posterior inclusion "
                            "probability)",
    }

    def __post_init__(self) -> None:
        check = {
            "pi": _as_pi(self.pi),
            "slab": as_prior("slab", self.slab, GammaPrior),
            "one_pi": check_bool("one_pi", self.one_pi),
        }
        for name, value in check.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ protocol

    def initialize(self, Lambda: np.ndarray, tot_prec: np.ndarray,
                   rng: np.random.Generator) -> PriorState:
        """``pi`` at its prior mean (or fixed value), ``sigma2 = 1``, then one update."""
        k, t = Lambda.shape
        state = {"Lambda_pi": np.full(k, self._pi_mean()), "Lambda_sigma2": np.ones(k),
                 "Lambda_inclusion": np.ones((k, t), order="F")}
        return self.update(Lambda, tot_prec, state, rng)

    def precision(self, state: PriorState) -> np.ndarray:
        """The slab's relative precision ``1 / sigma2_k``, ``(k, 1)``.

        The precision of the non-zero loadings; the standard Gaussian step does not
        use it for this prior, whose loadings are drawn by :meth:`sample_loadings`.
        """
        return (1.0 / state["Lambda_sigma2"])[:, None]

    def update(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
               rng: np.random.Generator) -> PriorState:
        """``pi`` then ``sigma2`` given the loadings (step 7).

        With ``m_k = #{j: lambda_kj != 0}``:

        1. ``pi_k ~ Beta(a + m_k, b + t - m_k)`` (``one_pi``: one draw of
           ``Beta(a + sum m, b + k t - sum m)``; fixed ``pi``: unchanged, no draw);
        2. ``sigma2_k ~ IG(slab.shape + m_k / 2, slab.rate + sum_j tot_prec_j lambda_kj^2 / 2)``.

        Random numbers, in this order: ``k`` (or 1) Beta draws, then ``k`` standard gammas.
        """
        k, t = Lambda.shape
        inclusion = np.asfortranarray((Lambda != 0.0).astype(float))
        m = inclusion.sum(axis=1)
        if isinstance(self.pi, BetaPrior):
            if self.one_pi:
                pi = np.full(k, rng.beta(self.pi.a + m.sum(), self.pi.b + k * t - m.sum()))
            else:
                pi = rng.beta(self.pi.a + m, self.pi.b + t - m)
        else:
            pi = np.full(k, self.pi)
        ss = 0.5 * (np.square(Lambda) * tot_prec).sum(axis=1)
        sigma2 = (self.slab.rate + ss) / rng.standard_gamma(self.slab.shape + 0.5 * m)
        return {"Lambda_pi": pi, "Lambda_sigma2": sigma2, "Lambda_inclusion": inclusion}

    def sample_loadings(self, regression: LoadingsRegression, state: PriorState,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Step 1 under BayesC: loadings site by site, then ``B1``, then ``tau``, per trait.

        Per trait ``j``, given ``h2_j`` (whitened, so ``e ~ N(0, I / tau_j)``), with
        ``G = X' W X``, ``c = X' W y`` and the current ``tau_j``:

        1. for ``l = 1..k`` in turn, with ``r_l = c_l - sum_{m != l} G_lm coef_m``
           (current values of the others), ``P = G_ll + 1 / sigma2_l`` and
           ``mu = r_l / P``: include with probability ``expit(logit pi_l + log BF)``,
           ``log BF = -log(1 + G_ll sigma2_l) / 2 + tau_j r_l mu / 2`` (the value
           integrated out); if included ``lambda_lj ~ N(mu, 1 / (tau_j P))``, else 0;
        2. ``B1_j ~ N(A^-1 d, (tau_j A)^-1)`` given the loadings, ``A = G_bb``,
           ``d = c_b - G_bl lambda_j`` (coefficients not identified for the trait
           left out, at 0);
        3. ``tau_j ~ Gamma(shape + (n + m_j) / 2, rate + SS / 2 + sum_l lambda_lj^2 /
           (2 sigma2_l))``, ``SS`` the whitened residual sum of squares and ``m_j`` the
           number of non-zero loadings.

        Vectorised over traits (a Python loop over the ``k`` loadings): ``O(c p^2)`` per
        call, the cost of building the per-trait Gram matrices, like the standard step.
        Random numbers, in this order: ``(k, c)`` uniforms and ``(k, c)`` standard
        normals for the loadings (one each per site, used or not), ``(p - k, c)``
        standard normals for ``B1``, ``c`` standard gammas for ``tau``.

        Parameters
        ----------
        regression : LoadingsRegression
            Sufficient statistics and current values of ``c`` traits.
        state : PriorState
            This prior's state (``Lambda_pi``, ``Lambda_sigma2``).
        rng : numpy.random.Generator
            The chain's generator.

        Returns
        -------
        coef : numpy.ndarray
            ``(p, c)`` ``[Lambda; B1]``, Fortran-ordered.
        tau : numpy.ndarray
            ``(c,)`` total precisions.
        """
        sigma2 = np.asarray(state["Lambda_sigma2"], dtype=float)
        pi = np.clip(np.asarray(state["Lambda_pi"], dtype=float), 1e-300, 1.0 - 1e-16)
        logit_pi = np.log(pi) - np.log1p(-pi)
        return sample_spike_slab(regression, np.arange(regression.n_pen), sigma2[:, None],
                                 logit_pi[:, None], None, rng)

    def spike_and_slab(self, state: PriorState) -> tuple[np.ndarray, np.ndarray]:
        """``(sigma2, pi)`` per factor: the slab variances (relative to ``tot_Eta_prec``)
        and inclusion probabilities, for a joint single-site sweep with other
        spike-and-slab coefficients (:func:`sample_spike_slab`)."""
        return (np.asarray(state["Lambda_sigma2"], dtype=float),
                np.asarray(state["Lambda_pi"], dtype=float))

    def sample_prior(self, n_factors: int, tot_prec: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, PriorState]:
        """Draw ``pi``, ``sigma2``, the indicators and the loadings from the prior.

        ``pi_k ~ Beta(a, b)`` (one draw with ``one_pi``; fixed ``pi``: no draw);
        ``sigma2_k ~ IG(slab.shape, slab.rate)``; ``lambda_kj = 0`` with probability
        ``1 - pi_k``, else ``N(0, sigma2_k / tot_prec_j)``.

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
            The state arrays, as :meth:`initialize` returns them.
        """
        from ..validate import check_int

        k = check_int("n_factors", n_factors, minimum=1)
        tot_prec = np.asarray(tot_prec, dtype=float)
        t = tot_prec.shape[0]
        if isinstance(self.pi, BetaPrior):
            pi = (np.full(k, rng.beta(self.pi.a, self.pi.b)) if self.one_pi
                  else rng.beta(self.pi.a, self.pi.b, size=k))
        else:
            pi = np.full(k, self.pi)
        sigma2 = self.slab.rate / rng.standard_gamma(self.slab.shape, size=k)
        inclusion = np.asfortranarray((rng.random((k, t)) < pi[:, None]).astype(float))
        Lambda = np.asfortranarray(inclusion * rng.standard_normal((k, t))
                                   * np.sqrt(sigma2[:, None] / tot_prec))
        return Lambda, {"Lambda_pi": pi, "Lambda_sigma2": sigma2, "Lambda_inclusion": inclusion}

    def _pi_mean(self) -> float:
        return self.pi.a / (self.pi.a + self.pi.b) if isinstance(self.pi, BetaPrior) else self.pi


def sample_spike_slab(r: LoadingsRegression, sites: np.ndarray, slab_var: np.ndarray,
                      logit_pi: np.ndarray, pen_prec: np.ndarray | None,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Single-site (collapsed) Gibbs sweep over spike-and-slab coefficients, then the rest.

    The regression of ``c`` columns given their h2 (whitened: ``e ~ N(0, I / tau_j)``),
    ``y_j = X coef_j + e_j`` with ``X = [X_pen, X_flat]`` (``r.n_pen`` penalised columns
    first).  The penalised columns at ``sites`` are spike and slab: ``coef_lj = 0`` with
    probability ``1 - pi_lj``, else ``N(0, slab_var_lj / tau_j)``; the other penalised
    columns are Gaussian, ``N(0, 1 / (tau_j pen_prec_lj))``; the flat ones (``X_flat``) have
    a flat prior.  Per column ``j``, with ``G = X' W X``, ``c = X' W y``:

    1. for each site ``l`` in turn, ``r_l = c_l - sum_{m != l} G_lm coef_m`` (current
       values), ``P = G_ll + 1 / slab_var_l``, ``mu = r_l / P``: include with probability
       ``expit(logit pi_l + log BF)``, ``log BF = -log(1 + G_ll slab_var_l) / 2 +
       tau_j r_l mu / 2`` (the value integrated out); if included ``coef_lj ~ N(mu,
       1 / (tau_j P))``, else 0;
    2. the other coefficients jointly, ``N(A^-1 d, (tau_j A)^-1)`` with ``A = G_RR +
       diag(pen_prec)`` (0 for the flat ones) and ``d = c_R - G_RS coef_S`` (flat
       coefficients not identified for a column, ``r.drop_flat``, left out at 0);
    3. ``tau_j ~ Gamma(shape + (n + m_j + g) / 2, rate + SS / 2 + sum_l coef_lj^2 /
       (2 slab_var_lj) + sum_Gauss pen_prec coef^2 / 2)``, ``m_j`` the non-zero sites and
       ``g`` the Gaussian penalised coefficients.

    Shared by the BayesC loadings (:meth:`BayesCPrior.sample_loadings`, sites = the
    loadings) and the spike-and-slab extra-regression priors
    (:class:`pymegalmm.RegressionBayesCPrior`, :class:`pymegalmm.RegressionBayesBPrior`).
    Random numbers, in this order: ``(s, c)`` uniforms and ``(s, c)`` standard normals
    for the sites (one each per site, used or not), ``(p - s, c)`` standard normals for
    the rest (none when empty), ``c`` standard gammas for ``tau``.

    Parameters
    ----------
    r : LoadingsRegression
        Sufficient statistics and current values of the ``c`` columns.
    sites : numpy.ndarray
        ``(s,)`` increasing positions of the spike-and-slab columns among the penalised.
    slab_var : numpy.ndarray
        ``(s, c)`` (or ``(s, 1)``) slab variances relative to ``tau``.
    logit_pi : numpy.ndarray
        ``(s, c)`` (or ``(s, 1)``) log-odds of inclusion.
    pen_prec : numpy.ndarray or None
        ``(n_pen, c)`` relative prior precisions of the Gaussian penalised columns (rows at
        ``sites`` unused); None when every penalised column is a site.
    rng : numpy.random.Generator
        The chain's generator.

    Returns
    -------
    coef : numpy.ndarray
        ``(p, c)`` coefficients, Fortran-ordered.
    tau : numpy.ndarray
        ``(c,)`` total precisions.
    """
    k = r.n_pen
    p, c = r.XtWy.shape
    sites = np.asarray(sites, dtype=np.intp)
    n_s = sites.size
    prefix = n_s == k and pen_prec is None  # every penalised column a site (BayesC loadings)
    S: slice | np.ndarray = slice(0, k) if prefix else sites
    G = r.gram[r.gram_index]  # (c, p, p), column by column
    tau = np.asarray(r.tau, dtype=float)
    coef = np.array(r.coef, dtype=float, order="F", copy=True)
    drop = None if r.drop_flat is None else np.asarray(r.drop_flat, dtype=bool).T
    if drop is not None:
        coef[k:][drop] = 0.0
    u = rng.random((n_s, c))
    z = rng.standard_normal((n_s, c))
    # Xr[:, j] = X' W (y_j - X coef_j): the residual's cross-products, kept current
    Xr = r.XtWy - np.einsum("jpq,qj->pj", G, coef)
    for i, l in enumerate(sites):
        g_ll = G[:, l, l]
        rhs = Xr[l] + g_ll * coef[l]
        prec = g_ll + 1.0 / slab_var[i]
        mu = rhs / prec
        log_bf = -0.5 * np.log1p(g_ll * slab_var[i]) + 0.5 * tau * rhs * mu
        new = np.where(u[i] < expit(logit_pi[i] + log_bf),
                       mu + z[i] / np.sqrt(tau * prec), 0.0)
        Xr -= G[:, :, l].T * (new - coef[l])
        coef[l] = new
    gauss = np.zeros(0, dtype=np.intp)
    if prefix:
        if p > k:
            coef[k:] = _sample_flat(G, r.XtWy, coef, k, tau, drop, rng)
    else:
        is_site = np.zeros(p, dtype=bool)
        is_site[sites] = True
        rest = np.flatnonzero(~is_site)  # Gaussian penalised columns, then the flat ones
        gauss = rest[rest < k]
        if rest.size:
            diag = np.zeros((rest.size, c))
            if gauss.size:
                if pen_prec is None:
                    raise ValueError("pen_prec is needed when some penalised columns are "
                                     "not spike-and-slab sites")
                diag[:gauss.size] = np.asarray(pen_prec, dtype=float)[gauss]
            drop_rest = None
            if drop is not None:
                drop_rest = np.zeros((rest.size, c), dtype=bool)
                drop_rest[gauss.size:] = drop
            coef[rest] = _sample_block(G[:, rest][:, :, rest], G[:, rest][:, :, sites],
                                       r.XtWy[rest], coef[sites], diag, tau, drop_rest, rng)
    Gc = np.einsum("jpq,qj->pj", G, coef)
    ss = np.maximum(r.yWy - 2.0 * (coef * r.XtWy).sum(axis=0) + (coef * Gc).sum(axis=0), 0.0)
    lam = coef[S]
    m = (lam != 0.0).sum(axis=0)
    pen = (np.square(lam) / slab_var).sum(axis=0)
    if gauss.size:
        m = m + gauss.size
        pen = pen + (np.asarray(pen_prec, dtype=float)[gauss] * np.square(coef[gauss])
                     ).sum(axis=0)
    gamma = rng.standard_gamma(r.tau_shape + 0.5 * (r.n_rows + m))
    return coef, gamma / (r.tau_rate + 0.5 * (ss + pen))


def _sample_flat(G: np.ndarray, XtWy: np.ndarray, coef: np.ndarray, k: int, tau: np.ndarray,
                 drop: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """``B1_j ~ N(A^-1 d, (tau_j A)^-1)`` per trait given the loadings (batched over traits).

    ``A = G_bb``, ``d = c_b - G_bl lambda``; a coefficient not identified for a trait is
    decoupled (its row and column of ``A`` set to the identity's, ``d`` to 0) and set to 0.
    Draws ``(p - k, c)`` standard normals.
    """
    return _sample_block(G[:, k:, k:], G[:, k:, :k], XtWy[k:], coef[:k], None, tau, drop, rng)


def _sample_block(G_RR: np.ndarray, G_RS: np.ndarray, XtWy_R: np.ndarray, coef_S: np.ndarray,
                  diag: np.ndarray | None, tau: np.ndarray, drop: np.ndarray | None,
                  rng: np.random.Generator) -> np.ndarray:
    """Coefficients ``R`` of every column jointly given the others ``S`` (batched).

    ``N(A^-1 d, (tau_j A)^-1)`` with ``A = G_RR + diag(diag_j)`` (``diag``: ``(r, c)`` prior
    precisions relative to ``tau``, None for all flat) and ``d = c_R - G_RS coef_S``; a
    coefficient with ``drop`` is decoupled (its row and column of ``A`` set to the
    identity's, ``d`` to 0) and set to 0.  Draws ``(r, c)`` standard normals.
    """
    A = np.array(G_RR, copy=True)  # (c, r, r)
    d = XtWy_R - np.einsum("jbl,lj->bj", G_RS, coef_S)
    b, c = d.shape
    if diag is not None:
        idx = np.arange(b)
        A[:, idx, idx] += diag.T
    z = rng.standard_normal((b, c))
    if drop is not None and drop.any():
        jj, bb = np.nonzero(drop.T)  # column, coefficient
        A[jj, bb, :] = 0.0
        A[jj, :, bb] = 0.0
        A[jj, bb, bb] = 1.0
        d[bb, jj] = 0.0
    try:
        L = np.linalg.cholesky(A)  # A = L L'
    except np.linalg.LinAlgError:
        raise SamplerError("the fixed-effect regression of some trait was not positive "
                           "definite; the fixed-effect design may be collinear") from None
    # mean = A^-1 d; noise = L'^-1 z / sqrt(tau), so that cov = (tau A)^-1
    mean = np.linalg.solve(A, d.T[:, :, None])[:, :, 0]
    noise = np.linalg.solve(np.swapaxes(L, 1, 2), z.T[:, :, None])[:, :, 0]
    out = (mean + noise / np.sqrt(tau)[:, None]).T
    if drop is not None:
        out[drop] = 0.0
    return out
