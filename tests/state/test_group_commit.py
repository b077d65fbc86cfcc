"""Group commit: the calls that arrive together are reserved in one SQLite transaction or
one Redis script call, and each still gets the outcome it would get alone.

The reference is the memory store, one call after another. A group whose commit fails
counts nothing and fails every call in it; the same group once the store is back
counts each call once. Many processes sending groups still get exactly the limit.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall.engine.decide import STORE_RULE
from mcpwall.policy.model import Op, Window
from mcpwall.state.base import Check, CounterStore, Outcome, Refused, Request, StoreUnavailable
from mcpwall.state.memory import MemoryStore
from mcpwall.state.redis import RedisStore
from mcpwall.state.sqlite import SQLiteStore
from tests.conftest import server_cmd
from tests.helpers import RawProxy, RedisServer, initialize
from tests.helpers import call as raw_call
from tests.proxy.transcript import Transcript, call, denied

NOW = 1_800_000_000.0
DAY = Window(86400.0, True, "day")
SLIDING = Window(60.0, False, "60s")
# Each key keeps one window, as a counter does: two sliding, one calendar.
WINDOWS = {
    "s10": Window(10.0, False, "10s"),
    "s30": Window(30.0, False, "30s"),
    "c20": Window(20.0, True, "20s"),
}


def limit(key: str, max_value: float, window: Window = SLIDING, amount: float = 1) -> Check:
    return Check(0, key, window, amount, ((Op.LTE, max_value),), True)


# -- the group's outcomes are the sequential outcomes ---------------------------------------

LIMITS = st.one_of(
    st.tuples(st.sampled_from([Op.LTE, Op.LT, Op.GTE, Op.EQ, Op.NEQ]), st.integers(0, 6)),
    st.tuples(st.just(Op.IN), st.lists(st.integers(0, 6), max_size=3)),  # unhashable bound
)
CHECKS = st.lists(
    st.tuples(
        st.sampled_from(sorted(WINDOWS)),
        st.sampled_from([0.0, 0.5, 1.0, 2.0]),  # exact in binary: sums agree everywhere
        st.lists(LIMITS, max_size=2),
        st.booleans(),  # reserve (false: a condition that only reads)
        st.booleans(),  # refundable
    ),
    min_size=1,
    max_size=3,
)
REQUESTS = st.lists(st.tuples(CHECKS, st.sampled_from([True, True, True, False])), max_size=8)
GROUPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 2.5, 5.0, 10.0, 20.0]),  # seconds since the previous group
        REQUESTS,
        st.lists(st.integers(0, 20), max_size=3),  # kept calls to give back afterwards
    ),
    min_size=1,
    max_size=6,
)
EXAMPLES = {"sqlite": 150, "redis": 100}


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> CounterStore:
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "state.sqlite")
    return RedisStore(request.getfixturevalue("redis_url"), server_time=False)


def requests_of(prefix: str, specs: list[tuple[list[Any], bool]]) -> list[Request]:
    made = []
    for checks, commit in specs:
        made.append(
            (
                tuple(
                    # Rules by a position other than the check's: refusals must name the rule.
                    Check(10 + 2 * place, prefix + key, WINDOWS[key], amount, tuple(limits), *flags)
                    for place, (key, amount, limits, *flags) in enumerate(checks)
                ),
                commit,
            )
        )
    return made


def same_outcome(got: Outcome, expected: Outcome) -> None:
    if isinstance(expected, Refused):
        assert isinstance(got, Refused), (got, expected)
        assert (got.rule, got.value) == (expected.rule, expected.value)
        if expected.retry_after is None:
            assert got.retry_after is None
        else:
            assert got.retry_after == pytest.approx(expected.retry_after, abs=1e-6)
        return
    assert not isinstance(got, Refused), (got, expected)
    shape = [(t.key, t.window, t.amount, t.refundable) for t in got]
    assert shape == [(t.key, t.window, t.amount, t.refundable) for t in expected]


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_a_group_gets_the_outcomes_of_one_call_after_another(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = open_store(kind, tmp_path, request)
    prefixes = count()

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(groups=GROUPS)
    def run(groups: list[tuple[float, list[tuple[list[Any], bool]], list[int]]]) -> None:
        prefix = f"example{next(prefixes)}:"  # every example starts from empty counters
        reference = MemoryStore()
        now = NOW
        kept: list[tuple[Outcome, Outcome]] = []  # (the reference's tokens, the store's)
        for gap, specs, give_back in groups:
            now += gap
            requests = requests_of(prefix, specs)
            expected = [reference.reserve(checks, now, commit) for checks, commit in requests]
            got = store.reserve_many(requests, now)
            assert len(got) == len(expected)
            for mine, theirs in zip(got, expected, strict=True):
                same_outcome(mine, theirs)
                if theirs and not isinstance(theirs, Refused):
                    kept.append((theirs, mine))
            for index in give_back:
                if kept:
                    theirs, mine = kept.pop(index % len(kept))
                    reference.release(theirs)  # type: ignore[arg-type]
                    store.release(mine)  # type: ignore[arg-type]
            for key, window in WINDOWS.items():
                assert store.read(prefix + key, window, now) == reference.read(
                    prefix + key, window, now
                )

    try:
        run()
    finally:
        store.close()


# -- a group whose commit fails ----------------------------------------------------------------

# Two calls on one counter, one on a daily spend, one whose write fails.
GROUP: list[Request] = [
    ([limit("k", 5)], True),
    ([limit("spend", 100, DAY, amount=30)], True),
    ([limit("poison", 5)], True),
    ([limit("k", 5)], True),
]


def counts(store: CounterStore) -> tuple[float, float, float]:
    return (
        store.read("k", SLIDING, NOW),
        store.read("spend", DAY, NOW),
        store.read("poison", SLIDING, NOW),
    )


def test_sqlite_a_group_that_fails_midway_counts_nothing_then_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SQLiteStore(path)
    other = sqlite3.connect(path)
    # A real failure inside the transaction, after the group's first writes.
    other.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON totals WHEN NEW.key = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    other.commit()
    with pytest.raises(StoreUnavailable, match="injected failure"):
        store.reserve_many(GROUP, NOW)
    assert counts(store) == (0, 0, 0)
    other.execute("DROP TRIGGER poison")
    other.commit()
    assert not any(isinstance(outcome, Refused) for outcome in store.reserve_many(GROUP, NOW))
    assert counts(store) == (2, 30, 1)
    other.close()
    store.close()


def test_redis_a_group_that_fails_midway_writes_nothing_then_once(
    redis_url: str, redis_server: RedisServer
) -> None:
    store = RedisStore(redis_url, server_time=False)
    # A key of the wrong type: the script fails on the third call's counter.
    assert redis_server.command("LPUSH", "mcpwall:poison|sum", "x") == b":1\r\n"
    with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
        store.reserve_many(GROUP, NOW)
    assert redis_server.command("DEL", "mcpwall:poison|sum") == b":1\r\n"
    assert counts(store) == (0, 0, 0)
    assert not any(isinstance(outcome, Refused) for outcome in store.reserve_many(GROUP, NOW))
    assert counts(store) == (2, 30, 1)
    store.close()


def test_redis_down_for_a_group_then_back(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, server_time=False)
    own_redis.stop()
    with pytest.raises(StoreUnavailable, match="Redis"):
        store.reserve_many(GROUP, NOW)
    own_redis.start()
    assert not any(isinstance(outcome, Refused) for outcome in store.reserve_many(GROUP, NOW))
    assert counts(store) == (2, 30, 1)
    store.close()


# -- through the relay: one read, one store call ------------------------------------------

POLICY = """
version: "1"
tools:
  create_charge:
    rules:
      - name: spend cap
        conditions:
          - {path: state.create_charge.spend, op: lte, value: 100}
        state: {counter: spend, window: day, increment_from: args.amount}
      - name: charges per minute
        rate_limit: 4/minute
  pods_list:
    rules: []
