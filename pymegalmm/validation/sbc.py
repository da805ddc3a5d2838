"""Simulation-based calibration (SBC, Talts et al. 2018) of the MegaLMM sampler.

Each replication draws parameters from the priors and data from the model
(:func:`~pymegalmm.validation.simulate_from_prior`), fits the same model to the
data with the Gibbs sampler and ranks each true value among ``L`` thinned
posterior draws.  If the sampler draws from the exact posterior, each rank is
uniform on ``0..L`` (ties, for quantities on the h2 grid, are broken at random).

Only quantities that the data identify are ranked (factor order and sign are
not): see :data:`QUANTITIES`.  Everything is compared on the user's scale with
factors of unit variance, as :class:`~pymegalmm.MegaLMM` reports its posterior.

Replications run in worker processes (``spawn`` start method: OpenMP is not
fork-safe once used) or on a Dask client; each has its own seed spawned from
``seed`` (:class:`numpy.random.SeedSequence`), so the ranks do not depend on the
number of workers.  Every fit samples with one thread and writes nothing to disk.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError
from ..linalg import sampling_threads
from ..observation import Combined, GaussianMissing
from ..validate import check_bool, check_float, check_instance, check_int, check_names, check_seed
from .simulate import Simulation, simulate_from_prior
from .spec import ModelSpec
from .uniformity import chi_square_uniformity, default_bins, ecdf_uniformity

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["QUANTITIES", "SBCResult", "quantity_labels", "quantity_values", "sbc"]

#: Quantities ranked by :func:`sbc`, all identified (invariant to factor order and sign).
QUANTITIES: dict[str, str] = {
    "tot_Eta_prec": "total precision of each trait's residual model",
    "resid_h2": "variance proportions of each trait's residual model (h2 grid)",
    "h2": "share of each trait's variance due to each random effect",
    "G": "covariance of each random effect between traits (upper triangle)",
    "R": "residual covariance between traits (upper triangle)",
    "LtL": "Lambda' Lambda with unit-variance factors (upper triangle)",
    "B1": "fixed effects",
    "Y_missing": "latent value of one imputed missing cell per trait (the observation "
                 "model's imputation; cells a missing-data map leaves outside its blocks "
                 "are predicted only, never drawn, and not ranked)",
    "B2_R": "direct effects of the extra regressors on each trait (extra_regressions)",
    "B2_F_Lambda": "effects of the extra regressors on the traits through the factors, "
                   "B2_F Lambda (B2_F alone is not identified)",
    "B2_total": "total effects of the extra regressors on the traits, B2_F Lambda + B2_R "
                "(the only part the likelihood sees: its split between the two is set by "
                "the prior alone)",
    "F_h2_fixed": "variance proportions of each fixed factor (h2 grid; Lambda_fixed)",
    "cis_effects": "each trait's cis effects (cis_genotypes)",
    "Eta_observed": "latent value of one observed cell per trait, for observation models "
                    "whose latent is not the data (Voom, Binomial, NegativeBinomial)",
    "dispersion": "negative-binomial size of each trait (NegativeBinomial with a sampled "
                  "dispersion; under Combined, its traits)",
}

#: Besides :data:`QUANTITIES`, every per-trait parameter an observation model draws in
#: ``simulate`` and records (:attr:`ModelSpec.observation_parameters`) is ranked under
#: its recorded name, for the traits that have it.


# ----------------------------------------------------------------------------- quantities

def _imputed_mask(spec: ModelSpec, shape: tuple[int, int]) -> np.ndarray:
    """``(n, t)`` bool, True where a missing cell would be imputed (drawn every
    iteration): everywhere, unless a missing-data map leaves cells outside its blocks
    (those are predicted only: no draw of them exists to rank the truth among)."""
    obs = spec.observation
    data_map = obs.missing_data_map if isinstance(obs, GaussianMissing) else None
    return np.ones(shape, dtype=bool) if data_map is None else data_map.block_mask(shape)


def _missing_traits(spec: ModelSpec) -> list[int]:
    """Traits with an imputed missing cell in every simulated data set."""
    t = len(spec.trait_names)
    if isinstance(spec.missing, np.ndarray):
        imputed = spec.missing & _imputed_mask(spec, spec.missing.shape)
        return [j for j in range(t) if imputed[:, j].any()]
    return list(range(t)) if round(spec.missing * spec.n) > 0 else []


def _latent_traits(spec: ModelSpec) -> list[int]:
    """Traits whose observed cells have a latent value that is not the data (every trait
    but those of Gaussian models, where ``Eta`` is ``Y`` at observed cells)."""
    obs, names = spec.observation, spec.trait_names
    if isinstance(obs, GaussianMissing):
        return []
    if isinstance(obs, Combined):
        position = {v: j for j, v in enumerate(names)}
        return sorted(position[v] for key, model in obs.blocks.items()
                      if not isinstance(model, GaussianMissing) for v in obs._names(key))
    return list(range(len(names)))


def _observed_cells(Y: np.ndarray, traits: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each trait with data (``Y`` not NaN)."""
    rows = np.array([np.flatnonzero(~np.isnan(Y[:, j]))[0] for j in traits], dtype=np.intp)
    return rows, np.asarray(traits, dtype=np.intp)


