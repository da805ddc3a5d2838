"""The ``pymegalmm`` logger and :func:`emit`; licence, citation and typing metadata.

No network: the metadata checks read the installed distribution and the repository.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import pytest

import pymegalmm
from pymegalmm._logging import emit, logger

ROOT = Path(__file__).resolve().parents[1]
DOI = "10.1186/s13059-021-02416-w"


@pytest.fixture
def quiet_logger():
    """The ``pymegalmm`` logger as a user who never configured logging has it."""
    saved = logger.level, logger.propagate, logger.disabled
    logger.setLevel(logging.NOTSET)
    logger.propagate, logger.disabled = True, False
    yield logger
    logger.setLevel(saved[0])
    logger.propagate, logger.disabled = saved[1], saved[2]


# --- logging ---------------------------------------------------------------------------


def test_logger_is_the_package_logger_with_a_null_handler():
    assert logger is logging.getLogger("pymegalmm")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    # the library configures nothing else: no stream handler of its own on the logger
    assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)


@pytest.mark.parametrize("verbose", [True, False])
def test_emit_logs_at_info_on_the_pymegalmm_logger(caplog, quiet_logger, verbose):
    caplog.set_level(logging.INFO, logger="pymegalmm")
    emit("pymegalmm: precomputed factors need about 0.01 GB", verbose)
    records = [r for r in caplog.records if r.name == "pymegalmm"]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert records[0].getMessage() == "pymegalmm: precomputed factors need about 0.01 GB"
    assert records[0].pathname == __file__  # the record names the caller


def test_emit_verbose_writes_each_message_to_stderr_once(capsys, quiet_logger):
    emit("first message", True)
    emit("second\nmessage on two lines", True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "first message\nsecond\nmessage on two lines\n"


def test_emit_not_verbose_writes_nothing(capsys, quiet_logger):
    emit("hidden", True)  # a verbose call first must not make later quiet calls print
    capsys.readouterr()
    emit("hidden", False)
    assert capsys.readouterr() == ("", "")


def test_emit_verbose_is_not_duplicated_when_the_user_routes_the_logger(
        capsys, caplog, quiet_logger):
    # the user asked for INFO from pymegalmm (caplog stands for their handler): the
    # message goes to their handler only, not also to stderr
    caplog.set_level(logging.INFO, logger="pymegalmm")
    emit("routed", True)
    assert [r.getMessage() for r in caplog.records if r.name == "pymegalmm"] == ["routed"]
    assert capsys.readouterr().err == ""


def test_emit_verbose_still_shown_when_user_handler_filters_info(capsys, quiet_logger):
    # a handler of the user's that only takes warnings does not swallow verbose output
    # (propagate off: the user's handler is the only one, pytest's own are on the root)
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit("still shown", True)
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().err == "still shown\n"


# --- packaging metadata ----------------------------------------------------------------


def test_installed_metadata_has_spdx_license_expression():
    meta = importlib.metadata.metadata("pymegalmm")
    if meta.get("License-Expression") is None:
        pytest.skip("installed metadata predates PEP 639 (reinstall: pip install -e .)")
    assert meta["License-Expression"] == "MIT"
    assert not any(c.startswith("License ::") for c in meta.get_all("Classifier") or [])
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])


def test_license_file_is_mit():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "MIT" in text
    assert "pymegalmm developers" in text


def test_citation_cff_parses_and_cites_the_method():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert DOI in text
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load(text)
    assert cff["cff-version"] == "1.2.0"
    ref = cff["preferred-citation"]
    assert ref["doi"] == DOI
    assert ref["journal"] == "Genome Biology"
    assert ref["year"] == 2021
    assert [a["family-names"] for a in ref["authors"]] == ["Runcie", "Qu", "Cheng",
                                                           "Crawford"]


def test_py_typed_marker_is_in_the_installed_package():
    package_dir = Path(pymegalmm.__file__).parent
    assert (package_dir / "py.typed").is_file()
