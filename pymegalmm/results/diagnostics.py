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
``lp``             (none)                       log density of ``Eta`` (when recorded)
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

import os
import sys
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
DEFAULT_VARIABLES: tuple[str, ...] = ("h2", "G", "R", "U", "B1", LTL, "lp")

#: R-hat above this flags a quantity (Vehtari et al. 2021, section 4.3: 1.01).
RHAT_THRESHOLD = 1.01

#: Bulk or tail ESS below this many per chain flags a quantity (Vehtari et al. 2021: 100).
ESS_PER_CHAIN = 100

#: Float64 values per block of draws read or computed at a time (8 MiB; the measures
#: hold about ten times as much while they run).
_BLOCK_ELEMENTS = 2**20

#: Order of the label columns of the diagnostics table.
_DIM_ORDER = ("component", "fixed", "level", "factor", "trait", "trait2")


def _stacklevel() -> int:
    """``stacklevel`` of a warning issued by the caller, pointing at the first frame
    outside pymegalmm (the user's line, whether they called this module or a method of
    :class:`~pymegalmm.MegaLMM` that calls it)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            package):
        frame, level = frame.f_back, level + 1
    return level


class ConvergenceWarning(UserWarning):
    """R-hat or ESS outside Vehtari et al.'s (2021) recommendations (:func:`diagnostics`)."""


class TooFewFactorsWarning(UserWarning):
    """Even the smallest factor carries signal: ``n_factors`` is likely too small."""


# --------------------------------------------------------------------------------------
# the quantities, element by element
# --------------------------------------------------------------------------------------


@dataclass
class _Quantity:
    """One quantity to diagnose: label dims, sizes, and a reader of its draws.

    ``values(flat)`` gives the draws ``(chain, draw, len(flat))`` of the elements at
    sorted flat indices ``flat`` into ``shape``; ``width`` is the number of float64
    values per element and draw it holds while doing so (``k`` for products over the
    factors).  Symmetric quantities (last two dims ``trait, trait2``) are diagnosed
    on the upper triangle, diagonal included.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    values: Callable[[np.ndarray], np.ndarray]
    width: int = 1
    symmetric: bool = False

    @property
    def n_matrices(self) -> int:
        return int(np.prod(self.shape[:-2], dtype=int))

    @property
    def n_elements(self) -> int:
        if self.symmetric:
            t = self.shape[-1]
            return self.n_matrices * t * (t + 1) // 2
        return int(np.prod(self.shape, dtype=int))

    def upper(self) -> Iterator[np.ndarray]:
        """Flat indices of the upper triangles, row by row."""
        t = self.shape[-1]
        for row in range(self.n_matrices * t):
            i = row % t
            yield row * t + np.arange(i, t)

    def diagonal(self) -> np.ndarray:
        t = self.shape[-1]
        return (np.arange(self.n_matrices * t) * t + np.tile(np.arange(t), self.n_matrices))


def _chunks(parts: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Concatenate and re-cut arrays of indices into chunks of ``size`` (the last shorter)."""
    held: list[np.ndarray] = []
    n = 0
    for part in parts:
        held.append(part)
        n += part.size
        while n >= size:
            joined = np.concatenate(held)
            yield joined[:size]
            held, n = [joined[size:]], joined.size - size
    if n:
        yield np.concatenate(held)


def _selection(q: _Quantity, max_diagnosed: int | None, rng: np.random.Generator
               ) -> tuple[int, Iterator[np.ndarray]]:
    """How many elements of ``q`` are diagnosed, and their sorted flat indices by parts.

    Every element, or, past ``max_diagnosed`` (off the diagonal for symmetric
    quantities), the diagonal and a random subset of ``max_diagnosed`` elements.
    """
    n = q.n_elements
    n_free = n - (q.n_matrices * q.shape[-1] if q.symmetric else 0)
    if max_diagnosed is None or n_free <= max_diagnosed:
        return n, (q.upper() if q.symmetric else
                   (np.arange(i, min(n, i + 2**16)) for i in range(0, n, 2**16)))
    if not q.symmetric:
        return max_diagnosed, iter([np.sort(rng.choice(n, max_diagnosed, replace=False))])
    t = q.shape[-1]
    picked = np.empty(0, dtype=np.int64)
    while picked.size < max_diagnosed:  # pairs i < j drawn uniformly, without repeats
        m, i, j = (rng.integers(0, q.n_matrices, 2 * max_diagnosed),
                   *rng.integers(0, t, (2, 2 * max_diagnosed)))
        keep = i < j
        picked = np.unique(np.concatenate([picked, ((m * t + i) * t + j)[keep]]))
    picked = rng.choice(picked, max_diagnosed, replace=False)
    chosen = np.sort(np.concatenate([picked, q.diagonal()]))
    return chosen.size, iter([chosen])


