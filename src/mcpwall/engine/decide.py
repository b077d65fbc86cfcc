"""The verdict on one tools/call. Every check that can refuse a call is here, and only
here: the relay on every transport, ``mcpwall check`` and the tests all ask ``decide``.

Order (DESIGN.md): hidden, then default deny; then the server's tool facts: a pinned
definition that changed, arguments that break the tool's input schema; then the tool's
rules and the "*" rules in file order, where the first rule that denies wins; then the
counters of the call, reserved in one atomic step (all or none). A call that passes
everything may still need a human's approval. Under ``mode: monitor`` a call that would
be denied is let through, and marked.

``decide`` reads nothing but its arguments. When the call needs counters, it returns a
``Pending``: the checks for the store to evaluate. The gate asks the store and hands
the outcome to ``conclude``, which makes the verdict. What cannot be decided is denied:
a condition on a missing argument fails; a ``when`` that cannot tell lets its deny
apply; a store that cannot be reached denies the calls that need it, and a pin that
cannot be read holds its tool (unless told to fail open).

Who calls (the Identity an OAuth token proved, HTTP with --auth) is read in two places
only: ``claims.*`` conditions, which cannot tell for a call without a token, and the key
of ``scope: user`` counters, which a call without a token (or without the claim named
by ``user_key``) cannot have: such a rule denies it. So on stdio, where no call has a
token, those rules deny every call they apply to (the policy loads, with a warning).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import orjson

from mcpwall.auth import Identity
from mcpwall.engine.operators import MISSING, resolve, resolve_each
from mcpwall.policy.model import Action, Condition, Counter, Policy, Rule, Scope, ToolPlan
from mcpwall.state.base import Check, Refused, StoreUnavailable, Token

_MAX_KEY_VALUE = 200


class Step(StrEnum):
    """The check that decided a call (for an allowed call: none)."""

    HIDE = "hide"
    DEFAULT = "default"
    PIN = "pin"
    SCHEMA = "schema"
    ARGUMENTS = "arguments"  # a structured argument that cannot be read one way
    RULE = "rule"
    COUNTER = "counter"
    STORE = "store"
    APPROVAL = "approval"


class ApprovalOutcome(StrEnum):
    """What came of a call that needed a human's approval (as the audit log spells it)."""

    ASKED = "asked"
    ACCEPTED = "accepted"
    REMEMBERED = "remembered"
    DECLINED = "decline"
    CANCELLED = "cancel"
    TIMED_OUT = "timed out"
    WITHDRAWN = "withdrawn"
    ERROR = "error"
    UNASKED = "unasked"  # the client could not be asked (no elicitation, a batch)
    UNANSWERABLE = "unanswerable"  # a notification: no answer could carry the question


PIN_RULE = "(pinned definition)"
SCHEMA_RULE = "(input schema)"
STORE_RULE = "(state store unavailable)"
ARGUMENTS_RULE = "(structured arguments)"


class Call(NamedTuple):
    """One tools/call as the policy sees it (a tuple: made on every call, and cheaply)."""

    session: str
    tool: str
    args: dict[str, Any]
    identity: Identity | None = None  # who calls, when a token told (HTTP with --auth)


class ToolFacts(Protocol):
    """What is known of the server's tools: their pins and their input schemas."""

    def held(self, tool: str) -> bool | None:
        """Whether the tool is held back because its definition changed since it was
        pinned; None when that cannot be told now (the pin store is away)."""

    def schema_problem(self, tool: str, args: dict[str, Any]) -> str | None:
        """What is wrong with the arguments by the tool's input schema, if anything."""


class NoFacts:
    """Nothing is known of the server's tools: no pin holds, every schema fits."""

    def held(self, tool: str) -> bool | None:
        return False

    def schema_problem(self, tool: str, args: dict[str, Any]) -> str | None:
        return None


