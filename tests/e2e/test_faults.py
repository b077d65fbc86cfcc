"""Faults: a server that dies mid-call, hangs, floods or stops reading; a client that
stops reading; a state file that is locked or corrupt; a Redis that hangs. Each ends in
a clear answer, with no hang, no lost or duplicated response, and counters that match
what happened. mcpwall runs as a real process in front of the raw recorder.

Memory figures are mcpwall's resident set, read from /proc, and printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MCPWALL, server_cmd
from tests.helpers import (
    RawProxy,
    RedisServer,
    call,
    held_back,
    initialize,
    pipe_full,
    received,
    received_calls,
    release,
    rss_mb,
    wait_for,
)

POLICY = """
version: "1"
tools:
  slow:
    rules:
      - name: slow spend
        conditions: [{path: state.slow.spent, op: lte, value: 10}]
        state: {counter: spent, window: day, increment_from: args.amount}
  crash:
    rules:
      - name: crash spend
        conditions: [{path: state.crash.spent, op: lte, value: 10}]
        state: {counter: spent, window: day, increment_from: args.amount}
  echo:
    rules:
      - rate_limit: {max: 100000, window: 60}
  pods_delete:
    rules:
      - {action: deny, reason: "no pod deletion"}
"""

# Memory that mcpwall may gain while tens of megabytes wait on a side that does not
# read: a few pipe buffers and read chunks, never the traffic itself.
RSS_SLACK_MB = 40


@pytest.fixture
def policy(write_policy: Callable[..., Path]) -> Path:
    return write_policy(POLICY)


def check(policy: Path, tool: str, args: dict[str, Any], *flags: str) -> bool:
    """Whether `mcpwall check` allows the call on the current counters."""
    done = subprocess.run(
        [MCPWALL, "check", "-c", str(policy), tool, "--args", json.dumps(args), *flags],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def decisions(events_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in events_dir.glob("*.jsonl"):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in records if record["type"] == "decision"]


# -- the server dies -------------------------------------------------------------------


def test_a_server_crash_mid_call_answers_every_pending_call_and_gives_back_its_spend(
    raw_proxy: Callable[..., RawProxy], policy: Path, tmp_path: Path
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    events_dir = tmp_path / "events"
    proxy = raw_proxy(
        policy, server_cmd("raw_recorder.py"), *state, "--events-dir", str(events_dir)
    )
    initialize(proxy)
    proxy.send(call(1, "slow", {"hold": True, "amount": 4}))
    proxy.send(call(2, "slow", {"hold": True, "amount": 6}))
    proxy.send(call(3, "crash", {"amount": 10}))
    replies = [proxy.recv() for _ in range(3)]
    assert sorted(reply["id"] for reply in replies) == [1, 2, 3]
    for reply in replies:
        assert reply["error"]["code"] == -32000
        assert "exited (status 3) before answering" in reply["error"]["message"]
    assert proxy.wait() == 3
    assert proxy.eof()  # nothing after the three answers
    # Nothing was spent: the counters are back at zero, full amounts fit again.
    assert check(policy, "slow", {"amount": 10}, *state)
    assert check(policy, "crash", {"amount": 10}, *state)
    ended = {record["request_id"]: record for record in decisions(events_dir)}
    assert set(ended) == {1, 2, 3}
    assert all("exited (status 3)" in record["upstream_error"] for record in ended.values())


# -- the server hangs ------------------------------------------------------------------


def test_call_timeout_answers_once_settles_and_drops_the_late_answer(
    raw_proxy: Callable[..., RawProxy], policy: Path, tmp_path: Path, wire: Path
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    events_dir = tmp_path / "events"
    proxy = raw_proxy(
        policy,
        server_cmd("raw_recorder.py"),
        *state,
        "--events-dir",
        str(events_dir),
        "--call-timeout",
        "0.5",
    )
    initialize(proxy)
    started = time.monotonic()
    proxy.send(call(1, "slow", {"hold": True, "amount": 10}))
    proxy.send(call(2, "echo"))  # the session goes on meanwhile
    answers = {}
    while 1 not in answers:
        message = proxy.recv()
        answers[message["id"]] = message
    waited = time.monotonic() - started
    if 2 not in answers:
        answers[2] = proxy.recv()
    assert answers[2]["result"]["structuredContent"]["name"] == "echo"
    assert answers[1] == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {
            "code": -32001,
            "message": "[mcpwall] the MCP server did not answer this tools/call within 0.5 s",
        },
    }
    assert 0.4 < waited < 2, waited
    # The server is asked to stop; the id stays taken until its late answer.
    wait_for(lambda: b"notifications/cancelled" in received(wire)[-1])
    cancel = json.loads(received(wire)[-1])
    assert cancel["params"]["requestId"] == 1
    assert proxy.request(call(1, "echo"))["error"]["code"] == -32600
    # The late answer comes, and is dropped: one answer per request, ever.
    release(wire)
    wait_for(lambda: "late answer to request 1" in proxy.stderr)
    proxy.no_more()
    # Settled as a failed call: the spend was given back, so 10 fits again.
    again = proxy.request(call(1, "slow", {"amount": 10}))
    assert again["result"]["content"][0]["text"] == "slow done"
    assert not check(policy, "slow", {"amount": 1}, *state)  # that one was spent
    assert received_calls(wire) == ["slow", "echo", "slow"]
    proxy.close_stdin()
    assert proxy.wait() == 0
    first = next(r for r in decisions(events_dir) if r["request_id"] == 1)
    assert first["upstream_error"] == "no answer within 0.5 s"


def test_a_server_that_never_answers_without_a_timeout_ends_with_the_client(
    raw_proxy: Callable[..., RawProxy], policy: Path
) -> None:
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", "memory:")
    initialize(proxy)
    proxy.send(call(1, "slow", {"hold": True, "amount": 1}))
    proxy.close_stdin()  # the server reads EOF and exits; the call is answered
    reply = proxy.recv()
    assert reply["id"] == 1 and reply["error"]["code"] == -32000
    assert proxy.wait() == 1  # the server exited 0, but left a request unanswered


# -- floods and readers that stop ------------------------------------------------------


def test_a_flood_of_notifications_arrives_whole_and_in_order(
    raw_proxy: Callable[..., RawProxy], policy: Path
) -> None:
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", "memory:")
    initialize(proxy)
    before = rss_mb(proxy.process.pid)
    proxy.send(call(1, "flood", {"count": 20000, "size": 200}))
    seen = []
    while True:
        message = proxy.recv()
        if message.get("id") == 1:
            break
        seen.append(message["params"]["data"]["seq"])
    after = rss_mb(proxy.process.pid)
    print(f"\nflood: 20000 notifications of 200 B; mcpwall RSS {before:.1f} -> {after:.1f} MiB")
    assert seen == list(range(20000))
    assert after - before < RSS_SLACK_MB


def test_a_client_that_stops_reading_holds_the_server_back_not_mcpwalls_memory(
    raw_proxy: Callable[..., RawProxy], policy: Path
) -> None:
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", "memory:")
    initialize(proxy)
    before = rss_mb(proxy.process.pid)
    proxy.stop_reading()
    # 1000 notifications of 100 kB: 100 MB that only the client can take.
    proxy.send(call(1, "flood", {"count": 1000, "size": 100_000}))
    # Denials mcpwall writes itself must wait too, not pile up.
    writer = threading.Thread(
        target=lambda: [proxy.send(call(f"d{n}", "pods_delete")) for n in range(100_000)],
        daemon=True,
    )
    writer.start()
    # mcpwall has stopped reading the client once the pipe to it is full.
    stdin = proxy.process.stdin
    wait_for(held_back(stdin, proxy.process.pid), what="mcpwall to stop reading its stdin")
    peak = rss_mb(proxy.process.pid)
    assert writer.is_alive() and pipe_full(stdin)  # and it stays stopped
    proxy.resume_reading()
    seen, denials = [], 0
    while len(seen) < 1000 or denials < 100_000:
        message = proxy.recv()
        if message.get("method") == "notifications/message":
            seen.append(message["params"]["data"]["seq"])
        elif str(message.get("id")).startswith("d"):
            denials += 1
    print(f"\nslow client: 100 MB flood + 100000 denials; RSS {before:.1f}, peak {peak:.1f} MiB")
    assert seen == list(range(1000))
    assert peak - before < RSS_SLACK_MB


def test_a_server_that_stops_reading_holds_the_client_back_not_mcpwalls_memory(
    raw_proxy: Callable[..., RawProxy], policy: Path, wire: Path
) -> None:
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", "memory:")
    initialize(proxy)
    before = rss_mb(proxy.process.pid)
    proxy.send(call("block", "block"))
    blob = "x" * 100_000
    writer = threading.Thread(
        target=lambda: [proxy.send(call(n, "echo", {"blob": blob})) for n in range(500)],
        daemon=True,
    )
    writer.start()
    # Everything between the client and the server is full: the pipe into mcpwall too.
    stdin = proxy.process.stdin
    wait_for(held_back(stdin, proxy.process.pid), what="mcpwall to stop reading its stdin")
    peak = rss_mb(proxy.process.pid)
    print(f"\nblocked server: 50 MB of calls waiting; RSS {before:.1f}, peak {peak:.1f} MiB")
    assert writer.is_alive() and pipe_full(stdin)  # the client is held back
    assert peak - before < RSS_SLACK_MB
    release(wire)  # the server reads again
    answered = {proxy.recv()["id"] for _ in range(501)}
    assert answered == {"block", *range(500)}


# -- the state store -------------------------------------------------------------------


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Another process holding a SQLite file's write lock until its stdin closes."""
    started: list[subprocess.Popen[bytes]] = []
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def lock(path: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == b"locked\n"
        return process

    yield lock
    for process in started:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def test_a_locked_state_file_waits_then_fails_closed_and_recovers(
    raw_proxy: Callable[..., RawProxy],
    policy: Path,
    tmp_path: Path,
    locker: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    state_dir = tmp_path / "state"
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dir", str(state_dir))
    initialize(proxy)
    assert "result" in proxy.request(call(1, "slow", {"amount": 1}))
    holder = locker(state_dir / "state.sqlite")
    started = time.monotonic()
    proxy.send(call(2, "slow", {"amount": 1}))  # needs the store
    proxy.send(call(3, "pods_delete"))  # needs none
    refused = proxy.recv(timeout=15)
    waited = time.monotonic() - started
    assert refused["id"] == 2
    text = refused["result"]["content"][0]["text"]
    assert "state store is unavailable" in text and refused["result"]["isError"] is True
    assert waited > 4, waited  # it waited for the busy timeout (5 s), then gave up
    wait_for(lambda: "database is locked" in proxy.stderr)  # stderr has a pipe of its own
    assert "no pod deletion" in proxy.recv()["result"]["content"][0]["text"]
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=10)
    # The lock is gone: the store is used again, and the refused call spent nothing.
    again = proxy.request(call(4, "slow", {"amount": 9}))
    assert again["result"]["content"][0]["text"] == "slow done"
    proxy.close_stdin()
    assert proxy.wait() == 0
    assert not check(policy, "slow", {"amount": 1}, "--state-dir", str(state_dir))


@pytest.mark.parametrize("when", ["before the start", "while running"])
def test_a_corrupt_state_file_fails_closed_without_a_crash(
    raw_proxy: Callable[..., RawProxy], policy: Path, tmp_path: Path, when: str
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    garbage = b"this is not a database\n" * 4096
    if when == "before the start":
        (state_dir / "state.sqlite").write_bytes(garbage)
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dir", str(state_dir))
    initialize(proxy)
    if when == "while running":
        assert "result" in proxy.request(call(1, "slow", {"amount": 1}))
        for path in state_dir.iterdir():  # the file and its write-ahead log
            path.write_bytes(garbage)

    def refused_everything_but_the_denial(number: object) -> None:
        refused = proxy.request(call(number, "slow", {"amount": 1}))
        assert "state store is unavailable" in refused["result"]["content"][0]["text"]
        allowed = proxy.request(call(f"e{number}", "echo"))  # needs a counter too
        assert "state store is unavailable" in allowed["result"]["content"][0]["text"]
        denied = proxy.request(call(f"p{number}", "pods_delete"))  # needs none
        assert "no pod deletion" in denied["result"]["content"][0]["text"]

    refused_everything_but_the_denial(2)
    # Calls are refused until the file is tried again (at once if it is open, a second
    # later if it could not be opened), and it is still bad.
    tries = proxy.stderr.count("file is not a database")
    retries = iter(range(10_000))

    def tried_again() -> bool:
        refused = proxy.request(call(f"r{next(retries)}", "slow", {"amount": 1}))
        assert "state store is unavailable" in refused["result"]["content"][0]["text"]
        return proxy.stderr.count("file is not a database") > tries

    wait_for(tried_again, what="the state file being tried again")
    refused_everything_but_the_denial(3)
    assert proxy.process.poll() is None
    proxy.close_stdin()
    assert proxy.wait() == 0


def test_a_redis_that_hangs_fails_closed_within_its_timeout_and_recovers(
    raw_proxy: Callable[..., RawProxy], policy: Path, own_redis: RedisServer
) -> None:
    """Redis going away is tests/e2e/test_shared_state.py's; a Redis that stops
    answering (a stalled host) must not stall mcpwall longer than the store's socket
    timeout. The refused call's script was sent, though, and Redis runs it once it
    resumes: the counter may count that call. It errs towards counting, never less."""
    proxy = raw_proxy(policy, server_cmd("raw_recorder.py"), "--state-dsn", own_redis.url)
    initialize(proxy)
    assert "result" in proxy.request(call(1, "slow", {"amount": 1}))
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        refused = proxy.request(call(2, "slow", {"amount": 1}))
        waited = time.monotonic() - started
        assert "state store is unavailable" in refused["result"]["content"][0]["text"]
        assert waited < 5, waited
        assert (
            "no pod deletion"
            in proxy.request(call(3, "pods_delete"))["result"]["content"][0]["text"]
        )
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    flags = ("--state-dsn", own_redis.url)
    assert not check(policy, "slow", {"amount": 10}, *flags)  # call 1 is counted
    assert check(policy, "slow", {"amount": 8}, *flags)  # and at most call 2 besides
    again = proxy.request(call(4, "slow", {"amount": 8}))
    assert again["result"]["content"][0]["text"] == "slow done"  # used again by itself
