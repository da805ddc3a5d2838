"""The horseshoe loadings prior (R MegaLMM's nominal default, METHOD.md section 3, step 7).

Conditionals against a slow NumPy reference on the same random numbers; the global
scale's posterior against quadrature; prior draws and the update's invariance of the
prior; recovery of a sparse-loadings simulation next to ARD; reordering by
``Lambda_m_eff``; the model records, reorders, saves and resumes; bad inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pymegalmm import MegaLMM, Priors, datasets
from pymegalmm.core.state import ChainState
from pymegalmm.linalg import sampling_threads
from pymegalmm.priors import ARDPrior, GammaPrior, HorseshoePrior, LambdaPrior
from pymegalmm.sampler import reorder_factors

ROOT = Path(__file__).resolve().parents[1]


def _scalar(x) -> float:
    return float(np.reshape(x, ()))


# --------------------------------------------------------------------------------------
# The update against a slow reference, on the same random numbers
# --------------------------------------------------------------------------------------


def _reference_update(prior: HorseshoePrior, Lambda, tot_prec, state, rng):
    """Step 7 written straight from the full conditionals, O(k^2) per sweep, no shortcuts.

    ``IG(a, b)`` with shape a and scale b is drawn as ``b / Gamma(a, 1)``; the standard
    gammas are requested in the order the prior documents (nu, phi2, then one
    ``(sweeps, k + 1)`` block: tau2, xi, delta_2..delta_k).
    """
    n = prior.n_rows
    t0 = prior.prop_0 / (1 - prior.prop_0) / math.sqrt(n)
    k, t = Lambda.shape
    a, b_rate = prior.delta.shape, prior.delta.rate
    delta = np.array(state["delta"], dtype=float)
    tau2, xi = _scalar(state["Lambda_tau2"]), _scalar(state["Lambda_xi"])
    phi2_old = state["Lambda_phi2"]
    e_nu = rng.standard_exponential((k, t))
    e_phi = rng.standard_exponential((k, t))
    c = np.cumprod(delta)
    nu = np.empty((k, t))
    phi2 = np.empty((k, t))
    for i in range(k):
        for j in range(t):
            bij = tot_prec[j] * Lambda[i, j] ** 2 / 2
            nu[i, j] = (1 + 1 / phi2_old[i, j]) / e_nu[i, j]  # IG(1, 1 + 1/phi2)
            phi2[i, j] = (1 / nu[i, j] + bij / (c[i] * tau2)) / e_phi[i, j]
    s = np.array([sum(tot_prec[j] * Lambda[i, j] ** 2 / 2 / phi2[i, j] for j in range(t))
                  for i in range(k)])
    shapes = [(t * k + 1) / 2, 1.0] + [a + t * (k - h + 1) / 2 for h in range(2, k + 1)]
    g = rng.standard_gamma(np.array(shapes), size=(prior.delta_iterations_factor, k + 1))
    for sweep in range(prior.delta_iterations_factor):
        c = np.cumprod(delta)
        tau2 = (1 / xi + np.sum(s / c)) / g[sweep, 0]
        xi = (1 / t0**2 + 1 / tau2) / g[sweep, 1]
        for h in range(2, k + 1):  # 1-based position h
            c = np.cumprod(delta)
            rate = b_rate + delta[h - 1] * np.sum(s[h - 1:] / c[h - 1:]) / tau2
            delta[h - 1] = rate / g[sweep, h]
    c = np.cumprod(delta)
    P = 1 / (tau2 * phi2 * c[:, None])
    m_eff = np.sum(1 - 1 / (1 + n / P), axis=1)
    return {"Lambda_phi2": phi2, "Lambda_nu": nu, "Lambda_tau2": tau2, "Lambda_xi": xi,
            "delta": delta, "Lambda_m_eff": m_eff, "precision": P}


@pytest.mark.parametrize("k, sweeps", [(1, 3), (4, 1), (5, 7)])
def test_update_matches_the_slow_reference_draw_by_draw(k, sweeps):
    t, n = 6, 80
    prior = HorseshoePrior(prop_0=0.2, delta=GammaPrior(2.5, 1.7),
                           delta_iterations_factor=sweeps).for_data(n)
    rng = np.random.default_rng(3)
    Lambda = rng.standard_normal((k, t)) * rng.uniform(0.01, 1.0, (k, t))
    tot_prec = rng.gamma(4.0, 1 / 2.5, t)
    state = {"Lambda_phi2": rng.gamma(1.0, 2.0, (k, t)), "Lambda_nu": np.ones((k, t)),
             "Lambda_tau2": np.array(0.3), "Lambda_xi": np.array(2.0),
             "delta": np.r_[1.0, rng.uniform(0.3, 1.5, k - 1)], "Lambda_m_eff": np.ones(k)}
    fast = prior.update(Lambda, tot_prec, state, np.random.default_rng(99))
    slow = _reference_update(prior, Lambda, tot_prec, state, np.random.default_rng(99))
    # same random numbers, different summation orders: agreement to rounding (the sweeps
    # are smooth maps of their inputs, so rounding is not amplified over 7 sweeps)
    for name in ("Lambda_phi2", "Lambda_nu", "Lambda_tau2", "Lambda_xi", "delta",
                 "Lambda_m_eff"):
        np.testing.assert_allclose(np.reshape(fast[name], np.shape(slow[name])), slow[name],
                                   rtol=1e-11, err_msg=name)
    np.testing.assert_allclose(prior.precision(fast), slow["precision"], rtol=1e-11)
    assert fast["delta"][0] == 1.0
    assert fast["Lambda_phi2"].flags.f_contiguous and prior.precision(fast).flags.f_contiguous
    # the state passed in is not modified
    assert state["Lambda_tau2"] == 0.3 and state["delta"][0] == 1.0


def test_state_read_back_from_disk_updates_identically(tmp_path):
    # ChainState.load returns 0-d arrays as shape (1,): the update reads either
    prior = HorseshoePrior().for_data(30)
    rng = np.random.default_rng(0)
    Lambda, tot = rng.standard_normal((3, 4)), np.ones(4)
    state = prior.initialize(Lambda, tot, rng)
    one_d = {**state, "Lambda_tau2": state["Lambda_tau2"].reshape(1),
             "Lambda_xi": state["Lambda_xi"].reshape(1)}
    a = prior.update(Lambda, tot, state, np.random.default_rng(5))
    b = prior.update(Lambda, tot, one_d, np.random.default_rng(5))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].shape == b[name].shape  # back to the declared dims
    assert a["Lambda_tau2"].shape == () and prior.state_dims["Lambda_tau2"] == ()


# --------------------------------------------------------------------------------------
# The global scale's posterior: Gibbs against quadrature (normal means, one factor)
# --------------------------------------------------------------------------------------


def _quadrature_quantiles(y, n, tau_0, probs):
    """Quantiles of log10(tau) given y_j ~ N(lambda_j, 1/n), lambda_j ~ N(0, tau^2 phi_j^2),
    phi_j ~ C+(0, 1), tau ~ C+(0, tau_0): phi integrated out on a log grid."""
    grid = np.linspace(-3.5, 0.0, 141)  # log10 tau
    log_phi = np.linspace(-12.0, 12.0, 2401)
    phi = np.exp(log_phi)
    half_cauchy = 2 / (np.pi * (1 + phi**2)) * phi  # density of phi in log phi
    tau = 10.0**grid
    var = 1 / n + (tau[:, None] * phi[None, :]) ** 2
    dens = (np.exp(-0.5 * y[None, :, None] ** 2 / var[:, None, :])
            / np.sqrt(2 * np.pi * var[:, None, :]))
    lik = np.trapezoid(dens * half_cauchy, log_phi, axis=-1)  # (grid, t)
    log_post = np.log(lik).sum(axis=1) + np.log(tau / (1 + (tau / tau_0) ** 2))
    w = np.exp(log_post - log_post.max())
    return np.interp(probs, np.cumsum(w) / w.sum(), grid)


def test_global_scale_posterior_matches_quadrature():
    # One factor (c = 1) and tot_prec = 1: the loadings step is the normal-means
    # conditional lambda_j | y ~ N(n y_j / (n + P_j), 1 / (n + P_j)).
    n, t = 100, 40
    rng = np.random.default_rng(0)
    truth = np.zeros(t)
    truth[:5] = rng.choice([-1, 1], 5) * rng.uniform(0.5, 1.0, 5)
    y = truth + rng.standard_normal(t) / np.sqrt(n)
    prior = HorseshoePrior(delta_iterations_factor=1).for_data(n)
    probs = [0.25, 0.5, 0.75]
    expected = _quadrature_quantiles(y, n, prior.tau_0, probs)
    tot = np.ones(t)
    state = prior.initialize(y[None, :].copy(), tot, rng)
    draws = []
    for _ in range(20000):
        P = prior.precision(state)[0]
        Lambda = (n * y / (n + P) + rng.standard_normal(t) / np.sqrt(n + P))[None, :]
        state = prior.update(Lambda, tot, state, rng)
        draws.append(_scalar(state["Lambda_tau2"]))
    log_tau = 0.5 * np.log10(np.array(draws[2000:]))
    # posterior sd of log10(tau) ~ 0.21 and ESS ~ 400 over 18000 draws (measured on 4
    # seeds: 380-570), so a quartile's Monte Carlo sd is ~ 1.3 * 0.21 / 20 ~ 0.014; 0.06 is
    # ~ 4 sd, and larger than the quadrature grid step (0.025).  Measured error <= 0.03.
    np.testing.assert_allclose(np.quantile(log_tau, probs), expected, atol=0.06)


# --------------------------------------------------------------------------------------
# Prior draws; the update leaves the prior invariant; initial delta (METHOD.md Q1)
# --------------------------------------------------------------------------------------


def test_prior_draws_have_the_prior_moments():
    prior = HorseshoePrior(prop_0=0.25, delta=GammaPrior(3.0, 2.0)).for_data(40)
    rng = np.random.default_rng(2)
    tot = np.array([0.5, 2.0, 4.0])
    m = 4000
    draws = [prior.sample_prior(3, tot, rng) for _ in range(m)]
    tau = np.sqrt([_scalar(st["Lambda_tau2"]) for _, st in draws])
    inv_delta = np.array([1 / st["delta"][1:] for _, st in draws])
    phi = np.sqrt(np.array([st["Lambda_phi2"][1, 2] for _, st in draws]))
    z = np.array([L * np.sqrt(tot * prior.precision(st)) for L, st in draws])
    assert all(st["delta"][0] == 1.0 for _, st in draws)
    # half-Cauchy medians are their scales: proportions 0.5 +- 4 sd (sd = sqrt(.25/4000))
    assert abs(np.mean(tau < prior.tau_0) - 0.5) < 4 * math.sqrt(0.25 / m)
    assert abs(np.mean(phi < 1.0) - 0.5) < 4 * math.sqrt(0.25 / m)
    # 1/delta ~ Gamma(3, rate 2): mean 1.5, sd sqrt(3)/2 -> standard error 0.0137
    np.testing.assert_allclose(inv_delta.mean(axis=0), 1.5, atol=4 * math.sqrt(3) / 2 / 60)
    # standardised loadings are N(0, 1): mean +- 4 / sqrt(36000), variance +- 4 sqrt(2/36000)
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / z.size)
    # Lambda_m_eff is the documented function of the scales
    _, st = draws[0]
    np.testing.assert_allclose(
        st["Lambda_m_eff"], (1 - 1 / (1 + 40 / prior.precision(st))).sum(axis=1), rtol=1e-12)


def test_update_leaves_the_prior_invariant():
    # Successive-conditional check: from a prior draw, alternating state | Lambda (the
    # update) and Lambda | state (the prior's conditional) keeps (state, Lambda) ~ prior,
    # so after 5 rounds the scales still have the prior's marginals.  Each wrong
    # conditional tried (delta's shape off by t/2, tau2's by 1/2, phi2's or nu's rate
    # scaled) moved one of these statistics by 4.5-45 standard errors.
    prior = HorseshoePrior(delta=GammaPrior(3.0, 2.0), delta_iterations_factor=2).for_data(50)
    k, t, chains = 3, 4, 2000
    tot = np.array([0.5, 1.0, 2.0, 4.0])
    rng = np.random.default_rng(11)
    below_t0, below_1, inv_delta = [], [], []
    for _ in range(chains):
        Lambda, state = prior.sample_prior(k, tot, rng)
        for _ in range(5):
            state = prior.update(Lambda, tot, state, rng)
            Lambda = rng.standard_normal((k, t)) / np.sqrt(tot * prior.precision(state))
        below_t0.append(_scalar(state["Lambda_tau2"]) < prior.tau_0**2)
        below_1.append(state["Lambda_phi2"][2, 3] < 1.0)
        inv_delta.append(1 / state["delta"][1:])
    sd_prop = math.sqrt(0.25 / chains)  # 0.011
    assert abs(np.mean(below_t0) - 0.5) < 4 * sd_prop
    assert abs(np.mean(below_1) - 0.5) < 4 * sd_prop
    # E[1/delta] = 3/2, sd sqrt(3)/2: standard error 0.019
    np.testing.assert_allclose(np.mean(inv_delta, axis=0), 1.5,
                               atol=4 * math.sqrt(3) / 2 / math.sqrt(chains))


def _prior_gibbs_against_sample_prior(prior, k, tot, chains, rounds, rng):
    """Two samples of the same statistics: after ``rounds`` of the Gibbs sampler on the
    prior alone (the update, then the loadings from their conditional prior) started
    from ``sample_prior``, and from fresh ``sample_prior`` draws."""
    def stats(Lambda, state):
        return [math.log(_scalar(state["Lambda_tau2"])), math.log(_scalar(state["Lambda_xi"])),
                *np.log(state["delta"][1:]), math.log(state["Lambda_phi2"][k - 1, 0]),
                math.log(state["Lambda_nu"][0, -1]), Lambda[0, 0], Lambda[k - 1, -1],
                math.log(np.square(Lambda).sum())]

    gibbs, fresh = [], []
    for _ in range(chains):
        Lambda, state = prior.sample_prior(k, tot, rng)
        for _ in range(rounds):
            state = prior.update(Lambda, tot, state, rng)
            Lambda = rng.standard_normal(Lambda.shape) / np.sqrt(tot * prior.precision(state))
        gibbs.append(stats(Lambda, state))
        fresh.append(stats(*prior.sample_prior(k, tot, rng)))
    return np.array(gibbs), np.array(fresh)


def test_gibbs_on_the_prior_alone_keeps_sample_prior_s_distribution():
    # SBC's simulate-then-fit needs the update (at the default 100 sweeps of tau2, xi,
    # delta) and sample_prior to share one prior: a Gibbs sampler on the prior alone,
    # started from sample_prior, must keep every marginal of it.  Two-sample KS tests on
    # 9 statistics (global scales, deltas, local scales, loadings); each p-value is uniform
    # under the null, so the chance that one of 9 falls below 1e-3 is < 0.01 (measured
    # smallest: 0.057).  Wrong conditionals tried (tau2's shape off by 1/2, xi's rate with
    # 1/tau_0^2 halved, delta's shape off by t/2, phi2's 1/nu doubled) gave smallest
    # p-values of 3e-8, 6e-12, 2e-167 and 2e-45.
    from scipy import stats as sps

    prior = HorseshoePrior(prop_0=0.2).for_data(100)
    tot = np.array([0.5, 1.0, 2.0, 4.0, 1.5])
    gibbs, fresh = _prior_gibbs_against_sample_prior(prior, 3, tot, chains=1500, rounds=8,
                                                     rng=np.random.default_rng(21))
    p = [sps.ks_2samp(gibbs[:, i], fresh[:, i]).pvalue for i in range(gibbs.shape[1])]
    assert min(p) > 1e-3, np.round(p, 4)


@dataclass(frozen=True)
class _StartOnly(HorseshoePrior):
    """The horseshoe without its first update: exposes the starting draw of delta."""

    def update(self, Lambda, tot_prec, state, rng):
        return state


def test_initial_delta_uses_the_update_s_prior_not_r_s_inverted_rate():
    # R draws the start as 1/delta ~ Gamma(shape, rate = 1/scale) but updates with
    # delta ~ IG(shape, scale) (METHOD.md Q1).  Here both are 1/delta ~ Gamma(3, rate 2):
    # mean 1.5 (R's start would give 6).
    prior = _StartOnly(delta=GammaPrior(3.0, 2.0)).for_data(10)
    rng = np.random.default_rng(4)
    inv = np.array([1 / prior.initialize(np.zeros((2, 3)), np.ones(3), rng)["delta"][1]
                    for _ in range(3000)])
    assert abs(inv.mean() - 1.5) < 4 * (math.sqrt(3) / 2) / math.sqrt(3000)  # 4 se = 0.063
    start = prior.initialize(np.zeros((2, 3)), np.ones(3), rng)
    assert start["delta"][0] == 1.0 and _scalar(start["Lambda_tau2"]) == 1.0


# --------------------------------------------------------------------------------------
# Recovery of sparse loadings, next to ARD
# --------------------------------------------------------------------------------------


def _sparse_simulation(n=200, t=24, seed=0):
    """3 factors, each loading on 5 traits of its own (|lambda| in [0.6, 1]); 9 traits
    load on none.  Residual variance 0.3, genetic share of the factors 0.7, 0.5, 0.3."""
    base = datasets.simulate_factor_data(n=n, t=t, k_true=0, seed=seed)
    rng = np.random.default_rng(seed + 100)
    w, V = np.linalg.eigh(base.K.to_numpy())
    K_sqrt = V * np.sqrt(np.clip(w, 0, None))
    lam = np.zeros((3, t))
    for i in range(3):
        lam[i, 5 * i:5 * i + 5] = rng.choice([-1, 1], 5) * rng.uniform(0.6, 1.0, 5)
    f_h2 = np.array([0.7, 0.5, 0.3])
    F = (K_sqrt @ rng.standard_normal((n, 3)) * np.sqrt(f_h2)
         + rng.standard_normal((n, 3)) * np.sqrt(1 - f_h2))
    r_h2, rv = rng.uniform(0.1, 0.5, t), 0.3
    E = (K_sqrt @ rng.standard_normal((n, t)) * np.sqrt(r_h2 * rv)
         + rng.standard_normal((n, t)) * np.sqrt((1 - r_h2) * rv))
    G = lam.T @ (f_h2[:, None] * lam) + np.diag(r_h2 * rv)
    Y = pd.DataFrame(F @ lam + E, index=base.Y.index, columns=base.Y.columns)
    return base, Y, lam, G


def _fit(base, Y, prior, track=None):
    m = MegaLMM(Y, base.formula, data=base.data, relmat={"ID": base.K}, n_factors=6,
                h2_divisions=10, burn=0, thin=2, seed=2, verbose=False,
                priors=Priors(Lambda_prior=prior))
    m.burn_in(rounds=2, iterations=150, progress=False)
    for _ in range(20):
        m.sample(20, progress=False)
        if track is not None:
            track(m)
    return m


def _g_correlation(m, G):
    G_hat = m.posterior["G"].isel(component=0).mean(("chain", "draw")).values
    upper = np.triu_indices_from(G)
    return float(np.corrcoef(G_hat[upper], G[upper])[0, 1])


def test_horseshoe_recovers_sparse_loadings_like_ard():
    base, Y, lam, G = _sparse_simulation()
    kept = []  # per-loading 1 - kappa, from the state every 20 iterations

    def track(m):
        prior, state = m.data.priors.Lambda_prior, m.states[0]
        kept.append(1 - 1 / (1 + m.data.n / prior.precision(state.lambda_prior)))

    hs = _fit(base, Y, HorseshoePrior(), track)
    ard = _fit(base, Y, ARDPrior())
    cor_hs, cor_ard = _g_correlation(hs, G), _g_correlation(ard, G)
    # n = 200 lines: ARD's posterior-mean G correlates 0.91-0.99 with the truth on 5
    # simulation seeds, the horseshoe's 0.91-0.99 (0.925 and 0.912 on this one); 0.85
    # leaves room for Monte Carlo error of 200 draws, and the two must be comparable.
    assert cor_hs > 0.85, cor_hs
    assert cor_hs > cor_ard - 0.05, (cor_hs, cor_ard)

    # Each true factor is carried by one model factor (the one with the largest loadings
    # on its traits); no two true factors share one.
    L = np.abs(hs.posterior["Lambda"].mean(("chain", "draw")).values)
    support = [np.arange(5 * i, 5 * i + 5) for i in range(3)]
    match = [int(np.argmax(L[:, S].sum(axis=1))) for S in support]
    assert len(set(match)) == 3, match
    shrink = np.mean(kept, axis=0)  # posterior mean of 1 - kappa_kj
    m_eff = hs.posterior["Lambda_m_eff"].mean(("chain", "draw")).values
    for k, S in zip(match, support, strict=True):
        null = np.setdiff1d(np.arange(24), S)
        # True loadings have z^2 = n tau_j lambda^2 ~ 200 * 3 * 0.6^2 >> 1: unshrunk, so
        # they count ~ 1 each (0.96-0.99 in a normal-means check): their part of m_eff
        # is the true count, 5, to within 0.5.
        assert shrink[k, S].sum() > 4.5, shrink[k, S]
        # A null loading still counts E[1 - kappa] = E[x / (1 + x)], x = a / Exp(1) with
        # a ~ n b + n tau2 c / nu ~ 0.5 under the phi2 conditional: ~ 0.46 for a = 0.5
        # (0.22 measured in the normal-means check above).  So m_eff = 5 + 19 * (at most
        # ~ 0.6), a count of the true loadings plus a tail of partly shrunk nulls.
        assert shrink[k, null].mean() < 0.6, shrink[k, null]
        assert 4.5 < m_eff[k] < 5 + 0.6 * 19, m_eff


# --------------------------------------------------------------------------------------
# reorder_factors by Lambda_m_eff
# --------------------------------------------------------------------------------------


def _small(prior: LambdaPrior | None = None, **kw) -> MegaLMM:
    sim = datasets.simulate_factor_data(n=60, t=6, k_true=2, n_markers=300, missing=0.1,
                                        seed=3)
    kw = {"n_factors": 4, "h2_divisions": 8, "burn": 0, "thin": 1, "seed": 4,
          "verbose": False, **kw}
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                   priors=Priors(Lambda_prior=prior or HorseshoePrior()), **kw)


def test_reorder_sorts_by_m_eff_and_zeroes_dropped_factors():
    m = _small()
    m.sample(30, progress=False)
    s, d = m.states[0], m.data
    prior = d.priors.Lambda_prior
    s.lambda_prior["Lambda_m_eff"] = np.array([2.0, 5.0, 1.0, 4.0])
    # factor 3 becomes a near-copy of factor 1: dropped, so its m_eff is zeroed (as R)
    s.QtF[:, 3] = 2.0 * s.QtF[:, 1] + 1e-6 * s.QtF[:, 0]
    before = {"Lambda": s.Lambda.copy(), "phi2": s.Lambda_phi2.copy(), "F_h2": s.F_h2_index.copy()}
    seen = {}

    def spy(Lambda, tot_prec, state, rng):  # the state refresh receives
        seen.update(state)
        return state

    object.__setattr__(prior, "refresh", spy)
    try:
        with sampling_threads():
            order = reorder_factors(s, d, drop_cor_threshold=0.6)
    finally:
        object.__delattr__(prior, "refresh")
    np.testing.assert_array_equal(order, [1, 0, 2, 3])  # m_eff (2, 5, 1, 0): 3 dropped
    np.testing.assert_array_equal(s.Lambda, before["Lambda"][order])
    np.testing.assert_array_equal(s.F_h2_index, before["F_h2"][order])
    np.testing.assert_array_equal(seen["Lambda_m_eff"], [5.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(seen["Lambda_phi2"], before["phi2"][order])
    assert np.all(d.factor_re.unrotate(s.QtF)[:, 3] == 0.0)
    # delta belongs to the positions: not permuted
    np.testing.assert_array_equal(seen["delta"], s.lambda_prior["delta"])


def test_permute_moves_local_scales_not_positions():
    prior = HorseshoePrior().for_data(10)
    state = prior.initialize(np.arange(6.0).reshape(3, 2), np.ones(2), np.random.default_rng(0))
    out = prior.permute(state, np.array([2, 0, 1]))
    for name in ("Lambda_phi2", "Lambda_nu", "Lambda_m_eff"):
        np.testing.assert_array_equal(out[name], state[name][[2, 0, 1]])
    for name in ("delta", "Lambda_tau2", "Lambda_xi"):
        np.testing.assert_array_equal(out[name], state[name])
        assert out[name] is not state[name]
    assert out["Lambda_phi2"].flags.f_contiguous


# --------------------------------------------------------------------------------------
# Through MegaLMM: samples, records, reorders, saves and resumes
# --------------------------------------------------------------------------------------


def test_model_records_reorders_and_saves_the_prior_state(tmp_path):
    m = _small(thin=2)
    assert m.priors.Lambda_prior.n_rows is None  # the user's prior is left as given
    assert m.data.priors.Lambda_prior.n_rows == m.data.n == 60
    m.burn_in(rounds=1, iterations=10, progress=False)
    m.sample(20, progress=False)
    post = m.posterior
    for name in ("delta", "Lambda_m_eff"):
        assert post[name].dims == ("chain", "draw", "factor")
        assert post[name].attrs["description"] == HorseshoePrior.recorded[name]
    assert post.sizes["draw"] == 10
    assert "horseshoe" in post["delta"].attrs["description"]
    assert np.all(post["delta"].sel(factor="F1").values == 1.0)
    assert np.all((post["Lambda_m_eff"].values >= 0) & (post["Lambda_m_eff"].values <= 6))
    state = m.states[0]
    assert set(state.lambda_prior) == set(HorseshoePrior.state_dims)
    # the state (0-d scalars included) is saved with the chain and read back exactly
    state.save(tmp_path / "state.npz")
    back = ChainState.load(tmp_path / "state.npz")
    for name, value in state.lambda_prior.items():
        np.testing.assert_array_equal(np.reshape(back.lambda_prior[name], value.shape), value)


def test_data_size_hook_leaves_ard_untouched():
    # LambdaPrior.for_data defaults to the prior itself: with ARD the model's data hold
    # the user's Priors object unchanged (the golden draws check the rest)
    ard = ARDPrior()
    assert ard.for_data(60) is ard and LambdaPrior.for_data(ard, 60) is ard
    m = _small(ARDPrior())
    assert m.data.priors is m.priors
    hs = HorseshoePrior()
    assert hs.for_data(7).for_data(7).n_rows == 7  # idempotent


def test_resume_continues_a_horseshoe_run_exactly(tmp_path):
    def model(run_dir, **kw):
        return _small(chains=2, run_dir=run_dir, burn=4, thin=2, **kw)

    whole = model(tmp_path / "whole", processes=1)  # chains in turn here; the run in workers
    whole.burn_in(rounds=1, iterations=6, progress=False)  # a reorder by m_eff
    whole.sample(30, progress=False)
    whole.save_posterior_chunk()

    m = model(tmp_path / "run")
    m.burn_in(rounds=1, iterations=6, progress=False)
    m.sample(12, progress=False)
    m.save_posterior_chunk()
    m.sample(5, progress=False)  # lost: never saved
    del m
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert isinstance(again.priors.Lambda_prior, HorseshoePrior)
    again.sample(18, progress=False)
    again.save_posterior_chunk()
    saved = again.load_posterior(lazy=False)
    xr.testing.assert_identical(saved, whole.load_posterior(lazy=False))
    assert "Lambda_m_eff" in saved and "delta" in saved
    np.testing.assert_array_equal(again.states[1].Lambda_m_eff, whole.states[1].Lambda_m_eff)


# --------------------------------------------------------------------------------------
# The documented example runs; bad inputs are refused, naming the argument
# --------------------------------------------------------------------------------------


def test_documented_horseshoe_example_runs(capsys):
    text = (ROOT / "docs" / "priors.md").read_text()
    match = re.search(r"<!-- example: horseshoe -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the horseshoe example is missing from docs/priors.md"
    namespace: dict = {"__name__": "docs_priors_example"}
    exec(compile(match.group(1), "docs/priors.md", "exec", dont_inherit=True), namespace)
    m = namespace["m"]
    assert isinstance(m.priors.Lambda_prior, HorseshoePrior)
    assert "Lambda_m_eff" in m.posterior
    assert "F1" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"prop_0": 0.0}, ValueError, r"prop_0 must be > 0"),
    ({"prop_0": 1.0}, ValueError, r"prop_0 must be < 1"),
    ({"prop_0": -0.2}, ValueError, r"prop_0 must be > 0"),
    ({"prop_0": float("nan")}, ValueError, r"prop_0 must be a finite number"),
    ({"prop_0": "0.1"}, TypeError, r"prop_0 must be a number"),
    ({"delta": {"shape": 0.0, "rate": 1.0}}, ValueError, r"delta: shape must be > 0"),
    ({"delta": {"shape": 3.0, "rate": -1.0}}, ValueError, r"delta: rate must be > 0"),
    ({"delta": {"shape": 3.0, "scale": 1.0}}, ValueError, r"delta must have exactly the keys"),
    ({"delta": 3.0}, TypeError, r"delta must be a GammaPrior"),
    ({"delta_iterations_factor": 0}, ValueError, r"delta_iterations_factor must be >= 1"),
    ({"delta_iterations_factor": 2.5}, ValueError, r"delta_iterations_factor must be a whole"),
])
def test_bad_arguments_name_themselves(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        HorseshoePrior(**kwargs)


def test_other_misuse_is_explained():
    with pytest.raises(ValueError, match="shape must be > 0"):
        HorseshoePrior(delta=GammaPrior(shape=-1.0, rate=1.0))
    with pytest.raises(TypeError, match=r"an instance, e.g. HorseshoePrior\(\)"):
        Priors(Lambda_prior=HorseshoePrior)
    with pytest.raises(ValueError, match="n_rows must be >= 1"):
        HorseshoePrior().for_data(0)
    unbound = HorseshoePrior()
    with pytest.raises(ValueError, match=r"for_data\(n_rows\)"):
        unbound.initialize(np.zeros((2, 3)), np.ones(3), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"for_data\(n_rows\)"):
        unbound.sample_prior(2, np.ones(3), np.random.default_rng(0))
    # defaults are R's nominal ones; dicts work like R's lists; binding keeps the repr
    p = HorseshoePrior(delta={"shape": 3, "rate": 1})
    assert (p.prop_0, p.delta, p.delta_iterations_factor) == (0.1, GammaPrior(3.0, 1.0), 100)
    assert p == HorseshoePrior() and repr(p.for_data(5)) == repr(p)
    assert p.for_data(5).tau_0 == pytest.approx(0.1 / 0.9 / math.sqrt(5))