NO_FACTS = NoFacts()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says of one call, and which step of the decision said it."""

    tool: str
    allowed: bool
    step: Step | None = None
    rule: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None
    # Under mode: monitor a call that the policy denies is let through; it is marked.
    monitored: bool = False
    # An allowed call that a human must approve first: the approve rule that applies.
    approval: Rule | None = None

    def as_meta(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "step": None if self.step is None else self.step.value,
            "rule": self.rule,
            "reason": self.reason,
            "retry_after_s": self.retry_after_s,
        }


class Pending(NamedTuple):
    """A call whose verdict waits on the store: its checks, in rule order, and the
    denial of a later rule, which stands unless an earlier rule's counter refuses
    first (then the store is only read, never written). A tuple: one is made for
    every such call, at a third of a frozen dataclass's cost."""

    policy: Policy
    call: Call
    plan: ToolPlan
    args: dict[str, Any]  # as the rules read them: structured arguments parsed
    checks: tuple[Check, ...]
    denial: tuple[Rule, str] | None

    @property
    def commits(self) -> bool:
        return self.denial is None


def decide(
    policy: Policy,
    call: Call,
    facts: ToolFacts = NO_FACTS,
    *,
    prefix: str = "",
    fail_open: bool = False,
) -> Verdict | Pending:
    """The verdict on the call, or the store checks it waits on. ``prefix``: the
    --state-prefix of counter keys."""
    plan = policy.plan(call.tool)
    if plan.refusal is not None:
        rule, reason = plan.refusal
        step = Step.HIDE if policy.is_hidden(call.tool) else Step.DEFAULT
        return _finish(policy, plan, call.args, Verdict(call.tool, False, step, rule, reason))
    if plan.validate_arguments or policy.pin_mode == "enforce":
        refused = _fact_refusal(policy, plan, call, facts, fail_open)
        if refused is not None:
            return _finish(policy, plan, call.args, refused)
    args: dict[str, Any] = call.args
    tool = call.tool
    if plan.structured:
        # Imported here: only policies that read documents inside arguments need its parsers.
        from mcpwall.engine.structured import read_arguments

        read = read_arguments(plan.structured, args)
        if isinstance(read, str):
            verdict = Verdict(tool, False, Step.ARGUMENTS, ARGUMENTS_RULE, read)
            return _finish(policy, plan, args, verdict)
        args = read
    if not plan.stateful:
        for rule in plan.rules:
            reason = _pure_denial(rule, tool, args, call.identity)
            if reason is not None:
                return _finish(
                    policy, plan, args, Verdict(tool, False, Step.RULE, rule.name, reason)
                )
        if plan.approvals:
            return _finish(policy, plan, args, _allowed(tool), call.identity)
        return _allowed(tool)  # the common call: monitor mode changes nothing allowed

    checks: list[Check] = []
    denial: tuple[Rule, str] | None = None
    for position, rule in enumerate(plan.rules):
        reason = _pure_denial(rule, tool, args, call.identity)
        if reason is None and rule.stateful:
            reason = _add_checks(checks, position, rule, prefix, call, args)
        if reason is not None:
            denial = (rule, reason)
            break
    if not checks:
        verdict = _allowed(tool)
        if denial is not None:
            verdict = Verdict(tool, False, Step.RULE, denial[0].name, denial[1])
        return _finish(policy, plan, args, verdict, call.identity)
    return Pending(policy, call, plan, args, tuple(checks), denial)


def conclude(
    pending: Pending,
    outcome: tuple[Token, ...] | Refused | StoreUnavailable,
    *,
    fail_open: bool = False,
) -> Verdict:
    """The verdict on a pending call, once the store has answered its checks (or could
    not: ``outcome`` is then the StoreUnavailable)."""
    tool = pending.call.tool
    denial = pending.denial
    if isinstance(outcome, StoreUnavailable):
        if denial is not None:
            verdict = Verdict(tool, False, Step.RULE, denial[0].name, denial[1])
        elif fail_open:
            verdict = Verdict(tool, True, Step.STORE, STORE_RULE)
        else:
            verdict = Verdict(
                tool,
                False,
                Step.STORE,
                STORE_RULE,
                "The policy's state store is unavailable, so calls that need a counter are "
                "denied until it is back",
            )
    elif isinstance(outcome, Refused):
        rule = pending.plan.rules[outcome.rule]
        retry = None if outcome.retry_after is None else math.ceil(outcome.retry_after)
        reason = _limit_reason(rule, tool, outcome, retry, pending.checks)
        verdict = Verdict(tool, False, Step.COUNTER, rule.name, reason, retry)
    elif denial is not None:
        verdict = Verdict(tool, False, Step.RULE, denial[0].name, denial[1])
    else:
        verdict = _allowed(tool)
    return _finish(pending.policy, pending.plan, pending.args, verdict, pending.call.identity)


