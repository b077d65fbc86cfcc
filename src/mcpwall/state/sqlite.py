"""Counters in a SQLite file: embedded, shared safely by every process on the host,
kept across restarts.

Each reservation (or group of them) runs in one ``BEGIN IMMEDIATE`` transaction, which
takes the file's write lock before reading: two processes can never both read "9 of 10"
and both take the last slot. WAL mode lets readers go on meanwhile, and the busy timeout
makes a process wait its turn instead of failing. ``synchronous=NORMAL`` commits without an
fsync: a counter survives the process being killed, not the host losing power.

Every counter keeps its running value in ``totals``, so that a check costs the same
whatever the limit: a sliding window also keeps one row per event in ``events`` (the
calls of one group make one event per key), and an event that ages out of the window
is deleted and taken off the total then.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import count
from pathlib import Path
from typing import Any

from mcpwall.policy.model import Window
from mcpwall.state.base import (
    Check,
    Outcome,
    Refused,
    Request,
    StoreUnavailable,
    Token,
    calendar_retry_after,
    fails,
    sliding_retry_after,
    window_start,
)

BUSY_TIMEOUT_MS = 5000
_PRUNE_EVERY = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key     TEXT NOT NULL,
    ts      REAL NOT NULL,
    seq     INTEGER NOT NULL,  -- tells apart events of one key at the same instant
    amount  NOT NULL,
    PRIMARY KEY (key, ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    key     TEXT PRIMARY KEY,
    start   REAL NOT NULL,  -- calendar: the window's start; sliding: the oldest event
    value   NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
"""


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: this class opens every transaction itself, IMMEDIATE.
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=64,
            )
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite state file {self.path}: {exc}") from exc
        self._sql = self._db.cursor()
        self._next_prune = 0.0
        # Unique per event among every process sharing the file, without a round trip.
        self._seq = count(random.getrandbits(62))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction: committed on return, rolled back on an error."""
        sql = self._sql
        try:
            sql.execute("BEGIN IMMEDIATE")
            try:
                yield sql
            except BaseException:
                sql.execute("ROLLBACK")
                raise
            sql.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                sql.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite state file {self.path}: {exc}") from exc

    def reserve(self, checks: Sequence[Check], now: float, commit: bool = True) -> Outcome:
        return self.reserve_many(((checks, commit),), now)[0]

    def reserve_many(self, requests: Sequence[Request], now: float) -> list[Outcome]:
        with self._transaction():
            if now >= self._next_prune:
                self._prune(now)
            group = _Group(self, now, {check.key for checks, _ in requests for check in checks})
            outcomes = [group.reserve(checks, commit) for checks, commit in requests]
            group.write()
        return outcomes

    def _totals(self, keys: set[str]) -> dict[str, list[float]]:
        """The stored [start, value] of each key, read in one statement."""
        found = self._sql.execute(_select_totals(len(keys)), tuple(keys))
        return {key: [start, value] for key, start, value in found}

    def _current(self, check: Check, rows: dict[str, list[float]], now: float) -> float:
        row = rows.get(check.key)
        if row is None:
            return 0
        start, value = row
        if check.window.calendar:
            return value if start == window_start(check.window, now) else 0
        horizon = now - check.window.seconds
        if start > horizon:
            return value
        # Events have left the window: take them off the total, note the new oldest.
        gone = self._sql.execute(
            "DELETE FROM events WHERE key = ? AND ts <= ? RETURNING amount", (check.key, horizon)
        ).fetchall()
        value = max(0, value - sum(amount for (amount,) in gone))
        oldest = self._sql.execute(
            "SELECT MIN(ts) FROM events WHERE key = ?", (check.key,)
        ).fetchone()[0]
        row[:] = [oldest if oldest is not None else now, value]
        if not gone:
            return value
        self._sql.execute(
            "UPDATE totals SET start = ?, value = ? WHERE key = ?", (row[0], value, check.key)
        )
        return value

    def _retry_after(self, check: Check, value: float, now: float) -> float | None:
        if check.window.calendar:
            return calendar_retry_after(check, window_start(check.window, now), now)
        # Oldest first, read only as far as needed: enough events to leave the window.
        events = self._db.execute(
            "SELECT ts, amount FROM events WHERE key = ? ORDER BY ts", (check.key,)
        )
        try:
            return sliding_retry_after(check, value, events, now)
        finally:
            events.close()

    def _prune(self, now: float) -> None:
        """Forget counters that have run out: those of ended sessions, of old values."""
        self._next_prune = now + _PRUNE_EVERY
        expired = self._sql.execute(
            "DELETE FROM totals WHERE expires <= ? RETURNING key", (now,)
        ).fetchall()
        self._sql.executemany("DELETE FROM events WHERE key = ?", expired)

    def release(self, tokens: Sequence[Token]) -> None:
        if not tokens:
            return
        with self._transaction() as sql:
            for token in tokens:
                if token.window.calendar:
                    sql.execute(
                        "UPDATE totals SET value = MAX(value - ?, 0) WHERE key = ? AND start = ?",
                        (token.amount, token.key, token.ident),
                    )
                    continue
                stamp, seq = token.ident  # type: ignore[misc]
                event = (token.key, stamp, seq)
                left = sql.execute(
                    "UPDATE events SET amount = amount - ? WHERE key = ? AND ts = ? AND seq = ?"
                    " RETURNING amount",
                    (token.amount, *event),
                ).fetchone()
                if left is None:  # the event has left the window already
                    continue
                if left[0] <= 0:
                    sql.execute("DELETE FROM events WHERE key = ? AND ts = ? AND seq = ?", event)
                sql.execute(
                    "UPDATE totals SET value = MAX(value - ?, 0) WHERE key = ?",
                    (token.amount, token.key),
                )

    def read(self, key: str, window: Window, now: float) -> float:
        probe = Check(0, key, window, 0, (), False)
        with self._transaction():
            return self._current(probe, self._totals({key}), now)

    def get_value(self, key: str) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite state file {self.path}: {exc}") from exc
        return row[0] if row else None

    def put_value(self, key: str, value: str) -> None:
        with self._transaction() as sql:
            sql.execute("REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def values(self, prefix: str) -> dict[str, str]:
        try:
            rows = self._db.execute(
                "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite state file {self.path}: {exc}") from exc
        return dict(rows)

    def close(self) -> None:
        self._db.close()


class _Group:
    """One transaction's reservations: the counters' values are read once, kept here
    as each call adds to them, and written once at the end (the write lock is held
    throughout, so what was read stays current)."""

    def __init__(self, store: SQLiteStore, now: float, keys: set[str]) -> None:
        self.store = store
        self.now = now
        self.seq = store._seq
        self.rows = store._totals(keys)  # key -> [start (oldest event), value] stored
        self.values: dict[str, float] = {}  # key -> its value now, this group's adds in
        # To insert: one row per key, not per call. The group's calls share one instant,
        # so their events on a key are one event of their summed amount; a call given
        # back later takes its own amount off that row (see ``release``).
        self.events: dict[str, list[Any]] = {}  # key -> [key, ts, seq, amount]
        self.totals: dict[str, tuple[str, float, float, float]] = {}  # to write

    def reserve(self, checks: Sequence[Check], commit: bool) -> Outcome:
        values = self.values
        for check in checks:
            value = values.get(check.key)
            if value is None:
                value = values[check.key] = self.store._current(check, self.rows, self.now)
            if fails(check, value):
                if self.events:  # the retry time counts the events added before this call
                    self._insert_events()
                return Refused(check.rule, value, self.store._retry_after(check, value, self.now))
        if not commit:
            return ()
        return tuple([self._add(check) for check in checks if check.reserve])

    def _add(self, check: Check) -> Token:
        key, window, amount = check.key, check.window, check.amount
        now = self.now
        value = self.values[key] = self.values[key] + amount
        if window.calendar:
            start = window_start(window, now)
            self.totals[key] = (key, start, value, start + window.seconds)
            return Token(key, window, amount, start, check.refundable)
        event = self.events.get(key)
        if event is None:
            event = self.events[key] = [key, now, next(self.seq), amount]
        else:
            event[3] += amount
        seq = event[2]
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [now, value]
        self.totals[key] = (key, row[0], value, now + window.seconds)
        return Token(key, window, amount, (now, seq), check.refundable)

    def _insert_events(self) -> None:
        _write_rows(self.store._sql, _INSERT_EVENTS, list(self.events.values()))
        self.events.clear()

    def write(self) -> None:
        if self.events:
            self._insert_events()
        if self.totals:
            _write_rows(self.store._sql, _REPLACE_TOTALS, list(self.totals.values()))


_INSERT_EVENTS = "INSERT INTO events (key, ts, seq, amount) VALUES "
_REPLACE_TOTALS = "REPLACE INTO totals (key, start, value, expires) VALUES "
_FEW_ROWS = 16  # written in one statement; more go through executemany


def _write_rows(sql: sqlite3.Cursor, head: str, rows: list[Any]) -> None:
    """Rows of four values in one statement when they are few (a call alone, the common
    case: executemany costs more than execute for one row), else by executemany."""
    if len(rows) <= _FEW_ROWS:
        sql.execute(_rows_statement(head, len(rows)), [value for row in rows for value in row])
    else:
        sql.executemany(head + "(?, ?, ?, ?)", rows)


@lru_cache(maxsize=2 * _FEW_ROWS)
def _rows_statement(head: str, count: int) -> str:
    return head + ",".join(["(?, ?, ?, ?)"] * count)


@lru_cache(maxsize=16)
def _select_totals(count: int) -> str:
    return f"SELECT key, start, value FROM totals WHERE key IN ({','.join('?' * count)})"
