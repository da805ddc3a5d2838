"""Turn traits, a formula, data and relationship matrices into model matrices.

:func:`build_design` is the one entry point. It takes the trait matrix ``Y``,
an lme4-style formula (see :mod:`pymegalmm.formula`), a data frame with one row
per row of ``Y`` and optional relationship matrices, and returns a
:class:`Design` holding

- ``Y`` (``n x t``, NaN = missing) and the trait names,
- ``X1``, the dense fixed-effect design built by formulaic (its ``ModelSpec``
  is kept so :meth:`Design.fixed_for` builds the same columns for new data),
- one :class:`RandomEffect` per variance component, each with its sparse
  incidence matrix ``Z``, the covariance ``K`` of its levels (bound by level
  name) and the reduced-rank map ``L`` used when ``K`` is singular
  (``K ~= L K_tilde L'``; METHOD.md section 2.1).

Nothing here is sampled or precomputed for the Gibbs sampler: this module only
checks the inputs, aligns them and names things.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError

from .errors import InputError, InputTypeError, LabelError
from .formula import ParsedFormula, RandomTerm, parse_formula
from .linalg import symmetric_eig

__all__ = ["RandomEffect", "Design", "build_design"]

_SYMMETRY_RTOL = 1e-8
_PSD_RTOL = 1e-8


# --------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------


@dataclass
class RandomEffect:
    """One variance component: its incidence matrix and the covariance of its levels.

    Attributes
    ----------
    name : str
        Variance-component name: ``"Line"`` for ``(1|Line)``; ``"Line:Env"`` for
        ``(1|Line:Env)``; for a term with a left-hand design, one component per
        design column named ``f"{group}:{column}"`` with the formulaic column name
        (``"Line:Env[A]"`` for ``(0 + Env|Line)``, ``"Line:x"`` for ``(x||Line)``),
        except that the intercept column is named just ``group``.
    group : str
        Grouping factor name, the key looked up in ``relmat`` (``"Line"``,
        ``"Line:Env"``).
    levels : pandas.Index
        Level names, in the order of the rows of ``K``. When a relationship
        matrix is given these are its labels, in its order (levels without data
        included); otherwise the levels observed in the data, sorted.
    Z : scipy.sparse.csr_matrix
        ``n x r`` float64 incidence matrix: ``Z[i, j]`` is 1 (intercept) or the
        value of the left-hand design column (slope) when row ``i`` belongs to
        level ``j``; explicit zeros are removed.
    K : numpy.ndarray
        ``r x r`` dense covariance of the levels (identity when no relmat).
    L : numpy.ndarray
        ``r x r_tilde`` map with ``K == L @ K_tilde @ L.T`` up to the dropped
        eigenvalues; the ``r x r`` identity when ``K`` has full rank.
    K_tilde : numpy.ndarray
        ``r_tilde x r_tilde`` covariance after rank handling: ``K`` itself when
        full rank, ``diag(kept eigenvalues)`` otherwise.

    Notes
    -----
    Components that share a grouping factor share the same ``K``, ``L`` and
    ``K_tilde`` arrays (and the cache of ``K_tilde``'s eigendecomposition), and
    without a relmat ``K``, ``L`` and ``K_tilde`` are one identity array. Treat them
    as read-only.
    """

    name: str
    group: str
    levels: pd.Index
    Z: scipy.sparse.csr_matrix
    K: np.ndarray
    L: np.ndarray
    K_tilde: np.ndarray
    #: ``{"eig": scipy.linalg.eigh(K_tilde)}`` once computed; shared by the components of
    #: one grouping factor, not pickled.
    eig_cache: dict = field(default_factory=dict, repr=False, compare=False)
    _L_is_identity: bool = field(init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["eig_cache"] = {}  # r x r eigenvectors: recomputed where needed
        return state

    def K_tilde_eig(self) -> tuple[np.ndarray, np.ndarray]:
        """``scipy.linalg.eigh(K_tilde)`` (ascending eigenvalues, eigenvectors), computed
        once per grouping factor and reused by every trait group's precompute (the rank
        handling of K seeds it when K has full rank)."""
        if "eig" not in self.eig_cache:
            self.eig_cache["eig"] = symmetric_eig(self.K_tilde)
        return self.eig_cache["eig"]

    def __post_init__(self) -> None:
        r, c = self.L.shape
        self._L_is_identity = bool(
            r == c and np.all(np.diag(self.L) == 1.0) and np.count_nonzero(self.L) == r
        )

    @property
    def n_levels(self) -> int:
        """Number of levels ``r`` (columns of ``Z``)."""
        return int(self.Z.shape[1])

    @property
    def rank(self) -> int:
        """Number of columns ``r_tilde`` kept after the rank handling of ``K``."""
        return int(self.K_tilde.shape[0])

    @property
    def levels_without_data(self) -> pd.Index:
        """Levels whose column of ``Z`` has no non-zero entry (predicted only)."""
        counts = np.diff(self.Z.tocsc().indptr)
        return self.levels[counts == 0]

    @property
    def ZL(self) -> scipy.sparse.csr_matrix | np.ndarray:
        """Design in the reduced basis, ``Z @ L``.

        Returns
        -------
        scipy.sparse.csr_matrix or numpy.ndarray
            ``Z`` itself (sparse) when ``L`` is the identity, else the dense
            C-contiguous ``n x r_tilde`` product.
        """
        if self._L_is_identity:
            return self.Z
        return np.ascontiguousarray(self.Z @ self.L)


@dataclass
class Design:
    """Everything the model needs from the user's data, checked and aligned.

    Attributes
    ----------
    Y : numpy.ndarray
        ``n x t`` float64 traits, NaN = missing, C-contiguous.
    traits : pandas.Index
        Trait names.
    rows : pandas.Index
        Index labels (of ``data``) of the rows kept.
    X1 : numpy.ndarray
        ``n x b1`` float64 fixed-effect design built by formulaic, C-contiguous.
    fixed_names : list of str
        formulaic column names of ``X1``, e.g. ``["Intercept", "Population[T.2]"]``.
    random : list of RandomEffect
        One entry per variance component, in formula order.
    formula : ParsedFormula
        The parsed formula.
    model_spec : formulaic.ModelSpec
        formulaic's specification of ``X1``, used by :meth:`fixed_for`.
    dropped : dict of str to int
        Number of input rows dropped for each reason (empty when none were).
    """

    Y: np.ndarray
    traits: pd.Index
    rows: pd.Index
    X1: np.ndarray
    fixed_names: list[str]
    random: list[RandomEffect]
    formula: ParsedFormula
    model_spec: Any = field(default=None, repr=False)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of rows (observations) kept."""
        return int(self.Y.shape[0])

    @property
    def n_traits(self) -> int:
        """Number of traits ``t``."""
        return int(self.Y.shape[1])

    def fixed_for(self, new_data: pd.DataFrame) -> np.ndarray:
        """Build the fixed-effect design for new data with the same columns as ``X1``.

        Categorical encodings (levels, reference level) and stateful transforms
        are those learnt from the original data.

        Parameters
        ----------
        new_data : pandas.DataFrame
            New rows with the variables of the fixed part of the formula. Rows
            are used in order; no row is dropped.

        Returns
        -------
        numpy.ndarray
            ``len(new_data) x b1`` float64, C-contiguous, columns ``fixed_names``.

        Raises
        ------
        KeyError
            If a variable of the formula is missing from ``new_data``.
        ValueError
            If ``new_data`` has missing values in those variables or categorical
            levels not seen in the original data.
        """
        if not isinstance(new_data, pd.DataFrame):
            raise TypeError("new_data must be a pandas DataFrame")
        if self.model_spec is None:
            raise ValueError("this Design has no formulaic ModelSpec; build it with build_design")
        _check_variables(
            sorted(Formula(self.formula.fixed).required_variables),
            new_data,
            f"fixed part {self.formula.fixed!r}",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            try:
                mm = self.model_spec.get_model_matrix(new_data.reset_index(drop=True))
            except DataMismatchWarning as exc:
                raise ValueError(
                    f"new_data does not match the data the design was built on: {exc}"
                ) from exc
            except FormulaicError as exc:
                raise _translate_formulaic_error(exc, self.formula.fixed, new_data) from exc
            except ValueError as exc:
                raise ValueError(
                    f"cannot build the fixed design for new_data ({exc}); remove rows with "
                    "missing values in the formula's variables"
                ) from exc
        X = np.ascontiguousarray(mm.to_numpy(dtype=np.float64))
        if list(mm.columns) != self.fixed_names:  # pragma: no cover - formulaic guarantees it
            raise ValueError("new_data produced different fixed-effect columns")
        return X

    def random_for(self, new_data: pd.DataFrame) -> scipy.sparse.csr_matrix:
        """Random-effect design of new rows over every level of every random effect.

        Columns follow the posterior's ``level`` dim (the levels of each random
        effect in order, effects stacked), so ``random_for(new) @ U`` gives the
        genetic values of the new rows.

        Parameters
        ----------
        new_data : pandas.DataFrame
            New rows with the grouping variables (and left-hand-side variables)
            of the formula's random terms.

        Returns
        -------
        scipy.sparse.csr_matrix
            ``len(new_data) x sum(n_levels)``.

        Raises
        ------
        KeyError
            If a variable is missing from ``new_data`` or a level is not a level of
            the model (for a relmat, a level of its ``K``).
        ValueError
            If a grouping variable has missing values.
        """
        if not isinstance(new_data, pd.DataFrame):
            raise InputTypeError(f"new_data must be a pandas DataFrame, got "
                                 f"{type(new_data).__name__}")
        blocks: dict[str, scipy.sparse.csr_matrix] = {}
        n = len(new_data)
        for term in self.formula.random:
            _check_variables(list(term.group_variables), new_data,
                             f"random-effect term {term.text!r} (new_data)")
            for v in term.group_variables:
                if pd.isna(new_data[v]).any():
                    raise InputError(f"new_data's grouping variable {v!r} has missing values")
            effects = [eff for eff in self.random if eff.group == term.group]
            levels = effects[0].levels
            col = pd.Index(_label_keys(levels)).get_indexer(
                _group_keys(new_data, term.group_variables))
            if (col < 0).any():
                keys = _group_keys(new_data, term.group_variables)
                missing = [str(k) for k in pd.unique(keys[col < 0])[:10]]
                raise LabelError(
                    f"new_data has {int((col < 0).sum())} row(s) whose level of {term.group!r} "
                    f"is not a level of the model: {missing}; only levels of the data or of "
                    f"relmat[{term.group!r}] can be predicted")
            values, names = _lhs_design(term, new_data)
            for j, column in enumerate(names):
                name = term.group if column == "Intercept" else f"{term.group}:{column}"
                blocks[name] = scipy.sparse.csr_matrix(
                    (values[:, j], (np.arange(n), col)), shape=(n, len(levels)))
        return scipy.sparse.csr_matrix(scipy.sparse.hstack([blocks[eff.name]
                                                            for eff in self.random]))

    def summary(self) -> str:
        """Return a short human-readable description of the design.

        Returns
        -------
        str
            Rows, traits, percentage of missing cells, dropped rows, fixed-effect
            columns and, per random effect, its grouping factor, number of levels,
            levels without data and the rank kept for ``K``.
        """
        n, t = self.Y.shape
        missing = 100.0 * float(np.isnan(self.Y).mean()) if self.Y.size else 0.0
        trait_list = ", ".join(map(str, self.traits[:5])) + (", ..." if t > 5 else "")
        lines = [
            f"Design: n = {n} rows, t = {t} traits ({trait_list}); {missing:.1f}% of Y missing",
        ]
        if self.dropped:
            detail = "; ".join(f"{count} {why}" for why, count in self.dropped.items())
            lines.append(f"  dropped rows: {detail}")
        shown = ", ".join(self.fixed_names[:10]) + (", ..." if len(self.fixed_names) > 10 else "")
        lines.append(f"Fixed effects ({len(self.fixed_names)}): {shown or '(none)'}")
        lines.append(f"Random effects ({len(self.random)}):")
        if not self.random:
            lines.append("  (none)")
        width = max((len(eff.name) for eff in self.random), default=0)
        for eff in self.random:
            lines.append(
                f"  {eff.name:<{width}}  group {eff.group}: {eff.n_levels} levels "
                f"({len(eff.levels_without_data)} without data), "
                f"rank of K {eff.rank}/{eff.n_levels}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Helpers: Y, variables, labels
# --------------------------------------------------------------------------------------


def _as_trait_matrix(Y: Any) -> tuple[np.ndarray, pd.Index, pd.Index | None]:
    """Return ``Y`` as float64 ``n x t``, its trait names and its index (DataFrame only)."""
    if isinstance(Y, pd.Series):
        raise ValueError(
            "Y must be 2-D (n x t); for a single trait pass Y.to_frame() instead of a Series"
        )
    if isinstance(Y, pd.DataFrame):
        if Y.shape[1] == 0:
            raise ValueError("Y has no columns (traits)")
        names = pd.Index(Y.columns)
        duplicated = names[names.duplicated()].unique()
        if len(duplicated):
            raise ValueError(
                f"duplicate trait names in Y: {list(duplicated)}; give every column a unique name"
            )
        columns = []
        for name in names:
            col = Y[name]
            dtype = col.dtype
            if pd.api.types.is_complex_dtype(dtype):
                raise InputTypeError(f"trait column {name!r} of Y has complex values; pass "
                                     "real numbers")
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
                raise ValueError(
                    f"trait column {name!r} of Y is not numeric (dtype {dtype}); "
                    "convert it with pd.to_numeric or drop it"
                )
            columns.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
        arr = np.column_stack(columns) if columns else np.empty((len(Y), 0))
        return np.ascontiguousarray(arr, dtype=np.float64), names, pd.Index(Y.index)

    if scipy.sparse.issparse(Y):
        raise InputTypeError("Y must be dense (NaN marks missing values); use Y.toarray()")
    if not (isinstance(Y, np.ndarray | list | tuple) or hasattr(Y, "__array__")):
        raise InputTypeError(f"Y must be a pandas DataFrame or a 2-D numeric array (n x t), "
                             f"got {type(Y).__name__}")
    arr = np.asarray(Y)
    if arr.ndim == 0:
        raise InputTypeError(f"Y must be a pandas DataFrame or a 2-D numeric array (n x t), "
                             f"got a scalar {type(Y).__name__}")
    if arr.dtype.kind == "c":
        raise InputTypeError("Y has complex values; pass real numbers (e.g. np.real(Y) or "
                             "np.abs(Y))")
    if arr.ndim != 2:
        raise ValueError(
            f"Y must be a 2-D array or DataFrame (n x t), got {arr.ndim} dimension(s); "
            "for a single trait use Y.reshape(-1, 1)"
        )
    if arr.shape[1] == 0:
        raise ValueError("Y has no columns (traits)")
    names = pd.Index([f"trait{j}" for j in range(arr.shape[1])])
    if arr.dtype.kind not in "biuf":
        for j in range(arr.shape[1]):
            try:
                arr[:, j].astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"trait column {names[j]!r} (column {j}) of Y is not numeric "
                    f"(dtype {arr.dtype}): {exc}"
                ) from exc
    return np.ascontiguousarray(arr, dtype=np.float64), names, None


def _format_columns(data: pd.DataFrame, limit: int = 30) -> str:
    cols = [str(c) for c in data.columns]
    shown = ", ".join(repr(c) for c in cols[:limit])
    if len(cols) > limit:
        shown += f", ... ({len(cols)} in total)"
    return f"[{shown}]"


def _check_variables(names: list[str], data: pd.DataFrame, where: str) -> None:
    """Raise a LabelError (a KeyError) for the first name that is not a column of ``data``."""
    for name in names:
        if name not in data.columns:
            raise LabelError(
                f"unknown variable {name!r} in {where}: it is not a column of data. "
                f"Available columns: {_format_columns(data)}"
            )


def _translate_formulaic_error(exc: Exception, where: str, data: pd.DataFrame) -> Exception:
    """Turn a formulaic materialisation error into a LabelError/InputError with context."""
    message = str(exc) or type(exc).__name__
    if "NameError" in message or "is not present in the dataset" in message:
        return LabelError(
            f"cannot evaluate {where!r}: {message} Available columns: {_format_columns(data)}"
        )
    if not isinstance(exc, FormulaicError):
        message = f"{type(exc).__name__}: {message}"
    return InputError(f"cannot build the design for {where!r}: {message}")


def _label_keys(values: Any) -> np.ndarray:
    """Normalised string keys used to match level labels between data and ``K``.

    Integral floats become integers first, so a ``Line`` column read as float
    because of missing values (``3.0``) matches a ``K`` labelled ``3``.
    """
    s = pd.Series(np.asarray(values, dtype=object) if isinstance(values, pd.Index) else values)
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(v)) and np.all(v == np.round(v)):
            return v.astype(np.int64).astype(str).astype(object)
        return s.astype(str).to_numpy(dtype=object)
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(str).to_numpy(dtype=object)

    def one(v: Any) -> str:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return np.array([one(v) for v in s.to_numpy(dtype=object)], dtype=object)


