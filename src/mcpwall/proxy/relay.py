"""The hot path: one agent session's messages in both directions, whatever the transport.

A transport hands this module whole messages (one JSON-RPC line each) and gives it two
functions to send with. From the client, every message is read strictly; tools/call
requests are judged (answered here when denied, never forwarded; held while a human is
asked when the policy says approve); everything else is forwarded byte for byte. From
the server, responses are matched to their requests by id: tools/list results teach
mcpwall the tools' schemas and pins and lose the tools the agent may not see, tools/call
results settle their reservations and lose the secrets the policy redacts, and
everything else passes unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcpwall import jsonrpc
from mcpwall.auth import Identity
from mcpwall.engine.gate import Decision, Gate
from mcpwall.policy.model import Policy, Rule
from mcpwall.proxy import approval
from mcpwall.proxy.tools import ToolView

log = logging.getLogger("mcpwall")

Send = Callable[[bytes], None]
# To the client: the message, and what it answers: the request id (a list of them for a
# batch), None for mcpwall's own answer to a message without a usable id,
# SERVER_MESSAGE for a request or notification of the server's, or Related for one of
# mcpwall's own that belongs with a pending request.
Deliver = Callable[[bytes, Any], None]
SERVER_MESSAGE = object()


@dataclass(frozen=True, slots=True)
class Related:
    """A message to the client about the pending request ``request_id`` (mcpwall asking
    a human to approve it): on HTTP it goes on that request's stream."""

    request_id: Any


class Observer(Protocol):
    """Sees every judged call: the audit log, the metrics."""

    def decided(self, session: str, decision: Decision, size: int) -> None:
        """Called once per judged call, as soon as it is decided. ``size``: the bytes of
        the message. A call that is forwarded is reported again when it ends."""

    def answered(self, session: str, decision: Decision, error: str | None) -> None:
        """A forwarded call ended: answered (``error`` None, or what went wrong), or it
        never will be (the server went away). A call held for approval that was not
        approved ends here too, as a denial."""

    def noted(self, session: str, kind: str, fields: dict[str, Any]) -> None:
        """Something else worth recording: an approval asked or answered, a tool whose
        definition changed, secrets redacted from a result."""


# Outcomes of reading one message from the client (besides the answer mcpwall sends
# itself, and other bytes to forward instead).
_FORWARD = object()
_DROP = object()
_HELD = object()  # a call waiting for a human's approval

# What a pending request is remembered by: its Decision for a tools/call, else these.
_LIST = "tools/list"
_INITIALIZE = "initialize"
_OTHER = "request"
_EXPIRED = "expired"  # a tools/call answered by mcpwall with a timeout; its id stays taken

# Why a call that needs approval could not wait for it.
_NOTIFIED = "a call sent as a notification cannot wait for it"
_IN_BATCH = "a call inside a JSON-RPC batch cannot be held for it"
_NO_ELICITATION = "this client cannot ask for it: it did not declare the elicitation capability"

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


@dataclass(slots=True)
class _Asking:
    """A call held while mcpwall asks the human (up to 2025-11-25)."""

    approval_id: str
    request_id: Any
    decision: Decision
    rule: Rule
    digest: str
    line: bytes
    params: dict[str, Any]
    timer: asyncio.TimerHandle | None = None