def quantity_labels(model_spec: ModelSpec) -> dict[str, list[str]]:
    """Labels of the entries of every quantity a model has (see :data:`QUANTITIES`).

    Matrices give their upper triangle ``"a,b"``; with several random effects the
    component's name comes first (``"ID:a,b"``); fixed effects are ``"fixed:trait"``.
    """
    design = model_spec.design
    traits = model_spec.trait_names
    comps = [re.name for re in design.random]

    def per_component(items: list[str]) -> list[str]:
        return items if len(comps) == 1 else [f"{c}:{x}" for c in comps for x in items]

    pairs = [f"{traits[i]},{traits[j]}" for i, j in zip(*np.triu_indices(len(traits)),
                                                         strict=True)]
    labels = {
        "tot_Eta_prec": list(traits),
        "resid_h2": per_component(list(traits)),
        "h2": per_component(list(traits)),
        "G": per_component(pairs),
        "R": pairs,
        "LtL": pairs,
        "B1": [f"{f}:{tr}" for f in design.fixed_names for tr in traits],
        "Y_missing": [traits[j] for j in _missing_traits(model_spec)],
        **_regression_labels(model_spec),
        **_model_part_labels(model_spec, per_component),
        "Eta_observed": [traits[j] for j in _latent_traits(model_spec)],
        **model_spec.observation_labels,
    }
    return {name: value for name, value in labels.items() if value}


def _regression_labels(model_spec: ModelSpec) -> dict[str, list[str]]:
    """``B2_R``, ``B2_F_Lambda`` and ``B2_total`` entries ``"marker:trait"`` (with extra
    regressions; ``B2_total`` when the model has both)."""
    extra = model_spec.extra_regressions
    if extra is None:
        return {}
    entries = [f"{x}:{tr}" for x in extra.names for tr in model_spec.trait_names]
    return {**({"B2_R": entries} if extra.resids else {}),
            **({"B2_F_Lambda": entries} if extra.factors else {}),
            **({"B2_total": entries} if extra.factors and extra.resids else {})}


def _model_part_labels(spec: ModelSpec, per_component: Any) -> dict[str, list[str]]:
    """Labels of the fixed factors' ``F_h2`` and of the cis effects (``"trait:column"``)."""
    labels: dict[str, list[str]] = {}
    if spec.fixed_factors is not None:
        labels["F_h2_fixed"] = per_component(list(spec.fixed_factors.names))
    if spec.cis_design is not None:
        labels["cis_effects"] = [f"{trait}:{col}" for trait, cols
                                 in zip(spec.trait_names, spec.cis_design.names, strict=True)
                                 for col in cols]
    return labels


