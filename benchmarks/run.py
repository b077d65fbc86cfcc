"""What mcpwall adds to a call, measured: the same workloads sent to a minimal MCP server
directly, through mcpwall with an allow-all policy, and through mcpwall with a realistic
policy (50 tools, argument conditions, a rate limit and a spend counter in SQLite).

The client writes JSON-RPC lines itself and times each round trip: an SDK client's own
cost would hide the proxy's. Every figure is printed as direct, through mcpwall, the
difference and the ratio, and written as JSON.

    .venv/bin/python benchmarks/run.py            # the full run (about two minutes)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import policies  # noqa: E402

SERVER = [sys.executable, str(HERE / "server.py")]
MCPWALL = [sys.executable, "-m", "mcpwall"]


@dataclass
class Counts:
    sequential: int = 5000
    pipelined: int = 20000
    large_1mb: int = 20
    large_10mb: int = 5
    startup: int = 10
    denied: int = 5000
    scaling: int = 2000
    http: int = 2000

    @classmethod
    def quick(cls) -> Counts:
        return cls(200, 500, 3, 2, 2, 200, 100, 100)


@dataclass
class Setup:
    name: str
    policy: str | None  # None: the server alone
    state: list[str] | None = None  # state flags; default: SQLite in a fresh directory

    def command(self, scratch: Path) -> list[str]:
        if self.policy is None:
            return SERVER
        path = scratch / f"{self.name}.yaml"
        path.write_text(self.policy)
        state = self.state or ["--state-dir", str(scratch / f"state-{self.name}")]
        events = ["--events-dir", str(scratch / "events")]  # the audit log stays on
        return [*MCPWALL, "-c", str(path), *state, *events, "--log-level", "error", "--", *SERVER]

    @property
    def realistic(self) -> bool:
        return self.name.startswith("realistic")


@contextmanager
def redis_server(scratch: Path) -> Iterator[str | None]:
    """A local redis-server on a free port for the Redis column; None if not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(scratch),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Results:
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    scaling: dict[str, dict[str, float]] = field(default_factory=dict)
    http: dict[str, dict[str, float]] = field(default_factory=dict)

    def put(self, metric: str, setup: str, value: float) -> None:
        self.rows.setdefault(metric, {})[setup] = value


