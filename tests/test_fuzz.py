"""Property-based fuzzing of the formula parser and the design builder.

Whatever string is passed as a formula, :func:`pymegalmm.formula.parse_formula` and
:func:`pymegalmm.design.build_design` either succeed or raise one of pymegalmm's own
errors (:class:`pymegalmm.errors.MegaLMMError`, also a ValueError/TypeError/KeyError)
with a message; never an IndexError, AttributeError, RecursionError or an error from
inside formulaic. Well-formed formulas generated from a small grammar round-trip.

The examples are derandomized (the same ones on every run, no example database), so
a failure in CI reproduces locally.
"""

from __future__ import annotations

import re
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pymegalmm
from pymegalmm.design import Design, build_design
from pymegalmm.errors import MegaLMMError
from pymegalmm.formula import ParsedFormula, parse_formula

_PACKAGE_DIR = Path(pymegalmm.__file__).resolve().parent


def _fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------------------
# Strategies: arbitrary strings
# --------------------------------------------------------------------------------------

_SYMBOLS = [
    "~", "(", ")", "|", "||", "+", "-", "*", "**", "^", ":", "0", "1", ".", ",",
    "[", "]", "{", "}", " ", "  ", "`", "'", '"', "/", "%", "=", "\t", "\n", "\\",
]  # fmt: skip
_WORDS = [
    "x", "g", "a", "b", "ID", "Line", "Env", "y2", "C(", "np.log(", "I(", "in",
    "lambda", "None", "é", "线", "\u0301", "\x00", "\ud800", "1e309", "0x1F", "00",
]  # fmt: skip
_identifiers = st.from_regex(r"[A-Za-z_.][A-Za-z0-9_.]{0,5}", fullmatch=True)
_numbers = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
_formula_token = st.one_of(
    st.sampled_from(_SYMBOLS),
    st.sampled_from(_WORDS),
    _identifiers,
    _numbers,
    st.characters(),
)
_token_string = st.lists(_formula_token, max_size=16).map("".join)
# most of the interesting code runs after the '~', so usually start with one
_formulaish = st.one_of(
    _token_string,
    st.tuples(st.sampled_from(["~", "~ ", " ~"]), _token_string).map("".join),
)
_any_text = st.one_of(
    st.text(max_size=30),
    st.text(max_size=30).map(lambda text: "~" + text),
    st.text(alphabet="~()|+-*: 01x g", max_size=30),
)


# --------------------------------------------------------------------------------------
# Strategies: well-formed formulas from a grammar
# --------------------------------------------------------------------------------------

_FIXED_VARS = ["x", "Env", "ID", "y2"]
_GROUP_VARS = ["Line", "Env", "ID"]
_SPACES = st.sampled_from(["", " ", "  ", "\t", "\n", " \n "])


@st.composite
def _fixed_term(draw) -> list[str]:
    """A fixed term as tokens: ``x``, ``Env:x``, ``Env*x`` or ``C(ID)``."""
    kind = draw(st.sampled_from(["var", "colon", "star", "call"]))
    a, b = draw(st.permutations(_FIXED_VARS))[:2]
    if kind == "var":
        return [a]
    if kind == "call":
        return [f"C({a})"]
    return [a, ":" if kind == "colon" else "*", b]


@st.composite
def _random_term(draw) -> tuple[list[str], tuple[str, str, bool]]:
    """A random term as tokens, with its expected (lhs, group, independent)."""
    kind = draw(st.sampled_from(["intercept", "nested", "slope", "double"]))
    g1, g2 = draw(st.permutations(_GROUP_VARS))[:2]
    x = draw(st.sampled_from(_FIXED_VARS))
    if kind == "intercept":
        return ["(", "1", "|", g1, ")"], ("1", g1, False)
    if kind == "nested":
        return ["(", "1", "|", g1, ":", g2, ")"], ("1", f"{g1}:{g2}", False)
    if kind == "slope":
        return ["(", "0", "+", x, "|", g1, ")"], (f"0 + {x}", g1, False)
    return ["(", x, "||", g1, ")"], (x, g1, True)


