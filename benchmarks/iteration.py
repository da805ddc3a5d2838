"""Cost of one Gibbs iteration vs. traits, threads, rows and random effects (performance issue).

Usage::

    python benchmarks/iteration.py                      # everything (about 7-10 minutes)
    python benchmarks/iteration.py --quick              # t <= 1000, fewer iterations (~1 min)
    python benchmarks/iteration.py --only scaling,threads --json out.json

Sections (``--only``, comma-separated; default all):

scaling  ``simulate_factor_data(n=500, t, k_true=10)``, 15 factors, ``h2_divisions=20``,
         one random effect, no missing data, t in {20, 100, 1000, 5000, 20000}: setup
         seconds, seconds per iteration (median of timed blocks, >= 20 iterations after
         warm-up), peak resident memory of the process that ran the case, the floor
         (below) and iteration / floor, speed-up vs. R MegaLMM 0.9.5
         (``/work/shared/data/r_reference.md``), and the linear-scaling check
         (t=20000 vs. t=1000).
threads  ``Control(n_threads=1)`` vs. ``n_threads=2`` at t=1000 and t=5000.
n        n in {500, 2000, 5000} rows at t=1000 (setup includes an n x n eigendecomposition).
two_re   Two random effects (``simulate_two_random_effects``, 500 lines x 1 rep = 500 rows,
         40 plots, t=1000, ``h2_divisions=10``: 55 grid points), with its floor and the
         speed-up vs. R's 1.525 s / iteration.
memory   t=20000, n=500, 50 factors, recording ``Lambda`` (burn 0, default thin 2).

The floor
---------
The time one iteration's necessary work takes at this machine's rates, measured in
the same process right after the case's iterations (:func:`measure_rates`): the
flops of the products the iteration (``pymegalmm/core/iteration.py``) needs at the
DGEMM rate, plus its random draws at the RNG rates, plus one pass over each
``n x t`` array at the memory bandwidth.  Sizes: ``n`` rows, ``t`` traits, ``k``
factors, ``b1`` fixed effects, ``p = k + b1``, ``G`` grid points (``G' = min(G, t)``
in use by the traits), ``r`` random-effect coefficients, ``r_o`` the low-rank
coefficients with several random effects (``S`` distinct diagonal parts of the grid),
``m`` imputed cells; one trait group; a multiply-add counts 2 flops:

=====================================================  ===================================
product (step of the iteration)                        flops
=====================================================  ===================================
1. Gram statistics ``X'V^-1 [X, y]``, ``y'V^-1 y``       ``2 n p (p G' + t) + 2 n t``
1. per-trait regressions (``p x p`` Cholesky, solves)    ``t (p^3 / 3 + 4 p^2)``
1. residuals ``y - X1 B1 - F Lambda``                    ``2 n p t``
2, 4. quadratic forms at every grid point               ``2 G n (t + k)``
6. factor scores: ``E L_w'`` and ``Sigma``               ``2 n t k + 2 k^2 t``
6. factor scores: ``k x k`` solves for every row        ``3 n k^2 + k^3 / 3``
several REs, low rank: Gram correction ``H_g' [X, y]``   ``2 n r_o (p G' + t)``
several REs, low rank: quadratic forms                  ``2 S n r_o (t + k) + G r_o^2 (t + k)``
several REs, low rank: effect draws                     ``(t + k) (4 n r_o + r_o^2)``
9. imputation: ``E[Eta]`` in the original rows           ``2 n k t + 2 n^2 t``
9. imputation: imputed ``Eta`` rotated back (``Qt Eta``)  ``2 n^2 t``
=====================================================  ===================================

With complete data there is no ``n x n x t`` product at all: the rows are rotated
once at setup, and the factor scores are drawn in rotated rows.  Random draws:
``p t + r t + r k + n k + m`` normals (coefficients, ``U_R``, ``U_F``, ``F``, imputed
cells), ``t + k + k t`` gammas (total precisions, ARD local precisions), ``t + k +
100 k`` uniforms (grid draws, ARD sweeps).  Memory: one pass over ``QtEta`` (read),
``E`` and the residual ``Eta - X1 B1 - Z U_R`` (written), ``U_R`` (``r x t``,
written); with imputation also ``Eta``, ``E[Eta]`` and ``QtEta`` (written).  The
elementwise work (random-effect draws with one random effect, grid probabilities,
the ARD update) is counted only through these passes and draws, so the floor is a
lower bound.  Rates: DGEMM ``(n x n) @ (n x 1000)`` (faster of tiled ``matmul``
under ``sampling_threads`` and NumPy on all threads), ``linalg.standard_normal`` /
``standard_gamma`` / ``Generator.random`` for 10^6 numbers, ``numpy.copyto`` of
128 MiB (one thread or one per CPU, bytes read plus written).

Every case runs in its own child process (this script with ``--case``), so its peak
resident memory (``RUSAGE_SELF.ru_maxrss``) is its own.  Simulated data are made once
per shape in another child (``--make-data``) and passed as a pickle: the simulators
also build the true t x t covariances (about 13 GB at t=20000), which must not count.
``--quick`` runs t in {20, 100, 1000} only (memory section at t=1000, n section without
n=5000) with fewer iterations.  Timings need an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    cpu_count,
    emit_result,
    fmt,
    load_average,
    peak_rss_mb,
    run_child,
    table,
    time_iterations,
    time_products,
)

from pymegalmm.posterior import DEFAULT_RECORD

SCRIPT = str(Path(__file__).resolve())
SECTIONS = ("scaling", "threads", "n", "two_re", "memory")

# R MegaLMM 0.9.5 on this machine class (r_reference.md, "Cost per iteration vs. number
# of traits": n=500, ~1 + (1|ID), h2_divisions 20, 2 cores; 10 factors at t=20, else 15).
R_SECONDS_PER_ITERATION = {20: 0.016, 100: 0.043, 1000: 0.269, 5000: 1.334}
R_SETUP_SECONDS = {20: 2.6, 100: 2.7, 1000: 2.9, 5000: 4.2}
# R MegaLMM 0.9.5, (1|Line) + (1|Plot), 500 lines, 40 plots, n=500, t=1000, 15 factors,
# h2_divisions=10 (performance issue, round two).
R_TWO_RE_SECONDS_PER_ITERATION = 1.525

T_FULL = (20, 100, 1000, 5000, 20000)
T_QUICK = (20, 100, 1000)
N_FACTORS = 15
H2_DIVISIONS = 20
K_TRUE = 10
DATA_SEED = 1

# Targets of the performance issue.
FLOOR_RATIO_MAX = 2.0  # iteration / floor, t >= 1000 (issue 15; 2.5 in round one)
T20000_MAX_SECONDS = 0.100  # s / iteration at t=20000, n=500 (issue 15)
SCALING_MAX = 22.0  # s/iter(t=20000) / s/iter(t=1000)
THREAD_SPEEDUP_MIN = 1.6  # 2 threads vs. 1, t >= 1000
MEMORY_MAX_GB = 4.0  # peak RSS, t=20000, n=500, 50 factors
R_SPEEDUP_MIN = 10.0  # vs. R MegaLMM, t >= 1000


# =========================================================================== children


def make_data(spec: dict[str, Any]) -> None:
    """Child: simulate one data set and pickle what the model constructor needs."""
    from pymegalmm import datasets

    t0 = time.perf_counter()
    if spec["kind"] == "factor":
        sim = datasets.simulate_factor_data(n=spec["n"], t=spec["t"], k_true=K_TRUE,
                                            seed=DATA_SEED)
        relmat = {"ID": sim.K}
    elif spec["kind"] == "two_re":
        sim = datasets.simulate_two_random_effects(
            n_lines=spec["n"], n_reps=1, n_plots=40, t=spec["t"], k_true=K_TRUE, seed=DATA_SEED
        )
        relmat = {"Line": sim.K}
    else:
        raise ValueError(f"unknown data kind {spec['kind']!r}")
    payload = {"Y": sim.Y, "data": sim.data, "formula": sim.formula, "relmat": relmat}
    with open(spec["path"], "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    emit_result({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()})


def run_case(spec: dict[str, Any]) -> None:
    """Child: build one model, time its iterations (and the floor), report peak memory."""
    from pymegalmm import Control, MegaLMM

    rss_imports = peak_rss_mb()
    with open(spec["data_path"], "rb") as fh:
        d = pickle.load(fh)
    rss_data = peak_rss_mb()
    n, t = d["Y"].shape
    control = Control(n_factors=spec["n_factors"], h2_divisions=spec["h2_divisions"],
                      burn=spec["burn"], n_threads=spec["n_threads"])
    t0 = time.perf_counter()
    run_dir = tempfile.mkdtemp(prefix="pymegalmm_bench_")
    m = MegaLMM(d["Y"], d["formula"], data=d["data"], relmat=d["relmat"], control=control,
                seed=1, verbose=False, record=tuple(spec["record"]), run_dir=run_dir)
    setup_wall = time.perf_counter() - t0
    del d
    grid = getattr(m, "grid", None)
    out: dict[str, Any] = {
        "n": n, "t": t, "n_factors": spec["n_factors"], "n_threads": spec["n_threads"],
        "grid_points": None if grid is None else int(grid.shape[1]),
        "setup_seconds_wall": setup_wall,
        "setup_seconds": float(getattr(m, "setup_seconds", float("nan"))),
    }
    out.update(time_iterations(m, spec["warmup"], spec["blocks"], spec["per_block"],
                               stream=spec.get("stream", False)))
    if spec.get("stream"):
        out["draws_on_disk"] = m.store.n_draws
        out["bytes_per_draw"] = m.estimate_memory(m.control.thin)
        m.clear_posterior()
    shutil.rmtree(run_dir, ignore_errors=True)
    # Peak memory of building and sampling, before the floor's buffers are allocated.
    out.update(rss_after_imports_mb=rss_imports, rss_after_data_mb=rss_data,
               peak_rss_mb=peak_rss_mb())
    if spec["record"]:
        out.update(_recorded(m))
    if spec["floor"]:
        out["floor"] = measure_floor(case_shape(m, spec["n_factors"]), spec["n_threads"],
                                     spec["floor_seconds"])
    emit_result(out)


def _recorded(m: Any) -> dict[str, Any]:
    """Number and bytes of the draws chain 0 keeps in memory (None if not available)."""
    try:
        store = m.stores[0]
        return {"draws": len(store),
                "draw_bytes": int(sum(a.nbytes for lst in store.draws.values() for a in lst))}
    except (AttributeError, IndexError, TypeError):
        return {"draws": None, "draw_bytes": None}


def case_shape(m: Any, n_factors: int) -> dict[str, Any]:
    """The sizes :func:`necessary_work` needs, read from a built model."""
    d = m.data
    re = d.groups[0].re
    return {
        "n": int(d.n), "t": int(d.t), "k": int(n_factors), "b1": int(d.X1.shape[1]),
        "G": int(d.grid.shape[1]), "r": int(re.n_coef),
        "r_o": int(getattr(re, "rank", 0)),
        "n_diagonals": int(getattr(re, "n_diagonals", d.grid.shape[1])),
        "n_missing": int(sum(g.imputed[0].size for g in d.groups)),
        "backend": type(re).__name__, "groups": len(d.groups),
    }


def necessary_work(shape: dict[str, Any]) -> dict[str, Any]:
    """Flops, random draws and n x t memory passes one iteration needs (module docstring).

    ``shape``: ``n, t, k, b1, G, r, r_o, n_diagonals, n_missing`` as in
    :func:`case_shape` (one trait group).  Flops count a multiply-add as 2.
    """
    n, t, k, b1, G = (shape[x] for x in ("n", "t", "k", "b1", "G"))
    r, ro, S, miss = shape["r"], shape["r_o"], shape["n_diagonals"], shape["n_missing"]
    p = k + b1
    G_used = min(G, t)  # grid points in use by the traits (one Gram matrix each)
    products = {
        "Gram X'V^-1[X y], y'V^-1y": 2 * n * p * (p * G_used + t) + 2 * n * t,
        "regressions (p x p, per trait)": t * (p**3 // 3 + 4 * p * p),
        "residuals y - X1 B1 - F Lambda": 2 * n * p * t,
        "quadratic forms, all grid points": 2 * G * n * (t + k),
        "factor scores: E L_w', Sigma": 2 * n * t * k + 2 * k * k * t,
        "factor scores: k x k solves": 3 * n * k * k + k**3 // 3,
    }
    if shape["backend"] == "DenseRandomEffects":  # several REs, one n x n factor per point
        products["quadratic forms, all grid points"] = G * n * n * (t + k)
        products["dense: Gram statistics"] = G_used * n * n * p + n * n * t
        products["dense: effect draws"] = (t + k) * (2 * n * r + 3 * r * r)
    if ro:  # several random effects, Woodbury: n x r_o products per column
        products["low rank: Gram correction"] = 2 * n * ro * (p * G_used + t)
        products["low rank: quadratic forms"] = 2 * S * n * ro * (t + k) + G * ro * ro * (t + k)
        products["low rank: effect draws"] = (t + k) * (4 * n * ro + ro * ro)
    if miss:  # imputation: E[Eta] in the original rows, and Eta rotated back
        products["imputation: Q (F Lambda + ...)"] = 2 * n * k * t + 2 * n * n * t
        products["imputation: Qt Eta"] = 2 * n * n * t
    draws = {
        "normals": p * t + r * t + r * k + n * k + miss,
        "gammas": t + k + k * t,
        "uniforms": t + k + 100 * k,
    }
    passes = {"QtEta (read)": n * t, "E (write)": n * t, "residual (write)": n * t,
              "U_R (write)": r * t}
    if miss:
        passes.update({"Eta (write)": n * t, "E[Eta] (write)": n * t,
                       "QtEta (write)": n * t})
    return {"products": products, "draws": draws, "passes": passes}


def measure_rates(n: int, n_threads: int | None, min_seconds: float) -> dict[str, Any]:
    """This machine's DGEMM, random-number and memory rates, measured now.

    DGEMM: ``(n x n) @ (n x 1000)``, the faster of NumPy with all threads and
    ``pymegalmm.linalg.matmul`` (tiled over OpenMP threads) under
    ``sampling_threads(n_threads)``.  Draws: ``linalg.standard_normal`` and
    ``linalg.standard_gamma`` (the sampler's block-parallel draws) for 10^6 numbers,
    ``Generator.random`` for uniforms.  Memory: ``numpy.copyto`` of 2^24 doubles,
    bytes read plus written, the faster of one thread and one per CPU (each a slice).
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import threadpool_limits

    from pymegalmm.linalg import matmul, sampling_threads, standard_gamma, standard_normal

    rng = np.random.default_rng(0)
    cols = 1000
    A = np.asfortranarray(rng.standard_normal((n, n)))
    B = np.asfortranarray(rng.standard_normal((n, cols)))
    C_f, C_c = np.empty((n, cols), order="F"), np.empty((n, cols))
    flops = 2.0 * n * n * cols
    threads = cpu_count()
    with sampling_threads(n_threads):
        tiled = time_products([("dgemm", lambda: matmul(A, B, out=C_f))],
                              min_seconds=min_seconds)["seconds"]
        m = 10**6
        normal = time_products([("n", lambda: standard_normal(rng, 1000, 1000))],
                               min_seconds=min_seconds)["seconds"]
        gamma = time_products([("g", lambda: standard_gamma(rng, 2.0, 1000, 1000))],
                              min_seconds=min_seconds)["seconds"]
    uniform = time_products([("u", lambda: rng.random(m))], min_seconds=min_seconds)["seconds"]
    with threadpool_limits(limits=threads, user_api="blas"):
        numpy_all = time_products([("dgemm", lambda: np.matmul(A, B, out=C_c))],
                                  min_seconds=min_seconds)["seconds"]
    big = 2**24
    src, dst = np.ones(big), np.empty(big)
    one = time_products([("copy", lambda: np.copyto(dst, src))],
                        min_seconds=min_seconds)["seconds"]
    chunks = np.array_split(np.arange(big), threads)
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in chunks]
    with ThreadPoolExecutor(threads) as pool:
        def copy_all() -> None:
            list(pool.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))
        many = time_products([("copy", copy_all)], min_seconds=min_seconds)["seconds"]
    return {
        "dgemm_flops_per_s": flops / min(tiled, numpy_all),
        "dgemm_from": "tiled" if tiled <= numpy_all else f"numpy {threads} thr",
        "normals_per_s": m / normal, "gammas_per_s": m / gamma, "uniforms_per_s": m / uniform,
        "bytes_per_s": 2 * 8 * big / min(one, many),
    }


