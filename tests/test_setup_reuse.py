"""Setup work done once: K's eigendecomposition shared by every trait group, incidence
products as row gathers (exact), no product with an identity L."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from pymegalmm import MegaLMM, datasets
from pymegalmm.core.random_effects.diagonal import diagonal_basis, incidence_product


def test_incidence_product_equals_the_dense_product_exactly():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((7, 4))
    cols = rng.integers(0, 7, size=12)
    Z = sp.csr_matrix((np.ones(12), (np.arange(12), cols)), shape=(12, 7))
    got = incidence_product(Z, A)
    np.testing.assert_array_equal(got, Z.toarray() @ A)  # bit for bit
    np.testing.assert_array_equal(got, A[cols])
    # not an incidence matrix (a slope, an empty row, a dense Z): the general product
    for Zx in (Z.multiply(2.0).tocsr(),
               sp.csr_matrix((np.ones(11), (np.arange(11), cols[:11])), shape=(12, 7)),
               Z.toarray()):
        np.testing.assert_allclose(incidence_product(Zx, A), np.asarray(Zx.todense()
                                   if sp.issparse(Zx) else Zx) @ A, rtol=1e-14)


def test_diagonal_basis_with_a_given_eigendecomposition_is_the_same_basis():
    rng = np.random.default_rng(1)
    G = rng.standard_normal((6, 6))
    K = G @ G.T + 0.1 * np.eye(6)
    Z = sp.csr_matrix((np.ones(9), (np.arange(9), rng.integers(0, 6, 9))), shape=(9, 6))
    a = diagonal_basis(Z.toarray(), K)  # the reference: dense Z, its own eigh
    b = diagonal_basis(Z, K, eig=scipy.linalg.eigh(K))
    for name in ("Q", "d", "S"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_K_is_decomposed_once_for_every_trait_group(monkeypatch):
    sim = datasets.simulate_met(n_lines=60, n_envs=6, envs_per_line=(2, 4), n_markers=200,
                                seed=2)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    m = MegaLMM(Y, sim.formula, data=data, relmat={"Line": sim.K}, n_factors=3,
                h2_divisions=5, burn=0, seed=1, verbose=False)
    maps, _ = m.missing_data_maps(max_groups=4)
    calls = []
    real = scipy.linalg.eigh

    def counting(a, *args, **kwargs):
        calls.append(np.shape(a))
        return real(a, *args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", counting)
    m.set_missing_data_map(maps[-1])
    n_groups = len(maps[-1].groups)
    assert n_groups > 1
    r = sim.K.shape[0]
    # each group diagonalises its own Z'Z (one eigh of size <= r each), never K again
    assert len(calls) == n_groups, calls
    assert all(shape[0] <= r for shape in calls)


def test_the_cached_decomposition_is_not_pickled():
    sim = datasets.simulate_met(n_lines=40, n_envs=4, envs_per_line=(2, 3), n_markers=100,
                                seed=3)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    m = MegaLMM(Y, sim.formula, data=data, relmat={"Line": sim.K}, n_factors=2,
                h2_divisions=5, burn=0, seed=1, verbose=False)
    re = m.design.random[0]
    assert "eig" in re.eig_cache
    copy = pickle.loads(pickle.dumps(re))
    assert copy.eig_cache == {}
    lam, U = copy.K_tilde_eig()
    np.testing.assert_array_equal(lam, re.K_tilde_eig()[0])


@pytest.mark.parametrize("n_reps", [1, 2])
def test_gathered_setup_gives_the_dense_setups_rotation(n_reps):
    """The precompute of a random intercept (gathers) equals one built from dense Z."""
    from pymegalmm.core.random_effects.diagonal import DiagonalRandomEffect

    rng = np.random.default_rng(n_reps)
    r = 8
    G = rng.standard_normal((r, r))
    K = G @ G.T + np.eye(r)
    cols = np.repeat(np.arange(r), n_reps)
    Z = sp.csr_matrix((np.ones(cols.size), (np.arange(cols.size), cols)), shape=(cols.size, r))
    grid = np.linspace(0, 0.9, 4)[None, :]
    a = DiagonalRandomEffect(Z.toarray(), K, np.eye(r), grid)
    b = DiagonalRandomEffect(Z, K, np.eye(r), grid, eig=scipy.linalg.eigh(K))
    for name in ("Q", "d_coef", "to_levels_matrix", "Z_all", "W", "log_det"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
