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

from pymegalmm import (
    ExtraRegression,
    Priors,
    RegressionBayesBPrior,
    RegressionBayesCPrior,
    RegressionHorseshoePrior,
)
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
#: The negative-binomial size ``r_j`` (parts ``negative_binomial`` and ``combined``): its
#: random-walk Metropolis-Hastings steps on ``log r_j`` (3 per iteration, step 0.3) give
#: integrated autocorrelation times of 9-180 iterations (median 22) over 30 traits of 6
#: simulated data sets of the ``negative_binomial`` part (docs/validation.md).
#: Individual curves (``curves_*``): B1 moves with the curves' correlated coefficients;
#: in the quick test's model (tests/test_sbc.py) draws 25 apart gave B1's smallest
#: chi-square p 7e-4 and 100 apart 0.12, so their long runs keep every 100th.
#: The spike-and-slab priors on the extra regressions: the split of a covariate's effect
#: between ``B2_F Lambda`` and ``B2_R`` is not identified by the likelihood (only their
#: sum is) and the Gibbs sampler crosses between splits slowly, more so between discrete
#: inclusion patterns: integrated autocorrelation times of 20-170 iterations (median per
#: data set) and up to ~1,400 for the slowest entries, against 6-21 for the total
#: (docs/validation.md).  Draws 50 apart piled ``B2_R`` and ``B2_F Lambda`` ranks up at 0
#: and 20 (+74 % and +93 % on 150 replications), draws 250 apart passed (+15 %, +10 %).
LONGER: dict[str, tuple[int, int]] = {"horseshoe": (4000, 200),
                                      "negative_binomial": (4000, 200),
                                      "combined": (4000, 200),
                                      "curves_gaussian": (2000, 100),
                                      "curves_binomial": (2000, 100),
                                      "b2_bayesc": (5000, 250),
                                      "b2_bayesb": (5000, 250)}


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


def _b2(prior: RegressionHorseshoePrior | RegressionBayesCPrior | RegressionBayesBPrior
        ) -> ModelSpec:
    """The default model with 5 standard-normal covariates regressing the factors and the
    traits (``extra_regressions``: ``B2_F`` and ``B2_R``) under ``prior``; ``B2_R`` and
    the identified ``B2_F Lambda`` are ranked."""
    spec = default_part()
    X = pd.DataFrame(np.random.default_rng(8).standard_normal((spec.n, 5)),
                     index=spec.fit_data.index, columns=[f"x{i}" for i in range(5)])
    return replace(spec, extra_regressions=ExtraRegression(X=X, prior=prior))


def b2_horseshoe_part() -> ModelSpec:
    """Extra regressions under the horseshoe (R's ``sample_B2_prec_horseshoe``)."""
    return _b2(RegressionHorseshoePrior())


def b2_bayesc_part() -> ModelSpec:
    """Extra regressions under BayesC (spike and slab, one slab variance per column)."""
    return _b2(RegressionBayesCPrior())


def b2_bayesb_part() -> ModelSpec:
    """Extra regressions under BayesB (spike and slab, one slab variance per coefficient)."""
    return _b2(RegressionBayesBPrior())


def groups_part() -> ModelSpec:
    """Several trait groups (a missing-data map; the vignette's sampler path): the default
    model with block-missing data, as when lines are not grown in every environment.  Rows
    0-29 miss traits 1-2, rows 30-59 traits 4-5, rows 60-69 trait 3.  Three groups: trait
    3 with every row (rows 60-69 imputed), traits 1-2 with rows 20-99 (rows 20-29 imputed,
    0-19 predicted only), traits 4-5 with rows 0-29 and 60-99 (nothing imputed, rows 30-59
    predicted only).  ``Y_missing`` ranks the first imputed cell of traits 1, 2 and 3."""
    from pymegalmm.observation import GaussianMissing
    from pymegalmm.observation.maps import MissingDataMap, TraitGroup

    spec = default_part()
    missing = np.zeros((spec.n, 5), dtype=bool)
    missing[:30, :2] = True
    missing[30:60, 3:] = True
    missing[60:70, 2] = True
    rows = np.arange(spec.n)
    data_map = MissingDataMap((TraitGroup(rows, [2]), TraitGroup(rows[20:], [0, 1]),
                               TraitGroup(np.r_[rows[:30], rows[60:]], [3, 4])))
    data_map.validate(~missing)
    return replace(spec, missing=missing,
                   observation=GaussianMissing(missing_data_map=data_map))


