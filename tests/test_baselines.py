"""Tests of the univariate GBLUP/REML baseline against statsmodels and dense formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from pymegalmm.baselines import GBLUPResult, gblup, gblup_all
from pymegalmm.datasets import simulate_factor_data, simulate_met, to_wide

LOG_2PI = np.log(2.0 * np.pi)


# --------------------------------------------------------------------------------------
# dense reference implementation
# --------------------------------------------------------------------------------------


def dense_reml(sigma2_g: float, sigma2_e: float, y, X, K, Z) -> float:
    """Exact REML log-likelihood, -1/2 [(n-p) log 2pi + log|V| + log|X'V^-1X| + y'Py]."""
    n, p = X.shape
    V = sigma2_g * Z @ K @ Z.T + sigma2_e * np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    return -0.5 * (
        (n - p) * LOG_2PI
        + np.linalg.slogdet(V)[1]
        + np.linalg.slogdet(XtViX)[1]
        + y @ P @ y
    )


def dense_blup(sigma2_g, sigma2_e, y, X, K, Z):
    """GLS beta and u = sigma2_g K Z' V^-1 (y - X beta), densely."""
    V = sigma2_g * Z @ K @ Z.T + sigma2_e * np.eye(len(y))
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    return beta, sigma2_g * K @ Z.T @ Vi @ (y - X @ beta)


@pytest.fixture(scope="module")
def small_problem():
    """40 levels with a marker-based K; 8 levels have no data, the rest 1-3 rows each."""
    rng = np.random.default_rng(11)
    q = 40
    geno = rng.binomial(2, rng.uniform(0.1, 0.9, 150), size=(q, 150)).astype(float)
    W = geno - geno.mean(axis=0)
    K = W @ W.T / W.shape[1]
    K = K / np.mean(np.diag(K)) + 0.01 * np.eye(q)
    observed_levels = np.arange(8, q)
    reps = rng.integers(1, 4, observed_levels.size)
    level_of_row = np.repeat(observed_levels, reps)
    n = level_of_row.size
    Z = np.zeros((n, q))
    Z[np.arange(n), level_of_row] = 1.0
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    u = np.linalg.cholesky(K) @ rng.standard_normal(q)
    y = X @ np.array([2.0, -0.7]) + Z @ u + rng.normal(0.0, np.sqrt(0.5), n)
    return y, X, K, Z


# --------------------------------------------------------------------------------------
# (a) statsmodels, iid random intercept
# --------------------------------------------------------------------------------------


def test_matches_statsmodels_mixedlm_iid_groups():
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(1)
    n_groups, per_group = 30, 5
    grp = np.repeat(np.arange(n_groups), per_group)
    n = grp.size
    x = rng.standard_normal(n)
    y = 1.0 + 0.5 * x + 0.8 * rng.standard_normal(n_groups)[grp] + rng.standard_normal(n)
    Z = np.zeros((n, n_groups))
    Z[np.arange(n), grp] = 1.0
    X = np.column_stack([np.ones(n), x])

    res = gblup(y, X, np.eye(n_groups), Z)

    df = pd.DataFrame({"y": y, "x": x, "g": grp})
    with warnings.catch_warnings():
        # statsmodels warns about the tight tolerance (precision loss / convergence);
        # the comparison below is what matters.
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ x", df, groups="g").fit(reml=True, method="bfgs", gtol=1e-10)
    sm_ratio = float(np.asarray(fit.cov_re)[0, 0]) / fit.scale
    # Both maximise the same REML likelihood; with gtol=1e-10 statsmodels lands within
    # ~1e-7 of our optimum, so 1e-4 relative is a safe bound on the variance ratio.
    assert res.ratio == pytest.approx(sm_ratio, rel=1e-4)
    # Fixed effects are GLS at (almost) the same ratio: they agree to ~1e-8.
    np.testing.assert_allclose(res.beta, fit.fe_params.to_numpy(), rtol=1e-5, atol=1e-6)
    # statsmodels' llf uses the same REML constant; ours is the (tighter) maximum.
    assert res.loglik == pytest.approx(fit.llf, abs=1e-6)
    assert res.loglik >= fit.llf - 1e-9
    assert res.sigma2_g / res.sigma2_e == pytest.approx(res.ratio)
    assert res.h2 == pytest.approx(res.sigma2_g / (res.sigma2_g + res.sigma2_e))


