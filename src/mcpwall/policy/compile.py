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
- Extensions: ``scope`` (``session``, ``global``, ``user`` with ``user_key``), ``per``,
  ``when`` on deny, ``claims.*`` condition paths, globs in tool keys and ``hide``,
  durations (``90s``, ``15m``, ``1h``, ``1d``), top-level ``mode: monitor``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Any

from mcpwall.engine.operators import make_test
from mcpwall.policy.conditions import read_condition, read_condition_list
from mcpwall.policy.counters import read_duration, read_rate_limit, read_state_block
from mcpwall.policy.model import (
    DOCUMENT_FORMATS,
    Action,
    Condition,
    Counter,
    Format,
    Op,
    Policy,
    PolicyError,
    Rule,
    StructuredArgument,
    ToolEntry,
)
from mcpwall.policy.options import read_flag, read_pin, read_redact, read_structured
from mcpwall.policy.report import Reporter, kind, shown
from mcpwall.policy.tree import Mark, YList, YMap

_TOP_KEYS = (
    "version",
    "description",
    "default",
    "mode",
    "hide",
    "pin",
    "validate_arguments",
    "redact",
    "tools",
)
_KIND_OPS = (Op.EQ, Op.NEQ, Op.IN, Op.NOT_IN)
_ENTRY_KEYS = ("rules", "validate_arguments", "arguments")
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
    "user_key",
    "remember",
    "timeout",
)
_ACTIONS = ("evaluate", "deny", "allow", "approve")
_RULE_ACTIONS = {"deny": Action.DENY, "approve": Action.APPROVE}
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
    remember_s: float | None = None
    approval_timeout_s: float = 120.0


