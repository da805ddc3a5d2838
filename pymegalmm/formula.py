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

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from formulaic import Formula
from formulaic.errors import FormulaicError
from formulaic.parser import DefaultFormulaParser
from formulaic.parser.types import ASTNode, Token

from .errors import InputError, InputTypeError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula"]

# A grouping variable: a Python-style name (dots allowed, as in R) or a
# backtick-quoted name that contains neither ':' nor '`'.
_NAME = r"(?:[A-Za-z_.][A-Za-z0-9_.]*|`[^`:]+`)"
_GROUP_RE = re.compile(rf"^\s*{_NAME}(?:\s*:\s*{_NAME})*\s*$")

# formulaic expands ``(a + b + c)**k`` into all m**k products of the m terms of the
# base before removing duplicates, so a large exponent never finishes (``(a+b)**99``).
# An exponent above m adds no term, so powers expanding to more products are refused.
_MAX_POWER_PRODUCTS = 10_000
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_PARSER = DefaultFormulaParser()


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


def _term_error(text: str, position: int, reason: str, formula: str) -> InputError:
    return InputError(
        f"cannot parse random-effect term {text!r} at column {position + 1}: {reason} "
        f"(formula {formula!r})"
    )


def _split_bar(text: str, position: int, formula: str) -> tuple[str, str, bool, int]:
    """Split the inside of a bar term at its single top-level ``|`` or ``||``.

    Returns the left-hand side, the grouping factor, whether the bar is double
    and the offset of the left-hand side in ``text``.
    """
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
            formula,
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
            formula,
        )
    if not group:
        raise _term_error(
            text,
            position,
            "missing grouping factor; write the grouping variable after the bar",
            formula,
        )
    if not _GROUP_RE.match(group):
        raise _term_error(
            text,
            position,
            f"invalid grouping factor {group!r}; it must be variable names joined by ':', "
            "e.g. Line or Line:Env (transform the variable in the data, not in the formula)",
            formula,
        )
    names = [part.strip().strip("`") for part in group.split(":")]
    lhs_offset = 1 + len(inner[:start]) - len(inner[:start].lstrip())  # of lhs in text
    return lhs, ":".join(names), length == 2, lhs_offset


def _column(index: int | None, offsets: Sequence[int | None]) -> int | None:
    """0-based column in the formula of character ``index`` of a piece of it, if known."""
    if index is None or not 0 <= index < len(offsets):
        return None
    return offsets[index]


def _describe_exception(
    exc: Exception, expr: str, offsets: Sequence[int | None]
) -> tuple[str, int | None, Exception]:
    """Reason and formula column (when known) for an exception raised by formulaic."""
    if isinstance(exc, FormulaicError):
        reason, _, context = _ANSI_RE.sub("", str(exc)).partition("\n\n")
        column = None
        marker = context.find("\u29db")  # formulaic brackets the bad token with these
        if marker >= 0 and context.replace("\u29db", "").replace("\u29da", "") == expr:
            column = _column(marker, offsets)
        return reason.strip() or type(exc).__name__, column, exc
    if isinstance(exc, RecursionError):
        return "it is nested too deeply", None, exc
    if isinstance(exc, SyntaxError):
        return f"invalid Python code in it ({exc.msg})", None, exc
    return f"formulaic cannot read it ({type(exc).__name__}: {exc})", None, exc


def _power_problem(
    tree: object, offsets: Sequence[int | None]
) -> tuple[str, int | None, None] | None:
    """Refuse powers ``base**k`` that formulaic would take too long to expand."""
    nodes: list[ASTNode] = []
    stack = [tree]
    while stack:  # pre-order, without recursion (formulas can be long)
        node = stack.pop()
        if isinstance(node, ASTNode):
            nodes.append(node)
            stack.extend(arg for arg in node.args if isinstance(arg, ASTNode))
    for node in reversed(nodes):  # inner powers first
        if node.operator.symbol not in ("**", "^") or len(node.args) != 2:
            continue
        base, exponent = node.args
        if not isinstance(exponent, Token) or exponent.kind is not Token.Kind.VALUE:
            continue  # formulaic reports it
        try:
            k = ast.literal_eval(exponent.token)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if not isinstance(k, int) or isinstance(k, bool):
            continue
        column = _column(exponent.source_start, offsets)
        if k < 1:
            reason = f"the exponent {exponent.token} of a power must be a positive integer"
            return reason, column, None
        try:
            m = len(base.to_terms()) if isinstance(base, ASTNode) else 1
        except Exception:  # formulaic reports it
            continue
        if m <= 1 and k > _MAX_POWER_PRODUCTS:
            return (
                f"the exponent {exponent.token} is too large; use at most "
                f"{_MAX_POWER_PRODUCTS} (a power of a single term is that term)",
                column,
                None,
            )
        if m > 1 and k > 1 and m ** min(k, 64) > _MAX_POWER_PRODUCTS:
            most = 1
            while m ** (most + 1) <= _MAX_POWER_PRODUCTS:
                most += 1
            return (
                f"the exponent {exponent.token} is too large: formulaic would expand the {m} "
                f"terms of its base into {m}^{exponent.token} products; use at most {most} (an "
                f"exponent above {m}, the number of terms, adds no term)",
                column,
                None,
            )
    return None


