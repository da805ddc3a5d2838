"""Can the run be trusted?  Convergence diagnostics and a check of the number of factors.

:func:`diagnostics` gives the rank-normalised split R-hat and the bulk and tail
effective sample sizes (ESS) of Vehtari, Gelman, Simpson, Carpenter and Bürkner
(2021, *Bayesian Analysis* 16(2), 667-718) for the quantities a MegaLMM posterior
identifies across chains:

=================  ===========================  =========================================
quantity           dims (after chain, draw)     why it is identified
=================  ===========================  =========================================
``h2``             component, trait             a function of ``G`` and ``R``
``G``              component, trait, trait2     covariances between traits
``R``              trait, trait2                covariances between traits
``U``              level, trait                 genetic values ``U_F Lambda + U_R``
``B1``             fixed, trait                 fixed effects
``LtL``            trait, trait2                ``Lambda' Lambda``, see below
=================  ===========================  =========================================

The loadings ``Lambda`` themselves are not identified: the likelihood does not
change when factors are permuted or change sign, so two chains (or one chain
before :meth:`~pymegalmm.MegaLMM.reorder_factors`) can hold the same factors in a
different order or with opposite signs, and R-hat of ``Lambda`` flags this, not a
lack of convergence.  The ``t x t`` cross-product ``Lambda' Lambda = sum_k
lambda_k lambda_k'`` is the same under any permutation and any sign changes of
the factors, so it is identified; it is the factors' part of the trait
covariance (with unit-variance factors) and converges when the factor model does.

:func:`factor_report` answers "how many factors?" (R MegaLMM issue #3): how much
variance each factor explains, in how many traits, and whether the smallest factor
still carries signal, in which case ``n_factors`` is too small.

Both warn (:class:`ConvergenceWarning`, :class:`TooFewFactorsWarning`, subclasses of
:class:`UserWarning`) when the run should not be trusted as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputTypeError, LabelError
from ..validate import check_bool, check_float, check_int
from .tables import _PARAMS, _SAMPLE, _Draws, _factor_draws, convergence_measures

__all__ = [
    "DEFAULT_VARIABLES",
    "ESS_PER_CHAIN",
    "LTL",
    "RHAT_THRESHOLD",
    "ConvergenceWarning",
    "TooFewFactorsWarning",
    "diagnostics",
    "diagnostics_overview",
    "factor_report",
]

#: Name of ``Lambda' Lambda`` (dims ``trait, trait2``) in the table of :func:`diagnostics`.
LTL = "LtL"

#: Quantities diagnosed by default, all identified across chains.
DEFAULT_VARIABLES: tuple[str, ...] = ("h2", "G", "R", "U", "B1", LTL)

#: R-hat above this flags a quantity (Vehtari et al. 2021, section 4.3: 1.01).
RHAT_THRESHOLD = 1.01

#: Bulk or tail ESS below this many per chain flags a quantity (Vehtari et al. 2021: 100).
ESS_PER_CHAIN = 100

#: Float64 elements per block of draws read or computed at a time (32 MiB).
_BLOCK_ELEMENTS = 2**22

#: Order of the label columns of the diagnostics table.
_DIM_ORDER = ("component", "fixed", "level", "factor", "trait", "trait2")


class ConvergenceWarning(UserWarning):
    """R-hat or ESS outside Vehtari et al.'s (2021) recommendations (:func:`diagnostics`)."""


class TooFewFactorsWarning(UserWarning):
    """Even the smallest factor carries signal: ``n_factors`` is likely too small."""


# --------------------------------------------------------------------------------------
# the quantities, block by block
# --------------------------------------------------------------------------------------


