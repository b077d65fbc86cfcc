"""The ``--auth`` option: which issuer's tokens, for which audience, with which scopes.

``--auth issuer=URL,audience=AUD[,scopes=a b][,jwks=URL][,skew=SECONDS][,resource=URL]``

The issuer and the key set must be served over https (plain http only on a loopback
address, as in tests and on one host): keys fetched in the clear could be swapped.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_SKEW = 60.0
MAX_SKEW = 300.0  # a token expired longer ago than this is expired, whatever the clocks
_KEYS = ("issuer", "audience", "scopes", "jwks", "skew", "resource")


@dataclass(frozen=True, slots=True)
class AuthOptions:
    issuer: str
    audience: str
    scopes: tuple[str, ...] = ()  # every one of them must be granted to the token
    jwks: str | None = None  # the key set's URL; found through the issuer's metadata if None
    skew: float = DEFAULT_SKEW  # seconds of clock difference allowed on exp, nbf and iat
    # The canonical URL of the MCP endpoint, named in the metadata document. By default
    # the audience when it is a URL (the MCP spec's case), else the URL the client used.
    resource: str | None = None


def parse_auth(spec: str) -> AuthOptions:
    """The options in an ``--auth`` value; ValueError with one sentence if they are wrong."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or not name:
            raise ValueError(f"--auth takes key=value pairs separated by commas, got {part!r}")
        if name not in _KEYS:
            raise ValueError(f"--auth has no key {name!r} (keys: {', '.join(_KEYS)})")
        if name in fields:
            raise ValueError(f"--auth names {name} twice")
        fields[name] = value.strip()
    for required in ("issuer", "audience"):
        if not fields.get(required):
            raise ValueError(
                f"--auth needs {required}=..., e.g. --auth issuer=https://login.example.com,"
                "audience=https://mcp.example.com/mcp"
            )
    issuer = fields["issuer"]
    _check_url(issuer, "issuer")
    jwks = fields.get("jwks") or None
    if jwks is not None:
        _check_url(jwks, "jwks")
    resource = fields.get("resource") or None
    if resource is not None and urlsplit(resource).scheme not in ("http", "https"):
        raise ValueError(f"--auth resource= must be an http(s) URL, got {resource!r}")
    skew = DEFAULT_SKEW
    if "skew" in fields:
        try:
            skew = float(fields["skew"])
        except ValueError:
            skew = math.nan
        if not 0 <= skew <= MAX_SKEW:
            raise ValueError(
                f"--auth skew= must be a number of seconds from 0 to {MAX_SKEW:g}, "
                f"got {fields['skew']!r}"
            )
    return AuthOptions(
        issuer=issuer,
        audience=fields["audience"],
        scopes=tuple(fields.get("scopes", "").split()),
        jwks=jwks,
        skew=skew,
        resource=resource,
    )


def _check_url(url: str, key: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError(
        f"--auth {key}= must be an https URL (plain http only on a loopback address), got {url!r}"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
