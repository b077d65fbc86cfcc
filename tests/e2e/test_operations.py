"""Operations, end to end: the audit log, `mcpwall status`, hot reload and metrics, with
mcpwall as a real process in front of the raw recorder server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MCPWALL, server_cmd
from tests.helpers import RawProxy, call, initialize, wait_for

POLICY_A = """
version: "1"
tools:
  pods_delete:
    rules:
      - {name: rule-a, action: deny, reason: reason-a}
  echo:
    rules:
      - name: refunds
        conditions: [{path: state.echo.count, op: lte, value: 1000}]
        state: {counter: count, window: day}
"""
POLICY_B = POLICY_A.replace("rule-a", "rule-b").replace("reason-a", "reason-b")


def events(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines()]
    return found


def whole_lines(directory: Path) -> list[dict[str, Any]]:
    """``events``, without a last line still being written."""
    found = []
    for path in sorted(directory.glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().split("\n")[:-1]]
    return found


def decisions(directory: Path) -> list[dict[str, Any]]:
    return [event for event in events(directory) if event["type"] == "decision"]


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    return tmp_path / "events"


def start(
    raw_proxy: Callable[..., RawProxy], policy: Path, events_dir: Path, *flags: str
) -> RawProxy:
    proxy = raw_proxy(
        policy,
        server_cmd("raw_recorder.py"),
        "--events-dir",
        str(events_dir),
        "--state-dsn",
        "memory:",
        *flags,
    )
    initialize(proxy)
    return proxy


def test_every_call_gives_one_decision_record(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    proxy = start(raw_proxy, write_policy(POLICY_A), events_dir)
    sent = 600
    for number in range(sent):  # pipelined: written without waiting
        tool = ("echo", "pods_delete", "fail", "iserror")[number % 4]
        proxy.send(call(number, tool, {"n": number, "who": "agent"}))
    replies = [proxy.recv() for _ in range(sent)]
    assert sorted(reply["id"] for reply in replies) == list(range(sent))
    proxy.close_stdin()
    assert proxy.wait() == 0
    records = decisions(events_dir)
    assert len(records) == sent
    by_id = {record["request_id"]: record for record in records}
    assert set(by_id) == set(range(sent))
    first = by_id[0]
    canonical = json.dumps({"n": 0, "who": "agent"}, sort_keys=True, separators=(",", ":"))
    assert first["args_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert first["decision"] == "allowed" and first["upstream_error"] is None
    assert first["latency_us"] > 0 and first["session"] and first["instance"]
    assert "args" not in first  # only with --log-args
    denied = by_id[1]
    assert (denied["decision"], denied["rule"], denied["reason"]) == (
        "denied",
        "rule-a",
        "reason-a",
    )
    assert by_id[2]["upstream_error"] == "error -32603: the tool failed"
    assert by_id[3]["upstream_error"] == "tool error: no"
    kinds = [event["type"] for event in events(events_dir)]
    assert kinds[0] == "startup" and kinds[-1] == "shutdown"
    startup = events(events_dir)[0]
    assert startup["policy_sha256"] == first["policy_sha256"]
    assert startup["version"] and startup["transport"] == "stdio"


def test_arguments_of_every_size_are_hashed_alike(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    # Small arguments are hashed with their batch, larger ones on the loop once the call
    # is on its way, the largest by the audit thread: the digest must not tell which.
    from mcpwall.ops.audit import DIGEST_AWAY_BYTES, HOLD_BYTES

    proxy = start(raw_proxy, write_policy(POLICY_A), events_dir)
    sizes = [10, HOLD_BYTES * 2, DIGEST_AWAY_BYTES + 1000, DIGEST_AWAY_BYTES * 4]
    sent = {}
    for number, size in enumerate(sizes * 2):
        tool = "echo" if number < len(sizes) else "pods_delete"  # allowed, then denied
        sent[number] = {"z": "x" * size, "a": [number, {"é": "✓" * (size // 10)}]}
        proxy.send(call(number, tool, sent[number]))
    assert sorted(proxy.recv()["id"] for _ in sent) == sorted(sent)
    proxy.close_stdin()
    assert proxy.wait() == 0
    for record in decisions(events_dir):
        args = sent[record["request_id"]]
        canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["args_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert len(decisions(events_dir)) == len(sent)


def test_log_args_redacts_secrets(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    proxy = start(raw_proxy, write_policy(POLICY_A), events_dir, "--log-args")
    proxy.request(
        call(
            1,
            "echo",
            {
                "namespace": "web",
                "password": "hunter2",
                "headers": {"Authorization": "x"},
                "note": "use Bearer abcdefghijklmnop please",
                "key": "AKIAABCDEFGHIJKLMNOP",
            },
        )
    )
    proxy.close_stdin()
    proxy.wait()
    logged = decisions(events_dir)[0]["args"]
    assert logged == {
        "namespace": "web",
        "password": "[redacted]",
        "headers": {"Authorization": "[redacted]"},
        "note": "[redacted]",
        "key": "[redacted]",
    }
    assert "hunter2" not in "".join(p.read_text() for p in events_dir.glob("*.jsonl"))


def test_kill_9_leaves_whole_lines_and_status_reads_them(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
    home: Path,
) -> None:
    proxy = start(raw_proxy, write_policy(POLICY_A), events_dir)
    for number in range(200):
        proxy.send(call(number, "pods_delete" if number % 2 else "echo"))
    for _ in range(200):
        proxy.recv()
    # Killed once every record is in a file, so that status has all of them to read.
    wait_for(
        lambda: sum(e["type"] == "decision" for e in whole_lines(events_dir)) == 200,
        what="200 decisions in the files",
    )
    proxy.process.send_signal(signal.SIGKILL)
    proxy.wait()
    for path in events_dir.glob("*.jsonl"):
        data = path.read_bytes()
        assert data.endswith(b"\n")
        assert all(json.loads(line) for line in data.splitlines())
    status = subprocess.run(
        [MCPWALL, "status", "--events-dir", str(events_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    summary = json.loads(status.stdout)
    assert summary["calls"] == 200 and summary["denials"] == 100
    assert summary["instances"][0]["status"] == "dead"  # killed: no shutdown record
    assert summary["denials_by_rule"] == [["rule-a", 100]]
    assert summary["recent_denials"][0]["reason"] == "reason-a"
    text = subprocess.run(
        [MCPWALL, "status", "--events-dir", str(events_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert "200 calls, 100 denied (50.0%)" in text.stdout
    assert "Latest denials" in text.stdout and "reason-a" in text.stdout


def test_old_audit_files_are_pruned(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    events_dir.mkdir()
    old = events_dir / "old.jsonl"
    old.write_text('{"type": "startup"}\n')
    eight_days = time.time() - 8 * 86400
    os.utime(old, (eight_days, eight_days))
    kept = events_dir / "recent.jsonl"
    kept.write_text('{"type": "startup"}\n')
    start(raw_proxy, write_policy(POLICY_A), events_dir)
    assert not old.exists() and kept.exists()


def test_hot_reload_applies_keeps_counters_and_refuses_bad_edits(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    policy = write_policy(POLICY_A.replace("1000", "3"))
    proxy = start(raw_proxy, policy, events_dir)
    assert (
        proxy.request(call(1, "pods_delete"))["result"]["_meta"]["mcpwall/decision"]["rule"]
        == "rule-a"
    )
    assert [_allowed(proxy.request(call(n, "echo"))) for n in (2, 3)] == [True, True]

    # An editor that saves by writing a new file and renaming it over the old one.
    fresh = policy.with_suffix(".tmp")
    fresh.write_text(POLICY_B.replace("1000", "3").lstrip())
    os.replace(fresh, policy)
    wait_for(lambda: "reloaded the policy" in proxy.stderr)
    assert (
        proxy.request(call(4, "pods_delete"))["result"]["_meta"]["mcpwall/decision"]["rule"]
        == "rule-b"
    )
    # The counter went on across the reload: 2 used, 1 left of 3.
    assert [_allowed(proxy.request(call(n, "echo"))) for n in (5, 6)] == [True, False]

    policy.write_text('version: "1"\ntools:\n  echo:\n    rules:\n      - {action: maybe}\n')
    wait_for(lambda: "does not validate" in proxy.stderr)
    wait_for(lambda: f"{policy}:5:18: tools.echo.rules[0]: action must be" in proxy.stderr)
    assert (
        proxy.request(call(7, "pods_delete"))["result"]["_meta"]["mcpwall/decision"]["rule"]
        == "rule-b"
    )
    proxy.close_stdin()
    proxy.wait()
    reloads = [event for event in events(events_dir) if event["type"] == "reload"]
    assert [event["ok"] for event in reloads] == [True, False]
    assert reloads[1]["errors"] and reloads[1]["errors"][0].startswith(f"{policy}:5:18:")


def test_reload_during_calls_never_mixes_two_policies(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    policy = write_policy(POLICY_A)
    digests = {
        hashlib.sha256(text.lstrip().encode()).hexdigest(): text for text in (POLICY_A, POLICY_B)
    }
    proxy = start(raw_proxy, policy, events_dir)
    # Each batch of calls is sent right after the policy file changes, so that the reload
    # lands among them; the next batch waits for that reload's record.
    for batch in range(20):
        fresh = policy.with_suffix(".tmp")
        fresh.write_text((POLICY_B if batch % 2 == 0 else POLICY_A).lstrip())
        os.replace(fresh, policy)
        for number in range(50):
            proxy.send(call(batch * 50 + number, "pods_delete"))
        for _ in range(50):
            proxy.recv()
        wait_for(
            lambda batch=batch: sum(e["type"] == "reload" for e in whole_lines(events_dir)) > batch,
            what="the reload's record",
        )
    proxy.close_stdin()
    proxy.wait()
    records = decisions(events_dir)
    assert len(records) == 1000
    seen = set()
    for record in records:
        text = digests[record["policy_sha256"]]  # judged by one version, named in full
        letter = "a" if text is POLICY_A else "b"
        assert (record["rule"], record["reason"]) == (f"rule-{letter}", f"reason-{letter}")
        seen.add(letter)
    assert seen == {"a", "b"}  # the policy really changed under the calls


def test_metrics_match_the_calls_made(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    events_dir: Path,
) -> None:
    port = _free_port()
    proxy = start(raw_proxy, write_policy(POLICY_A), events_dir, "--metrics-port", str(port))
    for number in range(30):
        proxy.request(call(number, "echo"))
    for number in range(30, 40):
        proxy.request(call(number, "pods_delete"))
    for number in range(40, 45):
        proxy.request(call(number, "fail"))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    samples = _samples(text)
    assert samples['mcpwall_calls_total{decision="allowed",rule="",tool="echo"}'] == 30
    assert samples['mcpwall_calls_total{decision="denied",rule="rule-a",tool="pods_delete"}'] == 10
    assert samples['mcpwall_calls_total{decision="allowed",rule="",tool="fail"}'] == 5
    assert samples['mcpwall_upstream_errors_total{tool="fail"}'] == 5
    assert samples["mcpwall_decision_latency_seconds_count"] == 45
    assert samples["mcpwall_store_errors_total"] == 0


def _allowed(reply: dict[str, Any]) -> bool:
    return not reply["result"].get("isError")


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
