"""Tests of the missing-data maps (pymegalmm.missing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pymegalmm.observation.maps as missing_mod
from pymegalmm.datasets import simulate_met, to_wide
from pymegalmm.missing import (
    MissingDataMap,
    TraitGroup,
    best_map,
    default_bytes_per_group,
    full_imputation_map,
    pattern_map,
    search_maps,
)

# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


def _groups_as_lists(m: MissingDataMap) -> list[tuple[list[int], list[int]]]:
    return [(g.rows.tolist(), g.cols.tolist()) for g in m.groups]


def _hand_made() -> np.ndarray:
    """8 x 5 observed mask with a known pattern (True = observed).

    col 0: all rows                  -> group 0 (observed in every nz row)
    col 1: rows 0-3                  -> pattern A
    col 2: rows 4-7                  -> pattern B
    col 3: rows 0-3                  -> pattern A
    col 4: rows 0, 2, 4, 6           -> pattern C
    """
    obs = np.zeros((8, 5), dtype=bool)
    obs[:, 0] = True
    obs[:4, 1] = True
    obs[4:, 2] = True
    obs[:4, 3] = True
    obs[[0, 2, 4, 6], 4] = True
    return obs


def _block_pattern(seed: int = 3) -> np.ndarray:
    """300 x 12 MET-like mask: 3 row blocks, 4 columns mostly observed in each block."""
    rng = np.random.default_rng(seed)
    n, t, n_blocks = 300, 12, 3
    row_block = np.repeat(np.arange(n_blocks), n // n_blocks)
    col_block = np.repeat(np.arange(n_blocks), t // n_blocks)
    home = row_block[:, None] == col_block[None, :]
    p_obs = np.where(home, 0.9, 0.05)
    obs = rng.random((n, t)) < p_obs
    obs[np.arange(n), col_block.searchsorted(row_block)] = True  # no empty row
    return obs


@pytest.fixture(scope="module")
def block_obs() -> np.ndarray:
    return _block_pattern()


# --------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------


def test_trait_group_is_readonly_int64_and_compares_by_value():
    g = TraitGroup([0, 2, 5], np.array([1, 3], dtype=np.int32))
    assert g.rows.dtype == np.int64 and g.cols.dtype == np.int64
    assert not g.rows.flags.writeable
    assert g == TraitGroup(np.array([0, 2, 5]), [1, 3])
    assert g != TraitGroup([0, 2], [1, 3])
    assert hash(g) == hash(TraitGroup([0, 2, 5], [1, 3]))
    empty = TraitGroup([0, 1], [])
    assert empty.cols.dtype == np.int64 and empty.n_cols == 0
    with pytest.raises(TypeError):
        TraitGroup([0.5], [1])


def test_observed_must_be_boolean():
    y = np.array([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(TypeError, match="isnan"):
        full_imputation_map(y)
    assert full_imputation_map(~np.isnan(y)).n_imputed(~np.isnan(y)) == 1


# --------------------------------------------------------------------------------------
# full_imputation_map and pattern_map
# --------------------------------------------------------------------------------------


def test_full_imputation_map_imputes_every_nan(block_obs):
    m = full_imputation_map(block_obs)
    assert m.n_groups == 1
    assert m.groups[0].rows.tolist() == list(range(block_obs.shape[0]))
    assert m.groups[0].cols.tolist() == list(range(block_obs.shape[1]))
    assert m.n_imputed(block_obs) == int((~block_obs).sum())
    assert m.n_predicted_only(block_obs) == 0


def test_full_imputation_map_drops_empty_rows():
    obs = _hand_made()
    obs[5] = False
    m = full_imputation_map(obs)
    assert 5 not in m.groups[0].rows
    assert m.n_imputed(obs) == int((~obs).sum()) - obs.shape[1]
    assert m.n_predicted_only(obs) == obs.shape[1]


def test_pattern_map_hand_made():
    obs = _hand_made()
    m = pattern_map(obs)
    assert _groups_as_lists(m) == [
        (list(range(8)), [0]),
        ([0, 1, 2, 3], [1, 3]),
        ([4, 5, 6, 7], [2]),
        ([0, 2, 4, 6], [4]),
    ]
    assert m.n_imputed(obs) == 0
    assert m.n_predicted_only(obs) == int((~obs).sum())


def test_pattern_map_group0_may_be_empty():
    obs = _hand_made()
    obs[1, 0] = False  # column 0 no longer observed in every row
    m = pattern_map(obs)
    assert m.groups[0].rows.tolist() == list(range(8))
    assert m.groups[0].cols.size == 0
    assert m.groups[1].cols.tolist() == [0]
    assert m.groups[1].rows.tolist() == [0, 2, 3, 4, 5, 6, 7]
    m.validate(obs)


def _r_pasted_key(col: np.ndarray) -> str:
    """R's key for a column pattern: 1-based observed rows pasted without separator."""
    return "".join(str(i + 1) for i in np.flatnonzero(col))


