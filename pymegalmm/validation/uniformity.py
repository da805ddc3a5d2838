"""Tests of the discrete uniformity of SBC ranks: chi-square on bins, and the ECDF envelope.

A rank is the number of posterior draws (out of ``L``) below the true value, so
under calibration it is uniform on ``0, 1, ..., L``.

* :func:`chi_square_uniformity`: Pearson's chi-square on ``bins`` groups of
  consecutive rank values (expected counts proportional to the number of values
  in each group).
* :func:`ecdf_uniformity`: the simultaneous band of Säilynoja, Bürkner & Vehtari
  (2022, "Graphical test for discrete uniformity and its applications in
  goodness-of-fit evaluation and multiple sample comparison", Statistics and
  Computing 32:32).  At ``z_i = i / (L + 1)``, ``i = 1..L``, the number of ranks
  below ``i`` is ``Binomial(N, z_i)`` under uniformity.  Each point gets the
  two-sided binomial tail probability of its count; the statistic is the smallest
  of them.  Its distribution under uniformity is simulated (multinomial counts), its
  ``1 - prob`` quantile ``gamma`` gives the band (every count whose tail probability
  exceeds ``gamma``) that holds the whole ECDF with probability ``prob``, and its
  simulated tail gives a p-value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from ..validate import check_float, check_int

__all__ = ["ECDFBand", "chi_square_uniformity", "default_bins", "ecdf_band", "ecdf_uniformity"]

#: Simulated samples behind the ECDF band and its p-value.
ECDF_SIMULATIONS = 4000


def default_bins(n_ranks: int, n_draws: int) -> int:
    """Bins of the chi-square test: about 20, at least 10 expected ranks per bin.

    The largest divisor of ``L + 1`` up to ``min(25, n_ranks / 10)`` when it is at
    least 5 (bins of equal probability), else ``min(L + 1, 20, n_ranks / 10)`` bins
    of consecutive ranks (expected counts proportional to their widths).
    """
    cap = min(25, n_ranks // 10, n_draws + 1)
    divisors = [d for d in range(5, cap + 1) if (n_draws + 1) % d == 0]
    if divisors:
        return divisors[-1]
    return int(max(2, min(n_draws + 1, 20, n_ranks // 10)))


def _bin_edges(n_draws: int, bins: int) -> np.ndarray:
    return np.floor(np.linspace(0, n_draws + 1, bins + 1)).astype(int)


def chi_square_uniformity(ranks: np.ndarray, n_draws: int, bins: int | None = None
                          ) -> tuple[float, float]:
    """Pearson's chi-square test that ``ranks`` are uniform on ``0..n_draws``.

    Parameters
    ----------
    ranks : array of int
        Ranks, NaN entries ignored.
    n_draws : int
        Number of posterior draws ``L`` (ranks lie in ``0..L``).
    bins : int, optional
        Groups of consecutive rank values (``2..L+1``); default :func:`default_bins`.

    Returns
    -------
    statistic, p_value : float

    Examples
    --------
    >>> import numpy as np
    >>> ranks = np.random.default_rng(1).integers(0, 20, size=500)
    >>> stat, p = chi_square_uniformity(ranks, n_draws=19)
    >>> p > 0.01
    True
    """
    r = np.asarray(ranks, dtype=float)
    r = r[~np.isnan(r)].astype(int)
    n_draws = check_int("n_draws", n_draws, minimum=1)
    bins = default_bins(r.size, n_draws) if bins is None else check_int(
        "bins", bins, minimum=2, maximum=n_draws + 1)
    if r.size == 0:
        return float("nan"), float("nan")
    if r.min() < 0 or r.max() > n_draws:
        raise ValueError(f"ranks must lie in 0..{n_draws}")
    edges = _bin_edges(n_draws, bins)
    observed = np.histogram(r, bins=edges)[0]
    expected = r.size * np.diff(edges) / (n_draws + 1)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, bins - 1))


def _tail_probabilities(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Two-sided binomial tail probability of each count (capped at 1)."""
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper))


