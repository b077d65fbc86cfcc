"""The hot path: one agent session's messages in both directions, whatever the transport.

A transport hands this module whole messages (one JSON-RPC line each) and gives it two
functions to send with. From the client, every message is read strictly; tools/call
requests are judged (answered here when denied, never forwarded); everything else is
forwarded byte for byte. From the server, responses are matched to their requests by
id: tools/list results lose the tools the policy hides, tools/call results settle their
reservations, and everything else passes unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mcpwall import jsonrpc
from mcpwall.engine.gate import Decision, Gate
from mcpwall.policy.model import Policy

log = logging.getLogger("mcpwall")

Send = Callable[[bytes], None]


class Observer(Protocol):
    """Sees every judged call: the audit log, the metrics."""

    def decided(self, session: str, decision: Decision, size: int) -> None:
        """Called once per judged call, as soon as it is decided. ``size``: the bytes of
        the message. A call that is forwarded is reported again when it ends."""

    def answered(self, session: str, decision: Decision, error: str | None) -> None:
        """A forwarded call ended: answered (``error`` None, or what went wrong), or it
        never will be (the server went away)."""


# Outcomes of reading one message from the client.
_FORWARD = object()
_DROP = object()

# What a pending request is remembered by: its Decision for a tools/call, else these.
_LIST = "tools/list"
_INITIALIZE = "initialize"
_OTHER = "request"
_EXPIRED = "expired"  # a tools/call answered by mcpwall with a timeout; its id stays taken

# Protocol versions in which a JSON-RPC batch is a valid message.
_BATCH_VERSIONS = frozenset({"2025-03-26"})

# Below this size a message is checked for being blank by stripping a copy of it.
_SMALL = 64


class _Batch:
    """A batch from the client: the denials and errors mcpwall answered itself wait
    here until the server's answer to the forwarded part arrives, so that the client
    gets one array back, holding one response per request."""

    __slots__ = ("held", "waiting")

    def __init__(self, held: list[dict[str, Any]]) -> None:
        self.held = held
        self.waiting: set[Any] = set()


class Session:
    """One agent session (a stdio connection, an HTTP session)."""

    def __init__(
        self,
        session_id: str,
        policy: Callable[[], Policy],
        gate: Gate,
        to_server: Send,
        to_client: Send,
        observers: Sequence[Observer] = (),
        call_timeout: float | None = None,
    ) -> None:
        self.id = session_id
        self._policy = policy
        self._gate = gate
        self._to_server = to_server
        self._to_client = to_client
        self._observers = tuple(observers)
        self._received = 0  # when the message being handled arrived (ns)
        self._received_size = 0
        # request id -> the Decision of a tools/call, or _LIST, _INITIALIZE, _OTHER
        self._pending: dict[Any, Decision | str] = {}
        self._batches: dict[Any, _Batch] = {}
        self._cancelled: set[Any] = set()
        self._call_timeout = call_timeout
        self._deadlines: dict[Any, asyncio.TimerHandle] = {}
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.protocol_version: str | None = None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- client to server -------------------------------------------------------------

    def from_client(self, line: bytes) -> None:
        if len(line) < _SMALL and not line.strip():
            return
        self._received = time.perf_counter_ns()
        self._received_size = len(line)
        try:
            message = jsonrpc.decode_strict(line)
        except jsonrpc.Malformed as exc:
            log.warning("refused a malformed message from the client: %s", exc)
            self._reply(jsonrpc.error(None, jsonrpc.PARSE_ERROR, f"Parse error: {exc}"))
            return
        if type(message) is list:
            self._client_batch(message, line)
            return
        outcome = self._client_message(message)
        if outcome is _FORWARD:
            self._to_server(line)
        elif outcome is not _DROP:
            self._reply(outcome)

    def _client_message(self, message: Any) -> Any:
        """_FORWARD, _DROP, or the response mcpwall sends back itself."""
        if type(message) is not dict:
            return _invalid(None, "a JSON-RPC message must be an object")
        method = message.get("method")
        has_id = "id" in message
        request_id = message.get("id")
        if has_id and type(request_id) is not str and not jsonrpc.valid_id(request_id):
            return _invalid(None, "the id must be a string or an integer")
        if method is None:
            if has_id and ("result" in message or "error" in message):
                return _FORWARD  # the client answering a request of the server
            return _invalid(request_id, "not a request, a notification or a response")
        if type(method) is not str or message.get("jsonrpc") != "2.0":
            return _invalid(request_id, 'a request needs "jsonrpc": "2.0" and a string method')
        if has_id and request_id in self._pending:
            return _invalid(request_id, f"request id {request_id!r} is already in use")

        pending: Decision | str = _OTHER
        if method == "tools/call":
            verdict = self._judge(message, has_id)
            if type(verdict) is not Decision:
                return verdict
            pending = verdict
        elif method == "tools/list":
            pending = _LIST
        elif method == "initialize":
            pending = _INITIALIZE
        elif method == "notifications/cancelled":
            params = message.get("params")
            cancelled = params.get("requestId") if type(params) is dict else None
            if jsonrpc.valid_id(cancelled) and cancelled in self._pending:
                # The server may have acted already: its counters are kept, not refunded.
                self._cancelled.add(cancelled)
        if has_id:
            self._pending[request_id] = pending
            if self._call_timeout is not None and type(pending) is Decision:
                self._deadlines[request_id] = asyncio.get_running_loop().call_later(
                    self._call_timeout, self._expire, request_id, pending
                )
        return _FORWARD

    def _judge(self, message: dict[str, Any], has_id: bool) -> Any:
        """The Decision for an allowed call; the answer (or _DROP) for any other."""
        request_id = message.get("id")
        params = message.get("params")
        if type(params) is not dict:
            return _bad_params(request_id, has_id, "tools/call params must be an object")
        name = params.get("name")
        if type(name) is not str:
            return _bad_params(request_id, has_id, "tools/call params.name must be a string")
        args = params.get("arguments")
        if args is None:
            args = {}
        elif type(args) is not dict:
            return _bad_params(request_id, has_id, "tools/call params.arguments must be an object")

        policy = self._policy()
        decision = self._gate.judge(policy, self.id, name, args)
        if self._observers:
            decision.request_id = request_id
            decision.latency_us = (time.perf_counter_ns() - self._received) / 1000
            decision.policy_digest = policy.digest
            decision.args = args
            for observer in self._observers:
                observer.decided(self.id, decision, self._received_size)
            if not has_id and decision.allowed:  # a notification: no answer will come
                self._answered(decision, None)
        if not decision.allowed:
            log.info('denied %s (rule "%s"): %s', name, decision.rule, decision.reason)
            return jsonrpc.denial(request_id, decision, params) if has_id else _DROP
        if decision.monitored:
            log.warning(
                'monitor: would deny %s (rule "%s"): %s', name, decision.rule, decision.reason
            )
        elif self._debug:
            log.debug("allowed %s", name)
        return decision

    def _client_batch(self, items: list[Any], line: bytes) -> None:
        if not items:
            self._reply(_invalid(None, "an empty batch is not a valid request"))
            return
        version = self.protocol_version
        if version is not None and version not in _BATCH_VERSIONS:
            refusal = f"JSON-RPC batches are not part of MCP {version}"
            answers = [
                _invalid(item["id"] if jsonrpc.valid_id(item["id"]) else None, refusal)
                for item in items
                if _owed_an_answer(item)
            ]
            if answers:
                self._to_client(jsonrpc.dumps(answers))
            return
        forwarded: list[Any] = []
        held: list[dict[str, Any]] = []
        for item in items:
            outcome = self._client_message(item)
            if outcome is _FORWARD:
                forwarded.append(item)
            elif outcome is not _DROP:
                held.append(outcome)
        batch = _Batch(held)
        for item in forwarded:
            if _is_request(item):
                batch.waiting.add(item["id"])
                self._batches[item["id"]] = batch
        if forwarded:
            # Forward exactly what was judged: the whole line if nothing was taken out
            # (a denied notification is taken out without an answer to hold).
            self._to_server(line if len(forwarded) == len(items) else jsonrpc.dumps(forwarded))
        if held and not batch.waiting:
            self._to_client(jsonrpc.dumps(held))
            held.clear()

    # -- server to client -------------------------------------------------------------

    def from_server(self, line: bytes) -> None:
        if len(line) < _SMALL and not line.strip():
            return
        try:
            message = jsonrpc.decode_server(line)
        except jsonrpc.Malformed as exc:
            log.warning("dropped a malformed line from the server: %s (%r)", exc, line[:200])
            return
        if type(message) is dict:
            if "method" in message or "id" not in message:
                self._to_client(line)  # a request or notification of the server
                return
            rewritten, batch = self._server_response(message)
            if rewritten is _DROP:
                return
            self._to_client(line if rewritten is None else jsonrpc.dumps(rewritten))
            if batch is not None and batch.held and not batch.waiting:
                self._to_client(jsonrpc.dumps(batch.held))
                batch.held = []
        elif type(message) is list:
            self._server_batch(message, line)
        else:
            log.warning("dropped a line from the server that is not a JSON-RPC message")

    def _server_response(self, message: dict[str, Any]) -> tuple[Any, _Batch | None]:
        """Settle the request this answers; the rewritten message, or None to keep it."""
        request_id = message.get("id")
        if type(request_id) not in (int, str):
            return None, None
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return None, None
        if self._deadlines:
            deadline = self._deadlines.pop(request_id, None)
            if deadline is not None:
                deadline.cancel()
        if pending is _EXPIRED:
            log.info("dropped the MCP server's late answer to request %r", request_id)
            return _DROP, None
        batch = None
        if self._batches:
            batch = self._batches.pop(request_id, None)
            if batch is not None:
                batch.waiting.discard(request_id)
        if self._cancelled:
            self._cancelled.discard(request_id)
        if type(pending) is Decision:
            if pending.tokens or self._observers:
                error = _call_error(message)
                if error is not None and pending.tokens:
                    self._gate.settle(pending, failed=True)
                self._answered(pending, error)
        elif pending is _LIST:
            return self._filter_tools(message), batch
        elif pending is _INITIALIZE:
            result = message.get("result")
            if type(result) is dict and type(result.get("protocolVersion")) is str:
                self.protocol_version = result["protocolVersion"]
        return None, batch

    def _filter_tools(self, message: dict[str, Any]) -> dict[str, Any] | None:
        policy = self._policy()
        if not policy.filters_list or policy.monitor:
            return None
        result = message.get("result")
        if type(result) is not dict or type(result.get("tools")) is not list:
            return None
        tools = result["tools"]
        kept = [
            tool
            for tool in tools
            if type(tool) is dict and type(tool.get("name")) is str and policy.visible(tool["name"])
        ]
        if len(kept) == len(tools):
            return None
        result["tools"] = kept
        return message

    def _server_batch(self, items: list[Any], line: bytes) -> None:
        out: list[Any] = []
        changed = False
        batches: list[_Batch] = []
        for item in items:
            if type(item) is dict and "method" not in item and "id" in item:
                rewritten, batch = self._server_response(item)
                if rewritten is _DROP:
                    changed = True
                    continue
                if rewritten is not None:
                    item, changed = rewritten, True
                if batch is not None and batch not in batches:
                    batches.append(batch)
            out.append(item)
        for batch in batches:
            if batch.held:
                out.extend(batch.held)
                batch.held = []
                changed = True
        if out:
            self._to_client(jsonrpc.dumps(out) if changed else line)

    # -- endings ----------------------------------------------------------------------

    def server_gone(self, what: str) -> int:
        """Answer every request still waiting for the server; how many there were."""
        waiting = [
            (key, pending) for key, pending in self._pending.items() if pending is not _EXPIRED
        ]
        self._pending.clear()
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()
        for request_id, pending in waiting:
            if type(pending) is Decision:
                if request_id not in self._cancelled:
                    self._gate.settle(pending, failed=True)
                self._answered(pending, f"no answer: the MCP server {what}")
            self._reply(
                jsonrpc.error(
                    request_id,
                    jsonrpc.SERVER_GONE,
                    f"[mcpwall] the MCP server {what} before answering this request",
                )
            )
            batch = self._batches.pop(request_id, None)
            if batch is not None and batch.held:
                self._to_client(jsonrpc.dumps(batch.held))
                batch.held = []
        return len(waiting)

    def _expire(self, request_id: Any, decision: Decision) -> None:
        """A tools/call the server has not answered within the call timeout: answered
        here with an error and settled as a failed call; the server is asked to cancel
        it. Its id stays taken until the server's late answer, which is dropped, so that
        the agent never gets two answers to one request."""
        del self._deadlines[request_id]
        seconds = f"{self._call_timeout:g} s"
        log.warning("no answer from the MCP server to %s within %s", decision.tool, seconds)
        self._pending[request_id] = _EXPIRED
        if request_id in self._cancelled:  # cancelled by the agent: counters are kept
            self._cancelled.discard(request_id)
        else:
            self._gate.settle(decision, failed=True)
        reason = f"no answer within {seconds}"
        self._answered(decision, reason)
        self._to_server(jsonrpc.dumps(jsonrpc.cancellation(request_id, reason)))
        reply = jsonrpc.error(
            request_id,
            jsonrpc.TIMED_OUT,
            f"[mcpwall] the MCP server did not answer this tools/call within {seconds}",
        )
        batch = self._batches.pop(request_id, None)
        if batch is None:
            self._reply(reply)
            return
        batch.waiting.discard(request_id)
        batch.held.append(reply)
        if not batch.waiting:
            self._to_client(jsonrpc.dumps(batch.held))
            batch.held = []

    def refuse_oversize(self, limit: int) -> None:
        """A message from the client was larger than ``limit`` and was discarded."""
        self._reply(
            jsonrpc.error(
                None,
                jsonrpc.INVALID_REQUEST,
                f"Invalid request: message larger than {limit} bytes",
            )
        )

    def _reply(self, message: dict[str, Any]) -> None:
        self._to_client(jsonrpc.dumps(message))

    def _answered(self, decision: Decision, error: str | None) -> None:
        for observer in self._observers:
            observer.answered(self.id, decision, error)
        decision.args = None  # no longer needed: let big arguments go


def _invalid(request_id: Any, why: str) -> dict[str, Any]:
    return jsonrpc.error(request_id, jsonrpc.INVALID_REQUEST, f"Invalid request: {why}")


def _bad_params(request_id: Any, has_id: bool, why: str) -> Any:
    log.warning("refused a tools/call: %s", why)
    return jsonrpc.error(request_id, jsonrpc.INVALID_PARAMS, why) if has_id else _DROP


def _call_error(message: dict[str, Any]) -> str | None:
    """What went wrong with a tools/call, from its response; None if nothing did."""
    error = message.get("error")
    if error is not None:
        if type(error) is dict:
            return f"error {error.get('code')}: {str(error.get('message'))[:200]}"
        return "error"
    result = message.get("result")
    if type(result) is dict and result.get("isError") is True:
        content = result.get("content")
        first = content[0] if type(content) is list and content else None
        text = first.get("text") if type(first) is dict else None
        return f"tool error: {str(text)[:200]}" if text is not None else "tool error"
    return None


def _is_request(item: Any) -> bool:
    return type(item) is dict and type(item.get("method")) is str and "id" in item


def _owed_an_answer(item: Any) -> bool:
    """Whether a batch element gets an answer of its own: anything with an id except a
    response of the client's (no method, a result or an error)."""
    if type(item) is not dict or "id" not in item:
        return False
    return item.get("method") is not None or not ("result" in item or "error" in item)
