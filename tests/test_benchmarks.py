"""A smoke run of the benchmark harness with small counts: it keeps working, and every
figure it promises comes out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def test_benchmark_harness_runs_and_reports_every_figure(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--json", str(out), "--also", "exec=env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Against the floor" in result.stdout
    figures = json.loads(out.read_text())
    setups = {"direct", "Python floor", "exec", "allow-all", "realistic"}
    if shutil.which("cc"):
        setups.add("floor")
    if shutil.which("redis-server"):
        setups.add("realistic, Redis")
    rows = figures["rows"]
    for metric in (
        "call latency p50 (µs)",
        "call latency p99 (µs)",
        "pipelined calls per second",
        "context switches per call",
        "1 MB argument and result (ms)",
        "10 MB argument and result (ms)",
        "startup to first answer (ms)",
        "peak RSS, calls up to 1 KB (MB)",
        "peak RSS with 10 MB messages (MB)",
    ):
        assert set(rows[metric]) == setups, metric
        assert all(value > 0 for value in rows[metric].values()), metric
    assert set(rows["denied call p50 (µs)"]) == setups - {"allow-all"}
    header, *ratios = figures["against_floor"]
    assert [row[0] for row in ratios] == [
        name for name in figures["setups"] if name not in ("direct", "floor")
    ]
    # mcpwall's own share: its added latency over the Python floor's, and its denial
    # against the bare server answering the same call.
    by_setup = {row[0]: dict(zip(header, row, strict=True)) for row in ratios}
    for column in ("÷ Python floor's", "denial RTT ÷ server's answer"):
        float(by_setup["realistic"][column])  # a figure (its sign is the machine's)
        assert by_setup["exec"][column] == "-", column
    # mcpwall's own code, timed inside it, for each direction of what it relays.
    code = figures["code_time"]
    assert set(code) == setups & {"allow-all", "realistic", "realistic, Redis"}
    for name, times in code.items():
        assert times["call p50"] > 0 and times["answer p50"] > 0, name
        assert ("denial p50" in times) == (name != "allow-all"), name
    assert set(figures["scaling"]) >= {"1000 tools", "100 rules on one tool", "100 hidden globs"}
    # CI installs the npm servers, so the start in front of a Node server is measured.
    assert set(figures["slow_startup"]) == {"direct", "allow-all"}
    assert all(value["median"] > 0 for value in figures["slow_startup"].values())
