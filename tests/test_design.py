"""Tests for pymegalmm.design: Y, X1, Z, K and their checks."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from pymegalmm.design import Design, RandomEffect, build_design


def _zkz(eff: RandomEffect, reduced: bool) -> np.ndarray:
    if reduced:
        ZL = eff.ZL
        ZL = ZL.toarray() if scipy.sparse.issparse(ZL) else ZL
        return ZL @ eff.K_tilde @ ZL.T
    Z = eff.Z.toarray()
    return Z @ eff.K @ Z.T


@pytest.fixture
def trial() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """40 rows: 20 of 30 genotyped lines x 2 environments, 3 traits, low-rank K."""
    rng = np.random.default_rng(1)
    lines = [f"L{i:02d}" for i in range(30)]
    markers = rng.normal(size=(30, 5))
    K = markers @ markers.T / 5  # rank 5
    Kdf = pd.DataFrame(K, index=lines, columns=lines)
    data = pd.DataFrame(
        {
            "Line": np.repeat(lines[:20], 2),
            "Env": np.tile(["E1", "E2"], 20),
            "x": rng.normal(size=40),
            "Block": np.repeat(np.arange(8), 5),
        }
    )
    Y = pd.DataFrame(rng.normal(size=(40, 3)), columns=["yield", "height", "dtf"])
    return Y, data, Kdf


# --------------------------------------------------------------------------------------
# Y, X1 and basic structure
# --------------------------------------------------------------------------------------


def test_basic_shapes_and_types(trial):
    Y, data, Kdf = trial
    d = build_design(Y, "~ Env + x + (1|Line)", data, relmat={"Line": Kdf})
    assert isinstance(d, Design)
    assert d.Y.shape == (40, 3) and d.Y.dtype == np.float64 and d.Y.flags.c_contiguous
    assert d.X1.shape == (40, 3) and d.X1.dtype == np.float64 and d.X1.flags.c_contiguous
    assert d.fixed_names == ["Intercept", "Env[T.E2]", "x"]
    assert list(d.traits) == ["yield", "height", "dtf"]
    assert d.rows.equals(data.index)
    np.testing.assert_array_equal(d.Y, Y.to_numpy())
    np.testing.assert_array_equal(d.X1[:, 2], data["x"].to_numpy())
    assert d.formula.fixed == "~ Env + x"
    assert [eff.name for eff in d.random] == ["Line"]


def test_array_Y_gets_trait_names(trial):
    _, data, _ = trial
    d = build_design(np.ones((40, 2)), "~ 1 + (1|Line)", data)
    assert list(d.traits) == ["trait0", "trait1"]
    assert d.fixed_names == ["Intercept"]


def test_intercept_Z_has_one_one_per_row(trial):
    Y, data, _ = trial
    d = build_design(Y, "~ (1|Line)", data)
    (eff,) = d.random
    Z = eff.Z
    assert isinstance(Z, scipy.sparse.csr_matrix) and Z.dtype == np.float64
    assert Z.shape == (40, 20)
    np.testing.assert_array_equal(np.diff(Z.indptr), np.ones(40))
    np.testing.assert_array_equal(Z.data, np.ones(40))
    # the 1 of every row sits in the column of that row's line
    np.testing.assert_array_equal(eff.levels[Z.indices], data["Line"].to_numpy())
    # no relmat: K = identity over the observed levels, sorted, full rank
    assert list(eff.levels) == sorted(data["Line"].unique())
    np.testing.assert_array_equal(eff.K, np.eye(20))
    assert eff.rank == 20 and eff.ZL is eff.Z


def test_levels_in_K_without_data_are_zero_columns(trial):
    Y, data, _ = trial
    lines = [f"L{i:02d}" for i in range(30)]
    K = pd.DataFrame(np.eye(30) + 0.1, index=lines[::-1], columns=lines[::-1])
    d = build_design(Y, "~ (1|Line)", data, relmat={"Line": K})
    (eff,) = d.random
    assert list(eff.levels) == lines[::-1]  # K's order
    assert eff.Z.shape == (40, 30)
    counts = np.asarray(eff.Z.sum(axis=0)).ravel()
    unobserved = [lv for lv in lines if lv not in set(data["Line"])]
    assert len(unobserved) == 10
    for level in unobserved:
        assert counts[eff.levels.get_loc(level)] == 0
    assert sorted(eff.levels_without_data) == unobserved
    assert eff.rank == 30
    np.testing.assert_array_equal(eff.L, np.eye(30))


def test_reduced_rank_reproduces_ZKZ(trial):
    Y, data, Kdf = trial
    d = build_design(Y, "~ (1|Line)", data, relmat={"Line": Kdf})
    (eff,) = d.random
    assert eff.L.shape == (30, 5) and eff.K_tilde.shape == (5, 5)
    assert eff.rank == 5
    np.testing.assert_allclose(eff.K_tilde, np.diag(np.diag(eff.K_tilde)))
    np.testing.assert_allclose(eff.L @ eff.K_tilde @ eff.L.T, eff.K, atol=1e-10)
    assert isinstance(eff.ZL, np.ndarray) and eff.ZL.shape == (40, 5)
    np.testing.assert_allclose(_zkz(eff, True), _zkz(eff, False), atol=1e-8)


def test_full_rank_K_keeps_K(trial):
    Y, data, Kdf = trial
    K = Kdf + np.eye(30)
    d = build_design(Y, "~ (1|Line)", data, relmat={"Line": K})
    (eff,) = d.random
    np.testing.assert_array_equal(eff.K_tilde, K.to_numpy())
    np.testing.assert_array_equal(eff.L, np.eye(30))
    assert eff.ZL is eff.Z


def test_K_eigen_tol_controls_rank(trial):
    Y, data, Kdf = trial
    K = Kdf + 1e-6 * np.eye(30)
    full = build_design(Y, "~ (1|Line)", data, relmat={"Line": K}).random[0]
    reduced = build_design(Y, "~ (1|Line)", data, relmat={"Line": K}, K_eigen_tol=1e-4)
    assert full.rank == 30
    assert reduced.random[0].rank == 5


@pytest.mark.parametrize("sparse", [False, True])
def test_K_inv_path_matches_K_path(trial, sparse):
    Y, data, Kdf = trial
    K = Kdf + 0.5 * np.eye(30)
    levels = list(K.index)
    K_inv = np.linalg.inv(K.to_numpy())
    K_inv = (K_inv + K_inv.T) / 2
    if sparse:
        K_inv[np.abs(K_inv) < 1e-3] = 0.0  # a genuinely sparse precision matrix
        K_inv = scipy.sparse.csc_matrix(K_inv)
        K = pd.DataFrame(np.linalg.inv(K_inv.toarray()), index=levels, columns=levels)
    a = build_design(Y, "~ (1|Line)", data, relmat={"Line": K}).random[0]
    b = build_design(
        Y, "~ (1|Line)", data, relmat={"Line": {"K_inv": K_inv, "levels": levels}}
    ).random[0]
    assert list(a.levels) == list(b.levels) == levels
    np.testing.assert_allclose(_zkz(b, False), _zkz(a, False), atol=1e-8)
    np.testing.assert_allclose(_zkz(b, True), _zkz(a, False), atol=1e-8)


def test_K_dict_with_levels(trial):
    Y, data, Kdf = trial
    a = build_design(Y, "~ (1|Line)", data, relmat={"Line": Kdf}).random[0]
    b = build_design(
        Y, "~ (1|Line)", data, relmat={"Line": {"K": Kdf.to_numpy(), "levels": list(Kdf.index)}}
    ).random[0]
    np.testing.assert_array_equal(a.K, b.K)
    np.testing.assert_allclose(_zkz(a, True), _zkz(b, True), atol=1e-10)


def test_integer_levels_match_float_grouping_column():
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"g": [1, 2, 3, np.nan, 2, 1]})  # float because of the NaN
    K = pd.DataFrame(np.eye(4) + 0.2, index=[1, 2, 3, 4], columns=[1, 2, 3, 4])
    with pytest.warns(UserWarning, match="dropped 1 of 6 rows"):
        d = build_design(rng.normal(size=(6, 1)), "~ (1|g)", data, relmat={"g": K})
    (eff,) = d.random
    assert list(eff.levels) == [1, 2, 3, 4]
    np.testing.assert_array_equal(eff.Z.indices, [0, 1, 2, 1, 0])


def test_fixed_for_new_data_reproduces_rows(trial):
    Y, data, _ = trial
    data = data.assign(Block=data["Block"].astype(str))
    d = build_design(Y, "~ Env * x + C(Block) + np.log(x**2) + (1|Line)", data)
    subset = [7, 0, 33, 12]
    new = data.iloc[subset].drop(columns=["Line"]).reset_index(drop=True)
    X = d.fixed_for(new)
    assert X.shape == (4, d.X1.shape[1]) and X.flags.c_contiguous
    np.testing.assert_allclose(X, d.X1[subset])


def test_fixed_for_rejects_unseen_level_and_missing_variable(trial):
    Y, data, _ = trial
    d = build_design(Y, "~ Env + (1|Line)", data)
    with pytest.raises(ValueError, match="E9"):
        d.fixed_for(pd.DataFrame({"Env": ["E9"]}))
    with pytest.raises(KeyError, match="'Env'"):
        d.fixed_for(pd.DataFrame({"x": [1.0]}))


def test_slopes_one_component_per_env_level(trial):
    Y, data, Kdf = trial
    d = build_design(Y, "~ Env + (0 + Env|Line)", data, relmat={"Line": Kdf})
    assert [eff.name for eff in d.random] == ["Line:Env[E1]", "Line:Env[E2]"]
    for env, eff in zip(["E1", "E2"], d.random, strict=True):
        assert eff.group == "Line"
        assert eff.K is d.random[0].K  # same K shared
        Z = eff.Z.toarray()
        in_env = (data["Env"] == env).to_numpy()
        np.testing.assert_array_equal(Z.sum(axis=1), in_env.astype(float))
        assert Z.shape == (40, 30)


def test_double_bar_slope_includes_intercept(trial):
    Y, data, _ = trial
    d = build_design(Y, "~ 1 + (x||Line)", data)
    assert [eff.name for eff in d.random] == ["Line", "Line:x"]
    intercept, slope = d.random
    np.testing.assert_array_equal(intercept.Z.sum(axis=1).A1, np.ones(40))
    # Z[i, level(i)] == x[i]
    np.testing.assert_allclose(slope.Z.sum(axis=1).A1, data["x"].to_numpy())
    assert slope.Z.indices.tolist() == intercept.Z.indices.tolist()
    d2 = build_design(Y, "~ 1 + (1 + x||Line)", data)
    assert [eff.name for eff in d2.random] == ["Line", "Line:x"]


def test_interaction_grouping(trial):
    Y, data, _ = trial
    d = build_design(Y, "~ Env + (1|Line) + (1|Line:Env)", data)
    inter = d.random[1]
    assert inter.name == "Line:Env" and inter.group == "Line:Env"
    assert len(inter.levels) == 40
    assert "L00:E1" in inter.levels
    np.testing.assert_array_equal(np.diff(inter.Z.indptr), np.ones(40))
    row_labels = (data["Line"] + ":" + data["Env"]).to_numpy()
    np.testing.assert_array_equal(inter.levels[inter.Z.indices], row_labels)
    # a relmat keyed by the interaction name is used for it
    levels = list(inter.levels)
    K = pd.DataFrame(np.eye(40) * 2.0, index=levels, columns=levels)
    d2 = build_design(Y, "~ (1|Line:Env)", data, relmat={"Line:Env": K})
    np.testing.assert_array_equal(d2.random[0].K, 2 * np.eye(40))


def test_summary_mentions_parts(trial):
    Y, data, Kdf = trial
    Y = Y.copy()
    Y.iloc[0, 0] = np.nan
    d = build_design(Y, "~ Env + (1|Line)", data, relmat={"Line": Kdf})
    text = d.summary()
    assert "n = 40" in text and "t = 3" in text
    assert "0.8% of Y missing" in text
    assert "Env[T.E2]" in text
    assert re.search(r"Line .*30 levels \(10 without data\), rank of K 5/30", text)


# --------------------------------------------------------------------------------------
# Dropped rows
# --------------------------------------------------------------------------------------


def test_rows_with_all_traits_missing_are_dropped_with_warning(trial):
    Y, data, _ = trial
    Y = Y.copy()
    Y.iloc[[3, 10, 11]] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 40 rows.*3 rows with every trait"):
        d = build_design(Y, "~ Env + (1|Line)", data)
    assert d.Y.shape == (37, 3) and d.X1.shape[0] == 37 and d.random[0].Z.shape[0] == 37
    assert list(d.rows) == [i for i in range(40) if i not in (3, 10, 11)]
    np.testing.assert_array_equal(d.Y, Y.drop(index=[3, 10, 11]).to_numpy())
    assert d.dropped == {"rows with every trait missing": 3}


def test_rows_with_missing_grouping_are_dropped_with_warning(trial):
    Y, data, _ = trial
    data = data.copy()
    data.loc[[0, 5], "Line"] = None
    data.index = [f"r{i}" for i in range(40)]
    Y = Y.set_axis(data.index)
    with pytest.warns(UserWarning, match=r"dropped 2 of 40 rows.*missing grouping.*'Line'"):
        d = build_design(Y, "~ Env + (1|Line)", data)
    assert "r0" not in d.rows and "r5" not in d.rows and len(d.rows) == 38
    # rows stay aligned: Y, X1 and Z rows follow their data rows
    kept = data.drop(index=["r0", "r5"])
    np.testing.assert_array_equal(d.Y, Y.drop(index=["r0", "r5"]).to_numpy())
    np.testing.assert_array_equal(d.X1[:, 1], (kept["Env"] == "E2").to_numpy(dtype=float))
    eff = d.random[0]
    np.testing.assert_array_equal(eff.levels[eff.Z.indices], kept["Line"].to_numpy())
    assert d.random[0].Z.shape == (38, 20)


def test_no_warning_when_nothing_dropped(trial):
    Y, data, _ = trial
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_design(Y, "~ Env + (1|Line)", data)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_levels_missing_from_K(trial):
    Y, data, Kdf = trial
    K = Kdf.iloc[3:, 3:]  # drops L00, L01, L02 which have data
    with pytest.raises(KeyError, match=r"3 level\(s\) of 'Line'.*'L00', 'L01', 'L02'"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": K})


def test_many_levels_missing_from_K_are_truncated():
    data = pd.DataFrame({"g": [f"g{i}" for i in range(30)]})
    K = pd.DataFrame(np.eye(2), index=["g0", "g1"], columns=["g0", "g1"])
    with pytest.raises(KeyError, match=r"28 level\(s\).*'g2'.*\.\.\.") as info:
        build_design(np.zeros((30, 1)), "~ (1|g)", data, relmat={"g": K})
    assert "'g12'" not in str(info.value)  # only 10 are listed


def test_non_symmetric_K(trial):
    Y, data, Kdf = trial
    K = Kdf.copy()
    K.iloc[0, 1] += 0.5
    with pytest.raises(ValueError, match=r"relmat\['Line'\] is not symmetric"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": K})


def test_non_psd_K(trial):
    Y, data, Kdf = trial
    K = Kdf - 0.5 * np.eye(30)
    with pytest.raises(ValueError, match=r"'Line' is not positive semi-definite"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": K})


def test_non_finite_K(trial):
    Y, data, Kdf = trial
    K = Kdf.copy()
    K.iloc[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"relmat\['Line'\] has non-finite values"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": K})


def test_K_not_square_or_names_differ(trial):
    Y, data, Kdf = trial
    with pytest.raises(ValueError, match=r"relmat\['Line'\] must be square"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": Kdf.iloc[:, :29]})
    K = Kdf.copy()
    K.columns = [f"X{i}" for i in range(30)]
    with pytest.raises(ValueError, match=r"relmat\['Line'\].*index and columns differ"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": K})


def test_K_columns_in_other_order_are_aligned(trial):
    Y, data, Kdf = trial
    shuffled = Kdf[list(Kdf.columns[::-1])]
    a = build_design(Y, "~ (1|Line)", data, relmat={"Line": Kdf}).random[0]
    b = build_design(Y, "~ (1|Line)", data, relmat={"Line": shuffled}).random[0]
    np.testing.assert_array_equal(a.K, b.K)


def test_unlabelled_K_and_bad_relmat_key(trial):
    Y, data, Kdf = trial
    # a wrong type of entry is a TypeError (it was a ValueError before the reliability work)
    with pytest.raises(TypeError, match=r"relmat\['Line'\].*DataFrame"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": Kdf.to_numpy()})
    with pytest.raises(ValueError, match=r"relmat\['Line'\]\['K'\].*levels"):
        build_design(Y, "~ (1|Line)", data, relmat={"Line": {"K": Kdf.to_numpy()}})
    with pytest.raises(ValueError, match=r"'Lines'.*matches no random-effect"):
        build_design(Y, "~ (1|Line)", data, relmat={"Lines": Kdf})


def test_K_inv_not_invertible(trial):
    Y, data, Kdf = trial
    with pytest.raises(ValueError, match=r"relmat\['Line'\]\['K_inv'\] is not positive definite"):
        build_design(
            Y,
            "~ (1|Line)",
            data,
            relmat={"Line": {"K_inv": Kdf.to_numpy(), "levels": list(Kdf.index)}},
        )


def test_all_nan_trait(trial):
    Y, data, _ = trial
    Y = Y.copy()
    Y["height"] = np.nan
    with pytest.raises(ValueError, match=r"\['height'\].*no observed value"):
        build_design(Y, "~ (1|Line)", data)


def test_non_numeric_Y_column(trial):
    Y, data, _ = trial
    Y = Y.assign(note=["a"] * 40)
    with pytest.raises(ValueError, match=r"trait column 'note' of Y is not numeric"):
        build_design(Y, "~ (1|Line)", data)
    arr = np.array([["1.0", "x"]] * 40, dtype=object)
    with pytest.raises(ValueError, match=r"'trait1'.*not numeric"):
        build_design(arr, "~ (1|Line)", data)


def test_infinite_value_in_Y(trial):
    Y, data, _ = trial
    Y = Y.copy()
    Y.iloc[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"trait 'dtf' of Y has an infinite value \(row 4"):
        build_design(Y, "~ (1|Line)", data)


@pytest.mark.parametrize(
    ("formula", "name"),
    [
        ("~ Envv + (1|Line)", "Envv"),
        ("~ Env + (1|Lines)", "Lines"),
        ("~ Env + (0 + z|Line)", "z"),
        ("~ Env + (1|Line:Site)", "Site"),
    ],
)
def test_unknown_formula_variable(trial, formula, name):
    Y, data, _ = trial
    with pytest.raises(KeyError, match=rf"unknown variable '{name}'.*Available columns.*'Line'"):
        build_design(Y, formula, data)


def test_wrong_row_count(trial):
    Y, data, _ = trial
    with pytest.raises(ValueError, match=r"Y has 39 rows but data has 40 rows"):
        build_design(Y.iloc[:39], "~ (1|Line)", data)


def test_labelled_Y_with_default_data_index_matches_by_position(trial):
    # R's habit: Y labelled (e.g. by plot), data on pandas' default index: by position,
    # and Y's labels name the rows
    Y, data, _ = trial
    labels = [f"plot{i}" for i in range(40)]
    d = build_design(Y.set_axis(labels), "~ (1|Line)", data)
    np.testing.assert_array_equal(d.Y, Y.to_numpy())
    assert list(d.rows) == labels


def test_both_labelled_align_by_label(trial):
    Y, data, _ = trial
    labels = [f"plot{i}" for i in range(40)]
    data_l = data.set_axis(labels)
    shuffled = Y.set_axis(labels).iloc[::-1]  # same labels, other order
    d = build_design(shuffled, "~ (1|Line)", data_l)
    np.testing.assert_array_equal(d.Y, Y.to_numpy())  # put back in data's order
    assert list(d.rows) == labels


def test_both_labelled_with_different_labels_name_them(trial):
    Y, data, _ = trial
    data_l = data.set_axis([f"plot{i}" for i in range(40)])
    Y_l = Y.set_axis([f"plot{i}" for i in range(1, 41)])
    with pytest.raises(KeyError, match=r"labels of their indexes, and they differ.*'plot0'"
                                       r".*'plot40'"):
        build_design(Y_l, "~ (1|Line)", data_l)


def test_duplicate_trait_names(trial):
    Y, data, _ = trial
    Y = Y.set_axis(["yield", "height", "yield"], axis=1)
    with pytest.raises(ValueError, match=r"duplicate trait names in Y: \['yield'\]"):
        build_design(Y, "~ (1|Line)", data)


def test_one_dimensional_Y(trial):
    Y, data, _ = trial
    with pytest.raises(ValueError, match="2-D"):
        build_design(Y["yield"].to_numpy(), "~ (1|Line)", data)
    with pytest.raises(ValueError, match="2-D"):
        build_design(Y["yield"], "~ (1|Line)", data)


def test_duplicate_component(trial):
    Y, data, _ = trial
    with pytest.raises(ValueError, match="'Line' appears twice"):
        build_design(Y, "~ (1|Line) + (x||Line)", data)


def test_formula_errors_propagate(trial):
    Y, data, _ = trial
    with pytest.raises(ValueError, match="pass the traits Y separately"):
        build_design(Y, "yield ~ Env", data)


@pytest.mark.parametrize("n", [0, 1, 5, 512, 513, 1100])
def test_tiled_symmetrisation_equals_the_whole_matrix_one(n):
    """K is symmetrised tile by tile (cache-friendly); the numbers are those of
    ``(M + M.T) / 2`` and ``max |M - M.T|`` exactly, tiles of every shape included."""
    from pymegalmm.design import _symmetrised

    M = np.random.default_rng(n).standard_normal((n, n))
    sym, asym = _symmetrised(M)
    np.testing.assert_array_equal(sym, (M + M.T) / 2.0)
    assert asym == (float(np.max(np.abs(M - M.T))) if n else 0.0)
