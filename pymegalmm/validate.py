"""Checks of user arguments at the boundary: types, ranges, integrality, finiteness.

Each helper returns the value converted to its canonical Python type, or raises
an :mod:`pymegalmm.errors` exception whose message names the argument.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError, LabelError


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
        raise InputError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value}")
    if high is not None and (out > high or (high_open and out == high)):
        raise InputError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value}")
    return out


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy booleans accepted; strings and numbers refused)."""
    if not isinstance(value, bool | np.bool_):
        raise InputTypeError(f"{name} must be True or False, got {_describe(value)} "
                             f"({type(value).__name__})")
    return bool(value)


def check_instance(name: str, value: Any, cls: type | tuple[type, ...], example: str) -> Any:
    """``value`` if it is an instance of ``cls``; a class given instead gets a hint."""
    if isinstance(value, type) and isinstance(cls, type) and issubclass(value, cls):
        raise InputTypeError(f"{name} must be an instance, e.g. {value.__name__}(), not the class")
    if not isinstance(value, cls):
        raise InputTypeError(f"{name} must be {example}, got {type(value).__name__}")
    return value


def check_seed(value: Any) -> int | None:
    """``seed``: None or a non-negative integer (NumPy's ``SeedSequence`` entropy)."""
    if value is None:
        return None
    return check_int("seed", value, minimum=0)


def check_names(name: str, value: Any, allowed: Iterable[str]) -> list[str]:
    """A list of distinct names among ``allowed`` (a single string is refused: wrap it)."""
    allowed = list(allowed)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InputTypeError(f"{name} must be a list of names, e.g. [{value!r}], got "
                             f"{type(value).__name__}")
    names = list(value)
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise InputTypeError(f"{name} must hold names (str), got {bad[:5]}")
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise LabelError(f"{name}: cannot use {unknown}; choose among {sorted(allowed)}")
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise InputError(f"{name} names {dup} more than once")
    return names


def check_functions(value: Any, taken: Iterable[str] = ()) -> dict[str, Any]:
    """``functions``: a mapping of names (str) to callables, or None; names not in ``taken``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputTypeError("functions must be a dict of name -> function of a one-draw "
                             f"Dataset, got {type(value).__name__}")
    for key, fn in value.items():
        if not isinstance(key, str):
            raise InputTypeError(f"functions: names must be str, got {key!r}")
        if not callable(fn):
            raise InputTypeError(f"functions[{key!r}] must be callable, got "
                                 f"{type(fn).__name__}")
    clash = sorted(set(value) & set(taken))
    if clash:
        raise InputError(f"functions: the name(s) {clash} are taken by the posterior's own "
                         "variables; choose other names")
    return dict(value)


def check_path(name: str, value: Any) -> Path:
    """A path (str or path-like) that is not an existing file."""
    if not isinstance(value, str | os.PathLike):
        raise InputTypeError(f"{name} must be a path (str or os.PathLike), got "
                             f"{_describe(value)}")
    if not os.fspath(value):
        raise InputError(f"{name} must not be empty (it would be the current directory); "
                         "give a folder name, e.g. 'MegaLMM_run'")
    path = Path(value)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"{name} {str(path)!r}: {str(p)!r} is an existing file, not a "
                             "directory")
    return path
