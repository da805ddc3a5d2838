"""Every bad input to the public API gets a clear error raised in pymegalmm's own code.

Issue "Reliability", part 1.  Each case below is a bad input (drawn from
``tools/probe_inputs.py``, which also reports silent and cryptic outcomes) with

* the exception type a user should get: ``TypeError`` (wrong type), ``ValueError``
  (wrong value: range, integrality, finiteness, shape, degenerate data),
  ``KeyError`` (a name or label that is missing or does not match) or
  ``RuntimeError`` (the API used in the wrong order);
* the words its message must contain, as whole words and case-sensitive: the
  argument's name as the user typed it (``n_factors``, ``relmat``, ...), and the
  offending label where there is one.

The exception must also come from pymegalmm: the innermost traceback frame is a
Python file of the package (not numpy, pandas, zarr, formulaic, dataclasses or a
compiled kernel).  A few valid alternative spellings that must keep working close
the file.

Models are small (40 rows x 5 traits, 2 factors, an h2 grid of 5 points) and the
ones only read are built once per module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from threadpoolctl import threadpool_limits

import pymegalmm
from pymegalmm import Control, MegaLMM, Priors, datasets
from pymegalmm.observation.maps import MissingDataMap, TraitGroup
from pymegalmm.priors import ARDPrior, GammaPrior, VariancePrior

PKG = Path(pymegalmm.__file__).resolve().parent

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# --------------------------------------------------------------------------------------
# data and models
# --------------------------------------------------------------------------------------


class Env:
    """The data, a model factory and the read-only models shared by the cases."""

    BASE = {"n_factors": 2, "h2_divisions": 5, "burn": 2, "verbose": False, "seed": 1}

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._runs = 0
        sim = datasets.simulate_factor_data(n=40, t=5, k_true=2, n_markers=200, seed=1)
        self.formula = sim.formula
        self.Y: pd.DataFrame = sim.Y
        self.data: pd.DataFrame = sim.data
        self.K: pd.DataFrame = sim.K
        self.levels = list(self.K.index)
        self.Y_miss = self.Y.mask(np.random.default_rng(3).random(self.Y.shape) < 0.3)

    def run_dir(self) -> Path:
        self._runs += 1
        return self.tmp / f"run{self._runs}"

    def make(self, **kw) -> MegaLMM:
        """A new model; keywords override anything, ``Y``, ``formula``, ``data`` included."""
        args = {"Y": self.Y, "formula": self.formula, "data": self.data,
                "relmat": {"ID": self.K}, **self.BASE, "run_dir": self.run_dir(), **kw}
        Y, formula, data, relmat = (args.pop(k) for k in ("Y", "formula", "data", "relmat"))
        return MegaLMM(Y, formula, data=data, relmat=relmat, **args)

    def sampled(self, n_iter: int = 6, **kw) -> MegaLMM:
        """A new model after ``n_iter`` iterations (burn 2, thin 2: draws at 4, 6, ...)."""
        return self.make(**kw).sample(n_iter, progress=False)

    def saved(self, **kw) -> MegaLMM:
        """A new sampled model with its draws saved in its ``run_dir``."""
        m = self.sampled(**kw)
        m.save_posterior_chunk()
        return m

    def k_with(self, fn) -> pd.DataFrame:
        """``K`` with its values transformed by ``fn`` (labels kept)."""
        return pd.DataFrame(fn(self.K.to_numpy().copy()), index=self.K.index,
                            columns=self.K.columns)

    def y_with(self, **columns) -> pd.DataFrame:
        Y = self.Y.copy()
        for name, value in columns.items():
            Y[name] = value
        return Y

    # models only read by the cases (never sampled or changed by them)

    @cached_property
    def fresh(self) -> MegaLMM:
        return self.make()

    @cached_property
    def in_burn_in(self) -> MegaLMM:
        return self.sampled(1)

    @cached_property
    def fitted(self) -> MegaLMM:
        return self.sampled()

    @cached_property
    def on_disk(self) -> MegaLMM:
        return self.saved()

    @cached_property
    def missing(self) -> MegaLMM:
        return self.make(Y=self.Y_miss)


def set_at(a: np.ndarray, i: int, j: int, value: float) -> np.ndarray:
    a[i, j] = value
    return a


def non_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    w[0] = -0.5 * w[-1]
    return (v * w) @ v.T


def file_path(env: Env) -> Path:
    path = env.run_dir()
    path.write_text("a file, not a directory")
    return path


def saved_in_tmp(env: Env, **kw) -> MegaLMM:
    """``env.saved(**kw)`` run from the scratch directory (``run_dir=""`` may write there)."""
    cwd = os.getcwd()
    os.chdir(env.tmp)
    try:
        return env.saved(**kw)
    finally:
        os.chdir(cwd)


def with_map(env: Env, pick, **kw) -> MegaLMM:
    """A new model with missing cells given ``pick(maps, table)`` as its map."""
    m = env.make(Y=env.Y_miss, **kw)
    maps, table = m.missing_data_maps(3)
    return m.set_missing_data_map(pick(maps, table))


# --------------------------------------------------------------------------------------
# bad inputs: (id, call, expected exception type, words the message must contain)
# --------------------------------------------------------------------------------------

T, V, K, R = TypeError, ValueError, KeyError, RuntimeError

BAD = [
    # ---- Y
    ("Y=None", lambda e: e.make(Y=None), T, "Y"),
    ("Y=str", lambda e: e.make(Y="abc"), T, "Y"),
    ("Y=scalar", lambda e: e.make(Y=5.0), T, "Y"),
    ("Y=dict", lambda e: e.make(Y={c: e.Y[c].tolist() for c in e.Y}), T, "Y"),
    ("Y=sparse", lambda e: e.make(Y=scipy.sparse.csr_matrix(e.Y.to_numpy())), T, "Y"),
    ("Y=complex", lambda e: e.make(Y=e.Y.to_numpy() + 1j), T, "Y"),
    ("Y=Series", lambda e: e.make(Y=e.Y["T01"]), V, "Y"),
    ("Y-1d", lambda e: e.make(Y=e.Y["T01"].to_numpy()), V, "Y"),
    ("Y-3d", lambda e: e.make(Y=e.Y.to_numpy()[:, :, None]), V, "Y"),
    ("Y-no-columns", lambda e: e.make(Y=e.Y.iloc[:, :0]), V, "Y"),
    ("Y-no-rows", lambda e: e.make(Y=e.Y.iloc[:0], data=e.data.iloc[:0]), V, "Y"),
    ("Y-strings", lambda e: e.make(Y=e.y_with(T02=[f"x{i}" for i in range(40)])), V,
     ("Y", "T02")),
    ("Y-datetime", lambda e: e.make(Y=e.y_with(T03=pd.date_range("2020", periods=40))), V,
     ("Y", "T03")),
    ("Y-column-all-NaN", lambda e: e.make(Y=e.y_with(T04=np.nan)), V, ("Y", "T04")),
    ("Y-column-one-obs", lambda e: e.make(Y=e.y_with(T04=[1.0] + [np.nan] * 39)), V,
     ("Y", "T04")),
    ("Y-column-constant", lambda e: e.make(Y=e.y_with(T05=3.0)), V, ("Y", "T05")),
    ("Y-inf", lambda e: e.make(Y=e.y_with(T01=[np.inf] + [0.0] * 39)), V, ("Y", "T01")),
    ("Y-minus-inf-array", lambda e: e.make(Y=set_at(e.Y.to_numpy().copy(), 3, 2, -np.inf)), V,
     "Y"),
    ("Y-duplicate-names", lambda e: e.make(Y=e.Y.set_axis(["T01", "T01", "T03", "T04", "T05"],
                                                           axis=1)), V, ("Y", "T01")),
    ("Y-all-NaN", lambda e: e.make(Y=e.Y * np.nan), V, "Y"),
    ("Y-39-rows", lambda e: e.make(Y=e.Y.iloc[:39].to_numpy()), V, ("Y", "data")),
    ("Y-39-of-40-row-labels", lambda e: e.make(Y=e.Y.iloc[:39]), K, ("Y", "data")),
    ("Y-index-not-data-index",
     lambda e: e.make(Y=e.Y.set_axis([f"r{i}" for i in range(40)], axis=0)), K, ("Y", "data")),
    # ---- formula
    ("formula=None", lambda e: e.make(formula=None), T, "formula"),
    ("formula=int", lambda e: e.make(formula=123), T, "formula"),
    ("formula=bytes", lambda e: e.make(formula=b"~ 1 + (1|ID)"), T, "formula"),
    ("formula-empty", lambda e: e.make(formula=""), V, "formula"),
    ("formula-two-sided", lambda e: e.make(formula="y ~ (1|ID)"), V, "formula"),
    ("formula-no-tilde", lambda e: e.make(formula="1 + (1|ID)"), V, "formula"),
    ("formula-no-random-term", lambda e: e.make(formula="~ 1", relmat=None), V, "formula"),
    ("formula-unbalanced", lambda e: e.make(formula="~ 1 + (1|ID"), V, "formula"),
    ("formula-two-bars", lambda e: e.make(formula="~ 1 + (1|ID|ID)"), V, "formula"),
    ("formula-no-lhs", lambda e: e.make(formula="~ 1 + (|ID)"), V, "formula"),
    ("formula-no-group", lambda e: e.make(formula="~ 1 + (1|)"), V, "formula"),
    ("formula-bar-outside", lambda e: e.make(formula="~ 1 | ID"), V, "formula"),
    ("formula-duplicate-term", lambda e: e.make(formula="~ 1 + (1|ID) + (1|ID)"), V, "formula"),
    ("formula-bad-fixed-part", lambda e: e.make(formula="~ x +* + (1|ID)"), V, "formula"),
    ("formula-unknown-group", lambda e: e.make(formula="~ 1 + (1|Foo)", relmat=None), K,
     ("Foo", "data")),
    ("formula-unknown-fixed", lambda e: e.make(formula="~ x + (1|ID)"), K, ("x", "data")),
    ("formula-unknown-slope", lambda e: e.make(formula="~ 1 + (x|ID)"), K, ("x", "data")),
    # ---- data
    ("data=None", lambda e: e.make(data=None), T, "data"),
    ("data=dict", lambda e: e.make(data={"ID": e.levels}), T, "data"),
    ("data=array", lambda e: e.make(data=e.data.to_numpy()), T, "data"),
    ("data-41-rows", lambda e: e.make(Y=e.Y.to_numpy(), data=pd.concat([e.data, e.data[:1]])),
     V, ("Y", "data")),
    ("data-group-all-NaN", lambda e: e.make(data=e.data.assign(ID=np.nan), relmat=None), V,
     ("data", "ID")),
    ("data-duplicate-column", lambda e: e.make(data=pd.concat([e.data, e.data], axis=1)), V,
     ("data", "ID")),
    ("data-covariate-inf",
     lambda e: e.make(formula="~ x + (1|ID)", data=e.data.assign(x=[np.inf] + [1.0] * 39)), V,
     ("data", "x")),
    ("data-covariate-all-NaN",
     lambda e: e.make(formula="~ x + (1|ID)", data=e.data.assign(x=np.nan)), V, ("data", "x")),
    ("data-level-not-in-K", lambda e: e.make(data=e.data.assign(ID=["zzz"] + e.levels[1:])), K,
     ("relmat", "zzz")),
    # ---- relmat
    ("relmat=K-not-dict", lambda e: e.make(relmat=e.K), T, "relmat"),
    ("relmat=list", lambda e: e.make(relmat=[e.K]), T, "relmat"),
    ("relmat=str", lambda e: e.make(relmat="K"), T, "relmat"),
    ("relmat-entry-None", lambda e: e.make(relmat={"ID": None}), T, "relmat"),
    ("relmat-entry-array", lambda e: e.make(relmat={"ID": e.K.to_numpy()}), T, "relmat"),
    ("relmat-key-unknown", lambda e: e.make(relmat={"Line": e.K}), K, ("relmat", "Line")),
    ("relmat-not-PSD", lambda e: e.make(relmat={"ID": e.k_with(non_psd)}), V, "relmat"),
    ("relmat-not-symmetric",
     lambda e: e.make(relmat={"ID": e.k_with(lambda a: set_at(a, 0, 1, a[0, 1] + 0.3))}), V,
     "relmat"),
    ("relmat-NaN", lambda e: e.make(relmat={"ID": e.k_with(lambda a: set_at(a, 2, 2, np.nan))}),
     V, "relmat"),
    ("relmat-inf", lambda e: e.make(relmat={"ID": e.k_with(lambda a: set_at(a, 2, 2, np.inf))}),
     V, "relmat"),
    ("relmat-zero", lambda e: e.make(relmat={"ID": e.k_with(lambda a: a * 0)}), V, "relmat"),
    ("relmat-strings",
     lambda e: e.make(relmat={"ID": e.k_with(lambda a: np.full(a.shape, "a", dtype=object))}),
     V, "relmat"),
    ("relmat-index-not-columns",
     lambda e: e.make(relmat={"ID": e.K.set_axis([f"L{i}" for i in range(40)], axis=1)}), K,
     "relmat"),
    ("relmat-missing-level", lambda e: e.make(relmat={"ID": e.K.iloc[:39, :39]}), K,
     ("relmat", "ID0040")),
    ("relmat-not-square", lambda e: e.make(relmat={"ID": e.K.iloc[:, :39]}), V, "relmat"),
    ("relmat-no-levels", lambda e: e.make(relmat={"ID": {"K": e.K.to_numpy()}}), V,
     ("relmat", "levels")),
    ("relmat-39-levels",
     lambda e: e.make(relmat={"ID": {"K": e.K.to_numpy(), "levels": e.levels[:39]}}), V,
     ("relmat", "levels")),
    ("relmat-K-and-K_inv", lambda e: e.make(relmat={"ID": {"K": e.K, "K_inv": e.K}}), V,
     "relmat"),
    ("relmat-misspelt-key", lambda e: e.make(relmat={"ID": {"Kinv": e.K}}), K,
     ("relmat", "Kinv")),
    ("relmat-K_inv-not-PD", lambda e: e.make(relmat={"ID": {"K_inv": e.k_with(non_psd)}}), V,
     "relmat"),
    ("relmat-1d", lambda e: e.make(relmat={"ID": {"K": np.ones(40), "levels": e.levels}}), V,
     "relmat"),
    # ---- Control shortcuts
    ("n_factors=2.7", lambda e: e.make(n_factors=2.7), V, "n_factors"),
    ("n_factors=0", lambda e: e.make(n_factors=0), V, "n_factors"),
    ("n_factors=str", lambda e: e.make(n_factors="3"), T, "n_factors"),
    ("n_factors=True", lambda e: e.make(n_factors=True), T, "n_factors"),
    ("n_factors=nan", lambda e: e.make(n_factors=np.nan), V, "n_factors"),
    ("n_factors=inf", lambda e: e.make(n_factors=np.inf), V, "n_factors"),
    ("n_factors=list", lambda e: e.make(n_factors=[2]), T, "n_factors"),
    ("h2_divisions=2.5", lambda e: e.make(h2_divisions=2.5), V, "h2_divisions"),
    ("h2_divisions=1", lambda e: e.make(h2_divisions=1), V, "h2_divisions"),
    ("h2_divisions=0", lambda e: e.make(h2_divisions=0), V, "h2_divisions"),
    ("h2_divisions=str", lambda e: e.make(h2_divisions="5"), T, "h2_divisions"),
    ("h2_divisions=True", lambda e: e.make(h2_divisions=True), T, "h2_divisions"),
    ("h2_divisions=nan", lambda e: e.make(h2_divisions=np.nan), V, "h2_divisions"),
    ("h2_divisions-two-for-one-effect", lambda e: e.make(h2_divisions=[5, 5]), V, "h2_divisions"),
    ("h2_divisions=[2.5]", lambda e: e.make(h2_divisions=[2.5]), V, "h2_divisions"),
    ("h2_divisions=dict", lambda e: e.make(h2_divisions={"ID": 5}), T, "h2_divisions"),
    ("burn=2.5", lambda e: e.make(burn=2.5), V, "burn"),
    ("burn=-1", lambda e: e.make(burn=-1), V, "burn"),
    ("burn=str", lambda e: e.make(burn="2"), T, "burn"),
    ("burn=True", lambda e: e.make(burn=True), T, "burn"),
    ("burn=inf", lambda e: e.make(burn=np.inf), V, "burn"),
    ("thin=1.5", lambda e: e.make(thin=1.5), V, "thin"),
    ("thin=0", lambda e: e.make(thin=0), V, "thin"),
    ("thin=str", lambda e: e.make(thin="2"), T, "thin"),
    ("thin=nan", lambda e: e.make(thin=np.nan), V, "thin"),
    ("scale_Y=str", lambda e: e.make(scale_Y="no"), T, "scale_Y"),
    ("scale_Y=0", lambda e: e.make(scale_Y=0), T, "scale_Y"),
    # ---- other constructor arguments
    ("control=str", lambda e: e.make(control="fast"), T, "control"),
    ("control=dict", lambda e: e.make(control={"n_factors": 3}), T, "control"),
    ("control=class", lambda e: e.make(control=Control), T, "control"),
    ("priors=str", lambda e: e.make(priors="default"), T, "priors"),
    ("priors=dict", lambda e: e.make(priors={"tot_Y_var": VariancePrior(0.5, 5)}), T, "priors"),
    ("priors=ARDPrior", lambda e: e.make(priors=ARDPrior()), T, "priors"),
    ("observation=str", lambda e: e.make(observation="gaussian"), T, "observation"),
    ("chains=0", lambda e: e.make(chains=0), V, "chains"),
    ("chains=1.5", lambda e: e.make(chains=1.5), V, "chains"),
    ("chains=str", lambda e: e.make(chains="2"), T, "chains"),
    ("chains=None", lambda e: e.make(chains=None), T, "chains"),
    ("chains=True", lambda e: e.make(chains=True), T, "chains"),
    ("seed=-1", lambda e: e.make(seed=-1), V, "seed"),
    ("seed=1.5", lambda e: e.make(seed=1.5), V, "seed"),
    ("seed=str", lambda e: e.make(seed="abc"), T, "seed"),
    ("seed=True", lambda e: e.make(seed=True), T, "seed"),
    ("record-unknown", lambda e: e.make(record=["foo"]), K, ("record", "foo")),
    ("record-derived-U", lambda e: e.make(record=["U"]), K, ("record", "U")),
    ("record=str", lambda e: e.make(record="Lambda"), T, "record"),
    ("record=int", lambda e: e.make(record=5), T, "record"),
    ("record-non-str", lambda e: e.make(record=[1]), T, "record"),
    ("record-duplicate", lambda e: e.make(record=["Lambda", "Lambda"]), V, ("record", "Lambda")),
    ("functions=str", lambda e: e.make(functions="f"), T, "functions"),
    ("functions=list", lambda e: e.make(functions=[lambda ds: ds["h2"]]), T, "functions"),
    ("functions-not-callable", lambda e: e.make(functions={"f": 5}), T, ("functions", "f")),
    ("functions-name-not-str", lambda e: e.make(functions={1: lambda ds: ds["h2"]}), T,
     "functions"),
    ("functions-name-is-a-parameter",
     lambda e: e.sampled(functions={"Lambda": lambda ds: ds["h2"]}).posterior, V,
     ("functions", "Lambda")),
    ("functions-name-is-derived",
     lambda e: e.sampled(functions={"h2": lambda ds: ds["h2"] * 0}).posterior, V,
     ("functions", "h2")),
    ("run_dir=None", lambda e: e.make(run_dir=None), T, "run_dir"),
    ("run_dir=int", lambda e: e.make(run_dir=5), T, "run_dir"),
    ("run_dir-empty", lambda e: saved_in_tmp(e, run_dir=""), V, "run_dir"),
    ("run_dir-is-a-file", lambda e: e.saved(run_dir=file_path(e)), V, "run_dir"),
    ("run_dir-under-a-file", lambda e: e.saved(run_dir=file_path(e) / "sub"), V, "run_dir"),
    ("verbose=str", lambda e: e.make(verbose="no"), T, "verbose"),
    ("verbose=None", lambda e: e.make(verbose=None), T, "verbose"),
    # ---- Control(...)
    ("Control-n_factors=2.7", lambda e: Control(n_factors=2.7), V, "n_factors"),
    ("Control-n_factors=None", lambda e: Control(n_factors=None), T, "n_factors"),
    ("Control-h2_divisions=1", lambda e: Control(h2_divisions=1), V, "h2_divisions"),
    ("Control-h2_divisions-list-with-0", lambda e: Control(h2_divisions=[5, 0]), V,
     "h2_divisions"),
    ("Control-h2_divisions=str", lambda e: Control(h2_divisions="20"), T, "h2_divisions"),
    ("Control-burn=None", lambda e: Control(burn=None), T, "burn"),
    ("Control-thin=1.5", lambda e: Control(thin=1.5), V, "thin"),
    ("Control-scale_Y=None", lambda e: Control(scale_Y=None), T, "scale_Y"),
    ("Control-K_eigen_tol=-1", lambda e: Control(K_eigen_tol=-1), V, "K_eigen_tol"),
    ("Control-K_eigen_tol=nan", lambda e: Control(K_eigen_tol=np.nan), V, "K_eigen_tol"),
    ("Control-K_eigen_tol=str", lambda e: Control(K_eigen_tol="1e-10"), T, "K_eigen_tol"),
    ("Control-max_precompute_gb=0", lambda e: Control(max_precompute_gb=0), V,
     "max_precompute_gb"),
    ("Control-max_precompute_gb=nan", lambda e: Control(max_precompute_gb=np.nan), V,
     "max_precompute_gb"),
    ("Control-max_precompute_gb=str", lambda e: Control(max_precompute_gb="8"), T,
     "max_precompute_gb"),
    ("Control-n_threads=0", lambda e: Control(n_threads=0), V, "n_threads"),
    ("Control-n_threads=1.5", lambda e: Control(n_threads=1.5), V, "n_threads"),
    ("Control-n_threads=str", lambda e: Control(n_threads="2"), T, "n_threads"),
    # ---- Priors(...)
    ("tot_Y_var=tuple", lambda e: e.make(priors=Priors(tot_Y_var=(0.5, 5))), T, "tot_Y_var"),
    ("tot_Y_var-dict-wrong-keys", lambda e: e.make(priors=Priors(tot_Y_var={"V": 0.5})), V,
     "tot_Y_var"),
    ("tot_Y_var=None", lambda e: e.make(priors=Priors(tot_Y_var=None)), T, "tot_Y_var"),
    ("tot_Y_var=float", lambda e: e.make(priors=Priors(0.5)), T, "tot_Y_var"),
    ("tot_F_var=str", lambda e: e.make(priors=Priors(tot_F_var="x")), T, "tot_F_var"),
    ("tot_F_var=GammaPrior", lambda e: e.make(priors=Priors(tot_F_var=GammaPrior(2, 1))), T,
     "tot_F_var"),
    ("Lambda_prior=str", lambda e: e.make(priors=Priors(Lambda_prior="ARD")), T, "Lambda_prior"),
    ("Lambda_prior=class", lambda e: e.make(priors=Priors(Lambda_prior=ARDPrior)), T,
     "Lambda_prior"),
    ("Lambda_prior=None", lambda e: e.make(priors=Priors(Lambda_prior=None)), T, "Lambda_prior"),
    ("h2_prior_resids-wrong-length", lambda e: e.make(priors=Priors(h2_prior_resids=np.ones(3))),
     V, "h2_prior_resids"),
    ("h2_prior_resids-negative",
     lambda e: e.make(priors=Priors(h2_prior_resids=np.array([1, 1, -1, 1, 1.0]))), V,
     "h2_prior_resids"),
    ("h2_prior_resids-NaN",
     lambda e: e.make(priors=Priors(h2_prior_resids=np.array([1, 1, np.nan, 1, 1.0]))), V,
     "h2_prior_resids"),
    ("h2_prior_resids-all-zero", lambda e: e.make(priors=Priors(h2_prior_resids=np.zeros(5))),
     V, "h2_prior_resids"),
    ("h2_prior_resids=str", lambda e: e.make(priors=Priors(h2_prior_resids="flat")), T,
     "h2_prior_resids"),
    ("h2_prior_resids-callable-no-args",
     lambda e: e.make(priors=Priors(h2_prior_resids=lambda: 1)), T, "h2_prior_resids"),
    ("h2_prior_resids-callable-wrong-length",
     lambda e: e.make(priors=Priors(h2_prior_resids=lambda g: np.ones(2))), V, "h2_prior_resids"),
    ("h2_prior_resids-callable-returns-str",
     lambda e: e.make(priors=Priors(h2_prior_resids=lambda g: "x")), T, "h2_prior_resids"),
    ("h2_prior_factors-wrong-length",
     lambda e: e.make(priors=Priors(h2_prior_factors=np.ones(6))), V, "h2_prior_factors"),
    ("h2_prior_factors-callable-inf",
     lambda e: e.make(priors=Priors(h2_prior_factors=lambda g: g[0] * np.inf)), V,
     "h2_prior_factors"),
    # ---- VariancePrior, GammaPrior, ARDPrior
    ("VariancePrior-V=-1", lambda e: VariancePrior(-1, 5), V, "V"),
    ("VariancePrior-nu=1", lambda e: VariancePrior(0.5, 1), V, "nu"),
    ("VariancePrior-V=inf", lambda e: VariancePrior(np.inf, 5), V, "V"),
    ("VariancePrior-nu=inf", lambda e: VariancePrior(0.5, np.inf), V, "nu"),
    ("VariancePrior-V=str", lambda e: VariancePrior("0.5", 5), T, "V"),
    ("VariancePrior-nu=None", lambda e: VariancePrior(0.5, None), T, "nu"),
    ("VariancePrior-V=list", lambda e: VariancePrior([0.5], 5), T, "V"),
    ("VariancePrior-V=True", lambda e: VariancePrior(True, 5), T, "V"),
    ("GammaPrior-shape=0", lambda e: GammaPrior(0, 1), V, "shape"),
    ("GammaPrior-rate=-1", lambda e: GammaPrior(2, -1), V, "rate"),
    ("GammaPrior-shape=inf", lambda e: GammaPrior(np.inf, 1), V, "shape"),
    ("GammaPrior-shape=str", lambda e: GammaPrior("2", 1), T, "shape"),
    ("GammaPrior-rate=None", lambda e: GammaPrior(2, None), T, "rate"),
    ("ARDPrior-Lambda_df=0", lambda e: ARDPrior(Lambda_df=0), V, "Lambda_df"),
    ("ARDPrior-Lambda_df=inf", lambda e: ARDPrior(Lambda_df=np.inf), V, "Lambda_df"),
    ("ARDPrior-Lambda_df=nan", lambda e: ARDPrior(Lambda_df=np.nan), V, "Lambda_df"),
    ("ARDPrior-Lambda_df=str", lambda e: ARDPrior(Lambda_df="3"), T, "Lambda_df"),
    ("ARDPrior-delta_1=tuple", lambda e: ARDPrior(delta_1=(2, 1)), T, "delta_1"),
    ("ARDPrior-delta_2=str", lambda e: ARDPrior(delta_2="x"), T, "delta_2"),
    ("ARDPrior-delta_2=VariancePrior", lambda e: ARDPrior(delta_2=VariancePrior(1, 3)), T,
     "delta_2"),
    ("ARDPrior-delta_iterations_factor=2.5", lambda e: ARDPrior(delta_iterations_factor=2.5), V,
     "delta_iterations_factor"),
    ("ARDPrior-delta_iterations_factor=str", lambda e: ARDPrior(delta_iterations_factor="100"),
     T, "delta_iterations_factor"),
    # ---- sample, burn_in, reorder_factors
    ("sample-n_iter=-1", lambda e: e.make().sample(-1, progress=False), V, "n_iter"),
    ("sample-n_iter=2.5", lambda e: e.make().sample(2.5, progress=False), V, "n_iter"),
    ("sample-n_iter=str", lambda e: e.make().sample("10", progress=False), T, "n_iter"),
    ("sample-n_iter=None", lambda e: e.make().sample(None, progress=False), T, "n_iter"),
    ("sample-n_iter=nan", lambda e: e.make().sample(np.nan, progress=False), V, "n_iter"),
    ("sample-n_iter=True", lambda e: e.make().sample(True, progress=False), T, "n_iter"),
    ("sample-progress=str", lambda e: e.make().sample(2, progress="no"), T, "progress"),
    ("reorder-threshold=0", lambda e: e.make().reorder_factors(0), V, "drop_cor_threshold"),
    ("reorder-threshold=1.5", lambda e: e.make().reorder_factors(1.5), V, "drop_cor_threshold"),
    ("reorder-threshold=str", lambda e: e.make().reorder_factors("0.5"), T,
     "drop_cor_threshold"),
    ("reorder-threshold=None", lambda e: e.make().reorder_factors(None), T,
     "drop_cor_threshold"),
    ("burn_in-rounds=-1", lambda e: e.make().burn_in(rounds=-1, iterations=2, progress=False), V,
     "rounds"),
    ("burn_in-rounds=2.5", lambda e: e.make().burn_in(rounds=2.5, iterations=2, progress=False),
     V, "rounds"),
    ("burn_in-rounds=str", lambda e: e.make().burn_in(rounds="2", iterations=2, progress=False),
     T, "rounds"),
    ("burn_in-iterations=-5",
     lambda e: e.make().burn_in(rounds=1, iterations=-5, progress=False), V, "iterations"),
    ("burn_in-iterations=2.5",
     lambda e: e.make().burn_in(rounds=1, iterations=2.5, progress=False), V, "iterations"),
    ("burn_in-threshold=2",
     lambda e: e.make().burn_in(rounds=1, iterations=2, drop_cor_threshold=2, progress=False),
     V, "drop_cor_threshold"),
    # ---- missing-data maps
    ("max_groups=0", lambda e: e.missing.missing_data_maps(max_groups=0), V, "max_groups"),
    ("max_groups=2.5", lambda e: e.missing.missing_data_maps(max_groups=2.5), V, "max_groups"),
    ("max_groups=str", lambda e: e.missing.missing_data_maps(max_groups="3"), T, "max_groups"),
    ("max_groups=None", lambda e: e.missing.missing_data_maps(max_groups=None), T, "max_groups"),
    ("max_groups=True", lambda e: e.missing.missing_data_maps(max_groups=True), T, "max_groups"),
    ("mdmap=str", lambda e: e.make(Y=e.Y_miss).set_missing_data_map("foo"), T, "mdmap"),
    ("mdmap=int", lambda e: e.make(Y=e.Y_miss).set_missing_data_map(3), T, "mdmap"),
    ("mdmap=list-of-maps", lambda e: with_map(e, lambda maps, table: maps), T, "mdmap"),
    ("mdmap=table", lambda e: with_map(e, lambda maps, table: table), T, "mdmap"),
    ("mdmap-3-of-5-traits", lambda e: e.make(Y=e.Y_miss).set_missing_data_map(
        MissingDataMap((TraitGroup(np.arange(40), np.arange(3)),))), V, "mdmap"),
    ("mdmap-trait-in-two-groups", lambda e: e.make(Y=e.Y_miss).set_missing_data_map(
        MissingDataMap((TraitGroup(np.arange(40), np.arange(5)),
                        TraitGroup(np.arange(10), np.arange(1))))), V, "mdmap"),
    ("mdmap-after-sampling",
     lambda e: (lambda m: m.set_missing_data_map(m.missing_data_maps(3)[0][1]))(
         e.sampled(Y=e.Y_miss)), R, "missing-data map"),
    # ---- results
    ("predict-before-sampling", lambda e: e.fresh.predict(), R, "sample"),
    ("predict-during-burn-in", lambda e: e.in_burn_in.predict(), R, "sample"),
    ("genetic_values-before-sampling", lambda e: e.fresh.genetic_values(), R, "sample"),
    ("genetic_values-during-burn-in", lambda e: e.in_burn_in.genetic_values(), R, "sample"),
    ("posterior-before-sampling", lambda e: e.fresh.posterior, R, "sample"),
    ("posterior_means-before-sampling", lambda e: e.fresh.posterior_means, R, "sample"),
    ("posterior_function-not-callable", lambda e: e.fitted.posterior_function("h2"), T, "fn"),
    ("posterior_function-None", lambda e: e.fitted.posterior_function(None), T, "fn"),
    ("estimate_memory-n_iter=-1", lambda e: e.fresh.estimate_memory(-1), V, "n_iter"),
    ("estimate_memory-n_iter=str", lambda e: e.fresh.estimate_memory("10"), T, "n_iter"),
    # the store's documented FileNotFoundError (an OSError), not a RuntimeError
    ("load_posterior-before-save", lambda e: e.fitted.load_posterior(), FileNotFoundError,
     "save_posterior_chunk"),
    ("load_posterior-unknown-name", lambda e: e.on_disk.load_posterior(names=["foo"]), K,
     ("names", "foo")),
    ("load_posterior-names=int", lambda e: e.on_disk.load_posterior(names=5), T, "names"),
    ("load_posterior-lazy=str", lambda e: e.on_disk.load_posterior(lazy="no"), T, "lazy"),
    ("clear_posterior-disk=str", lambda e: e.saved().clear_posterior(disk="no"), T, "disk"),
]


def mentions(message: str, word: str) -> bool:
    """``word`` in ``message`` as a whole word (not inside a longer name), case-sensitive."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message) is not None


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    # One OpenMP thread: on a busy machine, 2 spinning threads make each tiny kernel call
    # ~100x slower; results (and errors) do not depend on the thread count.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield Env(tmp_path_factory.mktemp("validation"))


