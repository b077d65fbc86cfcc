"""The MCP wire facts of mcpwall.mcp: reading what the agent sends (one meaning or
none; the fast path, bytes that round-trip through the encoder, and the strict reader
give the same verdicts), and what a message holds, in one table."""

from __future__ import annotations

from typing import Any

import pytest

from mcpwall import mcp
from mcpwall.mcp import Malformed, decode_strict
from tests.helpers import GO_FOLDED


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
        # Keys that Go folds apart are fine: different letters, or in other objects.
        (b'{"Name":1}', {"Name": 1}),
        (b'{"a":{"name":1},"b":{"NAME":2}}', {"a": {"name": 1}, "b": {"NAME": 2}}),
        (b'{"name":1,"na_me":2,"na-me":3}', {"name": 1, "na_me": 2, "na-me": 3}),
        ('{"\u00e9":1,"\u00c9t\u00e9":2}'.encode(), {"\u00e9": 1, "\u00c9t\u00e9": 2}),
        ('{"\u017f":1}'.encode(), {"\u017f": 1}),
        (b'{"A":"Value","b":"VALUE"}', {"A": "Value", "b": "VALUE"}),  # values never fold
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
        *GO_FOLDED,
        b'{"a":[{"b":{"Key":1, "kEY":2}}]}',  # at any depth, on the strict reader too
        '{"\u00e9":1,"\u00c9":2}'.encode(),  # folded beyond ASCII
        b'{"\\u00e9":1,"\\u00c9":2}',
        '{"s":1,"\u017f":2}'.encode(),
    ],
)
def test_refuses_what_could_be_read_two_ways(raw: bytes) -> None:
    with pytest.raises(Malformed):
        decode_strict(raw)