def _formulaic_problem(
    expr: str, offsets: Sequence[int | None]
) -> tuple[str, int | None, Exception | None] | None:
    """Check that formulaic can parse ``expr``.

    Returns None when it can, else the reason, the 0-based column of the
    formula where the problem is (None when not known) and formulaic's exception.
    ``offsets[i]`` is the column in the formula of ``expr[i]`` (None if it has none).
    """
    try:
        tree = _PARSER.parse(expr, target="ast")
    except Exception as exc:  # formulaic raises more than FormulaicError on bad input
        return _describe_exception(exc, expr, offsets)
    problem = _power_problem(tree, offsets)
    if problem is not None:
        return problem
    try:
        Formula(expr).required_variables  # noqa: B018 - the design needs them later
    except Exception as exc:
        return _describe_exception(exc, expr, offsets)
    return None


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
    pymegalmm.errors.InputError
        A ValueError. For an empty formula, a two-sided formula (``"y ~ x"``:
        pass ``Y`` separately), a formula not starting with ``"~"``, unbalanced
        parentheses, a bar outside parentheses (``"~ x | g"``), a random term
        that is not a top-level ``+`` term, a random term with a missing
        left-hand side (``(|g)``), a missing grouping factor (``(1|)``), more
        than one bar (``(1|a|b)``) or an invalid grouping factor (grouping must
        be variable names joined by ``":"``), and for a fixed part or a
        left-hand side that formulaic cannot parse, or with a power whose
        expansion would not finish (``(a + b)**99``: at most 10,000 products of
        terms). Messages name the formula or the term and, where known, the
        1-based column of the problem.
    pymegalmm.errors.InputTypeError
        A TypeError, when ``formula`` is not a string.

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
        raise InputTypeError(
            f"formula must be a string such as '~ x + (1|g)', got {type(formula)!r}"
        )
    if not formula.strip():
        raise InputError("empty formula; write e.g. '~ 1 + (1|Line)'")

    tilde = formula.find("~")
    lead = len(formula) - len(formula.lstrip())
    if tilde < 0:
        raise InputError(
            f"formula {formula!r} must start with '~' (a one-sided formula such as '~ x + (1|g)')"
        )
    if tilde != lead:
        raise InputError(
            f"formula {formula!r} is two-sided; write only the right-hand side (e.g. "
            f"'~{formula[tilde + 1 :]}') and pass the traits Y separately"
        )
    if formula.count("~") > 1:
        second = formula.find("~", tilde + 1)
        raise InputError(
            f"formula {formula!r} has a second '~' at column {second + 1}; only one is allowed"
        )
    if not formula[tilde + 1 :].strip():
        raise InputError("empty formula: nothing after '~'; write e.g. '~ 1 + (1|Line)'")
    if formula.rstrip().endswith("+"):
        raise InputError(
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
                raise InputError(
                    f"unbalanced parentheses in formula {formula!r}: ')' at column {i + 1} has no "
                    "matching '('"
                )
            groups[stack.pop()] = i
    if stack:
        raise InputError(
            f"unbalanced parentheses in formula {formula!r}: '(' at column {stack[-1] + 1} "
            "is never closed"
        )
    # Second pass, now that parentheses are known to balance: locate the bars.
    for i, ch in enumerate(formula):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            stack.pop()
        elif ch == "|":
            if not stack:
                raise InputError(
                    f"'|' at column {i + 1} of formula {formula!r} is outside parentheses; "
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
                formula,
            )
        lhs, group, independent, lhs_offset = _split_bar(text, start, formula)
        before_index, before = _previous_nonspace(formula, start)
        after_index, after = _next_nonspace(formula, end)
        if before not in ("~", "+") or after not in ("+", ""):
            raise _term_error(
                text,
                start,
                "a random-effect term must be added to the formula with '+' (it cannot be "
                "combined with other terms by ':', '*', '-', ...)",
                formula,
            )
        if lhs != "1":
            lhs_start = start + lhs_offset
            problem = _formulaic_problem(lhs, range(lhs_start, lhs_start + len(lhs)))
            if problem is not None:
                reason, column, cause = problem
                where = f" at column {column + 1}" if column is not None else ""
                raise _term_error(
                    text,
                    start,
                    f"cannot parse its left-hand side {lhs!r}{where}: {reason}",
                    formula,
                ) from cause
        terms.append(RandomTerm(lhs, group, independent, text, start))
        if before == "+" and (not spans or before_index >= spans[-1][1]):
            # drop the preceding '+' (and the spaces before it) with the term
            spans.append((_previous_nonspace(formula, before_index)[0] + 1, end))
        elif after == "+":
            # first term, or the preceding '+' went with the term before it (which was
            # first): drop the following '+'
            spans.append((start, after_index + 1))
        else:
            spans.append((start, end))

    kept: list[int] = []  # columns of the formula's characters that make the fixed part
    cursor = tilde + 1
    for a, b in spans:
        kept.extend(range(cursor, a))
        cursor = max(cursor, b)
    kept.extend(range(cursor, len(formula)))
    first, last = 0, len(kept)
    while first < last and formula[kept[first]].isspace():
        first += 1
    while last > first and formula[kept[last - 1]].isspace():
        last -= 1
    kept = kept[first:last]
    rest = "".join(formula[i] for i in kept)
    if not rest:
        rest, kept = "1", [tilde]
    elif rest.startswith("+") or rest.endswith("+"):
        column = kept[0] if rest.startswith("+") else kept[-1]
        raise InputError(f"formula {formula!r} has a dangling '+' at column {column + 1}")
    fixed = "~ " + rest

    # Check the fixed part's syntax now so errors point at the formula, not at the data.
    problem = _formulaic_problem(fixed, [None, None, *kept])  # "~ " is not the user's
    if problem is not None:
        reason, column, cause = problem
        where = f" at column {column + 1}" if column is not None else ""
        raise InputError(
            f"cannot parse the fixed part {fixed!r} of formula {formula!r}{where}: {reason}"
        ) from cause

    return ParsedFormula(fixed=fixed, random=tuple(terms))
