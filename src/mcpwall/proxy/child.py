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
import threading
from collections.abc import Callable

from mcpwall.proxy.framing import LineFramer, at_most_one_line, line
from mcpwall.proxy.link import LinkEvents
from mcpwall.proxy.spawn import Spawned, spawn

log = logging.getLogger("mcpwall")

EOF_GRACE = 2.0  # after EOF, time for the server to exit by itself
TERM_GRACE = 2.0  # after SIGTERM, before SIGKILL
DRAIN_GRACE = 1.0  # after the server exits, time for its stdout to reach EOF


class ServerProcess:
    """One child process, a ServerLink. ``ended`` resolves, once its stdout is closed and it has
    exited, with a sentence saying how it ended; ``status`` then holds its exit status
    (128 + N when killed by signal N). ``spawned``, when given, is the process already
    started for it (see proxy.spawn); otherwise ``start`` starts one."""

    def __init__(
        self,
        command: list[str],
        events: LinkEvents,
        max_message: int,
        spawned: Spawned | None = None,
    ) -> None:
        self.command = command
        self.events = events
        self._max_message = max_message
        self._spawned = spawned
        self._pid: int | None = None
        self._returncode: int | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._stdout: asyncio.ReadTransport | None = None
        self._stdout_closed = False
        self._exited = False
        self._timers: list[asyncio.TimerHandle] = []
        self._holding = False
        self._held: list[bytes] = []
        self.stopped_by_us = False
        self.status = 0
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        spawned = self._spawned or spawn(self.command)
        spawned.adopted = True
        self._pid = spawned.pid
        loop = asyncio.get_running_loop()
        framer = LineFramer(self.events.message, self._max_message, self._oversize)
        # The transports own these file objects for the whole session.
        stdin = open(spawned.stdin, "wb", buffering=0)  # noqa: SIM115
        stdout = open(spawned.stdout, "rb", buffering=0)  # noqa: SIM115
        self._stdin, _ = await loop.connect_write_pipe(lambda: _StdinProtocol(self), stdin)
        self._stdout, _ = await loop.connect_read_pipe(
            lambda: _StdoutProtocol(self, framer), stdout
        )
        self._watch_exit(loop, spawned.pid)
        log.debug("started the MCP server (pid %s): %s", spawned.pid, " ".join(self.command))

    def _watch_exit(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        """Learn of the exit in the event loop: a pidfd it polls, where the kernel has
        them, else a thread that waits."""
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            threading.Thread(
                target=self._wait_in_thread, args=(loop, pid), daemon=True, name="mcpwall-child"
            ).start()
            return

        def reap() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reaped(_wait(pid))

        loop.add_reader(pidfd, reap)

    def _wait_in_thread(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        code = _wait(pid)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(self._reaped, code)

    def _reaped(self, returncode: int | None) -> None:
        self._returncode = returncode
        self.exited()

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
        if self._stdout is not None and not self._stdout_closed:
            with contextlib.suppress(RuntimeError):
                getattr(self._stdout, name)()

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
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signum)

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
        if self.ended.done() or self._pid is None:
            return
        for timer in self._timers:
            timer.cancel()
        returncode = self._returncode
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


def _wait(pid: int) -> int | None:
    """Reap ``pid``, which has exited or is about to: its exit code (negative: the signal
    that killed it), None if something else reaped it."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


class _StdoutProtocol(asyncio.Protocol):
    def __init__(self, process: ServerProcess, framer: LineFramer) -> None:
        self._process = process
        self._framer = framer

    def data_received(self, data: bytes) -> None:
        if at_most_one_line(data):
            self._framer.feed(data)
            return
        events = self._process.events
        events.read_start()
        try:
            self._framer.feed(data)
        finally:
            events.read_end()

    def connection_lost(self, exc: Exception | None) -> None:
        self._process.stdout_closed(self._framer)


class _StdinProtocol(asyncio.Protocol):
    def __init__(self, process: ServerProcess) -> None:
        self._process = process

    def pause_writing(self) -> None:  # the server's stdin is full
        self._process.events.pause()

    def resume_writing(self) -> None:
        self._process.events.resume()
