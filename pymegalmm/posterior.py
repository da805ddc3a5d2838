"""Recorded draws -> labelled ``xarray.Dataset``; derived quantities U, G, R, h2.

Every recorded quantity is on the user's scale of ``Y`` with factors of unit
variance (R MegaLMM's ``save_posterior_sample`` conventions, METHOD.md section 5):

================  ==========================  ============================================
name              dims (after chain, draw)    meaning
================  ==========================  ============================================
``Lambda``        factor, trait               loadings (unit-variance factors)
``F``             row, factor                 factor scores
``U_F``           level, factor               factors' random effects per level
``U_R``           level, trait                trait-specific random effects per level
``B1``            fixed, trait                fixed effects (incl. the trait mean)
``F_h2``          component, factor           factors' variance proportions
``resid_h2``      component, trait            residual models' variance proportions
``tot_Eta_prec``  trait                       total precision of each residual model
``tot_F_prec``    factor                      factors' working precision (internal)
``delta``         factor                      ARD multiplicative shrinkage increments
``U``             level, trait                genetic values ``U_F Lambda + U_R``
``G``             component, trait, trait2    covariance of each random effect
``R``             trait, trait2               residual covariance
``h2``            component, trait            share of variance per random effect
================  ==========================  ============================================

``G_m = Lambda' diag(F_h2[m]) Lambda + diag(resid_h2[m] / tot_Eta_prec)``,
``R = Lambda' diag(1 - sum_m F_h2[m]) Lambda + diag((1 - sum_m resid_h2[m]) / tot_Eta_prec)``,
``h2[m, j] = G_m[j, j] / (sum_m G_m[j, j] + R[j, j])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

#: Dims of each recordable parameter (after ``chain`` and ``draw``).
PARAM_DIMS: dict[str, tuple[str, ...]] = {
    "Lambda": ("factor", "trait"),
    "F": ("row", "factor"),
    "U_F": ("level", "factor"),
    "U_R": ("level", "trait"),
    "B1": ("fixed", "trait"),
    "F_h2": ("component", "factor"),
    "resid_h2": ("component", "trait"),
    "tot_Eta_prec": ("trait",),
    "tot_F_prec": ("factor",),
    "delta": ("factor",),
}

#: Parameters recorded per draw by default.
DEFAULT_RECORD: tuple[str, ...] = (
    "Lambda", "F_h2", "resid_h2", "tot_Eta_prec", "B1", "U_F", "U_R", "F", "delta",
)

#: Derived quantities and the parameters each needs.
DERIVED_NEEDS: dict[str, tuple[str, ...]] = {
    "U": ("U_F", "Lambda", "U_R"),
    "G": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
    "R": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
    "h2": ("Lambda", "F_h2", "resid_h2", "tot_Eta_prec"),
}

DESCRIPTIONS: dict[str, str] = {
    "Lambda": "factor loadings (factors scaled to unit variance), user's scale of Y",
    "F": "factor scores (unit variance)",
    "U_F": "random effects of the factors per level (unit-variance factors)",
    "U_R": "trait-specific random effects per level, user's scale",
    "B1": "fixed effects, user's scale (the trait mean is in the intercept)",
    "F_h2": "variance proportion of each factor per random effect",
    "resid_h2": "variance proportion of each trait's residual model per random effect",
    "tot_Eta_prec": "total precision of each trait's residual model, user's scale",
    "tot_F_prec": "working precision of each factor (parameter expansion, internal)",
    "delta": "ARD multiplicative shrinkage increments (tauh = cumprod(delta))",
    "U": "genetic values U_F Lambda + U_R per level and trait, user's scale",
    "G": "covariance between traits of each random effect, user's scale",
    "R": "residual covariance between traits, user's scale",
    "h2": "share of each trait's variance due to each random effect",
    "Eta_mean": "posterior mean of the expected value of Y (predictions), user's scale",
}


@dataclass
class Coordinates:
    """User names attached to the posterior's dims."""

    trait: list[str]
    factor: list[str]
    fixed: list[str]
    level: list[str]
    component: list[str]
    row: list[object]
    level_effect: list[str] = field(default_factory=list)

    def for_dims(self, dims: Iterable[str]) -> dict[str, list]:
        """Coordinate values for the given dims."""
        out: dict[str, list] = {}
        for dim in dims:
            if dim == "trait2":
                out[dim] = self.trait
            elif dim in ("chain", "draw"):
                continue
            else:
                out[dim] = getattr(self, dim)
        return out


class DrawStore:
    """Recorded draws of one chain, kept in memory as lists of arrays."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.draws: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        self.functions: dict[str, list[xr.DataArray]] = {}
        self.mean_sums: dict[str, np.ndarray] = {}
        self.n_means = 0

    def __len__(self) -> int:
        return len(next(iter(self.draws.values()))) if self.draws else 0

    def add(self, values: dict[str, np.ndarray]) -> None:
        """Append one draw of every recorded parameter."""
        for name in self.names:
            self.draws[name].append(np.array(values[name], copy=True))

    def add_function(self, name: str, value: xr.DataArray) -> None:
        """Append one draw of a user function's value."""
        self.functions.setdefault(name, []).append(value)

    def add_to_mean(self, name: str, value: np.ndarray) -> None:
        """Accumulate ``value`` into the running posterior mean of ``name``."""
        if name in self.mean_sums:
            self.mean_sums[name] += value
        else:
            self.mean_sums[name] = np.array(value, dtype=float, copy=True)

    def clear(self) -> None:
        """Forget all recorded draws and means."""
        for name in self.names:
            self.draws[name].clear()
        self.functions.clear()
        self.mean_sums.clear()
        self.n_means = 0


