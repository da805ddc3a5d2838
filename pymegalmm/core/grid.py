"""The discrete grid of variance proportions (h2) on which MegaLMM samples them.

Every matrix that depends on h2 is precomputed once per grid point
(:mod:`pymegalmm.core.random_effects`), which is what makes each iteration cheap.
"""

from __future__ import annotations

import itertools

import numpy as np


def make_h2_grid(n_effects: int, divisions: int | list[int]) -> np.ndarray:
    """Return MegaLMM's discrete grid of variance proportions.

    For random effect ``m`` the candidate values are ``0, 1/d_m, ..., 1``; all
    combinations are formed (first random effect varying fastest) and those whose
    sum is strictly below 1 are kept.  The test uses exact integer arithmetic
    (``sum_m i_m / d_m < 1``), unlike R MegaLMM, whose floating-point test keeps
    some vectors summing to exactly 1 with two or more random effects (METHOD.md
    Q8); with one random effect both give ``0, 1/d, ..., (d-1)/d``.

    Parameters
    ----------
    n_effects : int
        Number of random effects ``m`` (>= 1).
    divisions : int or list of int
        ``h2_divisions`` per random effect.

    Returns
    -------
    numpy.ndarray
        ``(m, G)`` array, one grid point per column; column 0 is all zeros.
    """
    if n_effects < 1:
        raise ValueError("the h2 grid needs at least one random effect")
    divs = [divisions] * n_effects if np.isscalar(divisions) else list(divisions)
    if len(divs) != n_effects or any(int(d) < 1 for d in divs):
        raise ValueError(f"h2_divisions must be positive integers, one per random effect: {divs}")
    divs = [int(d) for d in divs]
    common = int(np.lcm.reduce(divs))
    columns = []
    # itertools.product varies the last factor fastest; reverse to make the first fastest
    for combo in itertools.product(*[range(d + 1) for d in reversed(divs)]):
        idx = combo[::-1]
        if sum(i * (common // d) for i, d in zip(idx, divs, strict=True)) < common:
            columns.append([i / d for i, d in zip(idx, divs, strict=True)])
    return np.asarray(columns, dtype=float).T.copy()