# --------------------------------------------------------------------------------------
# (b) brute-force two-parameter REML
# --------------------------------------------------------------------------------------


def test_matches_brute_force_two_parameter_reml(small_problem):
    y, X, K, Z = small_problem

    def neg(theta):
        return -dense_reml(np.exp(theta[0]), np.exp(theta[1]), y, X, K, Z)

    grid = np.linspace(-5.0, 2.0, 36)
    values = np.array([[neg((a, b)) for b in grid] for a in grid])
    ia, ib = np.unravel_index(np.argmin(values), values.shape)
    opt = scipy.optimize.minimize(
        neg,
        x0=[grid[ia], grid[ib]],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000, "maxfev": 20000},
    )
    s2g, s2e = np.exp(opt.x)

    res = gblup(y, X, K, Z)
    # Nelder-Mead converges to ~1e-9 in log-variances; our Brent search is at 1e-10 in h2,
    # so the ratio agrees far inside 1e-4 relative.
    assert res.ratio == pytest.approx(s2g / s2e, rel=1e-4)
    assert res.sigma2_g == pytest.approx(s2g, rel=1e-4)
    assert res.sigma2_e == pytest.approx(s2e, rel=1e-4)
    # The log-likelihood is flat at the optimum: second-order in the parameter error.
    assert res.loglik == pytest.approx(-opt.fun, abs=1e-7)
    assert res.loglik == pytest.approx(dense_reml(res.sigma2_g, res.sigma2_e, y, X, K, Z),
                                       abs=1e-9)


def test_loglik_is_a_maximum(small_problem):
    y, X, K, Z = small_problem
    res = gblup(y, X, K, Z)
    for fg, fe in [(1.01, 1.0), (0.99, 1.0), (1.0, 1.01), (1.0, 0.99), (1.02, 0.98)]:
        assert res.loglik >= dense_reml(res.sigma2_g * fg, res.sigma2_e * fe, y, X, K, Z)


# --------------------------------------------------------------------------------------
# (c) BLUPs, including levels without data
# --------------------------------------------------------------------------------------