def not_approved(verdict: Verdict, outcome: ApprovalOutcome, why: str = "") -> Verdict:
    """The denial of an allowed call whose approval did not happen."""
    rule = verdict.approval
    assert rule is not None
    reason = _approval_reason(verdict.tool, rule, outcome, why)
    return replace(verdict, allowed=False, step=Step.APPROVAL, rule=rule.name, reason=reason)


_ALLOWED: dict[str, Verdict] = {}


def _allowed(tool: str) -> Verdict:
    """The verdict that lets a tool's call through: one per tool, shared (it is frozen),
    so that the common call makes none."""
    verdict = _ALLOWED.get(tool)
    if verdict is None:
        if len(_ALLOWED) >= 4096:  # names come from the agent: bound the cache
            _ALLOWED.clear()
        verdict = _ALLOWED[tool] = Verdict(tool, True)
    return verdict


def _finish(
    policy: Policy,
    plan: ToolPlan,
    args: dict[str, Any],
    verdict: Verdict,
    identity: Identity | None = None,
) -> Verdict:
    if policy.monitor:
        return verdict if verdict.allowed else replace(verdict, allowed=True, monitored=True)
    if verdict.allowed and plan.approvals:
        rule = _approval(plan.approvals, args, identity)
        if rule is not None:
            return replace(verdict, approval=rule)
    return verdict


def _fact_refusal(
    policy: Policy, plan: ToolPlan, call: Call, facts: ToolFacts, fail_open: bool
) -> Verdict | None:
    tool = call.tool
    if policy.pin_mode == "enforce":
        held = facts.held(tool)
        if held is None and not fail_open:
            return Verdict(
                tool,
                False,
                Step.STORE,
                STORE_RULE,
                "The policy's state store is unavailable, so pinned tools cannot be checked "
                "and are denied until it is back",
            )
        if held:
            return Verdict(
                tool,
                False,
                Step.PIN,
                PIN_RULE,
                f'The definition of "{tool}" changed since it was pinned; it is held until '
                "an operator approves the change (mcpwall pin accept)",
            )
    if plan.validate_arguments:
        problem = facts.schema_problem(tool, call.args)
        if problem is not None:
            reason = problem[0].upper() + problem[1:]
            return Verdict(tool, False, Step.SCHEMA, SCHEMA_RULE, reason)
    return None


def _pure_denial(
    rule: Rule, tool: str, args: dict[str, Any], identity: Identity | None
) -> str | None:
    """The reason this rule denies the call on its arguments (and claims) alone, if it
    does."""
    if rule.action is Action.DENY:
        for condition in rule.when:
            if _matches(condition, args, identity) is False:
                return None
        return rule.reason or f'"{tool}" is denied by rule "{rule.name}"'
    for condition in rule.require:
        root: Any = args
        if condition.reads_claims:
            if identity is None:
                return rule.reason or _condition_reason(rule, condition, _NO_TOKEN)
            root = identity.claims
        if condition.lists:
            failing = _first_failing(condition, root)
            if failing is not _HOLDS:
                return rule.reason or _condition_reason(rule, condition, failing)
            continue
        if condition.reads_claims:
            value = claim(root, condition.steps)
        else:
            value = resolve(root, condition.steps)
        if condition.test(value) is not True:
            return rule.reason or _condition_reason(rule, condition, value)
    return None


