"""Seconds per Gibbs iteration with 1 and 2 threads (issue: the sampler).

Usage::

    python benchmarks/seconds_per_iteration.py            # demo MET + factor data t=1000
    python benchmarks/seconds_per_iteration.py --t 1000 5000

Cases: the demo's simulated multi-environment trial (500 lines x 20 environments,
~70% of cells missing, so imputation runs every iteration) and
``simulate_factor_data(n=500, t)`` with 15 factors and no missing data. Reports the
median of timed blocks after warm-up, for 1 and 2 kernel threads (BLAS is pinned
to one thread while sampling; see pymegalmm/linalg.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.demo import mask_cells


def time_model(make, threads: int, warmup: int, blocks: int, per_block: int) -> float:
    """Median seconds per iteration over ``blocks`` timed blocks of ``per_block`` iterations."""
    m = make(threads)
    m.sample(warmup, progress=False)
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        m.sample(per_block, progress=False)
        times.append((time.perf_counter() - t0) / per_block)
    return statistics.median(times)


def met_model(threads: int) -> MegaLMM:
    sim = datasets.simulate_met(seed=1)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    Y = Y.mask(mask_cells(Y, 0.2, np.random.default_rng(1)))
    return MegaLMM(Y, "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                   control=Control(n_factors=10, h2_divisions=20, burn=10**9,
                                   n_threads=threads), seed=1, verbose=False,
                   record=())


def factor_model(t: int):
    sim = datasets.simulate_factor_data(n=500, t=t, k_true=10, seed=1)

    def make(threads: int) -> MegaLMM:
        return MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                       control=Control(n_factors=15, h2_divisions=20, burn=10**9,
                                       n_threads=threads), seed=1, verbose=False, record=())
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, nargs="*", default=[1000])
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    cases = [("demo MET n=500 t=20 (70% missing, 10 factors)", met_model, 20)]
    cases += [(f"factor data n=500 t={t} (15 factors)", factor_model(t), max(5, 20000 // t))
              for t in args.t]
    print(f"{'case':<48} {'1 thread':>12} {'2 threads':>12} {'speed-up':>9}")
    for name, make, per_block in cases:
        s1 = time_model(make, 1, per_block, args.blocks, per_block)
        s2 = time_model(make, 2, per_block, args.blocks, per_block)
        print(f"{name:<48} {s1 * 1e3:>9.2f} ms {s2 * 1e3:>9.2f} ms {s1 / s2:>8.2f}x")


if __name__ == "__main__":
    main()
