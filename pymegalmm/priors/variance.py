"""Priors on total precisions and Gamma hyper-priors, in R MegaLMM 0.9.5's parameterisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..validate import check_float


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
        object.__setattr__(self, "V", check_float("V", self.V, low=0.0, low_open=True))
        object.__setattr__(self, "nu", check_float("nu", self.nu, low=1.0, low_open=True))

    @property
    def shape(self) -> float:
        """Gamma shape ``nu - 1``."""
        return self.nu - 1.0

    @property
    def rate(self) -> float:
        """Gamma rate ``nu * V``."""
        return self.nu * self.V

    def sample_prior(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` precisions drawn from ``Gamma(nu - 1, rate nu V)`` (for simulations).

        Parameters
        ----------
        size : int
            Number of draws (traits or factors).
        rng : numpy.random.Generator
            Source of the random numbers.

        Returns
        -------
        numpy.ndarray
            ``(size,)`` precisions.
        """
        return rng.gamma(self.shape, 1.0 / self.rate, size=int(size))


@dataclass(frozen=True)
class GammaPrior:
    """A Gamma(shape, rate) prior."""

    shape: float
    rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", check_float("shape", self.shape, low=0.0,
                                                      low_open=True))
        object.__setattr__(self, "rate", check_float("rate", self.rate, low=0.0, low_open=True))

    def sample_prior(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` draws from ``Gamma(shape, rate)`` (for simulations)."""
        return rng.gamma(self.shape, 1.0 / self.rate, size=int(size))


def as_prior(name: str, value: Any, cls: type) -> Any:
    """``value`` as a ``cls``; a mapping with exactly its fields (R's ``list(V = , nu = )``) works.

    Parameters
    ----------
    name : the argument's name, for messages.
    value : a ``cls`` instance or a mapping of its fields.
    cls : a prior dataclass (:class:`VariancePrior`, :class:`GammaPrior`, ``BetaPrior``).
    """
    fields = tuple(f.name for f in dataclasses.fields(cls))
    example = ", ".join(f"{f}=..." for f in fields)
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        if set(value) != set(fields):
            raise InputError(f"{name} must have exactly the keys {list(fields)}, got "
                             f"{sorted(map(str, value))}; e.g. {cls.__name__}({example})")
        try:
            return cls(**value)
        except (InputError, InputTypeError) as exc:
            raise type(exc)(f"{name}: {exc}") from None
    raise InputTypeError(f"{name} must be a {cls.__name__}({example}) or a dict with keys "
                         f"{list(fields)}, got {type(value).__name__} {value!r}")
