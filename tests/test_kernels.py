"""Kernels of :mod:`pymegalmm._kernels` against the NumPy references in ``reference.py``.

Every kernel is run on the same pre-drawn random numbers as its slow reference
and must agree to ``rtol=1e-10, atol=1e-12`` over several shapes, including edge
cases (one trait, one coefficient, no flat / no penalised columns, ``-inf`` grid
priors, ``h = 0``, more random-effect components than rows, truncated deltas).
Statistical checks, independent of the Cholesky convention shared by kernel and
reference, verify the draws' distributions; the thread tests check that results
are bit-identical for 1 and 2 OpenMP threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from reference import (
    chol_upper,
    ref_grid_probabilities,
    ref_sample_ard,
    ref_sample_ard_delta,
    ref_sample_coefficients,
    ref_sample_diagonal_effects,
    ref_sample_factor_scores,
    ref_sample_grid_index,
    ref_schur_complement,
    ref_weighted_cross_products,
)
from scipy.special import gammainc

from pymegalmm import _kernels as K
from pymegalmm import sampler
from pymegalmm.priors import ARDPrior, GammaPrior, Priors

RTOL, ATOL = 1e-10, 1e-12


def assert_close(actual, desired, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


@pytest.fixture
def restore_threads():
    """Restore the kernels' OpenMP thread count after a test that changes it."""
    before = K.openmp_max_threads()
    yield
    K.set_num_threads(before)


# ---------------------------------------------------------------------------
# Problem generators
# ---------------------------------------------------------------------------


def make_weights(rng, G, n):
    """``(G, n)`` whitening weights ``1 / (h_g d_i + 1 - h_g)``, C-ordered."""
    h = np.linspace(0.0, 0.95, G)
    d = rng.gamma(1.0, 2.0, size=n)
    return np.ascontiguousarray(1.0 / (h[:, None] * d[None, :] + 1.0 - h[:, None]))


def make_coef_problem(rng, n, p, p_pen, t, n_groups):
    """Random inputs of ``sample_coefficients`` (well conditioned), as a dict."""
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    W = make_weights(rng, n_groups, n)
    gram = np.ascontiguousarray(np.stack([X.T @ (W[g][:, None] * X) for g in range(n_groups)]))
    gram_index = rng.integers(0, n_groups, size=t).astype(np.intp)
    Y = np.asfortranarray(X @ rng.standard_normal((p, t)) + rng.standard_normal((n, t)))
    XtWy, yWy = ref_weighted_cross_products(X, Y, W, gram_index)
    return dict(
        gram=gram,
        gram_index=gram_index,
        XtWy=np.asfortranarray(XtWy),
        yWy=np.ascontiguousarray(yWy),
        prior_prec=np.asfortranarray(rng.gamma(2.0, 1.0, size=(p_pen, t))),
        tau_old=rng.gamma(4.0, 0.5, size=t),
        tau_rate=np.full(t, 2.5) + rng.random(t),
        gamma_draw=rng.standard_gamma(4.0 + 0.5 * n, size=t),
        z=np.asfortranarray(rng.standard_normal((p, t))),
    )


def run_coef_kernel(prob):
    p, t = prob["XtWy"].shape
    coef = np.full((p, t), np.nan, order="F")
    tau = np.full(t, np.nan)
    n_bad = K.sample_coefficients(
        prob["gram"], prob["gram_index"], prob["XtWy"], prob["yWy"], prob["prior_prec"],
        prob["tau_old"], prob["tau_rate"], prob["gamma_draw"], prob["z"], coef, tau,
    )
    return coef, tau, n_bad


def run_coef_reference(prob):
    return ref_sample_coefficients(
        prob["gram"], prob["gram_index"], prob["XtWy"], prob["yWy"], prob["prior_prec"],
        prob["tau_old"], prob["tau_rate"], prob["gamma_draw"], prob["z"],
    )


# ---------------------------------------------------------------------------
# weighted_cross_products
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, p, t, G",
    [(20, 4, 7, 3), (1, 1, 1, 1), (15, 1, 9, 2), (3, 6, 5, 4), (50, 10, 33, 5), (8, 3, 1, 6)],
)
def test_weighted_cross_products(n, p, t, G):
    rng = np.random.default_rng(100 + n + 7 * p + 13 * t + G)
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    Y = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    gi = rng.integers(0, G, size=t).astype(np.intp)
    XtWy = np.full((p, t), np.nan, order="F")
    yWy = np.full(t, np.nan)
    K.weighted_cross_products(X, Y, W, gi, XtWy, yWy)
    ref_XtWy, ref_yWy = ref_weighted_cross_products(X, Y, W, gi)
    assert_close(XtWy, ref_XtWy)
    assert_close(yWy, ref_yWy)


def test_empty_coefficient_and_grid_dimensions():
    """``p = 0`` coefficients and ``G = 0`` grid points: nothing to accumulate.

    The kernels used to take the address of ``X[i, 0]`` / ``W_T[i, 0]`` even then:
    never read in the normal build, but an ``IndexError`` in the bounds-checked debug
    build (``PYMEGALMM_DEBUG_BUILD=1``, ``tools/sanitize.sh``), as ``gram[g, 0, 0]`` was
    in ``sample_coefficients`` (``test_sample_coefficients_no_coefficients``).
    """
    rng = np.random.default_rng(5)
    n, t, G = 6, 4, 3
    X = np.zeros((n, 0))
    Y = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    gi = rng.integers(0, G, size=t).astype(np.intp)
    yWy = np.full(t, np.nan)
    K.weighted_cross_products(X, Y, W, gi, np.zeros((0, t), order="F"), yWy)
    assert_close(yWy, ref_weighted_cross_products(X, Y, W, gi)[1])
    W_T = np.ascontiguousarray(W.T)
    for weights in (W_T, np.zeros((n, 0))):
        out = np.full((t, weights.shape[1]), np.nan)
        K.grid_sums_of_squares(Y, weights, out)
        assert_close(out, (Y**2).T @ weights)


def test_weighted_cross_products_rejects_bad_shapes():
    rng = np.random.default_rng(1)
    X = np.ascontiguousarray(rng.standard_normal((5, 2)))
    Y = np.asfortranarray(rng.standard_normal((4, 3)))
    W = make_weights(rng, 1, 5)
    gi = np.zeros(3, dtype=np.intp)
    with pytest.raises(ValueError):
        K.weighted_cross_products(X, Y, W, gi, np.zeros((2, 3), order="F"), np.zeros(3))


# ---------------------------------------------------------------------------
# sample_coefficients
# ---------------------------------------------------------------------------

