"""An API-key check in front of the OpenAI-compatible app (Ray Serve LLM's ingress has none of its own).

A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: it must not buffer streamed completions.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

Scope = dict[str, Any]

_OPEN_PATHS = frozenset({"/-/healthz", "/-/routes"})


class ApiKeyMiddleware:
    """Reject HTTP requests whose ``Authorization: Bearer <key>`` (or ``x-api-key``) is not ``api_key``: 401.

    Args:
        app: the wrapped ASGI app.
        api_key: the expected key; empty or None lets everything through.
    """

    def __init__(self, app: Any, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key or None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self.api_key is None or scope["type"] != "http" or scope.get("path") in _OPEN_PATHS:
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
        assert self.api_key is not None
        given = headers.get(b"x-api-key", b"").decode("latin-1")
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())
