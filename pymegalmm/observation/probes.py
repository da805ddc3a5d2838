"""Several probes per gene (expression microarrays): R MegaLMM's ``probe_gene_model``.

``Y`` is ``n x probes``; the latent ``Eta`` is ``n x genes``.  Probe ``p`` of gene
``g(p)`` measures ``Y_ip = Eta_i,g(p) + o_p + e_ip`` with ``e_ip ~ N(0, 1 / tau_p)``:
its own offset ``o_p`` (the probe's affinity, held at the probe's observed mean
relative to its gene's average probe) and its own residual precision ``tau_p``.

On the sampler's scale each gene is centred at the average of its probes' means and,
with ``Control.scale_Y``, divided by the pooled standard deviation of its centred
probes, so a gene and its probes share one scale.  Every iteration:

1. every cell of ``Eta`` from its conditional given the factor model's mean ``mu``
   and residual variance ``var`` of the gene (sums over the gene's observed probes)::

       Eta_ig ~ N((sum_p tau_p y_ip + mu_ig / var_g) / P_ig, 1 / P_ig),
                   P_ig = sum_p tau_p + 1 / var_g

   with ``y_ip`` the centred, scaled probe value (a gene with no observed probe in
   a row: ``N(mu_ig, var_g)``);
2. each probe's precision from its Gamma full conditional (prior
   ``Gamma(shape a, rate b)`` on the sampler's scale)::

       tau_p ~ Gamma(a + n_p / 2, rate = b + sum_i (y_ip - Eta_i,g(p))^2 / 2)

   over the ``n_p`` observed cells of the probe.

Random numbers, from the chain's generator in this order: the standard normals of
``Eta`` (:func:`pymegalmm.linalg.standard_normal`, column-major blocks, independent
of the thread count), then one Gamma draw per probe.  The precisions are recorded on
the user's scale of ``Y`` (``probe_precision``, dims ``probe``).

A gene measured by a single probe has the probe's noise and the gene's own residual
variance confounded (only their sum is identified): its probe precision is then
driven by the prior.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse

from ..errors import InputError, InputTypeError, LabelError
from ..linalg import standard_normal
from ..priors.variance import GammaPrior, as_prior
from ._common import require_one_group
from .base import LatentScale, ObservationModel, SimulatedObservations

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState
    from ..design import Design

#: Default prior of each probe's residual precision on the sampler's scale (a gene's
#: probes standardised together): Gamma(shape 2, rate 1), mean 2 (noise variance
#: about a third of the probe's variance), 90 % of its mass in about (0.36, 4.7).
DEFAULT_PROBE_PRECISION_PRIOR = GammaPrior(shape=2.0, rate=1.0)

_DESCRIPTION = ("residual precision of each probe (1 / its measurement-noise variance), on "
                "the scale of Y")


@dataclass(frozen=True)
class ProbeData:
    """The probes aligned with the design's rows, on the sampler's scale.

    Attributes
    ----------
    y : (n, P) centred and scaled probe values, 0 where not observed (Fortran-ordered).
    observed : (n, P) bool.
    gene : (P,) the gene (column of ``Eta``) of each probe.
    gene_scale : (P,) the scale of each probe's gene (user = sampler * scale).
    offset : (P,) each probe's offset on the user's scale (its mean minus its gene's).
    probes : the probes' labels.
    incidence : (P, G) sparse 0/1 matrix, probe -> gene.
    """

    y: np.ndarray
    observed: np.ndarray
    gene: np.ndarray
    gene_scale: np.ndarray
    offset: np.ndarray
    probes: list
    incidence: Any


def _aligned_probes(Y: Any, data: pd.DataFrame) -> tuple[np.ndarray, pd.Index, pd.Index]:
    """``Y`` as ``(rows of data, probes)`` floats, its probe labels, the rows' labels."""
    from ..design import _align_rows, _as_trait_matrix

    if Y is None:
        raise InputTypeError("Y (n x probes) is required with ProbesToGenes")
    if not isinstance(data, pd.DataFrame):
        raise InputTypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    arr, probes, y_index = _as_trait_matrix(Y)
    arr, aligned = _align_rows(arr, y_index, data)
    if np.isinf(arr).any():
        j = int(np.argmax(np.isinf(arr).any(axis=0)))
        raise InputError(f"probe {probes[j]!r} of Y has an infinite value; use NaN for "
                         "missing values")
    return arr, probes, pd.Index(aligned.index)


@dataclass(frozen=True, eq=False)
class ProbesToGenes(ObservationModel):
    """Several probes per gene: ``Y`` holds probes, ``Eta`` (and the factor model) genes.

    Parameters
    ----------
    probe_map : pandas.Series, dict or sequence
        The gene of each probe: a Series indexed by probe (values: genes) or a dict
        probe -> gene, matched with ``Y``'s columns by label (probes of the map that
        are not in ``Y`` are ignored); or a sequence giving the gene of each column of
        ``Y`` in order.  Every probe of ``Y`` needs a gene, and every gene of the map
        at least one probe in ``Y``.
    precision : GammaPrior
        Prior of each probe's residual precision ``tau_p`` on the sampler's scale (the
        gene's probes divided by their pooled SD with ``Control.scale_Y``, else the scale
        of ``Y``) (default :data:`DEFAULT_PROBE_PRECISION_PRIOR`, Gamma(2, rate 1)); sampled and
        recorded as ``probe_precision`` (user's scale).

    Notes
    -----
    ``Y`` must be numeric, ``n x probes`` (NaN = missing), rows matched with ``data``
    as usual.  Traits of the factor model (``coords.trait``, ``Eta``, ``predict()``,
    ``G``) are the genes, in order of their first probe in ``Y``; a gene's value is on
    the scale of its probes, relative to its average probe.  Probe offsets are held at
    the probes' observed means (R's ``mu_probe`` is sampled instead; with many rows the
    two agree).  ``predict(scale="response")`` gives the expected value of each probe
    (its gene's value plus the probe's offset).  See the module docstring for the
    conditionals.
    """

    probe_map: Any
    precision: GammaPrior = DEFAULT_PROBE_PRECISION_PRIOR

    state_dims = {"probe_precision": ("probe",)}  # type: ignore[assignment]
    recorded = {"probe_precision": _DESCRIPTION}  # type: ignore[assignment]

    def __post_init__(self) -> None:
        pm = self.probe_map
        if isinstance(pm, pd.Series):
            pm = pm.copy()
        elif isinstance(pm, Mapping):
            pm = pd.Series(dict(pm), dtype=object)
        elif isinstance(pm, str) or not isinstance(pm, Sequence | np.ndarray | pd.Index):
            raise InputTypeError(f"probe_map must be a pandas Series (probe -> gene), a dict or "
                                 f"a sequence of genes, got {type(pm).__name__}")
        else:
            pm = list(pm)
        if len(pm) == 0:
            raise InputError("probe_map is empty: give the gene of every probe of Y")
        values = pm.to_numpy() if isinstance(pm, pd.Series) else np.asarray(pm, dtype=object)
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
            raise InputError("probe_map has missing genes (None or NaN): every probe needs one")
        if isinstance(pm, pd.Series) and pd.Index(pm.index.map(str)).has_duplicates:
            raise LabelError("probe_map has repeated probes")
        object.__setattr__(self, "probe_map", pm)
        object.__setattr__(self, "precision", as_prior("precision", self.precision, GammaPrior))

    # ------------------------------------------------------------------ set-up

    def _gene_of(self, probes: pd.Index) -> list:
        """The gene of each probe of ``Y`` (raise for a probe without one)."""
        pm = self.probe_map
        if isinstance(pm, pd.Series):
            lookup = {str(k): v for k, v in pm.items()}
            missing = [p for p in probes if str(p) not in lookup]
            if missing:
                raise LabelError(f"probe_map lacks {len(missing)} probe(s) of Y (columns), "
                                 f"e.g. {list(missing)[:5]}")
            genes = [lookup[str(p)] for p in probes]
            wanted = list(dict.fromkeys(pm.to_numpy()))
        else:
            if len(pm) != len(probes):
                raise InputError(f"probe_map as a sequence gives the gene of each column of Y "
                                 f"in order: it has {len(pm)} entries for {len(probes)} "
                                 "columns")
            genes = list(pm)
            wanted = list(dict.fromkeys(genes))
        have = {str(g) for g in genes}
        orphans = [g for g in wanted if str(g) not in have]
        if orphans:
            raise InputError(f"gene(s) {orphans[:5]} of probe_map have no probe among Y's "
                             "columns; remove them from probe_map")
        return genes

    def latent_frame(self, Y: Any, data: pd.DataFrame) -> pd.DataFrame:
        """Genes x rows of ``data``: the mean of each gene's observed probes (NaN where none)."""
        arr, probes, index = _aligned_probes(Y, data)
        genes = self._gene_of(probes)
        names = list(dict.fromkeys(str(g) for g in genes))
        gi = np.array([names.index(str(g)) for g in genes], dtype=np.intp)
        obs = ~np.isnan(arr)
        S = scipy.sparse.csr_matrix((np.ones(gi.size), (np.arange(gi.size), gi)),
                                    shape=(gi.size, len(names)))
        total = S.T @ np.where(obs, arr, 0.0).T
        count = S.T @ obs.T.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            start = np.where(count > 0, total / np.maximum(count, 1), np.nan).T
        return pd.DataFrame(start, index=index, columns=pd.Index(names))

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """Not used: :meth:`prepare_design` prepares the probes."""
        raise NotImplementedError("ProbesToGenes prepares its data with prepare_design "
                                  "(it needs the probes of Y, not the genes)")

    def prepare_design(self, Y: Any, data: pd.DataFrame, design: Design, scale: bool
                       ) -> LatentScale:
        """Align the probes with the design's rows; centre (and scale) them per gene."""
        arr, probes, index = _aligned_probes(Y, data)
        pos = index.get_indexer(design.rows)
        y = arr[pos]
        genes = self._gene_of(probes)
        names = [str(g) for g in design.traits]
        gi = np.array([names.index(str(g)) for g in genes], dtype=np.intp)
        n, P = y.shape
        G = len(names)
        obs = ~np.isnan(y)
        n_obs = obs.sum(axis=0)
        empty = [probes[j] for j in np.flatnonzero(n_obs == 0)]
        if empty:
            raise InputError(f"probe(s) {list(empty)[:5]} of Y have no observed value in the "
                             "rows kept; remove them from Y")
        probe_mean = np.nanmean(y, axis=0)
        S = scipy.sparse.csr_matrix((np.ones(P), (np.arange(P), gi)), shape=(P, G))
        per_gene = np.asarray(S.sum(axis=0)).ravel()
        center = (S.T @ probe_mean) / per_gene
        centred = np.where(obs, y - probe_mean[None, :], 0.0)
        if scale:
            ss = S.T @ (centred**2).sum(axis=0)
            dof = S.T @ n_obs.astype(float) - per_gene
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.sqrt(ss / dof)
            bad = [names[g] for g in np.flatnonzero(~(dof > 0) | ~(sd > 0))]
            if bad:
                raise InputError(f"gene(s) {bad[:5]} have too few observed probe values or no "
                                 "variation to be scaled; remove them or set scale_Y=False")
        else:
            sd = np.ones(G)
        y_s = np.asfortranarray(centred / sd[gi][None, :])
        count = (S.T @ obs.T.astype(float)).T
        with np.errstate(invalid="ignore", divide="ignore"):
            start = np.where(count > 0, (S.T @ y_s.T).T / np.maximum(count, 1), np.nan)
        extra = ProbeData(y_s, obs, gi, sd[gi], probe_mean - center[gi], list(probes),
                          S.tocsc())
        return LatentScale(np.asfortranarray(start), center, sd, extra)

    def coordinates(self, latent: LatentScale) -> dict[str, list]:
        """The probes' labels (dim ``probe`` of ``probe_precision``)."""
        return {"probe": list(latent.extra.probes)}

    def initialize(self, latent: LatentScale, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
        """Every probe's precision at the prior mean (no random number), user's scale."""
        data: ProbeData = latent.extra
        tau = np.full(len(data.probes), self.precision.shape / self.precision.rate)
        return {"probe_precision": tau / data.gene_scale**2}

    # ------------------------------------------------------------------ sampling

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every cell of ``Eta``, then every probe's precision (module docstring)."""
        require_one_group(d, "ProbesToGenes")
        data: ProbeData = d.latent.extra
        g = d.groups[0]
        mean = conditional.block_mean(0)
        var = conditional.residual_variance(g.cols)
        tau = s.observation["probe_precision"] * data.gene_scale**2  # sampler's scale
        new, tau_new = probe_gene_update(data.y, data.observed, data.gene, data.incidence,
                                         tau, mean, var, self.precision.shape,
                                         self.precision.rate, rng)
        s.Eta[...] = new
        s.observation["probe_precision"] = tau_new / data.gene_scale**2
        g.re.rotate(s.Eta[g.block], out=s.QtEta[0])

    # ------------------------------------------------------------------ output

    def response(self, eta: np.ndarray, traits: Sequence[Hashable], latent: LatentScale,
                 **options: Any) -> tuple[np.ndarray, list]:
        """Each probe's expected value: its gene's value plus the probe's offset
        (user's scale); labels: the probes."""
        if options:
            raise InputError(f"ProbesToGenes takes no response-scale options, got "
                             f"{sorted(options)}")
        data: ProbeData = latent.extra
        return eta[..., data.gene] + data.offset, list(data.probes)

    def _probe_layout(self) -> tuple[list, list]:
        """The probes of ``probe_map`` and the gene of each (a sequence map: probes
        named ``probe1``, ``probe2``, ... in order)."""
        pm = self.probe_map
        if isinstance(pm, pd.Series):
            return [str(p) for p in pm.index], [str(g) for g in pm.to_numpy()]
        return [f"probe{j + 1}" for j in range(len(pm))], [str(g) for g in pm]

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """Probe data measuring the genes ``Eta`` (sampler's scale with ``scale_Y=False``).

        Every probe of ``probe_map``: its precision ``tau_p`` from the prior
        ``precision``, an offset ``o_p ~ N(0, 1)`` centred over its gene's probes (the
        fit holds the offsets at the probes' observed means and measures a gene
        relative to its average probe: offsets summing to zero per gene make ``Eta``
        the gene's value the fit reports), then ``y_ip = Eta_i,g(p) + o_p + e_ip``,
        ``e_ip ~ N(0, 1 / tau_p)``; a cell of ``Eta`` not ``observed`` leaves every
        probe of its gene missing in that row.

        Random numbers from ``rng``: ``P`` Gamma draws, ``P`` offsets, ``n x P``
        standard normals (row-major).

        Returns
        -------
        SimulatedObservations
            ``data``: the ``n x P`` probes table (index ``rows``, columns the probes), the
            ``Y`` that :meth:`with_data` gives the fit; ``Y``: the genes' table
            (:meth:`latent_frame`: each gene's mean over its observed probes);
            ``parameters``: ``probe_precision`` ``(P,)`` (``labels``: the probes).
        """
        Eta = np.asarray(Eta, dtype=float)
        observed = np.asarray(observed, dtype=bool)
        n, G = Eta.shape
        probes, gene_of = self._probe_layout()
        genes = list(dict.fromkeys(gene_of))
        if traits is not None and [str(v) for v in traits] != genes:
            raise LabelError(f"ProbesToGenes.simulate: traits must be the genes of probe_map "
                             f"in order of their first probe, {genes[:5]}..., got "
                             f"{[str(v) for v in traits][:5]}...")
        if len(genes) != G:
            raise InputError(f"ProbesToGenes.simulate: Eta has {G} columns but probe_map "
                             f"has {len(genes)} genes")
        gi = np.array([genes.index(g) for g in gene_of], dtype=np.intp)
        P = gi.size
        tau = rng.gamma(self.precision.shape, 1.0 / self.precision.rate, size=P)
        offset = rng.standard_normal(P)
        offset -= (np.bincount(gi, offset, G) / np.bincount(gi, minlength=G))[gi]
        noise = rng.standard_normal((n, P)) / np.sqrt(tau)[None, :]
        values = np.where(observed[:, gi], Eta[:, gi] + offset[None, :] + noise, np.nan)
        index = pd.Index(range(n) if rows is None else list(rows))
        table = pd.DataFrame(values, index=index, columns=probes)
        frame = self.latent_frame(table, pd.DataFrame(index=index))
        return SimulatedObservations(frame.to_numpy(), {"probe_precision": tau}, data=table,
                                     labels={"probe_precision": list(probes)})

    def with_data(self, simulated: SimulatedObservations, Y: pd.DataFrame
                  ) -> tuple[Any, ObservationModel]:
        """The simulated probes table as ``Y``, and this model (same ``probe_map``)."""
        if not isinstance(simulated.data, pd.DataFrame):
            raise InputError("ProbesToGenes fits probe data: simulate them with "
                             "ProbesToGenes.simulate")
        return simulated.data, self


def probe_gene_update(y: np.ndarray, observed: np.ndarray, gene: np.ndarray, incidence: Any,
                      tau: np.ndarray, mean: np.ndarray, var: np.ndarray, shape: float, rate: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One draw of the genes ``Eta`` then of the probes' precisions (sampler's scale).

    Parameters
    ----------
    y, observed : (n, P) probe values (0 where not observed) and mask.
    gene : (P,) the gene of each probe.
    incidence : (P, G) sparse probe -> gene matrix (``incidence[p, gene[p]] = 1``).
    tau : (P,) current precisions.
    mean : (n, G) the factor model's mean of ``Eta``.
    var : (G,) the factor model's residual variances.
    shape, rate : the precisions' Gamma prior.
    rng : the chain's generator: ``n x G`` standard normals (block scheme), then ``P``
        Gamma draws.

    Returns
    -------
    (n, G) new ``Eta`` (Fortran-ordered) and (P,) new precisions.
    """
    w = observed * tau[None, :]
    prec = np.asarray(incidence.T @ w.T).T + 1.0 / var[None, :]
    lin = np.asarray(incidence.T @ (w * y).T).T + mean / var[None, :]
    z = standard_normal(rng, *mean.shape)
    eta = np.asfortranarray(lin / prec + z / np.sqrt(prec))
    resid = np.where(observed, y - eta[:, gene], 0.0)
    n_obs = observed.sum(axis=0)
    tau_new = rng.gamma(shape + 0.5 * n_obs, 1.0 / (rate + 0.5 * (resid**2).sum(axis=0)))
    return eta, tau_new


def simulate_probes(genes: pd.DataFrame, probes_per_gene: int | Sequence[int],
                    precision: Sequence[float] | np.ndarray | float, rng: np.random.Generator,
                    offset_sd: float = 1.0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Probe data measuring ``genes`` (for examples and tests).

    Parameters
    ----------
    genes : (n, G) true gene values, columns named.
    probes_per_gene : probes of each gene (one number or one per gene).
    precision : residual precision of each probe (one number or one per probe).
    rng : source of the random numbers.
    offset_sd : standard deviation of the probes' offsets.

    Returns
    -------
    Y (n x probes, named ``"<gene>_p<k>"``), probe_map (probe -> gene) and the offsets.
    """
    G = genes.shape[1]
    counts = np.broadcast_to(np.asarray(probes_per_gene, dtype=int), (G,))
    names, gene_of = [], []
    for g, c in zip(genes.columns, counts, strict=True):
        for k in range(int(c)):
            names.append(f"{g}_p{k}")
            gene_of.append(g)
    P = len(names)
    tau = np.broadcast_to(np.asarray(precision, dtype=float), (P,))
    offset = rng.normal(0.0, offset_sd, size=P)
    values = genes[gene_of].to_numpy() + offset[None, :] + rng.standard_normal(
        (genes.shape[0], P)) / np.sqrt(tau)[None, :]
    Y = pd.DataFrame(values, index=genes.index, columns=names)
    return Y, pd.Series(gene_of, index=names), offset