COEF_CASES = [
    # (n, p, p_pen, t, n_groups)
    (30, 5, 5, 7, 2),  # all penalised
    (30, 5, 0, 7, 3),  # all flat
    (30, 5, 3, 9, 3),  # mixed
    (12, 1, 1, 1, 1),  # one penalised coefficient, one trait
    (12, 1, 0, 3, 1),  # one flat coefficient
    (40, 8, 2, 33, 4),  # mixed, several groups
    (40, 8, 7, 5, 2),  # one flat column
    (4, 7, 7, 5, 2),  # n < p, the prior makes P positive definite
    (6, 7, 4, 6, 3),  # n < p, flat block identifiable
]


@pytest.mark.parametrize("n, p, p_pen, t, n_groups", COEF_CASES)
def test_sample_coefficients_matches_reference(n, p, p_pen, t, n_groups):
    rng = np.random.default_rng(1000 + 31 * n + 7 * p + p_pen + 3 * t + n_groups)
    prob = make_coef_problem(rng, n, p, p_pen, t, n_groups)
    coef, tau, n_bad = run_coef_kernel(prob)
    ref_coef, ref_tau, ref_bad = run_coef_reference(prob)
    assert n_bad == 0 and ref_bad == 0
    assert_close(coef, ref_coef)
    assert_close(tau, ref_tau)
    assert np.all(tau > 0)


@pytest.mark.parametrize("n, p, p_pen", [(30, 5, 3), (40, 8, 2), (40, 8, 7), (6, 7, 4)])
def test_schur_complement_is_trailing_cholesky_block(n, p, p_pen):
    """The noise convention: chol_upper(S) is the flat block U_aa of chol_upper(P)."""
    rng = np.random.default_rng(7 + n + p)
    prob = make_coef_problem(rng, n, p, p_pen, 1, 1)
    P = prob["gram"][0] + np.diag(np.r_[prob["prior_prec"][:, 0], np.zeros(p - p_pen)])
    U = chol_upper(P)
    S = ref_schur_complement(P, p_pen)
    U_aa = U[p_pen:, p_pen:]
    assert_close(U_aa.T @ U_aa, S, rtol=1e-10, atol=1e-10 * np.abs(S).max())
    assert_close(chol_upper(S), U_aa, rtol=1e-10, atol=1e-10 * np.abs(U_aa).max())
    # the leading block of U is chol_upper(P_bb)
    assert_close(chol_upper(P[:p_pen, :p_pen]), U[:p_pen, :p_pen])
    # and the Schur-complement mean of alpha equals the joint-posterior mean
    c = prob["XtWy"][:, 0]
    c_star = c[p_pen:] - P[p_pen:, :p_pen] @ np.linalg.solve(P[:p_pen, :p_pen], c[:p_pen])
    assert_close(np.linalg.solve(S, c_star), np.linalg.solve(P, c)[p_pen:])


def test_sample_coefficients_all_traits_not_pd():
    """A zero Gram with zero prior precision is not PD: zeros, tau_old kept, counted."""
    rng = np.random.default_rng(11)
    p, p_pen, t = 4, 2, 6
    prob = make_coef_problem(rng, 10, p, p_pen, t, 1)
    prob["gram"] = np.zeros((1, p, p))
    prob["prior_prec"] = np.zeros((p_pen, t), order="F")
    coef, tau, n_bad = run_coef_kernel(prob)
    assert n_bad == t
    np.testing.assert_array_equal(coef, 0.0)
    np.testing.assert_array_equal(tau, prob["tau_old"])
    ref_coef, ref_tau, ref_bad = run_coef_reference(prob)
    assert ref_bad == t
    np.testing.assert_array_equal(ref_coef, 0.0)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_sample_coefficients_some_traits_not_pd(n_threads, restore_threads):
    """Mixed good/bad traits over 257 traits: the bad count is a correct reduction."""
    rng = np.random.default_rng(12)
    p, p_pen, t = 5, 3, 257
    prob = make_coef_problem(rng, 25, p, p_pen, t, 2)
    gram = prob["gram"].copy()
    gram[1] = 0.0
    prob["gram"] = gram
    bad = prob["gram_index"] == 1
    prior = prob["prior_prec"].copy(order="F")
    prior[:, bad] = 0.0
    prob["prior_prec"] = prior
    K.set_num_threads(n_threads)
    coef, tau, n_bad = run_coef_kernel(prob)
    ref_coef, ref_tau, ref_bad = run_coef_reference(prob)
    assert 0 < bad.sum() < t
    assert n_bad == ref_bad == bad.sum()
    np.testing.assert_array_equal(coef[:, bad], 0.0)
    np.testing.assert_array_equal(tau[bad], prob["tau_old"][bad])
    assert_close(coef, ref_coef)
    assert_close(tau, ref_tau)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_sample_coefficients_traits_do_not_depend_on_their_batch(n_threads, restore_threads):
    """The kernel solves 8 traits at a time (vectorised over traits): each trait's draw
    is bit-identical to solving it alone, with not positive definite and dropped-flat
    traits among its neighbours, and a last, partial batch (t = 21)."""
    rng = np.random.default_rng(15)
    p, p_pen, t = 6, 4, 21
    prob = make_coef_problem(rng, 30, p, p_pen, t, 3)
    gram = prob["gram"].copy()
    gram[2] = 0.0  # traits on grid point 2 with zero prior precision: not PD
    prob["gram"] = gram
    prior = prob["prior_prec"].copy(order="F")
    prior[:, prob["gram_index"] == 2] = 0.0
    prob["prior_prec"] = prior
    drop = np.zeros((t, p - p_pen), dtype=np.uint8)
    drop[3::4, 1] = 1
    K.set_num_threads(n_threads)

    def run(cols):
        part = {k: (np.asfortranarray(v[..., cols]) if k not in ("gram", "gram_index")
                    else v) for k, v in prob.items()}
        part["gram_index"] = np.ascontiguousarray(prob["gram_index"][cols])
        for k in ("yWy", "tau_old", "tau_rate", "gamma_draw"):
            part[k] = np.ascontiguousarray(prob[k][cols])
        coef = np.full((p, len(cols)), np.nan, order="F")
        tau = np.full(len(cols), np.nan)
        n_bad = K.sample_coefficients(
            part["gram"], part["gram_index"], part["XtWy"], part["yWy"], part["prior_prec"],
            part["tau_old"], part["tau_rate"], part["gamma_draw"], part["z"], coef, tau,
            np.ascontiguousarray(drop[cols]))
        return coef, tau, n_bad

    coef, tau, n_bad = run(np.arange(t))
    assert 0 < n_bad < t and np.all(np.isfinite(coef)) and np.all(np.isfinite(tau))
    alone = [run(np.array([j])) for j in range(t)]
    np.testing.assert_array_equal(coef, np.hstack([a[0] for a in alone]))
    np.testing.assert_array_equal(tau, np.concatenate([a[1] for a in alone]))
    assert n_bad == sum(a[2] for a in alone)
    assert np.all(coef[p_pen + 1, drop[:, 1] == 1] == 0.0)