@st.composite
def _grammar_formula(draw) -> tuple[list[list[str]], str, list[tuple[str, str, bool]]]:
    """Tokens of the terms of a well-formed formula, its fixed part and random terms."""
    intercept = draw(st.sampled_from([[], ["1"], ["0"]]))
    fixed = [intercept] if intercept else []
    fixed += draw(st.lists(_fixed_term(), max_size=3))
    randoms = draw(st.lists(_random_term(), min_size=1, max_size=3))
    # random terms go anywhere among the fixed ones, keeping both orders
    slots = sorted(
        draw(st.lists(st.integers(0, len(fixed)), min_size=len(randoms), max_size=len(randoms)))
    )
    terms: list[list[str]] = []
    for i, term in enumerate(fixed + [None]):
        terms += [tokens for slot, (tokens, _) in zip(slots, randoms, strict=True) if slot == i]
        if term is not None:
            terms.append(term)
    expected_fixed = "~ " + (" + ".join(" ".join(t) for t in fixed) if fixed else "1")
    return terms, expected_fixed, [expected for _, expected in randoms]


def _render(terms: list[list[str]], spaces: list[str] | None = None) -> str:
    """Join term tokens with single spaces, or with the given whitespace between tokens."""
    tokens = ["~"]
    for i, term in enumerate(terms):
        tokens += (["+"] if i else []) + term
    if spaces is None:
        return " ".join(tokens)
    return spaces[0] + "".join(tok + spaces[i + 1] for i, tok in enumerate(tokens))


def _squash(text: str) -> str:
    return "".join(text.split())


# --------------------------------------------------------------------------------------
# Checks on the errors raised
# --------------------------------------------------------------------------------------


def _raised_in_package(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)


def _describe(formula: str, exc: BaseException) -> str:
    return f"formula {formula!r} raised {type(exc).__name__}: {exc!s}"


def _check_own_error(formula: str, exc: BaseException) -> None:
    """The error is one of pymegalmm's, raised in its code, with a message."""
    assert isinstance(exc, MegaLMMError), _describe(formula, exc)
    assert isinstance(exc, ValueError | TypeError | KeyError), _describe(formula, exc)
    assert str(exc).strip(), _describe(formula, exc)
    assert _raised_in_package(exc), _describe(formula, exc)


def _check_design_error(formula: str, exc: BaseException) -> None:
    """pymegalmm's error, or a plain ValueError/TypeError/KeyError from its code naming
    the formula or one of its variables."""
    if isinstance(exc, MegaLMMError):
        _check_own_error(formula, exc)
        return
    assert type(exc) in (ValueError, TypeError, KeyError), _describe(formula, exc)
    assert _raised_in_package(exc), _describe(formula, exc)
    message = str(exc)
    names = re.findall(r"[^\W\d]\w*", formula)
    assert formula.strip() in message or any(repr(n) in message for n in names), _describe(
        formula, exc
    )


# --------------------------------------------------------------------------------------
# parse_formula
# --------------------------------------------------------------------------------------


def _parse_or_own_error(formula: str) -> ParsedFormula | None:
    try:
        parsed = parse_formula(formula)
    except Exception as exc:  # noqa: BLE001 - the property is about which errors escape
        _check_own_error(formula, exc)
        for column in re.findall(r"at column (\d+)", str(exc)):  # 1-based, in the formula
            assert 1 <= int(column) <= len(formula), _describe(formula, exc)
        event(f"raised {type(exc).__name__}")
        return None
    event("parsed")
    return parsed


def _check_parsed(formula: str, parsed: ParsedFormula) -> None:
    assert parsed.fixed.startswith("~ ")
    for term in parsed.random:
        assert formula[term.position : term.position + len(term.text)] == term.text
        assert term.group and term.lhs


@_fuzz_settings(600)
@given(formula=_any_text)
def test_parse_arbitrary_text(formula: str) -> None:
    parsed = _parse_or_own_error(formula)
    if parsed is not None:
        _check_parsed(formula, parsed)


