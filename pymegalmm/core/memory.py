"""Size of the precomputed factors, estimated before they are allocated."""

from __future__ import annotations


def estimate_precompute_bytes(n: int, r: int, n_grid: int, n_effects: int,
                              low_rank: int | None = None) -> int:
    """Bytes of float64 precomputes for ``n`` rows, ``r`` random-effect levels, ``G`` grid points.

    One random effect: the rotation ``Q`` (``n x n``; ``Q' X`` reads it transposed in
    place), ``Z S`` over the rows (``n x r``), the basis change ``L S`` (``r x r``),
    the weight table with its transpose (``G x n`` each) and the effects' tables
    (``G x r`` each, two).  Several random effects with
    the low-rank back-end (``low_rank`` = ``r_o``, the coefficients of the effects that
    are not diagonalised): ``Q``, two weight tables (``G x n``), the
    Woodbury factors (``G x n x r_o`` and twice ``G x r_o x r_o``), ``C`` and its
    scaled copies per distinct diagonal part (at most ``(G + 1) x n x r_o``).
    Otherwise (dense back-end): one ``n x n`` and one ``r x r`` Cholesky factor per
    grid point, plus ``Z K Z'`` per random effect.
    """
    if n_effects == 1:
        return 8 * (n * n + n * r + r * r + 2 * n_grid * n + 2 * n_grid * r)
    if low_rank is not None:
        ro = low_rank
        return 8 * (n * n + r * r + 2 * n_grid * n + n_grid * ro * (2 * n + 2 * ro)
                    + 2 * n * ro)
    return 8 * (n_grid * (n * n + r * r) + n_effects * n * n + n * r)
