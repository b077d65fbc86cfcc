"""The compiled policy: frozen values the engine reads on every call.

Both dialects (Intercept's and the seed's) compile into these same types, with every
shorthand spelled out: a ``rate_limit`` is a Counter with a limit, not a condition to
be read back later. A Policy never changes once built; a reload builds a new one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A condition's verdict on one call: True or False, or None when it cannot tell (the
# path is missing, or the value has a type the operator cannot compare). Who reads the
# verdict decides what "cannot tell" means, always towards denying.
Verdict = bool | None


class Op(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not_in"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    REGEX = "regex"
    CONTAINS = "contains"
    EXISTS = "exists"


class Action(StrEnum):
    """What a rule does with a call. A plain ``allow`` with nothing to check compiles
    to no rule at all."""

    CHECK = "check"  # its conditions must hold and its counter must have room
    DENY = "deny"  # denied, unless one of its ``when`` conditions is surely false
    APPROVE = "approve"  # a human must approve it first (when ``when`` holds)


class Scope(StrEnum):
    SESSION = "session"
    GLOBAL = "global"
    USER = "user"  # the token's subject, or the claim named by user_key (HTTP with --auth)


class Format(StrEnum):
    """How a structured argument is read (engine.structured)."""

    KUBERNETES_MANIFEST = "kubernetes-manifest"
    YAML = "yaml"
    JSON = "json"
    ARGV = "argv"


DOCUMENT_FORMATS = (Format.KUBERNETES_MANIFEST, Format.YAML, Format.JSON)  # text, not argv
MAX_DOCUMENTS = 20


@dataclass(frozen=True, slots=True)
class StructuredArgument:
    """An argument the engine reads as documents (a manifest, JSON, argv) first."""

    name: str
    format: Format
    line: int
    default_namespace: str | None = None
    max_documents: int = MAX_DOCUMENTS


@dataclass(frozen=True, slots=True)
class Window:
    """How long a counter remembers. Calendar windows reset on UTC boundaries (Intercept's
    minute/hour/day counters); the others slide: only the last ``seconds`` count."""

    seconds: float
    calendar: bool
    label: str


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one value of a call: an argument, a claim or a counter."""

    path: str  # as written, e.g. "args.amount"
    steps: tuple[str, ...]  # the path below "args." / "claims.", or the counter's key parts
    op: Op
    value: Any
    test: Callable[[Any], Verdict]
    line: int
    counter: Counter | None = None  # set for state.* paths
    # The path walks into lists (``[*]`` each element, ``[0]`` one): a condition on
    # every value it reaches, quantified towards denying (see engine.decide).
    lists: bool = False
    # It reads the caller's token (claims.*), not the arguments: a field, not a
    # property, since the engine asks it of every condition of every call.
    reads_claims: bool = False

    def describe(self) -> str:
        return f"{self.path} {self.op.value} {self.value!r}"


@dataclass(frozen=True, slots=True)
class Counter:
    """A number kept in the state store, per key: a rate limit or an Intercept counter.

    A rate limit counts every call it lets through and gives a slot back only when the
    call never reached the server. A counter (``increment`` / ``increment_from``) is
    rolled back when the server answers with an error: nothing was spent.
    """

    owner: str  # the tool key it belongs to; "_global" for "*"
    name: str
    window: Window
    scope: Scope
    per: tuple[str, ...] | None  # argument path whose value splits the counter
    per_path: str | None
    is_rate_limit: bool
    increment: float
    increment_from: tuple[str, ...] | None
    increment_from_path: str | None
    limits: tuple[tuple[Op, float], ...]  # the value after this call must satisfy each
    max_calls: int | None = None  # for rate limits: the N of "N per window"
    # scope: user keys by the token's subject, or by this claim (user_key: claims.email)
    user_key: tuple[str, ...] | None = None
    user_key_path: str | None = None

    @property
    def state_path(self) -> str:
        return f"state.{self.owner}.{self.name}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a tool: what it does with a call, and on which conditions."""

    name: str
    line: int
    action: Action = Action.CHECK
    when: tuple[Condition, ...] = ()  # a deny applies unless one of these is surely false
    require: tuple[Condition, ...] = ()  # argument conditions that must all pass
    state_checks: tuple[Condition, ...] = ()  # conditions on counters, read before the call
    counter: Counter | None = None
    reason: str | None = None  # on_deny / reason, as written
    remember_s: float | None = None  # an approval also covers identical calls this long
    approval_timeout_s: float = 120.0

    @property
    def stateful(self) -> bool:
        return self.counter is not None or bool(self.state_checks)


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """A tool key of the policy (a name or a glob), with its rules."""

    key: str
    rules: tuple[Rule, ...]
    line: int
    validate_arguments: bool | None = None  # None: as the policy's top level says
    arguments: tuple[StructuredArgument, ...] = ()  # arguments read as documents


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """Everything the engine needs for one tool name, resolved once and cached."""

    tool: str
    refusal: tuple[str, str] | None  # (rule, reason) when hidden or not listed
    rules: tuple[Rule, ...]  # the entry's rules, then the "*" rules, in file order
    stateful: bool
    validate_arguments: bool = False
    approvals: tuple[Rule, ...] = ()  # the approve rules among ``rules``
    structured: tuple[StructuredArgument, ...] = ()  # parsed before any rule sees them


