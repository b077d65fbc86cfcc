"""action: approve, end to end: the official SDK client as the agent, its elicitation
callback as the human, mcpwall in between, and the server's own record as the proof of
what ran. Both eras: elicitation/create from mcpwall (up to 2025-11-25, stdio and HTTP)
and input_required with a retry (2026-07-28)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client

from tests.conftest import Record, server_cmd, server_everything
from tests.e2e.http import free_port, listener
from tests.e2e.sdk import decision, text, through_mcpwall
from tests.e2e.test_http import client_with_headers
from tests.helpers import audit_events

pytestmark = pytest.mark.anyio

POLICY = """
version: "1"
tools:
  pods_list:
    rules: []
  pods_delete:
    rules:
      - action: approve
        reason: "Deleting a pod stops its workload"
        when:
          - path: args.namespace
            op: in
            value: [prod, payments]
        timeout: 2s
  vm_clone:
    rules:
      - action: approve
        remember: 10m
"""


class Human:
    """An elicitation callback that answers as told, and remembers what it was asked.
    ``hold``: it answers only once the test sets ``released``, unless the question is
    withdrawn first (the client cancels the callback)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: Any) -> types.ElicitResult:
        self.asked.append(params.message)
        return types.ElicitResult(action=self.answers.pop(0))  # type: ignore[arg-type]


def _client(params: Any, human: Human | None, mode: str = "legacy") -> Client:
    if human is None:
        return Client(params, mode=mode)  # type: ignore[arg-type]
    return Client(params, mode=mode, elicitation_callback=human)  # type: ignore[arg-type]


