"""Missing-data maps inside the model: kernel, agreement with full imputation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pymegalmm import MegaLMM, _kernels, datasets
from pymegalmm.demo import accuracy, mask_cells
from pymegalmm.missing import best_map, full_imputation_map
from pymegalmm.sampler import RowPatterns, sample_factor_scores


def test_pattern_kernel_matches_per_pattern_numpy():
    rng = np.random.default_rng(8)
    n, t, k = 40, 9, 4
    used = rng.random((n, t)) < 0.6
    used[:5] = False  # rows informed by no trait: prior only
    used[5:15] = True
    pat = RowPatterns.from_mask(used)
    E = np.asfortranarray(rng.normal(size=(n, t)))
    Lam = np.asfortranarray(rng.normal(size=(k, t)))
    psi, omega = rng.gamma(2.0, size=t), rng.gamma(3.0, size=k)
    M = np.asfortranarray(rng.normal(size=(n, k)))
    z = np.asfortranarray(rng.normal(size=(n, k)))
    F = np.empty((n, k), order="F")
    assert _kernels.sample_factor_scores_by_pattern(E, Lam, psi, M, omega, z, pat.used,
                                                    pat.start, pat.rows, F) == 0
    for i in range(n):
        cols = np.flatnonzero(used[i])
        ref = sample_factor_scores(E[[i]][:, cols], Lam[:, cols], psi[cols], M[[i]], omega,
                                   z[[i]])
        np.testing.assert_allclose(F[i], ref[0], rtol=1e-10, atol=1e-12)
    assert sorted(pat.rows.tolist()) == list(range(n))


@pytest.fixture(scope="module")
def met():
    sim = datasets.simulate_met(n_lines=300, n_envs=10, seed=2)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    mask = mask_cells(Y, 0.2, np.random.default_rng(2))
    return sim, Y, data, mask


def _fit(met, use_map: bool, seed: int = 3):
    sim, Y, data, mask = met
    m = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                n_factors=8, h2_divisions=20, burn=0, seed=seed, verbose=False)
    if use_map:
        maps, table = m.missing_data_maps(10)
        m.set_missing_data_map(maps[best_map(maps, table)])
    m.burn_in(rounds=3, iterations=100, progress=False)
    m.sample(1000, progress=False)
    return m


def test_best_map_predicts_like_full_imputation_with_far_fewer_imputed_cells(met):
    sim, Y, data, mask = met
    full, mapped = _fit(met, False), _fit(met, True)
    observed = ~np.isnan(full.design.Y)
    n_full = full_imputation_map(observed).n_imputed(observed)
    n_map = sum(g.imputed[0].size for g in mapped.data.groups)
    assert len(mapped.data.groups) > 1
    assert n_map < 0.2 * n_full  # measured: 110 of 1215 cells
    a, b = full.predict(), mapped.predict()
    assert not np.isnan(b.values).any()  # predicted-only cells are predicted too
    # Two chains of the same posterior: predictions of the hidden cells agree up to Monte
    # Carlo error (measured mean |diff| 0.018 against a trait SD of 0.56; correlation 0.99).
    diff = np.abs(a.values - b.values)[mask.values]
    assert diff.mean() < 0.1 * np.nanstd(Y.values)
    assert np.corrcoef(a.values[mask.values], b.values[mask.values])[0, 1] > 0.95
    acc_full = accuracy(a, Y, mask).mean()
    acc_map = accuracy(b, Y, mask).mean()
    assert abs(acc_full - acc_map) < 0.05  # measured 0.442 vs 0.437


def test_map_only_before_sampling_and_validated(met):
    sim, Y, data, mask = met
    m = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                n_factors=3, h2_divisions=5, burn=0, seed=1, verbose=False)
    maps, table = m.missing_data_maps(4)
    assert len(maps) == len(table) and table["n_imputed"].is_monotonic_decreasing
    assert m.estimate_memory_initialization() > 0
    m.set_missing_data_map(maps[-1])
    assert len(m.data.groups) == table["n_groups"].iloc[-1]
    m.sample(3, progress=False)
    with pytest.raises(RuntimeError, match="before sampling"):
        m.set_missing_data_map(maps[0])


def test_map_search_is_deterministic(met):
    sim, Y, data, mask = met
    kw = dict(data=data, relmat={"Line": sim.K}, n_factors=3, h2_divisions=5, seed=4,
              verbose=False)
    a = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", **kw).missing_data_maps(6)
    b = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", **kw).missing_data_maps(6)
    assert a[0] == b[0]
    assert a[1].equals(b[1])


def _mapped_chain(met, n_factors: int, seed: int, iterations: int) -> MegaLMM:
    """A few iterations of a small model with the best missing-data map (several groups)."""
    sim, Y, data, mask = met
    m = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                n_factors=n_factors, h2_divisions=10, burn=0, seed=seed, verbose=False)
    maps, table = m.missing_data_maps(10)
    m.set_missing_data_map(maps[best_map(maps, table)])
    m.burn_in(rounds=1, iterations=iterations, progress=False)
    return m


def test_block_mean_in_original_rows_equals_the_rotated_one(met):
    """With several trait groups the imputed cells' mean is ``F Lambda + Eta - E`` in the
    original rows (``E`` the residuals the factor scores used), no rotation: the rotated
    formula and :func:`eta_mean` agree to rounding."""
    from pymegalmm.core.factor_scores import residuals_in_rows
    from pymegalmm.core.mean import EtaConditional, eta_mean

    m = _mapped_chain(met, n_factors=4, seed=5, iterations=5)
    s, d = m.chains[0].state, m.data
    assert len(d.groups) > 1 and any(g.imputed[0].size for g in d.groups)
    residuals = [np.asfortranarray(s.QtEta[gi] - g.QtX1 @ s.B1[:, g.cols]
                                   - g.re.genetic_values(s.U_R[:, g.cols]))
                 for gi, g in enumerate(d.groups)]
    F = d.factor_re.unrotate(s.QtF)
    rotated = EtaConditional(s, d, residuals=residuals, F=F)
    in_rows = EtaConditional(s, d, residuals=residuals, F=F,
                             residuals_in_rows=residuals_in_rows(d, residuals))
    every = eta_mean(s, d)
    for gi, g in enumerate(d.groups):
        if not g.cols.size:  # group 0 may hold no trait
            continue
        a, b = in_rows.block_mean(gi), rotated.block_mean(gi)
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(a, every[g.block], rtol=0, atol=1e-12 * scale)


def test_recorded_values_equal_the_parameters_and_expected_values_apart(met):
    """The recorder's shared computation (``record_values``: factor scores and ``U_R`` per
    level once) gives the parameters of ``user_scale`` and ``expected_Y``'s E[Y]."""
    m = _mapped_chain(met, n_factors=3, seed=6, iterations=3)
    s, d, transform = m.chains[0].state, m.data, m._transform
    values, expected = transform.record_values(s, d)
    apart = transform.parameters(s, d)
    assert sorted(values) == sorted(apart)
    for name, value in apart.items():
        np.testing.assert_allclose(values[name], value, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(expected, transform.expected_Y(s, d), rtol=1e-12, atol=1e-12)


def test_recorded_expected_values_of_one_group_in_rows_equal_the_rotated_ones(tmp_path):
    """One trait group: the recorder forms E[Y] in the original rows from ``U_R`` per level
    (``Z u_levels``, sparse) and ``F Lambda``, instead of unrotating the rotated mean (an
    ``n x n x t`` product); both give the same values to rounding, and ``to_levels`` (a
    tiled product) equals ``S v``."""
    from pymegalmm.core.mean import eta_mean

    sim = datasets.simulate_factor_data(n=60, t=7, k_true=2, n_markers=200, seed=3)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
                h2_divisions=8, burn=0, seed=4, verbose=False, run_dir=tmp_path / "run")
    m.burn_in(rounds=1, iterations=5, progress=False)
    s, d, transform = m.chains[0].state, m.data, m._transform
    g = d.groups[0]
    assert d.single_group and g.re.levels_map_rows
    levels = transform.residual_effects_levels(s, d)
    np.testing.assert_allclose(levels, g.re.to_levels_matrix @ s.U_R, rtol=0,
                               atol=1e-12 * np.abs(levels).max())
    _, expected = transform.record_values(s, d)
    rotated = transform.expected_Y(s, d)
    np.testing.assert_allclose(expected, rotated, rtol=0, atol=1e-12 * np.abs(rotated).max())
    in_rows = eta_mean(s, d, F=d.factor_re.unrotate(s.QtF), U_R_levels=levels)
    np.testing.assert_allclose(in_rows, eta_mean(s, d), rtol=0,
                               atol=1e-12 * np.abs(in_rows).max())


