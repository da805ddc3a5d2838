"""Tests of :func:`pymegalmm.results.arviz_export.to_arviz` with ArviZ 0.x and 1.x.

The dev venv (Python 3.11) has ArviZ 0.x, where the export is an ``InferenceData``;
ArviZ 1.x needs Python >= 3.12 and works on ``xarray.DataTree``.  The tests branch on
the installed major version (not on try/except), so each line is checked where it is
installed; without ArviZ, only the DataTree path runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.errors import InputError, InputTypeError, LabelError
from pymegalmm.results import arviz_export
from pymegalmm.results.arviz_export import arviz_major_version, to_arviz
from pymegalmm.results.diagnostics import ConvergenceWarning, diagnostics

MAJOR = arviz_major_version()
needs_datatree = pytest.mark.skipif(not hasattr(xr, "DataTree"),
                                    reason="xarray.DataTree needs xarray >= 2024.10")


@pytest.fixture(scope="module")
def fit(tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[MegaLMM, datasets.SimulatedData, xr.Dataset]:
    """A small two-chain fit, its data and its posterior; the draws are then saved to
    ``run_dir`` (``m.load_posterior()`` reads them lazily)."""
    sim = datasets.simulate_factor_data(n=60, t=4, k_true=2, n_markers=200, seed=3)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=2,
                h2_divisions=10, burn=50, chains=2, seed=1, verbose=False,
                run_dir=tmp_path_factory.mktemp("arviz") / "run").sample(150, progress=False)
    post = m.posterior
    m.save_posterior_chunk()
    return m, sim, post


def groups_of(data) -> list[str]:
    """Group names of an InferenceData or a DataTree."""
    if hasattr(data, "groups") and callable(data.groups):  # InferenceData
        return list(data.groups())
    return [str(name) for name in data.children]


def full_export(m: MegaLMM, sim: datasets.SimulatedData, post: xr.Dataset):
    stats = xr.Dataset({"lp": (("chain", "draw"), np.random.default_rng(0).normal(
        size=(2, post.sizes["draw"])))})
    X1 = xr.DataArray(np.ones((sim.Y.shape[0], 1)), dims=("row", "fixed"),
                      coords={"row": post["row"].values, "fixed": post["fixed"].values})
    pred = m.predict(kind="draws")
    return to_arviz(post, sample_stats=stats, observed=sim.Y,
                    constant={"X1": X1, "level_names": post["level"].values},
                    posterior_predictive=xr.Dataset({"Y": pred}))


def test_groups_and_contents(fit) -> None:
    m, sim, post = fit
    data = full_export(m, sim, post)
    if MAJOR == 0:
        import arviz as az

        assert isinstance(data, az.InferenceData)
    else:  # ArviZ 1.x or none: a DataTree
        assert isinstance(data, xr.DataTree)
    assert groups_of(data) == ["posterior", "posterior_predictive", "sample_stats",
                               "observed_data", "constant_data"]
    # the statistics per draw (lp) go to sample_stats, the given ones first
    xr.testing.assert_equal(data["posterior"].to_dataset() if MAJOR != 0
                            else data["posterior"], post.drop_vars("lp"))
    obs = data["observed_data"]["Y"]
    assert obs.dims == ("row", "trait")
    np.testing.assert_array_equal(obs.values, sim.Y.loc[:, post["trait"].values].to_numpy())
    assert obs["trait"].values.tolist() == post["trait"].values.tolist()
    assert data["sample_stats"]["lp"].dims == ("chain", "draw")
    assert data["constant_data"]["X1"].dims == ("row", "fixed")
    assert data["constant_data"]["level_names"].dims == ("level_names_dim_0",)
    assert data["posterior_predictive"]["Y"].dims[:2] == ("chain", "draw")


def test_arviz_functions_accept_the_export(fit) -> None:
    az = pytest.importorskip("arviz")
    m, sim, post = fit
    data = full_export(m, sim, post)
    names = ["h2", "B1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = diagnostics(post, names)
    if MAJOR == 0:
        summary = az.summary(data, var_names=names, hdi_prob=0.9)
        tail = {}
    else:  # 1.x: ci_prob instead of hdi_prob; tail ESS at 11%/89% unless asked
        summary = az.summary(data, var_names=names, ci_prob=0.9)
        tail = {"prob": (0.05, 0.95)}
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(summary.columns)
    assert len(summary) == len(ours)
    rhat = az.rhat(data, var_names=names)
    bulk = az.ess(data, var_names=names, method="bulk")
    ess_tail = az.ess(data, var_names=names, method="tail", **tail)
    for name in names:
        sub = ours[ours["variable"] == name]
        for col, ref in (("rhat", rhat), ("ess_bulk", bulk), ("ess_tail", ess_tail)):
            values = ref[name]
            values = values.to_numpy() if hasattr(values, "to_numpy") else values.values
            np.testing.assert_allclose(sub[col], np.ravel(values), rtol=1e-8,
                                       err_msg=f"{name} {col}")


def test_lazy_and_one_chain_posteriors(fit) -> None:
    m, _, post = fit
    one = to_arviz(post.isel(chain=0))  # no chain dim: gets one
    assert dict(one["posterior"].sizes)["chain"] == 1
    lazy = m.load_posterior()
    data = to_arviz(lazy)
    assert dict(data["posterior"].sizes) == {**dict(lazy.sizes)}
    np.testing.assert_array_equal(np.asarray(data["posterior"]["Lambda"].values),
                                  post["Lambda"].transpose(*lazy["Lambda"].dims).values)


@needs_datatree
def test_without_arviz_a_datatree(fit, monkeypatch) -> None:
    _, sim, post = fit
    monkeypatch.setattr(arviz_export, "arviz_major_version", lambda: None)
    tree = to_arviz(post, observed=sim.Y)
    assert isinstance(tree, xr.DataTree)
    assert groups_of(tree) == ["posterior", "sample_stats", "observed_data"]
    xr.testing.assert_equal(tree["posterior"].to_dataset(), post.drop_vars("lp"))
    xr.testing.assert_equal(tree["sample_stats"]["lp"], post["lp"])


def test_observed_traits_reordered_and_checked(fit) -> None:
    _, sim, post = fit
    shuffled = sim.Y[sim.Y.columns[::-1]]
    data = to_arviz(post, observed=shuffled)
    np.testing.assert_array_equal(data["observed_data"]["Y"].values, sim.Y.to_numpy())
    with pytest.raises(LabelError, match="trait labels"):
        to_arviz(post, observed=sim.Y.rename(columns={sim.Y.columns[0]: "other"}))
    with pytest.raises(LabelError, match="row labels"):
        to_arviz(post, observed=sim.Y.iloc[:-1])


def test_bad_inputs(fit) -> None:
    _, sim, post = fit
    with pytest.raises(InputTypeError, match="posterior"):
        to_arviz(post["h2"])
    with pytest.raises(InputError, match="'draw'"):
        to_arviz(post.mean("draw"))
    short = xr.Dataset({"lp": (("chain", "draw"), np.zeros((2, post.sizes["draw"] - 1)))})
    with pytest.raises(InputError, match="sample_stats has"):
        to_arviz(post, sample_stats=short)
    with pytest.raises(InputTypeError, match="observed"):
        to_arviz(post, observed=sim.Y.to_numpy())
    with pytest.raises(InputTypeError, match="constant"):
        to_arviz(post, constant=[1, 2])
    with pytest.raises(InputError, match="observed must have dims"):
        to_arviz(post, observed=xr.DataArray(np.zeros((2, 2)), dims=("a", "b")))
    frame = pd.DataFrame(np.zeros((2, 2)), index=pd.Index(["a", "b"], name="level"))
    data = to_arviz(post, constant={"frame": frame})
    assert data["constant_data"]["frame"].dims == ("level", "frame_dim_1")
