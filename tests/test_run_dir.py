"""One run per run_dir, crash-safe commits, exact resume, damage detection, interruptions.

Each test here reproduces a defect measured on an earlier main (issue 13) and checks
that it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.errors import PosteriorFunctionError, RunDirectoryError, StoreError
from pymegalmm.run.run_dir import META_DIR, read_manifest

SIM = datasets.simulate_factor_data(n=60, t=5, k_true=2, missing=0.1, seed=3)
OTHER = datasets.simulate_factor_data(n=60, t=4, k_true=2, seed=4)


def model(run_dir, sim=SIM, seed=1, **kw) -> MegaLMM:
    kw = {"n_factors": 3, "h2_divisions": 5, "burn": 4, "thin": 2, "chains": 2,
          "verbose": False, **kw}
    return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, seed=seed,
                   run_dir=run_dir, **kw)


def stored(m: MegaLMM) -> xr.Dataset:
    return m.load_posterior(lazy=False)


# ------------------------------------------------------------------ one run per run_dir

def test_second_model_in_the_same_folder_is_refused_and_reads_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = model("MegaLMM_run")  # the default folder name
    early = model("MegaLMM_run", sim=OTHER)  # created before the first model saved
    first.sample(12, progress=False)
    first.save_posterior_chunk()
    saved = stored(first)
    with pytest.raises(RunDirectoryError) as info:
        model("MegaLMM_run", sim=OTHER)
    msg = str(info.value)
    assert "MegaLMM_run" in msg and "another model's run" in msg
    assert "overwrite=True" in msg and "MegaLMM.resume" in msg and "another run_dir" in msg
    assert "Y" in msg.split("differs in:")[1]  # says what differs
    with pytest.raises(RunDirectoryError, match="same model"):
        model("MegaLMM_run")  # the same model again: a new run, not an append
    # the model created earlier sees none of the first model's draws ...
    early.sample(12, progress=False)
    assert early.store.n_draws == 0
    assert early.reload_posterior().sizes["draw"] == early.n_draws == 4
    with pytest.raises(FileNotFoundError):
        early.load_posterior()
    # ... and can neither append to them nor delete them
    with pytest.raises(RunDirectoryError):
        early.save_posterior_chunk()
    early.reorder_factors()
    early.burn_in(rounds=1, iterations=2, progress=False)
    early.clear_posterior()
    xr.testing.assert_identical(stored(first), saved)
    assert first.store.n_draws == 4


def test_overwrite_deletes_only_pymegalmm_files(tmp_path):
    run = tmp_path / "run"
    first = model(run)
    first.sample(8, progress=False)
    first.save_posterior_chunk()
    second = model(run, sim=OTHER, overwrite=True)
    assert not run.exists() or not (run / META_DIR / "manifest.json").exists()
    second.sample(8, progress=False)
    second.save_posterior_chunk()
    assert read_manifest(run)["fingerprint"] == second.store.fingerprint
    assert stored(second).sizes["trait"] == 4
    # files pymegalmm did not write (plots, notes) are kept, overwrite or not
    (run / "Lambda.pdf").write_text("a plot")
    with pytest.raises(RunDirectoryError):
        model(run)
    third = model(run, overwrite=True)
    assert (run / "Lambda.pdf").read_text() == "a plot"
    assert not (run / "posterior").exists()
    third.sample(8, progress=False)
    third.save_posterior_chunk()
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".pymegalmm", "Lambda.pdf", "constant_data", "observed_data", "posterior",
         "sample_stats", "zarr.json"])


def test_store_of_an_older_version_is_refused_then_overwritten(tmp_path):
    from pymegalmm.run.store import PosteriorStore

    first = model(tmp_path / "x")
    first.sample(8, progress=False)
    PosteriorStore(tmp_path / "old").append(first.posterior)  # the old layout: draws/
    with pytest.raises(RunDirectoryError, match="older pymegalmm"):
        model(tmp_path / "old")
    m = model(tmp_path / "old", overwrite=True)
    assert not (tmp_path / "old" / "draws").exists()
    m.sample(8, progress=False)
    assert m.save_posterior_chunk() == 2


# ------------------------------------------------------------------------ exact resume

def test_resume_continues_exactly_from_the_last_chunk(tmp_path):
    whole = model(tmp_path / "whole")
    whole.sample(40, progress=False)
    whole.save_posterior_chunk()

    m = model(tmp_path / "run")
    m.sample(14, progress=False)
    m.save_posterior_chunk()
    m.sample(9, progress=False)  # lost in the "crash": never saved
    del m
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert again.iteration == 14 and again.n_draws == 0 and again.store.n_draws == 5
    again.sample(26, progress=False)
    assert again.iteration == 40
    again.save_posterior_chunk()
    xr.testing.assert_identical(stored(again), stored(whole))
    xr.testing.assert_allclose(again.posterior_means, whole.posterior_means, rtol=1e-12)
    np.testing.assert_array_equal(again.states[1].Lambda, whole.states[1].Lambda)


def test_resume_keeps_burn_moved_by_reordering_and_functions(tmp_path):
    m = model(tmp_path / "run", functions={"h2sum": _h2_sum})
    m.burn_in(rounds=1, iterations=10, progress=False)
    m.sample(6, progress=False)
    m.save_posterior_chunk()
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert again.control.burn == m.control.burn == 10
    again.sample(6, progress=False)
    m.sample(6, progress=False)
    xr.testing.assert_identical(again.posterior["h2sum"], m.posterior["h2sum"])
    # a lambda cannot be saved with the run: resume asks for it by name
    lam = model(tmp_path / "lam", functions={"f": lambda d: d["h2"].sum()})
    lam.sample(6, progress=False)
    lam.save_posterior_chunk()
    with pytest.raises(ValueError, match="'f'.*functions="):
        MegaLMM.resume(tmp_path / "lam", verbose=False)
    back = MegaLMM.resume(tmp_path / "lam", functions={"f": lambda d: d["h2"].sum()},
                          verbose=False)
    assert back.iteration == 6


def _h2_sum(draw):
    return draw["h2"].sum("trait")


def test_resume_of_a_folder_without_a_run_names_it(tmp_path):
    with pytest.raises(RunDirectoryError, match="no pymegalmm run to resume"):
        MegaLMM.resume(tmp_path / "nothing")


_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pymegalmm import MegaLMM, datasets
    from pymegalmm.run import run_dir as rd

    run, target, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sim = datasets.simulate_factor_data(n=60, t=5, k_true=2, missing=0.1, seed=3)
    if kill_at >= 0:  # die inside the kill_at-th atomic write of a commit
        calls = [0]
        real = rd.write_atomic
        def dying(path, write):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, write)
        rd.write_atomic = dying
    if os.path.exists(os.path.join(run, ".pymegalmm", "manifest.json")):
        m = MegaLMM.resume(run, verbose=False)
    else:
        m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
                    h2_divisions=5, burn=4, thin=2, chains=2, seed=1, run_dir=run,
                    verbose=False)
    while m.iteration < target:
        m.sample(min(3, target - m.iteration), progress=False)
        m.save_posterior_chunk()
    print("done", m.iteration)
""")


