"""Tool pinning, against "rug pulls": the first definition of each tool a server shows
(name, description, input schema, annotations) is remembered, as a SHA-256, in the state
store. A later, different definition is reported; under ``pin: enforce`` the tool is
hidden and its calls denied until ``mcpwall pin accept`` approves the new version.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mcpwall.state.base import CounterStore

log = logging.getLogger("mcpwall")

PREFIX = "pin|"


def definition_digest(tool: dict[str, Any]) -> str:
    pinned = {key: tool.get(key) for key in ("name", "description", "inputSchema", "annotations")}
    return hashlib.sha256(orjson.dumps(pinned, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Pin:
    accepted: str
    pending: str | None = None  # a definition seen since, not yet accepted

    def encode(self) -> str:
        return orjson.dumps({"accepted": self.accepted, "pending": self.pending}).decode()

    @classmethod
    def decode(cls, text: str) -> Pin:
        data = orjson.loads(text)
        return cls(str(data["accepted"]), data.get("pending"))


@dataclass
class Change:
    tool: str
    accepted: str
    seen: str


def pin_key(server: str, tool: str) -> str:
    return f"{PREFIX}{server}|{tool}"


class PinBook:
    """The pins of one server, read from and written to the state store."""

    def __init__(self, store: Callable[[], CounterStore], server: str) -> None:
        self._store = store
        self.server = server
        self._held: set[str] = set()  # tools whose latest definition is not accepted

    def observe(self, tools: list[Any]) -> list[Change]:
        """Pin what is new, note what changed. Raises StoreUnavailable."""
        store = self._store()
        changes = []
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            name = tool["name"]
            digest = definition_digest(tool)
            key = pin_key(self.server, name)
            stored = store.get_value(key)
            if stored is None:
                store.put_value(key, Pin(digest).encode())
                self._held.discard(name)
                continue
            pin = Pin.decode(stored)
            if pin.accepted == digest:
                if pin.pending is not None:  # changed back: nothing to approve any more
                    store.put_value(key, Pin(digest).encode())
                self._held.discard(name)
                continue
            if pin.pending != digest:
                store.put_value(key, Pin(pin.accepted, digest).encode())
            self._held.add(name)
            changes.append(Change(name, pin.accepted, digest))
        return changes

    def held(self, tool: str) -> bool:
        """Whether the tool's latest definition waits for approval."""
        return tool in self._held


def accept(store: CounterStore, server: str | None, tools: list[str]) -> list[str]:
    """Approve pending definitions (of ``tools``, or all); the keys approved."""
    prefix = PREFIX + (f"{server}|" if server else "")
    approved = []
    for key, text in sorted(store.values(prefix).items()):
        pin = Pin.decode(text)
        tool = key.rsplit("|", 1)[1]
        if pin.pending is not None and (not tools or tool in tools):
            store.put_value(key, Pin(pin.pending).encode())
            approved.append(key.removeprefix(PREFIX))
    return approved


def listing(store: CounterStore) -> list[tuple[str, str, Pin]]:
    """(server, tool, pin) for every pin in the store."""
    out = []
    for key, text in sorted(store.values(PREFIX).items()):
        server, _, tool = key.removeprefix(PREFIX).rpartition("|")
        out.append((server, tool, Pin.decode(text)))
    return out
