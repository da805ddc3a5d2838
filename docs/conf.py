"""Sphinx configuration of the pymegalmm documentation site.

Build (no network needed)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages: the README (landing page), ``docs/*.md`` and the rendered vignette
``vignettes/multi_environment_trial.md`` (included by ``docs/vignette.md``, its
figures resolved relative to ``vignettes/``) through MyST, and the API
reference ``docs/api.rst`` (autodoc + numpydoc; autosummary tables only, no
generated stub files, so a build never writes into the source tree).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The package is installed editable in development; this makes a plain checkout work too.
sys.path.insert(0, str(ROOT))
# Importing pymegalmm must not print or warn about a serial build while documenting it.
os.environ.setdefault("MPLBACKEND", "Agg")

import pymegalmm  # noqa: E402

project = "pymegalmm"
author = "pymegalmm developers"
copyright = "pymegalmm developers, MIT licence"  # noqa: A001
version = release = pymegalmm.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# -- MyST ---------------------------------------------------------------------
# Anchors for headings so that links such as ``[Not yet](#not-yet)`` resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- autodoc / autosummary / numpydoc -------------------------------------------
autosummary_generate = False          # tables link to the entries written in api.rst
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
numpydoc_show_class_members = False   # members are documented by autodoc's :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- no network at build time ---------------------------------------------------
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False

# -- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = f"pymegalmm {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
