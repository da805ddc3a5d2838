"""Size of the precomputed factors, estimated before they are allocated."""

from __future__ import annotations


def estimate_precompute_bytes(n: int, r: int, n_grid: int, n_effects: int) -> int:
    """Bytes of float64 precomputes for ``n`` rows, ``r`` random-effect levels, ``G`` grid points.

    One random effect: the rotation ``Q`` (``n x n``), the basis change ``L S``
    (``r x r``) and the weight table (``G x n``).  Several random effects: one
    ``n x n`` and one ``r x r`` Cholesky factor per grid point, plus ``Z K Z'``
    per random effect.
    """
    if n_effects == 1:
        return 8 * (n * n + r * r + n_grid * n)
    return 8 * (n_grid * (n * n + r * r) + n_effects * n * n + n * r)
