"""The decision engine: one tools/call in, one Decision out.

Evaluation order (DESIGN.md): hidden, then default deny, then the tool's rules and
the "*" rules in file order; the first rule that denies wins; then every counter of
the call is reserved in one atomic step (all or none). Argument conditions are decided
here without the store; the store is asked only when a rule before the first denying
one keeps state, so a denial that needs no counter never waits on the store.

What cannot be decided is denied: a condition on a missing argument fails; a ``when``
that cannot tell lets its deny apply; a store that cannot be reached denies the calls
that need it (unless told to fail open).

Who calls (the Identity from an OAuth token, HTTP with --auth) is read in two places
only: ``claims.*`` conditions, which cannot tell for a call without a token, and the key
of ``scope: user`` counters, which a call without a token (or without the claim named by
``user_key``) cannot have: such a rule denies it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mcpwall.auth import Identity
from mcpwall.engine.operators import MISSING, resolve
from mcpwall.policy.model import Condition, Counter, Policy, Rule, Scope, ToolPlan
from mcpwall.state.base import Check, CounterStore, Refused, StoreUnavailable, Token

log = logging.getLogger("mcpwall")

_STORE_RETRY_SECONDS = 1.0
_MAX_KEY_VALUE = 200


@dataclass(slots=True)
class Decision:
    allowed: bool
    tool: str
    rule: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None
    tokens: tuple[Token, ...] = ()
    # Under mode: monitor a call that the policy denies is let through; it is marked.
    monitored: bool = False
    # An allowed call that a human must approve first: the approve rule that applies,
    # and what came of asking (accepted, decline, cancel, timed out, remembered, ...).
    approval: Rule | None = None
    approval_outcome: str | None = None
    redacted: dict[str, int] | None = None  # secrets taken out of the result, by kind
    # Filled in by the relay, for the audit log and the metrics.
    request_id: Any = None
    latency_us: float = 0.0
    policy_digest: str = ""
    args: Any = None
    args_digest: str | None = None
    subject: str | None = None  # the caller's token subject, under --auth

    def as_meta(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "rule": self.rule,
            "reason": self.reason,
            "retry_after_s": self.retry_after_s,
        }


class Gate:
    """Judges calls against the current policy and keeps the store's reservations."""

    def __init__(
        self,
        open_store: Callable[[], CounterStore],
        fail_open: bool = False,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_store = open_store
        self.prefix = prefix
        self._store: CounterStore | None = None
        self._store_retry_at = 0.0
        self.fail_open = fail_open
        self.clock = clock
        self.store_errors = 0

    # -- judging ------------------------------------------------------------------------

    def judge(
        self,
        policy: Policy,
        session: str,
        tool: str,
        args: dict[str, Any],
        commit: bool = True,
        identity: Identity | None = None,
    ) -> Decision:
        plan = policy.plan(tool)
        call = _Call(args, identity)
        decision = self._judge(plan, session, call, commit)
        if policy.monitor and not decision.allowed:
            decision.allowed = True
            decision.monitored = True
        elif decision.allowed and plan.approvals and not policy.monitor:
            decision.approval = _approval(plan.approvals, call)
        return decision

    def _judge(self, plan: ToolPlan, session: str, call: _Call, commit: bool) -> Decision:
        tool = plan.tool
        if plan.refusal is not None:
            rule, reason = plan.refusal
            return Decision(False, tool, rule, reason)
        if not plan.stateful:
            for rule in plan.rules:
                reason = _pure_denial(rule, tool, call)
                if reason is not None:
                    return Decision(False, tool, rule.name, reason)
            return Decision(True, tool)

        checks: list[Check] = []
        denial: tuple[Rule, str] | None = None
        rules = plan.rules
        for position, rule in enumerate(rules):
            reason = _pure_denial(rule, tool, call)
            if reason is None and rule.stateful:
                reason = _add_checks(checks, position, rule, self.prefix, session, call)
            if reason is not None:
                denial = (rule, reason)
                break
        if not checks:
            if denial is not None:
                return Decision(False, tool, denial[0].name, denial[1])
            return Decision(True, tool)

        try:
            outcome = self.store().reserve(checks, self.clock(), commit=commit and denial is None)
        except StoreUnavailable as exc:
            if denial is not None:
                return Decision(False, tool, denial[0].name, denial[1])
            return self._store_failed(tool, exc)
        if isinstance(outcome, Refused):
            rule = rules[outcome.rule]
            retry = None if outcome.retry_after is None else math.ceil(outcome.retry_after)
            reason = _limit_reason(rule, tool, outcome, retry, checks)
            return Decision(False, tool, rule.name, reason, retry)
        if denial is not None:
            return Decision(False, tool, denial[0].name, denial[1])
        return Decision(True, tool, tokens=outcome)

    def _store_failed(self, tool: str, exc: StoreUnavailable) -> Decision:
        self.store_errors += 1
        if self.fail_open:
            log.warning("state store unavailable, letting %s through (fail open): %s", tool, exc)
            return Decision(True, tool, "(state store unavailable)")
        log.error("state store unavailable, denying %s (fail closed): %s", tool, exc)
        return Decision(
            False,
            tool,
            "(state store unavailable)",
            "The policy's state store is unavailable, so calls that need a counter are "
            "denied until it is back",
        )

    def store(self) -> CounterStore:
        """The state store, opened on first use. Raises StoreUnavailable."""
        if self._store is not None:
            return self._store
        now = time.monotonic()
        if now < self._store_retry_at:
            raise StoreUnavailable("the state store could not be opened; retrying shortly")
        try:
            self._store = self._open_store()
        except StoreUnavailable:
            self._store_retry_at = now + _STORE_RETRY_SECONDS
            raise
        return self._store

    # -- after the call -----------------------------------------------------------------

    def settle(self, decision: Decision, *, failed: bool = False, unsent: bool = False) -> None:
        """Give reservations back: all of them if the call never reached the server,
        the counters (not the rate limits) if it failed or never completed."""
        if not decision.tokens or self._store is None:
            return
        if unsent:
            tokens = decision.tokens
        elif failed:
            tokens = tuple(token for token in decision.tokens if token.refundable)
        else:
            return
        if not tokens:
            return
        try:
            self._store.release(tokens)
        except StoreUnavailable as exc:
            self.store_errors += 1
            log.error("could not give back reservations for %s: %s", decision.tool, exc)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@dataclass(slots=True)
class _Call:
    """What the conditions and counter keys of one call read."""

    args: dict[str, Any]
    identity: Identity | None

    def value(self, condition: Condition) -> Any:
        if not condition.reads_claims:
            return resolve(self.args, condition.steps)
        if self.identity is None:
            return _NO_TOKEN
        return claim(self.identity.claims, condition.steps)

    def verdict(self, condition: Condition) -> Any:
        value = self.value(condition)
        return None if value is _NO_TOKEN else condition.test(value)


class _NoToken:
    __slots__ = ()


# What a claims.* path reads in a call without a token: no operator gets to see it (an
# "exists: false" would hold), the condition cannot tell.
_NO_TOKEN: Any = _NoToken()


def claim(claims: dict[str, Any], steps: tuple[str, ...]) -> Any:
    """A claim by its dotted path; a claim whose own name has dots in it (a namespaced
    claim like https://example.com/groups) is found whole when the path finds nothing."""
    value = resolve(claims, steps)
    if value is MISSING and len(steps) > 1:
        value = claims.get(".".join(steps), MISSING)
    return value


def _pure_denial(rule: Rule, tool: str, call: _Call) -> str | None:
    """The reason this rule denies the call on its arguments (and claims) alone, if it
    does."""
    if rule.deny:
        for condition in rule.when:
            if call.verdict(condition) is False:
                return None
        return rule.reason or f'"{tool}" is denied by rule "{rule.name}"'
    for condition in rule.require:
        value = call.value(condition)
        if value is _NO_TOKEN or condition.test(value) is not True:
            return rule.reason or _condition_reason(rule, condition, value)
    return None


def _approval(rules: tuple[Rule, ...], call: _Call) -> Rule | None:
    """The first approve rule whose ``when`` holds or cannot be told (fail closed:
    a missing argument asks the human)."""
    for rule in rules:
        if all(call.verdict(condition) is not False for condition in rule.when):
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
    session: str,
    call: _Call,
) -> str | None:
    """Append the rule's store checks; a reason if the call makes the rule impossible
    to apply (an increment that is not a non-negative number, a per-user counter and no
    user)."""
    args = call.args
    for condition in rule.state_checks:
        counter = condition.counter
        assert counter is not None
        key = counter_key(counter, prefix, session, call)
        if key is None:
            return _no_user(rule, counter)
        checks.append(
            Check(
                position,
                key,
                counter.window,
                0,
                ((condition.op, condition.value),),
                False,
            )
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
    key = counter_key(counter, prefix, session, call)
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


def counter_key(counter: Counter, prefix: str, session: str, call: _Call) -> str | None:
    """The store key of a counter for this call: the --state-prefix, the scope (the
    session, the user) and, with ``per``, the argument's value. None for a per-user
    counter when the call has no user."""
    key = f"{prefix}{counter.owner}.{counter.name}"
    if counter.scope is Scope.SESSION:
        key = f"{prefix}session:{session}:{counter.owner}.{counter.name}"
    elif counter.scope is Scope.USER:
        user = _user(counter, call.identity)
        if user is None:
            return None
        key = f"{prefix}user:{_key_text(user)}:{counter.owner}.{counter.name}"
    if counter.per is not None:
        value = resolve(call.args, counter.per)
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
    return value if type(value) in (int, float) else None


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
    rule: Rule, tool: str, refused: Refused, retry: int | None, checks: list[Check]
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


def _window_text(counter: Counter) -> str:
    label = counter.window.label
    return label if label in ("minute", "hour", "day") else f"{label[:-1]} s"


def _show(value: Any) -> str:
    if type(value) is float and value.is_integer():
        value = int(value)
    text = orjson.dumps(value).decode() if not isinstance(value, (int, float)) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