def test_blup_matches_dense_formula_and_conditional(small_problem):
    y, X, K, Z = small_problem
    res = gblup(y, X, K, Z)
    beta, u = dense_blup(res.sigma2_g, res.sigma2_e, y, X, K, Z)
    # Same estimator computed two ways (eigenbasis vs dense inverse): round-off only.
    np.testing.assert_allclose(res.beta, beta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.u, u, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(res.fitted, X @ res.beta + Z @ res.u, rtol=1e-10, atol=1e-10)

    # Levels without data (0..7) are the conditional expectation given the observed levels.
    unobs, obs = np.arange(8), np.arange(8, K.shape[0])
    cond = K[np.ix_(unobs, obs)] @ np.linalg.solve(K[np.ix_(obs, obs)], res.u[obs])
    np.testing.assert_allclose(res.u[unobs], cond, rtol=1e-6, atol=1e-8)
    assert np.all(res.u[unobs] != 0.0)


def test_nan_rows_equal_explicit_subset():
    rng = np.random.default_rng(5)
    q = 30
    A = rng.standard_normal((q, 60))
    K = A @ A.T / 60 + 0.05 * np.eye(q)
    y = np.linalg.cholesky(K) @ rng.standard_normal(q) + rng.standard_normal(q)
    y[[2, 7, 19]] = np.nan
    labels = [f"L{i:02d}" for i in range(q)]
    res = gblup(pd.Series(y, index=labels), None, pd.DataFrame(K, index=labels, columns=labels))
    obs = np.isfinite(y)
    Z = np.eye(q)[obs]
    ref = gblup(y[obs], np.ones((obs.sum(), 1)), K, Z)
    assert isinstance(res.u, pd.Series) and list(res.u.index) == labels
    np.testing.assert_allclose(res.u.to_numpy(), ref.u, rtol=1e-9, atol=1e-12)
    assert res.ratio == pytest.approx(ref.ratio, rel=1e-9)
    assert res.fitted.shape == (obs.sum(),)
    np.testing.assert_array_equal(res.observed, obs)


def test_unusable_fixed_effect_columns_are_dropped(small_problem):
    y, X, K, Z = small_problem
    n = len(y)
    y = y.copy()
    pop_dummy = np.zeros(n)
    pop_dummy[:5] = 1.0
    y[:5] = np.nan  # the only rows with the dummy are unobserved
    X3 = np.column_stack([X, pop_dummy, 3.0 * np.ones(n)])  # plus a copy of the intercept
    res = gblup(y, X3, K, Z)
    ref = gblup(y, X, K, Z)
    assert res.dropped == (2, 3)
    assert res.beta[2] == 0.0 and res.beta[3] == 0.0
    np.testing.assert_allclose(res.beta[:2], ref.beta, rtol=1e-10)
    assert res.ratio == pytest.approx(ref.ratio, rel=1e-10)


def test_boundary_no_genetic_signal():
    # Pure noise: the REML optimum is on the boundary sigma2_g = 0. It is reported at
    # h2 = 1e-9 (as rrBLUP bounds the variance ratio), so the BLUPs are tiny but keep the
    # ranking of the limit h2 -> 0+, proportional to K (y - X beta).
    rng = np.random.default_rng(3)
    q = 50
    A = rng.standard_normal((q, 80))
    K = A @ A.T / 80 + 0.01 * np.eye(q)
    res = None
    for seed in range(20):
        y = np.random.default_rng(seed).standard_normal(q)
        res = gblup(y, None, K)
        if res.h2 < 1e-6:
            break
    assert isinstance(res, GBLUPResult)
    assert res.h2 == pytest.approx(1e-9, rel=1e-6)
    u = np.asarray(res.u)
    assert 0 < np.abs(u).max() < 1e-6
    limit = K @ (y - y.mean())
    assert np.corrcoef(u, limit)[0, 1] > 0.999
    assert res.loglik == pytest.approx(dense_reml(1e-9 * res.sigma2_e / (1 - 1e-9),
                                                  res.sigma2_e, y, np.ones((q, 1)), K,
                                                  np.eye(q)), abs=1e-6)


# --------------------------------------------------------------------------------------
# (d) many traits
# --------------------------------------------------------------------------------------


def test_gblup_all_recovers_genetic_values():
    sim = simulate_factor_data(n=200, t=5, k_true=2, n_markers=500, missing=0.2, seed=1)
    pred = gblup_all(sim.Y, sim.data, sim.K, formula=sim.formula)
    assert list(pred.index) == list(sim.K.index)
    assert list(pred.columns) == list(sim.Y.columns)
    assert np.all(np.isfinite(pred.to_numpy()))
    U = sim.truth["U"]
    corr = [np.corrcoef(pred[c], U[c])[0, 1] for c in sim.Y.columns]
    # Trait heritabilities are >= 0.26 by construction (and ~0.6 typically). For the 80%
    # observed individuals the BLUP is a shrunken phenotype, correlating ~sqrt(h2) >= 0.5
    # with U; with n = 200 the sampling SD of a correlation is ~0.06, so 0.3 is > 3 SD
    # below the worst expected value.
    assert min(corr) > 0.3, corr

    # Same numbers as fitting one trait with gblup directly.
    one = gblup(sim.Y["T03"], None, sim.K)
    np.testing.assert_allclose(pred["T03"].to_numpy(), one.u.to_numpy(), rtol=1e-9, atol=1e-12)


def test_gblup_all_met_with_group_and_population():
    sim = simulate_met(n_lines=60, n_envs=6, envs_per_line=(2, 4), n_markers=300, seed=2)
    Y, data = to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    # Force an environment with only population 1 observed: Population is then constant
    # there and must be dropped rather than breaking the fit.
    pop2 = data["Population"].to_numpy() == 2
    Y.loc[pop2, "Env01"] = np.nan
    pred = gblup_all(Y, data, sim.K, formula=sim.formula)  # group "Line" from (1|Line)
    assert pred.shape == (60, 6)
    assert np.all(np.isfinite(pred.to_numpy()))
    # Explicit group and a reordered data frame give the same answer.
    pred2 = gblup_all(Y, data.iloc[::-1], sim.K, formula="~ Population", group="Line")
    pd.testing.assert_frame_equal(pred, pred2)


# --------------------------------------------------------------------------------------
# (e) errors
# --------------------------------------------------------------------------------------


def test_errors_gblup(small_problem):
    y, X, K, Z = small_problem
    n = len(y)
    with pytest.raises(ValueError, match="one row per element of y"):
        gblup(y, X[:-1], K, Z)
    with pytest.raises(ValueError, match="square"):
        gblup(y, X, K[:, :-1], Z)
    K_asym = K.copy()
    K_asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        gblup(y, X, K_asym, Z)
    with pytest.raises(ValueError, match="Z must have shape"):
        gblup(y, X, K, Z[:, :-1])
    with pytest.raises(ValueError, match="without Z"):
        gblup(y, X, K)
    with pytest.raises(ValueError, match="one-dimensional"):
        gblup(np.column_stack([y, y]), X, K, Z)
    y_few = np.full(n, np.nan)
    y_few[:2] = 1.0
    with pytest.raises(ValueError, match="at least 3"):
        gblup(y_few, X, K, Z)
    X_nan = X.copy()
    X_nan[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gblup(y, X_nan, K, Z)
    with pytest.raises(ValueError, match="no variation"):
        gblup(np.full(n, 2.0), X, K, Z)
    labels = [f"L{i}" for i in range(K.shape[0])]
    with pytest.raises(ValueError, match="identical index and columns"):
        gblup(y, X, pd.DataFrame(K, index=labels, columns=labels[::-1]), Z)
    K_df = pd.DataFrame(K, index=labels, columns=labels)
    y_lev = pd.Series(np.arange(K.shape[0], dtype=float), index=labels[::-1])
    with pytest.raises(ValueError, match="align them first"):
        gblup(y_lev, None, K_df)


def test_errors_gblup_all():
    sim = simulate_factor_data(n=30, t=3, k_true=1, n_markers=100, seed=4)
    Y, data, K = sim.Y, sim.data, sim.K
    renamed = Y.rename(index=lambda s: s.replace("ID", "X"))
    with pytest.raises(ValueError, match="not a subset of K.index"):
        gblup_all(renamed, data.set_axis(renamed.index), K)
    bad_data = data.copy()
    bad_data.loc[bad_data.index[0], "ID"] = "nobody"
    with pytest.raises(ValueError, match="not in K.*nobody"):
        gblup_all(Y, bad_data, K, group="ID")
    with pytest.raises(KeyError, match="Block"):
        gblup_all(Y, data, K, group="Block")
    with pytest.raises(ValueError, match="unsupported term"):
        gblup_all(Y, data, K, formula="~ 1 + (0 + x|ID)")
    with pytest.raises(ValueError, match="one random effect"):
        gblup_all(Y, data.assign(B=data["ID"]), K, formula="~ (1|ID) + (1|B)")
    with pytest.raises(ValueError, match="fixed effects"):
        gblup_all(Y, data, K, formula="~ not_a_column")
    Y_sparse = Y.copy()
    Y_sparse.iloc[2:, 1] = np.nan
    with pytest.raises(ValueError, match="'T02'.*at least 3"):
        gblup_all(Y_sparse, data, K)
    with pytest.raises(ValueError, match="non-numeric"):
        gblup_all(Y.assign(T09="a"), data, K)
    with pytest.raises(ValueError, match="same index labels"):
        gblup_all(Y, data.iloc[:-1], K)
