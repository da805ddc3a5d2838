"""Setup work done once: K's eigendecomposition shared by every trait group, incidence
products as row gathers (exact), no product with an identity L."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from pymegalmm import MegaLMM, datasets
from pymegalmm.core.random_effects.diagonal import (
    diagonal_basis,
    incidence_product,
    replicate_count,
)
from pymegalmm.linalg import symmetric_eig


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
    b = diagonal_basis(Z, K, eig=symmetric_eig(K))
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
        calls.append(np.array(a, copy=True))
        return real(a, *args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", counting)
    m.set_missing_data_map(maps[-1])
    n_groups = len(maps[-1].groups)
    assert n_groups > 1
    K_tilde = m.design.random[0].K_tilde
    # each group diagonalises its own T'Z'ZT (one eigh of size <= r each, none when the
    # group's Z'Z = c I), never K again
    assert 1 <= len(calls) <= n_groups
    assert all(a.shape[0] <= K_tilde.shape[0] for a in calls)
    assert not any(a.shape == K_tilde.shape and np.allclose(a, K_tilde) for a in calls)


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
    b = DiagonalRandomEffect(Z, K, np.eye(r), grid, eig=symmetric_eig(K))
    for name in ("Q", "d_coef", "to_levels_matrix", "Z_all", "W", "log_det"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_replicate_count_recognises_balanced_incidence_designs():
    levels = np.repeat(np.arange(5), 3)
    Z = sp.csr_matrix((np.ones(15), (np.arange(15), levels)), shape=(15, 5))
    assert replicate_count(Z) == 3
    assert replicate_count(Z.toarray()) == 3  # dense incidence: the same
    assert replicate_count(Z[:14]) is None  # one level on 2 rows, the others on 3
    assert replicate_count(Z.multiply(2.0).tocsr()) is None  # not an incidence matrix
    assert replicate_count(sp.csr_matrix(np.eye(4)[:, [0, 1, 2, 3]] + np.eye(4)[:, [1, 2, 3, 0]])
                           ) is None  # two non-zeros per row
    assert replicate_count(sp.csr_matrix((np.ones(3), (np.arange(3), [0, 1, 1])),
                                         shape=(3, 4))) is None  # levels without rows


@pytest.mark.parametrize("n_reps", [1, 2])
def test_balanced_design_basis_without_the_second_eigendecomposition(n_reps, monkeypatch):
    """With ``Z'Z = c I`` the basis skips the eigendecomposition of ``T'Z'ZT`` (it is
    ``c diag(lambda)``).  The basis is another one than the general path's (within a
    cluster of equal eigenvalues any rotation is a basis), but it defines the same model:
    it has every defining property, and the h2 grid's log-determinants and quadratic
    forms, the only way the data enter the column LMM, equal the direct dense ones."""
    rng = np.random.default_rng(5)
    r, p = 30, 8  # a marker K of rank 8 plus a ridge: 22 equal eigenvalues
    M = rng.standard_normal((r, p))
    K = M @ M.T / p + 1e-3 * np.eye(r)
    cols = np.repeat(np.arange(r), n_reps)
    n = cols.size
    Z = sp.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, r))
    calls = []
    real = scipy.linalg.eigh
    monkeypatch.setattr(scipy.linalg, "eigh",
                        lambda a, *args, **kw: calls.append(a.shape) or real(a, *args, **kw))
    b = diagonal_basis(Z, K)
    assert calls == [(r, r)]  # K only
    monkeypatch.undo()
    S, Q, d = b.S, b.Q, b.d
    np.testing.assert_allclose(S @ S.T, K, atol=1e-12)
    np.testing.assert_allclose(S.T @ (Z.T @ Z).toarray() @ S, np.diag(d), atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    ZKZ = Z.toarray() @ K @ Z.toarray().T
    d_rows = np.zeros(n)
    d_rows[:b.n_pos] = d[:b.n_pos]
    np.testing.assert_allclose(Q.T @ ZKZ @ Q, np.diag(d_rows), atol=1e-12)
    np.testing.assert_allclose(np.sort(d), n_reps * np.linalg.eigvalsh(K), rtol=1e-10)
    y = rng.standard_normal(n)
    for h in (0.0, 0.3, 0.9):
        V = h * ZKZ + (1 - h) * np.eye(n)
        w = 1.0 / (h * d_rows + 1 - h)
        qy = Q.T @ y
        np.testing.assert_allclose(np.sum(np.log(1.0 / w)), np.linalg.slogdet(V)[1],
                                   rtol=1e-10)
        np.testing.assert_allclose(qy @ (w * qy), y @ np.linalg.solve(V, y), rtol=1e-10)


@pytest.mark.parametrize("shape,p", [((200, 37), 0.5), ((50, 8), 0.2), ((9, 1), 0.5),
                                     ((300, 17), 1.0), ((40, 0), 0.5), ((0, 5), 0.5),
                                     ((120, 64), 0.97)])
def test_unique_boolean_rows_is_numpys_unique(shape, p):
    """Packing the rows into bits keeps np.unique's pattern order (the factor scores are
    drawn pattern by pattern, so the order is part of the draws)."""
    from pymegalmm.core.patterns import unique_boolean_rows

    mask = np.random.default_rng(3).random(shape) < p
    want, want_inverse = np.unique(mask, axis=0, return_inverse=True)
    got, inverse = unique_boolean_rows(mask)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(inverse, np.asarray(want_inverse).reshape(-1))
    assert got.dtype == bool and inverse.dtype == np.intp


def test_genetic_values_of_all_rows_from_levels():
    """The recorder's ``Z u_levels`` (sparse Z, K of full rank) equals ``(Z S) v`` up to
    rounding; with a rank-reduced K (``L`` not the identity) the levels are not used."""
    from pymegalmm.core.random_effects import DiagonalRandomEffect

    rng = np.random.default_rng(8)
    r, n_all = 9, 30
    A = rng.standard_normal((r, r))
    K = A @ A.T + r * np.eye(r)
    cols = rng.integers(0, r, size=n_all)
    Z_all = sp.csr_matrix((np.ones(n_all), (np.arange(n_all), cols)), shape=(n_all, r))
    rows = np.sort(rng.choice(n_all, size=20, replace=False))
    grid = np.linspace(0.0, 0.9, 5)[None, :]
    re = DiagonalRandomEffect(Z_all[rows], K, np.eye(r), grid, Z_all=Z_all)
    v = rng.standard_normal((r, 3))
    dense = re.genetic_values_all_rows(v)
    sparse = re.genetic_values_all_rows(v, levels=re.to_levels(v))
    np.testing.assert_allclose(sparse, dense, rtol=1e-12, atol=1e-12)
    assert sparse.shape == (n_all, 3) and sparse.flags.f_contiguous
    # a random intercept's Z: the rows' levels gathered, as the sparse product bit for bit
    levels = re.to_levels(v)
    assert re._row_levels is not None
    np.testing.assert_array_equal(sparse, re.Z_levels_all @ levels)
    # a Z that is not an incidence matrix (a slope): the sparse product
    slope = DiagonalRandomEffect(Z_all[rows] * 2.0, K, np.eye(r), grid, Z_all=Z_all * 2.0)
    assert slope._row_levels is None
    np.testing.assert_array_equal(slope.genetic_values_all_rows(v, levels=levels),
                                  (Z_all * 2.0) @ levels)
    L = np.linalg.cholesky(K)[:, :5]  # a rank-5 factor: levels != coefficients
    low = DiagonalRandomEffect(Z_all[rows] @ L, L.T @ L, L, grid, Z_all=Z_all @ L)
    w = rng.standard_normal((5, 2))
    assert low.Z_levels_all is None
    np.testing.assert_array_equal(low.genetic_values_all_rows(w, levels=low.to_levels(w)),
                                  low.genetic_values_all_rows(w))


def test_grid_points_in_use_equal_numpy_unique():
    """The counting form of ``np.unique(grid_index, return_inverse=True)``."""
    from pymegalmm.core.random_effects.diagonal import grid_points_in_use

    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 30, 500):
        index = rng.integers(0, 20, size=size)
        used, inverse = grid_points_in_use(index, 20)
        expected_used, expected_inverse = np.unique(index, return_inverse=True)
        np.testing.assert_array_equal(used, expected_used)
        np.testing.assert_array_equal(inverse, expected_inverse)
        assert inverse.dtype == np.intp