PARTS: dict[str, Callable[[], ModelSpec]] = {
    "default": default_part,
    "groups": groups_part,
    "priors": priors_part,
    "horseshoe": horseshoe_part,
    "bayesc": bayesc_part,
    "ard_covariates": ard_covariates_part,
    "mh_h2": mh_h2_part,
    "b2_horseshoe": b2_horseshoe_part,
    "b2_bayesc": b2_bayesc_part,
    "b2_bayesb": b2_bayesb_part,
}


# ----------------------------------------------------------------------------- model parts:
# fixed factors, cis effects, two random effects on the low-rank and the dense back-ends

def fixed_factors_part() -> ModelSpec:
    """One fixed factor (R's ``Lambda_fixed``: loadings held, total precision 1) and two
    free ones under ARD, otherwise the default model; the fixed factor's F_h2 is ranked."""
    spec = default_part()
    fixed = pd.DataFrame([[0.8, -0.5, 0.3, 0.0, 0.6]], index=["fixed"],
                         columns=spec.trait_names)
    return replace(spec, n_factors=3, Lambda_fixed=fixed)


def cis_part() -> ModelSpec:
    """cis effects (flat prior, drawn from N(0, 1)): two centred allele-count columns for
    trait 1, one for traits 3 and 5, otherwise the default model; the effects are ranked."""
    spec = default_part()
    rng = np.random.default_rng(11)
    X = rng.binomial(2, 0.3, (spec.n, 4)).astype(float)
    X -= X.mean(axis=0)
    return replace(spec, cis_genotypes={"y1": X[:, :2], "y3": X[:, 2], "y5": X[:, 3]})


def two_effects_spec(n_plots: int) -> ModelSpec:
    """``~ 1 + (1|Line) + (1|Plot)``: 20 lines with a marker-based K, 3 rows each, in
    ``n_plots`` iid plots at random; 4 traits, 2 factors, 10 % missing, a 21-point h2 grid
    (``h2_divisions=6``)."""
    from pymegalmm import Control
    from pymegalmm.datasets import simulate_two_random_effects

    sim = simulate_two_random_effects(n_lines=20, n_reps=3, n_plots=n_plots, t=1, seed=2,
                                      n_markers=300)
    return ModelSpec("~ 1 + (1|Line) + (1|Plot)", sim.data, {"Line": sim.K}, traits=4,
                     n_factors=2, missing=0.1,
                     control=Control(h2_divisions=6, burn=BURN, scale_Y=False))


def two_effects_lowrank_part() -> ModelSpec:
    """Two random effects on the low-rank (Woodbury) back-end: 5 plots (r_o = 5 <= 60 / 4)."""
    return two_effects_spec(5)


def two_effects_dense_part() -> ModelSpec:
    """Two random effects on the dense back-end: 20 plots (r_o = 20 > 60 / 4)."""
    return two_effects_spec(20)


PARTS.update({
    "fixed_factors": fixed_factors_part,
    "cis": cis_part,
    "two_effects_lowrank": two_effects_lowrank_part,
    "two_effects_dense": two_effects_dense_part,
})


# ----------------------------------------------------------------------------- observation models:
# Voom, Binomial, NegativeBinomial, Combined (inputs labelled like Y, rows in reverse order)

#: Loadings prior of the observation-model parts: ARD with lighter tails than R's defaults,
#: so the latent scale stays realistic for counts (under the defaults about 1 % of the
#: prior draws have a latent value beyond +-30: expected counts of e^30, which NumPy cannot
#: even draw; with these the largest of 1,000 draws was 19, the 99th percentile 11).
REALISTIC_LATENT = Priors(Lambda_prior=ARDPrior(Lambda_df=10.0, delta_1=GammaPrior(6.0, 2.0)))


