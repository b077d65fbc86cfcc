"""The issuer's signing keys: found through its metadata, fetched, cached, refetched.

Where the keys are: ``jwks=`` if given, else the ``jwks_uri`` of the issuer's metadata,
looked for where RFC 8414 and OpenID Connect Discovery put it (the same order the MCP
spec has clients try). The metadata must name the configured issuer exactly (RFC 8414
§3.3), or a document served from elsewhere could hand out its own keys.

The key set is kept for REFRESH_SECONDS, then fetched again on the next request that
needs it; while a fetch fails, the keys already held stay in use. A token naming a key
the set does not hold makes one fetch at once (the issuer rotated its keys), at most
once per REFETCH_SECONDS, so that tokens with made-up key ids cannot make mcpwall
hammer the issuer. Concurrent requests share one fetch.

Keys are only ever taken from the key set: never from a token's own ``jwk``, ``jku`` or
``x5u`` headers, and never symmetric (``oct``) keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

log = logging.getLogger("mcpwall")

REFRESH_SECONDS = 300.0
REFETCH_SECONDS = 30.0
RETRY_SECONDS = 5.0  # after a failed fetch with no keys held, requests fail fast this long
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT = 1024 * 1024
_SIGNING_TYPES = ("RSA", "EC", "OKP")

Jwk = dict[str, Any]


class KeysUnavailable(Exception):
    """The keys could not be had: the issuer or its key set is unreachable or wrong."""


class KeySource:
    def __init__(self, issuer: str, jwks: str | None = None) -> None:
        self.issuer = issuer
        self._jwks_url = jwks
        self._keys: list[Jwk] | None = None
        self._fresh_until = 0.0
        self._refetch_at = 0.0
        self._failed_until = 0.0
        self._failure = ""
        self._lock = asyncio.Lock()
        self._generation = 0  # how many fetches succeeded: a waiter can tell one happened

    async def find(self, kid: str | None) -> list[Jwk]:
        """The keys a token with this ``kid`` may be signed with (any, if it has none).
        Raises KeysUnavailable when no key set could be had."""
        before = self._generation
        if self._keys is None or time.monotonic() >= self._fresh_until:
            await self._refresh(before, stale_ok=True)
        found = self._match(kid)
        fetched = self._generation != before  # by this request or one it waited for
        if not found and kid is not None and not fetched and time.monotonic() >= self._refetch_at:
            self._refetch_at = time.monotonic() + REFETCH_SECONDS
            log.info("a token names key %r, which the issuer's key set lacks: fetching it", kid)
            await self._refresh(self._generation, stale_ok=False)
            found = self._match(kid)
        return found

    def _match(self, kid: str | None) -> list[Jwk]:
        keys = self._keys or []
        if kid is None:
            return list(keys)
        return [key for key in keys if key.get("kid") == kid]

    async def _refresh(self, seen: int, stale_ok: bool) -> None:
        async with self._lock:
            if self._generation != seen:
                return  # fetched while this request waited
            if time.monotonic() < self._failed_until and (self._keys is None or stale_ok):
                if self._keys is None:
                    raise KeysUnavailable(self._failure)
                return
            try:
                self._keys = await self._fetch()
            except KeysUnavailable as exc:
                self._failure = str(exc)
                self._failed_until = time.monotonic() + RETRY_SECONDS
                if self._keys is None or not stale_ok:
                    log.error("%s", exc)
                    raise
                log.warning("%s; the keys fetched before stay in use", exc)
                return
            self._generation += 1
            self._fresh_until = time.monotonic() + REFRESH_SECONDS
            self._failed_until = 0.0

    async def _fetch(self) -> list[Jwk]:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if self._jwks_url is None:
                self._jwks_url = await self._discover(http)
            document = await _get_json(http, self._jwks_url, "the issuer's key set")
        raw = document.get("keys") if type(document) is dict else None
        if type(raw) is not list:
            raise KeysUnavailable(f"the key set at {self._jwks_url} has no list of keys")
        keys = [
            key
            for key in raw
            if type(key) is dict
            and key.get("kty") in _SIGNING_TYPES
            and key.get("use", "sig") == "sig"
        ]
        if not keys:
            raise KeysUnavailable(f"the key set at {self._jwks_url} holds no signing key")
        log.info("fetched %d signing key(s) from %s", len(keys), self._jwks_url)
        return keys

    async def _discover(self, http: aiohttp.ClientSession) -> str:
        problems = []
        for url in metadata_urls(self.issuer):
            try:
                document = await _get_json(http, url, "the issuer's metadata")
            except KeysUnavailable as exc:
                problems.append(str(exc))
                continue
            if type(document) is not dict or document.get("issuer") != self.issuer:
                named = document.get("issuer") if type(document) is dict else None
                raise KeysUnavailable(
                    f"the metadata at {url} is for issuer {named!r}, not {self.issuer!r}"
                )
            jwks = document.get("jwks_uri")
            if type(jwks) is not str or urlsplit(jwks).scheme not in ("https", "http"):
                raise KeysUnavailable(f"the metadata at {url} names no jwks_uri")
            return jwks
        raise KeysUnavailable(
            f"no metadata for issuer {self.issuer} could be had: " + "; ".join(problems)
        )


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be: RFC 8414's path insertion, then OpenID
    Connect's, then OpenID Connect's path appending."""
    scheme, host, path, _, _ = urlsplit(issuer)
    path = path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((scheme, host, new_path, "", ""))

    urls = [at(f"/.well-known/oauth-authorization-server{path}")]
    if path:
        urls.append(at(f"/.well-known/openid-configuration{path}"))
    urls.append(at(f"{path}/.well-known/openid-configuration"))
    return urls


async def _get_json(http: aiohttp.ClientSession, url: str, what: str) -> Any:
    try:
        async with http.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise KeysUnavailable(f"{what} at {url} answered HTTP {response.status}")
            body = await response.content.read(MAX_DOCUMENT + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KeysUnavailable(f"{what} at {url} could not be fetched: {_cause(exc)}") from None
    if len(body) > MAX_DOCUMENT:
        raise KeysUnavailable(f"{what} at {url} is larger than {MAX_DOCUMENT} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise KeysUnavailable(f"{what} at {url} is not JSON") from None


def _cause(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