"""


def charge(request_id: Any, amount: float = 10) -> Any:
    return call(request_id, "create_charge", {"amount": amount})


# Calls to a limited tool, with everything else a client may send between them: a call
# needing no counter, a request, a duplicate id, a malformed line, a notification call,
# bad params; each splits or joins the group as it must.
TRAFFIC: list[Any] = [
    charge(1),
    charge(2, 60),
    call(3, "pods_list"),
    charge(4),
    {"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
    charge(6, 50),  # over the spend cap: refused, and counts nothing
    charge(4),  # the id of a pending call
    b"{not json",
    {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "create_charge"}},
    {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": 7}},
    charge(9, 1),
    charge(10, 1),  # over the rate limit
]


def lines(messages: list[Any]) -> bytes:
    return b"".join(
        (m if isinstance(m, bytes) else json.dumps(m).encode()) + b"\n" for m in messages
    )


def transcript(tmp_path: Path, store: CounterStore) -> Transcript:
    t = Transcript(tmp_path, POLICY, store=store)
    t.clock.now = NOW  # Redis expires a key whose window ended: not in 1970, then
    t.handshake()
    return t


def one_read(t: Transcript, messages: list[Any]) -> None:
    t.session.read_start()
    for line in lines(messages).splitlines(keepends=True):
        t.session.from_client(line)
    t.session.read_end()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    made: list[CounterStore] = []
    names = count()

    def make() -> CounterStore:
        if request.param == "sqlite":
            store: CounterStore = SQLiteStore(tmp_path / f"state-{next(names)}.sqlite")
        else:
            # A namespace per store, as --state-prefix gives, so that they start empty.
            store = RedisStore(request.getfixturevalue("redis_url"), server_time=False)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_one_read_is_judged_as_its_messages_one_by_one(
    tmp_path: Path, make_store: Callable[[], CounterStore]
) -> None:
    alone = transcript(tmp_path, make_store())
    for message in TRAFFIC:
        alone.client(message)
    grouped = transcript(tmp_path, make_store())
    if isinstance(grouped.store, RedisStore):
        grouped.gate.prefix = "grouped:"
    one_read(grouped, TRAFFIC)
    assert grouped.server_got() == alone.server_got()
    answers = grouped.client_got()
    assert answers == alone.client_got()
    refused = {a["id"]: denied(a) for a in answers if "id" in a and denied(a)}
    assert set(refused) == {6, 10}
    assert "spend cap" in (refused[6] or "") and "Rate limit" in (refused[10] or "")


def test_pipelined_calls_of_one_read_take_one_redis_script_call(
    tmp_path: Path, redis_url: str, redis_server: RedisServer
) -> None:
    t = transcript(tmp_path, RedisStore(redis_url, server_time=False))
    one_read(t, [charge(0, 0)])  # the script is loaded on first use
    before = evalsha_calls(redis_server)
    one_read(t, [charge(n, 1) for n in range(1, 11)])
    assert evalsha_calls(redis_server) == before + 1
    assert len(t.server_got()) == 4  # the rate limit: 4 a minute, the first one included
    t.store.close()


def evalsha_calls(redis_server: RedisServer) -> int:
    stats = redis_server.command("INFO", "commandstats") or b""
    for entry in stats.decode().splitlines():
        if entry.startswith("cmdstat_evalsha:"):
            return int(entry.split("calls=")[1].split(",")[0])
    return 0


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_read_whose_commit_fails_fails_every_call_in_it(tmp_path: Path, fail_open: bool) -> None:
    path = tmp_path / "state.sqlite"
    t = transcript(tmp_path, SQLiteStore(path))
    t.gate.fail_open = fail_open
    other = sqlite3.connect(path)
    other.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON totals WHEN NEW.key LIKE '%spend' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    other.commit()
    one_read(t, [charge(1), charge(2), charge(3)])
    if fail_open:
        assert [m["id"] for m in t.server_got()] == [1, 2, 3]
        assert t.client_got() == []
    else:
        assert t.server_got() == []
        answers = t.client_got()
        assert [a["id"] for a in answers] == [1, 2, 3]
        assert all(a["result"]["_meta"]["mcpwall/decision"]["rule"] == STORE_RULE for a in answers)
    assert t.gate.store_errors == 3
    other.execute("DROP TRIGGER poison")
    other.commit()
    one_read(t, [charge(4), charge(5), charge(6)])
    assert [m["id"] for m in t.server_got()] == [4, 5, 6]
    # Counted once each: none of the failed group, all of the second.
    assert t.store.read("create_charge.spend", DAY, t.clock.now) == 30
    other.close()
    t.store.close()


# -- exact across processes ------------------------------------------------------------------


def _hammer(where: str, groups: int, start: Any) -> int:
    store: CounterStore = RedisStore(where) if where.startswith("redis") else SQLiteStore(where)
    start.wait()
    admitted = 0
    for _ in range(groups):
        group: list[Request] = [([limit("shared", 100, Window(3600.0, False, "3600s"))], True)] * 10
        admitted += sum(not isinstance(o, Refused) for o in store.reserve_many(group, NOW + 1))
    store.close()
    return admitted


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_groups_from_eight_processes_get_exactly_the_limit(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = str(tmp_path / "state.sqlite")
    if kind == "redis":
        where = request.getfixturevalue("redis_url")
    else:
        SQLiteStore(where).close()
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(8) as pool:
        results = [pool.apply_async(_hammer, (where, 10, start)) for _ in range(8)]
        start.set()
        admitted = [result.get(timeout=60) for result in results]
    assert sum(admitted) == 100


LIMITED = """
version: "1"
tools:
  echo:
    rules:
      - name: fleet limit
        rate_limit: 100/hour
