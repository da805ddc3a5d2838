"""The BayesC (spike-and-slab) loadings prior and its own loadings step.

The single-site draw against a slow NumPy reference on the same random numbers; the
prior's update against its conditionals; ARD and the horseshoe never reach the hook;
draws do not depend on the number of threads; recovery of a sparse-loadings
simulation next to ARD, with inclusion probabilities that separate true zeros from
non-zeros; save and resume; bad inputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.special import expit
from test_horseshoe import _fit, _g_correlation, _sparse_simulation

from pymegalmm import Control, MegaLMM, Priors, datasets
from pymegalmm.core.state import ChainState
from pymegalmm.priors import (
    ARDPrior,
    BayesCPrior,
    BetaPrior,
    GammaPrior,
    HorseshoePrior,
    LambdaPrior,
    LoadingsRegression,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# The loadings step against a slow reference, on the same random numbers
# --------------------------------------------------------------------------------------


def _regression(k=4, b=2, c=5, n=40, seed=0, drop=True):
    """Whitened regressions of ``c`` traits, two weightings (grid points), raw arrays kept."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k + b))
    X[:, k] = 1.0  # an intercept
    y = X[:, :k] @ (rng.standard_normal((k, c)) * (rng.random((k, c)) < 0.5)) \
        + rng.standard_normal((n, c))
    W = rng.uniform(0.5, 2.0, (2, n))  # diagonal V(h)^-1 at two grid points
    gram_index = np.array([0, 1, 0, 1, 1][:c])
    gram = np.stack([X.T @ (w[:, None] * X) for w in W])
    XtWy = np.asfortranarray(np.stack([X.T @ (W[g] * y[:, j])
                                       for j, g in enumerate(gram_index)], axis=1))
    yWy = np.array([y[:, j] @ (W[g] * y[:, j]) for j, g in enumerate(gram_index)])
    coef = np.asfortranarray(rng.standard_normal((k + b, c)))
    coef[1, 2] = 0.0  # an excluded loading to start from
    drop_flat = np.zeros((c, b), dtype=np.uint8)
    if drop:
        drop_flat[3, 1] = 1  # the second fixed effect is not identified for trait 3
    reg = LoadingsRegression(gram=gram, gram_index=gram_index, XtWy=XtWy, yWy=yWy, n_pen=k,
                             n_rows=n, coef=coef, tau=rng.uniform(0.5, 3.0, c),
                             tau_shape=2.0, tau_rate=1.5,
                             drop_flat=drop_flat if drop else None)
    state = {"Lambda_pi": np.array([0.9, 0.5, 0.2, 0.05])[:k],
             "Lambda_sigma2": np.array([1.0, 0.5, 2.0, 0.3])[:k]}
    return reg, state, (X, y, W)


