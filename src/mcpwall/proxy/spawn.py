"""Starting the server's process, before mcpwall has loaded what it serves with.

An MCP client waits for the first answer, and the server's own start (an interpreter,
npx, a runtime) takes tens to hundreds of milliseconds. Started as soon as the policy is
known to be valid, the server boots while mcpwall imports its engine and event loop, and
the two starts overlap instead of adding up. This module imports nothing beyond the
standard library's process and socket calls, so that nothing heavy comes before the
spawn.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from dataclasses import dataclass


class ServerStartError(Exception):
    """The server command could not be started."""


@dataclass(slots=True)
class Spawned:
    """A started server: its pid, and mcpwall's ends of its stdin and its stdout.
    ``adopted`` is set once the proxy owns it; until then ``abandon`` ends it."""

    pid: int
    stdin: int
    stdout: int
    adopted: bool = False

    def abandon(self) -> None:
        """mcpwall is not going to serve: close its ends and end the whole process
        group, so that nothing outlives a start that failed."""
        for fd in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def spawn(command: list[str]) -> Spawned:
    """Run ``command`` with a socket pair on its stdin and on its stdout, its stderr left
    on mcpwall's, in a session of its own (see proxy.child).

    Socket pairs, not pipes: a pipe holds 64 KB, so a large message crosses it in many
    turns of both processes (a 10 MB call took about 10 ms longer through pipes), and a
    socket pair is what servers got from mcpwall before (libuv's spawn makes them)."""
    stdin_read, stdin_write = _socket_pair()
    stdout_read, stdout_write = _socket_pair()
    # The ends are close-on-exec; dup2 onto 0 and 1 clears it for the child's copies, so
    # the child keeps exactly its stdin and stdout, and mcpwall's ends never leak into it.
    # What mcpwall itself inherited beyond 0-2 is closed too, as subprocess does.
    actions: list[tuple[int, ...]] = [
        (os.POSIX_SPAWN_DUP2, stdin_read, 0),
        (os.POSIX_SPAWN_DUP2, stdout_write, 1),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds()]
    try:
        pid = os.posix_spawnp(
            command[0],
            command,
            os.environ,
            file_actions=actions,
            setsid=True,
            # Python ignores SIGPIPE and SIGXFSZ; the server gets the defaults, as with
            # subprocess.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError as exc:
        for fd in (stdin_read, stdin_write, stdout_read, stdout_write):
            os.close(fd)
        raise ServerStartError(
            f"cannot start the MCP server {command[0]!r}: {exc.strerror or exc}"
        ) from exc
    os.close(stdin_read)
    os.close(stdout_write)
    return Spawned(pid, stdin_write, stdout_read)


# A large message crosses the default send buffer (about 208 KB) in some fifty turns of
# both processes; this one (as far as net.core.wmem_max allows) in a few: 3 to 5 ms of a
# 10 MB round trip on this kind of machine. The kernel holds the bytes, not mcpwall.
_SEND_BUFFER = 4 * 1024 * 1024


def _socket_pair() -> tuple[int, int]:
    """A connected pair of Unix stream sockets, as (the end read, the end written)."""
    reader, writer = socket.socketpair()
    with contextlib.suppress(OSError):
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    return reader.detach(), writer.detach()


def _inherited_fds() -> list[int]:
    """The descriptors above stderr that an exec would pass on."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the descriptor listdir itself used
                pass
    return found
