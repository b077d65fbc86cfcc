"""One verdict for every path: the same calls judged by ``decide`` in-process, by
``mcpwall check --tools``, and by the proxy over stdio and over the HTTP listener, in
front of a real SDK server. Every row must get the same verdict and the same deciding
step from all of them: a check (a pin, a schema, a counter) known to one path and
forgotten in another shows up here as a disagreement.

Each row is judged by the dry runs first and then by the proxy, which commits, so all
of them see the same counters."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcpwall.cli.check import SavedTools
from mcpwall.engine.decide import Call
from mcpwall.engine.gate import Gate
from mcpwall.engine.pins import PinBook
from mcpwall.policy import load_policy
from mcpwall.state import open_store
from tests.conftest import MCPWALL, server_cmd
from tests.e2e.http import Listener
from tests.helpers import RawProxy, call, initialize

POLICY = """
version: "1"
default: deny
pin: enforce
validate_arguments: true
hide: [rewrite]
tools:
  deploy:
    rules: []
  status:
    rules:
      - name: not prod
        action: deny
        when: [{path: args.service, op: eq, value: prod}]
        reason: "prod is off limits"
      - name: status budget
        conditions: [{path: state.status.looks, op: lte, value: 10}]
        state: {counter: looks, window: day, increment: 5, scope: global}
"""

# (tool, arguments, allowed, the step that decided)
ROWS: list[tuple[str, dict[str, Any], bool, str | None]] = [
    ("status", {"service": "web"}, True, None),
    ("status", {"service": "prod"}, False, "rule"),
    ("status", {"service": 7}, False, "schema"),  # the server's schema wants a string
    ("status", {}, False, "schema"),
    ("deploy", {"service": "web"}, False, "pin"),  # changed since it was pinned
    ("rewrite", {"description": "x"}, False, "hide"),
    ("delete_everything", {}, False, "default"),
    ("status", {"service": "web"}, True, None),  # the budget's second (and last) call
    ("status", {"service": "web"}, False, "counter"),
]

SERVER = "shifting"


def listed_tools(tmp_path: Path) -> list[Any]:
    """The server's tools/list result as it is on the wire."""
    process = RawProxy(server_cmd("shifting.py"), env={"PATH": "/usr/bin:/bin"})
    try:
        initialize(process)
        process.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = process.request({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    finally:
        process.close()
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    return tools["result"]["tools"]


def pin_an_older_deploy(dsn: str, tools: list[Any]) -> None:
    """Pins as an earlier session left them: deploy with another description."""
    older = [{**t, "description": "An older deploy."} for t in tools if t["name"] == "deploy"]
    store = open_store(dsn, None)
    try:
        PinBook(lambda: store, SERVER).observe(older)
    finally:
        store.close()


def by_decide(
    policy_file: Path, dsn: str, tools: list[Any], tool: str, args: dict[str, Any]
) -> tuple[bool, Any]:
    policy = load_policy(policy_file)
    store = open_store(dsn, None)
    gate = Gate(lambda: store)
    try:
        facts = SavedTools(tools, gate.store, "", SERVER)
        verdict, _ = gate.judge(policy, Call("decide", tool, args), facts, commit=False)
    finally:
        gate.close()
    return verdict.allowed, None if verdict.step is None else verdict.step.value


def by_check(
    policy_file: Path, dsn: str, tools_file: Path, tool: str, args: dict[str, Any]
) -> tuple[bool, Any]:
    done = subprocess.run(
        [
            *(MCPWALL, "check", "-c", str(policy_file), tool, "--args", json.dumps(args)),
            *("--tools", str(tools_file), "--server", SERVER, "--state-dsn", dsn),
            *("--format", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (0, 1), done.stderr
    body = json.loads(done.stdout)
    assert (done.returncode == 0) is body["allowed"]
    return body["allowed"], body["step"]


def proxy_verdict(answer: Any) -> tuple[bool, Any]:
    """What the proxy decided, from its answer: a denial names its deciding step."""
    result = answer.get("result", {})
    meta = result.get("_meta", {}).get("mcpwall/decision")
    if meta is None:
        return True, None
    return False, meta["step"]


@contextmanager
def stdio_proxy(policy_file: Path, dsn: str) -> Iterator[Any]:
    proxy = RawProxy(
        [
            *(MCPWALL, "-c", str(policy_file), "--state-dsn", dsn, "--server-name", SERVER),
            *("--", *server_cmd("shifting.py")),
        ],
        env=dict(os.environ),
    )
    try:
        initialize(proxy)
        proxy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        proxy.request({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
        yield proxy.request
    finally:
        proxy.close()


@contextmanager
def http_proxy(policy_file: Path, dsn: str) -> Iterator[Any]:
    listener = Listener(
        policy_file, "--state-dsn", dsn, "--server-name", SERVER, "--", *server_cmd("shifting.py")
    )
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=30) as http:

            def post(message: Any) -> Any:
                reply = http.post(listener.url, json=message, headers=headers)
                text = reply.text
                if reply.headers.get("content-type", "").startswith("text/event-stream"):
                    text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
                return reply, json.loads(text)

            reply, _ = post(initialize_message())
            headers["Mcp-Session-Id"] = reply.headers["mcp-session-id"]
            post({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
            yield lambda message: post(message)[1]
    finally:
        listener.stop()


def initialize_message() -> Any:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "one-verdict", "version": "1"},
        },
    }


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_decide_check_and_the_proxy_agree_on_every_row(
    tmp_path: Path, home: Path, transport: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    dsn = f"sqlite:///{tmp_path / 'state.sqlite'}"
    tools = listed_tools(tmp_path)
    pin_an_older_deploy(dsn, tools)
    proxy = stdio_proxy if transport == "stdio" else http_proxy
    seen = []
    with proxy(policy_file, dsn) as send:
        for number, (tool, args, allowed, step) in enumerate(ROWS):
            expected = (allowed, step)
            decided = by_decide(policy_file, dsn, tools, tool, args)
            checked = by_check(policy_file, dsn, tmp_path / "tools.json", tool, args)
            proxied = proxy_verdict(send(call(number, tool, args)))
            seen.append((tool, args, decided, checked, proxied))
            assert decided == checked == proxied == expected, seen
