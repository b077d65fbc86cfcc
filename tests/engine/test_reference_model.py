"""The engine against a reference model: random policies, random calls, the same
decision.

The model below is written from the README's semantics (Evaluation, Rules, the
comparison rules under "Conditions") and from how Go prints values, which Intercept's
text comparisons rest on; it never calls the engine or its operators. It covers hide
(names and globs), default deny, exact keys, glob keys (the most literal characters
win, ties to the first written), "*" rules after the tool's own, seed allow, deny with
and without when, Intercept's conditions with all eleven operators, and the first
denying rule in file order. Counters have their own property tests (tests/state).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall.engine.decide import Call
from mcpwall.engine.gate import Gate
from mcpwall.policy import load_policy
from mcpwall.state.memory import MemoryStore

TOOL_KEYS = ["a", "b", "c_x", "c_*", "*_x", "c?x", "*"]
HIDE = ["b", "c_?", "zz"]
CALLED = ["a", "b", "c_x", "c_y", "d_x", "cQx", "e"]

# Go prints a JSON number (a float64) with %v: the shortest digits, in exponent form
# from 1e+06 up and below 1e-04. Policy numbers are Go ints unless written with a point.
ARG_NUMBER_TEXT = {5: "5", 0: "0", -3: "-3", 2.5: "2.5", 1000000: "1e+06", 1e-05: "1e-05"}
POLICY_NUMBER_TEXT = {5: "5", 0: "0", -3: "-3", 2.5: "2.5", 1000000: "1000000"}

SCALARS = ["kube-system", "5", "", "true", "1e+06", 5, 0, -3, 2.5, 1000000, True, False]
NUMBERS = [5, 0, -3, 2.5, 1000000]
PATTERNS = ["^kube-", "system$", "[0-9]", "^$", "e|b"]
ARG_VALUES = [
    "kube-system",
    "5",
    "",
    "true",
    "abc",
    "1e+06",
    5,
    0,
    -3,
    2.5,
    1000000,
    1e-05,
    True,
    False,
    None,
    ["kube", 5],
    [],
    {"z": "kube-system"},
    {"z": 5},
]
PATHS = ["args.x", "args.y", "args.x", "args.y", "args.x.z"]
OPS = ["eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists"]


def condition_values(op: str) -> st.SearchStrategy[Any]:
    if op in ("eq", "neq"):
        return st.sampled_from(SCALARS)
    if op in ("in", "not_in"):
        return st.lists(st.sampled_from(SCALARS), min_size=1, max_size=3)
    if op in ("lt", "lte", "gt", "gte"):
        return st.sampled_from(NUMBERS)
    if op == "regex":
        return st.sampled_from(PATTERNS)
    if op == "contains":
        return st.sampled_from(["kube", "", "5", "x"])
    return st.booleans()  # exists


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(OPS))
    return {"path": draw(st.sampled_from(PATHS)), "op": op, "value": draw(condition_values(op))}


DENY_WHEN = st.builds(
    lambda when: {"action": "deny", "when": when}, st.lists(conditions(), min_size=1, max_size=2)
)
REQUIRE = st.builds(
    lambda conds: {"conditions": conds}, st.lists(conditions(), min_size=1, max_size=2)
)
# Mostly rules with conditions: a plain deny ends the evaluation before anything is compared.
RULES = st.one_of(
    st.just({"action": "allow"}),
    st.just({"action": "deny"}),
    st.just({"action": "deny", "intercept": True}),
    DENY_WHEN,
    DENY_WHEN,
    DENY_WHEN,
    REQUIRE,
    REQUIRE,
    REQUIRE,
)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(TOOL_KEYS), unique=True, min_size=3))
    numbers = iter(range(1, 1000))
    tools = {}
    for key in keys:
        rules = []
        for drawn in draw(st.lists(RULES, min_size=1, max_size=4)):
            rules.append(_written(dict(drawn), f"R{next(numbers)}"))
        tools[key] = {"rules": rules}
    return {
        "version": "1",
        "default": draw(st.sampled_from(["allow", "deny"])),
        "hide": draw(st.lists(st.sampled_from(HIDE), unique=True, max_size=1)),
        "tools": tools,
    }


def _written(rule: dict[str, Any], label: str) -> dict[str, Any]:
    """The rule as a user writes it, labelled so that a denial says which rule it was."""
    if rule.pop("intercept", False):
        return {"name": label, "action": "deny", "on_deny": label}
    if "conditions" in rule:
        return {"name": label, **rule, "on_deny": label}
    if rule["action"] == "deny":
        return {**rule, "reason": label}
    return rule


ABSENT = "<absent>"  # drawn for an argument the call leaves out
CALLS = st.fixed_dictionaries(
    {"x": st.sampled_from([*ARG_VALUES, ABSENT]), "y": st.sampled_from([*ARG_VALUES, ABSENT])}
).map(lambda args: {key: value for key, value in args.items() if value != ABSENT})


# -- the model ---------------------------------------------------------------------------

MISSING = object()


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    by: str | None = None  # "(hidden)", "(default deny)" or the denying rule's label


def model(policy: dict[str, Any], tool: str, args: dict[str, Any]) -> Verdict:
    hide = policy["hide"]
    if any(fnmatch.fnmatchcase(tool, pattern) for pattern in hide):
        return Verdict(False, "(hidden)")
    tools = policy["tools"]
    entry = tools.get(tool)
    if entry is None:
        globs = [key for key in tools if key != "*" and set(key) & set("*?")]
        matching = [key for key in globs if fnmatch.fnmatchcase(tool, key)]
        if matching:
            most = max(_literal(key) for key in matching)
            entry = tools[next(key for key in matching if _literal(key) == most)]
    if entry is None and policy["default"] == "deny":
        return Verdict(False, "(default deny)")
    rules = (entry["rules"] if entry else []) + tools.get("*", {"rules": []})["rules"]
    for rule in rules:
        if _denies(rule, args):
            return Verdict(False, rule.get("reason") or rule.get("on_deny"))
    return Verdict(True)


def _literal(key: str) -> int:
    return sum(1 for char in key if char not in "*?")


def _denies(rule: dict[str, Any], args: dict[str, Any]) -> bool:
    if rule.get("action") == "allow":
        return False
    if rule.get("action") == "deny":
        # A when whose condition cannot be told (None) lets the deny apply: fail closed.
        return all(_test(c, args) is not False for c in rule.get("when", []))
    return any(_test(c, args) is not True for c in rule["conditions"])


def _test(condition: dict[str, Any], args: dict[str, Any]) -> bool | None:
    actual: Any = args
    for step in condition["path"].split(".")[1:]:
        actual = actual.get(step, MISSING) if isinstance(actual, dict) else MISSING
    op, expected = condition["op"], condition["value"]
    if op == "exists":
        return (actual is not MISSING and actual is not None) is expected
    if actual is MISSING:
        return None
    if op in ("eq", "neq"):
        equal = _equal(actual, expected)
        return equal if op == "eq" else not equal
    if op in ("in", "not_in"):
        inside = any(_equal(actual, item) for item in expected)
        return inside if op == "in" else not inside
    if op in ("lt", "lte", "gt", "gte"):
        if not _number(actual):
            return None
        return {
            "lt": actual < expected,
            "lte": actual <= expected,
            "gt": actual > expected,
            "gte": actual >= expected,
        }[op]
    if op == "regex":
        return re.search(expected, actual) is not None if isinstance(actual, str) else None
    # contains: a substring of a string, or an element of a list
    if isinstance(actual, str):
        return expected in actual
    if isinstance(actual, list):
        return any(_equal(item, expected) for item in actual)
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _equal(actual: Any, expected: Any) -> bool:
    """Two numbers compare as numbers; anything else as the text Go prints."""
    if _number(actual) and _number(expected):
        return bool(actual == expected)
    return _go_text(actual, ARG_NUMBER_TEXT) == _go_text(expected, POLICY_NUMBER_TEXT)


def _go_text(value: Any, numbers: dict[float, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(item, numbers) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_text(value[k], numbers)}" for k in sorted(value)) + "]"
    return numbers[value]


# -- the property ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("model") / "policy.yaml"


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), calls=st.lists(CALLS, min_size=4, max_size=8))
def test_the_engine_decides_as_the_model(
    policy_file: Path, policy: dict[str, Any], calls: list[dict[str, Any]]
) -> None:
    policy_file.write_text(json.dumps(policy, indent=1))  # JSON is YAML
    compiled = load_policy(policy_file)
    gate = Gate(MemoryStore)
    for tool in CALLED:
        for args in calls:
            expected = model(policy, tool, args)
            decision, _ = gate.judge(compiled, Call("s", tool, args))
            assert decision.allowed is expected.allowed, (tool, args, decision)
            if not expected.allowed:
                said = decision.rule if expected.by in ("(hidden)", "(default deny)") else None
                assert (said or decision.reason) == expected.by, (tool, args, decision)


def test_the_model_reads_the_readme_examples() -> None:
    """The model itself, on cases the README spells out, so that a test of the engine
    against it means something."""
    when = {"path": "args.namespace", "op": "in", "value": ["kube-system", "prod"]}
    policy = {
        "default": "allow",
        "hide": ["helm_*"],
        "tools": {"pods_delete": {"rules": [{"action": "deny", "when": [when], "reason": "R1"}]}},
    }
    assert model(policy, "helm_install", {}) == Verdict(False, "(hidden)")
    assert model(policy, "pods_delete", {"namespace": "prod"}) == Verdict(False, "R1")
    assert model(policy, "pods_delete", {}) == Verdict(False, "R1")  # cannot tell: applies
    assert model(policy, "pods_delete", {"namespace": "dev"}) == Verdict(True)
    assert _equal("5", 5) and _equal(1000000, 1000000.0)
    assert _equal(1000000, "1e+06") and not _equal(1000000, "1000000")  # a JSON float64
    assert _test({"path": "args.n", "op": "lte", "value": 5}, {"n": "5"}) is None
    assert _test({"path": "args.l", "op": "contains", "value": 5}, {"l": [5.0]}) is True