BATCH = [
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": {"progressToken": 7}}},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    {"jsonrpc": "2.0", "id": "a", "result": {}},  # the client answering the server
    {"jsonrpc": "2.0", "id": True, "method": "ping"},  # owed an answer, by a null id
    {"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {}},
    {"jsonrpc": "2.0", "id": 3, "method": None, "result": {}},  # "method": null: no answer
]


@pytest.mark.parametrize(
    ("fact", "message", "expected"),
    [
        (mcp.answer_ids, BATCH, [1, 2]),
        (mcp.request_ids, BATCH, [1, 2]),
        (mcp.initialize_ids, BATCH, [2]),
        (mcp.progress_tokens, BATCH, [7]),
        (mcp.answered_ids, [{"id": 1, "result": {}}, {"id": 2, "method": "x"}], [1]),
        (mcp.answer_ids, {"jsonrpc": "2.0", "id": 2**63, "method": "ping"}, []),
        (mcp.owes_answer, BATCH[3], True),
        (mcp.owes_answer, BATCH[2], False),
        (mcp.owes_answer, BATCH[5], False),
        (mcp.is_request, BATCH[1], False),
        (mcp.valid_id, -(2**63), True),
        (mcp.valid_id, 2**63, False),
        (mcp.valid_id, None, False),
        (mcp.valid_id, False, False),
        (
            mcp.reported_progress,
            {"method": "notifications/progress", "params": {"progressToken": 7}},
            7,
        ),
        (
            mcp.modern_version,
            {"params": {"_meta": {mcp.MODERN_VERSION_KEY: "2026-07-28"}}},
            "2026-07-28",
        ),
        (mcp.modern_version, {"params": {"_meta": {mcp.MODERN_VERSION_KEY: 1}}}, None),
        (mcp.modern_version, {"params": []}, None),
        (
            lambda m: mcp.mirrored_headers(m, "2026-07-28"),
            {"method": "tools/call", "params": {"name": "pods_list"}},
            {
                "mcp-protocol-version": "2026-07-28",
                "mcp-method": "tools/call",
                "mcp-name": "pods_list",
            },
        ),
        (
            lambda m: mcp.mirrored_headers(m, "2026-07-28"),
            {"method": "resources/read", "params": {"uri": 5}},
            {"mcp-protocol-version": "2026-07-28", "mcp-method": "resources/read"},
        ),
        (mcp.header_value, "pods_list", "pods_list"),
        (mcp.header_value, "caf\u00e9", "=?base64?Y2Fmw6k=?="),
        (mcp.header_text, "=?base64?Y2Fmw6k=?=", "caf\u00e9"),
        (mcp.header_text, "=?base64?not base64?=", "=?base64?not base64?="),
        (mcp.go_key, "Kind", "KIND"),
        (mcp.go_key, "\u212aind", "KIND"),
        (mcp.go_key, "argument\u017f", "ARGUMENTS"),
    ],
)
def test_wire_facts(fact: Any, message: Any, expected: Any) -> None:
    assert fact(message) == expected


def test_denial_is_a_tool_result_the_model_reads_or_an_error_for_a_task() -> None:
    meta = {"tool": "t", "rule": "r", "reason": "no", "retry_after_s": None}
    plain = mcp.denial(1, "no", meta, {"name": "t"})
    assert plain["result"]["isError"] is True
    assert plain["result"]["content"][0]["text"] == "[mcpwall] Denied by policy: no"
    assert "resultType" not in plain["result"]
    modern = mcp.denial(1, "no", meta, {"_meta": {mcp.MODERN_VERSION_KEY: "2026-07-28"}})
    assert modern["result"]["resultType"] == "complete"
    task = mcp.denial(1, "no", meta, {"task": {}})
    assert task["error"]["code"] == mcp.DENIED and task["error"]["data"] == {
        "mcpwall/decision": meta
    }


@pytest.mark.parametrize(
    ("line", "request_id"),
    [
        (b'{"jsonrpc":"2.0","id":5,"result":{"content":[]}}\n', 5),  # Python, Go
        (b'{"result":{"content":[]},"jsonrpc":"2.0","id":5}\n', 5),  # TypeScript
        (b'{"result":{},"jsonrpc":"2.0","id":"c-1"}', "c-1"),
        (b'{"jsonrpc":"2.0","id":-3,"result":{"isError":false}}\n', -3),
        (b'{"jsonrpc":"2.0","id":0,"result":{"a":"isError: true"}}\n', 0),  # in a text
        (b'{"jsonrpc":"2.0","id":"\xc3\xa9","result":{}}\n', "é"),
        # Not to be told from the ends: parsed instead.
        (b'{"jsonrpc":"2.0","id":5,"result":{"isError":true}}\n', None),
        (b'{"jsonrpc":"2.0","id":5,"result":{"isError" : true}}\n', None),
        (b'{"jsonrpc":"2.0","id":5,"result":{"a":{"isError":false},"isError":true}}', None),
        (b'{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"no"}}\n', None),
        (b'{"jsonrpc": "2.0", "id": 5, "result": {}}\n', None),  # spaced
        (b'{"id":5,"jsonrpc":"2.0","result":{}}\n', None),  # another order
        (b'{"jsonrpc":"2.0","id":05,"result":{}}\n', None),  # not a JSON number
        (b'{"jsonrpc":"2.0","id":"a\\"b","result":{}}\n', None),  # an escape in the id
        (b'{"jsonrpc":"2.0","id":"\xff","result":{}}\n', None),  # not UTF-8
        (b'{"jsonrpc":"2.0","id":1.5,"result":{}}\n', None),
        (b'{"result":{"x":{"jsonrpc":"2.0","id":5}}}\n', None),  # nested, not the end
        (b'{"result":{},"jsonrpc":"2.0","id":5}}\n', None),
        (b'[{"jsonrpc":"2.0","id":5,"result":{}}]\n', None),  # a batch
        (b'{"jsonrpc":"2.0","id":5,"result":{"content":[{"text":"cut off', None),
    ],
)
def test_the_id_of_a_plain_result_is_read_off_its_ends(line: bytes, request_id: Any) -> None:
    assert mcp.plain_result_id(line) == request_id