"""


def test_pipelined_mcpwall_processes_share_one_limit_exactly(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], tmp_path: Path
) -> None:
    policy = write_policy(LIMITED)
    flags = ["--state-dir", str(tmp_path / "shared-state")]
    proxies = [raw_proxy(policy, server_cmd("raw_recorder.py"), *flags) for _ in range(4)]
    for proxy in proxies:
        initialize(proxy)
    for proxy in proxies:  # each sends its 60 calls in one write: groups, not single calls
        proxy.send(lines([raw_call(n, "echo", {"n": n}) for n in range(1, 61)]))
    allowed = 0
    for proxy in proxies:
        for _ in range(60):
            reply = proxy.recv()
            allowed += not reply.get("result", {}).get("isError")
    assert allowed == 100


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_call_of_a_group_given_back_takes_only_its_own_amount(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The calls of one group on a key share one instant, and SQLite writes them as one
    event: giving one back must leave the others counted."""
    store = open_store(kind, tmp_path, request)
    try:
        group: list[Request] = [([limit("k", 3)], True)] * 3
        tokens = store.reserve_many(group, NOW)
        assert store.read("k", SLIDING, NOW) == 3
        store.release(tokens[1])  # type: ignore[arg-type]
        assert store.read("k", SLIDING, NOW) == 2
        assert not isinstance(store.reserve([limit("k", 3)], NOW), Refused)
        assert isinstance(store.reserve([limit("k", 3)], NOW), Refused)
        store.release(tokens[0])  # type: ignore[arg-type]
        store.release(tokens[2])  # type: ignore[arg-type]
        assert store.read("k", SLIDING, NOW) == 1
        assert store.read("k", SLIDING, NOW + 61) == 0  # the one left ages out
    finally:
        store.close()
