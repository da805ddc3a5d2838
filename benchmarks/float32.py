"""Would a float32 path for the dense products pay?  The share of an iteration they take.

Usage::

    python benchmarks/float32.py                  # t = 5000 and 20000, n = 500, 15 factors
    python benchmarks/float32.py --t 5000 --iterations 20

Issue 15 asks for an opt-in float32 path for the dense products only if it makes an
iteration at least 1.5x faster at t >= 5000.  This script measures, on the model of
``benchmarks/iteration.py`` (``simulate_factor_data(n=500, t, k_true=10)``, 15 factors,
one random effect, complete data):

1. seconds per iteration;
2. the share ``f`` of that time spent in the sampler's tiled dense products (every call
   of the compiled ``gemm_columns`` kernel behind :func:`pymegalmm.linalg.matmul`, timed
   by a wrapper);
3. how much faster single precision runs the same products: ``r`` = time of
   ``(n x k) @ (k x t)``, ``(n x n) @ (n x k)`` and ``(k x n) @ (n x t)`` products in
   float64 over float32, NumPy on one BLAS thread (as each tile of the sampler's
   products);
4. the most float32 products could give (Amdahl): ``1 / ((1 - f) + f / r)``.

The rest of an iteration (normal and gamma draws, the grid's quadratic forms, the
per-trait solves, memory passes) stays in float64 either way.  Needs an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_average, table, time_products  # noqa: E402


def product_rate_ratio(n: int, t: int, k: int) -> float:
    """float64 time over float32 time for the iteration's product shapes (median of
    repeats, :func:`_common.time_products`), one BLAS thread: the sampler's tiles are
    serial BLAS calls, one per thread."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    shapes = [((n, k), (k, t)), ((n, n), (n, k)), ((k, n), (n, t))]
    seconds = {}
    with threadpool_limits(1, user_api="blas"):
        for dtype in (np.float64, np.float32):
            pairs = [(rng.standard_normal(a).astype(dtype), rng.standard_normal(b).astype(dtype))
                     for a, b in shapes]
            seconds[dtype] = time_products(
                [(f"{a.shape} @ {b.shape}", lambda a=a, b=b: a @ b) for a, b in pairs]
            )["seconds"]
    return seconds[np.float64] / seconds[np.float32]


def measure(t: int, iterations: int) -> dict[str, float]:
    """Seconds per iteration and the share of it in the tiled dense products."""
    import pymegalmm._kernels as kernels
    from pymegalmm import Control, MegaLMM, datasets

    sim = datasets.simulate_factor_data(n=500, t=t, k_true=10, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                    control=Control(n_factors=15, h2_divisions=20, burn=10**9), seed=1,
                    verbose=False, record=(), run_dir=os.path.join(tmp, "run"))
        m.sample(3, progress=False)  # warm up
        t0 = time.perf_counter()
        m.sample(iterations, progress=False)
        per_iteration = (time.perf_counter() - t0) / iterations

        real = kernels.gemm_columns
        spent = [0.0]

        def timed(*args, **kwargs):
            t1 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t1

        kernels.gemm_columns = timed
        try:
            t0 = time.perf_counter()
            m.sample(iterations, progress=False)
            wrapped = time.perf_counter() - t0
        finally:
            kernels.gemm_columns = real
    return {"t": t, "seconds_per_iteration": per_iteration,
            "product_share": spent[0] / wrapped,
            "rate_ratio": product_rate_ratio(500, t, 16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, nargs="*", default=[5000, 20000])
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    print(f"load average before: {load_average()}  (timings need an otherwise idle machine)")
    rows = []
    for t in args.t:
        r = measure(t, args.iterations)
        f, ratio = r["product_share"], r["rate_ratio"]
        bound = 1.0 / ((1.0 - f) + f / ratio)
        rows.append([t, f"{1e3 * r['seconds_per_iteration']:.1f}", f"{100 * f:.1f} %",
                     f"{ratio:.2f}x", f"{bound:.2f}x", "yes" if bound >= 1.5 else "no"])
        print(f"t={t} done", file=sys.stderr, flush=True)
    print(table(["t", "ms / iteration", "share in dense products", "float32 products faster by",
                 "best iteration speed-up", ">= 1.5x possible"], rows))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