def _reader(da: xr.DataArray, dims: tuple[str, ...], shape: tuple[int, ...]
            ) -> Callable[[np.ndarray], np.ndarray]:
    """Read elements of ``da`` (dims ``chain, draw, *dims``), lazily backed or not.

    Dense runs of indices are read as a slab of the first dim, scattered ones by
    vectorised indexing: either way only about the elements asked for are loaded.
    """
    inner = int(np.prod(shape[1:], dtype=int))

    def values(flat: np.ndarray) -> np.ndarray:
        lo, hi = int(flat[0]) // inner, int(flat[-1]) // inner + 1
        if (hi - lo) * inner <= 4 * flat.size:
            slab = np.asarray(da.isel({dims[0]: slice(lo, hi)}).values, dtype=float)
            return slab.reshape(*slab.shape[:2], -1)[:, :, flat - lo * inner]
        idx = np.unravel_index(flat, shape)
        picked = da.isel({d: xr.DataArray(i, dims="_element") for d, i in zip(dims, idx,
                                                                              strict=True)})
        return np.asarray(picked.transpose(*_SAMPLE, "_element").values, dtype=float)

    return values


def _stored(src: _Draws, name: str) -> _Quantity:
    """A posterior variable (``G`` and ``R`` as symmetric), read element block by block."""
    da = src.post[name]
    dims = tuple(str(d) for d in da.dims if d not in _SAMPLE)
    if name in ("G", "R"):
        dims = (*(("component",) if name == "G" else ()), "trait", "trait2")
    da = da.transpose(*_SAMPLE, *dims)
    if not dims:
        x = np.asarray(da.values, dtype=float)[:, :, None]
        return _Quantity(name, (), (), lambda flat: x[:, :, flat])
    shape = tuple(int(da.sizes[d]) for d in dims)
    return _Quantity(name, dims, shape, _reader(da, dims, shape),
                     symmetric=name in ("G", "R"))


def _derived_symmetric(src: _Draws, name: str) -> _Quantity:
    """``G``, ``R`` or ``LtL`` from the parameters, element by element.

    ``G_m = Lambda' diag(F_h2[m]) Lambda + diag(resid_h2[m] / tot_Eta_prec)``;
    ``R`` likewise with ``1 - sum_m F_h2[m]`` and ``1 - sum_m resid_h2[m]``;
    ``LtL = Lambda' Lambda``.
    """
    lam = src.array("Lambda", ("factor", "trait"))
    k, t = lam.shape[2:]
    if name == LTL:
        weight = np.ones((*lam.shape[:2], 1, k))
        resid = np.zeros((*lam.shape[:2], 1, t))
        var_r = np.zeros((*lam.shape[:2], t))
        dims: tuple[str, ...] = ("trait", "trait2")
    else:
        _, fh2, rh2, var_r = src._params()
        if name == "G":
            weight, resid, dims = fh2, rh2, ("component", "trait", "trait2")
        else:
            weight = (1.0 - fh2.sum(axis=2))[:, :, None]
            resid, dims = (1.0 - rh2.sum(axis=2))[:, :, None], ("trait", "trait2")
    n = weight.shape[2]

    def values(flat: np.ndarray) -> np.ndarray:
        m, i, j = np.unravel_index(flat, (n, t, t))
        out = np.empty((*lam.shape[:2], flat.size))
        for mm in np.unique(m):
            sel = m == mm
            a, b = i[sel], j[sel]
            val = np.einsum("cdkp,cdk,cdkp->cdp", lam[..., a], weight[:, :, mm], lam[..., b])
            same = a == b
            val[..., same] += resid[:, :, mm, a[same]] * var_r[..., a[same]]
            out[..., sel] = val
        return out

    shape = (n, t, t) if name == "G" else (t, t)
    return _Quantity(name, dims, shape, values, width=k + 1, symmetric=True)


def _derived_U(src: _Draws) -> _Quantity:
    """``U = U_F Lambda + U_R`` from the parameters, element by element."""
    lam = src.array("Lambda", ("factor", "trait"))
    uf = src.post["U_F"].transpose(*_SAMPLE, "level", "factor")
    ur = src.post["U_R"].transpose(*_SAMPLE, "level", "trait")
    shape = (int(ur.sizes["level"]), int(ur.sizes["trait"]))
    read_ur = _reader(ur, ("level", "trait"), shape)

    def values(flat: np.ndarray) -> np.ndarray:
        level, trait = np.unravel_index(flat, shape)
        f = np.asarray(uf.isel(level=xr.DataArray(level, dims="_element"))
                       .transpose(*_SAMPLE, "factor", "_element").values, dtype=float)
        return np.einsum("cdke,cdke->cde", f, lam[..., trait]) + read_ur(flat)

    return _Quantity("U", ("level", "trait"), shape, values, width=2 * lam.shape[2] + 1)


