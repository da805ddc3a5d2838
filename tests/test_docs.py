"""The Sphinx site in ``docs/`` builds with warnings as errors (needs ``pip install -e ".[docs]"``).

One build (about 5 s on 2 cores) into a temporary directory, shared by the tests below;
nothing is written into the source tree (no generated stub files, no ``docs/_build``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("numpydoc")
pytest.importorskip("furo")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    before = _tree(DOCS)
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
           "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, out / "html", before


def test_build_succeeds_with_warnings_as_errors(build):
    proc, html, before = build
    assert proc.returncode == 0, (f"sphinx-build failed:\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-6000:]}")
    assert (html / "index.html").is_file()
    assert _tree(DOCS) == before, "the build wrote into docs/"


def test_api_page_documents_the_public_names(build):
    proc, html, _ = build
    assert proc.returncode == 0, proc.stderr[-6000:]
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in ["MegaLMM.sample", "ARDPrior", "pymegalmm.Control", "pymegalmm.Priors",
                 "LambdaPrior", "VariancePrior", "GammaPrior", "ObservationModel",
                 "GaussianMissing", "MissingDataMap", "search_maps", "best_map",
                 "simulate_met", "gblup", "hpd_interval", "traceplot", "add_derived",
                 "PosteriorStore", "InputError", "LabelError", "show_config"]:
        assert name in api, name


def test_guide_pages_and_vignette_figures(build):
    proc, html, _ = build
    assert proc.returncode == 0, proc.stderr[-6000:]
    for page in ["architecture", "sampler", "r_migration", "vignette"]:
        assert (html / f"{page}.html").is_file(), page
    vignette = (html / "vignette.html").read_text(encoding="utf-8")
    for fig in ["incidence.png", "K.png", "genetic_correlation.png"]:
        assert f'src="_images/{fig}"' in vignette, fig
        assert (html / "_images" / fig).is_file(), fig


def test_no_docstring_section_warnings(build):
    proc, _, _ = build
    assert "Unknown section" not in proc.stderr, proc.stderr[-3000:]