def _group_keys(data: pd.DataFrame, variables: tuple[str, ...]) -> np.ndarray:
    """One key per row: the normalised label, joined by ``":"`` for interactions."""
    keys = _label_keys(data[variables[0]])
    for var in variables[1:]:
        keys = keys + ":" + _label_keys(data[var])
    return keys


def _observed_levels(data: pd.DataFrame, variables: tuple[str, ...]) -> tuple[pd.Index, np.ndarray]:
    """Levels present in ``data`` (sorted by the variables' values) and their keys."""
    frame = data[list(variables)]
    # one row per level key; not drop_duplicates, which merges 1 and True (equal in Python)
    frame = frame[~pd.Index(_group_keys(frame, variables)).duplicated()]
    try:
        frame = frame.sort_values(list(variables), kind="mergesort")
    except TypeError:  # unorderable mixed types: sort by key instead
        frame = frame.iloc[np.argsort(_group_keys(frame, variables).astype(str), kind="stable")]
    keys = _group_keys(frame, variables)
    first = ~pd.Index(keys).duplicated()  # e.g. 1 and 1.0 in an object column: one level
    frame, keys = frame[first], keys[first]
    if len(variables) == 1:
        values = frame[variables[0]]
        if pd.api.types.is_float_dtype(values.dtype):
            v = values.to_numpy(dtype=np.float64)
            if np.all(v == np.round(v)):  # integer codes read as float (because of NaN)
                return pd.Index(v.astype(np.int64)), keys
        return pd.Index(values.to_numpy()), keys
    return pd.Index(keys.astype(str)), keys