@_fuzz_settings(2000)
@given(formula=_formulaish)
def test_parse_formulaish_strings(formula: str) -> None:
    parsed = _parse_or_own_error(formula)
    if parsed is not None:
        _check_parsed(formula, parsed)


@pytest.mark.parametrize(
    "formula",
    [
        "~ ([0)",  # AttributeError inside formulaic
        "~ I(``0)%",  # IndexError inside formulaic
        "~ - C(%Env)",  # SyntaxError from the Python parser
        "~ x**00",  # TypeError (reduce() of empty iterable) inside formulaic
        "~ x + (x**00|g)",  # left-hand sides were not checked: crashed in build_design
        "~ x + (([0)|g)",
        "~ (a+b)**99",  # would never finish
        "~ x**100000000",
        "~ " + "C(" * 3000 + "x" + ")" * 3000,  # SyntaxError: too many nested parentheses
        "~ \ud800",  # formulaic's terminal colour codes were in the message
    ],
)
def test_parse_found_crashes(formula: str) -> None:
    with pytest.raises(MegaLMMError, match="cannot parse") as info:
        parse_formula(formula)
    _check_own_error(formula, info.value)
    assert "\x1b[" not in str(info.value)


def test_random_terms_before_a_fixed_term() -> None:
    """Found by the round trip: two leading random terms both took the same '+', so the
    fixed part became '+ x' and the formula was refused as having a dangling '+'."""
    parsed = parse_formula("~ (1|a) + (1|b) + (1|c) + x + (1|d) + y")
    assert parsed.fixed == "~ x + y"
    assert [t.group for t in parsed.random] == ["a", "b", "c", "d"]


@_fuzz_settings(300)
@given(grammar=_grammar_formula(), data=st.data())
def test_parse_round_trip(grammar, data) -> None:
    terms, expected_fixed, expected_random = grammar
    formula = _render(terms)
    parsed = parse_formula(formula)
    assert parsed.fixed == expected_fixed
    assert [(t.lhs, t.group, t.independent) for t in parsed.random] == expected_random
    _check_parsed(formula, parsed)

    # the same formula with other whitespace between its tokens
    n_tokens = len(_render(terms).split(" "))
    spaces = data.draw(st.lists(_SPACES, min_size=n_tokens + 1, max_size=n_tokens + 1))
    respaced = _render(terms, spaces)
    again = parse_formula(respaced)
    assert _squash(again.fixed) == _squash(parsed.fixed)
    assert [(_squash(t.lhs), t.group, t.independent) for t in again.random] == [
        (_squash(t.lhs), t.group, t.independent) for t in parsed.random
    ]
    _check_parsed(respaced, again)

    # the parsed formula written back (fixed part + random terms) parses to itself
    text = parsed.fixed + "".join(" + " + t.text for t in parsed.random)
    reparsed = parse_formula(text)
    assert reparsed.fixed == parsed.fixed
    assert [(t.lhs, t.group, t.independent, t.text) for t in reparsed.random] == [
        (t.lhs, t.group, t.independent, t.text) for t in parsed.random
    ]
    _check_parsed(text, reparsed)


# --------------------------------------------------------------------------------------
# build_design
# --------------------------------------------------------------------------------------