class Session:
    """One agent session (a stdio connection, an HTTP session)."""

    def __init__(
        self,
        session_id: str,
        policy: Callable[[], Policy],
        gate: Gate,
        to_server: Send,
        to_client: Deliver,
        observers: Sequence[Observer] = (),
        call_timeout: float | None = None,
        tools: ToolView | None = None,
        seal: approval.Seal | None = None,
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
        self._tools = tools or ToolView()
        self._seal = seal or approval.Seal()
        self._grants = approval.Grants()
        self._client_elicits = False
        self._asking: dict[str, _Asking] = {}  # mcpwall's elicitation id -> the held call
        self._held: dict[Any, _Asking] = {}  # the held call's request id -> the same
        self._retried: dict[Any, tuple[str, float]] = {}  # approved 2026-07-28 calls
        self._approval_prefix = f"mcpwall-approval-{secrets.token_hex(4)}-"
        self._approval_ids = (f"{self._approval_prefix}{n}" for n in itertools.count(1))
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.protocol_version: str | None = None
        # Who sends the calls being read, when a token told (HTTP with --auth): set by
        # the transport before each message, read by the gate and the audit log.
        self.identity: Identity | None = None

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
        outcome = self._client_message(message, line)
        if outcome is _FORWARD:
            self._to_server(line)
        elif type(outcome) is bytes:
            self._to_server(outcome)
        elif outcome is not _DROP and outcome is not _HELD:
            self._reply(outcome)

    def _client_message(self, message: Any, line: bytes | None = None) -> Any:
        """_FORWARD, _DROP, _HELD, other bytes to forward, or the response mcpwall sends
        back itself. ``line``: the message's bytes, None inside a batch."""
        if type(message) is not dict:
            return _invalid(None, "a JSON-RPC message must be an object")
        method = message.get("method")
        has_id = "id" in message
        request_id = message.get("id")
        if has_id and type(request_id) is not str and not jsonrpc.valid_id(request_id):
            return _invalid(None, "the id must be a string or an integer")
        if method is None:
            if has_id and ("result" in message or "error" in message):
                if type(request_id) is str and request_id.startswith(self._approval_prefix):
                    asking = self._asking.pop(request_id, None)
                    if asking is None:  # the question was withdrawn or timed out
                        log.info("dropped a late answer to %s", request_id)
                    else:
                        self._approval_answered(asking, message)
                    return _DROP
                return _FORWARD  # the client answering a request of the server
            return _invalid(request_id, "not a request, a notification or a response")
        if type(method) is not str or message.get("jsonrpc") != "2.0":
            return _invalid(request_id, 'a request needs "jsonrpc": "2.0" and a string method')
        if has_id and request_id in self._pending:
            return _invalid(request_id, f"request id {request_id!r} is already in use")

        pending: Decision | str = _OTHER
        outcome: Any = _FORWARD
        if method == "tools/call":
            verdict = self._judge(message, has_id)
            if type(verdict) is not Decision:
                return verdict
            pending = verdict
            if verdict.approval is not None:
                outcome = self._approval(message, verdict, has_id, line)
                if type(outcome) is dict or outcome is _DROP:
                    return outcome
        elif method == "tools/list":
            pending = _LIST
        elif method == "initialize":
            pending = _INITIALIZE
            params = message.get("params")
            if type(params) is dict:
                self._client_elicits = approval.client_can_elicit(params.get("capabilities"))
        elif method == "notifications/cancelled":
            params = message.get("params")
            cancelled = params.get("requestId") if type(params) is dict else None
            if jsonrpc.valid_id(cancelled) and cancelled in self._pending:
                if cancelled in self._held:  # the server never saw it: nothing to tell
                    self._withdraw(self._held[cancelled])
                    return _DROP
                # The server may have acted already: its counters are kept, not refunded.
                self._cancelled.add(cancelled)
        if has_id:
            self._pending[request_id] = pending
            timed = self._call_timeout is not None and type(pending) is Decision
            if timed and outcome is not _HELD:
                self._start_deadline(request_id, pending)
        return outcome

    def _start_deadline(self, request_id: Any, decision: Decision) -> None:
        self._deadlines[request_id] = asyncio.get_running_loop().call_later(
            self._call_timeout, self._expire, request_id, decision
        )

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
        plan = policy.plan(name)
        refusal = None
        if plan.refusal is None and (plan.validate_arguments or policy.pin_mode == "enforce"):
            refusal = self._tools.refusal(policy, plan, args)
        if refusal is None:
            decision = self._gate.judge(policy, self.id, name, args, identity=self.identity)
        else:
            rule, reason = refusal
            decision = Decision(policy.monitor, name, rule, reason, monitored=policy.monitor)
        if self._observers:
            decision.request_id = request_id
            decision.latency_us = (time.perf_counter_ns() - self._received) / 1000
            decision.policy_digest = policy.digest
            decision.args = args
            decision.subject = self.identity.subject if self.identity is not None else None
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

    # -- approval by a human ------------------------------------------------------------

    def _approval(
        self, message: dict[str, Any], decision: Decision, has_id: bool, line: bytes | None
    ) -> Any:
        """An allowed call that a human must approve first: _FORWARD when an approval
        already covers it, _HELD while the human is asked, bytes to forward (an
        approved 2026-07-28 retry), or mcpwall's answer."""
        rule = decision.approval
        assert rule is not None
        params = message["params"]
        request_id = message.get("id")
        args = params.get("arguments") or {}
        digest = approval.call_digest(decision.tool, args)
        if self._grants.covers(digest):
            decision.approval_outcome = "remembered"
            return _FORWARD
        if not has_id:
            return self._not_approved(None, params, decision, "unanswerable", _NOTIFIED)
        if line is None:
            return self._not_approved(request_id, params, decision, "unasked", _IN_BATCH)
        meta = params.get("_meta")
        if type(meta) is dict and jsonrpc.MODERN_VERSION_KEY in meta:
            return self._approval_by_retry(request_id, params, meta, decision, rule, digest)
        if not self._client_elicits:
            return self._not_approved(request_id, params, decision, "unasked", _NO_ELICITATION)
        asking = _Asking(next(self._approval_ids), request_id, decision, rule, digest, line, params)
        asking.timer = asyncio.get_running_loop().call_later(
            rule.approval_timeout_s, self._approval_timed_out, asking
        )
        self._asking[asking.approval_id] = asking
        self._held[request_id] = asking
        ask = {
            "jsonrpc": "2.0",
            "id": asking.approval_id,
            "method": "elicitation/create",
            "params": approval.elicitation(decision.tool, args, rule, digest),
        }
        self._to_client(jsonrpc.dumps(ask), Related(request_id))
        log.info('asking a human to approve %s (rule "%s")', decision.tool, rule.name)
        self._note("approval", {"tool": decision.tool, "rule": rule.name, "outcome": "asked"})
        return _HELD

    def _approval_by_retry(
        self,
        request_id: Any,
        params: dict[str, Any],
        meta: dict[str, Any],
        decision: Decision,
        rule: Rule,
        digest: str,
    ) -> Any:
        """2026-07-28: answer with input_required, or take the answer its retry brings."""
        retry = self._seal.read(self.id, digest, params)
        if retry.sealed and retry.answer is not None:
            if retry.answer != "accept":
                return self._not_approved(request_id, params, decision, retry.answer)
            self._approved(decision, rule, digest)
            # If the server asks for input of its own, the client retries once more:
            # the approval holds for that retry too.
            self._retried[request_id] = (digest, rule.approval_timeout_s)
            message = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": approval.strip_retry(params, retry.inner_state),
            }
            return jsonrpc.dumps(message)
        if not approval.client_can_elicit(meta.get(approval.CLIENT_CAPABILITIES_KEY)):
            return self._not_approved(request_id, params, decision, "unasked", _NO_ELICITATION)
        self._gate.settle(decision, unsent=True)
        decision.approval_outcome = "asked"
        self._answered(decision, None)
        self._note("approval", {"tool": decision.tool, "rule": rule.name, "outcome": "asked"})
        args = params.get("arguments") or {}
        state = self._seal.mint(self.id, digest, rule.approval_timeout_s, retry.inner_state)
        ask = approval.elicitation(decision.tool, args, rule, digest)
        return approval.input_required(request_id, ask, state)

    def _approval_answered(self, asking: _Asking, message: dict[str, Any]) -> None:
        """The client's answer to mcpwall's elicitation/create."""
        if asking.timer is not None:
            asking.timer.cancel()
        del self._held[asking.request_id]
        answer = approval.answer_of(message)
        if answer != "accept":
            self._pending.pop(asking.request_id, None)
            self._reply(
                self._not_approved(asking.request_id, asking.params, asking.decision, answer)
            )
            return
        self._approved(asking.decision, asking.rule, asking.digest)
        if self._call_timeout is not None:
            self._start_deadline(asking.request_id, asking.decision)
        self._to_server(asking.line)

    def _approval_timed_out(self, asking: _Asking) -> None:
        del self._asking[asking.approval_id]
        del self._held[asking.request_id]
        self._pending.pop(asking.request_id, None)
        seconds = f"{asking.rule.approval_timeout_s:g} s"
        self._cancel_ask(asking, f"no answer within {seconds}")
        self._reply(
            self._not_approved(
                asking.request_id, asking.params, asking.decision, "timed out", seconds
            )
        )

    def _withdraw(self, asking: _Asking) -> None:
        """The client cancelled a call that waited for approval."""
        if asking.timer is not None:
            asking.timer.cancel()
        del self._asking[asking.approval_id]
        del self._held[asking.request_id]
        del self._pending[asking.request_id]
        self._cancel_ask(asking, "the call was cancelled")
        self._not_approved(asking.request_id, asking.params, asking.decision, "withdrawn")

    def _cancel_ask(self, asking: _Asking, why: str) -> None:
        cancel = jsonrpc.cancellation(asking.approval_id, why)
        self._to_client(jsonrpc.dumps(cancel), Related(asking.request_id))

    def _approved(self, decision: Decision, rule: Rule, digest: str) -> None:
        decision.approval_outcome = "accepted"
        if rule.remember_s:
            self._grants.add(digest, rule.remember_s)
        log.info('a human approved %s (rule "%s")', decision.tool, rule.name)
        self._note("approval", {"tool": decision.tool, "rule": rule.name, "outcome": "accept"})

    def _not_approved(
        self,
        request_id: Any,
        params: dict[str, Any],
        decision: Decision,
        outcome: str,
        why: str = "",
    ) -> Any:
        """Turn an approval that did not happen into a denial; the answer to send."""
        rule = decision.approval
        assert rule is not None
        decision.allowed = False
        decision.rule = rule.name
        decision.reason = _approval_reason(decision.tool, rule, outcome, why)
        decision.approval_outcome = outcome
        self._gate.settle(decision, unsent=True)
        log.info("denied %s: %s", decision.tool, decision.reason)
        if outcome not in ("unasked", "unanswerable"):
            self._note("approval", {"tool": decision.tool, "rule": rule.name, "outcome": outcome})
        self._answered(decision, None)
        if outcome in ("unanswerable", "withdrawn"):
            return _DROP
        return jsonrpc.denial(request_id, decision, params)

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
                self._to_client(jsonrpc.dumps(answers), [a["id"] for a in answers])
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
            self._to_client(jsonrpc.dumps(held), [answer["id"] for answer in held])
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
                self._to_client(line, SERVER_MESSAGE)  # a request or notification
                return
            rewritten, batch = self._server_response(message)
            if rewritten is _DROP:
                return
            reply_to = message.get("id")
            self._to_client(line if rewritten is None else jsonrpc.dumps(rewritten), reply_to)
            if batch is not None and batch.held and not batch.waiting:
                self._flush_batch(batch)
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
            rewritten = None
            redactor = self._policy().redactor
            if redactor is not None:
                rewritten = self._redact(message, pending, redactor)
            if self._retried:
                self._retried_answer(request_id, message)
            if pending.tokens or self._observers:
                error = _call_error(message)
                if error is not None and pending.tokens:
                    self._gate.settle(pending, failed=True)
                self._answered(pending, error)
            return rewritten, batch
        if pending is _LIST:
            return self._listed(message), batch
        elif pending is _INITIALIZE:
            result = message.get("result")
            if type(result) is dict and type(result.get("protocolVersion")) is str:
                self.protocol_version = result["protocolVersion"]
        return None, batch

    def _listed(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A tools/list result: learnt from, and rewritten without the tools the agent
        may not see (None: unchanged)."""
        result = message.get("result")
        if type(result) is not dict or type(result.get("tools")) is not list:
            return None
        kept = self._tools.listed(self._policy(), result["tools"], self._note)
        if kept is None:
            return None
        result["tools"] = kept
        return message

    def _redact(self, message: dict[str, Any], decision: Decision, redactor: Any) -> Any:
        """The result without the secrets the policy redacts; None if it had none."""
        result = message.get("result")
        if type(result) is not dict:
            return None
        found = redactor.result(result)
        if not found:
            return None
        counts = dict(found)
        decision.redacted = counts
        shown = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        log.warning(
            "redacted %d secret(s) from the result of %s (%s)",
            sum(counts.values()),
            decision.tool,
            shown,
        )
        self._note("redacted", {"tool": decision.tool, "found": counts})
        return message

    def _retried_answer(self, request_id: Any, message: dict[str, Any]) -> None:
        """An approved 2026-07-28 call the server answered: when it asks for input of its
        own, the client's next retry is covered by the same approval."""
        retried = self._retried.pop(request_id, None)
        result = message.get("result")
        asks = type(result) is dict and result.get("resultType") == "input_required"
        if retried is not None and asks:
            self._grants.add(*retried)

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
        if not out:
            return
        answered = [item.get("id") for item in out if type(item) is dict and "method" not in item]
        self._to_client(jsonrpc.dumps(out) if changed else line, answered)

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
        held = self._held
        for asking in held.values():
            if asking.timer is not None:
                asking.timer.cancel()
        self._asking = {}
        self._held = {}
        for request_id, pending in waiting:
            if type(pending) is Decision:
                if request_id in held:
                    self._gate.settle(pending, unsent=True)
                elif request_id not in self._cancelled:
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
                self._flush_batch(batch)
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
            self._flush_batch(batch)

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
        self._to_client(jsonrpc.dumps(message), message.get("id"))

    def _flush_batch(self, batch: _Batch) -> None:
        """The answers mcpwall held for a batch, once nothing else of it is awaited."""
        held, batch.held = batch.held, []
        self._to_client(jsonrpc.dumps(held), [answer["id"] for answer in held])

    def _note(self, kind: str, fields: dict[str, Any]) -> None:
        for observer in self._observers:
            observer.noted(self.id, kind, fields)

    def _answered(self, decision: Decision, error: str | None) -> None:
        for observer in self._observers:
            observer.answered(self.id, decision, error)
        decision.args = None  # no longer needed: let big arguments go


def _approval_reason(tool: str, rule: Rule, outcome: str, why: str) -> str:
    needs = f'"{tool}" needs a human\'s approval (rule "{rule.name}")'
    if outcome == "decline":
        return f'A human declined this call of "{tool}" (rule "{rule.name}")'
    if outcome == "cancel":
        return f'The approval of this call of "{tool}" was dismissed (rule "{rule.name}")'
    if outcome == "timed out":
        return f"{needs}, and no human approved it within {why}"
    if outcome == "withdrawn":
        return f"{needs}; the call was cancelled before an answer came"
    if outcome == "error":
        return f"{needs}; the client answered the approval request with an error"
    return f"{needs}, and {why}"


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
