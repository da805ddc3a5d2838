"""Run settings of the sampler, with R MegaLMM 0.9.5's ``MegaLMM_control`` defaults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .validate import check_bool, check_float, check_int


@dataclass
class Control:
    """Settings of a MegaLMM run.

    Defaults follow R MegaLMM 0.9.5's ``MegaLMM_control()``.

    Parameters
    ----------
    n_factors : int
        Number of latent factors ``k`` (R: ``K``).  Default 20.  Too few factors
        leave genetic covariance in the trait-specific residuals; too many cost
        time but are shrunk away by the ARD prior.  A rule of thumb: start with
        about twice the number you expect, look at the posterior of ``delta`` /
        the loadings' column norms, and drop factors that carry nothing.
    h2_divisions : int or list of int
        Steps of the discrete grid of variance proportions per random effect
        (>= 2: with 1 the grid holds only h2 = 0).  Default 100.  20 is usually
        enough and much cheaper with several random effects (the grid has
        ``~d^m / m!`` points).
    burn : int
        Iterations discarded before recording.  Default 100.
    thin : int
        Record every ``thin``-th iteration after ``burn``.  Default 2.
    scale_Y : bool
        Centre and scale each trait by its observed mean and SD before fitting;
        every reported quantity is transformed back.  Default True.
    K_eigen_tol : float
        Eigenvalues of K below this are dropped (reduced-rank K).  Default 1e-10.
    max_precompute_gb : float
        Refuse to allocate precomputed factors above this size (several random
        effects need ``G (n^2 + r^2)`` doubles).  Default 8.
    n_threads : int or None
        OpenMP threads for the kernels; None uses every core, or one thread for
        small data (fewer than 150,000 cells, where a second thread costs more than
        it gives).  With chains in parallel processes, the cores are split between
        them.  Results do not depend on it.
    h2_step_size : float or None
        None (default): each trait's ``resid_h2`` and each factor's ``F_h2`` are drawn
        from their exact discrete conditional, evaluated at every grid point.  A number
        in (0, 1]: instead, one Metropolis-Hastings step per iteration on the grid,
        which needs the likelihood at two grid points per column, not ``G``: cheaper
        for large grids and several random effects, at the price of slower mixing
        of h2.  The proposal is uniform over the grid points other than the current
        one whose h2 vector is within ``h2_step_size`` of it in max-norm
        (``max_m |h_m' - h_m| <= h2_step_size``); the acceptance ratio includes the
        Hastings correction ``|N(h)| / |N(h')|`` for neighbourhoods ``N`` of different
        sizes.  R MegaLMM's ``h2_step_size`` uses an L1 neighbourhood (``< step``),
        falls back to the whole grid when it is empty, and applies that correction
        reversed (``docs/sampler.md``), so the two differ.  A step smaller than the
        grid's spacing (``1 / h2_divisions``) is refused when the model is built.

    Every field is checked when the object is made (and by ``dataclasses.replace``):
    integers must be whole numbers (``3.0`` is accepted, ``2.7`` is refused),
    flags must be booleans.
    """

    n_factors: int = 20
    h2_divisions: int | list[int] = 100
    burn: int = 100
    thin: int = 2
    scale_Y: bool = True
    K_eigen_tol: float = 1e-10
    max_precompute_gb: float = 8.0
    n_threads: int | None = None
    h2_step_size: float | None = None

    def __post_init__(self) -> None:
        self.n_factors = check_int("n_factors", self.n_factors, minimum=1)
        self.h2_divisions = check_divisions(self.h2_divisions)
        self.burn = check_int("burn", self.burn, minimum=0)
        self.thin = check_int("thin", self.thin, minimum=1)
        self.scale_Y = check_bool("scale_Y", self.scale_Y)
        self.K_eigen_tol = check_float("K_eigen_tol", self.K_eigen_tol, low=0.0)
        self.max_precompute_gb = check_float("max_precompute_gb", self.max_precompute_gb,
                                             low=0.0, low_open=True, allow_inf=True)
        if self.n_threads is not None:
            self.n_threads = check_int("n_threads", self.n_threads, minimum=1)
        if self.h2_step_size is not None:
            self.h2_step_size = check_float("h2_step_size", self.h2_step_size, low=0.0,
                                            low_open=True, high=1.0)


def check_divisions(value: object) -> int | list[int]:
    """``h2_divisions``: an integer >= 2, or a non-empty list of them (one per random effect).

    One division would leave the grid with ``h2 = 0`` only: no random-effect variance.
    """
    if isinstance(value, list | tuple | np.ndarray):
        if len(value) == 0:
            raise InputError("h2_divisions must not be empty")
        return [check_int(f"h2_divisions[{i}]", v, minimum=2) for i, v in enumerate(value)]
    return check_int("h2_divisions", value, minimum=2)
