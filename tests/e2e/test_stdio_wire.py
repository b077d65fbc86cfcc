"""The stdio proxy at the byte level: what passes untouched, what is refused, how
batches, malformed input, huge lines and dying servers are handled.

The server here is tests/servers/raw_recorder.py, which records every line it receives:
its record is the proof of what reached it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import server_cmd
from tests.helpers import (
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
"""


@pytest.fixture
def proxy(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], wire: Path
) -> RawProxy:
    started = raw_proxy(
        write_policy(POLICY), server_cmd("raw_recorder.py"), "--state-dsn", "memory:"
    )
    initialize(started, version="2025-03-26")
    return started


def test_relays_other_messages_byte_for_byte(proxy: RawProxy, wire: Path) -> None:
    odd = (
        b'{ "jsonrpc" : "2.0", "id" : "p-1", "method" : "ping",  '
        b'"params": {"_meta": {"x": "\\u00e9"}} }\n'
    )
    proxy.send(odd)
    assert proxy.recv() == {"jsonrpc": "2.0", "id": "p-1", "result": {}}
    assert received(wire)[-1] == odd  # spacing and escapes kept exactly
    proxy.send({"jsonrpc": "2.0", "id": 5, "method": "test/notify"})
    # Server notifications arrive in order, unchanged, UTF-8 intact.
    assert proxy.recv()["method"] == "notifications/tools/list_changed"
    message = proxy.recv_raw()
    assert json.loads(message)["params"]["data"] == "héllo ✓"
    assert proxy.recv() == {"jsonrpc": "2.0", "id": 5, "result": {}}


def test_denied_call_is_answered_and_never_reaches_the_server(proxy: RawProxy, wire: Path) -> None:
    reply = proxy.request(call(7, "pods_delete", {"name": "web-1"}))
    assert reply["id"] == 7
    result = reply["result"]
    assert result["isError"] is True
    assert result["content"] == [
        {
            "type": "text",
            "text": "[mcpwall] Denied by policy: Pod deletion is not permitted via AI agents",
        }
    ]
    assert result["_meta"]["mcpwall/decision"]["tool"] == "pods_delete"
    assert result["_meta"]["mcpwall/decision"]["retry_after_s"] is None
    hidden = proxy.request(call(8, "secret_get"))
    assert "hidden by policy" in hidden["result"]["content"][0]["text"]
    allowed = proxy.request(call(9, "echo", {"x": 1}))
    assert allowed["result"]["structuredContent"] == {"name": "echo", "arguments": {"x": 1}}
    assert received_calls(wire) == ["echo"]


def test_tools_list_loses_hidden_tools_and_keeps_every_other_field(proxy: RawProxy) -> None:
    first = proxy.request({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    names = [tool["name"] for tool in first["result"]["tools"]]
    assert names == ["echo", "pods_delete", "fail"]  # secret_get removed
    echo = first["result"]["tools"][0]
    assert echo["_meta"] == {"x.example/owner": "team-a"}
    assert echo["annotations"] == {"readOnlyHint": True}
    assert echo["outputSchema"] == {"type": "object"}
    assert echo["x-unknown"] == [1, 2]
    assert first["result"]["nextCursor"] == "page2"
    assert first["result"]["ttlMs"] == 5000
    assert first["result"]["_meta"] == {"x.example/page": 1}
    second = proxy.request(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"cursor": "page2"}}
    )
    assert "nextCursor" not in second["result"]
    assert [t["name"] for t in second["result"]["tools"]] == ["iserror", "crash", "slow", "ask"]


