"""Shared pieces of the non-Gaussian observation models.

* :func:`aligned_input`: a user's input labelled like ``Y`` (weights, trial counts,
  library sizes) as an ``(n, t)`` array in the model's row and trait order;
* :func:`column_blocks` and :func:`run_column_blocks`: the draws of the latent
  cells, block of columns by block of columns, each block from its own generator
  seeded by the chain's, in parallel threads (the repository's block-RNG scheme,
  :func:`pymegalmm.linalg.standard_normal`): the draws depend on the data's shape,
  never on the number of threads;
* :func:`pg_latent_update`: the Polya-Gamma augmented draw of latent cells.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from .._config import kernels_module
from ..errors import InputError, InputTypeError, LabelError

#: Cells per block of the latent draws of count models: each block of
#: ``max(1, PG_BLOCK_CELLS // n)`` columns gets its own generator and thread.
PG_BLOCK_CELLS = 2**14


def aligned_input(name: str, value: Any, rows: Sequence[Hashable] | None,
                  traits: Sequence[Hashable], shape: tuple[int, int], *,
                  per_row: bool = True, per_trait: bool = False) -> np.ndarray:
    """``value`` as a float ``(n, t)`` array in the model's row and trait order.

    Parameters
    ----------
    name : the argument's name, for messages.
    value : a number (every cell); a ``pandas.DataFrame`` labelled like ``Y``
        (rows and traits matched by label, extra ones ignored); a ``pandas.Series``
        indexed by rows (``per_row``) or by traits (``per_trait``); or an array of
        shape ``(n, t)``, ``(n,)`` (``per_row``) or ``(t,)`` (``per_trait``), by position.
    rows : labels of the model's rows, or None (position only).
    traits : labels of the model's traits.
    shape : ``(n, t)``.
    per_row, per_trait : whether one value per row or per trait is accepted.
    """
    n, t = shape
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return np.full((n, t), float(value))
    if isinstance(value, pd.DataFrame):
        if rows is None:
            if value.shape != (n, t):
                raise InputError(f"{name} must have the shape of Y {shape}, got {value.shape}")
            arr = value.to_numpy()
        else:
            cols = _match_labels(name, "trait", value.columns, traits)
            idx = _match_labels(name, "row", value.index, rows)
            arr = value.to_numpy()[np.ix_(idx, cols)]
        return _as_float(name, arr)
    if isinstance(value, pd.Series):
        if per_row and rows is not None and _covers(value.index, rows):
            idx = _match_labels(name, "row", value.index, rows)
            return np.repeat(_as_float(name, value.to_numpy()[idx])[:, None], t, axis=1)
        if per_trait and _covers(value.index, traits):
            idx = _match_labels(name, "trait", value.index, traits)
            return np.repeat(_as_float(name, value.to_numpy()[idx])[None, :], n, axis=0)
        what = " or ".join(w for w, ok in (("the rows", per_row), ("the traits", per_trait)) if ok)
        raise LabelError(f"{name}: a Series must be indexed by {what} of Y (labels missing)")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything that is not an array
        raise InputTypeError(f"{name} must be a number, a DataFrame labelled like Y or an "
                             f"array, got {type(value).__name__}") from exc
    if arr.ndim == 0:
        return np.full((n, t), float(_as_float(name, arr)))
    if arr.ndim == 2 and arr.shape == (n, t):
        return _as_float(name, arr)
    if arr.ndim == 1 and per_row and arr.shape[0] == n:
        return np.repeat(_as_float(name, arr)[:, None], t, axis=1)
    if arr.ndim == 1 and per_trait and arr.shape[0] == t:
        return np.repeat(_as_float(name, arr)[None, :], n, axis=0)
    allowed = [f"({n}, {t})"] + ([f"({n},) one per row"] if per_row else []) + (
        [f"({t},) one per trait"] if per_trait else [])
    raise InputError(f"{name} must have the shape of Y {allowed} (or be a DataFrame labelled "
                     f"like Y), got shape {arr.shape}")


def _covers(index: pd.Index, labels: Sequence[Hashable]) -> bool:
    keys = {str(v) for v in index}
    return all(str(v) in keys for v in labels)


def _match_labels(name: str, what: str, index: pd.Index, labels: Sequence[Hashable]
                  ) -> np.ndarray:
    """Positions in ``index`` of each label (compared as strings, as Y's traits are)."""
    pos = {}
    for i, v in enumerate(index):
        pos.setdefault(str(v), i)
    if len(pos) < len(index):
        raise LabelError(f"{name} has repeated {what} labels")
    missing = [v for v in labels if str(v) not in pos]
    if missing:
        raise LabelError(f"{name} lacks {len(missing)} {what}(s) of Y, e.g. {missing[:5]}")
    return np.array([pos[str(v)] for v in labels], dtype=np.intp)


def _as_float(name: str, arr: np.ndarray) -> np.ndarray:
    try:
        return np.array(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name} must hold numbers, got dtype {np.asarray(arr).dtype}"
                             ) from exc


def check_counts(name: str, values: np.ndarray, where: np.ndarray,
                 traits: Sequence[Hashable]) -> None:
    """Raise unless ``values`` are finite non-negative integers where ``where``."""
    v = values[where]
    bad = ~np.isfinite(v) | (v < 0) | (v != np.round(v))
    if bad.any():
        cols = np.nonzero(where)[1][bad]
        raise InputError(f"{name} must hold non-negative whole numbers (counts); trait(s) "
                         f"{sorted({str(traits[j]) for j in cols})[:5]} have e.g. "
                         f"{v[bad][:3].tolist()}")


