# ---
# jupyter:
#   jupytext:
#     formats: py:percent,md
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Multi-environment trial: genomic prediction across environments
#
# The Python version of R MegaLMM's *MultiEnvironmentTrial* vignette. A maize yield
# trial: ~500 lines from two populations, 19 environments, each line grown in only
# a few of them. We hide one fold of the observed yields of each environment's
# best-represented population and predict them from
#
# * a univariate GBLUP per environment (the baseline), and
# * MegaLMM, which borrows information across environments through genetic factors.
#
# The real data (`yield_data.csv`, `K.csv`, `fold_ID_matrix.csv`) are read from
# `../shared/data` when that folder exists (or from `$PYMEGALMM_DATA`); otherwise a
# trial of the same shape is simulated with `pymegalmm.datasets.simulate_met`.
#
# Iteration counts follow the R vignette (5 x 100 burn-in iterations with factor
# reordering, then 4 x 250 iterations saved in chunks); set
# `PYMEGALMM_VIGNETTE_QUICK=1` for a fast check run.

# %%
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

import pymegalmm
from pymegalmm import MegaLMM, datasets
from pymegalmm.demo import accuracy, gblup_predictions

QUICK = os.environ.get("PYMEGALMM_VIGNETTE_QUICK") == "1"
SEED = int(os.environ.get("PYMEGALMM_VIGNETTE_SEED", "1"))
FOLD = 1
BURN_ROUNDS, BURN_ITER = (2, 20) if QUICK else (5, 100)
CHUNKS, CHUNK_ITER = (2, 30) if QUICK else (4, 250)
FIGURES = Path(os.environ.get("PYMEGALMM_VIGNETTE_FIGURES", "figures"))


def find_shared_data() -> Path | None:
    """The real trial's folder: $PYMEGALMM_DATA, else shared/data beside a parent folder."""
    if os.environ.get("PYMEGALMM_DATA"):
        return Path(os.environ["PYMEGALMM_DATA"])
    if os.environ.get("PYMEGALMM_VIGNETTE_SIMULATED") == "1":
        return None
    for folder in [Path.cwd(), *Path.cwd().parents]:
        candidate = folder / "shared" / "data" / "yield_data.csv"
        if candidate.exists():
            return candidate.parent
    return None


t_start = time.perf_counter()
pymegalmm.show_config()

# %% [markdown]
# ## Data
#
# A tall table, one row per (line, environment) observation, and the genomic
# relationship matrix `K` of the lines.

# %%
data_dir = find_shared_data()
if data_dir is not None:
    tall = pd.read_csv(data_dir / "yield_data.csv")
    K = pd.read_csv(data_dir / "K.csv", index_col=0)
    folds = pd.read_csv(data_dir / "fold_ID_matrix.csv", index_col=0)
    source = f"real maize trial ({data_dir})"
else:
    sim = datasets.simulate_met(n_lines=500, n_envs=19, seed=SEED)
    tall, K, folds = sim.Y, sim.K, None
    source = "simulated trial (pymegalmm.datasets.simulate_met)"
print(source)
print(tall.head())
print(f"{tall.Line.nunique()} lines, {tall.Env.nunique()} environments, "
      f"{len(tall)} observations")

# %% [markdown]
# Reshape to a lines x environments matrix (R: `create_data_matrices`).

# %%
Y, data = datasets.to_wide(tall, ["Line", "Population"], "Env", "Yield")
print(Y.shape, f"{Y.isna().mean().mean():.0%} of the cells unobserved")

# %% [markdown]
# Which line was grown where, and how related the lines are (R: `Image`).

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
try:
    import matplotlib

    matplotlib.use("Agg")
    from pymegalmm import plots

    fig = plots.heatmap(Y.notna().astype(float), title="observed cells (line x environment)",
                        symmetric=False, cmap="Greys")
    fig.savefig(FIGURES / "incidence.png", dpi=80)
    fig = plots.heatmap(K, title="genomic relationship matrix K")
    fig.savefig(FIGURES / "K.png", dpi=80)
    print(f"figures written to {FIGURES}/")
