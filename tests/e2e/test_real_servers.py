"""mcpwall in front of the real npm servers: @modelcontextprotocol/server-everything on
Node 22 and the kubernetes-mcp-server binary, driven by the official SDK client.

server-everything keeps no record of its own, so it runs under tests/servers/tap.py,
which writes down every line that reaches its stdin. kubernetes-mcp-server logs every
tool call it executes ("mcp tool call" ... tool_name=...) to its --log-file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import kubernetes_server, server_cmd, server_everything
from tests.e2e.sdk import agent, text, through_mcpwall

pytestmark = pytest.mark.anyio

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:1"}
  name: throwaway
contexts:
- context: {cluster: throwaway, user: throwaway}
  name: throwaway
current-context: throwaway
users:
- name: throwaway
  user: {token: "not-a-real-token"}
"""


async def test_server_everything_behind_mcpwall(
    write_policy: Callable[..., Path],
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wire = tmp_path / "wire.jsonl"
    monkeypatch.setenv("MCPWALL_TEST_WIRE", str(wire))
    policy = write_policy("""
        version: "1"
        hide: [get-env]
        tools:
          get-sum:
            rules:
              - name: "small sums only"
                conditions:
                  - {path: args.a, op: lt, value: 100}
                on_deny: "Sums are for small numbers"
    """)
    params = through_mcpwall(policy, server_cmd("tap.py", *server_everything()))
    async with agent(params) as client:
        assert client.protocol_version == "2025-11-25"
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names and "get-sum" in names and "get-env" not in names
        echoed = await client.call_tool("echo", {"message": "through the wall"})
        assert "through the wall" in text(echoed)
        small = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in text(small)
        large = await client.call_tool("get-sum", {"a": 500, "b": 3})
        assert large.is_error and text(large).endswith("Sums are for small numbers")
        env = await client.call_tool("get-env", {})
        assert env.is_error and "hidden by policy" in text(env)
    calls = [
        json.loads(line)["params"]["name"]
        for line in wire.read_text().splitlines()
        if json.loads(line).get("method") == "tools/call"
    ]
    assert calls == ["echo", "get-sum"]


async def test_kubernetes_mcp_server_behind_mcpwall(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(KUBECONFIG)
    server_log = tmp_path / "kubernetes-mcp-server.log"
    policy = write_policy("""
        version: "1"
        hide: [pods_exec]
        tools:
          pods_delete:
            rules:
              - action: deny
                reason: "Pod deletion is not permitted via AI agents"
          resources_get:
            rules:
              - action: deny
                when:
                  - {path: args.kind, op: regex, value: "(?i)^secrets?$"}
                reason: "Secrets stay in the cluster"
    """)
    command = [
        kubernetes_server(),
        "--kubeconfig",
        str(kubeconfig),
        "--disable-multi-cluster",
        "--log-level",
        "5",
        "--log-file",
        str(server_log),
    ]
    async with agent(through_mcpwall(policy, command)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"pods_list", "pods_delete", "configuration_view"} <= names
        assert "pods_exec" not in names
        denied = await client.call_tool("pods_delete", {"name": "web-1", "namespace": "prod"})
        assert denied.is_error
        assert text(denied) == (
            "[mcpwall] Denied by policy: Pod deletion is not permitted via AI agents"
        )
        secret = await client.call_tool(
            "resources_get", {"apiVersion": "v1", "kind": "secret", "name": "db"}
        )
        assert text(secret).endswith("Secrets stay in the cluster")
        allowed = await client.call_tool("pods_list", {})
        assert allowed.is_error and "connection refused" in text(allowed)
    executed = [line for line in server_log.read_text().splitlines() if '"mcp tool call"' in line]
    assert len(executed) == 1 and 'tool_name="pods_list"' in executed[0]
