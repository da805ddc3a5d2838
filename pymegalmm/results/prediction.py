"""Predictions from the posterior draws: the expected value of Y for data or new rows.

For the rows the model was fitted on, each draw gives
``E[Y] = X1 B1 + F Lambda + Z U_R`` (the sampler's own ``Eta_mean``, per draw).
For new rows, whose factor scores and residuals are unknown (mean 0), each draw
gives ``E[Y] = X1_new B1 + Z_new U``: the fixed effects through the formula's
stored encoding (:meth:`pymegalmm.design.Design.fixed_for`) plus the genetic
values ``U = U_F Lambda + U_R`` of the rows' levels
(:meth:`pymegalmm.design.Design.random_for`); levels of K without data are
predicted like any other.

Draws are read trait block by trait block (lazily from the on-disk store), so
memory stays near ``rows x draws x block`` whatever the number of traits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from ..errors import InputError
from ..validate import check_float
from .summaries import hpd_interval

#: What ``predict`` and ``genetic_values`` can return.
KINDS = ("mean", "draws", "interval")
#: Interval conventions: highest posterior density (coda's HPDinterval) or quantiles.
INTERVALS = ("hpd", "equal-tailed")
#: Bytes of draws held at once when a result is computed block by block.
BLOCK_BYTES = 256 * 2**20


def check_kind(kind: str, prob: float, interval: str) -> tuple[str, float, str]:
    """Validate ``kind``, ``prob`` and ``interval`` (names in the messages)."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    prob = check_float("prob", prob, low=0.0, high=1.0, low_open=True)
    if interval not in INTERVALS:
        raise InputError(f"interval must be one of {list(INTERVALS)}, got {interval!r}")
    return kind, prob, interval


