"""mcpwall as a Streamable HTTP server, for many agents at once.

Each client session (``Mcp-Session-Id``, issued here at ``initialize``) is an agent
session of its own: its own relay Session, so its own ``scope: session`` counters, and
its own server: a child process of its own when the server is a command, a session of
its own with the upstream when the server is remote. Answers never cross between client
sessions. Stateless 2026-07-28 requests, which carry no session, are grouped by the
client's identity (its bearer token, or the header named by --session-header); their ids
are renamed on the way in and back, so that two clients using the same ids cannot meet.

The parts, one job each: ``listener`` (the ASGI app: routing, POST, GET, DELETE,
serving), ``sessions`` (a client session, its server and the POSTs waiting on it),
``stateless`` (who a stateless request is from, and its renamed ids), ``checks`` (what
is refused before anything is relayed) and ``asgi`` (writing HTTP answers).
"""

from mcpwall.proxy.http.checks import ListenerOptions
from mcpwall.proxy.http.listener import HttpListener

__all__ = ["HttpListener", "ListenerOptions"]
