"""What a chain reads but never changes: trait groups, precomputes and model parts.

:class:`ModelData` is built once per model (:func:`pymegalmm.core.precompute.build_model_data`)
and shared by every chain; chains write only into their own
:class:`~pymegalmm.core.state.ChainState` and :class:`Workspace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .h2_metropolis import GridNeighbourhoods
from .patterns import unique_boolean_rows
from .random_effects import RandomEffectsBackend

if TYPE_CHECKING:
    from ..observation.base import LatentScale, ObservationModel
    from ..priors import Priors
    from .cis import CisDesign
    from .fixed_factors import FixedFactors
    from .regressions import RegressionData


@dataclass(eq=False, frozen=True)
class GroupData:
    """One trait group of a missing-data map with its own rows and precomputes.

    Attributes
    ----------
    rows : (n_s,) rows of the group (all rows for group 0).
    cols : (t_s,) traits of the group.
    re : random-effect back-end built on the group's rows.
    QtX1 : (n_s, b1) rotated fixed-effect design of the group's rows.
    drop_fixed : (t_s, b1) uint8, 1 where a fixed effect is not identifiable from
        the trait's observed cells (its coefficient is fixed at 0).
    imputed : (local rows, local cols) of the missing cells inside the group's block,
        drawn every iteration by the observation model.
    """

    rows: np.ndarray
    cols: np.ndarray
    re: RandomEffectsBackend
    QtX1: np.ndarray
    drop_fixed: np.ndarray
    imputed: tuple[np.ndarray, np.ndarray]

    @cached_property
    def block(self) -> tuple[np.ndarray, np.ndarray]:
        """Index of the group's block of ``Eta`` (``Eta[block]`` is ``n_s x t_s``), built
        once (the sampler asks for it about 20 times per iteration with 16 groups)."""
        return np.ix_(self.rows, self.cols)


@dataclass(frozen=True)
class RowPatterns:
    """Rows grouped by the set of traits they inform (several trait groups).

    Attributes
    ----------
    used : (n_patterns, t) uint8, traits used by each pattern.
    start : (n_patterns + 1,) offsets of each pattern's rows in ``rows``.
    rows : (n,) row indices grouped by pattern.
    """

    used: np.ndarray
    start: np.ndarray
    rows: np.ndarray

    @classmethod
    def from_mask(cls, used_cells: np.ndarray) -> RowPatterns:
        """Group the rows of an ``(n, t)`` boolean mask of used cells by pattern."""
        patterns, inverse = unique_boolean_rows(used_cells)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(patterns))
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        return cls(np.ascontiguousarray(patterns, dtype=np.uint8), start,
                   order.astype(np.intp))


@dataclass(frozen=True, eq=False)
class ModelData:
    """Everything a chain needs that does not change between iterations.

    Attributes
    ----------
    Y : (n, t) observed traits on the sampler's scale, NaN = missing (Fortran-ordered).
    X1 : (n, b1) fixed-effect design.
    groups : trait groups of the missing-data map; group 0 holds all rows and
        provides the factors' rotation.
    row_patterns : rows grouped by the traits they inform (factor scores with
        several groups).
    grid : (m, G) h2 grid.
    log_prior_resid, log_prior_factor : (G,) log prior weights of the grid.
    priors : Priors (the loadings prior is ``priors.Lambda_prior``).
    n_factors : int.
    observation : the observation model mapping ``Y`` to the latent ``Eta``.
    h2_neighbourhoods : the grid's neighbourhoods for the Metropolis-Hastings h2 step
        (``Control.h2_step_size``); None: h2 drawn from its exact conditional.
    regressions : the extra regressions' ``X2`` (:mod:`pymegalmm.core.regressions`), or None.
    fixed : the fixed first rows of ``Lambda`` (:mod:`pymegalmm.core.fixed_factors`), or None.
    cis : each trait's own regressors (:mod:`pymegalmm.core.cis`), or None.
    latent : the data on the sampler's scale as the observation model prepared them
        (its own inputs in ``latent.extra``), or None.
    """

    Y: np.ndarray
    X1: np.ndarray
    groups: list[GroupData]
    row_patterns: RowPatterns
    grid: np.ndarray
    log_prior_resid: np.ndarray
    log_prior_factor: np.ndarray
    priors: Priors
    n_factors: int
    observation: ObservationModel | None = None
    h2_neighbourhoods: GridNeighbourhoods | None = None
    regressions: RegressionData | None = None
    fixed: FixedFactors | None = None
    cis: CisDesign | None = None
    latent: LatentScale | None = None

    @property
    def n_fixed(self) -> int:
        """Number of fixed factors (the first rows of ``Lambda``)."""
        return 0 if self.fixed is None else self.fixed.n

    @property
    def n(self) -> int:
        """Number of rows."""
        return self.Y.shape[0]

    @property
    def t(self) -> int:
        """Number of traits."""
        return self.Y.shape[1]

    @property
    def factor_re(self) -> RandomEffectsBackend:
        """Back-end of group 0 (all rows), used for the factors."""
        return self.groups[0].re

    @property
    def has_missing(self) -> bool:
        """Whether any cell is drawn every iteration."""
        return any(g.imputed[0].size for g in self.groups)

    @property
    def drop_fixed(self) -> np.ndarray:
        """``(t, b1)`` uint8: fixed effects fixed at 0 per trait (all groups)."""
        out = np.zeros((self.t, self.X1.shape[1]), dtype=np.uint8)
        for g in self.groups:
            out[g.cols] = g.drop_fixed
        return out

    @property
    def single_group(self) -> bool:
        """One group with every trait: the whole iteration stays in rotated space."""
        return len(self.groups) == 1 and self.groups[0].cols.size == self.t


#: Former name of :class:`ModelData`.
SamplerData = ModelData


@dataclass(eq=False)
class Workspace:
    """Reusable work arrays of one chain (the hot path allocates no large array).

    Each chain owns one, so chains may run side by side.
    """

    buffers: dict[tuple[str, tuple[int, int]], np.ndarray] = field(default_factory=dict)

    def buffer(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """A Fortran-ordered ``shape`` array named ``name``, allocated on first use."""
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = np.empty(shape, order="F")
        return self.buffers[key]
