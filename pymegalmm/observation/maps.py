"""Missing-data maps: which NaN cells of ``Y`` are imputed and which are only predicted.

A *missing-data map* partitions the traits (columns of ``Y``, ``n x t``) into groups.
Group ``s`` has rows ``O_s`` and columns ``C_s``:

* NaN cells inside the block ``O_s x C_s`` are imputed every iteration (treated as data);
* cells of a column in ``C_s`` whose row is outside ``O_s`` are *predicted only*: they are
  excluded from the likelihood.

Group 0 (R's set 1) always has ``O_0`` = every row with at least one observation ("nz")
and may have no columns; its rows are used for every factor-side update. Fewer imputed
cells mix better; more groups cost more precomputation (one ``n_s x n_s`` rotation each).

This module re-implements ``make_Missing_data_map`` of the R package MegaLMM
(``R/Utilities.R``; METHOD.md section 6):

* :func:`full_imputation_map` -- the default, one group (nz rows, all columns);
* :func:`pattern_map` -- ``max_NA_groups = Inf``: one group per exact observed-row pattern;
* :func:`search_maps` -- finite ``max_NA_groups``: greedy 2-means splitting of the group
  that imputes most cells, recording every intermediate map;
* :func:`best_map` -- pick a map from the :func:`search_maps` sequence.

Deviations from R, all deliberate:

* Column patterns are compared as exact boolean keys (bytes of the packed column), not as
  row indices pasted together without a separator, which can collide (METHOD.md **Q9**:
  ``{1, 12}`` and ``{11, 2}`` both paste to ``"112"``).
* k-means is :func:`scipy.cluster.vq.kmeans2` with ``k = 2``, ``minit="++"`` and the
  caller's :class:`numpy.random.Generator` (R: ``stats::kmeans``, Hartigan-Wong, its
  global RNG). When k-means leaves a cluster empty (R would stop with an error), the
  column farthest (Euclidean) from the group's mean NA vector is split off alone.
* The two halves of a split are ordered by decreasing ``|O|`` and, on ties, by their
  first column (R keeps the arbitrary k-means label order on ties).
* R can end one group above ``max_NA_groups`` (splitting group 0 without a new group
  covering every nz row adds two groups); :func:`search_maps` stops instead, so no map
  has more than ``max_groups`` groups.
* With ``starting_groups``, a group covering every nz row that is not the first is moved
  to position 0 (R would leave a set 1 without all nz rows).
* ``largest_group`` of the starting map is the largest ``|O|`` excluding group 0 (0 if
  there is none); R reports ``|nz|`` there.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

__all__ = [
    "MissingDataMap",
    "TraitGroup",
    "best_map",
    "default_bytes_per_group",
    "full_imputation_map",
    "pattern_map",
    "search_maps",
]

# scipy >= 1.15 names the Generator argument ``rng`` (``seed`` is its deprecated alias);
# older versions only know ``seed``. Both use a Generator passed to them as is.
_KMEANS_RNG_KW = "rng" if "rng" in inspect.signature(kmeans2).parameters else "seed"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _as_observed(observed: np.ndarray) -> np.ndarray:
    """Check and return the ``n x t`` boolean mask of observed cells."""
    if isinstance(observed, pd.DataFrame):
        observed = observed.to_numpy()
    arr = np.asarray(observed)
    if arr.dtype != np.bool_:
        raise TypeError(
            "observed must be a boolean n x t mask (True = observed), got dtype "
            f"{arr.dtype}; for a trait matrix Y with NaN = missing pass ~np.isnan(Y)"
        )
    if arr.ndim != 2:
        raise ValueError(f"observed must be 2-D (n x t), got {arr.ndim} dimension(s)")
    return arr


def _index_array(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a read-only 1-D int64 array (no range or order checks)."""
    arr = np.asarray(values)
    if arr.size == 0:
        arr = np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64, copy=True)
    out.setflags(write=False)
    return out


