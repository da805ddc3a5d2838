"""Tests of :mod:`pymegalmm.results.tables`: tidy tables, the printed summary, R-hat and ESS.

Every number of every table is checked against an independent computation from
``m.posterior`` (NumPy on the raw draws, :func:`hpd_interval` for the intervals);
R-hat and ESS are checked against ArviZ.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pymegalmm import MegaLMM, datasets
from pymegalmm.errors import LabelError
from pymegalmm.results.derived import add_derived
from pymegalmm.results.diagnostics import diagnostics, factor_report
from pymegalmm.results.summaries import hpd_interval
from pymegalmm.results.tables import (
    RESIDUAL,
    Summary,
    convergence_table,
    ess_bulk,
    factor_table,
    fixed_effects,
    genetic_correlations,
    rhat,
    variance_components,
)

RTOL = 1e-12


@pytest.fixture(scope="module")
def fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, xr.Dataset, str]:
    """A small two-chain fit: its posterior, the same draws loaded lazily from disk, its text."""
    sim = datasets.simulate_factor_data(n=80, t=5, k_true=2, n_markers=300, seed=1)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=3,
                h2_divisions=10, burn=50, seed=1, chains=2, verbose=False,
                run_dir=tmp_path_factory.mktemp("tables") / "run").sample(150, progress=False)
    post = m.posterior
    text = repr(m)
    m.save_posterior_chunk()
    return post, m.load_posterior(), text


@pytest.fixture(scope="module")
def post(fit: tuple[xr.Dataset, xr.Dataset, str]) -> xr.Dataset:
    return fit[0]


def pooled(da: xr.DataArray) -> np.ndarray:
    """Draws of ``da`` as ``(n_draws, ...)`` with every chain pooled."""
    x = da.transpose("chain", "draw", ...).values
    return x.reshape(-1, *x.shape[2:])


def diag(da: xr.DataArray) -> xr.DataArray:
    """Diagonal over ``trait, trait2``."""
    return xr.DataArray(np.diagonal(da.values, axis1=-2, axis2=-1),
                        dims=da.dims[:-1], coords={d: da[d] for d in da.dims[:-1]})


# --------------------------------------------------------------------------------------
# tables against the posterior
# --------------------------------------------------------------------------------------


def test_variance_components(post: xr.Dataset) -> None:
    vc = variance_components(post)
    traits = post["trait"].values.tolist()
    assert list(vc.columns) == ["trait", "component", "h2_mean", "h2_lower", "h2_upper",
                                "variance_mean"]
    assert vc["trait"].tolist() == [t for t in traits for _ in range(2)]
    assert vc["component"].tolist() == ["ID", RESIDUAL] * len(traits)
    g = vc[vc["component"] == "ID"]
    h2 = post["h2"].sel(component="ID")
    np.testing.assert_allclose(g["h2_mean"], pooled(h2).mean(0), rtol=RTOL)
    hpd = hpd_interval(h2)
    np.testing.assert_array_equal(g["h2_lower"], hpd.sel(bound="lower").values)
    np.testing.assert_array_equal(g["h2_upper"], hpd.sel(bound="upper").values)
    dG = diag(post["G"].sel(component="ID"))
    np.testing.assert_allclose(g["variance_mean"], pooled(dG).mean(0), rtol=RTOL)
    r = vc[vc["component"] == RESIDUAL]
    dR = diag(post["R"])
    share = dR / (dG + dR)
    np.testing.assert_allclose(r["h2_mean"], pooled(share).mean(0), rtol=RTOL)
    np.testing.assert_allclose(r["variance_mean"], pooled(dR).mean(0), rtol=RTOL)
    np.testing.assert_array_equal(r["h2_lower"], hpd_interval(share).values[0])
    np.testing.assert_allclose(vc.groupby("trait")["h2_mean"].sum(), 1.0, rtol=1e-12)
    narrow = variance_components(post, prob=0.5)
    assert ((narrow["h2_upper"] - narrow["h2_lower"])
            <= (vc["h2_upper"] - vc["h2_lower"]) + 1e-15).all()


def test_fixed_effects(post: xr.Dataset) -> None:
    fe = fixed_effects(post)
    B = pooled(post["B1"])  # (n, fixed, trait)
    assert list(fe.columns) == ["fixed", "trait", "mean", "sd", "lower", "upper"]
    assert len(fe) == B.shape[1] * B.shape[2]
    row = fe[(fe["fixed"] == "Intercept") & (fe["trait"] == "T03")].iloc[0]
    j = post["trait"].values.tolist().index("T03")
    assert row["mean"] == pytest.approx(B[:, 0, j].mean(), rel=RTOL)
    assert row["sd"] == pytest.approx(np.std(B[:, 0, j], ddof=1), rel=RTOL)
    hpd = hpd_interval(post["B1"]).sel(fixed="Intercept", trait="T03").values
    assert (row["lower"], row["upper"]) == (hpd[0], hpd[1])
    np.testing.assert_allclose(fe["mean"], B.mean(0).ravel(), rtol=RTOL)


def test_genetic_correlations(post: xr.Dataset) -> None:
    gc = genetic_correlations(post)
    traits = post["trait"].values.tolist()
    t = len(traits)
    assert len(gc) == t * (t - 1) // 2
    pairs = set(zip(gc["trait_a"], gc["trait_b"], strict=True))
    assert len(pairs) == len(gc) and not any((b, a) in pairs for a, b in pairs)
    G = post["G"].sel(component="ID")
    per_draw = G.sel(trait="T02", trait2="T04") / np.sqrt(
        G.sel(trait="T02", trait2="T02") * G.sel(trait="T04", trait2="T04"))
    row = gc[(gc["trait_a"] == "T02") & (gc["trait_b"] == "T04")].iloc[0]
    assert row["component"] == "ID"
    assert row["mean"] == pytest.approx(pooled(per_draw).mean(), rel=1e-12)
    hpd = hpd_interval(per_draw).values
    assert (row["lower"], row["upper"]) == pytest.approx((hpd[0], hpd[1]), rel=1e-12)
    top = genetic_correlations(post, component="ID", top=3)
    expected = gc.reindex(gc["mean"].abs().sort_values(ascending=False).index).head(3)
    pd.testing.assert_frame_equal(top, expected.reset_index(drop=True))
    with pytest.raises(LabelError, match="components"):
        genetic_correlations(post, component="nope")


def test_factor_table(post: xr.Dataset) -> None:
    ft = factor_table(post)
    assert list(ft.columns) == ["factor", "variance_share", "F_h2_ID", "eff_loadings"]
    lam = pooled(post["Lambda"])  # (n, factor, trait)
    total = (pooled(diag(post["G"])).sum(axis=(1, 2)) + pooled(diag(post["R"])).sum(axis=1))
    l2 = (lam**2).sum(axis=2)
    np.testing.assert_allclose(ft["variance_share"], (l2 / total[:, None]).mean(0), rtol=RTOL)
    np.testing.assert_allclose(ft["F_h2_ID"], pooled(post["F_h2"])[:, 0].mean(0), rtol=RTOL)
    eff = l2**2 / (lam**4).sum(axis=2)
    np.testing.assert_allclose(ft["eff_loadings"], eff.mean(0), rtol=RTOL)
    # the total variance is also sum_j (sum_k lambda_kj^2 + 1 / tot_Eta_prec_j)
    alt = ((lam**2).sum(axis=(1, 2)) + (1 / pooled(post["tot_Eta_prec"])).sum(axis=1))
    np.testing.assert_allclose(total, alt, rtol=1e-10)


@pytest.mark.parametrize("make", [variance_components, fixed_effects, genetic_correlations,
                                  factor_table])
def test_from_parameters_and_disk(fit: tuple[xr.Dataset, xr.Dataset, str], make) -> None:
    """Without G, R, h2 the tables come from the parameters; a lazy disk load gives the same."""
    post, lazy, _ = fit
    ref = make(post)
    pd.testing.assert_frame_equal(make(post.drop_vars(["G", "R", "h2"])), ref, rtol=1e-10)
    pd.testing.assert_frame_equal(make(lazy), ref, rtol=RTOL)


def test_undefined_correlations_skipped(post: xr.Dataset) -> None:
    """A draw with zero genetic variance leaves that draw's correlations undefined."""
    p = post[["Lambda", "F_h2", "resid_h2", "tot_Eta_prec"]].copy(deep=True)
    p["F_h2"][0, 0] = 0.0
    p["resid_h2"][0, 0] = 0.0
    p = add_derived(p, ["G", "R", "h2"])
    with pytest.warns(RuntimeWarning, match="undefined"):
        gc = genetic_correlations(p)
    G = p["G"].sel(component="ID")
    r = pooled(G.sel(trait="T01", trait2="T02")
               / np.sqrt(G.sel(trait="T01", trait2="T01") * G.sel(trait="T02", trait2="T02")))
    assert np.isnan(r[0]) and np.isfinite(r[1:]).all()
    row = gc.iloc[0]
    assert row["mean"] == pytest.approx(r[1:].mean(), rel=1e-12)
    hpd = hpd_interval(xr.DataArray(r[1:], dims="draw")).values
    assert (row["lower"], row["upper"]) == pytest.approx((hpd[0], hpd[1]), rel=1e-12)


