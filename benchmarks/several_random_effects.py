"""Seconds per Gibbs iteration with several random effects (performance issue, round two).

Usage::

    python benchmarks/several_random_effects.py                 # the issue's case (~1 min)
    python benchmarks/several_random_effects.py --dense         # also the dense back-end
    python benchmarks/several_random_effects.py --threads 1 2   # per thread count
    python benchmarks/several_random_effects.py --h2-step-size 0.2  # another MH step size

Case: ``~ 1 + (1|Line) + (1|Plot)`` on ``simulate_two_random_effects(n_lines=500,
n_reps=1, n_plots=40, t=1000, k_true=10)`` (n = 500 rows, 500 lines, 40 plots), 15
factors, ``h2_divisions=10`` (55 grid points), no missing data, nothing recorded.
``--n-lines 250 --n-reps 2`` gives the older 250 lines x 2 replicates design.
Each case runs twice: with the exact full-grid h2 draw (``h2 step`` = full grid) and
with the Metropolis-Hastings h2 step, ``Control(h2_step_size=0.1)`` by default (one
grid spacing: up to 8 neighbours per grid point; ``--h2-step-size 0`` skips it).

For each back-end (the one the model chooses, the low-rank back-end here, and with
``--dense`` the dense back-end forced) and thread count: the constructor's wall time
(setup), seconds per iteration (median of timed blocks after warm-up), the speed-up
over R MegaLMM 0.9.5 on the same case (1.525 s / iteration), and the floor of
``benchmarks/iteration.py`` (the iteration's necessary products, draws and memory
passes at this machine's measured rates) with iteration / floor.  The load average
is printed before and after: timings need an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import cpu_count, load_average, table
from iteration import case_shape, measure_floor

import pymegalmm.core.precompute as precompute
from pymegalmm import Control, MegaLMM, datasets

#: R MegaLMM 0.9.5, the same case (performance issue, round two).
R_SECONDS_PER_ITERATION = 1.525


def build(sim, threads: int | None, dense: bool, h2_step_size: float | None = None
          ) -> tuple[MegaLMM, float]:
    """The model (dense back-end forced with ``dense``) and its constructor's wall time."""
    before = precompute.LOWRANK_MAX_FRACTION
    if dense:
        precompute.LOWRANK_MAX_FRACTION = -1.0
    try:
        t0 = time.perf_counter()
        m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"Line": sim.K},
                    control=Control(n_factors=15, h2_divisions=10, burn=10**9,
                                    n_threads=threads, h2_step_size=h2_step_size),
                    seed=1, verbose=False, record=())
        return m, time.perf_counter() - t0
    finally:
        precompute.LOWRANK_MAX_FRACTION = before


def seconds_per_iteration(m: MegaLMM, warmup: int, blocks: int, per_block: int) -> float:
    """Median over ``blocks`` timed ``sample(per_block)`` calls, after ``warmup`` iterations."""
    m.sample(warmup, progress=False)
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        m.sample(per_block, progress=False)
        times.append((time.perf_counter() - t0) / per_block)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-lines", type=int, default=500)
    parser.add_argument("--n-reps", type=int, default=1)
    parser.add_argument("--t", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="*", default=[None],
                        help="kernel thread counts (default: the machine's)")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=4)
    parser.add_argument("--h2-step-size", type=float, default=0.1,
                        help="h2_step_size of the Metropolis-Hastings runs (0: none)")
    parser.add_argument("--dense", action="store_true",
                        help="also time the dense back-end (one Cholesky per grid point)")
    args = parser.parse_args()

    print(f"load average before: {load_average()} ({cpu_count()} CPUs; timings need an "
          "otherwise idle machine)")
    sim = datasets.simulate_two_random_effects(n_lines=args.n_lines, n_reps=args.n_reps,
                                              n_plots=40, t=args.t, k_true=10, seed=1)
    print(f"simulate_two_random_effects(n_lines={args.n_lines}, n_reps={args.n_reps}, "
          f"n_plots=40, t={args.t}, k_true=10), ~ 1 + (1|Line) + (1|Plot), 15 factors, "
          "h2_divisions=10")
    rows = []
    steps = [None] + ([args.h2_step_size] if args.h2_step_size > 0 else [])
    cases = [(dense, threads, step) for dense in ((False, True) if args.dense else (False,))
             for threads in args.threads for step in steps]
    for dense, threads, step in cases:
        m, setup = build(sim, threads, dense, step)
        warmup, blocks, per_block = ((2, 3, 1) if dense else
                                     (3, args.blocks, args.per_block))
        it = seconds_per_iteration(m, warmup, blocks, per_block)
        floor = measure_floor(case_shape(m, 15), threads, 0.2)
        re = m.data.groups[0].re
        rows.append([type(re).__name__, "default" if threads is None else threads,
                     "full grid" if step is None else f"MH {step:g}", m.grid.shape[1],
                     f"{setup:.2f}", f"{it:.4f}",
                     f"{R_SECONDS_PER_ITERATION / it:.1f}", f"{floor['seconds']:.4f}",
                     f"{it / floor['seconds']:.2f}"])
        del m
    print(table(["back-end", "threads", "h2 step", "grid points", "setup s", "s/iter",
                 f"x faster than R ({R_SECONDS_PER_ITERATION} s/iter)", "floor s",
                 "iter/floor"], rows))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