class _NoToken:
    __slots__ = ()


# What a claims.* condition reads in a call without a token: no operator gets to see it
# (an "exists: false" would hold), the condition cannot tell.
_NO_TOKEN: Any = _NoToken()


def claim(claims: dict[str, Any], steps: tuple[str, ...]) -> Any:
    """A claim by its dotted path; a claim whose own name has dots in it (a namespaced
    claim like https://example.com/groups) is found whole when the path finds nothing."""
    value = resolve(claims, steps)
    if value is MISSING and len(steps) > 1:
        value = claims.get(".".join(steps), MISSING)
    return value


def _matches(condition: Condition, args: dict[str, Any], identity: Identity | None) -> bool | None:
    """A ``when`` condition: True or False, or None when it cannot tell. Over lists it
    matches when any value does, and is surely false only when every value surely is."""
    root: Any = args
    if condition.reads_claims:
        if identity is None:
            return None
        root = identity.claims
        if not condition.lists:
            return condition.test(claim(root, condition.steps))
    if not condition.lists:
        return condition.test(resolve(root, condition.steps))
    verdicts = [condition.test(value) for value in resolve_each(root, condition.steps)]
    if True in verdicts:
        return True
    return False if verdicts and all(v is False for v in verdicts) else None


_HOLDS: Any = object()


def _first_failing(condition: Condition, args: dict[str, Any]) -> Any:
    """A requirement over lists holds for every value it reaches, and for at least one:
    the first value it does not hold for (MISSING for none at all), or _HOLDS."""
    values = resolve_each(args, condition.steps)
    if not values:
        return MISSING
    for value in values:
        if condition.test(value) is not True:
            return value
    return _HOLDS


def _approval(
    rules: tuple[Rule, ...], args: dict[str, Any], identity: Identity | None
) -> Rule | None:
    """The first approve rule whose ``when`` holds or cannot be told (fail closed:
    a missing argument asks the human)."""
    for rule in rules:
        if all(_matches(condition, args, identity) is not False for condition in rule.when):
            return rule
    return None


def _condition_reason(rule: Rule, condition: Condition, value: Any) -> str:
    if value is _NO_TOKEN:
        seen = "the call carries no token to read it from"
    elif value is MISSING:
        seen = f"{condition.path} is missing"
    else:
        seen = f"{condition.path} is {_show(value)}"
    return f'Rule "{rule.name}" requires {condition.describe()} ({seen})'


def _add_checks(
    checks: list[Check],
    position: int,
    rule: Rule,
    prefix: str,
    call: Call,
    args: dict[str, Any],
) -> str | None:
    """Append the rule's store checks; a reason if the call makes the rule impossible to
    apply (an increment that is not a non-negative number, a per-user counter and no
    user)."""
    for condition in rule.state_checks:
        counter = condition.counter
        assert counter is not None
        key = counter_key(counter, prefix, call.session, args, call.identity)
        if key is None:
            return _no_user(rule, counter)
        checks.append(
            Check(position, key, counter.window, 0, ((condition.op, condition.value),), False)
        )
    counter = rule.counter
    if counter is None:
        return None
    amount: Any = counter.increment
    if counter.increment_from is not None:
        amount = resolve(args, counter.increment_from)
        if type(amount) not in (int, float) or amount < 0 or not math.isfinite(amount):
            shown = "missing" if amount is MISSING else _show(amount)
            return rule.reason or (
                f'Rule "{rule.name}" counts {counter.increment_from_path}, which must be a '
                f"non-negative number (it is {shown})"
            )
        amount = float(amount)  # stores keep doubles: SQLite's integers stop at 2**63
    key = counter_key(counter, prefix, call.session, args, call.identity)
    if key is None:
        return _no_user(rule, counter)
    checks.append(
        Check(
            position,
            key,
            counter.window,
            amount,
            counter.limits,
            True,
            refundable=not counter.is_rate_limit,
        )
    )
    return None


