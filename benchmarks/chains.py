"""Several chains: in parallel processes vs one after the other, and CPU contention.

Run on an otherwise idle 2-core machine (``uptime`` is printed before and after)::

    python benchmarks/chains.py            # n=500, t=1000, 15 factors, 150 iterations
    python benchmarks/chains.py --quick    # t=100, 60 iterations: a functional check

Cases (each in a fresh process, so that OpenMP reads its settings at start-up):

1. **sequential**: ``chains=2, processes=1``: both chains in this process, one after
   the other, with every core.
2. **parallel**: ``chains=2`` (default: one process per chain, cores split, 1 thread
   each).  Speed-up = sequential / parallel.
3. **oversubscribed**: two independent programs at once, each one chain with 2
   threads on the 2 cores (4 threads on 2 cores), with OpenMP threads waiting
   passively (``OMP_WAIT_POLICY=PASSIVE``, the default until issue 15's fifth round),
   spinning briefly (``GOMP_SPINCOUNT=1000``, pymegalmm's default now) and actively
   (``OMP_WAIT_POLICY=ACTIVE``, the spinning that made an iteration 5-7x slower under
   contention).  The figure is
   the wall time for both programs next to the sequential case: <= 1 means running
   them together is not slower than one after the other.
4. **contention**: one chain with 2 threads while another process keeps one core
   busy (a Python busy loop), the three ways of waiting: ms per iteration, and the
   ratio to the same run on the idle machine.
5. **small data** (``--small``): one chain, t in {20, 100, 1000}, 1 vs 2 kernel threads
   with each way of waiting: why data under
   ``pymegalmm.model.SMALL_PROBLEM_CELLS`` cells sample on one thread by default.
6. **several trait groups** (``--groups``): one chain, t = 20, 70 % of the cells missing,
   a 16-group missing-data map, n from 100 to 500, 1 vs 2 kernel threads.  Each group's
   rotations cost ``n_s^2`` per column whatever t, so a second thread might pay on few
   traits; measured, it does not reliably (benchmarks/README.md, round six), so the
   rule above stays ``n x t`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys, time
from pymegalmm import Control, MegaLMM, datasets
t, iters, chains, processes, threads = (int(a) for a in sys.argv[1:6])
sim = datasets.simulate_factor_data(n=500, t=t, k_true=10, seed=1)
m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=15,
            h2_divisions=20, burn=10**9, chains=chains, processes=processes or None,
            control=Control(n_threads=threads or None), seed=1, verbose=False,
            run_dir="/tmp/pymegalmm_bench_chains_%d" % time.time_ns(), record=["Lambda"])
m.sample(2, progress=False)  # workers started, caches warm
print("READY", flush=True)
sys.stdin.readline()  # the parent starts every program's sampling at once
t0 = time.perf_counter()
m.sample(iters, progress=False)
wall = time.perf_counter() - t0
m.close()
print("@@" + json.dumps({"wall": wall, "ms_per_iter_per_chain": wall / iters * 1e3}))
"""

#: libgomp's spin count for the "spin" mode: waiting threads spin this many times, then
#: sleep (``GOMP_SPINCOUNT``, with ``OMP_WAIT_POLICY`` unset)
SPIN = "1000"

_BUSY = "import time\nwhile True:\n    pass\n"


def _start(t: int, iters: int, chains: int, processes: int, threads: int,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(t), str(iters), str(chains), str(processes),
         str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})


def _go(*procs: subprocess.Popen) -> None:
    """Wait until every program has set up, then let them all sample."""
    for p in procs:
        while p.stdout.readline().strip() != "READY":
            if p.poll() is not None:
                raise RuntimeError("benchmark child stopped during setup")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def _results(*procs: subprocess.Popen) -> list[dict]:
    """Start the programs' sampling together and return what each measured."""
    _go(*procs)
    return [_result(p) for p in procs]


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("@@")]
    if proc.returncode or not lines:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1][2:])


