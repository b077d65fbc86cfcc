"""State stores for counters and rate limits: in memory, SQLite (the default), Redis."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mcpwall.state.base import CounterStore, StoreUnavailable

__all__ = ["CounterStore", "StoreUnavailable", "check_dsn", "default_state_dir", "open_store"]

SQLITE_FILE = "state.sqlite"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_state_dir() -> Path:
    return Path.home() / ".mcpwall"


def check_dsn(dsn: str | None) -> None:
    """Refuse, with one sentence, a DSN mcpwall cannot use: before anything starts."""
    if dsn is None or dsn in ("memory:", "memory://"):
        return
    if dsn.startswith("sqlite://"):
        if not dsn.removeprefix("sqlite://"):
            raise ValueError("a sqlite DSN needs a path: sqlite:///path/to/state.sqlite")
        return
    if dsn.startswith(_REDIS_SCHEMES):
        # Only whether it is there: importing it costs startup time the proxy saves.
        if importlib.util.find_spec("redis") is None:
            raise ValueError(
                "a Redis state store needs the redis package: pip install 'mcpwall[redis]'"
            )
        return
    raise ValueError(
        f'unknown state DSN "{dsn}": use memory:, sqlite:///path, redis://host:port/db, '
        "rediss://... or unix:///path/to/redis.sock"
    )


def open_store(dsn: str | None, state_dir: str | Path | None) -> CounterStore:
    """Open the store a DSN names (see check_dsn); None means the SQLite file under
    ``state_dir``. Raises StoreUnavailable."""
    check_dsn(dsn)
    if dsn is None:
        from mcpwall.state.sqlite import SQLiteStore

        return SQLiteStore((Path(state_dir) if state_dir else default_state_dir()) / SQLITE_FILE)
    if dsn.startswith("sqlite://"):
        from mcpwall.state.sqlite import SQLiteStore

        return SQLiteStore(dsn.removeprefix("sqlite://"))
    if dsn.startswith(_REDIS_SCHEMES):
        from mcpwall.state.redis import RedisStore

        return RedisStore(dsn)
    from mcpwall.state.memory import MemoryStore

    return MemoryStore()
