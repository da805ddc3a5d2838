"""The Metropolis-Hastings h2 step (``Control(h2_step_size=...)``, issue 11 item 6).

Invariance: ``C`` independent copies of one column, started from its exact discrete
conditional (computed over the whole grid), each take ``STEPS`` MH steps with the
residuals, ``tau`` and the prior fixed.  If the step leaves the conditional invariant
the ``C`` final grid indices are an i.i.d. sample from it (the copies use disjoint
uniforms), so Pearson's chi-square statistic against it is asymptotically chi-square
with ``cells - 1`` degrees of freedom (every cell's expected count is >= 5 here; cells
below are pooled).  The test fails below p = 1e-3: a false alarm rate of 0.1% for a
correct step (the seeds are fixed, so the outcome is deterministic).  The same test
with R MegaLMM's reversed Hastings correction (METHOD.md Q3), whose stationary
distribution is ``pi |N|^2`` instead of ``pi``, gives p < 1e-12: the test has power.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.stats as st

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.core.grid import make_h2_grid
from pymegalmm.core.h2_metropolis import grid_neighbourhoods, sample_grid_index_metropolis
from pymegalmm.core.random_effects import (
    DenseRandomEffects,
    DiagonalRandomEffect,
    LowRankRandomEffects,
)
from pymegalmm.errors import InputError, InputTypeError

COPIES = 20000
STEPS = 15
P_MIN = 1e-3


def _pd(r: int, rng: np.random.Generator) -> np.ndarray:
    A = rng.standard_normal((r, r + 5))
    return A @ A.T / (r + 5) + 0.1 * np.eye(r)


def one_effect(n: int = 12, divisions: int = 10):
    """A small one-random-effect back-end (few rows: a wide h2 posterior)."""
    rng = np.random.default_rng(1)
    grid = make_h2_grid(1, divisions)
    return DiagonalRandomEffect(np.eye(n), _pd(n, rng), np.eye(n), grid), grid


def two_effects(kind: type, n: int = 16, divisions: int = 6):
    """Two random effects (``n`` lines, 4 plots) on the low-rank or dense back-end."""
    rng = np.random.default_rng(2)
    grid = make_h2_grid(2, divisions)
    Z2 = np.zeros((n, 4))
    Z2[np.arange(n), np.arange(n) % 4] = 1.0
    return kind([np.eye(n), Z2], [_pd(n, rng), np.eye(4)], [np.eye(n), np.eye(4)],
                grid), grid


def exact_conditional(re, y: np.ndarray, tau: float, log_prior: np.ndarray) -> np.ndarray:
    """The column's discrete h2 conditional from every grid point."""
    SS = re.grid_quadratic_forms(np.asfortranarray(y[:, None]))[0]
    lp = log_prior - 0.5 * re.log_det - 0.5 * tau * SS
    p = np.exp(lp - lp.max())
    return p / p.sum()


def chi_square_p(counts: np.ndarray, p: np.ndarray) -> float:
    """Pearson chi-square p-value of ``counts`` against ``p`` (cells below 5 expected pooled)."""
    expected = counts.sum() * p
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(st.chisquare(obs[keep], exp[keep]).pvalue)