# --------------------------------------------------------------------------------------
# Helpers: relationship matrices
# --------------------------------------------------------------------------------------


def _dense_square(M: Any, what: str) -> np.ndarray:
    if scipy.sparse.issparse(M):
        M = M.toarray()
    try:  # no copy: the caller symmetrises it into a new array and never writes to it
        arr = np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not numeric: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {arr.shape}")
    return arr


def _check_finite_symmetric(M: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(M)):
        bad = np.argwhere(~np.isfinite(M))[0]
        raise ValueError(
            f"{what} has non-finite values (first at row {bad[0]}, column {bad[1]}); "
            "replace NaN/inf entries before fitting"
        )
    scale = float(np.max(np.abs(M))) if M.size else 0.0
    sym, asym = _symmetrised(M)
    if asym > _SYMMETRY_RTOL * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"{what} is not symmetric (max |M - M.T| = {asym:.3g}, relative "
            f"{asym / max(scale, np.finfo(float).tiny):.3g}); pass a symmetric matrix, "
            "e.g. (M + M.T) / 2 if the asymmetry is rounding"
        )
    return sym


def _symmetrised(M: np.ndarray, tile: int = 512) -> tuple[np.ndarray, float]:
    """``((M + M.T) / 2, max |M - M.T|)``, tile by tile: each tile meets its transposed
    partner while both are in cache (4x faster than whole-matrix transposes at n = 5000;
    the same numbers)."""
    n = M.shape[0]
    out = np.empty_like(M, dtype=np.float64)
    asym = 0.0
    for i in range(0, n, tile):
        for j in range(0, n, tile):
            A, B = M[i:i + tile, j:j + tile], M[j:j + tile, i:i + tile].T
            out[i:i + tile, j:j + tile] = (A + B) / 2.0
            asym = max(asym, float(np.max(np.abs(A - B))))
    return out, asym