def _reference_step(reg, state, raw, rng):
    """Trait by trait, site by site, residuals recomputed from the raw whitened data."""
    X, y, W = raw
    k = reg.n_pen
    p, c = reg.XtWy.shape
    b = p - k
    u, z = rng.random((k, c)), rng.standard_normal((k, c))
    z_b = rng.standard_normal((b, c))
    coef = np.array(reg.coef, dtype=float)
    ss = np.empty(c)
    m = np.zeros(c)
    for j in range(c):
        w, tau = W[reg.gram_index[j]], reg.tau[j]
        keep = np.ones(b, bool) if reg.drop_flat is None else reg.drop_flat[j] == 0
        coef[k:, j][~keep] = 0.0
        for l in range(k):
            others = np.delete(np.arange(p), l)
            resid = y[:, j] - X[:, others] @ coef[others, j]
            x = X[:, l]
            xx, xr = x @ (w * x), x @ (w * resid)
            s2, pi = state["Lambda_sigma2"][l], state["Lambda_pi"][l]
            # marginal likelihood ratio of "included" (lambda ~ N(0, s2 / tau)) to "zero"
            v_post = 1.0 / (tau * (xx + 1.0 / s2))
            log_bf = 0.5 * np.log(v_post / (s2 / tau)) + 0.5 * (tau * xr) ** 2 * v_post
            prob = expit(np.log(pi / (1 - pi)) + log_bf)
            if u[l, j] < prob:
                coef[l, j] = tau * xr * v_post + z[l, j] * np.sqrt(v_post)
            else:
                coef[l, j] = 0.0
        # B1 given the loadings: generalised least squares with precision tau X1' W X1
        X1 = X[:, k:][:, keep]
        resid = y[:, j] - X[:, :k] @ coef[:k, j]
        A = X1.T @ (w[:, None] * X1)
        L = np.linalg.cholesky(A)
        zj = z_b[keep, j]
        coef[k:, j][keep] = (np.linalg.solve(A, X1.T @ (w * resid))
                             + np.linalg.solve(L.T, zj) / np.sqrt(tau))
        e = y[:, j] - X @ coef[:, j]
        lam = coef[:k, j]
        m[j] = np.count_nonzero(lam)
        pen = np.sum(lam**2 / state["Lambda_sigma2"])
        ss[j] = e @ (w * e) + pen
    gam = rng.standard_gamma(reg.tau_shape + 0.5 * (reg.n_rows + m))
    return coef, gam / (reg.tau_rate + 0.5 * ss)


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_site_step_matches_the_slow_reference(seed, drop):
    reg, state, raw = _regression(seed=seed, drop=drop)
    coef, tau = BayesCPrior().sample_loadings(reg, state, np.random.default_rng(seed + 10))
    ref_coef, ref_tau = _reference_step(reg, state, raw, np.random.default_rng(seed + 10))
    np.testing.assert_array_equal(coef[:4] == 0.0, ref_coef[:4] == 0.0)  # same inclusions
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tau, ref_tau, rtol=1e-9)
    assert coef.flags.f_contiguous and tau.shape == (5,)
    if drop:
        assert coef[4 + 1, 3] == 0.0
    assert np.any(coef[:4] == 0.0) and np.any(coef[:4] != 0.0)  # both branches exercised
    np.testing.assert_array_equal(reg.coef[1, 2], 0.0)  # the input is not modified


def test_inclusion_frequency_matches_the_exact_posterior():
    # One loading, no fixed effect: over many draws from the same values, the share of
    # inclusions is the exact posterior probability (4 binomial standard errors)
    rng = np.random.default_rng(3)
    n_draw, xx, xy, tau, s2, pi = 20000, 3.0, 1.2, 2.0, 0.7, 0.3
    reg = LoadingsRegression(gram=np.array([[[xx]]]), gram_index=np.zeros(n_draw, np.intp),
                             XtWy=np.full((1, n_draw), xy, order="F"),
                             yWy=np.full(n_draw, 5.0), n_pen=1, n_rows=10,
                             coef=np.zeros((1, n_draw), order="F"), tau=np.full(n_draw, tau),
                             tau_shape=2.0, tau_rate=1.0)
    state = {"Lambda_pi": np.array([pi]), "Lambda_sigma2": np.array([s2])}
    coef, _ = BayesCPrior().sample_loadings(reg, state, rng)
    # p(y | in) / p(y | out) = N(xy; 0, xx/tau + xx^2 s2/tau) / N(xy; 0, xx/tau) in the
    # sufficient statistic xy ~ N(xx lambda, xx / tau)
    v0, v1 = xx / tau, xx / tau + xx**2 * s2 / tau
    bf = np.sqrt(v0 / v1) * np.exp(0.5 * xy**2 * (1 / v0 - 1 / v1))
    exact = pi * bf / (pi * bf + 1 - pi)
    share = np.mean(coef[0] != 0.0)
    assert abs(share - exact) < 4 * np.sqrt(exact * (1 - exact) / n_draw), (share, exact)
    included = coef[0][coef[0] != 0.0]
    post_mean = xy / (xx + 1 / s2)
    assert abs(included.mean() - post_mean) < 4 / np.sqrt(tau * (xx + 1 / s2) * included.size)


