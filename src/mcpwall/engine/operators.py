"""Condition operators, compiled once per condition into a test function.

The comparison rules are Intercept's, kept on purpose so that its policies decide the
same way here (each is pinned in tests/engine/test_operators.py):

- ``eq``/``neq``/``in``/``not_in``: two numbers compare as numbers; anything else
  compares as the text Go's ``fmt.Sprint`` would print, so ``"1"`` equals ``1`` and
  ``"true"`` equals ``true``. JSON numbers print as Go float64s (``1e+06``).
- ``lt``/``lte``/``gt``/``gte``: numbers only. A string ``"5"`` is not a number.
- ``regex``: RE2 syntax, as in Go, searched anywhere in the string; linear time, so an
  agent's input cannot make a pattern backtrack for ever.
- ``contains``: substring of a string, or an element of a list (compared as ``eq``).
- ``exists``: the path is present and not null.

A test returns None when it cannot tell: the path is missing, or the value is of a type
the operator cannot compare (``lt`` on a string). Callers turn that into a denial.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeGuard

from mcpwall.policy.model import Op, Verdict


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

_NUMBER = (int, float)


@functools.cache
def _re2() -> tuple[Any, Any]:
    """google-re2 and the options patterns are compiled with, loaded with the first
    pattern: a policy without one never needs it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    return re2, options


def compile_regex(pattern: str) -> Any:
    """Compile an RE2 pattern; raises ValueError with RE2's own message."""
    re2, options = _re2()
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise ValueError(str(message)) from None


def is_number(value: Any) -> TypeGuard[int | float]:
    # bool is an int subclass in Python; in JSON and in Go it is not a number.
    return type(value) in _NUMBER


def resolve(root: Any, steps: tuple[str, ...]) -> Any:
    """Walk a dotted path through nested objects; MISSING if any step is absent."""
    current = root
    for step in steps:
        if type(current) is not dict:
            return MISSING
        current = current.get(step, MISSING)
        if current is MISSING:
            return MISSING
    return current


def resolve_each(root: Any, steps: tuple[str, ...]) -> list[Any]:
    """Every value a path reaches through lists: ``*`` takes each element, a number one
    element. MISSING stands for an element that lacks the rest of the path."""
    found: list[Any] = []
    stack = [(root, 0)]
    while stack:
        current, depth = stack.pop()
        if depth == len(steps):
            found.append(current)
            continue
        step = steps[depth]
        if step == "*":
            if type(current) is not list:
                found.append(MISSING)
            else:
                stack.extend((item, depth + 1) for item in reversed(current))
        elif type(current) is list and step.isdigit():
            index = int(step)
            stack.append(
                (current[index], depth + 1) if index < len(current) else (MISSING, len(steps))
            )
        elif type(current) is dict and step in current:
            stack.append((current[step], depth + 1))
        else:
            found.append(MISSING)
    return found