def test_bad_inputs(post: xr.Dataset) -> None:
    with pytest.raises(TypeError, match="post"):
        variance_components(post["h2"])
    with pytest.raises(ValueError, match="prob"):
        fixed_effects(post, prob=1.5)
    with pytest.raises(LabelError, match="B1"):
        fixed_effects(post.drop_vars("B1"))
    with pytest.raises(ValueError, match="top"):
        genetic_correlations(post, top=0)


# --------------------------------------------------------------------------------------
# the summary
# --------------------------------------------------------------------------------------

TITLES = ("Variance components", "Largest genetic correlations", "Fixed effects", "Factors")


def test_summary_text_and_frames(fit: tuple[xr.Dataset, xr.Dataset, str]) -> None:
    post, _, model_text = fit
    s = Summary.from_posterior(post, model_text)
    text = str(s)
    assert text == repr(s) and text.startswith(model_text)
    for title in (*TITLES, "Convergence"):
        assert re.search(rf"^{title}", text, flags=re.M), title
    for trait in post["trait"].values:
        assert trait in text
    assert "more rows" not in text.split("\nConvergence")[0]  # 50 draws: many flagged
    pd.testing.assert_frame_equal(s.to_frame("variance_components"), variance_components(post))
    pd.testing.assert_frame_equal(s.to_frame("fixed_effects"), fixed_effects(post))
    pd.testing.assert_frame_equal(s.to_frame("factors"), factor_table(post))
    pd.testing.assert_frame_equal(s.genetic_correlations, genetic_correlations(post, top=10))
    pd.testing.assert_frame_equal(s.to_frame("convergence"), diagnostics(post, warn=False))
    pd.testing.assert_frame_equal(s.to_frame("factor_report"), factor_report(post, warn=False))
    with pytest.raises(LabelError, match="sections"):
        s.to_frame("nope")
    # numbers printed are the tables' numbers
    vc = s.variance_components.set_index(["trait", "component"])
    h2 = vc.loc[("T02", "ID")]
    assert (f"T02    {h2['h2_mean']:.2f} [{h2['h2_lower']:.2f}, {h2['h2_upper']:.2f}]"
            in text)


