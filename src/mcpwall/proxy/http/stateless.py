"""Stateless 2026-07-28 requests carry no session: they are grouped by who sends them,
and their ids are renamed on the way in and back, so that two clients using the same
ids on one server cannot meet."""

from __future__ import annotations

import hashlib
import itertools
import logging
from typing import Any

from mcpwall import mcp
from mcpwall.auth import Identity

log = logging.getLogger("mcpwall")

ANONYMOUS = "stateless:anonymous"


def identity(
    headers: dict[str, str], session_header: str | None, user: Identity | None = None
) -> str | None:
    """Who a stateless request comes from, for scope: session counters; None when it
    names no one (no bearer token, no --session-header). Under --auth, the token's
    subject (a renewed token keeps it), and the session header apart within it: one
    user cannot name another's sessions."""
    if user is not None:
        value = user.subject + "\n" + headers.get((session_header or "").lower(), "")
    elif session_header and headers.get(session_header.lower()):
        value = headers[session_header.lower()]
    elif headers.get("authorization"):
        value = headers["authorization"]
    else:
        return None
    return "stateless:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def rename_requests(message: Any, ids: itertools.count[int]) -> tuple[bytes, dict[Any, Any]]:
    """Give each request an id of mcpwall's (in ``message`` itself, and in the bytes
    returned for the server); the map back to the client's ids."""
    renamed: dict[Any, Any] = {}
    for item in mcp.items(message):
        if type(item) is dict and "method" in item and type(item.get("id")) in (int, str):
            internal = f"mcpwall-{next(ids)}"
            renamed[internal] = item["id"]
            item["id"] = internal
    return mcp.dumps(message), renamed


def rename_answers(data: bytes, renamed: dict[Any, Any]) -> bytes:
    """An answer with the client's ids back in place of mcpwall's."""
    try:
        message = mcp.decode_server(data)
    except mcp.Malformed:
        return data
    changed = False
    for item in mcp.items(message):
        if type(item) is dict and "method" not in item and item.get("id") in renamed:
            item["id"] = renamed[item["id"]]
            changed = True
    return mcp.dumps(message) if changed else data
