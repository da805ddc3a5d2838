"""Fixed factors: the first rows of ``Lambda`` held at given values (R's ``Lambda_fixed``).

With ``MegaLMM(..., Lambda_fixed=L)`` (a DataFrame, one row per fixed factor, one
column per trait), the first ``k_f`` factors have their loadings held at ``L``
(user's scale of ``Y``, per unit of a unit-variance factor).  Their scores ``F``,
random effects ``U_F`` and ``F_h2`` are sampled as usual; their total precision
``tot_F_prec`` stays at 1 (the loadings fix the factor's scale, so the working
parameter of the free factors has no role), so the recorded loadings equal ``L``
exactly.  The loadings prior applies to the ``k_r = n_factors - k_f`` free rows
only; ``reorder_factors`` keeps the fixed factors first.

In the traits' step the fixed part ``F_fixed L`` is subtracted from ``Eta`` before
the regression on the free factors (METHOD.md §1.2), and added back to the
residual the factor scores are drawn from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError, LabelError


@dataclass(frozen=True, eq=False)
class FixedFactors:
    """The fixed rows of ``Lambda``.

    Attributes
    ----------
    names : names of the fixed factors (the first labels of the ``factor`` coordinate).
    user : (k_f, t) the loadings as given, user's scale (recorded exactly).
    scaled : (k_f, t) the loadings on the sampler's scale (``user / sd`` per trait).
    """

    names: list[str]
    user: np.ndarray
    scaled: np.ndarray

    @property
    def n(self) -> int:
        """Number of fixed factors ``k_f``."""
        return len(self.names)


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


def free_factor_names(k_r: int) -> list[str]:
    """Names of the free factors: ``F1 .. F{k_r}``."""
    return [f"F{i + 1}" for i in range(int(k_r))]


def pad_prior_record(record: Mapping[str, np.ndarray], dims: Mapping[str, tuple[str, ...]],
                     k_f: int) -> dict[str, np.ndarray]:
    """The loadings prior's recorded arrays (free factors only) padded with NaN rows for
    the ``k_f`` fixed factors, along every ``"factor"`` axis (the prior does not shrink them).
    """
    out = {}
    for name, value in record.items():
        value = np.asarray(value, dtype=float)
        for axis, dim in enumerate(dims.get(name, ())):
            if dim == "factor":
                pad = [(0, 0)] * value.ndim
                pad[axis] = (k_f, 0)
                value = np.pad(value, pad, constant_values=np.nan)
        out[name] = value
    return out
