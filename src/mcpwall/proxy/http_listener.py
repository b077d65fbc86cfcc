"""mcpwall as a Streamable HTTP server, for many agents at once.

Each client session (``Mcp-Session-Id``, issued here at ``initialize``) is an agent
session of its own: its own relay Session, so its own ``scope: session`` counters, and
its own server: a child process of its own when the server is a command, a session of
its own with the upstream when the server is remote. Answers never cross between client
sessions. Stateless 2026-07-28 requests, which carry no session, are grouped by the
client's identity (its bearer token, or the header named by --session-header); their ids
are renamed on the way in and back, so that two clients using the same ids cannot meet.

A POST's answer is JSON, or an event stream when the server has something to send first
(progress, or a request of its own); a GET opens the stream for what the server sends
unasked; DELETE ends the session. The listener binds 127.0.0.1 by default, refuses
foreign ``Host`` (421) and ``Origin`` (403) headers against DNS rebinding, and with
--auth-token-file wants a bearer token, or with --auth an OAuth access token (checked by
mcpwall.auth; a session then belongs to the token's subject, and the relay judges its
calls with that identity). A client's own headers are never sent upstream, except those
named by --forward-header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from mcpwall import jsonrpc
from mcpwall.auth import Identity
from mcpwall.proxy.link import LinkEvents, ServerLink
from mcpwall.proxy.relay import SERVER_MESSAGE, Deliver, Related, Send, Session
from mcpwall.proxy.sse import encode

if TYPE_CHECKING:
    from mcpwall.auth.resource import Authenticator

log = logging.getLogger("mcpwall")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

PATHS = ("/mcp", "/")
IDLE_SECONDS = 30 * 60
MAX_SESSIONS = 1000
KEEPALIVE_SECONDS = 15.0
SHUTDOWN_GRACE = 5  # seconds uvicorn waits for open connections after SIGTERM
BACKLOG = 100  # messages the server sends unasked, kept until a GET stream takes them
HEADER_MISMATCH = -32020
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@dataclass
class ListenerOptions:
    bind: str = "127.0.0.1"
    port: int = 0
    auth_tokens: frozenset[str] = frozenset()
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    session_header: str | None = None
    forward_headers: tuple[str, ...] = ()
    max_message: int = 256 * 1024 * 1024
    authenticator: Authenticator | None = None


MakeBackend = Callable[[LinkEvents, dict[str, str]], ServerLink]
MakeSession = Callable[[str, Send, Deliver], Session]


class _Reply(Exception):
    """An HTTP answer given before any message is relayed (a refusal)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: int = jsonrpc.INVALID_REQUEST,
        request_id: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = jsonrpc.dumps(jsonrpc.error(request_id, code, message))
        self.headers = headers or {}


@dataclass
class _Exchange:
    """One POST, waiting for the answers to the requests it carried."""

    waiting: set[Any]
    renamed: dict[Any, Any] | None  # internal id -> the client's, for stateless requests
    queue: asyncio.Queue[tuple[bytes, bool]] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)

    def put(self, data: bytes, answers: list[Any]) -> None:
        for request_id in answers:
            self.waiting.discard(request_id)
        if self.renamed is not None:
            data = _rename(data, self.renamed)
        self.queue.put_nowait((data, not self.waiting))


class _Client:
    """One client session, or the stateless requests of one identity: the relay session
    and the server behind it."""

    def __init__(
        self, listener: HttpListener, key: str, stateless: bool, owner: str | None = None
    ) -> None:
        self.key = key
        self.stateless = stateless
        self.owner = owner  # the subject whose token opened the session, under --auth
        self.forwarded: dict[str, str] = {}
        self.link = listener.make_backend(self, self.forwarded)
        # The session id is a secret (who knows it can use the session): logs and
        # counters get a digest of it instead.
        label = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.session = listener.make_session(label, self.link.send, self.deliver)
        self.exchanges: dict[Any, _Exchange] = {}
        self.progress: dict[Any, _Exchange] = {}
        self.current: _Exchange | None = None
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
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(data)
            params = message.get("params") if type(message) is dict else None
            if type(params) is dict and "progressToken" in params:
                exchange = self.progress.get(params["progressToken"])
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

    async def start(self, listener: HttpListener) -> None:
        await self.link.start()
        watch = asyncio.get_running_loop().create_task(self._watch(listener))
        listener.tasks.add(watch)
        watch.add_done_callback(listener.tasks.discard)

    async def _watch(self, listener: HttpListener) -> None:
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
        listener.forget(self)

    def close(self) -> None:
        self.link.close()


