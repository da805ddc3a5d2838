"""Priors on total precisions and Gamma hyper-priors, in R MegaLMM 0.9.5's parameterisation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariancePrior:
    """Prior on a total precision: ``prec ~ Gamma(shape = nu - 1, rate = nu * V)``.

    This is R MegaLMM's parameterisation (``list(V = ..., nu = ...)``): ``V`` is a
    prior guess of the variance and ``nu`` its weight.

    Parameters
    ----------
    V : float
        Prior variance scale (> 0).
    nu : float
        Prior degrees of freedom (> 1).
    """

    V: float
    nu: float

    def __post_init__(self) -> None:
        if not (self.V > 0 and self.nu > 1):
            raise ValueError(f"VariancePrior needs V > 0 and nu > 1, got V={self.V}, nu={self.nu}")

    @property
    def shape(self) -> float:
        """Gamma shape ``nu - 1``."""
        return self.nu - 1.0

    @property
    def rate(self) -> float:
        """Gamma rate ``nu * V``."""
        return self.nu * self.V


@dataclass(frozen=True)
class GammaPrior:
    """A Gamma(shape, rate) prior."""

    shape: float
    rate: float

    def __post_init__(self) -> None:
        if not (self.shape > 0 and self.rate > 0):
            raise ValueError(f"Gamma prior needs shape > 0 and rate > 0, got {self}")