def test_pattern_map_no_pasted_string_collision():
    # In R's 1-based indices, rows {1, 2, 13} and {12, 13} both paste to "1213" (Q9).
    n = 13
    obs = np.zeros((n, 3), dtype=bool)
    obs[:, 0] = True
    obs[[0, 1, 12], 1] = True
    obs[[11, 12], 2] = True
    assert _r_pasted_key(obs[:, 1]) == _r_pasted_key(obs[:, 2]) == "1213"
    m = pattern_map(obs)
    assert _groups_as_lists(m) == [
        (list(range(n)), [0]),
        ([0, 1, 12], [1]),
        ([11, 12], [2]),
    ]
    assert m.n_imputed(obs) == 0


def test_pattern_map_imputes_nothing(block_obs):
    m = pattern_map(block_obs)
    m.validate(block_obs)
    assert m.n_imputed(block_obs) == 0
    for s, g in enumerate(m.groups):
        if s == 0:
            continue
        for j in g.cols:
            assert np.array_equal(np.flatnonzero(block_obs[:, j]), g.rows)
    # group order: first appearance of each pattern along the columns
    firsts = [int(g.cols[0]) for g in m.groups[1:]]
    assert firsts == sorted(firsts)


def test_pattern_map_all_nan_column():
    obs = _hand_made()
    obs[:, 2] = False
    m = pattern_map(obs)
    m.validate(obs)
    empty = [g for g in m.groups if g.cols.tolist() == [2]]
    assert len(empty) == 1 and empty[0].rows.size == 0


# --------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------


def test_validate_accepts_good_maps(block_obs):
    full_imputation_map(block_obs).validate(block_obs)
    pattern_map(block_obs).validate(block_obs)


def test_validate_column_in_two_groups():
    obs = _hand_made()
    m = MissingDataMap((TraitGroup(range(8), [0, 1, 2, 3, 4]), TraitGroup([0, 1, 2, 3], [1])))
    with pytest.raises(ValueError, match="more than one group"):
        m.validate(obs)


def test_validate_missing_column():
    obs = _hand_made()
    m = MissingDataMap((TraitGroup(range(8), [0, 1, 2, 3]),))
    with pytest.raises(ValueError, match="in no group"):
        m.validate(obs)


def test_validate_group0_rows():
    obs = _hand_made()
    m = MissingDataMap((TraitGroup(range(7), []), TraitGroup(range(8), [0, 1, 2, 3, 4])))
    with pytest.raises(ValueError, match="group 0 must have exactly the rows"):
        m.validate(obs)


def test_validate_observed_cell_outside_block():
    obs = _hand_made()
    m = MissingDataMap(
        (
            TraitGroup(range(8), [0, 2, 3, 4]),
            TraitGroup([0, 1, 2], [1]),  # row 3 of column 1 is observed
        )
    )
    with pytest.raises(ValueError, match=r"row 3, column 1 \(group 1\)"):
        m.validate(obs)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ((), "at least one group"),
        ((TraitGroup(range(8), [0, 1, 2, 3, 5]),), "out of range"),
        ((TraitGroup(range(8), [0, 2, 1, 3, 4]),), "sorted and unique"),
        ((TraitGroup([0, 1, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4]),), "sorted and unique"),
        ((TraitGroup(range(8), [0, 1, 2, 3, 4]), TraitGroup([0], [])), "no columns"),
    ],
)
def test_validate_index_errors(groups, message):
    with pytest.raises(ValueError, match=message):
        MissingDataMap(groups).validate(_hand_made())


# --------------------------------------------------------------------------------------
# to_frame
# --------------------------------------------------------------------------------------


def test_to_frame():
    obs = _hand_made()
    m = MissingDataMap(
        (
            TraitGroup(range(8), [0, 4]),
            TraitGroup([0, 1, 2, 3], [1, 3]),
            TraitGroup(range(4, 8), [2]),
        )
    )
    m.validate(obs)
    f = m.to_frame(["a", "b", "c", "d", "e"], observed=obs)
    assert list(f.columns) == ["group", "n_rows", "n_traits", "traits", "n_imputed"]
    assert f["group"].tolist() == [0, 1, 2]
    assert f["n_rows"].tolist() == [8, 4, 4]
    assert f["n_traits"].tolist() == [2, 2, 1]
    assert f["traits"].tolist() == [["a", "e"], ["b", "d"], ["c"]]
    assert f["n_imputed"].tolist() == [4, 0, 0]
    assert int(f["n_imputed"].sum()) == m.n_imputed(obs)
    bare = m.to_frame()
    assert bare["traits"].tolist() == [[0, 4], [1, 3], [2]]
    assert bare["n_imputed"].isna().all()


