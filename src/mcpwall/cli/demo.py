"""``mcpwall demo``: the first thing a new user runs.

It starts mcpwall in front of a real MCP server (the demo server, written with the MCP
SDK) with a Kubernetes-style policy and the embedded default state store (SQLite), then
plays a short agent session through it with the official MCP client, printing each call
and its decision, and at the end what the server itself saw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("pods_list", {"namespace": "default"}),
    ("pods_delete", {"name": "web-1", "namespace": "default"}),
    ("pods_delete", {"name": "coredns-7d8f", "namespace": "kube-system"}),
    ("vm_clone", {"source": "vm-base", "target": "vm-1"}),
    ("vm_clone", {"source": "vm-base", "target": "vm-2"}),
    ("vm_clone", {"source": "vm-base", "target": "vm-3"}),
    ("vm_clone", {"source": "vm-base", "target": "vm-4"}),
    ("configuration_view", {}),
    ("resources_scale", {"name": "web", "replicas": 3}),
    ("resources_scale", {"name": "web", "replicas": 50}),
    ("pods_exec", {"name": "web-1", "command": ["sh"]}),
]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall demo",
        description="Start a demo MCP server behind mcpwall with a Kubernetes-style policy "
        "and play a short agent session through it, printing every decision.",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where the SQLite state file goes (default: a fresh temporary "
        "directory, so that every demo starts from zero)",
    )
    ns = parser.parse_args(argv)
    import anyio

    with tempfile.TemporaryDirectory(prefix="mcpwall-demo-") as scratch:
        state_dir = Path(ns.state_dir or scratch) / "state"
        return anyio.run(_play, Path(scratch), state_dir)


async def _play(scratch: Path, state_dir: Path) -> int:
    from mcp import Client, StdioServerParameters
    from rich.console import Console
    from rich.table import Table

    console = Console()
    policy = resources.files("mcpwall.demo").joinpath("policy.yaml")
    record = scratch / "server-record.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "mcpwall",
            "-c",
            str(policy),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "warn",
            "--",
            sys.executable,
            "-m",
            "mcpwall.demo.server",
        ],
        env={**os.environ, "MCPWALL_DEMO_RECORD": str(record)},
    )
    console.print(
        f"[bold]mcpwall demo[/bold]: an agent session through mcpwall, policy "
        f"[cyan]{policy}[/cyan], state in [cyan]{state_dir}[/cyan]\n"
    )
    table = Table(show_lines=False)
    for column in ("#", "tool", "arguments", "decision", "what the agent got back"):
        table.add_column(column, overflow="fold")
    async with Client(params) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        console.print(
            f"tools/list shows {len(tools)} tools: {', '.join(tools)} "
            "(pods_exec is hidden by the policy)\n"
        )
        denied = 0
        for number, (tool, arguments) in enumerate(SCRIPT, 1):
            result = await client.call_tool(tool, arguments)
            body = "".join(getattr(block, "text", "") for block in result.content)
            verdict = (result.meta or {}).get("mcpwall/decision")
            if verdict is not None:
                denied += 1
                decision = "[red]denied[/red]"
                body = body.removeprefix("[mcpwall] Denied by policy: ")
            else:
                decision = "[green]allowed[/green]"
            table.add_row(str(number), tool, json.dumps(arguments), decision, body)
    console.print(table)
    executed = (
        [json.loads(line)["tool"] for line in record.read_text().splitlines()]
        if record.exists()
        else []
    )
    console.print(
        f"\n{len(SCRIPT)} calls: {len(SCRIPT) - denied} allowed, {denied} denied by mcpwall. "
        f"The server's own record shows {len(executed)} calls: {', '.join(executed)}.\n"
        "Denied calls never reached it. Try it with your own server: "
        "[bold]mcpwall -c policy.yaml -- <server command>[/bold]"
    )
    return 0 if len(executed) == len(SCRIPT) - denied else 1
