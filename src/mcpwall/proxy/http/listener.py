"""The ASGI app: routing, and what each HTTP method does.

A POST's answer is JSON, or an event stream when the server has something to send first
(progress, or a request of its own); a GET opens the stream for what the server sends
unasked; DELETE ends the session. The listener binds 127.0.0.1 by default. A client's
own headers are never sent upstream, except those named by --forward-header.

With --auth, every request but the metadata document's needs an OAuth access token
(mcpwall.auth checks it). A session then belongs to the subject whose token opened it:
a leaked session id is of no use to another user. The calls of each POST are judged
with the Identity of its own token, which is how a renewed token takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from mcpwall import mcp
from mcpwall.auth import Identity
from mcpwall.proxy.http import checks
from mcpwall.proxy.http.asgi import (
    Receive,
    Reply,
    Scope,
    Send,
    disconnected,
    read_body,
    respond,
    start_stream,
)
from mcpwall.proxy.http.checks import ListenerOptions
from mcpwall.proxy.http.sessions import Client, Exchange, MakeBackend, MakeSession, reuse_refusal
from mcpwall.proxy.http.stateless import ANONYMOUS, identity, rename_requests
from mcpwall.proxy.sse import encode
from mcpwall.proxy.tasks import Tasks

log = logging.getLogger("mcpwall")

PATHS = ("/mcp", "/")
IDLE_SECONDS = 30 * 60
MAX_SESSIONS = 1000
KEEPALIVE_SECONDS = 15.0
SHUTDOWN_GRACE = 5  # seconds uvicorn waits for open connections after SIGTERM


class HttpListener:
    def __init__(
        self, options: ListenerOptions, make_backend: MakeBackend, make_session: MakeSession
    ) -> None:
        self.options = options
        self._make_backend = make_backend
        self._make_session = make_session
        self._clients: dict[str, Client] = {}
        self.tasks = Tasks()
        self._warned_anonymous = False
        self._closing = asyncio.Event()  # set on SIGINT or SIGTERM: GET streams end
        self.port = options.port

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
        reaper = self.tasks.spawn(self._reap_idle(), "the reaper of idle sessions")
        serving = self.tasks.spawn(server.serve(), "the HTTP server")
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

    def forget(self, client: Client) -> None:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = self.options.authenticator
        try:
            if scope["path"] not in PATHS and (auth is None or scope["path"] not in auth.paths):
                raise Reply(404, "Not found: the MCP endpoint is /mcp")
            checks.host_and_origin(headers, self.options)
            user: Identity | None = None
            if auth is None:
                checks.bearer_token(headers, self.options.auth_tokens)
            else:
                outcome = await auth.authenticate(scope, headers)
                if not isinstance(outcome, Identity):
                    await respond(send, outcome.status, outcome.body, outcome.headers)
                    return
                user = outcome
            method = scope["method"]
            if method == "POST":
                await self._post(headers, receive, send, user)
            elif method == "GET":
                await self._get(headers, receive, send, user)
            elif method == "DELETE":
                await self._delete(headers, send, user)
            else:
                raise Reply(
                    405, f"Method {method} not allowed", headers={"allow": "GET, POST, DELETE"}
                )
        except Reply as reply:
            await respond(send, reply.status, reply.body, reply.headers)

    # -- POST: messages from the client -------------------------------------------------

    async def _post(
        self, headers: dict[str, str], receive: Receive, send: Send, user: Identity | None
    ) -> None:
        checks.post_headers(headers)
        body = await read_body(receive, self.options.max_message)
        message = checks.strict_message(body)
        if b"\n" in body:
            # A body is one message, but a server behind a pipe reads lines: a pretty-
            # printed body would reach it as several, and one of them could be a whole
            # call that was never judged. A strictly read body has line feeds only
            # between tokens (a JSON string cannot hold a raw one), so spaces in their
            # place leave the message as it was judged, on one line.
            body = body.rstrip(b"\n").replace(b"\n", b" ")
        modern = mcp.modern_version(message)
        if modern is not None:
            checks.mirrored_headers(headers, message, modern)
            client = await self._stateless_client(headers, user)
        else:
            client = await self._session_client(headers, message, user)
        client.last_used = time.monotonic()
        client.session.identity = user
        for name in self.options.forward_headers:
            if name.lower() in headers:
                client.forwarded[name] = headers[name.lower()]

        renamed: dict[Any, Any] | None = None
        if client.stateless:
            body, renamed = rename_requests(message, client.ids)
        request_ids = mcp.answer_ids(message)
        reused = [] if client.stateless else client.reused(request_ids)
        if reused:
            # Answers find their POST by id: a second POST waiting on an id would take
            # the first one's answer and leave the first waiting for ever. So ids must
            # be unique among the session's pending requests, as JSON-RPC wants them;
            # a POST that reuses one is refused whole, and nothing of it is forwarded.
            log.warning("refused a message reusing pending request id(s) %r", reused)
            refusal = reuse_refusal(message, request_ids, reused)
            await respond(send, 400, refusal, {"mcp-session-id": client.key})
            return
        exchange = Exchange(set(request_ids), renamed)
        for request_id in request_ids:
            client.exchanges[request_id] = exchange
        progress = mcp.progress_tokens(message)
        for token in progress:
            client.progress[token] = exchange
        client.current = exchange
        client.session.headers = headers  # observers read a trace context from them
        try:
            client.session.from_client(body, message)
        finally:
            client.current = None
            client.session.headers = None
        extra = {} if client.stateless else {"mcp-session-id": client.key}
        if not request_ids and exchange.queue.empty():
            await respond(send, 202, b"", extra)
            return
        stream = "text/event-stream" in headers.get("accept", "")
        try:
            await self._answer(exchange, send, extra, stream)
        finally:
            for request_id in request_ids:
                client.exchanges.pop(request_id, None)
            for token in progress:
                client.progress.pop(token, None)

    async def _answer(
        self, exchange: Exchange, send: Send, headers: dict[str, str], stream: bool
    ) -> None:
        """The answers, as an event stream when the client takes one (as MCP servers
        usually answer), else as JSON; a stream anyway if the server sends something
        before the answer."""
        data, complete = await exchange.queue.get()
        if complete and exchange.queue.empty():
            parse_error = _is_parse_error(data)
            if not stream or parse_error:
                status = 400 if parse_error else 200
                await respond(send, status, data, {**headers, "content-type": "application/json"})
                return
        await start_stream(send, headers)
        while True:
            await send({"type": "http.response.body", "body": encode(data), "more_body": True})
            if complete:
                break
            data, complete = await exchange.queue.get()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _session_client(
        self, headers: dict[str, str], message: Any, user: Identity | None
    ) -> Client:
        session = headers.get("mcp-session-id")
        if session is not None:
            client = self._owned(session, user)
            if client is None:
                raise Reply(404, "Session not found: start a new one with initialize")
            return client
        if not mcp.initialize_ids(message):
            raise Reply(400, "Bad request: no Mcp-Session-Id; send initialize first")
        if len(self._clients) >= MAX_SESSIONS:
            raise Reply(503, "Too many sessions: try again later")
        key = secrets.token_urlsafe(24)
        client = self._clients[key] = self._new_client(key, stateless=False)
        client.owner = None if user is None else user.subject
        await self._start(client)
        log.info("new client session %s", key[:8])
        return client

    async def _stateless_client(self, headers: dict[str, str], user: Identity | None) -> Client:
        who = identity(headers, self.options.session_header, user)
        if who is None:
            who = ANONYMOUS
            if not self._warned_anonymous:
                self._warned_anonymous = True
                log.warning(
                    "stateless requests without a bearer token or --session-header: "
                    "session limits act for all of them together, not per client"
                )
        client = self._clients.get(who)
        if client is None:
            # Identities are the client's to choose (--session-header): each new one
            # starts a server, so they count against the same bound as sessions.
            if len(self._clients) >= MAX_SESSIONS:
                raise Reply(503, "Too many sessions: try again later")
            client = self._clients[who] = self._new_client(who, stateless=True)
            await self._start(client)
        elif not await asyncio.shield(client.started):
            # Sent before the server had started, a message would have been lost.
            raise Reply(502, "Bad gateway: the MCP server did not start", mcp.SERVER_GONE)
        return client

    def _owned(self, session: str, user: Identity | None) -> Client | None:
        """The client session by this id, if the request may use it: under --auth only
        with a token of the subject that opened it."""
        client = self._clients.get(session)
        if client is None or client.stateless:
            return None
        if client.owner != (None if user is None else user.subject):
            return None
        return client

    def _new_client(self, key: str, stateless: bool) -> Client:
        return Client(key, stateless, self._make_backend, self._make_session, self.forget)

    async def _start(self, client: Client) -> None:
        try:
            await client.start(self.tasks)
        except Exception as exc:
            self.forget(client)
            client.started.set_result(False)
            log.error("the MCP server for a new session did not start: %s", exc)
            raise Reply(
                502, f"Bad gateway: the MCP server did not start: {exc}", mcp.SERVER_GONE
            ) from exc
        client.started.set_result(True)

    # -- GET: the stream of what the server sends unasked ----------------------------------

    async def _get(
        self, headers: dict[str, str], receive: Receive, send: Send, user: Identity | None
    ) -> None:
        if "text/event-stream" not in headers.get("accept", ""):
            raise Reply(406, "Not acceptable: a GET stream is text/event-stream")
        session = headers.get("mcp-session-id")
        client = self._owned(session or "", user)
        if session is None:
            raise Reply(
                405, "No session: stateless requests have no GET stream", headers={"allow": "POST"}
            )
        if client is None:
            raise Reply(404, "Session not found: start a new one with initialize")
        stream: asyncio.Queue[bytes] = asyncio.Queue()
        for data in client.backlog:
            stream.put_nowait(data)
        client.backlog.clear()
        client.stream = stream
        await start_stream(send, {"mcp-session-id": client.key})
        loop = asyncio.get_running_loop()
        gone = loop.create_task(disconnected(receive))
        closing = loop.create_task(self._closing.wait())
        try:
            while not gone.done():
                getter = asyncio.ensure_future(stream.get())
                done, _ = await asyncio.wait(
                    {getter, gone, closing},
                    timeout=KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    body = encode(getter.result())
                else:
                    getter.cancel()
                    body = b": keep-alive\n\n"
                if gone.done():
                    break
                if closing.done():  # mcpwall is stopping: the stream ends here
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    break
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            gone.cancel()
            closing.cancel()
            if client.stream is stream:
                client.stream = None

    # -- DELETE: the end of a session -----------------------------------------------------

    async def _delete(self, headers: dict[str, str], send: Send, user: Identity | None) -> None:
        session = headers.get("mcp-session-id")
        client = self._owned(session or "", user)
        if client is None:
            # Looked at before it is taken out: a DELETE naming a stateless identity
            # (its key is known to whoever knows the identity) used to drop it from the
            # map unclosed, its server left running, a new one started by the next
            # request.
            raise Reply(404, "Session not found")
        del self._clients[client.key]
        log.info("client session %s ended", client.key[:8])
        client.close()
        await respond(send, 200, b"", {})


def _is_parse_error(data: bytes) -> bool:
    """Whether mcpwall's answer is its refusal of an unreadable message (a 400)."""
    if b"-32700" not in data:
        return False
    try:
        message = mcp.decode_server(data)
    except mcp.Malformed:
        return False
    error = message.get("error") if type(message) is dict else None
    return type(error) is dict and error.get("code") == mcp.PARSE_ERROR
