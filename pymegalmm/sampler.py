"""One Gibbs iteration of MegaLMM, step by step.

The model (internal scale, ``Eta`` = centred/scaled ``Y`` with missing cells imputed)::

    Eta = X1 B1 + F Lambda + Z U_R + E_R      (t independent LMMs given F, Lambda)
    F   =              Z U_F + E_F            (k independent LMMs)

Every column of ``Eta - F Lambda`` and of ``F`` is a univariate LMM with total
precision ``tau`` and variance proportions ``h2`` on a discrete grid.  Rows are
rotated once (``Qt``) so that, with one random effect, ``V(h2)`` is diagonal for
every grid point.  See ``docs/sampler.md`` and METHOD.md (R MegaLMM 0.9.5) for
the full conditionals; step numbers below follow METHOD.md section 3.

Reproducibility: all random numbers of an iteration are drawn here, in a fixed
order, by the chain's ``numpy.random.Generator``; kernels only consume them, so
draws do not depend on the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from ._config import kernels_module
from .linalg import matmul, standard_gamma, standard_normal
from .precompute import DenseRandomEffects, DiagonalRandomEffect
from .priors import Priors
from .state import ChainState


@dataclass(eq=False)
class GroupData:
    """One trait group of a missing-data map with its own rows and precomputes.

    Attributes
    ----------
    rows : (n_s,) rows of the group (all rows for group 0).
    cols : (t_s,) traits of the group.
    re : random-effect back-end built on the group's rows.
    QtX1 : (n_s, b1) rotated fixed-effect design of the group's rows.
    drop_fixed : (t_s, b1) uint8, 1 where a fixed effect is not identifiable from
        the trait's observed cells (its coefficient is fixed at 0).
    imputed : (local rows, local cols) of the missing cells inside the group's block,
        imputed every iteration.
    """

    rows: np.ndarray
    cols: np.ndarray
    re: DiagonalRandomEffect | DenseRandomEffects
    QtX1: np.ndarray
    drop_fixed: np.ndarray
    imputed: tuple[np.ndarray, np.ndarray]

    @property
    def block(self) -> tuple[np.ndarray, np.ndarray]:
        """Index of the group's block of ``Eta`` (``Eta[block]`` is ``n_s x t_s``)."""
        return np.ix_(self.rows, self.cols)


@dataclass
class RowPatterns:
    """Rows grouped by the set of traits they inform (several trait groups).

    Attributes
    ----------
    used : (n_patterns, t) uint8, traits used by each pattern.
    start : (n_patterns + 1,) offsets of each pattern's rows in ``rows``.
    rows : (n,) row indices grouped by pattern.
    """

    used: np.ndarray
    start: np.ndarray
    rows: np.ndarray

    @classmethod
    def from_mask(cls, used_cells: np.ndarray) -> RowPatterns:
        """Group the rows of an ``(n, t)`` boolean mask of used cells by pattern."""
        patterns, inverse = np.unique(used_cells, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(patterns))
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        return cls(np.ascontiguousarray(patterns, dtype=np.uint8), start,
                   order.astype(np.intp))


