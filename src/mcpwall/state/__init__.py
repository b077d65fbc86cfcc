"""State stores for counters and rate limits: in memory, SQLite (the default)."""

from __future__ import annotations

from pathlib import Path

from mcpwall.state.base import CounterStore, StoreUnavailable

__all__ = ["CounterStore", "StoreUnavailable", "default_state_dir", "open_store"]

SQLITE_FILE = "state.sqlite"


def default_state_dir() -> Path:
    return Path.home() / ".mcpwall"


def open_store(dsn: str | None, state_dir: str | Path | None) -> CounterStore:
    """Open the store a DSN names: ``memory:``, ``sqlite:///path``; None means the SQLite
    file under ``state_dir``. Raises StoreUnavailable or ValueError (bad DSN)."""
    if dsn is None:
        directory = Path(state_dir) if state_dir else default_state_dir()
        from mcpwall.state.sqlite import SQLiteStore

        return SQLiteStore(directory / SQLITE_FILE)
    if dsn in ("memory:", "memory://"):
        from mcpwall.state.memory import MemoryStore

        return MemoryStore()
    if dsn.startswith("sqlite://"):
        from mcpwall.state.sqlite import SQLiteStore

        path = dsn.removeprefix("sqlite://")
        if not path:
            raise ValueError("a sqlite DSN needs a path: sqlite:///path/to/state.sqlite")
        return SQLiteStore(path)
    raise ValueError(f'unknown state DSN "{dsn}": use memory: or sqlite:///path')
