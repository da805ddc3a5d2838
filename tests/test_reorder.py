"""reorder_factors: zero correlated factors, sort by size, permute consistently."""

from __future__ import annotations

import numpy as np
import pytest

from pymegalmm import MegaLMM, datasets
from pymegalmm.linalg import sampling_threads
from pymegalmm.sampler import reorder_factors


@pytest.fixture(scope="module")
def model():
    sim = datasets.simulate_factor_data(n=150, t=12, k_true=3, seed=4)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=6,
                h2_divisions=10, burn=0, thin=1, seed=4, verbose=False)
    m.sample(80, progress=False)
    return m


def test_factors_sorted_and_parameters_permuted_together(model):
    s, d = model.states[0], model.data
    before = {name: getattr(s, name).copy() for name in
              ("Lambda", "QtF", "U_F", "tot_F_prec", "F_h2_index")}
    with sampling_threads():
        order = reorder_factors(s, d, drop_cor_threshold=1.0)  # nothing dropped
    assert sorted(order.tolist()) == list(range(d.n_factors))
    np.testing.assert_array_equal(s.Lambda, before["Lambda"][order])
    np.testing.assert_array_equal(s.QtF, before["QtF"][:, order])
    np.testing.assert_array_equal(s.U_F, before["U_F"][:, order])
    np.testing.assert_array_equal(s.tot_F_prec, before["tot_F_prec"][order])
    np.testing.assert_array_equal(s.F_h2_index, before["F_h2_index"][order])
    F = d.factor_re.unrotate(s.QtF)
    size = np.square(s.Lambda).sum(axis=1) * np.square(F).mean(axis=0)
    assert np.all(np.diff(size) <= 1e-12)
    assert s.delta[0] > 0 and np.all(s.delta[1:] >= 1.0)


def test_correlated_factor_is_zeroed_and_goes_last(model):
    s, d = model.states[0], model.data
    s.QtF[:, 4] = 3.0 * s.QtF[:, 1] + 1e-6 * s.QtF[:, 2]  # near-copy of factor 1
    with sampling_threads():
        reorder_factors(s, d, drop_cor_threshold=0.6)
    F = d.factor_re.unrotate(s.QtF)
    assert np.all(F[:, -1] == 0.0)
    assert np.all(np.abs(F[:, :-1]).max(axis=0) > 0)


def test_model_reorder_clears_draws_and_moves_burn(model):
    model.sample(10, progress=False)
    assert model.n_draws > 0
    model.reorder_factors()
    assert model.n_draws == 0
    assert model.control.burn == model.states[0].nrun
    model.sample(4, progress=False)
    assert model.n_draws == 4
    with pytest.raises(ValueError, match="drop_cor_threshold"):
        model.reorder_factors(0.0)


def test_burn_in_rounds_record_nothing(model):
    n0 = model.states[0].nrun
    model.burn_in(rounds=2, iterations=5, progress=False)
    assert model.states[0].nrun == n0 + 10
    assert model.n_draws == 0