def test_summary_one_chain_and_missing_variables(post: xr.Dataset) -> None:
    one = Summary.from_posterior(post.isel(chain=[0]).drop_vars("B1"), "one chain")
    text = str(one)
    assert "Convergence" not in text and one.convergence is None
    assert re.search(r"^Fixed effects.*\n  not available: .*B1", text, flags=re.M)
    with pytest.raises(LabelError, match="not computed"):
        one.to_frame("fixed_effects")
    forced = Summary.from_posterior(post.isel(chain=0), "one chain", diagnostics=True)
    assert forced.convergence["rhat"].notna().all()  # the chain's two halves compared
    assert forced.convergence[["ess_bulk", "ess_tail"]].notna().all().all()
    off = Summary.from_posterior(post, "two chains", diagnostics=False)
    assert "Convergence" not in str(off)


def test_summary_truncates_many_traits() -> None:
    sim = datasets.simulate_factor_data(n=30, t=25, k_true=2, n_markers=50, seed=2)
    m = MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K}, n_factors=2,
                h2_divisions=5, burn=0, thin=1, seed=1, chains=2, verbose=False)
    post = m.sample(5, progress=False).posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined correlations, few draws
        text = str(Summary.from_posterior(post, "25 traits", max_rows=20))
    assert "... (5 more rows; see .variance_components)" in text
    assert "... (5 more rows; see .fixed_effects)" in text
    assert re.search(r"\.\.\. \(\d+ more rows; see \.convergence\)", text)  # 5 draws: all flagged
    assert "more rows; see .genetic_correlations" not in text  # top 10
    variance = next(b for b in text.split("\n\n") if b.startswith("Variance components"))
    assert "T20" in variance and "T21" not in variance  # the first max_rows traits only
    for block in text.split("\n\n")[2:]:
        n_lines = len(block.splitlines())
        if block.startswith("Convergence"):  # + header and one line per quantity, the
            assert n_lines <= 1 + 8 + 1 + 1 + 20 + 1  # count, the header of the worst
        elif block.startswith("Factors"):  # + the smallest factor's share and the verdict
            assert n_lines <= 1 + 1 + 20 + 1 + 2
        else:
            assert n_lines <= 1 + 1 + 20 + 1  # title, header, rows, "more rows"


