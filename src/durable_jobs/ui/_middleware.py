"""ASGI middleware in front of the dashboard: basic auth and safety headers."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from durable_jobs._errors import ValidationError

__all__ = ["BasicAuth"]


class BasicAuth:
    """HTTP basic auth in front of ``app``: every request needs ``user:password``."""

    def __init__(self, app: ASGIApp, credentials: str) -> None:
        user, sep, password = credentials.partition(":")
        if not sep or not user or not password:
            msg = "Basic auth credentials must be 'user:password' (both non-empty)."
            raise ValidationError(msg)
        self.app = app
        self._user = user.encode()
        self._password = password.encode()

    def _allowed(self, header: str | None) -> bool:
        if header is None or not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = decoded.partition(b":")
        ok_user = hmac.compare_digest(user, self._user)
        ok_password = hmac.compare_digest(password, self._password)
        return ok_user and ok_password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
        if self._allowed(header):
            await self.app(scope, receive, send)
            return
        response = Response(
            "Authentication required.\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="durable-jobs", charset="UTF-8"'},
        )
        await response(scope, receive, send)


class _Headers:
    """Safety headers on every response (no framing, no sniffing, no referrer to other sites)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (
                        b"content-security-policy",
                        b"default-src 'self'; script-src 'self'; style-src 'self'; "
                        b"frame-ancestors 'none'",
                    ),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