def test_sample_coefficients_no_coefficients():
    """p = 0 (nothing to regress on): P is the empty matrix, which is trivially PD.

    Expected: n_bad = 0 and ``tau = gamma_draw / (tau_rate + yWy / 2)``.
    """
    rng = np.random.default_rng(14)
    t = 3
    prob = make_coef_problem(rng, 5, 0, 0, t, 1)
    coef, tau, n_bad = run_coef_kernel(prob)
    ref_coef, ref_tau, ref_bad = run_coef_reference(prob)
    assert ref_bad == 0
    assert_close(ref_tau, prob["gamma_draw"] / (prob["tau_rate"] + 0.5 * prob["yWy"]))
    assert n_bad == 0, f"kernel reports {n_bad} non-PD traits for p = 0"
    assert_close(tau, ref_tau)


def test_sample_coefficients_rejects_bad_shapes():
    rng = np.random.default_rng(13)
    prob = make_coef_problem(rng, 10, 3, 2, 4, 1)
    prob["prior_prec"] = np.asfortranarray(rng.gamma(2.0, 1.0, size=(4, 4)))  # p_pen > p
    with pytest.raises(ValueError):
        run_coef_kernel(prob)
    prob = make_coef_problem(rng, 10, 3, 2, 4, 1)
    prob["z"] = np.zeros((2, 4), order="F")
    with pytest.raises(ValueError):
        run_coef_kernel(prob)


N_MC = 20000


def _replicate(prob, N, rng):
    """One trait's problem copied into N columns with fresh normal draws z."""
    out = dict(prob)
    out["gram_index"] = np.zeros(N, dtype=np.intp)
    for key in ("XtWy", "prior_prec"):
        out[key] = np.asfortranarray(np.repeat(prob[key][:, :1], N, axis=1))
    for key in ("yWy", "tau_old", "tau_rate", "gamma_draw"):
        out[key] = np.full(N, prob[key][0])
    out["z"] = np.asfortranarray(rng.standard_normal((prob["z"].shape[0], N)))
    return out


def _assert_gaussian_moments(draws, mean, cov):
    """Empirical mean/covariance of ``draws`` (N, m) against ``mean`` and ``cov``.

    Tolerances are 5 Monte Carlo standard errors, elementwise: the sample mean has
    variance ``cov_ii / N`` and, for Gaussian draws, the sample covariance entry
    ``(i, l)`` has variance ``(cov_ii cov_ll + cov_il^2) / N``.  With m <= 4 (at most
    4 + 16 checks) the chance of a false failure at 5 SE is below 1e-5, and the
    seed is fixed anyway; a wrong covariance convention (e.g. ``U^-T z`` instead
    of ``U^-1 z``, or a missing ``sqrt(tau)``) moves entries by tens of SE.
    """
    N = draws.shape[0]
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * sd / np.sqrt(N))
    emp_cov = np.cov(draws, rowvar=False)
    se_cov = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / N)
    assert np.all(np.abs(emp_cov - cov) < 5 * se_cov)


def test_sample_coefficients_beta_distribution():
    """p_pen = p, tau pinned: beta ~ N(P^-1 c, (tau P)^-1) empirically."""
    rng = np.random.default_rng(21)
    n, p = 15, 4
    prob = make_coef_problem(rng, n, p, p, 1, 1)
    P = prob["gram"][0] + np.diag(prob["prior_prec"][:, 0])
    c = prob["XtWy"][:, 0]
    # pin tau: with no flat columns SS = y'Wy - c' P^-1 c does not depend on z
    tau_fixed = 0.7
    SS = prob["yWy"][0] - c @ np.linalg.solve(P, c)
    prob["gamma_draw"] = np.array([tau_fixed * (prob["tau_rate"][0] + 0.5 * SS)])
    rep = _replicate(prob, N_MC, rng)
    coef, tau, n_bad = run_coef_kernel(rep)
    assert n_bad == 0
    assert_close(tau, tau_fixed)
    _assert_gaussian_moments(coef.T, np.linalg.solve(P, c), np.linalg.inv(tau_fixed * P))


def test_sample_coefficients_alpha_distribution():
    """Mixed case: alpha's law is the flat block of the joint N(P^-1 c, (tau_old P)^-1)."""
    rng = np.random.default_rng(22)
    n, p, p_pen = 15, 4, 2
    prob = make_coef_problem(rng, n, p, p_pen, 1, 1)
    P = prob["gram"][0] + np.diag(np.r_[prob["prior_prec"][:, 0], np.zeros(p - p_pen)])
    c = prob["XtWy"][:, 0]
    rep = _replicate(prob, N_MC, rng)
    coef, _, n_bad = run_coef_kernel(rep)
    assert n_bad == 0
    a = slice(p_pen, p)
    cov = np.linalg.inv(prob["tau_old"][0] * P)[a, a]
    _assert_gaussian_moments(coef[a].T, np.linalg.solve(P, c)[a], cov)


# ---------------------------------------------------------------------------
# sample_grid_index
# ---------------------------------------------------------------------------


def make_grid_problem(rng, t, G, n_excluded=0):
    SS = np.ascontiguousarray(rng.gamma(2.0, 1.0, size=(t, G)) * 3.0)
    log_det = rng.normal(0.0, 2.0, size=G)
    log_prior = np.log(rng.dirichlet(np.ones(G)))
    if n_excluded:
        # exclude the first and last points and n_excluded - 2 (or more) in between
        excl = np.r_[0, G - 1, rng.choice(np.arange(1, G - 1), size=max(n_excluded - 2, 0),
                                           replace=False)]
        log_prior[excl] = -np.inf
    tau = rng.gamma(2.0, 1.0, size=t)
    return SS, log_det, log_prior, tau


@pytest.mark.parametrize(
    "t, G, n_excluded",
    [(5, 1, 0), (20, 7, 0), (1, 3, 0), (50, 21, 4), (40, 5, 1), (100, 40, 10), (30, 2, 0)],
)
def test_sample_grid_index_matches_reference(t, G, n_excluded):
    rng = np.random.default_rng(300 + t + 17 * G + n_excluded)
    SS, log_det, log_prior, tau = make_grid_problem(rng, t, G, n_excluded)
    u = rng.random(t)
    if t >= 2:
        u[:2] = [1e-300, 1.0 - 2.0**-53]  # extreme but valid uniforms
    out = np.full(t, -1, dtype=np.intp)
    K.sample_grid_index(SS, log_det, log_prior, tau, u, out)
    expected = ref_sample_grid_index(SS, log_det, log_prior, tau, u)
    np.testing.assert_array_equal(out, expected)
    assert np.all((out >= 0) & (out < G))
    # never a point with zero prior probability (u > 0 here)
    assert np.all(np.isfinite(log_prior[out]))


