"""Simulated data sets with known truth, and a tall-to-wide helper.

Every simulator returns a :class:`SimulatedData`: the trait table ``Y``, the
covariates ``data`` used by formulas, the relationship matrix ``K`` (labelled by
level name), the ``formula`` that matches the simulation and a ``truth`` dict
with the parameters that generated the data.

The simulations follow MegaLMM's parameterisation (Runcie et al. 2021)::

    Y = F Lambda + U_R + E_R,        F = U_F + E_F

Factor ``k`` has unit total variance, split into a genetic part
``U_F[:, k] ~ N(0, F_h2[k] K)`` and a residual part with variance
``1 - F_h2[k]``. Trait ``j`` has residual-model genetic variance ``sigma2_g[j]``
(``U_R[:, j] ~ N(0, sigma2_g[j] K)``) and residual variance ``sigma2_e[j]``, so

    G = Lambda' diag(F_h2) Lambda + diag(sigma2_g)
    R = Lambda' diag(1 - F_h2) Lambda + diag(sigma2_e)
    h2_j = G_jj / (G_jj + R_jj)

All randomness goes through one ``numpy.random.default_rng(seed)``: the same
arguments always give identical data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "SimulatedData",
    "simulate_factor_data",
    "simulate_two_random_effects",
    "simulate_met",
    "to_wide",
]

#: Ridge added to every simulated genomic relationship matrix so that it is positive definite.
K_RIDGE = 1e-4


@dataclass
class SimulatedData:
    """A simulated data set and the truth that generated it.

    Attributes
    ----------
    Y : pandas.DataFrame
        Trait table. For :func:`simulate_factor_data` and
        :func:`simulate_two_random_effects` it is wide (``n x t``, index = row IDs,
        columns = trait names, NaN = missing). For :func:`simulate_met` it is the
        *tall* table (one row per observed line x environment); convert it with
        :func:`to_wide`.
    data : pandas.DataFrame
        One row per row of ``Y`` (same index) with the columns used by ``formula``.
    K : pandas.DataFrame
        Relationship matrix, ``index == columns ==`` level names.
    truth : dict
        Parameters that generated the data; the keys are listed by each simulator.
    formula : str
        Model formula that matches the simulation, e.g. ``"~ 1 + (1|ID)"``.
    """

    Y: pd.DataFrame
    data: pd.DataFrame
    K: pd.DataFrame
    truth: dict[str, object] = field(default_factory=dict)
    formula: str = "~ 1"

    def __repr__(self) -> str:
        return (
            f"SimulatedData(Y: {self.Y.shape[0]} x {self.Y.shape[1]}, "
            f"data columns: {list(self.data.columns)}, K: {self.K.shape[0]} levels, "
            f"formula: {self.formula!r}, truth: {sorted(self.truth)})"
        )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _labels(prefix: str, n: int, min_width: int) -> list[str]:
    """``prefix`` + zero-padded 1-based numbers, e.g. ``ID0001``."""
    width = max(min_width, len(str(n)))
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n)]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _per_trait(name: str, value: float | np.ndarray, size: int, low: float, high: float,
               closed: bool = False) -> np.ndarray:
    """Broadcast a scalar or check a length-``size`` vector of values in (low, high)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,):
        raise ValueError(f"{name} must be a scalar or have length {size}, got shape {arr.shape}")
    ok = (arr >= low) & (arr <= high) if closed else (arr > low) & (arr < high)
    if not np.all(ok):
        bracket = "[]" if closed else "()"
        raise ValueError(
            f"{name} must lie in {bracket[0]}{low}, {high}{bracket[1]}, got {arr[~ok][0]}"
        )
    return arr


def _simulate_genotypes(rng: np.random.Generator, n: int, freqs: np.ndarray,
                        n_founders: int) -> np.ndarray:
    """Genotypes (0/1/2) of ``n`` offspring of random pairs of ``n_founders`` founders.

    Founder haplotypes are drawn with allele frequencies ``freqs``; each offspring
    takes one random haplotype per marker from each of its two parents (unlinked
    markers). Sharing parents creates half-sib and full-sib relatedness, so the
    genomic relationship matrix carries information beyond population structure.
    """
    n_markers = freqs.shape[0]
    haplotypes = (rng.random((n_founders, 2, n_markers)) < freqs).astype(np.int8)
    parents = rng.integers(0, n_founders, size=(n, 2))
    which = rng.integers(0, 2, size=(n, 2, n_markers))
    cols = np.arange(n_markers)[None, :]
    return (
        haplotypes[parents[:, [0]], which[:, 0, :], cols]
        + haplotypes[parents[:, [1]], which[:, 1, :], cols]
    )


