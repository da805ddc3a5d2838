"""Cost per iteration of each observation model next to the Gaussian one.

Run on an otherwise idle 2-core machine::

    python benchmarks/observation_models.py                 # n = 500, t = 1000, 15 factors
    python benchmarks/observation_models.py --n 60 --t 20 --iterations 5   # functional check

Every model fits the same simulated latent traits (``datasets.simulate_factor_data``)
seen through it: Gaussian (``GaussianMissing``, the reference), ``Voom`` (weights),
``Binomial`` (10-40 trials), ``NegativeBinomial`` (library sizes, sampled sizes) and
``Combined`` (half the traits negative-binomial, half Gaussian), ``ProbesToGenes`` (3
probes per latent trait: ``Y`` is ``n x 3t``), ``Regression`` (``t / 5`` Gaussian responses
observed 10 times per individual at random times, 5 spline coefficients each: ``t`` latent
traits, ``10 n`` observations) and ``RegressionBinomial`` (one binomial response, 10
observations per individual, 10-40 trials each: only 5 latent traits, so it is timed next
to ``Gaussian5``, the Gaussian model with 5 traits).  After a short warm-up,
the wall time of ``--iterations`` iterations is measured; the table gives ms per
iteration and the ratio to the Gaussian model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd
from scipy.special import expit

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.observation import (
    Binomial,
    Combined,
    GaussianMissing,
    NegativeBinomial,
    ProbesToGenes,
    Regression,
    Voom,
)
from pymegalmm.observation.probes import simulate_probes
from pymegalmm.observation.regression import simulate_curves

BASIS = "bs(time, df=4)"  # with the intercept: 5 coefficients per response


def curve_cases(sim: datasets.SimulatedData, rng: np.random.Generator
                ) -> dict[str, tuple[None, object]]:
    """Regression cases: the latent traits of ``sim`` as 5 coefficients per response."""
    n, t = sim.Y.shape
    obs = pd.DataFrame({"ID": np.repeat(sim.data.index.to_numpy(), 10)})
    obs["time"] = rng.uniform(0, 10, len(obs))
    obs["n"] = rng.integers(10, 41, len(obs))
    responses = [f"y{r}" for r in range(max(1, t // 5))]
    cols = {}
    for r, name in enumerate(responses):
        coefs = sim.Y.iloc[:, 5 * r:5 * r + 5]
        cols[name] = simulate_curves(coefs, obs, "~ " + BASIS, "ID", rng, precision=4.0,
                                     response=name)[name]
    alive = simulate_curves(sim.Y.iloc[:, :5] - sim.Y.iloc[:, :5].mean(), obs, "~ " + BASIS,
                            "ID", rng, trials="n", response="alive")["alive"]
    table = pd.concat([obs, pd.DataFrame(cols), alive], axis=1)
    return {
        "Regression": (None, Regression(table, " + ".join(responses) + " ~ " + BASIS,
                                        id="ID")),
        "RegressionBinomial": (None, Regression(table, "alive ~ " + BASIS, id="ID",
                                                family="binomial", trials="n")),
    }


def cases(n: int, t: int, seed: int = 1) -> dict[str, tuple[pd.DataFrame, object]]:
    """The data and observation model of every case."""
    sim = datasets.simulate_factor_data(n=n, t=t, k_true=min(10, t), seed=seed)
    rng = np.random.default_rng(seed)
    latent = sim.Y - sim.Y.mean()
    idx, cols = latent.index, latent.columns
    W = pd.DataFrame(rng.uniform(0.2, 20.0, latent.shape), index=idx, columns=cols)
    N = pd.DataFrame(rng.integers(10, 41, latent.shape), index=idx, columns=cols)
    lib = pd.Series(rng.uniform(0.5, 2.0, n), index=idx)
    mean = lib.to_numpy()[:, None] * np.exp(3.0 + latent.to_numpy())
    counts = pd.DataFrame(rng.negative_binomial(10.0, 10.0 / (10.0 + mean)), index=idx,
                          columns=cols)
    half = list(cols[: t // 2])
    rest = list(cols[t // 2:])
    out = {
        "Gaussian": (sim.Y, GaussianMissing()),
        "Voom": (sim.Y + rng.standard_normal(latent.shape) / np.sqrt(W), Voom(W)),
        "Binomial": (pd.DataFrame(rng.binomial(N, expit(latent)), index=idx, columns=cols),
                     Binomial(N)),
        "NegativeBinomial": (counts, NegativeBinomial(library_size=lib)),
        "Combined": (pd.concat([counts[half], sim.Y[rest]], axis=1),
                     Combined({tuple(half): NegativeBinomial(library_size=lib),
                               tuple(rest): GaussianMissing()})),
    }
    probes, probe_map, _ = simulate_probes(sim.Y, 3, rng.uniform(0.5, 20.0, 3 * t), rng)
    out["ProbesToGenes"] = (probes, ProbesToGenes(probe_map))
    out.update(curve_cases(sim, rng))
    out["Gaussian5"] = (sim.Y.iloc[:, :5], GaussianMissing())
    return {name: (Y, obs, sim) for name, (Y, obs) in out.items()}


def m_traits(obs: object, Y: pd.DataFrame | None) -> int:
    """Number of latent traits of a case (the factors are capped by it)."""
    if isinstance(obs, Regression):
        return len(obs.latent_traits)
    if isinstance(obs, ProbesToGenes):
        return int(obs.probe_map.nunique())
    return Y.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--t", type=int, default=1000)
    parser.add_argument("--factors", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="Control.n_threads (default: all cores)")
    args = parser.parse_args()
    print(f"n = {args.n}, t = {args.t}, {args.factors} factors, {args.iterations} iterations;"
          f" load {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (Y, obs, sim) in cases(args.n, args.t).items():
            m = MegaLMM(Y, sim.formula, data=sim.data, relmat={"ID": sim.K},
                        n_factors=min(args.factors, m_traits(obs, Y)), h2_divisions=20,
                        burn=10**9, seed=1,
                        verbose=False, observation=obs, run_dir=os.path.join(tmp, name),
                        control=Control(n_threads=args.threads))
            m.sample(args.warmup, progress=False)
            t0 = time.perf_counter()
            m.sample(args.iterations, progress=False)
            rows.append((name, 1e3 * (time.perf_counter() - t0) / args.iterations))
    times = dict(rows)
    print(f"{'model':<20}{'ms/iteration':>14}{'x Gaussian':>12}")
    for name, ms in rows:
        base = times["Gaussian5" if name in ("RegressionBinomial", "Gaussian5") else "Gaussian"]
        print(f"{name:<20}{ms:>14.2f}{ms / base:>12.2f}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
