"""What recording a draw costs: ms per iteration with and without records.

Usage::

    python benchmarks/records.py                 # n = 500, t = 1000 and 5000
    python benchmarks/records.py --t 1000 --iterations 40

For ``simulate_factor_data(n=500, t, k_true=10)`` with 15 factors and 20 grid points
(the scaling case of ``benchmarks/iteration.py``), the default record set, two models
built alike: one that records nothing during the timed iterations (``burn`` beyond
them) and one that records every iteration (``burn=0, thin=1``).  The difference is
the cost of one record: the parameters on the user's scale, ``U_R`` per level, ``E[Y]``
of every cell and the log density.  Median of timed ``sample()`` blocks after a
warm-up.  Needs an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_average, table, time_iterations  # noqa: E402


def per_iteration(t: int, record: bool, iterations: int) -> float:
    """Seconds per iteration of the scaling case, recording every draw or none."""
    from pymegalmm import MegaLMM, datasets

    sim = datasets.simulate_factor_data(n=500, t=t, k_true=10, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=15,
                    h2_divisions=20, burn=0 if record else 10**9, thin=1, seed=1,
                    verbose=False, run_dir=Path(tmp) / "run")
        per_block = max(1, iterations // 5)
        out = time_iterations(m, warmup=5, blocks=5, per_block=per_block)
        m.clear_posterior()
    return out["seconds_per_iteration"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--iterations", type=int, default=40, help="timed, per model")
    args = parser.parse_args(argv)
    print(f"load average before: {load_average()}")
    rows = []
    for t in args.t:
        bare = per_iteration(t, False, args.iterations)
        recorded = per_iteration(t, True, args.iterations)
        rows.append([str(t), f"{bare * 1e3:.2f}", f"{recorded * 1e3:.2f}",
                     f"{(recorded - bare) * 1e3:.2f}", f"{(recorded - bare) / bare:.2f}"])
    print("n = 500, 15 factors, default record set")
    print(table(["t", "ms / iteration, no record", "recording every draw",
                 "ms per record", "record / iteration"], rows))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