def run(t: int, iters: int) -> None:
    print(f"load average before: {os.getloadavg()}")
    print(f"case: n=500, t={t}, 15 factors, 20 grid points, {iters} iterations per chain\n")
    passive, active = {"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}
    modes = (("passive", passive), ("spin", {"GOMP_SPINCOUNT": SPIN}), ("active", active))

    seq = _results(_start(t, iters, 2, 1, 0, passive))[0]["wall"]
    par = _results(_start(t, iters, 2, 0, 0, passive))[0]["wall"]
    print(f"2 chains one after the other (1 process, 2 threads): {seq:7.2f} s")
    print(f"2 chains in 2 processes x 1 thread:                 {par:7.2f} s   "
          f"speed-up {seq / par:.2f}x")

    for name, env in modes:
        both = max(r["wall"] for r in _results(*[_start(t, iters, 1, 1, 2, env)
                                                  for _ in range(2)]))
        print(f"2 programs at once, 2 threads each ({name:7s} waiting): {both:7.2f} s   "
              f"/ one after the other {both / seq:.2f}")

    print()
    idle = {}
    for name, env in modes:
        idle[name] = _results(_start(t, iters, 1, 1, 2, env))[0]["ms_per_iter_per_chain"]
        busy = subprocess.Popen([sys.executable, "-c", _BUSY])
        try:
            loaded = _results(_start(t, iters, 1, 1, 2, env))[0]["ms_per_iter_per_chain"]
        finally:
            busy.kill()
            busy.wait()
        print(f"1 chain, 2 threads, {name:7s} waiting: idle {idle[name]:7.2f} ms/iter, one core "
              f"busy {loaded:7.2f} ms/iter ({loaded / idle[name]:.2f}x)")
    print(f"\npassive / active on the idle machine: {idle['passive'] / idle['active']:.2f}; "
          f"spin / active: {idle['spin'] / idle['active']:.2f}")
    print(f"load average after: {os.getloadavg()}")


def small(iters: int = 200) -> None:
    """Section 5: 1 vs 2 kernel threads for small t, with each way of waiting."""
    print(f"load average before: {os.getloadavg()}")
    passive, active = {"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}
    spin = {"GOMP_SPINCOUNT": SPIN}
    print("ms/iteration: 1 thread, then 2 threads waiting passively / spinning briefly "
          "(the default) / actively")
    print("t      1 thread  2 passive  2 brief spin  2 active")
    for t in (20, 100, 1000):
        one = _results(_start(t, iters, 1, 1, 1, spin))[0]["ms_per_iter_per_chain"]
        two = [_results(_start(t, iters, 1, 1, 2, env))[0]["ms_per_iter_per_chain"]
               for env in (passive, spin, active)]
        print(f"{t:<6} {one:9.2f} {two[0]:10.2f} {two[1]:13.2f} {two[2]:9.2f}")
    print(f"load average after: {os.getloadavg()}")


_GROUPS_CHILD = r"""
import sys, time
import numpy as np
from pymegalmm import Control, MegaLMM, datasets
n, iters, threads = (int(a) for a in sys.argv[1:4])
sim = datasets.simulate_factor_data(n=n, t=20, k_true=5, seed=1)
rng = np.random.default_rng(1)
missing = rng.random(sim.Y.shape) > 0.3      # 70 % missing, like the maize trial
missing[missing.all(axis=1), 0] = False      # every row keeps an observation
m = MegaLMM(sim.Y.mask(missing), sim.formula, data=sim.data, relmat={"ID": sim.K},
            control=Control(n_factors=15, h2_divisions=20, burn=10**9,
                            n_threads=threads or None), seed=1, verbose=False,
            run_dir="/tmp/pymegalmm_bench_groups_%d" % time.time_ns(), record=["Lambda"])
maps, _ = m.missing_data_maps(max_groups=16)
m.set_missing_data_map(maps[-1])
m.sample(20, progress=False)
t0 = time.perf_counter()
m.sample(iters, progress=False)
ms = (time.perf_counter() - t0) / iters * 1e3
print("@@%d %.3f %s" % (len(maps[-1]), ms, m._kernel_threads or "all"))
"""


def groups(iters: int = 300) -> None:
    """Section 6: 1 vs 2 kernel threads with several trait groups (t = 20)."""
    print(f"load average before: {os.getloadavg()}")
    print("t = 20, 70 % missing at random, 15 factors, the search's 16-group map; "
          "ms/iteration")
    print("n      groups  1 thread  2 threads  2 / 1   default (threads)")
    for n in (100, 200, 300, 400, 500):
        out = {}
        for threads in (1, 2, 0):
            res = subprocess.run([sys.executable, "-c", _GROUPS_CHILD, str(n), str(iters),
                                  str(threads)], capture_output=True, text=True, check=True)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("@@")][-1]
            g, ms, used = line[2:].split()
            out[threads] = (int(g), float(ms), used)
        print(f"{n:<6} {out[1][0]:6d} {out[1][1]:9.2f} {out[2][1]:10.2f} "
              f"{out[2][1] / out[1][1]:6.2f}   {out[0][1]:.2f} ({out[0][2]})")
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="t=100, 60 iterations")
    parser.add_argument("--t", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--small", action="store_true", help="section 5 only")
    parser.add_argument("--groups", action="store_true", help="section 6 only")
    args = parser.parse_args()
    if args.small:
        small()
    elif args.groups:
        groups()
    elif args.quick:
        run(100, 60)
    else:
        run(args.t, args.iterations)


if __name__ == "__main__":
    main()
