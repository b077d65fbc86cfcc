"""The Python floor: a relay that copies bytes between its own stdio and a child's, on
the event loop mcpwall runs on (uvloop), and does nothing else. What it adds beyond the
C floor (floor.c) is what CPython and the loop cost per wake-up before any line is
read: the part of mcpwall's cost that no change to mcpwall's own code can remove.

    python benchmarks/pyfloor.py CMD [ARGS...]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop


class _ToServer(asyncio.Protocol):
    def __init__(self, server_in: Any) -> None:
        self._server_in = server_in

    def data_received(self, data: bytes) -> None:
        self._server_in.write(data)

    def eof_received(self) -> bool:
        self._server_in.close()
        return False


class _FromServer(asyncio.SubprocessProtocol):
    def __init__(self, client_out: Any, ended: asyncio.Future[None]) -> None:
        self._client_out = client_out
        self._ended = ended

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._client_out.write(data)

    def process_exited(self) -> None:
        self._ended.set_result(None)


async def relay(command: list[str]) -> int:
    loop = asyncio.get_running_loop()
    stdout = open(1, "wb", buffering=0, closefd=False)  # noqa: SIM115
    client_out, _ = await loop.connect_write_pipe(asyncio.Protocol, stdout)
    ended: asyncio.Future[None] = loop.create_future()
    child, _ = await loop.subprocess_exec(
        lambda: _FromServer(client_out, ended), *command, stderr=None
    )
    stdin = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115
    await loop.connect_read_pipe(lambda: _ToServer(child.get_pipe_transport(0)), stdin)
    await ended
    return child.get_returncode() or 0


if __name__ == "__main__":
    sys.exit(uvloop.run(relay(sys.argv[1:])))