def _run_child(run: Path, target: int, kill_at: int = -1, timeout: float | None = None
               ) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # cwd: `python -c` puts the current folder first on sys.path, and a source tree there
    # (CI runs from the clone) would shadow the installed package
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(run), str(target), str(kill_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=run.parent)


def test_sigkill_at_any_point_then_resume_stores_exactly_the_uninterrupted_draws(tmp_path):
    target = 45
    whole = model(tmp_path / "whole")
    whole.sample(target, progress=False)
    whole.save_posterior_chunk()

    run = tmp_path / "run"
    # killed inside commits, at each of its atomic writes (spec, manifest, means, states)
    for kill_at in (1, 2, 3, 5, 9, 14):
        child = _run_child(run, target, kill_at)
        child.wait(timeout=120)
        assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
        manifest = read_manifest(run)
        if manifest is not None:  # whatever was committed reads back whole
            again = MegaLMM.resume(run, verbose=False)
            if again.store.n_draws:
                part = stored(again)
                xr.testing.assert_identical(
                    part, stored(whole).isel(draw=slice(0, part.sizes["draw"])))
    # killed from outside at random moments
    rng = np.random.default_rng(7)
    for _ in range(4):
        child = _run_child(run, target)
        time.sleep(rng.uniform(1.0, 3.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    child = _run_child(run, target)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err.decode()[-2000:]
    final = MegaLMM.resume(run, verbose=False)
    assert final.iteration == target
    xr.testing.assert_identical(stored(final), stored(whole))
    xr.testing.assert_allclose(final.posterior_means, whole.posterior_means, rtol=1e-12)


# ----------------------------------------------------------------------------- damage

@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_chunk_file_raises_naming_file_and_variable(tmp_path, damage):
    m = model(tmp_path / "run")
    m.sample(12, progress=False)
    m.save_posterior_chunk()
    files = sorted((tmp_path / "run" / "posterior" / "Lambda").rglob("*"))
    chunk = next(f for f in files if f.is_file() and f.name not in ("zarr.json", ".zarray",
                                                                      ".zattrs"))
    if damage == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    rel = chunk.relative_to(tmp_path / "run").as_posix()
    for call in (m.load_posterior, m.reload_posterior,
                 lambda: MegaLMM.resume(tmp_path / "run", verbose=False).load_posterior()):
        with pytest.raises(StoreError) as info:
            call()
        assert rel in str(info.value) and "'Lambda'" in str(info.value)


def test_interrupted_clear_leaves_no_half_deleted_store(tmp_path, monkeypatch):
    m = model(tmp_path / "run")
    m.sample(12, progress=False)
    m.save_posterior_chunk()
    import pymegalmm.run.store as store_module

    real_rmtree = store_module.shutil.rmtree

    def failing_rmtree(path, *args, **kwargs):  # deletes one variable, then fails
        real_rmtree(Path(path) / "Lambda")
        raise OSError("disk went away")

    monkeypatch.setattr(store_module.shutil, "rmtree", failing_rmtree)
    with pytest.raises(OSError, match="disk went away"):
        m.clear_posterior()
    monkeypatch.undo()
    # the clear was committed before deleting: no half-deleted posterior is ever read
    again = MegaLMM.resume(tmp_path / "run", verbose=False)
    assert again.store.n_draws == 0
    with pytest.raises(FileNotFoundError):
        again.load_posterior()
    m.clear_posterior()
    assert m.store.n_draws == 0
    with pytest.raises(FileNotFoundError):
        m.load_posterior()
    assert MegaLMM.resume(tmp_path / "run", verbose=False).iteration == 12


# ---------------------------------------------------------------------- interruptions

def test_failing_posterior_function_leaves_the_model_usable(tmp_path):
    calls = {"n": 0}

    def flaky(draw):
        calls["n"] += 1
        if calls["n"] == 11:  # chain 0 records 8 draws, then chain 1 fails at its third
            raise ZeroDivisionError("boom")
        return draw["h2"].sum("trait")

    m = model(tmp_path / "run", functions={"flaky": flaky}, processes=1)  # chains in turn
    with pytest.raises(PosteriorFunctionError, match="'flaky'.*ZeroDivisionError: boom"):
        m.sample(20, progress=False)
    assert [c.nrun for c in m.chains] == [20, 10] and m.iteration == 10
    post = m.posterior  # consistent: the draws every chain recorded (iterations 6 and 8)
    assert post.sizes["chain"] == 2 and post["flaky"].sizes["draw"] == post.sizes["draw"] == 2
    with pytest.raises(RuntimeError, match="sample\\(0\\)"):
        m.save_posterior_chunk()
    m.sample(0, progress=False)  # brings the other chain level
    assert m.iteration == 20
    # the draw of the failed iteration (10) is dropped in every chain, nothing else
    assert m.save_posterior_chunk() == 8 - 1
    m.sample(6, progress=False)
    assert m.posterior.sizes["draw"] == 3 and stored(m).sizes["draw"] == 7


def test_ctrl_c_stops_at_the_end_of_an_iteration_and_draws_stay_exact(tmp_path):
    m = model(tmp_path / "run", processes=1)  # chains in turn here: test_parallel.py has both
    m.sample(2, progress=False)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt, match="end of an iteration"):
        m.sample(10**7, progress=False)  # far longer than the timer, on any machine
    timer.join()
    assert 2 < max(c.nrun for c in m.chains) < 10**7 and not any(c.torn for c in m.chains)
    m.sample(0, progress=False)  # the chain not run yet is brought level
    assert m.posterior.sizes["draw"] == m.n_draws > 0
    m.sample(25, progress=False)
    whole = model(tmp_path / "whole", processes=1)
    whole.sample(m.iteration, progress=False)
    xr.testing.assert_identical(m.posterior, whole.posterior)


# ---------------------------------------------------------------- layout and sample stats

def test_run_dir_reads_as_an_arviz_datatree(tmp_path):
    import warnings

    m = model(tmp_path / "run")
    m.sample(20, progress=False)
    m.save_posterior_chunk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr notes the .pymegalmm folder is not zarr
        tree = xr.open_datatree(tmp_path / "run", engine="zarr", consolidated=False)
    assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(tree.children)
    np.testing.assert_array_equal(tree["observed_data"]["Y"].values, SIM.Y.to_numpy())
    assert tree["sample_stats"]["lp"].dims == ("chain", "draw")
    assert "lp" not in tree["posterior"].data_vars
    np.testing.assert_array_equal(tree["posterior"]["Lambda"].values, stored(m)["Lambda"].values)
    assert list(tree["posterior"]["trait"].values) == list(SIM.Y.columns)


def test_lp_is_the_log_density_of_eta_under_the_factor_model(tmp_path):
    from scipy.stats import norm

    m = model(tmp_path / "run", chains=1)  # F is recorded by default
    m.sample(7, progress=False)  # burn 4, thin 2: draws at 6 ... stop at 7
    m.sample(1, progress=False)  # iteration 8 is recorded: the state is that draw's
    post = m.posterior.isel(chain=0, draw=-1)
    s, scale, center = m.states[0], m.latent.scale, m.latent.center
    eta = s.Eta * scale + center
    mean = m.design.X1 @ post["B1"].values + post["F"].values @ post["Lambda"].values
    mean += m.design.random[0].Z @ post["U_R"].values
    var = (1 - post["resid_h2"].values.sum(0)) / post["tot_Eta_prec"].values
    expected = norm.logpdf(eta, mean, np.sqrt(var)).sum()
    np.testing.assert_allclose(float(post["lp"]), expected, rtol=1e-10)



def test_model_diagnostics_and_arviz_export_cover_saved_and_memory_draws(tmp_path):
    m = model(tmp_path / "run", burn=10)
    m.sample(50, progress=False)
    m.save_posterior_chunk()
    m.sample(20, progress=False)  # 20 saved + 10 in memory per chain
    with pytest.warns(UserWarning):  # 30 draws per chain: ESS far below 100 per chain
        table = m.diagnostics()
    assert {"h2", "G", "R", "U", "B1", "LtL", "lp"} <= set(table["variable"])
    assert (table["rhat"] > 0).all()
    idata = m.to_arviz(posterior_predictive=True)
    assert idata.posterior.sizes["draw"] == 30
    assert idata.sample_stats["lp"].shape == (2, 30)
    np.testing.assert_array_equal(idata.observed_data["Y"].values, SIM.Y.to_numpy())
    rep = idata.posterior_predictive["Y"]
    assert rep.dims == ("chain", "draw", "row", "trait") and rep.shape[1] == 30
    # replicated data scatter around E[Y] with the residual variance: their spread over
    # draws is at least the residual SD's (bound loose: 30 draws x 2 chains)
    resid_sd = np.sqrt(((1 - idata.posterior["resid_h2"].sum("component"))
                        / idata.posterior["tot_Eta_prec"]).mean(("chain", "draw")))
    spread = (rep - m.predict(kind="draws")).std(("chain", "draw")).mean("row")
    np.testing.assert_allclose(spread, resid_sd, rtol=0.25)
