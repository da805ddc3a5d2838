"""The fingerprint of a specification: equal values, equal digests; any change, another."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymegalmm.run.fingerprint import fingerprint


def test_trait_matrices_hash_by_value():
    rng = np.random.default_rng(0)
    Y = pd.DataFrame(rng.standard_normal((6, 3)), index=list("abcdef"), columns=["x", "y", "z"])
    Y.iloc[1, 2] = np.nan
    same = Y.copy()
    other_nan = Y.to_numpy().copy()
    other_nan[1, 2] = -np.nan  # another NaN bit pattern: the same missing cell
    assert fingerprint({"Y": Y}) == fingerprint({"Y": same})
    assert fingerprint({"Y": Y}) == fingerprint({"Y": pd.DataFrame(other_nan, Y.index,
                                                                   Y.columns)})
    changed = Y.copy()
    changed.iloc[0, 0] += 1e-12
    relabelled = Y.rename(index={"a": "A"})
    recolumned = Y.rename(columns={"x": "w"})
    as_float32 = Y.astype(np.float32)
    digests = {fingerprint({"Y": d}) for d in (Y, changed, relabelled, recolumned, as_float32)}
    assert len(digests) == 5


def test_mixed_data_frames_hash_by_column():
    data = pd.DataFrame({"Line": ["L1", "L2", "L3"], "Env": ["a", "b", "a"], "x": [1.0, 2, 3]})
    assert fingerprint({"d": data}) == fingerprint({"d": data.copy()})
    changed = data.assign(Env=["a", "b", "b"])
    assert fingerprint({"d": data}) != fingerprint({"d": changed})
