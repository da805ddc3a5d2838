"""The multi-environment-trial vignette runs end to end (reduced iteration counts)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

VIGNETTE = Path(__file__).resolve().parents[1] / "vignettes" / "multi_environment_trial.py"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _run(tmp_path, monkeypatch, capsys, **env):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYMEGALMM_VIGNETTE_QUICK", "1")
    monkeypatch.setenv("PYMEGALMM_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("PYMEGALMM_VIGNETTE_FIGURES", str(tmp_path / "figures"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ns = runpy.run_path(str(VIGNETTE), run_name="__main__")
    return ns, capsys.readouterr().out


def _check(ns, out):
    acc = ns["acc"]
    assert {"GBLUP", "MegaLMM U-hat", "MegaLMM Eta-mean"} <= set(acc.columns)
    assert acc[["MegaLMM U-hat", "MegaLMM Eta-mean"]].notna().all().all()
    assert "mean accuracy" in out
    m = ns["m"]
    assert len(m.data.groups) > 1  # the missing-data map was applied
    assert m.store.n_draws == 30  # 2 chunks x 30 iterations, thin 2
    assert ns["summary"]["h2"].between(0, 1).all()
    # environments never grown, predicted from covariates: in quick mode (70 iterations) the
    # correlations with the true genetic values were 0.51-0.75 (0.61-0.77 with the full run);
    # 0.3 leaves room for Monte Carlo error while failing if the covariates were ignored
    # (a zero or constant prediction)
    assert (ns["new_env_accuracy"]["from covariates"] > 0.3).all()
    assert list(ns["new"].columns) == ["Env28", "Env29", "Env30"]


def test_vignette_on_simulated_trial(tmp_path, monkeypatch, capsys):
    ns, out = _run(tmp_path, monkeypatch, capsys, PYMEGALMM_VIGNETTE_SIMULATED="1")
    assert ns["data_dir"] is None
    _check(ns, out)


@pytest.mark.skipif(not (SHARED / "yield_data.csv").exists(),
                    reason="../shared/data (the real maize trial) is not present")
def test_vignette_on_real_trial(tmp_path, monkeypatch, capsys):
    ns, out = _run(tmp_path, monkeypatch, capsys, PYMEGALMM_DATA=str(SHARED))
    _check(ns, out)
    assert "R Eta-mean" in ns["acc"].columns  # R's reference figures side by side
    # GBLUP defined in every environment (REML kept off the h2 = 0 boundary)
    assert ns["acc"]["GBLUP"].notna().all()
