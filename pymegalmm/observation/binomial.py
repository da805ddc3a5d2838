"""Binomial counts (successes out of trials, e.g. methylated reads), logit link.

``Y_ij ~ Binomial(N_ij, expit(Eta_ij))``.  The latent ``Eta`` (log-odds) is drawn every
iteration by Polya-Gamma data augmentation (Polson, Scott & Windle 2013): given the
current ``Eta``, ``omega_ij ~ PG(N_ij, Eta_ij)``, then::

    Eta_ij | omega ~ N((kappa_ij + mean_ij / var_j) / P_ij, 1 / P_ij),
                     P_ij = omega_ij + 1 / var_j,   kappa_ij = Y_ij - N_ij / 2

(cells without data, ``Y`` NaN or ``N = 0``: ``N(mean_ij, var_j)``), with ``mean`` and
``var`` the factor model's expected value and residual variance.  ``Eta`` lives on
the link scale, which is not standardised: ``Control.scale_Y`` does not apply.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import expit

from ..errors import InputError, InputTypeError
from ._common import aligned_input, check_counts, pg_latent_update, redraw_latent
from .base import LatentScale, ObservationModel, SimulatedObservations

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState


@dataclass(frozen=True)
class CountData:
    """A count model's inputs aligned with ``Y``.

    Attributes
    ----------
    counts : (n, t) the counts (successes), 0 where not observed.
    size : (n, t) trials (Binomial) or library sizes (negative binomial; 1 without).
    observed : (n, t) bool.
    """

    counts: np.ndarray
    size: np.ndarray
    observed: np.ndarray


def check_count_input(name: str, value: Any) -> None:
    """Type check of a per-cell count input at construction (values at prepare)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return
    if not isinstance(value, pd.DataFrame | pd.Series | np.ndarray):
        raise InputTypeError(f"{name} must be a number, a DataFrame labelled like Y or an "
                             f"array, got {type(value).__name__}")


@dataclass(frozen=True, eq=False)
class Binomial(ObservationModel):
    """Binomial data with a logit link: ``Y`` successes out of ``trials``.

    Parameters
    ----------
    trials : int, pandas.DataFrame, pandas.Series or array
        Number of trials of each cell (e.g. reads covering a CpG site): one number
        for every cell, a DataFrame labelled like ``Y``, a Series indexed by ``Y``'s
        rows (one per row) or traits (one per trait), or an array of shape ``(n, t)``,
        ``(n,)`` or ``(t,)`` in ``Y``'s order.  Non-negative whole numbers where ``Y``
        is observed; a cell with 0 trials is treated as missing.

    Notes
    -----
    ``Y`` must hold whole numbers ``0 <= Y <= trials`` (NaN = missing).  The latent
    ``Eta`` are log-odds: ``Control.scale_Y`` does not apply (the link scale is
    never centred or scaled), ``E[Y]``/``Eta_mean`` and ``predict()`` are log-odds,
    and ``predict(scale="response")`` gives probabilities ``expit(Eta)``.  The latent
    cells start at the empirical logits ``log((Y + 0.5) / (N - Y + 0.5))``.
    """

    trials: Any

    def __post_init__(self) -> None:
        check_count_input("trials", self.trials)
        if isinstance(self.trials, numbers.Real) and not (
                self.trials >= 0 and float(self.trials).is_integer()):
            raise InputError(f"trials must be a non-negative whole number, got {self.trials!r}")

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """As :meth:`prepare_data`, with ``trials`` matched to ``Y`` by position."""
        return self.prepare_data(Y, None, traits, scale)

    def prepare_data(self, Y: np.ndarray, rows: Sequence[Hashable] | None, traits: list[str],
                     scale: bool) -> LatentScale:
        """Check the counts, align ``trials``; starting values are empirical logits.

        ``scale`` (``Control.scale_Y``) is ignored: the link scale is not standardised.
        """
        n, t = Y.shape
        N = aligned_input("trials", self.trials, rows, traits, (n, t), per_trait=True)
        has_y = ~np.isnan(Y)
        check_counts("Y", Y, has_y, traits)
        check_counts("trials", N, has_y, traits)
        over = has_y & (Y > N)
        if over.any():
            cols = sorted({str(traits[j]) for j in np.nonzero(over)[1]})
            raise InputError(f"Y (successes) exceeds trials in {int(over.sum())} cell(s) of "
                             f"trait(s) {cols[:5]}")
        observed = has_y & (N > 0)
        _check_traits_observed(observed, traits, "trials > 0")
        y, size = np.where(observed, Y, 0.0), np.where(observed, N, 0.0)
        start = np.where(observed, np.log((y + 0.5) / (size - y + 0.5)), np.nan)
        return LatentScale(np.asfortranarray(start), np.zeros(t), np.ones(t),
                           CountData(np.asfortranarray(y), np.asfortranarray(size), observed))

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """``Y ~ Binomial(trials, expit(Eta))`` where observed and ``trials > 0`` (NaN
        elsewhere); no parameters of its own.  ``trials`` are matched to ``Eta`` by
        ``rows`` and ``traits`` (labelled like ``Y``), by position without them."""
        observed = np.asarray(observed, dtype=bool)
        traits = range(observed.shape[1]) if traits is None else traits
        N = aligned_input("trials", self.trials, rows, traits, observed.shape, per_trait=True)
        check_counts("trials", N, observed, [str(v) for v in traits])
        N = np.where(observed, N, 0).astype(np.int64)
        y = rng.binomial(N, expit(Eta))
        return SimulatedObservations(np.where(observed & (N > 0), y, np.nan))

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every cell of ``Eta`` (Polya-Gamma augmentation; module docstring)."""
        redraw_latent(s, d, conditional, rng, [(self, d.latent.extra, s.observation,
                                                np.arange(d.t))])

    def _update_columns(self, extra: CountData, state: dict[str, np.ndarray], rows: np.ndarray,
                        cols: np.ndarray, eta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        gen: np.random.Generator) -> np.ndarray:
        ix = np.ix_(rows, cols)
        N, y = extra.size[ix], extra.counts[ix]
        return pg_latent_update(eta, mean, var, extra.observed[ix], N, y - N / 2, None, gen)

    def to_response(self, eta: np.ndarray, traits: Sequence[Hashable], **options: Any
                    ) -> np.ndarray:
        """Probabilities ``expit(eta)``."""
        if options:
            raise InputError(f"Binomial takes no response-scale options, got {sorted(options)}")
        return expit(eta)


def _check_traits_observed(observed: np.ndarray, traits: Sequence[Hashable], what: str) -> None:
    empty = [str(traits[j]) for j in np.flatnonzero(~observed.any(axis=0))]
    if empty:
        raise InputError(f"trait(s) {empty[:5]} of Y have no observed cell with {what}; "
                         "remove them")
