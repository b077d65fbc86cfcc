"""Counters in a SQLite file: embedded, shared safely by every process on the host,
kept across restarts.

Each reservation runs in one ``BEGIN IMMEDIATE`` transaction, which takes the file's
write lock before reading: two processes can never both read "9 of 10" and both take
the last slot. WAL mode lets readers go on meanwhile, and the busy timeout makes a
process wait its turn instead of failing. ``synchronous=NORMAL`` commits without an
fsync: a counter survives the process being killed, not the host losing power.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mcpwall.policy.model import Window
from mcpwall.state.base import (
    Check,
    Refused,
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
    id      INTEGER PRIMARY KEY,
    key     TEXT NOT NULL,
    ts      REAL NOT NULL,
    amount  NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_key ON events (key, ts);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires);
CREATE TABLE IF NOT EXISTS counters (
    key     TEXT PRIMARY KEY,
    start   REAL NOT NULL,
    value   NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS counters_by_expiry ON counters (expires);
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
            )
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite state file {self.path}: {exc}") from exc
        self._next_prune = 0.0

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed on return, rolled back on an error."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite state file {self.path}: {exc}") from exc

    def reserve(
        self, checks: Sequence[Check], now: float, commit: bool = True
    ) -> Refused | tuple[Token, ...]:
        with self._transaction():
            if now >= self._next_prune:
                self._prune(now)
            for check in checks:
                value = self._value(check.key, check.window, now)
                if fails(check, value):
                    return Refused(check.rule, value, self._retry_after(check, now))
            if not commit:
                return ()
            return tuple(self._add(check, now) for check in checks if check.reserve)

    def _value(self, key: str, window: Window, now: float) -> float:
        if window.calendar:
            row = self._db.execute(
                "SELECT value FROM counters WHERE key = ? AND start = ?",
                (key, window_start(window, now)),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT SUM(amount) FROM events WHERE key = ? AND ts > ?",
                (key, now - window.seconds),
            ).fetchone()
        return (row[0] or 0) if row else 0

    def _retry_after(self, check: Check, now: float) -> float | None:
        if check.window.calendar:
            return calendar_retry_after(check, window_start(check.window, now), now)
        events = self._db.execute(
            "SELECT ts, amount FROM events WHERE key = ? AND ts > ? ORDER BY ts",
            (check.key, now - check.window.seconds),
        ).fetchall()
        return sliding_retry_after(check, events, now)

    def _add(self, check: Check, now: float) -> Token:
        if check.window.calendar:
            start = window_start(check.window, now)
            self._db.execute(
                "INSERT INTO counters (key, start, value, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN start = excluded.start THEN value + excluded.value "
                "ELSE excluded.value END, start = excluded.start, expires = excluded.expires",
                (check.key, start, check.amount, start + check.window.seconds),
            )
            return Token(check.key, check.window, check.amount, start, check.refundable)
        cursor = self._db.execute(
            "INSERT INTO events (key, ts, amount, expires) VALUES (?, ?, ?, ?)",
            (check.key, now, check.amount, now + check.window.seconds),
        )
        return Token(
            check.key, check.window, check.amount, float(cursor.lastrowid or 0), check.refundable
        )

    def _prune(self, now: float) -> None:
        self._next_prune = now + _PRUNE_EVERY
        self._db.execute("DELETE FROM events WHERE expires <= ?", (now,))
        self._db.execute("DELETE FROM counters WHERE expires <= ?", (now,))

    def release(self, tokens: Sequence[Token]) -> None:
        if not tokens:
            return
        with self._transaction() as db:
            for token in tokens:
                if token.window.calendar:
                    db.execute(
                        "UPDATE counters SET value = MAX(value - ?, 0) WHERE key = ? AND start = ?",
                        (token.amount, token.key, token.ident),
                    )
                else:
                    db.execute("DELETE FROM events WHERE id = ?", (int(token.ident),))

    def read(self, key: str, window: Window, now: float) -> float:
        try:
            return self._value(key, window, now)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite state file {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()