def test_sample_grid_index_frequencies():
    """One column repeated: frequencies of the index match the softmax probabilities."""
    rng = np.random.default_rng(31)
    G, N = 9, 200_000
    SS1, log_det, log_prior, tau1 = make_grid_problem(rng, 1, G, 2)
    SS1 = SS1 * 0.3  # flatter posterior: every allowed point has decent mass
    SS = np.ascontiguousarray(np.repeat(SS1, N, axis=0))
    tau = np.full(N, tau1[0])
    u = rng.random(N)
    out = np.empty(N, dtype=np.intp)
    K.sample_grid_index(SS, log_det, log_prior, tau, u, out)
    prob = ref_grid_probabilities(SS1, log_det, log_prior, tau1)[0]
    freq = np.bincount(out, minlength=G) / N
    # binomial standard error; 5 SE over 9 cells: false-failure chance < 1e-5
    se = np.sqrt(prob * (1 - prob) / N)
    assert np.all(np.abs(freq - prob) <= 5 * se + 1e-12)
    assert np.all(freq[~np.isfinite(log_prior)] == 0)


def test_sample_grid_index_rejects_bad_shapes():
    out = np.zeros(2, dtype=np.intp)
    with pytest.raises(ValueError):
        K.sample_grid_index(np.zeros((2, 3)), np.zeros(2), np.zeros(3), np.ones(2),
                            np.full(2, 0.5), out)


# ---------------------------------------------------------------------------
# sample_diagonal_effects
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, r, r_pos, t",
    [
        (10, 5, 5, 6),  # r < n, all observed
        (10, 10, 7, 6),  # r = n, some zero eigenvalues
        (10, 15, 7, 8),  # r > n: extra components from the prior
        (6, 9, 6, 4),  # r > n, every row observed
        (8, 4, 0, 3),  # no positive eigenvalue: all from the prior
        (1, 1, 1, 1),  # scalar
        (30, 40, 25, 40),
    ],
)
def test_sample_diagonal_effects_matches_reference(n, r, r_pos, t):
    rng = np.random.default_rng(400 + n + 3 * r + 7 * r_pos + t)
    E = np.asfortranarray(rng.standard_normal((n, t)))
    d = np.r_[rng.gamma(1.0, 3.0, size=r_pos), np.zeros(r - r_pos)]
    h = rng.random(t) * 0.98
    h[0] = 0.0
    if t > 2:
        h[1], h[2] = 1e-8, 0.999
    tau = rng.gamma(3.0, 1.0, size=t)
    z = np.asfortranarray(rng.standard_normal((r, t)))
    v = np.full((r, t), np.nan, order="F")
    K.sample_diagonal_effects(E, d, h, np.arange(t), tau, z, v)  # one grid point per column
    expected = ref_sample_diagonal_effects(E, d, h, tau, z)
    assert_close(v, expected)
    np.testing.assert_array_equal(v[:, 0], 0.0)
    # columns sharing grid points, the per-point tables passed in or computed inside
    grid = np.unique(h)
    index = np.searchsorted(grid, h)
    inv, sqrt_inv = K.effect_tables(d, grid)
    assert_close(inv, 1.0 / (np.outer(grid, d) + 1.0 - grid[:, None]))
    assert_close(sqrt_inv, np.sqrt(inv))
    for tables in ({}, {"inv": inv, "sqrt_inv": sqrt_inv}):
        v2 = np.full((r, t), np.nan, order="F")
        K.sample_diagonal_effects(E, d, grid, index, tau, z, v2, **tables)
        np.testing.assert_array_equal(v2, v)
    # the residual base - (sqrt(d) v, 0): rows with d_i > 0 lose their effect, others not
    base = np.asfortranarray(rng.standard_normal((n, t)))
    v3, resid = np.full((r, t), np.nan, order="F"), np.full((n, t), np.nan, order="F")
    K.sample_diagonal_effects(E, d, grid, index, tau, z, v3, base, resid)
    np.testing.assert_array_equal(v3, v)
    m = min(n, r)
    expected_resid = base.copy()
    expected_resid[:m] -= np.sqrt(d[:m])[:, None] * v[:m]
    assert_close(resid, expected_resid)
    in_place = base.copy(order="F")  # resid_out = base: the same numbers
    K.sample_diagonal_effects(E, d, grid, index, tau, z, v3, in_place, in_place)
    np.testing.assert_array_equal(in_place, resid)


def test_sample_diagonal_effects_rejects_bad_shapes():
    E = np.zeros((3, 2), order="F")
    grid, index, tau = np.array([0.5]), np.zeros(2, dtype=np.intp), np.ones(2)
    with pytest.raises(ValueError, match="inconsistent"):
        K.sample_diagonal_effects(E, np.ones(4), grid, index, tau,
                                  np.zeros((3, 2), order="F"), np.zeros((4, 2), order="F"))
    z, v = np.zeros((4, 2), order="F"), np.zeros((4, 2), order="F")
    with pytest.raises(ValueError, match="out of range"):
        K.sample_diagonal_effects(E, np.ones(4), grid, np.array([0, 1]), tau, z, v)
    with pytest.raises(ValueError, match=r"\(G, r\)"):
        K.sample_diagonal_effects(E, np.ones(4), grid, index, tau, z, v,
                                  inv=np.ones((1, 3)), sqrt_inv=np.ones((1, 3)))


# ---------------------------------------------------------------------------
# sample_ard_delta
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, T, n_traits, s_scale",
    [(1, 1, 1.0, 1.0), (2, 10, 5.0, 1.0), (5, 30, 50.0, 0.5), (15, 20, 1000.0, 0.01),
     (6, 10, 20.0, 50.0), (4, 5, 3.0, 1e-4), (15, 100, 19.0, 0.05)],
)
def test_sample_ard_delta_matches_reference(k, T, n_traits, s_scale):
    rng = np.random.default_rng(500 + k + T)
    delta0 = np.r_[rng.gamma(2.0, 1.0, size=1), 1.0 + rng.gamma(2.0, 1.0, size=k - 1)]
    s = np.ascontiguousarray(rng.gamma(1.0, 1.0, size=k) * s_scale * n_traits)
    a1, b1, a2, b2 = 2.0, 1.0, 3.0, 1.0
    delta = delta0.copy()
    bg, bg_ref = np.random.PCG64(7 + k), np.random.PCG64(7 + k)
    K.sample_ard_delta(delta, s, n_traits, a1, b1, a2, b2, T, bg)
    expected = ref_sample_ard_delta(delta0, s, n_traits, a1, b1, a2, b2, T, bg_ref)
    assert_close(delta, expected)
    assert np.all(delta[1:] >= 1.0)
    # both consumed the same random numbers
    assert bg.state == bg_ref.state


