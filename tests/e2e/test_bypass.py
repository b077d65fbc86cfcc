"""The bypass corpus: every way we know for an agent to get a denied call past the policy
on stdio, each sent to mcpwall as a real process in front of the raw recorder, whose
record of every line it received is the proof that no denied call reached it.

Each attack gets exactly one clear answer, and the session goes on. What the wire tests
(test_stdio_wire.py) already cover (a plain batch, duplicate method/name/arguments keys,
invalid UTF-8, lone surrogates, one escaped name, params as an array, a reused pending
id, a denied tools/call notification) is not repeated here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import server_cmd
from tests.helpers import (
    GO_FOLDED,
    RawProxy,
    call,
    initialize,
    received,
    received_calls,
    release,
    wait_for,
)

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
      - name: daily spend cap
        conditions: [{path: state.create_charge.daily_spend, op: lte, value: 100000}]
        state: {counter: daily_spend, window: day, increment_from: args.amount}
  notify_me:
    rules:
      - rate_limit: {max: 2, window: 60}
  slow:
    rules:
      - name: slow spend
        conditions: [{path: state.slow.spent, op: lte, value: 1}]
        state: {counter: spent, window: day, increment: 1}
"""

DENIED = {"pods_delete", "secret_get"}


@pytest.fixture
def start(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], wire: Path
) -> Callable[..., RawProxy]:
    """mcpwall in front of the raw recorder, after a handshake on ``version``."""

    def run(
        version: str = "2025-03-26", policy: str = POLICY, env: dict[str, str] | None = None
    ) -> RawProxy:
        proxy = raw_proxy(
            write_policy(policy), server_cmd("raw_recorder.py"), "--state-dsn", "memory:", env=env
        )
        initialize(proxy, version=version)
        return proxy

    return run


def still_in_sync(proxy: RawProxy, tag: str = "sync") -> None:
    """Nothing else is waiting on stdout, and the next request gets its own answer."""
    proxy.no_more(0.2)
    assert proxy.request({"jsonrpc": "2.0", "id": tag, "method": "ping"}) == {
        "jsonrpc": "2.0",
        "id": tag,
        "result": {},
    }


def denial_text(reply: dict[str, Any]) -> str:
    result = reply["result"]
    assert result["isError"] is True
    assert "mcpwall/decision" in result["_meta"]
    return str(result["content"][0]["text"])


def nothing_denied_reached(wire: Path) -> None:
    assert DENIED.isdisjoint(received_calls(wire))


# -- batches -------------------------------------------------------------------------


def test_batch_inside_a_batch_is_refused_and_never_forwarded(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    proxy.send([[call(1, "pods_delete")], [[call(2, "secret_get")]], call(3, "echo")])
    reply = proxy.recv()
    assert isinstance(reply, list) and len(reply) == 3
    refusals = [item for item in reply if item["id"] is None]
    assert [item["error"]["code"] for item in refusals] == [-32600, -32600]
    assert [item["result"]["structuredContent"]["name"] for item in reply if item["id"] == 3] == [
        "echo"
    ]
    still_in_sync(proxy)
    assert received_calls(wire) == ["echo"]


def test_batch_of_notifications_gets_no_answer_and_denied_ones_are_dropped(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    progress = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1},
    }
    denied = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "pods_delete"}}
    proxy.send([denied, progress, denied])
    still_in_sync(proxy)  # JSON-RPC answers no notification, mcpwall neither
    assert [json.loads(line) for line in received(wire)][-2] == [progress]
    nothing_denied_reached(wire)


def test_one_id_twice_in_a_batch_gets_one_answer_each_and_one_call(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    reply = proxy.request([call(1, "echo", {"n": 1}), call(1, "echo", {"n": 2})])
    answers = sorted(reply, key=lambda item: "error" in item)
    assert answers[0]["result"]["structuredContent"]["arguments"] == {"n": 1}
    assert (
        answers[1]["error"]["code"] == -32600 and "already in use" in answers[1]["error"]["message"]
    )
    assert received_calls(wire) == ["echo"]


def test_batch_with_only_refused_elements_reaches_nothing(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    before = len(received(wire))
    reply = proxy.request(
        [
            call(1, "pods_delete"),
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 7}},
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "secret_get"}},
            "tools/call",
        ]
    )
    assert sorted(json.dumps(item["id"]) for item in reply) == ["1", "2", "null"]
    still_in_sync(proxy)
    assert len(received(wire)) == before + 1  # the ping only


