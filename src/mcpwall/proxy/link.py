"""The seam between the relay and a server, whichever way the server is reached: a child
process on stdio, or a remote server over HTTP."""

from __future__ import annotations

import asyncio
from typing import Protocol


class LinkEvents(Protocol):
    """What a link reports to its owner."""

    def message(self, data: bytes) -> None:
        """One message from the server, as it came."""

    def read_start(self) -> None:
        """Messages follow that arrived together: hold what they produce..."""

    def read_end(self) -> None:
        """...and write it now, in one call per side."""

    def pause(self) -> None:
        """The server cannot take more for now: stop reading from the client."""

    def resume(self) -> None: ...


class ServerLink(Protocol):
    """A server, however reached. ``ended`` resolves, with a sentence saying how, when
    the server is gone for good; ``status`` is then the exit status to pass on."""

    ended: asyncio.Future[str]
    status: int
    stopped_by_us: bool

    async def start(self) -> None: ...

    def send(self, data: bytes) -> None: ...

    def hold(self) -> None: ...

    def flush(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def signal(self, signum: int) -> None: ...

    def close(self) -> None:
        """Begin an orderly stop; ``ended`` resolves once it is done."""
