"""Limits shared by many mcpwall processes: one SQLite file on a host, one Redis for many
hosts. Real processes, a real redis-server; the raw recorder server answers the calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import server_cmd
from tests.helpers import RawProxy, RedisServer, call, initialize, wait_for

LIMITED = """
version: "1"
tools:
  echo:
    rules:
      - name: fleet limit
        rate_limit: 100/hour
      - name: session limit
        rate_limit: {max: 1000, window: 3600}
  iserror:
    rules:
      - name: per session
        rate_limit: {max: 2, window: 3600}
"""


def state_flags(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    if kind == "redis":
        return ["--state-dsn", request.getfixturevalue("redis_url")]
    return ["--state-dir", str(tmp_path / "shared-state")]


def allowed(reply: dict[str, object]) -> bool:
    result = reply.get("result")
    return isinstance(result, dict) and not result.get("isError")


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_eight_processes_share_one_limit_exactly(
    kind: str,
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    policy = write_policy(LIMITED)
    flags = state_flags(kind, tmp_path, request)
    proxies = [raw_proxy(policy, server_cmd("raw_recorder.py"), *flags) for _ in range(8)]
    for proxy in proxies:
        initialize(proxy)
    counts: list[int] = [0] * len(proxies)

    def agent(index: int) -> None:
        proxy = proxies[index]
        for number in range(50):
            counts[index] += allowed(proxy.request(call(number, "echo", {"n": number})))

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(proxies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(counts) == 100


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_scopes_and_prefixes(
    kind: str,
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    policy = write_policy(LIMITED.replace("100/hour", "3/hour"))
    flags = state_flags(kind, tmp_path, request)
    first = raw_proxy(policy, server_cmd("raw_recorder.py"), *flags)
    second = raw_proxy(policy, server_cmd("raw_recorder.py"), *flags)
    other_team = raw_proxy(
        policy, server_cmd("raw_recorder.py"), *flags, "--state-prefix", "team-b:"
    )
    for proxy in (first, second, other_team):
        initialize(proxy)
    # scope: session (the seed form's default): each connection counts alone.
    for proxy in (first, second):
        outcomes = [allowed(proxy.request(call(n, "iserror"))) for n in range(3)]
        assert outcomes == [False, False, False]  # isError results: answered, not denied
    for proxy in (first, second):
        reply = proxy.request(call(9, "iserror"))
        assert reply["result"]["_meta"]["mcpwall/decision"]["rule"] == "per session"
    # Global (Intercept's default): the fleet shares 3; another prefix has its own 3.
    shared = [
        allowed(first.request(call(10, "echo"))),
        allowed(second.request(call(10, "echo"))),
        allowed(first.request(call(11, "echo"))),
        allowed(second.request(call(11, "echo"))),
    ]
    assert shared == [True, True, True, False]
    assert [allowed(other_team.request(call(n, "echo"))) for n in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_redis_down_fails_closed_then_recovers(
    own_redis: RedisServer,
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
) -> None:
    policy = write_policy(LIMITED + "  ping_tool:\n    rules: []\n")
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", own_redis.url)
    initialize(proxy)
    assert allowed(proxy.request(call(1, "echo")))
    own_redis.stop()
    refused = proxy.request(call(2, "echo"))
    assert not allowed(refused)
    text = refused["result"]["content"][0]["text"]
    assert "state store is unavailable" in text
    assert refused["result"]["_meta"]["mcpwall/decision"]["rule"] == "(state store unavailable)"
    assert allowed(proxy.request(call(3, "ping_tool")))  # needs no state: passes
    own_redis.start()
    assert allowed(proxy.request(call(4, "echo")))  # back, without a restart
    wait_for(lambda: "state store unavailable, denying echo (fail closed)" in proxy.stderr)


def test_redis_down_fail_open_lets_calls_through(
    own_redis: RedisServer,
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
) -> None:
    proxy = raw_proxy(
        write_policy(LIMITED),
        server_cmd("raw_recorder.py"),
        "--state-dsn",
        own_redis.url,
        "--state-fail-mode",
        "open",
    )
    initialize(proxy)
    own_redis.stop()
    assert allowed(proxy.request(call(1, "echo")))
    wait_for(lambda: "letting echo through (fail open)" in proxy.stderr)


def test_redis_counters_survive_a_restart_of_mcpwall(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    redis_url: str,
) -> None:
    policy = write_policy(LIMITED.replace("100/hour", "2/hour"))
    first = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", redis_url)
    initialize(first)
    assert [allowed(first.request(call(n, "echo"))) for n in range(2)] == [True, True]
    first.close_stdin()
    assert first.wait() == 0
    second = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", redis_url)
    initialize(second)
    assert not allowed(second.request(call(1, "echo")))
