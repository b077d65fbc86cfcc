"""mcpwall as an OAuth protected resource: what the HTTP listener asks of each request.

``Authenticator.authenticate`` answers a request to the metadata document itself
(RFC 9728, at ``/.well-known/oauth-protected-resource`` and at its form suffixed with
the MCP endpoint's path), and for any other request either returns the Identity of its
token or the refusal to send instead:

- no token: 401 with ``WWW-Authenticate: Bearer resource_metadata="..."``, which is how
  an MCP client learns where to get one;
- a bad token: 401 with ``error="invalid_token"`` and the reason in
  ``error_description``;
- a token without the required scopes: 403 ``insufficient_scope`` with ``scope=``;
- a token that cannot be checked now (the issuer's keys cannot be had): 503, never a
  pass.

The token is read here and nowhere else: it is not logged, and the listener forwards no
client header upstream unless told to (and refuses to be told so for Authorization).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from mcpwall.auth import Identity
from mcpwall.auth.keys import RETRY_SECONDS, KeySource, KeysUnavailable
from mcpwall.auth.options import AuthOptions
from mcpwall.auth.tokens import Rejected, TokenChecker

log = logging.getLogger("mcpwall")

WELL_KNOWN = "/.well-known/oauth-protected-resource"
ENDPOINT = "/mcp"
_UNQUOTABLE = re.compile(r'[^\x20-\x7e]|["\\]')  # not allowed in an RFC 6750 quoted value


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer the listener sends as it is, instead of handling the request."""

    status: int
    body: bytes
    headers: dict[str, str]


class Authenticator:
    def __init__(self, options: AuthOptions) -> None:
        self.options = options
        self._checker = TokenChecker(options, KeySource(options.issuer, options.jwks))
        fixed = options.resource
        if fixed is None and urlsplit(options.audience).scheme in ("http", "https"):
            fixed = options.audience  # the MCP spec binds tokens to the endpoint's URL
        self._resource = fixed
        paths = {WELL_KNOWN, WELL_KNOWN + ENDPOINT}
        if fixed is not None and urlsplit(fixed).path.strip("/"):
            paths.add(WELL_KNOWN + urlsplit(fixed).path.rstrip("/"))
        self.paths = frozenset(paths)  # where the metadata document is served

    async def authenticate(
        self, scope: dict[str, Any], headers: dict[str, str]
    ) -> Identity | Answer:
        if scope["path"] in self.paths:
            return self._document(scope, headers)
        given = headers.get("authorization")
        if given is None:
            return self._challenge(scope, headers, None)
        kind, _, token = given.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            refusal = Rejected("the Authorization header must be: Bearer <access token>")
            return self._challenge(scope, headers, refusal)
        try:
            return await self._checker.check(token)
        except Rejected as refusal:
            log.info("refused a request: %s", refusal.description)
            return self._challenge(scope, headers, refusal)
        except KeysUnavailable as exc:
            log.error("refused a request whose token cannot be checked now: %s", exc)
            body = {
                "error": "temporarily_unavailable",
                "error_description": f"the token cannot be checked now: {exc}",
            }
            return Answer(503, orjson.dumps(body), {"retry-after": str(int(RETRY_SECONDS))})

    # -- the metadata document --------------------------------------------------------

    def _document(self, scope: dict[str, Any], headers: dict[str, str]) -> Answer:
        if scope["method"] not in ("GET", "HEAD"):
            return Answer(405, b"", {"allow": "GET"})
        suffix = scope["path"][len(WELL_KNOWN) :] or "/"
        document: dict[str, Any] = {
            "resource": self._resource or _origin(scope, headers) + suffix,
            "authorization_servers": [self.options.issuer],
            "bearer_methods_supported": ["header"],
        }
        if self.options.scopes:
            document["scopes_supported"] = list(self.options.scopes)
        return Answer(200, orjson.dumps(document), {"cache-control": "max-age=300"})

    def metadata_url(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        """Where a client finds the metadata of the endpoint it asked for."""
        if self._resource is not None:
            parts = urlsplit(self._resource)
            return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path.rstrip('/')}"
        path = scope["path"].rstrip("/")
        return f"{_origin(scope, headers)}{WELL_KNOWN}{path}"

    # -- refusals -----------------------------------------------------------------------

    def _challenge(
        self, scope: dict[str, Any], headers: dict[str, str], refusal: Rejected | None
    ) -> Answer:
        params = []
        if refusal is None:
            body = {
                "error": "unauthorized",
                "error_description": f"an access token from {self.options.issuer} is required",
            }
        else:
            description = _UNQUOTABLE.sub("?", refusal.description)
            params += [f'error="{refusal.error}"', f'error_description="{description}"']
            body = {"error": refusal.error, "error_description": refusal.description}
        if self.options.scopes:
            params.append(f'scope="{" ".join(self.options.scopes)}"')
        params.append(f'resource_metadata="{self.metadata_url(scope, headers)}"')
        status = 403 if refusal is not None and refusal.error == "insufficient_scope" else 401
        return Answer(
            status, orjson.dumps(body), {"www-authenticate": "Bearer " + ", ".join(params)}
        )


def _origin(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The origin the client used: the listener has checked its Host header."""
    return f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"
