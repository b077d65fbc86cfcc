"""Newline-delimited JSON-RPC framing, for stdio and any other byte stream."""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
_SMALL = 64 * 1024


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


def at_most_one_line(data: bytes) -> bool:
    """Whether a read holds no newline before its last byte: at most one message, the
    usual read. What it produces needs no gathering into one write per side, and leaves
    as soon as it is relayed rather than when the read ends."""
    return data.find(b"\n", 0, len(data) - 1) < 0


def line(data: bytes) -> bytes:
    """``data`` ending with exactly one newline, copied only when one must be added."""
    if data[-1:] == b"\n":
        return data
    if len(data) < _SMALL:
        return data + b"\n"
    return b"".join((data, b"\n"))