def test_sample_ard_delta_truncation_branch():
    """F(trunc_point) > 0.999 sets delta_h (h >= 1) to exactly trunc_point.

    A huge a1 makes delta_1 large, hence rate_2 = b2 + delta_1 s_2 large while the
    shape of delta_2 stays small, so that Gamma(shape_2, rate_2) puts > 99.9% of its
    mass below 1.
    """
    s = np.array([1e-3, 1.0])
    a1, b1, a2, b2, n_traits = 1e4, 1.0, 1.0, 1.0, 1.0
    delta = np.array([1.0, 2.0])
    K.sample_ard_delta(delta, s, n_traits, a1, b1, a2, b2, 3, np.random.PCG64(51))
    expected = ref_sample_ard_delta(np.array([1.0, 2.0]), s, n_traits, a1, b1, a2, b2, 3,
                                    np.random.PCG64(51))
    assert delta[1] == 1.0 and expected[1] == 1.0
    assert_close(delta, expected)


def test_sample_ard_delta_trunc_point():
    rng = np.random.default_rng(52)
    k = 5
    s = np.ascontiguousarray(rng.gamma(1.0, 1.0, size=k))
    delta = np.full(k, 3.0)
    K.sample_ard_delta(delta, s, 4.0, 2.0, 1.0, 3.0, 1.0, 8, np.random.PCG64(52),
                       trunc_point=2.0)
    expected = ref_sample_ard_delta(np.full(k, 3.0), s, 4.0, 2.0, 1.0, 3.0, 1.0, 8,
                                    np.random.PCG64(52), 2.0)
    assert_close(delta, expected)
    assert np.all(delta[1:] >= 2.0)


def test_sample_ard_delta_draws_the_truncated_gamma():
    """Each draw follows its conditional: the probability integral transforms are uniform.

    One sweep over k = 2 from a fixed ``delta``: ``delta_1 ~ Gamma(a1 + p, b1 + s_1 +
    delta_2 s_2)`` and, given the new ``delta_1``, ``delta_2 ~ Gamma(a2 + p/2, b2 +
    delta_1 s_2)`` truncated at 1.  ``s_2`` varies over the replications so that
    ``P0 = F(1)`` of ``delta_2`` covers the rejection branch (``P0 <= 1/2``) and the
    inverse-CDF branch (``1/2 < P0 <= 0.999``) about equally; the transforms
    ``F(delta_1)`` and ``(F(delta_2) - P0) / (1 - P0)`` are uniform for an exact sampler
    whatever the branch.  Threshold: with a fixed seed, p > 1e-3 for the KS tests.  Two
    deliberately wrong kernels fail it (checked by hand): rejecting below half the
    truncation point in the rejection branch, and using ``u ** 1.1`` for ``u`` in the
    inverse-CDF branch (p = 6e-5).
    """
    rng = np.random.default_rng(2026)
    bg = np.random.PCG64(2026)
    # a large a1 keeps delta_1 away from 0, so that rate_2 = b2 + delta_1 s_2 reaches
    # the inverse-CDF branch for the larger s_2
    a1, b1, a2, b2, p = 50.0, 1.0, 3.0, 1.0, 10.0
    reps = 6000
    u1, u2, p0s = np.empty(reps), np.empty(reps), np.empty(reps)
    for r in range(reps):
        s = np.array([0.5, rng.uniform(0.02, 0.45)])
        delta = np.array([1.5, 2.0])
        K.sample_ard_delta(delta, s, p, a1, b1, a2, b2, 1, bg)
        u1[r] = gammainc(a1 + p, (b1 + s[0] + 2.0 * s[1]) * delta[0])
        rate2 = b2 + delta[0] * s[1]
        p0 = gammainc(a2 + 0.5 * p, rate2)
        p0s[r] = p0
        u2[r] = (gammainc(a2 + 0.5 * p, rate2 * delta[1]) - p0) / (1.0 - p0)
    keep = p0s <= 0.999  # above it, delta_2 = 1 (R's rule), not a draw
    assert 0.2 < np.mean(p0s <= 0.5) < 0.8 and np.mean(keep & (p0s > 0.5)) > 0.2
    assert scipy.stats.kstest(u1, "uniform").pvalue > 1e-3
    assert scipy.stats.kstest(u2[keep & (p0s <= 0.5)], "uniform").pvalue > 1e-3
    assert scipy.stats.kstest(u2[keep & (p0s > 0.5)], "uniform").pvalue > 1e-3


def test_sample_ard_delta_rejects_bad_shapes():
    with pytest.raises(ValueError):
        K.sample_ard_delta(np.ones(3), np.ones(2), 1.0, 2.0, 1.0, 3.0, 1.0, 1,
                           np.random.PCG64(0))
    with pytest.raises(ValueError, match="sweeps"):
        K.sample_ard_delta(np.ones(3), np.ones(3), 1.0, 2.0, 1.0, 3.0, 1.0, -1,
                           np.random.PCG64(0))


# ---------------------------------------------------------------------------
# OpenMP controls and determinism across threads
# ---------------------------------------------------------------------------


def test_openmp_controls(restore_threads):
    assert isinstance(K.openmp_enabled(), bool)
    assert K.openmp_max_threads() >= 1
    for bad in (0, -1):
        with pytest.raises(ValueError):
            K.set_num_threads(bad)
    K.set_num_threads(1)
    assert K.openmp_max_threads() == 1
    K.set_num_threads(2)
    assert K.openmp_max_threads() == (2 if K.openmp_enabled() else 1)


def _run_threads(fn):
    """Results of ``fn()`` with 1 and then 2 OpenMP threads."""
    results = []
    for n_threads in (1, 2):
        K.set_num_threads(n_threads)
        results.append(fn())
    return results


def test_weighted_cross_products_thread_bit_identical(restore_threads):
    rng = np.random.default_rng(61)
    n, p, t, G = 40, 6, 257, 5
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    Y = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    gi = rng.integers(0, G, size=t).astype(np.intp)

    def run():
        XtWy = np.empty((p, t), order="F")
        yWy = np.empty(t)
        K.weighted_cross_products(X, Y, W, gi, XtWy, yWy)
        return XtWy, yWy

    (a1, b1), (a2, b2) = _run_threads(run)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)


def test_sample_coefficients_thread_bit_identical(restore_threads):
    rng = np.random.default_rng(62)
    prob = make_coef_problem(rng, 40, 8, 5, 257, 4)
    (c1, t1, n1), (c2, t2, n2) = _run_threads(lambda: run_coef_kernel(prob))
    assert n1 == n2 == 0
    assert np.array_equal(c1, c2) and np.array_equal(t1, t2)


