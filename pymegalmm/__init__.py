"""pymegalmm: multi-trait linear mixed models for thousands of traits (MegaLMM).

The user-facing object is :class:`pymegalmm.MegaLMM`; simulators live in
:mod:`pymegalmm.datasets` and a univariate GBLUP baseline in :mod:`pymegalmm.baselines`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._config import set_wait_policy, show_config, warn_if_serial

__version__ = "0.2.0.dev0"

__all__ = ["MegaLMM", "Control", "Priors", "ExtraRegression", "RegressionHorseshoePrior",
           "RegressionBayesCPrior", "RegressionBayesBPrior", "cross_validate", "run_chains",
           "show_config", "__version__"]

set_wait_policy()  # before the kernels load the OpenMP runtime
warn_if_serial()

_LAZY = {"MegaLMM": "model", "Control": "control", "Priors": "priors",
         "run_chains": "distributed", "cross_validate": "distributed",
         "ExtraRegression": "regressions", "RegressionHorseshoePrior": "regressions",
         "RegressionBayesCPrior": "regressions", "RegressionBayesBPrior": "regressions"}


def __getattr__(name: str) -> Any:
    """Import the heavier modules only when first used."""
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pymegalmm' has no attribute {name!r}")