def quantity_values(params: dict[str, np.ndarray], names: Iterable[str],
                    cells: tuple[np.ndarray, np.ndarray] | None = None, *, n_fixed: int = 0,
                    observed_cells: tuple[np.ndarray, np.ndarray] | None = None,
                    observation: dict[str, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
    """The ranked quantities of one set of parameters on the user's scale, as 1-D arrays.

    The same function serves the truth (:meth:`Simulation.user_scale`) and every
    posterior draw (:meth:`pymegalmm.MegaLMM.user_scale`), so like is compared with like.
    The formulas are those of :mod:`pymegalmm.results.derived`.

    Parameters
    ----------
    params : dict
        ``Lambda`` (k, t), ``F_h2`` (m, k), ``resid_h2`` (m, t), ``tot_Eta_prec`` (t,),
        ``B1`` (b1, t), for ``Y_missing`` ``Eta`` (n, t), and with extra regressions
        ``B2_R`` (x2, t) and ``B2_F`` (x2, k).
    names : iterable of str
        Quantities wanted (keys of :data:`QUANTITIES`).
    cells : (rows, cols), optional
        The cells of ``Eta`` for ``Y_missing``.
    n_fixed : int
        Number of fixed factors (the first rows of ``Lambda``), for ``F_h2_fixed``.
        ``cis_effects`` needs ``params["cis_effects"]`` (t, c_max), NaN beyond each
        trait's columns.
    observed_cells : (rows, cols), optional
        The cells of ``Eta`` for ``Eta_observed``.
    observation : dict of str -> (t,) bool, optional
        The observation model's per-trait parameters and the traits that have them
        (:attr:`ModelSpec.observation_parameters`): ``params[name][mask]``.

    Returns
    -------
    dict of str -> numpy.ndarray
        In the order of :func:`quantity_labels`.
    """
    names = list(names)
    lam, fh2, rh2 = params["Lambda"], params["F_h2"], params["resid_h2"]
    var_r = 1.0 / params["tot_Eta_prec"]
    t = lam.shape[1]
    iu = np.triu_indices(t)
    out: dict[str, np.ndarray] = {}
    G = np.einsum("ki,mk,kj->mij", lam, fh2, lam)
    G[:, np.arange(t), np.arange(t)] += rh2 * var_r
    R = lam.T @ ((1.0 - fh2.sum(axis=0))[:, None] * lam)
    R[np.arange(t), np.arange(t)] += (1.0 - rh2.sum(axis=0)) * var_r
    for name in names:
        if name == "tot_Eta_prec":
            out[name] = np.asarray(params["tot_Eta_prec"], dtype=float)
        elif name == "resid_h2":
            out[name] = rh2.ravel()
        elif name == "h2":
            diag_G = np.diagonal(G, axis1=1, axis2=2)
            out[name] = (diag_G / (diag_G.sum(axis=0) + np.diag(R))).ravel()
        elif name == "G":
            out[name] = G[:, iu[0], iu[1]].ravel()
        elif name == "R":
            out[name] = R[iu]
        elif name == "LtL":
            out[name] = (lam.T @ lam)[iu]
        elif name == "B1":
            out[name] = params["B1"].ravel()
        elif name == "Y_missing":
            if cells is None:
                raise ValueError("Y_missing needs the cells")
            out[name] = params["Eta"][cells]
        elif name == "B2_R":
            out[name] = np.asarray(params["B2_R"], dtype=float).ravel()
        elif name == "B2_F_Lambda":  # identified: invariant to the factors' order and sign
            out[name] = (params["B2_F"] @ lam).ravel()
        elif name == "B2_total":  # what the likelihood identifies (F integrated out)
            out[name] = (params["B2_F"] @ lam + np.asarray(params["B2_R"], dtype=float)).ravel()
        elif name == "F_h2_fixed":
            out[name] = fh2[:, :n_fixed].ravel()
        elif name == "cis_effects":
            cis = np.asarray(params["cis_effects"], dtype=float)
            out[name] = cis[~np.isnan(cis)]
        elif name == "Eta_observed":
            if observed_cells is None:
                raise ValueError("Eta_observed needs the observed cells")
            out[name] = params["Eta"][observed_cells]
        elif observation is not None and name in observation:
            out[name] = np.asarray(params[name], dtype=float)[observation[name]]
        else:
            raise KeyError(name)
    return out


def _missing_cells(observed: np.ndarray, traits: list[int], imputed: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The first imputed missing row of each trait (the pattern is random, so is the
    cell); ``imputed`` is :func:`_imputed_mask`."""
    missing = ~observed & imputed
    rows = np.array([np.flatnonzero(missing[:, j])[0] for j in traits], dtype=np.intp)
    return rows, np.asarray(traits, dtype=np.intp)


def _randomised_rank(draws: np.ndarray, truth: np.ndarray, rng: np.random.Generator
                     ) -> np.ndarray:
    """``#(draws < truth)`` plus a uniform share of the ties (discrete quantities)."""
    less = (draws < truth[None, :]).sum(axis=0)
    ties = (draws == truth[None, :]).sum(axis=0)
    return less + rng.integers(0, ties + 1)


# ----------------------------------------------------------------------------- one replication

@dataclass(frozen=True)
class _Task:
    spec: ModelSpec
    simulate_spec: ModelSpec
    seed: np.random.SeedSequence
    index: int
    burn: int
    n_draws: int
    thin: int
    names: tuple[str, ...]


def _fit(task: _Task, sim: Simulation, seed: int) -> Any:
    from ..model import MegaLMM

    spec = task.spec
    # nothing is recorded (burn past the last iteration): draws are read from the state
    control = replace(spec.control, burn=task.burn + task.n_draws * task.thin, thin=1,
                      n_threads=1)
    extra = {} if spec.extra_regressions is None else {
        "extra_regressions": spec.extra_regressions}
    Y, observation = sim.fit_arguments(spec.observation)
    return MegaLMM(Y, spec.formula, data=sim.data, relmat=spec.relmat, control=control,
                   priors=spec.priors, observation=observation, seed=seed,
                   record=["tot_Eta_prec"], run_dir=_unused_run_dir(), verbose=False, **extra,
                   **_model_part_arguments(spec))


def _model_part_arguments(spec: ModelSpec) -> dict[str, Any]:
    """``Lambda_fixed`` and ``cis_genotypes`` of the spec, when it has them."""
    out: dict[str, Any] = {}
    if spec.Lambda_fixed is not None:
        out["Lambda_fixed"] = spec.Lambda_fixed
    if spec.cis_genotypes is not None:
        out["cis_genotypes"] = spec.cis_genotypes
    return out


def _unused_run_dir() -> str:
    """A folder name that does not exist: the fits save nothing, so it is never created."""
    return os.path.join(tempfile.gettempdir(), f"pymegalmm-sbc-unused-{uuid.uuid4().hex}")


def _replicate(task: _Task) -> dict[str, np.ndarray]:
    """Simulate, fit and rank one replication (runs in a worker process)."""
    sim_seed, fit_seed, tie_seed = task.seed.spawn(3)
    names = list(task.names)
    with warnings.catch_warnings():
        # data drawn from the prior may sit far from its scale by chance: not news here
        warnings.simplefilter("ignore")
        sim = simulate_from_prior(task.simulate_spec, np.random.default_rng(sim_seed))
        cells = (_missing_cells(sim.observed, _missing_traits(task.spec),
                                _imputed_mask(task.spec, sim.observed.shape))
                 if "Y_missing" in names else None)
        observed_cells = (_observed_cells(sim.Y.to_numpy(), _latent_traits(task.spec))
                          if "Eta_observed" in names else None)
        n_fixed = task.spec.n_fixed
        kw = dict(n_fixed=n_fixed, observed_cells=observed_cells,
                  observation=task.spec.observation_parameters)
        truth = quantity_values(sim.user_scale(), names, cells, **kw)
    # one thread throughout, the setup (which draws the starting state) included
    with sampling_threads(1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = _fit(task, sim, int(fit_seed.generate_state(1)[0]))
        chain = m.chains[0]
        draws = {name: np.empty((task.n_draws, value.size)) for name, value in truth.items()}
        scale, center = m.latent.scale, m.latent.center
        chain.sample(task.burn)
        for d in range(task.n_draws):
            chain.sample(task.thin)
            params = m.user_scale(chain.state)
            if cells is not None or observed_cells is not None:
                params["Eta"] = chain.state.Eta * scale + center
            for name, value in quantity_values(params, names, cells, **kw).items():
                draws[name][d] = value
    chain.check_finite(f"replication {task.index}")
    rng = np.random.default_rng(tie_seed)
    ranks = {name: _randomised_rank(draws[name], truth[name], rng).astype(float)
             for name in names}
    if "B1" in ranks:  # coefficients the observed cells cannot identify are fixed at 0
        ranks["B1"][np.asarray(m.data.drop_fixed, dtype=bool).T.ravel()] = np.nan
    return ranks


# ----------------------------------------------------------------------------- result

@dataclass(eq=False)
class SBCResult:
    """Ranks and uniformity tests of a simulation-based calibration run.

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per replication, columns ``(quantity, entry)``; a rank lies in
        ``0..n_draws`` (NaN where undefined, e.g. an unidentifiable fixed effect).
        ``ranks["G"]`` gives one quantity.
    n_draws : int
        Posterior draws per replication (``L``).
    tests : pandas.DataFrame
        One row per ``(quantity, entry)``: ``chi2`` and ``p_chi2`` (Pearson's test on
        ``bins`` groups of ranks), ``p_ecdf`` (ECDF test of Säilynoja et al. 2022) and
        ``in_envelope`` (the ECDF inside its simultaneous 95 % band).
    settings : dict
        Replications, iterations, thin, burn, seed, bins, workers, the model.
    seconds : float
        Wall time of the run.
    """

    ranks: pd.DataFrame
    n_draws: int
    tests: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def from_ranks(cls, ranks: pd.DataFrame, n_draws: int, bins: int | None = None,
                   settings: dict[str, Any] | None = None) -> SBCResult:
        """A result from saved ranks (e.g. ``pd.read_csv(..., header=[0, 1], index_col=0)``).

        Parameters
        ----------
        ranks : pandas.DataFrame
            Columns ``(quantity, entry)``, one row per replication.
        n_draws : int
            ``L``: the ranks lie in ``0..L``.
        bins : int, optional
            Bins of the chi-square test.
        settings : dict, optional
            What the run was (shown by ``repr``).
        """
        n_draws = check_int("n_draws", n_draws, minimum=1)
        if not isinstance(ranks, pd.DataFrame) or ranks.columns.nlevels != 2:
            raise InputTypeError("ranks must be a DataFrame with (quantity, entry) columns")
        ranks = ranks.astype(float)
        ranks.columns = ranks.columns.set_names(["quantity", "entry"])
        settings = dict(settings or {})
        settings.setdefault("replications", len(ranks))
        settings["bins"] = bins if bins is not None else default_bins(len(ranks), n_draws)
        return cls(ranks, n_draws, _tests(ranks, n_draws, bins), settings)

    @property
    def quantities(self) -> list[str]:
        """Names of the ranked quantities."""
        return list(dict.fromkeys(self.ranks.columns.get_level_values(0)))

    def summary(self) -> pd.DataFrame:
        """One row per quantity: entries, smallest p-values, Bonferroni p, envelope failures.

        ``p_bonferroni`` is the smallest chi-square p-value times the number of
        tests of the whole run (capped at 1): the family-wise p-value.
        """
        n_tests = len(self.tests)
        rows = []
        for name in self.quantities:
            t = self.tests.loc[name]
            rows.append({
                "quantity": name, "entries": len(t),
                "min_p_chi2": float(t["p_chi2"].min()),
                "p_bonferroni": float(min(1.0, t["p_chi2"].min() * n_tests)),
                "min_p_ecdf": float(t["p_ecdf"].min()),
                "outside_envelope": int((~t["in_envelope"]).sum()),
            })
        return pd.DataFrame(rows).set_index("quantity")

    def passed(self, alpha: float = 0.01) -> bool:
        """Whether every chi-square test passes at family-wise level ``alpha`` (Bonferroni)."""
        alpha = check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
        return bool((self.tests["p_chi2"] * len(self.tests)).min() > alpha)

    def plot(self, quantities: Sequence[str] | None = None, **kwargs: Any) -> Figure:
        """ECDF-difference plot of the ranks (:func:`pymegalmm.validation.plots.sbc_ecdf`)."""
        from .plots import sbc_ecdf

        return sbc_ecdf(self, quantities, **kwargs)

    def __repr__(self) -> str:
        s = self.settings
        head = (f"SBCResult: {len(self.ranks)} replications x {self.n_draws} draws "
                f"(burn {s.get('burn')}, {s.get('iterations')} iterations, thin "
                f"{s.get('thin')}), {len(self.tests)} tests, {self.seconds:.1f} s")
        verdict = "calibrated" if self.passed() else "NOT calibrated"
        body = self.summary().to_string(float_format=lambda v: f"{v:.3g}")
        return f"{head}\n{body}\nchi-square, Bonferroni at 0.01: {verdict}"


def _tests(ranks: pd.DataFrame, n_draws: int, bins: int | None) -> pd.DataFrame:
    rows = []
    for (name, entry), column in ranks.items():
        values = column.to_numpy()
        stat, p = chi_square_uniformity(values, n_draws, bins)
        p_ecdf, inside = ecdf_uniformity(values, n_draws)
        rows.append({"quantity": name, "entry": entry, "chi2": stat, "p_chi2": p,
                     "p_ecdf": p_ecdf, "in_envelope": inside})
    return pd.DataFrame(rows).set_index(["quantity", "entry"])


# ----------------------------------------------------------------------------- the run

def _check_same_model_parts(spec: ModelSpec, sim_spec: ModelSpec) -> None:
    """``simulate_spec`` must have the fixed factors and cis columns of ``model_spec``."""
    def parts(s: ModelSpec) -> tuple[int, list[int]]:
        cis = s.cis_design
        return s.n_fixed, ([] if cis is None else cis.n_cis.tolist())

    if parts(spec) != parts(sim_spec):
        raise InputError("simulate_spec must have the fixed factors (Lambda_fixed) and cis "
                         "columns (cis_genotypes) of model_spec: (fixed factors, cis columns "
                         f"per trait) {parts(spec)} against {parts(sim_spec)}")


def _check_client(client: Any) -> Any:
    if client is not None and not all(hasattr(client, a) for a in ("map", "gather")):
        raise InputTypeError("client must be a dask.distributed.Client (with map and gather), "
                             f"got {type(client).__name__}")
    return client


def _run_tasks(tasks: list[_Task], workers: int, client: Any, progress: bool
               ) -> list[dict[str, np.ndarray]]:
    from tqdm.auto import tqdm

    if client is not None:
        futures = client.map(_replicate, tasks, pure=False)
        return client.gather(futures)
    if workers == 1:
        return [_replicate(t) for t in tqdm(tasks, disable=not progress, desc="SBC")]
    context = multiprocessing.get_context("spawn")  # libgomp is not fork-safe after use
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_replicate, t) for t in tasks]
        out = []
        for f in tqdm(futures, disable=not progress, desc="SBC"):
            out.append(f.result())
        return out


def sbc(model_spec: ModelSpec, replications: int = 200, iterations: int = 200, thin: int = 10,
        *, burn: int | None = None, quantities: Iterable[str] | None = None, seed: int | None = 0,
        workers: int | None = None, client: Any = None, bins: int | None = None,
        simulate_spec: ModelSpec | None = None, progress: bool = False) -> SBCResult:
    """Simulation-based calibration of the sampler on ``model_spec``.

    Each replication draws parameters from the priors and data from the model,
    runs one chain of ``burn + iterations`` Gibbs iterations on the data, keeps
    every ``thin``-th draw after ``burn`` (``L = iterations // thin`` draws) and
    ranks each true value among them.  A calibrated sampler gives ranks uniform
    on ``0..L``; the ranks are tested by a chi-square test on binned ranks and by
    the ECDF envelope of Säilynoja et al. (2022).

    Parameters
    ----------
    model_spec : ModelSpec
        The model (with ``scale_Y=False``).
    replications : int
        Simulated data sets.  Default 200.
    iterations, thin : int
        Iterations after burn-in and the thinning (draws should be close to
        independent: autocorrelated draws make ranks pile up at the ends).
        Defaults 200 and 10 (20 draws).
    burn : int, optional
        Burn-in of every chain; default ``model_spec.control.burn``.
    quantities : iterable of str, optional
        Among :data:`QUANTITIES` (those the model has); default all of them.
    seed : int or None
        Seed of everything (replication ``i`` uses the ``i``-th child of
        ``SeedSequence(seed)``).  Default 0.
    workers : int, optional
        Worker processes (``spawn``); default the number of CPUs.  ``1`` runs in this
        process.  The ranks do not depend on it.
    client : dask.distributed.Client, optional
        Run the replications on this Dask client instead (``workers`` is ignored).
    bins : int, optional
        Bins of the chi-square test (default: at most 20, at least 10 ranks per bin).
    simulate_spec : ModelSpec, optional
        Simulate from this specification instead of ``model_spec`` (same rows and
        traits), e.g. a deliberately wrong prior to see the test fail.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SBCResult
        Ranks, tests, a summary (``repr``) and a plot (:meth:`SBCResult.plot`).

    Examples
    --------
    >>> from pymegalmm.validation import example_spec, sbc
    >>> spec = example_spec(n=30, traits=3, n_factors=1, burn=20)
    >>> res = sbc(spec, replications=10, iterations=20, thin=2, workers=1)
    >>> res.ranks["tot_Eta_prec"].shape
    (10, 3)
    >>> sorted(res.tests.columns)
    ['chi2', 'in_envelope', 'p_chi2', 'p_ecdf']
    """
    t0 = time.perf_counter()
    spec = check_instance("model_spec", model_spec, ModelSpec, "a pymegalmm.validation.ModelSpec")
    replications = check_int("replications", replications, minimum=2)
    thin = check_int("thin", thin, minimum=1)
    iterations = check_int("iterations", iterations, minimum=thin)
    n_draws = iterations // thin
    burn = spec.control.burn if burn is None else check_int("burn", burn, minimum=0)
    available = quantity_labels(spec)
    names = (list(available) if quantities is None
             else check_names("quantities", quantities, available))
    if not names:
        raise InputError("quantities must name at least one quantity")
    seed = check_seed(seed)
    progress = check_bool("progress", progress)
    client = _check_client(client)
    workers = (os.cpu_count() or 1) if workers is None else check_int("workers", workers,
                                                                      minimum=1)
    workers = min(workers, replications)
    if bins is not None:
        bins = check_int("bins", bins, minimum=2, maximum=n_draws + 1)
    sim_spec = spec if simulate_spec is None else check_instance(
        "simulate_spec", simulate_spec, ModelSpec, "a pymegalmm.validation.ModelSpec")
    if sim_spec.n != spec.n or len(sim_spec.trait_names) != len(spec.trait_names):
        raise InputError(f"simulate_spec must have the rows and traits of model_spec "
                         f"({spec.n} x {len(spec.trait_names)}), got {sim_spec.n} x "
                         f"{len(sim_spec.trait_names)}")
    _check_same_model_parts(spec, sim_spec)
    sim_labels = quantity_labels(sim_spec)
    differ = [name for name in names if sim_labels.get(name) != available[name]]
    if differ:
        raise InputError(f"simulate_spec must have the quantities of model_spec: {differ} "
                         "differ (e.g. an observation model that does not draw them)")
    if client is not None or workers > 1:
        try:
            pickle.dumps((spec, sim_spec))
        except Exception as exc:  # noqa: BLE001 - report whatever cannot be pickled
            raise InputTypeError(
                "model_spec must be picklable to run in worker processes (a lambda as an h2 "
                f"prior cannot be; use a module-level function, or workers=1): {exc}"
            ) from exc
    entropy = np.random.SeedSequence(seed)
    tasks = [_Task(spec, sim_spec, ss, i, burn, n_draws, thin, tuple(names))
             for i, ss in enumerate(entropy.spawn(replications))]
    outcomes = _run_tasks(tasks, workers, client, progress)

    columns = pd.MultiIndex.from_tuples(
        [(name, entry) for name in names for entry in available[name]],
        names=["quantity", "entry"])
    values = np.array([np.concatenate([o[name] for name in names]) for o in outcomes])
    ranks = pd.DataFrame(values, columns=columns,
                         index=pd.RangeIndex(replications, name="replication"))
    bins_used = bins if bins is not None else default_bins(replications, n_draws)
    settings = {"replications": replications, "iterations": iterations, "thin": thin,
                "burn": burn, "seed": entropy.entropy, "bins": bins_used,
                "workers": "dask" if client is not None else workers, "model": repr(spec),
                "simulated_from": None if simulate_spec is None else repr(sim_spec)}
    return SBCResult(ranks, n_draws, _tests(ranks, n_draws, bins), settings,
                     time.perf_counter() - t0)