class HttpListener:
    def __init__(
        self, options: ListenerOptions, make_backend: MakeBackend, make_session: MakeSession
    ) -> None:
        self.options = options
        self.make_backend = make_backend
        self.make_session = make_session
        self._clients: dict[str, _Client] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._warned_anonymous = False
        self._closing = asyncio.Event()  # set on SIGINT or SIGTERM: GET streams end
        self.port = options.port
        self._loopback = _is_loopback(options.bind)

    # -- serving --------------------------------------------------------------------------

    async def serve(self, started: Callable[[int], None]) -> int:
        """Serve until SIGINT or SIGTERM; then close every session. ``started`` is told
        the port once the socket listens."""
        import uvicorn

        class Server(uvicorn.Server):
            # uvicorn's own handlers re-raise the signal once it has stopped, which would
            # kill mcpwall before it closes the sessions and writes its last record.
            def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
                return contextlib.nullcontext()

        config = uvicorn.Config(
            self,
            host=self.options.bind,
            port=self.options.port,
            lifespan="off",
            http="httptools",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            # A backstop: uvicorn otherwise waits for ever for a stream that stays open.
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        server = Server(config)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # Close every session now, not once uvicorn is done: its servers then end,
            # their pending requests are answered with an error and the POSTs waiting
            # for them finish, and the GET streams end; uvicorn waits for all of them.
            server.should_exit = True
            self._closing.set()
            for client in list(self._clients.values()):
                client.close()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        reaper = loop.create_task(self._reap_idle())
        serving = loop.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            self.port = server.servers[0].sockets[0].getsockname()[1]
            started(self.port)
        try:
            await serving
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            reaper.cancel()
            for client in list(self._clients.values()):
                client.close()
            ended = [c.link.ended for c in self._clients.values()]
            if ended:
                await asyncio.wait(ended, timeout=5)
        return 0 if server.started else 1

    def forget(self, client: _Client) -> None:
        if self._clients.get(client.key) is client:
            del self._clients[client.key]

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(60)
            now = time.monotonic()
            for key, client in list(self._clients.items()):
                if now - client.last_used > IDLE_SECONDS and not client.exchanges:
                    log.info("session %s idle for %d s: closed", key[:8], IDLE_SECONDS)
                    del self._clients[key]
                    client.close()

    async def __call__(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = self.options.authenticator
        try:
            if scope["path"] not in PATHS and (auth is None or scope["path"] not in auth.paths):
                raise _Reply(404, "Not found: the MCP endpoint is /mcp")
            self._check_host_and_origin(headers)
            identity = None
            if auth is None:
                self._check_auth(headers)
            else:
                outcome = await auth.authenticate(scope, headers)
                if not isinstance(outcome, Identity):
                    await _respond(send, outcome.status, outcome.body, outcome.headers)
                    return
                identity = outcome
            method = scope["method"]
            if method == "POST":
                await self._post(headers, receive, send, identity)
            elif method == "GET":
                await self._get(headers, receive, send, identity)
            elif method == "DELETE":
                await self._delete(headers, send, identity)
            else:
                raise _Reply(
                    405, f"Method {method} not allowed", headers={"allow": "GET, POST, DELETE"}
                )
        except _Reply as reply:
            await _respond(send, reply.status, reply.body, reply.headers)

    # -- checks ---------------------------------------------------------------------------

    def _check_host_and_origin(self, headers: dict[str, str]) -> None:
        host = headers.get("host", "")
        allowed = self.options.allowed_hosts
        if allowed or self._loopback:
            names = allowed or _LOOPBACK_NAMES
            if _host_name(host) not in names:
                raise _Reply(421, f"Misdirected request: host {host!r} is not served here")
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            if origin in self.options.allowed_origins:
                return
            if _host_name(urlsplit(origin).netloc) not in (allowed or _LOOPBACK_NAMES):
                raise _Reply(403, f"Forbidden: origin {origin!r} is not allowed")

    def _check_auth(self, headers: dict[str, str]) -> None:
        tokens = self.options.auth_tokens
        if not tokens:
            return
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens
        ):
            return
        raise _Reply(
            401,
            "Unauthorized: a bearer token is required",
            headers={"www-authenticate": 'Bearer realm="mcpwall"'},
        )

    # -- POST: messages from the client -------------------------------------------------

    async def _post(
        self, headers: dict[str, str], receive: Receive, send: ASGISend, identity: Identity | None
    ) -> None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Reply(415, "Unsupported media type: the body must be application/json")
        accept = headers.get("accept", "*/*")
        if not any(kind in accept for kind in ("application/json", "text/event-stream", "*/*")):
            raise _Reply(406, "Not acceptable: accept application/json and text/event-stream")
        body = await _read_body(receive, self.options.max_message)
        message = _read_strictly(body)
        if b"\n" in body:
            # A body is one message, but a server behind a pipe reads lines: a pretty-
            # printed body would reach it as several, and one of them could be a whole
            # call that was never judged. A strictly read body has line feeds only
            # between tokens (a JSON string cannot hold a raw one), so spaces in their
            # place leave the message as it was judged, on one line.
            body = body.rstrip(b"\n").replace(b"\n", b" ")
        modern = _modern_version(message)
        if modern is not None:
            _check_mirrored_headers(headers, message, modern)
            client = await self._stateless_client(headers, identity)
        else:
            client = await self._session_client(headers, message, identity)
        client.last_used = time.monotonic()
        client.session.identity = identity  # the calls of this POST are judged as its token's
        for name in self.options.forward_headers:
            if name.lower() in headers:
                client.forwarded[name] = headers[name.lower()]

        renamed: dict[Any, Any] | None = None
        if client.stateless and message is not None:
            body, renamed = _rename_requests(message, client.ids)
        request_ids = list(_request_ids(message if renamed is None else orjson.loads(body)))
        reused = [] if client.stateless else _reused(request_ids, client.exchanges)
        if reused:
            # Answers find their POST by id: a second POST waiting on an id would take
            # the first one's answer and leave the first waiting for ever. So ids must
            # be unique among the session's pending requests, as JSON-RPC wants them;
            # a POST that reuses one is refused whole, and nothing of it is forwarded.
            log.warning("refused a message reusing pending request id(s) %r", reused)
            refusal = _reuse_refusal(message, request_ids, reused)
            await _respond(send, 400, refusal, {"mcp-session-id": client.key})
            return
        exchange = _Exchange(set(request_ids), renamed)
        for request_id in request_ids:
            client.exchanges[request_id] = exchange
        for token in _progress_tokens(message):
            client.progress[token] = exchange
        client.current = exchange
        try:
            client.session.from_client(body)
        finally:
            client.current = None
        extra = {} if client.stateless else {"mcp-session-id": client.key}
        if not request_ids and exchange.queue.empty():
            await _respond(send, 202, b"", extra)
        else:
            try:
                await self._answer(exchange, send, extra, "text/event-stream" in accept)
            finally:
                for request_id in request_ids:
                    client.exchanges.pop(request_id, None)
                for token in _progress_tokens(message):
                    client.progress.pop(token, None)

    async def _answer(
        self, exchange: _Exchange, send: ASGISend, headers: dict[str, str], stream: bool
    ) -> None:
        """The answers, as an event stream when the client takes one (as MCP servers
        usually answer), else as JSON; a stream anyway if the server sends something
        before the answer."""
        data, complete = await exchange.queue.get()
        if complete and exchange.queue.empty() and (not stream or _is_parse_error(data)):
            status = 400 if _is_parse_error(data) else 200
            await _respond(send, status, data, {**headers, "content-type": "application/json"})
            return
        await _start_stream(send, headers)
        while True:
            await send({"type": "http.response.body", "body": encode(data), "more_body": True})
            if complete:
                break
            data, complete = await exchange.queue.get()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _session_client(
        self, headers: dict[str, str], message: Any, identity: Identity | None
    ) -> _Client:
        session = headers.get("mcp-session-id")
        if session is not None:
            client = self._owned(session, identity)
            if client is None:
                raise _Reply(404, "Session not found: start a new one with initialize")
            return client
        if not _is_initialize(message):
            raise _Reply(400, "Bad request: no Mcp-Session-Id; send initialize first")
        if len(self._clients) >= MAX_SESSIONS:
            raise _Reply(503, "Too many sessions: try again later")
        key = secrets.token_urlsafe(24)
        owner = identity.subject if identity is not None else None
        client = self._clients[key] = _Client(self, key, stateless=False, owner=owner)
        await self._start(client)
        log.info("new client session %s", key[:8])
        return client

    async def _stateless_client(self, headers: dict[str, str], user: Identity | None) -> _Client:
        identity = self._identity(headers, user)
        client = self._clients.get(identity)
        if client is None:
            # Identities are the client's to choose (--session-header): each new one
            # starts a server, so they count against the same bound as sessions.
            if len(self._clients) >= MAX_SESSIONS:
                raise _Reply(503, "Too many sessions: try again later")
            client = self._clients[identity] = _Client(self, identity, stateless=True)
            await self._start(client)
        elif not await asyncio.shield(client.started):
            # Sent before the server had started, a message would have been lost.
            raise _Reply(502, "Bad gateway: the MCP server did not start", jsonrpc.SERVER_GONE)
        return client

    async def _start(self, client: _Client) -> None:
        try:
            await client.start(self)
        except Exception as exc:
            self.forget(client)
            client.started.set_result(False)
            log.error("the MCP server for a new session did not start: %s", exc)
            raise _Reply(
                502, f"Bad gateway: the MCP server did not start: {exc}", jsonrpc.SERVER_GONE
            ) from exc
        client.started.set_result(True)

    def _identity(self, headers: dict[str, str], user: Identity | None) -> str:
        """Who a stateless request comes from, for scope: session counters. Under
        --auth, the token's subject (a token is renewed, its subject stays), and the
        session header apart within it: one user cannot name another's sessions."""
        named = self.options.session_header
        if user is not None:
            value = user.subject + "\n" + headers.get((named or "").lower(), "")
        elif named and headers.get(named.lower()):
            value = headers[named.lower()]
        elif headers.get("authorization"):
            value = headers["authorization"]
        else:
            if not self._warned_anonymous:
                self._warned_anonymous = True
                log.warning(
                    "stateless requests without a bearer token or --session-header: "
                    "session limits act for all of them together, not per client"
                )
            return "stateless:anonymous"
        return "stateless:" + hashlib.sha256(value.encode()).hexdigest()[:32]

    def _owned(self, session: str, identity: Identity | None) -> _Client | None:
        """The client session by this id, if the request may use it: under --auth only
        with a token of the subject that opened it (a session id that leaked is of no
        use to another user)."""
        client = self._clients.get(session)
        if client is None or client.stateless:
            return None
        if client.owner != (identity.subject if identity is not None else None):
            return None
        return client

    # -- GET: the stream of what the server sends unasked ----------------------------------

    async def _get(
        self, headers: dict[str, str], receive: Receive, send: ASGISend, identity: Identity | None
    ) -> None:
        if "text/event-stream" not in headers.get("accept", ""):
            raise _Reply(406, "Not acceptable: a GET stream is text/event-stream")
        session = headers.get("mcp-session-id")
        client = self._owned(session or "", identity)
        if session is None:
            raise _Reply(
                405, "No session: stateless requests have no GET stream", headers={"allow": "POST"}
            )
        if client is None:
            raise _Reply(404, "Session not found: start a new one with initialize")
        stream: asyncio.Queue[bytes] = asyncio.Queue()
        for data in client.backlog:
            stream.put_nowait(data)
        client.backlog.clear()
        client.stream = stream
        await _start_stream(send, {"mcp-session-id": client.key})
        disconnected = asyncio.get_running_loop().create_task(_disconnect(receive))
        closing = asyncio.get_running_loop().create_task(self._closing.wait())
        try:
            while not disconnected.done():
                getter = asyncio.ensure_future(stream.get())
                done, _ = await asyncio.wait(
                    {getter, disconnected, closing},
                    timeout=KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    body = encode(getter.result())
                else:
                    getter.cancel()
                    body = b": keep-alive\n\n"
                if disconnected.done():
                    break
                if closing.done():  # mcpwall is stopping: the stream ends here
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    break
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            disconnected.cancel()
            closing.cancel()
            if client.stream is stream:
                client.stream = None

    # -- DELETE: the end of a session -----------------------------------------------------

    async def _delete(
        self, headers: dict[str, str], send: ASGISend, identity: Identity | None
    ) -> None:
        session = headers.get("mcp-session-id")
        client = self._owned(session or "", identity)
        if client is None:
            # Looked at before it is taken out: a DELETE naming a stateless identity
            # (its key is known to whoever knows the identity) used to drop it from the
            # map unclosed, its server left running, a new one started by the next
            # request.
            raise _Reply(404, "Session not found")
        del self._clients[client.key]
        log.info("client session %s ended", client.key[:8])
        client.close()
        await _respond(send, 200, b"", {})


# -- the wire ---------------------------------------------------------------------------------


async def _respond(send: ASGISend, status: int, body: bytes, headers: dict[str, str]) -> None:
    head = {"content-type": "application/json", **headers} if body else dict(headers)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in head.items()],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _start_stream(send: ASGISend, headers: dict[str, str]) -> None:
    head = {
        **headers,
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.encode(), v.encode()) for k, v in head.items()],
        }
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise _Reply(400, "The client went away")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reply(413, f"Payload too large: more than {limit} bytes")
        parts.append(chunk)
        if not event.get("more_body"):
            return b"".join(parts)


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue


