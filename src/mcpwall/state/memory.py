"""Counters in this process's memory: exact, fast, gone when the process ends."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import count

from mcpwall.policy.model import Window
from mcpwall.state.base import (
    Check,
    Outcome,
    Refused,
    Request,
    Token,
    calendar_retry_after,
    fails,
    sliding_retry_after,
    window_start,
)

_SWEEP_EVERY = 60.0


class _Events:
    """One sliding counter: its events (time, amount, id), oldest first, and their sum."""

    __slots__ = ("items", "seconds", "total")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.items: deque[tuple[float, float, int]] = deque()
        self.total = 0.0

    def value(self, now: float) -> float:
        horizon = now - self.seconds
        items = self.items
        while items and items[0][0] <= horizon:
            self.total -= items.popleft()[1]
        if not items:
            self.total = 0.0  # no rounding drift survives an empty window
        return self.total


class MemoryStore:
    def __init__(self) -> None:
        self._events: dict[str, _Events] = {}
        self._calendar: dict[str, list[float]] = {}  # key -> [window start, value, end]
        self._ids = count(1)
        self._next_sweep = 0.0
        self._values: dict[str, str] = {}

    def reserve_many(self, requests: Sequence[Request], now: float) -> list[Outcome]:
        # One thread, nothing to fail: one after another is already one atomic step.
        return [self.reserve(checks, now, commit) for checks, commit in requests]

    def reserve(self, checks: Sequence[Check], now: float, commit: bool = True) -> Outcome:
        if now >= self._next_sweep:
            self._sweep(now)
        for check in checks:
            value = self.read(check.key, check.window, now)
            if fails(check, value):
                if check.window.calendar:
                    start = window_start(check.window, now)
                    retry = calendar_retry_after(check, start, now)
                else:
                    events = self._events.get(check.key)
                    stamps = ((t, a) for t, a, _ in events.items) if events else ()
                    retry = sliding_retry_after(check, value, stamps, now)
                return Refused(check.rule, value, retry)
        if not commit:
            return ()
        return tuple(self._add(check, now) for check in checks if check.reserve)

    def _add(self, check: Check, now: float) -> Token:
        if check.window.calendar:
            start = window_start(check.window, now)
            slot = self._calendar.get(check.key)
            if slot is None or slot[0] != start:
                slot = self._calendar[check.key] = [start, 0.0, start + check.window.seconds]
            slot[1] += check.amount
            return Token(check.key, check.window, check.amount, start, check.refundable)
        ident = next(self._ids)
        events = self._events.get(check.key)
        if events is None:
            events = self._events[check.key] = _Events(check.window.seconds)
        events.items.append((now, check.amount, ident))
        events.total += check.amount
        return Token(check.key, check.window, check.amount, ident, check.refundable)

    def release(self, tokens: Sequence[Token]) -> None:
        for token in tokens:
            if token.window.calendar:
                slot = self._calendar.get(token.key)
                if slot is not None and slot[0] == token.ident:
                    slot[1] = max(0.0, slot[1] - token.amount)
                continue
            events = self._events.get(token.key)
            if events is not None:
                for event in events.items:
                    if event[2] == token.ident:
                        events.items.remove(event)
                        events.total -= event[1]
                        break

    def read(self, key: str, window: Window, now: float) -> float:
        if window.calendar:
            slot = self._calendar.get(key)
            if slot is None or slot[0] != window_start(window, now):
                return 0
            return slot[1]
        events = self._events.get(key)
        return 0 if events is None else events.value(now)

    def _sweep(self, now: float) -> None:
        """Forget counters that have run out: those of ended sessions, of old values."""
        self._next_sweep = now + _SWEEP_EVERY
        for key, events in list(self._events.items()):
            if not events.value(now):
                del self._events[key]
        for key, slot in list(self._calendar.items()):
            if slot[2] <= now:
                del self._calendar[key]

    def get_value(self, key: str) -> str | None:
        return self._values.get(key)

    def put_value(self, key: str, value: str) -> None:
        self._values[key] = value

    def values(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._values.items() if k.startswith(prefix)}

    def close(self) -> None:
        self._events.clear()
        self._calendar.clear()