except ImportError:
    plots = None
    print("matplotlib not installed: figures skipped (pip install 'pymegalmm[plot]')")

# %% [markdown]
# ![observed cells](figures/incidence.png) ![K](figures/K.png)

# %% [markdown]
# ## Cross-validation fold
#
# Fold 1 of the 5-fold assignment: in every environment, a fifth of the observed
# lines of its best-represented population are hidden. With simulated data the
# folds are drawn the same way.

# %%
if folds is None:
    rng = np.random.default_rng(SEED)
    folds = pd.DataFrame(np.nan, index=Y.index, columns=Y.columns)
    for env in Y.columns:
        observed = Y[env].notna()
        main_pop = data.loc[observed, "Population"].value_counts().idxmax()
        lines = Y.index[observed & (data["Population"] == main_pop)]
        folds.loc[lines, env] = rng.permutation(np.arange(len(lines)) % 5 + 1)
folds = folds.reindex(index=Y.index, columns=Y.columns)
mask = folds == FOLD
Y_train = Y.mask(mask)
print(f"{int(mask.values.sum())} cells hidden in fold {FOLD}")

# %% [markdown]
# ## Baseline: univariate GBLUP per environment
#
# REML on each environment's training data, `~ Population` fixed, `K` as the
# covariance of the line effects; prediction = fitted `X beta + u`.

# %%
t0 = time.perf_counter()
pred_gblup = gblup_predictions(Y_train, data, K, fixed="~ Population")
acc = pd.DataFrame({"GBLUP": accuracy(pred_gblup, Y, mask)})
print(f"GBLUP: {time.perf_counter() - t0:.1f} s, mean accuracy {acc['GBLUP'].mean():.3f}")

# %% [markdown]
# ## MegaLMM
#
# `~ Population + (1|Line)` with `K`, 15 factors, a 20-point h2 grid, and the R
# vignette's priors (the package defaults): `tot_Y_var = (0.5, 5)`,
# `tot_F_var = (18/20, 20)`, flat h2 priors, ARD loadings prior.

# %%
t_fit = time.perf_counter()
m = MegaLMM(Y_train, "~ Population + (1|Line)", data=data, relmat={"Line": K},
            n_factors=15, h2_divisions=20, burn=0, thin=2, seed=SEED,
            run_dir=Path(os.environ.get("PYMEGALMM_RUN_DIR", "MegaLMM_run")),
            overwrite=True)  # this script starts its run afresh each time it runs

# %% [markdown]
# ### Missing-data map
#
# Blocks of cells that are entirely missing need not be imputed every
# iteration: they can be predicted from the posterior instead, which mixes
# better. The search splits the traits into groups sharing a missingness
# pattern (R: `make_Missing_data_map`). Like the R vignette we take its map 15,
# which is `maps[14]` here: both lists start with the full-imputation map, R's
# counted from 1.

# %%
maps, table = m.missing_data_maps(max_groups=20)
print(table.to_string())
chosen = min(14, len(maps) - 1)
m.set_missing_data_map(maps[chosen])
print(f"map {chosen}: {len(maps[chosen].groups)} groups, "
      f"{int(table.loc[chosen, 'n_imputed'])} imputed cells "
      f"(full imputation: {int(table.loc[0, 'n_imputed'])})")
setup_seconds = time.perf_counter() - t_fit

# %% [markdown]
# ### Burn-in by rounds, reordering factors in between
#
# Reordering (R: `reorder_factors`) drops factors whose scores duplicate
# another's and sorts factors by size, which helps the chain out of poor
# factor orders.

# %%
t0 = time.perf_counter()
m.burn_in(rounds=BURN_ROUNDS, iterations=BURN_ITER, drop_cor_threshold=0.6, progress=False)
burn_seconds = time.perf_counter() - t0
print(f"burn-in: {BURN_ROUNDS} x {BURN_ITER} iterations in {burn_seconds:.1f} s")

