"""Properties of the relay under any input, in process: the stdio framer and one Session,
with a server simulated here that answers every request it receives, sooner or later
and in any order.

Whatever the agent writes, in whatever pieces: nothing raises; every line that reaches
the server reads one way only and carries only calls the policy allows; every other
single message reaches it byte for byte; every request with a usable id gets exactly
one response; and afterwards the stream is still in step.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall import mcp
from mcpwall.engine.gate import Gate
from mcpwall.policy import Policy, load_policy
from mcpwall.proxy.framing import LineFramer
from mcpwall.proxy.relay import SERVER_MESSAGE, Session
from mcpwall.state.memory import MemoryStore
from tests.strategies import (
    JSON_VALUES,
    POLICY,
    STREAMS,
    answered,
    answers_owed,
    forwarded_calls_are_allowed,
)

LIMIT = 2048  # small, so that oversized lines are part of the game
FUZZ = settings(
    max_examples=300,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Policy]:
    path = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    path.write_text(POLICY)
    yield load_policy(path)


class SimulatedServer:
    """Receives what mcpwall forwards; owes an answer to every request in it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.owed: list[bytes] = []

    def receive(self, line: bytes) -> None:
        self.received.append(line)
        forwarded_calls_are_allowed(line)
        value = mcp.decode_strict(line)
        if type(value) is list:
            answers = [_answer(item) for item in value if _is_request(item)]
            if answers:
                self.owed.append(mcp.dumps(answers))
        elif _is_request(value):
            self.owed.append(mcp.dumps(_answer(value)))


def _is_request(message: dict[str, Any]) -> bool:
    return type(message.get("method")) is str and "id" in message


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    params = request.get("params")
    if request["method"] == "initialize":
        asked = params.get("protocolVersion") if type(params) is dict else None
        result = {"protocolVersion": asked if type(asked) is str else "2025-11-25"}
    elif request["method"] == "tools/list":
        result = {"tools": [{"name": "echo"}, {"name": "secret_get"}, {"name": "other"}]}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def delivery(to_client: list[bytes]) -> Callable[[bytes, Any], None]:
    """Record what reaches the agent, and check that each message says truly what it
    answers: the HTTP listener routes answers by it."""

    def deliver(data: bytes, reply_to: Any) -> None:
        to_client.append(data)
        message = json.loads(data)
        if reply_to is SERVER_MESSAGE:  # a request or notification of the server's
            assert type(message) is dict and ("method" in message or "id" not in message)
        elif type(message) is list:
            ids = [i.get("id") for i in message if type(i) is dict and "method" not in i]
            assert reply_to == ids
        else:
            assert type(message) is dict and message.get("id") == reply_to

    return deliver


@FUZZ
@given(stream=STREAMS, data=st.data())
def test_any_stream_from_the_agent(
    policy: Policy, stream: list[bytes], data: st.DataObject
) -> None:
    to_client: list[bytes] = []
    server = SimulatedServer()
    session = Session(
        "fuzz", lambda: policy, Gate(MemoryStore), server.receive, delivery(to_client)
    )
    framer = LineFramer(session.from_client, LIMIT, lambda: session.refuse_oversize(LIMIT))

    def answer_some() -> None:
        owed, server.owed = server.owed, []
        for line in data.draw(st.permutations(owed)):
            session.from_server(line)

    blob = b"".join(stream)
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=6))
    if data.draw(st.booleans()):  # also at every line's end: answers come in between
        cuts += [end for end in range(1, len(blob)) if blob[end - 1 : end] == b"\n"]
    cuts.sort()
    for start, end in zip([0, *cuts], [*cuts, len(blob)], strict=True):
        framer.feed(blob[start:end])
        if data.draw(st.booleans()):
            answer_some()
    while server.owed:
        answer_some()

    sent = [line + b"\n" for line in blob.split(b"\n")[:-1]]
    for line in server.received:
        if not line.lstrip().startswith(b"["):
            assert line in sent  # a single message passes byte for byte
    owed = sum((answers_owed(line, LIMIT) for line in sent), Counter())
    assert sum((answered(line) for line in to_client), Counter()) == owed

    ping = b'{"jsonrpc":"2.0","id":"sentinel","method":"ping"}\n'
    framer.feed(ping)
    assert server.received[-1] == ping
    framer.feed(b'{"jsonrpc":"2.0","id":"denied","method":"tools/call","params":{"name":"rm"}}\n')
    denial = json.loads(to_client[-1])
    assert denial["id"] == "denied" and denial["result"]["isError"] is True


SERVER_LINES = st.one_of(
    st.binary(max_size=40),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": st.sampled_from([1, 2, 3, "x", None])},
        optional={"result": JSON_VALUES, "error": JSON_VALUES, "method": st.just("n/x")},
    ).map(lambda value: json.dumps(value).encode()),
    st.lists(JSON_VALUES, max_size=3).map(lambda value: json.dumps(value).encode()),
    st.just(b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":1e400}, {"name":"echo"}]}}'),
    st.just(b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"n":1' + b"0" * 400 + b"}]}}"),
)


@FUZZ
@given(lines=st.lists(SERVER_LINES, max_size=8))
def test_any_lines_from_the_server(policy: Policy, lines: list[bytes]) -> None:
    """A server is trusted with its own answers, not with mcpwall's health: whatever it
    writes, mcpwall goes on, and writes the agent whole JSON lines only."""
    to_client: list[bytes] = []
    to_server: list[bytes] = []
    session = Session(
        "fuzz", lambda: policy, Gate(MemoryStore), to_server.append, delivery(to_client)
    )
    for request in (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"n":1}}}\n',
        b'{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}\n',
    ):
        session.from_client(request)
    for line in lines:
        session.from_server(line + b"\n")
    for line in to_client:
        json.loads(line)
    session.server_gone("exited (status 0)")
    pending_left = [json.loads(line) for line in to_client if b"before answering" in line]
    assert all(message["error"]["code"] == -32000 for message in pending_left)
