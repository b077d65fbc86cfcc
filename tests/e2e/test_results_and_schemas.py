"""Argument validation against the tool's own inputSchema, and redaction of secrets in
results, against real servers: server-everything's schemas, the Kubernetes MCP server's
configuration_view (which prints the kubeconfig with its credentials), and a server of
our own that returns a Secret manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Record, kubernetes_server, server_cmd, server_everything
from tests.e2e.sdk import agent, decision, text, through_mcpwall
from tests.e2e.test_real_servers import KUBECONFIG
from tests.helpers import audit_events

pytestmark = pytest.mark.anyio

TOKEN = "not-a-real-token"
CLIENT_KEY = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCm5vdC1hLXJlYWwta2V5Ci0tLS0tRU5E"


async def test_arguments_that_miss_the_schema_never_reach_the_server(
    write_policy: Callable[..., Path], wire: Path, home: Path
) -> None:
    policy = write_policy("""
        version: "1"
        validate_arguments: true
        tools:
          get-sum:
            rules: []
          echo:
            validate_arguments: false
            rules: []
    """)
    command = server_cmd("tap.py", *server_everything())
    async with agent(through_mcpwall(policy, command), mode="legacy") as client:
        # Before the tools are listed their schemas are unknown: fail closed.
        early = await client.call_tool("get-sum", {"a": 1, "b": 2})
        assert early.is_error and "input schema" in text(early) and "not known" in text(early)
        await client.list_tools()
        wrong = await client.call_tool("get-sum", {"a": "two", "b": 3})
        assert wrong.is_error
        assert text(wrong) == (
            '[mcpwall] Denied by policy: Arguments of "get-sum" do not match its input '
            'schema: a: "two" is not of type "number"'
        )
        assert decision(wrong)["rule"] == "(input schema)"
        missing = await client.call_tool("get-sum", {"a": 1})
        assert missing.is_error and '"b" is a required property' in text(missing)
        right = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in text(right)
        # echo is not checked: its wrong arguments reach the server, which refuses them.
        unchecked = await client.call_tool("echo", {"message": 7})
        assert unchecked.is_error and "[mcpwall]" not in text(unchecked)
    calls = [
        json.loads(line)["params"]
        for line in wire.read_text().splitlines()
        if json.loads(line).get("method") == "tools/call"
    ]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get-sum", {"a": 2, "b": 3}),
        ("echo", {"message": 7}),
    ]


async def test_configuration_view_credentials_are_redacted(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        KUBECONFIG
        + f"""- name: admin
  user:
    client-certificate-data: {CLIENT_KEY}
    client-key-data: {CLIENT_KEY}
"""
    )
    policy = write_policy("""
        version: "1"
        redact:
          detectors: [kubeconfig, bearer_tokens, private_keys]
        tools:
          configuration_view:
            rules: []
    """)
    command = [kubernetes_server(), "--kubeconfig", str(kubeconfig), "--disable-multi-cluster"]
    async with agent(through_mcpwall(policy, command), mode="legacy") as client:
        shown = text(await client.call_tool("configuration_view", {"minified": False}))
    assert "kind: Config" in shown and "client-key-data: [redacted]" in shown
    assert TOKEN not in shown and CLIENT_KEY not in shown
    [event] = audit_events(home, "redacted")
    assert event["tool"] == "configuration_view" and event["found"] == {"kubeconfig": 3}
    [call] = audit_events(home, "decision")
    assert call["redacted"] == {"kubeconfig": 3}
    # The log says what and how many, never the secret.
    logs = "".join(path.read_text() for path in (home / ".mcpwall" / "events").glob("*"))
    assert TOKEN not in logs and CLIENT_KEY not in logs


async def test_secret_data_and_policy_patterns_are_redacted(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    policy = write_policy("""
        version: "1"
        redact:
          detectors: [kubernetes_secrets]
          patterns:
            - name: pod names
              regex: "web-[0-9]+"
              replacement: "web-?"
        tools:
          "*":
            rules: []
    """)
    async with agent(through_mcpwall(policy, server_cmd("k8s_like.py")), mode="legacy") as client:
        got = await client.call_tool(
            "resources_get", {"apiVersion": "v1", "kind": "secret", "name": "db"}
        )
        secret = text(got)
        # The SDK's server sends the text twice: as content and as structuredContent.
        assert got.structured_content == {"result": secret}
        pods = text(await client.call_tool("pods_list", {}))
        config_map = text(
            await client.call_tool(
                "resources_get", {"apiVersion": "v1", "kind": "ConfigMap", "name": "app"}
            )
        )
    assert "password: [redacted]" in secret and "username: [redacted]" in secret
    assert "c3VwZXI" not in secret and "name: db" in secret
    assert pods == "pods in default: web-?, web-?"
    assert config_map.startswith("apiVersion: v1\nkind: ConfigMap")
    found = [event["found"] for event in audit_events(home, "redacted")]
    assert found == [{"kubernetes_secrets": 4}, {"pod names": 4}]  # 2 values, twice each
