"""Checks of user arguments at the boundary: types, ranges, integrality, finiteness.

Each helper returns the value converted to its canonical Python type, or raises
an :mod:`pymegalmm.errors` exception whose message names the argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer (``2.0`` accepted, ``2.5``, ``True`` and strings refused) within bounds."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be an integer, got {_describe(value)} "
                             f"({type(value).__name__})")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise InputError(f"{name} must be a whole number, got {_describe(value)}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise InputError(f"{name} must be <= {maximum}, got {out}")
    return out


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False,
                allow_inf: bool = False) -> float:
    """A real number (not bool), finite unless ``allow_inf``, within ``[low, high]``.

    ``low_open`` / ``high_open`` exclude the bound.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {_describe(value)} "
                             f"({type(value).__name__})")
    out = float(value)
    if math.isnan(out) or (not allow_inf and math.isinf(out)):
        raise InputError(f"{name} must be a finite number, got {value}")
    if low is not None and (out < low or (low_open and out == low)):
        raise InputError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (out > high or (high_open and out == high)):
        raise InputError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return out


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy booleans accepted; strings and numbers refused)."""
    if not isinstance(value, bool | np.bool_):
        raise InputTypeError(f"{name} must be True or False, got {_describe(value)} "
                             f"({type(value).__name__})")
    return bool(value)
