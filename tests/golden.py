"""Fixed-seed fits whose draws must never change (the redesign's invariant).

``python tests/golden.py`` records the posteriors of these fits in
``tests/data/golden_draws.npz``; ``tests/test_golden.py`` refits and compares
to the last bit.  The file was recorded with main at 17042ae (before the
redesign) and must not be re-recorded to make a change pass: a change that
alters a draw changes the sampler.

Each fit exercises a different path of the iteration: one random effect with
missing cells imputed every iteration, two chains and a fixed effect (plus a
``reorder_factors`` between two blocks); a missing-data map with several trait
groups; and two random effects, with the low-rank back-end that the model now
chooses for them (``two_effects``) and with the dense back-end forced
(``two_effects_dense``).

The ``two_effects`` draws were re-recorded when the low-rank back-end
(:class:`~pymegalmm.core.random_effects.LowRankRandomEffects`) replaced the dense
one for that fit: a different algorithm (rotated rows, whitened coefficients, a
Woodbury form) for the same model draws other numbers.  The dense back-end's draws
recorded at 17042ae are kept, unchanged, as ``two_effects_dense``.

The ``missing_cells``, ``missing_map`` and ``two_effects`` draws were re-recorded
(issue 15, setup at large n) when the setup's symmetric eigendecompositions moved from
SciPy's default MRRR driver to divide and conquer
(:func:`pymegalmm.linalg.symmetric_eig`: 3x faster on a K with a large cluster of equal
eigenvalues) and a balanced random intercept (``Z'Z = c I``) stopped decomposing
``T'Z'ZT = c diag(lambda)``.  Both give another orthonormal eigenbasis of the same
matrices: the same model in rotated coordinates, which the same random numbers fill
differently.  ``tests/test_setup_reuse.py`` checks the new basis's defining properties
and that the h2 grid's log-determinants and quadratic forms, the only way the data enter
the column LMM, equal the direct dense ones to 1e-10.  The dense back-end's draws did
not change.

The same three fits were re-recorded again (issue 15, the honest floor) when the grid's
quadratic forms ``E_j' V_g^-1 E_j`` and the weighted cross-products ``X' V_g^-1 y_j``
became tiled ``dgemm`` products (``grid_sums_of_squares``, ``weighted_cross_products``
and the diagonal part of ``grid_sums_of_squares_lowrank``: about 3x faster at t = 1000)
instead of row-by-row sums, and the Gram matrices ``X' V_g^-1 X`` one ``dgemm`` per grid
point in use (``weighted_grams``) instead of a product with all ``n x p^2`` row outer
products.  The sums are the same, added in another order: before re-recording, every
draw of the three fits equalled the file recorded for the eigenbasis change to a
relative 2.5e-11 (largest, ``G`` of ``missing_map``) and every h2 grid draw was
identical; ``tests/test_kernels.py`` and ``tests/test_lowrank.py`` check the kernels
against their NumPy references to 1e-10 for any tile width.  The dense back-end's draws
did not change.  In the same round the recorder started to compute ``E[Y]``'s random
effects from ``U_R`` per level of K (a sparse ``Z u_levels`` rather than the dense
``(Z S) v``): ``Eta_mean`` of ``missing_map`` changed in 10 of its 320 cells, by a
relative 2.2e-16, and nothing else.  Then, with several trait groups, the imputed cells'
mean became ``F Lambda + Eta - E`` in the original rows (``E`` the residuals the factor
scores use) instead of the same sum rotated and rotated back: ``missing_map``'s draws
changed by at most 2.8e-12 of each array's largest value, its h2 draws not at all
(``tests/test_missing_model.py`` checks that both formulas agree to 1e-12).

All four fits were re-recorded (issue 15, fifth round) when the ARD prior's ``delta``
sweeps stopped drawing every ``delta_h`` by the inverse CDF from pre-drawn uniforms
(about 1 ms of an iteration at 15 factors, most of it in the incomplete gamma function's
inverse).  A truncated ``delta_h`` whose untruncated gamma puts at most half its mass
below the truncation point is now drawn by rejection from the untruncated gamma, and
``delta_1`` directly, both with NumPy's gamma sampler on the chain's bit generator; the
inverse CDF remains for the other draws, and R's rule (``delta_h = 1`` when
``P(delta_h < 1) > 0.999``) is unchanged.  The conditional distributions are the same but
the random numbers are others, so every draw after the first ``delta`` update differs.
``tests/test_kernels.py`` checks the kernel against its NumPy reference on the same bit
generator and that each draw's probability integral transform is uniform in both
branches (Kolmogorov-Smirnov), and ``tests/test_sbc.py`` checks the default model's
calibration.

In the same round the recorder's ``to_levels`` became the tiled product for large
products (:func:`pymegalmm.linalg.product`; these fits' are small and keep NumPy's), and
a single trait group's ``E[Y]`` is formed in the original rows from ``U_R`` per level (as
with several groups) instead of unrotating the rotated mean.  Only ``missing_cells``'s
recorded ``Eta_mean`` moved, by at most 2.7e-16 of its largest value; the chain's draws
did not change (``tests/test_missing_model.py`` checks both formulas agree to 1e-12).

All four fits were re-recorded (issue 15, sixth round) when the tiled products changed
their summation order in three ways, none changing what is computed: products with at
most four columns became one ``dgemv`` per column tile instead of ``dgemm`` tiles (2-3x
faster on one thread for the rotations of a trait group's one or two traits); the
rotations ``Q' X`` read ``Q`` transposed in place (``dgemm``/``dgemv`` with ``"T"``)
instead of a stored transposed copy, halving the rotations' memory; and with several
trait groups the state keeps ``F`` in the original rows, where step 6 draws it, instead
of unrotating ``rotate(F)`` at the next iteration and in the recorder.  Before
re-recording, every draw of the four fits equalled the file to at most 1.1e-14 of each
array's largest value (``missing_cells``'s ``F``) and every h2 grid draw was identical;
``tests/test_kernels.py`` checks the ``dgemv`` tiles against the product for any thread
count and ``tests/test_missing_model.py`` that ``QtF = rotate(F)`` to 1e-12 with several
groups, through a reorder and an exact resume.  In the same round, random arrays of one
block (:data:`pymegalmm.linalg.RNG_BLOCK` numbers or fewer in whole columns) became draws
of the chain's own generator instead of a child PCG64 seeded from it (seeding one costs
about 6 us, and the vignette's iteration makes 35 such small draws): the same
distributions, other numbers, so every draw changed (``tests/test_random.py`` checks the
distributions and the thread-count independence, ``tests/test_sbc.py`` the calibration).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import pymegalmm.core.precompute as precompute
from pymegalmm import MegaLMM, datasets
from pymegalmm.demo import mask_cells

GOLDEN = Path(__file__).parent / "data" / "golden_draws.npz"
#: numpy and scipy releases whose BLAS/LAPACK (bundled OpenBLAS) reproduce GOLDEN to the
#: last bit (checked with numpy 2.4.6 and scipy 1.17.1, the newest on Python 3.11).  Other
#: releases (numpy 2.2 / 2.5, scipy 1.15 / 1.18 on Python 3.10 / 3.12+) round some
#: products differently in the last bits (relative differences below 1e-9).
BIT_EXACT_WITH = {"numpy": "2.4.", "scipy": "1.17."}
ALL_PARAMS = ("Lambda", "F", "U_F", "U_R", "B1", "F_h2", "resid_h2", "tot_Eta_prec",
              "tot_F_prec", "delta")


def fit_missing_cells() -> MegaLMM:
    """One random effect, 15 % of cells missing, a fixed effect, two chains, a reorder."""
    sim = datasets.simulate_met(n_lines=40, n_envs=8, envs_per_line=(5, 7), n_factors=2,
                                seed=11, n_markers=300)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    Y = Y.mask(mask_cells(Y, 0.15, np.random.default_rng(4)))
    m = MegaLMM(Y, "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                n_factors=4, h2_divisions=10, burn=6, thin=2, chains=2, seed=21,
                record=ALL_PARAMS, verbose=False)
    m.sample(14, progress=False)
    m.reorder_factors()
    m.sample(16, progress=False)
    return m


def fit_missing_map() -> MegaLMM:
    """A missing-data map with several trait groups (predicted-only cells)."""
    sim = datasets.simulate_met(n_lines=40, n_envs=8, envs_per_line=(5, 7), n_factors=2,
                                seed=12, n_markers=300)
    Y, data = datasets.to_wide(sim.Y, ["Line", "Population"], "Env", "Yield")
    Y = Y.mask(mask_cells(Y, 0.25, np.random.default_rng(5)))
    m = MegaLMM(Y, "~ Population + (1|Line)", data=data, relmat={"Line": sim.K},
                n_factors=3, h2_divisions=10, burn=5, thin=1, seed=22, record=ALL_PARAMS,
                verbose=False)
    maps, table = m.missing_data_maps(4)
    groups = table["n_groups"].to_numpy()
    m.set_missing_data_map(maps[int(np.flatnonzero(groups > 1)[0])])
    m.sample(20, progress=False)
    return m


def fit_two_effects() -> MegaLMM:
    """Two random effects (10 plots on 60 rows): the low-rank back-end."""
    sim = datasets.simulate_two_random_effects(n_lines=30, n_reps=2, n_plots=10, t=5, seed=13,
                                              n_markers=300)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"Line": sim.K}, n_factors=2,
                h2_divisions=4, burn=4, thin=2, seed=23, record=ALL_PARAMS, verbose=False)
    m.sample(16, progress=False)
    return m


@contextmanager
def dense_back_end() -> Iterator[None]:
    """Models built inside use the dense back-end for several random effects."""
    before = precompute.LOWRANK_MAX_FRACTION
    precompute.LOWRANK_MAX_FRACTION = -1.0
    try:
        yield
    finally:
        precompute.LOWRANK_MAX_FRACTION = before


def fit_two_effects_dense() -> MegaLMM:
    """The fit of :func:`fit_two_effects` with the dense back-end (one Cholesky per point)."""
    with dense_back_end():
        return fit_two_effects()


FITS = {"missing_cells": fit_missing_cells, "missing_map": fit_missing_map,
        "two_effects": fit_two_effects, "two_effects_dense": fit_two_effects_dense}


def draws(m: MegaLMM) -> dict[str, np.ndarray]:
    """Every recorded parameter, derived quantity and posterior mean of a fit."""
    post = m.posterior
    out = {name: post[name].values for name in (*ALL_PARAMS, "U", "h2", "G", "R")}
    out["Eta_mean"] = m.posterior_means["Eta_mean"].values
    return out


def record(path: Path = GOLDEN) -> None:
    """Write the golden draws of every fit to ``path``."""
    arrays = {f"{fit}/{name}": value for fit, build in FITS.items()
              for name, value in draws(build()).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    record(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN)
