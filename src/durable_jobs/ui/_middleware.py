"""ASGI middleware in front of the dashboard: the Host check, basic auth and safety headers."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from durable_jobs._errors import ValidationError

__all__ = ["BasicAuth", "HostCheck", "host_name"]


#: A ``Host`` header: a name or an IPv4 address, or an IPv6 address in brackets, and
#: an optional port; nothing else (no ``user@``, path, space or second colon).
_HOST: Final = re.compile(r"(?:([a-z0-9_.-]+)|\[([0-9a-f:.]+)\])(?::[0-9]{1,5})?", re.ASCII)


def host_name(value: str) -> str | None:
    """The host name of a ``Host`` header (no port, no brackets, lower case, no final
    dot), or ``None`` if it is not ``host[:port]``: ``127.0.0.1:8080@evil.example``
    names no host of ours, however a part of it reads."""
    found = _HOST.fullmatch(value.strip().lower())
    if found is None:
        return None
    name, address = found.groups()
    if address is not None and not _is_ip(address):
        return None
    return (name or address).rstrip(".")


def _configured_name(value: str) -> str:
    """A name the dashboard is served as (``--allow-host``: a name, an address, maybe
    with a port or brackets) as :func:`host_name` gives it."""
    value = value.strip().lower()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Gate:
    """Pass an HTTP request on to ``app`` if its ``header`` is :meth:`allowed`, else
    answer with :meth:`refusal` (other scopes pass unchecked)."""

    app: ASGIApp
    header: bytes

    def allowed(self, header: str | None) -> bool:
        raise NotImplementedError

    def refusal(self) -> Response:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == self.header:
                header = value.decode("latin-1")
        if self.allowed(header):
            await self.app(scope, receive, send)
            return
        await self.refusal()(scope, receive, send)


class HostCheck(_Gate):
    """Answer only requests whose ``Host`` names the dashboard (against DNS rebinding).

    ``hosts`` are the names it is served as; with ``any_address`` (bound to a
    wildcard address) any IP address is accepted too: a rebinding page needs a
    domain name of its own, never an address.
    """

    header = b"host"

    def __init__(self, app: ASGIApp, hosts: Iterable[str], *, any_address: bool = False) -> None:
        self.app = app
        self.hosts = frozenset(_configured_name(host) for host in hosts)
        self.any_address = any_address

    def allowed(self, header: str | None) -> bool:
        if header is None:
            return False
        name = host_name(header)
        if name is None:
            return False
        return name in self.hosts or (self.any_address and _is_ip(name))

    def refusal(self) -> Response:
        return Response(
            "Unknown Host header: this dashboard answers only the names it is served as "
            "(durable-jobs ui --allow-host NAME adds one).\n",
            status_code=400,
            media_type="text/plain",
        )


class BasicAuth(_Gate):
    """HTTP basic auth in front of ``app``: every request needs ``user:password``."""

    header = b"authorization"

    def __init__(self, app: ASGIApp, credentials: str) -> None:
        user, sep, password = credentials.partition(":")
        if not sep or not user or not password:
            msg = "Basic auth credentials must be 'user:password' (both non-empty)."
            raise ValidationError(msg)
        self.app = app
        self._user = user.encode()
        self._password = password.encode()

    def allowed(self, header: str | None) -> bool:
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

    def refusal(self) -> Response:
        return Response(
            "Authentication required.\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="durable-jobs", charset="UTF-8"'},
        )


#: On every response, refusals and errors included: no framing, no sniffing, no
#: referrer to other sites, only the dashboard's own script and stylesheet.
SAFETY_HEADERS: Final = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    ),
)


class _Headers:
    """:data:`SAFETY_HEADERS` on every response, refusals and errors included (unless
    ``safety`` is off: :func:`durable_jobs.ui.serve` has the server add them, to its own
    refusals too), and ``Cache-Control: no-store`` on those that set no
    ``Cache-Control`` of their own: pages show states and event payloads, which no
    browser or proxy cache should keep (the static assets say ``no-cache``)."""

    def __init__(self, app: ASGIApp, *, safety: bool = True) -> None:
        self.app = app
        self.safety = safety

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if self.safety:
                    headers.extend(SAFETY_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Revalidated:
    """``Cache-Control: no-cache`` on the static assets: a browser keeps them, and asks
    (by ETag) whether they changed before each use, as they do when the package is
    upgraded. They hold no stored data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", b"no-cache"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_header)
