"""The decision engine, judged call by call with a clock the test controls."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcpwall.engine.decide import Call
from mcpwall.engine.gate import Gate
from mcpwall.policy import Policy, load_policy
from mcpwall.proxy.record import CallRecord
from mcpwall.state import StoreUnavailable
from mcpwall.state.memory import MemoryStore
from mcpwall.state.redis import RedisStore
from mcpwall.state.sqlite import SQLiteStore


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:  # 2027-01-15 08:00 UTC
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_gate(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Gate]:
    def make(clock: Clock, fail_open: bool = False) -> Gate:
        if request.param == "memory":
            return Gate(MemoryStore, fail_open, clock=clock)
        if request.param == "redis":
            url = request.getfixturevalue("redis_url")
            return Gate(lambda: RedisStore(url, server_time=False), fail_open, clock=clock)
        return Gate(lambda: SQLiteStore(tmp_path / "state.sqlite"), fail_open, clock=clock)

    return make


@pytest.fixture
def policy(write_policy: Callable[..., Path]) -> Callable[[str], Policy]:
    return lambda text: load_policy(write_policy('version: "1"\n' + text))


def judge(
    gate: Gate, policy: Policy, tool: str, args: dict[str, Any] | None = None, session: str = "s1"
) -> CallRecord:
    return CallRecord(*gate.judge(policy, Call(session, tool, args or {})))


def test_order_hidden_then_default_deny_then_rules(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy("""
default: deny
hide: ["secret_*"]
tools:
  secret_get: {rules: []}
  pods_list: {rules: []}
  "*":
    rules:
      - {action: deny, when: [{path: args.namespace, op: eq, value: kube-system}],
         reason: system namespace}
""")
    assert judge(gate, rules, "secret_get").rule == "(hidden)"
    assert judge(gate, rules, "nodes_list").rule == "(default deny)"  # "*" rescues nothing
    assert judge(gate, rules, "pods_list", {"namespace": "web"}).allowed
    refused = judge(gate, rules, "pods_list", {"namespace": "kube-system"})
    assert (refused.allowed, refused.reason) == (False, "system namespace")


def test_first_deny_in_file_order_wins_even_when_it_needs_the_store(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy("""
tools:
  create_issue:
    rules:
      - {name: limit, rate_limit: 1/hour, on_deny: limit reached}
      - name: title
        conditions: [{path: args.title, op: regex, value: "^[A-Z]"}]
        on_deny: title must be capitalised
""")
    assert judge(gate, rules, "create_issue", {"title": "Bug"}).allowed
    # Both rules would deny; the rate limit comes first in the file.
    assert judge(gate, rules, "create_issue", {"title": "bug"}).reason == (
        "limit reached Retry in 3600 s."
    )


def test_sliding_window_never_admits_more_than_max_in_any_window(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    clock = Clock()
    gate = make_gate(clock)
    rules = policy("tools:\n  t:\n    rules:\n      - rate_limit: {max: 3, window: 10}\n")
    start = clock.now
    admitted: list[float] = []
    rng = random.Random(7)
    for _ in range(400):
        clock.now += rng.choice([0.0, 0.01, 0.5, 1.3, 3.7, 9.99, 10.0])
        if judge(gate, rules, "t").allowed:
            admitted.append(clock.now)
    assert len(admitted) > 50
    for index in range(len(admitted) - 3):
        assert admitted[index + 3] - admitted[index] >= 10  # 4 admitted span >= the window
    assert clock.now - start > 100


def test_no_double_burst_at_a_window_boundary(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    clock = Clock(1_800_000_059.5)  # half a second before a calendar minute ends
    gate = make_gate(clock)
    rules = policy("tools:\n  t:\n    rules:\n      - {name: r, rate_limit: 3/minute}\n")
    assert [judge(gate, rules, "t").allowed for _ in range(3)] == [True] * 3
    clock.now += 1.0  # the next calendar minute
    late = judge(gate, rules, "t")
    assert not late.allowed and late.retry_after_s == 59
    clock.now += 59.0
    assert judge(gate, rules, "t").allowed


def test_calendar_counter_resets_at_utc_midnight(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    clock = Clock(1_800_057_600.0 - 10)  # 2027-01-16 00:00 UTC, minus ten seconds
    gate = make_gate(clock)
    rules = policy("""
tools:
  create_refund:
    rules:
      - name: daily
        conditions: [{path: state.create_refund.count, op: lte, value: 2}]
        state: {counter: count, window: day}
""")
    assert [judge(gate, rules, "create_refund").allowed for _ in range(3)] == [True, True, False]
    assert judge(gate, rules, "create_refund").retry_after_s == 10
    clock.now += 10
    assert judge(gate, rules, "create_refund").allowed


SPEND = """
tools:
  create_charge:
    rules:
      - name: spend
        conditions: [{path: state.create_charge.spend, op: lte, value: 1000}]
        state: {counter: spend, window: day, increment_from: args.amount}
      - {name: rate, rate_limit: 100/hour}