class _Compiler(Reporter):
    """Walks the tree once; reports through itself, builds the policy if nothing failed."""

    # -- top level ------------------------------------------------------------------

    def run(self, data: Any, digest: str) -> Policy | None:
        self._structured: dict[str, tuple[StructuredArgument, ...]] = {}
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
        pin_mode = read_pin(self, data)
        check_arguments = bool(read_flag(self, data, "validate_arguments", ""))
        redactor = read_redact(self, data)
        drafts, entry_marks, entry_checks = self._tools(data)
        rules_by_entry, counters = self._finish_rules(drafts, self._counters(drafts))

        entries: dict[str, ToolEntry] = {}
        globs: list[tuple[int, int, re.Pattern[str], ToolEntry]] = []
        wildcard: tuple[Rule, ...] = ()
        for order, (key, mark) in enumerate(entry_marks.items()):
            declared = self._structured.get(key, ())
            rules = self._fit_to_arguments(tuple(rules_by_entry.get(key, ())), declared)
            entry = ToolEntry(key, rules, mark.line, entry_checks.get(key), declared)
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
            pin_mode=pin_mode,
            validate_arguments=check_arguments,
            redactor=redactor,
        )

    def _fit_to_arguments(
        self, rules: tuple[Rule, ...], declared: tuple[StructuredArgument, ...]
    ) -> tuple[Rule, ...]:
        """Rules on structured arguments: a regex over one is a tripwire on its text,
        not a reading of it (warned); a manifest's kind matches without regard to case,
        as the API server resolves it, so the policy's kinds are lowered like the
        documents' (engine.structured)."""
        if not declared:
            return rules
        formats = {argument.name: argument.format for argument in declared}
        fitted = []
        for rule in rules:
            when = tuple(self._fit(c, formats) for c in rule.when)
            require = tuple(self._fit(c, formats) for c in rule.require)
            fitted.append(replace(rule, when=when, require=require))
        return tuple(fitted)

    def _fit(self, condition: Condition, formats: dict[str, Format]) -> Condition:
        kind = formats.get(condition.steps[0])
        if kind is None:
            return condition
        if condition.op is Op.REGEX and len(condition.steps) == 1 and kind in DOCUMENT_FORMATS:
            self.warn(
                Mark(condition.line, 1),
                f"a regex over {condition.path}, which is declared {kind.value}: it reads the "
                "text, not the document the server reads",
                f"address the parsed fields instead, e.g. {condition.path}[*].kind",
            )
        manifest = kind is Format.KUBERNETES_MANIFEST
        if manifest and condition.steps[-1] == "kind" and condition.op in _KIND_OPS:
            value = condition.value
            lowered = (
                [v.lower() if type(v) is str else v for v in value]
                if type(value) is list
                else (value.lower() if type(value) is str else value)
            )
            return replace(condition, value=lowered, test=make_test(condition.op, lowered))
        return condition

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
                f'version must be "1", got "{shown(version)}"',
                'set version: "1"',
            )

    def _optional_str(self, data: YMap, key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(data.at(key), f"{key} must be a string, got {kind(value)}")
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
                f'{key} must be {quoted}, got "{shown(value)}"',
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
                self.error(mark, f"hide[{index}]: entry must be a tool name, got {kind(name)}")
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

    def _tools(
        self, data: YMap
    ) -> tuple[list[_RuleDraft], dict[str, Mark], dict[str, bool | None]]:
        drafts: list[_RuleDraft] = []
        entry_marks: dict[str, Mark] = {}
        entry_checks: dict[str, bool | None] = {}
        tools = data.get("tools")
        if tools is None:
            if "tools" not in data:
                self.warn(data.mark, "no tools section: only default and hide apply")
            return drafts, entry_marks, entry_checks
        if not isinstance(tools, YMap):
            self.error(
                data.at("tools"),
                "tools must be a mapping of tool names to rules",
                "write tools:, then each tool name with rules: under it",
            )
            return drafts, entry_marks, entry_checks
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
            entry_checks[key] = read_flag(self, entry, "validate_arguments", f"tools.{key}.")
            self._structured[key] = read_structured(self, entry, key)
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
        return drafts, entry_marks, entry_checks

    def _rule(self, owner: str, key: str, index: int, raw: Any, mark: Mark) -> _RuleDraft | None:
        where = f"tools.{key}.rules[{index}]"
        if not isinstance(raw, YMap):
            self.error(
                mark,
                f"{where}: a rule must be a mapping, got {kind(raw)}",
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
            draft.conditions = read_condition_list(self, raw, "conditions", where)
        if when is not None or "when" in raw:
            if action not in ("deny", "approve"):
                self.error(
                    raw.key_at("when"),
                    f"{where}: when: applies to deny and approve rules only",
                    "for other rules put the conditions under conditions:",
                )
            else:
                parsed = [
                    read_condition(self, c, m, f"{where}.when", allow_state=False)
                    for c, m in read_condition_list(self, raw, "when", where)
                ]
                draft.when = [c for c in parsed if c is not None]

        if action == "approve":
            self._approval(raw, where, draft)
        elif "remember" in raw or "timeout" in raw:
            self.error(
                raw.key_at("remember" if "remember" in raw else "timeout"),
                f"{where}: remember and timeout apply to approve rules only",
                "remove them, or use action: approve",
            )

        if rate_limit is not None:
            if action in ("deny", "approve"):
                self.error(
                    raw.key_at("rate_limit"),
                    f'{where}: rate_limit cannot be used with action "{action}"',
                    "remove rate_limit or change the action",
                )
            elif conditions is not None or state is not None:
                self.error(
                    raw.key_at("rate_limit"),
                    f"{where}: rate_limit cannot be combined with conditions or state",
                    "use separate rules, or the full conditions + state syntax",
                )
            else:
                draft.counter = read_rate_limit(self, raw, owner, where)
                draft.counter_mark = raw.at("rate_limit")
        elif state is not None:
            if action in ("deny", "approve"):
                self.error(
                    raw.key_at("state"),
                    f"{where}: a {action} rule keeps no counter",
                    f"remove state: from the {action} rule",
                )
            elif action == "allow":
                self.error(
                    raw.key_at("state"),
                    f"{where}: an allow rule keeps no counter",
                    "use an evaluate rule (conditions + state) for counters",
                )
            else:
                draft.counter = read_state_block(self, raw, owner, where)
                draft.counter_mark = raw.at("state")
        elif "scope" in raw or "per" in raw or "user_key" in raw:
            self.error(
                raw.key_at(next(k for k in ("scope", "per", "user_key") if k in raw)),
                f"{where}: scope, per and user_key apply to a rate_limit or a state counter",
                "add a rate_limit or a state block, or remove them",
            )

        if action in ("deny", "approve") and conditions is not None:
            self.error(
                raw.key_at("conditions"),
                f"{where}: {action} rules must not have conditions",
                f"to {action} only in some cases, use when: instead of conditions:",
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
        if action not in _ACTIONS:
            self.error(
                raw.at("action"),
                f'{where}: action must be "evaluate", "deny" or "allow", got "{shown(action)}"',
                "evaluate checks conditions; deny blocks; allow lists the tool "
                "(mcpwall also has approve: ask a human)",
            )
            return None
        return str(action)

    def _approval(self, raw: YMap, where: str, draft: _RuleDraft) -> None:
        if "remember" in raw:
            draft.remember_s = read_duration(self, raw, "remember", where)
        if "timeout" in raw:
            timeout = read_duration(self, raw, "timeout", where)
            if timeout is not None:
                draft.approval_timeout_s = timeout

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
                self.error(raw.at(key), f"{where}: {key} must be a string, got {kind(value)}")
                return None
            return value
        return None

    def _rule_name(self, raw: YMap, where: str, action: str, key: str, index: int) -> str:
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            self.error(raw.at("name"), f"{where}: name must be a string, got {kind(name)}")
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
                condition = read_condition(self, raw, mark, at)
                if condition is None:
                    continue
                if not condition.path.startswith("state."):  # args.* or claims.*
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
                    action=_RULE_ACTIONS.get(draft.action, Action.CHECK),
                    remember_s=draft.remember_s,
                    approval_timeout_s=draft.approval_timeout_s,
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


def _derived_name(raw: YMap, action: str, key: str, index: int) -> str:
    rate = raw.get("rate_limit")
    if isinstance(rate, YMap):
        detail = f"rate_limit {rate.get('max')}/{shown(rate.get('window'))}"
    elif isinstance(rate, str):
        detail = f"rate_limit {rate}"
    else:
        detail = action
    return f"{key}[{index}] {detail}"
