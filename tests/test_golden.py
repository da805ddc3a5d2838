"""Draws are bit-identical to those recorded before the redesign (tests/golden.py).

Bit for bit with the numpy/scipy builds that recorded them (``golden.BIT_EXACT_WITH``);
with other BLAS/LAPACK builds equal up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy
from golden import BIT_EXACT_WITH, FITS, GOLDEN, draws

#: whether this numpy/scipy is the linear-algebra build the golden draws were recorded with
EXACT = (np.__version__.startswith(BIT_EXACT_WITH["numpy"])
         and scipy.__version__.startswith(BIT_EXACT_WITH["scipy"]))


@pytest.mark.parametrize("fit", sorted(FITS))
def test_draws_bit_identical_to_golden(fit):
    with np.load(GOLDEN) as golden:
        expected = {name.split("/", 1)[1]: golden[name] for name in golden.files
                    if name.startswith(f"{fit}/")}
    got = draws(FITS[fit]())
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        if EXACT:
            # exact equality: any change in the order of random draws or of floating-point
            # operations shows up here
            np.testing.assert_array_equal(got[name], value, err_msg=f"{fit}: {name}")
        else:
            # another BLAS/LAPACK build rounds differently in the last bits: only a change
            # in the order of random draws (or a large numerical change) shows up
            np.testing.assert_allclose(got[name], value, rtol=1e-8, atol=1e-11,
                                       err_msg=f"{fit}: {name}")