def test_grid_and_effects_thread_bit_identical(restore_threads):
    rng = np.random.default_rng(63)
    t, G, n, r = 257, 11, 20, 25
    SS, log_det, log_prior, tau = make_grid_problem(rng, t, G, 2)
    u = rng.random(t)
    E = np.asfortranarray(rng.standard_normal((n, t)))
    d = np.r_[rng.gamma(1.0, 3.0, size=15), np.zeros(r - 15)]
    h = rng.random(t) * 0.9
    z = np.asfortranarray(rng.standard_normal((r, t)))

    def run():
        idx = np.empty(t, dtype=np.intp)
        K.sample_grid_index(SS, log_det, log_prior, tau, u, idx)
        v = np.empty((r, t), order="F")
        K.sample_diagonal_effects(E, d, h, np.arange(t), tau, z, v)
        return idx, v

    (i1, v1), (i2, v2) = _run_threads(run)
    assert np.array_equal(i1, i2) and np.array_equal(v1, v2)


@pytest.mark.parametrize("t, p", [(1, 3), (5, 0), (6, 4), (103, 2), (200, 16)])
@pytest.mark.parametrize("block", [1, 3, 64])
def test_weighted_cross_products_tiles(t, p, block, restore_threads):
    """Any tile width: the NumPy reference, bit-identical for 1 or 2 threads, and each
    column's sums depend on that column only (changing the other columns' data leaves
    them unchanged when the tiling is the same)."""
    rng = np.random.default_rng(t + p)
    n, G = 29, 5
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    Y = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    gi = rng.integers(0, G, size=t).astype(np.intp)

    def run(Yc=Y):
        XtWy, yWy = np.full((p, t), np.nan, order="F"), np.full(t, np.nan)
        K.weighted_cross_products(X, Yc, W, gi, XtWy, yWy, block=block)
        return XtWy, yWy

    (a, ya), (b, yb) = _run_threads(run)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    ref_XtWy, ref_yWy = ref_weighted_cross_products(X, Y, W, gi)
    assert_close(a, ref_XtWy)
    assert_close(ya, ref_yWy)
    j = t // 2
    other = np.asfortranarray(rng.standard_normal((n, t)))
    other[:, j] = Y[:, j]
    c, yc = run(other)
    assert np.array_equal(c[:, j], a[:, j]) and yc[j] == ya[j]


@pytest.mark.parametrize("t", [1, 3, 4, 5, 9, 103, 200])
@pytest.mark.parametrize("block", [1, 3, 64])
def test_grid_sums_of_squares_tiles(t, block, restore_threads):
    """Any tile width: the NumPy reference, bit-identical for 1 or 2 threads, and each
    column's sums depend on that column only (same tiling, other columns changed)."""
    rng = np.random.default_rng(t)
    n, G = 37, 7
    E = np.asfortranarray(rng.standard_normal((n, t)))
    W_T = np.ascontiguousarray(make_weights(rng, G, n).T)

    def run(Ec=E):
        out = np.full((t, G), np.nan)
        K.grid_sums_of_squares(Ec, W_T, out, block=block)
        return out

    a, b = _run_threads(run)
    assert np.array_equal(a, b)
    assert_close(a, (E**2).T @ W_T)
    j = t - 1
    other = np.asfortranarray(rng.standard_normal((n, t)))
    other[:, j] = E[:, j]
    assert np.array_equal(run(other)[j], a[j])


def test_tiled_kernels_reject_bad_blocks():
    rng = np.random.default_rng(3)
    n, t, G = 5, 4, 3
    E = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    with pytest.raises(ValueError, match="block"):
        K.grid_sums_of_squares(E, np.ascontiguousarray(W.T), np.empty((t, G)), block=0)
    with pytest.raises(ValueError, match="block"):
        K.weighted_cross_products(np.zeros((n, 1)), E, W, np.zeros(t, dtype=np.intp),
                                  np.empty((1, t), order="F"), np.empty(t), block=0)
    with pytest.raises(ValueError, match="grid_index"):
        K.weighted_cross_products(np.zeros((n, 1)), E, W, np.zeros(t - 1, dtype=np.intp),
                                  np.empty((1, t), order="F"), np.empty(t))


# ---------------------------------------------------------------------------
# NumPy-level sampler pieces
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, t, k", [(13, 9, 4), (7, 5, 1), (6, 1, 3), (1, 4, 2), (30, 50, 8)])
def test_sample_factor_scores(n, t, k):
    rng = np.random.default_rng(700 + n + t + k)
    E = rng.standard_normal((n, t))
    Lambda = rng.standard_normal((k, t))
    resid_prec = rng.gamma(3.0, 1.0, size=t)
    prior_mean = rng.standard_normal((n, k))
    factor_prec = rng.gamma(3.0, 1.0, size=k)
    z = rng.standard_normal((n, k))
    F = sampler.sample_factor_scores(E, Lambda, resid_prec, prior_mean, factor_prec, z)
    assert F.shape == (n, k) and F.flags.f_contiguous
    assert_close(F, ref_sample_factor_scores(E, Lambda, resid_prec, prior_mean, factor_prec, z))


@pytest.mark.parametrize("k, t, sweeps", [(5, 12, 7), (1, 3, 2), (8, 40, 20)])
def test_sample_ard(k, t, sweeps):
    rng = np.random.default_rng(800 + k + t)
    Lambda = np.asfortranarray(rng.standard_normal((k, t)))
    tau = rng.gamma(4.0, 0.5, size=t)
    delta = np.r_[rng.gamma(2.0, 1.0), 1.0 + rng.gamma(2.0, 1.0, size=k - 1)]
    ard = ARDPrior(Lambda_df=3.0, delta_1=GammaPrior(2.0, 1.0), delta_2=GammaPrior(3.0, 1.0),
                   delta_iterations_factor=sweeps)
    priors = Priors(Lambda_prior=ard)
    phi, new_delta = sampler.sample_ard(
        Lambda, tau, np.ones((k, t), order="F"), delta.copy(), priors, np.random.default_rng(9)
    )
    ref_phi, ref_delta = ref_sample_ard(
        Lambda, tau, delta, 3.0, 2.0, 1.0, 3.0, 1.0, sweeps, np.random.default_rng(9)
    )
    assert phi.flags.f_contiguous
    assert_close(phi, ref_phi)
    assert_close(new_delta, ref_delta)


# ---------------------------------------------------------------------------
# gemm_columns (column-blocked product), when present
# ---------------------------------------------------------------------------

needs_gemm = pytest.mark.skipif(not hasattr(K, "gemm_columns"), reason="no gemm_columns kernel")


def _assert_gemm_close(C, A, B, alpha=1.0, beta=0.0, C0=None):
    """``C`` equals ``alpha A B + beta C0`` to 1e-12 relative to ``|alpha||A||B| + |beta C0|``."""
    ref = alpha * (A @ B)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B))
    if C0 is not None and beta != 0.0:
        ref = ref + beta * C0
        scale = scale + np.abs(beta * C0)
    assert np.all(np.abs(C - ref) <= 1e-12 * scale + 1e-300)