@dataclass
class _Quantity:
    """One quantity to diagnose: its label dims and sizes, and its draws by blocks.

    ``blocks()`` yields ``(flat, x)``: flat indices into ``shape`` and the draws
    ``(chain, draw, len(flat))`` of those elements.  Symmetric quantities (last two
    dims ``trait, trait2``) yield the upper triangle, diagonal included.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
    symmetric: bool = False

    @property
    def n_elements(self) -> int:
        if self.symmetric:
            t = self.shape[-1]
            return int(np.prod(self.shape[:-2], dtype=int)) * t * (t + 1) // 2
        return int(np.prod(self.shape, dtype=int))


def _rows_per_block(src: _Draws, width: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, src.n_chains * src.n_draws * width))


def _upper_blocks(src: _Draws, n_matrices: int, t: int,
                  rows: Callable[[int, int, int], np.ndarray]
                  ) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Blocks of the upper triangles of ``n_matrices`` symmetric ``t x t`` matrices per draw.

    ``rows(m, i0, i1)`` gives rows ``i0:i1`` of matrix ``m``, ``(chain, draw, i1 - i0, t)``.
    """
    step = _rows_per_block(src, t)

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for m in range(n_matrices):
            for i0 in range(0, t, step):
                i1 = min(t, i0 + step)
                ii, jj = np.nonzero(np.arange(i0, i1)[:, None] <= np.arange(t)[None, :])
                x = rows(m, i0, i1)[:, :, ii, jj]
                yield (m * t + i0 + ii) * t + jj, x

    return blocks