def counter_key(
    counter: Counter,
    prefix: str,
    session: str,
    args: dict[str, Any],
    identity: Identity | None = None,
) -> str | None:
    """The store key of a counter for this call: the --state-prefix, the scope (the
    session, the user) and, with ``per``, the argument's value. None for a per-user
    counter when the call has no user. A user's key is the same in every session and
    every replica that shares the store, so a user's calls count together."""
    key = f"{prefix}{counter.owner}.{counter.name}"
    if counter.scope is Scope.SESSION:
        key = f"{prefix}session:{session}:{counter.owner}.{counter.name}"
    elif counter.scope is Scope.USER:
        user = _user(counter, identity)
        if user is None:
            return None
        key = f"{prefix}user:{_key_text(user)}:{counter.owner}.{counter.name}"
    if counter.per is not None:
        value = resolve(args, counter.per)
        text = "<missing>" if value is MISSING else _key_text(value)
        key = f"{key}|{counter.per_path}={text}"
    return key


def _user(counter: Counter, identity: Identity | None) -> Any:
    """Who a per-user counter counts for: the subject, or the user_key claim (a string
    or a number; anything else cannot tell users apart)."""
    if identity is None:
        return None
    if counter.user_key is None:
        return identity.subject
    value = claim(identity.claims, counter.user_key)
    if type(value) is str and value:
        return value
    return value if type(value) in (int, float) and type(value) is not bool else None


def _key_text(value: Any) -> str:
    text = orjson.dumps(value).decode()
    if len(text) > _MAX_KEY_VALUE:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _no_user(rule: Rule, counter: Counter) -> str:
    if counter.user_key_path is None:
        return rule.reason or (
            f'Rule "{rule.name}" counts per user, and this call carries no token that '
            "tells who the user is"
        )
    return rule.reason or (
        f'Rule "{rule.name}" counts per user by {counter.user_key_path}, and this call '
        "carries no token with that claim"
    )


def _limit_reason(
    rule: Rule, tool: str, refused: Refused, retry: int | None, checks: tuple[Check, ...]
) -> str:
    counter = rule.counter
    retry_text = f" Retry in {retry} s." if retry is not None else ""
    if rule.reason:
        return rule.reason + retry_text
    if counter is not None and counter.is_rate_limit:
        return (
            f"Rate limit of {counter.max_calls} calls per {_window_text(counter)} reached "
            f"for {tool}.{retry_text}"
        )
    failing = next(c for c in checks if c.rule == refused.rule)
    if failing.reserve and counter is not None:
        return (
            f'Limit of rule "{rule.name}" reached: {counter.state_path} is '
            f"{_show(refused.value)} and this call would add {_show(failing.amount)}."
            f"{retry_text}"
        )
    return f'Rule "{rule.name}" does not hold: the counter is {_show(refused.value)}.{retry_text}'


def _approval_reason(tool: str, rule: Rule, outcome: ApprovalOutcome, why: str) -> str:
    needs = f'"{tool}" needs a human\'s approval (rule "{rule.name}")'
    if outcome is ApprovalOutcome.DECLINED:
        return f'A human declined this call of "{tool}" (rule "{rule.name}")'
    if outcome is ApprovalOutcome.CANCELLED:
        return f'The approval of this call of "{tool}" was dismissed (rule "{rule.name}")'
    if outcome is ApprovalOutcome.TIMED_OUT:
        return f"{needs}, and no human approved it within {why}"
    if outcome is ApprovalOutcome.WITHDRAWN:
        return f"{needs}; the call was cancelled before an answer came"
    if outcome is ApprovalOutcome.ERROR:
        return f"{needs}; the client answered the approval request with an error"
    return f"{needs}, and {why}"


def _window_text(counter: Counter) -> str:
    label = counter.window.label
    return label if label in ("minute", "hour", "day") else f"{label[:-1]} s"


def _show(value: Any) -> str:
    if type(value) is float and value.is_integer():
        value = int(value)
    text = orjson.dumps(value).decode() if not isinstance(value, (int, float)) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
