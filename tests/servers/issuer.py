"""A small OAuth authorization server for the tests: it serves its metadata (RFC 8414)
and its key set (JWKS) over real HTTP on a loopback port, and signs access tokens with
keys made here with ``cryptography``. The tests rotate its keys, take it down and bring
it back, and count how often mcpwall fetched the key set.

It runs in the test's own process, in a thread: mcpwall, in its own process, reaches it
only over the socket, as it would reach a real issuer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

JWKS_PATH = "/jwks"
_kids = itertools.count(1)


class SigningKey:
    """An RSA key pair with a key id, as an issuer keeps one."""

    def __init__(self) -> None:
        self.kid = f"key-{next(_kids)}"
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Issuer:
    def __init__(self) -> None:
        self.keys = [SigningKey()]
        self.jwks_fetches = 0
        self.metadata_fetches = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- serving --------------------------------------------------------------------------

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/oauth-authorization-server":
                    issuer.metadata_fetches += 1
                    body: dict[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.url + JWKS_PATH,
                        "token_endpoint": issuer.url + "/token",
                        "response_types_supported": ["code"],
                    }
                elif self.path == JWKS_PATH:
                    issuer.jwks_fetches += 1
                    body = {"keys": [key.public_jwk() for key in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Take the issuer down: its port refuses connections until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def rotate(self) -> SigningKey:
        """Replace every key with a new one, as an issuer rotating its keys does."""
        self.keys = [SigningKey()]
        return self.keys[0]

    # -- tokens ---------------------------------------------------------------------------

    def token(
        self,
        subject: str = "alice",
        *,
        audience: str,
        key: SigningKey | None = None,
        lifetime: float = 300,
        not_before: float | None = None,
        **claims: Any,
    ) -> str:
        """An access token, signed RS256 with the current key (or ``key``)."""
        now = time.time()
        payload: dict[str, Any] = {
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "iat": int(now),
            "exp": int(now + lifetime),
            "scope": "mcp:tools",
            **claims,
        }
        if not_before is not None:
            payload["nbf"] = int(not_before)
        payload = {name: value for name, value in payload.items() if value is not None}
        signer = key or self.keys[0]
        return jwt.encode(payload, signer.private, algorithm="RS256", headers={"kid": signer.kid})

    def unsigned(self, audience: str, subject: str = "alice") -> str:
        """A token with ``alg: none``: no signature at all."""
        return _compact({"alg": "none", "typ": "JWT"}, self._claims(subject, audience), b"")

    def hmac_with_public_key(self, audience: str, subject: str = "alice") -> str:
        """HS256, keyed with the issuer's public key (which anyone can fetch): the
        algorithm-confusion attack."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.keys[0].kid}
        signing_input = _signing_input(header, self._claims(subject, audience))
        digest = hmac.new(self.keys[0].public_pem(), signing_input, hashlib.sha256).digest()
        return signing_input.decode() + "." + _b64(digest)

    def _claims(self, subject: str, audience: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "scope": "mcp:tools",
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
    return (_b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())).encode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return _signing_input(header, claims).decode() + "." + _b64(signature)
