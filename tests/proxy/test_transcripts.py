"""The relay's behaviour, message by message, without processes or sleeps: batches,
approval by a human, redaction, deadlines, strict reading, and mcpwall's own failures.
Time moves only when a test moves the clock. The end-to-end tests keep one case per
transport and behaviour against real servers; the cases live here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpwall import mcp
from mcpwall.engine.schemas import Schemas
from mcpwall.proxy.tools import ToolView
from mcpwall.state.memory import MemoryStore
from tests.helpers import GO_FOLDED
from tests.proxy.transcript import Transcript, call, denied, result

POLICY = """
version: "1"
tools:
  pods_list:
    rules: []
  pods_delete:
    rules:
      - action: deny
        reason: "Pod deletion is not permitted via AI agents"
  create_charge:
    rules:
      - name: daily spend cap
        conditions: [{path: state.create_charge.spent, op: lte, value: 100}]
        state: {counter: spent, window: day, increment_from: args.amount}
"""

APPROVALS = """
version: "1"
tools:
  pods_list:
    rules: []
  pods_delete:
    rules:
      - action: approve
        reason: "Deleting a pod stops its workload"
        when: [{path: args.namespace, op: in, value: [prod, payments]}]
        timeout: 2s
  vm_clone:
    rules:
      - action: approve
        remember: 10m
