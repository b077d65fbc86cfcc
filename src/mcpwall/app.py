"""The composition root: policy, state store, engine, operations and transport wired
together."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcpwall.engine.gate import Gate
from mcpwall.engine.pins import PinBook
from mcpwall.ops.reload import PolicyHolder, PolicyWatcher
from mcpwall.proxy.approval import Seal
from mcpwall.proxy.child import ServerProcess
from mcpwall.proxy.framing import DEFAULT_MAX_MESSAGE
from mcpwall.proxy.link import LinkEvents, ServerLink
from mcpwall.proxy.record import Observer
from mcpwall.proxy.relay import Deliver, Send, Session
from mcpwall.proxy.stdio import StdioProxy
from mcpwall.proxy.tools import ToolView
from mcpwall.state.options import StateOptions

if TYPE_CHECKING:
    from mcpwall.ops.tracing import Tracing
    from mcpwall.policy import Policy
    from mcpwall.proxy.http import ListenerOptions
    from mcpwall.proxy.spawn import Spawned

log = logging.getLogger("mcpwall")


@dataclass(frozen=True, slots=True)
class OpsOptions:
    """The audit log, metrics and traces, as the command line asks for them."""

    events_dir: str | None = None
    log_args: bool = False
    retention_days: float = 7.0
    metrics_port: int | None = None
    metrics_bind: str = "127.0.0.1"
    otlp_endpoint: str | None = None


class Operations:
    """The audit log, the metrics and the traces, as far as they could be opened."""

    def __init__(self, options: OpsOptions, gate: Gate) -> None:
        from mcpwall.ops.audit import AuditLog, default_events_dir
        from mcpwall.ops.tracing import Tracing, traces_url

        self.audit: AuditLog | None = None
        directory = Path(options.events_dir) if options.events_dir else default_events_dir()
        try:
            self.audit = AuditLog(directory, options.log_args, options.retention_days)
        except OSError as exc:
            log.error("no audit log: cannot write to %s: %s", directory, exc)
        self.metrics: Any = None
        if options.metrics_port is not None:
            from mcpwall.ops.metrics import Metrics

            self.metrics = Metrics(
                options.metrics_port, options.metrics_bind, lambda: gate.store_errors
            )
            log.info("metrics on http://%s:%d/metrics", options.metrics_bind, options.metrics_port)
        self.tracing: Tracing | None = None
        url = traces_url(options.otlp_endpoint)
        if url is not None:
            try:
                self.tracing = Tracing(url)
                log.info("traces to %s", url)
            except ImportError:
                log.error("no traces: they need the otel extra, pip install 'mcpwall[otel]'")

    @property
    def observers(self) -> list[Observer]:
        found: list[Observer] = []
        for observer in (self.audit, self.metrics, self.tracing):
            if observer is not None:
                found.append(observer)
        return found

    def reloaded(self, ok: bool, digest: str, errors: list[str]) -> None:
        for sink in (self.audit, self.metrics):
            if sink is not None:
                sink.reloaded(ok, digest, errors)

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.tracing is not None:
            self.tracing.close()


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the server is: a command to run, or the URL of a remote one."""

    command: list[str]
    url: str | None = None
    headers: dict[str, str] | None = None
    name: str | None = None  # what its tools are pinned under (--server-name)

    def describe(self) -> str:
        return self.url or " ".join(self.command)

    def tool_view(self, gate: Gate, state: StateOptions) -> ToolView:
        """What every session with this server learns of its tools, shared."""
        pins = PinBook(gate.store, self.name or self.describe(), gate.prefix)
        return ToolView(pins, state.fail_open)

    def link(
        self,
        events: LinkEvents,
        max_message: int,
        client_headers: dict[str, str] | None = None,
        spawned: Spawned | None = None,
    ) -> ServerLink:
        if self.url is not None:
            from mcpwall.proxy.http_upstream import HttpUpstream

            return HttpUpstream(self.url, self.headers or {}, events, client_headers)
        return ServerProcess(self.command, events, max_message, spawned)