# --------------------------------------------------------------------------------------
# The prior's update
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("one_pi", [False, True])
def test_update_draws_pi_then_sigma2_from_their_conditionals(one_pi):
    prior = BayesCPrior(pi=BetaPrior(2, 3), slab=GammaPrior(2.5, 0.5), one_pi=one_pi)
    Lambda = np.array([[0.0, 1.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.2, 0.3]])
    tau = np.array([1.0, 2.0, 0.5, 3.0])
    out = prior.update(Lambda, tau, {}, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    m = np.array([2, 0, 4])
    pi = (np.full(3, rng.beta(2 + 6, 3 + 12 - 6)) if one_pi else rng.beta(2 + m, 3 + 4 - m))
    ss = 0.5 * (Lambda**2 * tau).sum(axis=1)
    sigma2 = (0.5 + ss) / rng.standard_gamma(2.5 + 0.5 * m)
    np.testing.assert_array_equal(out["Lambda_pi"], pi)
    np.testing.assert_array_equal(out["Lambda_sigma2"], sigma2)
    np.testing.assert_array_equal(out["Lambda_inclusion"], (Lambda != 0).astype(float))
    assert out["Lambda_inclusion"].flags.f_contiguous
    # a fixed pi is never drawn
    fixed = BayesCPrior(pi=0.25).update(Lambda, tau, {}, np.random.default_rng(5))
    np.testing.assert_array_equal(fixed["Lambda_pi"], 0.25)


def test_prior_draws_match_the_prior():
    prior = BayesCPrior(pi=BetaPrior(1, 3), slab=GammaPrior(3, 2))
    rng = np.random.default_rng(0)
    draws = [prior.sample_prior(2, np.array([1.0, 4.0]), rng) for _ in range(4000)]
    inc = np.array([s["Lambda_inclusion"] for _, s in draws])
    lam = np.array([L for L, _ in draws])
    assert abs(inc.mean() - 0.25) < 0.02  # E[pi] = 1/4; sd of the mean ~ 0.005
    np.testing.assert_array_equal(lam != 0, inc == 1)
    # E[lambda^2 | in] = E[sigma2] / tau = (rate / (shape - 1)) / tau = 1 / tau
    for j, t in enumerate([1.0, 4.0]):
        sq = lam[:, :, j][inc[:, :, j] == 1] ** 2
        assert abs(sq.mean() * t - 1.0) < 0.25, sq.mean() * t
    pi1 = np.array([s["Lambda_pi"] for _, s in
                    (BayesCPrior(one_pi=True).sample_prior(3, np.ones(2), rng)
                     for _ in range(5))])
    assert np.all(pi1 == pi1[:, :1])


def test_other_priors_keep_the_standard_step():
    # the hook is taken only when a prior overrides it: ARD's and the horseshoe's
    # draws stay those of the Gaussian step (tests/test_golden.py checks them bit for bit)
    assert not ARDPrior().has_loadings_sampler
    assert not HorseshoePrior().has_loadings_sampler
    assert BayesCPrior().has_loadings_sampler
    reg, state, _ = _regression()
    assert LambdaPrior.sample_loadings(ARDPrior(), reg, state, np.random.default_rng(0)) is None


# --------------------------------------------------------------------------------------
# Through MegaLMM
# --------------------------------------------------------------------------------------


def _small(prior: LambdaPrior | None = None, **kw) -> MegaLMM:
    sim = datasets.simulate_factor_data(n=60, t=6, k_true=2, n_markers=300, missing=0.1,
                                        seed=3)
    kw = {"n_factors": 4, "h2_divisions": 8, "burn": 0, "thin": 1, "seed": 4,
          "verbose": False, **kw}
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                   priors=Priors(Lambda_prior=prior or BayesCPrior()), **kw)


def test_draws_do_not_depend_on_the_number_of_threads():
    runs = []
    for threads in (1, 2):
        m = _small(control=Control(n_threads=threads))
        m.burn_in(rounds=1, iterations=5, progress=False)
        m.sample(10, progress=False)
        runs.append(m)
    xr.testing.assert_identical(runs[0].posterior, runs[1].posterior)


