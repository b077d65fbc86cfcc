"""Throughput with counters on: the realistic policy's counters in SQLite and in Redis,
pipelined and sequential, as ratios against the server alone in the same run.

With ``--baseline DIR`` (a checkout of another version's ``src``, e.g. main's), the same
setups also run that version's code, interleaved with this one's, so that a change is
compared with what it replaces on the same machine at the same hour:

    git archive main src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/throughput.py --baseline /tmp/base/src
    .venv/bin/python benchmarks/throughput.py --quick      # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import CHARGE, Setup, call_line, peer, percentile, pipelined, redis_server, sequential  # noqa: E402

import policies  # noqa: E402


@dataclass(frozen=True)
class Row:
    setup: str
    version: str  # "this", "baseline" or "-" for the server alone
    pipelined: float  # calls per second, the median of the rounds
    p50: float  # sequential call latency, µs
    p99: float
    cpu: float  # the process's own CPU time per sequential call, µs (not its server's)


def run(
    scratch: Path, redis_url: str | None, baseline: Path | None, calls: int, seq: int, rounds: int
) -> list[Row]:
    setups = [
        Setup("direct", None),
        Setup("allow-all", policies.ALLOW_ALL),
        Setup("realistic", policies.realistic()),
    ]
    if redis_url is not None:
        setups.append(Setup("realistic, Redis", policies.realistic(), ["--state-dsn", redis_url]))
    versions: list[tuple[str, Path | None]] = [("this", None)]
    if baseline is not None:
        versions.append(("baseline", baseline))
    rows = []
    for setup in setups:
        rows += measure(
            setup, versions if setup.policy else [("-", None)], scratch, calls, seq, rounds
        )
        print(f"  {setup.name} done", file=sys.stderr)
    return rows


def measure(
    setup: Setup,
    versions: list[tuple[str, Path | None]],
    scratch: Path,
    calls: int,
    seq: int,
    rounds: int,
) -> list[Row]:
    """Every version of the setup runs side by side, round by round in turn, so that
    a slow moment of the machine falls on all of them alike."""
    tool = policies.REALISTIC_TOOL if setup.realistic else "echo"
    with ExitStack() as stack:
        procs = []
        for version, src in versions:
            # A state of each version's own, so that neither inherits the other's counters.
            own = Setup(f"{setup.name}-{version}".replace(" ", "").replace(",", "-"), setup.policy)
            own.state = setup.state
            if own.state and own.state[0] == "--state-dsn":  # Redis: a key prefix each
                own.state = [*own.state, "--state-prefix", f"{version}:"]
            command = own.command(scratch)
            if src is not None:
                command = ["env", f"PYTHONPATH={src}", *command]
            procs.append(stack.enter_context(peer(command)))
        samples: list[list[float]] = [[] for _ in procs]
        rates: list[list[float]] = [[] for _ in procs]
        cpu = [0.0 for _ in procs]
        for _ in range(rounds):
            for index, proc in enumerate(procs):
                make = partial(call_line, proc, tool, CHARGE)
                before = cpu_seconds(proc.process.pid)
                samples[index] += sequential(proc, make, seq // rounds)
                cpu[index] += cpu_seconds(proc.process.pid) - before
                rates[index].append(pipelined(proc, make, calls))
    return [
        Row(
            setup.name,
            version,
            statistics.median(rates[index]),
            percentile(samples[index], 0.5),
            percentile(samples[index], 0.99),
            # The warm-up calls sequential() makes are in the CPU time too.
            cpu[index] / (len(samples[index]) + rounds * max(50, seq // rounds // 10)) * 1e6,
        )
        for index, (version, _) in enumerate(versions)
    ]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (its children's not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def render(rows: list[Row]) -> str:
    direct = next(row for row in rows if row.setup == "direct")
    lines = [
        "| setup | code | pipelined calls/s | ratio to direct | p50 µs | added p50 | p99 µs "
        "| CPU µs/call |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.setup} | {row.version} | {row.pipelined:,.0f} | "
            f"{row.pipelined / direct.pipelined:.2f} | {row.p50:.1f} | "
            f"{row.p50 - direct.p50:+.1f} | {row.p99:.1f} | {row.cpu:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--baseline", type=Path, help="another version's src directory")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    ns = parser.parse_args()
    calls, seq, rounds = (500, 200, 1) if ns.quick else (20000, 6000, 6)
    with (
        tempfile.TemporaryDirectory(prefix="mcpwall-throughput-") as scratch,
        redis_server(Path(scratch)) as redis_url,
    ):
        rows = run(Path(scratch), redis_url, ns.baseline, calls, seq, rounds)
    print(render(rows))
    if ns.json:
        Path(ns.json).write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
