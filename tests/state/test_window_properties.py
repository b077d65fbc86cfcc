"""Sliding windows under random traffic, against every store: never more than max in
any window, and never a refusal while the window has room.

Each example is a rate limit {max, window} and a run of calls at random times, some of
them given back afterwards (a call that never reached the server). The calls go
through the Gate with a clock of the test's own; Redis runs with server_time=False so
that it follows that clock. The model: a call is admitted exactly when fewer than max
of the calls kept so far lie in the window ending at its time, (t - window, t].
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall.engine.decide import Call
from mcpwall.engine.gate import Gate
from mcpwall.policy import Policy, load_policy
from mcpwall.state.base import CounterStore, Token
from mcpwall.state.memory import MemoryStore
from mcpwall.state.redis import RedisStore
from mcpwall.state.sqlite import SQLiteStore

START = 1_800_000_000.0
# (seconds since the previous call: exact doubles, which often add up to the window, so
#  that calls land on its very edge; which kept call to give back afterwards, if any)
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 1.0, 2.5, 5.0, 10.0]),
        st.one_of(st.none(), st.integers(0, 10)),
    ),
    max_size=40,
)
WINDOWS = st.sampled_from([5, 10, 30])
EXAMPLES = {"memory": 400, "sqlite": 300, "redis": 200}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> CounterStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "state.sqlite")
    return RedisStore(request.getfixturevalue("redis_url"), server_time=False)


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_a_sliding_window_admits_exactly_up_to_max(
    kind: str,
    tmp_path: Path,
    write_policy: Callable[..., Path],
    request: pytest.FixtureRequest,
) -> None:
    store = open_store(kind, tmp_path, request)
    policies: dict[tuple[int, int], Policy] = {}
    prefixes = count()

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=2000,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(limit=st.integers(1, 5), window=WINDOWS, steps=STEPS)
    def run(limit: int, window: int, steps: list[tuple[float, int | None]]) -> None:
        if (limit, window) not in policies:
            rule = f"rate_limit: {{max: {limit}, window: {window}}}"
            text = f'version: "1"\ntools:\n  t:\n    rules:\n      - {rule}\n'
            policies[limit, window] = load_policy(write_policy(text))
        policy = policies[limit, window]
        clock = Clock()
        # A prefix per example: every example starts from empty counters.
        gate = Gate(lambda: store, prefix=f"example{next(prefixes)}:", clock=clock)
        # what was admitted and not given back, oldest first
        kept: list[tuple[float, tuple[Token, ...]]] = []
        for gap, give_back in steps:
            clock.now += gap
            in_window = [t for t, _ in kept if clock.now - window < t <= clock.now]
            verdict, tokens = gate.judge(policy, Call("session", "t", {}))
            assert verdict.allowed is (len(in_window) < limit), (clock.now, in_window)
            if verdict.allowed:
                kept.append((clock.now, tokens))
            if give_back is not None and kept:
                _, returned = kept.pop(give_back % len(kept))
                gate.settle(returned, "t", unsent=True)
        times = [t for t, _ in kept]
        for end in times:
            assert sum(1 for t in times if end - window < t <= end) <= limit

    try:
        run()
    finally:
        store.close()
