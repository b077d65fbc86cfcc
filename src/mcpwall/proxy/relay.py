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

from mcpwall import mcp
from mcpwall.auth import Identity
from mcpwall.engine.decide import ApprovalOutcome, Call, Pending, Verdict, not_approved
from mcpwall.engine.gate import Gate
from mcpwall.policy.model import Policy, Rule
from mcpwall.proxy import approval
from mcpwall.proxy.record import CallRecord, Observer
from mcpwall.proxy.tools import ToolView
from mcpwall.state.base import Token

log = logging.getLogger("mcpwall")

Send = Callable[[bytes], None]
# To the client: the message, and what it answers: the request id (a list of them for a
# batch), None for mcpwall's own answer to a message without a usable id,
# SERVER_MESSAGE for a request or notification of the server's, or Related for one of
# mcpwall's own that belongs with a pending request.
Deliver = Callable[[bytes, Any], None]
SERVER_MESSAGE = object()


class Timers(Protocol):
    """Where the relay's deadlines and approval windows are kept: the event loop, or a
    clock that a test moves by hand."""

    def call_later(
        self, delay: float, callback: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle: ...

    def time(self) -> float: ...


class _LoopTimers:
    def call_later(
        self, delay: float, callback: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    def time(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class Related:
    """A message to the client about the pending request ``request_id`` (mcpwall asking
    a human to approve it): on HTTP it goes on that request's stream."""

    request_id: Any


# Outcomes of reading one message from the client (besides the answer mcpwall sends
# itself, and other bytes to forward instead).
_FORWARD = object()
_DROP = object()
_HELD = object()  # a call waiting for a human's approval

# What a pending request is remembered by: its CallRecord for a tools/call, else these.
_LIST = "tools/list"
_INITIALIZE = "initialize"
_OTHER = "request"
_EXPIRED = "expired"  # a tools/call answered by mcpwall with a timeout; its id stays taken

# Why a call that needs approval could not wait for it.
_NOTIFIED = "a call sent as a notification cannot wait for it"
_IN_BATCH = "a call inside a JSON-RPC batch cannot be held for it"
_NO_ELICITATION = "this client cannot ask for it: it did not declare the elicitation capability"

# What mcpwall answers when it failed itself; the details go to its log, not the wire.
_INTERNAL = "[mcpwall] internal error while judging this message; it was not forwarded"
_INTERNAL_ANSWER = "[mcpwall] internal error while checking the server's answer; it was withheld"
_UNREAD = object()  # from_client: the transport has not decoded the message
_PARKED = object()  # from_client: a call waiting for its read's group to be judged

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


# A call judged before its turn came (with its read's group): the policy it was judged by,
# the verdict, what it reserved, and how long the store took (µs).
_Judged = tuple[Policy, Verdict, tuple[Token, ...], float]


@dataclass(slots=True)
class _Parked:
    """A call of the read being handled that waits on the store with the others."""

    message: dict[str, Any]
    line: bytes
    received: int
    policy: Policy
    pending: Pending


@dataclass(slots=True)
class _Asking:
    """A call held while mcpwall asks the human (up to 2025-11-25)."""

    approval_id: str
    request_id: Any
    record: CallRecord
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
        timers: Timers | None = None,
    ) -> None:
        self.id = session_id
        self._policy = policy
        self._gate = gate
        self._to_server = to_server
        self._to_client = to_client
        self._observers = tuple(observers)
        self._received = 0  # when the message being handled arrived (ns)
        self._received_size = 0
        # request id -> the CallRecord of a tools/call, or _LIST, _INITIALIZE, _OTHER
        self._pending: dict[Any, CallRecord | str] = {}
        self._batches: dict[Any, _Batch] = {}
        self._cancelled: set[Any] = set()
        self._call_timeout = call_timeout
        self._deadlines: dict[Any, asyncio.TimerHandle] = {}
        self._tools = tools or ToolView()
        self._seal = seal or approval.Seal()
        self._timers = timers or _LoopTimers()
        self._grants = approval.Grants(self._timers.time)
        self._client_elicits = False
        self._asking: dict[str, _Asking] = {}  # mcpwall's elicitation id -> the held call
        self._held: dict[Any, _Asking] = {}  # the held call's request id -> the same
        self._retried: dict[Any, tuple[str, float]] = {}  # approved 2026-07-28 calls
        self._approval_prefix = f"mcpwall-approval-{secrets.token_hex(4)}-"
        self._approval_ids = (f"{self._approval_prefix}{n}" for n in itertools.count(1))
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._group: list[_Parked] | None = None  # between read_start and read_end
        self._group_ids: set[Any] = set()  # the request ids of the parked calls
        self.protocol_version: str | None = None
        # Who sends the messages being read, when a token told (HTTP with --auth): set
        # by the transport before it hands a message over.
        self.identity: Identity | None = None
        self.headers: dict[str, str] | None = None  # the HTTP request's, while it is handled

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- client to server -------------------------------------------------------------

    def read_start(self) -> None:
        """What one read from the client produced follows, up to ``read_end``: the
        calls among it that wait on the store are reserved together, in one store call,
        when the read ends (or sooner, when a message that is not such a call comes)."""
        self._group = []

    def read_end(self) -> None:
        if self._group:
            self._judge_group()
        self._group = None

    def from_client(self, line: bytes, message: Any = _UNREAD) -> None:
        """One message from the client. ``message``: what ``mcp.decode_strict`` read
        from ``line``, when the transport has read it already."""
        if len(line) < _SMALL and not line.strip():
            return
        received = time.perf_counter_ns()
        judged: _Judged | None = None
        if message is _UNREAD:
            try:
                message = mcp.decode_strict(line)
            except mcp.Malformed as exc:
                if self._group:
                    self._judge_group()
                log.warning("refused a malformed message from the client: %s", exc)
                self._reply(mcp.error(None, mcp.PARSE_ERROR, f"Parse error: {exc}"))
                return
        group = self._group
        # Only a policy with counters has calls to park; one without skips the detour.
        if group is not None and (group or self._policy().counters):
            parked = self._park(message, line, received)
            if parked is _PARKED:
                return
            judged = parked
            if self._group:  # what came before this message is handled before it
                self._judge_group()
        self._received = received
        self._received_size = len(line)
        if type(message) is list:
            self._client_batch(message, line)
            return
        self._send(self._guarded(message, line, judged), line)

    def _send(self, outcome: Any, line: bytes) -> None:
        if outcome is _FORWARD:
            self._to_server(line)
        elif type(outcome) is bytes:
            self._to_server(outcome)
        elif outcome is not _DROP and outcome is not _HELD:
            self._reply(outcome)

    def _park(self, message: Any, line: bytes, received: int) -> Any:
        """_PARKED for a call that waits on the store (it joins the read's group); the
        verdict of a call that does not, judged now; None for any other message.
        Parked are only calls that ``_client_message`` takes all the way to the gate,
        so that every reservation made for the group belongs to a judged call."""
        if type(message) is not dict or message.get("method") != "tools/call":
            return None
        request_id = message.get("id")
        if "id" in message and (
            (type(request_id) is not str and not mcp.valid_id(request_id))
            or request_id in self._pending
            or request_id in self._group_ids
        ):
            return None
        params = message.get("params")
        if message.get("jsonrpc") != "2.0" or type(params) is not dict:
            return None
        name = params.get("name")
        args = params.get("arguments")
        if type(name) is not str or (args is not None and type(args) is not dict):
            return None
        policy = self._policy()
        call = Call(self.id, name, args or {}, self.identity)
        verdict = self._gate.decide(policy, call, self._tools)
        if not isinstance(verdict, Pending):
            return policy, verdict, (), 0.0
        assert self._group is not None
        self._group.append(_Parked(message, line, received, policy, verdict))
        if "id" in message:
            self._group_ids.add(request_id)
        return _PARKED

    def _judge_group(self) -> None:
        """Reserve the parked calls in one store call, then handle each in its turn."""
        group = self._group
        assert group
        self._group = []
        self._group_ids.clear()
        judged: list[Any]
        store_us = 0.0
        try:
            judged = self._gate.conclude([parked.pending for parked in group])
            store_us = self._gate.store_us
        except Exception as exc:  # mcpwall's own failure: each call answers it
            judged = [exc] * len(group)
        for parked, outcome in zip(group, judged, strict=True):
            self._received = parked.received
            self._received_size = len(parked.line)
            if isinstance(outcome, Exception):
                result = self._guarded(parked.message, parked.line, outcome)
            else:
                judged_now = (parked.policy, *outcome, store_us)
                result = self._guarded(parked.message, parked.line, judged_now)
            self._send(result, parked.line)

    def _guarded(
        self, message: Any, line: bytes | None, judged: _Judged | Exception | None = None
    ) -> Any:
        """``_client_message``, where a failure of mcpwall's own (a store, a schema
        validator, a bug) becomes one error answer: the message is not forwarded, and
        the session goes on."""
        try:
            return self._client_message(message, line, judged)
        except Exception:
            log.exception("mcpwall failed on a message from the client; it was not forwarded")
            if not mcp.owes_answer(message):
                return _DROP
            request_id = message["id"] if mcp.valid_id(message["id"]) else None
            return mcp.error(request_id, mcp.INTERNAL_ERROR, _INTERNAL)

    def _client_message(
        self, message: Any, line: bytes | None = None, judged: _Judged | Exception | None = None
    ) -> Any:
        """_FORWARD, _DROP, _HELD, other bytes to forward, or the response mcpwall sends
        back itself. ``line``: the message's bytes, None inside a batch. ``judged``: the
        gate's answer for a call judged already (with its read's group), or what failed
        then."""
        if type(message) is not dict:
            return _invalid(None, "a JSON-RPC message must be an object")
        method = message.get("method")
        has_id = "id" in message
        request_id = message.get("id")
        if has_id and type(request_id) is not str and not mcp.valid_id(request_id):
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

        pending: CallRecord | str = _OTHER
        outcome: Any = _FORWARD
        if method == "tools/call":
            verdict = self._judge(message, has_id, judged)
            if type(verdict) is not CallRecord:
                return verdict
            pending = verdict
            if verdict.verdict.approval is not None:
                try:
                    outcome = self._approval(message, verdict, has_id, line)
                except Exception:
                    self._settle(verdict, unsent=True)
                    raise
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
            if mcp.valid_id(cancelled) and cancelled in self._pending:
                if cancelled in self._held:  # the server never saw it: nothing to tell
                    self._withdraw(self._held[cancelled])
                    return _DROP
                # The server may have acted already: its counters are kept, not refunded.
                self._cancelled.add(cancelled)
        if has_id:
            self._pending[request_id] = pending
            timed = self._call_timeout is not None and outcome is not _HELD
            if timed and isinstance(pending, CallRecord):
                self._start_deadline(request_id, pending)
        return outcome

    def _start_deadline(self, request_id: Any, record: CallRecord) -> None:
        assert self._call_timeout is not None
        self._deadlines[request_id] = self._timers.call_later(
            self._call_timeout, self._expire, request_id, record
        )

    def _judge(
        self, message: dict[str, Any], has_id: bool, judged: _Judged | Exception | None
    ) -> Any:
        """The CallRecord of an allowed call; the answer (or _DROP) for any other."""
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

        if judged is None:
            policy = self._policy()
            call = Call(self.id, name, args, self.identity)
            verdict, tokens = self._gate.judge(policy, call, self._tools)
            store_us = self._gate.store_us
        elif isinstance(judged, Exception):
            raise judged
        else:
            policy, verdict, tokens, store_us = judged
        record = CallRecord(verdict, tokens)
        if self._observers:
            record.request_id = request_id
            record.latency_us = (time.perf_counter_ns() - self._received) / 1000
            record.store_us = store_us
            record.policy_digest = policy.digest
            record.args = args
            if self.identity is not None:
                record.subject = self.identity.subject
            record.meta = params.get("_meta")
            record.headers = self.headers
            for observer in self._observers:
                try:
                    observer.decided(self.id, record, self._received_size)
                except Exception:
                    log.exception(_OBSERVER_FAILED)
            if not has_id and verdict.allowed:  # a notification: no answer will come
                self._answered(record, None)
        if not verdict.allowed:
            log.info('denied %s (rule "%s"): %s', name, verdict.rule, verdict.reason)
            return _denial(request_id, record, params) if has_id else _DROP
        if verdict.monitored:
            log.warning(
                'monitor: would deny %s (rule "%s"): %s', name, verdict.rule, verdict.reason
            )
        elif self._debug:
            log.debug("allowed %s", name)
        return record

    # -- approval by a human ------------------------------------------------------------

    def _approval(
        self, message: dict[str, Any], record: CallRecord, has_id: bool, line: bytes | None
    ) -> Any:
        """An allowed call that a human must approve first: _FORWARD when an approval
        already covers it, _HELD while the human is asked, bytes to forward (an
        approved 2026-07-28 retry), or mcpwall's answer."""
        rule = record.approval
        assert rule is not None
        params = message["params"]
        request_id = message.get("id")
        args = params.get("arguments") or {}
        digest = approval.call_digest(record.tool, args)
        if self._grants.covers(digest):
            record.approval_outcome = ApprovalOutcome.REMEMBERED
            return _FORWARD
        if not has_id:
            return self._not_approved(None, params, record, ApprovalOutcome.UNANSWERABLE, _NOTIFIED)
        if line is None:
            return self._not_approved(
                request_id, params, record, ApprovalOutcome.UNASKED, _IN_BATCH
            )
        meta = params.get("_meta")
        if type(meta) is dict and mcp.MODERN_VERSION_KEY in meta:
            return self._approval_by_retry(request_id, params, meta, record, rule, digest)
        if not self._client_elicits:
            return self._not_approved(
                request_id, params, record, ApprovalOutcome.UNASKED, _NO_ELICITATION
            )
        asking = _Asking(next(self._approval_ids), request_id, record, rule, digest, line, params)
        asking.timer = self._timers.call_later(
            rule.approval_timeout_s, self._approval_timed_out, asking
        )
        self._asking[asking.approval_id] = asking
        self._held[request_id] = asking
        ask = {
            "jsonrpc": "2.0",
            "id": asking.approval_id,
            "method": "elicitation/create",
            "params": approval.elicitation(record.tool, args, rule, digest),
        }
        self._to_client(mcp.dumps(ask), Related(request_id))
        log.info('asking a human to approve %s (rule "%s")', record.tool, rule.name)
        self._note("approval", {"tool": record.tool, "rule": rule.name, "outcome": "asked"})
        return _HELD

    def _approval_by_retry(
        self,
        request_id: Any,
        params: dict[str, Any],
        meta: dict[str, Any],
        record: CallRecord,
        rule: Rule,
        digest: str,
    ) -> Any:
        """2026-07-28: answer with input_required, or take the answer its retry brings."""
        retry = self._seal.read(self.id, digest, params)
        if retry.sealed and retry.answer is not None:
            if retry.answer != "accept":
                return self._not_approved(request_id, params, record, ApprovalOutcome(retry.answer))
            self._approved(record, rule, digest)
            # If the server asks for input of its own, the client retries once more:
            # the approval holds for that retry too.
            self._retried[request_id] = (digest, rule.approval_timeout_s)
            message = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": approval.strip_retry(params, retry.inner_state),
            }
            return mcp.dumps(message)
        if not approval.client_can_elicit(meta.get(approval.CLIENT_CAPABILITIES_KEY)):
            return self._not_approved(
                request_id, params, record, ApprovalOutcome.UNASKED, _NO_ELICITATION
            )
        self._settle(record, unsent=True)
        record.approval_outcome = ApprovalOutcome.ASKED
        self._answered(record, None)
        self._note("approval", {"tool": record.tool, "rule": rule.name, "outcome": "asked"})
        args = params.get("arguments") or {}
        state = self._seal.mint(self.id, digest, rule.approval_timeout_s, retry.inner_state)
        ask = approval.elicitation(record.tool, args, rule, digest)
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
                self._not_approved(
                    asking.request_id, asking.params, asking.record, ApprovalOutcome(answer)
                )
            )
            return
        self._approved(asking.record, asking.rule, asking.digest)
        if self._call_timeout is not None:
            self._start_deadline(asking.request_id, asking.record)
        self._to_server(asking.line)

    def _approval_timed_out(self, asking: _Asking) -> None:
        del self._asking[asking.approval_id]
        del self._held[asking.request_id]
        self._pending.pop(asking.request_id, None)
        seconds = f"{asking.rule.approval_timeout_s:g} s"
        self._cancel_ask(asking, f"no answer within {seconds}")
        self._reply(
            self._not_approved(
                asking.request_id,
                asking.params,
                asking.record,
                ApprovalOutcome.TIMED_OUT,
                seconds,
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
        self._not_approved(
            asking.request_id, asking.params, asking.record, ApprovalOutcome.WITHDRAWN
        )

    def _cancel_ask(self, asking: _Asking, why: str) -> None:
        cancel = mcp.cancellation(asking.approval_id, why)
        self._to_client(mcp.dumps(cancel), Related(asking.request_id))

    def _approved(self, record: CallRecord, rule: Rule, digest: str) -> None:
        record.approval_outcome = ApprovalOutcome.ACCEPTED
        if rule.remember_s:
            self._grants.add(digest, rule.remember_s)
        log.info('a human approved %s (rule "%s")', record.tool, rule.name)
        self._note("approval", {"tool": record.tool, "rule": rule.name, "outcome": "accept"})

    def _not_approved(
        self,
        request_id: Any,
        params: dict[str, Any],
        record: CallRecord,
        outcome: ApprovalOutcome,
        why: str = "",
    ) -> Any:
        """Turn an approval that did not happen into a denial; the answer to send."""
        rule = record.approval
        assert rule is not None
        record.verdict = not_approved(record.verdict, outcome, why)
        record.approval_outcome = outcome
        self._settle(record, unsent=True)
        log.info("denied %s: %s", record.tool, record.reason)
        if outcome not in (ApprovalOutcome.UNASKED, ApprovalOutcome.UNANSWERABLE):
            self._note("approval", {"tool": record.tool, "rule": rule.name, "outcome": outcome})
        self._answered(record, None)
        if outcome in (ApprovalOutcome.UNANSWERABLE, ApprovalOutcome.WITHDRAWN):
            return _DROP
        return _denial(request_id, record, params)

    def _client_batch(self, items: list[Any], line: bytes) -> None:
        if not items:
            self._reply(_invalid(None, "an empty batch is not a valid request"))
            return
        version = self.protocol_version
        if version is not None and version not in mcp.BATCH_VERSIONS:
            refusal = f"JSON-RPC batches are not part of MCP {version}"
            answers = [
                _invalid(item["id"] if mcp.valid_id(item["id"]) else None, refusal)
                for item in items
                if mcp.owes_answer(item)
            ]
            if answers:
                self._to_client(mcp.dumps(answers), [a["id"] for a in answers])
            return
        forwarded: list[Any] = []
        held: list[dict[str, Any]] = []
        for item in items:
            outcome = self._guarded(item, None)
            if outcome is _FORWARD:
                forwarded.append(item)
            elif outcome is not _DROP:
                held.append(outcome)
        batch = _Batch(held)
        for item in forwarded:
            if mcp.is_request(item):
                batch.waiting.add(item["id"])
                self._batches[item["id"]] = batch
        if forwarded:
            # Forward exactly what was judged: the whole line if nothing was taken out
            # (a denied notification is taken out without an answer to hold).
            self._to_server(line if len(forwarded) == len(items) else mcp.dumps(forwarded))
        if held and not batch.waiting:
            self._to_client(mcp.dumps(held), [answer["id"] for answer in held])
            held.clear()

    # -- server to client -------------------------------------------------------------

    def from_server(self, line: bytes) -> None:
        if len(line) < _SMALL and not line.strip():
            return
        if len(line) >= mcp.LARGE_ANSWER and self._plain_answer(line):
            return
        try:
            message = mcp.decode_server(line)
        except mcp.Malformed as exc:
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
            self._to_client(line if rewritten is None else mcp.dumps(rewritten), reply_to)
            if batch is not None and batch.held and not batch.waiting:
                self._flush_batch(batch)
        elif type(message) is list:
            self._server_batch(message, line)
        else:
            log.warning("dropped a line from the server that is not a JSON-RPC message")

    def _plain_answer(self, line: bytes) -> bool:
        """Relay a large answer to a tools/call without parsing it, when nothing is to be
        learnt from it but that the call succeeded: no redaction, no batch to complete,
        no 2026-07-28 retry. Parsing 10 MB takes the relay longer than moving them."""
        if self._policy().redactor is not None:  # before the line is scanned at all
            return False
        request_id = mcp.plain_result_id(line)
        if request_id is None or type(self._pending.get(request_id)) is not CallRecord:
            return False
        if request_id in self._batches or request_id in self._retried:
            return False
        # What the rest of the relay reads of a successful answer, and nothing else.
        answer = {"jsonrpc": "2.0", "id": request_id, "result": {}}
        rewritten, _ = self._server_response(answer)
        self._to_client(line if rewritten is None else mcp.dumps(rewritten), request_id)
        return True

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
        try:
            return self._answer_of_server(message, request_id, pending), batch
        except Exception:
            # Never forward what could not be looked at (a result the redactor failed
            # on may hold the secrets it was to take out).
            log.exception("mcpwall failed on the server's answer to request %r", request_id)
            if type(pending) is CallRecord:
                self._settle(pending, failed=True)
                self._answered(pending, "mcpwall failed on the answer")
            return mcp.error(request_id, mcp.INTERNAL_ERROR, _INTERNAL_ANSWER), batch

    def _answer_of_server(self, message: dict[str, Any], request_id: Any, pending: Any) -> Any:
        """The server's answer to a request: learnt from, settled, and rewritten if the
        policy says so; None to forward it unchanged."""
        if type(pending) is CallRecord:
            rewritten = None
            redactor = self._policy().redactor
            if redactor is not None:
                rewritten = self._redact(message, pending, redactor)
            if self._retried:
                self._retried_answer(request_id, message)
            if pending.tokens or self._observers:
                error = _call_error(message)
                if error is not None and pending.tokens:
                    self._settle(pending, failed=True)
                self._answered(pending, error)
            return rewritten
        if pending is _LIST:
            return self._listed(message)
        elif pending is _INITIALIZE:
            result = message.get("result")
            if type(result) is dict and type(result.get("protocolVersion")) is str:
                self.protocol_version = result["protocolVersion"]
        return None

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

    def _redact(self, message: dict[str, Any], record: CallRecord, redactor: Any) -> Any:
        """The result without the secrets the policy redacts; None if it had none."""
        result = message.get("result")
        if type(result) is not dict:
            return None
        found = redactor.result(result)
        if not found:
            return None
        counts = dict(found)
        record.redacted = counts
        shown = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        log.warning(
            "redacted %d secret(s) from the result of %s (%s)",
            sum(counts.values()),
            record.tool,
            shown,
        )
        self._note("redacted", {"tool": record.tool, "found": counts})
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
        self._to_client(mcp.dumps(out) if changed else line, answered)

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
            if type(pending) is CallRecord:
                if request_id in held:
                    self._settle(pending, unsent=True)
                elif request_id not in self._cancelled:
                    self._settle(pending, failed=True)
                self._answered(pending, f"no answer: the MCP server {what}")
            self._reply(
                mcp.error(
                    request_id,
                    mcp.SERVER_GONE,
                    f"[mcpwall] the MCP server {what} before answering this request",
                )
            )
            batch = self._batches.pop(request_id, None)
            if batch is not None and batch.held:
                self._flush_batch(batch)
        return len(waiting)

    def _expire(self, request_id: Any, record: CallRecord) -> None:
        """A tools/call the server has not answered within the call timeout: answered
        here with an error and settled as a failed call; the server is asked to cancel
        it. Its id stays taken until the server's late answer, which is dropped, so that
        the agent never gets two answers to one request."""
        del self._deadlines[request_id]
        seconds = f"{self._call_timeout:g} s"
        log.warning("no answer from the MCP server to %s within %s", record.tool, seconds)
        self._pending[request_id] = _EXPIRED
        if request_id in self._cancelled:  # cancelled by the agent: counters are kept
            self._cancelled.discard(request_id)
        else:
            self._settle(record, failed=True)
        reason = f"no answer within {seconds}"
        self._answered(record, reason)
        self._to_server(mcp.dumps(mcp.cancellation(request_id, reason)))
        reply = mcp.error(
            request_id,
            mcp.TIMED_OUT,
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
        if self._group:  # answered in its turn, after the calls before it
            self._judge_group()
        self._reply(
            mcp.error(
                None,
                mcp.INVALID_REQUEST,
                f"Invalid request: message larger than {limit} bytes",
            )
        )

    def _reply(self, message: dict[str, Any]) -> None:
        self._to_client(mcp.dumps(message), message.get("id"))

    def _flush_batch(self, batch: _Batch) -> None:
        """The answers mcpwall held for a batch, once nothing else of it is awaited."""
        held, batch.held = batch.held, []
        self._to_client(mcp.dumps(held), [answer["id"] for answer in held])

    def _note(self, kind: str, fields: dict[str, Any]) -> None:
        for observer in self._observers:
            try:
                observer.noted(self.id, kind, fields)
            except Exception:
                log.exception(_OBSERVER_FAILED)

    def _answered(self, record: CallRecord, error: str | None) -> None:
        for observer in self._observers:
            try:
                observer.answered(self.id, record, error)
            except Exception:
                log.exception(_OBSERVER_FAILED)
        record.args = None  # no longer needed: let big arguments go

    def _settle(self, record: CallRecord, *, failed: bool = False, unsent: bool = False) -> None:
        if record.tokens:
            self._gate.settle(record.tokens, record.tool, failed=failed, unsent=unsent)
            record.tokens = ()


def _invalid(request_id: Any, why: str) -> dict[str, Any]:
    return mcp.invalid(request_id, why)


def _bad_params(request_id: Any, has_id: bool, why: str) -> Any:
    log.warning("refused a tools/call: %s", why)
    return mcp.error(request_id, mcp.INVALID_PARAMS, why) if has_id else _DROP


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


def _denial(request_id: Any, record: CallRecord, params: dict[str, Any]) -> dict[str, Any]:
    return mcp.denial(request_id, record.reason, record.verdict.as_meta(), params)


# An observer failing (a full disk under the audit log) is logged; the call it reports
# on goes on as decided.
_OBSERVER_FAILED = "an observer of judged calls failed"