def draws_to_dataset(stores: list[DrawStore], coords: Coordinates) -> xr.Dataset:
    """Stack the draws of all chains into a Dataset with dims ``chain, draw, ...``."""
    n_draws = {len(s) for s in stores}
    if len(n_draws) != 1:
        raise ValueError(f"chains have different numbers of draws: {sorted(n_draws)}")
    n = n_draws.pop()
    data_vars = {}
    for name in stores[0].names:
        dims = ("chain", "draw", *PARAM_DIMS[name])
        if n:
            values = np.stack([np.stack(s.draws[name]) for s in stores])
        else:
            shape = [len(stores), 0] + [len(coords.for_dims([d])[d]) for d in PARAM_DIMS[name]]
            values = np.empty(shape)
        data_vars[name] = xr.Variable(dims, values, attrs={"description": DESCRIPTIONS[name]})
    for name in stores[0].functions:
        per_chain = [xr.concat(s.functions[name], dim="draw") for s in stores]
        data_vars[name] = xr.concat(per_chain, dim="chain").variable
    all_dims = {d for v in data_vars.values() for d in v.dims}
    ds_coords: dict[str, object] = {"chain": np.arange(len(stores)), "draw": np.arange(n)}
    ds_coords.update(coords.for_dims(d for d in all_dims if d not in ("chain", "draw")))
    if coords.level_effect and "level" in all_dims:
        ds_coords["level_effect"] = ("level", coords.level_effect)
    return xr.Dataset(data_vars, coords=ds_coords)


def add_derived(ds: xr.Dataset, which: Iterable[str] = ("U", "G", "R", "h2")) -> xr.Dataset:
    """Add the derived quantities ``U``, ``G``, ``R``, ``h2`` computed per draw.

    Parameters
    ----------
    ds : xarray.Dataset
        Posterior draws holding the parameters each quantity needs
        (see :data:`DERIVED_NEEDS`); quantities whose inputs were not recorded
        are skipped.
    which : iterable of str
        Which quantities to add.

    Returns
    -------
    xarray.Dataset
        A new Dataset with the derived variables added.
    """
    ds = ds.copy()
    which = [w for w in which if all(p in ds for p in DERIVED_NEEDS[w])]
    if "U" in which:
        U = np.einsum("cdlk,cdkt->cdlt", ds["U_F"].values, ds["Lambda"].values) + ds["U_R"].values
        ds["U"] = (("chain", "draw", "level", "trait"), U, {"description": DESCRIPTIONS["U"]})
    if {"G", "R", "h2"} & set(which):
        lam = ds["Lambda"].values  # (c, d, k, t)
        fh2 = ds["F_h2"].values  # (c, d, m, k)
        rh2 = ds["resid_h2"].values  # (c, d, m, t)
        var_r = 1.0 / ds["tot_Eta_prec"].values  # (c, d, t)
        diag_G = np.einsum("cdkt,cdmk->cdmt", lam**2, fh2) + rh2 * var_r[:, :, None, :]
        resid_f = 1.0 - fh2.sum(axis=2)  # (c, d, k)
        resid_r = 1.0 - rh2.sum(axis=2)  # (c, d, t)
        diag_R = np.einsum("cdkt,cdk->cdt", lam**2, resid_f) + resid_r * var_r
        if "G" in which:
            G = np.einsum("cdki,cdmk,cdkj->cdmij", lam, fh2, lam)
            idx = np.arange(lam.shape[-1])
            G[..., idx, idx] += rh2 * var_r[:, :, None, :]
            ds["G"] = (("chain", "draw", "component", "trait", "trait2"), G,
                       {"description": DESCRIPTIONS["G"]})
        if "R" in which:
            R = np.einsum("cdki,cdk,cdkj->cdij", lam, resid_f, lam)
            idx = np.arange(lam.shape[-1])
            R[..., idx, idx] += resid_r * var_r
            ds["R"] = (("chain", "draw", "trait", "trait2"), R, {"description": DESCRIPTIONS["R"]})
        if "h2" in which:
            total = diag_G.sum(axis=2) + diag_R
            ds["h2"] = (("chain", "draw", "component", "trait"), diag_G / total[:, :, None, :],
                        {"description": DESCRIPTIONS["h2"]})
    if "trait2" in ds.dims:
        ds = ds.assign_coords(trait2=ds["trait"].values)
    return ds


def evaluate_function(
    fn: Callable[[xr.Dataset], xr.DataArray | np.ndarray | float], draw: xr.Dataset, name: str
) -> xr.DataArray:
    """Evaluate a user function on one draw and return it as a DataArray."""
    value = fn(draw)
    if isinstance(value, xr.DataArray):
        return value.drop_vars([c for c in ("chain", "draw") if c in value.coords])
    value = np.asarray(value, dtype=float)
    if value.ndim:
        dims = tuple(f"{name}_dim_{i}" for i in range(value.ndim))
        return xr.DataArray(value, dims=dims)
    return xr.DataArray(value)
