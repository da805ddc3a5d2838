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


_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_SHOW_WAIT = ("import os, pymegalmm; from pymegalmm import _config; "
              "print(_config.WAIT_POLICY); "
              "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('KMP_BLOCKTIME'))")


def _wait_policy_in_fresh_process(tmp_path, **env):
    """The wait policy a fresh interpreter reports, with only ``env``'s OpenMP variables."""
    import os

    clean = {k: v for k, v in os.environ.items() if k not in _WAIT_VARS}
    out = subprocess.run([sys.executable, "-c", _SHOW_WAIT], capture_output=True, text=True,
                         check=True, cwd=tmp_path, env={**clean, **env}).stdout
    return out.splitlines()


def test_wait_policy_default_is_a_brief_spin(tmp_path):
    """Unset, pymegalmm asks libgomp for a brief spin and LLVM's runtime to sleep at once."""
    policy, values = _wait_policy_in_fresh_process(tmp_path)
    if policy.startswith("OpenMP runtime's default"):  # e.g. a NumPy built on GNU OpenMP
        pytest.skip("libgomp was loaded before pymegalmm in this environment")
    assert policy.startswith("brief spin") and f"GOMP_SPINCOUNT={_config.SPIN_COUNT}" in policy
    assert values == f"{_config.SPIN_COUNT} 0"


@pytest.mark.parametrize("var, value", [("OMP_WAIT_POLICY", "PASSIVE"),
                                        ("GOMP_SPINCOUNT", "0"), ("KMP_BLOCKTIME", "200")])
def test_wait_policy_respects_the_users_choice(tmp_path, var, value):
    policy, values = _wait_policy_in_fresh_process(tmp_path, **{var: value})
    assert policy == f"as set by {var}={value}"
    spin, blocktime = values.split()
    assert spin == (value if var == "GOMP_SPINCOUNT" else "None")
    assert blocktime == (value if var == "KMP_BLOCKTIME" else "None")