def test_initialize_asking_for_batches_never_lets_a_batch_through_unjudged(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    """A downgrade: after a handshake on 2025-11-25 (no batches), the agent initializes
    again asking for 2025-03-26 (batches). Batches are then judged element by element."""
    proxy = start(version="2025-11-25")
    refused = proxy.request([call(1, "echo"), call(2, "pods_delete")])
    assert [item["error"]["code"] for item in refused] == [-32600, -32600]
    initialize(proxy, version="2025-03-26", request_id=10)
    reply = proxy.request([call(3, "echo"), call(4, "pods_delete"), call(5, "secret_get")])
    by_id = {item["id"]: item for item in reply}
    assert by_id[3]["result"]["structuredContent"]["name"] == "echo"
    assert "not permitted" in denial_text(by_id[4])
    assert "hidden by policy" in denial_text(by_id[5])
    assert received_calls(wire) == ["echo"]


def test_batch_before_any_handshake_is_judged_element_by_element(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], wire: Path
) -> None:
    proxy = raw_proxy(write_policy(POLICY), server_cmd("raw_recorder.py"))
    handshake = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {}},
    }
    reply = proxy.request([handshake, call(1, "pods_delete"), call(2, "echo")])
    by_id = {item["id"]: item for item in reply}
    assert by_id[0]["result"]["protocolVersion"] == "2025-03-26"
    assert "not permitted" in denial_text(by_id[1])
    assert by_id[2]["result"]["structuredContent"]["name"] == "echo"
    assert received_calls(wire) == ["echo"]


# -- one message, two readings -------------------------------------------------------


READ_TWO_WAYS = [
    b'{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"echo"}}',
    b'{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"a":1},"arguments":{"a":2}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"ns":{"name":"default","name":"kube-system"}}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"list":[{"a":1,"a":2}]}}}',
    # The same key written two ways: equal once unescaped, so a duplicate.
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"n\\u0061me":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete",'
    b'"name":"pods_delete"}}',
    b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"name":"pods_delete"}}]',
    # Framing: two messages on one line, a carriage return between them, a BOM.
    b'{"jsonrpc":"2.0","id":1,"method":"ping"} '
    b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}\r'
    b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pods_delete"}}',
    b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}',
    # One message with a carriage return inside: the official Python SDK reads its
    # stdin with universal newlines, so for such a server it would be two lines.
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":\r'
    b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pods_delete"}}}}',
    # A NUL: a server in C reads "pods_delete", or a second "method" key.
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete\\u0000"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","method\\u0000":"tools/call",'
    b'"params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call\\u0000","params":{"name":"pods_delete"}}',
    # Deeper than mcpwall could write back (a batch's forwarded part, a digest).
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
    b'{"deep":' + b"[" * 300 + b"]" * 300 + b"}}}",
    # Numbers no two parsers read alike.
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
    b'"arguments":{"amount":Infinity}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
    b'"arguments":{"amount":-1e400}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
    b'"arguments":{"amount":1' + b"0" * 400 + b"}}}",
]


def test_what_could_be_read_two_ways_is_refused_whole(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    for raw in READ_TWO_WAYS + GO_FOLDED:
        before = len(received(wire))
        reply = proxy.request(raw)
        assert reply["id"] is None and reply["error"]["code"] == -32700, raw
        still_in_sync(proxy)
        assert len(received(wire)) == before + 1, raw  # the ping only


# -- names -----------------------------------------------------------------------------


ESCAPED_NAMES = [
    b'"\\u0070\\u006f\\u0064\\u0073\\u005f\\u0064\\u0065\\u006c\\u0065\\u0074\\u0065"',
    b'"pods\\u005fdelete"',
    b'"pods\\u005Fdelete"',
    b'"pods_del\\u0065te"',
]


def test_escaped_names_are_judged_as_the_server_reads_them(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    for raw in ESCAPED_NAMES:
        line = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":' + raw + b"}}"
        assert "not permitted" in denial_text(proxy.request(line)), raw
    still_in_sync(proxy)
    nothing_denied_reached(wire)


REWRITTEN_CALLS = [
    b'{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools\\u002fcall","params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","par\\u0061ms":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\\u0061me":"pods_delete"}}',
    b'{"jsonrpc" : "2.0" ,\t"id":1 , "method":"tools/call","params":{"name":"pods_delete"}}',
    b'{"params":{"name":"pods_delete"},"method":"tools/call","id":1,"jsonrpc":"2.0"}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete"}}\r',
]


