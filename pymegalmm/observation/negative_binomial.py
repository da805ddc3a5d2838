"""Negative-binomial counts (raw RNA-seq reads), log link with library sizes.

``Y_ij ~ NB(mean = L_i exp(Eta_ij), size = r_j)``: variance ``m + m^2 / r_j`` (``r_j``
is R's ``size``; DESeq2's dispersion is ``1 / r_j``), ``L_i`` the library size of row
``i`` (1 without).  In logistic form ``Y ~ NB(r, p = expit(psi))`` with the log-odds
``psi = Eta + log L - log r``, whose likelihood ``exp(psi)^Y / (1 + exp(psi))^(Y + r)``
is Polya-Gamma augmented (Polson, Scott & Windle 2013; Zhou et al. 2012): given the
current ``Eta``, ``omega ~ PG(Y + r, psi)``, then with ``kappa = (Y - r) / 2`` and
``o = log L - log r``::

    Eta | omega ~ N((kappa - omega o + mean / var) / P, 1 / P),   P = omega + 1 / var

(cells without data: ``N(mean, var)``).  The size ``r_j`` of each trait is then
updated by ``mh_steps`` random-walk Metropolis-Hastings steps on ``log r_j`` with the
exact negative-binomial likelihood of the trait's cells given the new ``Eta`` and its
Gamma prior (or held at a given value).
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import gammaln

from ..errors import InputError
from ..priors.variance import GammaPrior, as_prior
from ..validate import check_float, check_int
from ._common import aligned_input, check_counts, pg_latent_update, redraw_latent
from .base import LatentScale, ObservationModel, SimulatedObservations
from .binomial import CountData, _check_traits_observed, check_count_input

if TYPE_CHECKING:
    from ..core.data import ModelData
    from ..core.mean import EtaConditional
    from ..core.state import ChainState

#: Default prior of the negative-binomial size ``r`` of each trait: Gamma(shape 2,
#: rate 0.1), mean 20, 90 % of its mass in about (3.6, 47) (DESeq2 dispersions
#: ``1 / r`` of about 0.02 to 0.3, typical of biological replicates).
DEFAULT_DISPERSION_PRIOR = GammaPrior(shape=2.0, rate=0.1)

#: Largest expected count :meth:`NegativeBinomial.simulate` draws from (NumPy's
#: negative-binomial sampler fails near 1e19; such counts are no realistic data).
MAX_SIMULATED_MEAN = 1e15

_DESCRIPTION = ("negative-binomial size r of each trait (variance mean + mean^2 / r; "
                "DESeq2's dispersion is 1 / r)")


def nb_log_likelihood(y: np.ndarray, log_mean: np.ndarray, r: np.ndarray,
                      observed: np.ndarray) -> np.ndarray:
    """Per-column log likelihood of ``NB(mean = exp(log_mean), size = r)`` counts, up to
    terms free of ``r`` and ``log_mean`` (``-log y!``), summed over observed cells."""
    log_r = np.log(r)[None, :]
    r2 = r[None, :]
    ll = (gammaln(y + r2) - gammaln(r2) + r2 * log_r + y * log_mean
          - (y + r2) * np.logaddexp(log_r, log_mean))
    return np.where(observed, ll, 0.0).sum(axis=0)


@dataclass(frozen=True, eq=False)
class NegativeBinomial(ObservationModel):
    """Negative-binomial counts with a log link (raw RNA-seq read counts).

    Parameters
    ----------
    library_size : number, pandas.Series, pandas.DataFrame or array, optional
        Library size (sequencing depth, or a normalisation factor times it) of each
        row: a Series indexed by ``Y``'s rows or an ``(n,)`` array in ``Y``'s order
        (a DataFrame or ``(n, t)`` array gives one per cell).  Finite and positive.
        Default 1: ``Eta`` is then the log of the expected count.
    dispersion : GammaPrior or float
        The size ``r_j`` of each trait (variance ``m + m^2 / r_j``): a Gamma prior
        (default :data:`DEFAULT_DISPERSION_PRIOR`, Gamma(2, rate 0.1)), under which
        ``r_j`` is sampled and recorded as ``dispersion``; or one positive number,
        the size held fixed for every trait (nothing recorded).
    mh_steps : int
        Metropolis-Hastings steps on each ``log r_j`` per iteration (default 3).
    mh_step_size : float
        Standard deviation of the random-walk proposal on ``log r_j`` (default 0.3).

    Notes
    -----
    ``Y`` must hold non-negative whole numbers (NaN = missing).  ``Eta`` lives on
    the log scale per unit library size, not standardised: ``Control.scale_Y`` does
    not apply.  ``Eta_mean`` and ``predict()`` are on that scale;
    ``predict(scale="response")`` gives ``exp(Eta)`` (expected count per unit library
    size) or ``library_size * exp(Eta)`` with ``library_size=`` given.  The latent
    cells start at ``log((Y + 0.5) / L)``, each ``r_j`` at a moment estimate clipped
    to ``[1, 100]``.
    """

    library_size: Any = None
    dispersion: GammaPrior | float = DEFAULT_DISPERSION_PRIOR
    mh_steps: int = 3
    mh_step_size: float = 0.3

    def __post_init__(self) -> None:
        if self.library_size is not None:
            check_count_input("library_size", self.library_size)
            if isinstance(self.library_size, numbers.Real) and not (
                    np.isfinite(self.library_size) and self.library_size > 0):
                raise InputError(f"library_size must be finite and > 0, got "
                                 f"{self.library_size!r}")
        disp = self.dispersion
        if isinstance(disp, numbers.Real) and not isinstance(disp, bool | np.bool_):
            object.__setattr__(self, "dispersion", check_float("dispersion", disp, low=0.0,
                                                               low_open=True))
        else:
            object.__setattr__(self, "dispersion", as_prior("dispersion", disp, GammaPrior))
        object.__setattr__(self, "mh_steps", check_int("mh_steps", self.mh_steps, minimum=1))
        object.__setattr__(self, "mh_step_size", check_float("mh_step_size", self.mh_step_size,
                                                             low=0.0, low_open=True))

    @property
    def fixed_dispersion(self) -> bool:
        """Whether the size ``r`` is held at a given value."""
        return not isinstance(self.dispersion, GammaPrior)

    @property
    def state_dims(self) -> Mapping[str, tuple[str, ...]]:  # type: ignore[override]
        """``dispersion`` (per trait) when it is sampled."""
        return {} if self.fixed_dispersion else {"dispersion": ("trait",)}

    @property
    def recorded(self) -> Mapping[str, str]:  # type: ignore[override]
        """``dispersion`` (per trait) when it is sampled."""
        return {} if self.fixed_dispersion else {"dispersion": _DESCRIPTION}

    def prepare(self, Y: np.ndarray, traits: list[str], scale: bool) -> LatentScale:
        """As :meth:`prepare_data`, with ``library_size`` matched to ``Y`` by position."""
        return self.prepare_data(Y, None, traits, scale)

    def prepare_data(self, Y: np.ndarray, rows: Sequence[Hashable] | None, traits: list[str],
                     scale: bool) -> LatentScale:
        """Check the counts, align the library sizes; start at ``log((Y + 0.5) / L)``.

        ``scale`` (``Control.scale_Y``) is ignored: the link scale is not standardised.
        """
        n, t = Y.shape
        lib = self._library(rows, traits, (n, t))
        observed = ~np.isnan(Y)
        check_counts("Y", Y, observed, traits)
        _check_traits_observed(observed, traits, "a count")
        y = np.where(observed, Y, 0.0)
        start = np.where(observed, np.log((y + 0.5) / lib), np.nan)
        return LatentScale(np.asfortranarray(start), np.zeros(t), np.ones(t),
                           CountData(np.asfortranarray(y), np.asfortranarray(lib), observed))

    def _library(self, rows: Sequence[Hashable] | None, traits: Sequence[Hashable],
                 shape: tuple[int, int]) -> np.ndarray:
        if self.library_size is None:
            return np.ones(shape)
        lib = aligned_input("library_size", self.library_size, rows, traits, shape)
        if not np.all(np.isfinite(lib) & (lib > 0)):
            raise InputError("library_size must be finite and > 0 for every row")
        return lib

    def initialize(self, latent: LatentScale, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
        """Each trait's size ``r_j`` at a moment estimate of the counts per unit library
        size, clipped to ``[1, 100]`` (no random number); nothing when ``r`` is fixed."""
        if self.fixed_dispersion:
            return {}
        data: CountData = latent.extra
        out = np.empty(data.counts.shape[1])
        for j in range(out.size):
            obs = data.observed[:, j]
            q = data.counts[obs, j] / data.size[obs, j]
            m = q.mean()
            excess = q.var(ddof=1) - np.mean(q / data.size[obs, j]) if q.size > 1 else 0.0
            out[j] = m * m / excess if excess > 0 else 100.0
        return {"dispersion": np.clip(out, 1.0, 100.0)}

    def _size(self, state: dict[str, np.ndarray], cols: np.ndarray) -> np.ndarray:
        if self.fixed_dispersion:
            return np.full(cols.size, float(self.dispersion))
        return state["dispersion"][cols]

    def simulate(self, Eta: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                 rows: Sequence[Hashable] | None = None,
                 traits: Sequence[Hashable] | None = None) -> SimulatedObservations:
        """Each trait's size ``r_j`` from the prior (unless fixed), then
        ``Y ~ NB(mean = L exp(Eta), size = r)`` where observed, NaN elsewhere.

        ``library_size`` is matched to ``Eta`` by ``rows`` (and ``traits``), by position
        without them.  Returns the sampled sizes as ``dispersion`` (as recorded; nothing
        when the size is fixed).  Random numbers: ``t`` Gamma draws (sampled sizes), then
        the counts of every cell (C order).
        """
        observed = np.asarray(observed, dtype=bool)
        n, t = observed.shape
        traits = range(t) if traits is None else traits
        r = (np.full(t, float(self.dispersion)) if self.fixed_dispersion
             else self.dispersion.sample_prior(t, rng))
        lib = self._library(rows, traits, (n, t))
        with np.errstate(over="ignore"):
            mean = lib * np.exp(Eta)
        too_large = observed & ~(mean <= MAX_SIMULATED_MEAN)
        if too_large.any():
            raise InputError(f"NegativeBinomial.simulate: expected counts up to "
                             f"{np.max(np.where(observed, mean, 0.0)):.3g} (Eta up to "
                             f"{np.max(np.where(observed, Eta, -np.inf)):.3g}) cannot be drawn "
                             f"(limit {MAX_SIMULATED_MEAN:.0e}); the latent scale is unrealistic "
                             "for counts: tighten the priors of Eta or lower library_size")
        y = rng.negative_binomial(r[None, :], r[None, :] / (r[None, :] + mean))
        params = {} if self.fixed_dispersion else {"dispersion": r}
        return SimulatedObservations(np.where(observed, y, np.nan), params)

    def sample_latent(self, s: ChainState, d: ModelData, conditional: EtaConditional,
                      rng: np.random.Generator) -> None:
        """Redraw every cell of ``Eta`` (Polya-Gamma), then each trait's size ``r``."""
        redraw_latent(s, d, conditional, rng, [(self, d.latent.extra, s.observation,
                                                np.arange(d.t))])

    def _update_columns(self, extra: CountData, state: dict[str, np.ndarray], rows: np.ndarray,
                        cols: np.ndarray, eta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        gen: np.random.Generator) -> np.ndarray:
        """New ``Eta`` of columns ``cols``, then (sampled sizes) ``mh_steps`` MH steps on
        their ``log r``; random numbers from ``gen``: the Polya-Gamma draws, the normals
        of ``Eta``, then per MH step ``c`` normals and ``c`` uniforms."""
        ix = np.ix_(rows, cols)
        y, log_lib, obs = extra.counts[ix], np.log(extra.size[ix]), extra.observed[ix]
        r = self._size(state, cols)
        new = pg_latent_update(eta, mean, var, obs, y + r[None, :], (y - r[None, :]) / 2,
                               log_lib - np.log(r)[None, :], gen)
        if self.fixed_dispersion:
            return new
        prior: GammaPrior = self.dispersion
        log_mean = new + log_lib

        def log_target(size: np.ndarray) -> np.ndarray:  # on log r: Jacobian r
            return (nb_log_likelihood(y, log_mean, size, obs)
                    + prior.shape * np.log(size) - prior.rate * size)

        current = log_target(r)
        for _ in range(self.mh_steps):
            proposal = r * np.exp(self.mh_step_size * gen.standard_normal(cols.size))
            target = log_target(proposal)
            accept = np.log(gen.random(cols.size)) < target - current
            r = np.where(accept, proposal, r)
            current = np.where(accept, target, current)
        state["dispersion"][cols] = r
        return new

    def to_response(self, eta: np.ndarray, traits: Sequence[Hashable],
                    library_size: Any = None, **options: Any) -> np.ndarray:
        """``exp(eta)``: the expected count per unit library size; times ``library_size``
        (a number, or an array broadcasting against ``eta``) if given."""
        lib = library_size
        if options:
            raise InputError(f"NegativeBinomial's response-scale option is library_size, got "
                             f"{sorted(options)}")
        out = np.exp(eta)
        return out if lib is None else out * lib