def _relmat_entry(group: str, value: Any) -> tuple[np.ndarray, pd.Index]:
    """Return the dense, symmetric, finite ``K`` of one relmat entry and its level labels."""
    what = f"relmat[{group!r}]"
    if isinstance(value, pd.DataFrame):
        K_obj: Any = value
        levels_given = None
        kind = "K"
    elif isinstance(value, Mapping):
        unknown = set(value) - {"K", "K_inv", "levels"}
        if unknown:
            raise LabelError(
                f"{what} has unknown keys {sorted(unknown)}; use {{'K': ..., 'levels': ...}} "
                "or {'K_inv': ..., 'levels': ...}"
            )
        if ("K" in value) == ("K_inv" in value):
            raise ValueError(f"{what} must contain exactly one of 'K' and 'K_inv'")
        kind = "K" if "K" in value else "K_inv"
        K_obj = value[kind]
        levels_given = value.get("levels")
        what = f"{what}[{kind!r}]"
        if levels_given is None and not isinstance(K_obj, pd.DataFrame):
            raise ValueError(
                f"{what} is an unlabelled matrix: add 'levels' (the level names, in the order "
                "of its rows) or pass a DataFrame whose index and columns are the level names"
            )
    else:
        raise InputTypeError(
            f"{what} must be a pandas DataFrame (index == columns == level names) or a dict "
            f"{{'K': matrix, 'levels': names}} / {{'K_inv': matrix, 'levels': names}}; got "
            f"{type(value).__name__}"
        )

    if isinstance(K_obj, pd.DataFrame):
        if K_obj.shape[0] != K_obj.shape[1]:
            raise ValueError(f"{what} must be square, got shape {K_obj.shape}")
        index, columns = pd.Index(K_obj.index), pd.Index(K_obj.columns)
        if index.has_duplicates:
            raise ValueError(f"{what} has duplicate level names: {list(index[index.duplicated()])}")
        if not index.equals(columns):
            if set(_label_keys(index)) == set(_label_keys(columns)) and not columns.has_duplicates:
                order = pd.Index(_label_keys(columns)).get_indexer(_label_keys(index))
                K_obj = K_obj.iloc[:, order]
            else:
                only_rows = [x for x in index if x not in set(columns)][:5]
                raise LabelError(
                    f"{what}: the names of its index and columns differ (e.g. {only_rows} are "
                    "row names but not column names); use the same level names for both"
                )
        levels = index
        if levels_given is not None and list(_label_keys(pd.Index(levels_given))) != list(
            _label_keys(index)
        ):
            raise ValueError(
                f"{what}: 'levels' does not match the DataFrame's index; give one or the other"
            )
        M = _dense_square(K_obj.to_numpy(), what)
    else:
        M = _dense_square(K_obj, what)
        levels = pd.Index(list(levels_given))
        if len(levels) != M.shape[0]:
            raise ValueError(
                f"{what} is {M.shape[0]} x {M.shape[1]} but {len(levels)} levels were given"
            )
    keys = _label_keys(levels)
    if len(set(keys)) != len(keys):
        dup = pd.Index(keys)[pd.Index(keys).duplicated()]
        raise ValueError(f"{what} has duplicate level names: {list(dup[:10])}")

    M = _check_finite_symmetric(M, what)
    if kind == "K_inv":
        try:
            factor = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                f"{what} is not positive definite, so it cannot be inverted to give K; "
                "check the precision matrix (e.g. the pedigree) or pass K instead"
            ) from exc
        K = scipy.linalg.cho_solve(factor, np.eye(M.shape[0]), check_finite=False)
        K = (K + K.T) / 2.0
    else:
        K = M
    return np.ascontiguousarray(K), levels


