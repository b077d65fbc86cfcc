"""Asking a human before a call goes on (``action: approve``), through MCP elicitation.

Two eras, one rule: the call a human approves is exactly the call that goes on.

- Up to 2025-11-25, mcpwall sends ``elicitation/create`` to the client itself, holds
  the call, and takes the client's answer for itself: accept forwards the call;
  decline, cancel, an error or the timeout deny it.
- From 2026-07-28 there are no requests from the server's side: the call is answered
  with an ``input_required`` result that carries the elicitation, and the client retries
  it with the human's answer and the ``requestState`` mcpwall minted: an HMAC over the
  session, the call's digest and an expiry, which also carries the state the client
  sent (the server's own, from an earlier round), given back to the server unchanged.

An approval is bound to its call: the digest of the tool name and the arguments.
``remember`` keeps it, for identical calls of the same session, that long.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mcpwall.policy.model import Rule

APPROVAL_KEY = "mcpwall-approval"  # the inputRequests key, 2026-07-28
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
_STATE_TAG = "mcpwall-approval."
_SHOWN_ARGUMENTS = 4000  # characters of the arguments shown to the human


def call_digest(tool: str, args: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps([tool, args], option=orjson.OPT_SORT_KEYS)).hexdigest()


def elicitation(tool: str, args: dict[str, Any], rule: Rule, digest: str) -> dict[str, Any]:
    """The ``elicitation/create`` params that ask the human about this call."""
    shown = orjson.dumps(args, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    if len(shown) > _SHOWN_ARGUMENTS:
        shown = f"{shown[:_SHOWN_ARGUMENTS]}\n... (cut; arguments sha256 {digest[:16]})"
    lines = [f'mcpwall: the agent wants to call the tool "{tool}".']
    if rule.reason:
        lines.append(rule.reason)
    lines += ["Arguments:", shown, "Accept to let this one call through; decline to deny it."]
    return {
        "message": "\n".join(lines),
        "requestedSchema": {"type": "object", "properties": {}},
    }


def answer_of(message: dict[str, Any]) -> str:
    """The human's answer in a response to an elicitation: accept, decline, cancel, or
    error."""
    result = message.get("result")
    action = result.get("action") if type(result) is dict else None
    return action if action in ("accept", "decline", "cancel") else "error"


def client_can_elicit(capabilities: Any) -> bool:
    """Whether declared client capabilities include form elicitation."""
    if type(capabilities) is not dict:
        return False
    elicitation = capabilities.get("elicitation")
    if type(elicitation) is not dict:
        return False
    # 2025-06-18 declares {}; 2025-11-25 may name its modes, and {} still means form.
    return not elicitation or "form" in elicitation


class Grants:
    """Approvals kept for identical calls: call digest -> until when (``clock``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: dict[str, float] = {}
        self._clock = clock

    def covers(self, digest: str) -> bool:
        until = self._until.get(digest)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._until[digest]
        return False

    def add(self, digest: str, seconds: float) -> None:
        now = self._clock()
        self._until = {d: u for d, u in self._until.items() if u > now}  # keep it small
        self._until[digest] = max(self._until.get(digest, 0.0), now + seconds)


@dataclass(frozen=True)
class Retry:
    """What a 2026-07-28 retry carried for mcpwall."""

    answer: str | None  # accept, decline, cancel, error; None: no answer to mcpwall's ask
    sealed: bool  # its requestState is mcpwall's, valid, for this session and call
    inner_state: str | None  # the state to give back to the server


class Seal:
    """The ``requestState`` of mcpwall's 2026-07-28 approval rounds."""

    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key or secrets.token_bytes(32)
        self._clock = clock

    def mint(self, session: str, digest: str, seconds: float, inner: str | None) -> str:
        expires = str(int(self._clock() + seconds))
        carried = "" if inner is None else _b64(inner.encode())
        return f"{_STATE_TAG}{expires}.{carried}.{self._mac(session, digest, expires, carried)}"

    def read(self, session: str, digest: str, params: dict[str, Any]) -> Retry:
        responses = params.get("inputResponses")
        ours = responses.get(APPROVAL_KEY) if type(responses) is dict else None
        answer = None
        if ours is not None:
            answer = answer_of({"result": ours})
        state = params.get("requestState")
        if type(state) is not str or not state.startswith(_STATE_TAG):
            return Retry(answer, False, state if type(state) is str else None)
        parts = state[len(_STATE_TAG) :].split(".")
        if len(parts) != 3:
            return Retry(answer, False, None)
        expires, carried, mac = parts
        valid = (
            expires.isdigit()
            and int(expires) >= self._clock()
            and hmac.compare_digest(mac, self._mac(session, digest, expires, carried))
        )
        inner = None
        if valid and carried:
            inner = base64.urlsafe_b64decode(carried + "=" * (-len(carried) % 4)).decode()
        return Retry(answer, valid, inner)

    def _mac(self, session: str, digest: str, expires: str, carried: str) -> str:
        text = f"{session}\0{digest}\0{expires}\0{carried}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()


def input_required(request_id: Any, ask: dict[str, Any], state: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {
            "resultType": "input_required",
            "inputRequests": {APPROVAL_KEY: {"method": "elicitation/create", "params": ask}},
            "requestState": state,
        },
    }


def strip_retry(params: dict[str, Any], inner_state: str | None) -> dict[str, Any]:
    """The params of an approved 2026-07-28 retry as the server is to see them: without
    mcpwall's answer and state, with the server's own state given back."""
    out = dict(params)
    responses = out.get("inputResponses")
    if type(responses) is dict and APPROVAL_KEY in responses:
        rest = {key: value for key, value in responses.items() if key != APPROVAL_KEY}
        if rest:
            out["inputResponses"] = rest
        else:
            del out["inputResponses"]
    if inner_state is None:
        out.pop("requestState", None)
    else:
        out["requestState"] = inner_state
    return out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
