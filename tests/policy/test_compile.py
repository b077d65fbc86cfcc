"""Validation and compilation: every error at once, each with its line; both dialects
compile into the same model.

Against Intercept's published corpus (see `tests.conftest.INTERCEPT`), mcpwall must accept
every file in `policies/` and the valid fixtures unchanged, and must refuse
`testdata/invalid_policy.yaml` (a YAML syntax error: its line) and
`testdata/invalid_schema.yaml` (every one of its errors, each with its line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mcpwall.policy import check_policy, load_policy
from mcpwall.policy.model import Op, Scope
from tests.conftest import INTERCEPT, needs_intercept


def errors(path: Path) -> list[tuple[int, str]]:
    policy, problems = check_policy(path)
    assert policy is None
    return [(p.line, p.message) for p in problems if p.severity == "error"]


def messages(write_policy: Callable[..., Path], text: str) -> list[str]:
    return [message for _, message in errors(write_policy(text))]


@needs_intercept
def test_intercept_invalid_schema_fixture_reports_every_error_with_its_line() -> None:
    assert errors(INTERCEPT / "testdata" / "invalid_schema.yaml") == [
        (1, 'version must be "1", got "2"'),
        (6, "tools.some_tool.rules[0]: rule must have a name"),
        (9, 'tools.some_tool.rules[0].conditions[0]: unknown operator "unknown_op"'),
        (
            14,
            'tools.some_tool.rules[1].conditions[0]: path must start with "args." or '
            '"state.", got "foo.bar"',
        ),
        (22, 'tools.some_tool.rules[2].conditions[0]: operator "in" requires a list value'),
        (28, 'tools.some_tool.rules[3].conditions[0]: operator "lt" requires a numeric value'),
        (
            34,
            'tools.some_tool.rules[4].conditions[0]: invalid regex "[invalid(": '
            "missing ]: [invalid(",
        ),
        (38, "tools.some_tool.rules[5]: deny rules must not have conditions"),
        (43, "tools.some_tool.rules[6]: evaluate rules must have at least one condition"),
        (
            49,
            "tools.rate_limit_tool.rules[0]: rate_limit count must be a positive integer, "
            'got "five"',
        ),
        (
            52,
            "tools.rate_limit_tool.rules[1]: rate_limit cannot be combined with conditions "
            "or state",
        ),
        (
            59,
            "tools.rate_limit_tool.rules[2]: rate_limit cannot be combined with conditions "
            "or state",
        ),
        (
            65,
            'tools.rate_limit_tool.rules[3]: rate_limit count must be a positive integer, got "0"',
        ),
        (
            68,
            'tools.rate_limit_tool.rules[4]: rate_limit window must be "minute", "hour", or '
            '"day", got "week"',
        ),
        (72, 'tools.rate_limit_tool.rules[5]: rate_limit cannot be used with action "deny"'),
    ]


@needs_intercept
def test_intercept_invalid_policy_fixture_is_a_syntax_error_on_its_line() -> None:
    policy, problems = check_policy(INTERCEPT / "testdata" / "invalid_policy.yaml")
    assert policy is None and len(problems) == 1
    assert problems[0].line == 7 and problems[0].message.startswith("YAML syntax error")
    assert problems[0].hint == "the quoted string opened on line 5 is not closed"


@needs_intercept
def test_the_whole_published_corpus_is_here() -> None:
    assert len(list((INTERCEPT / "policies").glob("*.yaml"))) == 53


@pytest.mark.parametrize(
    "path",
    [
        *sorted((INTERCEPT / "policies").glob("*.yaml")),
        INTERCEPT / "testdata" / "valid_policy.yaml",
        INTERCEPT / "testdata" / "default_deny_policy.yaml",
    ],
    ids=lambda p: p.name,
)
@needs_intercept
def test_every_published_intercept_policy_loads(path: Path) -> None:
    assert path.exists()
    policy, problems = check_policy(path)
    assert policy is not None, [str(p) for p in problems]


RULE = "tools:\n  t:\n    rules:\n      - "

# Every row of Intercept's POLICY.md "Validation errors" table.
INTERCEPT_ERRORS = [
    ('hide: [""]\ntools: {}', "hide[0]: entry must not be empty"),
    ("hide: [a, a]\ntools: {}", 'hide: duplicate entry "a"'),
    ('version: "2"\ntools: {}', 'version must be "1", got "2"'),
    ("default: maybe\ntools: {}", 'default must be "allow" or "deny", got "maybe"'),
    (
        RULE + "conditions: [{path: args.x, op: eq, value: 1}]",
        "tools.t.rules[0]: rule must have a name",
    ),
    (
        RULE + "{name: r, action: block}",
        'tools.t.rules[0]: action must be "evaluate", "deny" or "allow", got "block"',
    ),
    (
        RULE + "{name: r, action: deny, conditions: [{path: args.x, op: eq, value: 1}]}",
        "tools.t.rules[0]: deny rules must not have conditions",
    ),
    (
        RULE + "{name: r, action: evaluate}",
        "tools.t.rules[0]: evaluate rules must have at least one condition",
    ),
    (
        RULE + "{name: r, conditions: [{path: x, op: eq, value: 1}]}",
        'tools.t.rules[0].conditions[0]: path must start with "args." or "state.", got "x"',
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: like, value: 1}]}",
        'tools.t.rules[0].conditions[0]: unknown operator "like"',
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: not_in, value: 1}]}",
        'tools.t.rules[0].conditions[0]: operator "not_in" requires a list value',
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: gte, value: a}]}",
        'tools.t.rules[0].conditions[0]: operator "gte" requires a numeric value',
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: exists, value: 1}]}",
        'tools.t.rules[0].conditions[0]: operator "exists" requires a boolean value',
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: regex, value: 1}]}",
        "tools.t.rules[0].conditions[0]: regex value must be a string",
    ),
    (
        RULE + "{name: r, conditions: [{path: args.x, op: regex, value: '(?=x)'}]}",
        'tools.t.rules[0].conditions[0]: invalid regex "(?=x)": invalid perl operator: (?=',
    ),
    (
        RULE + "{name: r, conditions: [{path: state.t.c, op: lt, value: 1}],"
        " state: {counter: '', window: day}}",
        "tools.t.rules[0].state: counter must not be empty",
    ),
    (
        RULE + "{name: r, conditions: [{path: state.t.c, op: lt, value: 1}],"
        " state: {counter: c, window: week}}",
        'tools.t.rules[0].state: window must be "minute", "hour", or "day", got "week"',
    ),
    (
        RULE + "{name: r, conditions: [{path: state.t.c, op: lt, value: 1}],"
        " state: {counter: c, window: day, increment_from: amount}}",
        'tools.t.rules[0].state: increment_from must start with "args.", got "amount"',
    ),
    (
        RULE + "{name: r, conditions: [{path: state.t.c, op: lt, value: 1}]}",
        "tools.t.rules[0]: condition references state.t.c but no matching state block found",
    ),
    (
        RULE + "{name: r, rate_limit: -5/hour}",
        'tools.t.rules[0]: rate_limit count must be a positive integer, got "-5"',
    ),
    (
        RULE + "{name: r, rate_limit: 5/fortnight}",
        'tools.t.rules[0]: rate_limit window must be "minute", "hour", or "day", got "fortnight"',
    ),
    (
        RULE + "{name: r, rate_limit: 5/hour, conditions: [{path: args.x, op: eq, value: 1}]}",
        "tools.t.rules[0]: rate_limit cannot be combined with conditions or state",
    ),
    (
        RULE + "{name: r, action: deny, rate_limit: 5/hour}",
        'tools.t.rules[0]: rate_limit cannot be used with action "deny"',
    ),
    (
        RULE + "{name: a, rate_limit: 5/hour}\n      - {name: b, rate_limit: 50/hour}",
        'tools.t.rules[1]: duplicate state counter "_rate_hour" (also used by rules[0])',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), INTERCEPT_ERRORS, ids=[e[1][:50] for e in INTERCEPT_ERRORS]
)
def test_every_intercept_validation_error_is_reported(
    write_policy: Callable[..., Path], text: str, expected: str
) -> None:
    assert expected in messages(
        write_policy, 'version: "1"\n' + text if not text.startswith("version") else text
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tools:\n  t:\n    rulez: []", 'unknown key "rulez" in tools.t'),
        ("tols: {}", 'unknown key "tols" in the policy'),
        (
            RULE + "{action: approve, conditions: [{path: args.x, op: eq, value: 1}]}",
            "tools.t.rules[0]: approve rules must not have conditions",
        ),
        (
            RULE + "{action: approve, rate_limit: {max: 1, window: 60}}",
            'tools.t.rules[0]: rate_limit cannot be used with action "approve"',
        ),
        (
            RULE + "{action: approve, remember: soon}",
            'tools.t.rules[0]: remember must be a duration, got "soon"',
        ),
        (
            RULE + "{action: deny, timeout: 1m}",
            "tools.t.rules[0]: remember and timeout apply to approve rules only",
        ),
        ("pin: always", 'pin must be "off", "warn" or "enforce", got "always"'),
        (
            "validate_arguments: yes please",
            "validate_arguments must be true or false, got yes please",
        ),
        (
            "tools:\n  t:\n    validate_arguments: 1",
            "tools.t.validate_arguments must be true or false, got 1",
        ),
        ("redact: {detectors: [kube]}", 'unknown redaction detector "kube"'),
        (
            "redact: {patterns: [{name: x, regex: '('}]}",
            'redact.patterns[0]: invalid regex "(": missing ): (',
        ),
        ("redact: {patterns: [{regex: 'a'}]}", "redact.patterns[0]: a pattern needs a name"),
        (
            RULE + "{name: r, action: evaluate, when: "
            "[{path: args.x, op: eq, value: 1}], conditions: [{path: args.x, op: eq, value: 1}]}",
            "tools.t.rules[0]: when: applies to deny and approve rules only",
        ),
        (
            RULE + "{rate_limit: {max: 0, window: 60}}",
            "tools.t.rules[0]: rate_limit max must be a positive integer, got 0",
        ),
        (
            RULE + "{rate_limit: {max: 3, window: soon}}",
            'tools.t.rules[0]: window must be "minute", "hour", or "day", got "soon"',
        ),
        (
            RULE + "{rate_limit: {max: 3, window: 60, scope: team}}",
            'tools.t.rules[0]: scope must be "session", "global" or "user", got "team"',
        ),
        (
            RULE + "{rate_limit: {max: 3, window: 60, per: namespace}}",
            'tools.t.rules[0]: per must be an argument path like args.namespace, got "namespace"',
        ),
        (
            RULE + "{action: deny, reason: a, on_deny: b}",
            "tools.t.rules[0]: use either reason or on_deny, not both",
        ),
        ("mode: audit\ntools: {}", 'mode must be "enforce" or "monitor", got "audit"'),
        (
            RULE + "{name: r, conditions: [{path: state.t.c, op: regex,"
            " value: x}], state: {counter: c, window: day}}",
            'tools.t.rules[0].conditions[0]: operator "regex" cannot test a counter, which is a '
            "number",
        ),
    ],
)
def test_mcpwall_own_errors(write_policy: Callable[..., Path], text: str, expected: str) -> None:
    assert expected in messages(write_policy, 'version: "1"\n' + text)


def test_unknown_key_suggests_the_right_one(write_policy: Callable[..., Path]) -> None:
    _, problems = check_policy(
        write_policy('version: "1"\ntools:\n  t:\n    rules:\n      - {action: deny, resaon: x}\n')
    )
    assert problems[0].hint == 'did you mean "reason"?'
    assert (problems[0].line, problems[0].col) == (5, 24)


def test_both_dialects_compile_to_the_same_model(write_policy: Callable[..., Path]) -> None:
    policy = load_policy(
        write_policy("""
        version: "1"
        tools:
          vm_clone:
            rules:
              - action: allow
              - rate_limit: {max: 10, window: 60}
          create_issue:
            rules:
              - name: hourly
                rate_limit: 5/hour
          create_charge:
            rules:
              - name: spend
                conditions:
                  - {path: state.create_charge.daily_spend, op: lt, value: 1000}
                  - {path: state.create_issue._rate_hour, op: gte, value: 0}
                state: {counter: daily_spend, window: day, increment_from: args.amount,
                        per: args.customer}
          "pods_*":
            rules:
              - {action: deny, when: [{path: args.namespace, op: eq, value: kube-system}]}
    """)
    )
    seed = policy.entries["vm_clone"].rules[0].counter
    assert seed is not None and seed.scope is Scope.SESSION and seed.is_rate_limit
    assert (seed.window.seconds, seed.window.calendar, seed.limits) == (60, False, ((Op.LTE, 10),))
    hourly = policy.entries["create_issue"].rules[0].counter
    assert hourly is not None and hourly.scope is Scope.GLOBAL and hourly.max_calls == 5
    assert (hourly.window.seconds, hourly.window.calendar) == (3600, False)  # sliding
    spend_rule = policy.entries["create_charge"].rules[0]
    spend = spend_rule.counter
    assert spend is not None and spend.window.calendar and not spend.is_rate_limit
    assert spend.limits == ((Op.LT, 1000),) and spend.per == ("customer",)
    assert [c.path for c in spend_rule.state_checks] == ["state.create_issue._rate_hour"]
    assert policy.entry_for("pods_delete") is policy.globs[0][1]
    assert policy.entries["vm_clone"].rules[0].name == "vm_clone[1] rate_limit 10/60"


def test_the_seed_snippet_loads_with_a_warning(write_policy: Callable[..., Path]) -> None:
    policy, problems = check_policy(
        write_policy("tools:\n  vm_clone:\n    rules:\n      - action: allow\n")
    )
    assert policy is not None
    assert [p.severity for p in problems] == ["warning"]


def test_exact_name_beats_glob_and_longer_glob_beats_shorter(
    write_policy: Callable[..., Path],
) -> None:
    policy = load_policy(
        write_policy("""
        version: "1"
        tools:
          "*_delete": {rules: [{action: deny, reason: any delete}]}
          "pods_*": {rules: [{action: deny, reason: pods}]}
          "pods_delete": {rules: [{action: deny, reason: exact}]}
    """)
    )
    assert policy.entry_for("pods_delete").key == "pods_delete"  # type: ignore[union-attr]
    assert policy.entry_for("pods_list").key == "pods_*"  # type: ignore[union-attr]
    assert policy.entry_for("vm_delete").key == "*_delete"  # type: ignore[union-attr]
    assert policy.entry_for("pods_x_delete").key == "*_delete"  # type: ignore[union-attr]