def _quantity(src: _Draws, name: str) -> _Quantity:
    """How to read or derive ``name``; LabelError saying what is missing."""
    if name in ("G", "R") and not src.has(name):
        src.require(name, (name,), _PARAMS)
        return _derived_symmetric(src, name)
    if name == LTL:
        src.require(f"{LTL} (Lambda' Lambda)", ("Lambda",))
        return _derived_symmetric(src, name)
    if name == "h2" and not src.has("h2"):
        src.require("h2", ("h2",), _PARAMS)
        x = src.h2()
        flat_x = x.reshape(*x.shape[:2], -1)
        return _Quantity("h2", ("component", "trait"), x.shape[2:],
                         lambda flat: flat_x[:, :, flat])
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
                max_diagnosed: int | None = 5000, seed: int = 0,
                warn: bool = True) -> pd.DataFrame:
    """R-hat and bulk and tail ESS of the quantities identified across chains.

    For every element of ``h2``, ``G``, ``R``, ``U``, ``B1``, ``Lambda' Lambda``
    (``LtL``) and, when recorded, the log density ``lp``: the rank-normalised split
    R-hat (:func:`~.tables.rhat`), the bulk ESS (:func:`~.tables.ess_bulk`) and the
    tail ESS (:func:`~.tables.ess_tail`) of Vehtari et al. (2021), which match
    ArviZ's ``rhat``, ``ess(method="bulk")`` and ``ess(method="tail")`` (ArviZ 1.x:
    with ``prob=(0.05, 0.95)``).

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

    The thresholds apply to each quantity, and a fit has many (``U`` alone has
    levels x traits): even for independent draws, R-hat exceeds 1.01 by chance with
    a probability of about 1e-3 per quantity for 2 chains of 500 draws (far less
    for longer chains, far more for shorter), so a few quantities just above 1.01
    among thousands are expected; the warning gives the count and the largest
    value.  A low ESS is never a chance event of this kind: it needs more draws.

    Memory and time stay bounded for many traits or levels: draws are read (or
    ``G``, ``R``, ``LtL`` and ``U`` computed from the parameters) a block of
    elements at a time; a quantity with more than ``max_diagnosed`` elements (off
    the diagonal of ``G``, ``R``, ``LtL``) is diagnosed on its diagonal and a
    random subset of ``max_diagnosed`` elements (each measure costs about 0.3 ms
    per element for 2 chains of 500 draws, so all 500,000 pairs of 1,000 traits
    would take minutes); and for a quantity of more than ``max_elements``
    elements only the diagonal and the ``n_worst`` elements by each measure are
    reported, while the counts and extremes in ``.attrs["overview"]`` cover every
    element diagnosed.

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
    max_diagnosed : int or None, default 5000
        Elements (off the diagonal for ``G``, ``R``, ``LtL``) diagnosed per quantity
        at most; larger quantities are diagnosed on a random subset.  None: all.
    seed : int, default 0
        Seed of the random subsets.
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
        quantity: elements, elements diagnosed and reported, counts outside the
        thresholds, extremes and where they are; :func:`diagnostics_overview` as a
        table).

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
    ...                           rng.standard_normal((4, 1000, 1, 2)))},
    ...                   coords={"fixed": ["(Intercept)"], "trait": ["y1", "y2"]})
    >>> table = diagnostics(post, ["B1"])  # independent draws: no warning
    >>> table[["variable", "fixed", "trait"]].values.tolist()
    [['B1', '(Intercept)', 'y1'], ['B1', '(Intercept)', 'y2']]
    >>> bool((table["rhat"] < 1.01).all() and (table["ess_tail"] > 3000).all())
    True
    """
    src = _Draws(post)
    max_elements = check_int("max_elements", max_elements, minimum=1)
    n_worst = check_int("n_worst", n_worst, minimum=1)
    if max_diagnosed is not None:
        max_diagnosed = check_int("max_diagnosed", max_diagnosed, minimum=1)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
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
        n_diagnosed, parts = _selection(q, max_diagnosed, rng)
        rec = _Worst(keep_all=n_diagnosed <= max_elements, n_worst=n_worst,
                     rhat_max=RHAT_THRESHOLD, ess_min=ess_min)
        block = max(1, _BLOCK_ELEMENTS // (src.n_chains * src.n_draws * q.width))
        for flat in _chunks(parts, block):
            x = q.values(flat)
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
        info: dict[str, Any] = {"elements": q.n_elements, "diagnosed": rec.n_elements,
                                "reported": len(frame),
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
            warnings.warn(message, ConvergenceWarning, stacklevel=_stacklevel())
    return table


def _convergence_message(table: pd.DataFrame) -> str:
    """The warning text for a :func:`diagnostics` table, or "" when nothing is flagged."""
    ov = table.attrs["overview"]
    n_total = sum(v["diagnosed"] for v in ov.values())
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
        Columns ``variable, elements, diagnosed, reported, rhat_above, ess_below,
        flagged, rhat, rhat_where, ess_bulk, ess_bulk_where, ess_tail,
        ess_tail_where``: the number of elements (upper triangles for ``G``, ``R``,
        ``LtL``), of elements diagnosed (see ``max_diagnosed``) and reported in
        ``table``, of R-hat above the threshold, of bulk or tail ESS below it, and
        of either (among those diagnosed); the largest R-hat,
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
    columns = ["elements", "diagnosed", "reported", "rhat_above", "ess_below", "flagged",
               "rhat", "rhat_where",
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
    >>> report["prob_above"].tolist()
    [1.0, 0.0]
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
        warnings.warn(_factor_message(out), TooFewFactorsWarning, stacklevel=_stacklevel())
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
