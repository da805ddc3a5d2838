"""Metropolis-Hastings step for a column's h2 grid index (``Control(h2_step_size=...)``).

The exact step (:func:`pymegalmm.core.column_lmm.sample_grid_index`) evaluates every
column's log-likelihood at every grid point.  This step evaluates it at two: the
current point ``g`` and a proposal ``g'`` drawn uniformly from the neighbourhood

    N(g) = {g' != g : max_m |h_m(g') - h_m(g)| <= h2_step_size}

(max-norm on the vector of variance proportions, the current point excluded), and
moves to ``g'`` with probability ``min(1, A)``::

    log A = l(g') - l(g) + log |N(g)| - log |N(g')|,
    l(g)  = log prior(g) - log |V_g| / 2 - tau y' V_g^-1 y / 2.

``log |N(g)| - log |N(g')|`` is the Hastings correction for neighbourhoods of
different sizes (``q(g' | g) = 1 / |N(g)|``).  R MegaLMM 0.9.5
(``sample_h2s_discrete_MH_c``) adds it with the opposite sign (METHOD.md Q3), which
is wrong wherever neighbouring neighbourhoods differ in size (near the edges of the
grid); R's neighbourhood is also different: L1 distance ``< h2_step_size``, and every
grid point (the current one included) when that is empty (Q4).  Neighbourhoods here
are never empty: a step smaller than the grid's spacing is refused.

Both neighbourhood relations are symmetric (``g' in N(g)`` iff ``g in N(g')``), so
the step satisfies detailed balance with respect to the column's exact discrete
conditional: it leaves it invariant (tested against the full-grid posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .random_effects import RandomEffectsBackend

#: grid values are ``i / d``: distances within this of ``h2_step_size`` count as equal
_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class GridNeighbourhoods:
    """Each grid point's neighbours, in compressed rows.

    Attributes
    ----------
    step : the ``h2_step_size`` they were built for.
    indptr : (G + 1,) ``indices[indptr[g]:indptr[g + 1]]`` are the neighbours of ``g``.
    indices : neighbour grid indices, increasing within each point.
    log_size : (G,) ``log |N(g)|``.
    """

    step: float
    indptr: np.ndarray
    indices: np.ndarray
    log_size: np.ndarray


def grid_neighbourhoods(grid: np.ndarray, step: float, chunk: int = 512) -> GridNeighbourhoods:
    """Neighbourhoods ``N(g)`` of every grid point (max-norm ``<= step``, ``g`` excluded).

    Parameters
    ----------
    grid : (m, G) the h2 grid.
    step : ``h2_step_size`` in (0, 1].
    chunk : grid points compared at a time (memory ``chunk x G x m``).

    Returns
    -------
    GridNeighbourhoods

    Raises
    ------
    InputError
        When some grid point has no neighbour (``step`` below the grid's spacing).

    Notes
    -----
    Built once per model in ``O(G^2 m)`` time; stored in ``G + 1 + sum |N(g)|`` integers.
    """
    G = grid.shape[1]
    pts = np.ascontiguousarray(grid.T)  # (G, m)
    counts = np.empty(G, dtype=np.intp)
    parts = []
    for start in range(0, G, chunk):
        block = pts[start:start + chunk]
        dist = np.abs(block[:, None, :] - pts[None, :, :]).max(axis=2)  # (b, G)
        near = dist <= step + _TOL
        near[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = False
        counts[start:start + block.shape[0]] = near.sum(axis=1)
        parts.append(np.nonzero(near)[1])
    if counts.min() == 0:
        g = int(np.argmin(counts))
        raise InputError(
            f"h2_step_size={step:g} is smaller than the h2 grid's spacing: grid point "
            f"{np.round(grid[:, g], 6).tolist()} has no neighbour within it (max-norm); "
            "increase h2_step_size or h2_divisions")
    indptr = np.zeros(G + 1, dtype=np.intp)
    np.cumsum(counts, out=indptr[1:])
    return GridNeighbourhoods(float(step), indptr, np.concatenate(parts).astype(np.intp),
                              np.log(counts.astype(float)))


def sample_grid_index_metropolis(
    re: RandomEffectsBackend, E: np.ndarray, h2_index: np.ndarray, tau: np.ndarray,
    log_prior: np.ndarray, nbhd: GridNeighbourhoods, rng: np.random.Generator,
    ss_current: np.ndarray | None = None,
) -> np.ndarray:
    """One Metropolis-Hastings step per column on the h2 grid (see the module docstring).

    Parameters
    ----------
    re : the back-end of the rows of ``E``.
    E : (n, c) rotated residuals (random effects integrated out), Fortran-ordered.
    h2_index : (c,) current grid indices.
    tau : (c,) total precisions.
    log_prior : (G,) log prior weights of the grid.
    nbhd : the neighbourhoods of the grid.
    rng : the chain's generator: ``2 c`` uniforms, always (proposals, then acceptances).
    ss_current : (c,) ``E_j' V_g^-1 E_j`` at the current points, if already computed.

    Returns
    -------
    numpy.ndarray
        (c,) new grid indices.

    Notes
    -----
    Cost: two quadratic forms per column, at its current and proposed points
    (:meth:`~pymegalmm.core.random_effects.DiagonalRandomEffect.quadratic_forms_at`):
    ``O(n)`` per column with one random effect, ``O(n r_o)`` with the low-rank
    back-end and ``O(n^2)`` with the dense one, instead of ``G`` times that for the
    exact step; the log-determinants are precomputed per grid point.
    """
    h2_index = np.asarray(h2_index, dtype=np.intp)
    c = h2_index.size
    u = rng.random((2, c))
    size = nbhd.indptr[h2_index + 1] - nbhd.indptr[h2_index]
    pick = np.minimum((u[0] * size).astype(np.intp), size - 1)
    proposal = nbhd.indices[nbhd.indptr[h2_index] + pick]
    if ss_current is None:
        ss_current = re.quadratic_forms_at(E, h2_index)
    ss_new = re.quadratic_forms_at(E, proposal)
    lp_old, lp_new = log_prior[h2_index], log_prior[proposal]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = (lp_new - lp_old
                     - 0.5 * (re.log_det[proposal] - re.log_det[h2_index])
                     - 0.5 * tau * (ss_new - ss_current)
                     + nbhd.log_size[h2_index] - nbhd.log_size[proposal])
        # a current point of prior weight 0 is left for any proposal of positive weight
        log_ratio = np.where(np.isneginf(lp_old), np.inf, log_ratio)
        accept = (np.log(u[1]) < log_ratio) & np.isfinite(lp_new)
    return np.where(accept, proposal, h2_index)