def _grm(genotypes: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """VanRaden genomic relationship matrix, scaled to mean diagonal 1, plus a small ridge.

    Markers are centred by their sample allele frequencies ``p`` and scaled so that
    ``K = W W' / (2 sum p (1 - p))``. With ``groups`` (one code per individual), each
    group is centred and scaled with its *own* allele frequencies: the within-group
    blocks are the groups' own GRMs and the between-group entries are close to zero.
    ``K`` is then divided by its mean diagonal (so ``u ~ N(0, s2 K)`` has average
    variance ``s2``) and ``K_RIDGE * I`` is added so that ``K`` is positive definite.
    """
    if groups is None:
        groups = np.zeros(genotypes.shape[0], dtype=np.int64)
    w = np.zeros(genotypes.shape, dtype=float)
    for g in np.unique(groups):
        rows = groups == g
        p = genotypes[rows].mean(axis=0) / 2.0
        denom = 2.0 * np.sum(p * (1.0 - p))
        if denom <= 0.0:
            raise ValueError("all simulated markers are monomorphic; increase n_markers")
        w[rows] = (genotypes[rows] - 2.0 * p) / np.sqrt(denom)
    k = w @ w.T
    k /= np.mean(np.diag(k))
    k = 0.5 * (k + k.T)
    k[np.diag_indices_from(k)] += K_RIDGE
    return k


def _sqrt_psd(k: np.ndarray) -> np.ndarray:
    """A matrix ``L`` with ``L L' = k`` for a symmetric PSD ``k`` (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(k)
    return v * np.sqrt(np.clip(w, 0.0, None))


def _mvn_columns(rng: np.random.Generator, k_sqrt: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Columns ``u_j ~ N(0, variances[j] K)`` given ``k_sqrt`` with ``k_sqrt k_sqrt' = K``."""
    z = rng.standard_normal((k_sqrt.shape[1], variances.shape[0]))
    return (k_sqrt @ z) * np.sqrt(variances)[None, :]


def _sparse_loadings(rng: np.random.Generator, k: int, t: int,
                     factor_var: np.ndarray) -> np.ndarray:
    """Sparse-ish factor loadings ordered by importance.

    Factor ``k`` loads on a random 20-60% subset of the traits (at least one) with
    ``N(0, 1) / sqrt(k + 1)`` loadings; a trait that no factor loads on is given a
    loading on the first factor. Each trait's column is then rescaled so the factor
    part has variance ``factor_var[j]`` (``sum_k Lambda[k, j]**2``), and the factors
    are sorted by decreasing total squared loading.
    """
    mask = np.zeros((k, t), dtype=bool)
    for i in range(k):
        size = max(1, int(round(t * rng.uniform(0.2, 0.6))))
        mask[i, rng.choice(t, size=size, replace=False)] = True
    mask[0, ~mask.any(axis=0)] = True
    scale = 1.0 / np.sqrt(np.arange(1, k + 1))
    lam = rng.standard_normal((k, t)) * mask * scale[:, None]
    lam *= np.sqrt(factor_var / np.sum(lam**2, axis=0))[None, :]
    order = np.argsort(-np.sum(lam**2, axis=1), kind="stable")
    return lam[order]


def _draw_two_proportions(rng: np.random.Generator, size: int, low: float = 0.1,
                          high: float = 0.5, max_sum: float = 0.85) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Pairs ``(a, b)`` with each ``~ U(low, high)``, redrawn until ``a + b < max_sum``."""
    a = rng.uniform(low, high, size)
    b = rng.uniform(low, high, size)
    bad = a + b >= max_sum
    while np.any(bad):
        nb = int(bad.sum())
        a[bad] = rng.uniform(low, high, nb)
        b[bad] = rng.uniform(low, high, nb)
        bad = a + b >= max_sum
    return a, b


def _mask_cells(rng: np.random.Generator, y: np.ndarray, fraction: float) -> np.ndarray:
    """Set ``fraction`` of the cells to NaN, then restore one cell of any empty row/column."""
    n, t = y.shape
    n_missing = int(round(fraction * n * t))
    if n_missing == 0:
        return y
    y = y.copy()
    values = y.copy()
    flat = rng.choice(n * t, size=n_missing, replace=False)
    y.flat[flat] = np.nan
    for i in np.flatnonzero(np.all(np.isnan(y), axis=1)):
        j = rng.integers(t)
        y[i, j] = values[i, j]
    for j in np.flatnonzero(np.all(np.isnan(y), axis=0)):
        i = rng.integers(n)
        y[i, j] = values[i, j]
    return y


# --------------------------------------------------------------------------------------
# simulators
# --------------------------------------------------------------------------------------


def simulate_factor_data(
    n: int = 500,
    t: int = 20,
    k_true: int = 5,
    n_markers: int = 2000,
    factor_h2: np.ndarray | None = None,
    resid_h2: np.ndarray | None = None,
    resid_var: float | np.ndarray = 0.2,
    missing: float = 0.0,
    seed: int = 0,
    covariances: bool | None = None,
) -> SimulatedData:
    """Simulate ``n`` individuals x ``t`` traits from a genetic factor model.

    Parameters
    ----------
    n : int
        Number of individuals (labelled ``ID0001``, ``ID0002``, ...).
    t : int
        Number of traits (``T01``, ``T02``, ...).
    k_true : int
        Number of latent factors. ``0`` gives independent traits (pure residual model).
    n_markers : int
        Number of biallelic markers used to build the genomic relationship matrix.
        Individuals are offspring of random pairs of ``max(2, n // 10)`` founders, so
        ``K`` contains half- and full-sib relationships.
    factor_h2 : array of length ``k_true``, optional
        Heritability of each factor (in importance order), in ``[0, 1]``.
        Default: ``U(0.3, 0.9)`` per factor.
    resid_h2 : array of length ``t``, optional
        Heritability of each trait's residual model, ``sigma2_g / (sigma2_g + sigma2_e)``,
        in ``[0, 1]``. Default: ``U(0.1, 0.6)`` per trait.
    resid_var : float or array of length ``t``
        Fraction of each trait's variance from the residual model, in ``(0, 1)``;
        the factors explain the rest (a majority when ``resid_var < 0.5``). Every
        trait has total variance 1 (before the trait mean). Ignored when
        ``k_true == 0`` (then the residual model has variance 1).
    missing : float
        Fraction of cells of ``Y`` set to NaN at random, in ``[0, 1)``. A row or trait
        left without any observation gets one cell back, so the realised fraction can
        be marginally lower.
    seed : int
        Seed for :func:`numpy.random.default_rng`.
    covariances : bool, optional
        Whether ``truth`` holds the ``t x t`` matrices ``G`` and ``R`` (``16 t^2`` bytes:
        3.2 GB at t = 10,000, 160 GB at t = 100,000).  Default: when ``t <= 10,000``.
        The data and every other true value are the same either way.

    Returns
    -------
    SimulatedData
        ``Y`` (``n x t``), ``data`` with column ``ID``, ``K`` labelled by ``ID``,
        ``formula = "~ 1 + (1|ID)"`` and ``truth`` with keys ``"Lambda"`` (``k x t``
        DataFrame), ``"F_h2"`` (Series), ``"resid_h2"`` (Series), ``"G"`` and ``"R"``
        (``t x t`` DataFrames, only with ``covariances``), ``"h2"`` (Series), ``"U"``
        (``n x t`` true genetic values ``U_F Lambda + U_R``), ``"F"`` (``n x k`` factor
        scores), ``"mu"`` (trait means, ``N(0, 1)``), ``"sigma2_g"`` and ``"sigma2_e"``
        (residual-model variances).
    """
    n = _check_int("n", n, 3)
    t = _check_int("t", t, 1)
    k_true = _check_int("k_true", k_true, 0)
    n_markers = _check_int("n_markers", n_markers, 10)
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must lie in [0, 1), got {missing}")
    rng = np.random.default_rng(seed)

    ids = _labels("ID", n, 4)
    traits = _labels("T", t, 2)
    factors = _labels("Factor", k_true, 1)

    freqs = rng.uniform(0.05, 0.95, n_markers)
    k_mat = _grm(_simulate_genotypes(rng, n, freqs, max(2, n // 10)))
    k_sqrt = _sqrt_psd(k_mat)

    if k_true > 0:
        rv = _per_trait("resid_var", resid_var, t, 0.0, 1.0)
        f_h2 = (rng.uniform(0.3, 0.9, k_true) if factor_h2 is None
                else _per_trait("factor_h2", factor_h2, k_true, 0.0, 1.0, closed=True))
        lam = _sparse_loadings(rng, k_true, t, 1.0 - rv)
    else:
        rv = np.ones(t)
        f_h2 = np.zeros(0)
        lam = np.zeros((0, t))
    r_h2 = (rng.uniform(0.1, 0.6, t) if resid_h2 is None
            else _per_trait("resid_h2", resid_h2, t, 0.0, 1.0, closed=True))
    sigma2_g = r_h2 * rv
    sigma2_e = (1.0 - r_h2) * rv

    u_f = _mvn_columns(rng, k_sqrt, f_h2)
    e_f = rng.standard_normal((n, k_true)) * np.sqrt(1.0 - f_h2)[None, :]
    f = u_f + e_f
    u_r = _mvn_columns(rng, k_sqrt, sigma2_g)
    e_r = rng.standard_normal((n, t)) * np.sqrt(sigma2_e)[None, :]
    mu = rng.standard_normal(t)
    y = mu[None, :] + f @ lam + u_r + e_r
    y = _mask_cells(rng, y, missing)

    covariance_part: dict[str, object] = {}
    with_covariances = t <= 10_000 if covariances is None else bool(covariances)
    if with_covariances:
        g = lam.T @ (f_h2[:, None] * lam) + np.diag(sigma2_g)
        r = lam.T @ ((1.0 - f_h2)[:, None] * lam) + np.diag(sigma2_e)
        h2 = np.diag(g) / (np.diag(g) + np.diag(r))
        covariance_part = {"G": pd.DataFrame(g, index=traits, columns=traits),
                           "R": pd.DataFrame(r, index=traits, columns=traits)}
    else:  # the diagonals only
        g_diag = (f_h2[:, None] * lam**2).sum(axis=0) + sigma2_g
        r_diag = ((1.0 - f_h2)[:, None] * lam**2).sum(axis=0) + sigma2_e
        h2 = g_diag / (g_diag + r_diag)

    truth: dict[str, object] = {
        "Lambda": pd.DataFrame(lam, index=factors, columns=traits),
        "F_h2": pd.Series(f_h2, index=factors, name="F_h2"),
        "resid_h2": pd.Series(r_h2, index=traits, name="resid_h2"),
        **covariance_part,
        "h2": pd.Series(h2, index=traits, name="h2"),
        "U": pd.DataFrame(u_f @ lam + u_r, index=ids, columns=traits),
        "F": pd.DataFrame(f, index=ids, columns=factors),
        "mu": pd.Series(mu, index=traits, name="mu"),
        "sigma2_g": pd.Series(sigma2_g, index=traits, name="sigma2_g"),
        "sigma2_e": pd.Series(sigma2_e, index=traits, name="sigma2_e"),
    }
    return SimulatedData(
        Y=pd.DataFrame(y, index=ids, columns=traits),
        data=pd.DataFrame({"ID": ids}, index=ids),
        K=pd.DataFrame(k_mat, index=ids, columns=ids),
        truth=truth,
        formula="~ 1 + (1|ID)",
    )


def simulate_two_random_effects(
    n_lines: int = 200,
    n_reps: int = 2,
    n_plots: int = 40,
    t: int = 10,
    k_true: int = 0,
    seed: int = 0,
    n_markers: int = 1000,
    tot_var: float | np.ndarray = 1.0,
) -> SimulatedData:
    """Simulate traits with two crossed random effects: genetic ``Line`` and iid ``Plot``.

    Each of ``n_lines`` lines is observed ``n_reps`` times; every observation is put in
    one of ``n_plots`` plots at random (balanced: plot sizes differ by at most one), so
    plots are crossed with lines. For trait ``j`` the residual model is::

        y_j = mu_j + Z_line u_j + Z_plot p_j + e_j
        u_j ~ N(0, h2_Line[j] tot_var[j] K),   p_j ~ N(0, h2_Plot[j] tot_var[j] I),
        e_j ~ N(0, (1 - h2_Line[j] - h2_Plot[j]) tot_var[j] I)

    with ``h2_Line`` and ``h2_Plot`` each ``U(0.1, 0.5)`` and their sum below 0.85.
    ``tot_var`` is ``1 / tot_prec`` of the residual model.

    With ``k_true > 0``, ``F Lambda`` is added: each factor is itself a two-random-effect
    LMM with unit variance and proportions ``F_h2_Line``/``F_h2_Plot`` drawn the same
    way, and the loadings are scaled so the factor part of each trait has variance
    ``tot_var[j]`` (half of the trait's variance).

    Parameters
    ----------
    n_lines, n_reps, n_plots, t : int
        Design sizes. Rows of ``Y``: ``n_lines * n_reps`` (``Obs0001``, ...).
    k_true : int
        Number of latent factors (default 0: independent traits).
    seed : int
        Seed for :func:`numpy.random.default_rng`.
    n_markers : int
        Markers used to build the genomic relationship matrix of the lines.
    tot_var : float or array of length ``t``
        Variance of each trait's residual model (``1 / tot_prec``), positive.

    Returns
    -------
    SimulatedData
        ``data`` has columns ``Line`` and ``Plot``; ``K`` is labelled by line only (the
        ``Plot`` effect uses the identity); ``formula = "~ 1 + (1|Line) + (1|Plot)"``.
        ``truth`` keys: ``"h2_Line"``, ``"h2_Plot"`` (Series per trait, residual-model
        proportions of ``1 / tot_prec``), ``"tot_var"``, ``"mu"``, ``"U_Line"`` (lines x
        traits true genetic values), ``"U_Plot"`` (plots x traits), ``"G_Line"``,
        ``"G_Plot"``, ``"R"`` (t x t covariances, diagonal when ``k_true == 0``),
        ``"Lambda"``, ``"F_h2_Line"``, ``"F_h2_Plot"``.
    """
    n_lines = _check_int("n_lines", n_lines, 2)
    n_reps = _check_int("n_reps", n_reps, 1)
    n_plots = _check_int("n_plots", n_plots, 2)
    t = _check_int("t", t, 1)
    k_true = _check_int("k_true", k_true, 0)
    n_markers = _check_int("n_markers", n_markers, 10)
    tv = _per_trait("tot_var", tot_var, t, 0.0, np.inf)
    rng = np.random.default_rng(seed)

    lines = _labels("Line", n_lines, 3)
    plots = _labels("Plot", n_plots, 2)
    traits = _labels("T", t, 2)
    factors = _labels("Factor", k_true, 1)
    n_obs = n_lines * n_reps
    rows = _labels("Obs", n_obs, 4)

    freqs = rng.uniform(0.05, 0.95, n_markers)
    k_mat = _grm(_simulate_genotypes(rng, n_lines, freqs, max(2, n_lines // 10)))
    k_sqrt = _sqrt_psd(k_mat)

    line_of = np.repeat(np.arange(n_lines), n_reps)
    plot_of = rng.permutation(np.resize(np.arange(n_plots), n_obs))

    h_line, h_plot = _draw_two_proportions(rng, t)
    u_line = _mvn_columns(rng, k_sqrt, h_line * tv)
    u_plot = rng.standard_normal((n_plots, t)) * np.sqrt(h_plot * tv)[None, :]
    e = rng.standard_normal((n_obs, t)) * np.sqrt((1.0 - h_line - h_plot) * tv)[None, :]
    mu = rng.standard_normal(t)
    y = mu[None, :] + u_line[line_of] + u_plot[plot_of] + e

    if k_true > 0:
        fh_line, fh_plot = _draw_two_proportions(rng, k_true)
        lam = _sparse_loadings(rng, k_true, t, tv)
        f_line = _mvn_columns(rng, k_sqrt, fh_line)
        f_plot = rng.standard_normal((n_plots, k_true)) * np.sqrt(fh_plot)[None, :]
        f_e = rng.standard_normal((n_obs, k_true)) * np.sqrt(1.0 - fh_line - fh_plot)[None, :]
        y = y + (f_line[line_of] + f_plot[plot_of] + f_e) @ lam
    else:
        fh_line = fh_plot = np.zeros(0)
        lam = np.zeros((0, t))
        f_line = np.zeros((n_lines, 0))
        f_plot = np.zeros((n_plots, 0))

    def _cov(prop_f: np.ndarray, prop_r: np.ndarray) -> pd.DataFrame:
        c = lam.T @ (prop_f[:, None] * lam) + np.diag(prop_r * tv)
        return pd.DataFrame(c, index=traits, columns=traits)

    truth: dict[str, object] = {
        "h2_Line": pd.Series(h_line, index=traits, name="h2_Line"),
        "h2_Plot": pd.Series(h_plot, index=traits, name="h2_Plot"),
        "tot_var": pd.Series(tv, index=traits, name="tot_var"),
        "mu": pd.Series(mu, index=traits, name="mu"),
        "U_Line": pd.DataFrame(f_line @ lam + u_line, index=lines, columns=traits),
        "U_Plot": pd.DataFrame(f_plot @ lam + u_plot, index=plots, columns=traits),
        "G_Line": _cov(fh_line, h_line),
        "G_Plot": _cov(fh_plot, h_plot),
        "R": _cov(1.0 - fh_line - fh_plot, 1.0 - h_line - h_plot),
        "Lambda": pd.DataFrame(lam, index=factors, columns=traits),
        "F_h2_Line": pd.Series(fh_line, index=factors, name="F_h2_Line"),
        "F_h2_Plot": pd.Series(fh_plot, index=factors, name="F_h2_Plot"),
    }
    data = pd.DataFrame(
        {"Line": np.asarray(lines, dtype=object)[line_of],
         "Plot": np.asarray(plots, dtype=object)[plot_of]},
        index=rows,
    )
    return SimulatedData(
        Y=pd.DataFrame(y, index=rows, columns=traits),
        data=data,
        K=pd.DataFrame(k_mat, index=lines, columns=lines),
        truth=truth,
        formula="~ 1 + (1|Line) + (1|Plot)",
    )


def simulate_met(
    n_lines: int = 500,
    n_envs: int = 20,
    n_pops: int = 2,
    envs_per_line: tuple[int, int] = (6, 9),
    n_factors: int = 4,
    seed: int = 0,
    n_markers: int = 2000,
    purity: float = 0.9,
    env_covariates: int = 0,
    interaction: float = 0.5,
) -> SimulatedData:
    """Simulate an incomplete multi-environment trial (MET) of a single trait, ``Yield``.

    Shaped like a real maize trial: lines in ``n_pops`` populations with little
    relatedness between them, each line grown in only ``envs_per_line`` of the
    ``n_envs`` environments, and each environment mostly testing one population.

    The design:

    * Lines ``Line001``... are split into ``n_pops`` contiguous, near-equal populations
      (coded ``1..n_pops``). Each population has its own allele frequencies
      (``U(0.05, 0.95)`` per marker); lines are offspring of random pairs of
      ``max(2, n_pop // 10)`` founders of their own population. ``K`` is
      block-structured: each population's block is its own VanRaden GRM (markers
      centred by that population's allele frequencies, so half- and full-sib
      families show up), and the between-population entries are close to zero
      (low relatedness). Population mean differences are left to the
      fixed ``Population`` effect.
    * Environments ``Env01``... are split into contiguous near-equal blocks, each
      block "home" to one population. A line is grown in ``U{envs_per_line}``
      environments, each away from its home block with probability
      ``1 - purity`` (so ~``purity`` of an environment's lines come from its home
      population when populations and blocks have equal sizes).
    * True genetic values ``U`` (all lines x all environments) are
      ``U_F Lambda + U_S``: ``n_factors`` genetic factors ``U_F[:, k] ~ N(0, K)``
      (the first loads ``U(0.6, 1)`` on every environment: a main genetic effect;
      the others ``N(0, interaction^2/k)``, k = 2, 3, ...: genotype x environment
      interaction) plus
      environment-specific effects ``U_S[:, e] ~ N(0, s2_e K)`` explaining
      ``U(0.1, 0.3)`` of each environment's genetic variance. Each environment has
      heritability ``U(0.2, 0.6)``, phenotypic standard deviation ``U(0.15, 0.6)``,
      a mean ``N(0, 0.5^2)`` and, for populations ``2..n_pops``, a population
      effect ``N(0, (0.25 sd_e)^2)``.
    * With ``env_covariates = p > 0``, each environment also has ``p`` standardised
      covariates ``W`` (columns ``Cov1``..., think of weather and soil), drawn from a
      stream of their own so that every other draw of the trial is unchanged, and the
      genotype x environment loadings (factors 2, 3, ...) depend on them:
      ``lambda_ke = sqrt(0.8) (W beta_k)_e / sqrt(p) + sqrt(0.2) lambda0_ke`` with
      ``beta_k ~ N(0, interaction^2/k I)`` and ``lambda0_ke`` the draw above, so that the
      covariates explain about 80 % of the interaction loadings' variance and an
      environment's genetic values can be predicted from its covariates
      (:meth:`pymegalmm.MegaLMM.predict_new_traits`). The main factor's loadings do
      not depend on them (an intercept column in the covariates captures their mean).

    Parameters
    ----------
    n_lines, n_envs, n_pops : int
        Design sizes.
    envs_per_line : (int, int)
        Inclusive range of the number of environments per line; the upper bound
        must be below ``n_envs`` so that no line is in every environment.
    n_factors : int
        Number of genetic factors across environments (``>= 1``).
    seed : int
        Seed for :func:`numpy.random.default_rng`.
    n_markers : int
        Number of markers for the GRM.
    purity : float
        Probability that a line's environment is in its population's block, in ``(0, 1]``.
    env_covariates : int
        Number of environment covariates driving the interaction loadings (default 0:
        none, and the trial is exactly the one drawn without this argument).
    interaction : float
        Standard deviation of the interaction factors' loadings before the per-environment
        rescaling, relative to the main factor's ``U(0.6, 1)`` (default 0.5); larger
        values give more genotype x environment interaction.

    Returns
    -------
    SimulatedData
        ``Y`` is the **tall** table, one row per observed line x environment, sorted
        by line then environment, with columns ``Line``, ``Population`` (int),
        ``Env`` and ``Yield``; ``data`` is a copy of the same table. Use
        ``to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")`` to get the
        lines x environments matrix and the matching per-line data.
        ``K`` is labelled by line. ``formula = "~ Population + (1|Line)"`` (with
        ``C(Population)`` when ``n_pops > 2``). ``truth`` keys: ``"G"`` (env x env
        genetic covariance), ``"U"`` (lines x envs), ``"h2"`` (Series per env),
        ``"R"`` (env x env residual covariance, diagonal), ``"Lambda"`` (factors x envs),
        ``"env_means"``, ``"population_effects"`` (populations x envs, first row 0),
        ``"population"`` (Series line -> population), ``"home_population"`` (Series per env);
        with ``env_covariates``, also ``"env_covariates"`` (DataFrame envs x covariates)
        and ``"covariate_effects"`` (DataFrame factors x covariates: ``beta``, on the
        loadings' scale before the per-environment rescaling).
    """
    n_lines = _check_int("n_lines", n_lines, 4)
    env_covariates = _check_int("env_covariates", env_covariates, 0)
    n_envs = _check_int("n_envs", n_envs, 2)
    n_pops = _check_int("n_pops", n_pops, 1)
    n_factors = _check_int("n_factors", n_factors, 1)
    n_markers = _check_int("n_markers", n_markers, 10)
    lo, hi = (int(v) for v in envs_per_line)
    if not 1 <= lo <= hi < n_envs:
        raise ValueError(
            f"envs_per_line must satisfy 1 <= low <= high < n_envs ({n_envs}), got "
            f"{tuple(envs_per_line)}"
        )
    if n_pops > n_envs or 2 * n_pops > n_lines:
        raise ValueError(
            f"n_pops ({n_pops}) must be at most n_envs ({n_envs}) and n_lines / 2 ({n_lines})"
        )
    if not 0.0 < purity <= 1.0:
        raise ValueError(f"purity must lie in (0, 1], got {purity}")
    interaction = float(interaction)
    if not (np.isfinite(interaction) and interaction >= 0.0):
        raise ValueError(f"interaction must be a finite number >= 0, got {interaction}")
    if env_covariates and n_factors < 2:
        raise ValueError(f"env_covariates drive the interaction factors 2, 3, ...: they need "
                         f"n_factors >= 2, got n_factors={n_factors}")
    rng = np.random.default_rng(seed)

    lines = np.asarray(_labels("Line", n_lines, 3), dtype=object)
    envs = np.asarray(_labels("Env", n_envs, 2), dtype=object)
    factors = _labels("Factor", n_factors, 1)

    # populations and genotypes
    pop_of = np.empty(n_lines, dtype=np.int64)
    for p, idx in enumerate(np.array_split(np.arange(n_lines), n_pops)):
        pop_of[idx] = p
    geno = np.empty((n_lines, n_markers), dtype=np.int8)
    for p in range(n_pops):
        idx = np.flatnonzero(pop_of == p)
        freqs = rng.uniform(0.05, 0.95, n_markers)
        geno[idx] = _simulate_genotypes(rng, idx.size, freqs, max(2, idx.size // 10))
    k_mat = _grm(geno, groups=pop_of)
    k_sqrt = _sqrt_psd(k_mat)

    # which line is grown where
    home_of_env = np.empty(n_envs, dtype=np.int64)
    for p, idx in enumerate(np.array_split(np.arange(n_envs), n_pops)):
        home_of_env[idx] = p
    observed = np.zeros((n_lines, n_envs), dtype=bool)
    for i in range(n_lines):
        n_i = int(rng.integers(lo, hi + 1))
        home = np.flatnonzero(home_of_env == pop_of[i])
        away = np.flatnonzero(home_of_env != pop_of[i])
        n_away = int(rng.binomial(n_i, 1.0 - purity)) if away.size else 0
        n_away = min(max(n_away, n_i - home.size), away.size)
        observed[i, rng.choice(home, size=n_i - n_away, replace=False)] = True
        if n_away:
            observed[i, rng.choice(away, size=n_away, replace=False)] = True

    # genetic covariance between environments
    lam = np.empty((n_factors, n_envs))
    lam[0] = rng.uniform(0.6, 1.0, n_envs)
    if n_factors > 1:
        lam[1:] = interaction * rng.standard_normal((n_factors - 1, n_envs)) / np.sqrt(
            np.arange(2, n_factors + 1)
        )[:, None]
    if env_covariates:  # own stream: the trial's other draws stay those of env_covariates=0
        cov_rng = np.random.default_rng([seed, 7919])
        W = cov_rng.standard_normal((n_envs, env_covariates))
        if n_envs > 1:
            W = (W - W.mean(axis=0)) / W.std(axis=0)
        beta = np.zeros((n_factors, env_covariates))
        beta[1:] = interaction * cov_rng.standard_normal((n_factors - 1, env_covariates)) / np.sqrt(
            np.arange(2, n_factors + 1)
        )[:, None]
        lam[1:] = (np.sqrt(0.8) * (beta[1:] @ W.T) / np.sqrt(env_covariates)
                   + np.sqrt(0.2) * lam[1:])
    spec_frac = rng.uniform(0.1, 0.3, n_envs)
    spec_var = spec_frac / (1.0 - spec_frac) * np.sum(lam**2, axis=0)
    g_unit = np.diag(lam.T @ lam) + spec_var
    h2 = rng.uniform(0.2, 0.6, n_envs)
    env_sd = rng.uniform(0.15, 0.6, n_envs)
    scale = env_sd * np.sqrt(h2 / g_unit)
    lam = lam * scale[None, :]
    spec_var = spec_var * scale**2
    g = lam.T @ lam + np.diag(spec_var)
    resid_var = env_sd**2 * (1.0 - h2)

    u = _mvn_columns(rng, k_sqrt, np.ones(n_factors)) @ lam + _mvn_columns(rng, k_sqrt, spec_var)
    env_means = rng.normal(0.0, 0.5, n_envs)
    pop_eff = np.zeros((n_pops, n_envs))
    if n_pops > 1:
        pop_eff[1:] = rng.standard_normal((n_pops - 1, n_envs)) * 0.25 * env_sd[None, :]
    noise = rng.standard_normal((n_lines, n_envs)) * np.sqrt(resid_var)[None, :]
    y_full = env_means[None, :] + pop_eff[pop_of] + u + noise

    li, ei = np.nonzero(observed)  # row-major: sorted by line, then environment
    tall = pd.DataFrame(
        {
            "Line": lines[li],
            "Population": pop_of[li] + 1,
            "Env": envs[ei],
            "Yield": y_full[li, ei],
        }
    )
    line_names = list(lines)
    env_names = list(envs)
    pop_names = list(range(1, n_pops + 1))
    truth: dict[str, object] = {
        "G": pd.DataFrame(g, index=env_names, columns=env_names),
        "U": pd.DataFrame(u, index=line_names, columns=env_names),
        "h2": pd.Series(h2, index=env_names, name="h2"),
        "R": pd.DataFrame(np.diag(resid_var), index=env_names, columns=env_names),
        "Lambda": pd.DataFrame(lam, index=factors, columns=env_names),
        "env_means": pd.Series(env_means, index=env_names, name="env_means"),
        "population_effects": pd.DataFrame(pop_eff, index=pop_names, columns=env_names),
        "population": pd.Series(pop_of + 1, index=line_names, name="Population"),
        "home_population": pd.Series(home_of_env + 1, index=env_names, name="Population"),
    }
    if env_covariates:
        cov_names = [f"Cov{q + 1}" for q in range(env_covariates)]
        truth["env_covariates"] = pd.DataFrame(W, index=env_names, columns=cov_names)
        truth["covariate_effects"] = pd.DataFrame(beta, index=factors, columns=cov_names)
    formula = "~ Population + (1|Line)" if n_pops <= 2 else "~ C(Population) + (1|Line)"
    return SimulatedData(
        Y=tall,
        data=tall.copy(),
        K=pd.DataFrame(k_mat, index=line_names, columns=line_names),
        truth=truth,
        formula=formula,
    )


# --------------------------------------------------------------------------------------
# reshaping
# --------------------------------------------------------------------------------------


def to_wide(
    tall: pd.DataFrame,
    id_cols: list[str] | str,
    names_from: str,
    values_from: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reshape a tall table into a trait matrix ``Y`` and its per-row ``data``.

    The analogue of MegaLMM's ``create_data_matrices``.

    Parameters
    ----------
    tall : pandas.DataFrame
        One row per observation.
    id_cols : str or list of str
        Columns identifying a row of the wide table (e.g. ``["Line", "Population"]``).
        Every distinct *combination* of their values is one row: if a line appears
        with two populations it gives two rows.
    names_from : str
        Column whose values become the columns of ``Y`` (e.g. ``"Env"``).
    values_from : str
        Numeric column holding the values (e.g. ``"Yield"``).

    Returns
    -------
    Y : pandas.DataFrame
        One row per distinct ``id_cols`` combination, **sorted by** ``id_cols``; one column
        per distinct value of ``names_from``, **sorted**; NaN where a combination was not
        observed (a NaN in ``values_from`` also stays NaN).
    data : pandas.DataFrame
        The ``id_cols`` of each row of ``Y``, same index.

    The row labels (index of both) are the values of the first id column when these
    are unique across rows (the usual case, e.g. line names, so ``Y.index`` matches
    the labels of ``K``); otherwise the id values joined by ``"_"``
    (e.g. ``"Line001_1"``). Index and column axes are unnamed, so ``data`` can be
    grouped by its columns without ambiguity.

    Raises
    ------
    KeyError
        If a named column is not in ``tall``.
    ValueError
        If an ``(id_cols, names_from)`` combination occurs more than once (an example is
        named), if the id or name columns contain missing values, or if ``values_from``
        is not numeric.
    """
    if not isinstance(tall, pd.DataFrame):
        raise TypeError(f"tall must be a pandas DataFrame, got {type(tall).__name__}")
    ids = [id_cols] if isinstance(id_cols, str) else list(id_cols)
    if not ids:
        raise ValueError("id_cols must name at least one column")
    for col in [*ids, names_from, values_from]:
        if col not in tall.columns:
            raise KeyError(f"column {col!r} is not in the table; columns are {list(tall.columns)}")
    if names_from in ids or values_from in ids or names_from == values_from:
        raise ValueError("id_cols, names_from and values_from must be different columns")
    key_cols = [*ids, names_from]
    na_keys = tall[key_cols].isna().any(axis=1)
    if na_keys.any():
        raise ValueError(
            f"columns {key_cols} contain missing values (first at row {tall.index[na_keys][0]!r});"
            " drop or fill those rows first"
        )
    try:
        values = pd.to_numeric(tall[values_from], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {values_from!r} must be numeric: {exc}") from exc
    dup = tall.duplicated(subset=key_cols, keep=False)
    if dup.any():
        example = tall.loc[dup, key_cols].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} rows share their ({', '.join(key_cols)}) with another row, "
            f"e.g. {example}; aggregate the duplicates (e.g. average them) before to_wide"
        )

    frame = tall[key_cols].copy()
    frame["__value__"] = values.to_numpy()
    wide = frame.pivot(index=ids, columns=names_from, values="__value__")
    wide = wide.sort_index(axis=0).sort_index(axis=1)
    keys = wide.index.to_frame(index=False)
    first = keys[ids[0]]
    if len(ids) == 1 or first.is_unique:
        labels = pd.Index(first.to_numpy(), name=None)
    else:
        labels = pd.Index(
            ["_".join(str(v) for v in row) for row in keys.itertuples(index=False)], name=None
        )
    y = pd.DataFrame(wide.to_numpy(dtype=float), index=labels, columns=list(wide.columns))
    data = keys.set_axis(labels, axis=0)
    for col in ids:  # keep the original dtypes (pivot may have cast them)
        data[col] = data[col].astype(tall[col].dtype)
    return y, data