def test_model_records_the_inclusions_and_saves_the_state(tmp_path):
    m = _small(thin=2)
    m.burn_in(rounds=1, iterations=10, progress=False)  # reorder: state permuted, refreshed
    m.sample(20, progress=False)
    post = m.posterior
    assert post["Lambda_inclusion"].dims == ("chain", "draw", "factor", "trait")
    assert post["Lambda_pi"].dims == ("chain", "draw", "factor")
    for name in ("Lambda_pi", "Lambda_inclusion"):
        assert post[name].attrs["description"] == BayesCPrior.recorded[name]
    # the indicators are those of the recorded loadings
    np.testing.assert_array_equal(post["Lambda_inclusion"].values == 1,
                                  post["Lambda"].transpose(*post["Lambda_inclusion"].dims)
                                  .values != 0)
    assert 0 < post["Lambda_inclusion"].values.mean() < 1  # some loadings are exactly zero
    state = m.states[0]
    assert set(state.lambda_prior) == set(BayesCPrior.state_dims)
    state.save(tmp_path / "state.npz")
    back = ChainState.load(tmp_path / "state.npz")
    for name, value in state.lambda_prior.items():
        np.testing.assert_array_equal(back.lambda_prior[name], value)


def test_one_pi_and_fixed_pi_run():
    for prior in (BayesCPrior(one_pi=True), BayesCPrior(pi=0.3)):
        m = _small(prior)
        m.sample(6, progress=False)
        pi = m.posterior["Lambda_pi"].values
        assert np.all(pi == pi[..., :1])
    assert np.all(pi == 0.3)