"""

ELICITS = {"elicitation": {}}


def ping(request_id: Any) -> Any:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def in_sync(t: Transcript, tag: str = "sync") -> None:
    """The session goes on: a ping reaches the server and its answer the client."""
    t.client(ping(tag))
    assert t.server_got() == [ping(tag)]
    t.server({"jsonrpc": "2.0", "id": tag, "result": {}})
    assert t.only_answer() == {"jsonrpc": "2.0", "id": tag, "result": {}}


# -- batches ----------------------------------------------------------------------------


def test_a_batch_is_judged_element_by_element_and_answered_as_one(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake("2025-03-26")  # the one version with batches
    t.client([call(1, "pods_list"), call(2, "pods_delete"), ping(3)])
    assert t.server_got() == [[call(1, "pods_list"), ping(3)]]
    assert t.client_got() == []  # the denial waits for the rest of the batch
    t.server([result(1), {"jsonrpc": "2.0", "id": 3, "result": {}}])
    (answer,) = t.client_got()
    assert [item["id"] for item in answer] == [1, 3, 2]
    assert denied(answer[2]) == "Pod deletion is not permitted via AI agents"


def test_a_batch_of_denials_is_answered_without_the_server(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake("2025-03-26")
    t.client([call(1, "pods_delete"), call(2, "pods_delete", {"name": "web"})])
    assert t.server_got() == []
    (answer,) = t.client_got()
    assert [denied(item) is not None for item in answer] == [True, True]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_batches_are_refused_where_the_version_has_none(tmp_path: Path, version: str) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake(version)
    t.client([call(1, "pods_list"), ping(2)])
    assert t.server_got() == []
    (answer,) = t.client_got()
    assert [(item["id"], item["error"]["code"]) for item in answer] == [(1, -32600), (2, -32600)]
    in_sync(t)


# -- strict reading -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b'{"a":1,"a":2}', b'{"a":NaN}', *GO_FOLDED])
def test_what_could_be_read_two_ways_is_refused_and_the_session_goes_on(
    tmp_path: Path, raw: bytes
) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake()
    t.client(raw)
    answer = t.only_answer()
    assert answer["id"] is None and answer["error"]["code"] == mcp.PARSE_ERROR
    assert t.server_got() == []
    in_sync(t)


def test_a_pending_id_cannot_be_taken_twice(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake()
    t.client(call(1, "pods_list"))
    t.client(call(1, "pods_list"))
    assert t.server_got() == [call(1, "pods_list")]
    assert t.only_answer()["error"]["code"] == mcp.INVALID_REQUEST


# -- approval -------------------------------------------------------------------------


def ask_of(t: Transcript) -> Any:
    ask = t.only_answer()
    assert ask["method"] == "elicitation/create"
    return ask


@pytest.mark.parametrize(
    ("action", "said"), [("decline", "A human declined"), ("cancel", "was dismissed")]
)
def test_a_call_a_human_does_not_accept_never_reaches_the_server(
    tmp_path: Path, action: str, said: str
) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    t.client(call(1, "pods_delete", {"name": "web", "namespace": "prod"}))
    ask = ask_of(t)
    assert t.server_got() == []
    t.client({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": action}})
    assert said in (denied(t.only_answer()) or "")
    assert t.server_got() == []


def test_an_accepted_call_is_forwarded_as_sent(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    sent = call(1, "pods_delete", {"name": "web", "namespace": "prod"})
    t.client(sent)
    ask = ask_of(t)
    t.client({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}})
    assert t.server_got() == [sent]


def test_a_missing_argument_asks_rather_than_skips(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    t.client(call(1, "pods_delete", {"name": "web"}))  # the server would use its default
    ask_of(t)
    t.client(call(2, "pods_delete", {"name": "web", "namespace": "dev"}))  # surely not prod
    assert t.server_got() == [call(2, "pods_delete", {"name": "web", "namespace": "dev"})]


def test_a_client_that_cannot_be_asked_gets_a_denial_that_says_why(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake()
    t.client(call(1, "pods_delete", {"name": "web", "namespace": "prod"}))
    assert denied(t.only_answer()) == (
        '"pods_delete" needs a human\'s approval (rule "pods_delete[0] approve"), and this '
        "client cannot ask for it: it did not declare the elicitation capability"
    )
    assert t.server_got() == []


def test_no_answer_in_time_is_a_denial_and_the_late_answer_is_dropped(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    t.client(call(1, "pods_delete", {"name": "web", "namespace": "prod"}))
    ask = ask_of(t)
    t.clock.advance(1.9)
    assert t.client_got() == []
    t.clock.advance(0.2)
    withdrawn, denial = t.client_got()
    assert withdrawn["method"] == "notifications/cancelled"
    assert withdrawn["params"]["requestId"] == ask["id"]
    assert (denied(denial) or "").endswith("and no human approved it within 2 s")
    t.client({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}})
    assert t.client_got() == [] and t.server_got() == []
    in_sync(t)


def test_remember_covers_identical_calls_for_its_window_only(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    clone = {"source": "a", "target": "b"}
    t.client(call(1, "vm_clone", clone))
    t.client({"jsonrpc": "2.0", "id": ask_of(t)["id"], "result": {"action": "accept"}})
    t.client(call(2, "vm_clone", clone))  # covered: no question
    t.client(call(3, "vm_clone", {"source": "a", "target": "c"}))  # another call: asked
    assert len(t.server_got()) == 2
    ask_of(t)
    t.clock.advance(601)
    t.client(call(4, "vm_clone", clone))  # the approval has run out: asked again
    assert t.client_got()[-1]["method"] == "elicitation/create"


def test_batches_and_notifications_are_denied_not_held(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake("2025-03-26", capabilities=ELICITS)
    t.client([call(1, "vm_clone", {"source": "a"}), call(2, "pods_list")])
    assert t.server_got() == [[call(2, "pods_list")]]
    t.server([result(2)])
    (answer,) = t.client_got()
    assert "inside a JSON-RPC batch cannot be held" in (denied(answer[1]) or "")
    notification = call(3, "vm_clone", {"source": "a"})
    del notification["id"]
    t.client(notification)
    assert t.client_got() == [] and t.server_got() == []


def test_the_agent_cancelling_a_held_call_withdraws_the_question(tmp_path: Path) -> None:
    t = Transcript(tmp_path, APPROVALS)
    t.handshake(capabilities=ELICITS)
    t.client(call(1, "vm_clone", {"source": "a"}))
    ask = ask_of(t)
    t.client(call(1, "pods_list"))  # the id stays taken while the call waits
    assert t.only_answer()["error"]["code"] == mcp.INVALID_REQUEST
    t.client({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    withdrawn = t.only_answer()
    assert withdrawn["params"]["requestId"] == ask["id"]
    t.client({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}})
    assert t.client_got() == [] and t.server_got() == []
    assert t.clock.pending == 0  # no timer left behind


# -- redaction -------------------------------------------------------------------------


REDACTS = """
version: "1"
redact:
  patterns:
    - {name: tokens, regex: "tok-[0-9]+", replacement: "tok-?"}
