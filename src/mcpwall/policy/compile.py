"""Validate a policy tree and compile it into a Policy, in one pass that reports every
error at once.

Each error names its line and column and carries a hint. The wording of Intercept's own
validation errors (POLICY.md, "Validation errors") is kept where the case is the same,
so that a user coming from Intercept recognises them.

Compilation spells both dialects out into the same model:

- Intercept form: ``name``, ``action: evaluate|deny``, ``conditions``, ``on_deny``,
  ``state`` counters, ``rate_limit: N/minute|hour|day``. Rules of this form need a name.
- Seed form: ``action: allow``, ``action: deny`` with ``reason``,
  ``rate_limit: {max: N, window: SECONDS}``; no name needed, one is derived.
- Extensions: ``scope``, ``per``, ``when`` on deny, globs in tool keys and ``hide``,
  durations (``90s``, ``15m``, ``1h``, ``1d``), top-level ``mode: monitor``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Any

from mcpwall.engine.operators import compile_regex, is_number, make_test
from mcpwall.policy.model import (
    Condition,
    Counter,
    Op,
    Policy,
    PolicyError,
    Rule,
    Scope,
    ToolEntry,
    Window,
)
from mcpwall.policy.source import Mark, YList, YMap

_TOP_KEYS = ("version", "description", "default", "mode", "hide", "tools")
_ENTRY_KEYS = ("rules",)
_RULE_KEYS = (
    "name",
    "action",
    "conditions",
    "when",
    "on_deny",
    "reason",
    "state",
    "rate_limit",
    "scope",
    "per",
)
_CONDITION_KEYS = ("path", "op", "value")
_STATE_KEYS = ("counter", "window", "increment", "increment_from", "scope", "per")
_RATE_KEYS = ("max", "window", "scope", "per")
_ACTIONS = ("evaluate", "deny", "allow", "approve")
_OPS = tuple(op.value for op in Op)
_LIST_OPS = (Op.IN, Op.NOT_IN)
_ORDER_OPS = (Op.LT, Op.LTE, Op.GT, Op.GTE)
_CALENDAR = {"minute": 60, "hour": 3600, "day": 86400}
_DURATION = re.compile(r"([0-9]+)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GLOB_CHARS = frozenset("*?[")
GLOBAL_OWNER = "_global"


def compile_policy(data: Any, file: str, digest: str) -> tuple[Policy | None, list[PolicyError]]:
    """Return the compiled policy (None if any error) and every error and warning."""
    compiler = _Compiler(file)
    policy = compiler.run(data, digest)
    problems = sorted(compiler.problems, key=lambda p: (p.line, p.col, p.severity))
    if any(p.severity == "error" for p in problems):
        return None, problems
    assert policy is not None
    policy.warnings = tuple(problems)
    return policy, problems


@dataclass
class _RuleDraft:
    """A rule after its own checks, before state paths are resolved across rules."""

    owner: str
    entry_key: str
    index: int
    mark: Mark
    name: str
    action: str
    reason: str | None
    when: list[Condition] = field(default_factory=list)
    conditions: list[tuple[YMap, Mark]] = field(default_factory=list)
    counter: Counter | None = None
    counter_mark: Mark | None = None


class _Compiler:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[PolicyError] = []

    # -- reporting ------------------------------------------------------------------

    def error(self, mark: Mark, message: str, hint: str = "") -> None:
        self.problems.append(PolicyError(self.file, mark.line, mark.col, message, hint))

    def warn(self, mark: Mark, message: str, hint: str = "") -> None:
        self.problems.append(
            PolicyError(self.file, mark.line, mark.col, message, hint, severity="warning")
        )

    def unknown_keys(self, mapping: YMap, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"{what} keys are: " + ", ".join(allowed)
            )
            self.error(mapping.key_at(key), f'unknown key "{key}" in {what}', hint)

    # -- top level ------------------------------------------------------------------

    def run(self, data: Any, digest: str) -> Policy | None:
        if data is None:
            self.error(Mark(1, 1), "the policy file is empty", 'start with: version: "1"')
            return None
        if not isinstance(data, YMap):
            self.error(
                getattr(data, "mark", Mark(1, 1)),
                "a policy must be a YAML mapping",
                'start with: version: "1" and a tools: section',
            )
            return None
        self.unknown_keys(data, _TOP_KEYS, "the policy")

        self._version(data)
        description = self._optional_str(data, "description") or ""
        default_deny = self._choice(data, "default", ("allow", "deny"), "allow") == "deny"
        monitor = self._choice(data, "mode", ("enforce", "monitor"), "enforce") == "monitor"
        hidden, hidden_pattern = self._hide(data)
        drafts, entry_marks = self._tools(data)
        rules_by_entry, counters = self._finish_rules(drafts, self._counters(drafts))

        entries: dict[str, ToolEntry] = {}
        globs: list[tuple[int, int, re.Pattern[str], ToolEntry]] = []
        wildcard: tuple[Rule, ...] = ()
        for order, (key, mark) in enumerate(entry_marks.items()):
            entry = ToolEntry(key, tuple(rules_by_entry.get(key, ())), mark.line)
            if key == "*":
                wildcard = entry.rules
            elif _is_glob(key):
                literal = sum(1 for ch in key if ch not in _GLOB_CHARS)
                globs.append((-literal, order, _glob(key), entry))
            else:
                entries[key] = entry
            if key != "*" and key in hidden and entry.rules:
                self.warn(mark, f'"{key}" is hidden, so its rules never run')
        globs.sort(key=lambda item: (item[0], item[1]))

        return Policy(
            path=self.file,
            digest=digest,
            description=description,
            default_deny=default_deny,
            monitor=monitor,
            hidden=frozenset(hidden),
            hidden_pattern=hidden_pattern,
            entries=entries,
            globs=tuple((pattern, entry) for _, _, pattern, entry in globs),
            wildcard=wildcard,
            counters=counters,
        )

    def _version(self, data: YMap) -> None:
        if "version" not in data:
            self.warn(
                data.mark,
                'no "version": reading the policy as version "1"',
                'add version: "1" at the top',
            )
            return
        version = data["version"]
        if version not in ("1", 1) or type(version) is bool:
            self.error(
                data.at("version"),
                f'version must be "1", got "{_text(version)}"',
                'set version: "1"',
            )

    def _optional_str(self, data: YMap, key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(data.at(key), f"{key} must be a string, got {_kind(value)}")
            return None
        return value

    def _choice(self, data: YMap, key: str, choices: tuple[str, ...], default: str) -> str:
        if key not in data or data[key] is None:
            return default
        value = data[key]
        if value not in choices:
            quoted = " or ".join(f'"{c}"' for c in choices)
            self.error(
                data.at(key),
                f'{key} must be {quoted}, got "{_text(value)}"',
                f"use {quoted}, or leave {key} out ({default} is the default)",
            )
            return default
        return str(value)

    def _hide(self, data: YMap) -> tuple[set[str], re.Pattern[str] | None]:
        hidden: set[str] = set()
        patterns: list[str] = []
        raw = data.get("hide")
        if raw is None:
            return hidden, None
        if not isinstance(raw, YList):
            self.error(
                data.at("hide"), "hide must be a list of tool names", "write hide: [tool_a, tool_b]"
            )
            return hidden, None
        seen: set[str] = set()
        for index, name in enumerate(raw):
            mark = raw.at(index)
            if not isinstance(name, str):
                self.error(mark, f"hide[{index}]: entry must be a tool name, got {_kind(name)}")
                continue
            if not name.strip():
                self.error(
                    mark,
                    f"hide[{index}]: entry must not be empty",
                    "remove the empty entry or give a tool name",
                )
                continue
            if name in seen:
                self.error(mark, f'hide: duplicate entry "{name}"', "remove the duplicate")
                continue
            seen.add(name)
            if _is_glob(name):
                patterns.append(fnmatch.translate(name))
            else:
                hidden.add(name)
        pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        return hidden, pattern

    # -- tools and rules --------------------------------------------------------------

    def _tools(self, data: YMap) -> tuple[list[_RuleDraft], dict[str, Mark]]:
        drafts: list[_RuleDraft] = []
        entry_marks: dict[str, Mark] = {}
        tools = data.get("tools")
        if tools is None:
            if "tools" not in data:
                self.warn(data.mark, "no tools section: only default and hide apply")
            return drafts, entry_marks
        if not isinstance(tools, YMap):
            self.error(
                data.at("tools"),
                "tools must be a mapping of tool names to rules",
                "write tools:, then each tool name with rules: under it",
            )
            return drafts, entry_marks
        for key, entry in tools.items():
            key_mark = tools.key_at(key)
            if not key.strip():
                self.error(key_mark, "a tool name must not be empty")
                continue
            if _is_glob(key) and key != "*":
                try:
                    _glob(key)
                except re.error:
                    self.error(key_mark, f'"{key}" is not a valid glob')
                    continue
            entry_marks[key] = key_mark
            owner = GLOBAL_OWNER if key == "*" else key
            if entry is None:
                continue
            if not isinstance(entry, YMap):
                self.error(
                    tools.at(key),
                    f'tools.{key} must be a mapping with "rules:"',
                    f"write {key}: then rules: [] (or a list of rules) under it",
                )
                continue
            self.unknown_keys(entry, _ENTRY_KEYS, f"tools.{key}")
            rules = entry.get("rules")
            if rules is None:
                continue
            if not isinstance(rules, YList):
                self.error(
                    entry.at("rules"),
                    f"tools.{key}.rules must be a list",
                    "start each rule with '- '",
                )
                continue
            for index, rule in enumerate(rules):
                draft = self._rule(owner, key, index, rule, rules.at(index))
                if draft is not None:
                    drafts.append(draft)
        return drafts, entry_marks

    def _rule(self, owner: str, key: str, index: int, raw: Any, mark: Mark) -> _RuleDraft | None:
        where = f"tools.{key}.rules[{index}]"
        if not isinstance(raw, YMap):
            self.error(
                mark,
                f"{where}: a rule must be a mapping, got {_kind(raw)}",
                "write - action: allow, - action: deny, or - name: ... with conditions",
            )
            return None
        self.unknown_keys(raw, _RULE_KEYS, "a rule")

        action = self._action(raw, where)
        if action is None:
            return None
        reason = self._reason(raw, where)
        name = self._rule_name(raw, where, action, key, index)
        draft = _RuleDraft(owner, key, index, mark, name, action, reason)

        conditions = raw.get("conditions")
        rate_limit = raw.get("rate_limit")
        state = raw.get("state")
        when = raw.get("when")

        if "conditions" in raw:
            draft.conditions = self._condition_list(raw, "conditions", where)
        if when is not None or "when" in raw:
            if action != "deny":
                self.error(
                    raw.key_at("when"),
                    f"{where}: when: applies to deny rules only",
                    "for other rules put the conditions under conditions:",
                )
            else:
                draft.when = [
                    self._condition(c, m, f"{where}.when", allow_state=False)
                    for c, m in self._condition_list(raw, "when", where)
                ]
                draft.when = [c for c in draft.when if c is not None]

        if rate_limit is not None:
            if action == "deny":
                self.error(
                    raw.key_at("rate_limit"),
                    f'{where}: rate_limit cannot be used with action "deny"',
                    "remove rate_limit or change the action",
                )
            elif conditions is not None or state is not None:
                self.error(
                    raw.key_at("rate_limit"),
                    f"{where}: rate_limit cannot be combined with conditions or state",
                    "use separate rules, or the full conditions + state syntax",
                )
            else:
                draft.counter = self._rate_limit(raw, owner, where)
                draft.counter_mark = raw.at("rate_limit")
        elif state is not None:
            if action == "deny":
                self.error(
                    raw.key_at("state"),
                    f"{where}: a deny rule keeps no counter",
                    "remove state: from the deny rule",
                )
            elif action == "allow":
                self.error(
                    raw.key_at("state"),
                    f"{where}: an allow rule keeps no counter",
                    "use an evaluate rule (conditions + state) for counters",
                )
            else:
                draft.counter = self._state_block(raw, owner, where)
                draft.counter_mark = raw.at("state")
        elif "scope" in raw or "per" in raw:
            self.error(
                raw.key_at("scope" if "scope" in raw else "per"),
                f"{where}: scope and per apply to a rate_limit or a state counter",
                "add a rate_limit or a state block, or remove them",
            )

        if action == "deny" and conditions is not None:
            self.error(
                raw.key_at("conditions"),
                f"{where}: deny rules must not have conditions",
                "to deny only in some cases, use when: instead of conditions:",
            )
        if action == "evaluate" and not conditions and rate_limit is None:
            self.error(
                mark,
                f"{where}: evaluate rules must have at least one condition",
                "add conditions, or use action: allow / action: deny",
            )
        if action == "allow" and conditions is not None:
            self.error(
                raw.key_at("conditions"),
                f"{where}: allow rules take no conditions",
                "use an evaluate rule: conditions that must pass for the call",
            )
        if action == "allow" and reason is not None:
            self.error(
                mark,
                f"{where}: an allow rule never denies, so it takes no reason",
                "remove reason/on_deny",
            )
        return draft

    def _action(self, raw: YMap, where: str) -> str | None:
        action = raw.get("action")
        if action is None:
            return "evaluate"
        if action == "approve":
            self.error(
                raw.at("action"),
                f"{where}: action approve is not supported yet",
                "use deny for now; approval by a human comes in a later release",
            )
            return None
        if action not in _ACTIONS:
            self.error(
                raw.at("action"),
                f'{where}: action must be "evaluate", "deny" or "allow", got "{_text(action)}"',
                "evaluate checks conditions; deny blocks; allow lists the tool",
            )
            return None
        return str(action)

    def _reason(self, raw: YMap, where: str) -> str | None:
        if "reason" in raw and "on_deny" in raw:
            self.error(
                raw.key_at("reason"),
                f"{where}: use either reason or on_deny, not both",
                "they mean the same: the message the agent sees on a denial",
            )
        for key in ("on_deny", "reason"):
            value = raw.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                self.error(raw.at(key), f"{where}: {key} must be a string, got {_kind(value)}")
                return None
            return value
        return None

    def _rule_name(self, raw: YMap, where: str, action: str, key: str, index: int) -> str:
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            self.error(raw.at("name"), f"{where}: name must be a string, got {_kind(name)}")
            name = None
        if isinstance(name, str) and name.strip():
            return name
        intercept_form = (
            "conditions" in raw
            or "state" in raw
            or "on_deny" in raw
            or (action == "evaluate" and "rate_limit" not in raw)
            or isinstance(raw.get("rate_limit"), str)
        )
        if "name" in raw or intercept_form:
            self.error(
                raw.key_at("name") if "name" in raw else raw.mark,
                f"{where}: rule must have a name",
                'add name: "what this rule is for"; it shows in denials and logs',
            )
        return _derived_name(raw, action, key, index)

    # -- conditions -------------------------------------------------------------------

    def _condition_list(self, raw: YMap, key: str, where: str) -> list[tuple[YMap, Mark]]:
        value = raw.get(key)
        if isinstance(value, YMap):
            value_list = [(value, value.mark)]
        elif isinstance(value, YList):
            value_list = [(item, value.at(i)) for i, item in enumerate(value)]
        else:
            self.error(
                raw.at(key),
                f"{where}: {key} must be a list of conditions",
                "each condition is - {path: args.x, op: eq, value: 1}",
            )
            return []
        good: list[tuple[YMap, Mark]] = []
        for index, (item, mark) in enumerate(value_list):
            if not isinstance(item, YMap):
                self.error(
                    mark,
                    f"{where}.{key}[{index}]: a condition must be a mapping "
                    "with path, op and value",
                )
                continue
            good.append((item, mark))
        return good

    def _condition(
        self,
        raw: YMap,
        mark: Mark,
        where: str,
        allow_state: bool = True,
        counters: dict[tuple[str, str], Counter] | None = None,
    ) -> Condition | None:
        self.unknown_keys(raw, _CONDITION_KEYS, "a condition")
        ok = True
        path = raw.get("path")
        op_text = raw.get("op")
        value = raw.get("value")
        if not isinstance(path, str) or not (path.startswith("args.") or path.startswith("state.")):
            shown = path if isinstance(path, str) else _text(path)
            self.error(
                raw.at("path"),
                f'{where}: path must start with "args." or "state.", got "{shown}"',
                "use args.<argument> or state.<tool>.<counter>",
            )
            ok = False
        elif path.startswith("state.") and not allow_state:
            self.error(
                raw.at("path"),
                f"{where}: when: conditions read arguments only",
                "use args.<argument>",
            )
            ok = False
        elif any(not step for step in path.split(".")[1:]) or path.endswith("."):
            self.error(raw.at("path"), f'{where}: path "{path}" has an empty part')
            ok = False
        if op_text not in _OPS:
            self.error(
                raw.at("op"),
                f'{where}: unknown operator "{_text(op_text)}"',
                "use one of: " + ", ".join(_OPS),
            )
            return None
        op = Op(op_text)
        if "value" not in raw:
            self.error(mark, f'{where}: operator "{op.value}" needs a value')
            return None
        value_mark = raw.at("value")
        if op in _LIST_OPS and not isinstance(value, YList):
            self.error(
                value_mark,
                f'{where}: operator "{op.value}" requires a list value',
                'provide a YAML list, e.g. ["a", "b"]',
            )
            ok = False
        elif op in _ORDER_OPS and not is_number(value):
            self.error(
                value_mark,
                f'{where}: operator "{op.value}" requires a numeric value',
                "provide a number",
            )
            ok = False
        elif op is Op.EXISTS and type(value) is not bool:
            self.error(
                value_mark,
                f'{where}: operator "exists" requires a boolean value',
                "use true or false",
            )
            ok = False
        elif op is Op.REGEX:
            if not isinstance(value, str):
                self.error(
                    value_mark,
                    f"{where}: regex value must be a string",
                    "provide the pattern as a string",
                )
                ok = False
            else:
                try:
                    compile_regex(value)
                except ValueError as exc:
                    self.error(
                        value_mark,
                        f'{where}: invalid regex "{value}": {exc}',
                        "fix the pattern; the syntax is RE2, as in Go",
                    )
                    ok = False
        if not ok or not isinstance(path, str):
            return None
        steps = tuple(path.partition(".")[2].split("."))
        plain_value = list(value) if isinstance(value, YList) else value
        return Condition(path, steps, op, plain_value, make_test(op, plain_value), mark.line)

    # -- counters -----------------------------------------------------------------------

    def _rate_limit(self, raw: YMap, owner: str, where: str) -> Counter | None:
        value = raw["rate_limit"]
        mark = raw.at("rate_limit")
        if isinstance(value, str):
            count_text, slash, window_text = value.partition("/")
            if not slash:
                self.error(
                    mark,
                    f'{where}: rate_limit must be in the format "N/window" '
                    f'(e.g. "5/hour"), got "{value}"',
                    "write it like 5/hour or 10/90s",
                )
                return None
            count = int(count_text) if count_text.strip().isdigit() else None
            if count is None or count <= 0:
                self.error(
                    mark,
                    f'{where}: rate_limit count must be a positive integer, got "{count_text}"',
                    "use a positive integer, e.g. 5/hour",
                )
                count = None
            window = _window_from_text(window_text.strip(), calendar=False)
            if window is None:
                self.error(
                    mark,
                    f'{where}: rate_limit window must be "minute", "hour", or '
                    f'"day", got "{window_text}"',
                    "or a duration: 90s, 15m, 1h, 1d",
                )
                return None
            if count is None:
                return None
            default_scope = Scope.GLOBAL
            options: YMap | None = None
        elif isinstance(value, YMap):
            self.unknown_keys(value, _RATE_KEYS, "rate_limit")
            count = value.get("max")
            if type(count) is not int or count <= 0:
                self.error(
                    value.at("max"),
                    f"{where}: rate_limit max must be a positive integer, got {_text(count)}",
                    "e.g. rate_limit: {max: 10, window: 60}",
                )
                count = None
            window = self._window_value(value, "window", where, calendar_names=False)
            if count is None or window is None:
                return None
            default_scope = Scope.SESSION
            options = value
        else:
            self.error(
                mark,
                f"{where}: rate_limit must be N/window or {{max: N, window: S}}",
                "e.g. rate_limit: 5/hour, or rate_limit: {max: 10, window: 60}",
            )
            return None
        scope, per, per_path = self._scope_and_per(raw, options, where, default_scope)
        return Counter(
            owner=owner,
            name=f"_rate_{window.label}",
            window=window,
            scope=scope,
            per=per,
            per_path=per_path,
            is_rate_limit=True,
            increment=1,
            increment_from=None,
            increment_from_path=None,
            limits=((Op.LTE, count),),
            max_calls=count,
        )

    def _state_block(self, raw: YMap, owner: str, where: str) -> Counter | None:
        block = raw["state"]
        if not isinstance(block, YMap):
            self.error(
                raw.at("state"),
                f"{where}: state must be a mapping",
                "state: {counter: name, window: day}",
            )
            return None
        self.unknown_keys(block, _STATE_KEYS, "a state block")
        ok = True
        counter = block.get("counter")
        if not isinstance(counter, str) or not counter.strip():
            self.error(
                block.at("counter"),
                f"{where}.state: counter must not be empty",
                "name the counter; conditions read it as state.<tool>.<counter>",
            )
            ok = False
        window = self._window_value(block, "window", f"{where}.state", calendar_names=True)
        increment: float = 1
        if "increment" in block:
            raw_increment = block["increment"]
            if not is_number(raw_increment) or raw_increment <= 0:
                self.error(
                    block.at("increment"),
                    f"{where}.state: increment must be a "
                    f"positive number, got {_text(raw_increment)}",
                )
                ok = False
            else:
                increment = raw_increment
        increment_from = block.get("increment_from")
        steps: tuple[str, ...] | None = None
        if increment_from is not None:
            if "increment" in block:
                self.error(
                    block.key_at("increment_from"),
                    f"{where}.state: use either increment or increment_from, not both",
                )
                ok = False
            if not isinstance(increment_from, str) or not increment_from.startswith("args."):
                self.error(
                    block.at("increment_from"),
                    f"{where}.state: increment_from must "
                    f'start with "args.", got "{_text(increment_from)}"',
                    "use a path like args.amount",
                )
                ok = False
            else:
                steps = tuple(increment_from[5:].split("."))
        scope, per, per_path = self._scope_and_per(raw, block, f"{where}.state", Scope.GLOBAL)
        if not ok or window is None:
            return None
        assert isinstance(counter, str)
        return Counter(
            owner=owner,
            name=counter,
            window=window,
            scope=scope,
            per=per,
            per_path=per_path,
            is_rate_limit=False,
            increment=increment,
            increment_from=steps,
            increment_from_path=increment_from if steps else None,
            limits=(),
        )

    def _window_value(
        self, block: YMap, key: str, where: str, calendar_names: bool
    ) -> Window | None:
        value = block.get(key)
        window: Window | None = None
        if is_number(value) and value > 0:
            window = Window(float(value), False, f"{_number_text(value)}s")
        elif isinstance(value, str):
            window = _window_from_text(value, calendar=calendar_names)
        if window is None:
            names = '"minute", "hour", or "day"'
            self.error(
                block.at(key),
                f'{where}: window must be {names}, got "{_text(value)}"',
                "or a number of seconds, or a duration like 90s, 15m, 1h, 1d",
            )
        return window

    def _scope_and_per(
        self, rule: YMap, block: YMap | None, where: str, default: Scope
    ) -> tuple[Scope, tuple[str, ...] | None, str | None]:
        scope = default
        per: tuple[str, ...] | None = None
        per_path: str | None = None
        for key in ("scope", "per"):
            if key in rule and block is not None and key in block:
                self.error(
                    rule.key_at(key), f"{where}: {key} is given twice", f"keep {key} in one place"
                )
        sources = [m for m in (block, rule) if m is not None]
        for source in sources:
            if "scope" in source:
                value = source["scope"]
                if value not in ("session", "global"):
                    self.error(
                        source.at("scope"),
                        f'{where}: scope must be "session" or "global", got "{_text(value)}"',
                        "session: each agent session counts alone; global: shared",
                    )
                else:
                    scope = Scope(value)
            if "per" in source:
                value = source["per"]
                if (
                    not isinstance(value, str)
                    or not value.startswith("args.")
                    or not all(value[5:].split("."))
                ):
                    self.error(
                        source.at("per"),
                        f"{where}: per must be an argument path "
                        f'like args.namespace, got "{_text(value)}"',
                    )
                else:
                    per = tuple(value[5:].split("."))
                    per_path = value
        return scope, per, per_path

    def _counters(self, drafts: list[_RuleDraft]) -> dict[tuple[str, str], Counter]:
        counters: dict[tuple[str, str], Counter] = {}
        first_index: dict[tuple[str, str], int] = {}
        for draft in drafts:
            counter = draft.counter
            if counter is None:
                continue
            key = (counter.owner, counter.name)
            if key in counters:
                assert draft.counter_mark is not None
                self.error(
                    draft.counter_mark,
                    f"tools.{draft.entry_key}.rules[{draft.index}]: duplicate state "
                    f'counter "{counter.name}" (also used by rules[{first_index[key]}])',
                    "use different counter names or different windows, or combine the rules",
                )
                continue
            counters[key] = counter
            first_index[key] = draft.index
        return counters

    def _finish_rules(
        self, drafts: list[_RuleDraft], counters: dict[tuple[str, str], Counter]
    ) -> tuple[dict[str, list[Rule]], dict[tuple[str, str], Counter]]:
        """Compile conditions, turn each rule's limits on its own counter into the
        counter's limits, and build the final rules against the final counters."""
        compiled: list[tuple[_RuleDraft, list[Condition], list[tuple[Condition, tuple]]]] = []
        limits: dict[tuple[str, str], list[tuple[Op, float]]] = {}
        for draft in drafts:
            where = f"tools.{draft.entry_key}.rules[{draft.index}]"
            own_key = (draft.counter.owner, draft.counter.name) if draft.counter else None
            require: list[Condition] = []
            state_refs: list[tuple[Condition, tuple[str, str]]] = []
            for index, (raw, mark) in enumerate(draft.conditions):
                at = f"{where}.conditions[{index}]"
                condition = self._condition(raw, mark, at)
                if condition is None:
                    continue
                if condition.path.startswith("args."):
                    require.append(condition)
                    continue
                target = self._state_target(condition, counters, raw, where, at)
                if target is None:
                    continue
                # Intercept reads "state.<tool>.<own counter> lt/lte N" as the counter's
                # limit: the value after this call must stay within it.
                if target == own_key and condition.op in (Op.LT, Op.LTE):
                    limits.setdefault(target, []).append((condition.op, condition.value))
                else:
                    state_refs.append((condition, target))
            compiled.append((draft, require, state_refs))

        final = {
            key: replace(counter, limits=counter.limits + tuple(limits.get(key, ())))
            for key, counter in counters.items()
        }
        by_entry: dict[str, list[Rule]] = {}
        for draft, require, state_refs in compiled:
            if draft.action == "allow" and draft.counter is None:
                continue  # a plain allow only lists the tool, which its key already does
            counter = None
            if draft.counter is not None:
                counter = final.get((draft.counter.owner, draft.counter.name))
            by_entry.setdefault(draft.entry_key, []).append(
                Rule(
                    name=draft.name,
                    line=draft.mark.line,
                    deny=draft.action == "deny",
                    when=tuple(draft.when),
                    require=tuple(require),
                    state_checks=tuple(replace(c, counter=final[k]) for c, k in state_refs),
                    counter=counter,
                    reason=draft.reason,
                )
            )
        return by_entry, final

    def _state_target(
        self,
        condition: Condition,
        counters: dict[tuple[str, str], Counter],
        raw: YMap,
        rule_where: str,
        where: str,
    ) -> tuple[str, str] | None:
        parts = condition.path.split(".", 2)
        if len(parts) < 3:
            self.error(
                raw.at("path"),
                f'{where}: a state path is state.<tool>.<counter>, got "{condition.path}"',
            )
            return None
        _, owner, name = parts
        if (owner, name) not in counters:
            tool = 'the "*" entry' if owner == GLOBAL_OWNER else owner
            self.error(
                raw.at("path"),
                f"{rule_where}: condition references state.{owner}.{name} "
                "but no matching state block found",
                f"add a state block with counter: {name} to a rule of {tool}",
            )
            return None
        if condition.op in (Op.REGEX, Op.CONTAINS):
            self.error(
                raw.at("op"),
                f'{where}: operator "{condition.op.value}" cannot test '
                "a counter, which is a number",
                "use lt, lte, gt, gte, eq or neq",
            )
            return None
        return (owner, name)


# -- helpers ------------------------------------------------------------------------------


def _is_glob(name: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in name)


def _glob(name: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(name))


def _window_from_text(text: str, calendar: bool) -> Window | None:
    if text in _CALENDAR:
        return Window(float(_CALENDAR[text]), calendar, text)
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        return None
    return Window(float(seconds), False, f"{seconds}s")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (YMap, YList)):
        return "a " + _kind(value)
    return str(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def _derived_name(raw: YMap, action: str, key: str, index: int) -> str:
    rate = raw.get("rate_limit")
    if isinstance(rate, YMap):
        detail = f"rate_limit {rate.get('max')}/{_text(rate.get('window'))}"
    elif isinstance(rate, str):
        detail = f"rate_limit {rate}"
    else:
        detail = action
    return f"{key}[{index}] {detail}"
