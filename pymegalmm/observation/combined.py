"""Blocks of traits, each seen through its own observation model, in one fit.

E.g. Voom-weighted expression and Gaussian phenotypes, or counts of two kinds: the
factor model is shared, and each block's latent cells are drawn by its model.

The blocks' own parameters live in the chain's state under ``"<b>.<name>"`` (``b``
the block's position, arrays over the block's traits); what they record is merged
across blocks into one array over every trait, NaN for traits of blocks without it
(e.g. ``dispersion`` of the negative-binomial traits only).
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, InputTypeError, LabelError
from ._common import redraw_latent
from .base import LatentScale, ObservationModel, SimulatedObservations, simulate_observations
from .gaussian import GaussianMissing

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState


@dataclass(frozen=True)
class CombinedData:
    """The blocks as prepared: each block's columns of ``Y`` and its own prepared data."""

    cols: tuple[np.ndarray, ...]
    latents: tuple[LatentScale, ...]


def _gaussian_update(extra: np.ndarray, state: dict, rows: np.ndarray, cols: np.ndarray,
                     eta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                     gen: np.random.Generator) -> np.ndarray:
    """A Gaussian block's columns: the data where observed, ``N(mean, var)`` elsewhere
    (one standard normal per cell from ``gen``, column-major)."""
    y = extra[np.ix_(rows, cols)]
    z = gen.standard_normal((eta.shape[1], eta.shape[0])).T
    return np.where(np.isnan(y), mean + np.sqrt(var)[None, :] * z, y)


class _GaussianBlock:
    """Column updates of a :class:`GaussianMissing` block (without a missing-data map)."""

    _update_columns = staticmethod(_gaussian_update)