def _observation_inputs(spec: ModelSpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Voom weights uniform on (0.5, 4) (noise variances 0.25-2, around the residual
    variances), 10-30 trials per cell (methylation-like coverage) and library sizes
    ``10 * uniform(0.5, 2)`` (the same model as ~1e4 reads with a latent scale near
    ``log(1e-3)``: the shift is absorbed by the intercept's flat prior; expected counts
    ~10), each labelled like ``Y`` with its rows in reverse order (matched by label)."""
    rows, traits = spec.fit_data.index, spec.trait_names
    rng = np.random.default_rng(12)
    shape = (spec.n, len(traits))
    W = pd.DataFrame(rng.uniform(0.5, 4.0, shape), index=rows, columns=traits)
    N = pd.DataFrame(rng.integers(10, 31, shape), index=rows, columns=traits)
    L = pd.Series(10.0 * rng.uniform(0.5, 2.0, spec.n), index=rows)
    return W.iloc[::-1], N.iloc[::-1], L.iloc[::-1]


def _observation_part(kind: str) -> ModelSpec:
    from pymegalmm.observation import Binomial, Combined, NegativeBinomial, Voom

    spec = replace(default_part(), priors=REALISTIC_LATENT)
    W, N, L = _observation_inputs(spec)
    models = {
        "voom": lambda: Voom(W),
        "binomial": lambda: Binomial(N),
        "negative_binomial": lambda: NegativeBinomial(library_size=L),
        "combined": lambda: Combined({("y1", "y2"): Voom(W), ("y3", "y4"): Binomial(N),
                                      "y5": NegativeBinomial(library_size=L)}),
    }
    return replace(spec, observation=models[kind]())


def voom_part() -> ModelSpec:
    """Gaussian data with known precision weights per cell (``Voom``); the latent value
    of one observed cell per trait is ranked."""
    return _observation_part("voom")


def binomial_part() -> ModelSpec:
    """Binomial counts, 10-30 trials per cell, logit link (Polya-Gamma)."""
    return _observation_part("binomial")


def negative_binomial_part() -> ModelSpec:
    """Negative-binomial counts with library sizes, each trait's size ``r_j`` sampled
    under the default Gamma(2, rate 0.1) prior and ranked (``dispersion``)."""
    return _observation_part("negative_binomial")


def combined_part() -> ModelSpec:
    """``Combined``: a Voom block (y1, y2), a Binomial block (y3, y4) and a
    negative-binomial trait (y5) in one fit."""
    return _observation_part("combined")


PARTS.update({
    "voom": voom_part,
    "binomial": binomial_part,
    "negative_binomial": negative_binomial_part,
    "combined": combined_part,
})


# ----------------------------------------------------------------------------- observation models
# whose data are not laid out like Eta: probes of genes, observations along curves

def probes_part() -> ModelSpec:
    """``ProbesToGenes``: the default model's 5 traits are genes, each measured by 2 to 4
    probes (14 probes), probe precisions under the default Gamma(2, rate 1) prior; one
    cell per gene and every probe's precision are ranked."""
    from pymegalmm.observation import ProbesToGenes

    counts = [2, 3, 4, 2, 3]
    genes = [g for g, c in zip(default_part().trait_names, counts, strict=True)
             for _ in range(c)]
    probe_map = pd.Series(genes, index=[f"pr{j + 1}" for j in range(len(genes))])
    return replace(default_part(), missing=0.0, observation=ProbesToGenes(probe_map))


def _curves_part(family: str) -> ModelSpec:
    """``Regression``: the default model's 100 rows are individuals, each with 8
    observations at times uniform on (0, 10) (twice the 4 coefficients of
    ``1 + bs(time, df=3)``, so each individual's coefficients are identified); Gaussian
    noise precision under the default prior on the response's own scale
    (``scale_response=False``), or 10-30 binomial trials per observation."""
    from pymegalmm.observation import Regression

    base = default_part()
    rng = np.random.default_rng(13)
    ids = np.repeat(base.fit_data.index.to_numpy(), 8)
    obs = pd.DataFrame({"ID": ids, "time": rng.uniform(0, 10, ids.size),
                        "n": rng.integers(10, 31, ids.size), "y": 0.0})
    options = ({"scale_response": False} if family == "gaussian"
               else {"family": "binomial", "trials": "n"})
    model = Regression(obs, "y ~ 1 + bs(time, df=3)", id="ID", **options)
    return replace(base, traits=model.latent_traits, missing=0.0, observation=model,
                   priors=REALISTIC_LATENT)


def curves_gaussian_part() -> ModelSpec:
    """Individual curves, Gaussian observations; the noise precision is ranked."""
    return _curves_part("gaussian")


def curves_binomial_part() -> ModelSpec:
    """Individual curves, binomial observations (Polya-Gamma)."""
    return _curves_part("binomial")


PARTS.update({
    "probes": probes_part,
    "curves_gaussian": curves_gaussian_part,
    "curves_binomial": curves_binomial_part,
})


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