def go_text(value: Any, json_value: bool = True) -> str:
    """The text Go's fmt.Sprint prints for a decoded value.

    ``json_value``: numbers came from JSON, which Go decodes as float64 (so 1000000
    prints as ``1e+06``); policy numbers are Go ints when written without a point.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if kind is int:
        return _go_float(float(value)) if json_value else str(value)
    if kind is float:
        return _go_float(value)
    if kind is list:
        return "[" + " ".join(go_text(item, json_value) for item in value) + "]"
    if kind is dict:
        items = (f"{key}:{go_text(value[key], json_value)}" for key in sorted(value))
        return "map[" + " ".join(items) + "]"
    return str(value)


def _go_float(number: float) -> str:
    """Go's %v for a float64: shortest digits, exponent form below 1e-4 or from 1e+06."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "-0" if str(number).startswith("-") else "0"
    from decimal import Decimal  # here: the proxy never loads it unless a float is printed

    sign, digits, exponent = Decimal(repr(number)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    exponent = int(exponent) + len(digits) - len(text)
    point = len(text) + exponent  # digits before the decimal point
    exp10 = point - 1
    minus = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def values_equal(actual: Any, expected: Any) -> bool:
    if type(actual) in _NUMBER and type(expected) in _NUMBER:
        return actual == expected
    return go_text(actual) == go_text(expected, json_value=False)


def compare_numbers(op: Op, actual: float, bound: float) -> bool:
    if op is Op.LT:
        return actual < bound
    if op is Op.LTE:
        return actual <= bound
    if op is Op.GT:
        return actual > bound
    if op is Op.GTE:
        return actual >= bound
    if op is Op.EQ:
        return actual == bound
    if op is Op.NEQ:
        return actual != bound
    raise ValueError(f"{op} is not a numeric comparison")


def make_test(op: Op, expected: Any) -> Callable[[Any], Verdict]:
    """Build the test for one condition; ``expected`` was validated for ``op``."""
    maker = _MAKERS[op]
    return maker(expected)


def _make_eq(expected: Any) -> Callable[[Any], Verdict]:
    expected_text = go_text(expected, json_value=False)
    expected_is_number = type(expected) in _NUMBER

    def test(actual: Any) -> Verdict:
        if actual is MISSING:
            return None
        kind = type(actual)
        if kind is str:
            return actual == expected_text
        if expected_is_number and kind in _NUMBER:
            return actual == expected
        return go_text(actual) == expected_text

    return test


def _make_neq(expected: Any) -> Callable[[Any], Verdict]:
    equal = _make_eq(expected)

    def test(actual: Any) -> Verdict:
        verdict = equal(actual)
        return None if verdict is None else not verdict

    return test


def _make_in(expected: Any) -> Callable[[Any], Verdict]:
    texts = frozenset(go_text(item, json_value=False) for item in expected)
    numbers = frozenset(item for item in expected if type(item) in _NUMBER)

    def test(actual: Any) -> Verdict:
        if actual is MISSING:
            return None
        kind = type(actual)
        if kind is str:
            return actual in texts
        if kind in _NUMBER and actual in numbers:
            return True
        return go_text(actual) in texts

    return test


def _make_not_in(expected: Any) -> Callable[[Any], Verdict]:
    inside = _make_in(expected)

    def test(actual: Any) -> Verdict:
        verdict = inside(actual)
        return None if verdict is None else not verdict

    return test


def _make_ordering(op: Op) -> Callable[[Any], Callable[[Any], Verdict]]:
    def maker(bound: Any) -> Callable[[Any], Verdict]:
        def test(actual: Any) -> Verdict:
            if type(actual) not in _NUMBER:
                return None
            return compare_numbers(op, actual, bound)

        return test

    return maker


def _make_regex(pattern: str) -> Callable[[Any], Verdict]:
    search = _searcher(compile_regex(pattern))

    def test(actual: Any) -> Verdict:
        if type(actual) is not str:
            return None
        return search(actual)

    return test


def _searcher(compiled: Any) -> Callable[[str], bool | None]:
    """Whether the pattern occurs in a string. google-re2's ``search`` builds a match
    object and maps every offset back to characters, five times the cost of the search
    itself; where its binding is reachable, ask it directly for a yes or no."""
    binding = getattr(compiled, "_regexp", None)
    re2, _ = _re2()
    unanchored = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if binding is None or unanchored is None:
        return lambda text: compiled.search(text) is not None
    match = binding.Match
    no_match = (-1, -1)

    def search(text: str) -> bool | None:
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: no parser agrees on it
            return None
        return match(unanchored, data, 0, len(data))[0] != no_match

    return search


def _make_contains(expected: Any) -> Callable[[Any], Verdict]:
    def test(actual: Any) -> Verdict:
        kind = type(actual)
        if kind is str:
            return type(expected) is str and expected in actual
        if kind is list:
            return any(values_equal(item, expected) for item in actual)
        return None

    return test


def _make_exists(expected: bool) -> Callable[[Any], Verdict]:
    def test(actual: Any) -> Verdict:
        return (actual is not MISSING and actual is not None) is expected

    return test


_MAKERS: dict[Op, Callable[[Any], Callable[[Any], Verdict]]] = {
    Op.EQ: _make_eq,
    Op.NEQ: _make_neq,
    Op.IN: _make_in,
    Op.NOT_IN: _make_not_in,
    Op.LT: _make_ordering(Op.LT),
    Op.LTE: _make_ordering(Op.LTE),
    Op.GT: _make_ordering(Op.GT),
    Op.GTE: _make_ordering(Op.GTE),
    Op.REGEX: _make_regex,
    Op.CONTAINS: _make_contains,
    Op.EXISTS: _make_exists,
}