@dataclass
class SamplerData:
    """Everything a chain needs that does not change between iterations.

    Attributes
    ----------
    Y : (n, t) scaled traits, NaN = missing (Fortran-ordered).
    X1 : (n, b1) fixed-effect design.
    groups : trait groups of the missing-data map; group 0 holds all rows and
        provides the factors' rotation.
    row_patterns : rows grouped by the traits they inform (factor scores with
        several groups).
    grid : (m, G) h2 grid.
    log_prior_resid, log_prior_factor : (G,) log prior weights of the grid.
    priors : Priors.
    n_factors : int.
    """

    Y: np.ndarray
    X1: np.ndarray
    groups: list[GroupData]
    row_patterns: RowPatterns
    grid: np.ndarray
    log_prior_resid: np.ndarray
    log_prior_factor: np.ndarray
    priors: Priors
    n_factors: int
    buffers: dict = field(default_factory=dict, repr=False)

    def buffer(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """A reusable Fortran-ordered work array (chains run one at a time, so the
        buffers of an iteration are free again at the next one)."""
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = np.empty(shape, order="F")
        return self.buffers[key]

    @property
    def n(self) -> int:
        """Number of rows."""
        return self.Y.shape[0]

    @property
    def t(self) -> int:
        """Number of traits."""
        return self.Y.shape[1]

    @property
    def factor_re(self) -> DiagonalRandomEffect | DenseRandomEffects:
        """Back-end of group 0 (all rows), used for the factors."""
        return self.groups[0].re

    @property
    def has_missing(self) -> bool:
        """Whether any cell is imputed every iteration."""
        return any(g.imputed[0].size for g in self.groups)

    @property
    def drop_fixed(self) -> np.ndarray:
        """``(t, b1)`` uint8: fixed effects fixed at 0 per trait (all groups)."""
        out = np.zeros((self.t, self.X1.shape[1]), dtype=np.uint8)
        for g in self.groups:
            out[g.cols] = g.drop_fixed
        return out

    @property
    def single_group(self) -> bool:
        """One group with every trait: the whole iteration stays in rotated space."""
        return len(self.groups) == 1 and self.groups[0].cols.size == self.t


def _normal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Standard normals as a Fortran-ordered ``rows x cols`` array (columns contiguous).

    Drawn in fixed blocks of columns, in parallel; see :func:`pymegalmm.linalg.standard_normal`.
    """
    return standard_normal(rng, rows, cols)


def _residual_proportion(grid: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``1 - sum_m h2_m`` for each column's grid point."""
    return 1.0 - grid[:, index].sum(axis=0)


# ---------------------------------------------------------------------------
# The iteration
# ---------------------------------------------------------------------------

def gibbs_iteration(s: ChainState, d: SamplerData) -> None:
    """Advance the chain ``s`` by one Gibbs iteration (in place)."""
    rng, k, n = s.rng, d.n_factors, d.n
    pri = d.priors
    F = None if d.single_group else d.factor_re.unrotate(s.QtF)
    residuals = []  # per group: rotated Eta - X1 B1 - Z U_R, for the factor scores
    lambda_prec = s.Lambda_prec
    for gi, (g, QtEta) in enumerate(zip(d.groups, s.QtEta, strict=True)):
        QtF = s.QtF if gi == 0 else g.re.rotate(F[g.rows])
        # Steps 1-2 for the traits of this group, in its own rotated rows.
        residuals.append(_residual_model_step(s, d, gi, QtEta, QtF, lambda_prec, rng))

    # Step 3. tot_F_prec given the previous F_h2 (the factors have no fixed effects).
    re_F = d.factor_re
    SS_F = re_F.grid_quadratic_forms(s.QtF)
    ss = SS_F[np.arange(k), s.F_h2_index]
    shape_F = pri.tot_F_var.shape + 0.5 * n
    s.tot_F_prec = rng.standard_gamma(shape_F, size=k) / (pri.tot_F_var.rate + 0.5 * ss)

    # Step 4. F_h2 from its discrete posterior.
    s.F_h2_index = _sample_grid(SS_F, re_F.log_det, d.log_prior_factor, s.tot_F_prec, rng)

    # Step 5. U_F given F_h2.
    s.U_F = re_F.sample_effects(s.QtF, s.F_h2_index, s.tot_F_prec, _normal(rng, re_F.n_coef, k))

    # Step 6. Factor scores F, row by row, given Lambda, the trait residual precisions
    # and the factors' prior mean Z U_F.
    resid_prec = s.tot_Eta_prec / _residual_proportion(d.grid, s.resid_h2_index)
    factor_prec = s.tot_F_prec / _residual_proportion(d.grid, s.F_h2_index)
    z = _normal(rng, n, k)
    if d.single_group:  # rows are exchangeable: sample directly in rotated space
        s.QtF = sample_factor_scores(residuals[0], s.Lambda, resid_prec,
                                     re_F.genetic_values(s.U_F), factor_prec, z)
        F = None
    else:  # rows use different traits: sample in the original rows, by row pattern
        E = np.zeros((n, d.t), order="F")
        for g, res in zip(d.groups, residuals, strict=True):
            E[g.block] = g.re.unrotate(res)
        prior_mean = re_F.unrotate(re_F.genetic_values(s.U_F))
        F = np.empty((n, k), order="F")
        pat = d.row_patterns
        n_bad = kernels_module().sample_factor_scores_by_pattern(
            E, s.Lambda, resid_prec, prior_mean, factor_prec, np.asfortranarray(z),
            pat.used, pat.start, pat.rows, F,
        )
        if n_bad:
            raise FloatingPointError(f"iteration {s.nrun + 1}: factor-score precision not "
                                     "positive definite")
        s.QtF = re_F.rotate(F)

    # Step 7. ARD shrinkage of the loadings: local phi, then the global deltas.
    s.Lambda_phi, s.delta = sample_ard(s.Lambda, s.tot_Eta_prec, s.Lambda_phi, s.delta, pri, rng)

    # Step 9. Impute the missing cells inside each group's block from this iteration's values
    # (F: the new factor scores in the original rows, when there are several groups).
    for gi, (g, res) in enumerate(zip(d.groups, residuals, strict=True)):
        if g.imputed[0].size:
            QtF = s.QtF if gi == 0 else g.re.rotate(F[g.rows])
            # rotated X1 B1 + Z U_R = QtEta - residual; add the new F Lambda
            mean = matmul(QtF, s.Lambda[:, g.cols], beta=1.0,
                          source=np.asfortranarray(s.QtEta[gi] - res))
            impute_block(s, d, g, gi, g.re.unrotate(mean), rng)

    s.nrun += 1


def _residual_model_step(
    s: ChainState, d: SamplerData, gi: int, QtEta: np.ndarray, QtF: np.ndarray,
    lambda_prec: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:
    """Steps 1-2 for the traits of group ``gi``; return rotated ``Eta - X1 B1 - Z U_R``."""
    g = d.groups[gi]
    k, n_s = d.n_factors, g.rows.size
    pri = d.priors
    every = g.cols.size == d.t  # one group with every trait: no gather/scatter copies
    cols = slice(None) if every else g.cols
    t_s = g.cols.size
    # Step 1. Per trait, jointly: fixed effects B1 (flat prior, with Lambda integrated
    # out), tot_Eta_prec, then loadings Lambda (ARD prior), given resid_h2 and the
    # previous F.  Penalised columns first, flat columns last.
    X = np.hstack([QtF, g.QtX1])
    h2_index = np.ascontiguousarray(s.resid_h2_index[cols])
    stats = g.re.gram_stats(X, QtEta, h2_index)
    coef = np.empty((X.shape[1], t_s), order="F")
    tau = np.empty(t_s)
    z = _normal(rng, X.shape[1], t_s)
    gamma = rng.standard_gamma(pri.tot_Y_var.shape + 0.5 * n_s, size=t_s)
    n_bad = kernels_module().sample_coefficients(
        stats.gram, stats.gram_index, stats.XtWy, stats.yWy,
        np.asfortranarray(lambda_prec[:, cols]), np.ascontiguousarray(s.tot_Eta_prec[cols]),
        np.full(t_s, pri.tot_Y_var.rate), gamma, z, coef, tau, g.drop_fixed,
    )
    if n_bad:
        raise FloatingPointError(
            f"iteration {s.nrun + 1}: the regression of {n_bad} trait(s) was not positive "
            "definite; the fixed-effect design may be collinear"
        )
    s.Lambda[:, cols] = coef[:k]
    s.B1[:, cols] = coef[k:]
    s.tot_Eta_prec[cols] = tau

    # Step 2. resid_h2 from its discrete posterior over the whole grid (U_R integrated
    # out), then U_R given resid_h2.
    shape = (n_s, t_s)
    E_fixed = matmul(g.QtX1, coef[k:], out=d.buffer(f"E_fixed{gi}", shape), alpha=-1.0,
                     beta=1.0, source=QtEta)  # Eta - X1 B1
    E = matmul(QtF, coef[:k], out=d.buffer(f"E{gi}", shape), alpha=-1.0, beta=1.0,
               source=E_fixed)  # ... - F Lambda
    SS = g.re.grid_quadratic_forms(E)
    h2_index = _sample_grid(SS, g.re.log_det, d.log_prior_resid, tau, rng)
    s.resid_h2_index[cols] = h2_index
    z = standard_normal(rng, g.re.n_coef, t_s, out=d.buffer("z_R", (g.re.n_coef, t_s)))
    U, residual = g.re.sample_effects(
        E, h2_index, tau, z, base=E_fixed, out=s.U_R if every else None,
        resid_out=d.buffer(f"residual{gi}", shape),
    )
    if not every:
        s.U_R[:, cols] = U
    return residual


def _sample_grid(
    SS: np.ndarray, log_det: np.ndarray, log_prior: np.ndarray, tau: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Grid index per column from its discrete posterior (one uniform per column)."""
    out = np.empty(SS.shape[0], dtype=np.intp)
    kernels_module().sample_grid_index(SS, log_det, log_prior, np.ascontiguousarray(tau),
                           rng.random(SS.shape[0]), out)
    return out


def sample_factor_scores(
    E: np.ndarray,
    Lambda: np.ndarray,
    resid_prec: np.ndarray,
    prior_mean: np.ndarray,
    factor_prec: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Draw factor scores row-wise (step 6).

    Each row ``f_i`` has likelihood ``E_i ~ N(f_i Lambda, diag(1/resid_prec))`` and
    prior ``f_i ~ N(prior_mean_i, diag(1/factor_prec))``, so
    ``f_i ~ N(Sigma^-1 (Lambda diag(resid_prec) E_i' + diag(factor_prec) m_i'), Sigma^-1)``
    with ``Sigma = Lambda diag(resid_prec) Lambda' + diag(factor_prec)``.  The rows
    are exchangeable under any orthogonal rotation, so this is applied to rotated
    rows directly.

    Parameters
    ----------
    E : (n, t) residuals ``Eta - X1 B1 - Z U_R`` (rotated).
    Lambda : (k, t) loadings.
    resid_prec : (t,) residual precision of each trait.
    prior_mean : (n, k) factors' genetic values ``Z U_F`` (rotated).
    factor_prec : (k,) residual precision of each factor.
    z : (n, k) standard normal draws.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` Fortran-ordered factor scores (rotated).
    """
    L_w = Lambda * resid_prec  # Lambda diag(resid_prec)
    Sigma = L_w @ Lambda.T
    Sigma[np.diag_indices_from(Sigma)] += factor_prec
    U = sla.cholesky(Sigma, lower=False, check_finite=False)
    rhs = matmul(E, L_w.T, beta=1.0, source=prior_mean * factor_prec)
    mean = sla.cho_solve((U, False), rhs.T, check_finite=False)
    noise = sla.solve_triangular(U, z.T, lower=False, check_finite=False)
    return np.asfortranarray((mean + noise).T)


def sample_ard(
    Lambda: np.ndarray,
    tau: np.ndarray,
    phi: np.ndarray,
    delta: np.ndarray,
    priors: Priors,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """ARD prior update (step 7): ``phi`` then ``delta_iterations_factor`` sweeps of ``delta``.

    ``phi_kj ~ Gamma((nu+1)/2, rate (nu + tauh_k tau_j lambda_kj^2)/2)`` with the
    previous ``tauh = cumprod(delta)``; then, with ``s_k = sum_j tau_j phi_kj lambda_kj^2 / 2``,
    ``delta`` is swept as in :func:`pymegalmm._kernels.sample_ard_delta`.

    Returns
    -------
    tuple of numpy.ndarray
        New ``phi`` (``k x t``, Fortran-ordered) and ``delta`` (``k``).
    """
    ard = priors.Lambda_prior
    nu = ard.Lambda_df
    k, t = Lambda.shape
    lam2_tau = np.square(Lambda) * tau  # tau_j lambda_kj^2
    tauh = np.cumprod(delta)
    gamma = standard_gamma(rng, 0.5 * (nu + 1.0), k, t)
    phi = np.asfortranarray(gamma / (0.5 * (nu + tauh[:, None] * lam2_tau)))
    s_k = 0.5 * (lam2_tau * phi).sum(axis=1)
    new_delta = np.array(delta, dtype=float, copy=True)
    u = rng.random((ard.delta_iterations_factor, k))
    kernels_module().sample_ard_delta(
        new_delta, s_k, float(t), ard.delta_1.shape, ard.delta_1.rate,
        ard.delta_2.shape, ard.delta_2.rate, u,
    )
    return phi, new_delta


def impute_block(
    s: ChainState, d: SamplerData, g: GroupData, gi: int, mean: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Step 9: redraw the missing cells of group ``g``'s block as ``mean + N(0, (1 - sum h2)/tau)``.

    ``mean`` is ``E[Eta]`` over the block (``n_s x t_s``, original rows); the rotated
    block ``s.QtEta[gi]`` is refreshed.
    """
    rows, cols = g.imputed
    tr = g.cols[cols]
    sd = np.sqrt(_residual_proportion(d.grid, s.resid_h2_index[tr]) / s.tot_Eta_prec[tr])
    s.Eta[g.rows[rows], tr] = mean[rows, cols] + sd * rng.standard_normal(rows.size)
    g.re.rotate(s.Eta[g.block], out=s.QtEta[gi])


def eta_mean(s: ChainState, d: SamplerData) -> np.ndarray:
    """Expected value of ``Eta`` for every cell: ``X1 B1 + F Lambda + Z U_R`` (scaled units).

    Cells outside their group's rows (predicted only) get the same formula, with the
    random effects mapped to all rows.
    """
    if d.single_group:
        g = d.groups[0]  # rotated Z U_R + F Lambda + X1 B1, then back to the original rows
        mean = matmul(s.QtF, s.Lambda, out=g.re.genetic_values(s.U_R), beta=1.0)
        return g.re.unrotate(matmul(g.QtX1, s.B1, out=mean, beta=1.0))
    F = d.factor_re.unrotate(s.QtF)
    out = matmul(F, s.Lambda)
    matmul(d.X1, s.B1, out=out, beta=1.0)
    for g in d.groups:
        if g.cols.size:
            out[:, g.cols] += g.re.genetic_values_all_rows(np.asfortranarray(s.U_R[:, g.cols]))
    return out


# ---------------------------------------------------------------------------
# Factor reordering (R MegaLMM's reorder_factors, METHOD.md section 6)
# ---------------------------------------------------------------------------

def _correlated_columns(A: np.ndarray, threshold: float) -> np.ndarray:
    """Columns to drop so that no remaining pair has ``|cor| > threshold`` (first one kept)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.abs(np.nan_to_num(np.corrcoef(A, rowvar=False)))
    C = np.triu(np.atleast_2d(C), k=1)
    drop = np.zeros(A.shape[1], dtype=bool)
    for i in range(A.shape[1] - 1):
        J = C[i] > threshold
        drop |= J
        C[:, J] = 0.0
    return drop


def reorder_factors(s: ChainState, d: SamplerData, drop_cor_threshold: float = 0.6) -> np.ndarray:
    """Zero redundant factors and sort the factors by decreasing size (in place).

    1. Factors whose scores correlate above ``drop_cor_threshold`` with an earlier
       factor get their scores set to 0; then the same with the factors' genetic
       values ``Z U_F``.
    2. Factors are sorted by ``sum_j Lambda_kj^2 * mean_i F_ik^2`` (decreasing), so
       zeroed factors go last, and every factor-indexed parameter is permuted with
       them (including ``F_h2_index`` and ``Lambda_phi``, which R MegaLMM 0.9.5
       leaves unpermuted, METHOD.md Q6).
    3. ``delta_1`` is reset to 1 and the ARD prior is updated 10 times.

    Returns
    -------
    numpy.ndarray
        The permutation applied (new position -> old factor index).
    """
    k, re_F = d.n_factors, d.factor_re
    F = re_F.unrotate(s.QtF)
    zero = _correlated_columns(F, drop_cor_threshold)
    s.QtF[:, zero] = 0.0
    genetic_F = re_F.unrotate(re_F.genetic_values(s.U_F))
    zero_g = _correlated_columns(np.where(zero, 0.0, genetic_F), drop_cor_threshold)
    s.QtF[:, zero_g] = 0.0
    F = re_F.unrotate(s.QtF)
    size = np.square(s.Lambda).sum(axis=1) * np.square(F).mean(axis=0)
    order = np.argsort(-size, kind="stable")
    s.Lambda = np.asfortranarray(s.Lambda[order])
    s.Lambda_phi = np.asfortranarray(s.Lambda_phi[order])
    s.QtF = np.asfortranarray(s.QtF[:, order])
    s.U_F = np.asfortranarray(s.U_F[:, order])
    s.tot_F_prec = s.tot_F_prec[order].copy()
    s.F_h2_index = s.F_h2_index[order].copy()
    s.delta = s.delta.copy()
    s.delta[0] = 1.0
    for _ in range(10):
        s.Lambda_phi, s.delta = sample_ard(s.Lambda, s.tot_Eta_prec, s.Lambda_phi, s.delta,
                                           d.priors, s.rng)
    assert order.shape == (k,)
    return order


# ---------------------------------------------------------------------------
# Initialisation (METHOD.md section 4)
# ---------------------------------------------------------------------------

def initial_state(d: SamplerData, rng: np.random.Generator) -> ChainState:
    """Draw a starting state from the priors, as R MegaLMM's ``initialize_variables``.

    Loadings ``N(0, 1)``, ``tot_Eta_prec`` from its prior, ``tot_F_prec = 1``, grid
    indices uniform over points with positive prior weight, random effects from
    their priors, ``B1 ~ N(0, 1)``, factor scores from their prior, ARD
    ``delta = max(1, draw from its prior)``, ``phi = 1`` followed by one ARD update,
    and missing cells imputed from these values.
    """
    k, t, n, b1 = d.n_factors, d.t, d.n, d.X1.shape[1]
    pri = d.priors
    re_F = d.factor_re
    r = re_F.n_coef
    Lambda = _normal(rng, k, t)
    tau = rng.gamma(pri.tot_Y_var.shape, 1.0 / pri.tot_Y_var.rate, size=t)
    tau_F = np.ones(k)
    resid_idx = rng.choice(np.flatnonzero(np.isfinite(d.log_prior_resid)), size=t)
    F_idx = rng.choice(np.flatnonzero(np.isfinite(d.log_prior_factor)), size=k)
    h_R = d.grid[:, resid_idx].sum(axis=0)
    h_F = d.grid[:, F_idx].sum(axis=0)
    U_R = np.asfortranarray(_normal(rng, r, t) * np.sqrt(h_R / tau))
    U_F = np.asfortranarray(_normal(rng, r, k) * np.sqrt(h_F / tau_F))
    B1 = np.asfortranarray(np.where(d.drop_fixed.T, 0.0, _normal(rng, b1, t)))
    QtF = np.asfortranarray(
        re_F.genetic_values(U_F) + _normal(rng, n, k) * np.sqrt((1.0 - h_F) / tau_F)
    )
    ard = pri.Lambda_prior
    delta = np.concatenate([
        rng.gamma(ard.delta_1.shape, 1.0 / ard.delta_1.rate, size=1),
        rng.gamma(ard.delta_2.shape, 1.0 / ard.delta_2.rate, size=k - 1),
    ])
    delta = np.maximum(delta, 1.0)
    phi, delta = sample_ard(Lambda, tau, np.ones((k, t), order="F"), delta, pri, rng)
    Eta = np.asfortranarray(np.where(np.isnan(d.Y), 0.0, d.Y))
    s = ChainState(
        Eta=Eta, QtEta=[g.re.rotate(Eta[g.block]) for g in d.groups], B1=B1, Lambda=Lambda,
        tot_Eta_prec=tau, resid_h2_index=resid_idx.astype(np.intp), U_R=U_R, QtF=QtF,
        tot_F_prec=tau_F, F_h2_index=F_idx.astype(np.intp), U_F=U_F, Lambda_phi=phi,
        delta=delta, nrun=0, rng=rng,
    )
    mean = eta_mean(s, d)
    for gi, g in enumerate(d.groups):
        if g.imputed[0].size:
            impute_block(s, d, g, gi, mean[g.block], rng)
    return s