@dataclass(frozen=True)
class ECDFBand:
    """Simultaneous band of the ECDF of ``n`` ranks uniform on ``0..n_draws``.

    Attributes
    ----------
    z : (L,) evaluation points ``i / (L + 1)``.
    lower, upper : (L,) band of the ECDF at ``z`` (fractions of ``n``).
    gamma : per-point level giving simultaneous coverage ``prob``.
    prob : simultaneous coverage.
    null_statistics : (S,) simulated minimum tail probabilities under uniformity.
    """

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    prob: float
    null_statistics: np.ndarray


@lru_cache(maxsize=32)
def ecdf_band(n: int, n_draws: int, prob: float = 0.95, simulations: int = ECDF_SIMULATIONS,
              seed: int = 0) -> ECDFBand:
    """The simultaneous ECDF band for ``n`` ranks on ``0..n_draws`` (Säilynoja et al. 2022).

    Parameters
    ----------
    n : int
        Number of ranks.
    n_draws : int
        ``L``: ranks lie in ``0..L``.
    prob : float
        Simultaneous coverage of the band.
    simulations : int
        Samples simulated under uniformity to calibrate it.
    seed : int
        Seed of those simulations (the band is deterministic).

    Returns
    -------
    ECDFBand
    """
    n = check_int("n", n, minimum=1)
    n_draws = check_int("n_draws", n_draws, minimum=1)
    prob = check_float("prob", prob, low=0.0, high=1.0, low_open=True, high_open=True)
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_draws + 1) / (n_draws + 1)
    counts = rng.multinomial(n, np.full(n_draws + 1, 1.0 / (n_draws + 1)), size=simulations)
    below = np.cumsum(counts, axis=1)[:, :-1]  # ranks below i, i = 1..L
    null = _tail_probabilities(below, n, z[None, :]).min(axis=1)
    gamma = float(np.quantile(null, 1.0 - prob, method="lower"))
    grid = np.arange(n + 1)[:, None]
    inside = _tail_probabilities(grid, n, z[None, :]) > gamma  # (n + 1, L)
    lower = np.argmax(inside, axis=0)
    upper = n - np.argmax(inside[::-1], axis=0)
    return ECDFBand(z, lower / n, upper / n, gamma, prob, np.sort(null))


def ecdf_uniformity(ranks: np.ndarray, n_draws: int, prob: float = 0.95
                    ) -> tuple[float, bool]:
    """ECDF test that ``ranks`` are uniform on ``0..n_draws`` (Säilynoja et al. 2022).

    Parameters
    ----------
    ranks : array of int
        Ranks, NaN entries ignored.
    n_draws : int
        ``L``: ranks lie in ``0..L``.
    prob : float
        Simultaneous coverage of the band.

    Returns
    -------
    p_value : float
        Share of simulated uniform samples whose ECDF strays at least as far.
    inside : bool
        Whether the whole ECDF lies inside the band of coverage ``prob``.

    Examples
    --------
    >>> import numpy as np
    >>> ranks = np.random.default_rng(1).integers(0, 20, size=300)
    >>> p, inside = ecdf_uniformity(ranks, n_draws=19)
    >>> bool(inside)
    True
    """
    r = np.asarray(ranks, dtype=float)
    r = r[~np.isnan(r)].astype(int)
    if r.size == 0:
        return float("nan"), False
    band = ecdf_band(r.size, n_draws, prob)
    z = band.z
    below = np.searchsorted(np.sort(r), np.arange(1, n_draws + 1), side="left")
    statistic = float(_tail_probabilities(below, r.size, z).min())
    null = band.null_statistics
    p_value = (1 + np.searchsorted(null, statistic, side="right")) / (null.size + 1)
    return float(min(p_value, 1.0)), bool(statistic > band.gamma)
