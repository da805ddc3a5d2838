"""Which fixed effects each trait's observed cells can identify."""

from __future__ import annotations

import numpy as np

from .patterns import unique_boolean_rows


def unidentifiable_fixed_effects(
    X1: np.ndarray, observed: np.ndarray, rtol: float = 1e-7
) -> np.ndarray:
    """Flag, per trait, the columns of ``X1`` its observed rows cannot identify.

    Going left to right, a column is kept when it raises the rank of the kept
    columns restricted to the trait's observed rows (relative tolerance ``rtol``
    on the singular values, like the pivoted QR of R's ``caret::findLinearCombos``
    that R MegaLMM uses per missing-data group); otherwise it is flagged.
    Example: a population never observed in an environment.  With a flat prior
    such a coefficient would only be informed by the imputed cells and wander;
    the sampler fixes it at 0 for that trait instead.

    Parameters
    ----------
    X1 : (n, b1) fixed-effect design.
    observed : (n, t) bool, True where Y is observed.
    rtol : float
        Relative tolerance of the rank test.

    Returns
    -------
    numpy.ndarray
        ``(t, b1)`` uint8, 1 where the coefficient is dropped for that trait.
    """
    n, b1 = X1.shape
    t = observed.shape[1]
    drop = np.zeros((t, b1), dtype=np.uint8)
    if b1 == 0:
        return drop
    patterns, inverse = unique_boolean_rows(observed.T)
    for i, rows in enumerate(patterns):
        X = X1[rows]
        kept: list[int] = []
        flags = np.zeros(b1, dtype=np.uint8)
        for c in range(b1):
            cols = X[:, [*kept, c]]
            sv = np.linalg.svd(cols, compute_uv=False) if cols.size else np.zeros(0)
            scale = max(np.abs(X).max(initial=0.0), 1.0)
            if sv.size == len(kept) + 1 and sv[-1] > rtol * max(sv[0], scale):
                kept.append(c)
            else:
                flags[c] = 1
        drop[inverse == i] = flags
    return drop
