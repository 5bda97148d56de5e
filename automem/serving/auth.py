"""An API-key check in front of the OpenAI-compatible app (Ray Serve LLM's ingress has none of its own).

A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: it must not buffer streamed completions.

The middleware holds a salted SHA-256 digest of the key, never the key: the app it wraps is pickled into the Serve
deployment definition (kept by the Serve controller in Ray's GCS), so whatever it holds ends up in the cluster.
Passing the key through the replicas' ``runtime_env`` instead would be worse: Serve stores and reports
``ray_actor_options`` in plain text (``serve.status``/details). Use a random key (``secrets.token_urlsafe(32)``).

This guards HTTP only. Ray's own ports need Ray token auth (see :mod:`automem.serving.config`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]

_OPEN_PATHS = frozenset({"/-/healthz", "/-/routes"})


@dataclass(frozen=True)
class HashedKey:
    """A salted SHA-256 digest of an API key: enough to check a key, not to recover it."""

    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, key: str) -> HashedKey:
        """Hash ``key`` with a fresh random salt."""
        salt = secrets.token_bytes(16)
        return cls(salt, cls._hash(salt, key))

    @staticmethod
    def _hash(salt: bytes, key: str) -> bytes:
        return hashlib.sha256(salt + key.encode()).digest()

    def matches(self, given: str) -> bool:
        """Whether ``given`` is the key; constant time in the digest comparison."""
        return hmac.compare_digest(self._hash(self.salt, given), self.digest)


class ApiKeyMiddleware:
    """Reject HTTP requests whose ``Authorization: Bearer <key>`` (or ``x-api-key``) is not the key: 401.

    Args:
        app: the wrapped ASGI app.
        api_key: the expected key, hashed at once and not kept; empty or None (with no ``key``) lets everything
            through.
        key: the expected key as a :class:`HashedKey` (what the Serve app is built with).
    """

    def __init__(self, app: Any, api_key: str | None = None, *, key: HashedKey | None = None) -> None:
        self.app = app
        self.key = key if key is not None else (HashedKey.of(api_key) if api_key else None)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self.key is None or scope["type"] != "http" or scope.get("path") in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.authorized(dict(scope.get("headers") or [])):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": {
                    "message": "missing or wrong API key: send 'Authorization: Bearer <AUTOMEM_API_KEY>'",
                    "type": "AuthenticationError",
                    "code": 401,
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        """Whether ASGI ``headers`` (lower-case byte names) carry the key; compared in constant time."""
        assert self.key is not None
        given = headers.get(b"x-api-key", b"").decode("latin-1")
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
        return bool(given) and self.key.matches(given)
