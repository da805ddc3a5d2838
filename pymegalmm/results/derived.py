"""Quantities derived per draw from the recorded parameters: ``U``, ``G``, ``R``, ``h2``.

Formulas (user's scale, factors of unit variance)::

    U   = U_F Lambda + U_R
    G_m = Lambda' diag(F_h2[m]) Lambda + diag(resid_h2[m] / tot_Eta_prec)
    R   = Lambda' diag(1 - sum_m F_h2[m]) Lambda + diag((1 - sum_m resid_h2[m]) / tot_Eta_prec)
    h2[m, j] = G_m[j, j] / (sum_m G_m[j, j] + R[j, j])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from .schema import DERIVED_NEEDS, DESCRIPTIONS


def variance_diagonals(lam: np.ndarray, fh2: np.ndarray, rh2: np.ndarray, var_r: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Diagonals of ``G_m`` and ``R`` per draw, without forming the ``t x t`` matrices.

    Parameters
    ----------
    lam : (c, d, k, t) loadings.
    fh2 : (c, d, m, k) factors' variance proportions.
    rh2 : (c, d, m, t) traits' variance proportions.
    var_r : (c, d, t) ``1 / tot_Eta_prec``.

    Returns
    -------
    tuple of numpy.ndarray
        ``G_m[j, j]`` as ``(c, d, m, t)`` and ``R[j, j]`` as ``(c, d, t)``.
    """
    diag_G = np.einsum("cdkt,cdmk->cdmt", lam**2, fh2) + rh2 * var_r[:, :, None, :]
    resid_f = 1.0 - fh2.sum(axis=2)  # (c, d, k)
    resid_r = 1.0 - rh2.sum(axis=2)  # (c, d, t)
    diag_R = np.einsum("cdkt,cdk->cdt", lam**2, resid_f) + resid_r * var_r
    return diag_G, diag_R


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
        diag_G, diag_R = variance_diagonals(lam, fh2, rh2, var_r)
        resid_f = 1.0 - fh2.sum(axis=2)  # (c, d, k)
        resid_r = 1.0 - rh2.sum(axis=2)  # (c, d, t)
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