def measure_floor(shape: dict[str, Any], n_threads: int | None, min_seconds: float
                  ) -> dict[str, Any]:
    """Seconds one iteration's necessary work takes at the rates measured now.

    ``sum(flops) / DGEMM rate + normals / normal rate + gammas / gamma rate + uniforms /
    uniform rate + bytes of one pass over each n x t array / memory bandwidth``.
    """
    work = necessary_work(shape)
    rates = measure_rates(shape["n"], n_threads, min_seconds)
    per = {"products": sum(work["products"].values()) / rates["dgemm_flops_per_s"],
           "draws": (work["draws"]["normals"] / rates["normals_per_s"]
                     + work["draws"]["gammas"] / rates["gammas_per_s"]
                     + work["draws"]["uniforms"] / rates["uniforms_per_s"]),
           "memory": 8 * sum(work["passes"].values()) / rates["bytes_per_s"]}
    return {"shape": shape, "work": work, "rates": rates, "parts": per,
            "seconds": sum(per.values())}


def floor_breakdown(floor: dict[str, Any], seconds_per_iteration: float) -> str:
    """The floor's itemised table (products, draws, memory passes) and iteration / floor."""
    w, rt = floor["work"], floor["rates"]
    rows = [[name, f"{f / 1e6:.1f} Mflop", ms(f / rt["dgemm_flops_per_s"])]
            for name, f in w["products"].items()]
    rows += [[f"{kind} drawn", f"{c / 1e3:.0f} k",
              ms(c / rt[f"{kind}_per_s"])] for kind, c in w["draws"].items()]
    rows += [[f"pass: {name}", f"{8 * c / 2**20:.1f} MiB", ms(8 * c / rt["bytes_per_s"])]
             for name, c in w["passes"].items()]
    rows.append(["floor", "", ms(floor["seconds"])])
    rows.append(["iteration (measured)", "", ms(seconds_per_iteration)])
    rows.append(["iteration / floor", "", fmt(seconds_per_iteration / floor["seconds"], ".2f")])
    sh = floor["shape"]
    head = (f"n={sh['n']} t={sh['t']} k={sh['k']} b1={sh['b1']} G={sh['G']} r={sh['r']} "
            f"r_o={sh['r_o']} missing={sh['n_missing']} ({sh['backend']}); rates: DGEMM "
            f"{rt['dgemm_flops_per_s'] / 1e9:.1f} Gflop/s ({rt['dgemm_from']}), normals "
            f"{rt['normals_per_s'] / 1e6:.0f} M/s, gammas {rt['gammas_per_s'] / 1e6:.0f} M/s, "
            f"uniforms {rt['uniforms_per_s'] / 1e6:.0f} M/s, memory "
            f"{rt['bytes_per_s'] / 1e9:.1f} GB/s")
    return head + "\n" + table(["work", "amount", "ms"], rows)


