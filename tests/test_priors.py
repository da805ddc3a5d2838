"""Priors: defaults from R MegaLMM, h2 priors as callables or weights, validation."""

from __future__ import annotations

import numpy as np
import pytest

from pymegalmm import MegaLMM, Priors, datasets
from pymegalmm.precompute import h2_log_prior, make_h2_grid
from pymegalmm.priors import ARDPrior, VariancePrior


def test_defaults_follow_r_megalmm_vignette():
    p = Priors()
    assert (p.tot_Y_var.shape, p.tot_Y_var.rate) == (4.0, 2.5)  # V = 0.5, nu = 5
    assert p.tot_F_var.shape == pytest.approx(19.0) and p.tot_F_var.rate == pytest.approx(18.0)
    ard = p.Lambda_prior
    assert ard.Lambda_df == 3 and ard.delta_iterations_factor == 100
    assert (ard.delta_1.shape, ard.delta_1.rate) == (2, 1)
    assert (ard.delta_2.shape, ard.delta_2.rate) == (3, 1)


def test_grid_matches_megalmm():
    assert np.allclose(make_h2_grid(1, 20)[0], np.arange(20) / 20)
    grid = make_h2_grid(2, 6)
    assert np.all(grid.sum(axis=0) < 1 - 1e-12)  # exact rule: no (5/6, 1/6) (R's Q8)
    assert grid.shape[1] == 21  # pairs (i, j) with i + j < 6


def test_h2_prior_callable_and_weights_pin_the_draws():
    sim = datasets.simulate_factor_data(n=60, t=4, k_true=1, seed=2)
    grid = make_h2_grid(1, 10)
    only_half = (np.abs(grid[0] - 0.5) < 1e-12).astype(float)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=2,
                h2_divisions=10, burn=0, thin=1, seed=1, verbose=False,
                priors=Priors(h2_prior_resids=lambda g: (np.abs(g[0] - 0.5) < 1e-12) * 1.0,
                              h2_prior_factors=only_half))
    m.sample(20, progress=False)
    post = m.posterior
    assert np.all(post["resid_h2"].values == 0.5)
    assert np.all(post["F_h2"].values == 0.5)


def test_invalid_priors_raise():
    grid = make_h2_grid(1, 5)
    with pytest.raises(ValueError, match="one weight per grid point"):
        h2_log_prior(np.ones(3), grid, "h2_prior_resids")
    with pytest.raises(ValueError, match="non-negative"):
        h2_log_prior(-np.ones(5), grid, "h2_prior_resids")
    with pytest.raises(ValueError, match="nu must be > 1"):
        VariancePrior(0.5, 1.0)
    with pytest.raises(ValueError, match="Lambda_df"):
        ARDPrior(Lambda_df=0)
