"""A model specification's fingerprint: a digest of everything that defines its run.

Two models have the same fingerprint when their data, formula, relationship
matrices, control, priors, observation model, recorded parameters, chains, seed
and package version are the same.  A run directory records the fingerprint of
the model that owns it (:mod:`pymegalmm.run.run_dir`).  The digest is computed
from values, not from object identities or pickles, so it is the same in any
process; parts whose value cannot be read (user functions) enter by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["fingerprint", "fingerprint_parts"]


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical encoding of ``obj`` into the hash ``h``."""
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray:{a.dtype.str}:{a.shape};".encode())
        if a.dtype.kind == "O":
            for x in a.ravel():
                _feed(h, x)
        else:
            h.update(a.tobytes())
    elif isinstance(obj, np.generic):
        _feed(h, obj.item())
    elif isinstance(obj, pd.DataFrame):
        h.update(b"DataFrame;")
        _feed(h, list(map(str, obj.columns)))
        _feed(h, list(map(str, obj.dtypes)))
        _feed(h, pd.util.hash_pandas_object(obj, index=True).to_numpy())
    elif isinstance(obj, pd.Series | pd.Index):
        h.update(type(obj).__name__.encode())
        _feed(h, pd.util.hash_pandas_object(obj).to_numpy())
    elif sp.issparse(obj):
        m = sp.csr_matrix(obj)
        h.update(f"sparse:{m.shape};".encode())
        for part in (m.data, m.indices, m.indptr):
            _feed(h, part)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            h.update(f"{f.name}=".encode())
            _feed(h, getattr(obj, f.name))
        h.update(b")")
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(f"{type(obj).__name__}[".encode())
        for x in obj:
            _feed(h, x)
        h.update(b"]")
    elif callable(obj):
        name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
        h.update(f"callable:{name};".encode())
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r};".encode())


def _digest(obj: Any) -> str:
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def fingerprint_parts(spec: Mapping[str, Any]) -> dict[str, str]:
    """Digest of each part of a specification (to say which parts differ)."""
    return {name: _digest(value)[:16] for name, value in spec.items()}


def fingerprint(spec: Mapping[str, Any]) -> str:
    """Digest of a whole specification (a mapping of named parts)."""
    return _digest(dict(spec))