@dataclass(frozen=True, eq=False)
class Combined(ObservationModel):
    """Blocks of traits, each with its own observation model, in one fit.

    Parameters
    ----------
    blocks : dict
        Traits -> observation model: each key a trait name or a tuple of trait names
        (every trait of ``Y`` in exactly one block), each value an observation model
        (:class:`GaussianMissing` without a missing-data map, :class:`Voom`,
        :class:`Binomial`, :class:`NegativeBinomial`).  A block's inputs (weights,
        trials, library sizes) are labelled like ``Y`` (DataFrames with at least the
        block's traits as columns) or per row.

    Notes
    -----
    Each block is prepared by its own model (a Gaussian or Voom block is centred and
    scaled with ``Control.scale_Y``; count blocks stay on their link scale), so
    ``predict()`` gives each trait on its block's latent scale, and
    ``predict(scale="response")`` applies each block's response map (options such as
    ``library_size`` go to the blocks that take them).

    Examples
    --------
    >>> from pymegalmm.observation import Combined, GaussianMissing, NegativeBinomial
    >>> obs = Combined({("g1", "g2"): NegativeBinomial(), "height": GaussianMissing()})
    """

    blocks: Mapping[Any, ObservationModel]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, Mapping) or not self.blocks:
            raise InputTypeError("blocks must be a non-empty dict of traits -> observation "
                                 f"model, got {type(self.blocks).__name__}")
        seen: dict[str, int] = {}
        for i, (key, model) in enumerate(self.blocks.items()):
            if not isinstance(model, ObservationModel):
                raise InputTypeError(f"blocks[{key!r}] must be an observation model, got "
                                     f"{type(model).__name__}")
            if isinstance(model, Combined):
                raise InputError(f"blocks[{key!r}]: a Combined model cannot be a block")
            if isinstance(model, GaussianMissing):
                if model.missing_data_map is not None:
                    raise InputError(f"blocks[{key!r}]: a GaussianMissing block with a "
                                     "missing-data map is not supported in Combined (every "
                                     "missing cell is imputed); use GaussianMissing()")
            elif not hasattr(model, "_update_columns"):
                raise InputError(f"blocks[{key!r}]: {type(model).__name__} cannot be a block "
                                 "of Combined (it has no column update)")
            for trait in self._names(key):
                if trait in seen:
                    raise InputError(f"blocks: trait {trait!r} is in more than one block")
                seen[trait] = i

    @staticmethod
    def _names(key: Any) -> list[str]:
        return [str(k) for k in key] if isinstance(key, tuple | list) else [str(key)]

    @property
    def models(self) -> list[ObservationModel]:
        """The blocks' models, in order."""
        return list(self.blocks.values())

    # ------------------------------------------------------------------ state

    @property
    def state_dims(self) -> Mapping[str, tuple[str, ...]]:  # type: ignore[override]
        """``"<b>.<name>"`` for each block's state array (over the block's traits)."""
        return {f"{b}.{name}": dims for b, m in enumerate(self.models)
                for name, dims in m.state_dims.items()}

    @property
    def recorded(self) -> Mapping[str, str]:  # type: ignore[override]
        """The blocks' recorded names, merged (one array over every trait)."""
        out: dict[str, str] = {}
        for m in self.models:
            for name, text in m.recorded.items():
                out.setdefault(name, f"{text}; NaN for traits of blocks without it")
        return out

    def record_dims(self) -> dict[str, tuple[str, ...]]:
        """Every merged recorded array is over ``trait``."""
        for m in self.models:
            for name in m.recorded:
                if tuple(m.state_dims[name]) != ("trait",):
                    raise InputError(f"Combined can only record per-trait arrays; "
                                     f"{type(m).__name__}.{name} has dims {m.state_dims[name]}")
        return {name: ("trait",) for name in self.recorded}

    @property
    def nan_padded(self) -> frozenset[str]:
        """Recorded names that some block lacks (NaN for its traits)."""
        return frozenset(n for n in self.recorded
                         if not all(n in m.recorded for m in self.models))

    def _cols(self) -> tuple[np.ndarray, ...]:
        cols = self.__dict__.get("_prepared_cols")
        if cols is None:
            raise RuntimeError("Combined: prepare the model first")
        return cols

    def record(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each recorded name over every trait (NaN outside the blocks that have it)."""
        cols = self._cols()
        t = int(sum(c.size for c in cols))
        out = {name: np.full(t, np.nan) for name in self.recorded}
        for b, m in enumerate(self.models):
            for name in m.recorded:
                out[name][cols[b]] = state[f"{b}.{name}"]
        return out

    # ------------------------------------------------------------------ data

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """As :meth:`prepare_data`, every block's inputs matched by position."""
        return self.prepare_data(Y, None, traits, scale)

    def prepare_data(self, Y: np.ndarray, rows: Sequence[Hashable] | None, traits: list[str],
                     scale: bool) -> LatentScale:
        """Each block prepared by its model on its columns of ``Y``."""
        position = {str(v): j for j, v in enumerate(traits)}
        cols, latents = [], []
        named = set()
        for key, model in self.blocks.items():
            names = self._names(key)
            unknown = [v for v in names if v not in position]
            if unknown:
                raise LabelError(f"blocks: trait(s) {unknown[:5]} are not traits of Y")
            c = np.array(sorted(position[v] for v in names), dtype=np.intp)
            named.update(names)
            sub_traits = [traits[j] for j in c]
            try:
                latents.append(model.prepare_data(np.ascontiguousarray(Y[:, c]), rows,
                                                  sub_traits, scale))
            except (InputError, LabelError) as exc:
                raise type(exc)(f"blocks[{key!r}]: {exc}") from None
            cols.append(c)
        left = [str(v) for v in traits if str(v) not in named]
        if left:
            raise LabelError(f"blocks: trait(s) {left[:5]} of Y are in no block")
        n, t = Y.shape
        Ys, center, sd = np.full((n, t), np.nan, order="F"), np.zeros(t), np.ones(t)
        for c, lat in zip(cols, latents, strict=True):
            Ys[:, c], center[c], sd[c] = lat.Y, lat.center, lat.scale
        object.__setattr__(self, "_prepared_cols", tuple(cols))
        return LatentScale(Ys, center, sd, CombinedData(tuple(cols), tuple(latents)))

    def initialize(self, latent: LatentScale, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
        """Each block's starting state, under ``"<b>.<name>"``."""
        data: CombinedData = latent.extra
        out = {}
        for b, (m, lat) in enumerate(zip(self.models, data.latents, strict=True)):
            out.update({f"{b}.{k}": v for k, v in m.initialize(lat, rng).items()})
        return out

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """Each block's columns simulated by its model, block after block (in the order
        of ``blocks``), from ``rng``.

        ``traits`` (the names of ``Eta``'s columns) is required: the blocks are named by
        trait.  ``rows`` goes to the blocks (their inputs labelled like ``Y``).  The
        blocks' drawn parameters are merged as :meth:`record` merges them: one array over
        every trait, NaN for traits of blocks without it.
        """
        observed = np.asarray(observed, dtype=bool)
        n, t = observed.shape
        if traits is None:
            raise InputError("Combined.simulate needs traits= (the names of Eta's columns): "
                             "its blocks are named by trait")
        traits = [str(v) for v in traits]
        if len(traits) != t:
            raise InputError(f"traits must name the {t} columns of Eta, got {len(traits)}")
        position = {v: j for j, v in enumerate(traits)}
        Y = np.full((n, t), np.nan)
        params: dict[str, np.ndarray] = {}
        named: set[str] = set()
        for key, model in self.blocks.items():
            names = self._names(key)
            unknown = [v for v in names if v not in position]
            if unknown:
                raise LabelError(f"blocks: trait(s) {unknown[:5]} are not among traits")
            c = np.array(sorted(position[v] for v in names), dtype=np.intp)
            named.update(names)
            sim = simulate_observations(model, np.ascontiguousarray(Eta[:, c]),
                                        observed[:, c], rng, rows=rows,
                                        traits=[traits[j] for j in c])
            Y[:, c] = sim.Y
            for name, value in sim.parameters.items():
                value = np.asarray(value, dtype=float)
                if value.shape != (c.size,):
                    raise InputError(f"Combined can only merge per-trait parameters; "
                                     f"{type(model).__name__}.{name} has shape {value.shape}")
                params.setdefault(name, np.full(t, np.nan))[c] = value
        left = [v for v in traits if v not in named]
        if left:
            raise LabelError(f"blocks: trait(s) {left[:5]} are in no block")
        return SimulatedObservations(Y, params)

    def _parts(self, s: ChainState, d: ModelData) -> list[tuple[Any, Any, dict, np.ndarray]]:
        data: CombinedData = d.latent.extra
        parts = []
        for b, (m, lat, c) in enumerate(zip(self.models, data.latents, data.cols, strict=True)):
            state = {name[len(f"{b}."):]: v for name, v in s.observation.items()
                     if name.startswith(f"{b}.")}
            if isinstance(m, GaussianMissing):
                parts.append((_GaussianBlock, lat.Y, state, c))
            else:
                parts.append((m, lat.extra, state, c))
        return parts

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every cell of ``Eta``, block by block with each block's model (the
        blocks' columns in turn, one generator per block of columns)."""
        redraw_latent(s, d, conditional, rng, self._parts(s, d))

    def to_response(self, eta: np.ndarray, traits: Sequence[Hashable], **options: Any
                    ) -> np.ndarray:
        """Each block's response map on its traits (``options`` go to the blocks whose
        ``to_response`` takes them)."""
        position = {str(v): j for j, v in enumerate(traits)}
        out = np.array(eta, dtype=float, copy=True)
        used: set[str] = set()
        for key, model in self.blocks.items():
            c = np.array([position[v] for v in self._names(key)], dtype=np.intp)
            params = inspect.signature(model.to_response).parameters
            mine = {k: v for k, v in options.items() if k in params}
            used.update(mine)
            out[..., c] = model.to_response(out[..., c], [traits[j] for j in c], **mine)
        unused = sorted(set(options) - used)
        if unused:
            raise InputError(f"no block of Combined takes the response option(s) {unused}")
        return out
