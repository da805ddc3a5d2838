"""Distinct rows of a boolean mask (missingness patterns), fast for wide masks."""

from __future__ import annotations

import numpy as np


def unique_boolean_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(mask, axis=0, return_inverse=True)`` for a 2-D boolean ``mask``.

    The rows are packed into bits first (``np.packbits``, most significant bit first),
    which keeps their lexicographic order, so the patterns come out in the same order as
    ``np.unique``'s, with 8 times less data to sort: 0.1 s instead of 0.8 s for a
    5000 x 1000 mask.

    Returns
    -------
    patterns : (n_patterns, t) bool, sorted lexicographically (False < True).
    inverse : (n,) intp, the pattern of each row.
    """
    mask = np.asarray(mask, dtype=bool)
    n, t = mask.shape
    if n == 0 or t == 0:
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        return patterns, np.asarray(inverse, dtype=np.intp).reshape(-1)
    packed, inverse = np.unique(np.packbits(mask, axis=1), axis=0, return_inverse=True)
    patterns = np.unpackbits(packed, axis=1, count=t).astype(bool)
    return patterns, np.asarray(inverse, dtype=np.intp).reshape(-1)
