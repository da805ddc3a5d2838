"""Gaussian observations with missing cells: today's (and R MegaLMM's) default.

Observed cells are ``Eta`` itself; missing cells inside a trait group's block are
drawn every iteration from the factor model (imputed), and missing cells outside
every block are only predicted (a missing-data map, :mod:`pymegalmm.observation.maps`).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .base import LatentScale, ObservationModel, SimulatedObservations
from .maps import MissingDataMap

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState


@dataclass(frozen=True)
class GaussianMissing(ObservationModel):
    """``Y = Eta`` where observed; missing cells imputed, or only predicted under a map.

    Parameters
    ----------
    missing_data_map : MissingDataMap, optional
        Trait groups; default one group (every missing cell imputed).
    """

    missing_data_map: MissingDataMap | None = None

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """Centre and scale each trait by its observed mean and SD (``scale``), else as is."""
        if scale:
            center = np.nanmean(Y, axis=0)
            n_obs = np.sum(~np.isnan(Y), axis=0)
            with warnings.catch_warnings():  # traits with < 2 observations: reported below
                warnings.simplefilter("ignore", RuntimeWarning)
                sd = np.nanstd(Y, axis=0, ddof=1)
            bad = [str(traits[j]) for j in np.flatnonzero((n_obs < 2) | ~(sd > 0))]
            if bad:
                raise InputError(
                    f"trait(s) {bad[:10]} of Y have fewer than 2 observations or no variation; "
                    "remove them or set scale_Y=False"
                )
        else:
            n_obs = np.sum(~np.isnan(Y), axis=0)
            constant = [str(traits[j]) for j in np.flatnonzero(n_obs >= 2)
                        if np.nanmin(Y[:, j]) == np.nanmax(Y[:, j])]
            if constant:
                raise InputError(f"trait(s) {constant[:10]} of Y have no variation (every "
                                 "observed value is the same); remove them")
            center, sd = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        return LatentScale(np.asfortranarray((Y - center) / sd), center, sd)

    def trait_groups(self, observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The map's groups (validated against ``observed``), or one group of everything."""
        if self.missing_data_map is None:
            return super().trait_groups(observed)
        self.missing_data_map.validate(observed)
        return [(np.asarray(g.rows, dtype=np.intp), np.asarray(g.cols, dtype=np.intp))
                for g in self.missing_data_map.groups]

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """``Y = Eta`` where observed, NaN elsewhere: Gaussian data have no parameters of
        their own (the residual variance is the factor model's).

        Parameters
        ----------
        Eta : numpy.ndarray
            ``(n, t)`` latent traits.
        observed : numpy.ndarray
            ``(n, t)`` bool, True where a cell is observed; under a missing-data map
            it must fit the map.
        rng : numpy.random.Generator
            Unused (no parameters to draw).
        rows, traits : sequence, optional
            Unused (no inputs labelled like ``Y``).

        Returns
        -------
        SimulatedObservations
            ``(n, t)`` data, NaN where not observed; no parameters.
        """
        observed = np.asarray(observed, dtype=bool)
        if observed.shape != np.shape(Eta):
            raise InputError(f"observed must have the shape of Eta {np.shape(Eta)}, got "
                             f"{observed.shape}")
        if self.missing_data_map is not None:
            self.missing_data_map.validate(observed)
        return SimulatedObservations(np.where(observed, Eta, np.nan))

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw the missing cells of every block as ``mean + N(0, (1 - sum h2)/tau)``."""
        for gi, g in enumerate(d.groups):
            rows, cols = g.imputed
            if not rows.size:
                continue
            mean = conditional.block_mean(gi)
            tr = g.cols[cols]
            sd = np.sqrt(conditional.residual_variance(tr))
            s.Eta[g.rows[rows], tr] = mean[rows, cols] + sd * rng.standard_normal(rows.size)
            g.re.rotate(s.Eta[g.block], out=s.QtEta[gi])