# =========================================================================== schedules


def schedule(t: int, quick: bool) -> dict[str, int]:
    """Warm-up and timed blocks for a one-random-effect case with ``t`` traits.

    At least 20 timed iterations; blocks get fewer and longer as t grows, so the
    per-call overhead of ``sample`` stays small.
    """
    if quick:
        warmup, blocks, per_block = (10, 5, 10) if t <= 100 else (5, 5, 4)
    elif t <= 100:
        warmup, blocks, per_block = 30, 15, 10
    elif t <= 1000:
        warmup, blocks, per_block = 20, 10, 5
    elif t <= 5000:
        warmup, blocks, per_block = 10, 10, 3
    else:
        warmup, blocks, per_block = 5, 5, 4
    return {"warmup": warmup, "blocks": blocks, "per_block": per_block}


class Runner:
    """Starts the child processes, caches simulated data, collects the results."""

    def __init__(self, workdir: str, quick: bool) -> None:
        self.workdir = Path(workdir)
        self.quick = quick
        self.data_paths: dict[str, str] = {}
        self.data_info: dict[str, dict[str, Any]] = {}
        self.start = time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", file=sys.stderr,
              flush=True)

    def data(self, kind: str, n: int, t: int) -> str | dict[str, Any]:
        """Path of the pickled data set (made on first use), or an error dict."""
        key = f"{kind}_n{n}_t{t}"
        if key not in self.data_paths:
            path = str(self.workdir / f"{key}.pkl")
            self.log(f"simulating data {key}")
            res = run_child(SCRIPT, ["--make-data", json.dumps(
                {"kind": kind, "n": n, "t": t, "path": path})])
            self.data_info[key] = res
            if "error" in res:
                return res
            self.data_paths[key] = path
        return self.data_paths[key]

    def case(self, label: str, kind: str, n: int, t: int, *, n_factors: int = N_FACTORS,
             h2_divisions: int = H2_DIVISIONS, n_threads: int | None = None,
             record: tuple[str, ...] = (), burn: int = 10**9, floor: bool = False,
             sched: dict[str, int] | None = None, stream: bool = False) -> dict[str, Any]:
        """Run one case in a child process; ``{"error": ...}`` if it (or its data) failed."""
        path = self.data(kind, n, t)
        if isinstance(path, dict):
            return path
        spec = {
            "data_path": path, "n_factors": n_factors, "h2_divisions": h2_divisions,
            "n_threads": n_threads, "record": list(record), "burn": burn, "floor": floor,
            "stream": stream,
            "floor_seconds": 0.1 if self.quick else 0.3,
            **(sched or schedule(t, self.quick)),
        }
        self.log(f"{label}: {kind} n={n} t={t} factors={n_factors} threads={n_threads}")
        res = run_child(SCRIPT, ["--case", json.dumps(spec)])
        if "error" in res:
            self.log(f"{label}: {res['error']}")
        return res