@pytest.mark.parametrize(
    ("call", "expected", "words"),
    [pytest.param(call, exc, (words,) if isinstance(words, str) else words, id=case_id)
     for case_id, call, exc, words in BAD],
)
def test_bad_input_gets_a_clear_error(env, call, expected, words):
    with pytest.raises(expected) as exc_info:
        call(env)
    message = str(exc_info.value)
    for word in words:
        assert mentions(message, word), f"the message does not name {word!r}: {message!r}"
    origin = Path(str(exc_info.traceback[-1].path))
    assert origin.is_absolute(), f"raised in {origin} (compiled code), not in pymegalmm"
    origin = origin.resolve()
    assert origin.is_relative_to(PKG) and not origin.is_relative_to(PKG / "_kernels"), (
        f"raised in {origin}, not in pymegalmm's own code: {type(exc_info.value).__name__}: "
        f"{message}")


def test_burn_in_checks_its_arguments_before_sampling(env):
    m = env.make()
    with pytest.raises(ValueError, match="drop_cor_threshold"):
        m.burn_in(rounds=2, iterations=2, drop_cor_threshold=2, progress=False)
    assert m.chains[0].nrun == 0


def test_the_table_is_large_and_ids_unique():
    ids = [case[0] for case in BAD]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)


# --------------------------------------------------------------------------------------
# valid alternatives that must keep working
# --------------------------------------------------------------------------------------


