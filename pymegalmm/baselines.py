"""Univariate GBLUP fitted by REML: the single-trait baseline MegaLMM is compared with.

Model for one trait::

    y = X beta + Z u + e,     u ~ N(0, sigma2_g K),     e ~ N(0, sigma2_e I)

Writing ``V = sigma2 H(h2)`` with ``H(h2) = h2 Z K Z' + (1 - h2) I``,
``sigma2_g = h2 sigma2`` and ``sigma2_e = (1 - h2) sigma2``, the REML
log-likelihood is maximised analytically over ``beta`` and ``sigma2`` and
numerically over ``h2`` in ``[0, 1]``. One eigendecomposition
``Z K Z' = Q diag(s) Q'`` over the observed rows makes ``H`` diagonal
(``h2 s + 1 - h2``) for every ``h2``, so each evaluation costs ``O(n p^2)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.sparse

__all__ = ["GBLUPResult", "gblup", "gblup_all"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Number of points of the initial grid over h2 in [0, 1] (then refined by Brent's method).
_H2_GRID = 101
#: Absolute tolerance on h2 of the bounded Brent refinement.
_H2_XATOL = 1e-10
#: The estimate is kept within [_H2_MIN, 1 - _H2_MIN] (rrBLUP's ``mixed.solve`` bounds the
#: variance ratio to [1e-9, 1e9] alike): at exactly h2 = 0 every BLUP is 0 and the
#: predictions lose their ranking, which the limit h2 -> 0+ keeps.
_H2_MIN = 1e-9


@dataclass
class GBLUPResult:
    """Result of a univariate REML/GBLUP fit (see :func:`gblup`).

    Attributes
    ----------
    beta : numpy.ndarray
        Fixed effects, one per column of ``X`` (0 for the columns dropped because they
        were zero or collinear among the observed rows, see ``dropped``).
    sigma2_g : float
        REML estimate of the genetic variance.
    sigma2_e : float
        REML estimate of the residual variance.
    ratio : float
        ``sigma2_g / sigma2_e`` (``inf`` when ``sigma2_e == 0``).
    u : pandas.Series or numpy.ndarray
        BLUP of the random effect for every level of ``K``, including levels without
        data; a Series labelled by ``K.index`` when ``K`` is a DataFrame.
    fitted : numpy.ndarray
        ``X beta + Z u`` for the observed rows (in their original order).
    loglik : float
        REML log-likelihood at the optimum,
        ``-1/2 [(n - p) log(2 pi) + log|V| + log|X' V^-1 X| + y' P y]``
        (``n`` observed rows, ``p`` kept columns of ``X``; no ``log|X'X|`` term).
    h2 : float
        ``sigma2_g / (sigma2_g + sigma2_e)``.
    observed : numpy.ndarray
        Boolean mask of the rows of ``y`` that were used (non-NaN).
    dropped : tuple of int
        Indices of the columns of ``X`` that were dropped.
    """

    beta: np.ndarray
    sigma2_g: float
    sigma2_e: float
    ratio: float
    u: pd.Series | np.ndarray
    fitted: np.ndarray
    loglik: float
    h2: float = float("nan")
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    dropped: tuple[int, ...] = ()


@dataclass
class _Prepared:
    """Everything that depends on the observed rows but not on the trait values."""

    obs: np.ndarray  # boolean mask over the rows
    x: np.ndarray  # observed rows, kept columns
    keep: np.ndarray  # indices of the kept columns of X
    n_cols: int  # number of columns of the full X
    q: np.ndarray  # eigenvectors of Z_o K Z_o'
    s: np.ndarray  # its eigenvalues (clipped at 0)
    qx: np.ndarray  # Q' X_o
    k: np.ndarray  # K (levels x levels)
    z_obs: np.ndarray | scipy.sparse.spmatrix | None  # Z_o, or None for Z = I


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


def _as_kernel(K: object) -> tuple[np.ndarray, pd.Index | None]:
    if isinstance(K, pd.DataFrame):
        if not K.index.equals(K.columns):
            raise ValueError(
                "K must have identical index and columns (the same level names in the same "
                "order); reorder it with K.loc[levels, levels]"
            )
        labels = K.index
        k = K.to_numpy(dtype=float)
    else:
        labels = None
        k = np.asarray(K, dtype=float)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"K must be a square matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("K contains NaN or infinite values")
    scale = max(1.0, float(np.max(np.abs(k))) if k.size else 1.0)
    if not np.allclose(k, k.T, rtol=0.0, atol=1e-8 * scale):
        raise ValueError("K must be symmetric")
    return 0.5 * (k + k.T), labels


def _as_response(y: object) -> np.ndarray:
    arr = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {arr.shape}")
    try:
        return arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be numeric: {exc}") from exc


def _as_design(X: object, n: int) -> np.ndarray:
    if X is None:
        return np.ones((n, 1))
    x = np.asarray(X.to_numpy() if isinstance(X, (pd.Series, pd.DataFrame)) else X, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"X must have one row per element of y ({n}), got shape {x.shape}")
    return x


def _as_incidence(Z: object, n: int, q: int, labels: pd.Index | None):
    if Z is None:
        if n != q:
            raise ValueError(
                f"without Z, y must have one row per level of K, got {n} rows and {q} levels; "
                "pass Z (rows x levels incidence matrix)"
            )
        return None
    if isinstance(Z, pd.DataFrame):
        if labels is not None and not Z.columns.equals(labels):
            missing = labels.difference(Z.columns)
            extra = Z.columns.difference(labels)
            if len(missing) or len(extra) or Z.shape[1] != q:
                raise ValueError(
                    "the columns of Z must be the levels of K; "
                    f"not in Z: {list(missing[:5])}, not in K: {list(extra[:5])}"
                )
            Z = Z.loc[:, labels]
        Z = Z.to_numpy(dtype=float)
    if scipy.sparse.issparse(Z):
        z = scipy.sparse.csr_matrix(Z, dtype=float)
    else:
        z = np.asarray(Z, dtype=float)
        if z.ndim != 2:
            raise ValueError(f"Z must be a 2-D matrix, got shape {z.shape}")
    if z.shape != (n, q):
        raise ValueError(
            f"Z must have shape (rows of y, levels of K) = ({n}, {q}), got {z.shape}"
        )
    return z


def _independent_columns(x: np.ndarray) -> np.ndarray:
    """Indices of the columns kept: zero columns and columns collinear with earlier ones go."""
    norms = np.linalg.norm(x, axis=0)
    top = norms.max() if norms.size else 0.0
    keep: list[int] = []
    for j in range(x.shape[1]):
        if norms[j] <= 1e-12 * max(top, 1.0):
            continue
        cand = x[:, [*keep, j]] / norms[[*keep, j]]
        if np.linalg.matrix_rank(cand) == len(keep) + 1:
            keep.append(j)
    return np.asarray(keep, dtype=np.int64)


def _prepare(obs: np.ndarray, x: np.ndarray, k: np.ndarray, z) -> _Prepared:
    """Drop unusable columns of X and eigendecompose Z K Z' over the observed rows."""
    n_obs = int(obs.sum())
    x_obs = x[obs]
    if not np.all(np.isfinite(x_obs)):
        raise ValueError("X contains NaN or infinite values in rows where y is observed")
    if n_obs < 3:
        raise ValueError(f"GBLUP needs at least 3 observed (non-NaN) values of y, got {n_obs}")
    keep = _independent_columns(x_obs)
    if n_obs <= keep.size:
        raise ValueError(
            f"GBLUP needs more observations ({n_obs}) than independent fixed effects "
            f"({keep.size})"
        )
    if z is None:
        z_obs = None
        s_mat = k[np.ix_(obs, obs)]
    else:
        z_obs = z[np.flatnonzero(obs)]
        zk = z_obs @ k  # n_obs x q (dense)
        s_mat = np.asarray(z_obs @ np.asarray(zk).T)
    s_mat = 0.5 * (s_mat + s_mat.T)
    s, q = scipy.linalg.eigh(s_mat)
    tiny = max(float(s.max()), 0.0) * n_obs * np.finfo(float).eps * 10.0
    s = np.where(s <= tiny, 0.0, s)
    xk = x_obs[:, keep]
    return _Prepared(obs=obs, x=xk, keep=keep, n_cols=x.shape[1], q=q, s=s, qx=q.T @ xk,
                     k=k, z_obs=z_obs)


# --------------------------------------------------------------------------------------
# REML
# --------------------------------------------------------------------------------------


def _reml_grid(h2: np.ndarray, s: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Profile REML log-likelihood at each value of ``h2`` (vectorised; -inf if invalid)."""
    n, p = qx.shape
    d = h2[:, None] * s[None, :] + (1.0 - h2)[:, None]  # G x n
    out = np.full(h2.shape, -np.inf)
    ok = np.all(d > 0.0, axis=1)
    if not np.any(ok):
        return out
    w = 1.0 / d[ok]
    ywy = w @ (qy * qy)
    if p:
        xwx = np.einsum("gn,np,nr->gpr", w, qx, qx)
        xwy = (w * qy[None, :]) @ qx
        sign, logdet = np.linalg.slogdet(xwx)
        beta = np.linalg.solve(xwx[sign > 0], xwy[sign > 0][..., None])[..., 0]
        rss = np.full(w.shape[0], -1.0)
        rss[sign > 0] = ywy[sign > 0] - np.sum(xwy[sign > 0] * beta, axis=1)
        logdet = np.where(sign > 0, logdet, np.inf)
    else:
        rss = ywy
        logdet = np.zeros(w.shape[0])
    dof = n - p
    good = rss > 0.0
    ll = np.full(w.shape[0], -np.inf)
    ll[good] = -0.5 * (
        dof * (_LOG_2PI + np.log(rss[good] / dof) + 1.0)
        + np.sum(np.log(d[ok][good]), axis=1)
        + logdet[good]
    )
    out[ok] = ll
    return out


def _fit_prepared(prep: _Prepared, y: np.ndarray, labels: pd.Index | None) -> GBLUPResult:
    """Fit one trait given its prepared design (``y`` has all rows; only ``prep.obs`` used)."""
    y_obs = y[prep.obs]
    qy = prep.q.T @ y_obs
    s, qx = prep.s, prep.qx
    n, p = qx.shape

    if p:
        resid0 = y_obs - prep.x @ np.linalg.lstsq(prep.x, y_obs, rcond=None)[0]
    else:
        resid0 = y_obs
    if resid0 @ resid0 <= 1e-20 * max(float(y_obs @ y_obs), 1e-300):
        raise ValueError(
            "y has no variation left after the fixed effects (e.g. a constant trait); "
            "REML is undefined"
        )

    def negll(h: float) -> float:
        return -float(_reml_grid(np.array([h]), s, qx, qy)[0])

    grid = np.linspace(0.0, 1.0, _H2_GRID)
    ll_grid = _reml_grid(grid, s, qx, qy)
    if not np.isfinite(ll_grid).any():
        raise ValueError(
            "y has no variation left after the fixed effects (or K is degenerate); "
            "REML is undefined"
        )
    i = int(np.argmax(ll_grid))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = scipy.optimize.minimize_scalar(
        negll, bounds=(lo, hi), method="bounded", options={"xatol": _H2_XATOL}
    )
    candidates = [(ll_grid[i], grid[i])]
    if np.isfinite(res.fun):
        candidates.append((-res.fun, float(res.x)))
    best_ll, h2 = max(candidates, key=lambda c: c[0])
    if not _H2_MIN <= h2 <= 1.0 - _H2_MIN:
        h2 = min(max(h2, _H2_MIN), 1.0 - _H2_MIN)
        best_ll = -negll(h2)

    d = h2 * s + (1.0 - h2)
    w = 1.0 / d
    if p:
        xwx = qx.T @ (w[:, None] * qx)
        beta_k = np.linalg.solve(xwx, qx.T @ (w * qy))
    else:
        beta_k = np.zeros(0)
    resid = qy - qx @ beta_k
    sigma2 = float(resid @ (w * resid)) / (n - p)
    sigma2_g = h2 * sigma2
    sigma2_e = (1.0 - h2) * sigma2

    alpha = prep.q @ (w * resid)  # H^-1 (y - X beta) over the observed rows
    if prep.z_obs is None:
        zt_alpha = np.zeros(prep.k.shape[0])
        zt_alpha[prep.obs] = alpha
    else:
        zt_alpha = np.asarray(prep.z_obs.T @ alpha).reshape(-1)
    u = h2 * (prep.k @ zt_alpha)
    zu = u[prep.obs] if prep.z_obs is None else np.asarray(prep.z_obs @ u).reshape(-1)
    fitted = prep.x @ beta_k + zu

    beta = np.zeros(prep.n_cols)
    beta[prep.keep] = beta_k
    dropped = tuple(int(j) for j in np.setdiff1d(np.arange(prep.n_cols), prep.keep))
    ratio = sigma2_g / sigma2_e if sigma2_e > 0.0 else float("inf")
    return GBLUPResult(
        beta=beta,
        sigma2_g=float(sigma2_g),
        sigma2_e=float(sigma2_e),
        ratio=float(ratio),
        u=pd.Series(u, index=labels, name="u") if labels is not None else u,
        fitted=fitted,
        loglik=float(best_ll),
        h2=float(h2),
        observed=prep.obs.copy(),
        dropped=dropped,
    )


def gblup(y, X, K, Z=None) -> GBLUPResult:
    """Fit ``y = X beta + Z u + e``, ``u ~ N(0, sigma2_g K)``, ``e ~ N(0, sigma2_e I)`` by REML.

    Parameters
    ----------
    y : array-like of shape (n,)
        Response; NaN entries are dropped (only observed rows enter the fit). Without
        ``Z``, a Series ``y`` must have the same index as a DataFrame ``K``.
    X : array-like of shape (n, p), or None
        Fixed-effect design (``None``: intercept only). Columns that are zero, or
        linearly dependent on earlier columns, **among the observed rows** (e.g. the
        dummy of a population never observed, or a constant column duplicating the
        intercept) are dropped before fitting; their coefficient is reported as 0
        and their indices in ``GBLUPResult.dropped``.
    K : array-like or pandas.DataFrame of shape (q, q)
        Symmetric relationship matrix of the random-effect levels. With a DataFrame
        (``index == columns``) the BLUPs are returned as a Series labelled by it.
    Z : array-like, scipy.sparse matrix or pandas.DataFrame of shape (n, q), optional
        Incidence matrix (rows x levels). Default: identity (row ``i`` is level ``i``,
        which needs ``n == q``). A DataFrame's columns are matched to ``K``'s labels.

    Returns
    -------
    GBLUPResult
        REML estimates, BLUPs ``u = sigma2_g K Z' V^-1 (y - X beta)`` for *every* level
        of ``K`` (levels without data included), fitted values and the REML
        log-likelihood.

    Raises
    ------
    ValueError
        Shape mismatches, non-square/asymmetric/non-finite ``K``, fewer than 3 observed
        values, no more observations than fixed effects, NaN in ``X`` on observed
        rows, or no residual variation.

    Notes
    -----
    ``h2 = sigma2_g / (sigma2_g + sigma2_e)`` is searched over ``[0, 1]`` (both
    boundaries included): a grid of 101 points, then Brent's method on the
    bracket around the best grid point (tolerance 1e-10 on ``h2``). An optimum on
    the boundary is reported at ``1e-9`` (or ``1 - 1e-9``), as rrBLUP bounds the
    variance ratio: at exactly 0 all BLUPs would be 0 and lose their ranking. ``beta`` is the
    GLS estimate at the optimum and ``sigma2 = y'Py / (n - p)``.
    """
    y_arr = _as_response(y)
    n = y_arr.shape[0]
    k, labels = _as_kernel(K)
    x = _as_design(X, n)
    z = _as_incidence(Z, n, k.shape[0], labels)
    if (z is None and labels is not None and isinstance(y, pd.Series)
            and not y.index.equals(labels)):
        raise ValueError(
            "without Z, the rows of y are matched to the levels of K by position, but y's "
            "index differs from K's; align them first, e.g. y.reindex(K.index)"
        )
    obs = np.isfinite(y_arr)
    prep = _prepare(obs, x, k, z)
    return _fit_prepared(prep, y_arr, labels)


# --------------------------------------------------------------------------------------
# many traits
# --------------------------------------------------------------------------------------

_RANDOM_TERM = re.compile(r"\(\s*([^()|]*?)\s*(\|\|?)\s*([^()|]*?)\s*\)")


def _split_formula(formula: str) -> tuple[str, list[str]]:
    """Fixed part of a one-sided formula and the grouping names of its ``(1|g)`` terms."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a one-sided formula such as '~ 1', got {formula!r}")
    lhs, rhs = formula.split("~", 1)
    if lhs.strip():
        raise ValueError(
            f"formula must be one-sided (the traits are the columns of Y), got {formula!r}"
        )
    groups: list[str] = []
    for m in _RANDOM_TERM.finditer(rhs):
        if m.group(1) != "1" or m.group(2) != "|":
            raise ValueError(
                f"gblup_all fits a single random intercept '(1|group)'; "
                f"unsupported term {m.group(0)!r}"
            )
        groups.append(m.group(3))
    fixed = _RANDOM_TERM.sub(" ", rhs)
    if "|" in fixed:
        raise ValueError(f"could not parse the random terms of {formula!r}")
    fixed = re.sub(r"\+(\s*\+)+", "+", fixed).strip().strip("+").strip()
    return "~ " + (fixed or "1"), groups


def gblup_all(
    Y: pd.DataFrame,
    data: pd.DataFrame,
    K: pd.DataFrame,
    formula: str = "~ 1",
    group: str | None = None,
) -> pd.DataFrame:
    """Fit :func:`gblup` to every trait (column) of ``Y`` and return the BLUPs.

    Parameters
    ----------
    Y : pandas.DataFrame
        Traits in columns (numeric, NaN = missing). Each trait is fitted on its own
        observed rows.
    data : pandas.DataFrame
        One row per row of ``Y`` (same index labels) with the variables of ``formula``
        and the ``group`` column.
    K : pandas.DataFrame
        Relationship matrix of the levels, ``index == columns``.
    formula : str
        One-sided formula of the fixed effects, built with ``formulaic.model_matrix``.
        A single random intercept ``(1|g)`` may be included (e.g. ``"~ 1 + (1|ID)"``, a
        simulator's ``formula``): it is removed from the fixed part and, when
        ``group`` is None, ``g`` is used as the group column.
    group : str, optional
        Column of ``data`` giving each row's level of ``K``. Default: the group of the
        formula's random term; otherwise the rows of ``Y`` are the levels (which needs
        ``Y.index`` to be a subset of ``K.index``).

    Returns
    -------
    pandas.DataFrame
        Levels (``K.index``, levels without data included) x traits (``Y.columns``)
        BLUPs of the random effects, i.e. predicted genetic values without fixed effects.

    Raises
    ------
    ValueError
        Non-numeric traits, mismatching ``Y``/``data`` rows, levels not in ``K``,
        unsupported random terms, missing covariates, or a trait with fewer than 3
        observations (named).

    Notes
    -----
    Traits with the same pattern of missing values share one eigendecomposition.
    A fixed-effect column that is constant or zero among a trait's observed rows (e.g.
    ``Population`` in an environment that tests only one population) is dropped for
    that trait.
    """
    import formulaic

    if not isinstance(Y, pd.DataFrame) or not isinstance(data, pd.DataFrame):
        raise TypeError("Y and data must be pandas DataFrames")
    if not isinstance(K, pd.DataFrame):
        raise TypeError("K must be a pandas DataFrame labelled by level (index == columns)")
    bad = [c for c in Y.columns if not pd.api.types.is_numeric_dtype(Y[c])]
    if bad:
        raise ValueError(f"Y must be numeric; non-numeric trait column(s): {bad[:5]}")
    if not Y.index.is_unique:
        raise ValueError("the index of Y must be unique")
    if not data.index.equals(Y.index):
        if len(data) != len(Y) or not data.index.is_unique or set(data.index) != set(Y.index):
            raise ValueError(
                "data must have one row per row of Y with the same index labels "
                f"(Y has {len(Y)} rows, data {len(data)})"
            )
        data = data.loc[Y.index]
    k, labels = _as_kernel(K)
    q = k.shape[0]

    fixed, random_groups = _split_formula(formula)
    if len(random_groups) > 1:
        raise ValueError(
            f"gblup_all fits one random effect; the formula has {len(random_groups)}: "
            f"{random_groups}"
        )
    if group is None and random_groups:
        group = random_groups[0]
    if group is None:
        levels = pd.Index(Y.index)
        if not levels.isin(labels).all():
            raise ValueError(
                "cannot match the rows of Y to the levels of K: Y.index is not a subset of "
                f"K.index (e.g. {list(levels[~levels.isin(labels)][:3])}); pass group="
                "'<column of data with the level of each row>'"
            )
    else:
        if group not in data.columns:
            raise KeyError(f"group column {group!r} is not in data; columns: {list(data.columns)}")
        levels = pd.Index(data[group])
        unknown = levels[~levels.isin(labels)]
        if len(unknown):
            raise ValueError(
                f"{len(unknown)} rows of data have a {group!r} level that is not in K, "
                f"e.g. {list(pd.unique(unknown)[:3])}"
            )
    codes = labels.get_indexer(levels)
    n = len(Y)
    z = scipy.sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, q))

    try:
        x = formulaic.model_matrix(fixed, data, na_action="raise")
    except Exception as exc:  # formulaic raises several types (missing names, NaN)
        raise ValueError(f"could not build the fixed effects {fixed!r} from data: {exc}") from exc
    x = np.asarray(x, dtype=float)
    if x.shape[0] != n:
        raise ValueError(f"the fixed-effect design has {x.shape[0]} rows, Y has {n}")

    y_all = Y.to_numpy(dtype=float)
    observed = np.isfinite(y_all)
    out = np.empty((q, Y.shape[1]))
    patterns: dict[bytes, list[int]] = {}
    for j in range(Y.shape[1]):
        patterns.setdefault(np.packbits(observed[:, j]).tobytes(), []).append(j)
    for cols in patterns.values():
        obs = observed[:, cols[0]]
        if obs.sum() < 3:
            raise ValueError(
                f"trait {Y.columns[cols[0]]!r} has {int(obs.sum())} observations; "
                "GBLUP needs at least 3"
            )
        prep = _prepare(obs, x, k, z)
        for j in cols:
            out[:, j] = _fit_prepared(prep, y_all[:, j], None).u
    return pd.DataFrame(out, index=labels, columns=list(Y.columns))