# %% [markdown]
# ### Sampling, saving the draws in chunks
#
# Each chunk goes to a zarr store in the run directory (R: `save_posterior_chunk`),
# so memory stays bounded however long the run.

# %%
t0 = time.perf_counter()
for _ in range(CHUNKS):
    m.sample(CHUNK_ITER, progress=False)
    m.save_posterior_chunk()
sample_seconds = time.perf_counter() - t0
print(f"sampling: {CHUNKS} x {CHUNK_ITER} iterations in {sample_seconds:.1f} s; "
      f"{m.store.n_draws} draws saved")
print(m)

# %% [markdown]
# ## Prediction accuracy
#
# * **U-hat**: posterior mean of the genetic values `U_F Lambda + U_R` plus the
#   fixed effects `X1 B1` (as in the R vignette);
# * **Eta-mean**: posterior mean of the expected yield of each cell, which also
#   uses the line's observed yields in the other environments.

# %%
t0 = time.perf_counter()
post = m.load_posterior(["U", "B1", "h2", "G"])
U = post["U"].mean(("chain", "draw")).to_pandas()  # lines x environments
B1 = post["B1"].mean(("chain", "draw")).to_pandas()  # fixed x environments
X1 = pd.DataFrame(m.design.X1, index=m.design.rows, columns=m.design.fixed_names)
U_hat = U.loc[Y.index] + (X1 @ B1).loc[Y.index].values
acc["MegaLMM U-hat"] = accuracy(U_hat, Y, mask)
acc["MegaLMM Eta-mean"] = accuracy(m.predict().loc[Y.index], Y, mask)
posterior_seconds = time.perf_counter() - t0
total_seconds = setup_seconds + burn_seconds + sample_seconds + posterior_seconds

if data_dir is not None and (data_dir / "r_reference_accuracy_fold1.csv").exists():
    ref = pd.read_csv(data_dir / "r_reference_accuracy_fold1.csv", index_col=0)
    acc = acc.join(ref.rename(columns={"gblup": "R GBLUP", "megalmm_U": "R U-hat",
                                       "megalmm_Eta": "R Eta-mean"}))
print(acc.round(3).to_string())
print("\nmean accuracy")
print(acc.mean().round(3).to_string())

# %% [markdown]
# ## Genetic covariances and heritabilities

# %%
h2 = post["h2"].sel(component="Line").mean(("chain", "draw")).to_pandas()
G = post["G"].sel(component="Line").mean(("chain", "draw")).to_pandas()
sd = np.sqrt(np.diag(G.values))
genetic_cor = pd.DataFrame(G.values / np.outer(sd, sd), index=G.index, columns=G.columns)
summary = pd.DataFrame({"h2": h2, "n_obs": Y.notna().sum()})
if data_dir is not None and (data_dir / "r_reference_h2_fold1.csv").exists():
    summary["R h2"] = pd.read_csv(data_dir / "r_reference_h2_fold1.csv", index_col=0).iloc[:, 0]
print(summary.round(3).to_string())
print(f"\nmean genetic correlation between environments: "
      f"{genetic_cor.values[np.triu_indices_from(genetic_cor, 1)].mean():.2f}")
if plots is not None:
    fig = plots.heatmap(genetic_cor, title="posterior mean genetic correlation")
    fig.savefig(FIGURES / "genetic_correlation.png", dpi=80)

# %% [markdown]
# ![genetic correlation](figures/genetic_correlation.png)

# %% [markdown]
# ## Time

# %%
timing = pd.Series({
    "setup incl. map search (s)": setup_seconds,
    "burn-in (s)": burn_seconds,
    "sampling (s)": sample_seconds,
    "posterior summaries (s)": posterior_seconds,
    "total (s)": total_seconds,
    "ms per iteration": 1e3 * m.seconds_per_iteration,
})
print(timing.round(3).to_string())
print("R MegaLMM 0.9.5 on this machine class: 10.4 s setup, 51 ms per iteration, 85 s total")

