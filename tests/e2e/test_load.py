"""Load: 10,000 calls pipelined on stdio through mcpwall as a process, with a realistic
policy (a rate limit and a spend counter in the SQLite file, a denied tool, the audit
log on). Every request gets exactly one response, its own (the echoed argument says
which request it answers), and mcpwall's memory stays flat.

A first round of as many calls brings caches, the allocator's pools and the audit
log's batches to their working size; the second round must then leave the resident
memory where it found it: a leak of a few hundred bytes a call would show. The figures
(calls, time, resident memory at the start, before, at peak and after the second round)
are printed: `pytest -s tests/e2e/test_load.py`. No speed is asserted; the benchmarks
measure it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import server_cmd
from tests.helpers import RawProxy, call, initialize, received_calls, rss_mb

POLICY = """
version: "1"
tools:
  echo:
    rules:
      - rate_limit: {max: 1000000, window: 3600}
      - name: spend
        conditions: [{path: state.echo.spent, op: lte, value: 1000000000}]
        state: {counter: spent, window: day, increment_from: args.n}
  pods_delete:
    rules:
      - {action: deny, reason: "no pod deletion"}
"""
CALLS = 10_000
WARM_UP = CALLS
RSS_GROWTH_LIMIT_MB = 12  # allocator noise is within 6 MiB; a leak of 1.2 kB a call is not


def pipeline(proxy: RawProxy, first: int, count: int) -> dict[int, dict[str, object]]:
    """Send ``count`` calls without waiting, every tenth one denied; their answers by id."""
    lines = b"".join(
        json.dumps(call(n, "pods_delete" if n % 10 == 0 else "echo", {"n": n})).encode() + b"\n"
        for n in range(first, first + count)
    )
    assert proxy.process.stdin is not None
    writer = threading.Thread(target=proxy.send, args=(lines,), daemon=True)
    writer.start()
    answers: dict[int, dict[str, object]] = {}
    for _ in range(count):
        message = proxy.recv(timeout=60)
        assert message["id"] not in answers, f"answered twice: {message['id']}"
        answers[message["id"]] = message
    writer.join(timeout=10)
    proxy.no_more()
    return answers


def test_ten_thousand_pipelined_calls_one_answer_each_and_flat_memory(
    raw_proxy: Callable[..., RawProxy],
    write_policy: Callable[..., Path],
    wire: Path,
    tmp_path: Path,
) -> None:
    proxy = raw_proxy(
        write_policy(POLICY),
        server_cmd("raw_recorder.py"),
        "--state-dir",
        str(tmp_path / "state"),
        "--events-dir",
        str(tmp_path / "events"),
    )
    initialize(proxy)
    start = rss_mb(proxy.process.pid)
    pipeline(proxy, 1, WARM_UP)
    before = rss_mb(proxy.process.pid)
    peak = before
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.wait(0.02):
            peak = max(peak, rss_mb(proxy.process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    answers = pipeline(proxy, WARM_UP + 1, CALLS)
    elapsed = time.monotonic() - started
    sampling.set()
    sampler.join(timeout=5)
    after = rss_mb(proxy.process.pid)
    print(
        f"\nload: {CALLS} pipelined calls in {elapsed:.2f} s ({CALLS / elapsed:.0f}/s); "
        f"mcpwall RSS at the start {start:.1f} MiB, after the first round {before:.1f} MiB, "
        f"peak {peak:.1f} MiB, after {after:.1f} MiB"
    )

    assert sorted(answers) == list(range(WARM_UP + 1, WARM_UP + 1 + CALLS))
    for number, message in answers.items():
        result = message["result"]
        assert isinstance(result, dict)
        if number % 10 == 0:
            assert result["isError"] is True, message
        else:
            assert result["structuredContent"] == {"name": "echo", "arguments": {"n": number}}
    denied_total = (WARM_UP + CALLS) // 10
    assert received_calls(wire).count("echo") == WARM_UP + CALLS - denied_total
    assert "pods_delete" not in received_calls(wire)
    assert after - before < RSS_GROWTH_LIMIT_MB
    assert peak - before < RSS_GROWTH_LIMIT_MB
    proxy.close_stdin()
    assert proxy.wait() == 0
