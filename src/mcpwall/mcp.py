"""The MCP wire, written down once: how a message from the agent is read, what in a
message is owed an answer, the 2026-07-28 version and header codec, and every message
mcpwall writes itself. Every transport and the relay take these facts from here and
keep no copy of their own.

What the agent sends is read strictly, so that mcpwall and the server cannot read one
message two ways: invalid UTF-8, lone surrogates, duplicate keys, keys that a Go server
reads as one (``"name"`` and ``"Name"``), NaN, Infinity and numbers beyond a double are
refused, never forwarded. A message that passes is forwarded byte for byte: the server
reads exactly what was judged. No exception text ever reaches the wire except through
the builders below.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import math
import re
from typing import Any

import orjson

# -- error codes ------------------------------------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603  # mcpwall itself failed on this message: nothing was forwarded
SERVER_GONE = -32000
DENIED = -32001  # a denial that cannot be a tool result (a task-augmented call)
TIMED_OUT = -32001  # as the MCP SDKs' RequestTimeout
HEADER_MISMATCH = -32020  # 2026-07-28: a header says something else than the body

# -- protocol versions ------------------------------------------------------------------

# Where a 2026-07-28 request names its version, and the capabilities of its client.
MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
# The versions in which a JSON-RPC batch is a valid message.
BATCH_VERSIONS = frozenset({"2025-03-26"})
# 2026-07-28 mirrors the body in headers: Mcp-Method always, Mcp-Name for these methods,
# taken from this field of the params.
NAMED_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

_INT64 = 2**63
_LARGE = 64 * 1024  # bytes; see decode_strict


# -- reading what the agent sends -------------------------------------------------------


class Malformed(ValueError):
    """The bytes are not one unambiguous JSON value."""


def decode_strict(raw: bytes) -> Any:
    """Parse a message from the agent; raises Malformed with a short reason.

    Fast path: orjson refuses invalid UTF-8, lone surrogates, NaN and numbers beyond a
    double, but keeps the last of duplicate keys. When encoding what it read gives back
    the very same bytes, the text had no duplicate (a dropped key would be missing from
    the encoding) and nothing else that two parsers could read apart. Anything else
    (spacing, escapes, duplicates) goes through the strict reader below.

    Either way, text that a server could cut in two is refused: a carriage return
    inside the line (Python's text files, the official Python SDK's stdin among them,
    end a line there too) and a NUL character (a C string ends there). So are two keys
    of one object that Go's encoding/json matches to one struct field (see
    ``go_key``): a Go server would read whichever came last.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        # ASCII keys that Go folds together are equal in the lower-cased bytes, which
        # keep the message's shape (JSON's syntax has no upper-case letter): such a
        # pair is a duplicate there, and the lowered bytes do not round-trip either.
        # A large message is mostly values: its keys are folded one by one instead,
        # which costs what its objects cost, not what its bytes do.
        large = len(raw) > _LARGE
        if large or raw.islower():  # islower: no upper-case ASCII letter to fold
            lowered, probe = raw, value
        else:
            lowered = raw.lower()
            probe = orjson.loads(lowered)
        try:
            encoded = orjson.dumps(probe)
        except TypeError:
            raise Malformed(_TOO_DEEP) from None
        end = len(raw) - 1 if raw[-1:] == b"\n" else len(raw)
        if len(encoded) == end and lowered.startswith(encoded):
            # orjson writes no carriage return, and a NUL only as \u0000; the search
            # for it is costly on large messages, the search for a backslash is not.
            if _BACKSLASH in raw and b"\\u0000" in raw and _holds_nul(value):
                raise Malformed(_NUL)
            if large or not raw.isascii():  # keys with other letters: one by one
                _refuse_go_folds_deep(value)
            return value
    return _decode_slowly(raw)


def _decode_slowly(raw: bytes) -> Any:
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
    if b"\r" in raw and b"\r" in raw.rstrip(b"\r\n"):
        raise Malformed("a carriage return inside the message, where some readers end a line")
    if b"\\u0000" in raw and _holds_nul(value):
        raise Malformed(_NUL)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Malformed(f'duplicate key "{key}"')
            seen.add(key)
    if len(result) > 1:
        _refuse_go_folds(result)
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
).scan_once  # pyright: ignore[reportAttributeAccessIssue]  (the C scanner, undeclared)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TRAILING = re.compile(r"[ \t\n\r]*")
_BACKSLASH = ord("\\")  # an int: searched for with memchr, without a buffer
_NUL = "a NUL character (\\u0000), where a C string ends"
# What mcpwall reads, it must be able to write back (a batch's forwarded part, the audit
# log's digest), and orjson writes 254 levels of nesting at most.
_TOO_DEEP = "nested more than 254 levels deep"


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


