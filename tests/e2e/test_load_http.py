"""Load over HTTP: many clients at once through mcpwall's Streamable HTTP listener, in
front of the raw recorder (one server process per client session, as in production),
with a policy that allows and denies (every tenth call is denied) and the audit log on.

- 64 legacy sessions (``Mcp-Session-Id``) at once, 1,000 ``tools/call`` each, one in
  flight per session: every request gets exactly one response, with its own id (every
  session uses the same ids), in its own session (the recorder echoes the arguments,
  which name the session and the call), and the recorder's record holds each allowed
  call once and no denied one. mcpwall's resident memory is read from /proc after a
  warm-up round and after each measured round: it must stay flat.
- 16 stateless 2026-07-28 identities (``--session-header``) at once, with the same ids
  and a limit per agent session: each identity gets its own answers and its own limit.

The figures (calls, time, calls per second, resident memory) are printed:
`pytest -s tests/e2e/test_load_http.py`. No speed is asserted; the benchmarks measure it.

The 64,000 calls are sent by a keep-alive HTTP/1.1 client of a few lines: httpx spends
about 0.5 ms of CPU on each request, five times what the listener spends, and would
make this test measure httpx. The stateless run uses httpx.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import server_cmd
from tests.e2e.http import Listener
from tests.helpers import received, rss_mb

pytestmark = pytest.mark.anyio

POLICY = """
version: "1"
tools:
  echo:
    rules:
      - rate_limit: {max: 1000000, window: 3600}
      - name: spend
        conditions: [{path: state.echo.spent, op: lte, value: 1000000000}]
        state: {counter: spent, window: day, increment: 1}
  limited:
    rules:
      - rate_limit: {max: 25, window: 3600}
  pods_delete:
    rules:
      - {action: deny, reason: "no pod deletion"}
"""
SESSIONS = 64
CALLS = 1000  # per session, in ROUNDS measured rounds
ROUNDS = 4
WARM_UP = 200  # calls per session before the measured rounds
ROUND_TIMEOUT = 60.0  # a round that hangs fails here, not at pytest's timeout
# Allocator noise is within a few MiB; a leak of 200 bytes a call (12 MiB over the
# 64,000 calls) is not.
RSS_GROWTH_LIMIT_MB = 12


class Connection:
    """One keep-alive HTTP/1.1 connection to the listener, one request at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._head = head  # the request line and the headers every request carries

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        )
        return cls(reader, writer, head)

    async def post(self, body: bytes, headers: str = "") -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the answer to one POST."""
        request = f"{self._head}{headers}Content-Length: {len(body)}\r\n\r\n"
        self._writer.write(request.encode() + body)
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            data = await self._reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append((await self._reader.readexactly(size + 2))[:-2])
                if size == 0:
                    break
            data = b"".join(chunks)
        else:
            data = b""
        return status, fields, data

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


class Session:
    """A legacy Streamable HTTP session on a connection of its own."""

    def __init__(self, number: int, connection: Connection, session_id: str) -> None:
        self.number = number
        self.connection = connection
        self.session_id = session_id
        self._headers = f"Mcp-Session-Id: {session_id}\r\n"

    @classmethod
    async def open(cls, number: int, url: str) -> Session:
        connection = await Connection.open(url)
        handshake = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": f"load-{number}", "version": "1"},
            },
        }
        status, fields, data = await connection.post(json.dumps(handshake).encode())
        assert status == 200 and json.loads(data)["id"] == 0, data
        session = cls(number, connection, fields["mcp-session-id"])
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await session.post(done))[0] == 202
        return session

    async def post(self, message: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return await self.connection.post(json.dumps(message).encode(), self._headers)

    async def calls(self, first: int, count: int) -> None:
        """``count`` calls, one at a time; each answer checked to be this call's own."""
        for n in range(first, first + count):
            denied = n % 10 == 0
            name = "pods_delete" if denied else "echo"
            arguments = {"session": self.number, "n": n}
            status, fields, data = await self.post(
                {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": name, "arguments": arguments},
                }
            )
            assert status == 200 and fields["content-type"] == "application/json", data
            assert fields["mcp-session-id"] == self.session_id
            answer = json.loads(data)  # one message: an array or two would not be a dict
            assert answer["id"] == n, (self.number, n, answer)
            result = answer["result"]
            if denied:
                assert result["isError"] is True
                assert result["content"][0]["text"].startswith("[mcpwall] Denied by policy")
            else:
                assert result["structuredContent"] == {"name": "echo", "arguments": arguments}


