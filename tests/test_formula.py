"""Tests for pymegalmm.formula: lme4-style bar terms split from the fixed part."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymegalmm.formula import ParsedFormula, RandomTerm, parse_formula

# (formula, expected fixed part, expected random terms as (lhs, group, independent))
VALID = [
    ("~ Population + (1|Line)", "~ Population", [("1", "Line", False)]),
    ("~ 1 + (1|Line) + (1|Plot)", "~ 1", [("1", "Line", False), ("1", "Plot", False)]),
    (
        "~ Env*x + C(block) + (1|Line:Env)",
        "~ Env*x + C(block)",
        [("1", "Line:Env", False)],
    ),
    ("~ (0 + Env|Line)", "~ 1", [("0 + Env", "Line", False)]),
    ("~ (Env||Line)", "~ 1", [("Env", "Line", True)]),
    ("~ (1 + x||Line)", "~ 1", [("1 + x", "Line", True)]),
    ("~ 0 + x + (1|g)", "~ 0 + x", [("1", "g", False)]),
    ("~ x", "~ x", []),
    ("~ 1", "~ 1", []),
    ("~ (a+b):c + np.log(x)", "~ (a+b):c + np.log(x)", []),
    ("~ (1|g) + x", "~ x", [("1", "g", False)]),
    ("~ (1|g) + (1|h)", "~ 1", [("1", "g", False), ("1", "h", False)]),
    ("~x+(1|g)", "~ x", [("1", "g", False)]),
    ("  ~ x + ( 1 | a : b )", "~ x", [("1", "a:b", False)]),
    ("~ C(block) + (x | Line) + z", "~ C(block) + z", [("x", "Line", False)]),
    ("~ 0 + (1|g)", "~ 0", [("1", "g", False)]),
    ("~ (1|Line.name_2)", "~ 1", [("1", "Line.name_2", False)]),
    ("~ (1|`my line`)", "~ 1", [("1", "my line", False)]),
]

# (formula, regular expression the ValueError message must match)
INVALID = [
    (
        "~ x1 + x22 + (1|)",
        re.escape("cannot parse random-effect term '(1|)' at column 14: missing grouping factor"),
    ),
    (
        "~ Population + (1|)",
        re.escape("'(1|)' at column 16: missing grouping factor"),
    ),
    ("~ x + (|g)", re.escape("'(|g)' at column 7: missing left-hand side")),
    ("~ (1|a|b)", re.escape("'(1|a|b)' at column 3: more than one bar")),
    ("~ (1|||g)", re.escape("'(1|||g)' at column 3: more than one bar")),
    ("~ x | g", r"'\|' at column 5 .*outside parentheses"),
    ("y ~ x", r"two-sided.*pass the traits Y separately"),
    ("", "empty formula"),
    ("   ", "empty formula"),
    ("~", "empty formula"),
    ("x + (1|g)", "must start with '~'"),
    ("~ x + (1|g", r"unbalanced parentheses.*'\(' at column 7 is never closed"),
    ("~ x + (1|g))", r"unbalanced parentheses.*'\)' at column 12 has no matching"),
    ("~ x + (1|log(g))", re.escape("'(1|log(g))' at column 7: invalid grouping factor")),
    ("~ x + (1|a + b)", re.escape("'(1|a + b)' at column 7: invalid grouping factor")),
    ("~ x:(1|g)", re.escape("'(1|g)' at column 5: a random-effect term must be added")),
    ("~ C((1|g))", re.escape("'(1|g)' at column 5: a random-effect term must be a top-level")),
    ("~ x + (1|g) +", "dangling"),
    ("~ x ~ z", "second '~'"),
    ("~ x + * z", "cannot parse the fixed part"),
]


@pytest.mark.parametrize(("formula", "fixed", "terms"), VALID)
def test_parse_valid(formula: str, fixed: str, terms: list[tuple[str, str, bool]]) -> None:
    parsed = parse_formula(formula)
    assert isinstance(parsed, ParsedFormula)
    assert parsed.fixed == fixed
    assert [(t.lhs, t.group, t.independent) for t in parsed.random] == terms
    for term in parsed.random:
        # the recorded text sits at the recorded position of the original string
        assert formula[term.position : term.position + len(term.text)] == term.text
        assert term.text.startswith("(") and term.text.endswith(")")


@pytest.mark.parametrize(("formula", "message"), INVALID)
def test_parse_invalid(formula: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_formula(formula)


def test_table_size() -> None:
    assert len(VALID) + len(INVALID) >= 15


def test_term_fields_and_group_variables() -> None:
    parsed = parse_formula("~ Env + (1|Line) + (0 + Env||Line:Env)")
    first, second = parsed.random
    assert first == RandomTerm("1", "Line", False, "(1|Line)", 8)
    assert second.text == "(0 + Env||Line:Env)"
    assert second.position == 19
    assert second.independent
    assert second.group_variables == ("Line", "Env")
    with pytest.raises(AttributeError):
        first.lhs = "0"  # frozen


def test_column_is_one_based_in_message() -> None:
    formula = "~ x + (1|)"
    with pytest.raises(ValueError) as info:
        parse_formula(formula)
    column = formula.index("(") + 1
    assert f"at column {column}" in str(info.value)
    assert "'(1|)'" in str(info.value)


def test_two_sided_message_suggests_right_hand_side() -> None:
    with pytest.raises(ValueError, match=re.escape("'~ x + (1|g)'")):
        parse_formula("y ~ x + (1|g)")


def test_non_string_formula() -> None:
    with pytest.raises(TypeError):
        parse_formula(None)  # type: ignore[arg-type]


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True)


@given(
    fixed=st.lists(_names, max_size=3),
    groups=st.lists(st.lists(_names, min_size=1, max_size=2), min_size=1, max_size=3),
    double=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_round_trip_property(fixed: list[str], groups: list[list[str]], double: list[bool]) -> None:
    """Randomly assembled formulas give back their fixed part and their terms."""
    rand = [f"(1{'||' if double[i] else '|'}{':'.join(g)})" for i, g in enumerate(groups)]
    formula = "~ " + " + ".join(fixed + rand)
    parsed = parse_formula(formula)
    assert parsed.fixed == "~ " + (" + ".join(fixed) if fixed else "1")
    assert [t.group for t in parsed.random] == [":".join(g) for g in groups]
    assert [t.independent for t in parsed.random] == double[: len(groups)]
    assert [t.text for t in parsed.random] == rand