"""


def test_spend_counter_refuses_bad_increments(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy(SPEND)
    assert judge(gate, rules, "create_charge", {"amount": 600}).allowed
    assert not judge(gate, rules, "create_charge", {"amount": 401}).allowed
    # A negative amount would lower the counter: refused, never counted.
    negative = judge(gate, rules, "create_charge", {"amount": -5000})
    assert not negative.allowed and "non-negative number" in (negative.reason or "")
    assert not judge(gate, rules, "create_charge", {"amount": "400"}).allowed
    assert not judge(gate, rules, "create_charge", {}).allowed
    assert judge(gate, rules, "create_charge", {"amount": 399.5}).allowed


def test_failed_call_gives_back_its_spend_but_not_its_rate_slot(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy(SPEND.replace("100/hour", "2/hour"))
    first = judge(gate, rules, "create_charge", {"amount": 1000})
    assert first.allowed
    gate.settle(first.tokens, first.tool, failed=True)  # the server answered with an error
    second = judge(gate, rules, "create_charge", {"amount": 1000})
    assert second.allowed  # the spend came back...
    third = judge(gate, rules, "create_charge", {"amount": 0})
    assert "Rate limit of 2 calls per hour" in (third.reason or "")  # ...the slots did not


def test_reservations_are_all_or_none(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy("""
tools:
  t:
    rules:
      - {name: wide, rate_limit: 10/hour}
  "*":
    rules:
      - {name: narrow, rate_limit: 1/hour}
""")
    assert judge(gate, rules, "t").allowed
    for _ in range(5):
        assert judge(gate, rules, "t").rule == "narrow"
    # The refused calls took nothing from the wide limit: 9 slots are left in it.
    assert rules.counters  # sanity
    other = policy("tools:\n  t:\n    rules:\n      - {name: wide, rate_limit: 10/hour}\n")
    assert [judge(gate, other, "t").allowed for _ in range(10)] == [True] * 9 + [False]


def test_scopes_and_per(make_gate: Callable[..., Gate], policy: Callable[[str], Policy]) -> None:
    gate = make_gate(Clock())
    rules = policy("""
tools:
  pods_delete:
    rules:
      - rate_limit: {max: 1, window: 60, per: args.namespace}
  vm_clone:
    rules:
      - rate_limit: {max: 1, window: 60, scope: global}
  echo:
    rules:
      - rate_limit: {max: 1, window: 60}
""")
    assert judge(gate, rules, "pods_delete", {"namespace": "a"}).allowed
    assert judge(gate, rules, "pods_delete", {"namespace": "b"}).allowed
    assert not judge(gate, rules, "pods_delete", {"namespace": "a"}).allowed
    assert judge(gate, rules, "vm_clone", session="s1").allowed
    assert not judge(gate, rules, "vm_clone", session="s2").allowed  # global: shared
    assert judge(gate, rules, "echo", session="s1").allowed
    assert judge(gate, rules, "echo", session="s2").allowed  # session: each its own


def test_missing_argument_fails_closed(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy("""
tools:
  create_charge:
    rules:
      - name: cap
        conditions: [{path: args.amount, op: lte, value: 100}]
  pods_delete:
    rules:
      - {action: deny, when: [{path: args.namespace, op: in, value: [kube-system]}],
         reason: no}
""")
    missing = judge(gate, rules, "create_charge", {})
    assert not missing.allowed
    assert missing.reason == 'Rule "cap" requires args.amount lte 100 (args.amount is missing)'
    # A deny whose condition cannot be told applies: the server might default the
    # namespace to kube-system.
    assert not judge(gate, rules, "pods_delete", {}).allowed
    assert judge(gate, rules, "pods_delete", {"namespace": "web"}).allowed
    # To deny only the calls that name the namespace, say so.
    named = policy("""
tools:
  pods_delete:
    rules:
      - action: deny
        when:
          - {path: args.namespace, op: exists, value: true}
          - {path: args.namespace, op: in, value: [kube-system]}
""")
    assert judge(gate, named, "pods_delete", {}).allowed


def test_monitor_mode_lets_denials_through_marked(
    make_gate: Callable[..., Gate], policy: Callable[[str], Policy]
) -> None:
    gate = make_gate(Clock())
    rules = policy("mode: monitor\ntools:\n  t:\n    rules:\n      - {action: deny, reason: no}\n")
    decision = judge(gate, rules, "t")
    assert decision.allowed and decision.monitored and decision.reason == "no"


def test_store_down_fails_closed_or_open_and_recovers(policy: Callable[[str], Policy]) -> None:
    attempts = {"n": 0}

    def flaky() -> MemoryStore:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise StoreUnavailable("store is down")
        return MemoryStore()

    rules = policy("tools:\n  t:\n    rules:\n      - {name: r, rate_limit: 5/hour}\n  u: {}\n")
    closed = Gate(flaky, clock=Clock())
    refused = judge(closed, rules, "t")
    assert not refused.allowed and "state store is unavailable" in (refused.reason or "")
    assert judge(closed, rules, "u").allowed  # calls that need no state pass
    closed._store_retry_at = 0  # the retry delay has passed
    assert judge(closed, rules, "t").allowed  # recovered by itself
    opened = Gate(
        lambda: (_ for _ in ()).throw(StoreUnavailable("down")), fail_open=True, clock=Clock()
    )
    assert judge(opened, rules, "t").allowed
