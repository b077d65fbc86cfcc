"""What every counter store does, and the window arithmetic they share.

A call that needs state brings a list of Checks, in rule order. The store evaluates all
of them against its current values and then, only if every one holds, adds every
amount: all or none, in one atomic step, so that two processes (or two replicas) can
never both take the last slot of a limit.

Calls that arrive together (pipelined) are reserved as a group, in one transaction or
one script call: each call still gets the outcome it would get alone, in arrival order
(it sees what the calls before it added, and a refused call adds nothing), but the
group pays for one commit instead of one per call. If that commit fails, no call of
the group is counted and every one of them gets the error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from mcpwall.engine.operators import compare_numbers, values_equal
from mcpwall.policy.model import Op, Window


class StoreUnavailable(Exception):
    """The store cannot be reached or used right now."""


# Checks and Tokens are tuples: several are made for every call that needs the store,
# and a frozen dataclass costs three times as much to make.
class Check(NamedTuple):
    rule: int  # the rule's position in the call's plan, reported back if it fails
    key: str
    window: Window
    amount: float  # what this call adds; 0 for a check that only reads
    limits: tuple[tuple[Op, Any], ...]  # (value + amount) must satisfy each
    reserve: bool
    refundable: bool = False  # a counter, given back when the call fails (not a rate limit)


class Token(NamedTuple):
    """One reserved amount, enough to give it back."""

    key: str
    window: Window
    amount: float
    ident: Any  # which event (sliding) or which window's start (calendar)
    refundable: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """A group refused by the store: the check that failed, by its index."""

    rule: int
    value: float  # the counter's value before this call
    retry_after: float | None  # seconds until the check could pass, if time alone helps


# One call's part of a group: its checks, and whether to add (false: a dry run, which
# only reads).
Request = tuple[Sequence[Check], bool]
Outcome = Refused | tuple[Token, ...]


class CounterStore(Protocol):
    def reserve(self, checks: Sequence[Check], now: float, commit: bool = True) -> Outcome:
        """Evaluate every check; if all hold, add every reserving amount (unless
        ``commit`` is false: a dry run). Raises StoreUnavailable."""
        ...

    def reserve_many(self, requests: Sequence[Request], now: float) -> list[Outcome]:
        """Each request's outcome, as ``reserve`` one after another in this order at
        ``now`` would give it, applied in one atomic step: if the step fails, none of
        them is applied. Raises StoreUnavailable."""
        ...

    def release(self, tokens: Sequence[Token]) -> None:
        """Take reserved amounts back. Raises StoreUnavailable."""

    def read(self, key: str, window: Window, now: float) -> float:
        """A counter's current value."""
        ...

    def get_value(self, key: str) -> str | None:
        """A stored text (tool pins), or None. Raises StoreUnavailable."""

    def put_value(self, key: str, value: str) -> None:
        """Store a text under ``key``, for good. Raises StoreUnavailable."""

    def values(self, prefix: str) -> dict[str, str]:
        """Every stored text whose key starts with ``prefix``."""
        ...

    def close(self) -> None: ...


def window_start(window: Window, now: float) -> float:
    """Start of the calendar window holding ``now`` (UTC; epoch days are UTC days)."""
    return math.floor(now / window.seconds) * window.seconds


def holds(op: Op, value: float, bound: Any) -> bool:
    """Whether a counter value satisfies one limit or state condition."""
    if op is Op.IN:
        return any(values_equal(value, item) for item in bound)
    if op is Op.NOT_IN:
        return not any(values_equal(value, item) for item in bound)
    if op is Op.EXISTS:
        return bool(bound)  # a counter always exists: it starts at zero
    if op in (Op.EQ, Op.NEQ) and type(bound) not in (int, float):
        return values_equal(value, bound) is (op is Op.EQ)
    return compare_numbers(op, value, bound)


def fails(check: Check, value: float) -> bool:
    """Whether the check fails when the counter stands at ``value`` before this call."""
    total = value + check.amount
    for op, bound in check.limits:
        if op is Op.LTE:  # rate limits and most caps: the one case worth a fast path
            if total > bound:
                return True
        elif not holds(op, total, bound):
            return True
    return False


def sliding_retry_after(
    check: Check, total: float, events: Iterable[tuple[float, float]], now: float
) -> float | None:
    """When enough of the window's events (oldest first: (time, amount)) will have left
    it for the check to pass; None if waiting alone will never make it pass. Reads only
    as many events as it needs."""
    if any(op not in (Op.LT, Op.LTE) for op, _ in check.limits):
        return None
    remaining = total
    for stamp, amount in events:
        remaining -= amount
        if not fails(check, remaining):
            return max(0.0, stamp + check.window.seconds - now)
    return None


def calendar_retry_after(check: Check, start: float, now: float) -> float | None:
    if any(op not in (Op.LT, Op.LTE) for op, _ in check.limits) or fails(check, 0):
        return None
    return max(0.0, start + check.window.seconds - now)
