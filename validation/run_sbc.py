"""Long simulation-based calibration runs of every model part, with their figures.

Usage::

    python validation/run_sbc.py                      # every part, 1,000 replications each
    python validation/run_sbc.py --part default --replications 200 --workers 2

Each part is one model specification (see ``PARTS``); the run writes its ECDF
and rank-histogram figures to ``docs/_static/sbc_<part>_ecdf.png`` and
``docs/_static/sbc_<part>_hist.png``, its ranks, test table and summary to
``validation/results/sbc_<part>_{ranks.csv.gz,tests.csv,summary.md}`` and prints
the summary shown in ``docs/validation.md`` (``--replot`` redoes the tests and
figures from the saved ranks).  Seeds are fixed: the same command gives the same ranks
whatever the number of workers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pymegalmm import Priors
from pymegalmm.priors import ARDPrior, GammaPrior, VariancePrior
from pymegalmm.priors.bayesc import BayesCPrior
from pymegalmm.priors.horseshoe import HorseshoePrior
from pymegalmm.validation import ModelSpec, SBCResult, example_spec, sbc
from pymegalmm.validation.plots import sbc_histogram

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "_static"
RESULTS = ROOT / "validation" / "results"

#: Burn-in, iterations after it and thinning of every fit (20 draws, 50 iterations apart:
#: the integrated autocorrelation time of the slowest quantities is 10-25 iterations in
#: the median replication, up to ~100 in a few).
BURN, ITERATIONS, THIN = 500, 1000, 50

#: Parts whose draws need more thinning: their (iterations, thin), still 20 draws.  The
#: horseshoe: in the replications where a loading's posterior is split between the prior's
#: pole at zero and the value the data support (typically a factor with one large loading,
#: whose variance trades with that trait's residual variance), the ranks of the
#: ``Lambda' Lambda`` diagonal have integrated autocorrelation times of 140-260 iterations
#: (docs/validation.md), so draws 50 apart are correlated and pile ranks up at both ends.
LONGER: dict[str, tuple[int, int]] = {"horseshoe": (4000, 200)}


def settings(part: str) -> tuple[int, int, int]:
    """Burn-in, iterations after it and thinning of one part's fits."""
    iterations, thin = LONGER.get(part, (ITERATIONS, THIN))
    return BURN, iterations, thin


def low_h2_weights(grid: np.ndarray) -> np.ndarray:
    """A non-flat h2 prior: weight ``(1 - sum h2)^2`` (favours low h2)."""
    return (1.0 - grid.sum(axis=0)) ** 2


def high_h2_weights(grid: np.ndarray) -> np.ndarray:
    """A non-flat h2 prior: weight ``0.2 + sum h2`` (favours high h2)."""
    return 0.2 + grid.sum(axis=0)


def default_part() -> ModelSpec:
    """R MegaLMM's vignette priors (ARD loadings, flat h2 priors), an intercept and a
    covariate (flat B1), 10 % of each trait's cells missing (imputed)."""
    return example_spec(n=100, traits=5, n_factors=2, fixed=True, missing=0.1, burn=BURN)


def priors_part() -> ModelSpec:
    """Every prior away from its default: precisions, non-flat h2 priors, ARD settings."""
    priors = Priors(
        tot_Y_var=VariancePrior(V=2.0, nu=4.0), tot_F_var=VariancePrior(V=1.0, nu=10.0),
        h2_prior_resids=low_h2_weights, h2_prior_factors=high_h2_weights,
        Lambda_prior=ARDPrior(Lambda_df=5.0, delta_1=GammaPrior(3.0, 2.0),
                              delta_2=GammaPrior(2.0, 1.0)),
    )
    return example_spec(n=100, traits=5, n_factors=3, fixed=True, missing=0.0, burn=BURN,
                        priors=priors)


def horseshoe_part() -> ModelSpec:
    """The horseshoe loadings prior (R MegaLMM's nominal default, ``prop_0 = 0.1``), 3
    factors, otherwise the default model."""
    return replace(default_part(), n_factors=3,
                   priors=Priors(Lambda_prior=HorseshoePrior()))


def bayesc_part() -> ModelSpec:
    """The BayesC (spike-and-slab) loadings prior with its own loadings step, 3 factors,
    otherwise the default model."""
    return replace(default_part(), n_factors=3, priors=Priors(Lambda_prior=BayesCPrior()))


def ard_covariates_part() -> ModelSpec:
    """ARD with the loadings regressed on two trait covariates (Hu et al. 2024),
    otherwise the default model."""
    spec = default_part()
    covariates = pd.DataFrame(np.random.default_rng(7).standard_normal((5, 2)),
                              index=spec.trait_names, columns=["w1", "w2"])
    return replace(spec, priors=Priors(Lambda_prior=ARDPrior(trait_covariates=covariates)))


def mh_h2_part() -> ModelSpec:
    """The Metropolis-Hastings h2 step (``h2_step_size = 0.2``) instead of the full-grid
    draw, otherwise the default model."""
    spec = default_part()
    return replace(spec, control=replace(spec.control, h2_step_size=0.2))


PARTS: dict[str, Callable[[], ModelSpec]] = {
    "default": default_part,
    "priors": priors_part,
    "horseshoe": horseshoe_part,
    "bayesc": bayesc_part,
    "ard_covariates": ard_covariates_part,
    "mh_h2": mh_h2_part,
}


def run(part: str, replications: int, workers: int, seed: int, replot: bool) -> None:
    """Run one part (or reload its ranks) and write its figures and tables."""
    spec = PARTS[part]()
    burn, iterations, thin = settings(part)
    print(f"== {part}: {spec}", flush=True)
    ranks_file = RESULTS / f"sbc_{part}_ranks.csv.gz"
    if replot:
        ranks = pd.read_csv(ranks_file, header=[0, 1], index_col=0)
        res = SBCResult.from_ranks(ranks, iterations // thin, settings={
            "burn": burn, "iterations": iterations, "thin": thin, "seed": seed})
        seconds = "reloaded"
    else:
        res = sbc(spec, replications=replications, iterations=iterations, thin=thin,
                  burn=burn, seed=seed, workers=workers, progress=sys.stderr.isatty())
        seconds = f"{res.seconds:.0f} s with {workers} workers"
        RESULTS.mkdir(parents=True, exist_ok=True)
        res.ranks.to_csv(ranks_file, float_format="%.0f")
    print(res, f"\n({seconds})\n", flush=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    res.plot(ncols=4).savefig(FIGURES / f"sbc_{part}_ecdf.png", dpi=90)
    sbc_histogram(res, ncols=4).savefig(FIGURES / f"sbc_{part}_hist.png", dpi=90)
    res.tests.to_csv(RESULTS / f"sbc_{part}_tests.csv", float_format="%.4g")
    (RESULTS / f"sbc_{part}_summary.md").write_text(
        f"{len(res.ranks)} replications, {res.n_draws} draws (burn {burn}, thin {thin}), "
        f"seed {seed}, {seconds}\n\n" + markdown(res.summary()) + "\n", encoding="utf-8")


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (index first), numbers to 3 significant digits."""
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    head = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(cell, row.tolist())]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--replications", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--replot", action="store_true",
                        help="redo the tests and figures from the saved ranks")
    args = parser.parse_args()
    for part in (PARTS if args.part == "all" else [args.part]):
        run(part, args.replications, args.workers, args.seed, args.replot)


if __name__ == "__main__":
    main()
