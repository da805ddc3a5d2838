"""Simulation-based calibration (pymegalmm.validation): the sampler is calibrated on the
default model, the check has power, the prior draws are right, inputs are checked.

The long runs behind ``docs/validation.md`` are ``validation/run_sbc.py``; these are
the fast versions (fixed seeds, small models).
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pymegalmm import Control, MegaLMM, Priors
from pymegalmm.errors import InputError, InputTypeError, LabelError
from pymegalmm.observation import GaussianMissing, ObservationModel
from pymegalmm.priors import ARDPrior, GammaPrior, LambdaPrior, VariancePrior
from pymegalmm.priors.bayesc import BayesCPrior
from pymegalmm.priors.h2 import h2_log_prior, sample_h2_prior
from pymegalmm.priors.horseshoe import HorseshoePrior
from pymegalmm.validation import (
    ModelSpec,
    SBCResult,
    chi_square_uniformity,
    ecdf_band,
    ecdf_uniformity,
    example_spec,
    quantity_labels,
    quantity_values,
    sbc,
    simulate_from_prior,
)
from pymegalmm.validation.uniformity import default_bins


def favour_high_h2(grid: np.ndarray) -> np.ndarray:
    """A deliberately wrong h2 prior for the simulation (module level: picklable)."""
    return grid.sum(axis=0) ** 4


@pytest.fixture(scope="module")
def tiny_spec() -> ModelSpec:
    return example_spec(n=20, traits=2, n_factors=1, missing=0.1, burn=10)


# ----------------------------------------------------------------------------- calibration

def test_default_model_is_calibrated():
    """The default model (ARD loadings, flat h2 priors, default precision priors, Gaussian
    data with 10 % of cells missing, intercept + covariate with a flat prior) on 50 rows x 4
    traits, 2 factors: 200 replications, 9 draws 25 iterations apart after 150 of burn-in.

    Threshold: every entry's ranks get a chi-square test (10 bins, one per rank value, 20
    expected ranks each); the check fails when the
    smallest p-value times the number of tests (Bonferroni) is below 0.01.  With a
    calibrated sampler that happens with probability at most 0.01 for a new seed (less: the
    entries are positively dependent, which makes Bonferroni conservative).  The seed is
    fixed, so the outcome is deterministic.  Small leftover autocorrelation of the draws
    (integrated autocorrelation time ~10 iterations in the median replication) only makes
    ranks pile up at the ends by a few percent, which 200 replications cannot see;
    ``validation/run_sbc.py`` runs 1,000 replications of longer chains.
    """
    spec = example_spec(n=50, traits=4, n_factors=2, missing=0.1, burn=150)
    res = sbc(spec, replications=200, iterations=225, thin=25, seed=11, workers=2)
    assert res.settings["bins"] == 10
    assert set(res.quantities) == {"tot_Eta_prec", "resid_h2", "h2", "G", "R", "LtL", "B1",
                                   "Y_missing"}
    assert res.ranks.shape == (200, len(res.tests))
    assert res.ranks.min().min() >= 0 and res.ranks.max().max() <= res.n_draws == 9
    assert res.passed(alpha=0.01), repr(res)
    assert "calibrated" in repr(res)


def _other_part(part: str) -> ModelSpec:
    spec = example_spec(n=40, traits=3, n_factors=2, missing=0.1, burn=100)
    if part == "horseshoe":
        return replace(spec, priors=Priors(Lambda_prior=HorseshoePrior()))
    if part == "bayesc":
        return replace(spec, priors=Priors(Lambda_prior=BayesCPrior()))
    if part == "ard_covariates":
        covariates = pd.DataFrame(np.random.default_rng(1).standard_normal((3, 2)),
                                  index=spec.trait_names, columns=["w1", "w2"])
        return replace(spec, priors=Priors(Lambda_prior=ARDPrior(trait_covariates=covariates)))
    return replace(spec, control=replace(spec.control, h2_step_size=0.2))  # "mh_h2"


@pytest.mark.parametrize("part", ["horseshoe", "bayesc", "ard_covariates", "mh_h2"])
def test_other_model_parts_are_calibrated(part):
    """The other loadings priors (horseshoe, BayesC, ARD on trait covariates) and the
    Metropolis-Hastings h2 step, each in the default model on 40 rows x 3 traits: 100
    replications, 6 draws 25 iterations apart after 100 of burn-in; same Bonferroni
    threshold (family-wise 0.01 per part) as the default model.  For the horseshoe this
    catches a grossly wrong conditional (the global scale's shape off by 1/2 gave
    p = 3e-7) but not slow mixing, nor smaller errors (the local scales' rate or the
    deltas' shape off): those are for tests/test_horseshoe.py and the long run."""
    res = sbc(_other_part(part), replications=100, iterations=150, thin=25, seed=21,
              workers=2)
    assert res.passed(alpha=0.01), repr(res)


def test_long_run_thins_the_horseshoe_enough():
    """``validation/run_sbc.py`` keeps the horseshoe's 20 draws 200 iterations apart (the
    other parts 50): its slowest replications, where a loading moves between the prior's
    pole at zero and the value the data support, have ``Lambda' Lambda`` autocorrelation
    times of 140-260 iterations, and draws 50 apart made its ranks U-shaped (+31 % at the
    ends over 1,000 replications, docs/validation.md)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "validation" / "run_sbc.py"
    spec = importlib.util.spec_from_file_location("run_sbc", path)
    run_sbc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_sbc)
    burn, iterations, thin = run_sbc.settings("horseshoe")
    assert thin >= 200 and iterations // thin == 20 and burn == 500
    for part in set(run_sbc.PARTS) - {"horseshoe"}:
        assert run_sbc.settings(part) == (500, 1000, 50), part


def test_a_wrong_prior_is_detected():
    """Power: data simulated with an h2 prior that favours high h2, fitted with the flat
    prior, must fail the same check (a small model: h2 is then mostly prior-driven)."""
    fit = example_spec(n=30, traits=3, n_factors=1, burn=30)
    wrong = replace(fit, priors=Priors(h2_prior_resids=favour_high_h2))
    res = sbc(fit, replications=40, iterations=40, thin=4, seed=3, workers=1,
              simulate_spec=wrong, quantities=["resid_h2", "h2", "tot_Eta_prec"])
    assert not res.passed(alpha=0.01)
    assert res.summary().loc["resid_h2", "p_bonferroni"] < 1e-6
    # the truth sits above the posterior: ranks pile up at the top
    assert res.ranks["resid_h2"].to_numpy().mean() > 0.7 * res.n_draws


def test_worker_count_does_not_change_ranks(tiny_spec):
    kw = dict(replications=4, iterations=10, thin=2, seed=5)
    one = sbc(tiny_spec, workers=1, **kw)
    two = sbc(tiny_spec, workers=2, **kw)
    pd.testing.assert_frame_equal(one.ranks, two.ranks)
    assert not one.ranks.isna().any().any()


def test_dask_client_gives_the_same_ranks(tiny_spec):
    distributed = pytest.importorskip("distributed")
    kw = dict(replications=4, iterations=10, thin=2, seed=5)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = sbc(tiny_spec, client=client, **kw)
    pd.testing.assert_frame_equal(on_dask.ranks, sbc(tiny_spec, workers=1, **kw).ranks)
    assert on_dask.settings["workers"] == "dask"


def test_fits_write_nothing(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tempfile.gettempdir()))
    sbc(tiny_spec, replications=2, iterations=4, thin=2, workers=1)
    assert not list(tmp_path.iterdir())
    after = set(os.listdir(tempfile.gettempdir()))
    assert not [p for p in after - before if p.startswith("pymegalmm-sbc")]


# ----------------------------------------------------------------------------- prior draws

def test_variance_prior_draws_match_its_moments():
    prior = VariancePrior(V=0.5, nu=5)  # Gamma(4, rate 2.5)
    x = prior.sample_prior(200_000, np.random.default_rng(1))
    assert x.mean() == pytest.approx(4 / 2.5, rel=0.01)
    assert x.var() == pytest.approx(4 / 2.5**2, rel=0.03)
    g = GammaPrior(3.0, 2.0).sample_prior(200_000, np.random.default_rng(2))
    assert g.mean() == pytest.approx(1.5, rel=0.01)


def test_h2_prior_draws_follow_the_grid_weights():
    grid = np.arange(10)[None, :] / 10
    idx = sample_h2_prior(favour_high_h2, grid, 50_000, np.random.default_rng(3))
    counts = np.bincount(idx, minlength=10)
    expected = np.exp(h2_log_prior(favour_high_h2, grid, "h2")) * idx.size
    assert counts[0] == 0  # weight 0 at h2 = 0
    assert stats.chisquare(counts[1:], expected[1:]).pvalue > 1e-3


def test_ard_prior_draws_match_the_prior():
    prior = ARDPrior()  # delta_1 ~ Gamma(2, 1); delta_l ~ Gamma(3, 1) truncated to [1, inf)
    rng = np.random.default_rng(4)
    tau = np.array([0.5, 2.0, 8.0])
    draws = [prior.sample_prior(3, tau, rng) for _ in range(20_000)]
    delta = np.array([s["delta"] for _, s in draws])
    phi = np.array([s["Lambda_phi"] for _, s in draws])
    lam = np.array([lam for lam, _ in draws])
    assert delta[:, 0].mean() == pytest.approx(2.0, rel=0.03)
    assert delta[:, 1:].min() >= 1.0
    truncated = stats.gamma(3.0).expect(lambda x: x, lb=1.0, conditional=True)
    assert delta[:, 1:].mean() == pytest.approx(truncated, rel=0.02)
    assert phi.mean() == pytest.approx(1.0, rel=0.02)  # Gamma(1.5, rate 1.5)
    # given its state, each loading is N(0, 1 / (tau_j phi_kj prod_{l<=k} delta_l))
    z = lam * np.sqrt(tau[None, None, :] * phi * np.cumprod(delta, axis=1)[:, :, None])
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert prior.precision({"Lambda_phi": phi[0], "delta": delta[0]}).shape == (3, 3)


def test_simulated_data_have_the_implied_covariance():
    """Rows of Y with K = I and no fixed effects have covariance G + R of the truth."""
    data = pd.DataFrame({"g": [f"L{i}" for i in range(2000)]})
    spec = ModelSpec("~ 0 + (1|g)", data, traits=3, n_factors=2,
                     control=Control(h2_divisions=10, scale_Y=False))
    sim = simulate_from_prior(spec, np.random.default_rng(6))
    truth = quantity_values(sim.user_scale(), ["G", "R"])
    iu = np.triu_indices(3)
    implied = truth["G"] + truth["R"]
    observed = np.cov(sim.Y.to_numpy(), rowvar=False)[iu]
    scale = np.sqrt(np.outer(np.diag(np.cov(sim.Y.to_numpy(), rowvar=False)),
                             np.diag(np.cov(sim.Y.to_numpy(), rowvar=False))))[iu]
    assert np.abs(observed - implied).max() < 0.1 * scale.max()
    # and the precision draws follow their prior over many simulations
    small = example_spec(n=20, traits=5)
    taus = np.concatenate([simulate_from_prior(small, np.random.default_rng(s))
                           .parameters["tot_Eta_prec"] for s in range(400)])
    assert taus.mean() == pytest.approx(4 / 2.5, rel=0.08)


def test_simulation_respects_missing_and_is_reproducible():
    spec = example_spec(n=40, traits=3, missing=0.25)
    a = simulate_from_prior(spec, np.random.default_rng(7))
    b = simulate_from_prior(spec, np.random.default_rng(7))
    pd.testing.assert_frame_equal(a.Y, b.Y)
    assert (a.Y.isna().sum() == 10).all()
    assert not a.Y.isna().all(axis=1).any()
    np.testing.assert_array_equal(a.observed, a.Y.notna().to_numpy())
    assert np.isfinite(a.parameters["Eta"]).all()  # the latent values of missing cells


def test_quantities_are_those_the_model_reports():
    """The quantities ranked are computed as the posterior's G, R and h2 (like with like)."""
    spec = example_spec(n=30, traits=3, n_factors=2)
    sim = simulate_from_prior(spec, np.random.default_rng(8))
    m = MegaLMM(sim.Y, spec.formula, data=sim.data, relmat=spec.relmat, control=spec.control,
                seed=1, verbose=False, run_dir=os.path.join(tempfile.mkdtemp(), "run"))
    m.sample(spec.control.burn + 3, progress=False)
    post = m.posterior.isel(chain=0, draw=-1)
    params = {name: post[name].to_numpy()
              for name in ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec", "B1")}
    q = quantity_values(params, ["G", "R", "h2", "LtL", "B1"])
    iu = np.triu_indices(3)
    np.testing.assert_allclose(q["G"], post["G"].to_numpy()[0][iu], rtol=1e-12)
    np.testing.assert_allclose(q["R"], post["R"].to_numpy()[iu], rtol=1e-12)
    np.testing.assert_allclose(q["h2"], post["h2"].to_numpy().ravel(), rtol=1e-12)
    np.testing.assert_allclose(q["LtL"], (params["Lambda"].T @ params["Lambda"])[iu])
    labels = quantity_labels(spec)
    assert labels["G"][:2] == ["y1,y1", "y1,y2"] and labels["B1"][0] == "Intercept:y1"
    for name, value in q.items():
        assert value.size == len(labels[name])


# ----------------------------------------------------------------------------- uniformity

def test_uniformity_tests_accept_uniform_and_reject_skewed_ranks():
    rng = np.random.default_rng(9)
    uniform = rng.integers(0, 20, size=1000)
    skewed = np.minimum(rng.integers(0, 20, size=1000), rng.integers(0, 20, size=1000))
    assert chi_square_uniformity(uniform, 19)[1] > 0.01
    assert chi_square_uniformity(skewed, 19)[1] < 1e-10
    assert ecdf_uniformity(uniform, 19)[1]
    p, inside = ecdf_uniformity(skewed, 19)
    assert not inside and p < 0.01
    # ties broken at random cannot be told from uniform ranks either
    assert chi_square_uniformity(np.r_[uniform, np.nan], 19, bins=5)[1] > 0.01


def test_default_bins_prefer_equal_probability():
    assert default_bins(1000, 20) == 21  # one bin per rank value
    assert default_bins(200, 9) == 10
    assert default_bins(1000, 99) == 25  # 100 values in 25 bins of 4
    assert default_bins(1000, 28) == 20  # 29 values (prime): groups of consecutive ranks
    assert default_bins(30, 20) == 3  # few ranks: at least 10 per bin


def test_result_from_saved_ranks(tmp_path):
    rng = np.random.default_rng(12)
    cols = pd.MultiIndex.from_tuples([("h2", "y1"), ("h2", "y2"), ("G", "y1,y1")])
    ranks = pd.DataFrame(rng.integers(0, 10, size=(300, 3)), columns=cols)
    ranks.to_csv(tmp_path / "ranks.csv.gz")
    back = pd.read_csv(tmp_path / "ranks.csv.gz", header=[0, 1], index_col=0)
    res = SBCResult.from_ranks(back, 9)
    assert res.quantities == ["h2", "G"] and res.passed()
    assert res.tests.loc[("h2", "y1"), "p_chi2"] == pytest.approx(
        chi_square_uniformity(ranks[("h2", "y1")], 9)[1])
    with pytest.raises(InputTypeError, match="ranks"):
        SBCResult.from_ranks(ranks.droplevel(0, axis=1), 9)


def test_ecdf_band_has_its_simultaneous_coverage():
    band = ecdf_band(200, 9, 0.95)
    assert np.all(band.lower <= band.z) and np.all(band.z <= band.upper)
    rng = np.random.default_rng(10)
    inside = [ecdf_uniformity(rng.integers(0, 10, size=200), 9)[1] for _ in range(400)]
    assert 0.91 <= np.mean(inside) <= 0.99  # 95 % simultaneous coverage (Monte Carlo)


# ----------------------------------------------------------------------------- inputs and API

@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(replications=1), InputError, "replications"),
    (dict(thin=0), InputError, "thin"),
    (dict(iterations=3, thin=4), InputError, "iterations"),
    (dict(burn=-1), InputError, "burn"),
    (dict(quantities=["F_h2"]), LabelError, "quantities"),
    (dict(quantities="h2"), InputTypeError, "quantities"),
    (dict(workers=0), InputError, "workers"),
    (dict(bins=50), InputError, "bins"),
    (dict(seed=-1), InputError, "seed"),
    (dict(client=object()), InputTypeError, "client"),
    (dict(progress="yes"), InputTypeError, "progress"),
    (dict(simulate_spec="spec"), InputTypeError, "simulate_spec"),
])
def test_bad_sbc_arguments_are_named(tiny_spec, kwargs, exc, word):
    args = dict(replications=2, iterations=10, thin=2, workers=1) | kwargs
    with pytest.raises(exc, match=word):
        sbc(tiny_spec, **args)