# %% [markdown]
# ## Predicting environments not yet grown, from their covariates
#
# Everything above predicts lines in environments that have data. A breeder also
# wants the genetic values of lines in an environment that has *no* data yet, e.g.
# a location planned for next year, from what is known about it (weather, soil).
# MegaLMM does this by regressing each factor's loadings on covariates of the
# environments (R: `Lambda_prior$X`; Hu et al. 2024): with
# `ARDPrior(trait_covariates=W)` the loadings of environment `e` on factor `k` have
# prior mean `w_e' beta_k`, `beta` is learnt from the environments that were grown,
# and `m.predict_new_traits(W_new)` gives every line's genetic value in a new
# environment as `U_F (W_new beta')'` per draw. A model without covariates cannot
# do this: nothing tells it how a new environment loads on the factors.
#
# The maize trial has no environment covariates, so this section uses a trial
# simulated with three covariates that drive its genotype x environment
# interaction (`simulate_met(env_covariates=3)`), holds three of its 30
# environments out entirely, and compares the predictions with the true genetic
# values. An intercept column lets the covariates' model capture the loadings'
# mean (the main genetic effect shared by all environments). The baseline is what a
# model without covariates can offer for an environment it has never seen: each
# line's mean genetic value over the grown environments.

# %%
from pymegalmm import Priors  # noqa: E402
from pymegalmm.priors import ARDPrior  # noqa: E402

t0 = time.perf_counter()
sim_cov = datasets.simulate_met(n_lines=400, n_envs=30, n_factors=4, env_covariates=3,
                                interaction=1.0, envs_per_line=(8, 12), seed=3)
Y_cov, data_cov = datasets.to_wide(sim_cov.Y, ["Line", "Population"], "Env", "Yield")
W = sim_cov.truth["env_covariates"].assign(Intercept=1.0)  # environments x covariates
new_envs = ["Env28", "Env29", "Env30"]  # never grown, as far as the model knows
print(W.round(2).tail(5))

m_cov = MegaLMM(Y_cov.drop(columns=new_envs), sim_cov.formula, data=data_cov,
                relmat={"Line": sim_cov.K}, n_factors=5, h2_divisions=20, burn=0, seed=SEED,
                priors=Priors(Lambda_prior=ARDPrior(trait_covariates=W.drop(index=new_envs))),
                run_dir=Path(os.environ.get("PYMEGALMM_RUN_DIR", "MegaLMM_run") + "_covariates"),
                overwrite=True)  # a folder of its own: one run per folder
m_cov.burn_in(rounds=2 if QUICK else 3, iterations=BURN_ITER, progress=False)
m_cov.sample(CHUNK_ITER if QUICK else 500, progress=False)
new = m_cov.predict_new_traits(W.loc[new_envs])  # lines x new environments
baseline = m_cov.genetic_values().mean(axis=1)  # each line's mean over grown environments
truth = sim_cov.truth["U"].loc[new.index, new_envs]
new_env_accuracy = pd.DataFrame({
    "from covariates": new.corrwith(truth),
    "mean over grown environments": truth.corrwith(baseline),
})
print(new_env_accuracy.round(3).to_string())
print(f"\n{time.perf_counter() - t0:.1f} s")
interval = m_cov.predict_new_traits(W.loc[new_envs], kind="interval", prob=0.9)
print(interval.head())

# %% [markdown]
# The covariates carry the part of the interaction that they explain; the rest
# of an environment's genetic values (its own specific effects, here 10-30 % of
# its genetic variance) cannot be predicted from anything. How much the
# covariates add over the across-environment mean depends on how strong the
# interaction is and how much of it they explain: check it by holding out
# environments of your own trial, as here, before relying on it.