_N = 20
_DATA = pd.DataFrame(
    {
        "ID": np.arange(_N),  # int64
        "Line": [f"L{i % 4}" for i in range(_N)],  # strings
        "Env": pd.Categorical(["A", "B", "C", "A"] * (_N // 4)),  # categorical
        "x": np.linspace(-1.0, 1.0, _N),  # float
        "y2": [1, "a", 2.5, None, True] * (_N // 5),  # object: int, str, float, None, bool
    }
)
_Y = np.random.default_rng(0).normal(size=(_N, 3))
_Y[3, 1] = np.nan


@st.composite
def _mutated(draw) -> str:
    """A grammar formula with a few characters deleted, inserted or replaced."""
    terms, _, _ = draw(_grammar_formula())
    text = list(_render(terms))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(st.one_of(st.sampled_from(_SYMBOLS + _WORDS), _identifiers))
        if edit == "delete" and i < len(text):
            del text[i]
        elif edit == "insert":
            text.insert(i, piece)
        elif i < len(text):
            text[i] = piece
    return "".join(text)


_VARIABLES = ["ID", "Line", "Env", "x", "y2", "`x`", "z"]  # z is not a column
_TEMPLATES = [
    "{}", "{}:{}", "{}*{}", "{}/{}", "({}+{})**2", "{}^3", "-{}", "0 + {}", "{} - 1",
    "C({})", "C({}, contr.sum)", "np.log({})", "np.sqrt({})", "center({})", "scale({})",
    "poly({}, 2)", "lag({})", "I({}**2)", "{{{}*2}}", "{{{}/0}}", "{{{}[0]}}", "{{{}.foo}}",
    "Q('{}')", "hashed({}, levels=4)", "1", "0", "-1", ".",
]  # fmt: skip


@st.composite
def _expression(draw, depth: int = 0) -> str:
    """A fixed term or left-hand side: transforms, Python code and operators over
    the data's variables (and one that is not in the data)."""
    template = draw(st.sampled_from(_TEMPLATES))
    args = [
        draw(st.sampled_from(_VARIABLES))
        if depth >= 1 or draw(st.booleans())
        else draw(_expression(depth + 1))
        for _ in range(template.count("{}"))
    ]
    return template.format(*args)


@st.composite
def _rich_formula(draw) -> str:
    """Formulas whose terms are mostly well formed but may not make sense for the data."""
    parts = draw(st.lists(_expression(), max_size=3))
    for _ in range(draw(st.integers(0, 3))):
        lhs = draw(st.one_of(st.sampled_from(["1", "0"]), _expression()))
        group = ":".join(draw(st.lists(st.sampled_from(_VARIABLES), min_size=1, max_size=2)))
        term = f"({lhs}{draw(st.sampled_from(['|', '||']))}{group})"
        parts.insert(draw(st.integers(0, len(parts))), term)
    return "~ " + " + ".join(parts or ["1"])


_design_formulas = st.one_of(
    _grammar_formula().map(lambda g: _render(g[0])),
    _rich_formula(),
    _mutated(),
    _formulaish,
)


@_fuzz_settings(600)
@given(formula=_design_formulas)
def test_build_design_only_own_errors(formula: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows dropped for the missing y2 values, etc.
        try:
            design = build_design(_Y, formula, _DATA)
        except Exception as exc:  # noqa: BLE001 - the property is about which errors escape
            _check_design_error(formula, exc)
            event(f"raised {type(exc).__name__}")
            return
    event("built")
    assert isinstance(design, Design)
    assert design.X1.shape[0] == design.Y.shape[0] == design.n
    for eff in design.random:
        assert eff.Z.shape == (design.n, eff.n_levels)


@pytest.mark.parametrize(
    "formula",
    [
        "~ (1|x:x)",  # pandas: "The column label 'x' is not unique"
        "~ (0 + Env||Env:Env)",
        "~ (np.sqrt(x)||Line)",  # formulaic's plain ValueError for NaN made by a transform
        "~ (lag(ID)|Line)",
        "~ {Line[0]}",  # a string constant: ValueError converting the design to float
        "~ ({Line[0]}||Env:Line)",
    ],
)
def test_build_design_found_crashes(formula: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MegaLMMError) as info:
            build_design(_Y, formula, _DATA)
    _check_own_error(formula, info.value)
    message = str(info.value)
    assert formula in message or any(t.text in message for t in parse_formula(formula).random)


def test_levels_of_mixed_column_keep_1_and_True_apart() -> None:
    """``drop_duplicates`` merged 1 and True (equal in Python), so the level True was lost
    and build_design raised a KeyError about a relmat that was never given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows with a missing y2 are dropped
        design = build_design(_Y, "~ (1|y2) + (1|Env:y2)", _DATA)
    assert sorted(map(str, design.random[0].levels)) == ["1", "2.5", "True", "a"]
    assert design.random[1].n_levels == 12
    assert np.all(np.asarray(design.random[0].Z.sum(axis=1)).ravel() == 1.0)
