"""The demo: predict masked cells of a simulated multi-environment trial.

``python -m pymegalmm demo`` simulates an incomplete multi-environment trial
(:func:`pymegalmm.datasets.simulate_met`), hides 20% of the observed cells of
every environment, fits MegaLMM and a univariate GBLUP per environment, and
prints the accuracy of both (correlation of the held-out yields with the
predictions, per environment) and the time per iteration.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix

from .baselines import gblup
from .datasets import simulate_met, to_wide
from .model import MegaLMM


def mask_cells(Y: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Boolean mask hiding ``fraction`` of the observed cells of every column.

    Parameters
    ----------
    Y : pandas.DataFrame
        Traits, NaN = unobserved.
    fraction : float
        Share of each column's observed cells to hide (at least one cell, and
        at least two observed cells are left).
    rng : numpy.random.Generator
        Source of the random choice.

    Returns
    -------
    pandas.DataFrame
        True where a cell is hidden; labelled like ``Y``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    mask = np.zeros(Y.shape, dtype=bool)
    for j in range(Y.shape[1]):
        observed = np.flatnonzero(Y.iloc[:, j].notna().to_numpy())
        n_hide = min(max(1, round(fraction * observed.size)), observed.size - 2)
        if n_hide > 0:
            mask[rng.choice(observed, size=n_hide, replace=False), j] = True
    return pd.DataFrame(mask, index=Y.index, columns=Y.columns)


def gblup_predictions(
    Y: pd.DataFrame, data: pd.DataFrame, K: pd.DataFrame, fixed: str = "~ Population"
) -> pd.DataFrame:
    """Univariate GBLUP per trait: fitted ``X beta + u`` for every row, observed or not.

    Parameters
    ----------
    Y : pandas.DataFrame
        Traits; rows are levels of ``K`` (e.g. lines).
    data : pandas.DataFrame
        Row variables of the fixed formula, same index as ``Y``.
    K : pandas.DataFrame
        Relationship matrix labelled by the rows of ``Y`` (extra levels ignored).
    fixed : str
        Fixed-effect formula for formulaic.

    Returns
    -------
    pandas.DataFrame
        Predictions labelled like ``Y``.
    """
    X = np.asarray(model_matrix(fixed, data), dtype=float)
    K_rows = K.loc[Y.index, Y.index]
    pred = np.empty(Y.shape)
    for j, trait in enumerate(Y.columns):
        fit = gblup(Y[trait].to_numpy(), X, K_rows)
        pred[:, j] = X @ fit.beta + np.asarray(fit.u)
    return pd.DataFrame(pred, index=Y.index, columns=Y.columns)


def accuracy(pred: pd.DataFrame, truth: pd.DataFrame, mask: pd.DataFrame) -> pd.Series:
    """Per column, the correlation of ``pred`` with ``truth`` over the masked cells."""
    out = {}
    for col in truth.columns:
        m = mask[col].to_numpy()
        out[col] = np.corrcoef(pred[col].to_numpy()[m], truth[col].to_numpy()[m])[0, 1]
    return pd.Series(out)


@dataclass
class DemoResult:
    """Outcome of :func:`run_met_demo`."""

    accuracy: pd.DataFrame  # per environment: MegaLMM, GBLUP
    seconds_per_iteration: float
    setup_seconds: float
    total_seconds: float
    model: MegaLMM


def run_met_demo(
    n_lines: int = 500,
    n_envs: int = 20,
    n_factors: int = 10,
    burn: int = 500,
    n_iter: int = 1500,
    seed: int = 1,
    progress: bool = True,
    verbose: bool = True,
) -> DemoResult:
    """Simulate a trial, hide 20% of each environment's cells, compare MegaLMM with GBLUP.

    Parameters
    ----------
    n_lines, n_envs : int
        Size of the simulated trial.
    n_factors : int
        Factors of the MegaLMM fit.
    burn, n_iter : int
        Burn-in and total iterations.
    seed : int
        Seed of the simulation, the mask and the chain.
    progress, verbose : bool
        Progress bar; model summary.

    Returns
    -------
    DemoResult
    """
    t_start = time.perf_counter()
    sim = simulate_met(n_lines=n_lines, n_envs=n_envs, seed=seed)
    Y, data = to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    mask = mask_cells(Y, 0.2, np.random.default_rng(seed))
    Y_train = Y.mask(mask)
    with tempfile.TemporaryDirectory(prefix="pymegalmm_demo_") as run_dir:
        # the demo saves nothing: a folder of its own, whatever runs the current one holds
        model = MegaLMM(
            Y_train, "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
            n_factors=n_factors, h2_divisions=20, burn=burn, thin=2, seed=seed,
            verbose=verbose, run_dir=run_dir,
        )
        model.sample(n_iter, progress=progress)
    acc = pd.DataFrame({
        "MegaLMM": accuracy(model.predict(), Y, mask),
        "GBLUP": accuracy(gblup_predictions(Y_train, data, sim.K), Y, mask),
    })
    acc.index.name = "environment"
    return DemoResult(acc, model.seconds_per_iteration, model.setup_seconds,
                      time.perf_counter() - t_start, model)


def main(progress: bool = True) -> DemoResult:
    """Run the demo and print its results."""
    print("pymegalmm demo: simulated multi-environment trial, 20% of each environment's "
          "observed cells hidden and predicted\n")
    res = run_met_demo(progress=progress)
    print()
    print(res.model.describe())
    print("\nPrediction accuracy per environment (correlation with the hidden yields):")
    print(res.accuracy.round(3).to_string())
    mean = res.accuracy.mean()
    print(f"\nmean accuracy: MegaLMM {mean['MegaLMM']:.3f}   GBLUP {mean['GBLUP']:.3f}")
    print(f"setup {res.setup_seconds:.2f} s; {res.seconds_per_iteration * 1e3:.2f} ms per "
          f"iteration; total {res.total_seconds:.1f} s")
    return res
