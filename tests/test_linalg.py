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


def test_product_is_tiled_when_large_and_numpy_when_small(monkeypatch):
    """``product`` equals ``A @ B`` either way; the tiled path is chosen by shape alone."""
    import numpy as np

    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((40, 30)), rng.standard_normal((30, 7))
    calls = []
    real = linalg.matmul
    monkeypatch.setattr(linalg, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = linalg.product(A, B)
    assert not calls
    monkeypatch.setattr(linalg, "TILED_FROM_FLOPS", 2 * 40 * 30 * 7)  # now "large"
    large = linalg.product(A, B)
    assert calls and large.flags.f_contiguous
    expected = A @ B
    scale = np.abs(A) @ np.abs(B)
    assert np.all(np.abs(small - expected) <= 1e-12 * scale)
    assert np.all(np.abs(large - expected) <= 1e-12 * scale)


def test_product_of_few_columns_takes_the_dgemv_tiles(monkeypatch):
    """At most GEMV_MAX_COLUMNS columns: the tiled matmul (dgemv tiles) whatever the size."""
    import numpy as np

    from pymegalmm._config import kernels_module

    rng = np.random.default_rng(4)
    A = rng.standard_normal((40, 30))
    calls = []
    real = linalg.matmul
    monkeypatch.setattr(linalg, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    for c in range(1, kernels_module().GEMV_MAX_COLUMNS + 2):
        calls.clear()
        B = rng.standard_normal((30, c))
        got = linalg.product(A, B)
        assert bool(calls) == (c <= kernels_module().GEMV_MAX_COLUMNS), c
        assert np.all(np.abs(got - A @ B) <= 1e-12 * (np.abs(A) @ np.abs(B)))