def column_blocks(n: int, t: int) -> list[slice]:
    """Blocks of columns of the latent draws: fixed by the shape, never by the threads."""
    width = max(1, PG_BLOCK_CELLS // max(n, 1))
    return [slice(i, min(i + width, t)) for i in range(0, t, width)]


def run_column_blocks(rng: np.random.Generator, blocks: list[slice],
                      fn: Callable[[slice, np.random.Generator], None]) -> None:
    """Call ``fn(block, generator)`` for every block, in parallel threads.

    One seed per block is drawn from ``rng`` first (``blocks`` numbers, always);
    block ``b`` then draws only from ``Generator(PCG64(seed_b))``, so the result
    does not depend on the number of threads (the kernels' thread setting,
    ``Control.n_threads``).  ``fn`` must write only its own block's columns.
    """
    seeds = rng.integers(0, 2**63 - 1, size=len(blocks), dtype=np.int64)
    generators = [np.random.Generator(np.random.PCG64(int(seed))) for seed in seeds]
    threads = min(len(blocks), max(1, int(kernels_module().openmp_max_threads())))
    if threads < 2:
        for block, gen in zip(blocks, generators, strict=True):
            fn(block, gen)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(fn, b, g) for b, g in zip(blocks, generators, strict=True)]:
            future.result()


def pg_latent_update(eta: np.ndarray, mean: np.ndarray, var: np.ndarray, observed: np.ndarray,
                     h: np.ndarray, kappa: np.ndarray, offset: np.ndarray | None,
                     gen: np.random.Generator) -> np.ndarray:
    """One Polya-Gamma augmented draw of latent cells (a block of columns).

    Observed cells have the likelihood ``exp(psi)^a / (1 + exp(psi))^h`` with
    ``psi = eta + offset`` and ``kappa = a - h / 2``; given ``omega ~ PG(h, psi)``
    (at the current ``eta``) it is ``exp(kappa psi - omega psi^2 / 2)``, so that with
    the factor model's prior ``eta ~ N(mean, var)``::

        eta | omega ~ N(m, 1 / P),   P = omega + 1 / var,
                                     m = (kappa - omega * offset + mean / var) / P

    Cells not observed are drawn from the prior ``N(mean, var)``.  Random numbers,
    from ``gen`` in this order: the ``omega`` of the observed cells (column-major),
    then one standard normal per cell (column-major).

    Parameters
    ----------
    eta, mean : (n, c) current latent values and the factor model's means.
    var : (c,) the factor model's residual variances.
    observed : (n, c) bool.
    h, kappa : (n, c) the likelihood's ``h`` and ``kappa`` (used where observed).
    offset : (n, c) offset of the linear predictor, or None for 0.
    gen : the block's generator.

    Returns
    -------
    numpy.ndarray
        ``(n, c)`` new latent values (Fortran-ordered).
    """
    from polyagamma import random_polyagamma

    obs_f = observed.T  # column-major order of the cells = row-major order of the transpose
    psi = eta if offset is None else eta + offset
    omega_obs = random_polyagamma(h.T[obs_f], psi.T[obs_f], random_state=gen)
    omega = np.zeros_like(eta.T)
    omega[obs_f] = omega_obs
    omega = omega.T
    prec = 1.0 / var[None, :]
    P = omega + prec
    lin = mean * prec + np.where(observed, kappa, 0.0)
    if offset is not None:
        lin -= omega * offset
    z = gen.standard_normal((eta.shape[1], eta.shape[0])).T  # column-major order
    return np.asfortranarray(lin / P + z / np.sqrt(P))


def require_one_group(d: Any, model: str) -> None:
    """Raise unless the model's data form one trait group holding every trait: the
    latent draws of the non-Gaussian models redraw every cell (no missing-data map)."""
    if len(d.groups) != 1 or d.groups[0].cols.size != d.t:
        raise ValueError(f"{model} needs one trait group (no missing-data map)")


def redraw_latent(s: Any, d: Any, conditional: Any, rng: np.random.Generator,
                  parts: list[tuple[Any, Any, dict[str, np.ndarray], np.ndarray]]) -> None:
    """Redraw every cell of ``Eta`` from the observation models' column updates.

    ``parts`` lists ``(model, extra, state, cols)``: an observation model, its prepared
    inputs (``LatentScale.extra``), its state (arrays over its own traits, updated in
    place) and the model's columns among ``Eta``'s.  Each model's columns are cut in
    :func:`column_blocks`, one generator per block (:func:`run_column_blocks`), and
    ``model._update_columns`` draws them.  Then ``QtEta`` is rotated again.  Needs one
    trait group holding every trait (no missing-data map).
    """
    require_one_group(d, "this observation model")
    g = d.groups[0]
    rows = g.rows
    whole = rows.size == d.n
    mean = conditional.block_mean(0)  # before Eta changes
    var = conditional.residual_variance(g.cols)
    eta = s.Eta if whole else s.Eta[rows]
    out = np.empty(eta.shape, order="F")
    tasks, blocks = [], []
    for model, extra, state, cols in parts:
        cols = np.asarray(cols, dtype=np.intp)
        for b in column_blocks(rows.size, cols.size):
            tasks.append((model, extra, state, np.arange(b.start, b.stop), cols[b]))
            blocks.append(slice(len(blocks), len(blocks) + 1))

    def draw(block: slice, gen: np.random.Generator) -> None:
        model, extra, state, local, gcols = tasks[block.start]
        out[:, gcols] = model._update_columns(extra, state, rows, local, eta[:, gcols],
                                              mean[:, gcols], var[gcols], gen)

    run_column_blocks(rng, blocks, draw)
    if whole:
        s.Eta[...] = out
    else:
        s.Eta[rows] = out
    g.re.rotate(s.Eta[g.block], out=s.QtEta[0])
