"""Block-parallel random draws: independent of the thread count, right distribution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pymegalmm import _kernels
from pymegalmm.linalg import RNG_BLOCK, RNG_SPLIT_FROM, standard_gamma, standard_normal


@pytest.mark.parametrize("shape", [(500, 1000), (3, 7), (RNG_BLOCK + 1, 2), (1, 1),
                                   (16, 1000)])
def test_draws_do_not_depend_on_thread_count(shape):
    before = _kernels.openmp_max_threads()
    try:
        out = []
        for threads in (1, 2, 3):
            _kernels.set_num_threads(threads)
            rng = np.random.default_rng(11)
            out.append((standard_normal(rng, *shape), standard_gamma(rng, 2.5, *shape),
                        rng.random()))
    finally:
        _kernels.set_num_threads(before)
    for other in out[1:]:
        assert np.array_equal(out[0][0], other[0])
        assert np.array_equal(out[0][1], other[1])
        assert out[0][2] == other[2]  # the chain's generator advanced identically
    assert out[0][0].flags.f_contiguous and out[0][0].shape == shape


def test_distributions():
    rng = np.random.default_rng(12)
    z = standard_normal(rng, 400, 500).ravel()
    g = standard_gamma(rng, 2.5, 400, 500).ravel()
    # 200,000 draws: a KS test at level 1e-3 fails by chance once in a thousand runs;
    # the seed is fixed, so this checks the blocks are filled, independent and standard.
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.kstest(g, stats.gamma(2.5).cdf).pvalue > 1e-3
    blocks = z.reshape(500, 400)  # columns of the (400, 500) array = rows here
    width = RNG_BLOCK // 400
    a, b = blocks[:width].ravel(), blocks[width:2 * width].ravel()
    assert abs(np.corrcoef(a, b[: a.size])[0, 1]) < 0.01  # neighbouring blocks differ


def test_same_seed_same_draws_different_seed_different():
    a = standard_normal(np.random.default_rng(1), 50, 60)
    b = standard_normal(np.random.default_rng(1), 50, 60)
    c = standard_normal(np.random.default_rng(2), 50, 60)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_one_block_is_drawn_by_the_chains_generator():
    """An array of one block (at most RNG_BLOCK numbers in whole columns) with fewer than
    RNG_SPLIT_FROM numbers is filled by the chain's generator itself, column by column;
    larger arrays by child generators."""
    ref = np.random.default_rng(5).standard_normal(1200).reshape(30, 40).T
    assert np.array_equal(standard_normal(np.random.default_rng(5), 40, 30), ref)
    ref = np.random.default_rng(6).standard_gamma(2.5, 1200).reshape(30, 40).T
    assert np.array_equal(standard_gamma(np.random.default_rng(6), 2.5, 40, 30), ref)
    rows = 400
    cols = RNG_BLOCK // rows + 1  # two blocks
    direct = np.random.default_rng(7).standard_normal(rows * cols).reshape(cols, rows).T
    assert not np.array_equal(standard_normal(np.random.default_rng(7), rows, cols), direct)
    # one block of RNG_SPLIT_FROM numbers or more is split in two (both threads draw it)
    rows, cols = 16, RNG_SPLIT_FROM // 16
    direct = np.random.default_rng(8).standard_normal(rows * cols).reshape(cols, rows).T
    split = standard_normal(np.random.default_rng(8), rows, cols)
    assert not np.array_equal(split, direct)
    # ... the first half from the first child generator, seeded by the chain's generator
    seed = np.random.default_rng(8).integers(0, 2**63 - 1, size=2, dtype=np.int64)[0]
    first = np.random.Generator(np.random.SFC64(int(seed))).standard_normal(rows * cols // 2)
    np.testing.assert_array_equal(split[:, : cols // 2], first.reshape(cols // 2, rows).T)