# =========================================================================== sections


def ms(seconds: float | None) -> str:
    return fmt(seconds, ".2f", 1e3)


def ok(res: dict[str, Any]) -> bool:
    return "error" not in res


def section_scaling(run: Runner, ts: tuple[int, ...]) -> dict[str, Any]:
    results = {t: run.case("scaling", "factor", 500, t, floor=True) for t in ts}
    rows, floor_rows = [], []
    for t, r in results.items():
        if not ok(r):
            rows.append([t, "FAILED: " + r["error"]] + [""] * 8)
            continue
        it, fl = r["seconds_per_iteration"], r["floor"]
        r_it = R_SECONDS_PER_ITERATION.get(t)
        rows.append([
            t, fmt(r["setup_seconds_wall"], ".2f"), fmt(R_SETUP_SECONDS.get(t), ".1f"),
            ms(it), r["iterations_timed"], fmt(r["peak_rss_mb"], ".0f"), ms(fl["seconds"]),
            fmt(it / fl["seconds"], ".2f"), ms(r_it),
            fmt(r_it / it if r_it else None, ".1f"),
        ])
        rt = fl["rates"]
        floor_rows.append([
            t, ms(fl["parts"]["products"]), ms(fl["parts"]["draws"]), ms(fl["parts"]["memory"]),
            ms(fl["seconds"]), f"{rt['dgemm_flops_per_s'] / 1e9:.1f}",
            f"{rt['normals_per_s'] / 1e6:.0f}", f"{rt['bytes_per_s'] / 1e9:.1f}",
        ])
    print(f"SCALING: simulate_factor_data(n=500, t, k_true={K_TRUE}), {N_FACTORS} factors, "
          f"h2_divisions={H2_DIVISIONS}, ~ 1 + (1|ID), no missing data, default threads")
    print(table(["t", "setup s", "R setup s", "ms/iter", "iters", "peak RSS MiB",
                 "floor ms", "iter/floor", "R ms/iter", "x faster than R"], rows))
    if floor_rows:
        print()
        print("Floor: the iteration's necessary products at the DGEMM rate + its normal/gamma/"
              "uniform draws at the RNG rates + one pass over each n x t array at the memory "
              "bandwidth, all measured in the case's own process (see the module docstring)")
        print(table(["t", "products ms", "draws ms", "memory ms", "floor ms",
                     "DGEMM Gflop/s", "normals M/s", "memory GB/s"], floor_rows))
        detail = results.get(1000) or next(r for r in results.values() if ok(r))
        print()
        print(f"Floor itemised at t={detail['t']}:")
        print(floor_breakdown(detail["floor"], detail["seconds_per_iteration"]))
    a, b = results.get(1000), results.get(20000)
    ratio = (b["seconds_per_iteration"] / a["seconds_per_iteration"]
             if a and b and ok(a) and ok(b) else None)
    print()
    if ratio is None:
        print("Linear scaling: s/iter(t=20000) / s/iter(t=1000) not measured "
              "(needs both t=1000 and t=20000; --quick stops at t=1000)")
    else:
        fr = b["floor"]["seconds"] / a["floor"]["seconds"]
        print(f"Linear scaling: s/iter(t=20000) / s/iter(t=1000) = {ratio:.1f} "
              f"(target <= {SCALING_MAX:.0f}; traits x20; the floor grows {fr:.1f}x)")
    return {"cases": {str(t): r for t, r in results.items()}, "scaling_ratio": ratio}


