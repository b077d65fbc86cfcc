"""Who is calling: OAuth 2.1 access tokens checked by the HTTP listener (``--auth``).

mcpwall acts as an OAuth resource server, as the MCP authorization spec wants one: it
checks each request's JWT access token against the issuer's published keys and its
claims (``exp``/``nbf``, ``aud``, ``iss``, the required scopes), serves the Protected
Resource Metadata document (RFC 9728) that tells clients where to get a token, and
answers 401/403 with the ``WWW-Authenticate`` challenges that point there. What a
token proves becomes an Identity, which the policy reads (``scope: user`` counters,
``claims.*`` conditions) and the audit log records. The token itself goes no further.

This module holds only the Identity, so that the engine can import it without the JOSE
library: the rest lives in ``options``, ``keys``, ``tokens`` and ``resource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """What a valid token says about its holder."""

    subject: str  # the token's ``sub``
    claims: dict[str, Any]  # every claim of the token, as signed
    scopes: frozenset[str]  # from ``scope`` (space-separated) or ``scp``
