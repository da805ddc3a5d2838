"""Parse lme4-style model formulas into a fixed part and random-effect terms.

A pymegalmm formula is one-sided (the trait matrix ``Y`` is passed separately)
and may mix ordinary fixed-effect terms, understood by formulaic, with lme4-style
random-effect ("bar") terms::

    "~ Env + x + (1|Line) + (0 + Env|Block)"

formulaic cannot parse bar terms, so :func:`parse_formula` does what lme4's
``findbars``/``nobars`` do: it scans the string, tracking parenthesis depth,
finds every parenthesised group that contains a ``|`` at its own depth, records
it as a :class:`RandomTerm` and removes it (with its ``+``) from the formula.
What remains is the fixed part, handed to formulaic unchanged. Ordinary
parentheses in the fixed part, e.g. ``C(block)``, ``(a + b):c`` or
``np.log(x)``, are left where they are.

Random-effect terms
-------------------
``(1|g)``
    A random intercept for each level of the grouping factor ``g``.
``(1|a:b)``
    A random intercept for each observed combination of ``a`` and ``b``.
``(x|g)``, ``(0 + Env|g)``, ``(Env||g)``, ``(1 + x||g)``
    Random "slopes": the left-hand side is expanded into a design (by formulaic,
    so ``x`` means ``1 + x`` as in lme4) and each of its columns gets its own
    random effect over the levels of ``g``.

.. note::
   As in MegaLMM, **every column of a left-hand design is an independent
   variance component**: ``(0 + Env|Line)`` and ``(Env||Line)`` both give one
   variance component per column, with no correlation between them. This
   differs from lme4, where a single bar ``|`` estimates the correlations
   between the columns and only ``||`` makes them independent. The
   ``independent`` flag of :class:`RandomTerm` records which bar was written,
   but pymegalmm treats both the same way.

This module does nothing numeric; :mod:`pymegalmm.design` turns the parsed
formula into matrices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from formulaic import Formula
from formulaic.errors import FormulaicError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula"]

# A grouping variable: a Python-style name (dots allowed, as in R) or a
# backtick-quoted name that contains neither ':' nor '`'.
_NAME = r"(?:[A-Za-z_.][A-Za-z0-9_.]*|`[^`:]+`)"
_GROUP_RE = re.compile(rf"^\s*{_NAME}(?:\s*:\s*{_NAME})*\s*$")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term of a formula, such as ``(1|Line)``.

    Attributes
    ----------
    lhs : str
        Left of the bar, stripped, e.g. ``"1"``, ``"0 + Env"`` or ``"Env"``.
    group : str
        Right of the bar: the grouping variable names joined by ``":"`` without
        spaces or backticks, e.g. ``"Line"`` or ``"Line:Env"``. This is the key
        looked up in ``relmat``.
    independent : bool
        True when the term was written with a double bar ``||``. pymegalmm makes
        every column of the left-hand design an independent variance component
        whichever bar is used (see the module documentation).
    text : str
        The term exactly as written, e.g. ``"(1|Line)"``.
    position : int
        0-based column of the term's ``"("`` in the formula string.
    """

    lhs: str
    group: str
    independent: bool
    text: str
    position: int

    @property
    def group_variables(self) -> tuple[str, ...]:
        """Names of the variables that make up the grouping factor.

        Returns
        -------
        tuple of str
            ``("Line",)`` for ``(1|Line)``, ``("Line", "Env")`` for ``(1|Line:Env)``.
        """
        return tuple(self.group.split(":"))


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into its fixed part and its random-effect terms.

    Attributes
    ----------
    fixed : str
        The fixed part, for formulaic, always starting with ``"~"``: for example
        ``"~ Population"``, ``"~ 1"`` or ``"~ 0 + x"``. A formula made only of
        random terms gives ``"~ 1"`` (the intercept is kept, as in lme4).
    random : tuple of RandomTerm
        The random-effect terms, in the order they appear in the formula.
    """

    fixed: str
    random: tuple[RandomTerm, ...]


def _term_error(text: str, position: int, reason: str) -> ValueError:
    return ValueError(
        f"cannot parse random-effect term {text!r} at column {position + 1}: {reason}"
    )


def _split_bar(text: str, position: int) -> tuple[str, str, bool]:
    """Split the inside of a bar term at its single top-level ``|`` or ``||``."""
    inner = text[1:-1]
    depth = 0
    bars: list[list[int]] = []  # runs of consecutive '|' characters: [start, length]
    previous_bar = -2
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            if previous_bar == i - 1:
                bars[-1][1] += 1
            else:
                bars.append([i, 1])
            previous_bar = i
    if len(bars) != 1 or bars[0][1] > 2:
        raise _term_error(
            text,
            position,
            "more than one bar; write a single '|' (or '||') between the left-hand "
            "side and the grouping factor, e.g. (1|g)",
        )
    start, length = bars[0]
    lhs = inner[:start].strip()
    group = inner[start + length :].strip()
    if not lhs:
        raise _term_error(
            text,
            position,
            "missing left-hand side; write (1|g) for a random intercept or (0 + x|g) "
            "for a random slope",
        )
    if not group:
        raise _term_error(
            text, position, "missing grouping factor; write the grouping variable after the bar"
        )
    if not _GROUP_RE.match(group):
        raise _term_error(
            text,
            position,
            f"invalid grouping factor {group!r}; it must be variable names joined by ':', "
            "e.g. Line or Line:Env (transform the variable in the data, not in the formula)",
        )
    names = [part.strip().strip("`") for part in group.split(":")]
    return lhs, ":".join(names), length == 2


def _previous_nonspace(s: str, i: int) -> tuple[int, str]:
    j = i - 1
    while j >= 0 and s[j].isspace():
        j -= 1
    return j, (s[j] if j >= 0 else "")


def _next_nonspace(s: str, i: int) -> tuple[int, str]:
    j = i
    while j < len(s) and s[j].isspace():
        j += 1
    return j, (s[j] if j < len(s) else "")


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style one-sided formula into fixed and random parts.

    Parameters
    ----------
    formula : str
        A one-sided formula starting with ``"~"``, such as
        ``"~ Population + (1|Line)"``, ``"~ Env*x + C(block) + (1|Line:Env)"``,
        ``"~ (0 + Env|Line)"`` or ``"~ (Env||Line)"``. Random-effect terms are
        parenthesised groups containing a bar (``|`` or ``||``) at their own
        depth; they must be top-level terms joined to the rest with ``+``.
        Other parentheses (``C(block)``, ``(a + b):c``, ``np.log(x)``) belong to
        the fixed part.

    Returns
    -------
    ParsedFormula
        ``fixed`` is the formula without its random terms (``"~ 1"`` when only
        random terms were given, keeping the intercept as lme4 does);
        ``random`` lists the random terms in order.

    Raises
    ------
    ValueError
        For an empty formula, a two-sided formula (``"y ~ x"``: pass ``Y``
        separately), a formula not starting with ``"~"``, unbalanced
        parentheses, a bar outside parentheses (``"~ x | g"``), a random term
        that is not a top-level ``+`` term, a random term with a missing
        left-hand side (``(|g)``), a missing grouping factor (``(1|)``), more
        than one bar (``(1|a|b)``) or an invalid grouping factor (grouping must
        be variable names joined by ``":"``), and for a fixed part that
        formulaic cannot parse. Messages name the term and its 1-based column.

    Notes
    -----
    As in MegaLMM, and unlike lme4, ``(0 + Env|Line)`` and ``(Env||Line)`` both
    give an *independent* variance component for each column of the left-hand
    design (no correlations between them are estimated).

    Examples
    --------
    >>> p = parse_formula("~ Population + (1|Line)")
    >>> p.fixed
    '~ Population'
    >>> p.random[0].group, p.random[0].lhs, p.random[0].position
    ('Line', '1', 15)
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as '~ x + (1|g)', got {type(formula)!r}")
    if not formula.strip():
        raise ValueError("empty formula; write e.g. '~ 1 + (1|Line)'")

    tilde = formula.find("~")
    lead = len(formula) - len(formula.lstrip())
    if tilde < 0:
        raise ValueError(
            f"formula {formula!r} must start with '~' (a one-sided formula such as '~ x + (1|g)')"
        )
    if tilde != lead:
        raise ValueError(
            f"formula {formula!r} is two-sided; write only the right-hand side (e.g. "
            f"'~{formula[tilde + 1 :]}') and pass the traits Y separately"
        )
    if formula.count("~") > 1:
        second = formula.find("~", tilde + 1)
        raise ValueError(
            f"formula {formula!r} has a second '~' at column {second + 1}; only one is allowed"
        )
    if not formula[tilde + 1 :].strip():
        raise ValueError("empty formula: nothing after '~'; write e.g. '~ 1 + (1|Line)'")
    if formula.rstrip().endswith("+"):
        raise ValueError(
            f"formula {formula!r} ends with a dangling '+' at column {len(formula.rstrip())}"
        )

    # First pass: match parentheses.
    stack: list[int] = []
    groups: dict[int, int] = {}  # '(' index -> matching ')' index
    parent: dict[int, int | None] = {}  # '(' index -> enclosing '(' index
    bar_groups: set[int] = set()
    for i, ch in enumerate(formula):
        if ch == "(":
            parent[i] = stack[-1] if stack else None
            stack.append(i)
        elif ch == ")":
            if not stack:
                raise ValueError(
                    f"unbalanced parentheses in {formula!r}: ')' at column {i + 1} has no "
                    "matching '('"
                )
            groups[stack.pop()] = i
    if stack:
        raise ValueError(
            f"unbalanced parentheses in {formula!r}: '(' at column {stack[-1] + 1} is never closed"
        )
    # Second pass, now that parentheses are known to balance: locate the bars.
    for i, ch in enumerate(formula):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            stack.pop()
        elif ch == "|":
            if not stack:
                raise ValueError(
                    f"'|' at column {i + 1} of {formula!r} is outside parentheses; "
                    "random-effect terms must be written in parentheses, e.g. (1|g)"
                )
            bar_groups.add(stack[-1])

    terms: list[RandomTerm] = []
    spans: list[tuple[int, int]] = []
    for start in sorted(bar_groups):
        end = groups[start] + 1
        text = formula[start:end]
        if parent[start] is not None:
            raise _term_error(
                text,
                start,
                "a random-effect term must be a top-level term of the formula, not inside "
                "parentheses or a function call",
            )
        lhs, group, independent = _split_bar(text, start)
        before_index, before = _previous_nonspace(formula, start)
        after_index, after = _next_nonspace(formula, end)
        if before not in ("~", "+") or after not in ("+", ""):
            raise _term_error(
                text,
                start,
                "a random-effect term must be added to the formula with '+' (it cannot be "
                "combined with other terms by ':', '*', '-', ...)",
            )
        terms.append(RandomTerm(lhs, group, independent, text, start))
        if before == "+":
            # drop the preceding '+' (and the spaces before it) with the term
            spans.append((_previous_nonspace(formula, before_index)[0] + 1, end))
        elif after == "+":
            spans.append((start, after_index + 1))  # first term: drop the following '+'
        else:
            spans.append((start, end))

    pieces: list[str] = []
    cursor = tilde + 1
    for a, b in spans:
        if a > cursor:
            pieces.append(formula[cursor:a])
        cursor = max(cursor, b)
    pieces.append(formula[cursor:])
    rest = "".join(pieces).strip()
    if not rest:
        rest = "1"
    elif rest.startswith("+") or rest.endswith("+"):
        raise ValueError(f"formula {formula!r} has a dangling '+'")
    fixed = "~ " + rest

    # Check the fixed part's syntax now so errors point at the formula, not at the data.
    try:
        Formula(fixed)
    except FormulaicError as exc:
        raise ValueError(
            f"cannot parse the fixed part {fixed!r} of formula {formula!r}: {exc}"
        ) from exc

    return ParsedFormula(fixed=fixed, random=tuple(terms))
