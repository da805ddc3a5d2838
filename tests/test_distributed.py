"""Chains and cross-validation folds as tasks (pymegalmm.distributed), here and on Dask."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import pymegalmm
from pymegalmm import MegaLMM, datasets
from pymegalmm.distributed import ChainRuns, _assign_folds, _payload, _run_task, _Task
from pymegalmm.errors import InputError, InputTypeError, LabelError, RunDirectoryError

SETTINGS = dict(n_factors=3, h2_divisions=5, burn=4, thin=1, seed=7, verbose=False)
BURN_IN = dict(rounds=2, iterations=3)
ITERATIONS = 12


@pytest.fixture(scope="module")
def sim():
    return datasets.simulate_factor_data(n=60, t=5, k_true=2, n_markers=200, missing=0.1,
                                         seed=3)


def template(sim, **kw):
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                   **{**SETTINGS, "chains": 2, **kw})


@pytest.fixture(scope="module")
def one_process(sim, tmp_path_factory):
    """The reference: both chains in one process, burn-in rounds then sampling."""
    m = template(sim, processes=1, run_dir=tmp_path_factory.mktemp("one") / "run")
    m.burn_in(**BURN_IN, progress=False)
    m.sample(ITERATIONS, progress=False)
    return m.posterior


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def assert_same_draws(a, b):
    assert list(a.chain.values) == list(b.chain.values)
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


# ----------------------------------------------------------------------------- chains


def test_chains_on_dask_equal_one_process(sim, one_process, client, tmp_path):
    runs = pymegalmm.run_chains(template(sim), iterations=ITERATIONS, burn_in=BURN_IN,
                                save_every=5, client=client, run_dir=tmp_path / "chains")
    assert runs.chains == [0, 1]
    assert runs.paths == {c: tmp_path / "chains" / f"chain-{c}" for c in (0, 1)}
    post = runs.posterior
    assert post["Lambda"].chunks is not None  # lazy, dask-backed
    assert_same_draws(post.load(), one_process)
    table = runs.diagnostics(warn=False)
    assert {"rhat", "ess_bulk", "ess_tail"} <= set(table.columns)
    assert table.attrs["n_chains"] == 2
    assert set(runs.info["iteration"]) == {BURN_IN["rounds"] * BURN_IN["iterations"]
                                           + ITERATIONS}
    assert (runs.posterior_means["Eta_mean"].shape == (60, 5))
    # the analysis can be reopened from its folder, in any process
    assert ChainRuns.open(tmp_path / "chains").chains == [0, 1]


def test_some_chains_here_and_resumed(sim, one_process, tmp_path):
    runs = pymegalmm.run_chains(template(sim), chains=[1], iterations=ITERATIONS,
                                burn_in=BURN_IN, run_dir=tmp_path / "chains")
    assert_same_draws(runs.posterior.load(), one_process.sel(chain=[1]))
    m = MegaLMM.resume(runs.paths[1], verbose=False)
    assert m.iteration == BURN_IN["rounds"] * BURN_IN["iterations"] + ITERATIONS
    m.sample(2, progress=False)
    assert m.n_draws == 2
    # a second analysis in the same folder is refused, then replaced with overwrite=True
    with pytest.raises(RunDirectoryError, match="overwrite=True"):
        pymegalmm.run_chains(template(sim), chains=[1], iterations=ITERATIONS,
                             run_dir=tmp_path / "chains")
    again = pymegalmm.run_chains(template(sim), chains=[1], iterations=ITERATIONS,
                                 burn_in=BURN_IN, run_dir=tmp_path / "chains", overwrite=True)
    assert_same_draws(again.posterior.load(), one_process.sel(chain=[1]))


def test_a_task_run_again_continues_its_earlier_attempt(sim, one_process, tmp_path):
    """Dask runs again the task of a worker that died: it resumes the saved chunks."""
    model = template(sim)
    payload = _payload(model)
    common = dict(label="chain 0", path=str(tmp_path / "chain-0"), n_chains=2, chain=0,
                  burn_in={**BURN_IN, "drop_cor_threshold": 0.6}, save_every=4, threads=None)
    first = _run_task(payload, _Task(iterations=4, **common))  # "died" after one chunk
    assert not first["resumed"]
    second = _run_task(payload, _Task(iterations=ITERATIONS, **common))
    assert second["resumed"]
    runs = ChainRuns({0: tmp_path / "chain-0"})
    assert_same_draws(runs.posterior.load(), one_process.sel(chain=[0]))


# ----------------------------------------------------------------------------- folds


def test_cross_validation_by_cells(sim, tmp_path):
    model = template(sim, chains=1)
    cv = pymegalmm.cross_validate(model, folds=3, iterations=ITERATIONS, seed=11,
                                  run_dir=tmp_path / "cv")
    observed = sim.Y.notna()
    acc = cv.accuracy
    assert list(acc.columns) == ["fold", "trait", "n_heldout", "correlation", "rmse"]
    assert sorted(acc["fold"].unique()) == [0, 1, 2]
    # every observed cell is held out exactly once; missing cells never are
    assert int(acc["n_heldout"].sum()) == int(observed.values.sum())
    assert cv.folds.notna().equals(observed)
    assert cv.folds.index.equals(sim.Y.index) and cv.folds.columns.equals(sim.Y.columns)
    # each fold holds out about a third of every trait's cells
    per_trait = acc.pivot(index="fold", columns="trait", values="n_heldout")
    assert (per_trait.max() - per_trait.min()).max() <= 1
    assert np.isfinite(acc["correlation"]).all() and acc["correlation"].mean() > 0.2
    assert np.isfinite(cv.predictions["predicted"]).all()
    summary = cv.summary()
    assert list(summary.index) == list(sim.Y.columns)
    assert (summary["n_heldout"] == observed.sum()).all()
    # the same seed draws the same folds
    assert cv.seed == 11
    again, _, _ = _assign_folds(model, 3, None, 11)
    np.testing.assert_array_equal(again, _assign_folds(model, 3, None, cv.seed)[0])
    assert cv.folds.fillna(-1).to_numpy().astype(int).tolist() == again.tolist()
    assert sorted(cv.paths) == [(f, 0) for f in range(3)]
    assert "mean correlation" in repr(cv)
    # fold 0 is the model fitted to Y with the fold's cells set to NaN
    hidden = cv.folds == 0
    with warnings.catch_warnings():  # rows with every cell hidden are dropped
        warnings.simplefilter("ignore", UserWarning)
        m = MegaLMM(sim.Y.mask(hidden), sim.formula, data=sim.data, relmat={"ID": sim.K},
                    **{**SETTINGS, "chains": 1}, run_dir=tmp_path / "by_hand")
    m.sample(ITERATIONS, progress=False)
    fitted = m.predict()
    pred = cv.predictions.query("fold == 0")
    pred = pred[pred["row"].isin(fitted.index)]
    assert len(pred) > 0.8 * hidden.values.sum()
    expected = [fitted.at[r, c] for r, c in zip(pred["row"], pred["trait"], strict=True)]
    np.testing.assert_array_equal(pred["predicted"].to_numpy(), expected)


def test_cross_validation_by_lines_on_dask_equals_here(sim, client, tmp_path):
    """Whole rows held out: the folds' models drop them and predict them from U."""
    model = template(sim, chains=1)
    kw = dict(folds=3, folds_by="ID", iterations=ITERATIONS, seed=5)
    on_dask = pymegalmm.cross_validate(model, client=client, run_dir=tmp_path / "d", **kw)
    here = pymegalmm.cross_validate(model, run_dir=tmp_path / "h", **kw)
    pd.testing.assert_frame_equal(on_dask.accuracy, here.accuracy)
    pd.testing.assert_frame_equal(on_dask.predictions, here.predictions)
    folds = on_dask.folds
    rows = folds.apply(lambda r: set(r.dropna()), axis=1)
    assert all(len(s) <= 1 for s in rows)  # each line is held out whole, in one fold
    assert np.isfinite(on_dask.predictions["predicted"]).all()
    # a task's error reaches the caller, saying which task failed
    with pytest.raises(ZeroDivisionError) as failed:
        pymegalmm.cross_validate(model, client=client, run_dir=tmp_path / "e",
                                 setup=lambda m: 1 / 0, **kw)
    if sys.version_info >= (3, 11):
        assert "pymegalmm task of fold" in "".join(failed.value.__notes__)