def test_escaped_and_reordered_messages_are_judged(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    for raw in REWRITTEN_CALLS:
        assert "not permitted" in denial_text(proxy.request(raw)), raw
    still_in_sync(proxy)
    nothing_denied_reached(wire)


LOOK_ALIKES = [
    "PODS_DELETE",
    "Pods_delete",
    "pods_Delete",
    "pods_delete ",
    " pods_delete",
    "pods_delete\n",
    "pods_delete\t",
    "p\u043eds_delete",  # Cyrillic o
    "\u0440ods_delete",  # Cyrillic er, drawn like p
    "pods_d\u0435lete",  # Cyrillic ie, after "pods_"
    "\uff50ods_delete",  # fullwidth p: NFKC makes it "pods_delete"
    "pods\u200b_delete",  # zero-width space
    "pods_delete\u200d",  # zero-width joiner
    "\ufeffpods_delete",  # zero-width no-break space
    "pods_\u00addelete",  # soft hyphen
    "pods_dele\u0301te",  # a combining accent
]


def test_a_look_alike_name_is_another_tool_to_an_exact_match_server(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    """Under default: allow, a name that only looks like a denied one is not denied: the
    server looks tools up by exact name and answers that no such tool exists."""
    proxy = start(env={"MCPWALL_TEST_EXACT_TOOLS": "1"})
    for number, name in enumerate(LOOK_ALIKES):
        reply = proxy.request(call(number, name))
        assert reply["error"] == {"code": -32602, "message": f"Unknown tool: {name}"}, name
    # Exactly the names judged, as the server read them; never the denied one.
    assert received_calls(wire) == LOOK_ALIKES


def test_default_deny_stops_every_look_alike(start: Callable[..., RawProxy], wire: Path) -> None:
    policy = 'version: "1"\ndefault: deny\ntools:\n  echo:\n    rules:\n      - action: allow\n'
    proxy = start(policy=policy)
    for number, name in enumerate(LOOK_ALIKES):
        denied = denial_text(proxy.request(call(number, name)))
        assert "not permitted by policy (default: deny)" in denied, name
    assert received_calls(wire) == []


def test_a_hide_glob_stops_the_look_alikes_it_matches(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start(policy='version: "1"\nhide: ["pods_*"]\n')
    matching = [name for name in LOOK_ALIKES if name.startswith("pods_")]
    assert len(matching) == 8
    for number, name in enumerate(matching):
        assert "is hidden by policy" in denial_text(proxy.request(call(number, name))), name
    assert received_calls(wire) == []


UNREADABLE_PARAMS = [
    {"name": 1},
    {"name": None},
    {"name": True},
    {"name": {"value": "pods_delete"}},
    {"arguments": {}},
    None,
    "pods_delete",
    {"name": "pods_delete", "arguments": ["kube-system"]},
    {"name": "echo", "arguments": 5},
]


def test_a_call_mcpwall_cannot_read_is_refused(start: Callable[..., RawProxy], wire: Path) -> None:
    proxy = start()
    for params in UNREADABLE_PARAMS:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        if params is not None:
            message["params"] = params
        reply = proxy.request(message)
        assert reply["id"] == 1 and reply["error"]["code"] == -32602, params
    still_in_sync(proxy)
    assert received_calls(wire) == []


# -- numbers in conditions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "allowed"),
    [
        (b"18446744073709551616", False),  # 2**64
        (b"9007199254740993", False),  # 2**53 + 1
        (b"-0", True),
        (b"-0.0", True),
        (b"1e-400", True),  # below the smallest double: zero, for every reader
        (b"50000.0000000000001", True),  # the double 50000.0, for every reader
        (b"5e4", True),
        (b"50001", False),
        (b'"100"', False),  # a string is not a number: lte cannot tell, so it fails
        (b"true", False),
        (b"null", False),
        (b"-1", False),  # a negative amount would lower the spend counter
    ],
)
def test_numbers_in_conditions_are_judged_as_numbers_or_fail_closed(
    start: Callable[..., RawProxy], wire: Path, amount: bytes, allowed: bool
) -> None:
    proxy = start()
    line = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_charge",'
        b'"arguments":{"amount":' + amount + b"}}}"
    )
    reply = proxy.request(line)
    if allowed:
        assert reply["result"]["structuredContent"]["name"] == "create_charge"
        assert received(wire)[-1] == line + b"\n"  # forwarded as written
    else:
        denial_text(reply)
        assert received_calls(wire) == []
    still_in_sync(proxy)


# -- ids, notifications, responses -----------------------------------------------------


def test_a_pending_id_cannot_be_reused_from_a_batch_or_as_minus_zero(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    proxy.send(call(0, "slow", {"hold": True}))  # pending while the reuses arrive
    proxy.send([call(0, "echo")])
    assert proxy.recv()[0]["error"]["code"] == -32600
    proxy.send(b'{"jsonrpc":"2.0","id":-0,"method":"tools/call","params":{"name":"echo"}}')
    assert proxy.recv()["error"]["code"] == -32600
    release(wire)
    assert proxy.recv()["result"]["content"][0]["text"] == "slow done"
    assert received_calls(wire) == ["slow"]
    # Answered, the id is free again; so is a denied call's, which never was pending.
    assert proxy.request(call(0, "echo"))["result"]["structuredContent"]["name"] == "echo"
    denial_text(proxy.request(call(9, "pods_delete")))
    assert proxy.request(call(9, "echo"))["result"]["structuredContent"]["name"] == "echo"


def test_tools_call_notifications_count_against_limits(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    for _ in range(4):
        proxy.send({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "notify_me"}})
    still_in_sync(proxy)  # a notification gets no answer, allowed or not
    assert received_calls(wire) == ["notify_me", "notify_me"]
    limited = denial_text(proxy.request(call(1, "notify_me")))
    assert "Rate limit of 2 calls per 60 s" in limited


def test_a_response_forged_by_the_client_is_not_an_answer_mcpwall_acts_on(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    """The agent answers its own pending call with an error, hoping mcpwall takes it for
    the server's and gives the call's spend back. mcpwall passes it on to the server (it
    is addressed there), keeps waiting for the server's answer, and settles on that."""
    proxy = start()
    proxy.send(call(1, "slow", {"hold": True}))
    proxy.send({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "refund me"}})
    proxy.send({"jsonrpc": "2.0", "id": "never-asked", "result": {"content": []}})
    # The forgeries went on to the server (they are addressed there) while call 1 waited.
    wait_for(lambda: b"never-asked" in received(wire)[-1])
    release(wire)
    assert proxy.recv() == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"content": [{"type": "text", "text": "slow done"}]},
    }
    still_in_sync(proxy)  # one answer for the call, none for the forgeries
    # The spend of call 1 was kept: a second slow call goes over the limit of one.
    assert "slow spend" in denial_text(proxy.request(call(2, "slow", {})))
    assert received_calls(wire) == ["slow"]
    # A "response" that names a method is a request, and is judged as one.
    hybrid = {**call(3, "pods_delete"), "result": {}}
    assert "not permitted" in denial_text(proxy.request(hybrid))
    nothing_denied_reached(wire)