async def test_a_human_accepts_declines_and_cancels_over_stdio(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    human = Human("accept", "decline", "cancel")
    params = through_mcpwall(write_policy(POLICY), server_cmd("k8s_like.py"))
    async with _client(params, human) as client:
        accepted = await client.call_tool("pods_delete", {"name": "web-1", "namespace": "prod"})
        assert text(accepted) == "deleted pod prod/web-1"
        declined = await client.call_tool("pods_delete", {"name": "web-2", "namespace": "prod"})
        assert declined.is_error
        assert text(declined) == (
            '[mcpwall] Denied by policy: A human declined this call of "pods_delete" '
            '(rule "pods_delete[0] approve")'
        )
        assert decision(declined)["rule"] == "pods_delete[0] approve"
        dismissed = await client.call_tool("pods_delete", {"name": "web-3", "namespace": "prod"})
        assert dismissed.is_error and "was dismissed" in text(dismissed)
        # when: does not hold: no one is asked.
        staging = await client.call_tool("pods_delete", {"name": "web-4", "namespace": "staging"})
        assert text(staging) == "deleted pod staging/web-4"
    # The human saw the tool, the rule's reason and the arguments.
    assert len(human.asked) == 3
    first = human.asked[0]
    assert '"pods_delete"' in first and "Deleting a pod stops its workload" in first
    assert '"name": "web-1"' in first and '"namespace": "prod"' in first
    # Only what was accepted (and what needed no approval) reached the server.
    assert [call["arguments"] for call in record.calls()] == [
        {"name": "web-1", "namespace": "prod"},
        {"name": "web-4", "namespace": "staging"},
    ]


async def test_approval_and_the_servers_own_elicitation_share_the_session(
    write_policy: Callable[..., Path], home: Path
) -> None:
    """server-everything asks the human itself (trigger-elicitation-request) while
    mcpwall asks about get-sum: each answer goes to whoever asked."""
    policy = write_policy("""
        version: "1"
        tools:
          get-sum:
            rules:
              - action: approve
    """)
    human = Human("accept", "decline", "accept")
    async with _client(through_mcpwall(policy, server_everything()), human) as client:
        summed = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in text(summed)
        # The server's own elicitation passes through, and its answer goes back to it.
        declined_by_server = await client.call_tool("trigger-elicitation-request", {})
        assert "decline" in text(declined_by_server).lower()
        summed = await client.call_tool("get-sum", {"a": 1, "b": 1})
        assert "2" in text(summed)
    assert len(human.asked) == 3
    assert "get-sum" in human.asked[0] and "get-sum" not in human.asked[1]


async def test_approval_over_http_legacy(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    human = Human("accept", "decline")
    with listener(write_policy(POLICY), "--", *server_cmd("k8s_like.py")) as wall:
        async with Client(wall.url, mode="legacy", elicitation_callback=human) as client:
            done = await client.call_tool("pods_delete", {"name": "a", "namespace": "prod"})
            assert text(done) == "deleted pod prod/a"
            declined = await client.call_tool("pods_delete", {"name": "b", "namespace": "prod"})
            assert declined.is_error and "declined" in text(declined)
    assert record.tools() == ["pods_delete"]


async def test_approval_by_retry_for_stateless_clients(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    """2026-07-28: the call comes back as input_required; the SDK asks the human and
    retries with the answer and mcpwall's state, and only then does the call go on."""
    human = Human("accept", "decline")
    with listener(write_policy(POLICY), "--", *server_cmd("k8s_like.py")) as wall:
        async with client_with_headers(
            wall.url, {}, mode="2026-07-28", elicitation_callback=human
        ) as client:
            done = await client.call_tool("pods_delete", {"name": "a", "namespace": "prod"})
            assert text(done) == "deleted pod prod/a"
            declined = await client.call_tool("pods_delete", {"name": "b", "namespace": "prod"})
            assert declined.is_error and "declined" in text(declined)
        async with client_with_headers(wall.url, {}, mode="2026-07-28") as unable:
            denied = await unable.call_tool("pods_delete", {"name": "c", "namespace": "prod"})
            assert denied.is_error and "elicitation capability" in text(denied)
    assert len(human.asked) == 2
    assert [call["arguments"] for call in record.calls()] == [{"name": "a", "namespace": "prod"}]


async def test_a_forged_or_reused_approval_state_is_not_an_approval(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    """A retry that claims an accept without mcpwall's state, with a state minted for
    other arguments, or with a tampered one, is asked again, never forwarded."""
    modern = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "pods_delete",
    }

    def call(request_id: int, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
        params = {"name": "pods_delete", "arguments": args, "_meta": modern, **extra}
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}

    accept = {"mcpwall-approval": {"action": "accept"}}
    with (
        listener(write_policy(POLICY), "--", *server_cmd("k8s_like.py")) as wall,
        httpx.Client(timeout=30) as http,
    ):

        def post(message: dict[str, Any]) -> dict[str, Any]:
            reply = http.post(wall.url, json=message, headers=headers)
            body = reply.text
            if reply.headers["content-type"].startswith("text/event-stream"):
                body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
            return json.loads(body)["result"]

        prod = {"name": "web-1", "namespace": "prod"}
        first = post(call(1, prod))
        assert first["resultType"] == "input_required"
        ask = first["inputRequests"]["mcpwall-approval"]
        assert ask["method"] == "elicitation/create" and "web-1" in ask["params"]["message"]
        state = first["requestState"]
        # No state: asked again.
        assert post(call(2, prod, inputResponses=accept))["resultType"] == "input_required"
        # The state of another call: asked again.
        other = {"name": "web-2", "namespace": "prod"}
        reused = post(call(3, other, inputResponses=accept, requestState=state))
        assert reused["resultType"] == "input_required"
        # A tampered state: asked again.
        tampered = state[:-4] + ("0000" if not state.endswith("0000") else "1111")
        forged = post(call(4, prod, inputResponses=accept, requestState=tampered))
        assert forged["resultType"] == "input_required"
        assert record.calls() == []
        # The real thing goes through, without mcpwall's keys.
        done = post(call(5, prod, inputResponses=accept, requestState=state))
        assert done["content"][0]["text"] == "deleted pod prod/web-1"
    assert [c["arguments"] for c in record.calls()] == [prod]


async def test_approvals_are_counted_in_the_metrics(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    port = free_port()
    human = Human("accept", "decline", "accept")
    params = through_mcpwall(
        write_policy(POLICY), server_cmd("k8s_like.py"), "--metrics-port", str(port)
    )

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            return page.read().decode()

    async with _client(params, human) as client:
        for name in ("a", "b", "c"):
            await client.call_tool("pods_delete", {"name": name, "namespace": "prod"})
        text_ = await anyio.to_thread.run_sync(scrape)
    lines = {line for line in text_.splitlines() if line.startswith("mcpwall_events_total")}
    assert 'mcpwall_events_total{kind="approval",outcome="asked"} 3.0' in lines
    assert 'mcpwall_events_total{kind="approval",outcome="accept"} 2.0' in lines
    assert 'mcpwall_events_total{kind="approval",outcome="decline"} 1.0' in lines


async def test_approvals_are_in_the_audit_log(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    human = Human("accept", "decline")
    params = through_mcpwall(write_policy(POLICY), server_cmd("k8s_like.py"))
    async with _client(params, human) as client:
        await client.call_tool("pods_delete", {"name": "a", "namespace": "prod"})
        await client.call_tool("pods_delete", {"name": "b", "namespace": "prod"})
    approvals = [e["outcome"] for e in audit_events(home, "approval")]
    assert approvals == ["asked", "accept", "asked", "decline"]
    calls = [(e["decision"], e["approval"]) for e in audit_events(home, "decision")]
    assert calls == [("allowed", "accepted"), ("denied", "decline")]


async def test_a_call_refused_for_want_of_a_human_is_recorded_once(
    write_policy: Callable[..., Path], home: Path
) -> None:
    """A call that needs a human, from a client that cannot ask one (no elicitation),
    is refused at once; the audit log holds one record of it, a denial with the reason
    it was not approved, not one as decided and another as ended."""
    params = through_mcpwall(write_policy(POLICY), server_cmd("k8s_like.py"))
    async with _client(params, None) as client:
        refused = await client.call_tool("pods_delete", {"name": "a", "namespace": "prod"})
        await client.call_tool("pods_list", {})
    assert refused.is_error
    calls = [(e["tool"], e["decision"], e.get("approval")) for e in audit_events(home, "decision")]
    assert calls == [("pods_delete", "denied", "unasked"), ("pods_list", "allowed", None)]
