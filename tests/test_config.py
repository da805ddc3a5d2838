"""Build configuration, version, show_config and the command line."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import pymegalmm
from pymegalmm import _config, _kernels, cli


def test_version_is_exposed():
    """A PEP 440 release or development version: MAJOR.MINOR.PATCH[.devN]."""
    import re

    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", pymegalmm.__version__)


def test_show_config_reports_openmp_and_blas(capsys):
    pymegalmm.show_config()
    out = capsys.readouterr().out
    state = "enabled" if _kernels.openmp_enabled() else "disabled"
    assert f"OpenMP             {state}" in out
    assert "BLAS" in out
    info = _config.config()
    assert info["openmp"] == _kernels.openmp_enabled()
    assert info["openmp_max_threads"] >= 1


def test_serial_build_warns_once_at_import(monkeypatch):
    monkeypatch.setattr(_kernels, "openmp_enabled", lambda: False)
    with pytest.warns(RuntimeWarning, match="without OpenMP"):
        _config.warn_if_serial()


def test_openmp_build_does_not_warn():
    if not _kernels.openmp_enabled():
        pytest.skip("this build has no OpenMP")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _config.warn_if_serial()


def test_cli_config_runs(capsys):
    assert cli.main(["config"]) == 0
    assert "OpenMP" in capsys.readouterr().out


def test_cli_rejects_unknown_command():
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])


def test_python_dash_m_entry_point(tmp_path):
    # run outside the source tree so the installed package (with its kernels) is used
    out = subprocess.run([sys.executable, "-m", "pymegalmm", "config"], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout
    assert "pymegalmm" in out and "kernels            built" in out
