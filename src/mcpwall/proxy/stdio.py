"""The stdio proxy: the agent on mcpwall's stdin/stdout, the server a child process.

Framing is newline-delimited JSON-RPC, messages of any size. Each direction has exactly
one writer (an asyncio transport), so mcpwall's own answers never interleave with
relayed lines. When a writer's buffer fills, the readers feeding it pause: a slow
client slows the server instead of growing mcpwall's memory, and mcpwall stops reading
the client's requests too, whose answers (denials) would have nowhere to go.

Shutdown follows the MCP lifecycle (spec, basic/lifecycle "Shutdown"): when the client
closes stdin, the server's stdin is closed; a server still running after EOF_GRACE gets
SIGTERM, and SIGKILL after TERM_GRACE. When the server exits, every request it left
unanswered gets a JSON-RPC error and mcpwall exits with the server's status.
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

from mcpwall.proxy.relay import Session

log = logging.getLogger("mcpwall")

EOF_GRACE = 2.0  # after the client's EOF, time for the server to exit by itself
TERM_GRACE = 2.0  # after SIGTERM, before SIGKILL
DRAIN_GRACE = 1.0  # after the server exits, time for its stdout to reach EOF
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
_SMALL = 64 * 1024
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LineFramer:
    """Splits a byte stream into lines, each kept with its newline so that a relayed
    line is written back in one piece. Lines of any size up to ``limit``."""

    __slots__ = ("_discarding", "_limit", "_on_line", "_on_oversize", "_parts", "_size")

    def __init__(
        self, on_line: Callable[[bytes], None], limit: int, on_oversize: Callable[[], None]
    ) -> None:
        self._on_line = on_line
        self._on_oversize = on_oversize
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        start = 0
        size = len(data)
        find = data.find
        while start < size:
            end = find(b"\n", start)
            if end < 0:
                self._keep(data[start:] if start else data)
                return
            if self._discarding:
                self._discarding = False
            elif self._size + end - start > self._limit:  # a whole line in a large read
                self._parts.clear()
                self._size = 0
                self._on_oversize()
            elif self._parts:
                self._parts.append(data[start : end + 1])
                line = b"".join(self._parts)
                self._parts.clear()
                self._size = 0
                self._on_line(line)
            else:
                self._on_line(data if start == 0 and end + 1 == size else data[start : end + 1])
            start = end + 1

    def _keep(self, rest: bytes) -> None:
        if self._discarding:
            return
        self._parts.append(rest)
        self._size += len(rest)
        if self._size > self._limit:
            self._parts.clear()
            self._size = 0
            self._discarding = True
            self._on_oversize()

    def leftover(self) -> bytes:
        """What came after the last newline (a line cut off by EOF)."""
        rest = b"" if self._discarding else b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return rest


class StdioProxy:
    def __init__(
        self,
        command: list[str],
        make_session: Callable[[Callable[[bytes], None], Callable[[bytes], None]], Session],
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.command = command
        self._make_session = make_session
        self._max_message = max_message
        self._done: asyncio.Future[int] | None = None
        self._child: asyncio.SubprocessTransport | None = None
        self._server_in: asyncio.WriteTransport | None = None
        self._client_out: Any = None
        self._client_in: Any = None
        self._client_pauses = 0  # the server's stdin is full, the client's stdout is full
        self._stdout_closed = False
        self._exited = False
        self._client_closed = False
        self._terminated_by_us = False
        self._signals_seen: dict[int, int] = {}
        self._timers: list[asyncio.TimerHandle] = []
        self._holding = False
        self._to_server_held: list[bytes] = []
        self._to_client_held: list[bytes] = []
        self.session: Session | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.session = self._make_session(self._send_server, self._send_client)
        server_lines = LineFramer(
            self.session.from_server, self._max_message, self._server_oversize
        )
        try:
            child, _ = await loop.subprocess_exec(
                lambda: _ChildProtocol(self, server_lines),
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,  # the server's stderr is mcpwall's stderr, untouched
                start_new_session=True,  # signals reach it once: forwarded by mcpwall
            )
        except OSError as exc:
            raise ServerStartError(
                f"cannot start the MCP server {self.command[0]!r}: {exc.strerror or exc}"
            ) from exc
        self._child = child
        self._server_in = child.get_pipe_transport(0)  # type: ignore[assignment]
        log.debug("started the MCP server (pid %s): %s", child.get_pid(), " ".join(self.command))

        blocking = (os.get_blocking(0), os.get_blocking(1))
        client_lines = LineFramer(
            self.session.from_client, self._max_message, self._client_oversize
        )
        self._client_out = await _open_client_writer(loop, self)
        self._client_in = await _open_client_reader(loop, self, client_lines)
        if self._client_pauses:
            self._client_in.pause_reading()
        for signum in _FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self._forward_signal, signum)
        try:
            return await self._done
        finally:
            for signum in _FORWARDED_SIGNALS:
                loop.remove_signal_handler(signum)
            for timer in self._timers:
                timer.cancel()
            self._client_in.close()
            await self._client_out.drain_and_close()
            # asyncio made the inherited descriptors non-blocking; a shell sharing them
            # would see EAGAIN.
            with contextlib.suppress(OSError):
                os.set_blocking(0, blocking[0])
                os.set_blocking(1, blocking[1])

    # -- sending ----------------------------------------------------------------------
    #
    # While one read is being handled, what it produces for each side is held and then
    # written in one call: a burst of pipelined messages costs one write, not one each.

    def hold(self) -> None:
        self._holding = True

    def flush(self) -> None:
        self._holding = False
        if self._to_server_held:
            held = self._to_server_held
            self._to_server_held = []
            self._write_server(held[0] if len(held) == 1 else b"".join(held))
        if self._to_client_held:
            held = self._to_client_held
            self._to_client_held = []
            self._client_out.write(held[0] if len(held) == 1 else b"".join(held))

    def _send_server(self, data: bytes) -> None:
        if self._holding:
            self._to_server_held.append(_line(data))
        else:
            self._write_server(_line(data))

    def _write_server(self, data: bytes) -> None:
        server_in = self._server_in
        if server_in is not None and not server_in.is_closing():
            server_in.write(data)

    def _send_client(self, data: bytes) -> None:
        if self._holding:
            self._to_client_held.append(_line(data))
        else:
            self._client_out.write(_line(data))

    def pause_client(self) -> None:
        self._client_pauses += 1
        if self._client_pauses == 1 and self._client_in is not None:
            self._client_in.pause_reading()

    def resume_client(self) -> None:
        self._client_pauses -= 1
        if self._client_pauses == 0 and self._client_in is not None:
            self._client_in.resume_reading()

    def pause_server(self) -> None:
        if self._child is not None and not self._stdout_closed:
            with contextlib.suppress(AttributeError, RuntimeError):
                self._child.get_pipe_transport(1).pause_reading()  # type: ignore[union-attr]

    def resume_server(self) -> None:
        if self._child is not None and not self._stdout_closed:
            with contextlib.suppress(AttributeError, RuntimeError):
                self._child.get_pipe_transport(1).resume_reading()  # type: ignore[union-attr]

    def _client_oversize(self) -> None:
        log.error("a message from the client exceeds %d bytes; it was discarded", self._max_message)
        assert self.session is not None
        self.session.refuse_oversize(self._max_message)

    def _server_oversize(self) -> None:
        log.error("a message from the server exceeds %d bytes; it was discarded", self._max_message)

    # -- the client side --------------------------------------------------------------

    def client_eof(self) -> None:
        """The client closed stdin, or can no longer be written to: end the session."""
        if self._client_closed:
            return
        self._client_closed = True
        log.debug("the client closed the connection; closing the server's stdin")
        if self._server_in is not None:
            self._server_in.close()  # flushes what is buffered, then EOF
        self._later(EOF_GRACE, self._terminate)

    def _terminate(self) -> None:
        if self._exited:
            return
        log.warning("the MCP server did not exit after EOF; sending SIGTERM")
        self._terminated_by_us = True
        self._signal_group(signal.SIGTERM)
        self._later(TERM_GRACE, self._kill)

    def _kill(self) -> None:
        if not self._exited:
            log.warning("the MCP server did not exit after SIGTERM; sending SIGKILL")
            self._signal_group(signal.SIGKILL)

    def _forward_signal(self, signum: int) -> None:
        seen = self._signals_seen[signum] = self._signals_seen.get(signum, 0) + 1
        if seen > 1:
            log.warning("%s again: killing the MCP server", signal.Signals(signum).name)
            self._signal_group(signal.SIGKILL)
            return
        log.info("forwarding %s to the MCP server", signal.Signals(signum).name)
        self._signal_group(signum)

    def _signal_group(self, signum: int) -> None:
        if self._child is None:
            return
        pid = self._child.get_pid()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)

    # -- the server side --------------------------------------------------------------

    def server_stdout_closed(self, framer: LineFramer) -> None:
        self._stdout_closed = True
        cut = framer.leftover()
        if cut.strip():
            log.warning(
                "the server's last message was cut off by EOF (%d bytes); dropped", len(cut)
            )
        self._maybe_finish()

    def server_exited(self) -> None:
        self._exited = True
        if not self._stdout_closed:
            # A process the server started may still hold its stdout open.
            self._later(DRAIN_GRACE, self._finish)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._stdout_closed and self._exited:
            self._finish()

    def _finish(self) -> None:
        done = self._done
        if done is None or done.done():
            return
        assert self._child is not None and self.session is not None
        status = self._child.get_returncode()
        code = _exit_code(status)
        what = (
            f"exited (status {code})"
            if status is None or status >= 0
            else (f"was killed by {signal.Signals(-status).name}")
        )
        unanswered = self.session.server_gone(what)
        if unanswered:
            log.error("the MCP server %s with %d request(s) unanswered", what, unanswered)
        if self._terminated_by_us and self._client_closed:
            code = 0
        elif code == 0 and unanswered:
            code = 1
        done.set_result(code)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))


class ServerStartError(Exception):
    """The server command could not be started."""


def _line(data: bytes) -> bytes:
    if data[-1:] == b"\n":
        return data
    if len(data) < _SMALL:
        return data + b"\n"
    return b"".join((data, b"\n"))


def _exit_code(status: int | None) -> int:
    if status is None:
        return 1
    return 128 - status if status < 0 else status


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, proxy: StdioProxy, lines: LineFramer) -> None:
        self._proxy = proxy
        self._lines = lines

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._proxy.hold()
            try:
                self._lines.feed(data)
            finally:
                self._proxy.flush()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._proxy.server_stdout_closed(self._lines)

    def process_exited(self) -> None:
        self._proxy.server_exited()

    def pause_writing(self) -> None:  # the server's stdin is full
        self._proxy.pause_client()

    def resume_writing(self) -> None:
        self._proxy.resume_client()


class _ClientReader(asyncio.Protocol):
    def __init__(self, proxy: StdioProxy, lines: LineFramer) -> None:
        self._proxy = proxy
        self._lines = lines

    def data_received(self, data: bytes) -> None:
        self._proxy.hold()
        try:
            self._lines.feed(data)
        finally:
            self._proxy.flush()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        rest = self._lines.leftover()
        if rest.strip():
            self._lines.feed(rest + b"\n")  # a last message without its newline
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
        self._proxy.pause_client()

    def resume_writing(self) -> None:
        self._proxy.resume_server()
        self._proxy.resume_client()

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
            await asyncio.wait_for(asyncio.shield(self.closed), TERM_GRACE)


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