def _array_blocks(src: _Draws, shape: tuple[int, ...],
                  lead: Callable[[int, int], np.ndarray]
                  ) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Blocks along the first dim: ``lead(i0, i1)`` gives ``(chain, draw, i1 - i0, *shape[1:])``."""
    width = int(np.prod(shape[1:], dtype=int))
    step = _rows_per_block(src, width)

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i0 in range(0, shape[0], step):
            i1 = min(shape[0], i0 + step)
            x = lead(i0, i1)
            yield np.arange(i0 * width, i1 * width), x.reshape(*x.shape[:2], -1)

    return blocks


def _stored(src: _Draws, name: str) -> _Quantity:
    """Any posterior variable, read block by block along its first dim (lazily if lazy)."""
    da = src.post[name]
    dims = tuple(str(d) for d in da.dims if d not in _SAMPLE)
    da = da.transpose(*_SAMPLE, *dims)
    if not dims:
        x = np.asarray(da.values, dtype=float)[:, :, None]
        return _Quantity(name, (), (), lambda: iter([(np.zeros(1, int), x)]))
    shape = tuple(int(da.sizes[d]) for d in dims)
    return _Quantity(name, dims, shape, _array_blocks(
        src, shape, lambda i0, i1: np.asarray(da.isel({dims[0]: slice(i0, i1)}).values,
                                              dtype=float)))


def _stored_symmetric(src: _Draws, name: str) -> _Quantity:
    """``G`` or ``R`` from the posterior: upper triangles, rows read block by block."""
    da = src.post[name]
    lead = ("component",) if name == "G" else ()
    da = da.transpose(*_SAMPLE, *lead, "trait", "trait2")
    t = int(da.sizes["trait"])
    n = int(da.sizes["component"]) if lead else 1

    def rows(m: int, i0: int, i1: int) -> np.ndarray:
        sel = da.isel({"component": m} if lead else {}).isel(trait=slice(i0, i1))
        return np.asarray(sel.values, dtype=float)

    return _Quantity(name, (*lead, "trait", "trait2"), (*((n,) if lead else ()), t, t),
                     _upper_blocks(src, n, t, rows), symmetric=True)


def _derived_symmetric(src: _Draws, name: str) -> _Quantity:
    """``G``, ``R`` or ``LtL`` from the parameters, rows computed block by block.

    ``G_m = Lambda' diag(F_h2[m]) Lambda + diag(resid_h2[m] / tot_Eta_prec)``;
    ``R`` likewise with ``1 - sum_m F_h2[m]`` and ``1 - sum_m resid_h2[m]``;
    ``LtL = Lambda' Lambda``.
    """
    lam = src.array("Lambda", ("factor", "trait"))
    t = lam.shape[-1]
    if name == LTL:
        def rows(m: int, i0: int, i1: int) -> np.ndarray:
            return np.einsum("cdki,cdkj->cdij", lam[..., i0:i1], lam)
        return _Quantity(name, ("trait", "trait2"), (t, t), _upper_blocks(src, 1, t, rows),
                         symmetric=True)
    _, fh2, rh2, var_r = src._params()
    if name == "G":
        weight, resid = fh2, rh2
    else:
        weight, resid = (1.0 - fh2.sum(axis=2))[:, :, None], (1.0 - rh2.sum(axis=2))[:, :, None]
    n = weight.shape[2]

    def rows_params(m: int, i0: int, i1: int) -> np.ndarray:
        out = np.einsum("cdki,cdk,cdkj->cdij", lam[..., i0:i1], weight[:, :, m], lam)
        i = np.arange(i0, i1)
        out[:, :, i - i0, i] += resid[:, :, m, i0:i1] * var_r[..., i0:i1]
        return out

    lead = ("component",) if name == "G" else ()
    return _Quantity(name, (*lead, "trait", "trait2"), (*((n,) if lead else ()), t, t),
                     _upper_blocks(src, n, t, rows_params), symmetric=True)


def _derived_U(src: _Draws) -> _Quantity:
    """``U = U_F Lambda + U_R`` from the parameters, levels block by block."""
    lam = src.array("Lambda", ("factor", "trait"))
    uf = src.post["U_F"].transpose(*_SAMPLE, "level", "factor")
    ur = src.post["U_R"].transpose(*_SAMPLE, "level", "trait")
    shape = (int(ur.sizes["level"]), int(ur.sizes["trait"]))

    def lead(i0: int, i1: int) -> np.ndarray:
        f = np.asarray(uf.isel(level=slice(i0, i1)).values, dtype=float)
        r = np.asarray(ur.isel(level=slice(i0, i1)).values, dtype=float)
        return np.einsum("cdlk,cdkt->cdlt", f, lam) + r

    return _Quantity("U", ("level", "trait"), shape, _array_blocks(src, shape, lead))


def _quantity(src: _Draws, name: str) -> _Quantity:
    """How to read or derive ``name``; LabelError saying what is missing."""
    if name in ("G", "R"):
        if src.has(name):
            return _stored_symmetric(src, name)
        src.require(name, (name,), _PARAMS)
        return _derived_symmetric(src, name)
    if name == LTL:
        src.require(f"{LTL} (Lambda' Lambda)", ("Lambda",))
        return _derived_symmetric(src, name)
    if name == "h2" and not src.has("h2"):
        src.require("h2", ("h2",), _PARAMS)
        x = src.h2()
        return _Quantity("h2", ("component", "trait"), x.shape[2:], _array_blocks(
            src, x.shape[2:], lambda i0, i1: x[:, :, i0:i1]))
    if name == "U" and not src.has("U"):
        src.require("U", ("U",), ("U_F", "Lambda", "U_R"))
        return _derived_U(src)
    if not src.has(name):
        raise LabelError(f"diagnostics: {name!r} is neither a posterior variable nor "
                         f"{LTL!r}; variables: {sorted(map(str, src.post.data_vars))}")
    return _stored(src, name)


# --------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------


@dataclass
class _Worst:
    """Running record of a quantity's diagnostics: counts, extremes, the elements kept."""

    keep_all: bool
    n_worst: int
    rhat_max: float
    ess_min: float
    n_elements: int = 0
    n_rhat_high: int = 0
    n_ess_low: int = 0
    n_flagged: int = 0
    worst: dict[str, tuple[float, int]] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, flat: np.ndarray, diag: np.ndarray, mean: np.ndarray, r: np.ndarray,
            eb: np.ndarray, et: np.ndarray) -> None:
        self.n_elements += flat.size
        self.n_rhat_high += int(np.sum(r > self.rhat_max))
        low = (eb < self.ess_min) | (et < self.ess_min)
        self.n_ess_low += int(np.sum(low))
        self.n_flagged += int(np.sum(low | (r > self.rhat_max)))
        for key, values, sign in (("rhat", r, -1.0), ("ess_bulk", eb, 1.0),
                                  ("ess_tail", et, 1.0)):
            if np.isnan(values).all():
                continue
            i = int(np.nanargmin(sign * values))
            if key not in self.worst or sign * values[i] < sign * self.worst[key][0]:
                self.worst[key] = (float(values[i]), int(flat[i]))
        block = {"flat": flat, "diag": diag, "mean": mean, "rhat": r, "ess_bulk": eb,
                 "ess_tail": et}
        if self.kept:
            block = {k: np.concatenate([self.kept[k], v]) for k, v in block.items()}
        if not self.keep_all:
            block = self._prune(block)
        self.kept = block

    def _prune(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = block["diag"].copy()
        n = self.n_worst
        keep[np.argsort(-np.nan_to_num(block["rhat"], nan=-np.inf), kind="stable")[:n]] = True
        for key in ("ess_bulk", "ess_tail"):
            keep[np.argsort(np.nan_to_num(block[key], nan=np.inf), kind="stable")[:n]] = True
        return {k: v[keep] for k, v in block.items()}


def _labels(src: _Draws, q: _Quantity, flat: np.ndarray) -> dict[str, list]:
    """Labels of elements ``flat`` of ``q``, one list per dim."""
    if not q.dims:
        return {}
    idx = np.unravel_index(flat, q.shape)
    out = {}
    for d, i in zip(q.dims, idx, strict=True):
        coord = src.coord(d) if d in src.post.coords else (
            src.coord("trait") if d == "trait2" and "trait" in src.post.coords
            else list(range(q.shape[q.dims.index(d)])))
        out[d] = [coord[j] for j in i]
    return out


def _element_text(name: str, labels: dict[str, list], i: int = 0) -> str:
    inside = ", ".join(str(v[i]) for v in labels.values())
    return f"{name}[{inside}]" if inside else name


def diagnostics(post: xr.Dataset, variables: Sequence[str] | None = None, *,
                max_elements: int = 1000, n_worst: int = 10,
                warn: bool = True) -> pd.DataFrame:
    """R-hat and bulk and tail ESS of the quantities identified across chains.

    For every element of ``h2``, ``G``, ``R``, ``U``, ``B1`` and ``Lambda' Lambda``
    (``LtL``): the rank-normalised split R-hat (:func:`~.tables.rhat`), the bulk ESS
    (:func:`~.tables.ess_bulk`) and the tail ESS (:func:`~.tables.ess_tail`) of
    Vehtari et al. (2021), which match ArviZ's ``rhat``, ``ess(method="bulk")`` and
    ``ess(method="tail")`` (ArviZ 1.x: with ``prob=(0.05, 0.95)``).

    ``Lambda' Lambda`` stands for the factors: the loadings are identified only up
    to the order and signs of the factors (chains may settle on different orders,
    and one chain may switch before :meth:`~pymegalmm.MegaLMM.reorder_factors`), so
    their R-hat would flag label switching rather than a lack of convergence;
    ``Lambda' Lambda`` is unchanged by any permutation and any sign changes of the
    factors.  ``G``, ``R`` and ``LtL`` are symmetric: only ``trait <= trait2`` (in
    the posterior's trait order) is diagnosed.

    With one chain the split R-hat compares the chain's first and second halves,
    which detects a chain that has not settled (ArviZ returns NaN there); several
    chains from dispersed starting points are better.

    Memory stays bounded for many traits or levels: draws are read (or ``G``, ``R``
    and ``LtL`` computed from the parameters) a block of elements at a time, and
    for a quantity of more than ``max_elements`` elements only the diagonal (of
    ``G``, ``R``, ``LtL``) and the ``n_worst`` elements by each measure are kept;
    the counts and extremes in ``.attrs["overview"]`` cover every element.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws (``m.posterior`` or a loaded posterior, lazy or not) with
        dims ``chain, draw``.  ``h2``, ``G``, ``R`` and ``U`` are derived from the
        parameters when the posterior lacks them; ``LtL`` needs ``Lambda``.
    variables : sequence of str, optional
        Quantities to diagnose, among :data:`DEFAULT_VARIABLES` or any posterior
        variable.  Default: those of :data:`DEFAULT_VARIABLES` the posterior holds
        or can derive (the others are listed in ``.attrs["skipped"]``).
    max_elements : int, default 1000
        Quantities with at most this many elements are reported in full.
    n_worst : int, default 10
        Elements kept per measure (largest R-hat, smallest bulk ESS, smallest tail
        ESS) for larger quantities.
    warn : bool, default True
        Emit a :class:`ConvergenceWarning` (a :class:`UserWarning`) naming the worst
        element when any R-hat exceeds :data:`RHAT_THRESHOLD` (1.01) or any bulk or
        tail ESS is below :data:`ESS_PER_CHAIN` (100) times the number of chains,
        Vehtari et al.'s (2021) recommendations.

    Returns
    -------
    pandas.DataFrame
        One row per element reported: ``variable``, a column per dim used (among
        ``component, fixed, level, trait, trait2``; empty where a quantity lacks
        it), ``mean`` (posterior mean over every draw), ``rhat``, ``ess_bulk``,
        ``ess_tail``.  ``.attrs`` holds ``n_chains``, ``n_draws``,
        ``rhat_threshold``, ``ess_threshold``, ``skipped`` and ``overview`` (per
        quantity: elements, elements reported, counts outside the thresholds,
        extremes and where they are; :func:`diagnostics_overview` as a table).

    Raises
    ------
    LabelError
        If a requested quantity is not in the posterior and cannot be derived.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC.  *Bayesian Analysis* 16(2), 667-718.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from pymegalmm.results.diagnostics import diagnostics
    >>> rng = np.random.default_rng(1)
    >>> post = xr.Dataset({"B1": (("chain", "draw", "fixed", "trait"),
    ...                           rng.standard_normal((2, 500, 1, 2)))},
    ...                   coords={"fixed": ["(Intercept)"], "trait": ["y1", "y2"]})
    >>> table = diagnostics(post, ["B1"])
    >>> table[["variable", "fixed", "trait"]].values.tolist()
    [['B1', '(Intercept)', 'y1'], ['B1', '(Intercept)', 'y2']]
    >>> bool((table["rhat"] < 1.01).all() and (table["ess_tail"] > 200).all())
    True
    """
    src = _Draws(post)
    max_elements = check_int("max_elements", max_elements, minimum=1)
    n_worst = check_int("n_worst", n_worst, minimum=1)
    warn = check_bool("warn", warn)
    explicit = variables is not None
    if variables is None:
        names = list(DEFAULT_VARIABLES)
    elif isinstance(variables, str):
        names = [variables]
    else:
        names = list(variables)
    if not all(isinstance(n, str) for n in names) or not names:
        raise InputTypeError(f"variables must be a non-empty sequence of str, got {variables!r}")
    ess_min = float(ESS_PER_CHAIN * src.n_chains)
    rows: list[pd.DataFrame] = []
    overview: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            q = _quantity(src, name)
        except LabelError as exc:
            if explicit:
                raise
            skipped[name] = str(exc)
            continue
        rec = _Worst(keep_all=q.n_elements <= max_elements, n_worst=n_worst,
                     rhat_max=RHAT_THRESHOLD, ess_min=ess_min)
        for flat, x in q.blocks():
            r, eb, et = convergence_measures(x, one_chain=True)
            if q.symmetric:
                ij = np.unravel_index(flat, q.shape)
                diag = ij[-1] == ij[-2]
            else:
                diag = np.zeros(flat.size, bool)
            rec.add(flat, diag, x.mean(axis=(0, 1)), r, eb, et)
        order = np.argsort(rec.kept["flat"], kind="stable")
        kept = {k: v[order] for k, v in rec.kept.items()}
        labels = _labels(src, q, kept["flat"])
        frame = pd.DataFrame({"variable": name, **labels,
                              **{k: kept[k] for k in ("mean", "rhat", "ess_bulk", "ess_tail")}})
        rows.append(frame)
        info: dict[str, Any] = {"elements": rec.n_elements, "reported": len(frame),
                                "rhat_above": rec.n_rhat_high, "ess_below": rec.n_ess_low,
                                "flagged": rec.n_flagged}
        for key in ("rhat", "ess_bulk", "ess_tail"):
            value, flat_i = rec.worst.get(key, (np.nan, -1))
            info[key] = value
            info[f"{key}_where"] = (_element_text(name, _labels(src, q, np.array([flat_i])))
                                    if flat_i >= 0 else "")
        overview[name] = info
    dims = [d for frame in rows for d in frame.columns[1:-4]]
    dims = sorted(dict.fromkeys(dims), key=lambda d: (
        _DIM_ORDER.index(d) if d in _DIM_ORDER else len(_DIM_ORDER), dims.index(d)))
    columns = ["variable", *dims, "mean", "rhat", "ess_bulk", "ess_tail"]
    table = (pd.concat([f.astype({"variable": object}) for f in rows], ignore_index=True)
             .reindex(columns=columns) if rows else pd.DataFrame(columns=columns))
    table.attrs.update(n_chains=src.n_chains, n_draws=src.n_draws,
                       rhat_threshold=RHAT_THRESHOLD, ess_threshold=ess_min,
                       skipped=skipped, overview=overview)
    if warn:
        message = _convergence_message(table)
        if message:
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return table


def _convergence_message(table: pd.DataFrame) -> str:
    """The warning text for a :func:`diagnostics` table, or "" when nothing is flagged."""
    ov = table.attrs["overview"]
    n_total = sum(v["elements"] for v in ov.values())
    n_rhat = sum(v["rhat_above"] for v in ov.values())
    n_ess = sum(v["ess_below"] for v in ov.values())
    if not (n_rhat or n_ess):
        return ""
    chains, ess_min = table.attrs["n_chains"], table.attrs["ess_threshold"]
    parts = []
    if n_rhat:
        name = max((v for v in ov if ov[v]["rhat_above"]), key=lambda v: ov[v]["rhat"])
        parts.append(f"R-hat > {RHAT_THRESHOLD} for {n_rhat} of {n_total} quantities "
                     f"(largest {ov[name]['rhat']:.3f}, {ov[name]['rhat_where']})")
    if n_ess:
        kind, name = min(((k, v) for v in ov for k in ("ess_bulk", "ess_tail")
                          if ov[v]["ess_below"] and np.isfinite(ov[v][k])),
                         key=lambda kv: ov[kv[1]][kv[0]])
        parts.append(f"bulk or tail ESS < {ess_min:.0f} ({ESS_PER_CHAIN} per chain x {chains} "
                     f"chain{'s' if chains > 1 else ''}) for {n_ess} of {n_total} quantities "
                     f"(smallest: {kind.split('_')[1]} ESS {ov[name][kind]:.0f}, "
                     f"{ov[name][kind + '_where']})")
    return ("the chains have not converged or mixed enough to trust the posterior: "
            + "; ".join(parts) + ". Vehtari et al. (2021) recommend R-hat below "
            f"{RHAT_THRESHOLD} and bulk and tail ESS above {ESS_PER_CHAIN} per chain: run "
            "a longer burn-in and more iterations (or more chains), then check again.")


def diagnostics_overview(table: pd.DataFrame) -> pd.DataFrame:
    """One row per quantity of a :func:`diagnostics` table, over every element.

    Parameters
    ----------
    table : pandas.DataFrame
        A table returned by :func:`diagnostics` (its ``.attrs["overview"]``).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, elements, reported, rhat_above, ess_below, flagged,
        rhat, rhat_where, ess_bulk, ess_bulk_where, ess_tail, ess_tail_where``: the
        number of elements, of elements reported in ``table``, of R-hat above the
        threshold, of bulk or tail ESS below it, and of either; the largest R-hat,
        the smallest bulk and tail ESS and the element of each (e.g. ``G[ID, T01,
        T03]``).

    Raises
    ------
    InputTypeError
        If ``table`` is not a table of :func:`diagnostics`.
    """
    if not isinstance(table, pd.DataFrame) or "overview" not in table.attrs:
        raise InputTypeError("table must be a DataFrame returned by diagnostics() (with its "
                             ".attrs['overview'])")
    columns = ["elements", "reported", "rhat_above", "ess_below", "flagged", "rhat", "rhat_where",
               "ess_bulk", "ess_bulk_where", "ess_tail", "ess_tail_where"]
    ov = table.attrs["overview"]
    return pd.DataFrame([{"variable": v, **{c: ov[v][c] for c in columns}} for v in ov],
                        columns=["variable", *columns])


# --------------------------------------------------------------------------------------
# number of factors
# --------------------------------------------------------------------------------------


def factor_report(post: xr.Dataset, threshold: float = 0.01, *, prob: float = 0.9,
                  warn: bool = True) -> pd.DataFrame:
    """How much each factor explains, chain by chain, and whether ``n_factors`` is enough.

    For each chain and factor, from the draws of ``Lambda`` (factors of unit
    variance, as in the posterior): the share of the total variance it explains,
    ``sum_j Lambda_kj^2 / sum_j V_j`` with ``V_j = sum_m G_m,jj + R_jj`` the variance
    of trait ``j`` (genetic and residual), i.e. its share averaged over traits
    weighted by their variances; the largest share of one trait's variance; its
    effective number of non-zero loadings, ``(sum_j Lambda_kj^2)^2 / sum_j
    Lambda_kj^4`` (``t`` when every trait loads equally, 1 when one trait does);
    and the posterior probability that its share exceeds ``threshold``.

    **Per chain.**  Factors can be ordered differently in different chains (and
    switch within a chain before :meth:`~pymegalmm.MegaLMM.reorder_factors`), so
    pooling factor ``k`` over chains could mix different factors: every number is
    computed within a chain.

    **Too few factors.**  The ARD prior (Bhattacharya and Dunson 2011) shrinks each
    factor more than the one before, so that factors the data do not need are
    shrunk towards zero: with ample factors the superfluous ones explain a small
    share of the variance.  If instead even the smallest factor explains more than
    ``threshold`` (default 1%) of the variance in nearly every draw (probability
    above ``prob``, default 0.9) of some chain, every factor is in use and the data
    probably support more: a :class:`TooFewFactorsWarning` (a :class:`UserWarning`)
    suggests increasing ``n_factors`` (R MegaLMM issue #3, "how many factors?").
    Adding factors costs time, not accuracy, since the extra ones are shrunk away.

    Why these defaults: in our simulations (60-150 rows, 8-20 traits, 1-5 true
    factors, 2 chains) with three superfluous factors, the smallest factor's
    share had a median of 0.2-1.2% per chain and exceeded 1% in at most 62% of a
    chain's draws; with too few factors (2 for 4), it explained 17-23% in every
    draw.  Asking for nearly every draw rather than most keeps superfluous
    factors that pick up chance structure in small samples (a few percent in
    some draws) from raising the warning; with a single superfluous factor and
    few rows it can still be raised (we saw one chain at 6%), and adding a factor
    or two then settles the question.  The smallest share *per draw* is used,
    not the last factor's, because it does not depend on the order of the factors
    (with ARD's ordering it is normally the last factor's).  A factor acting on a
    few traits of many can explain less than 1% of the total yet matter for those
    traits: ``max_trait_share`` shows it.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior draws holding ``Lambda`` and ``F_h2``, and ``G`` and ``R`` or
        ``resid_h2`` and ``tot_Eta_prec``.
    threshold : float, default 0.01
        Share of the total variance above which a factor carries signal, in (0, 1).
    prob : float, default 0.9
        Posterior probability, in a chain, that the smallest factor's share exceeds
        ``threshold``, above which the warning is issued, in [0, 1).
    warn : bool, default True
        Issue the warning.

    Returns
    -------
    pandas.DataFrame
        One row per chain and factor: ``chain, factor, variance_share,
        max_trait_share, eff_loadings, prob_above`` (posterior means within the
        chain; ``prob_above``: probability that the share exceeds ``threshold``),
        then ``F_h2_<component>`` per random effect.  ``.attrs`` holds
        ``threshold``, ``prob``, ``smallest`` (per chain: the posterior median of the
        smallest share per draw, and the probability that it exceeds ``threshold``)
        and ``too_few`` (the chains that trigger the warning).

    Raises
    ------
    LabelError
        If needed variables are missing.

    References
    ----------
    Bhattacharya, A. and Dunson, D. B. (2011).  Sparse Bayesian infinite factor
    models.  *Biometrika* 98(2), 291-306.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from pymegalmm.results.diagnostics import factor_report
    >>> rng = np.random.default_rng(1)
    >>> lam = rng.standard_normal((1, 50, 2, 4)) * np.array([1.0, 0.01])[:, None]
    >>> post = xr.Dataset({
    ...     "Lambda": (("chain", "draw", "factor", "trait"), lam),
    ...     "F_h2": (("chain", "draw", "component", "factor"), np.full((1, 50, 1, 2), 0.5)),
    ...     "resid_h2": (("chain", "draw", "component", "trait"), np.full((1, 50, 1, 4), 0.5)),
    ...     "tot_Eta_prec": (("chain", "draw", "trait"), np.ones((1, 50, 4)))})
    >>> report = factor_report(post)  # the second factor is shrunk away: no warning
    >>> report[["factor", "prob_above"]].values.tolist()
    [[0, 1.0], [1, 0.0]]
    """
    threshold = check_float("threshold", threshold, low=0.0, high=1.0, low_open=True,
                            high_open=True)
    prob = check_float("prob", prob, low=0.0, high=1.0, high_open=True)
    warn = check_bool("warn", warn)
    src = _Draws(post)
    fd = _factor_draws(src, "factor_report")
    share = fd["share"]
    fh2 = src.array("F_h2", ("component", "factor"))
    chains = src.coord("chain") if "chain" in src.post.coords else list(range(src.n_chains))
    factors = (src.coord("factor") if "factor" in src.post.coords
               else list(range(share.shape[2])))
    k = share.shape[2]
    out = pd.DataFrame({
        "chain": np.repeat(chains, k).tolist(),
        "factor": factors * src.n_chains,
        "variance_share": share.mean(axis=1).ravel(),
        "max_trait_share": fd["max_trait_share"].mean(axis=1).ravel(),
        "eff_loadings": fd["eff_loadings"].mean(axis=1).ravel(),
        "prob_above": (share > threshold).mean(axis=1).ravel(),
    })
    components = (src.coord("component") if "component" in src.post.coords
                  else list(range(fh2.shape[2])))
    for i, comp in enumerate(components):
        out[f"F_h2_{comp}"] = fh2[:, :, i].mean(axis=1).ravel()
    smallest = share.min(axis=2) if k else np.zeros(share.shape[:2])
    summary = {c: {"median": float(np.median(smallest[i])),
                   "prob_above": float(np.mean(smallest[i] > threshold))}
               for i, c in enumerate(chains)}
    too_few = [c for c in chains if summary[c]["prob_above"] > prob]
    out.attrs.update(threshold=threshold, prob=prob, smallest=summary, too_few=too_few)
    if warn and too_few:
        warnings.warn(_factor_message(out), TooFewFactorsWarning, stacklevel=2)
    return out


def _factor_message(report: pd.DataFrame) -> str:
    """The too-few-factors warning for a :func:`factor_report` table."""
    a = report.attrs
    k = int(report["factor"].nunique())
    worst = max(a["too_few"], key=lambda c: a["smallest"][c]["median"])
    s = a["smallest"][worst]
    which = ", ".join(map(str, a["too_few"]))
    return (f"all {k} factors carry signal: in chain {which} even the smallest factor "
            f"explains more than {a['threshold']:.0%} of the total variance in "
            f"{s['prob_above']:.0%} of the draws (median {s['median']:.1%}, chain {worst}). "
            "The data probably support more factors: increase n_factors (superfluous factors "
            "are shrunk away by the ARD prior) and check that the smallest factor's share "
            "falls below the threshold.")