def test_cross_validation_with_a_matrix_of_folds(sim, tmp_path):
    labels = pd.DataFrame(np.nan, index=sim.Y.index, columns=sim.Y.columns)
    labels.iloc[:10, :] = 1.0
    labels.iloc[10:20, :2] = 2.0
    labels.iloc[30, 0] = 3.0
    labels.iloc[31, 0] = 3.0
    cv = pymegalmm.cross_validate(template(sim, chains=1), folds=labels, iterations=8,
                                  run_dir=tmp_path / "cv")
    n = cv.accuracy.groupby("fold")["n_heldout"].sum()
    obs = sim.Y.notna().to_numpy()
    assert n[1] == obs[:10].sum() and n[2] == obs[10:20, :2].sum()
    assert np.isnan(cv.accuracy.query("fold == 3")["correlation"]).all()  # < 3 cells
    assert (tmp_path / "cv" / "fold-1" / "chain-0").is_dir()


# ----------------------------------------------------------------------------- arguments


def test_arguments_are_checked(sim, tmp_path):
    m = template(sim, processes=1)
    run = pymegalmm.run_chains
    import importlib.util

    # a client that is not one: named, once dask.distributed can be imported to check
    expected = (InputTypeError if importlib.util.find_spec("distributed") is not None
                else ImportError)
    with pytest.raises(expected, match="client"):
        run(m, iterations=5, client="tcp://localhost:8786", run_dir=tmp_path / "a")
    with pytest.raises(InputError, match="URLs"):
        run(m, iterations=5, run_dir="s3://bucket/runs")
    with pytest.raises(InputError, match="chains"):
        run(m, chains=[0, 2], iterations=5, run_dir=tmp_path / "a")
    with pytest.raises(InputError, match="iterations"):
        run(m, iterations=0, run_dir=tmp_path / "a")
    with pytest.raises(InputError, match="record no draw"):
        run(m, iterations=3, run_dir=tmp_path / "a")  # burn = 4
    with pytest.raises(LabelError, match="burn_in"):
        run(m, iterations=5, burn_in={"round": 2}, run_dir=tmp_path / "a")
    with pytest.raises(InputTypeError, match="burn_in\\['rounds'\\]"):
        run(m, iterations=5, burn_in={"rounds": "2"}, run_dir=tmp_path / "a")
    with pytest.raises(InputError, match="save_every"):
        run(m, iterations=5, save_every=0, run_dir=tmp_path / "a")
    with pytest.raises(InputTypeError, match="model"):
        run(sim.Y, iterations=5, run_dir=tmp_path / "a")
    cv = pymegalmm.cross_validate
    with pytest.raises(LabelError, match="folds_by"):
        cv(m, folds=3, folds_by="Line", iterations=5, run_dir=tmp_path / "b")
    with pytest.raises(InputError, match="folds"):
        cv(m, folds=1, iterations=5, run_dir=tmp_path / "b")
    with pytest.raises(InputTypeError, match="folds"):
        cv(m, folds="3", iterations=5, run_dir=tmp_path / "b")
    with pytest.raises(InputError, match="Y's shape"):
        cv(m, folds=np.ones((3, 3)), iterations=5, run_dir=tmp_path / "b")
    with pytest.raises(InputError, match="at least 70 groups"):
        cv(m, folds=70, folds_by="ID", iterations=5, run_dir=tmp_path / "b")
    with pytest.raises(InputTypeError, match="setup"):
        cv(m, folds=3, iterations=5, setup="map", run_dir=tmp_path / "b")
    with pytest.raises(InputError, match="seed"):
        cv(m, folds=3, iterations=5, seed=-1, run_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    m.sample(1, progress=False)
    with pytest.raises(InputError, match="unsampled"):
        run(m, iterations=5, run_dir=tmp_path / "a")


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    from pymegalmm.distributed import _check_client

    with pytest.raises(ImportError, match=r"pymegalmm\[distributed\]"):
        _check_client(object())