tools:
  "*":
    rules: []
"""


def test_secrets_are_taken_out_of_results_and_nothing_else_changes(tmp_path: Path) -> None:
    t = Transcript(tmp_path, REDACTS)
    t.handshake()
    t.client(call(1, "env"))
    t.client(call(2, "env"))
    t.server(result(1, "TOKEN=tok-1234"))
    t.server(result(2, "nothing here"))
    first, second = t.client_got()
    assert first["result"]["content"][0]["text"] == "TOKEN=tok-?"
    assert second == result(2, "nothing here")


# -- large answers ---------------------------------------------------------------------

BIG = "x" * (mcp.LARGE_ANSWER + 10)


def written(request_id: Any, result_: dict[str, Any], *, result_first: bool) -> bytes:
    """An answer as an SDK writes one: jsonrpc and id first (Python, Go), or the result
    first (TypeScript)."""
    if result_first:
        answer = {"result": result_, "jsonrpc": "2.0", "id": request_id}
    else:
        answer = {"jsonrpc": "2.0", "id": request_id, "result": result_}
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("result_first", [False, True], ids=["id first", "result first"])
@pytest.mark.parametrize("request_id", [7, "call-7"])
@pytest.mark.parametrize(
    ("is_error", "kept"),
    [(None, True), ("false", True), ("true", False), (" true", False)],
    ids=["no isError", "isError false", "isError true", "isError: true"],
)
def test_a_large_answer_passes_as_received_and_settles_its_call(
    tmp_path: Path, result_first: bool, request_id: Any, is_error: str | None, kept: bool
) -> None:
    t = Transcript(tmp_path, POLICY)
    t.handshake()
    t.client(call(request_id, "create_charge", {"amount": 60}))
    t.server_got()
    line = written(
        request_id, {"content": [{"type": "text", "text": BIG}]}, result_first=result_first
    )
    if is_error is not None:
        line = line.replace(b"}]}", b'}],"isError":' + is_error.encode() + b"}", 1)
    t.server(line)
    assert t.to_client == [(line, request_id)]  # the very bytes, for that request
    t.to_client.clear()
    # A tool error gives its spend back, as a small answer's does; a success keeps it.
    t.client(call(8, "create_charge", {"amount": 60}))
    if kept:
        assert t.server_got() == []
        assert (denied(t.only_answer()) or "").startswith('Limit of rule "daily spend cap"')
    else:
        assert [m["id"] for m in t.server_got()] == [8]


def test_a_large_answer_is_still_redacted(tmp_path: Path) -> None:
    t = Transcript(tmp_path, REDACTS)
    t.handshake()
    t.client(call(1, "env"))
    t.server(result(1, BIG + " TOKEN=tok-1234"))
    assert t.only_answer()["result"]["content"][0]["text"].endswith(" TOKEN=tok-?")


@pytest.mark.parametrize("batched", [False, True], ids=["answer alone", "answer batched"])
def test_a_large_answer_to_a_batch_goes_out_as_a_small_one_would(
    tmp_path: Path, batched: bool
) -> None:
    def answers(text: str) -> list[Any]:
        t = Transcript(tmp_path, POLICY)
        t.handshake("2025-03-26")
        t.client([call(1, "pods_list"), call(2, "pods_delete")])
        t.server_got()
        t.server([result(1, text)] if batched else result(1, text))
        return [[item["id"] for item in mcp.items(message)] for message in t.client_got()]

    assert answers(BIG) == answers("small")


def test_a_large_tools_list_is_still_filtered(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY + "hide: [tool_1]\n")
    t.handshake()
    t.client({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    t.server_got()
    tools = [
        {"name": f"tool_{n}", "inputSchema": {"type": "object"}, "description": BIG}
        for n in range(2)
    ]
    t.server({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})
    assert [tool["name"] for tool in t.only_answer()["result"]["tools"]] == ["tool_0"]
    in_sync(t)


# -- deadlines -------------------------------------------------------------------------


def test_a_call_timeout_answers_once_cancels_and_drops_the_late_answer(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY, call_timeout=5)
    t.handshake()
    t.client(call(1, "create_charge", {"amount": 60}))
    t.server_got()
    t.clock.advance(5)
    answer = t.only_answer()
    assert answer["error"]["code"] == mcp.TIMED_OUT
    (cancel,) = t.server_got()
    assert cancel["method"] == "notifications/cancelled" and cancel["params"]["requestId"] == 1
    t.server(result(1))  # the server's late answer
    assert t.client_got() == []
    # Settled as a failed call: the spend was given back, so 60 more still fit.
    t.client(call(2, "create_charge", {"amount": 60}))
    t.client(call(3, "create_charge", {"amount": 60}))
    assert [m["id"] for m in t.server_got()] == [2]
    assert (denied(t.only_answer()) or "").startswith('Limit of rule "daily spend cap"')


def test_a_call_timeout_inside_a_batch_completes_the_batch_answer(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY, call_timeout=5)
    t.handshake("2025-03-26")
    t.client([call(1, "pods_list"), call(2, "pods_list"), call(3, "pods_delete")])
    t.server([result(1)])
    (first,) = t.client_got()  # what is answered goes out with the denial
    assert [item["id"] for item in first] == [1, 3]
    t.clock.advance(5)
    (late,) = t.client_got()  # the batch's last answer: mcpwall's, for the call the
    assert [item["id"] for item in late] == [2]  # server did not answer in time
    assert late[0]["error"]["code"] == mcp.TIMED_OUT


# -- mcpwall's own failures: one error each, nothing forwarded, the session goes on ------


class Boom(Exception):
    pass


class FailingStore(MemoryStore):
    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        raise Boom("the store broke")


class FailingSchemas(Schemas):
    def problem(self, tool: str, args: dict[str, Any]) -> str | None:
        raise Boom("the validator broke")


class FailingRedactor:
    def result(self, result: Any) -> Any:
        raise Boom("the redactor broke")


def test_a_store_that_raises_answers_one_error_and_forwards_nothing(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY, store=FailingStore())
    t.handshake()
    t.client(call(1, "create_charge", {"amount": 1}))
    answer = t.only_answer()
    assert answer["id"] == 1 and answer["error"]["code"] == mcp.INTERNAL_ERROR
    assert t.server_got() == []
    in_sync(t)
    t.client(call(2, "pods_list"))  # needs no store: goes on as before
    assert t.server_got() == [call(2, "pods_list")]


def test_a_schema_validator_that_raises_answers_one_error(tmp_path: Path) -> None:
    tools = ToolView()
    tools.schemas = FailingSchemas()
    t = Transcript(tmp_path, 'version: "1"\nvalidate_arguments: true\n', tools=tools)
    t.handshake()
    t.client(call(1, "anything", {"a": 1}))
    assert t.only_answer()["error"]["code"] == mcp.INTERNAL_ERROR
    assert t.server_got() == []
    in_sync(t)


def test_a_redactor_that_raises_withholds_the_result(tmp_path: Path) -> None:
    t = Transcript(tmp_path, REDACTS)
    t.policy.redactor = FailingRedactor()
    t.handshake()
    t.client(call(1, "env"))
    t.server_got()
    t.server(result(1, "TOKEN=tok-1234"))
    answer = t.only_answer()
    assert answer["id"] == 1 and answer["error"]["code"] == mcp.INTERNAL_ERROR
    assert "tok-1234" not in str(answer)
    in_sync(t)


class FailingObserver:
    def decided(self, *args: Any) -> None:
        raise Boom("the audit log broke")

    answered = noted = decided


def test_an_observer_that_raises_changes_no_verdict(tmp_path: Path) -> None:
    t = Transcript(tmp_path, POLICY, observers=(FailingObserver(),))
    t.handshake()
    t.client(call(1, "pods_list"))
    t.client(call(2, "pods_delete"))
    assert t.server_got() == [call(1, "pods_list")]
    assert denied(t.only_answer()) == "Pod deletion is not permitted via AI agents"