def section_threads(run: Runner, ts: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = []
    for t in ts:
        r1 = run.case("threads", "factor", 500, t, n_threads=1)
        r2 = run.case("threads", "factor", 500, t, n_threads=2)
        speedup = (r1["seconds_per_iteration"] / r2["seconds_per_iteration"]
                   if ok(r1) and ok(r2) else None)
        out[str(t)] = {"1": r1, "2": r2, "speedup": speedup}
        rows.append([t, ms(r1.get("seconds_per_iteration")), ms(r2.get("seconds_per_iteration")),
                     fmt(speedup, ".2f")])
    print(f"THREADS: Control(n_threads=1 / 2), n=500, {N_FACTORS} factors "
          f"(machine: {cpu_count()} CPUs)")
    print(table(["t", "1 thread ms/iter", "2 threads ms/iter", "speed-up"], rows))
    return out


def section_n(run: Runner, ns: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = []
    for n in ns:
        r = run.case("n", "factor", n, 1000)
        out[str(n)] = r
        if not ok(r):
            rows.append([n, "FAILED: " + r["error"], "", "", ""])
            continue
        rows.append([n, fmt(r["setup_seconds_wall"], ".2f"), ms(r["seconds_per_iteration"]),
                     r["iterations_timed"], fmt(r["peak_rss_mb"], ".0f")])
    print(f"ROWS: simulate_factor_data(n, t=1000), {N_FACTORS} factors, "
          f"h2_divisions={H2_DIVISIONS}")
    print(table(["n", "setup s", "ms/iter", "iters", "peak RSS MiB"], rows))
    return out


def section_two_re(run: Runner) -> dict[str, Any]:
    sched = ({"warmup": 1, "blocks": 3, "per_block": 2} if run.quick
             else {"warmup": 3, "blocks": 6, "per_block": 3})
    r = run.case("two_re", "two_re", 500, 1000, h2_divisions=10, sched=sched, floor=True)
    print(f"TWO RANDOM EFFECTS: simulate_two_random_effects(n_lines=500, n_reps=1, n_plots=40, "
          f"t=1000, k_true={K_TRUE}), ~ 1 + (1|Line) + (1|Plot), {N_FACTORS} factors, "
          "h2_divisions=10 (55 grid points)")
    if ok(r):
        r_it = R_TWO_RE_SECONDS_PER_ITERATION
        print(table(["n", "t", "grid points", "back-end", "setup s", "s/iter", "iters",
                     "peak RSS MiB", "floor s", "iter/floor", "R s/iter", "x faster than R"],
                    [[r["n"], r["t"], r["grid_points"], r["floor"]["shape"]["backend"],
                      fmt(r["setup_seconds_wall"], ".2f"), fmt(r["seconds_per_iteration"], ".3f"),
                      r["iterations_timed"], fmt(r["peak_rss_mb"], ".0f"),
                      fmt(r["floor"]["seconds"], ".4f"),
                      fmt(r["seconds_per_iteration"] / r["floor"]["seconds"], ".2f"),
                      fmt(r_it, ".3f"), fmt(r_it / r["seconds_per_iteration"], ".1f")]]))
        print()
        print("Floor itemised:")
        print(floor_breakdown(r["floor"], r["seconds_per_iteration"]))
    else:
        print(f"FAILED: {r['error']}")
    return r


def section_memory(run: Runner, t: int | None = None, n_factors: int = 50) -> dict[str, Any]:
    """Peak memory of a long, wide run with the draws streamed to disk.

    Default t = 20,000 with 50 factors (t = 1,000 with ``--quick``); ``--memory-t`` and
    ``--memory-factors`` change them (issue 15: t = 100,000 with 20 factors).
    """
    t = t or (1000 if run.quick else 20000)
    sched = ({"warmup": 0, "blocks": 5, "per_block": 4} if run.quick or t > 50000
             else {"warmup": 0, "blocks": 5, "per_block": 6})
    r = run.case("memory", "factor", 500, t, n_factors=n_factors, record=DEFAULT_RECORD,
                 burn=0, sched=sched, stream=True)
    print(f"MEMORY: n=500, t={t}, {n_factors} factors, default record set, burn=0, thin=2, "
          "draws streamed to disk with save_posterior_chunk() after every block"
          + ("  [--quick: t=1000, not the target's t=20000]" if run.quick and t == 1000
             else ""))
    if not ok(r):
        print(f"FAILED: {r['error']}")
        return r
    per_draw = (r["draw_bytes"] / r["draws"] / 2**20 if r.get("draws")
                else r.get("bytes_per_draw", float("nan")) / 2**20)
    print(table(
        ["t", "factors", "iters", "draws in memory at end", "MiB/draw", "s/iter",
         "RSS after data MiB",
         "peak RSS MiB", "peak RSS GB"],
        [[r["t"], r["n_factors"], r["warmup"] + r["iterations_timed"], fmt(r["draws"], "d"),
          fmt(per_draw, ".2f"), fmt(r["seconds_per_iteration"], ".3f"),
          fmt(r["rss_after_data_mb"], ".0f"), fmt(r["peak_rss_mb"], ".0f"),
          fmt(r["peak_rss_mb"] * 2**20 / 1e9, ".2f")]]))
    print(f"{r.get('draws_on_disk', 0)} draws per chain written to disk; peak memory holds "
          "one block of draws, whatever the run's length.")
    return r


# =========================================================================== summary


def target(name: str, met: bool | None, figure: str) -> dict[str, Any]:
    status = "NOT MEASURED" if met is None else ("MET" if met else "NOT MET")
    return {"target": name, "status": status, "figure": figure}


def summarize(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    cases = res.get("scaling", {}).get("cases", {})
    big = {int(t): r for t, r in cases.items() if int(t) >= 1000 and ok(r)}

    ratios = {t: r["seconds_per_iteration"] / r["floor"]["seconds"] for t, r in big.items()}
    out.append(target(
        f"iteration / floor <= {FLOOR_RATIO_MAX} for t >= 1000",
        all(v <= FLOOR_RATIO_MAX for v in ratios.values()) if ratios else None,
        ", ".join(f"t={t}: {v:.2f}" for t, v in ratios.items()) or "scaling not run"))

    big20 = big.get(20000)
    out.append(target(
        f"s/iter(t=20000) <= {T20000_MAX_SECONDS * 1e3:.0f} ms",
        None if big20 is None else big20["seconds_per_iteration"] <= T20000_MAX_SECONDS,
        "t=20000 not run" if big20 is None else f"{big20['seconds_per_iteration'] * 1e3:.1f} ms"))

    sr = res.get("scaling", {}).get("scaling_ratio")
    out.append(target(
        f"s/iter(t=20000) <= {SCALING_MAX:.0f} x s/iter(t=1000)",
        None if sr is None else sr <= SCALING_MAX,
        "not measured (needs t=1000 and t=20000)" if sr is None else f"{sr:.1f}x"))

    speedups = {t: v["speedup"] for t, v in res.get("threads", {}).items()
                if v["speedup"] is not None}
    out.append(target(
        f"2 threads >= {THREAD_SPEEDUP_MIN}x 1 thread for t >= 1000",
        all(v >= THREAD_SPEEDUP_MIN for v in speedups.values()) if speedups else None,
        ", ".join(f"t={t}: {v:.2f}x" for t, v in speedups.items()) or "threads not run"))

    mem = res.get("memory")
    if mem and ok(mem) and mem["t"] == 20000:
        gb = mem["peak_rss_mb"] * 2**20 / 1e9
        out.append(target(f"peak memory < {MEMORY_MAX_GB:.0f} GB at t=20000, n=500, 50 factors",
                          gb < MEMORY_MAX_GB, f"{gb:.2f} GB"))
    else:
        why = (f"the memory section ran t={mem['t']}" if mem and ok(mem) else
               mem["error"] if mem else "memory not run")
        out.append(target(f"peak memory < {MEMORY_MAX_GB:.0f} GB at t=20000, n=500, 50 factors",
                          None, why))

    vs_r = {t: R_SECONDS_PER_ITERATION[t] / r["seconds_per_iteration"]
            for t, r in big.items() if t in R_SECONDS_PER_ITERATION}
    out.append(target(
        f">= {R_SPEEDUP_MIN:.0f}x faster than R MegaLMM for t >= 1000",
        all(v >= R_SPEEDUP_MIN for v in vs_r.values()) if vs_r else None,
        ", ".join(f"t={t}: {v:.1f}x" for t, v in vs_r.items()) or "scaling not run"))
    return out


# =========================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true",
                        help="t in {20, 100, 1000}, fewer iterations (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="save the raw numbers as JSON")
    parser.add_argument("--memory-t", type=int, default=None,
                        help="traits of the memory section (default 20000; 1000 with --quick)")
    parser.add_argument("--memory-factors", type=int, default=50,
                        help="factors of the memory section (default 50)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--make-data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose among {', '.join(SECTIONS)}")
    return args


def machine() -> dict[str, Any]:
    from pymegalmm._config import config

    info = config()
    info["cpus"] = cpu_count()
    return info


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        run_case(json.loads(args.case))
        return
    if args.make_data:
        make_data(json.loads(args.make_data))
        return

    info = machine()
    load_before = load_average()
    print(f"pymegalmm {info['pymegalmm']}, Python {info['python']}, {info['cpus']} CPUs, "
          f"OpenMP {'on' if info['openmp'] else 'OFF'} ({info['openmp_max_threads']} threads)")
    for line in info.get("blas") or []:
        print(f"BLAS: {line}")
    print(f"load average before: {load_before}  (timings need an otherwise idle machine)")
    if load_before and load_before[0] > 0.25 * info["cpus"]:
        print("WARNING: other processes are using the CPUs; multi-threaded timings (kernels "
              "and the floor) will be slow and noisy")
    print(f"mode: {'--quick' if args.quick else 'full'}; sections: {', '.join(args.sections)}")
    print()

    ts = T_QUICK if args.quick else T_FULL
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pymegalmm-bench-") as tmp:
        run = Runner(tmp, args.quick)
        steps = {
            "scaling": lambda: section_scaling(run, ts),
            "threads": lambda: section_threads(run, tuple(t for t in (1000, 5000)
                                                          if t <= max(ts))),
            "n": lambda: section_n(run, (500, 2000) if args.quick else (500, 2000, 5000)),
            "two_re": lambda: section_two_re(run),
            "memory": lambda: section_memory(run, args.memory_t, args.memory_factors),
        }
        for name in SECTIONS:
            if name in args.sections:
                results[name] = steps[name]()
                print()
                sys.stdout.flush()
        elapsed = time.perf_counter() - run.start
        data_info = run.data_info

    targets = summarize(results)
    width = max(len(x["target"]) for x in targets)
    print("TARGETS" + (" (--quick: t <= 1000 only)" if args.quick else ""))
    for x in targets:
        print(f"  {x['target']:<{width}}  {x['status']:<12}  {x['figure']}")
    load_after = load_average()
    print()
    print(f"total {elapsed:.0f} s; load average after: {load_after}")

    if args.json:
        doc = {"argv": sys.argv, "quick": args.quick, "sections": args.sections,
               "machine": info, "load_average": {"before": load_before, "after": load_after},
               "elapsed_seconds": elapsed, "data": data_info, "results": results,
               "targets": targets,
               "r_reference": {"seconds_per_iteration": R_SECONDS_PER_ITERATION,
                               "setup_seconds": R_SETUP_SECONDS}}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, default=_json_default)
        print(f"raw numbers saved to {args.json}")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    main()