class Peak:
    """The highest resident memory of a process while the block runs, sampled from a
    thread every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.value = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.value = max(self.value, rss_mb(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def calls_received(wire: Path) -> Counter[tuple[str, Any, Any]]:
    """Every tools/call that reached a server: (name, session, n), counted."""
    seen: Counter[tuple[str, Any, Any]] = Counter()
    for line in received(wire):
        message = json.loads(line)
        if type(message) is dict and message.get("method") == "tools/call":
            params = message["params"]
            arguments = params.get("arguments") or {}
            key = arguments.get("session", arguments.get("agent"))
            seen[(params["name"], key, arguments.get("n"))] += 1
    return seen


def start_listener(write_policy: Callable[..., Path], tmp_path: Path, *args: str) -> Listener:
    return Listener(
        write_policy(POLICY),
        # Counters in a SQLite file, as in production: the sliding windows keep an event
        # per call for an hour, which in memory would grow mcpwall's own.
        "--state-dsn",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--events-dir",
        str(tmp_path / "events"),
        *args,
        "--",
        *server_cmd("raw_recorder.py"),
    )


async def test_64_sessions_1000_calls_each_one_answer_each_and_flat_memory(
    write_policy: Callable[..., Path], wire: Path, tmp_path: Path, home: Path
) -> None:
    """64 sessions at once, 1,000 calls each (after a warm-up of 200 each): one answer
    each, its own, in its own session; each allowed call reaches a server once and no
    denied one does; mcpwall's memory stays flat."""
    wall = start_listener(write_policy, tmp_path)
    try:
        pid = wall.process.pid
        start = rss_mb(pid)
        async with asyncio.timeout(ROUND_TIMEOUT):
            opening = (Session.open(n, wall.url) for n in range(SESSIONS))
            sessions = await asyncio.gather(*opening)
        opened = rss_mb(pid)
        async with asyncio.timeout(ROUND_TIMEOUT):
            await asyncio.gather(*(session.calls(1, WARM_UP) for session in sessions))
        before = rss_mb(pid)
        after: list[float] = []
        per_round = CALLS // ROUNDS
        first = WARM_UP + 1
        started = time.monotonic()
        with Peak(pid) as peak:
            for _ in range(ROUNDS):
                async with asyncio.timeout(ROUND_TIMEOUT):
                    rounds = (session.calls(first, per_round) for session in sessions)
                    await asyncio.gather(*rounds)
                first += per_round
                after.append(rss_mb(pid))
        elapsed = time.monotonic() - started
        for session in sessions:
            await session.connection.close()
        total = SESSIONS * CALLS
        print(
            f"\nHTTP load: {SESSIONS} sessions x {CALLS} calls = {total} calls in "
            f"{elapsed:.2f} s ({total / elapsed:.0f}/s), one in flight per session; "
            f"mcpwall RSS at the start {start:.1f} MiB, with the sessions open {opened:.1f} "
            f"MiB, after the warm-up ({SESSIONS * WARM_UP} calls) {before:.1f} MiB, after "
            f"each measured round {', '.join(f'{value:.1f}' for value in after)} MiB, "
            f"peak {peak.value:.1f} MiB"
        )
        # No answer came for a POST that was no longer waiting (answered twice, or late).
        assert "found no client waiting" not in wall.stderr
    finally:
        code = wall.stop()
    assert code == 0

    allowed = {
        ("echo", s, n)
        for s in range(SESSIONS)
        for n in range(1, WARM_UP + CALLS + 1)
        if n % 10 != 0
    }
    seen = calls_received(wire)
    assert set(seen) == allowed  # never a denied call, every allowed one...
    assert set(seen.values()) == {1}  # ...once
    assert max(after) - before < RSS_GROWTH_LIMIT_MB
    assert peak.value - before < RSS_GROWTH_LIMIT_MB


IDENTITIES = 16
STATELESS_CALLS = 100
MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _stateless_tool(n: int) -> str:
    if n % 10 == 0:
        return "pods_delete"
    return "limited" if n % 3 == 0 else "echo"


async def test_stateless_identities_at_once_each_get_their_own_answers_and_limits(
    write_policy: Callable[..., Path], wire: Path, tmp_path: Path, home: Path
) -> None:
    """16 identities, each its own httpx client, the same ids 1..100 each: each answer
    is its call's own, and the limit of 25 `limited` calls per agent session holds
    for each identity, neither shared nor multiplied."""
    wall = start_listener(write_policy, tmp_path, "--session-header", "X-Agent")

    async def agent(number: int) -> dict[str, int]:
        outcomes: Counter[str] = Counter()
        async with httpx.AsyncClient(timeout=30) as http:
            for n in range(1, STATELESS_CALLS + 1):
                name = _stateless_tool(n)
                arguments = {"agent": number, "n": n}
                message = {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": name, "arguments": arguments, "_meta": META},
                }
                reply = await http.post(
                    wall.url,
                    json=message,
                    headers={
                        "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": MODERN,
                        "Mcp-Method": "tools/call",
                        "Mcp-Name": name,
                        "X-Agent": f"agent-{number}",
                    },
                )
                assert reply.status_code == 200
                events = [line for line in reply.text.split("\n") if line.startswith("data:")]
                assert len(events) == 1, reply.text  # one message, and only one
                answer = json.loads(events[0][5:])
                assert answer["id"] == n
                result = answer["result"]
                if result.get("isError"):
                    outcomes[f"{name} denied"] += 1
                else:
                    assert result["structuredContent"]["arguments"] == arguments
                    outcomes[f"{name} allowed"] += 1
        return dict(outcomes)

    try:
        started = time.monotonic()
        results = await asyncio.gather(*(agent(number) for number in range(IDENTITIES)))
        elapsed = time.monotonic() - started
        total = IDENTITIES * STATELESS_CALLS
        print(
            f"\nHTTP stateless load: {IDENTITIES} identities x {STATELESS_CALLS} calls = "
            f"{total} calls in {elapsed:.2f} s ({total / elapsed:.0f}/s, httpx); "
            f"mcpwall RSS {rss_mb(wall.process.pid):.1f} MiB"
        )
    finally:
        code = wall.stop()
    assert code == 0
    # Per identity: 10 denied by rule, 30 limited calls of which 25 allowed, 60 echoes.
    expected = {
        "pods_delete denied": 10,
        "limited allowed": 25,
        "limited denied": 5,
        "echo allowed": 60,
    }
    assert results == [expected] * IDENTITIES
    seen = calls_received(wire)
    assert set(seen.values()) == {1}
    assert Counter(name for name, _, _ in seen.elements()) == {
        "echo": 60 * IDENTITIES,
        "limited": 25 * IDENTITIES,
    }