def test_resume_continues_a_bayesc_run_exactly(tmp_path):
    def model(run_dir, **kw):
        return _small(chains=2, run_dir=run_dir, burn=4, thin=2, **kw)

    whole = model(tmp_path / "whole", processes=1)
    whole.burn_in(rounds=1, iterations=6, progress=False)
    whole.sample(30, progress=False)
    whole.save_posterior_chunk()

    m = model(tmp_path / "run")
    m.burn_in(rounds=1, iterations=6, progress=False)
    m.sample(12, progress=False)
    m.save_posterior_chunk()
    m.sample(5, progress=False)  # lost: never saved
    del m
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert again.priors.Lambda_prior == BayesCPrior()
    again.sample(18, progress=False)
    again.save_posterior_chunk()
    saved = again.load_posterior(lazy=False)
    xr.testing.assert_identical(saved, whole.load_posterior(lazy=False))
    assert "Lambda_inclusion" in saved and "Lambda_pi" in saved


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count one half)."""
    pos, neg = score[positive], score[~positive]
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_bayesc_recovers_sparse_loadings_like_ard():
    base, Y, lam, G = _sparse_simulation()
    bc = _fit(base, Y, BayesCPrior())
    ard = _fit(base, Y, ARDPrior())
    cor_bc, cor_ard = _g_correlation(bc, G), _g_correlation(ard, G)
    # The same simulation as tests/test_horseshoe.py: ARD's posterior-mean G correlates
    # 0.91-0.99 with the truth on seeds 0-3 (0.912 on this one), BayesC's 0.885-0.979
    # (0.931 on this one, at most 0.022 below ARD's).  0.85 leaves room for the Monte
    # Carlo error of 200 draws.
    assert cor_bc > 0.85, cor_bc
    assert cor_bc > cor_ard - 0.05, (cor_bc, cor_ard)
    incl = bc.posterior["Lambda_inclusion"].mean(("chain", "draw")).values  # (factor, trait)
    loads = np.zeros(24, bool)
    loads[:15] = True  # traits 0-14 load on a true factor, 15-23 on none
    # True loadings (|lambda| >= 0.6 on traits of residual variance 0.3, n = 200) have
    # z-scores of about 0.6 * sqrt(200 / 0.3) ~ 15: included in (nearly) every draw; a
    # null loading's Bayes factor is about (1 + n sigma2)^-1/2 ~ 0.07 times exp(z^2 / 2),
    # z ~ N(0, 1): included in a few per cent of draws (at most 0.52 measured on 4 seeds).
    # (1) Whether a trait loads on any factor is identified whatever the rotation: the
    # largest inclusion probability of each trait ranks the 15 loading traits above the
    # 9 others (AUC 1.0 measured on seeds 0-3).
    assert _auc(incl.max(axis=0), loads) > 0.9, incl.max(axis=0).round(2)
    # (2) Per factor: the single-site sampler often settles on a dense rotation of two
    # true factors (two model factors loading on the same 10 traits, 3 of 4 seeds), a
    # mode it does not leave (a sparse rotation needs coordinated moves); the factor
    # carrying the third true factor alone has AUC 1.0 on every seed.  So at least one true
    # factor is carried by one model factor whose inclusion probabilities separate its 5
    # traits from the 19 others.
    L = np.abs(bc.posterior["Lambda"].mean(("chain", "draw")).values)
    aucs = []
    for i in range(3):
        S = np.arange(5 * i, 5 * i + 5)
        k = int(np.argmax(L[:, S].sum(axis=1)))
        truth = np.zeros(24, bool)
        truth[S] = True
        assert incl[k, S].min() > 0.9, incl[k, S]  # true loadings always included
        aucs.append(_auc(incl[k], truth))
    assert max(aucs) > 0.9, aucs


# --------------------------------------------------------------------------------------
# The documented example runs; bad inputs are refused, naming the argument
# --------------------------------------------------------------------------------------


def test_documented_bayesc_example_runs(capsys):
    text = (ROOT / "docs" / "priors.md").read_text()
    match = re.search(r"<!-- example: bayesc -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the BayesC example is missing from docs/priors.md"
    namespace: dict = {"__name__": "docs_priors_example"}
    exec(compile(match.group(1), "docs/priors.md", "exec", dont_inherit=True), namespace)
    m = namespace["m"]
    assert isinstance(m.priors.Lambda_prior, BayesCPrior)
    assert "Lambda_inclusion" in m.posterior
    assert "F1" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"pi": 0.0}, ValueError, r"pi must be > 0"),
    ({"pi": 1.0}, ValueError, r"pi must be < 1"),
    ({"pi": float("nan")}, ValueError, r"pi must be a finite number"),
    ({"pi": "0.1"}, TypeError, r"pi must be a BetaPrior"),
    ({"pi": True}, TypeError, r"pi must be a BetaPrior"),
    ({"pi": {"a": 1.0}}, ValueError, r"pi must have exactly the keys"),
    ({"pi": {"a": -1.0, "b": 1.0}}, ValueError, r"pi: a must be > 0"),
    ({"slab": {"shape": 0.0, "rate": 1.0}}, ValueError, r"slab: shape must be > 0"),
    ({"slab": {"shape": 2.0, "scale": 1.0}}, ValueError, r"slab must have exactly the keys"),
    ({"slab": 2.0}, TypeError, r"slab must be a GammaPrior"),
    ({"one_pi": 1}, TypeError, r"one_pi must be True or False"),
    ({"one_pi": "yes"}, TypeError, r"one_pi must be True or False"),
])
def test_bad_arguments_name_themselves(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        BayesCPrior(**kwargs)


def test_defaults_and_dicts():
    p = BayesCPrior(pi={"a": 1, "b": 1}, slab={"shape": 2, "rate": 1})
    assert p == BayesCPrior() and (p.pi, p.slab, p.one_pi) == (BetaPrior(1.0, 1.0),
                                                                GammaPrior(2.0, 1.0), False)
    with pytest.raises(ValueError, match="b must be > 0"):
        BetaPrior(1.0, 0.0)
    with pytest.raises(TypeError, match=r"an instance, e.g. BayesCPrior\(\)"):
        Priors(Lambda_prior=BayesCPrior)
