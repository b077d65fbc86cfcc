"""OpenTelemetry traces: one span for each judged call, sent over OTLP/HTTP.

Traces are on only when an endpoint is given (``--otlp-endpoint``, or the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT); otherwise this module
is never imported past ``traces_url`` and the OpenTelemetry SDK is not loaded at all, so
a run without traces pays nothing for them.

A span starts when the call arrived and ends with its decision (a denial), or with the
server's answer (a forwarded call). It carries the decision, the rule, the reason, the
step, the store time and the session, never the arguments: they are the agent's data and
may hold secrets, and a trace backend is rarely guarded like the audit log.

An agent's trace context is continued: the W3C ``traceparent``/``tracestate`` in the
call's ``params._meta`` (as MCP SDKs put it), else in the HTTP request's headers. The
forwarded message is left as the agent sent it: mcpwall forwards the agent's own bytes
without parsing them again, and rewriting ``_meta`` on every call would cost that and
change what the server receives. So a server that traces continues the agent's span,
and mcpwall's span sits beside the server's under the same parent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcpwall.proxy.record import CallRecord

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

log = logging.getLogger("mcpwall")

SPAN_NAME = "mcpwall tools/call"
# Spans of calls still waiting for the server's answer; past this many (answers that
# never come), further calls get a span that ends with the decision.
MAX_OPEN_SPANS = 10_000


def traces_url(option: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """Where spans go: ``--otlp-endpoint``, else what the standard variables say; None
    when traces are off. A base URL (as OTEL_EXPORTER_OTLP_ENDPOINT is) gets the
    signal's path, /v1/traces; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken whole."""
    if option:
        return _with_traces_path(option)
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    whole = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if whole:
        return whole
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return _with_traces_path(base) if base else None


def _with_traces_path(url: str) -> str:
    if urlsplit(url).path.rstrip("/").endswith("/v1/traces"):
        return url
    return url.rstrip("/") + "/v1/traces"


class Tracing:
    """An Observer of every judged call that exports a span for each."""

    def __init__(self, url: str) -> None:
        # Imported here: a run without traces never loads the SDK.
        from opentelemetry.context import Context
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from mcpwall import __version__

        attributes = {"service.version": __version__}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "mcpwall"
        # A provider of our own, not the global one: nothing else in the process (the
        # MCP SDK's own spans) is exported through it.
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self._tracer = self._provider.get_tracer("mcpwall", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._kind = SpanKind.SERVER
        self._no_parent = Context()
        self._open: dict[CallRecord, Span] = {}
        self.url = url

    def decided(self, session: str, record: CallRecord, size: int) -> None:
        latency_ns = int(record.latency_us * 1000)
        attributes: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": record.tool,
            "mcp.session.id": session,
            "mcpwall.decision_time_us": record.latency_us,
            "mcpwall.policy.sha256": record.policy_digest,
        }
        if record.request_id is not None:
            attributes["jsonrpc.request.id"] = str(record.request_id)
        if record.store_us:
            attributes["mcpwall.store_time_us"] = record.store_us
        span = self._tracer.start_span(
            SPAN_NAME,
            context=self._parent(record),
            kind=self._kind,
            attributes=attributes,
            start_time=time.time_ns() - latency_ns,
        )
        _set_verdict(span, record)
        if record.allowed and len(self._open) < MAX_OPEN_SPANS:
            self._open[record] = span  # ends with the answer
        else:
            span.end()

    def answered(self, session: str, record: CallRecord, error: str | None) -> None:
        span = self._open.pop(record, None)
        if span is None:
            return
        _set_verdict(span, record)  # a call held for approval may have been denied since
        if record.approval_outcome is not None:
            span.set_attribute("mcpwall.approval", record.approval_outcome.value)
        if record.redacted:
            span.set_attribute("mcpwall.redacted", sum(record.redacted.values()))
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def noted(self, session: str, kind: str, fields: dict[str, Any]) -> None:
        pass

    def reloaded(self, ok: bool, policy_digest: str, errors: list[str]) -> None:
        pass

    def close(self) -> None:
        """End the spans still open and send what is buffered (the exit waits for it,
        up to the exporter's timeout)."""
        for span in self._open.values():
            span.set_attribute("mcpwall.unanswered", True)
            span.end()
        self._open.clear()
        self._provider.shutdown()

    def _parent(self, record: CallRecord) -> Context:
        """The agent's trace context: from ``_meta``, else from the HTTP headers; else an
        empty context, so that the span starts a trace of its own."""
        for carrier in (record.meta, record.headers):
            if type(carrier) is dict and type(carrier.get("traceparent")) is str:
                fields = {
                    key: carrier[key]
                    for key in ("traceparent", "tracestate")
                    if type(carrier.get(key)) is str
                }
                return self._propagator.extract(fields)
        return self._no_parent


def _set_verdict(span: Span, record: CallRecord) -> None:
    verdict = record.verdict
    decision = "monitored" if verdict.monitored else "allow" if verdict.allowed else "deny"
    span.set_attribute("mcpwall.decision", decision)
    if verdict.rule is not None:
        span.set_attribute("mcpwall.rule", verdict.rule)
    if verdict.reason is not None:
        span.set_attribute("mcpwall.reason", verdict.reason)
    if verdict.step is not None:
        span.set_attribute("mcpwall.step", verdict.step.value)
    if verdict.retry_after_s is not None:
        span.set_attribute("mcpwall.retry_after_s", verdict.retry_after_s)