def test_bad_specifications_are_named():
    data = pd.DataFrame({"g": [f"L{i}" for i in range(10)]})
    with pytest.raises(InputTypeError, match="model_spec"):
        sbc("~ 1 + (1|g)")
    with pytest.raises(InputError, match="scale_Y"):
        ModelSpec("~ 1 + (1|g)", data, control=Control())
    with pytest.raises(InputTypeError, match="formula"):
        ModelSpec(3, data)
    with pytest.raises(InputError, match="random"):
        ModelSpec("~ 1", data)
    with pytest.raises(InputTypeError, match="traits"):
        ModelSpec("~ 1 + (1|g)", data, traits="abc")
    with pytest.raises(InputError, match="traits"):
        ModelSpec("~ 1 + (1|g)", data, traits=["a", "a"])
    with pytest.raises(InputError, match="n_factors"):
        ModelSpec("~ 1 + (1|g)", data, n_factors=0)
    with pytest.raises(InputError, match="missing"):
        ModelSpec("~ 1 + (1|g)", data, missing=1.5)
    with pytest.raises(InputError, match="missing"):
        ModelSpec("~ 1 + (1|g)", data, traits=2, missing=np.zeros((3, 2), dtype=bool))
    with pytest.raises(InputError, match="missing"):
        ModelSpec("~ 1 + (1|g)", data, traits=2, missing=np.ones((10, 2), dtype=bool))
    with pytest.raises(InputError, match="B1_sd"):
        ModelSpec("~ 1 + (1|g)", data, B1_sd=-1.0)
    with pytest.raises(InputTypeError, match="priors"):
        ModelSpec("~ 1 + (1|g)", data, priors={"tot_Y_var": 1})
    spec = ModelSpec("~ 1 + (1|g)", data, traits=2)
    with pytest.raises(InputError, match="simulate_spec"):
        sbc(spec, replications=2, iterations=2, thin=1, workers=1,
            simulate_spec=ModelSpec("~ 1 + (1|g)", data, traits=3))
    with pytest.raises(InputTypeError, match="rng"):
        simulate_from_prior(spec, 1)


