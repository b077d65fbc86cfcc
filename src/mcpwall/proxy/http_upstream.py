"""A remote MCP server, reached over Streamable HTTP, or over the legacy HTTP+SSE
transport (2024-11-05) when that is all it speaks.

Each message the relay sends becomes one POST, its bytes unchanged. The answer comes back
as JSON or as an event stream; every message in it is handed to the relay as it arrives.
The session id the server gives at ``initialize`` is sent on every later request, with
the protocol version the handshake settled; a 2026-07-28 request carries its own version
and its ``Mcp-Method``/``Mcp-Name`` headers, which mcpwall derives from the body it
judged, never from anything else. After the handshake a GET stream carries what the
server sends unasked; a dropped stream is resumed with ``Last-Event-ID`` where the server
gave event ids. The session is ended with DELETE when mcpwall stops.

Nothing is left hanging: a request whose POST fails, or whose stream ends before its
answer and cannot be resumed, gets a JSON-RPC error from here, and the relay passes it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson

from mcpwall import mcp
from mcpwall.proxy.link import LinkEvents
from mcpwall.proxy.sse import EventReader
from mcpwall.proxy.tasks import Tasks

log = logging.getLogger("mcpwall")

ACCEPT = "application/json, text/event-stream"
CONNECT_TIMEOUT = 10.0
RESUME_ATTEMPTS = 3
RESUME_DELAY = 0.5  # seconds, when the server gave no retry of its own


class UpstreamGone(Exception):
    """The upstream could not be reached or answered with an HTTP error."""


class HttpUpstream:
    """A ServerLink to a remote server."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        events: LinkEvents,
        client_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.events = events
        # --header values, and the client's own headers that --forward-header names,
        # as they were on its latest request.
        self._static_headers = headers
        self._client_headers = client_headers if client_headers is not None else {}
        # aiohttp, not httpx: a tenth of the cost per request, on every forwarded call.
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=True,
        )
        self._session_id: str | None = None
        self._version: str | None = None  # what the handshake settled
        self._initializing: set[Any] = set()  # ids of initialize requests in flight
        self._legacy_endpoint: str | None = None  # HTTP+SSE: where messages go
        self._legacy_ready: asyncio.Event | None = None
        self._tasks = Tasks()
        self._listening = False
        self.status = 0
        self.stopped_by_us = False
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        return None  # connections are made by the first message

    @property
    def _headers(self) -> dict[str, str]:
        return {**self._client_headers, **self._static_headers}

    # -- ServerLink: sending --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._spawn(self._deliver(data))

    def hold(self) -> None:
        return None

    def flush(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None  # TCP's own flow control holds the server back

    def resume_reading(self) -> None:
        return None

    def signal(self, signum: int) -> None:
        log.info("the MCP server is remote: signal %d not passed on", signum)

    def close(self) -> None:
        self.stopped_by_us = True
        self._spawn(self._close())

    # -- one message ----------------------------------------------------------------------

    async def _deliver(self, data: bytes) -> None:
        message = orjson.loads(data)
        waiting = set(mcp.request_ids(message))
        self._initializing.update(mcp.initialize_ids(message))
        try:
            if self._legacy_endpoint is not None:
                await self._post_legacy(data)
                return
            await self._post(data, message, waiting)
        except UpstreamGone as exc:
            self._fail(waiting, str(exc))
        except Exception:
            # A failure of mcpwall's own: the calls it carried get their error, the
            # session goes on.
            log.exception("mcpwall failed while sending a message upstream")
            self._fail(waiting, "mcpwall failed while sending this request upstream")

    async def _post(self, data: bytes, message: Any, waiting: set[Any]) -> None:
        headers = self._request_headers(message)
        try:
            async with self._client.post(self.url, data=data, headers=headers) as response:
                if response.status == 202:
                    return
                if (
                    response.status in (400, 404, 405)
                    and waiting & self._initializing
                    and self._session_id is None
                ):
                    await response.read()
                    if await self._start_legacy():
                        await self._post_legacy(data)
                        return
                if response.status >= 400:
                    await self._answer_http_error(response, waiting)
                    return
                session = response.headers.get("mcp-session-id")
                if session and waiting & self._initializing:
                    self._session_id = session
                last = await self._read_answer(response, waiting)
        except _FAILURES as exc:
            raise UpstreamGone(f"the upstream {self.url} is unreachable: {_reason(exc)}") from exc
        if waiting:
            await self._resume(waiting, last)

    def _request_headers(self, message: Any) -> dict[str, str]:
        headers = {**self._headers, "Accept": ACCEPT, "Content-Type": "application/json"}
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        version = mcp.modern_version(message)
        if version is not None:
            # 2026-07-28: the headers mirror the body, and are derived from it.
            mirrored = mcp.mirrored_headers(message, version)
            headers["Mcp-Method"] = mirrored["mcp-method"]
            if "mcp-name" in mirrored:
                headers["Mcp-Name"] = mcp.header_value(mirrored["mcp-name"])
        else:
            version = self._version
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        return headers

    async def _read_answer(self, response: aiohttp.ClientResponse, waiting: set[Any]) -> str | None:
        """Pass on what the response carries; the id of its last event, if a stream."""
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if kind == "text/event-stream":
            return await self._read_events(response, waiting, stop_when_answered=False)
        body = await response.read()
        if body.strip():
            self._receive(body, waiting)
        return None

    async def _read_events(
        self, response: aiohttp.ClientResponse, waiting: set[Any], stop_when_answered: bool
    ) -> str | None:
        reader = EventReader()
        async for chunk in response.content.iter_any():
            self.events.read_start()
            try:
                for event in reader.feed(chunk):
                    if event.data.strip():
                        self._receive(event.data, waiting)
            finally:
                self.events.read_end()
            if stop_when_answered and not waiting:
                break
        return reader.last_id

    def _receive(self, data: bytes, waiting: set[Any]) -> None:
        """A message from the server: note what it answers, then pass it on."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.events.message(data)  # the relay logs and drops it
            return
        for item in message if type(message) is list else [message]:
            if type(item) is not dict or "method" in item:
                continue
            answered = item.get("id")
            if type(answered) in (int, str):
                waiting.discard(answered)
                if answered in self._initializing:
                    self._initializing.discard(answered)
                    self._handshake_done(item)
        self.events.message(data)

    def _handshake_done(self, answer: dict[str, Any]) -> None:
        result = answer.get("result")
        if type(result) is dict and type(result.get("protocolVersion")) is str:
            self._version = result["protocolVersion"]
            if self._legacy_endpoint is None and not self._listening:
                self._listening = True
                self._spawn(self._listen())

    async def _resume(self, waiting: set[Any], last: str | None) -> None:
        """The stream ended before every answer: ask for the rest, where that is possible."""
        for _ in range(RESUME_ATTEMPTS if last is not None else 0):
            if not waiting:
                return
            await asyncio.sleep(RESUME_DELAY)
            try:
                last = await self._get_stream(waiting, last, stop_when_answered=True)
            except UpstreamGone:
                break
        if waiting:
            self._fail(waiting, "the upstream closed the stream before answering")

    # -- what the server sends unasked ------------------------------------------------------

    async def _listen(self) -> None:
        """The GET stream, for as long as the session lives; resumed when it drops."""
        last: str | None = None
        failures = 0
        while not self.ended.done():
            try:
                last = await self._get_stream(set(), last, stop_when_answered=False)
                failures = 0
            except UpstreamGone as exc:
                if "405" in str(exc):
                    return  # the server offers no such stream
                failures += 1
            if self.ended.done():
                return
            await asyncio.sleep(min(30.0, RESUME_DELAY * 2**failures))

    async def _get_stream(
        self, waiting: set[Any], last: str | None, stop_when_answered: bool
    ) -> str | None:
        headers = {**self._headers, "Accept": "text/event-stream"}
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        if self._version is not None:
            headers["MCP-Protocol-Version"] = self._version
        if last is not None:
            headers["Last-Event-ID"] = last
        try:
            async with self._client.get(self.url, headers=headers) as response:
                if response.status >= 400:
                    await response.read()
                    raise UpstreamGone(f"HTTP {response.status}")
                got = await self._read_events(response, waiting, stop_when_answered)
                return got or last
        except _FAILURES as exc:
            raise UpstreamGone(_reason(exc)) from exc

    # -- the legacy HTTP+SSE transport ------------------------------------------------------

    async def _start_legacy(self) -> bool:
        """Open the event stream of an HTTP+SSE server and learn where to post; False if
        the server does not speak that either."""
        if self._legacy_ready is not None:
            await self._legacy_ready.wait()
            return self._legacy_endpoint is not None
        self._legacy_ready = asyncio.Event()
        found: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._spawn(self._legacy_stream(found))
        endpoint = await found
        self._legacy_ready.set()
        if endpoint is None:
            return False
        log.info("the upstream speaks the legacy HTTP+SSE transport; messages go to %s", endpoint)
        return True

    async def _legacy_stream(self, found: asyncio.Future[str | None]) -> None:
        headers = {**self._headers, "Accept": "text/event-stream"}
        try:
            async with self._client.get(self.url, headers=headers) as response:
                if response.status != 200:
                    found.set_result(None)
                    return
                reader = EventReader()
                async for chunk in response.content.iter_any():
                    self.events.read_start()
                    try:
                        for event in reader.feed(chunk):
                            if event.event == "endpoint" and not found.done():
                                self._legacy_endpoint = urljoin(
                                    self.url, event.data.decode("utf-8", "replace").strip()
                                )
                                found.set_result(self._legacy_endpoint)
                            elif event.data.strip():
                                self._receive(event.data, set())
                    finally:
                        self.events.read_end()
        except _FAILURES as exc:
            log.error("the upstream's event stream failed: %s", _reason(exc))
        finally:
            if not found.done():
                found.set_result(None)
        if not self.ended.done() and not self.stopped_by_us:
            self.ended.set_result("closed its event stream")

    async def _post_legacy(self, data: bytes) -> None:
        assert self._legacy_endpoint is not None
        headers = {**self._headers, "Content-Type": "application/json"}
        try:
            async with self._client.post(
                self._legacy_endpoint, data=data, headers=headers
            ) as response:
                await response.read()
        except _FAILURES as exc:
            raise UpstreamGone(f"the upstream {self.url} is unreachable: {_reason(exc)}") from exc
        if response.status >= 400:
            raise UpstreamGone(f"the upstream answered HTTP {response.status}")

    # -- endings ------------------------------------------------------------------------

    async def _answer_http_error(self, response: aiohttp.ClientResponse, waiting: set[Any]) -> None:
        body = await response.read()
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(body)
            if type(message) is dict and message.get("id") in waiting:
                self._receive(body, waiting)  # a JSON-RPC error naming the request
        if response.status == 404 and self._session_id is not None:
            self._fail(waiting, "the upstream session has expired; reconnect to start anew")
        else:
            self._fail(waiting, f"the upstream answered HTTP {response.status}")

    def _fail(self, waiting: Iterable[Any], why: str) -> None:
        for request_id in list(waiting):
            log.warning("request %r failed: %s", request_id, why)
            error = mcp.error(request_id, mcp.SERVER_GONE, f"[mcpwall] {why}")
            self.events.message(mcp.dumps(error))
        if isinstance(waiting, set):
            waiting.clear()

    async def _close(self) -> None:
        await self._tasks.cancel()
        if self._session_id is not None:
            headers = {**self._headers, "Mcp-Session-Id": self._session_id}
            if self._version is not None:
                headers["MCP-Protocol-Version"] = self._version
            with contextlib.suppress(*_FAILURES):
                async with self._client.delete(
                    self.url,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT),
                ) as response:
                    await response.read()
        await self._client.close()
        if not self.ended.done():
            self.ended.set_result("was disconnected")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(work, f"the HTTP upstream {self.url}")


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
