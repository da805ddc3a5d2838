"""Observation models recover what was simulated: latent values, G, NB sizes.

Each test simulates a 2-factor genetic model (``datasets.simulate_factor_data``: every
trait of variance 1, a residual share of 0.2) as the latent ``Eta``, draws data through
the observation model, and fits 4 factors for 500 iterations (200 burn-in, every 2nd
kept: 150 draws).  Seeds are fixed, so outcomes are deterministic; the bounds are set
well below the values these seeds give (in the comments) and well above what a wrong
model gives (an unweighted fit of Voom data, a latent draw ignoring the data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from pymegalmm import MegaLMM, datasets
from pymegalmm.observation import Binomial, Combined, NegativeBinomial, Voom

RECORD = ["Lambda", "F_h2", "resid_h2", "tot_Eta_prec", "B1", "U_F", "U_R", "F", "Eta"]


@pytest.fixture(scope="module")
def sim():
    return datasets.simulate_factor_data(n=120, t=10, k_true=2, n_markers=500, seed=11)


def fit(sim, Y, observation, tmp_path, record=RECORD):
    m = MegaLMM(Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=4,
                h2_divisions=10, burn=200, thin=2, seed=1, verbose=False,
                observation=observation, run_dir=tmp_path, record=record)
    return m.sample(500, progress=False)


def g_correlation(m, sim, cols=None):
    """Correlation of the posterior-mean G with the true G over the (block's) entries."""
    G = m.posterior["G"].mean(("chain", "draw")).values[0]
    true = sim.truth["G"].to_numpy()
    idx = np.ix_(cols, cols) if cols is not None else (slice(None), slice(None))
    return float(np.corrcoef(G[idx].ravel(), true[idx].ravel())[0, 1])


def latent_checks(m, truth, cols=None):
    """Correlation of posterior-mean Eta with the truth (each trait centred) and the share
    of cells whose 90 % equal-tailed interval holds the true value."""
    E = m.posterior["Eta"]
    lo = E.quantile(0.05, ("chain", "draw")).values
    hi = E.quantile(0.95, ("chain", "draw")).values
    mean = E.mean(("chain", "draw")).values
    true = truth.to_numpy()
    c = slice(None) if cols is None else cols
    cover = float(np.mean((true[:, c] >= lo[:, c]) & (true[:, c] <= hi[:, c])))
    a, b = mean[:, c] - mean[:, c].mean(0), true[:, c] - true[:, c].mean(0)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), cover


def test_voom_downweights_noisy_cells_and_recovers_G(sim, tmp_path):
    """20 % of the cells have noise SD 5 (weight 0.04), the others SD 0.2 (weight 25).
    Voom: expected-value error on the noisy cells 0.57 here vs 1.30 for the unweighted
    Gaussian fit of the same data (which treats noise of SD 5 as data); G correlation
    0.83 vs 0.76 (over fit seeds 1-6: 0.82-0.90 vs 0.76-0.82, Voom ahead by 0.044-0.14);
    latent correlation 0.95.  Bounds: Voom's error below 0.6 of the Gaussian's, G above
    0.75 and 0.02 above the Gaussian's, and 90 % intervals of the
    latent values covering 0.82-0.97 of the cells (0.91 here; 1200 cells, binomial SE
    ~0.01, plus the fit's shrinkage and dependence between cells)."""
    rng = np.random.default_rng(2)
    W = pd.DataFrame(np.where(rng.random(sim.Y.shape) < 0.2, 0.04, 25.0), index=sim.Y.index,
                     columns=sim.Y.columns)
    Y = sim.Y + rng.standard_normal(sim.Y.shape) / np.sqrt(W)
    noisy = W.to_numpy() < 1
    voom = fit(sim, Y, Voom(W), tmp_path / "voom")
    gauss = fit(sim, Y, None, tmp_path / "gauss", record=RECORD[:-1])
    truth = sim.Y.to_numpy()
    err = {name: float(np.sqrt(np.mean((m.predict().to_numpy() - truth)[noisy] ** 2)))
           for name, m in (("voom", voom), ("gauss", gauss))}
    assert err["voom"] < 0.6 * err["gauss"], err
    assert g_correlation(voom, sim) > 0.75
    assert g_correlation(voom, sim) > g_correlation(gauss, sim) + 0.02
    corr, cover = latent_checks(voom, sim.Y)
    assert corr > 0.9
    assert 0.82 <= cover <= 0.97, cover


def test_binomial_recovers_latent_log_odds_and_G(sim, tmp_path):
    """10-40 trials per cell.  Here: latent correlation 0.93, G correlation 0.90, 90 %
    coverage 0.89.  Bounds: 0.85, 0.75 and 0.82-0.97 (as for Voom)."""
    rng = np.random.default_rng(3)
    truth = sim.Y - sim.Y.mean()
    N = pd.DataFrame(rng.integers(10, 41, truth.shape), index=truth.index,
                     columns=truth.columns)
    Y = pd.DataFrame(rng.binomial(N, expit(truth)), index=truth.index, columns=truth.columns)
    m = fit(sim, Y, Binomial(N), tmp_path / "binomial")
    corr, cover = latent_checks(m, truth)
    assert corr > 0.85
    assert g_correlation(m, sim) > 0.75
    assert 0.82 <= cover <= 0.97, cover
    # the response scale is a probability close to the simulated one
    p = m.predict(scale="response").to_numpy()
    assert np.corrcoef(p.ravel(), expit(truth.to_numpy()).ravel())[0, 1] > 0.85


