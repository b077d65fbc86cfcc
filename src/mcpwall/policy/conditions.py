"""Reading conditions: ``{path, op, value}`` checked for its operator and compiled into a
test, as Intercept validates them (the same error wording).

Besides Intercept's ``args.`` and ``state.`` paths, a condition may read the caller's
token: ``claims.groups`` (HTTP with --auth; with no token such a condition cannot tell,
and so denies)."""

from __future__ import annotations

import re

from mcpwall.engine.operators import compile_regex, is_number, make_test
from mcpwall.policy.model import Condition, Op
from mcpwall.policy.report import Reporter, shown
from mcpwall.policy.tree import Mark, YList, YMap

_CONDITION_KEYS = ("path", "op", "value")
_OPS = tuple(op.value for op in Op)
_LIST_OPS = (Op.IN, Op.NOT_IN)
_ORDER_OPS = (Op.LT, Op.LTE, Op.GT, Op.GTE)
_ROOTS = ("args.", "state.", "claims.")


def read_condition_list(
    report: Reporter, raw: YMap, key: str, where: str
) -> list[tuple[YMap, Mark]]:
    value = raw.get(key)
    if isinstance(value, YMap):
        value_list = [(value, value.mark)]
    elif isinstance(value, YList):
        value_list = [(item, value.at(i)) for i, item in enumerate(value)]
    else:
        report.error(
            raw.at(key),
            f"{where}: {key} must be a list of conditions",
            "each condition is - {path: args.x, op: eq, value: 1}",
        )
        return []
    good: list[tuple[YMap, Mark]] = []
    for index, (item, mark) in enumerate(value_list):
        if not isinstance(item, YMap):
            report.error(
                mark,
                f"{where}.{key}[{index}]: a condition must be a mapping with path, op and value",
            )
            continue
        good.append((item, mark))
    return good


def read_condition(
    report: Reporter, raw: YMap, mark: Mark, where: str, allow_state: bool = True
) -> Condition | None:
    """The condition at ``raw``, compiled; None (with the errors reported) if invalid."""
    report.unknown_keys(raw, _CONDITION_KEYS, "a condition")
    ok = True
    path = raw.get("path")
    op_text = raw.get("op")
    value = raw.get("value")
    if not isinstance(path, str) or not path.startswith(_ROOTS):
        written = path if isinstance(path, str) else shown(path)
        report.error(
            raw.at("path"),
            f'{where}: path must start with "args." or "state.", got "{written}"',
            "use args.<argument> or state.<tool>.<counter> (or claims.<claim> of the "
            "caller's token)",
        )
        ok = False
    elif path.startswith("state.") and not allow_state:
        report.error(
            raw.at("path"),
            f"{where}: when: conditions read arguments and claims only",
            "use args.<argument> or claims.<claim>",
        )
        ok = False
    elif any(not step for step in path.split(".")[1:]) or path.endswith("."):
        report.error(raw.at("path"), f'{where}: path "{path}" has an empty part')
        ok = False
    if op_text not in _OPS:
        report.error(
            raw.at("op"),
            f'{where}: unknown operator "{shown(op_text)}"',
            "use one of: " + ", ".join(_OPS),
        )
        return None
    op = Op(op_text)
    if "value" not in raw:
        report.error(mark, f'{where}: operator "{op.value}" needs a value')
        return None
    value_mark = raw.at("value")
    if op in _LIST_OPS and not isinstance(value, YList):
        report.error(
            value_mark,
            f'{where}: operator "{op.value}" requires a list value',
            'provide a YAML list, e.g. ["a", "b"]',
        )
        ok = False
    elif op in _ORDER_OPS and not is_number(value):
        report.error(
            value_mark,
            f'{where}: operator "{op.value}" requires a numeric value',
            "provide a number",
        )
        ok = False
    elif op is Op.EXISTS and type(value) is not bool:
        report.error(
            value_mark,
            f'{where}: operator "exists" requires a boolean value',
            "use true or false",
        )
        ok = False
    elif op is Op.REGEX:
        if not isinstance(value, str):
            report.error(
                value_mark,
                f"{where}: regex value must be a string",
                "provide the pattern as a string",
            )
            ok = False
        else:
            try:
                compile_regex(value)
            except ValueError as exc:
                report.error(
                    value_mark,
                    f'{where}: invalid regex "{value}": {exc}',
                    "fix the pattern; the syntax is RE2, as in Go",
                )
                ok = False
    if not ok or not isinstance(path, str):
        return None
    steps = path_steps(path)
    lists = len(steps) != path.count(".")
    plain_value = list(value) if isinstance(value, YList) else value
    test = make_test(op, plain_value)
    return Condition(
        path,
        steps,
        op,
        plain_value,
        test,
        mark.line,
        lists=lists,
        reads_claims=path.startswith("claims."),
    )


_INDEXES = re.compile(r"\[(\*|[0-9]+)\]")


def path_steps(path: str) -> tuple[str, ...]:
    """The steps of a path below its root: ``args.resource[*].kind`` is
    ("resource", "*", "kind"), ``args.command[0]`` is ("command", "0")."""
    steps: list[str] = []
    for part in path.partition(".")[2].split("."):
        name = _INDEXES.sub("", part) if part.endswith("]") else part
        steps.append(name)
        if name != part:
            steps.extend(_INDEXES.findall(part[len(name) :]))
    return tuple(steps)