# --------------------------------------------------------------------------------------
# search_maps
# --------------------------------------------------------------------------------------


def test_search_maps_block_pattern(block_obs):
    max_groups = 8
    maps, table = search_maps(block_obs, max_groups, np.random.default_rng(11))
    assert len(maps) == len(table) >= 2
    assert table.index.name == "map"
    assert table.index.tolist() == list(range(len(maps)))
    assert list(table.columns) == [
        "n_groups",
        "n_imputed",
        "n_predicted_only",
        "largest_group",
        "precompute_mb",
    ]
    n_nan = int((~block_obs).sum())
    assert maps[0] == full_imputation_map(block_obs)
    for m, (_, row) in zip(maps, table.iterrows(), strict=True):
        m.validate(block_obs)
        assert m.n_groups == row["n_groups"] <= max_groups
        assert m.n_imputed(block_obs) == row["n_imputed"]
        assert row["n_imputed"] + row["n_predicted_only"] == n_nan
        sizes = [g.n_rows for g in m.groups]
        assert row["largest_group"] == max(sizes[1:], default=0)
        expected_mb = sum(8 * (s * s + 100 * s) for s in sizes) / 2**20
        assert row["precompute_mb"] == pytest.approx(expected_mb)
    assert np.all(np.diff(table["n_imputed"].to_numpy()) <= 0)
    assert table["n_imputed"].iloc[0] == n_nan
    best = best_map(maps, table)
    assert table["n_imputed"].iloc[best] < 0.3 * n_nan
    # the three row blocks are found: no group beyond group 0 spans all rows
    assert all(g.n_rows < block_obs.shape[0] for g in maps[best].groups[1:])


def test_search_maps_deterministic(block_obs):
    maps1, table1 = search_maps(block_obs, 6, np.random.default_rng(5))
    maps2, table2 = search_maps(block_obs, 6, np.random.default_rng(5))
    assert maps1 == maps2
    pd.testing.assert_frame_equal(table1, table2)


def test_search_maps_starting_groups(block_obs):
    labels = np.array([7, 7, 7, 7, 2, 2, 2, 2, 5, 5, 5, 5])  # the true column blocks
    maps, table = search_maps(block_obs, 10, np.random.default_rng(0), starting_groups=labels)
    start = maps[0]
    # no block covers every row, so (nz, no columns) is prepended
    assert start.groups[0] == TraitGroup(np.arange(300), [])
    assert [g.cols.tolist() for g in start.groups[1:]] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
    ]
    for g in start.groups[1:]:
        assert np.array_equal(g.rows, np.flatnonzero(block_obs[:, g.cols].any(axis=1)))
    assert table["n_groups"].iloc[0] == 4
    assert table["n_imputed"].iloc[0] < full_imputation_map(block_obs).n_imputed(block_obs)
    assert np.all(np.diff(table["n_imputed"].to_numpy()) <= 0)
    for m in maps:
        m.validate(block_obs)
        assert m.n_groups <= 10
    other, _ = search_maps(block_obs, 10, np.random.default_rng(0))
    assert other[0] != start


def test_search_maps_starting_group_covering_all_rows_becomes_group0():
    obs = _hand_made()
    labels = ["x", "y", "x", "z", "y"]  # group "x" = columns 0, 2 covers every row
    maps, _ = search_maps(obs, 5, np.random.default_rng(0), starting_groups=labels)
    assert _groups_as_lists(maps[0]) == [
        (list(range(8)), [0, 2]),
        ([0, 1, 2, 3, 4, 6], [1, 4]),
        ([0, 1, 2, 3], [3]),
    ]
    labels = ["y", "y", "x", "y", "y"]  # "x" (column 2 only) does not; "y" does but is 2nd
    maps, _ = search_maps(obs, 5, np.random.default_rng(0), starting_groups=labels)
    assert _groups_as_lists(maps[0]) == [
        (list(range(8)), [0, 1, 3, 4]),
        ([4, 5, 6, 7], [2]),
    ]


def test_search_maps_split_of_two_columns_and_group0_replacement():
    obs = _hand_made()[:, [0, 1]]  # column 0 everywhere, column 1 rows 0-3
    maps, table = search_maps(obs, 4, np.random.default_rng(0))
    assert len(maps) == 2
    # the half with |O| = |nz| (column 0) replaces group 0; the other is appended
    assert _groups_as_lists(maps[1]) == [(list(range(8)), [0]), ([0, 1, 2, 3], [1])]
    assert table["n_imputed"].tolist() == [4, 0]
    assert table["largest_group"].tolist() == [0, 4]