# -- keys a Go server reads as one --------------------------------------------------------


def go_key(key: str) -> str:
    """The form under which Go's encoding/json matches an object key to a struct field:
    ASCII letters in upper case, every other letter replaced by the smallest member of
    its case-folding class (so the long s, U+017F, is ``S`` and the Kelvin sign ``K``).
    Two keys of one object with the same form are one field to a Go server, which keeps
    the last."""
    if key.isascii():
        return key.upper()
    classes = _case_classes()
    return "".join(char.upper() if char.isascii() else classes.get(char, char) for char in key)


@functools.cache
def _case_classes() -> dict[str, str]:
    """Every non-ASCII letter that folds with another, mapped to the smallest member of
    its class. Built on first use (a tenth of a second), from the same mappings Go's
    tables come from: simple lower case, upper case and case folding. Where Python's
    mapping of a letter is longer than one letter it is left out; Go's simple mappings
    fold at least as little there. A class is kept whole (the union of every mapping),
    so this folds as much as Go or more: never a pair that Go reads as one and this does
    not."""
    parent: dict[int, int] = {}

    def root(point: int) -> int:
        while parent.get(point, point) != point:
            point = parent[point]
        return point

    for point in range(0x80, 0x20000):
        char = chr(point)
        for mapped in (char.lower(), char.upper(), char.casefold()):
            if len(mapped) == 1 and mapped != char:
                a, b = root(point), root(ord(mapped))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    classes = {}
    for point in parent:
        smallest = chr(root(point))
        classes[chr(point)] = smallest.upper() if smallest.isascii() else smallest
    return {char: smallest for char, smallest in classes.items() if not char.isascii()}


