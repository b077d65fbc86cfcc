"""HTTP answers through ASGI: whole JSON bodies, event streams, and the refusal that
ends a request before anything is relayed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcpwall import mcp

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Reply(Exception):
    """An HTTP answer given before any message is relayed (a refusal)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: int = mcp.INVALID_REQUEST,
        request_id: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = mcp.dumps(mcp.error(request_id, code, message))
        self.headers = headers or {}


async def respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    head = {"content-type": "application/json", **headers} if body else dict(headers)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in head.items()],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def start_stream(send: Send, headers: dict[str, str]) -> None:
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


async def read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise Reply(400, "The client went away")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Reply(413, f"Payload too large: more than {limit} bytes")
        parts.append(chunk)
        if not event.get("more_body"):
            return b"".join(parts)


async def disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue
