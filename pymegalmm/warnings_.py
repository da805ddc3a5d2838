"""Warnings about data that will fit, but not the way a user probably expects.

Issued once, when the model is set up: fixed effects the data cannot identify,
data far from the scale the default priors assume, and relationship matrices far
from the scale of a relationship matrix.
"""

from __future__ import annotations

import warnings

import numpy as np

from .design import Design
from .observation.base import LatentScale
from .priors import Priors

#: Variances further than this factor from the priors' scale (about 1) trigger a warning.
SCALE_FACTOR = 100.0
#: A relationship matrix whose mean diagonal is further than this factor from 1 warns.
K_SCALE_FACTOR = 10.0


def warn_about_data(design: Design, latent: LatentScale, scale_Y: bool, priors: Priors,
                    drop_fixed: np.ndarray) -> None:
    """Warn about unidentifiable fixed effects and data or K far from the priors' scale.

    Parameters
    ----------
    design : the model's design (names).
    latent : the data on the sampler's scale.
    scale_Y : ``Control.scale_Y``.
    priors : the model's priors.
    drop_fixed : (t, b1) flags of fixed effects fixed at 0 per trait.
    """
    for re in design.random:
        scale = float(np.mean(np.diag(re.K)))
        if not 1 / K_SCALE_FACTOR <= scale <= K_SCALE_FACTOR:
            warnings.warn(
                f"the relationship matrix of {re.group!r} has mean diagonal {scale:.3g}; the "
                "priors and the h2 grid assume K scaled like a relationship matrix (mean "
                f"diagonal about 1): divide K by its mean diagonal (relmat={{{re.group!r}: "
                "K / np.mean(np.diag(K))}), which changes nothing but the scale of its "
                "variance", UserWarning, stacklevel=3)
    t = drop_fixed.shape[0]
    for c in np.flatnonzero(drop_fixed.any(axis=0)):
        name, k = str(design.fixed_names[c]), int(drop_fixed[:, c].sum())
        if k == t:
            message = (f"fixed-effect column {name!r} is not identifiable for any trait "
                       "(a linear combination of earlier columns); its coefficients are fixed "
                       "at 0. Drop it from the formula.")
        else:
            message = (f"fixed-effect column {name!r} is not identifiable from the observed "
                       f"cells of {k} of {t} traits (e.g. a level never observed in those "
                       "traits); its coefficient is fixed at 0 for those traits, as R MegaLMM "
                       "does.")
        warnings.warn(message, UserWarning, stacklevel=3)
    if scale_Y:
        return
    enough = np.sum(latent.observed, axis=0) >= 2
    var = np.nanvar(latent.Y[:, enough], axis=0, ddof=1)
    var = var[np.isfinite(var) & (var > 0)]
    if not var.size:
        return
    typical = float(np.median(var))
    V = priors.tot_Y_var.V
    if not V / SCALE_FACTOR <= typical <= V * SCALE_FACTOR:
        warnings.warn(
            f"with scale_Y=False the traits' variances (median {typical:.3g}) are far from "
            f"the scale the priors assume (tot_Y_var V = {V:g}, factors of variance about 1): "
            "the priors will dominate. Use scale_Y=True, rescale Y, or set "
            "Priors(tot_Y_var=..., tot_F_var=...) on the data's scale.",
            UserWarning, stacklevel=3)
