"""Run the arguments a deployment gives mcpwall (the image's CMD, the chart's container
args) on this machine, with what only exists in the container mapped to local paths, and
talk MCP to the listener they start."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MCPWALL
from tests.e2e.http import free_port, serving

VERSION = "2025-11-25"


def localise(args: list[str], image_paths: dict[str, Path], port: int) -> list[str]:
    """``args`` as this machine can run them: each image path replaced by a local one,
    the listener on 127.0.0.1:``port``, ``python`` by this interpreter."""
    local: list[str] = []
    for arg in args:
        for image_path, here in image_paths.items():
            if arg == image_path or arg.startswith(image_path + "/"):
                arg = str(here) + arg[len(image_path) :]
        local.append(arg)
    for flag, value in (("--bind", "127.0.0.1"), ("--port", str(port))):
        local[local.index(flag) + 1] = value
    if "--" in local:
        split = local.index("--") + 1
        if local[split] == "python":
            local[split] = sys.executable
    return local


@contextmanager
def running(args: list[str], home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mcpwall ARGS`` as a process, once it accepts connections; stopped at the end."""
    port = int(args[args.index("--port") + 1])
    with serving([MCPWALL, *args], port, {"HOME": str(home)}) as process:
        yield process


class Session:
    """One MCP client session over Streamable HTTP, answers as JSON."""

    def __init__(self, url: str, host: str) -> None:
        self.url = url
        self.headers = {
            "host": host,
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        self.client = httpx.Client(timeout=15)
        self.next_id = 0

    def post(self, message: dict[str, Any]) -> httpx.Response:
        return self.client.post(self.url, json=message, headers=self.headers)

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        reply = self.post(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        )
        reply.raise_for_status()
        if reply.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:] for line in reply.text.splitlines() if line.startswith("data:")]
            return next(m for m in map(json.loads, data) if m.get("id") == self.next_id)
        return reply.json()

    def initialize(self) -> dict[str, Any]:
        reply = self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "deploy-test", "version": "1"},
                },
            }
        )
        reply.raise_for_status()
        self.headers["mcp-session-id"] = reply.headers["mcp-session-id"]
        self.headers["mcp-protocol-version"] = VERSION
        note = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert note.status_code == 202, note.text
        return {"status": reply.status_code}

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": arguments})

    def close(self) -> None:
        self.client.close()


def demo_verdicts(port: int, host: str) -> dict[str, bool]:
    """Through the listener on ``port``, as a client naming ``host``: whether each of
    three demo calls was denied."""
    session = Session(f"http://127.0.0.1:{port}/mcp", host)
    try:
        session.initialize()
        calls = {
            "pods_list": {"namespace": "default"},
            "configuration_view": {},
            "pods_delete": {"name": "etcd-0", "namespace": "kube-system"},
        }
        return {
            tool: bool(session.call(tool, arguments)["result"].get("isError"))
            for tool, arguments in calls.items()
        }
    finally:
        session.close()


def assert_serves_the_demo(port: int, host: str, foreign_host: str) -> None:
    """The listener on ``port`` judges the demo's calls as its policy says, for a client
    naming ``host``, and refuses a client naming ``foreign_host`` (DNS rebinding)."""
    verdicts = demo_verdicts(port, host)
    assert verdicts == {"pods_list": False, "configuration_view": True, "pods_delete": True}
    stranger = Session(f"http://127.0.0.1:{port}/mcp", foreign_host)
    try:
        assert stranger.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 421
    finally:
        stranger.close()


__all__ = [
    "Session",
    "assert_serves_the_demo",
    "demo_verdicts",
    "free_port",
    "localise",
    "running",
]