def _refuse_go_folds(item: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for key in item:
        first = seen.setdefault(go_key(key), key)
        if first is not key:
            raise Malformed(
                f'keys "{first}" and "{key}" in one object, which a Go server reads as '
                "one (it matches keys without regard to case)"
            )


def _refuse_go_folds_deep(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if len(item) > 1:
                _refuse_go_folds(item)
            stack.extend(child for child in item.values() if type(child) in _CONTAINERS)
        elif kind is list:
            stack.extend(child for child in item if type(child) in _CONTAINERS)


_CONTAINERS = (dict, list)


def decode_server(raw: bytes) -> Any:
    """Parse a message from the server: fast, and lenient where the client would be."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise Malformed(str(exc)[:120]) from None


# A success answer whose id can be read off its ends, as the SDKs write one: the Python
# and Go SDKs put jsonrpc and id first, the TypeScript SDK puts the result first. Only
# the first or last bytes are looked at; where a key can only be the top level's.
LARGE_ANSWER = 1024 * 1024  # bytes: below this, parsing the answer costs less than 1 ms
_ID = rb'(0|-?[1-9][0-9]{0,17}|"[^"\\\x00-\x1f]{0,256}")'
_RESULT_FIRST = b'{"result":{'
_ANSWER_HEAD = re.compile(rb'\{"jsonrpc":"2\.0","id":' + _ID + rb',"result":\{')
_ANSWER_TAIL = re.compile(rb',"jsonrpc":"2\.0","id":' + _ID + rb"\}\n?\Z")
_TAIL_BYTES = 300
_TOOL_ERROR = re.compile(rb'"isError"\s*:\s*true')


def plain_result_id(line: bytes) -> int | str | None:
    """The id of a tools/call answer that succeeded, read without parsing the line: it
    begins (or ends) as an SDK writes a result, ends as a JSON object does, and says
    nowhere that the tool failed. None when that cannot be told from its bytes; then it
    must be parsed. The server is trusted with the rest of its own answer."""
    if not line.endswith((b"}", b"}\n")):
        return None
    match = _ANSWER_HEAD.match(line)
    if match is None and line.startswith(_RESULT_FIRST):
        match = _ANSWER_TAIL.search(line, max(0, len(line) - _TAIL_BYTES))
    if match is None:
        return None
    at = line.find(b'"isError"')
    if at >= 0 and _TOOL_ERROR.search(line, at):
        return None
    raw = match.group(1)
    if raw[:1] != b'"':
        return int(raw)
    try:
        return raw[1:-1].decode()
    except UnicodeDecodeError:
        return None


# -- what a message holds -------------------------------------------------------------------


def valid_id(value: Any) -> bool:
    """MCP request ids are strings or integers; never null, never a boolean."""
    kind = type(value)
    return kind is str or (kind is int and -_INT64 <= value < _INT64)


def items(message: Any) -> list[Any]:
    """The messages in a message: the elements of a batch, or the message itself."""
    return message if type(message) is list else [message]


def is_request(item: Any) -> bool:
    """A request (a method and an id), as opposed to a notification or a response."""
    return type(item) is dict and type(item.get("method")) is str and "id" in item


def is_response(item: Any) -> bool:
    """An answer: an id, no method, and a result or an error."""
    return (
        type(item) is dict
        and "id" in item
        and item.get("method") is None
        and ("result" in item or "error" in item)
    )


def owes_answer(item: Any) -> bool:
    """Whether mcpwall answers this element of what the agent sent, itself or through
    the server: anything with an id but the agent's own responses (its answers to the
    server's requests, and to mcpwall's)."""
    return type(item) is dict and "id" in item and not is_response(item)


def answer_ids(message: Any) -> list[Any]:
    """The ids of what the agent sent that will be answered with those ids; an element
    owed an answer whose id is not usable is answered with a null id instead."""
    return [item["id"] for item in items(message) if owes_answer(item) and valid_id(item["id"])]


def request_ids(message: Any) -> list[Any]:
    """The ids of the requests in a message that the server owes answers to."""
    return [item["id"] for item in items(message) if is_request(item) and valid_id(item["id"])]


def answered_ids(message: Any) -> list[Any]:
    """The ids that a message from the server answers."""
    return [
        item["id"]
        for item in items(message)
        if type(item) is dict and "method" not in item and valid_id(item.get("id"))
    ]


def initialize_ids(message: Any) -> list[Any]:
    return [
        item["id"]
        for item in items(message)
        if type(item) is dict and item.get("method") == "initialize" and "id" in item
    ]


def progress_tokens(message: Any) -> list[Any]:
    """The progress tokens the requests of a message ask the server to report under."""
    tokens = []
    for item in items(message):
        params = item.get("params") if type(item) is dict else None
        meta = params.get("_meta") if type(params) is dict else None
        if type(meta) is dict and type(meta.get("progressToken")) in (int, str):
            tokens.append(meta["progressToken"])
    return tokens


def reported_progress(message: Any) -> Any:
    """The progress token a notification of the server reports under; None if none."""
    params = message.get("params") if type(message) is dict else None
    return params.get("progressToken") if type(params) is dict else None


def modern_version(message: Any) -> str | None:
    """The protocol version a 2026-07-28 request names for itself; None for a request
    of a session (up to 2025-11-25), which names none."""
    params = message.get("params") if type(message) is dict else None
    return params_version(params)


def params_version(params: Any) -> str | None:
    meta = params.get("_meta") if type(params) is dict else None
    version = meta.get(MODERN_VERSION_KEY) if type(meta) is dict else None
    return version if type(version) is str else None


# -- 2026-07-28 headers ---------------------------------------------------------------------


def mirrored_headers(message: dict[str, Any], version: str) -> dict[str, str]:
    """The headers (lower-case names) that must say what this request's body says, and
    what they must say."""
    method = message.get("method")
    headers = {"mcp-protocol-version": version, "mcp-method": str(method)}
    field_name = NAMED_PARAM.get(str(method))
    params = message.get("params")
    named = params.get(field_name) if field_name is not None and type(params) is dict else None
    if type(named) is str:
        headers["mcp-name"] = named
    return headers


def header_value(text: str) -> str:
    """An HTTP header value: ASCII as is, anything else as =?base64?...?= (2026-07-28)."""
    if text.isascii() and text.isprintable():
        return text
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


def header_text(value: str) -> str:
    """What a header value says, =?base64?...?= decoded."""
    if value.startswith("=?base64?") and value.endswith("?="):
        with contextlib.suppress(ValueError):
            return base64.b64decode(value[9:-2], validate=True).decode()
    return value


# -- what mcpwall writes ----------------------------------------------------------------------


def error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def invalid(request_id: Any, why: str) -> dict[str, Any]:
    return error(request_id, INVALID_REQUEST, f"Invalid request: {why}")


def cancellation(request_id: Any, reason: str) -> dict[str, Any]:
    """mcpwall cancelling, on the agent's behalf, a request it stopped waiting for."""
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": f"[mcpwall] {reason}"},
    }


def denial(
    request_id: Any, reason: str | None, meta: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """The answer to a denied tools/call: a tool result with isError, so that the model
    reads the reason; a JSON-RPC error for a task-augmented call, which expects a task."""
    text = f"[mcpwall] Denied by policy: {reason}"
    data = {"mcpwall/decision": meta}
    if "task" in params:
        return error(request_id, DENIED, text, data)
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": data,
    }
    if params_version(params) is not None:
        # 2026-07-28 results must say what they are; clients refuse one without it.
        result["resultType"] = "complete"
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)
