"""Condition operators. Intercept's comparison semantics are kept on purpose, and pinned
here case by case: its policies must decide the same way on mcpwall."""

from __future__ import annotations

from typing import Any

import pytest

from mcpwall.engine.operators import MISSING, go_text, make_test
from mcpwall.policy.model import Op


@pytest.mark.parametrize(
    ("op", "expected", "actual", "verdict"),
    [
        # eq: numbers as numbers, anything else as the text Go prints.
        (Op.EQ, 5, 5.0, True),
        (Op.EQ, 5, "5", True),  # Intercept: fmt.Sprint("5") == fmt.Sprint(5)
        (Op.EQ, "true", True, True),
        (Op.EQ, "main", "main", True),
        (Op.EQ, "Main", "main", False),  # case matters
        (Op.EQ, "1000000", 1000000, False),  # a JSON 1000000 is a Go float64: "1e+06"
        (Op.EQ, "1e+06", 1000000, True),
        (Op.EQ, None, None, True),
        (Op.EQ, 1, True, False),  # a boolean is not a number
        (Op.EQ, "x", MISSING, None),
        (Op.NEQ, "draft", "ready", True),
        (Op.NEQ, "draft", MISSING, None),
        # in / not_in
        (Op.IN, ["usd", "eur"], "usd", True),
        (Op.IN, ["usd", "eur"], "gbp", False),
        (Op.IN, [1, 2], 2.0, True),
        (Op.IN, ["5"], 5, True),
        (Op.NOT_IN, ["admin"], "admin", False),
        (Op.NOT_IN, ["admin"], MISSING, None),
        # ordering: numbers only
        (Op.LT, 100, 99, True),
        (Op.LTE, 50000, 50000, True),
        (Op.GT, 0, 0, False),
        (Op.GTE, 1, 1.5, True),
        (Op.LT, 100, "5", None),  # a string is not a number, even "5"
        (Op.LT, 100, True, None),
        (Op.LTE, 100, MISSING, None),
        # regex: RE2, searched anywhere
        (Op.REGEX, "^feat/", "feat/x", True),
        (Op.REGEX, "prod", "my-prod-ns", True),
        (Op.REGEX, "^feat/", "fix/x", False),
        (Op.REGEX, "^feat/", 5, None),
        # contains: substring or list element
        (Op.CONTAINS, "test", "a test run", True),
        (Op.CONTAINS, "admin", ["user", "admin"], True),
        (Op.CONTAINS, 3, [1, 2, 3.0], True),
        (Op.CONTAINS, 3, "3", False),
        (Op.CONTAINS, "x", 5, None),
        # exists: present and not null
        (Op.EXISTS, True, "value", True),
        (Op.EXISTS, True, None, False),
        (Op.EXISTS, True, MISSING, False),
        (Op.EXISTS, False, MISSING, True),
    ],
)
def test_operator(op: Op, expected: Any, actual: Any, verdict: bool | None) -> None:
    assert make_test(op, expected)(actual) is verdict


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1000000, "1e+06"),
        (123456, "123456"),
        (1.5, "1.5"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1234567.0, "1.234567e+06"),
        (-2, "-2"),
        (0, "0"),
        (True, "true"),
        (None, "<nil>"),
        ([1, "a"], "[1 a]"),
        ({"b": 1, "a": 2}, "map[a:2 b:1]"),
    ],
)
def test_values_print_as_go_prints_json_values(value: Any, text: str) -> None:
    assert go_text(value) == text


def test_policy_integers_print_as_go_ints() -> None:
    assert go_text(1000000, json_value=False) == "1000000"
