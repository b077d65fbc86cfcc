"""Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html),
the way Streamable HTTP carries messages: reading a stream, and writing events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    data: bytes
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class EventReader:
    """Feed it bytes as they arrive; it yields whole events. Lines may end with CRLF, LF
    or CR; an event ends at a blank line; comments (``:``) are skipped."""

    def __init__(self) -> None:
        # Bytes not yet read; a large event arrives in many chunks, so the buffer grows
        # in place and is only searched where it has not been searched before.
        self._buffer = bytearray()
        self._scanned = 0
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.last_id: str | None = None

    def feed(self, chunk: bytes) -> Iterator[Event]:
        buffer = self._buffer
        buffer += chunk
        start = 0
        while True:
            cut = _line_end(buffer, start, self._scanned)
            if cut is None:
                break
            end, after = cut
            event = self._line(bytes(buffer[start:end]))
            start = self._scanned = after
            if event is not None:
                yield event
        del buffer[:start]
        self._scanned = max(0, len(buffer) - 1)

    def _line(self, line: bytes) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_id = self._id
        if not self._data and self._retry is None:
            self._event = ""
            return None
        event = Event(b"\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data, self._event, self._id, self._retry = [], "", None, None
        return event


def _line_end(buffer: bytearray, start: int, scanned: int) -> tuple[int, int] | None:
    """Where the line that begins at ``start`` ends, and where the next begins; None if
    it has not ended yet. Bytes before ``scanned`` hold no line end."""
    origin = max(start, scanned)
    newline = buffer.find(b"\n", origin)
    carriage = buffer.find(b"\r", origin)
    if carriage == -1 or (newline != -1 and newline < carriage):
        return None if newline == -1 else (newline, newline + 1)
    if carriage == len(buffer) - 1:
        return None  # a CR at the very end may be the first half of CRLF
    after = carriage + 2 if buffer[carriage + 1] == 0x0A else carriage + 1
    return (carriage, after)


def encode(data: bytes, event_id: str | None = None) -> bytes:
    """One event carrying one message (JSON has no raw newlines: one data line)."""
    head = f"id: {event_id}\n".encode() if event_id is not None else b""
    return head + b"event: message\ndata: " + data.rstrip(b"\n") + b"\n\n"