def _reduce_rank(K: np.ndarray, group: str, tol: float, eig_cache: dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(L, K_tilde)`` with ``K ~= L K_tilde L'``; check that ``K`` is PSD.

    When ``K`` has full rank (``K_tilde`` is ``K``) and its eigendecomposition was
    computed, it is stored in ``eig_cache["eig"]`` for the precompute.
    """
    r = K.shape[0]
    what = f"relmat[{group!r}]: the covariance K of random effect {group!r}"
    if np.count_nonzero(K) == np.count_nonzero(np.diag(K)):  # no off-diagonal entry
        eigvals = np.diag(K).copy()
        eigvecs = None
    else:
        eigvals, eigvecs = symmetric_eig(K)
    scale = float(np.max(np.abs(eigvals))) if r else 0.0
    smallest = float(np.min(eigvals)) if r else 0.0
    if smallest < -_PSD_RTOL * scale:
        raise ValueError(
            f"{what} is not positive semi-definite (smallest eigenvalue {smallest:.3g}, "
            f"largest {scale:.3g}); fix K, e.g. by recomputing it, by projecting it onto the "
            "PSD cone (set negative eigenvalues to zero) or by adding a small value to its "
            "diagonal (K + 1e-6 * I)"
        )
    kept = eigvals > tol
    if not np.any(kept):
        raise ValueError(
            f"{what} has no eigenvalue above K_eigen_tol = {tol:g}; K is (numerically) zero"
        )
    if np.all(kept):
        if eigvecs is not None and eig_cache is not None:
            eig_cache["eig"] = (eigvals, eigvecs)
        return np.eye(r), K
    if eigvecs is None:
        L = np.ascontiguousarray(np.eye(r)[:, kept])
    else:
        L = np.ascontiguousarray(eigvecs[:, kept])
    return L, np.diag(eigvals[kept])


# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------


def _numeric_design(mm: pd.DataFrame, where: str) -> np.ndarray:
    """A formulaic model matrix as float64; InputError naming a non-numeric column."""
    try:
        return mm.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        bad = [
            str(c) for c in mm.columns
            if not (pd.api.types.is_numeric_dtype(mm[c]) or pd.api.types.is_bool_dtype(mm[c]))
        ]
        raise InputError(
            f"{where} gives non-numeric design columns {bad[:5] or list(mm.columns[:5])} "
            f"({exc}); a Python expression in the formula must give numbers"
        ) from exc


def _lhs_design(term: RandomTerm, data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Left-hand design of a random term (formulaic), as float64 columns and names."""
    if term.lhs.strip() == "1":
        return np.ones((len(data), 1)), ["Intercept"]
    try:
        mm = model_matrix(term.lhs, data, na_action="raise", output="pandas")
    except Exception as exc:  # formulaic runs the formula's Python code: anything can fail
        raise _translate_formulaic_error(exc, term.text, data) from exc
    names = [str(c) for c in mm.columns]
    if not names:
        raise InputError(
            f"random-effect term {term.text!r} at column {term.position + 1} has no columns "
            "on its left-hand side; write (1|g) for a random intercept"
        )
    values = _numeric_design(mm, f"the left-hand side of random-effect term {term.text!r}")
    if not np.all(np.isfinite(values)):
        bad = names[int(np.argmax(~np.isfinite(values).all(axis=0)))]
        raise InputError(
            f"the left-hand side of random-effect term {term.text!r} has non-finite values "
            f"in column {bad!r}"
        )
    return values, names


def _is_default_index(index: pd.Index, n: int) -> bool:
    """Whether ``index`` is pandas' default ``0 .. n-1`` (carries no labels)."""
    return isinstance(index, pd.RangeIndex) and index.equals(pd.RangeIndex(n))


def _align_rows(Yarr: np.ndarray, y_index: pd.Index | None, data: pd.DataFrame
                ) -> tuple[np.ndarray, pd.DataFrame]:
    """Match the rows of ``Y`` to those of ``data``.

    By position when either side carries no labels (an array, or pandas' default
    ``RangeIndex``: R's habit), in which case the labelled side's labels name the
    rows; by label when both are labelled (``Y``'s rows are put in ``data``'s order).
    """
    n_y, n_d = Yarr.shape[0], len(data)
    y_labelled = y_index is not None and not _is_default_index(y_index, n_y)
    d_labelled = not _is_default_index(pd.Index(data.index), n_d)
    if not (y_labelled and d_labelled):
        if n_y != n_d:
            raise InputError(
                f"Y has {n_y} rows but data has {n_d} rows; without labels on both, rows are "
                "matched by position, so both must have one row per observation"
            )
        if y_labelled:  # data on a default index: Y's labels name the rows
            data = data.set_axis(y_index, axis=0)
        return Yarr, data
    if y_index.has_duplicates or data.index.has_duplicates:
        which = "Y" if y_index.has_duplicates else "data"
        dup = (y_index if which == "Y" else data.index)
        raise InputError(f"{which}'s index has duplicate labels {list(dup[dup.duplicated()][:5])}"
                         "; rows are matched by label, so labels must be unique")
    if y_index.equals(pd.Index(data.index)):
        return Yarr, data
    missing_y = data.index.difference(y_index, sort=False)
    missing_d = y_index.difference(data.index, sort=False)
    if len(missing_y) or len(missing_d):
        parts = []
        if len(missing_y):
            parts.append(f"{len(missing_y)} label(s) of data are not rows of Y: "
                         f"{list(missing_y[:5])}")
        if len(missing_d):
            parts.append(f"{len(missing_d)} label(s) of Y are not rows of data: "
                         f"{list(missing_d[:5])}")
        raise LabelError(
            "Y and data are matched by the labels of their indexes, and they differ: "
            + "; ".join(parts) + ". Align them (e.g. Y = Y.loc[data.index]) or reset "
            "data's index to match by position"
        )
    return Yarr[y_index.get_indexer(data.index)], data


def build_design(
    Y: Any,
    formula: str,
    data: pd.DataFrame,
    relmat: Mapping[str, Any] | None = None,
    K_eigen_tol: float = 1e-10,
) -> Design:
    """Check and align traits, formula, data and relationship matrices.

    Parameters
    ----------
    Y : pandas.DataFrame or array_like
        ``n x t`` traits, NaN = missing. Trait names come from the DataFrame's
        columns, or are ``"trait0"``, ``"trait1"``, ... for an array. Columns
        must be numeric (bool counts as numeric) and finite where observed.
    formula : str
        One-sided lme4-style formula, e.g. ``"~ Env + (1|Line)"`` (see
        :func:`pymegalmm.formula.parse_formula`).
    data : pandas.DataFrame
        One row per row of ``Y``, holding the formula's variables. Rows of
        ``Y`` and ``data`` are matched **by position**; if ``Y`` is also a
        DataFrame, both must have the same index (else ValueError).
    relmat : dict, optional
        Grouping-factor name (``"Line"``, ``"Line:Env"``) -> covariance of its
        levels, given as
        - a pandas DataFrame with index == columns == level names;
        - ``{"K": matrix_or_DataFrame, "levels": names}``;
        - ``{"K_inv": matrix_or_sparse, "levels": names}``, a precision matrix
          (e.g. a pedigree inverse); ``K`` is its dense inverse.
        A grouping factor without an entry gets ``K = I`` over the levels seen
        in the data.
    K_eigen_tol : float, default 1e-10
        Eigenvalues of ``K`` at or below this are dropped (reduced-rank ``L``).

    Returns
    -------
    Design
        ``Y``, ``X1`` (C-contiguous float64), trait and row labels, and one
        :class:`RandomEffect` per variance component.

    Raises
    ------
    ValueError
        For a 1-D ``Y``, non-numeric or duplicate trait columns, infinite
        values, a trait with no observed value (after dropping rows), a row
        count different from ``data``, DataFrame indexes that differ, relmat
        entries that are not square, not labelled consistently, not symmetric
        (relative tolerance 1e-8), not finite or not positive semi-definite
        (an eigenvalue below ``-1e-8 * max|eigenvalue|``), a relmat key that
        matches no random term, or when every row is dropped.
    KeyError
        For a formula variable that is not a column of ``data`` (the message
        lists the columns), or data levels that are missing from a relmat
        ``K`` (up to 10 are listed, with their total number).

    Notes
    -----
    **Dropped rows.** Rows where every trait is NaN, rows with a missing
    grouping variable and rows with a missing value in a variable of the fixed
    part or of a random term's left-hand side are dropped (as lme4's default
    ``na.omit``), with a ``UserWarning`` giving the count for each reason.
    ``Design.rows`` holds the labels of the rows kept.

    **Levels.** Labels are matched between data and ``K`` after converting both
    to strings, integral floats first becoming integers (so a grouping column
    read as float ``3.0`` matches a ``K`` labelled ``3``). With a relmat, the
    levels and their order are those of ``K``; levels of ``K`` without data are
    kept as all-zero columns of ``Z`` (they are predicted). Without one, the
    levels are the values present in the data, sorted (a categorical
    column in its category order). For ``(1|a:b)`` the
    levels are the observed combinations, labelled ``"a_level:b_level"``.

    **Components.** ``(1|g)`` gives one component named ``g``. A term with a
    left-hand design (``(x|g)``, ``(0 + Env|g)``, ``(Env||g)``) gives one
    independent component per column of that design (built by formulaic, so
    ``x`` means ``1 + x``), named ``f"{g}:{column}"``, the intercept column
    being named ``g``; all share the same ``K``.

    **Rank.** ``K`` is eigendecomposed (``scipy.linalg.eigh``). If every
    eigenvalue exceeds ``K_eigen_tol``, ``L = I`` and ``K_tilde = K``;
    otherwise ``L`` holds the eigenvectors of the kept eigenvalues and
    ``K_tilde`` is their diagonal, so ``Z L K_tilde L' Z'`` equals ``Z K Z'``
    up to the dropped eigenvalues. (R MegaLMM uses a pivoted LDL' instead; the
    reduced model is equivalent.)

    **Fixed part.** ``X1`` is formulaic's model matrix of the fixed part with
    its default ``ensure_full_rank=True``; integer columns are numeric
    covariates unless wrapped in ``C()``. The ``ModelSpec`` is kept for
    :meth:`Design.fixed_for`.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.columns.has_duplicates:
        dup = list(data.columns[data.columns.duplicated()].unique())
        raise InputError(f"data has duplicate column names {dup[:10]}; give every column a "
                         "unique name")
    parsed = parse_formula(formula)
    if K_eigen_tol < 0 or not np.isfinite(K_eigen_tol):
        raise ValueError(f"K_eigen_tol must be a finite non-negative number, got {K_eigen_tol}")

    # ---- Y ---------------------------------------------------------------------------
    Yarr, traits, y_index = _as_trait_matrix(Y)
    Yarr, data = _align_rows(Yarr, y_index, data)
    n_in = len(data)
    infinite = np.isinf(Yarr)
    if infinite.any():
        i, j = np.argwhere(infinite)[0]
        raise ValueError(
            f"trait {traits[j]!r} of Y has an infinite value (row {data.index[i]!r}, "
            f"{int(infinite[:, j].sum())} in that trait); use NaN for missing values"
        )

    # ---- variables -------------------------------------------------------------------
    fixed_vars = sorted(Formula(parsed.fixed).required_variables)
    _check_variables(fixed_vars, data, f"fixed part {parsed.fixed!r}")
    group_vars: list[str] = []
    lhs_vars: list[str] = []
    for term in parsed.random:
        _check_variables(list(term.group_variables), data, f"random-effect term {term.text!r}")
        repeated = [v for i, v in enumerate(term.group_variables) if v in term.group_variables[:i]]
        if repeated:
            raise InputError(
                f"random-effect term {term.text!r} at column {term.position + 1} of formula "
                f"{formula!r}: variable {repeated[0]!r} appears more than once in its grouping "
                f"factor {term.group!r}; name each variable once, e.g. (1|Line:Env)"
            )
        group_vars.extend(v for v in term.group_variables if v not in group_vars)
        if term.lhs.strip() != "1":
            names = sorted(Formula(term.lhs).required_variables)
            _check_variables(names, data, f"random-effect term {term.text!r}")
            lhs_vars.extend(v for v in names if v not in lhs_vars)

    if relmat is None:
        relmat = {}
    if not isinstance(relmat, Mapping):
        raise InputTypeError(
            f"relmat must be a dict of grouping factor -> K, e.g. {{'Line': K}}, got "
            f"{type(relmat).__name__}")
    relmat = dict(relmat)
    groups_in_formula = list(dict.fromkeys(term.group for term in parsed.random))
    for key in relmat:
        if key not in groups_in_formula:
            raise LabelError(
                f"relmat has an entry {key!r} that matches no random-effect grouping factor; "
                f"the formula's grouping factors are {groups_in_formula} (for (1|a:b) the key "
                "is 'a:b')"
            )

    # ---- rows to drop ----------------------------------------------------------------
    no_trait = np.isnan(Yarr).all(axis=1)
    no_group = np.zeros(n_in, dtype=bool)
    group_with_na: list[str] = []
    for v in group_vars:
        na = pd.isna(data[v]).to_numpy()
        if na.any():
            group_with_na.append(v)
            no_group |= na
    covariates = [v for v in dict.fromkeys(fixed_vars + lhs_vars) if v not in group_vars]
    no_covariate = np.zeros(n_in, dtype=bool)
    covariates_with_na: list[str] = []
    for v in covariates:
        na = pd.isna(data[v]).to_numpy()
        if na.any():
            covariates_with_na.append(v)
            no_covariate |= na
    drop = no_trait | no_group | no_covariate
    dropped: dict[str, int] = {}
    detail = ""
    if drop.any():
        if no_trait.any():
            dropped["rows with every trait missing"] = int(no_trait.sum())
        if no_group.any():
            dropped[f"rows with a missing grouping variable {group_with_na}"] = int(no_group.sum())
        if no_covariate.any():
            dropped[f"rows with a missing value in {covariates_with_na}"] = int(no_covariate.sum())
        detail = "; ".join(f"{count} {why}" for why, count in dropped.items())
        warnings.warn(
            f"dropped {int(drop.sum())} of {n_in} rows ({detail})",
            UserWarning,
            stacklevel=2,
        )
    keep = np.flatnonzero(~drop)
    if keep.size == 0:
        raise InputError(
            f"no rows left after dropping rows with missing values in Y or data ({detail}); "
            "every row needs an observed trait in Y and its grouping and fixed-effect "
            "variables in data")
    Yk = np.ascontiguousarray(Yarr[keep])
    empty = np.isnan(Yk).all(axis=0)
    if empty.any():
        bad = list(traits[empty])
        raise ValueError(
            f"trait(s) {bad[:10]} of Y have no observed value"
            + (" after dropping rows" if drop.any() else "")
            + "; remove them from Y"
        )
    sub = data.iloc[keep].reset_index(drop=True)
    rows = pd.Index(data.index[keep])

    # ---- fixed part ------------------------------------------------------------------
    try:
        mm = model_matrix(parsed.fixed, sub, na_action="raise", output="pandas")
    except FormulaicError as exc:
        raise _translate_formulaic_error(exc, parsed.fixed, data) from exc
    except ValueError as exc:
        raise InputError(f"cannot build the fixed design {parsed.fixed!r}: {exc}") from exc
    except Exception as exc:  # formulaic runs the formula's Python code: anything can fail
        raise _translate_formulaic_error(exc, parsed.fixed, data) from exc
    X1 = np.ascontiguousarray(_numeric_design(mm, f"the fixed part {parsed.fixed!r}"))
    fixed_names = [str(c) for c in mm.columns]
    if not np.all(np.isfinite(X1)):
        bad_col = fixed_names[int(np.argmax(~np.isfinite(X1).all(axis=0)))]
        raise InputError(
            f"fixed-effect column {bad_col!r} of {parsed.fixed!r} has non-finite values; "
            "check the variables of data it is built from (inf is not a missing value: use NaN)"
        )

    # ---- random part -----------------------------------------------------------------
    per_group: dict[str, tuple] = {}
    for group in groups_in_formula:
        variables = tuple(group.split(":"))
        eig_cache: dict = {}
        if group in relmat:
            K, levels = _relmat_entry(group, relmat[group])
            level_keys = _label_keys(levels)
            L, K_tilde = _reduce_rank(K, group, K_eigen_tol, eig_cache)
        else:
            levels, level_keys = _observed_levels(sub, variables)
            K = np.eye(len(levels))
            L, K_tilde = K, K
        per_group[group] = (levels, level_keys, K, L, K_tilde, eig_cache)

    random: list[RandomEffect] = []
    n = len(sub)
    for term in parsed.random:
        levels, level_keys, K, L, K_tilde, eig_cache = per_group[term.group]
        row_keys = _group_keys(sub, term.group_variables)
        col = pd.Index(level_keys).get_indexer(row_keys)
        if (col < 0).any():
            missing = pd.unique(row_keys[col < 0])
            shown = [str(m) for m in missing[:10]]
            raise KeyError(
                f"{len(missing)} level(s) of {term.group!r} in the data are not in "
                f"relmat[{term.group!r}]: {shown}"
                + (" ..." if len(missing) > 10 else "")
                + "; add them to K (with their relationships) or drop these rows from data"
            )
        values, names = _lhs_design(term, sub)
        for j, column in enumerate(names):
            name = term.group if column == "Intercept" else f"{term.group}:{column}"
            if any(eff.name == name for eff in random):
                raise InputError(
                    f"random-effect component {name!r} appears twice (from {term.text!r} at "
                    f"column {term.position + 1} of formula {formula!r}); remove the duplicate "
                    "term"
                )
            Z = scipy.sparse.csr_matrix(
                (values[:, j], (np.arange(n), col)), shape=(n, len(levels)), dtype=np.float64
            )
            Z.eliminate_zeros()
            Z.sort_indices()
            random.append(RandomEffect(name, term.group, levels, Z, K, L, K_tilde, eig_cache))

    return Design(
        Y=Yk,
        traits=traits,
        rows=rows,
        X1=X1,
        fixed_names=fixed_names,
        random=random,
        formula=parsed,
        model_spec=mm.model_spec,
        dropped=dropped,
    )
