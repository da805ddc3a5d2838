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
         (the unavoidable dense products of one iteration at the same shapes, timed in
         that process) and iteration / floor, speed-up vs. R MegaLMM 0.9.5
         (``/work/shared/data/r_reference.md``), and the linear-scaling check
         (t=20000 vs. t=1000).
threads  ``Control(n_threads=1)`` vs. ``n_threads=2`` at t=1000 and t=5000.
n        n in {500, 2000, 5000} rows at t=1000 (setup includes an n x n eigendecomposition).
two_re   Two random effects (``simulate_two_random_effects``, 250 lines x 2 reps = 500 rows,
         t=1000, ``h2_divisions=10``: 55 grid points, one dense Cholesky each).
memory   t=20000, n=500, 50 factors, recording ``Lambda`` (burn 0, default thin 2).

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

T_FULL = (20, 100, 1000, 5000, 20000)
T_QUICK = (20, 100, 1000)
N_FACTORS = 15
H2_DIVISIONS = 20
K_TRUE = 10
DATA_SEED = 1

# Targets of the performance issue.
FLOOR_RATIO_MAX = 2.5  # iteration / floor, t >= 1000
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
            n_lines=spec["n"] // 2, n_reps=2, t=spec["t"], k_true=K_TRUE, seed=DATA_SEED
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
        G = out["grid_points"] or spec["h2_divisions"]
        out["floor"] = measure_floor(n, t, spec["n_factors"], G, spec["n_threads"],
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


def measure_floor(n: int, t: int, k: int, G: int, n_threads: int | None,
                  min_seconds: float) -> dict[str, Any]:
    """Time the unavoidable dense products of one iteration at these shapes.

    ``Qt @ Eta`` (n x n x t), ``F @ Lambda`` (n x k x t), ``W @ (E*E)`` (G x n x t, the
    square included) and ``Qt @ F`` (n x n x k), on random arrays in the sampler's
    (Fortran) layout with preallocated outputs, three ways: NumPy with BLAS pinned to
    1 thread, NumPy with all the machine's threads, and ``pymegalmm.linalg.matmul``
    (tiled over OpenMP threads) under ``sampling_threads(n_threads)``.  The floor is
    the faster of the last two.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    from pymegalmm.linalg import matmul, sampling_threads

    rng = np.random.default_rng(0)

    def normal(rows: int, cols: int) -> np.ndarray:
        return np.asfortranarray(rng.standard_normal((rows, cols)))

    Qt, Eta, F, Lam = normal(n, n), normal(n, t), normal(n, k), normal(k, t)
    W_f = np.asfortranarray(rng.uniform(0.5, 2.0, (G, n)))
    W_c = np.ascontiguousarray(W_f)
    sq = np.empty((n, t), order="F")
    shapes = ((n, t), (n, t), (G, t), (n, k))
    # NumPy writes C-ordered outputs straight from BLAS; matmul needs Fortran order.
    c = [np.empty(shape) for shape in shapes]
    f = [np.empty(shape, order="F") for shape in shapes]
    numpy_products = [
        ("Qt @ Eta", lambda: np.matmul(Qt, Eta, out=c[0])),
        ("F @ Lambda", lambda: np.matmul(F, Lam, out=c[1])),
        ("W @ (E*E)", lambda: np.matmul(W_c, np.square(Eta, out=sq), out=c[2])),
        ("Qt @ F", lambda: np.matmul(Qt, F, out=c[3])),
    ]
    tiled_products = [
        ("Qt @ Eta", lambda: matmul(Qt, Eta, out=f[0])),
        ("F @ Lambda", lambda: matmul(F, Lam, out=f[1])),
        ("W @ (E*E)", lambda: matmul(W_f, np.square(Eta, out=sq), out=f[2])),
        ("Qt @ F", lambda: matmul(Qt, F, out=f[3])),
    ]
    threads = cpu_count()
    # Order matters: OpenBLAS worker threads left spinning by the multi-threaded run
    # would slow the OpenMP-tiled run, so that one goes last.
    with threadpool_limits(limits=1, user_api="blas"):
        numpy_1 = time_products(numpy_products, min_seconds=min_seconds)
    with sampling_threads(n_threads):
        tiled = time_products(tiled_products, min_seconds=min_seconds)
    with threadpool_limits(limits=threads, user_api="blas"):
        numpy_all = time_products(numpy_products, min_seconds=min_seconds)
    best = "numpy" if numpy_all["seconds"] <= tiled["seconds"] else "tiled"
    return {
        "shapes": {"n": n, "t": t, "k": k, "G": G},
        "numpy_1_thread": numpy_1,
        "numpy_all_threads": numpy_all,
        "numpy_threads": threads,
        "tiled": tiled,
        "seconds": min(numpy_all["seconds"], tiled["seconds"]),
        "method": f"numpy {threads} thr" if best == "numpy" else "tiled",
    }


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
        floor_rows.append([
            t, ms(fl["numpy_1_thread"]["seconds"]), ms(fl["numpy_all_threads"]["seconds"]),
            ms(fl["tiled"]["seconds"]), fl["method"],
            *(ms(fl["tiled"]["per_product"][p])
              for p in ("Qt @ Eta", "F @ Lambda", "W @ (E*E)", "Qt @ F")),
        ])
    print(f"SCALING: simulate_factor_data(n=500, t, k_true={K_TRUE}), {N_FACTORS} factors, "
          f"h2_divisions={H2_DIVISIONS}, ~ 1 + (1|ID), no missing data, default threads")
    print(table(["t", "setup s", "R setup s", "ms/iter", "iters", "peak RSS MiB",
                 "floor ms", "iter/floor", "R ms/iter", "x faster than R"], rows))
    if floor_rows:
        threads = next(r["floor"]["numpy_threads"] for r in results.values() if ok(r))
        print()
        print("Floor: Qt @ Eta (n x n x t) + F @ Lambda (n x k x t) + W @ (E*E) "
              f"(G x n x t) + Qt @ F (n x n x k), ms per set (median); floor = faster of "
              f"numpy {threads} threads and tiled")
        print(table(["t", "numpy 1 thr", f"numpy {threads} thr", "tiled", "floor from",
                     "tiled Qt@Eta", "F@Lambda", "W@(E*E)", "Qt@F"], floor_rows))
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
    sched = ({"warmup": 1, "blocks": 3, "per_block": 1} if run.quick
             else {"warmup": 2, "blocks": 6, "per_block": 1})
    r = run.case("two_re", "two_re", 500, 1000, h2_divisions=10, sched=sched)
    print("TWO RANDOM EFFECTS: simulate_two_random_effects(n_lines=250, n_reps=2, t=1000, "
          f"k_true={K_TRUE}), ~ 1 + (1|Line) + (1|Plot), {N_FACTORS} factors, h2_divisions=10")
    if ok(r):
        print(table(["n", "t", "grid points", "setup s", "s/iter", "iters", "peak RSS MiB"],
                    [[r["n"], r["t"], r["grid_points"], fmt(r["setup_seconds_wall"], ".2f"),
                      fmt(r["seconds_per_iteration"], ".3f"), r["iterations_timed"],
                      fmt(r["peak_rss_mb"], ".0f")]]))
    else:
        print(f"FAILED: {r['error']}")
    return r


def section_memory(run: Runner) -> dict[str, Any]:
    t = 1000 if run.quick else 20000
    sched = ({"warmup": 0, "blocks": 5, "per_block": 4} if run.quick
             else {"warmup": 0, "blocks": 5, "per_block": 6})
    r = run.case("memory", "factor", 500, t, n_factors=50, record=DEFAULT_RECORD, burn=0,
                 sched=sched, stream=True)
    print(f"MEMORY: n=500, t={t}, 50 factors, default record set, burn=0, thin=2, draws "
          "streamed to disk with save_posterior_chunk() after every block"
          + ("  [--quick: t=1000, not the target's t=20000]" if run.quick else ""))
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
        why = ("--quick ran t=1000" if mem and ok(mem) else
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
            "memory": lambda: section_memory(run),
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
