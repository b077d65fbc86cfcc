"""The agent on mcpwall's stdin and stdout: newline-delimited JSON-RPC, messages of any
size, relayed to a server however it is reached (a child process, a remote server).

Each direction has exactly one writer, so mcpwall's own answers never interleave with
relayed lines, and what one read produces for a side is written in one call. When a
writer's buffer fills, the readers feeding it pause: a slow client slows the server
instead of growing mcpwall's memory, and mcpwall stops reading the client's requests
too, whose answers (denials) would have nowhere to go.

When the client closes stdin, the server is told (EOF on its stdin, or the end of the
HTTP session); when the server ends, every request it left unanswered gets a JSON-RPC
error and mcpwall exits with the server's status. SIGINT, SIGTERM and SIGHUP are passed
to the server; the same signal twice kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import threading
from collections.abc import Callable
from typing import Any

from mcpwall.proxy.framing import DEFAULT_MAX_MESSAGE, LineFramer, at_most_one_line, line
from mcpwall.proxy.link import LinkEvents, ServerLink
from mcpwall.proxy.relay import Session

log = logging.getLogger("mcpwall")

CLOSE_GRACE = 2.0  # after the server ended, time to hand what is left to the client
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

MakeLink = Callable[[LinkEvents], ServerLink]
MakeSession = Callable[[Callable[[bytes], None], Callable[[bytes, Any], None]], Session]


class StdioProxy(LinkEvents):
    def __init__(
        self,
        make_link: MakeLink,
        make_session: MakeSession,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self._make_link = make_link
        self._make_session = make_session
        self._max_message = max_message
        self._client_out: Any = None
        self._client_in: Any = None
        self._client_pauses = 0  # the server's side is full, the client's stdout is full
        self._client_closed = False
        self._signals_seen: dict[int, int] = {}
        self._holding = False
        self._held: list[bytes] = []
        self.link: ServerLink | None = None
        self.session: Session | None = None

    async def run(self) -> int:
        """Relay until the server ends; the exit status to use."""
        loop = asyncio.get_running_loop()
        link = self.link = self._make_link(self)
        session = self.session = self._make_session(link.send, self._send_client)
        await link.start()
        blocking = (os.get_blocking(0), os.get_blocking(1))
        client_lines = LineFramer(session.from_client, self._max_message, self._client_oversize)
        self._client_out = await _open_client_writer(loop, self)
        self._client_in = await _open_client_reader(loop, self, client_lines)
        if self._client_pauses:
            self._client_in.pause_reading()
        for signum in _FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self._forward_signal, signum)
        try:
            how = await link.ended
            unanswered = session.server_gone(how)
            if unanswered:
                log.error("the MCP server %s with %d request(s) unanswered", how, unanswered)
            if link.stopped_by_us and self._client_closed:
                return 0
            return 1 if link.status == 0 and unanswered else link.status
        finally:
            for signum in _FORWARDED_SIGNALS:
                loop.remove_signal_handler(signum)
            self._client_in.close()
            await self._client_out.drain_and_close()
            # asyncio made the inherited descriptors non-blocking; a shell sharing them
            # would see EAGAIN.
            with contextlib.suppress(OSError):
                os.set_blocking(0, blocking[0])
                os.set_blocking(1, blocking[1])

    # -- LinkEvents: the server's side ------------------------------------------------

    def message(self, data: bytes) -> None:
        assert self.session is not None
        self.session.from_server(data)

    def read_start(self) -> None:
        self.hold()

    def read_end(self) -> None:
        self.flush()

    def pause(self) -> None:  # the server cannot take more: stop reading the client
        self._client_pauses += 1
        if self._client_pauses == 1 and self._client_in is not None:
            self._client_in.pause_reading()

    def resume(self) -> None:
        self._client_pauses -= 1
        if self._client_pauses == 0 and self._client_in is not None:
            self._client_in.resume_reading()

    # -- sending: what one read produces is written in one call per side -----------------

    def hold(self) -> None:
        self._holding = True
        assert self.link is not None
        self.link.hold()

    def flush(self) -> None:
        self._holding = False
        assert self.link is not None
        self.link.flush()
        if self._held:
            held, self._held = self._held, []
            self._client_out.write(held[0] if len(held) == 1 else b"".join(held))

    def _send_client(self, data: bytes, reply_to: Any = None) -> None:
        if self._holding:
            self._held.append(line(data))
        else:
            self._client_out.write(line(data))

    def _client_oversize(self) -> None:
        log.error("a message from the client exceeds %d bytes; it was discarded", self._max_message)
        assert self.session is not None
        self.session.refuse_oversize(self._max_message)

    # -- the client's side --------------------------------------------------------------

    def client_eof(self) -> None:
        """The client closed stdin, or can no longer be written to: end the session."""
        if self._client_closed:
            return
        self._client_closed = True
        log.debug("the client closed the connection; closing the server")
        if self.link is not None:
            self.link.close()

    def pause_server(self) -> None:  # the client reads slowly
        if self.link is not None:
            self.link.pause_reading()

    def resume_server(self) -> None:
        if self.link is not None:
            self.link.resume_reading()

    def _forward_signal(self, signum: int) -> None:
        assert self.link is not None
        seen = self._signals_seen[signum] = self._signals_seen.get(signum, 0) + 1
        if seen > 1:
            log.warning("%s again: killing the MCP server", signal.Signals(signum).name)
            self.link.signal(signal.SIGKILL)
            return
        log.info("forwarding %s to the MCP server", signal.Signals(signum).name)
        self.link.signal(signum)


class _ClientReader(asyncio.Protocol):
    def __init__(self, proxy: StdioProxy, lines: LineFramer) -> None:
        self._proxy = proxy
        self._lines = lines

    def data_received(self, data: bytes) -> None:
        if at_most_one_line(data):  # one message, judged alone
            self._lines.feed(data)
            return
        session = self._proxy.session
        assert session is not None
        self._proxy.hold()
        session.read_start()  # the calls of one read share one store transaction
        try:
            self._lines.feed(data)
        finally:
            session.read_end()
            self._proxy.flush()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        rest = self._lines.leftover()
        if rest.strip():
            self.data_received(rest + b"\n")  # a last message without its newline
        self._proxy.client_eof()


class _ClientWriter(asyncio.Protocol):
    def __init__(self, proxy: StdioProxy) -> None:
        self._proxy = proxy
        self.transport: asyncio.WriteTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:  # the client reads slowly
        # Neither the server's output nor mcpwall's own answers (denials) can pile up.
        self._proxy.pause_server()
        self._proxy.pause()

    def resume_writing(self) -> None:
        self._proxy.resume_server()
        self._proxy.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._proxy.client_eof()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain_and_close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_GRACE)


async def _open_client_writer(loop: asyncio.AbstractEventLoop, proxy: StdioProxy) -> Any:
    if not _is_pipe(1):
        return _FileWriter()
    writer = _ClientWriter(proxy)
    # The transport owns the file object for the whole session: no context manager.
    stdout = open(1, "wb", buffering=0, closefd=False)  # noqa: SIM115
    await loop.connect_write_pipe(lambda: writer, stdout)
    return writer


async def _open_client_reader(
    loop: asyncio.AbstractEventLoop, proxy: StdioProxy, lines: LineFramer
) -> Any:
    if not _is_pipe(0):
        return _FileReader(loop, _ClientReader(proxy, lines))
    stdin = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115
    transport, _ = await loop.connect_read_pipe(lambda: _ClientReader(proxy, lines), stdin)
    return transport


def _is_pipe(fd: int) -> bool:
    """Whether the event loop can watch ``fd``: a pipe or a socket. Files, terminals and
    /dev/null are read in a thread and written with plain writes instead (libuv aborts
    on a character device)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _FileWriter:
    """stdout that is not a pipe (a file, a terminal): plain blocking writes."""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(1, view)
            view = view[written:]

    async def drain_and_close(self) -> None:
        return None


class _FileReader:
    """stdin that is not a pipe (a file, a terminal): read in a thread, fed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: _ClientReader) -> None:
        self._loop = loop
        self._protocol = protocol
        self._resume = threading.Event()
        self._resume.set()
        self._stop = False
        threading.Thread(target=self._read, daemon=True, name="mcpwall-stdin").start()

    def _read(self) -> None:
        while not self._stop:
            self._resume.wait()
            chunk = os.read(0, 256 * 1024)
            if not chunk:
                self._loop.call_soon_threadsafe(self._protocol.eof_received)
                return
            self._loop.call_soon_threadsafe(self._protocol.data_received, chunk)

    def pause_reading(self) -> None:
        self._resume.clear()

    def resume_reading(self) -> None:
        self._resume.set()

    def close(self) -> None:
        self._stop = True
        self._resume.set()