def test_malformed_line_gets_parse_error_and_session_goes_on(proxy: RawProxy) -> None:
    proxy.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    reply = proxy.recv()
    assert reply["id"] is None
    assert reply["error"]["code"] == -32700
    assert proxy.request(call(2, "echo"))["result"]["structuredContent"]["name"] == "echo"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # Duplicate keys, at every level a server might read differently.
        (
            b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call",'
            b'"params":{"name":"pods_delete"}}',
            -32700,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            b'"params":{"name":"echo","name":"pods_delete"}}',
            -32700,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            b'"params":{"name":"echo","arguments":{"a":1,"a":2}}}',
            -32700,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},'
            b'"params":{"name":"pods_delete"}}',
            -32700,
        ),
        # Not UTF-8, lone surrogates, numbers no parser agrees on.
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ech\xff"}}', -32700),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\ud800"}}', -32700),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            b'"arguments":{"n":NaN}}}',
            -32700,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            b'"arguments":{"n":1e400}}}',
            -32700,
        ),
        # Shapes that are not a tools/call mcpwall can judge.
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["pods_delete"]}', -32602),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["pods_delete"]}}',
            -32602,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            b'"arguments":"x"}}',
            -32602,
        ),
        (b'{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"echo"}}', -32600),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"echo"}}', -32600),
    ],
)
def test_ambiguous_messages_are_refused_not_forwarded(
    proxy: RawProxy, wire: Path, raw: bytes, code: int
) -> None:
    before = len(received(wire))
    proxy.send(raw)
    reply = proxy.recv()
    assert reply["error"]["code"] == code
    proxy.request({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    assert len(received(wire)) == before + 1  # only the ping arrived


def test_escaped_name_is_judged_as_the_server_reads_it(proxy: RawProxy, wire: Path) -> None:
    reply = proxy.request(
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\\u0070ods_delete"}}'
    )
    assert reply["result"]["isError"] is True
    assert received_calls(wire) == []


def test_batch_is_judged_element_by_element(proxy: RawProxy, wire: Path) -> None:
    proxy.send(
        [
            call(1, "echo", {"n": 1}),
            call(2, "pods_delete"),
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": 1, "progress": 1},
            },
            call(3, "secret_get"),
            {"jsonrpc": "2.0", "id": 4, "method": "ping"},
            5,
        ]
    )
    reply = proxy.recv()
    assert isinstance(reply, list)
    by_id = {item["id"]: item for item in reply}
    assert set(by_id) == {1, 2, 3, 4, None}  # one response per request element
    assert by_id[1]["result"]["structuredContent"]["name"] == "echo"
    assert by_id[2]["result"]["isError"] is True
    assert by_id[3]["result"]["isError"] is True
    assert by_id[4]["result"] == {}
    assert by_id[None]["error"]["code"] == -32600
    proxy.no_more()
    forwarded = json.loads(received(wire)[-1])
    assert [m.get("id") for m in forwarded] == [1, None, 4]
    assert received_calls(wire) == ["echo"]


def test_a_pending_request_id_cannot_be_reused(proxy: RawProxy, wire: Path) -> None:
    proxy.send(call(1, "slow", {"hold": True}))
    proxy.send(call(1, "echo"))
    refused = proxy.recv()
    assert refused["id"] == 1 and refused["error"]["code"] == -32600
    release(wire)
    done = proxy.recv()
    assert done["result"]["content"][0]["text"] == "slow done"
    assert received_calls(wire) == ["slow"]
    # String "1" and integer 1 are different ids.
    proxy.send(call(1, "slow", {"hold": True}))
    proxy.send(call("1", "echo"))
    echoed = proxy.recv()
    assert echoed["id"] == "1" and "result" in echoed
    release(wire)
    done = proxy.recv()
    assert done["id"] == 1 and done["result"]["content"][0]["text"] == "slow done"


def test_denied_tools_call_notification_is_dropped(proxy: RawProxy, wire: Path) -> None:
    proxy.send({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "pods_delete"}})
    proxy.request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    proxy.no_more()
    assert received_calls(wire) == []


def test_server_requests_and_client_answers_pass(proxy: RawProxy) -> None:
    proxy.send(call(1, "ask"))
    request = proxy.recv()
    assert request["method"] == "sampling/createMessage" and request["id"] == "srv-1"
    proxy.send({"jsonrpc": "2.0", "id": "srv-1", "result": {"role": "assistant"}})
    answer = proxy.recv()
    assert answer["id"] == 1
    assert json.loads(answer["result"]["content"][0]["text"])["result"] == {"role": "assistant"}


def test_twenty_megabyte_line_round_trips(proxy: RawProxy) -> None:
    blob = "x" * (20 * 1024 * 1024)
    reply = proxy.request(call(1, "echo", {"blob": blob}))
    assert reply["result"]["structuredContent"]["arguments"]["blob"] == blob


def test_malformed_server_line_is_dropped(proxy: RawProxy) -> None:
    reply = proxy.request({"jsonrpc": "2.0", "id": 1, "method": "test/garbage"})
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"after": "garbage"}}
    wait_for(lambda: "dropped a malformed line from the server" in proxy.stderr)


def test_server_death_answers_every_pending_request(proxy: RawProxy) -> None:
    proxy.send(call(1, "slow", {"hold": True}))
    proxy.send(call(2, "slow", {"hold": True}))
    proxy.send(call(3, "crash"))
    errors = {proxy.recv()["id"]: None for _ in range(3)}
    assert set(errors) == {1, 2, 3}
    assert proxy.wait() == 3  # the server's own exit status
    wait_for(lambda: "crashing on purpose" in proxy.stderr)  # the server's stderr is passed on


def test_pending_error_names_the_server_exit(proxy: RawProxy) -> None:
    proxy.send(call(1, "crash"))
    reply = proxy.recv()
    assert reply["error"]["code"] == -32000
    assert "exited (status 3)" in reply["error"]["message"]


def test_client_eof_ends_both_within_five_seconds(proxy: RawProxy) -> None:
    started = time.monotonic()
    proxy.close_stdin()
    assert proxy.wait(timeout=5) == 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["ignore-eof", "and-term"])
def test_server_that_ignores_eof_is_stopped(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], mode: str
) -> None:
    env = {"MCPWALL_TEST_IGNORE_EOF": mode}
    proxy = raw_proxy(write_policy(POLICY), server_cmd("raw_recorder.py"), env=env)
    initialize(proxy)
    started = time.monotonic()
    proxy.close_stdin()
    assert proxy.wait(timeout=8) == 0
    assert time.monotonic() - started < 5.5
    wait_for(lambda: "SIGTERM" in proxy.stderr)


def test_sigterm_reaches_the_server_and_its_status_is_mcpwalls(proxy: RawProxy) -> None:
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.wait() == 128 + signal.SIGTERM


def test_exit_status_is_the_servers(proxy: RawProxy) -> None:
    proxy.send({"jsonrpc": "2.0", "id": 1, "method": "test/exit", "params": {"status": 7}})
    assert proxy.wait() == 7
