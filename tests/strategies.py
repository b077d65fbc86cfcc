"""What an untrusted agent might write on mcpwall's stdin, as hypothesis strategies, and
what it must get back: the fuzz tests of the relay (in process) and of the proxy (as a
process) share them.

A stream is a list of lines, each ending in a newline. A line is random bytes, random
JSON, or a JSON-RPC message built from parts chosen to reach every branch of the relay
(tools/call with good and bad params, odd ids, client responses, batches, batches in
batches), written out with random spacing, escapes and, now and then, a duplicate key
or a lone surrogate.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from mcpwall import mcp

# default deny; only echo with a number n <= 10 may reach the server.
POLICY = """
version: "1"
default: deny
hide: [secret_get]
tools:
  echo:
    rules:
      - name: small n
        conditions: [{path: args.n, op: lte, value: 10}]
      - rate_limit: {max: 10000, window: 60}
  pods_delete:
    rules:
      - {action: deny, reason: "no pod deletion"}
"""

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
NAMES = st.sampled_from(
    ["echo", "pods_delete", "secret_get", "ECHO", "echo ", "ech\u043e", "", "echo\x00", "other"]
)
IDS = st.one_of(
    st.integers(-2, 3),
    st.sampled_from(["a", "b", "1", "", "id-\u00e9"]),
    st.sampled_from([1.5, True, None, [1], {"a": 1}, 2**63, -(2**63) - 1, 2**64]),
)
METHODS = st.sampled_from(
    [
        "tools/call",
        "tools/call",
        "tools/call",
        "tools/list",
        "ping",
        "initialize",
        "notifications/cancelled",
        "notifications/progress",
        "x/unknown",
    ]
)
ARGUMENTS = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"n": st.one_of(st.integers(-5, 20), JSON_VALUES), "x": JSON_VALUES}
    ),
    JSON_VALUES,
)
PARAMS = st.one_of(
    st.fixed_dictionaries(
        {"name": NAMES},
        optional={
            "arguments": ARGUMENTS,
            "_meta": st.just({"progressToken": 1}),
            "task": st.just({"ttl": 1000}),
            "protocolVersion": st.sampled_from(["2025-03-26", "2025-11-25", "2024-11-05"]),
            "requestId": IDS,
        },
    ),
    st.fixed_dictionaries({}, optional={"name": JSON_VALUES, "arguments": ARGUMENTS}),
    JSON_VALUES,
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]),
        "id": IDS,
        "method": st.one_of(METHODS, st.none(), st.integers()),
        "params": PARAMS,
        "result": JSON_VALUES,
        "error": JSON_VALUES,
    },
)

# Messages of the shapes the relay looks into, so that every example has some.
TEMPLATES = st.one_of(
    st.builds(
        lambda request_id, name, arguments: {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        },
        IDS,
        NAMES,
        ARGUMENTS,
    ),
    st.builds(
        lambda request_id, version: {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {"protocolVersion": version},
        },
        IDS,
        st.sampled_from(["2025-03-26", "2025-11-25"]),
    ),
    st.builds(
        lambda request_id: {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id},
        },
        IDS,
    ),
)


@dataclass
class Hand:
    """How one line is written: a seeded generator for the many small choices (spacing,
    key order, which characters to escape), and the odds of each oddity."""

    rnd: random.Random
    spaces: str  # what may go between tokens (a carriage return, in some lines)
    escapes: float  # the share of characters written as \\u escapes
    duplicates: float  # the chance that an object repeats one of its keys
    lone_surrogate: bool  # the first string written ends in a lone surrogate


def render(value: Any, hand: Hand) -> str:
    """JSON text for ``value`` as ``hand`` writes it. Floats may come out as NaN."""
    rnd = hand.rnd
    if isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
        if items and rnd.random() < hand.duplicates:
            items.append((rnd.choice(items)[0], rnd.choice([None, 1, "pods_delete"])))
        rnd.shuffle(items)
        parts = (
            f"{_space(hand)}{_string(k, hand)}{_space(hand)}:{render(v, hand)}" for k, v in items
        )
        return "{" + ",".join(parts) + _space(hand) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(item, hand) for item in value) + _space(hand) + "]"
    if isinstance(value, str):
        return _string(value, hand)
    return json.dumps(value)


def _space(hand: Hand) -> str:
    if not hand.spaces or hand.rnd.random() < 0.5:
        return ""
    return hand.rnd.choice(hand.spaces)


def _string(text: str, hand: Hand) -> str:
    out = ['"']
    for char in text:
        if hand.rnd.random() < hand.escapes:
            out.append(json.dumps(char)[1:-1] if ord(char) > 0xFFFF else f"\\u{ord(char):04x}")
        else:
            out.append(json.dumps(char, ensure_ascii=False)[1:-1])
    if hand.lone_surrogate:
        out.append("\\udc00")
        hand.lone_surrogate = False
    out.append('"')
    return "".join(out)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One line from the agent, ending in a newline (random bytes may hold more)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40)) + b"\n"
    if kind == 1:
        value: Any = draw(JSON_VALUES)
        for _ in range(draw(st.sampled_from([0, 0, 100, 253, 254, 300]))):  # deep nesting
            value = [value]
    elif kind <= 4:
        value = draw(MESSAGES)
    elif kind <= 7:
        value = draw(TEMPLATES)
    else:
        single = st.one_of(MESSAGES, TEMPLATES)
        value = draw(st.lists(st.one_of(single, st.lists(single, max_size=2)), max_size=4))
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    hand = Hand(
        rnd,
        spaces=rnd.choice(["", "", " ", " ", "\t", " \t", " \t", " \t\r"]),
        escapes=rnd.choice([0.0, 0.0, 0.1, 1.0]),
        duplicates=rnd.choice([0.0, 0.0, 0.05, 0.5]),
        lone_surrogate=rnd.random() < 0.03,
    )
    return render(value, hand).encode() + b"\n"


STREAMS = st.lists(lines(), min_size=1, max_size=10)


def answers_owed(line: bytes, limit: int) -> Counter[str]:
    """How many responses, by id, mcpwall owes the agent for one line (the line as the
    framer hands it over): one for each request or invalid message with a usable id,
    none for notifications, client responses, or what cannot be read at all."""
    if len(line.rstrip(b"\n")) > limit or not line.strip():
        return Counter()
    try:
        value = mcp.decode_strict(line)
    except mcp.Malformed:
        return Counter()
    items = value if type(value) is list else [value]
    return Counter(id_key(item["id"]) for item in items if _owed_an_answer(item))


def _owed_an_answer(item: Any) -> bool:
    if type(item) is not dict or "id" not in item or not mcp.valid_id(item["id"]):
        return False
    client_response = item.get("method") is None and ("result" in item or "error" in item)
    return not client_response


def id_key(request_id: Any) -> str:
    """1 and "1" are different ids."""
    return json.dumps(request_id)


def answered(output: bytes) -> Counter[str]:
    """The responses in one line mcpwall wrote to the agent, by id (null ids left out)."""
    value = json.loads(output)
    items = value if isinstance(value, list) else [value]
    return Counter(
        id_key(item["id"]) for item in items if "method" not in item and item.get("id") is not None
    )


def forwarded_calls_are_allowed(line: bytes) -> None:
    """A line mcpwall sent the server: one meaning only, and its every tools/call one the
    policy allows (echo with a number n <= 10)."""
    value = mcp.decode_strict(line)
    for item in value if type(value) is list else [value]:
        assert type(item) is dict
        if item.get("method") != "tools/call":
            continue
        params = item["params"]
        assert params["name"] == "echo", params
        arguments = params.get("arguments") or {}
        n = arguments["n"]
        assert type(n) in (int, float) and n <= 10, arguments