def test_unpicklable_specification_is_refused_for_workers():
    spec = replace(example_spec(n=20, traits=2, n_factors=1),
                   priors=Priors(h2_prior_resids=lambda grid: np.ones(grid.shape[1])))
    with pytest.raises(InputTypeError, match="picklable"):
        sbc(spec, replications=2, iterations=2, thin=1, workers=2)
    assert sbc(spec, replications=2, iterations=2, thin=1, workers=1).n_draws == 2
    pickle.loads(pickle.dumps(example_spec(n=20)))  # a spec itself travels to workers


def test_parts_without_a_draw_say_so():
    class NoDrawPrior(LambdaPrior):
        def initialize(self, Lambda, tot_prec, rng):
            return {}

        def precision(self, state):
            return np.ones((1, 1))

        def update(self, Lambda, tot_prec, state, rng):
            return {}

    class NoSimulate(ObservationModel):
        def prepare(self, Y, traits, scale):
            return GaussianMissing().prepare(Y, traits, scale)

        def sample_latent(self, s, d, conditional, rng):
            pass

    with pytest.raises(NotImplementedError, match="NoDrawPrior.*sample_prior"):
        NoDrawPrior().sample_prior(2, np.ones(3), np.random.default_rng())
    data = pd.DataFrame({"g": [f"L{i}" for i in range(10)]})
    with pytest.raises(NotImplementedError, match="NoSimulate.*simulate"):
        ModelSpec("~ 1 + (1|g)", data, observation=NoSimulate())


def test_result_summary_and_plots(tiny_spec, monkeypatch):
    pytest.importorskip("matplotlib")
    res = sbc(tiny_spec, replications=8, iterations=10, thin=2, workers=1, seed=1)
    summary = res.summary()
    assert list(summary.index) == res.quantities
    assert {"min_p_chi2", "p_bonferroni", "outside_envelope"} <= set(summary.columns)
    fig = res.plot()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == len(res.quantities)
    from pymegalmm.validation.plots import sbc_histogram

    assert len(sbc_histogram(res, ["h2", "G"], bins=3).axes) >= 2
    with pytest.raises(LabelError, match="quantities"):
        res.plot(["nope"])
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pymegalmm\[plot\]"):
        res.plot()
