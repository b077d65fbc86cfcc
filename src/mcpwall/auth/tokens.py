"""Checking one access token: its signature against the issuer's keys, then its claims.

PyJWT does the cryptography and the registered claims. What is decided here, before it
runs, is which key and which algorithm: only the asymmetric algorithms of ALGORITHMS
(never ``none``, never an HMAC, so a public key can never be used as a shared secret),
and a key from the issuer's key set whose type fits the algorithm the token names. The
key is bound to that one algorithm, so PyJWT cannot be steered to another.

A token must carry ``exp``, ``iss``, ``aud`` and ``sub``; ``exp``, ``nbf`` and ``iat``
are checked with the configured clock skew; the audience must include ours, the issuer
must be ours exactly; every required scope must be granted.
"""

from __future__ import annotations

from typing import Any

import jwt

from mcpwall.auth import Identity
from mcpwall.auth.keys import Jwk, KeySource
from mcpwall.auth.options import AuthOptions

ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_CURVES = {"ES256": ("P-256",), "ES384": ("P-384",), "ES512": ("P-521",)}
_EDWARDS = ("Ed25519", "Ed448")
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


class Rejected(Exception):
    """The token does not do: ``error`` is the OAuth error code (RFC 6750 §3.1)."""

    def __init__(self, description: str, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class TokenChecker:
    def __init__(self, options: AuthOptions, keys: KeySource) -> None:
        self.options = options
        self.keys = keys

    async def check(self, token: str) -> Identity:
        """The token's Identity. Raises Rejected, or KeysUnavailable when it cannot be
        told (no key set could be had)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Rejected("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Rejected(
                f"the token's algorithm {str(algorithm)[:20]!r} is not accepted "
                f"(accepted: {', '.join(ALGORITHMS)})"
            )
        kid = header.get("kid")
        if kid is not None and type(kid) is not str:
            raise Rejected("the token's key id (kid) is not a string")
        candidates = [key for key in await self.keys.find(kid) if _fits(key, algorithm)]
        if not candidates:
            named = f"key {kid[:64]!r}" if kid is not None else "no key id (kid)"
            raise Rejected(
                f"the token names {named}, and the issuer publishes no {algorithm} key by it"
            )
        if len(candidates) > 1:
            raise Rejected(
                f"the token does not tell which of the issuer's {algorithm} keys it uses"
            )
        claims = self._decode(token, candidates[0], algorithm)
        subject = claims.get("sub")
        if type(subject) is not str or not subject:
            raise Rejected("the token's subject (sub) is not a non-empty string")
        scopes = granted_scopes(claims)
        missing = [scope for scope in self.options.scopes if scope not in scopes]
        if missing:
            raise Rejected(
                f"the token lacks the scope(s) {' '.join(missing)}", "insufficient_scope"
            )
        return Identity(subject, claims, scopes)

    def _decode(self, token: str, key: Jwk, algorithm: str) -> dict[str, Any]:
        try:
            bound = jwt.PyJWK(key, algorithm=algorithm)
        except jwt.PyJWTError:
            raise Rejected(f"the issuer's key {key.get('kid')!r} is unusable") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                bound,
                algorithms=[algorithm],
                audience=self.options.audience,
                issuer=self.options.issuer,
                leeway=self.options.skew,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Rejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Rejected("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            audience = self.options.audience
            raise Rejected(f"the token is not for this resource (audience {audience})") from None
        except jwt.InvalidIssuerError:
            raise Rejected(f"the token was not issued by {self.options.issuer}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Rejected(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise Rejected("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Rejected(f"the token is not valid: {exc}") from None
        return claims


def granted_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """The scopes of ``scope`` (RFC 9068: space-separated) or ``scp`` (a list, or a
    string, as some issuers write it)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if type(value) is str:
            return frozenset(value.split())
        if type(value) is list:
            return frozenset(item for item in value if type(item) is str)
    return frozenset()


def _fits(key: Jwk, algorithm: str) -> bool:
    """Whether the key may verify this algorithm: its type (and curve) match, and the
    key names no other algorithm."""
    if key.get("alg", algorithm) != algorithm:
        return False
    kind = key.get("kty")
    if algorithm[:2] in ("RS", "PS"):
        return kind == "RSA"
    if algorithm in _CURVES:
        return kind == "EC" and key.get("crv") in _CURVES[algorithm]
    return kind == "OKP" and key.get("crv") in _EDWARDS
