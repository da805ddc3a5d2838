"""Probe pymegalmm's public API with bad inputs and classify what each one gets.

Issue "Reliability", part 1: every bad input must get a clear error, raised in
pymegalmm's own code, whose message names the offending argument.  This script
tries ~200 bad inputs and faults (plus a few valid alternative spellings that must
keep working) on small simulated data and classifies each outcome:

``clear``
    an exception of the expected type, raised from a file under ``pymegalmm/``
    (not a compiled kernel), whose message names the argument (as a whole word).
``cryptic``
    an exception raised elsewhere (numpy, pandas, zarr, formulaic, dataclasses,
    the kernels, ...), of an unexpected type, or whose message does not name the
    argument; also a valid input that is rejected.
``silent``
    no error but a wrong or degenerate result (for a valid input: a wrong result).
``ok``
    a valid alternative accepted with the correct result.

Run from anywhere (a scratch directory is used as the working directory, so no
``MegaLMM_run`` is left behind)::

    python tools/probe_inputs.py [--out /work/notes/probe_results.md] [--only WORD]

It prints one line per case and a count per class, and writes a markdown table
(input, expected, outcome, message) to ``--out``.  Exit status 0 whatever the
outcomes: this is a report, not a test (``tests/test_validation.py`` is the test).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from threadpoolctl import threadpool_limits

import pymegalmm
from pymegalmm import Control, MegaLMM, Priors, datasets
from pymegalmm.observation.maps import MissingDataMap, TraitGroup
from pymegalmm.priors import ARDPrior, GammaPrior, VariancePrior

PKG = Path(pymegalmm.__file__).resolve().parent
KERNELS = PKG / "_kernels"
TIMEOUT = 60  # seconds per case

# --------------------------------------------------------------------------------------
# Data and model factories
# --------------------------------------------------------------------------------------

SIM = datasets.simulate_factor_data(n=40, t=5, k_true=2, n_markers=200, seed=1)
Y0: pd.DataFrame = SIM.Y
DATA0: pd.DataFrame = SIM.data
K0: pd.DataFrame = SIM.K
LEVELS = list(K0.index)
BASE = {"n_factors": 2, "h2_divisions": 5, "burn": 2, "verbose": False}
_SCRATCH = Path(tempfile.mkdtemp(prefix="pymegalmm_probe_"))
_counter = [0]


def run_dir() -> Path:
    """A fresh, not yet existing run directory."""
    _counter[0] += 1
    return _SCRATCH / f"run{_counter[0]}"


def make(**kw: Any) -> MegaLMM:
    """A model on the small simulated data; keywords override anything (also Y, data...)."""
    args: dict[str, Any] = {"Y": Y0, "formula": SIM.formula, "data": DATA0,
                            "relmat": {"ID": K0}, **BASE, "seed": 1, "run_dir": run_dir()}
    args.update(kw)
    Y, formula, data, relmat = (args.pop(k) for k in ("Y", "formula", "data", "relmat"))
    return MegaLMM(Y, formula, data=data, relmat=relmat, **args)


def sampled(n_iter: int = 6, **kw: Any) -> MegaLMM:
    """A model that has run ``n_iter`` iterations (burn 2, thin 2: draws at 4, 6, ...)."""
    m = make(**kw)
    m.sample(n_iter, progress=False)
    return m


def saved(**kw: Any) -> MegaLMM:
    """A model with one posterior chunk saved in its run_dir."""
    m = sampled(**kw)
    m.save_posterior_chunk()
    return m


def y_with(**cells: Any) -> pd.DataFrame:
    """``Y0`` with some columns replaced (``T01=...``)."""
    Y = Y0.copy()
    for name, value in cells.items():
        Y[name] = value
    return Y


def y_row_nan(label: str) -> pd.DataFrame:
    """``Y0`` with every trait of row ``label`` missing."""
    Y = Y0.copy()
    Y.loc[label] = np.nan
    return Y


def k_with(fn: Callable[[np.ndarray], np.ndarray]) -> pd.DataFrame:
    """``K0`` with its values transformed by ``fn`` (labels kept)."""
    return pd.DataFrame(fn(K0.to_numpy().copy()), index=K0.index, columns=K0.columns)


def non_psd_K() -> pd.DataFrame:
    w, v = np.linalg.eigh(K0.to_numpy())
    w[0] = -0.5 * w[-1]
    return pd.DataFrame((v * w) @ v.T, index=K0.index, columns=K0.columns)


def nan_at(a: np.ndarray, i: int, j: int, value: float = np.nan) -> np.ndarray:
    a[i, j] = value
    return a


# --------------------------------------------------------------------------------------
# Observations for silent outcomes and checks for valid inputs
# --------------------------------------------------------------------------------------


def n_factors_of(m: MegaLMM) -> str:
    return (f"model built with {len(m.coords.factor)} factor(s), "
            f"control.n_factors={m.control.n_factors!r}")


def grid_of(m: MegaLMM) -> str:
    return f"h2 grid has {m.grid.shape[1]} point(s): {np.round(m.grid[0], 3).tolist()}"


def draws_of(m: MegaLMM) -> str:
    return f"{m.n_draws} draw(s) recorded after {m.chains[0].nrun} iterations"


def scaling_of(m: MegaLMM) -> str:
    on = not np.allclose(m.latent.scale, 1.0)
    return f"Y {'scaled' if on else 'not scaled'} (scale {np.round(m.latent.scale[:2], 3)}...)"


def chains_of(m: MegaLMM) -> str:
    return f"{len(m.chains)} chain(s)"


def accepted(value: Any) -> str:
    if isinstance(value, MegaLMM):
        return "model built"
    text = repr(value).replace("\n", " ")
    return f"returned {text[:80]}"


def frame_all_nan(df: pd.DataFrame) -> str:
    return f"returned a {df.shape} DataFrame, all NaN: {bool(df.isna().all().all())}"


def check_model(n_factors: int | None = None, n_draws: int | None = None,
                traits: list | None = None, extra: Callable[[MegaLMM], str | None] | None = None
                ) -> Callable[[MegaLMM], str | None]:
    """A check of a model built from a valid input: None when right, else the problem."""

    def check(m: MegaLMM) -> str | None:
        if n_factors is not None:
            k = len(m.coords.factor)
            if k != n_factors or m.control.n_factors != n_factors:
                return f"{k} factors, control.n_factors={m.control.n_factors!r}"
        if n_draws is not None and m.n_draws != n_draws:
            return f"{m.n_draws} draws, expected {n_draws}"
        if traits is not None:
            got = list(m.predict().columns)
            if got != traits:
                return f"trait names came back as {got!r}, expected {traits!r}"
        if extra is not None:
            return extra(m)
        return None

    return check


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    group: str
    input: str
    expected: type[BaseException] | None  # None: a valid input that must be accepted
    names: tuple[str, ...]  # words the message must contain (argument names, labels)
    run: Callable[[], Any]
    describe: Callable[[Any], str | None] | None = None  # bad input accepted: what happened
    check: Callable[[Any], str | None] | None = None  # valid input: None when right
    outcome: str = ""
    message: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


CASES: list[Case] = []


def bad(group: str, text: str, exc: type[BaseException], names: str | tuple[str, ...],
        run: Callable[[], Any], describe: Callable[[Any], str | None] | None = None) -> None:
    names = (names,) if isinstance(names, str) else tuple(names)
    CASES.append(Case(group, text, exc, names, run, describe=describe))


def good(group: str, text: str, run: Callable[[], Any],
         check: Callable[[Any], str | None] | None = None) -> None:
    CASES.append(Case(group, text, None, (), run, check=check))


# ---- Y --------------------------------------------------------------------------------
G = "MegaLMM(Y)"
bad(G, "Y=None", TypeError, "Y", lambda: make(Y=None))
bad(G, "Y='abc'", TypeError, "Y", lambda: make(Y="abc"))
bad(G, "Y=5.0", TypeError, "Y", lambda: make(Y=5.0))
bad(G, "Y={'T01': [...]} (a dict)", TypeError, "Y",
    lambda: make(Y={c: Y0[c].tolist() for c in Y0.columns}))
bad(G, "Y=scipy.sparse.csr_matrix(Y)", TypeError, "Y",
    lambda: make(Y=scipy.sparse.csr_matrix(Y0.to_numpy())))
bad(G, "Y=Y['T01'] (a Series)", ValueError, "Y", lambda: make(Y=Y0["T01"]))
bad(G, "Y 1-D array", ValueError, "Y", lambda: make(Y=Y0["T01"].to_numpy()))
bad(G, "Y 3-D array (40, 5, 1)", ValueError, "Y", lambda: make(Y=Y0.to_numpy()[:, :, None]))
bad(G, "Y with 0 columns", ValueError, "Y", lambda: make(Y=Y0.iloc[:, :0]))
bad(G, "Y 0 rows, data 0 rows", ValueError, "Y",
    lambda: make(Y=Y0.iloc[:0], data=DATA0.iloc[:0]))
bad(G, "Y column of strings", ValueError, ("Y", "T02"),
    lambda: make(Y=y_with(T02=[f"x{i}" for i in range(40)])))
bad(G, "Y object array with a string", ValueError, "Y",
    lambda: make(Y=np.where(np.eye(40, 5, dtype=bool), "x", Y0.to_numpy().astype(object))))
bad(G, "Y datetime column", ValueError, ("Y", "T03"),
    lambda: make(Y=y_with(T03=pd.date_range("2020", periods=40))))
bad(G, "Y complex array", TypeError, "Y", lambda: make(Y=Y0.to_numpy() + 1j))
bad(G, "Y column all NaN", ValueError, ("Y", "T04"), lambda: make(Y=y_with(T04=np.nan)))
bad(G, "Y column with one observation", ValueError, ("Y", "T04"),
    lambda: make(Y=y_with(T04=[1.0] + [np.nan] * 39)))
bad(G, "Y constant column (scale_Y=True)", ValueError, ("Y", "T05"),
    lambda: make(Y=y_with(T05=3.0)))
bad(G, "Y constant column, scale_Y=False", ValueError, ("Y", "T05"),
    lambda: sampled(Y=y_with(T05=3.0), scale_Y=False), describe=draws_of)
bad(G, "Y with +inf", ValueError, ("Y", "T01"),
    lambda: make(Y=y_with(T01=[np.inf] + Y0["T01"].tolist()[1:])))
bad(G, "Y with -inf (array)", ValueError, "Y",
    lambda: make(Y=nan_at(Y0.to_numpy().copy(), 3, 2, -np.inf)))
bad(G, "Y duplicate column names", ValueError, ("Y", "T01"),
    lambda: make(Y=Y0.set_axis(["T01", "T01", "T03", "T04", "T05"], axis=1)))
bad(G, "Y array with 39 rows, data 40", ValueError, ("Y", "data"),
    lambda: make(Y=Y0.iloc[:39].to_numpy()))
bad(G, "Y DataFrame with 39 of data's 40 row labels", KeyError, ("Y", "data"),
    lambda: make(Y=Y0.iloc[:39]))
bad(G, "Y index differs from data's index", KeyError, ("Y", "data"),
    lambda: make(Y=Y0.set_axis([f"r{i}" for i in range(40)], axis=0)))
good(G, "Y labelled in another order than data (aligned by label)",
     lambda: make(Y=Y0.iloc[::-1]),
     lambda m: None if np.array_equal(m.design.Y, Y0.to_numpy()) else "rows not aligned")
bad(G, "Y all cells NaN", ValueError, "Y", lambda: make(Y=Y0 * np.nan))
bad(G, "Y float16 column with overflow (1e6 -> inf)", ValueError, "Y",
    lambda: make(Y=y_with(T01=(Y0["T01"] * 1e6).astype(np.float16))))
good(G, "Y as a numpy array", lambda: sampled(Y=Y0.to_numpy()),
     check_model(traits=[f"trait{j}" for j in range(5)]))
good(G, "Y as a list of lists", lambda: sampled(Y=Y0.to_numpy().tolist()),
     check_model(n_draws=2))
good(G, "Y integer trait names 0..4", lambda: sampled(Y=Y0.set_axis(range(5), axis=1)),
     check_model(traits=[0, 1, 2, 3, 4]))
good(G, "Y int64 values", lambda: sampled(Y=(Y0 * 10).round().astype(np.int64)),
     check_model(n_draws=2))
good(G, "Y with a row all NaN (dropped with a warning)",
     lambda: sampled(Y=y_row_nan("ID0003")),
     check_model(extra=lambda m: None if m.design.n == 39 else f"n = {m.design.n}"))

# ---- formula --------------------------------------------------------------------------
G = "MegaLMM(formula)"
bad(G, "formula=None", TypeError, "formula", lambda: make(formula=None))
bad(G, "formula=123", TypeError, "formula", lambda: make(formula=123))
bad(G, "formula=b'~ 1 + (1|ID)'", TypeError, "formula", lambda: make(formula=b"~ 1 + (1|ID)"))
bad(G, "formula=''", ValueError, "formula", lambda: make(formula=""))
bad(G, "formula='~'", ValueError, "formula", lambda: make(formula="~"))
bad(G, "formula='y ~ (1|ID)' (two-sided)", ValueError, "formula",
    lambda: make(formula="y ~ (1|ID)"))
bad(G, "formula='1 + (1|ID)' (no ~)", ValueError, "formula", lambda: make(formula="1 + (1|ID)"))
bad(G, "formula='~ 1' (no random term)", ValueError, "formula",
    lambda: make(formula="~ 1", relmat=None))
bad(G, "formula='~ 1 + (1|ID' (unbalanced)", ValueError, "formula",
    lambda: make(formula="~ 1 + (1|ID"))
bad(G, "formula='~ 1 + (1|ID) +' (dangling +)", ValueError, "formula",
    lambda: make(formula="~ 1 + (1|ID) +"))
bad(G, "formula='~ 1 + (1|ID|ID)'", ValueError, "formula", lambda: make(formula="~ 1 + (1|ID|ID)"))
bad(G, "formula='~ 1 + (|ID)'", ValueError, "formula", lambda: make(formula="~ 1 + (|ID)"))
bad(G, "formula='~ 1 + (1|)'", ValueError, "formula", lambda: make(formula="~ 1 + (1|)"))
bad(G, "formula='~ 1 | ID' (bar outside parentheses)", ValueError, "formula",
    lambda: make(formula="~ 1 | ID"))
bad(G, "formula='~ x +* + (1|ID)' (bad fixed part)", ValueError, "formula",
    lambda: make(formula="~ x +* + (1|ID)"))
bad(G, "formula='~ 1 + (1|Foo)' (unknown grouping variable)", KeyError, ("Foo", "data"),
    lambda: make(formula="~ 1 + (1|Foo)", relmat=None))
bad(G, "formula='~ x + (1|ID)' (unknown fixed variable)", KeyError, ("x", "data"),
    lambda: make(formula="~ x + (1|ID)"))
bad(G, "formula='~ 1 + (x|ID)' (unknown slope variable)", KeyError, ("x", "data"),
    lambda: make(formula="~ 1 + (x|ID)"))
bad(G, "formula='~ 1 + (1|ID) + (1|ID)' (duplicate term)", ValueError, "formula",
    lambda: make(formula="~ 1 + (1|ID) + (1|ID)"))
bad(G, "formula='~ 1 + (1|log(ID))'", ValueError, "formula",
    lambda: make(formula="~ 1 + (1|log(ID))"))

# ---- data -----------------------------------------------------------------------------
G = "MegaLMM(data)"
bad(G, "data=None", TypeError, "data", lambda: make(data=None))
bad(G, "data=dict", TypeError, "data", lambda: make(data={"ID": LEVELS}))
bad(G, "data=numpy array", TypeError, "data", lambda: make(data=DATA0.to_numpy()))
bad(G, "data with 41 rows", ValueError, ("Y", "data"),
    lambda: make(Y=Y0.to_numpy(), data=pd.concat([DATA0, DATA0.iloc[:1]])))
bad(G, "data['ID'] all NaN", ValueError, ("data", "ID"),
    lambda: make(data=DATA0.assign(ID=np.nan), relmat=None))
bad(G, "data duplicate column 'ID'", ValueError, ("data", "ID"),
    lambda: make(data=pd.concat([DATA0, DATA0], axis=1)))
bad(G, "data covariate x with inf", ValueError, ("data", "x"),
    lambda: make(formula="~ x + (1|ID)", data=DATA0.assign(x=[np.inf] + [1.0] * 39)))
bad(G, "data level not in relmat K", KeyError, ("relmat", "zzz"),
    lambda: make(data=DATA0.assign(ID=["zzz"] + LEVELS[1:])))
bad(G, "data covariate x all NaN", ValueError, ("data", "x"),
    lambda: make(formula="~ x + (1|ID)", data=DATA0.assign(x=np.nan)))
good(G, "data['ID'] with one NaN (row dropped with a warning)",
     lambda: sampled(data=DATA0.assign(ID=[np.nan] + LEVELS[1:])),
     check_model(extra=lambda m: None if m.design.n == 39 else f"n = {m.design.n}"))

# ---- relmat ---------------------------------------------------------------------------
G = "MegaLMM(relmat)"
bad(G, "relmat=K (the DataFrame, not a dict)", TypeError, "relmat", lambda: make(relmat=K0))
bad(G, "relmat=[K]", TypeError, "relmat", lambda: make(relmat=[K0]))
bad(G, "relmat='K'", TypeError, "relmat", lambda: make(relmat="K"))
bad(G, "relmat={'ID': None}", TypeError, "relmat", lambda: make(relmat={"ID": None}))
bad(G, "relmat={'ID': K.to_numpy()} (unlabelled array)", TypeError, "relmat",
    lambda: make(relmat={"ID": K0.to_numpy()}))
bad(G, "relmat={'Line': K} (key matches no grouping factor)", KeyError, ("relmat", "Line"),
    lambda: make(relmat={"Line": K0}))
bad(G, "relmat K not PSD", ValueError, "relmat", lambda: make(relmat={"ID": non_psd_K()}))
bad(G, "relmat K not symmetric", ValueError, "relmat",
    lambda: make(relmat={"ID": k_with(lambda a: nan_at(a, 0, 1, a[0, 1] + 0.3))}))
bad(G, "relmat K with NaN", ValueError, "relmat",
    lambda: make(relmat={"ID": k_with(lambda a: nan_at(a, 2, 2))}))
bad(G, "relmat K with inf", ValueError, "relmat",
    lambda: make(relmat={"ID": k_with(lambda a: nan_at(a, 2, 2, np.inf))}))
bad(G, "relmat K all zeros", ValueError, "relmat",
    lambda: make(relmat={"ID": k_with(lambda a: a * 0)}))
bad(G, "relmat K of non-numeric strings", ValueError, "relmat",
    lambda: make(relmat={"ID": k_with(lambda a: np.full(a.shape, "a", dtype=object))}))
bad(G, "relmat K index != columns", KeyError, "relmat",
    lambda: make(relmat={"ID": K0.set_axis([f"L{i}" for i in range(40)], axis=1)}))
bad(G, "relmat K lacks a data level", KeyError, ("relmat", "ID0040"),
    lambda: make(relmat={"ID": K0.iloc[:39, :39]}))
bad(G, "relmat K duplicate levels", ValueError, "relmat",
    lambda: make(relmat={"ID": K0.set_axis(LEVELS[:-1] + LEVELS[:1], axis=0)
                         .set_axis(LEVELS[:-1] + LEVELS[:1], axis=1)}))
bad(G, "relmat K not square (40 x 39)", ValueError, "relmat",
    lambda: make(relmat={"ID": K0.iloc[:, :39]}))
bad(G, "relmat={'ID': {'K': array}} (no levels)", ValueError, ("relmat", "levels"),
    lambda: make(relmat={"ID": {"K": K0.to_numpy()}}))
bad(G, "relmat={'ID': {'K': array, 'levels': 39 names}}", ValueError, ("relmat", "levels"),
    lambda: make(relmat={"ID": {"K": K0.to_numpy(), "levels": LEVELS[:39]}}))
bad(G, "relmat={'ID': {'K': K, 'K_inv': K}}", ValueError, "relmat",
    lambda: make(relmat={"ID": {"K": K0, "K_inv": K0}}))
bad(G, "relmat={'ID': {'Kinv': K}} (misspelt key)", KeyError, ("relmat", "Kinv"),
    lambda: make(relmat={"ID": {"Kinv": K0}}))
bad(G, "relmat K_inv not positive definite", ValueError, "relmat",
    lambda: make(relmat={"ID": {"K_inv": non_psd_K()}}))
bad(G, "relmat K 1-D array with levels", ValueError, "relmat",
    lambda: make(relmat={"ID": {"K": np.ones(40), "levels": LEVELS}}))
bad(G, "relmat levels are ints 0..39, data labels strings", KeyError, ("relmat", "ID"),
    lambda: make(relmat={"ID": {"K": K0.to_numpy(), "levels": list(range(40))}}))
good(G, "relmat {'K': array, 'levels': names}",
     lambda: sampled(relmat={"ID": {"K": K0.to_numpy(), "levels": LEVELS}}),
     check_model(n_draws=2))
good(G, "relmat {'K_inv': sparse, 'levels': names}",
     lambda: sampled(relmat={"ID": {"K_inv": scipy.sparse.csr_matrix(
         np.linalg.inv(K0.to_numpy() + 0.1 * np.eye(40))), "levels": LEVELS}}),
     check_model(n_draws=2))
good(G, "relmat=None (identity)", lambda: sampled(relmat=None), check_model(n_draws=2))

# ---- control shortcuts ----------------------------------------------------------------
G = "MegaLMM(shortcuts)"
bad(G, "n_factors=2.7", ValueError, "n_factors", lambda: make(n_factors=2.7), n_factors_of)
bad(G, "n_factors=0", ValueError, "n_factors", lambda: make(n_factors=0), n_factors_of)
bad(G, "n_factors=-2", ValueError, "n_factors", lambda: make(n_factors=-2), n_factors_of)
bad(G, "n_factors='3'", TypeError, "n_factors", lambda: make(n_factors="3"), n_factors_of)
bad(G, "n_factors=True", TypeError, "n_factors", lambda: make(n_factors=True), n_factors_of)
bad(G, "n_factors=nan", ValueError, "n_factors", lambda: make(n_factors=np.nan), n_factors_of)
bad(G, "n_factors=inf", ValueError, "n_factors", lambda: make(n_factors=np.inf), n_factors_of)
bad(G, "n_factors=[2]", TypeError, "n_factors", lambda: make(n_factors=[2]), n_factors_of)
good(G, "n_factors=3.0", lambda: sampled(n_factors=3.0), check_model(n_factors=3, n_draws=2))
good(G, "n_factors=np.int64(3)", lambda: sampled(n_factors=np.int64(3)),
     check_model(n_factors=3, n_draws=2))
bad(G, "h2_divisions=2.5", ValueError, "h2_divisions", lambda: make(h2_divisions=2.5), grid_of)
bad(G, "h2_divisions=1 (grid {0})", ValueError, "h2_divisions", lambda: make(h2_divisions=1),
    grid_of)
bad(G, "h2_divisions=0", ValueError, "h2_divisions", lambda: make(h2_divisions=0), grid_of)
bad(G, "h2_divisions=-3", ValueError, "h2_divisions", lambda: make(h2_divisions=-3), grid_of)
bad(G, "h2_divisions='5'", TypeError, "h2_divisions", lambda: make(h2_divisions="5"), grid_of)
bad(G, "h2_divisions=True", TypeError, "h2_divisions", lambda: make(h2_divisions=True), grid_of)
bad(G, "h2_divisions=nan", ValueError, "h2_divisions", lambda: make(h2_divisions=np.nan),
    grid_of)
bad(G, "h2_divisions=[5, 5] (one random effect)", ValueError, "h2_divisions",
    lambda: make(h2_divisions=[5, 5]), grid_of)
bad(G, "h2_divisions=[] ", ValueError, "h2_divisions", lambda: make(h2_divisions=[]), grid_of)
bad(G, "h2_divisions=[2.5]", ValueError, "h2_divisions", lambda: make(h2_divisions=[2.5]),
    grid_of)
bad(G, "h2_divisions={'ID': 5}", TypeError, "h2_divisions",
    lambda: make(h2_divisions={"ID": 5}), grid_of)
good(G, "h2_divisions=5.0", lambda: make(h2_divisions=5.0),
     lambda m: None if m.grid.shape[1] == 5 else grid_of(m))
good(G, "h2_divisions=[5]", lambda: make(h2_divisions=[5]),
     lambda m: None if m.grid.shape[1] == 5 else grid_of(m))
bad(G, "burn=2.5", ValueError, "burn", lambda: sampled(8, burn=2.5), draws_of)
bad(G, "burn=-1", ValueError, "burn", lambda: make(burn=-1), draws_of)
bad(G, "burn='2'", TypeError, "burn", lambda: sampled(8, burn="2"), draws_of)
bad(G, "burn=True", TypeError, "burn", lambda: sampled(8, burn=True), draws_of)
bad(G, "burn=inf", ValueError, "burn", lambda: sampled(8, burn=np.inf), draws_of)
good(G, "burn=np.int64(2)", lambda: sampled(burn=np.int64(2)), check_model(n_draws=2))
bad(G, "thin=1.5", ValueError, "thin", lambda: sampled(8, thin=1.5), draws_of)
bad(G, "thin=0", ValueError, "thin", lambda: make(thin=0), draws_of)
bad(G, "thin=-2", ValueError, "thin", lambda: make(thin=-2), draws_of)
bad(G, "thin='2'", TypeError, "thin", lambda: sampled(8, thin="2"), draws_of)
bad(G, "thin=nan", ValueError, "thin", lambda: sampled(8, thin=np.nan), draws_of)
good(G, "thin=2.0", lambda: sampled(thin=2.0), check_model(n_draws=2))
bad(G, "scale_Y='no'", TypeError, "scale_Y", lambda: make(scale_Y="no"), scaling_of)
bad(G, "scale_Y=0", TypeError, "scale_Y", lambda: make(scale_Y=0), scaling_of)
bad(G, "scale_Y='False'", TypeError, "scale_Y", lambda: make(scale_Y="False"), scaling_of)
good(G, "scale_Y=np.bool_(False)", lambda: make(scale_Y=np.bool_(False)),
     lambda m: None if np.allclose(m.latent.scale, 1) else scaling_of(m))

# ---- other constructor arguments ------------------------------------------------------
G = "MegaLMM(other args)"
bad(G, "control='fast'", TypeError, "control", lambda: make(control="fast"))
bad(G, "control={'n_factors': 3}", TypeError, "control", lambda: make(control={"n_factors": 3}))
bad(G, "control=Control (the class)", TypeError, "control", lambda: make(control=Control))
bad(G, "priors='default'", TypeError, "priors", lambda: make(priors="default"))
bad(G, "priors={'tot_Y_var': ...}", TypeError, "priors",
    lambda: make(priors={"tot_Y_var": VariancePrior(0.5, 5)}))
bad(G, "priors=ARDPrior() (a loadings prior, not Priors)", TypeError, "priors",
    lambda: make(priors=ARDPrior()))
bad(G, "observation='gaussian'", TypeError, "observation", lambda: make(observation="gaussian"))
bad(G, "chains=0", ValueError, "chains", lambda: make(chains=0), chains_of)
bad(G, "chains=-1", ValueError, "chains", lambda: make(chains=-1), chains_of)
bad(G, "chains=1.5", ValueError, "chains", lambda: make(chains=1.5), chains_of)
bad(G, "chains='2'", TypeError, "chains", lambda: make(chains="2"), chains_of)
bad(G, "chains=None", TypeError, "chains", lambda: make(chains=None), chains_of)
bad(G, "chains=True", TypeError, "chains", lambda: make(chains=True), chains_of)
good(G, "chains=2.0", lambda: make(chains=2.0),
     lambda m: None if len(m.chains) == 2 else chains_of(m))
bad(G, "seed=-1", ValueError, "seed", lambda: make(seed=-1))
bad(G, "seed=1.5", ValueError, "seed", lambda: make(seed=1.5))
bad(G, "seed='abc'", TypeError, "seed", lambda: make(seed="abc"))
bad(G, "seed=True", TypeError, "seed", lambda: make(seed=True))
bad(G, "seed=nan", ValueError, "seed", lambda: make(seed=np.nan))
good(G, "seed=np.int64(7)", lambda: make(seed=np.int64(7)),
     lambda m: None if np.array_equal(m.states[0].Lambda, make(seed=7).states[0].Lambda)
     else "different draws from seed=7")
good(G, "seed=None", lambda: make(seed=None))
bad(G, "record=['foo']", KeyError, ("record", "foo"), lambda: make(record=["foo"]))
bad(G, "record='Lambda' (a string)", TypeError, "record", lambda: make(record="Lambda"))
bad(G, "record=5", TypeError, "record", lambda: make(record=5))
bad(G, "record=[1]", TypeError, "record", lambda: make(record=[1]))
bad(G, "record=['U'] (derived, not recordable)", KeyError, ("record", "U"),
    lambda: make(record=["U"]))
bad(G, "record=['Lambda', 'Lambda']", ValueError, ("record", "Lambda"),
    lambda: make(record=["Lambda", "Lambda"]))
good(G, "record=('Lambda', 'F_h2') (a tuple)",
     lambda: sampled(record=("Lambda", "F_h2")), check_model(n_draws=2))
bad(G, "functions='f'", TypeError, "functions", lambda: make(functions="f"))
bad(G, "functions=[fn] (a list)", TypeError, "functions",
    lambda: make(functions=[lambda ds: ds["h2"]]))
bad(G, "functions={'f': 5} (not callable)", TypeError, ("functions", "f"),
    lambda: sampled(functions={"f": 5}))
bad(G, "functions={1: fn} (name not a str)", TypeError, "functions",
    lambda: sampled(functions={1: lambda ds: ds["h2"]}))
bad(G, "functions={'Lambda': fn} (clashes with a parameter)", ValueError, ("functions", "Lambda"),
    lambda: sampled(functions={"Lambda": lambda ds: ds["h2"]}).posterior,
    lambda ds: f"posterior['Lambda'] is the function's result, dims {ds['Lambda'].dims}")
bad(G, "functions={'h2': fn} (clashes with a derived quantity)", ValueError, ("functions", "h2"),
    lambda: sampled(functions={"h2": lambda ds: ds["h2"] * 0}).posterior,
    lambda ds: f"function result lost: sum of posterior['h2'] = {float(ds['h2'].sum()):.3g}")
bad(G, "run_dir=None", TypeError, "run_dir", lambda: make(run_dir=None))
bad(G, "run_dir=5", TypeError, "run_dir", lambda: make(run_dir=5))
bad(G, "run_dir='' (would write in the working directory)", ValueError, "run_dir",
    lambda: saved(run_dir=""), lambda m: f"store written at {m.store.path.resolve()}")
bad(G, "verbose='no'", TypeError, "verbose", lambda: make(verbose="no"))
bad(G, "verbose=None", TypeError, "verbose", lambda: make(verbose=None))

# ---- Control(...) ---------------------------------------------------------------------
G = "Control(...)"
bad(G, "Control(n_factors=2.7)", ValueError, "n_factors", lambda: Control(n_factors=2.7), accepted)
bad(G, "Control(n_factors='3')", TypeError, "n_factors", lambda: Control(n_factors="3"), accepted)
bad(G, "Control(n_factors=None)", TypeError, "n_factors", lambda: Control(n_factors=None), accepted)
bad(G, "Control(h2_divisions=1)", ValueError, "h2_divisions", lambda: Control(h2_divisions=1),
    accepted)
bad(G, "Control(h2_divisions=2.5)", ValueError, "h2_divisions",
    lambda: Control(h2_divisions=2.5), accepted)
bad(G, "Control(h2_divisions=[5, 0])", ValueError, "h2_divisions",
    lambda: Control(h2_divisions=[5, 0]), accepted)
bad(G, "Control(h2_divisions='20')", TypeError, "h2_divisions",
    lambda: Control(h2_divisions="20"), accepted)
bad(G, "Control(burn=2.5)", ValueError, "burn", lambda: Control(burn=2.5), accepted)
bad(G, "Control(burn=None)", TypeError, "burn", lambda: Control(burn=None), accepted)
bad(G, "Control(thin=1.5)", ValueError, "thin", lambda: Control(thin=1.5), accepted)
bad(G, "Control(thin=True)", TypeError, "thin", lambda: Control(thin=True), accepted)
bad(G, "Control(scale_Y='no')", TypeError, "scale_Y", lambda: Control(scale_Y="no"), accepted)
bad(G, "Control(scale_Y=None)", TypeError, "scale_Y", lambda: Control(scale_Y=None), accepted)
bad(G, "Control(K_eigen_tol=-1)", ValueError, "K_eigen_tol", lambda: Control(K_eigen_tol=-1),
    accepted)
bad(G, "Control(K_eigen_tol=nan)", ValueError, "K_eigen_tol",
    lambda: Control(K_eigen_tol=np.nan), accepted)
bad(G, "Control(K_eigen_tol='1e-10')", TypeError, "K_eigen_tol",
    lambda: Control(K_eigen_tol="1e-10"), accepted)
bad(G, "MegaLMM(control=Control(K_eigen_tol=-1))", ValueError, "K_eigen_tol",
    lambda: make(control=Control(K_eigen_tol=-1)))
bad(G, "Control(max_precompute_gb=0)", ValueError, "max_precompute_gb",
    lambda: Control(max_precompute_gb=0), accepted)
bad(G, "Control(max_precompute_gb=-1)", ValueError, "max_precompute_gb",
    lambda: Control(max_precompute_gb=-1), accepted)
bad(G, "Control(max_precompute_gb=nan)", ValueError, "max_precompute_gb",
    lambda: Control(max_precompute_gb=np.nan), accepted)
bad(G, "Control(max_precompute_gb='8')", TypeError, "max_precompute_gb",
    lambda: Control(max_precompute_gb="8"), accepted)
bad(G, "MegaLMM(control=Control(max_precompute_gb=-1))", ValueError, "max_precompute_gb",
    lambda: make(control=Control(max_precompute_gb=-1)))
bad(G, "max_precompute_gb=1e-9 exceeded", MemoryError, "max_precompute_gb",
    lambda: make(control=Control(max_precompute_gb=1e-9)))
bad(G, "Control(n_threads=0)", ValueError, "n_threads", lambda: Control(n_threads=0), accepted)
bad(G, "Control(n_threads=1.5)", ValueError, "n_threads", lambda: Control(n_threads=1.5),
    accepted)
bad(G, "Control(n_threads='2')", TypeError, "n_threads", lambda: Control(n_threads="2"),
    accepted)
bad(G, "Control(n_threads=True)", TypeError, "n_threads", lambda: Control(n_threads=True),
    accepted)
good(G, "Control(n_factors=3.0, burn=np.int64(5))", lambda: Control(n_factors=3.0,
                                                                     burn=np.int64(5)),
     lambda c: None if (c.n_factors, c.burn) == (3, 5) else repr(c))
good(G, "MegaLMM(control=Control(n_factors=3), n_factors=2) (shortcut overrides)",
     lambda: make(control=Control(n_factors=3), n_factors=2),
     lambda m: None if m.control.n_factors == 2 else repr(m.control))

# ---- Priors and prior classes ---------------------------------------------------------
G = "Priors(...)"
bad(G, "Priors(tot_Y_var=(0.5, 5))", TypeError, "tot_Y_var",
    lambda: sampled(priors=Priors(tot_Y_var=(0.5, 5))))
good(G, "Priors(tot_Y_var={'V': 0.5, 'nu': 5}) (R's list(V=, nu=))",
     lambda: sampled(priors=Priors(tot_Y_var={"V": 0.5, "nu": 5})),
     lambda m: None if np.array_equal(m.states[0].Lambda, sampled().states[0].Lambda)
     else "draws differ from VariancePrior(0.5, 5)'s")
bad(G, "Priors(tot_Y_var={'V': 0.5}) (nu missing)", ValueError, "tot_Y_var",
    lambda: sampled(priors=Priors(tot_Y_var={"V": 0.5})))
bad(G, "Priors(tot_Y_var=None)", TypeError, "tot_Y_var",
    lambda: sampled(priors=Priors(tot_Y_var=None)))
bad(G, "Priors(tot_Y_var=0.5)", TypeError, "tot_Y_var", lambda: sampled(priors=Priors(0.5)))
bad(G, "Priors(tot_F_var='x')", TypeError, "tot_F_var",
    lambda: sampled(priors=Priors(tot_F_var="x")))
bad(G, "Priors(tot_F_var=GammaPrior(2, 1)) (wrong prior class)", TypeError, "tot_F_var",
    lambda: sampled(priors=Priors(tot_F_var=GammaPrior(2, 1))))
bad(G, "Priors(Lambda_prior='ARD')", TypeError, "Lambda_prior",
    lambda: sampled(priors=Priors(Lambda_prior="ARD")))
bad(G, "Priors(Lambda_prior=ARDPrior) (the class)", TypeError, "Lambda_prior",
    lambda: sampled(priors=Priors(Lambda_prior=ARDPrior)))
bad(G, "Priors(Lambda_prior=None)", TypeError, "Lambda_prior",
    lambda: sampled(priors=Priors(Lambda_prior=None)))
bad(G, "h2_prior_resids=np.ones(3) (grid has 5)", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=np.ones(3))))
bad(G, "h2_prior_resids with a negative weight", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=np.array([1, 1, -1, 1, 1.0]))))
bad(G, "h2_prior_resids with NaN", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=np.array([1, 1, np.nan, 1, 1.0]))))
bad(G, "h2_prior_resids all zero", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=np.zeros(5))))
bad(G, "h2_prior_resids='flat'", TypeError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids="flat")))
bad(G, "h2_prior_resids=1.0 (a scalar)", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=1.0)))
bad(G, "h2_prior_resids=lambda: 1 (wrong arity)", TypeError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=lambda: 1)))
bad(G, "h2_prior_resids=lambda g: np.ones(2)", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=lambda g: np.ones(2))))
bad(G, "h2_prior_resids=lambda g: 'x'", TypeError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=lambda g: "x")))
bad(G, "h2_prior_resids=lambda g: -g[0]", ValueError, "h2_prior_resids",
    lambda: make(priors=Priors(h2_prior_resids=lambda g: -g[0])))
bad(G, "h2_prior_factors=np.ones(6)", ValueError, "h2_prior_factors",
    lambda: make(priors=Priors(h2_prior_factors=np.ones(6))))
bad(G, "h2_prior_factors=lambda g: g[0] * np.inf", ValueError, "h2_prior_factors",
    lambda: make(priors=Priors(h2_prior_factors=lambda g: g[0] * np.inf)))
good(G, "Priors with every default given explicitly",
     lambda: sampled(priors=Priors(
         tot_Y_var=VariancePrior(0.5, 5.0), tot_F_var=VariancePrior(18 / 20, 20.0),
         h2_prior_resids=None, h2_prior_factors=None,
         Lambda_prior=ARDPrior(3.0, GammaPrior(2.0, 1.0), GammaPrior(3.0, 1.0), 100))),
     lambda m: None if np.array_equal(m.states[0].Lambda, sampled().states[0].Lambda)
     else "draws differ from the default priors'")
good(G, "h2_prior_resids as a list of 5 weights",
     lambda: sampled(priors=Priors(h2_prior_resids=[1, 2, 3, 2, 1])), check_model(n_draws=2))
good(G, "h2_prior_factors=lambda g: 1 - g[0]",
     lambda: sampled(priors=Priors(h2_prior_factors=lambda g: 1 - g[0])),
     check_model(n_draws=2))

G = "VariancePrior/GammaPrior/ARDPrior"
bad(G, "VariancePrior(V=-1, nu=5)", ValueError, "V", lambda: VariancePrior(-1, 5), accepted)
bad(G, "VariancePrior(V=0, nu=5)", ValueError, "V", lambda: VariancePrior(0, 5), accepted)
bad(G, "VariancePrior(V=0.5, nu=1)", ValueError, "nu", lambda: VariancePrior(0.5, 1), accepted)
bad(G, "VariancePrior(V=inf, nu=5)", ValueError, "V", lambda: VariancePrior(np.inf, 5), accepted)
bad(G, "VariancePrior(V=0.5, nu=inf)", ValueError, "nu", lambda: VariancePrior(0.5, np.inf),
    accepted)
bad(G, "VariancePrior(V=nan, nu=5)", ValueError, "V", lambda: VariancePrior(np.nan, 5), accepted)
bad(G, "VariancePrior(V='0.5', nu=5)", TypeError, "V", lambda: VariancePrior("0.5", 5), accepted)
bad(G, "VariancePrior(V=0.5, nu=None)", TypeError, "nu", lambda: VariancePrior(0.5, None),
    accepted)
bad(G, "VariancePrior(V=[0.5], nu=5)", TypeError, "V", lambda: VariancePrior([0.5], 5), accepted)
bad(G, "VariancePrior(V=True, nu=5)", TypeError, "V", lambda: VariancePrior(True, 5), accepted)
bad(G, "VariancePrior(V=array([0.5, 1]), nu=5)", TypeError, "V",
    lambda: VariancePrior(np.array([0.5, 1.0]), 5), accepted)
bad(G, "model with tot_Y_var=VariancePrior(inf, 5)", ValueError, "V",
    lambda: sampled(priors=Priors(tot_Y_var=VariancePrior(np.inf, 5))))
good(G, "VariancePrior(V=np.float32(0.5), nu=5)", lambda: VariancePrior(np.float32(0.5), 5),
     lambda p: None if p.V == 0.5 else repr(p))
bad(G, "GammaPrior(shape=0, rate=1)", ValueError, "shape", lambda: GammaPrior(0, 1), accepted)
bad(G, "GammaPrior(shape=2, rate=-1)", ValueError, "rate", lambda: GammaPrior(2, -1), accepted)
bad(G, "GammaPrior(shape=inf, rate=1)", ValueError, "shape", lambda: GammaPrior(np.inf, 1),
    accepted)
bad(G, "GammaPrior(shape=2, rate=nan)", ValueError, "rate", lambda: GammaPrior(2, np.nan),
    accepted)
bad(G, "GammaPrior(shape='2', rate=1)", TypeError, "shape", lambda: GammaPrior("2", 1), accepted)
bad(G, "GammaPrior(shape=2, rate=None)", TypeError, "rate", lambda: GammaPrior(2, None),
    accepted)
bad(G, "ARDPrior(Lambda_df=0)", ValueError, "Lambda_df", lambda: ARDPrior(Lambda_df=0), accepted)
bad(G, "ARDPrior(Lambda_df=inf)", ValueError, "Lambda_df", lambda: ARDPrior(Lambda_df=np.inf),
    accepted)
bad(G, "ARDPrior(Lambda_df=nan)", ValueError, "Lambda_df", lambda: ARDPrior(Lambda_df=np.nan),
    accepted)
bad(G, "ARDPrior(Lambda_df='3')", TypeError, "Lambda_df", lambda: ARDPrior(Lambda_df="3"),
    accepted)
bad(G, "ARDPrior(delta_1=(2, 1))", TypeError, "delta_1", lambda: ARDPrior(delta_1=(2, 1)),
    accepted)
good(G, "ARDPrior(delta_1={'shape': 2, 'rate': 1}) (R's list)",
     lambda: ARDPrior(delta_1={"shape": 2, "rate": 1}),
     lambda p: None if p.delta_1 == GammaPrior(2, 1) else repr(p))
bad(G, "ARDPrior(delta_2='x')", TypeError, "delta_2", lambda: ARDPrior(delta_2="x"), accepted)
bad(G, "ARDPrior(delta_2=VariancePrior(1, 3)) (wrong class)", TypeError, "delta_2",
    lambda: ARDPrior(delta_2=VariancePrior(1, 3)), accepted)
bad(G, "ARDPrior(delta_iterations_factor=0)", ValueError, "delta_iterations_factor",
    lambda: ARDPrior(delta_iterations_factor=0), accepted)
bad(G, "ARDPrior(delta_iterations_factor=2.5)", ValueError, "delta_iterations_factor",
    lambda: ARDPrior(delta_iterations_factor=2.5), accepted)
bad(G, "ARDPrior(delta_iterations_factor='100')", TypeError, "delta_iterations_factor",
    lambda: ARDPrior(delta_iterations_factor="100"), accepted)
bad(G, "model with ARDPrior(delta_1=(2, 1))", TypeError, "delta_1",
    lambda: sampled(priors=Priors(Lambda_prior=ARDPrior(delta_1=(2, 1)))))
good(G, "ARDPrior(Lambda_df=3, delta_iterations_factor=100.0)",
     lambda: ARDPrior(Lambda_df=3, delta_iterations_factor=100.0),
     lambda p: None if p.delta_iterations_factor == 100 else repr(p))

# ---- sample, burn_in, reorder_factors -------------------------------------------------
G = "sample/burn_in/reorder"
bad(G, "sample(n_iter=-1)", ValueError, "n_iter", lambda: make().sample(-1, progress=False))
bad(G, "sample(n_iter=2.5)", ValueError, "n_iter",
    lambda: make().sample(2.5, progress=False), lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "sample(n_iter='10')", TypeError, "n_iter",
    lambda: make().sample("10", progress=False), lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "sample(n_iter=None)", TypeError, "n_iter", lambda: make().sample(None, progress=False))
bad(G, "sample(n_iter=nan)", ValueError, "n_iter", lambda: make().sample(np.nan, progress=False))
bad(G, "sample(n_iter=True)", TypeError, "n_iter",
    lambda: make().sample(True, progress=False), lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "sample(n_iter=[10])", TypeError, "n_iter", lambda: make().sample([10], progress=False))
bad(G, "sample(10, progress='no')", TypeError, "progress", lambda: make().sample(4, progress="no"),
    lambda m: "progress bar shown")
good(G, "sample(n_iter=6.0)", lambda: make().sample(6.0, progress=False), check_model(n_draws=2))
good(G, "sample(n_iter=0)", lambda: make().sample(0, progress=False),
     lambda m: None if m.chains[0].nrun == 0 else f"nrun {m.chains[0].nrun}")
bad(G, "reorder_factors(drop_cor_threshold=0)", ValueError, "drop_cor_threshold",
    lambda: sampled().reorder_factors(0))
bad(G, "reorder_factors(drop_cor_threshold=1.5)", ValueError, "drop_cor_threshold",
    lambda: sampled().reorder_factors(1.5))
bad(G, "reorder_factors(drop_cor_threshold=nan)", ValueError, "drop_cor_threshold",
    lambda: sampled().reorder_factors(np.nan))
bad(G, "reorder_factors(drop_cor_threshold='0.5')", TypeError, "drop_cor_threshold",
    lambda: sampled().reorder_factors("0.5"))
bad(G, "reorder_factors(drop_cor_threshold=None)", TypeError, "drop_cor_threshold",
    lambda: sampled().reorder_factors(None))
bad(G, "burn_in(rounds=-1)", ValueError, "rounds",
    lambda: make().burn_in(rounds=-1, iterations=4, progress=False))
bad(G, "burn_in(rounds=2.5)", ValueError, "rounds",
    lambda: make().burn_in(rounds=2.5, iterations=4, progress=False),
    lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "burn_in(rounds='2')", TypeError, "rounds",
    lambda: make().burn_in(rounds="2", iterations=4, progress=False),
    lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "burn_in(iterations=-5)", ValueError, "iterations",
    lambda: make().burn_in(rounds=1, iterations=-5, progress=False))
bad(G, "burn_in(iterations=2.5)", ValueError, "iterations",
    lambda: make().burn_in(rounds=1, iterations=2.5, progress=False),
    lambda m: f"ran {m.chains[0].nrun} iterations")
bad(G, "burn_in(iterations=None)", TypeError, "iterations",
    lambda: make().burn_in(rounds=1, iterations=None, progress=False))
bad(G, "burn_in(drop_cor_threshold=2) (found only after sampling?)", ValueError,
    "drop_cor_threshold",
    lambda: make().burn_in(rounds=1, iterations=4, drop_cor_threshold=2, progress=False))

# ---- missing-data maps ----------------------------------------------------------------
G = "missing-data maps"
Y_MISS = Y0.mask(np.random.default_rng(3).random(Y0.shape) < 0.3)
bad(G, "missing_data_maps(max_groups=0)", ValueError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups=0))
bad(G, "missing_data_maps(max_groups=-1)", ValueError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups=-1))
bad(G, "missing_data_maps(max_groups=2.5)", ValueError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups=2.5),
    lambda r: f"{len(r[0])} maps, up to {max(len(m) for m in r[0])} groups")
bad(G, "missing_data_maps(max_groups='3')", TypeError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups="3"),
    lambda r: f"{len(r[0])} maps, up to {max(len(m) for m in r[0])} groups")
bad(G, "missing_data_maps(max_groups=None)", TypeError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups=None))
bad(G, "missing_data_maps(max_groups=True)", TypeError, "max_groups",
    lambda: make(Y=Y_MISS).missing_data_maps(max_groups=True))
good(G, "missing_data_maps(max_groups=3.0)",
     lambda: make(Y=Y_MISS).missing_data_maps(max_groups=3.0),
     lambda r: None if max(len(m) for m in r[0]) <= 3 else "more than 3 groups")
bad(G, "set_missing_data_map('foo')", TypeError, "mdmap",
    lambda: make(Y=Y_MISS).set_missing_data_map("foo"))
bad(G, "set_missing_data_map(3) (an index)", TypeError, "mdmap",
    lambda: make(Y=Y_MISS).set_missing_data_map(3))
bad(G, "set_missing_data_map(maps) (the whole list)", TypeError, "mdmap",
    lambda: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[0]))(make(Y=Y_MISS)))
bad(G, "set_missing_data_map(table) (the DataFrame)", TypeError, "mdmap",
    lambda: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[1]))(make(Y=Y_MISS)))
bad(G, "set_missing_data_map(map for 3 of 5 traits)", ValueError, "mdmap",
    lambda: make(Y=Y_MISS).set_missing_data_map(MissingDataMap(
        (TraitGroup(np.arange(40), np.arange(3)),))))
bad(G, "set_missing_data_map(map with a trait in 2 groups)", ValueError, "mdmap",
    lambda: make(Y=Y_MISS).set_missing_data_map(MissingDataMap(
        (TraitGroup(np.arange(40), np.arange(5)), TraitGroup(np.arange(10), np.arange(1))))))
bad(G, "set_missing_data_map(map excluding observed cells)", ValueError, "mdmap",
    lambda: make(Y=Y_MISS).set_missing_data_map(MissingDataMap(
        (TraitGroup(np.arange(40), np.arange(4)), TraitGroup(np.arange(5), np.array([4]))))))
bad(G, "set_missing_data_map(valid map) after sampling", RuntimeError, "missing-data map",
    lambda: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[0][1]))(
        sampled(Y=Y_MISS)))
good(G, "set_missing_data_map(maps[1])",
     lambda: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[0][1]).sample(
         6, progress=False))(make(Y=Y_MISS)), check_model(n_draws=2))
good(G, "set_missing_data_map(maps[0]) after maps[1] (back to full imputation)",
     lambda: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[0][1])
              .set_missing_data_map(m.missing_data_maps(3)[0][0]).sample(6, progress=False))(
         make(Y=Y_MISS)), check_model(n_draws=2))

# ---- results --------------------------------------------------------------------------
G = "results"
bad(G, "predict() before sampling", RuntimeError, "sample", lambda: make().predict())
bad(G, "predict() during burn-in (1 of 2 iterations)", RuntimeError, "sample",
    lambda: sampled(1).predict())
bad(G, "genetic_values() before sampling", RuntimeError, "sample",
    lambda: make().genetic_values(), frame_all_nan)
bad(G, "genetic_values() during burn-in", RuntimeError, "sample",
    lambda: sampled(1).genetic_values(), frame_all_nan)
bad(G, "posterior before sampling", RuntimeError, "sample", lambda: make().posterior,
    lambda ds: f"returned a Dataset with {ds.sizes.get('draw')} draws")
bad(G, "posterior_means before sampling", RuntimeError, "sample", lambda: make().posterior_means)
bad(G, "reload_posterior() before sampling", RuntimeError, "sample",
    lambda: make().reload_posterior())
bad(G, "posterior_function(fn) before sampling", RuntimeError, "sample",
    lambda: make().posterior_function(lambda ds: ds["h2"]))
bad(G, "posterior_function('h2') (not callable)", TypeError, "fn",
    lambda: sampled().posterior_function("h2"))
bad(G, "posterior_function(None)", TypeError, "fn", lambda: sampled().posterior_function(None))
bad(G, "estimate_memory(n_iter=-1)", ValueError, "n_iter", lambda: make().estimate_memory(-1),
    accepted)
bad(G, "estimate_memory(n_iter='10')", TypeError, "n_iter",
    lambda: make().estimate_memory("10"), accepted)
bad(G, "estimate_memory(n_iter=2.5)", ValueError, "n_iter", lambda: make().estimate_memory(2.5),
    accepted)
# the store's documented FileNotFoundError, as tests/test_validation.py expects
bad(G, "load_posterior() before any save_posterior_chunk", FileNotFoundError,
    "save_posterior_chunk", lambda: sampled().load_posterior())
bad(G, "load_posterior(names=['foo'])", KeyError, ("names", "foo"),
    lambda: saved().load_posterior(names=["foo"]))
bad(G, "load_posterior(names=5)", TypeError, "names", lambda: saved().load_posterior(names=5))
bad(G, "load_posterior(names=[1])", TypeError, "names", lambda: saved().load_posterior(names=[1]))
bad(G, "load_posterior(lazy='no')", TypeError, "lazy",
    lambda: saved().load_posterior(lazy="no"), lambda ds: "accepted")
good(G, "load_posterior(names='h2') (one name as a str)",
     lambda: saved().load_posterior(names="h2"),
     lambda ds: None if list(ds.data_vars) == ["h2"] else list(ds.data_vars))
good(G, "load_posterior(names=('U', 'h2'))", lambda: saved().load_posterior(names=("U", "h2")),
     lambda ds: None if sorted(ds.data_vars) == ["U", "h2"] else list(ds.data_vars))
good(G, "save_posterior_chunk() before sampling (nothing to save)",
     lambda: make().save_posterior_chunk(), lambda n: None if n == 0 else f"returned {n}")
bad(G, "clear_posterior(disk='no')", TypeError, "disk",
    lambda: saved().clear_posterior(disk="no"), lambda _: "accepted")


def _file_run_dir() -> Path:
    path = run_dir()
    path.write_text("not a directory")
    return path


def _under_file_run_dir() -> Path:
    return _file_run_dir() / "sub"


bad(G, "save_posterior_chunk() with run_dir an existing file", ValueError, "run_dir",
    lambda: saved(run_dir=_file_run_dir()))
bad(G, "save_posterior_chunk() with run_dir under a file (unwritable)", ValueError, "run_dir",
    lambda: saved(run_dir=_under_file_run_dir()))
# an operating-system failure stays an OSError, with run_dir named
bad(G, "save_posterior_chunk() with run_dir under /proc (cannot be created)", OSError, "run_dir",
    lambda: saved(run_dir="/proc/pymegalmm_probe"))


# --------------------------------------------------------------------------------------
# Running and classifying
# --------------------------------------------------------------------------------------


def mentions(message: str, word: str) -> bool:
    """Whether ``word`` appears in ``message`` as a whole word (case-sensitive)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message) is not None


