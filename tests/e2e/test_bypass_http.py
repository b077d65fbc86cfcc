"""The bypass corpus on the Streamable HTTP transport: every way we know for an agent to
get a denied call past the policy, sent as raw HTTP (httpx) to mcpwall's listener, itself
a real process in front of the raw recorder, whose record of every line it received is
the proof that no denied call reached it.

Each attack gets exactly one clear response (an HTTP status, and one JSON-RPC message or
one batch answer, or 202 with no body for what JSON-RPC does not answer), the POST ends
(a response that never ends would time out the test), and the session goes on. The
stdio corpus (test_bypass.py) is the model; its lists of attacks are reused here, and
HTTP adds its own: a line break inside a body, ids shared between concurrent POSTs,
and the 2026-07-28 headers and identities.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, server_cmd
from tests.e2e.http import Listener, free_port, listener, serving
from tests.e2e.test_bypass import (
    ESCAPED_NAMES,
    LOOK_ALIKES,
    READ_TWO_WAYS,
    REWRITTEN_CALLS,
    UNREADABLE_PARAMS,
)
from tests.helpers import GO_FOLDED, call, received, received_calls, release, wait_until

pytestmark = pytest.mark.anyio

POLICY = """
version: "1"
hide: [secret_get]
tools:
  pods_delete:
    rules:
      - action: deny
        reason: "Pod deletion is not permitted via AI agents"
  create_charge:
    rules:
      - name: max single charge
        conditions: [{path: args.amount, op: lte, value: 50000}]
        on_deny: "Single charge cannot exceed $500.00"
      - name: spend
        conditions: [{path: state.create_charge.spent, op: lte, value: 1000000000}]
        state: {counter: spent, window: day, increment_from: args.amount}
  notify_me:
    rules:
      - rate_limit: {max: 2, window: 60}
  ask:
    rules:
      - name: ask spend
        conditions: [{path: state.ask.spent, op: lte, value: 1}]
        state: {counter: spent, window: day, increment: 1}
"""

DENIED = {"pods_delete", "secret_get"}
ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
TIMEOUT = 10.0


# -- the client side -----------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer: its status, its headers, and the JSON-RPC messages it carried
    (the JSON body, or the data of each event of an event stream)."""

    status: int
    headers: httpx.Headers
    messages: list[Any] = field(default_factory=list)

    @property
    def one(self) -> Any:
        """The one message this answer must carry."""
        assert len(self.messages) == 1, f"{self.status}: {self.messages}"
        return self.messages[0]