def _parse(body: bytes) -> Any:
    """The message as routing sees it; None if it is not JSON (the relay answers that)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _read_strictly(body: bytes) -> Any:
    """The message, read as strictly as the relay reads it. The listener routes by this
    reading (ids, version, headers) and writes stateless requests anew from it: a body
    the relay would refuse must not be routed, or rewritten, by a laxer reading (one
    that keeps the last of duplicate keys, or sees an id the relay does not)."""
    try:
        return jsonrpc.decode_strict(body)
    except jsonrpc.Malformed as exc:
        log.warning("refused a malformed message from the client: %s", exc)
        raise _Reply(400, f"Parse error: {exc}", jsonrpc.PARSE_ERROR) from None


def _items(message: Any) -> list[Any]:
    return message if type(message) is list else [message]


def _request_ids(message: Any) -> list[Any]:
    """The ids the relay answers by: every element with a usable id, except the client's
    own responses (no method, and a result or an error). Counting any other (an id too
    large, a response with "method": null) left the POST waiting for an answer that
    never comes; leaving one out (neither request nor response) lost its refusal."""
    return [
        item["id"]
        for item in _items(message)
        if type(item) is dict
        and jsonrpc.valid_id(item.get("id"))
        and (item.get("method") is not None or not ("result" in item or "error" in item))
    ]


def _reused(request_ids: list[Any], pending: dict[Any, _Exchange]) -> list[Any]:
    """The ids of this POST already waiting in another, or twice in this one."""
    seen: set[Any] = set()
    reused = []
    for request_id in request_ids:
        if request_id in pending or request_id in seen:
            reused.append(request_id)
        seen.add(request_id)
    return reused


def _reuse_refusal(message: Any, request_ids: list[Any], reused: list[Any]) -> bytes:
    answers = [
        jsonrpc.error(
            request_id,
            jsonrpc.INVALID_REQUEST,
            f"Invalid request: request id {request_id!r} is already in use"
            if request_id in reused
            else f"Invalid request: its batch reuses request id {reused[0]!r}, already in use",
        )
        for request_id in request_ids
    ]
    return jsonrpc.dumps(answers if type(message) is list else answers[0])


def _progress_tokens(message: Any) -> list[Any]:
    tokens = []
    for item in _items(message):
        params = item.get("params") if type(item) is dict else None
        meta = params.get("_meta") if type(params) is dict else None
        if type(meta) is dict and type(meta.get("progressToken")) in (int, str):
            tokens.append(meta["progressToken"])
    return tokens


def _is_initialize(message: Any) -> bool:
    return any(
        type(item) is dict and item.get("method") == "initialize" for item in _items(message)
    )


def _modern_version(message: Any) -> str | None:
    if type(message) is not dict:
        return None
    params = message.get("params")
    meta = params.get("_meta") if type(params) is dict else None
    version = meta.get(jsonrpc.MODERN_VERSION_KEY) if type(meta) is dict else None
    return version if type(version) is str else None


def _check_mirrored_headers(headers: dict[str, str], message: dict[str, Any], version: str) -> None:
    """2026-07-28 mirrors parts of the body in headers; both must say the same, or the
    request is refused (mcpwall judges the body, never the header)."""
    request_id = message.get("id")
    method = message.get("method")
    expected = {"mcp-protocol-version": version, "mcp-method": str(method)}
    field_name = _NAMED.get(str(method))
    params = message.get("params")
    if field_name is not None and type(params) is dict:
        expected["mcp-name"] = str(params.get(field_name))
    for name, value in expected.items():
        given = headers.get(name)
        if given is None:
            raise _Reply(
                400, f"Header mismatch: the {name} header is missing", HEADER_MISMATCH, request_id
            )
        if _header_text(given) != value:
            raise _Reply(
                400,
                f"Header mismatch: {name} says {given!r}, the body {value!r}",
                HEADER_MISMATCH,
                request_id,
            )


def _header_text(value: str) -> str:
    if value.startswith("=?base64?") and value.endswith("?="):
        with contextlib.suppress(ValueError):
            return base64.b64decode(value[9:-2], validate=True).decode()
    return value


def _rename_requests(message: Any, ids: itertools.count[int]) -> tuple[bytes, dict[Any, Any]]:
    """Give each request an id of mcpwall's, so that stateless clients sharing a server
    cannot collide; the map back to the client's ids."""
    renamed: dict[Any, Any] = {}
    for item in _items(message):
        if type(item) is dict and "method" in item and type(item.get("id")) in (int, str):
            internal = f"mcpwall-{next(ids)}"
            renamed[internal] = item["id"]
            item["id"] = internal
    return jsonrpc.dumps(message), renamed


def _rename(data: bytes, renamed: dict[Any, Any]) -> bytes:
    message = _parse(data)
    if message is None:
        return data
    changed = False
    for item in _items(message):
        if type(item) is dict and "method" not in item and item.get("id") in renamed:
            item["id"] = renamed[item["id"]]
            changed = True
    return jsonrpc.dumps(message) if changed else data


def _is_parse_error(data: bytes) -> bool:
    message = _parse(data)
    error = message.get("error") if type(message) is dict else None
    return type(error) is dict and error.get("code") == jsonrpc.PARSE_ERROR


def _host_name(host: str) -> str:
    """The name in a Host header or an origin's netloc, without its port."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False
