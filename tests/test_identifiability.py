"""Fixed effects that a trait's observed cells cannot identify are fixed at 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pymegalmm import MegaLMM, _kernels
from pymegalmm.precompute import unidentifiable_fixed_effects


def _problem(rng, p_pen, n_flat, t, groups=1):
    p = p_pen + n_flat
    n = 40
    gram = np.empty((groups, p, p))
    for g in range(groups):
        X = rng.normal(size=(n, p))
        gram[g] = X.T @ X
    return dict(
        gram=gram,
        gram_index=rng.integers(0, groups, size=t).astype(np.intp),
        XtWy=np.asfortranarray(rng.normal(size=(p, t)) * 5),
        yWy=np.full(t, 500.0) + rng.random(t),
        prior_prec=np.asfortranarray(rng.gamma(2.0, size=(p_pen, t))),
        tau_old=rng.gamma(3.0, size=t),
        tau_rate=np.full(t, 2.5),
        gamma_draw=rng.gamma(24.0, size=t),
        z=np.asfortranarray(rng.normal(size=(p, t))),
    )


def _run(prob, drop=None):
    p, t = prob["XtWy"].shape
    coef = np.empty((p, t), order="F")
    tau = np.empty(t)
    bad = _kernels.sample_coefficients(**prob, coef=coef, tau=tau, drop_flat=drop)
    assert bad == 0
    return coef, tau


def test_dropping_a_column_equals_fitting_the_reduced_design():
    rng = np.random.default_rng(3)
    p_pen, n_flat, t = 4, 3, 7
    prob = _problem(rng, p_pen, n_flat, t, groups=2)
    drop = np.zeros((t, n_flat), dtype=np.uint8)
    drop[1, 0] = drop[4, 2] = drop[5, 1] = 1
    drop[6, :] = 1
    coef, tau = _run(prob, drop)
    for j in range(t):
        keep = [c for c in range(p_pen + n_flat) if c < p_pen or not drop[j, c - p_pen]]
        sub = {
            "gram": np.ascontiguousarray(prob["gram"][:, keep][:, :, keep]),
            "gram_index": prob["gram_index"][[j]],
            "XtWy": np.asfortranarray(prob["XtWy"][keep][:, [j]]),
            "yWy": prob["yWy"][[j]],
            "prior_prec": np.asfortranarray(prob["prior_prec"][:, [j]]),
            "tau_old": prob["tau_old"][[j]],
            "tau_rate": prob["tau_rate"][[j]],
            "gamma_draw": prob["gamma_draw"][[j]],
            "z": np.asfortranarray(prob["z"][keep][:, [j]]),
        }
        c_sub, tau_sub = _run(sub)
        np.testing.assert_allclose(coef[keep, j], c_sub[:, 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(tau[j], tau_sub[0], rtol=1e-12)
        dropped = [c for c in range(p_pen + n_flat) if c not in keep]
        assert np.all(coef[dropped, j] == 0.0)


def test_no_drop_mask_equals_all_zero_mask():
    rng = np.random.default_rng(4)
    prob = _problem(rng, 3, 2, 5)
    a = _run(prob)
    b = _run(prob, np.zeros((5, 2), dtype=np.uint8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_drop_mask_shape_is_checked():
    rng = np.random.default_rng(5)
    prob = _problem(rng, 3, 2, 5)
    with pytest.raises(ValueError, match="drop_flat"):
        _run(prob, np.zeros((5, 3), dtype=np.uint8))


def test_rank_rule_flags_columns_left_to_right():
    X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6.0]])
    obs = np.ones((6, 4), dtype=bool)
    obs[3:, 1] = False  # trait 1: population 2 never observed
    obs[:, 2] = [1, 1, 0, 0, 0, 0]  # trait 2: two rows, both population 1
    obs[:, 3] = [0, 0, 0, 1, 1, 0]  # trait 3: population 2 only -> dummy equals intercept
    drop = unidentifiable_fixed_effects(X, obs)
    assert drop.tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_model_fixes_unobserved_population_effect_at_zero():
    rng = np.random.default_rng(0)
    n, t = 60, 3
    pop = np.repeat(["A", "B"], n // 2)
    lines = [f"L{i:02d}" for i in range(n)]
    Y = pd.DataFrame(rng.normal(size=(n, t)) + (pop == "B")[:, None] * 2.0,
                     index=lines, columns=["E1", "E2", "E3"])
    Y.loc[pop == "B", "E2"] = np.nan  # E2 never sees population B
    data = pd.DataFrame({"Line": lines, "Population": pop}, index=lines)
    m = MegaLMM(Y, "~ Population + (1|Line)", data=data, n_factors=2, h2_divisions=10,
                burn=20, thin=1, seed=2, verbose=False)
    m.sample(60, progress=False)
    b1 = m.posterior["B1"].sel(fixed="Population[T.B]")
    assert np.all(b1.sel(trait="E2").values == 0.0)
    # identified where population B is observed: the simulated shift of 2
    assert abs(float(b1.sel(trait="E1").mean()) - 2.0) < 0.6
