"""Gaussian data with known precision weights per cell (limma-voom's weights).

``Y_ij = Eta_ij + e_ij`` with ``e_ij ~ N(0, 1 / w_ij)``: a cell with a small weight
is a noisy measurement of its latent value and barely moves ``Eta`` (and through it
the factor model).  The latent ``Eta`` is drawn every iteration, cell by cell::

    Eta_ij | Y, mean, var ~ N((w_ij Y_ij + mean_ij / var_j) / P_ij, 1 / P_ij),
                            P_ij = w_ij + 1 / var_j

(missing cells: ``N(mean_ij, var_j)``), with ``mean`` and ``var`` the factor model's
expected value and residual variance.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError
from ._common import aligned_input, redraw_latent
from .base import LatentScale, ObservationModel, SimulatedObservations
from .gaussian import GaussianMissing

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState


@dataclass(frozen=True)
class VoomData:
    """Voom's inputs on the sampler's scale.

    Attributes
    ----------
    Y : (n, t) data on the sampler's scale, 0 where not observed.
    weights : (n, t) precision weights on the sampler's scale (``w * scale^2``),
        0 where not observed.
    observed : (n, t) bool.
    """

    Y: np.ndarray
    weights: np.ndarray
    observed: np.ndarray


@dataclass(frozen=True, eq=False)
class Voom(ObservationModel):
    """Gaussian data with known precision weights per cell (e.g. limma's ``voom``).

    ``Y = Eta + e``, ``e_ij ~ N(0, 1 / weights_ij)`` on the user's scale.  With
    ``Control.scale_Y`` (default) each trait is centred and scaled by its observed
    mean and SD as for :class:`GaussianMissing`, and the weights are rescaled with
    it (``weights * SD^2``), so the model is the same on either scale.

    Parameters
    ----------
    weights : pandas.DataFrame or array
        Precision weights, one per cell of ``Y``: a DataFrame labelled like ``Y``
        (rows and traits matched by label) or an ``(n, t)`` array in ``Y``'s order.
        Finite and positive where ``Y`` is observed (ignored where it is missing).
    """

    weights: Any

    def __post_init__(self) -> None:
        w = self.weights
        if not isinstance(w, pd.DataFrame | np.ndarray):
            raise InputTypeError(f"weights must be a DataFrame labelled like Y or an (n, t) "
                                 f"array, got {type(w).__name__}")
        arr = w.to_numpy() if isinstance(w, pd.DataFrame) else w
        if arr.ndim != 2:
            raise InputError(f"weights must be 2-D (n x t) like Y, got shape {arr.shape}")

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """As :meth:`prepare_data`, with ``weights`` matched to ``Y`` by position."""
        return self.prepare_data(Y, None, traits, scale)

    def prepare_data(self, Y: np.ndarray, rows: Sequence[Hashable] | None, traits: list[str],
                     scale: bool) -> LatentScale:
        """Centre and scale as :class:`GaussianMissing`; align and rescale the weights."""
        base = GaussianMissing().prepare(Y, traits, scale)
        w = aligned_input("weights", self.weights, rows, traits, Y.shape, per_row=False)
        observed = base.observed
        bad = observed & ~(np.isfinite(w) & (w > 0))
        if bad.any():
            cols = sorted({str(traits[j]) for j in np.nonzero(bad)[1]})
            raise InputError(f"weights must be finite and > 0 where Y is observed; not so for "
                             f"{int(bad.sum())} cell(s) of trait(s) {cols[:5]}")
        weights = np.asfortranarray(np.where(observed, w, 0.0) * base.scale[None, :] ** 2)
        extra = VoomData(np.asfortranarray(np.where(observed, base.Y, 0.0)), weights, observed)
        return LatentScale(base.Y, base.center, base.scale, extra)

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """``Y = Eta + N(0, 1 / weights)`` where observed, NaN elsewhere; no parameters of
        its own.  ``weights`` are matched to ``Eta`` by ``rows`` and ``traits`` (a
        DataFrame labelled like ``Y``), by position without them.  One standard normal
        per cell (C order)."""
        observed = np.asarray(observed, dtype=bool)
        traits = range(observed.shape[1]) if traits is None else traits
        w = aligned_input("weights", self.weights, rows, traits, observed.shape, per_row=False)
        bad = observed & ~(np.isfinite(w) & (w > 0))
        if bad.any():
            raise InputError(f"weights must be finite and > 0 where Y is observed; not so "
                             f"for {int(bad.sum())} cell(s)")
        noise = rng.standard_normal(observed.shape) / np.sqrt(np.where(observed, w, 1.0))
        return SimulatedObservations(np.where(observed, Eta + noise, np.nan))

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every cell of ``Eta`` from its weighted Gaussian conditional."""
        redraw_latent(s, d, conditional, rng, [(self, d.latent.extra, s.observation,
                                                np.arange(d.t))])

    def _update_columns(self, extra: VoomData, state: dict[str, np.ndarray], rows: np.ndarray,
                        cols: np.ndarray, eta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        gen: np.random.Generator) -> np.ndarray:
        """New latent values of columns ``cols`` (see the module docstring); one standard
        normal per cell from ``gen`` (column-major)."""
        w = extra.weights[np.ix_(rows, cols)]
        y = extra.Y[np.ix_(rows, cols)]
        prec = 1.0 / var[None, :]
        P = w + prec
        z = gen.standard_normal((eta.shape[1], eta.shape[0])).T
        return (w * y + mean * prec) / P + z / np.sqrt(P)