def _blocks(n_traits: int, per_trait_bytes: int) -> list[slice]:
    width = max(1, min(n_traits, BLOCK_BYTES // max(per_trait_bytes, 1)))
    return [slice(i, min(i + width, n_traits)) for i in range(0, n_traits, width)]


def expected_draws(
    load: Callable[[list[str], slice], xr.Dataset],
    X: np.ndarray,
    Z: sp.csr_matrix,
    rows: pd.Index,
    traits: list,
    fitted_rows: bool,
    n_draws: int,
) -> xr.DataArray:
    """Draws of ``E[Y]`` for the given rows, ``(chain, draw, row, trait)``.

    Parameters
    ----------
    load : ``load(names, trait_slice)`` returns those posterior variables for a block
        of traits (all chains and draws), in memory.
    X : (rows, fixed) fixed-effect design of the rows.
    Z : (rows, levels) random-effect design over the posterior's levels.
    rows : labels of the rows.
    traits : labels of every trait.
    fitted_rows : the rows the model was fitted on (use ``F Lambda + Z U_R``),
        or new rows (use ``Z U``).
    n_draws : draws of all chains (sets the size of the trait blocks).
    """
    names = ["B1", "F", "Lambda", "U_R"] if fitted_rows else ["B1", "U"]
    parts = []
    for block in _blocks(len(traits), 8 * max(X.shape[0], Z.shape[1]) * n_draws):
        ds = load(names, block)
        c, d = ds.sizes["chain"], ds.sizes["draw"]
        B1 = ds["B1"].transpose("chain", "draw", "fixed", "trait").values
        out = np.einsum("rf,cdft->cdrt", X, B1)
        genetic = ds["U_R" if fitted_rows else "U"].transpose(
            "chain", "draw", "level", "trait").values
        levels, t = genetic.shape[2], genetic.shape[3]
        flat = np.moveaxis(genetic, 2, 0).reshape(levels, c * d * t)
        out += np.moveaxis(np.asarray(Z @ flat).reshape(Z.shape[0], c, d, t), 0, 2)
        if fitted_rows:
            F = ds["F"].transpose("chain", "draw", "row", "factor").values
            Lam = ds["Lambda"].transpose("chain", "draw", "factor", "trait").values
            out += np.einsum("cdrk,cdkt->cdrt", F, Lam)
        parts.append(out)
    values = np.concatenate(parts, axis=3)
    return xr.DataArray(
        values, dims=("chain", "draw", "row", "trait"),
        coords={"chain": np.arange(values.shape[0]), "draw": np.arange(values.shape[1]),
                "row": rows, "trait": traits},
        name="E_Y", attrs={"description": "draws of the expected value of Y, user's scale"},
    )


def summarise(draws: xr.DataArray, kind: str, prob: float, interval: str,
              index: str) -> pd.DataFrame | xr.DataArray:
    """``draws`` as requested: the mean (wide DataFrame), the draws, or a tidy interval table.

    Parameters
    ----------
    draws : (chain, draw, index, trait) draws.
    kind, prob, interval : see :func:`check_kind`.
    index : the name of the non-trait dim (``"row"`` or ``"level"``).
    """
    if kind == "draws":
        return draws
    mean = draws.mean(("chain", "draw"))
    if kind == "mean":
        return mean.to_pandas()
    if interval == "hpd":
        bounds = hpd_interval(draws, prob)
        lower, upper = bounds.sel(bound="lower"), bounds.sel(bound="upper")
    else:
        tail = (1.0 - prob) / 2.0
        q = draws.quantile([tail, 1.0 - tail], dim=("chain", "draw"))
        lower, upper = q.isel(quantile=0, drop=True), q.isel(quantile=1, drop=True)
    table = pd.DataFrame({
        "mean": mean.transpose(index, "trait").values.ravel(),
        "lower": lower.transpose(index, "trait").values.ravel(),
        "upper": upper.transpose(index, "trait").values.ravel(),
    }, index=pd.MultiIndex.from_product([draws[index].values, draws["trait"].values],
                                        names=[index, "trait"]))
    table.attrs.update(prob=prob, interval=interval)
    return table


def response_predictions(results, design, observation, latent, traits: list, new_data,
                         kind: str, prob: float, interval: str, *, library_size=None,
                         at=None) -> pd.DataFrame | xr.DataArray:
    """:meth:`pymegalmm.MegaLMM.predict` with ``scale="response"``: every draw of the
    expected latent value through the observation model's response map
    (:meth:`~pymegalmm.observation.ObservationModel.response`), then summarised.

    Parameters
    ----------
    results : the run's :class:`~pymegalmm.results.run_results.RunResults`.
    design, observation, latent : the model's design, observation model and prepared data.
    traits : the latent traits' names.
    new_data, kind, prob, interval : as for ``predict``.
    library_size : number, Series or array, optional
        Library sizes of the predicted rows (negative-binomial traits).
    at : pandas.DataFrame, optional
        Covariate values of the curves (:class:`~pymegalmm.observation.Regression`).
    """
    kind, prob, interval = check_kind(kind, prob, interval)
    draws = results.predict(design, new_data, "draws", prob, interval)
    options = {}
    if library_size is not None:
        options["library_size"] = row_values("library_size", library_size,
                                             draws.indexes["row"])
    if at is not None:
        options["at"] = at
    values, labels = observation.response(draws.values, traits, latent, **options)
    draws = xr.DataArray(values, dims=draws.dims,
                         coords={**{k: v for k, v in draws.coords.items()
                                    if "trait" not in v.dims}, "trait": labels})
    draws.attrs["description"] = ("draws of the expected value of Y on the response "
                                  "scale of the observation model")
    return summarise(draws, kind, prob, interval, "row")


def row_values(name: str, value, rows: pd.Index) -> float | np.ndarray:
    """A positive number, or one per row as an ``(rows, 1)`` array (a Series by label)."""
    if isinstance(value, pd.Series):
        missing = [r for r in rows if r not in value.index]
        if missing:
            raise InputError(f"{name} lacks row(s) {missing[:5]}")
        arr = value.loc[list(rows)].to_numpy(dtype=float)
    else:
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 0 and np.isfinite(arr) and arr > 0:
            return float(arr)
        if arr.ndim and arr.shape != (len(rows),):
            raise InputError(f"{name} must be a number or one value per row "
                             f"({len(rows)}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise InputError(f"{name} must be finite and > 0")
    return arr[:, None] if arr.ndim else float(arr)
