"""Reading what the agent sends: one meaning or none. Both the fast path (bytes that
round-trip through the encoder) and the strict reader give the same verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from mcpwall.mcp import Malformed, decode_strict


def nested(depth: int) -> Any:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"a":1}\n', {"a": 1}),  # canonical: the fast path
        (b'{ "a" : 1 }', {"a": 1}),  # spaced: the strict reader
        (b'{"a":"\\u00e9"}', {"a": "é"}),  # escaped where the encoder would not
        (b'{"a":"\\ud83d\\ude00"}', {"a": "😀"}),  # a surrogate pair is one character
        (b'{"n":18446744073709551615}', {"n": 2**64 - 1}),  # 64 bits: exact
        (b'{"n":-9223372036854775808}', {"n": -(2**63)}),
        (b'{"n":123456789012345678901234567890}', {"n": 1.2345678901234568e29}),  # a double
        (b'{"n":1e5}', {"n": 100000.0}),
        (b"[]", []),
        (b'{"a":1}\r\n', {"a": 1}),  # a line ending in CRLF
        (b'{"a":"\\\\u0000"}', {"a": "\\u0000"}),  # a backslash, then "u0000": no NUL
        (b"[" * 254 + b"]" * 254, nested(254)),  # as deep as mcpwall can write back
    ],
)
def test_reads(raw: bytes, value: Any) -> None:
    assert decode_strict(raw) == value


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',  # canonical bytes, duplicate key
        b'{"a": 1, "a": 2}',
        b'{"p":{"name":"x","name":"y"}}',
        b'[{"a":1,"a":1}]',
        b'{"a":"\\ud800"}',
        b'{"a":"\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
        b'{"a":"\xff"}',
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":1e400}',
        b'{"a":1' + b"0" * 400 + b"}",  # an integer beyond a double
        b'{"a":1} {"b":2}',
        b'{"a":"tab\tinside"}',
        b"[" * 5000 + b"]" * 5000,
        b"[" * 255 + b"]" * 255,  # deeper than mcpwall could write back
        b"[ " * 300 + b"]" * 300,
        b'{"a":\r1}',  # a reader with universal newlines ends a line there
        b'{"a":"x\\u0000"}',  # a C string ends there
        b'{"a\\u0000":1,"a":2}',  # ... so this key is "a" twice for some servers
        b"",
    ],
)
def test_refuses_what_could_be_read_two_ways(raw: bytes) -> None:
    with pytest.raises(Malformed):
        decode_strict(raw)