def test_several_groups_keep_F_in_rows_consistent_and_resumable(met, tmp_path):
    """With several trait groups the state keeps F in the original rows (step 6 draws it
    there): ``QtF = rotate(F)`` to rounding after sampling and after reordering (zeroed
    factors zero in both), and a saved state holding it resumes exactly."""
    from pymegalmm.core.initialize import initial_state
    from pymegalmm.core.iteration import gibbs_iteration
    from pymegalmm.core.reorder import reorder_factors
    from pymegalmm.core.state import ChainState
    from pymegalmm.linalg import sampling_threads

    m = _mapped_chain(met, n_factors=4, seed=5, iterations=5)
    s, d = m.chains[0].state, m.data
    assert len(d.groups) > 1 and s.F.shape == s.QtF.shape

    def consistent(state):
        scale = np.abs(state.QtF).max()
        np.testing.assert_allclose(d.factor_re.rotate(state.F), state.QtF, rtol=0,
                                   atol=1e-12 * scale)

    consistent(s)
    s.QtF[:, 3] = 0.0  # a factor reorder_factors will zero as correlated with factor 1
    s.F[:, 3] = 2.0 * s.F[:, 1] + 1e-9 * s.F[:, 0]
    s.QtF[:] = d.factor_re.rotate(s.F)
    with sampling_threads(1):
        order = reorder_factors(s, d, 0.6)
    consistent(s)
    moved = int(np.flatnonzero(order == 3)[0])
    assert np.all(s.F[:, moved] == 0.0) and np.all(s.QtF[:, moved] == 0.0)
    path = tmp_path / "state.npz"
    s.save(path)
    loaded = ChainState.load(path)
    np.testing.assert_array_equal(loaded.F, s.F)
    with sampling_threads(1):
        for _ in range(3):
            gibbs_iteration(s, d)
            gibbs_iteration(loaded, d)
    for name in s.array_names():
        a, b = getattr(s, name), getattr(loaded, name)
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b],
                        strict=True):
            assert np.array_equal(x, y), name
    consistent(s)
    # a state saved before F was kept (no F array) continues: F from unrotate(QtF)
    legacy = ChainState.load(path)
    legacy.F = np.zeros((0, 0))
    with sampling_threads(1):
        gibbs_iteration(legacy, d)
    assert legacy.F.shape == legacy.QtF.shape
    consistent(legacy)
    # one trait group: nothing kept
    sim, Y, data, mask = met
    one = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                  n_factors=4, h2_divisions=10, burn=0, seed=1, verbose=False)
    one.sample(2, progress=False)
    assert len(one.data.groups) == 1 and one.chains[0].state.F.shape == (0, 0)
    assert initial_state(one.data, np.random.default_rng(1)).F.shape == (0, 0)
