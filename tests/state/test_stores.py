"""One contract for every counter store, run against each; then what only SQLite does:
survive a restart, and stay exact with many processes on one file."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpwall.policy.model import Op, Window
from mcpwall.state.base import Check, CounterStore, Refused, StoreUnavailable, window_start
from mcpwall.state.memory import MemoryStore
from mcpwall.state.redis import RedisStore
from mcpwall.state.sqlite import SQLiteStore
from tests.helpers import RedisServer

SLIDING = Window(60.0, False, "60s")
DAY = Window(86400.0, True, "day")
NOW = 1_800_000_000.0


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> CounterStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "state.sqlite")
    # The windows follow the time each call passes in, as with the other stores.
    return RedisStore(request.getfixturevalue("redis_url"), server_time=False)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CounterStore]:
    made = make_store(request.param, tmp_path, request)
    yield made
    made.close()


def limit(
    key: str,
    max_value: float,
    window: Window = SLIDING,
    amount: float = 1,
    rule: int = 0,
    refundable: bool = False,
) -> Check:
    return Check(rule, key, window, amount, ((Op.LTE, max_value),), True, refundable)


def test_reserves_up_to_the_limit_and_says_when_to_retry(store: CounterStore) -> None:
    for second in range(3):
        assert not isinstance(store.reserve([limit("k", 3)], NOW + second), Refused)
    refused = store.reserve([limit("k", 3)], NOW + 10)
    assert refused == Refused(0, 3, 50.0)  # the first call leaves the window at NOW + 60
    assert not isinstance(store.reserve([limit("k", 3)], NOW + 60), Refused)


def test_all_or_none(store: CounterStore) -> None:
    store.reserve([limit("b", 1)], NOW)
    refused = store.reserve([limit("a", 5, rule=0), limit("b", 1, rule=1)], NOW)
    assert isinstance(refused, Refused) and refused.rule == 1
    assert store.read("a", SLIDING, NOW) == 0


def test_dry_run_changes_nothing(store: CounterStore) -> None:
    assert store.reserve([limit("k", 3)], NOW, commit=False) == ()
    assert store.read("k", SLIDING, NOW) == 0


def test_release_gives_amounts_back(store: CounterStore) -> None:
    tokens = store.reserve([limit("s", 100, DAY, amount=40, refundable=True), limit("r", 5)], NOW)
    assert not isinstance(tokens, Refused)
    assert store.read("s", DAY, NOW) == 40
    store.release(tokens)
    assert store.read("s", DAY, NOW) == 0 and store.read("r", SLIDING, NOW) == 0


def test_calendar_window_starts_again_at_the_boundary(store: CounterStore) -> None:
    midnight = 1_800_057_600.0  # 2027-01-16 00:00:00 UTC
    store.reserve([limit("d", 10, DAY, amount=10)], midnight - 1)
    refused = store.reserve([limit("d", 10, DAY)], midnight - 1)
    assert isinstance(refused, Refused) and refused.retry_after == 1
    assert not isinstance(store.reserve([limit("d", 10, DAY)], midnight), Refused)


def test_sqlite_counters_survive_reopening(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "state.sqlite")
    first.reserve([limit("k", 2), limit("s", 100, DAY, amount=70)], NOW)
    first.close()
    second = SQLiteStore(tmp_path / "state.sqlite")
    assert second.read("k", SLIDING, NOW + 1) == 1
    assert second.read("s", DAY, NOW + 1) == 70
    second.close()


def _hammer(where: str, calls: int, start: multiprocessing.synchronize.Event) -> int:
    store: CounterStore = RedisStore(where) if where.startswith("redis") else SQLiteStore(where)
    start.wait()
    admitted = 0
    for _ in range(calls):
        outcome = store.reserve([limit("shared", 100, Window(3600.0, False, "3600s"))], NOW + 1)
        admitted += not isinstance(outcome, Refused)
    store.close()
    return admitted


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_limit_is_exact_across_eight_processes(
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
        results = [pool.apply_async(_hammer, (where, 50, start)) for _ in range(8)]
        start.set()
        admitted = [result.get(timeout=60) for result in results]
    assert sum(admitted) == 100


def test_redis_windows_follow_the_servers_clock(redis_url: str) -> None:
    store = RedisStore(redis_url)
    # A caller whose clock is a year off changes nothing: the server's time rules.
    for skew in (0, 365 * 86400, -365 * 86400):
        assert not isinstance(store.reserve([limit("k", 3)], NOW + skew), Refused)
    refused = store.reserve([limit("k", 3)], NOW)
    assert isinstance(refused, Refused) and 59 <= (refused.retry_after or 0) <= 60
    store.close()


def test_redis_unreachable_then_back(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url)
    assert not isinstance(store.reserve([limit("k", 3)], NOW), Refused)
    own_redis.stop()
    with pytest.raises(StoreUnavailable, match="Redis"):
        store.reserve([limit("k", 3)], NOW)
    own_redis.start()
    assert not isinstance(store.reserve([limit("k", 3)], NOW), Refused)  # no restart needed
    store.close()


def test_redis_keys_expire_by_themselves(redis_url: str, redis_server: RedisServer) -> None:
    store = RedisStore(redis_url)
    store.reserve([limit("k", 3, Window(2.0, False, "2s")), limit("d", 100, DAY)], NOW)
    started = int(window_start(DAY, time.time()))
    for name in ("mcpwall:k|ev", "mcpwall:k|sum", f"mcpwall:d|{started}"):
        ttl = redis_server.command("PTTL", name)
        assert ttl is not None and ttl.startswith(b":")
        assert 0 < int(ttl[1:]) <= 86_400_000, name
    store.close()
