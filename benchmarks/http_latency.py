"""The HTTP listener's added latency: sequential ``tools/call`` round trips on one
keep-alive connection to a server spoken to over Streamable HTTP directly, and to mcpwall's
listener (``--transport http``, an allow-all policy) in front of the same server run over
stdio. Two servers: server-everything (the reference server, which has both transports)
and the benchmark's own Python server (``http_server.py`` and ``server.py``: the same
answers, as fast as Python gives them, so that what mcpwall adds is what shows).

Every path runs in a process started afresh in each round, the paths in turn, so that a
slow moment of the machine falls on all of them alike.

    .venv/bin/python benchmarks/http_latency.py           # the full run (about a minute)
    .venv/bin/python benchmarks/http_latency.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import policies  # noqa: E402

EVERYTHING = HERE.parent / "tests/npm/node_modules/@modelcontextprotocol/server-everything"
PROTOCOL = "2025-11-25"


@dataclass(frozen=True, eq=False)  # told apart by identity: the arguments are a dict
class Route:
    """One way to reach a server: its label, and how to start it listening on a port."""

    server: str
    label: str
    tool: str
    arguments: dict[str, Any]
    direct: bool

    def command(self, port: int, scratch: Path) -> tuple[list[str], dict[str, str]]:
        node = shutil.which("node") or "node"
        if self.server == "server-everything":
            entry = str(EVERYTHING / "dist" / "index.js")
            if self.direct:  # it reads its port from the environment
                return [node, entry, "streamableHttp"], {"PORT": str(port)}
            stdio = [node, entry, "stdio"]
        else:
            if self.direct:
                return [sys.executable, str(HERE / "http_server.py"), str(port)], {}
            stdio = [sys.executable, str(HERE / "server.py")]
        policy = scratch / "allow-all.yaml"
        policy.write_text(policies.ALLOW_ALL)
        wall = [sys.executable, "-m", "mcpwall", "-c", str(policy), "--state-dsn", "memory:"]
        wall += ["--events-dir", str(scratch / "events"), "--log-level", "error"]
        return [*wall, "--transport", "http", "--port", str(port), "--", *stdio], {}


def routes() -> list[Route]:
    found = []
    if (EVERYTHING / "dist" / "index.js").exists() and shutil.which("node"):
        message = {"message": "hello"}
        found += [
            Route("server-everything", "over HTTP, directly", "echo", message, True),
            Route("server-everything", "mcpwall listener → stdio", "echo", message, False),
        ]
    charge = {"amount": 1, "currency": "usd", "description": "order 1234"}
    found += [
        Route("benchmark server", "over HTTP, directly", "echo", charge, True),
        Route("benchmark server", "mcpwall listener → stdio", "echo", charge, False),
    ]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def listening(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """The process serving HTTP on ``port`` until the block ends; its MCP endpoint."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command[:3]} did not listen on {port}") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a response, whether sent as JSON or as an event stream
    (where notifications may come before it)."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():  # not a priming event
                message = json.loads(line[5:])
                if "result" in message or "error" in message:
                    return message
        raise ValueError("an event stream without an answer")
    return response.json()


def round_trips(url: str, tool: str, arguments: dict[str, Any], count: int) -> list[float]:
    """``count`` sequential tools/call round trips after a warm-up, in µs."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    with httpx.Client(timeout=10) as client:
        hello = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
        init = client.post(url, headers=headers, content=json.dumps(hello))
        version = answer(init)["result"]["protocolVersion"]
        headers["Mcp-Session-Id"] = init.headers.get("mcp-session-id", "")
        headers["MCP-Protocol-Version"] = version
        notified = client.post(
            url, headers=headers, content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        )
        notified.raise_for_status()
        warm = max(50, count // 10)
        samples = []
        clock = time.perf_counter_ns
        for n in range(1, warm + count + 1):
            call = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
            body = json.dumps(call).encode()
            start = clock()
            reply = answer(client.post(url, headers=headers, content=body))
            elapsed = (clock() - start) / 1000
            if "result" not in reply or reply.get("id") != n:
                raise ValueError(f"not the answer to call {n}: {reply}")
            if n > warm:
                samples.append(elapsed)
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(count: int, rounds: int, scratch: Path) -> dict[Route, list[float]]:
    found = routes()
    samples: dict[Route, list[float]] = {path: [] for path in found}
    for round_index in range(rounds):
        shift = round_index % len(found)
        for path in found[shift:] + found[:shift]:
            port = free_port()
            command, env = path.command(port, scratch)
            with listening(command, env, port) as url:
                samples[path] += round_trips(url, path.tool, path.arguments, count // rounds)
        print(f"  round {round_index + 1} of {rounds} done", file=sys.stderr)
    return samples


def render(samples: dict[Route, list[float]]) -> str:
    lines = [
        "| server | path | p50 µs | added p50 | p90 µs | p99 µs | added p99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for path, values in samples.items():
        direct = next(other for other in samples if other.server == path.server and other.direct)
        base = samples[direct]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        added50 = "" if path.direct else f"{p50 - percentile(base, 0.5):+.1f}"
        added99 = "" if path.direct else f"{p99 - percentile(base, 0.99):+.1f}"
        lines.append(
            f"| {path.server} | {path.label} | {p50:.1f} | {added50} | "
            f"{percentile(values, 0.9):.1f} | {p99:.1f} | {added99} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    ns = parser.parse_args()
    count, rounds = (100, 1) if ns.quick else (3000, 3)
    with tempfile.TemporaryDirectory(prefix="mcpwall-http-") as scratch:
        samples = measure(count, rounds, Path(scratch))
    print(render(samples))
    if ns.json:
        figures = {
            f"{path.server}: {path.label}": {
                "p50": percentile(values, 0.5),
                "p99": percentile(values, 0.99),
            }
            for path, values in samples.items()
        }
        Path(ns.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
