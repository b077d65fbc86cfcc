"""Prometheus metrics on --metrics-port: calls and denials by tool, rule and decision,
calls and denials by token subject (under --auth), the decision latency, upstream
errors, store errors and reloads.

Tool names come from the agent: past MAX_TOOL_LABELS distinct names, the rest are counted
as "(other)", so that a flood of made-up names cannot grow the metrics without end. The
same holds for subjects, past MAX_SUBJECT_LABELS (a team's users, not the internet's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mcpwall.proxy.record import CallRecord

MAX_TOOL_LABELS = 256
MAX_SUBJECT_LABELS = 1000
_LATENCY_BUCKETS = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.01,
    0.1,
)


class Metrics:
    """An Observer of every judged call that serves what it saw over HTTP."""

    def __init__(self, port: int, bind: str, store_errors: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
        from prometheus_client.core import CounterMetricFamily

        self.registry = CollectorRegistry()
        self._calls = Counter(
            "mcpwall_calls",
            "tools/call requests judged",
            ["tool", "decision", "rule"],
            registry=self.registry,
        )
        self._subjects = Counter(
            "mcpwall_subject_calls",
            "tools/call requests judged, by the caller's token subject",
            ["subject", "decision"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mcpwall_decision_latency_seconds",
            "Time from receiving a tools/call to its decision",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._upstream = Counter(
            "mcpwall_upstream_errors",
            "Forwarded calls the server answered with an error",
            ["tool"],
            registry=self.registry,
        )
        self._noted = Counter(
            "mcpwall_events",
            "Approvals asked and answered, tool definitions changed, results redacted",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "mcpwall_policy_reloads", "Policy reloads", ["result"], registry=self.registry
        )

        class StoreErrors:
            def collect(self) -> Iterator[Any]:
                family = CounterMetricFamily(
                    "mcpwall_store_errors", "State store operations that failed"
                )
                family.add_metric([], store_errors())
                yield family

        self.registry.register(StoreErrors())  # type: ignore[arg-type]
        self._tools: set[str] = set()
        self._subject_names: set[str] = set()
        self.server, self.thread = start_http_server(port, addr=bind, registry=self.registry)

    def decided(self, session: str, record: CallRecord, size: int) -> None:
        verdict = "monitored" if record.monitored else ("allowed" if record.allowed else "denied")
        self._calls.labels(self._tool(record.tool), verdict, record.rule or "").inc()
        if record.subject is not None:
            self._subjects.labels(self._subject(record.subject), verdict).inc()
        self._latency.observe(record.latency_us / 1_000_000)

    def answered(self, session: str, record: CallRecord, error: str | None) -> None:
        if error is not None:
            self._upstream.labels(self._tool(record.tool)).inc()

    def noted(self, session: str, kind: str, fields: dict[str, Any]) -> None:
        outcome = fields.get("outcome")
        if kind == "tool_changed":
            outcome = "held" if fields.get("held") else "reported"
        self._noted.labels(kind, str(outcome or "")).inc()

    def reloaded(self, ok: bool, policy_digest: str, errors: list[str]) -> None:
        self.reloads.labels("ok" if ok else "refused").inc()

    def _tool(self, name: str) -> str:
        return _bounded(self._tools, name, MAX_TOOL_LABELS)

    def _subject(self, name: str) -> str:
        return _bounded(self._subject_names, name, MAX_SUBJECT_LABELS)

    def close(self) -> None:
        self.server.shutdown()


def _bounded(seen: set[str], name: str, limit: int) -> str:
    """The label for ``name``: itself while fewer than ``limit`` names are in use."""
    if name in seen:
        return name
    if len(seen) < limit:
        seen.add(name)
        return name
    return "(other)"