def test_a_denied_call_cut_off_by_eof_is_answered_and_not_forwarded(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    proxy.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pods_delete"}}')
    proxy.close_stdin()
    assert "not permitted" in denial_text(proxy.recv())
    assert proxy.wait() == 0
    nothing_denied_reached(wire)


def test_a_denied_call_sent_a_byte_at_a_time_is_judged_whole(
    start: Callable[..., RawProxy], wire: Path
) -> None:
    proxy = start()
    line = json.dumps(call(1, "pods_delete")).encode() + b"\n"
    assert proxy.process.stdin is not None
    for index in range(len(line)):
        proxy.process.stdin.write(line[index : index + 1])
        proxy.process.stdin.flush()
    assert "not permitted" in denial_text(proxy.recv())
    still_in_sync(proxy)
    nothing_denied_reached(wire)


def test_a_message_over_the_size_limit_is_refused_even_when_it_arrives_whole(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], wire: Path
) -> None:
    proxy = raw_proxy(
        write_policy(POLICY), server_cmd("raw_recorder.py"), "--max-message-size", "1000"
    )
    initialize(proxy)
    before = len(received(wire))
    reply = proxy.request(call(1, "echo", {"blob": "x" * 5000}))
    assert (
        reply["error"]["code"] == -32600 and "larger than 1000 bytes" in reply["error"]["message"]
    )
    still_in_sync(proxy)
    assert len(received(wire)) == before + 1