def run_copies(re, grid, y, tau, log_prior, nbhd, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``COPIES`` copies started from the exact conditional, after ``STEPS`` MH steps."""
    rng = np.random.default_rng(seed)
    p = exact_conditional(re, y, tau, log_prior)
    index = rng.choice(grid.shape[1], size=COPIES, p=p).astype(np.intp)
    E = np.asfortranarray(np.repeat(y[:, None], COPIES, axis=1))
    taus = np.full(COPIES, tau)
    for _ in range(STEPS):
        index = sample_grid_index_metropolis(re, E, index, taus, log_prior, nbhd, rng)
    return np.bincount(index, minlength=grid.shape[1]), p


def _data(re, n: int, seed: int) -> np.ndarray:
    return re.rotate(np.random.default_rng(seed).standard_normal((n, 1)))[:, 0]


@pytest.mark.parametrize("step", [0.15, 0.35])
def test_step_leaves_the_exact_conditional_invariant_one_effect(step):
    re, grid = one_effect()
    y = _data(re, 12, 4)
    log_prior = np.log(np.linspace(1.0, 2.0, grid.shape[1]))  # a non-flat prior
    counts, p = run_copies(re, grid, y, 1.3, log_prior, grid_neighbourhoods(grid, step))
    assert chi_square_p(counts, p) > P_MIN


@pytest.mark.parametrize("kind", [LowRankRandomEffects, DenseRandomEffects])
def test_step_leaves_the_exact_conditional_invariant_two_effects(kind):
    re, grid = two_effects(kind)
    y = _data(re, 16, 5)
    log_prior = np.zeros(grid.shape[1])
    counts, p = run_copies(re, grid, y, 0.8, log_prior, grid_neighbourhoods(grid, 0.34))
    assert chi_square_p(counts, p) > P_MIN


@pytest.mark.parametrize("which", ["one", "two"])
def test_the_reversed_hastings_correction_fails_the_invariance_test(which):
    """R's sign (METHOD.md Q3): the same test rejects it, so the test has power."""
    if which == "one":
        re, grid = one_effect()
        y, tau, step = _data(re, 12, 4), 1.3, 0.15
    else:
        re, grid = two_effects(LowRankRandomEffects)
        y, tau, step = _data(re, 16, 5), 0.8, 0.34
    nbhd = grid_neighbourhoods(grid, step)
    reversed_ = dataclasses.replace(nbhd, log_size=-nbhd.log_size)
    counts, p = run_copies(re, grid, y, tau, np.zeros(grid.shape[1]), reversed_)
    assert chi_square_p(counts, p) < 1e-12


def test_neighbourhoods_are_the_max_norm_balls_without_the_centre():
    grid = make_h2_grid(2, [4, 6])
    nbhd = grid_neighbourhoods(grid, 0.3)
    for g in range(grid.shape[1]):
        dist = np.abs(grid - grid[:, [g]]).max(axis=0)
        expected = np.flatnonzero((dist <= 0.3 + 1e-12) & (np.arange(grid.shape[1]) != g))
        got = nbhd.indices[nbhd.indptr[g]:nbhd.indptr[g + 1]]
        np.testing.assert_array_equal(got, expected)
        assert np.isclose(np.exp(nbhd.log_size[g]), expected.size)
    # on the spacing exactly: the nearest points along each axis count
    one = grid_neighbourhoods(make_h2_grid(1, 10), 0.1)
    assert list(one.indices[one.indptr[0]:one.indptr[1]]) == [1]
    assert list(one.indices[one.indptr[5]:one.indptr[6]]) == [4, 6]


@pytest.mark.parametrize("kind", ["diagonal", LowRankRandomEffects, DenseRandomEffects])
def test_quadratic_forms_at_one_point_equal_the_full_grid(kind):
    if kind == "diagonal":
        re, grid = one_effect()
        n = 12
    else:
        re, grid = two_effects(kind)
        n = 16
    rng = np.random.default_rng(7)
    E = np.asfortranarray(rng.standard_normal((n, 30)))
    index = rng.integers(0, grid.shape[1], 30).astype(np.intp)
    full = re.grid_quadratic_forms(E)[np.arange(30), index]
    np.testing.assert_allclose(re.quadratic_forms_at(E, index), full, rtol=1e-10)
    if kind is DenseRandomEffects:  # and against the definition, through V's factor
        L = re.chol_V[int(index[0])]
        np.testing.assert_allclose(E[:, 0] @ sla.cho_solve((L, True), E[:, 0]), full[0],
                                   rtol=1e-10)


def test_prior_weight_zero_is_never_entered_and_always_left():
    re, grid = one_effect()
    y = np.asfortranarray(np.repeat(_data(re, 12, 4)[:, None], 500, axis=1))
    nbhd = grid_neighbourhoods(grid, 0.25)
    log_prior = np.zeros(grid.shape[1])
    log_prior[[3, 4]] = -np.inf
    rng = np.random.default_rng(0)
    index = np.full(500, 3, dtype=np.intp)
    taus = np.ones(500)
    with np.errstate(all="raise"):  # as in the sampler
        for _ in range(20):  # a proposal of weight 0 is refused, any other accepted
            index = sample_grid_index_metropolis(re, y, index, taus, log_prior, nbhd, rng)
            assert not np.isin(index, 4).any()
    assert not np.isin(index, 3).any()  # left (P(20 proposals of 4 in a row) = 4^-20)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_h2_step_size_out_of_range_is_refused(bad):
    with pytest.raises(InputError, match="h2_step_size"):
        Control(h2_step_size=bad)


@pytest.mark.parametrize("bad", ["0.1", True, [0.1]])
def test_h2_step_size_not_a_number_is_refused(bad):
    with pytest.raises(InputTypeError, match="h2_step_size"):
        Control(h2_step_size=bad)


def test_h2_step_size_accepts_the_range_and_none():
    assert Control().h2_step_size is None
    assert Control(h2_step_size=1).h2_step_size == 1.0
    assert Control(h2_step_size=np.float64(0.05)).h2_step_size == 0.05


SIM = datasets.simulate_factor_data(n=80, t=5, k_true=2, seed=3)


def fit(step: float | None, n_iter: int, chains: int = 1, n_threads: int | None = None,
        burn: int = 0, seed: int = 1) -> MegaLMM:
    m = MegaLMM(SIM.Y, SIM.formula, data=SIM.data, relmat={"ID": SIM.K},
                control=Control(n_factors=2, h2_divisions=10, burn=burn, thin=1,
                                h2_step_size=step, n_threads=n_threads),
                seed=seed, verbose=False, chains=chains, processes=1)
    return m.sample(n_iter, progress=False)


def test_step_smaller_than_the_grid_spacing_is_refused_when_the_model_is_built():
    with pytest.raises(InputError, match="h2_step_size"):
        fit(0.05, 1)


def test_draws_do_not_depend_on_the_thread_count():
    a, b = fit(0.2, 25, n_threads=1), fit(0.2, 25, n_threads=2)
    for name in a.posterior.data_vars:
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values,
                                      err_msg=name)
    full = fit(None, 25, n_threads=1)  # and the step is used
    assert not np.array_equal(a.posterior["resid_h2"].values, full.posterior["resid_h2"].values)