class Peer:
    """A spawned process spoken to with raw JSON-RPC lines."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.stdout = self.process.stdout
        self.ids = 0

    def line(self, method: str, params: dict[str, Any] | None = None) -> bytes:
        self.ids += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            body["params"] = params
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    def round_trip(self, line: bytes) -> bytes:
        self.stdin.write(line)
        self.stdin.flush()
        return self.stdout.readline()

    def initialize(self) -> None:
        self.round_trip(
            self.line(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"},
                },
            )
        )
        self.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        self.stdin.flush()

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for entry in status.splitlines():
            if entry.startswith("VmHWM:"):
                return int(entry.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=10)
        self.stdout.close()


@contextmanager
def peer(command: list[str]) -> Iterator[Peer]:
    spawned = Peer(command)
    try:
        spawned.initialize()
        yield spawned
    finally:
        spawned.close()


def call_line(proc: Peer, tool: str, arguments: dict[str, Any]) -> bytes:
    return proc.line("tools/call", {"name": tool, "arguments": arguments})


CHARGE = {"amount": 1, "currency": "usd", "description": "order 1234", "customer": "cus_1"}


def sequential(proc: Peer, make: Callable[[], bytes], count: int) -> list[float]:
    for _ in range(max(50, count // 10)):  # warm up
        proc.round_trip(make())
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        line = make()
        start = clock()
        proc.round_trip(line)
        samples.append((clock() - start) / 1000)
    return samples


def pipelined(proc: Peer, make: Callable[[], bytes], count: int) -> float:
    lines = [make() for _ in range(count)]

    def writer() -> None:
        for line in lines:
            proc.stdin.write(line)
        proc.stdin.flush()

    start = time.perf_counter()
    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(count):
        proc.stdout.readline()
    elapsed = time.perf_counter() - start
    thread.join()
    return count / elapsed


def large(proc: Peer, size: int, count: int) -> float:
    data = "x" * size
    times = []
    for _ in range(count):
        line = call_line(proc, "echo", {"data": data})
        start = time.perf_counter()
        reply = proc.round_trip(line)
        times.append(time.perf_counter() - start)
        assert len(reply) > size, "the large reply was not relayed whole"
    return statistics.median(times) * 1000


def startup(command: list[str], count: int) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        proc = Peer(command)
        proc.round_trip(proc.line("ping"))
        times.append(time.perf_counter() - start)
        proc.close()
    return statistics.median(times) * 1000


HTTP_SERVER = [sys.executable, str(HERE / "http_server.py")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def listening(command: list[str], port: int) -> Iterator[str]:
    """A process serving HTTP on ``port``, until the block ends."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def http_calls(url: str, count: int) -> list[float]:
    """Sequential tools/call round trips over one keep-alive connection, in µs."""
    import httpx

    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    with httpx.Client(timeout=10) as client:
        init = client.post(
            url,
            headers=headers,
            content=json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"},
                    },
                }
            ),
        )
        headers["Mcp-Session-Id"] = init.headers.get("mcp-session-id", "")
        client.post(
            url, headers=headers, content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        )
        bodies = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": CHARGE},
                }
            ).encode()
            for n in range(1, count + max(50, count // 10) + 1)
        ]
        samples = []
        clock = time.perf_counter_ns
        for index, body in enumerate(bodies):
            start = clock()
            client.post(url, headers=headers, content=body).raise_for_status()
            if index >= len(bodies) - count:  # after the warm-up
                samples.append((clock() - start) / 1000)
    return samples


def measure_http(counts: Counts, scratch: Path, progress: Progress) -> dict[str, dict[str, float]]:
    """The same calls over HTTP: to the server, through mcpwall's listener in front of it
    (HTTP upstream), and through the listener in front of the stdio server."""
    policy = scratch / "http-allow-all.yaml"
    policy.write_text(policies.ALLOW_ALL)
    wall = [
        *MCPWALL,
        "-c",
        str(policy),
        "--state-dsn",
        "memory:",
        "--events-dir",
        str(scratch / "events"),
        "--log-level",
        "error",
        "--transport",
        "http",
    ]
    figures: dict[str, dict[str, float]] = {}
    server_port = free_port()
    with listening([*HTTP_SERVER, str(server_port)], server_port) as server_url:
        progress.step("HTTP: direct")
        figures["direct (HTTP server)"] = _summary(http_calls(server_url, counts.http))
        port = free_port()
        with listening([*wall, "--port", str(port), "--upstream", server_url], port) as url:
            progress.step("HTTP: listener, HTTP upstream")
            figures["mcpwall listener → HTTP upstream"] = _summary(http_calls(url, counts.http))
    port = free_port()
    with listening([*wall, "--port", str(port), "--", *SERVER], port) as url:
        progress.step("HTTP: listener, stdio server")
        figures["mcpwall listener → stdio server"] = _summary(http_calls(url, counts.http))
    return figures


def _summary(samples: list[float]) -> dict[str, float]:
    return {"p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99)}


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class Progress:
    """One line per step on a terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        if self.tty:
            sys.stderr.write(f"\r\033[K[{self.done}/{self.total}] {what}")
            sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")


def measure(counts: Counts, scratch: Path, redis_url: str | None) -> Results:
    results = Results()
    setups = [
        Setup("direct", None),
        Setup("allow-all", policies.ALLOW_ALL),
        Setup("realistic", policies.realistic()),
    ]
    if redis_url is not None:
        setups.append(Setup("realistic, Redis", policies.realistic(), ["--state-dsn", redis_url]))
    scaling = (
        [(f"{n} tools", policies.many_tools(n), f"tool_{n - 1}") for n in (10, 100, 1000)]
        + [(f"{n} rules on one tool", policies.many_rules(n), "tool_0") for n in (1, 10, 100)]
        + [(f"{n} hidden globs", policies.many_hidden(n), "tool_0") for n in (1, 10, 100)]
    )
    progress = Progress(len(setups) * 6 + len(scaling) + 5)
    for setup in setups:
        command = setup.command(scratch)
        tool = policies.REALISTIC_TOOL if setup.realistic else "echo"
        with peer(command) as proc:
            progress.step(f"{setup.name}: sequential calls")
            make = partial(call_line, proc, tool, CHARGE)
            samples = sequential(proc, make, counts.sequential)
            for label, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                results.put(f"call latency {label} (µs)", setup.name, percentile(samples, p))
            progress.step(f"{setup.name}: pipelined calls")
            results.put(
                "pipelined calls per second",
                setup.name,
                pipelined(proc, make, counts.pipelined),
            )
            progress.step(f"{setup.name}: denied call")
            if setup.name != "allow-all":  # an allow-all policy denies nothing
                # Directly, the server answers the same call: the reference.
                tool = policies.DENIED_TOOL if setup.realistic else "echo"
                denied = sequential(proc, partial(call_line, proc, tool, {}), counts.denied)
                results.put("denied call p50 (µs)", setup.name, percentile(denied, 0.5))
            results.put("peak RSS, calls up to 1 KB (MB)", setup.name, proc.peak_rss_mb())
            progress.step(f"{setup.name}: 1 MB")
            results.put(
                "1 MB argument and result (ms)",
                setup.name,
                large(proc, 1024 * 1024, counts.large_1mb),
            )
            progress.step(f"{setup.name}: 10 MB")
            results.put(
                "10 MB argument and result (ms)",
                setup.name,
                large(proc, 10 * 1024 * 1024, counts.large_10mb),
            )
            results.put("peak RSS with 10 MB messages (MB)", setup.name, proc.peak_rss_mb())
        progress.step(f"{setup.name}: startup")
        results.put("startup to first answer (ms)", setup.name, startup(command, counts.startup))
    for label, policy, tool in scaling:
        progress.step(f"scaling: {label}")
        with peer(Setup(label.replace(" ", "-"), policy).command(scratch)) as proc:
            samples = sequential(proc, partial(call_line, proc, tool, {"n": 1}), counts.scaling)
        results.scaling[label] = {"p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99)}
    progress.step("direct, for the scaling table")
    with peer(SERVER) as proc:
        samples = sequential(proc, partial(call_line, proc, "tool_0", {"n": 1}), counts.scaling)
    results.scaling["direct"] = {"p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99)}
    results.http = measure_http(counts, scratch, progress)
    progress.end()
    return results


def render(results: Results) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mcpwall against the server alone (same machine, same workload)")
    table.add_column("metric")
    table.add_column("direct", justify="right")
    setups = [name for name in results.rows["call latency p50 (µs)"] if name != "direct"]
    for setup in setups:
        table.add_column(setup, justify="right")
        table.add_column("Δ", justify="right")
        table.add_column("ratio", justify="right")
    for metric, values in results.rows.items():
        direct = values["direct"]
        cells = [metric, _fmt(direct)]
        for setup in setups:
            value = values.get(setup)
            if value is None:
                cells += ["-", "-", "-"]
                continue
            ratio = f"{value / direct:.2f}" if direct else "-"
            cells += [_fmt(value), _fmt(value - direct, signed=True), ratio]
        table.add_row(*cells)
    scaling = Table(title="How the cost grows with the policy (added call latency, µs)")
    scaling.add_column("policy")
    scaling.add_column("p50", justify="right")
    scaling.add_column("added p50", justify="right")
    scaling.add_column("p99", justify="right")
    base = results.scaling["direct"]["p50"]
    for label, values in results.scaling.items():
        if label != "direct":
            scaling.add_row(
                label,
                _fmt(values["p50"]),
                _fmt(values["p50"] - base, signed=True),
                _fmt(values["p99"]),
            )
    http = Table(title="Over HTTP (sequential tools/call, one keep-alive connection, µs)")
    http.add_column("path")
    for column in ("p50", "added p50", "p99", "added p99"):
        http.add_column(column, justify="right")
    direct = results.http.get("direct (HTTP server)", {})
    for label, values in results.http.items():
        http.add_row(
            label,
            _fmt(values["p50"]),
            _fmt(values["p50"] - direct["p50"], signed=True),
            _fmt(values["p99"]),
            _fmt(values["p99"] - direct["p99"], signed=True),
        )
    console = Console(width=180, record=True)
    console.print(table)
    console.print(scaling)
    console.print(http)
    return console.export_text()


def _fmt(value: float, signed: bool = False) -> str:
    text = f"{value:+,.1f}" if signed else f"{value:,.1f}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=str(HERE / "results" / "latest.json"),
        help="where to write the figures (default: benchmarks/results/)",
    )
    ns = parser.parse_args()
    counts = Counts.quick() if ns.quick else Counts()
    with (
        tempfile.TemporaryDirectory(prefix="mcpwall-bench-") as scratch,
        redis_server(Path(scratch)) as redis_url,
    ):
        results = measure(counts, Path(scratch), redis_url)
    render(results)
    out = Path(ns.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "counts": counts.__dict__,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "rows": results.rows,
                "scaling": results.scaling,
                "http": results.http,
            },
            indent=2,
        )
    )
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
