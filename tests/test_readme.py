"""README.md's Python examples run as written, and so do ``pymegalmm.model``'s docstring examples.

Every ```python block of README.md runs in order in one namespace, in a temporary
working directory (the ``met_run`` folder and ``h2.pdf`` it writes land there),
with a non-interactive matplotlib backend.

Iteration counts.  As written the README fits ~3000+ iterations on a 500 x 20 trial
(well over a minute on 2 cores), so by default they are divided by ``SCALE`` (10)
through monkeypatching, the README text itself left untouched:
``MegaLMM(..., burn=b)`` gets ``burn=b // 10``, ``MegaLMM.sample(n)`` runs
``ceil(n / 10)`` iterations and ``MegaLMM.burn_in(rounds, iterations)`` runs
``ceil(iterations / 10)`` per round (its inner ``sample`` calls are not scaled
again).  ``PYMEGALMM_README_FULL=1`` runs the counts as written.

arviz is optional: when it is missing, the statements that import or use it are
left out and ``test_readme_arviz_statements`` is skipped (``pytest.importorskip``).
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import math
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("PYMEGALMM_README", ROOT / "README.md"))  # override: another copy
SCALE = 1 if os.environ.get("PYMEGALMM_README_FULL") == "1" else 10

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order."""
    return _BLOCK.findall(text)


def _arviz_names(tree: ast.Module) -> set[str]:
    """Names bound by ``import arviz`` / ``from arviz import ...`` in a block."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names
                      if a.name.split(".")[0] == "arviz"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "arviz":
            names |= {a.asname or a.name for a in node.names}
    return names


def _uses(stmt: ast.stmt, names: set[str]) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return bool(_arviz_names(ast.Module(body=[stmt], type_ignores=[])))
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(stmt))


def _split(block: str, have_arviz: bool) -> tuple[ast.Module, list[str]]:
    """The block's statements, without those needing arviz when it is missing."""
    tree = ast.parse(block)
    names = _arviz_names(tree)
    if have_arviz or not names:
        return tree, []
    kept, dropped = [], []
    for stmt in tree.body:
        (dropped if _uses(stmt, names) else kept).append(stmt)
    return ast.Module(body=kept, type_ignores=[]), [ast.unparse(s) for s in dropped]


def _scaled(n: int) -> int:
    return max(1, math.ceil(n / SCALE)) if n > 0 else n


def _scale_iterations(monkeypatch) -> None:
    """Divide the README's iteration counts by SCALE (see the module docstring)."""
    if SCALE == 1:
        return
    from pymegalmm.model import MegaLMM

    init, sample, burn_in = MegaLMM.__init__, MegaLMM.sample, MegaLMM.burn_in
    inside = [0]

    def __init__(self, *args, **kwargs):
        if kwargs.get("burn") is not None:
            kwargs["burn"] = kwargs["burn"] // SCALE
        init(self, *args, **kwargs)

    def sample_(self, n_iter, *args, **kwargs):
        return sample(self, n_iter if inside[0] else _scaled(n_iter), *args, **kwargs)

    def burn_in_(self, rounds=5, iterations=100, *args, **kwargs):
        inside[0] += 1
        try:
            return burn_in(self, rounds, _scaled(iterations), *args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(MegaLMM, "__init__", __init__)
    monkeypatch.setattr(MegaLMM, "sample", sample_)
    monkeypatch.setattr(MegaLMM, "burn_in", burn_in_)


def _agg(monkeypatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "matplotlib.pyplot" in sys.modules:  # already imported by another test
        sys.modules["matplotlib.pyplot"].switch_backend("Agg")


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run every block once; the tests below check the outcome."""
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    have_arviz = importlib.util.find_spec("arviz") is not None
    workdir = tmp_path_factory.mktemp("readme")
    ns: dict = {"__name__": "__readme__"}
    dropped: list[str] = []
    stray = Path.cwd() / "MegaLMM_run"
    stray_before = stray.exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        _agg(mp)
        _scale_iterations(mp)
        for i, block in enumerate(blocks):
            tree, left_out = _split(block, have_arviz)
            dropped += left_out
            exec(compile(tree, f"README.md python block {i + 1}", "exec"), ns)  # noqa: S102
    assert stray_before or not stray.exists(), f"the README run left {stray} behind"
    return blocks, ns, dropped, workdir


def test_readme_has_python_examples():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 2


def test_readme_blocks_run(readme_run):
    blocks, ns, _, workdir = readme_run
    assert "m" in ns and "post" in ns
    assert ns["post"].sizes["draw"] > 0
    names = {p.name for p in workdir.iterdir()}
    if "save_posterior_chunk" in "".join(blocks):
        assert "met_run" in names  # the workflow's run folder, in the temporary directory
        assert (workdir / "met_run" / ".pymegalmm" / "manifest.json").is_file()


def test_readme_arviz_statements(readme_run):
    pytest.importorskip("arviz")
    _, ns, dropped, _ = readme_run
    assert not dropped
    if any("arviz" in b for b in readme_run[0]):
        assert "az" in ns


def _modules_with_examples() -> list[str]:
    import importlib
    import pkgutil

    import pymegalmm

    names = []
    for info in pkgutil.walk_packages(pymegalmm.__path__, "pymegalmm."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        runnable = [ex for t in doctest.DocTestFinder().find(module) for ex in t.examples
                    if not ex.options.get(doctest.SKIP)]
        if runnable:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name, tmp_path, monkeypatch):
    """Every docstring example of the package runs (``pymegalmm.model``'s MegaLMM among them)."""
    import importlib

    module = importlib.import_module(name)
    monkeypatch.chdir(tmp_path)
    _agg(monkeypatch)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0, "".join(report)


def test_the_model_example_is_among_them():
    assert "pymegalmm.model" in _modules_with_examples()
