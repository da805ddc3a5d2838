"""Chains in parallel worker processes: same draws, cores split, interruptions, dead workers."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.errors import PosteriorFunctionError
from pymegalmm.run.parallel import split_cores

SIM = datasets.simulate_factor_data(n=80, t=6, k_true=2, missing=0.1, seed=5)


def model(tmp_path, name, processes, chains=3, **kw) -> MegaLMM:
    return MegaLMM(SIM.Y, SIM.formula, data=SIM.data, relmat={"ID": SIM.K}, n_factors=3,
                   h2_divisions=5, burn=6, thin=2, chains=chains, processes=processes, seed=2,
                   verbose=False, run_dir=tmp_path / name, **kw)


def h2_total(draw):
    return draw["h2"].sum("trait")


def test_split_cores_never_oversubscribes():
    assert split_cores(4, None, 2) == (2, 1)
    assert split_cores(1, None, 8) == (1, 8)
    assert split_cores(2, None, 8) == (2, 4)
    assert split_cores(3, 1, 2) == (1, 2)
    assert split_cores(2, 5, 2) == (2, 1)
    for chains in range(1, 6):
        for cores in range(1, 9):
            p, t = split_cores(chains, None, cores)
            assert p * t <= max(cores, 1) and p <= chains


def test_chains_in_processes_equal_chains_run_in_turn(tmp_path):
    par = model(tmp_path, "par", None, functions={"h2_total": h2_total})
    seq = model(tmp_path, "seq", 1, functions={"h2_total": h2_total})
    assert par._processes == min(3, len(os.sched_getaffinity(0)))
    for n in (30, 11):  # two calls: states travel to the workers and back
        par.sample(n, progress=False)
        seq.sample(n, progress=False)
        xr.testing.assert_identical(par.posterior, seq.posterior)
    xr.testing.assert_allclose(par.posterior_means, seq.posterior_means, rtol=1e-13)
    par.save_posterior_chunk()
    seq.save_posterior_chunk()
    xr.testing.assert_identical(par.load_posterior(lazy=False), seq.load_posterior(lazy=False))
    par.close()


def test_functions_that_cannot_travel_run_the_chains_here_with_a_warning(tmp_path):
    lock = threading.Lock()  # not picklable, even by cloudpickle

    def f(draw):
        with lock:
            return draw["h2"].sum()

    m = model(tmp_path, "lam", None, functions={"f": f})
    with pytest.warns(UserWarning, match="one after the other"):
        m.sample(8, progress=False)
    assert m.posterior["f"].sizes["chain"] == 3 and m._pool is None


def test_lambdas_travel_with_cloudpickle(tmp_path):
    pytest.importorskip("cloudpickle")
    par = model(tmp_path, "lp", None, functions={"f": lambda d: d["h2"].sum("trait")})
    seq = model(tmp_path, "ls", 1, functions={"f": lambda d: d["h2"].sum("trait")})
    par.sample(10, progress=False)
    seq.sample(10, progress=False)
    assert par._pool is not None
    xr.testing.assert_identical(par.posterior["f"], seq.posterior["f"])
    par.close()


def test_error_in_a_worker_is_raised_and_the_model_stays_usable(tmp_path):
    m = model(tmp_path, "err", 2, chains=2, functions={"bad": _third_call_fails})
    with pytest.raises(PosteriorFunctionError, match="'bad'.*third call"):
        m.sample(20, progress=False)
    # each worker process failed at its third draw (iteration 12): two draws kept
    assert [c.nrun for c in m.chains] == [12, 12] and m.posterior.sizes["draw"] == 2
    m.sample(4, progress=False)
    assert m.posterior.sizes["draw"] == 4 and m.iteration == 16
    m.close()


_CALLS = {"n": 0}


def _third_call_fails(draw):
    _CALLS["n"] += 1
    if _CALLS["n"] == 3:
        raise ValueError("third call")
    return draw["h2"].sum()


def test_killed_worker_is_reported_and_the_model_continues(tmp_path):
    m = model(tmp_path, "kill", 2, chains=2)
    m.sample(2, progress=False)  # workers started
    victim = m._pool.workers[0].proc
    threading.Timer(0.5, lambda: os.kill(victim.pid, signal.SIGKILL)).start()
    with pytest.raises(RuntimeError, match="process running chain .* stopped"):
        m.sample(20000, progress=False)
    m.sample(0, progress=False)  # a new worker replaces the dead one
    assert len({c.nrun for c in m.chains}) == 1
    m.close()


def test_ctrl_c_with_chains_in_processes(tmp_path):
    whole = model(tmp_path, "whole", 1, chains=2)
    m = model(tmp_path, "int", 2, chains=2)
    m.sample(2, progress=False)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        m.sample(20000, progress=False)
    assert not any(c.torn for c in m.chains)
    m.sample(0, progress=False)
    n = m.iteration
    assert 2 < n < 20002
    whole.sample(n, progress=False)
    xr.testing.assert_identical(m.posterior, whole.posterior)
    m.close()


def test_workers_import_what_this_process_imports(tmp_path, monkeypatch):
    # a source tree in the current folder (e.g. a clone without compiled kernels) must not
    # shadow the installed package in the workers: `python -m` would put it first
    shadow = tmp_path / "pymegalmm"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing source tree')\n")
    monkeypatch.chdir(tmp_path)
    m = model(tmp_path, "cwd", 2, chains=2)
    m.sample(4, progress=False)
    assert m._pool is not None and m.iteration == 4
    m.close()


def test_a_torn_chain_is_refused_in_processes_too(tmp_path):
    m = model(tmp_path, "torn", 2, chains=2)
    m.sample(2, progress=False)
    m.chains[1].torn = True  # as after a second Ctrl-C inside an iteration
    with pytest.raises(RuntimeError, match=r"chain\(s\) \[1\].*MegaLMM.resume"):
        m.sample(2, progress=False)
    assert [c.nrun for c in m.chains] == [2, 2]
    m.close()
