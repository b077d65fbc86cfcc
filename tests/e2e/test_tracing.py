"""Traces, end to end: mcpwall as a process (stdio, then the HTTP listener) in front of
our SDK server, sending its spans over OTLP/HTTP to a real receiver the test starts;
the agent is the official SDK client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcpwall.ops.tracing import SPAN_NAME, traces_url
from tests.conftest import Record, server_cmd
from tests.e2e.http import listener
from tests.e2e.sdk import decision, through_mcpwall
from tests.servers.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.anyio

POLICY = """
version: "1"
tools:
  pods_delete:
    rules:
      - name: no deletes
        action: deny
        reason: "Pod deletion is not permitted via AI agents"
  vm_clone:
    rules:
      - name: one clone
        rate_limit: {max: 1, window: 60}
"""
# W3C trace contexts an agent might send: version, trace id, parent span id, flags.
AGENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AGENT_SPAN = "00f067aa0ba902b7"
AGENT = f"00-{AGENT_TRACE}-{AGENT_SPAN}-01"
HEADER_TRACE = "0af7651916cd43dd8448eb211c80319c"
HEADER_SPAN = "b7ad6b7169203331"
HEADER = f"00-{HEADER_TRACE}-{HEADER_SPAN}-01"
SERVER_SPAN_KIND = 2  # SPAN_KIND_SERVER in OTLP


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


def by_tool(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        found.setdefault(span["attributes"]["gen_ai.tool.name"], []).append(span)
    return found


def count(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda spans: len(spans) >= n


async def test_stdio_spans_carry_the_verdict_and_are_sent_on_exit(
    receiver: OtlpReceiver,
    write_policy: Callable[..., Path],
    record: Record,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Spans would wait a minute in the batch: only the flush on exit can send them.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    params = through_mcpwall(write_policy(POLICY), server_cmd("k8s_like.py"))
    async with Client(params, mode="legacy") as agent:
        meta: Any = {"traceparent": AGENT, "tracestate": "vendor=1"}
        assert not (await agent.call_tool("pods_list", {}, meta=meta)).is_error
        denied = await agent.call_tool("pods_delete", {"name": "web-1-s3cr3t"})
        assert decision(denied)["rule"] == "no deletes"
        clones = [await agent.call_tool("vm_clone", {"source": "a", "target": "b"}) for _ in "ab"]
        assert [clone.is_error for clone in clones] == [False, True]
        assert (await agent.call_tool("create_charge", {"amount": 13})).is_error
        assert receiver.requests == 0
    spans = by_tool(receiver.wait_for(count(5)))

    listed = spans["pods_list"][0]
    assert listed["name"] == SPAN_NAME and listed["kind"] == SERVER_SPAN_KIND
    assert (listed["trace_id"], listed["parent_span_id"]) == (AGENT_TRACE, AGENT_SPAN)
    assert listed["attributes"]["mcpwall.decision"] == "allow"
    assert listed["resource"]["service.name"] == "mcpwall"
    session = listed["attributes"]["mcp.session.id"]
    assert len(session) == 32

    deleted = spans["pods_delete"][0]
    assert deleted["parent_span_id"] == "" and deleted["trace_id"] != AGENT_TRACE
    assert {
        key: deleted["attributes"].get(key)
        for key in ("mcpwall.decision", "mcpwall.rule", "mcpwall.reason", "mcpwall.step")
    } == {
        "mcpwall.decision": "deny",
        "mcpwall.rule": "no deletes",
        "mcpwall.reason": "Pod deletion is not permitted via AI agents",
        "mcpwall.step": "rule",
    }
    assert deleted["attributes"]["mcp.session.id"] == session
    assert "mcpwall.store_time_us" not in deleted["attributes"]  # no counter to wait on

    allowed, limited = spans["vm_clone"]
    assert allowed["attributes"]["mcpwall.store_time_us"] > 0
    assert limited["attributes"]["mcpwall.step"] == "counter"
    assert limited["attributes"]["mcpwall.store_time_us"] > 0
    assert limited["attributes"]["mcpwall.retry_after_s"] > 0

    charged = spans["create_charge"][0]
    assert charged["attributes"]["mcpwall.decision"] == "allow"
    assert charged["status"] == 2  # STATUS_CODE_ERROR: the server answered with an error
    # Arguments are the agent's data: no span holds them.
    assert "s3cr3t" not in repr(receiver.spans) and "amount" not in repr(receiver.spans)


async def test_http_listener_continues_the_traceparent_header(
    receiver: OtlpReceiver,
    write_policy: Callable[..., Path],
    record: Record,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    with listener(
        write_policy(POLICY),
        "--otlp-endpoint",
        receiver.endpoint,
        "--",
        *server_cmd("k8s_like.py"),
    ) as wall:
        async with agent_with_headers(wall.url, {"traceparent": HEADER}) as agent:
            assert not (await agent.call_tool("pods_list", {})).is_error
            meta: Any = {"traceparent": AGENT}
            assert not (await agent.call_tool("pods_list", {}, meta=meta)).is_error
            assert (await agent.call_tool("pods_delete", {"name": "x"})).is_error
            # Sent while mcpwall runs, by the batch's schedule.
            spans = by_tool(receiver.wait_for(count(3)))
    by_header, by_meta = spans["pods_list"]
    assert (by_header["trace_id"], by_header["parent_span_id"]) == (HEADER_TRACE, HEADER_SPAN)
    # The call's own _meta is nearer the call than its POST's header: it wins.
    assert (by_meta["trace_id"], by_meta["parent_span_id"]) == (AGENT_TRACE, AGENT_SPAN)
    denied = spans["pods_delete"][0]
    assert denied["trace_id"] == HEADER_TRACE
    assert denied["attributes"]["mcpwall.decision"] == "deny"
    sessions = {span["attributes"]["mcp.session.id"] for span in receiver.spans}
    assert len(sessions) == 1 and "" not in sessions
    assert record.tools() == ["pods_list", "pods_list"]


@asynccontextmanager
async def agent_with_headers(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as agent,
    ):
        yield agent


def test_the_endpoint_comes_from_the_option_or_the_standard_variables() -> None:
    base = "http://collector:4318"
    assert traces_url(None, {}) is None
    assert traces_url(base, {}) == f"{base}/v1/traces"
    assert traces_url(f"{base}/v1/traces", {}) == f"{base}/v1/traces"
    assert traces_url(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"{base}/"}) == f"{base}/v1/traces"
    whole = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{base}/custom"}
    assert traces_url(None, {**whole, "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == f"{base}/custom"
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": base}
    assert traces_url(None, disabled) is None
    assert traces_url(base, disabled) == f"{base}/v1/traces"  # the option says so itself


def test_without_an_endpoint_opentelemetry_is_never_loaded(tmp_path: Path) -> None:
    script = f"""
import sys
from mcpwall.app import Operations, OpsOptions, StateOptions
from mcpwall.cli import main
from mcpwall.proxy import http, http_upstream
ops = Operations(OpsOptions(events_dir={str(tmp_path)!r}), StateOptions(dsn="memory:").gate())
assert ops.observers and ops.tracing is None
ops.close()
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
