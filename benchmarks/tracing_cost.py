"""What traces cost per call, in process: the relay's Session fed with tools/call
messages and the server's answers (no I/O, the audit log on as by default), with no
trace endpoint and with one, against another version's code (``--baseline``, e.g. main's
``src``) run the same way in turn, so that the figure for "no endpoint" is the
difference that tracing's hooks make when traces are off:

    git archive main src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/tracing_cost.py --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import policies  # noqa: E402

CHARGE = {"amount": 1, "currency": "usd", "description": "order 1234", "customer": "cus_1"}
# An endpoint nothing listens on: spans are made and queued as they would be, and the
# exporter's thread fails to send them off the event loop.
NOWHERE = "http://127.0.0.1:9/v1/traces"


def worker(setup: str, traced: bool, calls: int, rounds: int) -> float:
    """The best round's µs per call (its message in, its answer back)."""
    from mcpwall.engine.gate import Gate
    from mcpwall.ops.audit import AuditLog
    from mcpwall.policy import load_policy
    from mcpwall.proxy.relay import Session
    from mcpwall.state.memory import MemoryStore

    scratch = Path(tempfile.mkdtemp())
    path = scratch / "policy.yaml"
    path.write_text(policies.realistic() if setup == "realistic" else policies.ALLOW_ALL)
    policy = load_policy(str(path))
    store = MemoryStore()
    gate = Gate(lambda: store)
    observers: list[object] = [AuditLog(scratch / "events")]
    if traced:
        from mcpwall.ops.tracing import Tracing

        logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
        observers.append(Tracing(NOWHERE))
    session = Session("bench", lambda: policy, gate, lambda _: None, lambda *_: None, observers)  # type: ignore[arg-type]
    tool = policies.REALISTIC_TOOL if setup == "realistic" else "echo"
    best = float("inf")
    next_id = 0
    for _ in range(rounds):
        lines = []
        for _ in range(calls):
            next_id += 1
            params = {"name": tool, "arguments": CHARGE}
            call = {"jsonrpc": "2.0", "id": next_id, "method": "tools/call", "params": params}
            answer = {"jsonrpc": "2.0", "id": next_id, "result": {"content": []}}
            lines.append((json.dumps(call).encode(), json.dumps(answer).encode()))
        started = time.perf_counter_ns()
        for call_line, answer_line in lines:
            session.read_start()  # as stdio reads: one message a read
            session.from_client(call_line)
            session.read_end()
            session.from_server(answer_line)
        best = min(best, (time.perf_counter_ns() - started) / calls / 1000)
    return best


def run_worker(src: Path | None, setup: str, traced: bool, calls: int, rounds: int) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, __file__, "--worker", setup, "--calls", str(calls)]
    command += ["--rounds", str(rounds)] + (["--traced"] if traced else [])
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="another version's src directory")
    parser.add_argument("--repeats", type=int, default=7, help="processes per version")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", choices=["allow-all", "realistic"], help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        print(worker(ns.worker, ns.traced, ns.calls, ns.rounds))
        return 0
    print("| setup | code | µs per call (median of processes) | Δ |")
    print("|---|---|---:|---:|")
    for setup in ("allow-all", "realistic"):
        versions: list[tuple[str, Path | None, bool]] = [("this, no endpoint", None, False)]
        if ns.baseline is not None:
            versions.insert(0, ("baseline", ns.baseline, False))
        versions.append(("this, traced", None, True))
        figures: dict[str, list[float]] = {name: [] for name, _, _ in versions}
        for _ in range(ns.repeats):  # in turn, so that slow moments fall on all alike
            for name, src, traced in versions:
                figures[name].append(run_worker(src, setup, traced, ns.calls, ns.rounds))
        first = statistics.median(figures[versions[0][0]])
        for name, _, _ in versions:
            value = statistics.median(figures[name])
            print(f"| {setup} | {name} | {value:.2f} | {value - first:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