def _rows_observed_in(obs: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Rows (among all rows) with at least one observation in columns ``cols``."""
    if cols.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(obs[:, cols].any(axis=1)).astype(np.int64)


def _nz_rows(obs: np.ndarray) -> np.ndarray:
    """Rows with at least one observation (R's ``non_missing_rows``)."""
    return np.flatnonzero(obs.any(axis=1)).astype(np.int64)


def _block_nans(obs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> int:
    """Number of NaN (unobserved) cells inside the block ``rows x cols``."""
    if rows.size == 0 or cols.size == 0:
        return 0
    return int(rows.size * cols.size - np.count_nonzero(obs[np.ix_(rows, cols)]))


def default_bytes_per_group(n_rows: int) -> int:
    """Default precomputation size of one group with ``n_rows`` rows, in bytes.

    ``8 * (n_s**2 + 100 * n_s)``: the ``n_s x n_s`` rotation ``Q_s`` in float64 plus
    100 float64 values per row (rotated design matrices, eigenvalues, ...).

    Parameters
    ----------
    n_rows : int
        ``n_s = |O_s|``.

    Returns
    -------
    int
        Bytes.
    """
    n = int(n_rows)
    return 8 * (n * n + 100 * n)


# --------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TraitGroup:
    """One group of a missing-data map: the block ``rows x cols``.

    Attributes
    ----------
    rows : numpy.ndarray
        Sorted int64 row indices ``O_s`` (read-only copy of what was passed).
    cols : numpy.ndarray
        Sorted int64 column (trait) indices ``C_s``; may be empty for group 0 only.

    Notes
    -----
    Construction converts both to read-only int64 arrays but does not check order, range
    or uniqueness; :meth:`MissingDataMap.validate` does. Two groups are equal when their
    rows and columns are equal.
    """

    rows: np.ndarray
    cols: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _index_array(self.rows, "rows"))
        object.__setattr__(self, "cols", _index_array(self.cols, "cols"))

    @property
    def n_rows(self) -> int:
        """Number of rows ``n_s``."""
        return int(self.rows.size)

    @property
    def n_cols(self) -> int:
        """Number of columns ``|C_s|``."""
        return int(self.cols.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraitGroup):
            return NotImplemented
        return bool(np.array_equal(self.rows, other.rows) and np.array_equal(self.cols, other.cols))

    def __hash__(self) -> int:
        return hash((self.rows.tobytes(), self.cols.tobytes()))

    def __repr__(self) -> str:
        def short(a: np.ndarray) -> str:
            if a.size <= 8:
                return str(a.tolist())
            return f"[{', '.join(map(str, a[:3].tolist()))}, ..., {a[-1]}] ({a.size})"

        return f"TraitGroup(rows={short(self.rows)}, cols={short(self.cols)})"


@dataclass(frozen=True)
class MissingDataMap:
    """A partition of the traits into groups, each with its own set of rows.

    Attributes
    ----------
    groups : tuple of TraitGroup
        Group 0 first (rows = every row with an observation; columns possibly empty).

    Notes
    -----
    Use :meth:`validate` to check a map against a mask of observed cells; the functions of
    this module only return validated maps.
    """

    groups: tuple[TraitGroup, ...]

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        for g in groups:
            if not isinstance(g, TraitGroup):
                raise TypeError(f"groups must be TraitGroup objects, got {type(g).__name__}")
        object.__setattr__(self, "groups", groups)

    # -- sizes -------------------------------------------------------------------------

    @property
    def n_groups(self) -> int:
        """Number of groups (including group 0)."""
        return len(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def column_groups(self, n_cols: int) -> np.ndarray:
        """Group index of every column.

        Parameters
        ----------
        n_cols : int
            Number of traits ``t``.

        Returns
        -------
        numpy.ndarray
            int64 array of length ``n_cols``; ``-1`` for a column in no group.
        """
        out = np.full(int(n_cols), -1, dtype=np.int64)
        for s, g in enumerate(self.groups):
            out[g.cols] = s
        return out

    def block_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean ``n x t`` mask of the cells inside some block ``O_s x C_s``.

        These are the cells that enter the likelihood (observed or imputed); the others
        are predicted only. In R: the complement of ``Y_missing_mat`` built by
        ``set_Missing_data_map``.

        Parameters
        ----------
        shape : (int, int)
            ``(n, t)``.

        Returns
        -------
        numpy.ndarray
        """
        mask = np.zeros(shape, dtype=bool)
        for g in self.groups:
            if g.rows.size and g.cols.size:
                mask[np.ix_(g.rows, g.cols)] = True
        return mask

    # -- counts ------------------------------------------------------------------------

    def n_imputed(self, observed: np.ndarray) -> int:
        """Number of NaN cells inside the blocks (imputed every iteration).

        R's ``total_kept_NAs``.

        Parameters
        ----------
        observed : numpy.ndarray
            Boolean ``n x t`` mask, True where ``Y`` is observed.

        Returns
        -------
        int
        """
        obs = _as_observed(observed)
        return sum(_block_nans(obs, g.rows, g.cols) for g in self.groups)

    def n_predicted_only(self, observed: np.ndarray) -> int:
        """Number of NaN cells outside every block (excluded from the likelihood).

        Parameters
        ----------
        observed : numpy.ndarray
            Boolean ``n x t`` mask, True where ``Y`` is observed.

        Returns
        -------
        int
        """
        obs = _as_observed(observed)
        return int(np.count_nonzero(~obs & ~self.block_mask(obs.shape)))

    def group_imputed(self, observed: np.ndarray) -> np.ndarray:
        """Number of imputed (NaN) cells inside each group's block.

        Parameters
        ----------
        observed : numpy.ndarray
            Boolean ``n x t`` mask, True where ``Y`` is observed.

        Returns
        -------
        numpy.ndarray
            int64 array, one entry per group.
        """
        obs = _as_observed(observed)
        return np.array([_block_nans(obs, g.rows, g.cols) for g in self.groups], dtype=np.int64)

    # -- checks ------------------------------------------------------------------------

    def validate(self, observed: np.ndarray) -> None:
        """Check the map against the observed cells.

        Parameters
        ----------
        observed : numpy.ndarray
            Boolean ``n x t`` mask, True where ``Y`` is observed.

        Raises
        ------
        ValueError
            If there is no group; if a group's rows or columns are not sorted, unique and
            in range; if a group other than group 0 has no columns; if a column is in no
            group or in more than one; if group 0's rows are not exactly the rows with at
            least one observation; or if an observed cell ``(i, j)`` lies outside its
            column's block (observed data must never be excluded).
        """
        obs = _as_observed(observed)
        n, t = obs.shape
        if not self.groups:
            raise ValueError("a missing-data map needs at least one group (group 0)")
        for s, g in enumerate(self.groups):
            for name, idx, size in (("rows", g.rows, n), ("cols", g.cols, t)):
                if idx.size == 0:
                    continue
                if idx.min() < 0 or idx.max() >= size:
                    bad = idx[(idx < 0) | (idx >= size)]
                    raise ValueError(
                        f"group {s}: {name} out of range [0, {size}): {bad[:5].tolist()}"
                    )
                if idx.size > 1 and np.any(np.diff(idx) <= 0):
                    raise ValueError(f"group {s}: {name} must be sorted and unique")
            if s > 0 and g.cols.size == 0:
                raise ValueError(f"group {s} has no columns (only group 0 may be empty)")

        counts = np.zeros(t, dtype=np.int64)
        for g in self.groups:
            counts[g.cols] += 1
        if np.any(counts == 0):
            raise ValueError(
                f"{int(np.sum(counts == 0))} column(s) in no group, e.g. "
                f"{np.flatnonzero(counts == 0)[:5].tolist()}"
            )
        if np.any(counts > 1):
            dup = np.flatnonzero(counts > 1)
            raise ValueError(
                f"{dup.size} column(s) in more than one group, e.g. {dup[:5].tolist()}"
            )

        nz = _nz_rows(obs)
        if not np.array_equal(self.groups[0].rows, nz):
            missing = np.setdiff1d(nz, self.groups[0].rows)
            extra = np.setdiff1d(self.groups[0].rows, nz)
            raise ValueError(
                "group 0 must have exactly the rows with at least one observation "
                f"({nz.size} rows); it lacks {missing.size} (e.g. {missing[:5].tolist()}) "
                f"and has {extra.size} extra (e.g. {extra[:5].tolist()})"
            )

        outside = obs & ~self.block_mask(obs.shape)
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise ValueError(
                f"{int(outside.sum())} observed cell(s) lie outside their column's block, "
                f"e.g. row {int(i)}, column {int(j)} (group "
                f"{int(self.column_groups(t)[j])}); observed data must never be excluded"
            )

    # -- display -----------------------------------------------------------------------

    def to_frame(
        self,
        trait_names: Sequence[object] | None = None,
        *,
        observed: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """One row per group: its size and traits.

        Parameters
        ----------
        trait_names : sequence, optional
            Name of every column of ``Y`` (e.g. ``Y.columns``); column indices if omitted.
        observed : numpy.ndarray, optional
            Boolean ``n x t`` mask of observed cells. Needed for ``n_imputed``, which is
            missing (``<NA>``) without it.

        Returns
        -------
        pandas.DataFrame
            Columns ``group``, ``n_rows``, ``n_traits``, ``traits`` (list of names) and
            ``n_imputed`` (nullable integer).
        """
        names = None if trait_names is None else list(trait_names)
        imputed = None if observed is None else self.group_imputed(observed)
        records = []
        for s, g in enumerate(self.groups):
            traits = g.cols.tolist() if names is None else [names[j] for j in g.cols.tolist()]
            records.append(
                {
                    "group": s,
                    "n_rows": g.n_rows,
                    "n_traits": g.n_cols,
                    "traits": traits,
                    "n_imputed": pd.NA if imputed is None else int(imputed[s]),
                }
            )
        frame = pd.DataFrame.from_records(
            records, columns=["group", "n_rows", "n_traits", "traits", "n_imputed"]
        )
        frame["n_imputed"] = frame["n_imputed"].astype("Int64")
        return frame

    def __repr__(self) -> str:
        sizes = ", ".join(f"{g.n_rows}x{g.n_cols}" for g in self.groups)
        return f"MissingDataMap({self.n_groups} groups, rows x traits: {sizes})"


# --------------------------------------------------------------------------------------
# Map builders
# --------------------------------------------------------------------------------------


def full_imputation_map(observed: np.ndarray) -> MissingDataMap:
    """The default map: one group with every nz row and every column.

    Every NaN cell (in a row with at least one observation) is imputed.

    Parameters
    ----------
    observed : numpy.ndarray
        Boolean ``n x t`` mask, True where ``Y`` is observed.

    Returns
    -------
    MissingDataMap
    """
    obs = _as_observed(observed)
    out = MissingDataMap((TraitGroup(_nz_rows(obs), np.arange(obs.shape[1])),))
    out.validate(obs)
    return out


def pattern_map(observed: np.ndarray) -> MissingDataMap:
    """One group per exact observed-row pattern: nothing is imputed.

    R's ``make_Missing_data_map`` with ``max_NA_groups = Inf``. Group 0 holds the columns
    observed in exactly the nz rows (possibly none); every other group holds the columns
    sharing one observed-row pattern, with those rows as ``O``. Groups after group 0 are
    in order of the first column with their pattern. Patterns are compared exactly (as
    bytes), unlike R's pasted row indices (METHOD.md **Q9**).

    Parameters
    ----------
    observed : numpy.ndarray
        Boolean ``n x t`` mask, True where ``Y`` is observed.

    Returns
    -------
    MissingDataMap
        ``n_imputed`` is 0. A column without any observation gets a group with no rows.
    """
    obs = _as_observed(observed)
    nz_mask = obs.any(axis=1)
    keys: dict[bytes, list[int]] = {np.packbits(nz_mask).tobytes(): []}
    for j in range(obs.shape[1]):
        keys.setdefault(np.packbits(obs[:, j]).tobytes(), []).append(j)
    groups = []
    for s, cols in enumerate(keys.values()):
        cols_arr = np.asarray(cols, dtype=np.int64)
        rows = np.flatnonzero(nz_mask) if s == 0 else _rows_observed_in(obs, cols_arr)
        groups.append(TraitGroup(rows, cols_arr))
    out = MissingDataMap(tuple(groups))
    out.validate(obs)
    return out


def _start_map(obs: np.ndarray, starting_groups: object | None) -> list[TraitGroup]:
    """The first map of :func:`search_maps` as a list of groups."""
    nz = _nz_rows(obs)
    t = obs.shape[1]
    if starting_groups is None:
        return [TraitGroup(nz, np.arange(t))]
    labels = np.asarray(starting_groups)
    if labels.ndim != 1 or labels.size != t:
        raise ValueError(
            f"starting_groups must be 1-D with one label per column ({t}), got shape {labels.shape}"
        )
    codes, _ = pd.factorize(labels, sort=False)  # codes in order of first appearance
    if np.any(codes < 0):
        raise ValueError("starting_groups must not contain missing labels")
    groups = []
    for code in range(int(codes.max()) + 1 if t else 0):
        cols = np.flatnonzero(codes == code).astype(np.int64)
        groups.append(TraitGroup(_rows_observed_in(obs, cols), cols))
    covering = [s for s, g in enumerate(groups) if np.array_equal(g.rows, nz)]
    if not covering:
        groups.insert(0, TraitGroup(nz, np.zeros(0, dtype=np.int64)))
    elif covering[0] != 0:
        groups.insert(0, groups.pop(covering[0]))
    return groups


def _split_columns(
    obs: np.ndarray, group: TraitGroup, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split a group's columns in two (2 columns: one each; else 2-means on NA vectors)."""
    cols = group.cols
    if cols.size == 2:
        return cols[:1], cols[1:]
    data = (~obs[np.ix_(group.rows, cols)]).T.astype(np.float64)  # one row per column
    with warnings.catch_warnings():
        # kmeans2 warns on an empty cluster; that case is handled below.
        warnings.simplefilter("ignore", UserWarning)
        _, labels = kmeans2(data, 2, minit="++", **{_KMEANS_RNG_KW: rng})
    first = labels == labels[0]
    if first.all():
        # Empty cluster: split off the column farthest from the mean NA vector.
        dist = ((data - data.mean(axis=0)) ** 2).sum(axis=1)
        first = np.ones(cols.size, dtype=bool)
        first[int(np.argmax(dist))] = False
    return cols[first], cols[~first]


def _map_stats(
    obs: np.ndarray, groups: Sequence[TraitGroup], bytes_per_group: Callable[[int], int]
) -> dict[str, float | int]:
    """One row of the :func:`search_maps` table."""
    m = MissingDataMap(tuple(groups))
    return {
        "n_groups": m.n_groups,
        "n_imputed": m.n_imputed(obs),
        "n_predicted_only": m.n_predicted_only(obs),
        "largest_group": max((g.n_rows for g in m.groups[1:]), default=0),
        "precompute_mb": sum(int(bytes_per_group(g.n_rows)) for g in m.groups) / 2**20,
    }


def search_maps(
    observed: np.ndarray,
    max_groups: int,
    rng: np.random.Generator,
    starting_groups: np.ndarray | None = None,
    bytes_per_group: Callable[[int], int] | None = None,
) -> tuple[list[MissingDataMap], pd.DataFrame]:
    """Greedy search for maps that impute few cells with at most ``max_groups`` groups.

    R's ``make_Missing_data_map`` with a finite ``max_NA_groups``. Starting from the
    full-imputation map (or from ``starting_groups``), repeat while there are fewer than
    ``max_groups`` groups and the step count (starting at 1) is below ``2 * max_groups``:

    1. count the NaN cells inside each group's block (a group with at most one column
       counts 0); stop if every count is 0;
    2. split the first group with the largest count: with 2 columns, one each; otherwise
       2-means (:func:`scipy.cluster.vq.kmeans2`, ``minit="++"``, ``rng``) on the columns'
       0/1 NA vectors over the group's rows (if a cluster is empty, the column farthest
       from the mean NA vector is split off alone);
    3. each half gets ``O`` = the rows, among all rows, with an observation in its
       columns; the halves are ordered by decreasing ``|O|`` (ties: first column);
    4. if group 0 was split: when the first half has ``|O| = |nz|`` it becomes group 0
       and the other half is appended; otherwise group 0 keeps the nz rows with no
       columns and both halves are appended (if that would exceed ``max_groups`` groups,
       the search stops instead -- R can overshoot by one here). Any other split group
       is removed and both halves are appended;
    5. record the map.

    Since each half's rows are a subset of its parent's, ``n_imputed`` never increases
    along the returned list.

    Parameters
    ----------
    observed : numpy.ndarray
        Boolean ``n x t`` mask, True where ``Y`` is observed.
    max_groups : int
        Largest number of groups (including group 0), ``>= 1``.
    rng : numpy.random.Generator
        Random source of k-means; the result is a deterministic function of its state.
    starting_groups : array-like, optional
        A label per column. Each distinct label (in order of first appearance) starts as
        one group with ``O`` = the rows with an observation in its columns. A group that
        covers every nz row becomes group 0; if none does, ``(nz, no columns)`` is
        prepended as group 0.
    bytes_per_group : callable, optional
        ``n_s -> bytes`` of precomputation for one group with ``n_s`` rows; default
        :func:`default_bytes_per_group`.

    Returns
    -------
    maps : list of MissingDataMap
        ``maps[0]`` is the starting map, then one map per split.
    table : pandas.DataFrame
        One row per map (index ``map``, matching positions in ``maps``) with columns
        ``n_groups``, ``n_imputed`` (R's ``total_kept_NAs``), ``n_predicted_only``,
        ``largest_group`` (largest ``|O|`` excluding group 0, 0 if none) and
        ``precompute_mb`` (sum of ``bytes_per_group(n_s)`` over groups, in MiB).

    Raises
    ------
    ValueError
        If ``max_groups < 1``, ``starting_groups`` has the wrong length, or the starting
        map has more than ``max_groups`` groups.
    TypeError
        If ``rng`` is not a :class:`numpy.random.Generator` or ``max_groups`` is not an
        integer.
    """
    obs = _as_observed(observed)
    if isinstance(max_groups, bool) or not isinstance(max_groups, numbers.Integral):
        raise TypeError(f"max_groups must be an integer, got {max_groups!r}")
    max_groups = int(max_groups)
    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    size_of = default_bytes_per_group if bytes_per_group is None else bytes_per_group

    nz_count = int(obs.any(axis=1).sum())
    groups = _start_map(obs, starting_groups)
    if len(groups) > max_groups:
        raise ValueError(
            f"the starting map has {len(groups)} groups (including group 0), "
            f"more than max_groups = {max_groups}"
        )
    maps = [MissingDataMap(tuple(groups))]
    maps[0].validate(obs)
    rows = [_map_stats(obs, groups, size_of)]

    step = 1
    while len(groups) < max_groups and step < 2 * max_groups:
        step += 1
        counts = [0 if g.n_cols <= 1 else _block_nans(obs, g.rows, g.cols) for g in groups]
        if max(counts) == 0:
            break
        target = int(np.argmax(counts))  # first group with the largest count
        halves = []
        for cols in _split_columns(obs, groups[target], rng):
            halves.append(TraitGroup(_rows_observed_in(obs, cols), cols))
        halves.sort(key=lambda g: (-g.n_rows, int(g.cols[0])))
        if target == 0:
            if halves[0].n_rows == nz_count:
                groups = [halves[0], *groups[1:], halves[1]]
            else:
                if len(groups) + 2 > max_groups:
                    break
                group0 = TraitGroup(groups[0].rows, np.zeros(0, dtype=np.int64))
                groups = [group0, *groups[1:], *halves]
        else:
            groups = [*groups[:target], *groups[target + 1 :], *halves]
        new_map = MissingDataMap(tuple(groups))
        new_map.validate(obs)
        maps.append(new_map)
        rows.append(_map_stats(obs, groups, size_of))

    table = pd.DataFrame.from_records(rows)
    table.index.name = "map"
    return maps, table


def best_map(
    maps: Sequence[MissingDataMap],
    table: pd.DataFrame,
    max_precompute_mb: float | None = None,
) -> int:
    """Index of the map imputing the fewest cells within a memory budget.

    Parameters
    ----------
    maps : sequence of MissingDataMap
        As returned by :func:`search_maps`.
    table : pandas.DataFrame
        Its table (positions match ``maps``).
    max_precompute_mb : float, optional
        Keep only maps with ``precompute_mb <= max_precompute_mb``; no limit if omitted.

    Returns
    -------
    int
        Position in ``maps`` of the map with the fewest imputed cells; ties go to fewer
        groups, then to the earlier map.

    Raises
    ------
    ValueError
        If ``maps`` and ``table`` differ in length, or no map fits the budget.
    """
    if len(maps) != len(table):
        raise ValueError(f"{len(maps)} maps but {len(table)} table rows")
    if len(maps) == 0:
        raise ValueError("no maps to choose from")
    imputed = table["n_imputed"].to_numpy()
    n_groups = table["n_groups"].to_numpy()
    ok = np.ones(len(table), dtype=bool)
    if max_precompute_mb is not None:
        ok = table["precompute_mb"].to_numpy() <= max_precompute_mb
        if not ok.any():
            raise ValueError(
                f"no map fits max_precompute_mb = {max_precompute_mb}; the smallest needs "
                f"{table['precompute_mb'].min():.3g} MB"
            )
    candidates = np.flatnonzero(ok)
    order = np.lexsort((candidates, n_groups[candidates], imputed[candidates]))
    return int(candidates[order[0]])
