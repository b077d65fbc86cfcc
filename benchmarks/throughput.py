"""Throughput with counters on: the realistic policy's counters in SQLite and in Redis,
pipelined and sequential, as ratios against the server alone in the same run.

The same setups also run another version's code (``--baseline REF``, a git ref checked
out in a worktree for the run; by default the last commit before group commit), round by
round in turn with this one's, so that a change is compared with what it replaces on the
same machine at the same hour. Every process is started afresh in each round: where the
scheduler places a process changes its round trip several times over on a shared VM.

    .venv/bin/python benchmarks/throughput.py              # the full run (minutes)
    .venv/bin/python benchmarks/throughput.py --baseline main
    .venv/bin/python benchmarks/throughput.py --quick      # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from run import CHARGE, Setup, call_line, peer, percentile, pipelined, redis_server, sequential  # noqa: E402

import policies  # noqa: E402

# The last commit before group commit: each call its own store transaction.
BEFORE_GROUP_COMMIT = "5b8c7ba"


@dataclass(frozen=True)
class Row:
    setup: str
    version: str  # "this", "baseline" or "-" for the server alone
    pipelined: float  # calls per second, the median of the rounds
    p50: float  # sequential call latency, µs
    p99: float
    cpu: float  # the process's own CPU time per sequential call, µs (not its server's)
    pipelined_cpu: float  # the same, per pipelined call


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
    """Every version of the setup runs side by side, round by round in turn (the order
    rotating), each in a process of its own started for the round, so that a slow
    moment of the machine, or a process placed badly, falls on all of them alike."""
    tool = policies.REALISTIC_TOOL if setup.realistic else "echo"
    commands = [version_command(setup, version, src, scratch) for version, src in versions]
    samples: list[list[float]] = [[] for _ in versions]
    rates: list[list[float]] = [[] for _ in versions]
    cpu = [0.0 for _ in versions]
    pipelined_cpu = [0.0 for _ in versions]
    warm = max(50, seq // rounds // 10)
    for round_index in range(rounds):
        order = list(range(len(versions)))
        shift = round_index % len(order)
        for index in order[shift:] + order[:shift]:
            with peer(commands[index]) as proc:
                make = partial(call_line, proc, tool, CHARGE)
                before = cpu_seconds(proc.process.pid)
                samples[index] += sequential(proc, make, seq // rounds)
                cpu[index] += cpu_seconds(proc.process.pid) - before
                before = cpu_seconds(proc.process.pid)
                rates[index].append(pipelined(proc, make, calls))
                pipelined_cpu[index] += cpu_seconds(proc.process.pid) - before
    return [
        Row(
            setup.name,
            version,
            statistics.median(rates[index]),
            percentile(samples[index], 0.5),
            percentile(samples[index], 0.99),
            # The warm-up calls sequential() makes are in the CPU time too.
            cpu[index] / (len(samples[index]) + rounds * warm) * 1e6,
            pipelined_cpu[index] / (rounds * calls) * 1e6,
        )
        for index, (version, _) in enumerate(versions)
    ]


def version_command(setup: Setup, version: str, src: Path | None, scratch: Path) -> list[str]:
    """The setup's command for one version, with a state of the version's own, so that
    neither inherits the other's counters (it persists across the rounds, as it would)."""
    own = Setup(f"{setup.name}-{version}".replace(" ", "").replace(",", "-"), setup.policy)
    own.state = setup.state
    if own.state and own.state[0] == "--state-dsn":  # Redis: a key prefix each
        own.state = [*own.state, "--state-prefix", f"{version}:"]
    command = own.command(scratch)
    return command if src is None else ["env", f"PYTHONPATH={src}", *command]


@contextmanager
def checkout(ref: str, scratch: Path) -> Iterator[Path]:
    """A git worktree of ``ref`` for the run, byte-compiled as an install would be; its
    ``src`` directory."""
    where = scratch / "baseline"
    git = ["git", "-C", str(REPO)]
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(where), ref], check=True)
    try:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(where / "src")], check=True)
        yield where / "src"
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(where)], check=False)


def cpu_seconds(pid: int) -> float:
    """CPU time of all a process's threads so far, to the nanosecond (not its children's)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def render(rows: list[Row]) -> str:
    direct = next(row for row in rows if row.setup == "direct")
    lines = [
        "| setup | code | pipelined calls/s | ratio to direct | p50 µs | added p50 | p99 µs "
        "| CPU µs/call | CPU µs/call pipelined |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.setup} | {row.version} | {row.pipelined:,.0f} | "
            f"{row.pipelined / direct.pipelined:.2f} | {row.p50:.1f} | "
            f"{row.p50 - direct.p50:+.1f} | {row.p99:.1f} | {row.cpu:.1f} | "
            f"{row.pipelined_cpu:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--baseline",
        default=BEFORE_GROUP_COMMIT,
        help=f"the git ref to compare with (default {BEFORE_GROUP_COMMIT}); 'none': no baseline",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    ns = parser.parse_args()
    calls, seq, rounds = (500, 200, 1) if ns.quick else (20000, 6000, 6)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcpwall-tp-")))
        redis_url = stack.enter_context(redis_server(scratch))
        base = None
        if ns.baseline != "none":
            base = stack.enter_context(checkout(ns.baseline, scratch))
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)
        rows = run(scratch, redis_url, base, calls, seq, rounds)
    print(render(rows))
    if ns.json:
        Path(ns.json).write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