def test_search_maps_stops_at_zero_imputed():
    obs = _hand_made()
    maps, table = search_maps(obs, 50, np.random.default_rng(2))
    assert table["n_imputed"].iloc[-1] == 0
    assert len(maps) < 50
    for m in maps:
        m.validate(obs)


def test_search_maps_never_exceeds_max_groups():
    # Splitting group 0 into two halves that both miss some rows adds 2 groups; with
    # max_groups = 2 R would end with 3 groups, here the search stops.
    obs = np.zeros((6, 2), dtype=bool)
    obs[:3, 0] = True
    obs[3:, 1] = True
    maps, table = search_maps(obs, 2, np.random.default_rng(0))
    assert len(maps) == 1 and table["n_groups"].tolist() == [1]
    maps, table = search_maps(obs, 3, np.random.default_rng(0))
    assert table["n_groups"].tolist() == [1, 3]
    assert _groups_as_lists(maps[1]) == [(list(range(6)), []), ([0, 1, 2], [0]), ([3, 4, 5], [1])]


def test_search_maps_kmeans_empty_cluster_fallback(monkeypatch):
    obs = _hand_made()

    def one_cluster(data, k, **kwargs):
        return np.zeros((k, data.shape[1])), np.zeros(data.shape[0], dtype=np.int32)

    monkeypatch.setattr(missing_mod, "kmeans2", one_cluster)
    maps, _ = search_maps(obs, 2, np.random.default_rng(0))
    # NA vectors over all 8 rows: column 2 (rows 4-7 observed) is farthest from the mean
    assert _groups_as_lists(maps[1]) == [(list(range(8)), [0, 1, 3, 4]), ([4, 5, 6, 7], [2])]
    maps[1].validate(obs)


def test_search_maps_custom_bytes_per_group(block_obs):
    _, table = search_maps(block_obs, 4, np.random.default_rng(1), bytes_per_group=lambda n: 2**20)
    assert table["precompute_mb"].tolist() == table["n_groups"].astype(float).tolist()
    assert default_bytes_per_group(300) == 8 * (300**2 + 100 * 300)


def test_search_maps_argument_errors(block_obs):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="max_groups"):
        search_maps(block_obs, 0, rng)
    with pytest.raises(TypeError, match="max_groups"):
        search_maps(block_obs, 2.5, rng)
    with pytest.raises(TypeError, match="Generator"):
        search_maps(block_obs, 3, 0)
    with pytest.raises(ValueError, match="one label per column"):
        search_maps(block_obs, 3, rng, starting_groups=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="more than max_groups"):
        search_maps(block_obs, 2, rng, starting_groups=np.arange(12) % 3)


# --------------------------------------------------------------------------------------
# best_map
# --------------------------------------------------------------------------------------


def test_best_map_budget_and_ties():
    maps = [MissingDataMap((TraitGroup([0], [0]),))] * 4
    table = pd.DataFrame(
        {
            "n_groups": [1, 3, 2, 4],
            "n_imputed": [10, 2, 2, 0],
            "n_predicted_only": [0, 8, 8, 10],
            "largest_group": [0, 5, 5, 5],
            "precompute_mb": [1.0, 3.0, 2.0, 9.0],
        }
    )
    assert best_map(maps, table) == 3
    assert best_map(maps, table, max_precompute_mb=5.0) == 2  # tie on 2: fewer groups
    assert best_map(maps, table, max_precompute_mb=1.0) == 0
    with pytest.raises(ValueError, match="no map fits"):
        best_map(maps, table, max_precompute_mb=0.5)
    with pytest.raises(ValueError, match="maps but"):
        best_map(maps[:2], table)


# --------------------------------------------------------------------------------------
# A simulated multi-environment trial
# --------------------------------------------------------------------------------------


def test_simulated_met():
    sim = simulate_met(n_lines=150, n_envs=9, n_pops=3, envs_per_line=(2, 4), n_markers=200)
    Y, _ = to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    obs = ~np.isnan(Y.to_numpy())
    n_nan = int((~obs).sum())
    assert pattern_map(obs).n_imputed(obs) == 0
    maps, table = search_maps(obs, 6, np.random.default_rng(0))
    assert table["n_imputed"].iloc[0] == n_nan
    assert np.all(np.diff(table["n_imputed"].to_numpy()) <= 0)
    assert table["n_imputed"].iloc[best_map(maps, table)] < 0.5 * n_nan
    for m in maps:
        m.validate(obs)
        assert m.n_groups <= 6
    frame = maps[-1].to_frame(Y.columns, observed=obs)
    assert sorted(sum(frame["traits"].tolist(), [])) == sorted(Y.columns)
