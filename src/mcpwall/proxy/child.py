"""An MCP server run as a child process: newline-delimited JSON-RPC on its stdin and
stdout, its stderr left on mcpwall's.

Shutdown follows the MCP lifecycle (spec, basic/lifecycle "Shutdown"): close the
server's stdin; a server still running after EOF_GRACE gets SIGTERM, and SIGKILL after
TERM_GRACE. The child runs in a session of its own, so that the terminal's signals reach
it once, forwarded by mcpwall, and so that a whole process tree (npx, node, the binary)
can be signalled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from mcpwall.proxy.framing import LineFramer, line
from mcpwall.proxy.link import LinkEvents

log = logging.getLogger("mcpwall")

EOF_GRACE = 2.0  # after EOF, time for the server to exit by itself
TERM_GRACE = 2.0  # after SIGTERM, before SIGKILL
DRAIN_GRACE = 1.0  # after the server exits, time for its stdout to reach EOF


class ServerStartError(Exception):
    """The server command could not be started."""


class ServerProcess:
    """One child process, a ServerLink. ``ended`` resolves, once its stdout is closed and it has
    exited, with a sentence saying how it ended; ``status`` then holds its exit status
    (128 + N when killed by signal N)."""

    def __init__(self, command: list[str], events: LinkEvents, max_message: int) -> None:
        self.command = command
        self.events = events
        self._max_message = max_message
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._stdout_closed = False
        self._exited = False
        self._timers: list[asyncio.TimerHandle] = []
        self._holding = False
        self._held: list[bytes] = []
        self.stopped_by_us = False
        self.status = 0
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        framer = LineFramer(self.events.message, self._max_message, self._oversize)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _ChildProtocol(self, framer),
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,  # the server's stderr is mcpwall's stderr, untouched
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerStartError(
                f"cannot start the MCP server {self.command[0]!r}: {exc.strerror or exc}"
            ) from exc
        self._transport = transport
        self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
        log.debug(
            "started the MCP server (pid %s): %s", transport.get_pid(), " ".join(self.command)
        )

    # -- sending: what one read produces is written in one call ------------------------

    def hold(self) -> None:
        self._holding = True

    def flush(self) -> None:
        self._holding = False
        if self._held:
            held, self._held = self._held, []
            self._write(held[0] if len(held) == 1 else b"".join(held))

    def send(self, data: bytes) -> None:
        if self._holding:
            self._held.append(line(data))
        else:
            self._write(line(data))

    def _write(self, data: bytes) -> None:
        stdin = self._stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def pause_reading(self) -> None:
        self._pipe_call("pause_reading")

    def resume_reading(self) -> None:
        self._pipe_call("resume_reading")

    def _pipe_call(self, name: str) -> None:
        if self._transport is not None and not self._stdout_closed:
            with contextlib.suppress(AttributeError, RuntimeError):
                getattr(self._transport.get_pipe_transport(1), name)()

    # -- stopping -----------------------------------------------------------------------

    def close(self) -> None:
        """EOF to the server; SIGTERM after EOF_GRACE, SIGKILL after TERM_GRACE more."""
        if self._stdin is not None:
            self._stdin.close()  # flushes what is buffered, then EOF
        self._later(EOF_GRACE, self._terminate)

    def _terminate(self) -> None:
        if self._exited:
            return
        log.warning("the MCP server did not exit after EOF; sending SIGTERM")
        self.stopped_by_us = True
        self.signal(signal.SIGTERM)
        self._later(TERM_GRACE, self._kill)

    def _kill(self) -> None:
        if not self._exited:
            log.warning("the MCP server did not exit after SIGTERM; sending SIGKILL")
            self.signal(signal.SIGKILL)

    def signal(self, signum: int) -> None:
        if self._transport is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._transport.get_pid(), signum)

    # -- the child's side ---------------------------------------------------------------

    def _oversize(self) -> None:
        log.error("a message from the server exceeds %d bytes; it was discarded", self._max_message)

    def stdout_closed(self, framer: LineFramer) -> None:
        self._stdout_closed = True
        cut = framer.leftover()
        if cut.strip():
            log.warning(
                "the server's last message was cut off by EOF (%d bytes); dropped", len(cut)
            )
        self._maybe_end()

    def exited(self) -> None:
        self._exited = True
        if not self._stdout_closed:
            # A process the server started may still hold its stdout open.
            self._later(DRAIN_GRACE, self._end)
        self._maybe_end()

    def _maybe_end(self) -> None:
        if self._stdout_closed and self._exited:
            self._end()

    def _end(self) -> None:
        if self.ended.done() or self._transport is None:
            return
        for timer in self._timers:
            timer.cancel()
        returncode = self._transport.get_returncode()
        if returncode is None:
            self.status, how = 1, "closed its output"
        elif returncode < 0:
            self.status = 128 - returncode
            how = f"was killed by {signal.Signals(-returncode).name}"
        else:
            self.status, how = returncode, f"exited (status {returncode})"
        self.ended.set_result(how)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, process: ServerProcess, framer: LineFramer) -> None:
        self._process = process
        self._framer = framer

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            events = self._process.events
            events.read_start()
            try:
                self._framer.feed(data)
            finally:
                events.read_end()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._process.stdout_closed(self._framer)

    def process_exited(self) -> None:
        self._process.exited()

    def pause_writing(self) -> None:  # the server's stdin is full
        self._process.events.pause()

    def resume_writing(self) -> None:
        self._process.events.resume()
