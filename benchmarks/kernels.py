"""The hot kernels of one iteration, alone: milliseconds, GFLOP/s and the DGEMM rate.

Usage::

    python benchmarks/kernels.py                       # t = 1000 and 20000, n = 500
    python benchmarks/kernels.py --t 5000 --n 500 --grid 20 --p 16

Times, on the kernels' default OpenMP threads with the BLAS library on one thread (as
the sampler runs them; :func:`pymegalmm.linalg.sampling_threads`), the compiled
kernels behind the column-LMM step on ``n x t`` random data of the scaling case of
``benchmarks/iteration.py`` (``G`` grid points, ``p = 15`` factors + 1 fixed effect):

- ``grid_sums_of_squares``: ``SS[j, g] = sum_i W[g, i] E[i, j]^2`` (steps 2 and 4),
  ``2 G n t`` flops;
- ``weighted_cross_products``: ``X' diag(W_g) y_j`` and ``y_j' diag(W_g) y_j`` (step 1),
  ``2 p n t`` flops;
- ``weighted_grams``: ``X' diag(W_g) X`` for every grid point (step 1),
  ``2 G n p^2`` flops;
- ``sample_diagonal_effects``: the random effects and the residual (steps 2 and 5),
  ``n t`` elements, with a separate residual and written in place of its base;
- ``sample_coefficients``: the regression of step 1, ``p x p`` per trait;
- the residuals ``E_flat = y - X1 a`` and ``E = E_flat - F Lambda`` as two tiled products
  (``gemm_columns``) then the quadratic forms (``grid_sums_of_squares``), against
  ``subtract_two_products`` alone and with the quadratic forms in the same pass;
- the random effects' ``n x t`` standard normals in the sampler's blocks
  (``fill_random_blocks``) from PCG64 and from SFC64 child generators;

beside the DGEMM rate measured in the same process (NumPy, a square product, the
same threads as the kernels) and, for the three products, NumPy's own product of
the same shapes on those threads (``(E o E)' W'``, ``X' (W o Y)``).  Then the ARD
prior's whole update (step 7: ``phi`` and 100 sweeps of ``delta``, kernel
``sample_ard_delta``), ``ARDPrior().update`` with ``k`` factors and ``t`` traits
(``--ard K T ...``; default 15 x 1000, the scaling case, 20 x 60 and 15 x 19, the
vignette's), chained from its own output after 20 updates of warm-up, on loadings
that shrink with the factor.  Last, the rotations ``Q' X`` of a trait group's rows
(``--rotations N ...``, default 250 and 502, the vignette's largest): the tiled
``pymegalmm.linalg.matmul`` reading ``Q`` transposed in place (``trans_a``, what the
back-ends do) beside NumPy's ``Q.T @ X``, for 1 to 15 columns (``dgemv`` tiles up to
``GEMV_MAX_COLUMNS``, ``dgemm`` tiles above), with ``Q`` in cache (one matrix timed
again and again) and out of it (32 MB of distinct matrices in turn, as the vignette's 16
groups and its records touch them).  Needs an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_average, table, time_products  # noqa: E402


def dgemm_rate(threads: int) -> float:
    """Flop/s of a 1000 x 1000 x 1000 NumPy product on ``threads`` BLAS threads."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((1000, 1000)), rng.standard_normal((1000, 1000))
    with threadpool_limits(threads):
        seconds = time_products([("dgemm", lambda: A @ B)])["seconds"]
    return 2e9 / seconds


