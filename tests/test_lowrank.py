"""The low-rank back-end (several random effects, Woodbury form) against dense algebra.

* quadratic forms, log-determinants and Gram statistics equal those of the dense
  back-end (one Cholesky factor per grid point) to 1e-10;
* the same against the slow references of ``reference.py``, and the effect draws
  against :func:`reference.ref_sample_lowrank_effects` on the same random numbers;
* the draws have exactly the dense back-end's conditional distribution (mean and
  covariance of the effects per level, computed from the affine map z -> draw);
* the kernel is bit-identical for 1 and 2 threads, and so is a whole fit;
* the back-end is chosen by the documented rule;
* a distributional check: posterior means of h2 with the low-rank and the dense
  back-end agree within Monte Carlo error.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import (
    ref_grid_sums_of_squares_lowrank,
    ref_lowrank_log_likelihood_terms,
    ref_sample_lowrank_effects,
)

import pymegalmm.core.precompute as precompute
from pymegalmm import Control, MegaLMM, datasets
from pymegalmm import _kernels as K
from pymegalmm.core.grid import make_h2_grid
from pymegalmm.core.memory import estimate_precompute_bytes
from pymegalmm.core.random_effects import DenseRandomEffects, LowRankRandomEffects
from pymegalmm.datasets import simulate_two_random_effects

TOL = 1e-10


def incidence(rng, n, levels):
    """``(n, levels)`` 0/1 incidence, every level used at least once."""
    idx = rng.permutation(np.resize(np.arange(levels), n))
    Z = np.zeros((n, levels))
    Z[np.arange(n), idx] = 1.0
    return Z


def random_pd(rng, r, jitter=0.1):
    A = rng.standard_normal((r, r + 3))
    K_ = A @ A.T / (r + 3) + jitter * np.eye(r)
    return K_ / np.mean(np.diag(K_))


def problem(seed, n=40, sizes=(20, 6), divisions=4, identity_from=1):
    """Designs, covariances, level maps and grid of a problem with ``len(sizes)`` effects.

    Effects from ``identity_from`` on have ``K = I`` (like plots); the others a
    random positive definite ``K``.
    """
    rng = np.random.default_rng(seed)
    Zs = [incidence(rng, n, r) for r in sizes]
    Ks = [np.eye(r) if m >= identity_from else random_pd(rng, r) for m, r in enumerate(sizes)]
    Ls = [np.eye(r) for r in sizes]
    grid = make_h2_grid(len(sizes), divisions)
    return Zs, Ks, Ls, grid


CASES = {
    "two effects": dict(seed=1),
    "largest effect second": dict(seed=2, sizes=(5, 30), identity_from=0),
    "three effects, correlated others": dict(seed=3, n=50, sizes=(25, 6, 4), divisions=3,
                                             identity_from=3),
    "more levels than rows": dict(seed=4, n=30, sizes=(45, 5)),
}


def backends(case):
    Zs, Ks, Ls, grid = problem(**CASES[case])
    return (DenseRandomEffects(Zs, Ks, Ls, grid), LowRankRandomEffects(Zs, Ks, Ls, grid),
            grid)


def column_parameters(lr, grid, index):
    """Per column: ``h1``, the proportion of each column of ``C``, ``e``."""
    return lr.h1[index], np.square(lr.a[index]), lr.e[index]


# ---------------------------------------------------------------------------
# Woodbury vs. dense: quadratic forms, log-determinants, Gram statistics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_woodbury_equals_dense(case):
    dense, lr, grid = backends(case)
    rng = np.random.default_rng(10)
    n, c = lr.n, 7
    E = np.asfortranarray(rng.standard_normal((n, c)))
    SS_dense = dense.grid_quadratic_forms(E)
    SS_lr = lr.grid_quadratic_forms(lr.rotate(E))
    np.testing.assert_allclose(SS_lr, SS_dense, rtol=TOL, atol=0)
    np.testing.assert_allclose(lr.log_det, dense.log_det, rtol=0, atol=TOL)
    X = rng.standard_normal((n, 3))
    index = rng.integers(0, grid.shape[1], c)
    a = dense.gram_stats(X, E, index)
    b = lr.gram_stats(lr.rotate(X), lr.rotate(E), index)
    np.testing.assert_array_equal(a.gram_index, b.gram_index)
    for got, want in ((b.gram, a.gram), (b.XtWy, a.XtWy), (b.yWy, a.yWy)):
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * np.abs(want).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_likelihood_terms_match_reference(case):
    _, lr, grid = backends(case)
    rng = np.random.default_rng(11)
    E = np.asfortranarray(rng.standard_normal((lr.n, 5)))
    d_rows = np.zeros(lr.n)
    d_rows[:lr.n_pos] = lr.d_coef[:lr.n_pos]
    all_points = np.arange(grid.shape[1])
    h1, h_cols, e = column_parameters(lr, grid, all_points)
    SS, log_det = ref_lowrank_log_likelihood_terms(E, d_rows, lr.C, h1, h_cols, e)
    np.testing.assert_allclose(lr.grid_quadratic_forms(E), SS, rtol=TOL, atol=0)
    np.testing.assert_allclose(lr.log_det, log_det, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_draws_match_reference(case):
    _, lr, grid = backends(case)
    rng = np.random.default_rng(12)
    G = grid.shape[1]
    index = np.concatenate([np.arange(G), rng.integers(0, G, 9)])  # every point, h = 0 too
    c = index.size
    E = np.asfortranarray(rng.standard_normal((lr.n, c)))
    tau = rng.gamma(4.0, 0.5, c)
    z = np.asfortranarray(rng.standard_normal((lr.n_coef, c)))
    base = np.asfortranarray(rng.standard_normal((lr.n, c)))
    v, resid = lr.sample_effects_and_residual(E, index, tau, z, base=base)
    h1, h_cols, e = column_parameters(lr, grid, index)
    want = ref_sample_lowrank_effects(E, lr.d_coef, lr.C, h1, h_cols, e, tau, z)
    np.testing.assert_allclose(v, want, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(lr.sample_effects(E, index, tau, z), v)
    np.testing.assert_allclose(resid, base - lr.genetic_values(v), rtol=TOL, atol=TOL)
    # an effect with h = 0 is exactly 0
    zero_first = grid[lr.diagonalised, index] == 0
    assert np.all(v[:lr.r1, zero_first] == 0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_draws_have_the_dense_conditional_distribution(case):
    """Mean and covariance of the effects per level: low rank == dense, for every grid point.

    A draw is affine in the standard normals ``z``: its mean is the draw at ``z = 0`` and
    its covariance ``J J'`` with ``J`` the draws at unit vectors minus the mean.
    """
    dense, lr, grid = backends(case)
    rng = np.random.default_rng(13)
    G = grid.shape[1]
    index = np.arange(G)
    E = np.asfortranarray(rng.standard_normal((lr.n, G)))
    tau = rng.gamma(4.0, 0.5, G)

    def moments(be, Erot):
        r = be.n_coef
        mean = be.to_levels(be.sample_effects(Erot, index, tau, np.zeros((r, G), order="F")))
        J = np.empty((r, mean.shape[0], G))
        for i in range(r):
            z = np.zeros((r, G), order="F")
            z[i] = 1.0
            J[i] = be.to_levels(be.sample_effects(Erot, index, tau, z)) - mean
        return mean, np.einsum("ilg,img->glm", J, J)

    mean_d, cov_d = moments(dense, E)
    mean_l, cov_l = moments(lr, lr.rotate(E))
    np.testing.assert_allclose(mean_l, mean_d, rtol=0, atol=TOL)
    np.testing.assert_allclose(cov_l, cov_d, rtol=0, atol=TOL)


def test_genetic_values_and_levels():
    dense, lr, _ = backends("three effects, correlated others")
    rng = np.random.default_rng(14)
    v = np.asfortranarray(rng.standard_normal((lr.n_coef, 4)))
    levels = lr.to_levels(v)  # formula order: the same level layout as the dense back-end
    assert levels.shape == (dense.to_levels_matrix.shape[0], 4)
    u = np.linalg.lstsq(dense.to_levels_matrix, levels, rcond=None)[0]
    np.testing.assert_allclose(lr.genetic_values_all_rows(v), dense.genetic_values(u),
                               rtol=TOL, atol=TOL)
    np.testing.assert_allclose(lr.unrotate(lr.genetic_values(v)), lr.genetic_values_all_rows(v),
                               rtol=TOL, atol=TOL)
    A = np.asfortranarray(rng.standard_normal((lr.n, 3)))
    np.testing.assert_allclose(lr.unrotate(lr.rotate(A)), A, rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    before = K.openmp_max_threads()
    yield
    K.set_num_threads(before)


def kernel_problem(seed, n=37, t=71, G=6, rank=5, n_pos=30, S=4):
    rng = np.random.default_rng(seed)
    E = np.asfortranarray(rng.standard_normal((n, t)))
    W_T = np.ascontiguousarray(rng.uniform(0.5, 2.0, (n, G)))
    U = np.asfortranarray(0.1 * rng.standard_normal((n_pos, S * rank)))
    C_rest = np.asfortranarray(0.1 * rng.standard_normal((n - n_pos, rank)))
    B = np.asfortranarray(rng.standard_normal((rank, rank, G)))
    s_index = rng.integers(0, S, G).astype(np.intp)
    return E, W_T, U, C_rest, B, s_index


def run_kernel(E, W_T, U, C_rest, B, s_index, **kwargs):
    out = np.empty((E.shape[1], W_T.shape[1]))
    K.grid_sums_of_squares_lowrank(E, W_T, U, C_rest, B, s_index, out, **kwargs)
    return out


@pytest.mark.parametrize("shape", [dict(), dict(t=1), dict(rank=0), dict(n=3, n_pos=3, t=40, G=1),
                                   dict(t=64, rank=1), dict(n_pos=0), dict(n_pos=37, S=1)])
def test_kernel_matches_reference(shape):
    args = kernel_problem(20, **shape)
    np.testing.assert_allclose(run_kernel(*args), ref_grid_sums_of_squares_lowrank(*args),
                               rtol=TOL, atol=1e-12)


def test_kernel_without_rank_equals_diagonal_kernel():
    E, W_T, U, C_rest, B, s_index = kernel_problem(21, rank=0)
    for block in (1, 5, 32):  # the same tiles: the same products to the last bit
        a = np.empty((E.shape[1], W_T.shape[1]))
        K.grid_sums_of_squares(E, W_T, a, block=block)
        np.testing.assert_array_equal(run_kernel(E, W_T, U, C_rest, B, s_index, block=block), a)


def test_kernel_rejects_bad_shapes():
    E, W_T, U, C_rest, B, s_index = kernel_problem(22)
    out = np.empty((E.shape[1], W_T.shape[1]))
    with pytest.raises(ValueError, match="must be"):
        K.grid_sums_of_squares_lowrank(E, W_T, U, np.asfortranarray(C_rest[1:]), B, s_index, out)
    with pytest.raises(ValueError, match="out of range"):
        K.grid_sums_of_squares_lowrank(E, W_T, U, C_rest, B, s_index + 4, out)
    with pytest.raises(ValueError, match="inconsistent"):
        K.grid_sums_of_squares_lowrank(E, W_T, U, C_rest, B, s_index, out[:-1])


def test_kernel_thread_bit_identical(restore_threads):
    args = kernel_problem(23, n=50, n_pos=41, t=203, G=9, rank=7)
    results = []
    for n_threads in (1, 2):
        K.set_num_threads(n_threads)
        results.append(run_kernel(*args))
    np.testing.assert_array_equal(results[0], results[1])


def test_grid_points_share_diagonal_parts():
    _, lr, grid = backends("two effects")
    s = lr.h1 / lr.e
    assert lr.n_diagonals == len(np.unique(np.round(s, 10))) < grid.shape[1]
    np.testing.assert_allclose(s, np.unique(np.round(s, 10))[lr.s_index], rtol=1e-9)


# ---------------------------------------------------------------------------
# Choice of back-end, memory
# ---------------------------------------------------------------------------


def test_backend_rule():
    assert precompute.backend_kind([100], 50) == "diagonal"
    assert precompute.backend_kind([500, 40], 500) == "lowrank"
    assert precompute.backend_kind([40, 500], 500) == "lowrank"  # the largest is diagonalised
    assert precompute.backend_kind([500, 125], 500) == "lowrank"  # r_o = n / 4
    assert precompute.backend_kind([500, 126], 500) == "dense"
    assert precompute.backend_kind([300, 60, 70], 500) == "dense"


def two_effect_model(n_plots=10, **kwargs):
    sim = simulate_two_random_effects(n_lines=30, n_reps=2, n_plots=n_plots, t=4, seed=5,
                                      n_markers=200)
    Y = kwargs.pop("Y", sim.Y)
    return sim, MegaLMM(Y, sim.formula, data=sim.data, relmat={"Line": sim.K}, n_factors=2,
                        h2_divisions=4, verbose=False, **kwargs)


def test_model_chooses_lowrank_or_dense():
    _, m = two_effect_model(n_plots=10)  # 10 plots <= 60 / 4
    assert isinstance(m.data.groups[0].re, LowRankRandomEffects)
    _, m = two_effect_model(n_plots=20)  # 20 plots > 15
    assert isinstance(m.data.groups[0].re, DenseRandomEffects)


def test_memory_estimate_lowrank_below_dense():
    lr = estimate_precompute_bytes(500, 540, 55, 2, low_rank=40)
    dense = estimate_precompute_bytes(500, 540, 55, 2)
    assert lr < dense / 5
    _, m = two_effect_model()
    re = m.data.groups[0].re
    assert not hasattr(re, "Qt")  # Q' X reads Q transposed in place
    stored = sum(a.nbytes for a in (re.Q, re.W, re.W_T, re.H, re.R, re.C, re.U, re.B))
    assert stored <= estimate_precompute_bytes(re.n, re.n_coef, m.grid.shape[1], 2,
                                               low_rank=re.rank)


def test_memory_estimate_covers_the_diagonal_back_end():
    """One random effect: every n x n, n x r, r x r and G x n array the back-end keeps is
    counted (an earlier estimate counted Q and W but not their transposes; Q' X now reads
    Q transposed in place, so no transpose of Q is kept)."""
    sim = datasets.simulate_factor_data(n=80, t=4, k_true=1, n_markers=100, seed=1)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=2,
                h2_divisions=10, burn=0, seed=1, verbose=False)
    re = m.data.groups[0].re
    assert not hasattr(re, "Qt")
    stored = sum(a.nbytes for a in (re.Q, re.Z_all, re.W, re.W_T, re.to_levels_matrix))
    estimate = estimate_precompute_bytes(re.n, re.r, m.grid.shape[1], 1)
    assert stored <= estimate <= 1.1 * stored


# ---------------------------------------------------------------------------
# Whole fits
# ---------------------------------------------------------------------------


def test_fit_draws_independent_of_threads():
    def fit(n_threads):
        _, m = two_effect_model(seed=3, burn=2, thin=1, control=Control(n_threads=n_threads))
        m.sample(8, progress=False)
        post = m.posterior
        return {name: post[name].values for name in ("Lambda", "U_R", "U_F", "resid_h2",
                                                     "F_h2", "tot_Eta_prec")}

    one, two = fit(1), fit(2)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_fit_with_missing_cells():
    sim, _ = two_effect_model()
    Y = sim.Y.copy()
    rng = np.random.default_rng(0)
    Y = Y.mask(rng.random(Y.shape) < 0.2)
    _, m = two_effect_model(Y=Y, seed=4, burn=5, thin=1)
    assert isinstance(m.data.groups[0].re, LowRankRandomEffects)
    m.sample(15, progress=False)
    assert np.all(np.isfinite(m.posterior["U_R"].values))
    assert np.all(np.isfinite(m.posterior_means["Eta_mean"].values))


def batch_means_se(x, n_batches=40):
    """Monte Carlo standard error of the mean of each column of ``x`` by batch means."""
    usable = x.shape[0] // n_batches * n_batches
    means = x[:usable].reshape(n_batches, -1, *x.shape[1:]).mean(axis=1)
    return means.std(axis=0, ddof=1) / np.sqrt(n_batches)


def test_h2_posterior_means_match_dense(monkeypatch):
    """Both back-ends sample the same posterior: h2 means within Monte Carlo error.

    Same data, independent chains of 4,000 draws after 200 burn-in.  For each trait
    and component the difference of the two posterior means over its standard error
    (batch means, 40 batches of 100 draws per chain) is approximately standard normal,
    so ``|diff| <= 4.5 se`` fails by chance with probability about 7e-6 per
    comparison, 1e-4 over the 16 made here (the batch-means estimate of se is itself
    uncertain by about 11 %, which the wide bound absorbs).  Observed: |diff| / se at
    most 1.5, and se of the difference 0.003-0.009, so a systematic error of 0.045 in
    any h2 mean would fail.  The conditionals themselves are checked exactly
    above (quadratic forms, log-determinants and effect draws against dense algebra);
    this checks that the pieces make the same sampler.
    """
    sim = simulate_two_random_effects(n_lines=40, n_reps=2, n_plots=10, t=8, seed=6,
                                      n_markers=200)
    kwargs = dict(data=sim.data, relmat={"Line": sim.K}, n_factors=1, h2_divisions=5,
                  burn=200, thin=1, verbose=False, record=("resid_h2",),
                  control=Control(n_threads=1))

    def h2_draws(seed):
        m = MegaLMM(sim.Y, sim.formula, seed=seed, **kwargs)
        m.sample(4200, progress=False)
        return type(m.data.groups[0].re), m.posterior["resid_h2"].values[0]  # (draw, comp, t)

    kind_lr, lr = h2_draws(31)
    monkeypatch.setattr(precompute, "LOWRANK_MAX_FRACTION", -1.0)  # force the dense back-end
    kind_dense, dense = h2_draws(32)
    assert kind_lr is LowRankRandomEffects and kind_dense is DenseRandomEffects
    assert lr.shape[0] == dense.shape[0] == 4000
    diff = lr.mean(axis=0) - dense.mean(axis=0)
    se = np.sqrt(batch_means_se(lr) ** 2 + batch_means_se(dense) ** 2)
    assert np.all(np.abs(diff) <= 4.5 * se), (diff, se)
