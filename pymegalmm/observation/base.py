"""The observation-model protocol: how the data ``Y`` are seen through the latent ``Eta``.

MegaLMM's factor model describes a latent ``n x t`` matrix ``Eta``; an
observation model says how the data ``Y`` relate to it.  It owns, in this order
of the data flow:

0. ``latent_frame`` (called before the design is built): the table of latent traits,
   one row per row of ``data``, one column per latent trait, holding starting values
   (NaN where nothing is observed).  By default ``Y`` itself: the latent traits are
   ``Y``'s columns.  Models whose latent traits are not ``Y``'s columns (genes seen
   through probes, curve coefficients seen through observations along a covariate)
   build it from their own inputs, and then ``prepare_design`` prepares their data
   knowing the design's rows;
1. ``prepare`` (``prepare_data`` when the model needs the rows' labels): the data
   on the sampler's scale (centring and scaling per trait, the mask of observed
   cells), plus the model's own aligned inputs (weights, trial counts, library
   sizes) in ``LatentScale.extra``;
2. ``trait_groups``: the trait groups whose rows get their own precomputed
   rotation (a missing-data map for Gaussian data);
3. ``sample_latent``: the draw of ``Eta`` given the factor model's mean and
   residual variances (an :class:`~pymegalmm.core.mean.EtaConditional`), at
   initialisation and at the end of every iteration, with the model's own
   parameters (``ChainState.observation``, a dict of arrays named in
   ``state_dims``; started by ``initialize``);
4. ``record`` and ``to_response``: the recorded parameters (``recorded``) and the
   map from the latent scale to the response scale (``MegaLMM.predict(scale=
   "response")``);
5. ``simulate`` (for :mod:`pymegalmm.validation`): data drawn given a latent ``Eta``,
   with the model's own parameters drawn from their priors.

The iteration never branches on the observation model's type.

``simulate`` protocol (what simulation-based calibration needs)
---------------------------------------------------------------
``simulate(Eta, observed, rng, *, rows=None, traits=None)`` returns a
:class:`SimulatedObservations`: the data ``Y`` and the parameters the model drew,
named and shaped as :meth:`ObservationModel.record` reports them (e.g.
NegativeBinomial's ``dispersion``, one per trait), so that calibration can rank the
posterior draws of exactly those names.  ``rows`` and ``traits`` are the labels of
``Eta``'s rows and columns: inputs labelled like ``Y`` (weights, trial counts,
library sizes) are matched by them, as :meth:`ObservationModel.prepare_data` does,
and :class:`~pymegalmm.observation.Combined` finds its blocks' columns by them.
Without them inputs are matched by position.  Nothing is kept on the (frozen) model.

Models whose data are not laid out like ``Eta`` (probes of genes, observations along
curves) draw the data in their own layout: ``SimulatedObservations.data`` (the probes
table; the observations table with new responses), while ``Y`` is then the latent
traits' table that :meth:`ObservationModel.latent_frame` builds from those data (NaN
where no data see a cell).  Their ``simulate`` also takes ``data`` (the rows'
covariates, for inputs matched with ``data``'s columns).  A fit of simulated data calls
:meth:`ObservationModel.with_data`: the ``Y`` argument and the observation model that
hold the simulated data (default: the simulated ``Y`` and the model itself).

Models written for the first form of the protocol, ``simulate(Eta, observed, rng)``
returning the data array, still work: :func:`simulate_observations`, which every
caller uses, passes ``rows``/``traits`` only to a ``simulate`` that takes them and
wraps an array as data without parameters.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState
    from ..design import Design


@dataclass(frozen=True, eq=False)
class LatentScale:
    """The data on the sampler's scale and the map back to the user's scale.

    Attributes
    ----------
    Y : (n, t) data on the sampler's scale, NaN where not observed (Fortran-ordered).
    center, scale : (t,) user's value = sampler's value * scale + center.
    extra : the observation model's own inputs aligned with ``Y`` (trial counts,
        weights, library sizes, ...), or None; read-only for the chains.
    """

    Y: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    extra: Any = None

    @property
    def observed(self) -> np.ndarray:
        """``(n, t)`` bool, True where a cell is observed."""
        return ~np.isnan(self.Y)


@dataclass(frozen=True, eq=False)
class SimulatedObservations:
    """What :meth:`ObservationModel.simulate` draws.

    Attributes
    ----------
    Y : numpy.ndarray
        ``(n, t)`` data on the sampler's scale, NaN where not observed.
    parameters : dict of str -> numpy.ndarray
        The model's own parameters drawn from their priors, named and shaped as
        :meth:`ObservationModel.record` reports them (e.g. ``dispersion``, ``(t,)``);
        empty for a model without any (or with them held fixed).
    data : optional
        The data in the model's own layout when it is not ``Eta``'s (a table of probes,
        a table of observations), which :meth:`ObservationModel.with_data` hands to the
        fit; then ``Y`` is the latent traits' table :meth:`ObservationModel.latent_frame`
        builds from them.  None (default): ``Y`` is the data.
    labels : dict of str -> list
        Labels of the entries of parameters that are not one per trait (e.g.
        ``probe_precision``: the probes); parameters not named here are per trait.
    """

    Y: np.ndarray
    parameters: dict[str, np.ndarray] = field(default_factory=dict)
    data: Any = None
    labels: dict[str, list] = field(default_factory=dict)


#: State of an observation model: named arrays (e.g. ``{"dispersion": (t,) array}``).
ObservationState = dict[str, np.ndarray]


class ObservationModel(ABC):
    """Base class of the observation models (see the module docstring).

    Attributes
    ----------
    state_dims : mapping of str -> tuple of str
        Name and dims (``"trait"``, or the model's own dims named by
        :meth:`coordinates`) of every state array of the model (its own
        parameters, drawn every iteration); none by default.
    recorded : mapping of str -> str
        State arrays recorded per draw by default, with their descriptions.
    """

    state_dims: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    recorded: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """The data on the sampler's scale.

        Parameters
        ----------
        Y : (n, t) data, NaN = missing.
        traits : trait names, for error messages.
        scale : whether to centre and scale each trait (``Control.scale_Y``).
        """

    def prepare_data(self, Y: np.ndarray, rows: Sequence[Hashable], traits: list[str],
                     scale: bool) -> LatentScale:
        """The data on the sampler's scale, knowing the rows' labels (what the model calls).

        Models whose own inputs are labelled like ``Y`` (weights, trial counts) override
        this to align them; the default calls :meth:`prepare`.

        Parameters
        ----------
        Y : (n, t) data, NaN = missing, rows in the model's order.
        rows : labels of the rows of ``Y``.
        traits : trait names.
        scale : ``Control.scale_Y``.
        """
        return self.prepare(Y, traits, scale)

    def latent_frame(self, Y: Any, data: pd.DataFrame) -> Any:
        """The latent traits' table, before the design is built (default: ``Y`` itself).

        Called by :class:`~pymegalmm.MegaLMM` first; what it returns is the ``Y`` the
        design is built from (rows matched with ``data``, rows without any latent value
        dropped, trait names from its columns).  Models whose latent traits are not
        ``Y``'s columns return a ``pandas.DataFrame`` indexed like ``data`` with one
        column per latent trait, holding starting values (NaN where nothing is
        observed); they may accept ``Y=None`` when their own inputs hold the data.

        Parameters
        ----------
        Y : the user's ``Y`` (None when not given).
        data : the user's ``data``.
        """
        if Y is None:
            raise InputTypeError(f"Y is required with the observation model "
                             f"{type(self).__name__} (only observation models that hold "
                             "their own data, such as Regression, accept Y=None)")
        return Y

    def prepare_design(self, Y: Any, data: pd.DataFrame, design: Design, scale: bool
                       ) -> LatentScale:
        """The data on the sampler's scale, once the design is built (what the model calls).

        Default: :meth:`prepare_data` of ``design.Y`` (``Y`` as the design aligned it).
        Models with their own :meth:`latent_frame` override this to align their data
        (the user's ``Y``, or their own inputs) with ``design.rows``.

        Parameters
        ----------
        Y : the user's ``Y`` (None when not given).
        data : the user's ``data``.
        design : the design built from :meth:`latent_frame`'s table.
        scale : ``Control.scale_Y``.
        """
        return self.prepare_data(design.Y, list(design.rows), list(design.traits), scale)

    def coordinates(self, latent: LatentScale) -> dict[str, list]:
        """Labels of the model's own dims (other than ``trait``) of recorded arrays,
        e.g. ``{"probe": [...]}``; default none."""
        return {}

    def initialize(self, latent: LatentScale, rng: np.random.Generator) -> ObservationState:
        """Starting state of the model's own parameters (default: none, no random number)."""
        return {}

    def record(self, state: ObservationState) -> dict[str, np.ndarray]:
        """Copies of the recorded state arrays (see ``recorded``), user's scale."""
        return {name: np.array(state[name], copy=True) for name in self.recorded}

    def record_dims(self) -> dict[str, tuple[str, ...]]:
        """Dims of each recorded array (default: from ``state_dims``)."""
        return {name: tuple(self.state_dims[name]) for name in self.recorded}

    @property
    def nan_padded(self) -> frozenset[str]:
        """Recorded names that hold NaN by design (default: none)."""
        return frozenset()

    def to_response(self, eta: np.ndarray, traits: Sequence[Hashable], **options: Any
                    ) -> np.ndarray:
        """The response scale of latent values ``eta`` (last axis: ``traits``).

        Default the identity (Gaussian data: the latent scale is the data's scale).
        Used by ``MegaLMM.predict(scale="response")``.

        Parameters
        ----------
        eta : numpy.ndarray
            Latent values on the user's scale, the trait axis last.
        traits : sequence
            Names of the traits along the last axis.
        **options
            Model-specific options (``library_size`` for counts).
        """
        if options:
            raise InputError(f"{type(self).__name__} takes no response-scale options, got "
                             f"{sorted(options)}")
        return eta

    def response(self, eta: np.ndarray, traits: Sequence[Hashable], latent: LatentScale,
                 **options: Any) -> tuple[np.ndarray, list]:
        """The response scale of latent draws and the labels of its last axis.

        What ``MegaLMM.predict(scale="response")`` calls.  Default: ``(to_response(eta,
        traits, **options), traits)``, the response of each latent trait.  Models whose
        responses are not the latent traits (probes of genes, points of curves) override
        this; they may use their prepared data (``latent.extra``).

        Parameters
        ----------
        eta : numpy.ndarray
            Latent values on the user's scale, the trait axis last.
        traits : sequence
            Names of the latent traits along the last axis.
        latent : LatentScale
            The model's prepared data.
        **options
            Model-specific options.

        Returns
        -------
        values : numpy.ndarray
            The responses, the response axis last.
        labels : list
            The labels of the response axis.
        """
        return self.to_response(eta, traits, **options), list(traits)

    def trait_groups(self, observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row and column indices of each trait group; default one group of everything."""
        n, t = observed.shape
        return [(np.arange(n), np.arange(t))]

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """Data ``Y`` drawn given the latent ``Eta`` (for simulations; sampler's scale).

        The simulation counterpart of :meth:`sample_latent`, used by
        :func:`pymegalmm.validation.simulate_from_prior` (through
        :func:`simulate_observations`): it draws the observation model's own
        parameters, if any, from their priors and then the data, so that
        simulation-based calibration tests the sampler against this model.

        Parameters
        ----------
        Eta : numpy.ndarray
            ``(n, t)`` latent traits drawn from the factor model.
        observed : numpy.ndarray
            ``(n, t)`` bool, True where a cell is observed (NaN elsewhere in ``Y``).
        rng : numpy.random.Generator
            Source of every random number.
        rows, traits : sequence, optional
            Labels of ``Eta``'s rows and columns (``Y``'s index and columns): inputs
            labelled like ``Y`` are matched by them; by position without them.

        Returns
        -------
        SimulatedObservations
            The ``(n, t)`` data (NaN where not observed) and the drawn parameters,
            named as :meth:`record` reports them.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement simulate(Eta, observed, rng), needed to "
            "simulate data (pymegalmm.validation); add it next to sample_latent()"
        )

    def with_data(self, simulated: SimulatedObservations, Y: pd.DataFrame
                  ) -> tuple[Any, ObservationModel]:
        """The ``Y`` argument and the observation model that fit simulated data.

        Used by :func:`pymegalmm.validation.sbc` on the data :meth:`simulate` drew (with
        this model's or another model's ``simulate``).  Default: ``(Y, self)``, the
        simulated data laid out like ``Eta``.  Models whose data have their own layout
        (``simulated.data``) return the ``Y`` that :class:`~pymegalmm.MegaLMM` takes with
        them and, if they hold their data, a copy of themselves holding the new data.

        Parameters
        ----------
        simulated : SimulatedObservations
            What :meth:`simulate` drew.
        Y : pandas.DataFrame
            ``simulated.Y`` labelled by the rows and traits.

        Returns
        -------
        (Y, model)
            What :class:`~pymegalmm.MegaLMM` is given as ``Y`` and ``observation``.
        """
        if simulated.data is not None:
            raise InputError(f"{type(self).__name__} cannot fit data simulated in another "
                             "layout than Y's (an observation model of another kind)")
        return Y, self

    @abstractmethod
    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Draw ``Eta`` (and its rotated blocks ``s.QtEta``) given the factor model, in place."""


def simulate_observations(model: ObservationModel, Eta: np.ndarray, observed: np.ndarray,
                          rng: np.random.Generator, *, rows: Sequence[Hashable] | None = None,
                          traits: Sequence[Hashable] | None = None,
                          data: pd.DataFrame | None = None) -> SimulatedObservations:
    """``model.simulate(...)`` as a :class:`SimulatedObservations`, whichever protocol form.

    ``rows``, ``traits`` and ``data`` are passed only to a ``simulate`` that takes them
    (or ``**kwargs``); a bare array returned by a model of the first protocol form is
    data without parameters.

    Parameters
    ----------
    model : ObservationModel
        The observation model.
    Eta, observed, rng, rows, traits
        As for :meth:`ObservationModel.simulate`.
    data : pandas.DataFrame, optional
        The rows' covariates (the rows of ``data`` the design keeps, in ``rows``' order),
        for models whose own inputs are matched with ``data`` (e.g. individuals' ids).

    Returns
    -------
    SimulatedObservations
    """
    params = inspect.signature(model.simulate).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    labels = {name: value for name, value in (("rows", rows), ("traits", traits),
                                              ("data", data))
              if takes_all or name in params}
    out = model.simulate(Eta, observed, rng, **labels)
    if isinstance(out, SimulatedObservations):
        return out
    return SimulatedObservations(np.asarray(out, dtype=float))
