"""Tests of the simulators and of to_wide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pymegalmm.datasets import (
    SimulatedData,
    simulate_factor_data,
    simulate_met,
    simulate_two_random_effects,
    to_wide,
)


def assert_psd_symmetric(frame: pd.DataFrame) -> None:
    m = frame.to_numpy()
    assert list(frame.index) == list(frame.columns)
    np.testing.assert_allclose(m, m.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(m).min() >= -1e-10


@pytest.fixture(scope="module")
def factor_sim() -> SimulatedData:
    return simulate_factor_data(seed=0)


@pytest.fixture(scope="module")
def met_sim() -> SimulatedData:
    return simulate_met(seed=0)


# --------------------------------------------------------------------------------------
# simulate_factor_data
# --------------------------------------------------------------------------------------


def test_factor_data_shapes_and_labels(factor_sim):
    s = factor_sim
    assert s.Y.shape == (500, 20)
    assert s.Y.index[0] == "ID0001" and s.Y.index[-1] == "ID0500"
    assert list(s.data.columns) == ["ID"]
    assert s.data.index.equals(s.Y.index)
    assert (s.data["ID"].to_numpy() == s.Y.index.to_numpy()).all()
    assert s.K.index.equals(s.Y.index) and s.K.columns.equals(s.Y.index)
    assert s.formula == "~ 1 + (1|ID)"
    traits = list(s.Y.columns)
    t = s.truth
    assert t["Lambda"].shape == (5, 20) and list(t["Lambda"].columns) == traits
    assert list(t["F_h2"].index) == list(t["Lambda"].index)
    for key in ("G", "R"):
        assert list(t[key].index) == traits
    for key in ("resid_h2", "h2"):
        assert list(t[key].index) == traits
    assert t["U"].shape == (500, 20) and t["U"].index.equals(s.Y.index)
    assert t["F"].shape == (500, 5)
    assert not s.Y.isna().any().any()


def test_factor_data_truth_is_consistent(factor_sim):
    t = factor_sim.truth
    assert_psd_symmetric(t["G"])
    assert_psd_symmetric(t["R"])
    assert_psd_symmetric(factor_sim.K)
    assert np.linalg.eigvalsh(factor_sim.K.to_numpy()).min() > 0
    h2 = t["h2"].to_numpy()
    assert np.all((h2 > 0) & (h2 < 1))
    G, R, lam = t["G"].to_numpy(), t["R"].to_numpy(), t["Lambda"].to_numpy()
    f_h2 = t["F_h2"].to_numpy()
    np.testing.assert_allclose(G, lam.T @ np.diag(f_h2) @ lam + np.diag(t["sigma2_g"]))
    np.testing.assert_allclose(R, lam.T @ np.diag(1 - f_h2) @ lam + np.diag(t["sigma2_e"]))
    np.testing.assert_allclose(h2, np.diag(G) / np.diag(G + R))
    # every trait has unit total variance, 80% from the factors (resid_var = 0.2)
    np.testing.assert_allclose(np.diag(G + R), 1.0)
    np.testing.assert_allclose(np.sum(lam**2, axis=0), 0.8)
    # factors are ordered by decreasing importance
    assert np.all(np.diff(np.sum(lam**2, axis=1)) <= 0)
    # The sample variances of Y match diag(G + R) = 1: with n = 500 each sample variance has
    # relative SD ~ sqrt(2/500) ~ 0.06 (plus K's sampling of the genetic part); the average
    # over 20 traits is well within 15%.
    assert np.mean(factor_sim.Y.var(axis=0).to_numpy()) == pytest.approx(1.0, rel=0.15)
    # U + the non-genetic parts reproduce Y: Y - mu - U must have the variance of R's diagonal
    e = factor_sim.Y - t["mu"] - t["U"]
    assert np.mean(e.var(axis=0) / np.diag(R)) == pytest.approx(1.0, rel=0.15)


def test_factor_data_options():
    s = simulate_factor_data(n=60, t=8, k_true=2, n_markers=200, factor_h2=[0.5, 0.2],
                             resid_h2=0.3, resid_var=0.4, missing=0.3, seed=7)
    frac = s.Y.isna().to_numpy().mean()
    assert frac == pytest.approx(0.3, abs=0.01)
    assert not s.Y.isna().all(axis=0).any()
    assert not s.Y.isna().all(axis=1).any()
    np.testing.assert_allclose(s.truth["F_h2"], [0.5, 0.2])
    np.testing.assert_allclose(s.truth["resid_h2"], 0.3)
    np.testing.assert_allclose(np.sum(s.truth["Lambda"].to_numpy() ** 2, axis=0), 0.6)
    # very high missingness still leaves every row and trait observed
    s = simulate_factor_data(n=40, t=6, k_true=1, n_markers=100, missing=0.95, seed=1)
    assert not s.Y.isna().all(axis=0).any() and not s.Y.isna().all(axis=1).any()
    # k_true = 0: independent traits, G and R diagonal
    s = simulate_factor_data(n=40, t=4, k_true=0, n_markers=100, seed=1)
    assert s.truth["Lambda"].shape == (0, 4)
    G = s.truth["G"].to_numpy()
    np.testing.assert_allclose(G, np.diag(np.diag(G)))


def test_factor_data_bad_arguments():
    with pytest.raises(ValueError, match="missing"):
        simulate_factor_data(n=20, t=3, missing=1.0)
    with pytest.raises(ValueError, match="factor_h2"):
        simulate_factor_data(n=20, t=3, k_true=2, factor_h2=[0.5])
    with pytest.raises(ValueError, match="resid_var"):
        simulate_factor_data(n=20, t=3, k_true=2, resid_var=1.5)
    with pytest.raises(ValueError, match="n must be"):
        simulate_factor_data(n=1)


# --------------------------------------------------------------------------------------
# simulate_two_random_effects
# --------------------------------------------------------------------------------------


def test_two_random_effects_shapes_and_truth():
    s = simulate_two_random_effects(seed=0)
    assert s.Y.shape == (400, 10)
    assert list(s.data.columns) == ["Line", "Plot"]
    assert s.data.index.equals(s.Y.index)
    assert s.formula == "~ 1 + (1|Line) + (1|Plot)"
    assert s.K.shape == (200, 200) and s.K.index[0] == "Line001"
    assert set(s.data["Line"]) == set(s.K.index)
    assert (s.data["Line"].value_counts() == 2).all()
    plot_sizes = s.data["Plot"].value_counts()
    assert len(plot_sizes) == 40 and plot_sizes.max() - plot_sizes.min() <= 1
    # plots are crossed with lines: the two reps of a line are mostly in different plots
    assert s.data.groupby("Line")["Plot"].nunique().mean() > 1.5
    hl, hp = s.truth["h2_Line"].to_numpy(), s.truth["h2_Plot"].to_numpy()
    assert np.all((hl >= 0.1) & (hl <= 0.5) & (hp >= 0.1) & (hp <= 0.5))
    assert np.all(hl + hp < 0.85)
    for key in ("G_Line", "G_Plot", "R"):
        assert_psd_symmetric(s.truth[key])
    np.testing.assert_allclose(np.diag(s.truth["G_Line"]), hl * s.truth["tot_var"])
    assert s.truth["U_Line"].shape == (200, 10) and s.truth["U_Plot"].shape == (40, 10)


def test_two_random_effects_with_factors():
    s = simulate_two_random_effects(n_lines=50, n_plots=10, t=6, k_true=2, n_markers=200,
                                    seed=3)
    assert s.truth["Lambda"].shape == (2, 6)
    total = s.truth["G_Line"] + s.truth["G_Plot"] + s.truth["R"]
    # factor part and residual model each have variance tot_var = 1
    np.testing.assert_allclose(np.diag(total), 2.0)
    for key in ("G_Line", "G_Plot", "R"):
        assert_psd_symmetric(s.truth[key])


# --------------------------------------------------------------------------------------
# simulate_met
# --------------------------------------------------------------------------------------


def test_met_shapes_and_labels(met_sim):
    s = met_sim
    assert list(s.Y.columns) == ["Line", "Population", "Env", "Yield"]
    pd.testing.assert_frame_equal(s.Y, s.data)
    assert s.Y is not s.data
    assert s.formula == "~ Population + (1|Line)"
    assert s.K.shape == (500, 500)
    assert s.K.index[0] == "Line001" and s.K.index[-1] == "Line500"
    assert set(s.Y["Line"]) == set(s.K.index)
    envs = sorted(s.Y["Env"].unique())
    assert envs == [f"Env{i:02d}" for i in range(1, 21)]
    assert set(s.Y["Population"]) == {1, 2}
    assert s.Y.groupby("Line")["Population"].nunique().max() == 1
    t = s.truth
    assert list(t["G"].index) == envs
    assert t["U"].shape == (500, 20) and list(t["U"].columns) == envs
    assert list(t["h2"].index) == envs
    assert_psd_symmetric(t["G"])
    assert_psd_symmetric(t["R"])
    assert_psd_symmetric(s.K)
    assert np.all((t["h2"] > 0) & (t["h2"] < 1))


def test_met_design(met_sim):
    tall = met_sim.Y
    per_line = tall.groupby("Line").size()
    assert len(per_line) == 500  # every line observed at least once
    assert per_line.min() >= 6 and per_line.max() <= 9
    assert per_line.max() < 20  # no line in every environment
    assert not tall.duplicated(["Line", "Env"]).any()
    share = tall.groupby("Env")["Population"].agg(lambda p: p.value_counts(normalize=True).max())
    assert (share >= 0.8).all(), share
    # low relatedness between populations, related families within
    K = met_sim.K.to_numpy()
    pop = met_sim.truth["population"].to_numpy()
    between = K[np.ix_(pop == 1, pop == 2)]
    within = K[np.ix_(pop == 1, pop == 1)][np.triu_indices(int((pop == 1).sum()), 1)]
    assert np.abs(between).max() < np.quantile(within, 0.99)
    assert np.abs(between.mean()) < 0.01


def test_met_other_sizes():
    s = simulate_met(n_lines=90, n_envs=9, n_pops=3, envs_per_line=(2, 3), n_factors=2,
                     n_markers=200, seed=5)
    per_line = s.Y.groupby("Line").size()
    assert len(per_line) == 90 and per_line.between(2, 3).all()
    assert s.formula == "~ C(Population) + (1|Line)"
    with pytest.raises(ValueError, match="envs_per_line"):
        simulate_met(n_lines=50, n_envs=6, envs_per_line=(2, 6))


def test_met_env_covariates_leave_the_design_and_main_factor_unchanged():
    kw = dict(n_lines=60, n_envs=12, envs_per_line=(4, 6), n_factors=3, n_markers=200, seed=4)
    plain, cov = simulate_met(**kw), simulate_met(**kw, env_covariates=2)
    # own random stream: which line is grown where and the main factor are the same draws
    pd.testing.assert_frame_equal(plain.Y[["Line", "Env"]], cov.Y[["Line", "Env"]])
    np.testing.assert_array_equal(plain.K, cov.K)
    assert "env_covariates" not in plain.truth
    W, beta = cov.truth["env_covariates"], cov.truth["covariate_effects"]
    assert list(W.columns) == ["Cov1", "Cov2"] and list(W.index) == list(plain.truth["G"].index)
    np.testing.assert_allclose(W.mean(), 0, atol=1e-12)
    np.testing.assert_allclose(W.std(ddof=0), 1)
    assert (beta.iloc[0] == 0).all() and (beta.iloc[1:] != 0).all().all()
    # per environment, loadings are rescaled by one factor, so ratios to the main factor
    # are scale-free: the interaction factors' ratios now follow the covariates
    ratio = cov.truth["Lambda"].iloc[1:] / cov.truth["Lambda"].iloc[0]
    ratio0 = plain.truth["Lambda"].iloc[1:] / plain.truth["Lambda"].iloc[0]
    assert not np.allclose(ratio, ratio0)


def test_met_env_covariates_bad_arguments():
    with pytest.raises(ValueError, match="n_factors >= 2"):
        simulate_met(n_lines=40, n_envs=6, envs_per_line=(2, 4), n_factors=1, env_covariates=2)
    with pytest.raises(ValueError, match="env_covariates"):
        simulate_met(n_lines=40, n_envs=6, envs_per_line=(2, 4), env_covariates=-1)
    with pytest.raises(ValueError, match="interaction"):
        simulate_met(n_lines=40, n_envs=6, envs_per_line=(2, 4), interaction=-0.5)


# --------------------------------------------------------------------------------------
# to_wide
# --------------------------------------------------------------------------------------


def test_to_wide_round_trip(met_sim):
    tall = met_sim.Y
    Y, data = to_wide(tall, ["Line", "Population"], "Env", "Yield")
    assert Y.shape == (500, 20)
    assert list(Y.index) == sorted(tall["Line"].unique())  # sorted rows, labelled by line
    assert list(Y.columns) == sorted(tall["Env"].unique())  # sorted columns
    assert data.index.equals(Y.index)
    assert list(data.columns) == ["Line", "Population"]
    assert data["Population"].dtype == tall["Population"].dtype
    assert Y.notna().to_numpy().sum() == len(tall)
    back = Y.stack().dropna().rename("Yield").rename_axis(["Line", "Env"]).reset_index()
    assert len(back) == len(tall)
    merged = tall.merge(back, on=["Line", "Env"], suffixes=("", "_back"), validate="1:1")
    assert len(merged) == len(tall)
    np.testing.assert_array_equal(merged["Yield"], merged["Yield_back"])


def test_to_wide_single_id_and_combination_keys():
    tall = pd.DataFrame({
        "Line": ["b", "a", "a", "c", "c"],
        "Pop": [1, 1, 1, 2, 3],
        "Env": ["E2", "E1", "E2", "E1", "E2"],
        "y": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    Y, data = to_wide(tall.iloc[:3], "Line", "Env", "y")
    assert list(Y.index) == ["a", "b"] and list(Y.columns) == ["E1", "E2"]
    assert np.isnan(Y.loc["b", "E1"]) and Y.loc["a", "E2"] == 3.0
    assert list(data.columns) == ["Line"]
    # "c" appears with two populations: the combination is the row key
    Y, data = to_wide(tall, ["Line", "Pop"], "Env", "y")
    assert list(Y.index) == ["a_1", "b_1", "c_2", "c_3"]
    assert Y.loc["c_3", "E2"] == 5.0 and np.isnan(Y.loc["c_3", "E1"])
    assert data.loc["c_2", "Pop"] == 2


def test_to_wide_errors():
    tall = pd.DataFrame({"Line": ["a", "a", "b"], "Env": ["E1", "E1", "E1"], "y": [1.0, 2, 3]})
    with pytest.raises(ValueError, match=r"share their \(Line, Env\).*'Line': 'a', 'Env': 'E1'"):
        to_wide(tall, "Line", "Env", "y")
    with pytest.raises(KeyError, match="Yield"):
        to_wide(tall, "Line", "Env", "Yield")
    with pytest.raises(ValueError, match="numeric"):
        to_wide(tall.assign(y=["x", "y", "z"], Env=["E1", "E2", "E1"]), "Line", "Env", "y")


# --------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sim, kwargs",
    [
        (simulate_factor_data, {"n": 50, "t": 5, "k_true": 2, "n_markers": 200,
                                "missing": 0.1}),
        (simulate_two_random_effects, {"n_lines": 30, "n_plots": 6, "t": 3, "n_markers": 200}),
        (simulate_met, {"n_lines": 60, "n_envs": 6, "envs_per_line": (2, 4),
                        "n_markers": 200}),
    ],
)
def test_determinism(sim, kwargs):
    a, b, c = sim(seed=1, **kwargs), sim(seed=1, **kwargs), sim(seed=2, **kwargs)
    pd.testing.assert_frame_equal(a.Y, b.Y)
    pd.testing.assert_frame_equal(a.data, b.data)
    pd.testing.assert_frame_equal(a.K, b.K)
    assert a.truth.keys() == b.truth.keys()
    for key in a.truth:
        obj_a, obj_b = a.truth[key], b.truth[key]
        if isinstance(obj_a, pd.DataFrame):
            pd.testing.assert_frame_equal(obj_a, obj_b)
        else:
            pd.testing.assert_series_equal(obj_a, obj_b)
    assert not a.K.equals(c.K)
    numeric_a = a.Y.select_dtypes("number").to_numpy()
    numeric_c = c.Y.select_dtypes("number").to_numpy()
    assert numeric_a.shape != numeric_c.shape or not np.array_equal(
        numeric_a, numeric_c, equal_nan=True
    )


def test_factor_data_without_the_t_by_t_covariances():
    """covariances=False skips G and R (t x t) and changes nothing else; t > 10,000 skips
    them by default (t = 100,000 would need 160 GB)."""
    full = simulate_factor_data(n=30, t=12, k_true=2, n_markers=50, seed=4)
    light = simulate_factor_data(n=30, t=12, k_true=2, n_markers=50, seed=4,
                                 covariances=False)
    assert {"G", "R"} <= set(full.truth) and not {"G", "R"} & set(light.truth)
    pd.testing.assert_frame_equal(full.Y, light.Y)
    np.testing.assert_allclose(light.truth["h2"], full.truth["h2"], rtol=1e-12)
    wide = simulate_factor_data(n=10, t=10_001, k_true=1, n_markers=20, seed=1)
    assert "G" not in wide.truth and wide.truth["h2"].shape == (10_001,)