def origin(exc: BaseException) -> Path:
    """File of the innermost traceback frame (Cython frames have relative names)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return Path("?")
    path = Path(tb.tb_frame.f_code.co_filename)
    return path.resolve() if path.is_absolute() else path


def where(path: Path) -> str:
    for root in (PKG.parent, Path(np.__file__).parents[1]):
        with contextlib.suppress(ValueError):
            return str(path.relative_to(root))
    return str(path)


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def classify(case: Case) -> None:
    t0 = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):
            warnings.simplefilter("ignore")
            result = case.run()
    except _Timeout:
        case.outcome, case.message = "cryptic", f"no answer within {TIMEOUT} s"
    except Exception as exc:  # noqa: BLE001 - everything is classified
        signal.alarm(0)
        src = origin(exc)
        in_pkg = src.is_relative_to(PKG) and not src.is_relative_to(KERNELS)
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        case.extra["raised_in"] = where(src)
        if case.expected is None:
            case.outcome, case.message = "cryptic", f"valid input rejected: {text}"
        elif not in_pkg:
            case.outcome, case.message = "cryptic", f"{text} [raised in {where(src)}]"
        elif not isinstance(exc, case.expected):
            case.outcome = "cryptic"
            case.message = f"{text} [expected {case.expected.__name__}]"
        else:
            missing = [w for w in case.names if not mentions(str(exc), w)]
            case.outcome = "cryptic" if missing else "clear"
            case.message = text + (f" [does not name {missing}]" if missing else "")
    else:
        signal.alarm(0)
        if case.expected is None:
            try:
                problem = case.check(result) if case.check is not None else None
            except Exception as exc:  # noqa: BLE001
                problem = f"check failed: {type(exc).__name__}: {exc}"
            case.outcome = "silent" if problem else "ok"
            case.message = problem or "accepted, result correct"
        else:
            try:
                note = case.describe(result) if case.describe is not None else None
            except Exception as exc:  # noqa: BLE001
                note = f"(describing the result failed: {type(exc).__name__}: {exc})"
            case.outcome, case.message = "silent", "no error; " + (note or accepted(result))
    finally:
        signal.alarm(0)
    case.seconds = time.perf_counter() - t0


def code_version() -> str:
    try:
        root = PKG.parent
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "pymegalmm"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{head}{' + uncommitted changes in pymegalmm/' if dirty else ''} ({PKG})"
    except (OSError, subprocess.CalledProcessError):
        return f"{PKG} (not a git checkout)"


def cell(text: str, limit: int = 220) -> str:
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_markdown(cases: list[Case], path: Path, counts: Counter, version: str) -> None:
    lines = [
        "# Bad-input probe of pymegalmm's public API",
        "",
        f"Code probed: `{version}`; generated by `tools/probe_inputs.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "Outcomes: **clear** (expected type, raised in `pymegalmm/`, message names the "
        "argument), **cryptic** (raised elsewhere, wrong type, or argument not named; or a "
        "valid input rejected), **silent** (no error, wrong or degenerate result), **ok** "
        "(valid alternative accepted, result right).",
        "",
        "| outcome | count |",
        "|---|---|",
        *[f"| {k} | {counts.get(k, 0)} |" for k in ("clear", "cryptic", "silent", "ok")],
        f"| total | {sum(counts.values())} |",
        "",
        "| # | area | input | expected | outcome | message |",
        "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        exp = "accepted" if c.expected is None else (
            f"{c.expected.__name__} naming {', '.join(c.names)}")
        lines.append(f"| {i} | {cell(c.group)} | `{cell(c.input, 120)}` | {cell(exp)} | "
                     f"**{c.outcome}** | {cell(c.message)} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/notes/probe_results.md"))
    parser.add_argument("--only", default=None, help="run only cases whose input contains this")
    parser.add_argument("--label", default=None, help="describe the code probed (default: git)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    cases = [c for c in CASES if args.only is None or args.only in c.input]
    version = args.label or code_version()
    print(f"probing {len(cases)} cases on {version}")
    cwd = os.getcwd()
    os.chdir(_SCRATCH)  # run_dir="" and the default run_dir land here
    # One OpenMP thread: on a busy machine two spinning threads make every tiny kernel call
    # ~100x slower; outcomes do not depend on the thread count.
    limits = threadpool_limits(limits=1, user_api="openmp")
    try:
        for i, case in enumerate(cases, 1):
            classify(case)
            print(f"{i:3d} {case.outcome:7s} {case.seconds:5.2f}s {case.input[:56]:56s} "
                  f"{cell(case.message, 100)}", flush=True)
    finally:
        limits.restore_original_limits()
        os.chdir(cwd)
        shutil.rmtree(_SCRATCH, ignore_errors=True)
    counts = Counter(c.outcome for c in cases)
    print()
    print("summary: " + ", ".join(f"{k} {counts.get(k, 0)}"
                                  for k in ("clear", "cryptic", "silent", "ok"))
          + f" (total {len(cases)})")
    by_group: dict[str, Counter] = {}
    for c in cases:
        by_group.setdefault(c.group, Counter())[c.outcome] += 1
    for group, cnt in by_group.items():
        print(f"  {group:34s} " + "  ".join(f"{k} {cnt.get(k, 0):2d}"
                                            for k in ("clear", "cryptic", "silent", "ok")))
    write_markdown(cases, out, counts, version)
    print(f"table written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