@dataclass(frozen=True, slots=True)
class PolicyError:
    """A problem with the policy file, at its line and column."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


class PolicyInvalid(Exception):
    """The policy file does not validate; ``errors`` holds every problem, in file order."""

    def __init__(self, errors: list[PolicyError]) -> None:
        first = errors[0] if errors else None
        super().__init__(str(first) if first else "invalid policy")
        self.errors = errors


_PLAN_CACHE_LIMIT = 4096


@dataclass(eq=False)
class Policy:
    """A compiled policy file."""

    path: str
    digest: str  # SHA-256 of the file's bytes
    description: str
    default_deny: bool
    monitor: bool
    hidden: frozenset[str]
    hidden_pattern: re.Pattern[str] | None
    entries: dict[str, ToolEntry]
    globs: tuple[tuple[re.Pattern[str], ToolEntry], ...]  # most specific first
    wildcard: tuple[Rule, ...]
    counters: dict[tuple[str, str], Counter]
    pin_mode: str = "warn"  # off, warn, enforce
    validate_arguments: bool = False
    redactor: Any = None  # an engine.redact.Redactor, when the policy redacts results
    warnings: tuple[PolicyError, ...] = ()
    _plans: dict[str, ToolPlan] = field(default_factory=dict, repr=False)

    @property
    def filters_list(self) -> bool:
        """Whether tools/list results can lose tools under this policy."""
        return self.default_deny or bool(self.hidden) or self.hidden_pattern is not None

    @property
    def stateful(self) -> bool:
        return bool(self.counters)

    @property
    def reads_identity(self) -> bool:
        """Whether a rule needs to know who calls: a scope: user counter, or a
        condition on claims. Without a token every such rule denies."""
        if any(counter.scope is Scope.USER for counter in self.counters.values()):
            return True
        entries = [*self.entries.values(), *(entry for _, entry in self.globs)]
        rules = [rule for entry in entries for rule in entry.rules] + list(self.wildcard)
        return any(c.reads_claims for rule in rules for c in (*rule.when, *rule.require))

    def is_hidden(self, tool: str) -> bool:
        if tool in self.hidden:
            return True
        return self.hidden_pattern is not None and self.hidden_pattern.fullmatch(tool) is not None

    def entry_for(self, tool: str) -> ToolEntry | None:
        """The tool's entry: its exact key, else the most specific glob key matching it."""
        entry = self.entries.get(tool)
        if entry is not None:
            return entry
        for pattern, glob_entry in self.globs:
            if pattern.fullmatch(tool):
                return glob_entry
        return None

    def visible(self, tool: str) -> bool:
        """Whether tools/list keeps the tool."""
        if self.is_hidden(tool):
            return False
        return not self.default_deny or self.entry_for(tool) is not None

    def plan(self, tool: str) -> ToolPlan:
        plan = self._plans.get(tool)
        if plan is None:
            plan = self._build_plan(tool)
            # Tool names come from the agent: bound the cache so that a flood of
            # made-up names cannot grow it without end.
            if len(self._plans) >= _PLAN_CACHE_LIMIT:
                self._plans.clear()
            self._plans[tool] = plan
        return plan

    def _build_plan(self, tool: str) -> ToolPlan:
        if self.is_hidden(tool):
            return ToolPlan(tool, ("(hidden)", f'Tool "{tool}" is hidden by policy'), (), False)
        entry = self.entry_for(tool)
        if entry is None and self.default_deny:
            reason = f'Tool "{tool}" is not permitted by policy (default: deny)'
            return ToolPlan(tool, ("(default deny)", reason), (), False)
        rules = (entry.rules if entry else ()) + self.wildcard
        check = self.validate_arguments
        if entry is not None and entry.validate_arguments is not None:
            check = entry.validate_arguments
        approvals = tuple(rule for rule in rules if rule.action is Action.APPROVE)
        stateful = any(rule.stateful for rule in rules)
        structured = entry.arguments if entry is not None else ()
        return ToolPlan(tool, None, rules, stateful, check, approvals, structured)
