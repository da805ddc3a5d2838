"""Run settings of the sampler, with R MegaLMM 0.9.5's ``MegaLMM_control`` defaults."""

from __future__ import annotations

from dataclasses import dataclass


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
        Steps of the discrete grid of variance proportions per random effect.
        Default 100.  20 is usually enough and much cheaper with several random
        effects (the grid has ``~d^m / m!`` points).
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
        OpenMP threads for the kernels; None uses OpenMP's default.  Results do
        not depend on it.
    """

    n_factors: int = 20
    h2_divisions: int | list[int] = 100
    burn: int = 100
    thin: int = 2
    scale_Y: bool = True
    K_eigen_tol: float = 1e-10
    max_precompute_gb: float = 8.0
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_factors) < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if int(self.burn) < 0:
            raise ValueError(f"burn must be >= 0, got {self.burn}")
        if int(self.thin) < 1:
            raise ValueError(f"thin must be >= 1, got {self.thin}")
        if self.n_threads is not None and int(self.n_threads) < 1:
            raise ValueError(f"n_threads must be >= 1 or None, got {self.n_threads}")