def _messages(response: httpx.Response) -> list[Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found: list[Any] = []
        for event in response.text.split("\n\n"):
            data = [line[5:].strip() for line in event.split("\n") if line.startswith("data:")]
            if data:
                found.append(json.loads("\n".join(data)))
        return found
    return [response.json()] if response.content else []


class Agent:
    """An HTTP client of the listener: one legacy session (its ``Mcp-Session-Id`` on
    every request), or stateless requests with headers of their own."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.http = http
        self.url = url
        self.headers = headers

    async def post(self, body: Any, headers: dict[str, str] | None = None) -> Reply:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await self.http.post(
            self.url,
            content=content,
            headers={
                "Accept": ACCEPT,
                "Content-Type": "application/json",
                **self.headers,
                **(headers or {}),
            },
        )
        return Reply(response.status_code, response.headers, _messages(response))

    async def request(self, body: Any, headers: dict[str, str] | None = None) -> Any:
        """The one message that answers ``body``."""
        return (await self.post(body, headers)).one

    async def asked(self, body: Any) -> tuple[Any, asyncio.Task[list[Any]]]:
        """POST a call that the recorder answers only once the client has answered its
        question: the question, read from the call's own stream, and the task that
        reads every message of that stream to its end."""
        first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def read() -> list[Any]:
            found: list[Any] = []
            data: list[str] = []
            async with self.http.stream(
                "POST",
                self.url,
                content=json.dumps(body).encode(),
                headers={"Accept": ACCEPT, "Content-Type": "application/json", **self.headers},
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        found.append(json.loads("\n".join(data)))
                        data = []
                        if not first.done():
                            first.set_result(found[0])
            return found

        task = asyncio.ensure_future(read())
        done, _ = await asyncio.wait(
            {first, task}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        assert first in done, task.result() if task in done else "no question within the timeout"
        return first.result(), task

    async def in_sync(self, tag: str = "sync") -> None:
        """The session goes on: the next request gets its own answer, and only it."""
        reply = await self.post({"jsonrpc": "2.0", "id": tag, "method": "ping"})
        assert (reply.status, reply.one) == (200, {"jsonrpc": "2.0", "id": tag, "result": {}})


async def open_session(http: httpx.AsyncClient, url: str, version: str = "2025-03-26") -> Agent:
    """A legacy Streamable HTTP session, after the handshake on ``version``."""
    reply = await Agent(http, url, {}).post(initialize(0, version))
    assert reply.one["result"]["protocolVersion"] == version
    agent = Agent(http, url, {"Mcp-Session-Id": reply.headers["mcp-session-id"]})
    notified = await agent.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (notified.status, notified.messages) == (202, [])
    return agent


def initialize(request_id: Any, version: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "http-bypass", "version": "1"},
        },
    }


def modern(message: dict[str, Any], version: str = MODERN, **meta: Any) -> dict[str, Any]:
    """``message`` as a stateless 2026-07-28 request: its version in ``params._meta``."""
    params = dict(message.get("params") or {})
    params["_meta"] = {VERSION_KEY: version, CAPABILITIES_KEY: {}, **meta}
    return {**message, "params": params}


def mirrored(message: dict[str, Any]) -> dict[str, str]:
    """The 2026-07-28 headers that say what ``message`` says."""
    params = message.get("params") or {}
    headers = {
        "MCP-Protocol-Version": params["_meta"][VERSION_KEY],
        "Mcp-Method": message["method"],
    }
    if message["method"] == "tools/call":
        headers["Mcp-Name"] = header_text(params["name"])
    return headers


def header_text(value: str) -> str:
    """A header value for ``value``: as is if ASCII, else in the base64 form."""
    if value.isascii() and value.isprintable():
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def notification(name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": name}}


def denial_text(message: dict[str, Any]) -> str:
    result = message["result"]
    assert result["isError"] is True, message
    assert "mcpwall/decision" in result["_meta"]
    return str(result["content"][0]["text"])


def echoed(message: dict[str, Any]) -> Any:
    """What the recorder says it executed: the name it read."""
    return message["result"]["structuredContent"]["name"]


def refusal(reply: Reply, status: int, code: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.messages)
    error = reply.one["error"]
    assert error["code"] == code, reply.one
    return dict(error)


def nothing_denied_reached(wire: Path) -> None:
    assert DENIED.isdisjoint(received_calls(wire))


@pytest.fixture
def start(
    write_policy: Callable[..., Path], wire: Path, home: Path
) -> Iterator[Callable[..., Listener]]:
    """mcpwall's listener in front of the raw recorder, stopped at the end of the test."""
    with ExitStack() as stack:

        def run(*args: str, policy: str = POLICY) -> Listener:
            command = server_cmd("raw_recorder.py")
            return stack.enter_context(listener(write_policy(policy), *args, "--", *command))

        yield run


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


# -- batches ----------------------------------------------------------------------------


async def test_a_batch_is_judged_element_by_element(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    progress = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1},
    }
    reply = await agent.post(
        [
            call(1, "echo", {"n": 1}),
            call(2, "pods_delete"),
            notification("pods_delete"),
            progress,
            call(3, "secret_get"),
            [call(4, "pods_delete")],  # a batch inside the batch
        ]
    )
    assert reply.status == 200
    by_id = {item["id"]: item for item in reply.one}
    assert sorted(by_id, key=str) == [1, 2, 3, None]
    assert echoed(by_id[1]) == "echo"
    assert "not permitted" in denial_text(by_id[2])
    assert "hidden by policy" in denial_text(by_id[3])
    assert by_id[None]["error"]["code"] == -32600
    # What was forwarded is exactly what was allowed: one call and the notification.
    assert json.loads(received(wire)[-1]) == [call(1, "echo", {"n": 1}), progress]
    await agent.in_sync()
    assert received_calls(wire) == ["echo"]


