"""A client session of the listener (or the stateless requests of one identity): its
relay Session, the server behind it, and the POSTs waiting for answers. Every answer
finds its POST by request id; what the server sends unasked goes to the POST it
belongs to (by progress token), else to the GET stream, else it waits for one."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcpwall import mcp
from mcpwall.proxy.http.stateless import rename_answers
from mcpwall.proxy.link import LinkEvents, ServerLink
from mcpwall.proxy.relay import SERVER_MESSAGE, Deliver, Related, Send, Session
from mcpwall.proxy.tasks import Tasks

log = logging.getLogger("mcpwall")

BACKLOG = 100  # messages the server sends unasked, kept until a GET stream takes them

MakeBackend = Callable[[LinkEvents, dict[str, str]], ServerLink]
MakeSession = Callable[[str, Send, Deliver], Session]


@dataclass
class Exchange:
    """One POST, waiting for the answers to the requests it carried."""

    waiting: set[Any]
    renamed: dict[Any, Any] | None  # internal id -> the client's, for stateless requests
    queue: asyncio.Queue[tuple[bytes, bool]] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)

    def put(self, data: bytes, answers: list[Any]) -> None:
        for request_id in answers:
            self.waiting.discard(request_id)
        if self.renamed is not None:
            data = rename_answers(data, self.renamed)
        self.queue.put_nowait((data, not self.waiting))


class Client:
    """One client session, or the stateless requests of one identity."""

    def __init__(
        self,
        key: str,
        stateless: bool,
        make_backend: MakeBackend,
        make_session: MakeSession,
        ended: Callable[[Client], None],
    ) -> None:
        self.key = key
        self.stateless = stateless
        self.owner: str | None = None  # the subject whose token opened it, under --auth
        self.forwarded: dict[str, str] = {}
        self.link = make_backend(self, self.forwarded)
        # The session id is a secret (who knows it can use the session): logs and
        # counters get a digest of it instead.
        label = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.session = make_session(label, self.link.send, self.deliver)
        self._ended = ended
        self.exchanges: dict[Any, Exchange] = {}
        self.progress: dict[Any, Exchange] = {}
        self.current: Exchange | None = None
        self.stream: asyncio.Queue[bytes] | None = None
        self.backlog: list[bytes] = []
        self.last_used = time.monotonic()
        self.ids = itertools.count(1)
        # Whether the server started: requests that find the client while it is still
        # starting (concurrent first requests of one identity) wait for it.
        self.started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    # -- LinkEvents -----------------------------------------------------------------------

    def message(self, data: bytes) -> None:
        self.session.from_server(data)

    def read_start(self) -> None:
        return None

    def read_end(self) -> None:
        return None

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None

    # -- the relay's deliveries to the client ---------------------------------------------

    def deliver(self, data: bytes, reply_to: Any) -> None:
        if reply_to is SERVER_MESSAGE:
            self._unasked(data)
            return
        if type(reply_to) is Related:  # mcpwall asking about a pending request
            related = self.exchanges.get(reply_to.request_id)
            if related is not None:
                related.put(data, [])
            else:
                self._unasked(data)
            return
        answers = reply_to if isinstance(reply_to, list) else [reply_to]
        exchange = None
        for request_id in answers:
            exchange = self.exchanges.pop(request_id, None) or exchange
        if exchange is None and None in answers:
            exchange = self.current  # mcpwall's answer to a message without a usable id
        if exchange is None:
            log.warning("an answer for request %r found no client waiting; dropped", reply_to)
            return
        exchange.put(data, answers)

    def _unasked(self, data: bytes) -> None:
        """A request or notification of the server: to the exchange it belongs to (by
        progress token), else the GET stream, else the latest exchange still open."""
        exchange = None
        try:
            token = mcp.reported_progress(mcp.decode_server(data))
        except mcp.Malformed:
            token = None
        if type(token) in (int, str):
            exchange = self.progress.get(token)
        if exchange is None and self.stream is not None:
            self.stream.put_nowait(data)
            return
        if exchange is None:
            live = [e for e in self.exchanges.values() if e.waiting]
            exchange = max(live, key=lambda e: e.started) if live else None
        if exchange is not None:
            exchange.put(data, [])
        elif len(self.backlog) < BACKLOG:
            self.backlog.append(data)
        else:
            log.warning("the server sent a message no client stream can take; dropped")

    # -- life -------------------------------------------------------------------------------

    async def start(self, tasks: Tasks) -> None:
        await self.link.start()
        tasks.spawn(self._watch(), f"the watch on session {self.key[:8]}'s server")

    async def _watch(self) -> None:
        """When the server ends, every request still waiting gets an error."""
        how = await self.link.ended
        unanswered = self.session.server_gone(how)
        if unanswered:
            log.error(
                "the MCP server of session %s %s with %d request(s) unanswered",
                self.key[:8],
                how,
                unanswered,
            )
        self._ended(self)

    def close(self) -> None:
        self.link.close()

    # -- the requests of a POST -------------------------------------------------------------

    def reused(self, request_ids: list[Any]) -> list[Any]:
        """The ids of a POST already waiting in another, or twice in this one."""
        seen: set[Any] = set()
        reused = []
        for request_id in request_ids:
            if request_id in self.exchanges or request_id in seen:
                reused.append(request_id)
            seen.add(request_id)
        return reused


def reuse_refusal(message: Any, request_ids: list[Any], reused: list[Any]) -> bytes:
    answers = [
        mcp.invalid(
            request_id,
            f"request id {request_id!r} is already in use"
            if request_id in reused
            else f"its batch reuses request id {reused[0]!r}, already in use",
        )
        for request_id in request_ids
    ]
    return mcp.dumps(answers if type(message) is list else answers[0])