def test_negative_binomial_recovers_latent_values_G_and_sizes(sim, tmp_path):
    """Counts of mean ~20 per unit library size, library sizes 0.5-2, size r = 20 (the
    prior's mean).  Here: latent correlation 0.96, G correlation 0.90, coverage 0.89, the
    true r inside the 95 % interval for 10 of 10 traits (posterior means 21-39).
    Bounds: 0.85, 0.75, 0.80-0.97, and at least 8 of 10 intervals (a calibrated
    posterior misses ~0.5 of 10).
    The size r and the latent residual both describe extra-Poisson noise (variance
    ~ mean^2 for both), so r is weakly identified here; the conditional draw of r given
    Eta is checked sharply below."""
    rng = np.random.default_rng(4)
    truth = sim.Y - sim.Y.mean() + np.log(20.0)
    lib = pd.Series(rng.uniform(0.5, 2.0, len(truth)), index=truth.index)
    mean = lib.to_numpy()[:, None] * np.exp(truth.to_numpy())
    r = 20.0
    Y = pd.DataFrame(rng.negative_binomial(r, r / (r + mean)), index=truth.index,
                     columns=truth.columns)
    m = fit(sim, Y, NegativeBinomial(library_size=lib), tmp_path / "nb",
            record=[*RECORD, "dispersion"])
    corr, cover = latent_checks(m, truth)
    assert corr > 0.85
    assert g_correlation(m, sim) > 0.75
    assert 0.80 <= cover <= 0.97, cover
    d = m.posterior["dispersion"]
    lo = d.quantile(0.025, ("chain", "draw")).values
    hi = d.quantile(0.975, ("chain", "draw")).values
    assert np.sum((lo <= r) & (r <= hi)) >= 8


def test_negative_binomial_size_given_eta_is_recovered():
    """The size update alone: the factor model's variance tiny (1e-8), so Eta stays at the
    true log means and r is drawn from its conditional given 2000 counts per trait.
    Posterior mean within 15 % of the truth for r = 2 and r = 30 (the posterior SD of
    log r with 2000 counts is ~0.04 for r = 2 and ~0.1 for r = 30), both far from the
    prior mean 20 for r = 2."""
    from pymegalmm.observation.binomial import CountData

    rng = np.random.default_rng(5)
    n, sizes = 2000, np.array([2.0, 30.0])
    eta = rng.normal(3.0, 0.5, (n, 2))
    y = rng.negative_binomial(sizes[None, :], sizes[None, :] / (sizes[None, :] + np.exp(eta)))
    data = CountData(y.astype(float), np.ones((n, 2)), np.ones((n, 2), dtype=bool))
    model = NegativeBinomial()
    state = {"dispersion": np.array([10.0, 10.0])}
    rows, cols = np.arange(n), np.arange(2)
    gen = np.random.default_rng(6)
    draws = []
    current = eta.copy()
    for it in range(400):
        current = model._update_columns(data, state, rows, cols, current, eta,
                                        np.full(2, 1e-8), gen)
        if it >= 100:
            draws.append(state["dispersion"].copy())
    np.testing.assert_allclose(np.mean(draws, axis=0), sizes, rtol=0.15)


def test_combined_blocks_recover_their_parameters(sim, tmp_path):
    """Traits 1-5 as negative-binomial counts (r = 20), 6-10 as Voom data with weights
    1-20, in one fit: each block's latent values and G follow the truth (here: latent
    correlations 0.95 and 0.96, Voom coverage 0.90; G correlations per block 0.84 and
    0.95), with about the bounds of the single-model tests (G 0.7: 5 x 5 blocks); the
    NB sizes are recorded for the count block only."""
    rng = np.random.default_rng(7)
    cols = list(sim.Y.columns)
    counts_cols, voom_cols = cols[:5], cols[5:]
    truth = sim.Y - sim.Y.mean() + np.log(20.0)
    lib = pd.Series(rng.uniform(0.5, 2.0, len(truth)), index=truth.index)
    mean = lib.to_numpy()[:, None] * np.exp(truth[counts_cols].to_numpy())
    counts = pd.DataFrame(rng.negative_binomial(20.0, 20.0 / (20.0 + mean)),
                          index=truth.index, columns=counts_cols)
    W = pd.DataFrame(rng.uniform(1.0, 20.0, (len(truth), 5)), index=truth.index,
                     columns=voom_cols)
    expr = sim.Y[voom_cols] + rng.standard_normal(W.shape) / np.sqrt(W)
    Y = pd.concat([counts, expr], axis=1)
    obs = Combined({tuple(counts_cols): NegativeBinomial(library_size=lib),
                    tuple(voom_cols): Voom(W)})
    m = fit(sim, Y, obs, tmp_path / "combined", record=[*RECORD, "dispersion"])
    ci, vi = list(range(5)), list(range(5, 10))
    corr_nb, _ = latent_checks(m, truth, ci)
    corr_voom, cover_voom = latent_checks(m, sim.Y, vi)
    assert corr_nb > 0.85 and corr_voom > 0.9
    assert 0.82 <= cover_voom <= 0.97, cover_voom
    assert g_correlation(m, sim, ci) > 0.7 and g_correlation(m, sim, vi) > 0.7
    d = m.posterior["dispersion"].mean(("chain", "draw"))
    assert np.all(np.isfinite(d.values[:5])) and np.all(np.isnan(d.values[5:]))
