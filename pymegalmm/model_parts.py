"""User inputs for fixed factors and cis genotypes, checked and turned into model parts.

The specification layer of :mod:`pymegalmm.core.fixed_factors` and
:mod:`pymegalmm.core.cis`: ``MegaLMM(Lambda_fixed=..., cis_genotypes=...)`` are
validated here (errors name the argument) and become the core's
:class:`~pymegalmm.core.fixed_factors.FixedFactors` and
:class:`~pymegalmm.core.cis.CisDesign`, which the sampler uses without asking
what the user gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .core.cis import CisDesign
from .core.fixed_factors import FixedFactors, free_factor_names
from .errors import InputError, InputTypeError, LabelError

__all__ = ["parse_cis_genotypes", "parse_lambda_fixed"]


def parse_lambda_fixed(Lambda_fixed: Any, traits: list, n_factors: int,
                       scale: np.ndarray) -> FixedFactors:
    """Check ``Lambda_fixed`` and put its columns in the traits' order.

    Parameters
    ----------
    Lambda_fixed : pandas.DataFrame
        Rows: fixed factors (index: their names); columns: traits, matched by name
        (every trait, any order; no others).  Finite numbers.
    traits : labels of the model's traits.
    n_factors : total number of factors (fixed and free); at least one must be free.
    scale : (t,) the traits' scale (``user = sampler * scale + center``).

    Raises
    ------
    InputTypeError, InputError, LabelError
        Naming ``Lambda_fixed``.
    """
    if not isinstance(Lambda_fixed, pd.DataFrame):
        raise InputTypeError("Lambda_fixed must be a pandas DataFrame (rows: fixed factors, "
                             f"columns: traits), got {type(Lambda_fixed).__name__}")
    L = Lambda_fixed
    if L.shape[0] == 0:
        raise InputError("Lambda_fixed has no rows (fixed factors)")
    if L.shape[0] >= n_factors:
        raise InputError(f"Lambda_fixed has {L.shape[0]} rows (fixed factors) but n_factors is "
                         f"{n_factors}: at least one factor must be free (as R MegaLMM)")
    names = [str(v) for v in L.index]
    if len(set(names)) < len(names):
        raise InputError(f"Lambda_fixed's row names (fixed factors) must be distinct: {names}")
    free = free_factor_names(n_factors - len(names))
    clash = sorted(set(names) & set(free))
    if clash:
        raise InputError(f"Lambda_fixed's row names {clash} clash with the free factors' "
                         f"names {free}")
    columns = {str(c): c for c in L.columns}
    wanted = [str(t) for t in traits]
    missing = [t for t in wanted if t not in columns]
    extra = [c for c in columns if c not in set(wanted)]
    if missing or extra:
        raise LabelError(f"Lambda_fixed's columns must be the traits: missing {missing[:10]}, "
                         f"not traits {extra[:10]}")
    block = L[[columns[t] for t in wanted]]
    if not all(pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
               for dt in block.dtypes):
        raise InputTypeError("Lambda_fixed must hold numbers")
    user = block.to_numpy(dtype=float)
    if not np.all(np.isfinite(user)):
        raise InputError("Lambda_fixed has missing or non-finite values")
    return FixedFactors(names=names, user=user, scaled=user / np.asarray(scale)[None, :])


def parse_cis_genotypes(cis_genotypes: Any, traits: list, rows: list) -> CisDesign:
    """Check ``cis_genotypes`` and order it by trait.

    Parameters
    ----------
    cis_genotypes : mapping of trait -> pandas.DataFrame or array
        Each trait's ``n x c_j`` design (a 1-D array is one column); traits not in
        the mapping have none.  A DataFrame's columns name the effects (arrays get
        ``"0", "1", ...``); its rows are matched to the data's rows by label when its
        index is not pandas' default ``RangeIndex`` (every row of the data needed),
        else by position.  Finite numbers; no constant columns.
    traits : labels of the model's traits.
    rows : labels of the data's rows.

    Raises
    ------
    InputTypeError, InputError, LabelError
        Naming ``cis_genotypes``.
    """
    if not isinstance(cis_genotypes, Mapping):
        raise InputTypeError("cis_genotypes must be a dict {trait: DataFrame or array "
                             f"(n x c)}}, got {type(cis_genotypes).__name__}")
    index = {str(t): j for j, t in enumerate(traits)}
    unknown = [k for k in cis_genotypes if str(k) not in index]
    if unknown:
        raise LabelError(f"cis_genotypes has keys that are not traits: {unknown[:10]}")
    n = len(rows)
    X: list[np.ndarray] = [np.zeros((n, 0))] * len(traits)
    names: list[list[str]] = [[] for _ in traits]
    for key, value in cis_genotypes.items():
        j = index[str(key)]
        where = f"cis_genotypes[{key!r}]"
        if isinstance(value, pd.DataFrame):
            if not isinstance(value.index, pd.RangeIndex):
                lookup = {str(r): r for r in value.index}
                missing = [r for r in rows if str(r) not in lookup]
                if missing:
                    raise LabelError(f"{where} has no row for the data's rows {missing[:10]}")
                value = value.loc[[lookup[str(r)] for r in rows]]
            if not all(pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
                       for dt in value.dtypes):
                raise InputTypeError(f"{where} must hold numbers")
            cols = [str(c) for c in value.columns]
            arr = value.to_numpy(dtype=float)
        else:
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError) as exc:
                raise InputTypeError(f"{where} must be a DataFrame or a numeric array, got "
                                     f"{type(value).__name__}") from exc
            if arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != 2:
                raise InputError(f"{where} must be 2-D (n x c), got shape {arr.shape}")
            cols = [str(i) for i in range(arr.shape[1])]
        if arr.shape[0] != n:
            raise InputError(f"{where} has {arr.shape[0]} rows, the data {n}")
        if arr.shape[1] == 0:
            raise InputError(f"{where} has no columns (leave the trait out instead)")
        if len(set(cols)) < len(cols):
            raise InputError(f"{where} has repeated column names")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where} has missing or non-finite values")
        constant = [c for c, v in zip(cols, np.ptp(arr, axis=0), strict=True) if v == 0]
        if constant:
            raise InputError(f"{where} has constant columns {constant[:10]} (confounded "
                             "with the intercept)")
        X[j] = np.ascontiguousarray(arr)
        names[j] = cols
    return CisDesign(X=X, names=names)