class _Run:
    """What one mcpwall process runs with, whatever its transport: the policy (reloaded
    when its file changes), the engine and its store, the audit log and the metrics, and
    the sessions, which share what they learn of the server's tools and one approval
    seal (a 2026-07-28 retry may come on any connection)."""

    def __init__(
        self,
        policy_path: str,
        policy: Policy,
        upstream: Upstream,
        state: StateOptions,
        ops_options: OpsOptions,
        call_timeout: float | None,
        identified: bool = False,
    ) -> None:
        self.policy_path = policy_path
        self.upstream = upstream
        self.state = state
        self.holder = PolicyHolder(policy)
        for warning in self.holder.current.warnings:
            log.warning("%s", warning)
        if not identified and self.holder.current.reads_identity:
            log.warning(
                "the policy has rules per user (scope: user) or on token claims (claims.*), "
                "and no call here carries a token (that takes --transport http --auth): "
                "those rules deny every call they apply to"
            )
        self.gate = state.gate()
        self.ops = Operations(ops_options, self.gate)
        self.watcher = PolicyWatcher(self.holder, self.ops.reloaded)
        self._call_timeout = call_timeout
        self._tools = upstream.tool_view(self.gate, state)
        self._seal = Seal()

    @property
    def mode(self) -> str:
        return "monitor mode (nothing is blocked)" if self.holder.current.monitor else "enforcing"

    def new_session(self, label: str, to_server: Send, to_client: Deliver) -> Session:
        return Session(
            label,
            self.holder,
            self.gate,
            to_server,
            to_client,
            self.ops.observers,
            self._call_timeout,
            self._tools,
            self._seal,
        )

    def record_startup(self, transport: str, **fields: Any) -> None:
        if self.ops.audit is not None:
            self.ops.audit.startup(
                policy=str(Path(self.policy_path).resolve()),
                policy_sha256=self.holder.current.digest,
                upstream=self.upstream.describe(),
                transport=transport,
                **fields,
                state=self.state.describe(),
                fail_mode="open" if self.state.fail_open else "closed",
            )

    def run(self, serve: Callable[[], Coroutine[Any, Any, int]]) -> int:
        """Serve until done, then record the end and close everything; the exit status."""

        async def main() -> int:
            self.watcher.start()
            code = 1
            try:
                code = await serve()
            finally:
                self.watcher.stop()
                if self.ops.audit is not None:
                    self.ops.audit.shutdown(code)
            return code

        try:
            return run_loop(main)
        finally:
            self.ops.close()
            self.gate.close()


def run_stdio(
    policy_path: str,
    policy: Policy,
    upstream: Upstream,
    state: StateOptions,
    ops_options: OpsOptions,
    max_message: int = DEFAULT_MAX_MESSAGE,
    call_timeout: float | None = None,
    spawned: Spawned | None = None,
) -> int:
    """Run the stdio proxy until the server ends; the exit status to use. ``spawned`` is
    the server's process, when it was started before mcpwall loaded the rest of itself."""
    run = _Run(policy_path, policy, upstream, state, ops_options, call_timeout)
    session_id = uuid.uuid4().hex
    log.info(
        "%s %s on %s (session %s)",
        run.mode,
        Path(policy_path).name,
        upstream.describe(),
        session_id,
    )

    def make_session(to_server: Send, to_client: Deliver) -> Session:
        return run.new_session(session_id, to_server, to_client)

    def make_link(events: LinkEvents) -> ServerLink:
        return upstream.link(events, max_message, spawned=spawned)

    proxy = StdioProxy(make_link, make_session, max_message)

    async def serve() -> int:
        run.record_startup("stdio", session=session_id)
        return await proxy.run()

    return run.run(serve)


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a coroutine on uvloop where it is installed, else on asyncio's own loop."""

    async def serve() -> int:
        # The start is over (cli.main held the cyclic collector off for it). What it
        # allocated lives as long as the process: frozen, the collector never walks it
        # again, which keeps its passes during the session short.
        gc.freeze()
        gc.enable()
        return await main()

    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve())
    return uvloop.run(serve())


def run_http(
    policy_path: str,
    policy: Policy,
    upstream: Upstream,
    state: StateOptions,
    ops_options: OpsOptions,
    listener: ListenerOptions,
    call_timeout: float | None = None,
) -> int:
    """Serve Streamable HTTP to many clients until stopped (SIGINT, SIGTERM)."""
    from mcpwall.proxy.http import HttpListener

    run = _Run(
        policy_path,
        policy,
        upstream,
        state,
        ops_options,
        call_timeout,
        identified=listener.authenticator is not None,
    )

    def make_backend(events: LinkEvents, client_headers: dict[str, str]) -> ServerLink:
        return upstream.link(events, listener.max_message, client_headers)

    server = HttpListener(listener, make_backend, run.new_session)

    def started(port: int) -> None:
        host = f"[{listener.bind}]" if ":" in listener.bind else listener.bind
        # Essential output, whatever the log level: where to connect.
        sys.stderr.write(f"mcpwall listening on http://{host}:{port}/mcp\n")
        sys.stderr.flush()
        log.info("%s %s on %s", run.mode, Path(policy_path).name, upstream.describe())
        run.record_startup(f"http://{host}:{port}/mcp")

    return run.run(lambda: server.serve(started))
