"""pymegalmm.linalg's thread contexts: the BLAS is pinned to one thread while sampling."""

from __future__ import annotations

import threadpoolctl

from pymegalmm import linalg


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info()
            if p["user_api"] == "blas"]


def test_single_threaded_blas_pins_and_restores():
    before = _blas_threads()
    assert before, "no BLAS library found"
    with linalg.single_threaded_blas():
        assert _blas_threads() == [1] * len(before)
        with linalg.single_threaded_blas():  # nested (a second model): still pinned
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_the_blas_controller_is_built_once():
    """The library scan (about 3 ms) is not repeated at every sample() call."""
    with linalg.sampling_threads(1):
        first = linalg._blas_controller()
    with linalg.sampling_threads(1):
        assert linalg._blas_controller() is first
    assert _blas_threads() and all(n >= 1 for n in _blas_threads())
