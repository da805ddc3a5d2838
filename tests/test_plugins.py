"""Model parts as plug-ins: loadings priors, observation models, the column-LMM step.

The priors and observation models here are written outside the package, as a
user would, and run through ``MegaLMM`` unchanged.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from pymegalmm import MegaLMM, Priors, datasets
from pymegalmm.core.column_lmm import sample_column_lmm
from pymegalmm.core.data import Workspace
from pymegalmm.core.grid import make_h2_grid
from pymegalmm.core.random_effects import DiagonalRandomEffect
from pymegalmm.core.state import ChainState
from pymegalmm.linalg import sampling_threads
from pymegalmm.observation import GaussianMissing
from pymegalmm.priors import ARDPrior, LambdaPrior, VariancePrior

ROOT = Path(__file__).resolve().parents[1]


def _small_model(**kwargs) -> MegaLMM:
    sim = datasets.simulate_factor_data(n=60, t=6, k_true=2, n_markers=300, missing=0.1,
                                        seed=3)
    kwargs = {"n_factors": 3, "h2_divisions": 8, "burn": 10, "seed": 4, "verbose": False,
              **kwargs}
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, **kwargs)


# --------------------------------------------------------------------------------------
# The documented custom prior (docs/architecture.md) runs as written
# --------------------------------------------------------------------------------------


def _doc_example() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"<!-- example: custom-prior -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the custom-prior example is missing from docs/architecture.md"
    return match.group(1)


def test_documented_custom_prior_runs_through_megalmm(capsys):
    namespace: dict = {"__name__": "docs_architecture_example"}
    # dont_inherit: run the example as a user's script, without this module's __future__
    exec(compile(_doc_example(), "docs/architecture.md", "exec", dont_inherit=True), namespace)
    m = namespace["m"]
    post = m.posterior
    assert post["omega"].dims == ("chain", "draw", "factor")
    assert post["omega"].attrs["description"] == "precision of each factor's loadings"
    assert "delta" not in post  # ARD's state is not there
    assert np.all(post["omega"].values > 0)
    assert post.sizes["draw"] == 20  # 60 iterations, burn 20, thin 2
    assert "F1" in capsys.readouterr().out  # the example prints omega per factor
    # the prior's state is saved with the chain and reachable by name
    state = m.states[0]
    assert set(state.lambda_prior) == {"omega"}
    np.testing.assert_array_equal(state.omega, state.lambda_prior["omega"])


# --------------------------------------------------------------------------------------
# A prior with a non-zero mean: the loadings step honours mean and precision
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedPrior(LambdaPrior):
    """Loadings pinned near ``value`` by a huge fixed precision (no state to update)."""

    value: float = 0.7
    use_mean: bool = True

    state_dims: ClassVar = {}
    recorded: ClassVar = {}

    def initialize(self, Lambda, tot_prec, rng):
        return {}

    def precision(self, state):
        return np.array([[1e8]])

    def mean(self, state):
        return None if not self.use_mean else np.array([[self.value]])

    def update(self, Lambda, tot_prec, state, rng):
        return {}


@pytest.mark.parametrize("use_mean", [True, False])
def test_prior_mean_and_precision_reach_the_loadings(use_mean):
    m = _small_model(priors=Priors(Lambda_prior=PinnedPrior(use_mean=use_mean)), burn=0)
    m.sample(15, progress=False)
    Lambda = m.states[0].Lambda
    target = 0.7 if use_mean else 0.0
    # posterior sd of a loading is at most 1 / sqrt(1e8 * tot_Eta_prec) ~ 1e-4 for
    # tot_Eta_prec of order 1, and the likelihood moves the mean by O(1e-8)
    assert np.abs(Lambda - target).max() < 1e-2
    assert "delta" not in m.posterior


def test_prior_mean_is_a_shift_of_the_regression():
    # With prior mean M, the step must equal the zero-mean step on y - X_pen M, shifted
    # by M: same random numbers, coefficients differ by exactly M (to rounding).
    rng = np.random.default_rng(0)
    n, r, c, p_pen, p_flat = 30, 12, 5, 3, 2
    Z = rng.standard_normal((n, r))
    A = rng.standard_normal((r, r))
    K = A @ A.T + r * np.eye(r)
    grid = make_h2_grid(1, 6)
    re = DiagonalRandomEffect(Z, K, np.eye(r), grid)
    X_pen = np.asfortranarray(rng.standard_normal((n, p_pen)))
    X_flat = np.asfortranarray(rng.standard_normal((n, p_flat)))
    y = np.asfortranarray(rng.standard_normal((n, c)))
    M = rng.standard_normal((p_pen, c))
    prec = np.asfortranarray(rng.gamma(2.0, 1.0, size=(p_pen, c)))
    common = dict(h2_index=np.full(c, 2), tau_prior=VariancePrior(0.5, 5.0),
                  log_prior_h2=np.log(np.full(grid.shape[1], 1 / grid.shape[1])),
                  X_pen=X_pen, X_flat=X_flat, prior_prec=prec, tau=np.ones(c), residual=True)
    with sampling_threads():
        a = sample_column_lmm(re, y, rng=np.random.default_rng(5), work=Workspace(),
                              prior_mean=M, **common)
        b = sample_column_lmm(re, np.asfortranarray(y - X_pen @ M),
                              rng=np.random.default_rng(5), work=Workspace(), **common)
    np.testing.assert_allclose(a.coef[:p_pen], b.coef[:p_pen] + M, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.coef[p_pen:], b.coef[p_pen:], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.tau, b.tau, rtol=1e-12)
    np.testing.assert_array_equal(a.h2_index, b.h2_index)
    np.testing.assert_allclose(a.effects, b.effects, rtol=1e-10, atol=1e-10)
    # residual: y - X_flat a - Z u in the rotated rows (a keeps X_pen b in it)
    np.testing.assert_allclose(a.residual, b.residual + X_pen @ M, rtol=1e-10, atol=1e-10)


def test_column_lmm_without_regressors_matches_numpy():
    # tau_j ~ Gamma(shape + n/2, rate + y_j' V(h_j)^-1 y_j / 2) given the current h2 index,
    # with V = h ZKZ' + (1 - h) I: checked against a dense NumPy computation of the form.
    rng = np.random.default_rng(1)
    n, r, c = 25, 10, 4
    Z = rng.standard_normal((n, r))
    K = np.cov(rng.standard_normal((r, 40))) + 0.5 * np.eye(r)
    grid = make_h2_grid(1, 5)
    re = DiagonalRandomEffect(Z, K, np.eye(r), grid)
    y = rng.standard_normal((n, c))
    idx = np.array([0, 1, 3, 4])
    prior = VariancePrior(0.5, 5.0)
    with sampling_threads():
        draw = sample_column_lmm(re, np.asfortranarray(re.rotate(y)), idx, prior,
                                 np.zeros(grid.shape[1]), np.random.default_rng(8), Workspace())
    gamma = np.random.default_rng(8).standard_gamma(prior.shape + 0.5 * n, size=c)
    ZKZ = Z @ K @ Z.T
    ss = np.array([y[:, j] @ np.linalg.solve(grid[0, i] * ZKZ + (1 - grid[0, i]) * np.eye(n),
                                             y[:, j]) for j, i in enumerate(idx)])
    np.testing.assert_allclose(draw.tau, gamma / (prior.rate + 0.5 * ss), rtol=1e-9)
    assert draw.coef.shape == (0, c) and draw.residual is None
    assert draw.effects.shape == (re.n_coef, c)


# --------------------------------------------------------------------------------------
# Observation models
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountingGaussian(GaussianMissing):
    """GaussianMissing that counts the sampler's calls (a user's subclass)."""

    calls: list = None  # type: ignore[assignment]

    def sample_latent(self, s, d, conditional, rng):
        self.calls.append(s.nrun)
        super().sample_latent(s, d, conditional, rng)


def test_observation_model_is_called_through_its_protocol():
    calls: list[int] = []
    # chains in turn in this process, so that the calls are seen here
    m = _small_model(observation=CountingGaussian(calls=calls), chains=2, processes=1)
    m.sample(5, progress=False)
    # once at initialisation and once per iteration, per chain
    assert calls == [0, 0] + [0, 1, 2, 3, 4] * 2
    reference = _small_model(chains=2).sample(5, progress=False)
    for a, b in zip(m.states, reference.states, strict=True):
        np.testing.assert_array_equal(a.Eta, b.Eta)


def test_core_never_names_a_concrete_plugin():
    # the sampler drives priors and observation models only through their protocols
    names = ("ARDPrior", "GaussianMissing", "MissingDataMap", "isinstance")
    for path in (ROOT / "pymegalmm" / "core").rglob("*.py"):
        text = path.read_text()
        for name in names:
            assert name not in text, f"{path.name} mentions {name}"


# --------------------------------------------------------------------------------------
# ARD under the protocol
# --------------------------------------------------------------------------------------


def test_ard_permute_moves_local_precisions_not_positions():
    prior = ARDPrior()
    rng = np.random.default_rng(2)
    state = prior.initialize(rng.standard_normal((4, 7)), np.ones(7), rng)
    order = np.array([2, 0, 3, 1])
    out = prior.permute(state, order)
    np.testing.assert_array_equal(out["Lambda_phi"], state["Lambda_phi"][order])
    # delta_l are the increments of the l-th position's shrinkage: they stay in place
    np.testing.assert_array_equal(out["delta"], state["delta"])
    assert out["Lambda_phi"].flags.f_contiguous
    np.testing.assert_allclose(prior.precision(out),
                               out["Lambda_phi"] * np.cumprod(out["delta"])[:, None])


def test_state_with_prior_arrays_round_trips(tmp_path):
    m = _small_model().sample(3, progress=False)
    path = tmp_path / "state.npz"
    m.states[0].save(path)
    loaded = ChainState.load(path)
    assert set(loaded.lambda_prior) == {"Lambda_phi", "delta"}
    for name in m.states[0].array_names():
        a, b = getattr(m.states[0], name), getattr(loaded, name)
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b],
                        strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = loaded.nope


# --------------------------------------------------------------------------------------
# Old import paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("old, new, names", [
    ("pymegalmm.sampler", "pymegalmm.core.iteration", ["gibbs_iteration"]),
    ("pymegalmm.sampler", "pymegalmm.core.reorder", ["reorder_factors"]),
    ("pymegalmm.sampler", "pymegalmm.core.data", ["RowPatterns", "GroupData"]),
    ("pymegalmm.precompute", "pymegalmm.core.grid", ["make_h2_grid"]),
    ("pymegalmm.precompute", "pymegalmm.priors.h2", ["h2_log_prior"]),
    ("pymegalmm.precompute", "pymegalmm.core.random_effects",
     ["DiagonalRandomEffect", "DenseRandomEffects"]),
    ("pymegalmm.posterior", "pymegalmm.results.derived", ["add_derived"]),
    ("pymegalmm.posterior", "pymegalmm.results.schema", ["PARAM_DIMS", "DEFAULT_RECORD"]),
    ("pymegalmm.state", "pymegalmm.core.state", ["ChainState"]),
    ("pymegalmm.store", "pymegalmm.run.store", ["PosteriorStore"]),
    ("pymegalmm.missing", "pymegalmm.observation.maps", ["best_map", "MissingDataMap"]),
    ("pymegalmm.summaries", "pymegalmm.results.summaries", ["hpd_interval"]),
    ("pymegalmm.plots", "pymegalmm.results.plots", ["traceplot"]),
])
def test_old_import_paths_give_the_same_objects(old, new, names):
    a, b = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(a, name) is getattr(b, name), f"{old}.{name}"