def _same_draws(a: MegaLMM, b: MegaLMM) -> None:
    np.testing.assert_array_equal(a.states[0].Lambda, b.states[0].Lambda)
    np.testing.assert_array_equal(a.states[0].tot_Eta_prec, b.states[0].tot_Eta_prec)


def ok_n_factors_float(e: Env) -> None:
    m = e.sampled(n_factors=3.0)
    assert m.control.n_factors == 3
    assert m.posterior.sizes["factor"] == 3


def ok_n_factors_numpy(e: Env) -> None:
    m = e.sampled(n_factors=np.int64(3))
    assert m.control.n_factors == 3
    assert m.posterior.sizes["factor"] == 3


def ok_integers_as_floats(e: Env) -> None:
    m = e.sampled(h2_divisions=5.0, burn=np.int64(2), thin=2.0, chains=2.0, seed=np.int64(1))
    assert m.grid.shape[1] == 5 and len(m.chains) == 2 and m.n_draws == 2
    _same_draws(m, e.sampled(chains=2))


def ok_control_fields(e: Env) -> None:
    c = Control(n_factors=3.0, burn=np.int64(5), scale_Y=np.bool_(False), n_threads=None)
    assert (c.n_factors, c.burn, c.scale_Y) == (3, 5, False)
    assert e.make(control=Control(n_factors=3), n_factors=2).control.n_factors == 2