async def test_empty_batches_and_batches_of_refusals_reach_nothing(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    await agent.in_sync()  # the server has read the handshake: the count below is settled
    before = len(received(wire))
    empty = await agent.post([])
    assert empty.status == 200
    assert empty.one["id"] is None and empty.one["error"]["code"] == -32600
    refused = await agent.post(
        [
            call(1, "pods_delete"),
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 7}},
            notification("secret_get"),
            "tools/call",
        ]
    )
    assert sorted(json.dumps(item["id"]) for item in refused.one) == ["1", "2", "null"]
    # Notifications only: nothing to answer; the denied ones are dropped.
    quiet = await agent.post([notification("pods_delete"), notification("secret_get")])
    assert (quiet.status, quiet.messages) == (202, [])
    assert len(received(wire)) == before
    await agent.in_sync()


async def test_batches_are_refused_where_the_version_has_none_and_a_downgrade_is_judged(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """After a handshake on 2025-11-25 (no batches), each request of a batch is refused.
    The agent then initializes again in the same session, asking for 2025-03-26
    (batches): its batches are then judged element by element, never passed whole."""
    agent = await open_session(http, start().url, version="2025-11-25")
    refused = await agent.post([call(1, "echo"), call(2, "pods_delete")])
    assert [item["error"]["code"] for item in refused.one] == [-32600, -32600]
    assert received_calls(wire) == []
    again = await agent.request(initialize(10, "2025-03-26"))
    assert again["result"]["protocolVersion"] == "2025-03-26"
    reply = await agent.post([call(3, "echo"), call(4, "pods_delete"), call(5, "secret_get")])
    by_id = {item["id"]: item for item in reply.one}
    assert echoed(by_id[3]) == "echo"
    assert "not permitted" in denial_text(by_id[4])
    assert "hidden by policy" in denial_text(by_id[5])
    assert received_calls(wire) == ["echo"]


async def test_a_batch_that_begins_a_session_is_judged_element_by_element(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    url = start().url
    reply = await Agent(http, url, {}).post(
        [initialize(0, "2025-03-26"), call(1, "pods_delete"), call(2, "echo")]
    )
    assert reply.headers["mcp-session-id"]
    by_id = {item["id"]: item for item in reply.one}
    assert by_id[0]["result"]["protocolVersion"] == "2025-03-26"
    assert "not permitted" in denial_text(by_id[1])
    assert echoed(by_id[2]) == "echo"
    assert received_calls(wire) == ["echo"]


# -- one message, two readings ----------------------------------------------------------


HTTP_READ_TWO_WAYS = [
    *READ_TWO_WAYS,
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping",'
    b'"params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete"},'
    b'"params":{"name":"echo"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete","name":"echo"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"a":{"b":{"c":1,"c":2}}}}}',
    # A body pretty-printed with CRLF: a carriage return where the server ends a line.
    b'{"jsonrpc":"2.0","id":1,\r\n"method":"tools/call","params":{"name":"echo"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
    b'"arguments":{"amount":NaN}}}',
    b"",
    b"   ",
    b'{"jsonrpc":"2.0","id":1,"method":"ping"} trailing',
]


async def test_what_could_be_read_two_ways_is_refused_whole(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    await agent.in_sync()  # the server has read the handshake: the counts below are settled
    for raw in HTTP_READ_TWO_WAYS + GO_FOLDED:
        before = len(received(wire))
        error = refusal(await agent.post(raw), 400, -32700)
        assert error["message"].startswith("Parse error"), raw
        await agent.in_sync()
        assert len(received(wire)) == before + 1, raw  # the ping only


STATELESS_READ_TWO_WAYS = [
    # The header says what the last of the duplicates says, as a reader that keeps the
    # last would read it.
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete",'
        b'"name":"echo","_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}}}',
        "echo",
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
        b'"arguments":{"ns":"a","ns":"b"},"_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}}}',
        "echo",
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"'
        + VERSION_KEY.encode()
        + b'":"2025-11-25","'
        + VERSION_KEY.encode()
        + b'":"2026-07-28"}}}',
        "echo",
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
        b'{"deep":' + b"[" * 300 + b"]" * 300 + b'},"_meta":{"' + VERSION_KEY.encode() + b'":'
        b'"2026-07-28"}}}',
        "echo",
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete\\u0000",'
        b'"_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}}}',
        "=?base64?" + base64.b64encode(b"pods_delete\x00").decode() + "?=",
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
        b'"arguments":{"amount":1e400},"_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}}}',
        "create_charge",
    ),
]


async def test_what_could_be_read_two_ways_is_refused_on_stateless_requests_too(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """Stateless requests are written anew on the way in (their ids renamed), so they
    must be read strictly first: a duplicate must not be settled silently, nesting too
    deep to write back must not break the request."""
    agent = Agent(http, start().url, {})
    for raw, name in STATELESS_READ_TWO_WAYS:
        headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
        error = refusal(await agent.post(raw, headers), 400, -32700)
        assert error["message"].startswith("Parse error"), raw
    assert received_calls(wire) == []


async def test_a_line_break_inside_a_body_is_one_message_to_the_server(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """A POST body may be pretty-printed; the server behind a pipe reads lines. A ping
    whose body hides a denied call on a line of its own must reach the server as one
    line, the ping that was judged (this used to deliver the hidden call whole)."""
    agent = await open_session(http, start().url)
    hidden = json.dumps(call(2, "pods_delete")).encode()
    smuggler = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":\n' + hidden + b"\n}}"
    assert await agent.request(smuggler) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    pretty = json.dumps(call(3, "echo", {"n": 3}), indent=2).encode()
    assert echoed(await agent.request(pretty)) == "echo"
    denied = json.dumps([call(4, "echo"), call(5, "pods_delete")], indent=1).encode()
    by_id = {item["id"]: item for item in await agent.request(denied)}
    assert echoed(by_id[4]) == "echo" and "not permitted" in denial_text(by_id[5])
    await agent.in_sync()
    lines = [json.loads(line) for line in received(wire)]  # each line is one message
    assert lines[-4]["params"]["x"] == call(2, "pods_delete")
    assert lines[-3] == call(3, "echo", {"n": 3})
    assert received_calls(wire) == ["echo", "echo"]


# -- names ------------------------------------------------------------------------------


async def test_escaped_names_are_judged_as_the_server_reads_them(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    for raw in ESCAPED_NAMES:
        line = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":' + raw + b"}}"
        assert "not permitted" in denial_text(await agent.request(line)), raw
    for raw in REWRITTEN_CALLS:
        assert "not permitted" in denial_text(await agent.request(raw)), raw
    await agent.in_sync()
    nothing_denied_reached(wire)


async def test_look_alike_names_are_other_tools_or_denied(
    start: Callable[..., Listener],
    http: httpx.AsyncClient,
    wire: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under default: allow, a look-alike is another tool to a server that looks tools
    up by exact name; under default: deny, it is denied."""
    monkeypatch.setenv("MCPWALL_TEST_EXACT_TOOLS", "1")
    allowing = await open_session(http, start().url)
    for number, name in enumerate(LOOK_ALIKES):
        reply = await allowing.request(call(number, name))
        assert reply["error"] == {"code": -32602, "message": f"Unknown tool: {name}"}, name
    assert received_calls(wire) == LOOK_ALIKES
    deny = 'version: "1"\ndefault: deny\ntools:\n  echo:\n    rules:\n      - action: allow\n'
    denying = await open_session(http, start(policy=deny).url)
    for number, name in enumerate(LOOK_ALIKES):
        denied = denial_text(await denying.request(call(number, name)))
        assert "not permitted by policy (default: deny)" in denied, name
    assert received_calls(wire) == LOOK_ALIKES


async def test_a_call_mcpwall_cannot_read_is_refused(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    for params in UNREADABLE_PARAMS:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        if params is not None:
            message["params"] = params
        reply = await agent.post(message)
        assert reply.one["id"] == 1 and reply.one["error"]["code"] == -32602, params
    await agent.in_sync()
    assert received_calls(wire) == []


# -- numbers in conditions --------------------------------------------------------------


AMOUNTS = [
    (b"18446744073709551616", "denied"),  # 2**64
    (b"9007199254740993", "denied"),  # 2**53 + 1
    (b"1" + b"0" * 30, "denied"),  # beyond 64 bits: the nearest double
    (b"-0", "allowed"),
    (b"-0.0", "allowed"),
    (b"1e-400", "allowed"),  # below the smallest double: zero, for every reader
    (b"50000.0000000000001", "allowed"),  # the double 50000.0, for every reader
    (b"5e4", "allowed"),
    (b"50001", "denied"),
    (b'"100"', "denied"),  # a string is not a number: lte cannot tell, so it fails
    (b"true", "denied"),
    (b"null", "denied"),
    (b"-1", "denied"),  # a negative amount would lower the spend counter
    (b"NaN", "refused"),
    (b"Infinity", "refused"),
    (b"-Infinity", "refused"),
    (b"1e400", "refused"),
    (b"-1e400", "refused"),
    (b"1" + b"0" * 400, "refused"),
]


def charge(amount: bytes, meta: bytes = b"") -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
        b'"arguments":{"amount":' + amount + b"}" + meta + b"}}"
    )


async def test_numbers_in_conditions_are_judged_as_numbers_or_refused(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    url = start().url
    agent = await open_session(http, url)
    stateless = Agent(http, url, {})
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"}
    meta = b',"_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}'
    for amount, outcome in AMOUNTS:
        calls_before = len(received_calls(wire))
        for reply in (
            await agent.post(charge(amount)),
            await stateless.post(charge(amount, meta), {**headers, "Mcp-Name": "create_charge"}),
        ):
            if outcome == "refused":
                refusal(reply, 400, -32700)
            elif outcome == "denied":
                denial_text(reply.one)
            else:
                assert echoed(reply.one) == "create_charge", amount
        allowed = 2 if outcome == "allowed" else 0
        assert len(received_calls(wire)) == calls_before + allowed, amount
        if allowed:
            # A session's call is forwarded as written; a stateless one is written anew
            # (its id renamed), as the same number.
            assert received(wire)[-2] == charge(amount) + b"\n"
    await agent.in_sync()


# -- ids, notifications, responses ------------------------------------------------------


async def test_a_pending_id_cannot_be_reused_by_another_post(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """Call 0 stays pending (the recorder asks the client a question and waits for the
    answer); other POSTs of the session that reuse its id, alone, in a batch or as -0,
    are refused whole. The first POST still gets its own answer (a reuse used to take
    its place, and the first POST then waited for ever)."""
    agent = await open_session(http, start().url)
    question, pending = await agent.asked(call(0, "ask"))
    assert question["method"] == "sampling/createMessage" and question["id"] == "srv-0"
    reused = refusal(await agent.post(call(0, "echo")), 400, -32600)
    assert "already in use" in reused["message"]
    minus_zero = b'{"jsonrpc":"2.0","id":-0,"method":"tools/call","params":{"name":"echo"}}'
    refusal(await agent.post(minus_zero), 400, -32600)
    batch = await agent.post([call(1, "echo"), call(0, "echo")])
    assert batch.status == 400
    assert {item["id"]: item["error"]["code"] for item in batch.one} == {1: -32600, 0: -32600}
    twice = await agent.post([call(5, "echo"), call(5, "echo")])  # one id twice in a batch
    assert [item["error"]["code"] for item in twice.one] == [-32600, -32600]
    assert received_calls(wire) == ["ask"]
    # The client answers the server's question; call 0 gets its own answer, and only it.
    answered = await agent.post({"jsonrpc": "2.0", "id": "srv-0", "result": {"answer": 42}})
    assert (answered.status, answered.messages) == (202, [])
    assert [message.get("id") for message in await pending] == ["srv-0", 0]
    answer = pending.result()[-1]
    assert "srv-0" in answer["result"]["content"][0]["text"]
    # Answered, the id is free again.
    assert echoed(await agent.request(call(0, "echo"))) == "echo"
    assert received_calls(wire) == ["ask", "echo"]


async def test_ids_mcpwall_cannot_answer_by_are_refused_not_left_waiting(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = await open_session(http, start().url)
    for raw in (
        b'{"jsonrpc":"2.0","id":18446744073709551615,"method":"tools/call",'
        b'"params":{"name":"pods_delete"}}',
        b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"pods_delete"}}',
        b'{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"pods_delete"}}',
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"pods_delete"}}',
    ):
        reply = await agent.post(raw)
        assert reply.one["id"] is None and reply.one["error"]["code"] == -32600, raw
    # Neither a request nor a response: refused with its id, not passed over in silence.
    neither = await agent.post({"jsonrpc": "2.0", "id": 5})
    assert neither.one["id"] == 5 and neither.one["error"]["code"] == -32600
    await agent.in_sync()
    assert received_calls(wire) == []


async def test_stateless_clients_reusing_a_pending_id_each_get_their_own_answer(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """Stateless requests are renamed on the way in: calls pending under one id, from
    one identity or from two, never meet, and a call that reuses the id meanwhile is
    answered (its own answer: the recorder echoes its arguments). The first two calls of
    identity "a" arrive together: the second used to be lost while the server of that
    new identity was starting, and its POST waited for ever."""
    url = start("--session-header", "X-Agent").url
    agents = [Agent(http, url, {"X-Agent": name}) for name in ("a", "a", "b")]
    slow = modern(call(7, "slow", {"hold": True}))
    pending = [asyncio.ensure_future(agent.post(slow, mirrored(slow))) for agent in agents]
    await wait_until(lambda: received_calls(wire).count("slow") == 3)
    for index, agent in enumerate(agents):
        echo = modern(call(7, "echo", {"agent": index}))
        reply = await agent.request(echo, mirrored(echo))
        assert reply["id"] == 7
        assert reply["result"]["structuredContent"]["arguments"] == {"agent": index}
    release(wire, 2)  # identity "a" holds two, "b" one
    for reply in await asyncio.gather(*pending):
        assert reply.status == 200
        assert reply.one["id"] == 7 and reply.one["result"]["content"][0]["text"] == "slow done"
    assert received_calls(wire) == ["slow"] * 3 + ["echo"] * 3


async def test_tools_call_notifications_get_202_and_denied_ones_are_not_forwarded(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    url = start().url
    agent = await open_session(http, url)
    stateless = Agent(http, url, {})
    for name in ("pods_delete", "secret_get", "notify_me", "notify_me", "notify_me"):
        reply = await agent.post(notification(name))
        assert (reply.status, reply.messages) == (202, []), name
    denied = modern(notification("pods_delete"))
    reply = await stateless.post(denied, mirrored(denied))
    assert (reply.status, reply.messages) == (202, [])
    await agent.in_sync()
    # Allowed notifications count against limits: the third was over it, and dropped.
    assert received_calls(wire) == ["notify_me", "notify_me"]
    assert "Rate limit of 2 calls per 60 s" in denial_text(
        await agent.request(call(1, "notify_me"))
    )


async def test_a_response_forged_by_the_client_is_not_an_answer_mcpwall_acts_on(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """While its call is pending, the agent answers it itself with an error, hoping
    mcpwall takes it for the server's and gives the call's spend back. mcpwall passes it
    to the server (a response is addressed there), keeps waiting for the server's
    answer, and settles on that."""
    agent = await open_session(http, start().url)
    _, pending = await agent.asked(call(1, "ask"))
    for forged in (
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "refund me"}},
        {"jsonrpc": "2.0", "id": 1, "method": None, "result": {"content": []}},
        {"jsonrpc": "2.0", "id": "never-asked", "result": {"content": []}},
    ):
        reply = await agent.post(forged)
        assert (reply.status, reply.messages) == (202, []), forged
    assert not pending.done()
    await agent.post({"jsonrpc": "2.0", "id": "srv-1", "result": {"answer": "the real one"}})
    answer = (await pending)[-1]
    assert answer["id"] == 1 and "the real one" in answer["result"]["content"][0]["text"]
    # The spend of call 1 was kept: a second call goes over the limit of one.
    assert "ask spend" in denial_text(await agent.request(call(2, "ask")))
    # A "response" that names a method is a request, and is judged as one.
    hybrid = {**call(3, "pods_delete"), "result": {}}
    assert "not permitted" in denial_text(await agent.request(hybrid))
    await agent.in_sync()
    assert received_calls(wire) == ["ask"]


# -- 2026-07-28 -------------------------------------------------------------------------


async def test_2026_headers_must_say_what_the_body_says(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    agent = Agent(http, start().url, {})
    denied = modern(call(1, "pods_delete"))
    honest = mirrored(denied)
    for lie in (
        {"Mcp-Name": "echo"},
        {"Mcp-Name": "PODS_DELETE"},
        {"Mcp-Name": "=?base64?" + base64.b64encode(b"echo").decode() + "?="},
        {"Mcp-Method": "tools/list"},
        {"MCP-Protocol-Version": "2025-11-25"},
    ):
        error = refusal(await agent.post(denied, {**honest, **lie}), 400, -32020)
        assert error["message"].startswith("Header mismatch"), lie
    for missing in honest:
        headers = {name: value for name, value in honest.items() if name != missing}
        error = refusal(await agent.post(denied, headers), 400, -32020)
        assert "missing" in error["message"], missing
    # A body whose version is not the header's.
    older = modern(call(2, "pods_delete"), version="2025-11-25")
    refusal(await agent.post(older, honest), 400, -32020)
    # Told honestly, in either form, the body is what is judged.
    assert "not permitted" in denial_text(await agent.request(denied, honest))
    encoded = {**honest, "Mcp-Name": "=?base64?cG9kc19kZWxldGU=?="}
    assert "not permitted" in denial_text(await agent.request(denied, encoded))
    escaped = (
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\\u0070ods_delete",'
        b'"_meta":{"' + VERSION_KEY.encode() + b'":"2026-07-28"}}}'
    )
    assert "not permitted" in denial_text(await agent.request(escaped, honest))
    look_alike = modern(call(4, "p\u043eds_delete"))  # a Cyrillic o
    assert echoed(await agent.request(look_alike, mirrored(look_alike))) == "p\u043eds_delete"
    assert received_calls(wire) == ["p\u043eds_delete"]


async def test_requests_without_a_protocol_version_in_meta(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """A request is stateless by its body's ``_meta``, never by its headers: without
    it, it needs a session; in a session, the session's policy judges its body."""
    url = start().url
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
    bare = Agent(http, url, {})
    no_meta = call(1, "pods_delete")
    error = refusal(await bare.post(no_meta, headers), 400, -32600)
    assert "Mcp-Session-Id" in error["message"]
    not_a_string = modern(call(2, "pods_delete"))
    not_a_string["params"]["_meta"][VERSION_KEY] = 20260728
    refusal(await bare.post(not_a_string, headers), 400, -32600)
    # A batch is never stateless, whatever its elements say.
    refusal(await bare.post([modern(call(3, "pods_delete"))], headers), 400, -32600)
    session = await open_session(http, url)
    assert "not permitted" in denial_text(await session.request(no_meta, headers))
    # A stateless request sent with a session id is judged as stateless: its headers
    # must agree with it, and its body is judged.
    stateless = modern(call(3, "pods_delete"))
    refusal(await session.post(stateless, headers), 400, -32020)
    assert "not permitted" in denial_text(await session.request(stateless, mirrored(stateless)))
    await session.in_sync()
    assert received_calls(wire) == []


APPROVE = """
version: "1"
tools:
  pods_delete:
    rules:
      - action: approve
        reason: "Deleting a pod stops its workload"
        remember: 10m
  vm_clone:
    rules:
      - name: clones
        rate_limit: 2/hour
"""


async def test_a_denied_call_split_across_stateless_identities_stays_denied(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """An approval asked of one identity is not an approval for another, nor is one it
    remembers, and a global limit is not multiplied by the number of identities the
    agent takes on."""
    url = start("--session-header", "X-Agent", policy=APPROVE).url
    a, b, c = (Agent(http, url, {"X-Agent": name}) for name in ("a", "b", "c"))
    args = {"name": "web-1", "namespace": "prod"}
    elicits = {"elicitation": {}}

    def delete(request_id: int, **extra: Any) -> dict[str, Any]:
        message = modern(call(request_id, "pods_delete", args), **{CAPABILITIES_KEY: elicits})
        message["params"].update(extra)
        return message

    asked = (await a.request(delete(1), mirrored(delete(1))))["result"]
    assert asked["resultType"] == "input_required"
    state = asked["requestState"]
    accept = {"mcpwall-approval": {"action": "accept"}}
    retry = delete(2, inputResponses=accept, requestState=state)
    # B brings A's approval: asked again, not forwarded.
    taken = (await b.request(retry, mirrored(retry)))["result"]
    assert taken["resultType"] == "input_required" and taken["requestState"] != state
    assert received_calls(wire) == []
    # A itself: the call goes on, without mcpwall's keys.
    done = await a.request(retry, mirrored(retry))
    assert echoed(done) == "pods_delete"
    forwarded = json.loads(received(wire)[-1])["params"]
    assert forwarded["arguments"] == args
    assert "requestState" not in forwarded and "inputResponses" not in forwarded
    # The approval is remembered for A's identical calls, and for A only.
    assert echoed(await a.request(delete(3), mirrored(delete(3)))) == "pods_delete"
    again = (await b.request(delete(4), mirrored(delete(4))))["result"]
    assert again["resultType"] == "input_required"
    # A global limit of two counts every identity.
    outcomes = []
    for number, agent in enumerate((a, b, c)):
        clone = modern(call(10 + number, "vm_clone"))
        result = (await agent.request(clone, mirrored(clone)))["result"]
        outcomes.append(result.get("isError", False))
    assert outcomes == [False, False, True]
    assert received_calls(wire) == ["pods_delete", "pods_delete", "vm_clone", "vm_clone"]


def servers_of(pid: int) -> list[int]:
    """The child processes of ``pid``: the MCP servers mcpwall runs."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_a_delete_naming_a_stateless_identity_ends_nothing(
    start: Callable[..., Listener], http: httpx.AsyncClient, wire: Path
) -> None:
    """Stateless clients without a token or --session-header share one identity, whose
    key anyone can name. A DELETE naming it is refused, and takes nothing away (it used
    to drop the identity unclosed: its server left running, a second one started)."""
    wall = start()
    agent = Agent(http, wall.url, {})
    echo = modern(call(1, "echo"))
    assert echoed(await agent.request(echo, mirrored(echo))) == "echo"
    assert len(servers_of(wall.process.pid)) == 1
    for key in ("stateless:anonymous", ""):
        deleted = await http.delete(wall.url, headers={"Mcp-Session-Id": key})
        assert deleted.status_code == 404
    assert echoed(await agent.request(echo, mirrored(echo))) == "echo"
    assert len(servers_of(wall.process.pid)) == 1
    assert received_calls(wire) == ["echo", "echo"]


async def test_identities_are_bounded_like_sessions(
    write_policy: Callable[..., Path], http: httpx.AsyncClient, home: Path
) -> None:
    """Each new stateless identity gets a server of its own, and --session-header lets
    the client name as many as it likes: they count against the bound on sessions
    (1,000), or an agent could start servers without end."""
    port = free_port()
    bench = [sys.executable, str(ROOT.parent / "benchmarks" / "http_server.py"), str(port)]
    policy = write_policy(POLICY)
    upstream = f"http://127.0.0.1:{port}/mcp"
    with (
        serving(bench, port),
        listener(policy, "--session-header", "X-Agent", "--upstream", upstream) as wall,
    ):
        ping = modern({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "ping"}

        async def as_agent(name: str) -> int:
            reply = await Agent(http, wall.url, {"X-Agent": name}).post(ping, headers)
            return reply.status

        for first in range(0, 1000, 50):
            statuses = await asyncio.gather(*(as_agent(f"a{n}") for n in range(first, first + 50)))
            assert set(statuses) == {200}
        refused = await Agent(http, wall.url, {"X-Agent": "one too many"}).post(ping, headers)
        assert refused.status == 503 and "Too many sessions" in refused.one["error"]["message"]
        assert await as_agent("a7") == 200  # the identities already there are served


# -- stopping ---------------------------------------------------------------------------


async def test_sigterm_ends_open_streams_and_answers_pending_calls(
    start: Callable[..., Listener], http: httpx.AsyncClient
) -> None:
    """A GET stream stays open and a call waits for an answer that never comes: SIGTERM
    still stops mcpwall at once (uvicorn alone would wait for ever on the stream), the
    waiting call gets an error, and the stream ends."""
    wall = start()
    agent = await open_session(http, wall.url, "2025-11-25")
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def listen() -> int:
        headers = {"Accept": "text/event-stream", **agent.headers}
        async with http.stream("GET", wall.url, headers=headers) as response:
            opened.set_result(None)  # mcpwall has answered the GET: the stream is open
            async for line in response.aiter_lines():
                if line.startswith("data:") and not asked.done():
                    asked.set_result(json.loads(line[5:]))
            return response.status_code

    stream = asyncio.ensure_future(listen())
    await asyncio.wait_for(opened, TIMEOUT)  # the stream is open before the call is made
    pending = asyncio.ensure_future(agent.post(call(1, "ask")))
    # The server's question comes on the GET stream; the call waits for its answer.
    question = await asyncio.wait_for(asked, TIMEOUT)
    assert question["method"] == "sampling/createMessage"
    wall.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(wall.process.wait, 10)
    assert code == 0
    reply = await asyncio.wait_for(pending, TIMEOUT)
    assert "before answering this request" in reply.one["error"]["message"]
    assert await asyncio.wait_for(stream, TIMEOUT) == 200
