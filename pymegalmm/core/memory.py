"""Memory of the precomputed factors, reported (and capped) before they are allocated."""

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


def check_precompute_memory(nbytes: int, limit_gb: float, detail: str, advice: str) -> float:
    """Raise ``MemoryError`` when ``nbytes`` exceeds ``limit_gb``; return the size in GB.

    Parameters
    ----------
    nbytes : int
        Bytes the precomputes would take.
    limit_gb : float
        ``Control.max_precompute_gb``.
    detail, advice : str
        What the bytes are made of, and how to need fewer (for the message).
    """
    gb = nbytes / 2**30
    if gb > limit_gb:
        raise MemoryError(
            f"the precomputed factors would need {gb:.2f} GB, above "
            f"max_precompute_gb = {limit_gb}; {advice}, or raise Control.max_precompute_gb "
            f"({detail})"
        )
    return gb