def ok_explicit_default_priors(e: Env) -> None:
    priors = Priors(tot_Y_var=VariancePrior(0.5, 5.0), tot_F_var=VariancePrior(18 / 20, 20.0),
                    h2_prior_resids=None, h2_prior_factors=None,
                    Lambda_prior=ARDPrior(3.0, GammaPrior(2.0, 1.0), GammaPrior(3.0, 1.0), 100))
    _same_draws(e.sampled(priors=priors), e.fitted)


def ok_priors_as_r_lists(e: Env) -> None:
    """R's ``list(V = , nu = )`` / ``list(shape = , rate = )`` spelt as dicts."""
    priors = Priors(tot_Y_var={"V": 0.5, "nu": 5}, tot_F_var={"V": 18 / 20, "nu": 20},
                    Lambda_prior=ARDPrior(delta_1={"shape": 2, "rate": 1}))
    _same_draws(e.sampled(priors=priors), e.fitted)


def ok_h2_priors(e: Env) -> None:
    m = e.sampled(priors=Priors(h2_prior_resids=[1, 2, 3, 2, 1],
                                h2_prior_factors=lambda g: 1 - g[0]))
    assert m.n_draws == 2


def ok_Y_array_and_relmat_dict(e: Env) -> None:
    m = e.sampled(Y=e.Y.to_numpy(), relmat={"ID": {"K": e.K.to_numpy(), "levels": e.levels}})
    assert list(m.predict().columns) == [f"trait{j}" for j in range(5)]


