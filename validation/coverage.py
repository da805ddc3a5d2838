"""Coverage of 90 % HPD prediction intervals of held-out cells of the real maize trial.

Usage::

    python validation/coverage.py                 # the five folds, vignette iteration counts
    python validation/coverage.py --folds 1 --quick

For each fold of ``fold_ID_matrix.csv`` (the R vignette's 5-fold assignment: in every
environment a fifth of the observed lines of its best-represented population), the
fold's yields are hidden and the MultiEnvironmentTrial workflow is fitted on the
rest (``~ Population + (1|Line)`` with K, 15 factors, 20-point h2 grid, missing-data
map 15, 5 x 100 burn-in iterations with factor reordering, then 1,000 iterations,
thin 2).  Two 90 % HPD intervals are computed for every held-out cell:

* ``E[Y]``: the interval of ``m.predict(kind="interval", prob=0.9)``, the expected
  yield ``X1 B1 + F Lambda + Z U_R``.  It leaves out the cell's own residual, so it
  should cover fewer than 90 % of the observed yields;
* ``Y``: the posterior predictive interval, each draw of ``E[Y]`` plus a draw of
  the trait's residual, ``N(0, (1 - resid_h2) / tot_Eta_prec)`` of the same draw.  A
  well-calibrated model covers 90 % of the held-out yields with it.

The data are read from ``$PYMEGALMM_DATA`` or ``../shared/data`` beside the
repository (never copied into it); without them the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.results.summaries import hpd_interval

ROOT = Path(__file__).resolve().parents[1]
PROB = 0.9


def find_data() -> Path | None:
    """The real trial's folder, or None when it is not there."""
    folder = Path(os.environ.get("PYMEGALMM_DATA", ROOT.parent / "shared" / "data"))
    needed = ("yield_data.csv", "K.csv", "fold_ID_matrix.csv")
    return folder if all((folder / f).exists() for f in needed) else None


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Wide yields (lines x environments), line covariates, K and the fold of each cell."""
    tall = pd.read_csv(folder / "yield_data.csv")
    K = pd.read_csv(folder / "K.csv", index_col=0)
    folds = pd.read_csv(folder / "fold_ID_matrix.csv", index_col=0)
    Y, data = datasets.to_wide(tall, ["Line", "Population"], "Env", "Yield")
    return Y, data, K, folds.reindex(index=Y.index, columns=Y.columns)


def fold_coverage(Y: pd.DataFrame, data: pd.DataFrame, K: pd.DataFrame, mask: pd.DataFrame,
                  seed: int, quick: bool) -> dict[str, float]:
    """Fit without the masked cells; coverage of their 90 % HPD intervals."""
    rounds, burn_iter, n_iter = (2, 20, 100) if quick else (5, 100, 1000)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        m = MegaLMM(Y.mask(mask), "~ Population + (1|Line)", data=data, relmat={"Line": K},
                    n_factors=15, h2_divisions=20, burn=0, thin=2, seed=seed,
                    run_dir=Path(tmp) / "run", verbose=False)
        maps, _ = m.missing_data_maps(max_groups=20)
        m.set_missing_data_map(maps[min(14, len(maps) - 1)])
        m.burn_in(rounds=rounds, iterations=burn_iter, progress=False)
        m.sample(n_iter, progress=False)
        expected = m.predict(kind="draws")  # chain, draw, row, trait
        post = m.posterior
    rows, cols = np.nonzero(mask.to_numpy() & Y.notna().to_numpy())
    held_out = Y.to_numpy()[rows, cols]
    mean = expected.isel(row=xr.DataArray(rows), trait=xr.DataArray(cols))  # chain, draw, dim_0
    resid_var = ((1.0 - post["resid_h2"].sum("component")) / post["tot_Eta_prec"])
    sd = np.sqrt(resid_var.isel(trait=xr.DataArray(cols)))
    rng = np.random.default_rng(seed)
    predictive = mean + sd * rng.standard_normal(mean.shape)
    out = {"held-out cells": float(rows.size)}
    for name, draws in (("E[Y]", mean), ("Y", predictive)):
        bounds = hpd_interval(draws, PROB)
        lower = bounds.sel(bound="lower").to_numpy()
        upper = bounds.sel(bound="upper").to_numpy()
        out[f"coverage {name}"] = float(np.mean((lower <= held_out) & (held_out <= upper)))
        out[f"mean width {name}"] = float(np.mean(upper - lower))
    out["accuracy"] = float(np.mean([
        np.corrcoef(held_out[cols == j], mean.mean(("chain", "draw")).to_numpy()[cols == j])[0, 1]
        for j in np.unique(cols) if np.sum(cols == j) > 2]))
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="short chains (a smoke test)")
    args = parser.parse_args()
    folder = find_data()
    if folder is None:
        print("the real maize trial is not available (../shared/data or $PYMEGALMM_DATA): "
              "nothing to do")
        return
    Y, data, K, folds = load(folder)
    # Population is not observed in every environment: expected, as in the vignette
    warnings.filterwarnings("ignore", message="fixed-effect column 'Population'")
    table = {}
    for fold in args.folds:
        table[f"fold {fold}"] = fold_coverage(Y, data, K, folds == fold, args.seed, args.quick)
        print(f"fold {fold}: {table[f'fold {fold}']}", file=sys.stderr, flush=True)
    result = pd.DataFrame(table).T
    cells = result["held-out cells"]
    total = result.drop(columns=["held-out cells", "seconds"]).mul(cells, axis=0).sum()
    total = total / cells.sum()  # cell-weighted means over the folds
    total["held-out cells"], total["seconds"] = cells.sum(), result["seconds"].sum()
    result.loc["all folds"] = total[result.columns]
    result["held-out cells"] = result["held-out cells"].astype(int)
    print(f"Coverage of {PROB:.0%} HPD intervals of held-out yields "
          f"(seed {args.seed}{', quick' if args.quick else ''})")
    print(result.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
