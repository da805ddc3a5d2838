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

import numpy as np


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