def ok_integer_trait_names(e: Env) -> None:
    m = e.sampled(Y=e.Y.set_axis(range(5), axis=1))
    assert list(m.predict().columns) == [0, 1, 2, 3, 4]
    assert list(m.genetic_values().columns) == [0, 1, 2, 3, 4]


def ok_Y_labelled_in_another_order(e: Env) -> None:
    """Both labelled: Y is aligned to data's rows by label."""
    m = e.make(Y=e.Y.iloc[::-1])
    np.testing.assert_array_equal(m.design.Y, e.Y.to_numpy())


def ok_record_tuple(e: Env) -> None:
    m = e.sampled(record=("Lambda", "F_h2"))
    assert {"Lambda", "F_h2"} <= set(m.posterior.data_vars)


def ok_missing_data_maps(e: Env) -> None:
    m = e.make(Y=e.Y_miss)
    maps, _ = m.missing_data_maps(max_groups=3.0)
    assert max(len(mp) for mp in maps) <= 3
    m.set_missing_data_map(maps[1]).set_missing_data_map(maps[0]).sample(6, progress=False)
    assert m.n_draws == 2


def ok_load_posterior_names(e: Env) -> None:
    assert list(e.on_disk.load_posterior(names="h2").data_vars) == ["h2"]
    assert sorted(e.on_disk.load_posterior(names=("U", "h2")).data_vars) == ["U", "h2"]


def ok_zero_iterations(e: Env) -> None:
    m = e.make().sample(0, progress=False)
    assert m.chains[0].nrun == 0 and m.save_posterior_chunk() == 0


OK = [ok_n_factors_float, ok_n_factors_numpy, ok_integers_as_floats, ok_control_fields,
      ok_explicit_default_priors, ok_priors_as_r_lists, ok_h2_priors, ok_Y_array_and_relmat_dict,
      ok_integer_trait_names, ok_Y_labelled_in_another_order, ok_record_tuple,
      ok_missing_data_maps, ok_load_posterior_names, ok_zero_iterations]


@pytest.mark.parametrize("check", [pytest.param(f, id=f.__name__[3:]) for f in OK])
def test_valid_alternative_keeps_working(env, check):
    check(env)