def _batch_means(x: np.ndarray, batches: int = 10) -> tuple[float, float]:
    """Mean and its batch-means standard error; ``x`` is (chain, draw)."""
    c, d = x.shape
    b = x[:, :d - d % batches].reshape(c, batches, -1).mean(axis=2).ravel()
    return float(x.mean()), float(b.std(ddof=1) / np.sqrt(b.size))


def test_whole_fit_h2_means_agree_with_the_full_grid_sampler():
    """Posterior means of resid_h2 per trait with and without the MH step.

    4 chains x 1500 recorded iterations each (300 burn-in); the Monte Carlo standard
    error of each mean from 40 batch means (10 per chain, 150 iterations each, much
    longer than the h2 autocorrelation); the difference must lie within 4.5 combined
    standard errors for each of the 5 traits (a normal tail of 7e-6 per trait, leaving
    room for the error of the batch-means estimate).  F_h2 is not compared: the
    factors' labels are not identified across fits.
    """
    draws = {}
    for step in (None, 0.2):
        m = fit(step, 1800, chains=4, burn=300, seed=11)
        draws[step] = m.posterior["resid_h2"].values[:, :, 0, :]  # chain, draw, trait
    for j in range(SIM.Y.shape[1]):
        m0, se0 = _batch_means(draws[None][:, :, j])
        m1, se1 = _batch_means(draws[0.2][:, :, j])
        assert abs(m0 - m1) < 4.5 * np.hypot(se0, se1), (j, m0, m1, se0, se1)
