"""Tool pinning, against "rug pulls": the first definition a server shows of each tool
(title, description, input and output schema, annotations) is remembered in the state
store, one SHA-256 per field. A later, different definition is reported with the fields
that changed; under ``pin: enforce`` the tool is hidden and its calls denied until
``mcpwall pin accept`` approves the new version.

Pins live in the state store, so that every replica sharing it, and every later run,
sees the same pins, and ``mcpwall pin`` can approve from anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcpwall.state.base import CounterStore

log = logging.getLogger("mcpwall")

PINNED_FIELDS = ("title", "description", "inputSchema", "outputSchema", "annotations")
KEY_PREFIX = "pin|"

Fingerprint = dict[str, str]


def fingerprint(tool: dict[str, Any]) -> Fingerprint:
    """One digest per pinned field of a tool definition (an absent field too)."""
    return {
        name: hashlib.sha256(orjson.dumps(tool.get(name), option=orjson.OPT_SORT_KEYS)).hexdigest()
        for name in PINNED_FIELDS
    }


@dataclass
class Pin:
    """One tool's accepted definition, and a changed one waiting to be accepted."""

    accepted: Fingerprint
    pending: Fingerprint | None = None  # a definition seen since, not yet accepted
    changed_at: float | None = None

    @property
    def changed_fields(self) -> list[str]:
        if self.pending is None:
            return []
        return [name for name in PINNED_FIELDS if self.pending.get(name) != self.accepted.get(name)]

    def encode(self) -> str:
        return orjson.dumps(
            {"accepted": self.accepted, "pending": self.pending, "changed_at": self.changed_at}
        ).decode()

    @classmethod
    def decode(cls, text: str) -> Pin:
        data = orjson.loads(text)
        return cls(data["accepted"], data.get("pending"), data.get("changed_at"))


@dataclass
class Change:
    """A tool whose definition differs from its pin, or that has none yet."""

    tool: str
    fields: list[str]
    new: bool  # seen for the first time anywhere (not only by this process)


def pin_key(prefix: str, server: str, tool: str) -> str:
    return f"{prefix}{KEY_PREFIX}{server}|{tool}"


@dataclass
class PinBook:
    """The pins of one server's tools, as this process last saw them."""

    store: Callable[[], CounterStore]  # raises StoreUnavailable
    server: str
    prefix: str = ""
    seen: dict[str, Fingerprint] = field(default_factory=dict)  # the latest listed versions
    held: set[str] = field(default_factory=set)  # listed, differing from their pins
    unverified: set[str] = field(default_factory=set)  # listed while the store was away
    _reported: set[str] = field(default_factory=set)

    def observe(self, tools: list[Any]) -> list[Change]:
        """Pin what is new; return what differs from its pin and was not reported by
        this process yet. Raises StoreUnavailable: the tools listed stay unverified."""
        listed = {
            tool["name"]: fingerprint(tool)
            for tool in tools
            if type(tool) is dict and type(tool.get("name")) is str
        }
        self.seen.update(listed)
        self.unverified.update(listed)
        store = self.store()
        changes = []
        for name, seen in listed.items():
            change = self._check(store, name, seen)
            report = f"{name}|{orjson.dumps(seen).decode()}"
            if change is not None and report not in self._reported:
                self._reported.add(report)
                changes.append(change)
        return changes

    def holds(self, tool: str) -> bool:
        """Whether the tool's listed definition is not the pinned one. An approval
        given since (``mcpwall pin accept``, from anywhere) is picked up here. Raises
        StoreUnavailable."""
        if tool not in self.held and tool not in self.unverified:
            return False
        self._check(self.store(), tool, self.seen[tool])
        return tool in self.held

    def _check(self, store: CounterStore, name: str, seen: Fingerprint) -> Change | None:
        key = pin_key(self.prefix, self.server, name)
        stored = store.get_value(key)
        change = None
        if stored is None:
            store.put_value(key, Pin(seen).encode())
        else:
            pin = Pin.decode(stored)
            if pin.accepted == seen:
                if pin.pending is not None:  # changed back: nothing left to approve
                    store.put_value(key, Pin(seen).encode())
            else:
                new = pin.pending != seen
                if new:
                    pin = Pin(pin.accepted, seen, time.time())
                    store.put_value(key, pin.encode())
                change = Change(name, pin.changed_fields, new)
        self.unverified.discard(name)
        if change is None:
            self.held.discard(name)
        else:
            self.held.add(name)
        return change


def accept(store: CounterStore, prefix: str, server: str | None, tools: list[str]) -> list[str]:
    """Approve pending definitions (of ``tools``, or all); what was approved, as
    "server|tool"."""
    approved = []
    for server_name, tool, pin in listing(store, prefix):
        if server is not None and server_name != server:
            continue
        if pin.pending is None or (tools and tool not in tools):
            continue
        store.put_value(pin_key(prefix, server_name, tool), Pin(pin.pending).encode())
        approved.append(f"{server_name}|{tool}")
    return approved


def listing(store: CounterStore, prefix: str) -> list[tuple[str, str, Pin]]:
    """(server, tool, pin) for every pin in the store."""
    out = []
    start = prefix + KEY_PREFIX
    for key, text in sorted(store.values(start).items()):
        server, _, tool = key.removeprefix(start).rpartition("|")
        out.append((server, tool, Pin.decode(text)))
    return out
