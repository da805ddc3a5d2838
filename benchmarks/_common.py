"""Shared helpers of the benchmark scripts: child processes, timing, memory, tables.

Measurements that need their own peak memory run in a child process (the same
script started again with an internal argument); the child prints one line
``RESULT_TAG <json>`` on stdout, which :func:`run_child` parses.  Everything
else the child writes to stderr reaches the terminal unchanged.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULT_TAG = "@@BENCHMARK-RESULT@@"


# --------------------------------------------------------------------------- processes


def emit_result(result: dict[str, Any]) -> None:
    """Print a child's result for :func:`run_child` (one JSON line on stdout)."""
    sys.stdout.write(f"{RESULT_TAG} {json.dumps(result)}\n")
    sys.stdout.flush()


def run_child(script: str, args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python script *args`` in a fresh process and return the result it emitted.

    Returns ``{"error": message}`` when the child fails (non-zero exit, e.g. killed
    for lack of memory, or no result line) instead of raising, so that one failed
    case does not lose the others.
    """
    cmd = [sys.executable, script, *args]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    results = [line[len(RESULT_TAG):].strip() for line in proc.stdout.splitlines()
               if line.startswith(RESULT_TAG)]
    for line in proc.stdout.splitlines():  # anything else the child printed
        if not line.startswith(RESULT_TAG):
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        how = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        return {"error": f"child process failed: {how}"}
    if not results:
        return {"error": "child process printed no result"}
    return json.loads(results[-1])


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


# --------------------------------------------------------------------------- measuring


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``RUSAGE_SELF.ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def time_iterations(model: Any, warmup: int, blocks: int, per_block: int,
                    stream: bool = False) -> dict[str, Any]:
    """Seconds per Gibbs iteration: median over timed blocks, after ``warmup`` iterations.

    Each block is one ``model.sample(per_block, progress=False)`` call, so per-call
    overhead (thread set-up, the finiteness check) is spread over ``per_block``
    iterations.  With ``stream``, the draws of each block are saved to the model's
    run directory (``save_posterior_chunk``) after it, inside the timing.
    """
    if warmup:
        model.sample(warmup, progress=False)
    per_iteration = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        model.sample(per_block, progress=False)
        if stream:
            model.save_posterior_chunk()
        per_iteration.append((time.perf_counter() - t0) / per_block)
    return {
        "seconds_per_iteration": statistics.median(per_iteration),
        "block_seconds_per_iteration": per_iteration,
        "iterations_timed": blocks * per_block,
        "warmup": warmup,
        "blocks": blocks,
        "per_block": per_block,
    }


def time_products(
    products: Sequence[tuple[str, Callable[[], object]]],
    min_repeats: int = 5,
    min_seconds: float = 0.2,
    max_repeats: int = 200,
) -> dict[str, Any]:
    """Median time of running all ``products`` once, and of each one, after one warm-up.

    Repeats until at least ``min_repeats`` repetitions and ``min_seconds`` seconds
    (at most ``max_repeats`` repetitions).
    """
    for _, fn in products:
        fn()
    reps: list[list[float]] = []
    start = time.perf_counter()
    while len(reps) < min_repeats or (
        time.perf_counter() - start < min_seconds and len(reps) < max_repeats
    ):
        row = []
        for _, fn in products:
            t0 = time.perf_counter()
            fn()
            row.append(time.perf_counter() - t0)
        reps.append(row)
    return {
        "seconds": statistics.median(sum(r) for r in reps),
        "per_product": {name: statistics.median(r[i] for r in reps)
                        for i, (name, _) in enumerate(products)},
        "repeats": len(reps),
    }


# --------------------------------------------------------------------------- printing


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def fmt(value: float | None, spec: str = ".3f", scale: float = 1.0, missing: str = "-") -> str:
    """Format ``value * scale`` with ``spec``, or ``missing`` when it is None."""
    if value is None:
        return missing
    return format(value * scale if scale != 1.0 else value, spec)