@needs_gemm
@pytest.mark.parametrize(
    "m, kk, n, block",
    [(30, 7, 200, 64), (5, 3, 1, 64), (1, 1, 1, 1), (17, 9, 130, 1), (40, 12, 64, 64),
     (12, 20, 65, 64), (9, 4, 10, 1000), (50, 30, 257, 16)],
)
def test_gemm_columns(m, kk, n, block):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(900 + m + kk + n + block)
    A = np.asfortranarray(rng.standard_normal((m, kk)))
    B = np.asfortranarray(rng.standard_normal((kk, n)))
    C0 = np.asfortranarray(rng.standard_normal((m, n)))
    with threadpool_limits(limits=1, user_api="blas"):
        C = np.full((m, n), np.nan, order="F")
        K.gemm_columns(A, B, C, 1.0, 0.0, block)
        _assert_gemm_close(C, A, B)
        C = C0.copy(order="F")
        K.gemm_columns(A, B, C, -0.5, 2.0, block)
        _assert_gemm_close(C, A, B, -0.5, 2.0, C0)


@needs_gemm
def test_gemm_columns_thread_bit_identical(restore_threads):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(91)
    A = np.asfortranarray(rng.standard_normal((60, 25)))
    B = np.asfortranarray(rng.standard_normal((25, 257)))
    out = []
    with threadpool_limits(limits=1, user_api="blas"):
        for n_threads in (1, 2):
            K.set_num_threads(n_threads)
            C = np.empty((60, 257), order="F")
            K.gemm_columns(A, B, C, 1.0, 0.0, 16)
            out.append(C)
    assert np.array_equal(out[0], out[1])


