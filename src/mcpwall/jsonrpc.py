"""JSON-RPC on the wire: the strict reading of what an agent sends, and every message
mcpwall writes itself. No exception text ever reaches the wire except through here.

What the agent sends is read strictly, so that mcpwall and the server cannot read one
message two ways: invalid UTF-8, lone surrogates, duplicate keys, NaN, Infinity and
numbers beyond a double are refused, never forwarded. A message that passes is then
forwarded byte for byte: the server reads exactly what was judged.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from mcpwall.engine.gate import Decision

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_GONE = -32000
DENIED = -32001  # a denial that cannot be a tool result (a task-augmented call)
TIMED_OUT = -32001  # as the MCP SDKs' RequestTimeout

MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
_INT64 = 2**63


class Malformed(ValueError):
    """The bytes are not one unambiguous JSON value."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Malformed(f'duplicate key "{key}"')
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Malformed(f"number {text[:40]} is out of range")
    return value


def _integer(text: str) -> int | float:
    """An integer as orjson reads one on the fast path: exact within 64 bits, else the
    nearest double (as JavaScript and Go servers read it), refused beyond a double."""
    value = int(text)
    if len(text) < 19 or -_INT64 <= value < 2 * _INT64:
        return value
    return _finite_float(text)


_SCAN = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_no_constant,
    parse_float=_finite_float,
    parse_int=_integer,
).scan_once
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TRAILING = re.compile(r"[ \t\n\r]*")
_BACKSLASH = ord("\\")  # an int: searched for with memchr, without a buffer
_NUL = "a NUL character (\\u0000), where a C string ends"
# What mcpwall reads, it must be able to write back (a batch's forwarded part, the audit
# log's digest), and orjson writes 254 levels of nesting at most.
_TOO_DEEP = "nested more than 254 levels deep"


def decode_strict(raw: bytes) -> Any:
    """Parse a message from the agent; raises Malformed with a short reason.

    Fast path: orjson refuses invalid UTF-8, lone surrogates, NaN and numbers beyond a
    double, but keeps the last of duplicate keys. When encoding what it read gives back
    the very same bytes, the text had no duplicate (a dropped key would be missing from
    the encoding) and nothing else that two parsers could read apart. Anything else
    (spacing, escapes, duplicates) goes through the strict reader below.

    Either way, text that a server could cut in two is refused: a carriage return
    inside the line (Python's text files, the official Python SDK's stdin among them,
    end a line there too) and a NUL character (a C string ends there).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        try:
            encoded = orjson.dumps(value)
        except TypeError:
            raise Malformed(_TOO_DEEP) from None
        end = len(raw) - 1 if raw[-1:] == b"\n" else len(raw)
        if len(encoded) == end and raw.startswith(encoded):
            # orjson writes no carriage return, and a NUL only as \u0000; the search
            # for it is costly on large messages, the search for a backslash is not.
            if _BACKSLASH in raw and b"\\u0000" in raw and _holds_nul(value):
                raise Malformed(_NUL)
            return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"invalid UTF-8 at byte {exc.start}") from None
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        # Escaped surrogates are fine in pairs; a lone one is read differently by
        # different parsers. orjson refuses lone ones, so let it rule on this line.
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Malformed(str(exc).split(":", 1)[0]) from None
    try:
        # The C scanner straight away: json.loads() adds two Python calls per message.
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:  # leading whitespace, or nothing at all
            value, end = _SCAN(text, _TRAILING.match(text).end())  # type: ignore[union-attr]
    except Malformed:
        raise
    except StopIteration as exc:
        raise Malformed(f"expected a JSON value at character {exc.value}") from None
    except json.JSONDecodeError as exc:
        raise Malformed(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise Malformed(f"unreadable JSON: {str(exc)[:80]}") from None
    size = len(text)
    ends_clean = end == size or (end == size - 1 and text[end] == "\n")
    if not ends_clean and _TRAILING.match(text, end).end() != size:  # type: ignore[union-attr]
        raise Malformed(f"extra data after the JSON value at character {end}")
    try:
        orjson.dumps(value)
    except TypeError:
        raise Malformed(_TOO_DEEP) from None
    _refuse_cuts(raw, value)
    return value


def _refuse_cuts(raw: bytes, value: Any) -> None:
    if b"\r" in raw and b"\r" in raw.rstrip(b"\r\n"):
        raise Malformed("a carriage return inside the message, where some readers end a line")
    if b"\\u0000" in raw and _holds_nul(value):
        raise Malformed(_NUL)


def _holds_nul(value: Any) -> bool:
    """Whether a NUL is in any key or string, at any depth (walked without recursion:
    orjson reads deeper nesting than Python's stack allows)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return True
        elif kind is dict:
            if any("\x00" in key for key in item):
                return True
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def decode_server(raw: bytes) -> Any:
    """Parse a message from the server: fast, and lenient where the client would be."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise Malformed(str(exc)[:120]) from None


def valid_id(value: Any) -> bool:
    """MCP request ids are strings or integers; never null, never a boolean."""
    kind = type(value)
    return kind is str or (kind is int and -_INT64 <= value < _INT64)


def error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def cancellation(request_id: Any, reason: str) -> dict[str, Any]:
    """mcpwall cancelling, on the agent's behalf, a request it stopped waiting for."""
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": f"[mcpwall] {reason}"},
    }


def denial(request_id: Any, decision: Decision, params: dict[str, Any]) -> dict[str, Any]:
    """The answer to a denied tools/call: a tool result with isError, so that the model
    reads the reason; a JSON-RPC error for a task-augmented call, which expects a task."""
    text = f"[mcpwall] Denied by policy: {decision.reason}"
    meta = {"mcpwall/decision": decision.as_meta()}
    if "task" in params:
        return error(request_id, DENIED, text, meta)
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": meta,
    }
    request_meta = params.get("_meta")
    if type(request_meta) is dict and MODERN_VERSION_KEY in request_meta:
        # 2026-07-28 results must say what they are; clients refuse one without it.
        result["resultType"] = "complete"
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)