# --------------------------------------------------------------------------------------
# R-hat and ESS against ArviZ
# --------------------------------------------------------------------------------------


def test_rhat_ess_match_arviz(post: xr.Dataset) -> None:
    az = pytest.importorskip("arviz")
    # the 5% and 95% quantiles: ArviZ 1.x defaults to 11% and 89% (stats.ci_prob = 0.89)
    tail_prob = {"prob": (0.05, 0.95)} if int(az.__version__.split(".")[0]) >= 1 else {}
    cv = convergence_table(post)
    assert list(cv.columns) == ["variable", "trait", "component", "rhat", "ess_bulk",
                                "ess_tail"]
    for name in ("h2", "tot_Eta_prec"):
        sub = cv[cv["variable"] == name]
        ds = post[[name]]
        np.testing.assert_allclose(sub["rhat"], az.rhat(ds)[name].values.ravel(), rtol=1e-8)
        np.testing.assert_allclose(sub["ess_bulk"], az.ess(ds)[name].values.ravel(), rtol=1e-8)
        tail = az.ess(ds, method="tail", **tail_prob)[name].values.ravel()  # see test_diagnostics
        np.testing.assert_allclose(sub["ess_tail"], tail, rtol=1e-8)
    rng = np.random.default_rng(0)
    for shape in [(2, 51, 3), (4, 20, 2), (3, 7, 1)]:  # odd draws drop the middle one
        x = np.cumsum(rng.standard_normal(shape), axis=1) * 0.3 + rng.standard_normal(shape)
        x[..., -1] = np.round(x[..., -1])  # ties
        ds = xr.Dataset({"x": (("chain", "draw", "e"), x)})
        np.testing.assert_allclose(rhat(x), az.rhat(ds)["x"].values, rtol=1e-8)
        np.testing.assert_allclose(ess_bulk(x), az.ess(ds)["x"].values, rtol=1e-8)
    assert np.isnan(rhat(np.ones((1, 10)))) and ess_bulk(np.ones((2, 10))) == 20.0
