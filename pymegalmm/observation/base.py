"""The observation-model protocol: how the data ``Y`` are seen through the latent ``Eta``.

MegaLMM's factor model describes a latent ``n x t`` matrix ``Eta``; an
observation model says how the data ``Y`` relate to it.  It owns, in this order
of the data flow:

1. ``prepare``: the data on the sampler's scale (centring and scaling per trait,
   the mask of observed cells; weights or trial counts for other models);
2. ``trait_groups``: the trait groups whose rows get their own precomputed
   rotation (a missing-data map for Gaussian data);
3. ``sample_latent``: the draw of ``Eta`` given the factor model's mean and
   residual variances (an :class:`~pymegalmm.core.mean.EtaConditional`), at
   initialisation and at the end of every iteration.

The iteration never branches on the observation model's type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState


@dataclass(frozen=True, eq=False)
class LatentScale:
    """The data on the sampler's scale and the map back to the user's scale.

    Attributes
    ----------
    Y : (n, t) data on the sampler's scale, NaN where not observed (Fortran-ordered).
    center, scale : (t,) user's value = sampler's value * scale + center.
    """

    Y: np.ndarray
    center: np.ndarray
    scale: np.ndarray

    @property
    def observed(self) -> np.ndarray:
        """``(n, t)`` bool, True where a cell is observed."""
        return ~np.isnan(self.Y)


class ObservationModel(ABC):
    """Base class of the observation models (see the module docstring)."""

    @abstractmethod
    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """The data on the sampler's scale.

        Parameters
        ----------
        Y : (n, t) data, NaN = missing.
        traits : trait names, for error messages.
        scale : whether to centre and scale each trait (``Control.scale_Y``).
        """

    def trait_groups(self, observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row and column indices of each trait group; default one group of everything."""
        n, t = observed.shape
        return [(np.arange(n), np.arange(t))]

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        """Data ``Y`` drawn given the latent ``Eta`` (for simulations; sampler's scale).

        The simulation counterpart of :meth:`sample_latent`, used by
        :func:`pymegalmm.validation.simulate_from_prior`: it draws the observation
        model's own parameters, if any, from their priors and then the data, so that
        simulation-based calibration tests the sampler against this model.

        Parameters
        ----------
        Eta : numpy.ndarray
            ``(n, t)`` latent traits drawn from the factor model.
        observed : numpy.ndarray
            ``(n, t)`` bool, True where a cell is observed (NaN elsewhere in ``Y``).
        rng : numpy.random.Generator
            Source of every random number.

        Returns
        -------
        numpy.ndarray
            ``(n, t)`` data, NaN where not observed.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement simulate(Eta, observed, rng), needed to "
            "simulate data (pymegalmm.validation); add it next to sample_latent()"
        )

    @abstractmethod
    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Draw ``Eta`` (and its rotated blocks ``s.QtEta``) given the factor model, in place."""
