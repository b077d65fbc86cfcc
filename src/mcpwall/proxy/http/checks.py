"""What the listener refuses before anything is relayed: foreign ``Host`` (421) and
``Origin`` (403) headers against DNS rebinding, a missing bearer token (401), a body
that is not JSON (415) or strictly readable (400), and 2026-07-28 headers that say
something else than the body they mirror (400)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcpwall import mcp
from mcpwall.proxy.http.asgi import Reply

if TYPE_CHECKING:
    from mcpwall.auth.resource import Authenticator

log = logging.getLogger("mcpwall")

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


@dataclass
class ListenerOptions:
    bind: str = "127.0.0.1"
    port: int = 0
    auth_tokens: frozenset[str] = frozenset()
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    session_header: str | None = None
    forward_headers: tuple[str, ...] = ()
    max_message: int = 256 * 1024 * 1024
    authenticator: Authenticator | None = None  # --auth: OAuth access tokens


def host_and_origin(headers: dict[str, str], options: ListenerOptions) -> None:
    host = headers.get("host", "")
    allowed = options.allowed_hosts
    if allowed or _is_loopback(options.bind):
        names = allowed or _LOOPBACK_NAMES
        if _host_name(host) not in names:
            raise Reply(421, f"Misdirected request: host {host!r} is not served here")
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        if origin in options.allowed_origins:
            return
        if _host_name(urlsplit(origin).netloc) not in (allowed or _LOOPBACK_NAMES):
            raise Reply(403, f"Forbidden: origin {origin!r} is not allowed")


def bearer_token(headers: dict[str, str], tokens: frozenset[str]) -> None:
    if not tokens:
        return
    given = headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() == "bearer" and any(
        hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens
    ):
        return
    raise Reply(
        401,
        "Unauthorized: a bearer token is required",
        headers={"www-authenticate": 'Bearer realm="mcpwall"'},
    )


def post_headers(headers: dict[str, str]) -> None:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Reply(415, "Unsupported media type: the body must be application/json")
    accept = headers.get("accept", "*/*")
    if not any(kind in accept for kind in ("application/json", "text/event-stream", "*/*")):
        raise Reply(406, "Not acceptable: accept application/json and text/event-stream")


def strict_message(body: bytes) -> Any:
    """The body, read once and as strictly as the relay reads it: the listener routes
    by this reading (ids, version, headers) and hands it to the relay, so that a body
    the relay would refuse is never routed, or rewritten, by a laxer reading."""
    try:
        return mcp.decode_strict(body)
    except mcp.Malformed as exc:
        log.warning("refused a malformed message from the client: %s", exc)
        raise Reply(400, f"Parse error: {exc}", mcp.PARSE_ERROR) from None


def mirrored_headers(headers: dict[str, str], message: dict[str, Any], version: str) -> None:
    """2026-07-28 mirrors parts of the body in headers; both must say the same, or the
    request is refused (mcpwall judges the body, never the header)."""
    request_id = message.get("id")
    for name, value in mcp.mirrored_headers(message, version).items():
        given = headers.get(name)
        if given is None:
            raise Reply(
                400,
                f"Header mismatch: the {name} header is missing",
                mcp.HEADER_MISMATCH,
                request_id,
            )
        if mcp.header_text(given) != value:
            raise Reply(
                400,
                f"Header mismatch: {name} says {given!r}, the body {value!r}",
                mcp.HEADER_MISMATCH,
                request_id,
            )


def _host_name(host: str) -> str:
    """The name in a Host header or an origin's netloc, without its port."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False