def case(n: int, t: int, G: int, p: int, threads: int) -> list[list[str]]:
    """Rows of the table for one shape."""
    from pymegalmm import _kernels as K

    rng = np.random.default_rng(1)
    E = np.asfortranarray(rng.standard_normal((n, t)))
    base = np.asfortranarray(rng.standard_normal((n, t)))
    z = np.asfortranarray(rng.standard_normal((n, t)))
    X = np.ascontiguousarray(rng.standard_normal((n, p)))
    h_grid = np.linspace(0.0, 0.95, G)
    d = np.sort(rng.gamma(1.0, 2.0, size=n))[::-1].copy()
    W = np.ascontiguousarray(1.0 / (h_grid[:, None] * d[None, :] + 1.0 - h_grid[:, None]))
    W_T = np.ascontiguousarray(W.T)
    gi = rng.integers(0, G, size=t).astype(np.intp)
    used = np.arange(G, dtype=np.intp)
    tau = rng.gamma(2.0, 1.0, size=t)
    inv, sqrt_inv = K.effect_tables(d, h_grid)  # per grid point, once per model
    SS, XtWy, yWy = np.empty((t, G)), np.empty((p, t), order="F"), np.empty(t)
    gram = np.empty((G, p, p))
    v, res = np.empty((n, t), order="F"), np.empty((n, t), order="F")
    # the regression's inputs: p - 1 penalised coefficients and 1 flat, G Gram matrices
    Xg = rng.standard_normal((n, p))
    grams = np.ascontiguousarray(np.stack([Xg.T @ (w[:, None] * Xg) for w in W]))
    XtWy_c = np.asfortranarray(rng.standard_normal((p, t)) * 10.0)
    yWy_c = np.abs(rng.standard_normal(t)) * 1000.0 + 500.0
    prior = np.asfortranarray(rng.gamma(2.0, 1.0, size=(p - 1, t)))
    rate, gam = np.full(t, 2.0), rng.gamma(250.0, 1.0, size=t)
    z_c, coef, tau_out = (np.asfortranarray(rng.standard_normal((p, t))),
                          np.empty((p, t), order="F"), np.empty(t))
    # the residual products: one fixed effect, p - 1 factors
    X1, B1 = np.ones((n, 1), order="F"), np.asfortranarray(rng.standard_normal((1, t)))
    XF = np.asfortranarray(rng.standard_normal((n, p - 1)))
    BF = np.asfortranarray(rng.standard_normal((p - 1, t)))
    C1, C2 = np.empty((n, t), order="F"), np.empty((n, t), order="F")
    # the random effects' normals in the sampler's blocks
    from pymegalmm.linalg import RNG_BLOCK
    width = max(1, RNG_BLOCK // n)
    n_blocks, z_fill = -(-t // width), np.empty((n, t), order="F")
    K.set_num_threads(threads)
    products = [
        ("grid_sums_of_squares", lambda: K.grid_sums_of_squares(E, W_T, SS)),
        ("weighted_cross_products", lambda: K.weighted_cross_products(X, E, W, gi, XtWy, yWy)),
        ("weighted_grams", lambda: K.weighted_grams(X, W, used, gram)),
        ("sample_diagonal_effects",
         lambda: K.sample_diagonal_effects(E, d, h_grid, gi, tau, z, v, base, res, inv=inv,
                                           sqrt_inv=sqrt_inv)),
        ("  the same, residual in place of base",  # what the column-LMM step does
         lambda: K.sample_diagonal_effects(E, d, h_grid, gi, tau, z, v, res, res, inv=inv,
                                           sqrt_inv=sqrt_inv)),
        ("sample_coefficients",
         lambda: K.sample_coefficients(grams, gi, XtWy_c, yWy_c, prior, tau, rate, gam, z_c,
                                       coef, tau_out)),
        ("two gemm_columns (y - X1 a, - F L)",
         lambda: (K.gemm_columns(X1, B1, C1, -1.0, 1.0, source=E),
                  K.gemm_columns(XF, BF, C2, -1.0, 1.0, source=C1))),
        ("  + grid_sums_of_squares", lambda: K.grid_sums_of_squares(C2, W_T, SS)),
        ("subtract_two_products", lambda: K.subtract_two_products(E, X1, B1, C1, XF, BF, C2)),
        ("  with the quadratic forms",
         lambda: K.subtract_two_products(E, X1, B1, C1, XF, BF, C2, weights=W_T, sums_out=SS)),
        ("n x t normals, PCG64 blocks",
         lambda: K.fill_random_blocks([np.random.PCG64(b) for b in range(n_blocks)], z_fill,
                                      width, False, 1.0)),
        ("n x t normals, SFC64 blocks (linalg)",
         lambda: K.fill_random_blocks([np.random.SFC64(b) for b in range(n_blocks)], z_fill,
                                      width, False, 1.0)),
    ]
    if not hasattr(K, "weighted_grams"):  # an older build (before 0.2.0): skip it
        products = [prod for prod in products if prod[0] != "weighted_grams"]
    with threadpool_limits(1, user_api="blas"):  # the kernels' dgemm calls: 1 BLAS thread
        kernels = time_products(products)["per_product"]
    with threadpool_limits(threads):  # NumPy's products of the same shapes
        numpy = time_products([
            ("grid_sums_of_squares", lambda: (E * E).T @ W_T),
            ("weighted_cross_products", lambda: X.T @ (W[gi].T * E)),
            ("weighted_grams", lambda: np.einsum("gi,ia,ib->gab", W, X, X, optimize=True)),
        ])["per_product"]
    flops = {"grid_sums_of_squares": 2.0 * G * n * t,
             "weighted_cross_products": 2.0 * p * n * t,
             "weighted_grams": 2.0 * G * n * p * p}
    rows = []
    for name, seconds in kernels.items():
        f = flops.get(name)
        rows.append([f"t={t} {name}", f"{seconds * 1e3:.2f}",
                     "-" if f is None else f"{f / seconds / 1e9:.1f}",
                     "-" if name not in numpy else f"{numpy[name] * 1e3:.2f}"])
    return rows


def ard_case(k: int, t: int) -> list[str]:
    """Row of the ARD table: milliseconds per ``ARDPrior().update`` for ``k x t`` loadings."""
    from pymegalmm.priors import ARDPrior

    rng = np.random.default_rng(1)
    prior = ARDPrior()
    Lambda = np.asfortranarray(rng.standard_normal((k, t)) * np.exp(-0.3 * np.arange(k))[:, None])
    tau = rng.gamma(4.0, 0.5, size=t)
    state = [{"Lambda_phi": np.ones((k, t), order="F"), "delta": np.ones(k)}]

    def update() -> None:
        state[0] = prior.update(Lambda, tau, state[0], rng)

    for _ in range(20):
        update()
    seconds = time_products([("ard", update)], min_repeats=50, min_seconds=0.5)["seconds"]
    return [f"k={k} t={t}", f"{seconds * 1e3:.3f}"]


def rotation_rows(n: int, threads: int) -> list[list[str]]:
    """Rows of the rotations table: microseconds per ``Q' X`` for ``X`` with c columns."""
    from pymegalmm import _kernels as K
    from pymegalmm.linalg import matmul

    K.set_num_threads(threads)
    rng = np.random.default_rng(2)
    cold = [np.asfortranarray(rng.standard_normal((n, n)))
            for _ in range(max(1, 2**22 // (n * n)))]  # 32 MB
    Q = cold[0]
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for c in (1, 2, 4, 8, 15):
            X = np.asfortranarray(rng.standard_normal((n, c)))
            turn = iter(range(10**9))
            times = time_products(
                [("tiled", lambda X=X: matmul(Q, X, trans_a=True)),
                 ("numpy", lambda X=X: Q.T @ X),
                 ("cold", lambda X=X, turn=turn: matmul(cold[next(turn) % len(cold)], X,
                                                        trans_a=True))],
                min_repeats=50, min_seconds=0.3)["per_product"]
            path = "dgemv" if c <= K.GEMV_MAX_COLUMNS else "dgemm"
            rows.append([f"{n} x {n} x {c}", path] + [f"{times[k] * 1e6:.0f}"
                                                      for k in ("tiled", "numpy", "cold")])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--grid", type=int, default=20, help="grid points G")
    parser.add_argument("--p", type=int, default=16, help="regressors (factors + fixed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: the kernels' default)")
    parser.add_argument("--ard", type=int, nargs="+", default=[15, 1000, 20, 60, 15, 19],
                        help="ARD update sizes, pairs of factors and traits")
    parser.add_argument("--rotations", type=int, nargs="+", default=[250, 502],
                        help="rows n of the rotations Q' X")
    args = parser.parse_args(argv)
    if len(args.ard) % 2:
        parser.error("--ard takes pairs: factors traits [factors traits ...]")
    from pymegalmm import _kernels as K

    threads = args.threads or K.openmp_max_threads()
    print(f"load average before: {load_average()}")
    rate = dgemm_rate(threads)
    print(f"n = {args.n}, G = {args.grid}, p = {args.p}, {threads} kernel thread(s); "
          f"DGEMM rate (1000^3, {threads} thread(s)): {rate / 1e9:.1f} GFLOP/s")
    rows = [row for t in args.t for row in case(args.n, t, args.grid, args.p, threads)]
    print(table(["kernel", "ms", "GFLOP/s", "NumPy ms"], rows))
    pairs = list(zip(args.ard[::2], args.ard[1::2], strict=True))
    print("\nARD update (phi and 100 delta sweeps), one call:")
    print(table(["factors x traits", "ms"], [ard_case(k, t) for k, t in pairs]))
    print(f"\nRotations Q' X, microseconds, {threads} kernel thread(s):")
    print(table(["n x n x columns", "tiles", "matmul (trans_a)", "NumPy Q.T @ X",
                 "matmul, Q out of cache"],
                [row for n in args.rotations for row in rotation_rows(n, threads)]))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