@needs_gemm
@pytest.mark.parametrize("trans_a, m, kk, n", [
    (False, 300, 257, 1), (False, 300, 257, 2), (False, 300, 257, 4),  # dgemv tiles
    (True, 300, 257, 1), (True, 300, 40, 3), (True, 130, 257, 20), (True, 7, 5, 70),
    (True, 1, 1, 1),
])
def test_gemm_columns_dgemv_tiles_and_transposed_a(trans_a, m, kk, n, restore_threads):
    """At most GEMV_MAX_COLUMNS columns: row tiles of one dgemv each; ``trans_a``: ``A``
    stored ``(k, m)`` and read transposed (dgemv and dgemm tiles).  Equal to the product
    (alpha, beta, a separate source, beta != 0 on the output itself), old NaN contents
    ignored when beta = 0, bit-identical for 1 and 2 threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(93 + m + n + trans_a)
    A = np.asfortranarray(rng.standard_normal((kk, m) if trans_a else (m, kk)))
    op_A = A.T if trans_a else A
    B = np.asfortranarray(rng.standard_normal((kk, n)))
    S = np.asfortranarray(rng.standard_normal((m, n)))
    out = []
    with threadpool_limits(limits=1, user_api="blas"):
        for n_threads in (1, 2):
            K.set_num_threads(n_threads)
            C = np.full((m, n), np.nan, order="F")
            K.gemm_columns(A, B, C, 1.0, 0.0, trans_a=trans_a)
            _assert_gemm_close(C, op_A, B)
            out.append(C)
            C2 = np.full((m, n), np.nan, order="F")
            K.gemm_columns(A, B, C2, -0.5, 2.0, source=S, trans_a=trans_a)
            _assert_gemm_close(C2, op_A, B, -0.5, 2.0, S)
            C3 = S.copy(order="F")
            K.gemm_columns(A, B, C3, 1.5, -1.0, trans_a=trans_a)
            _assert_gemm_close(C3, op_A, B, 1.5, -1.0, S)
    assert np.array_equal(out[0], out[1])
    if trans_a:  # (k, m)' @ B needs B with k rows
        with pytest.raises(ValueError):
            K.gemm_columns(A, np.ones((kk + 1, n), order="F"), np.zeros((m, n), order="F"),
                           trans_a=True)


@needs_gemm
def test_gemm_columns_empty_and_errors():
    A = np.zeros((0, 3), order="F")
    B = np.ones((3, 4), order="F")
    C = np.zeros((0, 4), order="F")
    K.gemm_columns(A, B, C)
    C = np.full((2, 5), 3.0, order="F")
    K.gemm_columns(np.zeros((2, 0), order="F"), np.zeros((0, 5), order="F"), C, 1.0, 0.5)
    np.testing.assert_array_equal(C, 1.5)
    with pytest.raises(ValueError):
        K.gemm_columns(np.ones((2, 3), order="F"), np.ones((4, 5), order="F"),
                       np.zeros((2, 5), order="F"))
    with pytest.raises(ValueError):
        K.gemm_columns(np.ones((2, 3), order="F"), np.ones((3, 5), order="F"),
                       np.zeros((2, 5), order="F"), block=0)


@needs_gemm
@pytest.mark.parametrize("kk", [0, 3])
def test_gemm_columns_beta_zero_ignores_output_contents(kk):
    """With beta = 0 the output's old contents (np.empty garbage, here NaN) must not leak.

    BLAS ``dgemm`` does not read C when beta = 0, and ``pymegalmm.linalg.matmul``
    relies on it (it allocates ``out`` with ``np.empty`` and passes beta = 0).
    """
    rng = np.random.default_rng(92)
    A = np.asfortranarray(rng.standard_normal((4, kk)))
    B = np.asfortranarray(rng.standard_normal((kk, 6)))
    C = np.full((4, 6), np.nan, order="F")
    K.gemm_columns(A, B, C, 1.0, 0.0)
    assert not np.isnan(C).any(), f"NaN leaked from the output's old contents: {C}"
    _assert_gemm_close(C, A, B)


# ---------------------------------------------------------------------------
# weighted_grams
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, p, used", [(29, 5, [0, 3, 4]), (40, 17, [2]), (7, 1, [1, 1]),
                                        (12, 0, [0]), (0, 3, [0, 2])])
def test_weighted_grams(n, p, used, restore_threads):
    """The NumPy reference to 1e-10, symmetric to the last bit, the same for 1 or 2 threads."""
    rng = np.random.default_rng(n + 31 * p)
    G = 5
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    W = make_weights(rng, G, n)
    used = np.array(used, dtype=np.intp)

    def run():
        gram = np.full((len(used), p, p), np.nan)
        K.weighted_grams(X, W, used, gram)
        return gram

    a, b = _run_threads(run)
    assert np.array_equal(a, b)
    for u, g in enumerate(used):
        assert_close(a[u], X.T @ (W[g][:, None] * X))
        assert np.array_equal(a[u], a[u].T)


def test_weighted_grams_rejects_bad_input():
    rng = np.random.default_rng(4)
    X = np.ascontiguousarray(rng.standard_normal((6, 2)))
    W = make_weights(rng, 3, 6)
    with pytest.raises(ValueError, match="out of range"):
        K.weighted_grams(X, W, np.array([3], dtype=np.intp), np.empty((1, 2, 2)))
    with pytest.raises(ValueError, match="inconsistent"):
        K.weighted_grams(X, W, np.array([0], dtype=np.intp), np.empty((1, 2, 3)))
    with pytest.raises(ValueError, match="inconsistent"):
        K.weighted_grams(X, W[:, :5].copy(), np.array([0], dtype=np.intp), np.empty((1, 2, 2)))


def test_tiled_kernels_bound_their_tiles_and_handle_empty_shapes():
    """A tile width beyond the number of columns is one tile of them all (no oversized
    buffer: 2**61 columns would overflow its size); no rows or no columns: zeros or
    nothing; an out-of-range grid point is an error, not a read out of bounds."""
    rng = np.random.default_rng(9)
    n, t, G, p = 37, 3, 4, 2
    E = np.asfortranarray(rng.standard_normal((n, t)))
    W = make_weights(rng, G, n)
    W_T = np.ascontiguousarray(W.T)
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    gi = rng.integers(0, G, size=t).astype(np.intp)
    for block in (t, 2**61, 2**63 - 1):
        out = np.full((t, G), np.nan)
        K.grid_sums_of_squares(E, W_T, out, block=block)
        assert_close(out, (E**2).T @ W_T)
        XtWy, yWy = np.full((p, t), np.nan, order="F"), np.full(t, np.nan)
        K.weighted_cross_products(X, E, W, gi, XtWy, yWy, block=block)
        assert_close(XtWy, ref_weighted_cross_products(X, E, W, gi)[0])
    out = np.full((t, G), np.nan)
    K.grid_sums_of_squares(np.zeros((0, t), order="F"), np.zeros((0, G)), out)
    assert np.array_equal(out, np.zeros((t, G)))
    XtWy, yWy = np.full((p, t), np.nan, order="F"), np.full(t, np.nan)
    K.weighted_cross_products(np.zeros((0, p)), np.zeros((0, t), order="F"), np.zeros((G, 0)),
                              gi, XtWy, yWy)
    assert not XtWy.any() and not yWy.any()
    K.grid_sums_of_squares(np.zeros((n, 0), order="F"), W_T, np.zeros((0, G)))
    gram = np.zeros((0, p, p))
    K.weighted_grams(X, W, np.zeros(0, dtype=np.intp), gram)
    with pytest.raises(ValueError, match="out of range"):
        K.weighted_cross_products(X, E, W, np.full(t, G, dtype=np.intp),
                                  np.empty((p, t), order="F"), np.empty(t))


@needs_gemm
@pytest.mark.parametrize("m, k1, k2, n", [(300, 1, 15, 200), (130, 3, 7, 65), (7, 2, 1, 5)])
def test_subtract_two_products_equals_two_gemm_calls(m, k1, k2, n, restore_threads):
    """``C1 = S - A1 B1``, ``C2 = C1 - A2 B2`` in one pass over the tiles: with
    ``gemm_columns``' tiles bit-identical to the two calls it replaces (the same BLAS
    calls); with its own whole-column tiles bit-identical for 1 and 2 threads and close to
    NumPy's products; ``S`` untouched; the shapes it does not handle are refused."""
    from threadpoolctl import threadpool_limits

    from pymegalmm.linalg import subtract_products

    rng = np.random.default_rng(95 + m + n)
    S, A1, B1, A2, B2 = (np.asfortranarray(rng.standard_normal(shape)) for shape in
                         ((m, n), (m, k1), (k1, n), (m, k2), (k2, n)))
    S_before = S.copy()
    with threadpool_limits(limits=1, user_api="blas"):
        ref1, ref2 = np.empty((m, n), order="F"), np.empty((m, n), order="F")
        K.gemm_columns(A1, B1, ref1, -1.0, 1.0, source=S)
        K.gemm_columns(A2, B2, ref2, -1.0, 1.0, source=ref1)
        for n_threads in (1, 2):
            K.set_num_threads(n_threads)
            C1, C2 = np.full((m, n), np.nan, order="F"), np.full((m, n), np.nan, order="F")
            K.subtract_two_products(S, A1, B1, C1, A2, B2, C2, K.GEMM_BLOCK, K.GEMM_ROW_BLOCK)
            assert np.array_equal(C1, ref1) and np.array_equal(C2, ref2)
            C1, C2 = np.full((m, n), np.nan, order="F"), np.full((m, n), np.nan, order="F")
            subtract_products(S, A1, B1, A2, B2, C1, C2)  # whole-column tiles
            if n_threads == 1:
                own = C1.copy(), C2.copy()
            assert np.array_equal(C1, own[0]) and np.array_equal(C2, own[1])
    assert np.array_equal(S, S_before)
    # with weights, the weighted sums of squares of C2's columns (the quadratic forms of
    # every grid point): in the tiles (whole columns) or, with row tiles, in a second pass
    W_T = np.ascontiguousarray(rng.random((m, 6)))
    expected = np.empty((n, 6))
    K.grid_sums_of_squares(C2, W_T, expected)
    for tiles in ({}, {"block": 16, "row_block": max(1, m // 2)}):
        sums = []
        with threadpool_limits(limits=1, user_api="blas"):
            for n_threads in (1, 2):
                K.set_num_threads(n_threads)
                D1, D2 = np.empty((m, n), order="F"), np.empty((m, n), order="F")
                out = np.full((n, 6), np.nan)
                K.subtract_two_products(S, A1, B1, D1, A2, B2, D2, weights=W_T, sums_out=out,
                                        **tiles)
                sums.append(out)
        assert np.array_equal(sums[0], sums[1])
        assert_close(sums[0], expected)
        if not tiles:
            in_tiles = sums[0]
    _, _, via_linalg = subtract_products(S, A1, B1, A2, B2, D1, D2, weights=W_T)
    assert np.array_equal(via_linalg, in_tiles)
    _assert_gemm_close(C1, A1, B1, -1.0, 1.0, S)
    _assert_gemm_close(C2, np.hstack([A1, A2]), np.vstack([B1, B2]), -1.0, 1.0, S)
    few = np.zeros((m, K.GEMV_MAX_COLUMNS), order="F")
    with pytest.raises(ValueError, match="more than"):
        K.subtract_two_products(few, A1, B1[:, :few.shape[1]].copy(order="F"), few.copy(order="F"),
                                A2, B2[:, :few.shape[1]].copy(order="F"), few.copy(order="F"))
    with pytest.raises(ValueError, match="shapes"):
        K.subtract_two_products(S, A1, B1, C1, A2, B2[:, 1:].copy(order="F"), C2)
    with pytest.raises(ValueError, match="both block sizes"):
        K.subtract_two_products(S, A1, B1, C1, A2, B2, C2, 16, 0)
