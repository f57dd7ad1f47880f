"""The web dashboard: ``durable-jobs ui --store URL``.

Pages of instances (filtered, searched, paged), one instance (status,
counters, state at any version, diff, a live timeline of its records),
pending and overdue alarms, and per-job stats; server-rendered by Starlette
and Jinja2, served by Hypercorn on trio. Read-only unless started with
``allow_actions``. Needs the ``ui`` extra: ``pip install 'durable-jobs[ui]'``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from durable_jobs._errors import ConfigurationError
from durable_jobs._store.base import Store
from durable_jobs.ui._actions import ActionRefused
from durable_jobs.ui._app import BasicAuth, create_app
from durable_jobs.ui._dashboard import DEFAULT_MAX_LIVE
from durable_jobs.ui._middleware import SAFETY_HEADERS, _Headers

__all__ = ["ActionRefused", "BasicAuth", "create_app", "serve"]


class _Config(Config):
    """Hypercorn's settings, with :data:`SAFETY_HEADERS` on every response it sends: it
    answers some requests itself, before the app sees them (a NUL in the path, a query
    string beyond its limit)."""

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        return [*super().response_headers(protocol), *SAFETY_HEADERS]


async def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8470,
    allow_actions: bool = False,
    credentials: str | None = None,
    now: Callable[[], datetime] | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    allow_hosts: Iterable[str] = (),
    max_live: int = DEFAULT_MAX_LIVE,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard on ``host:port`` until ``shutdown_trigger`` returns (or
    SIGINT/SIGTERM without one). ``task_status.started`` gets the bound URLs
    (``port=0``: a free port).

    Requests must name the dashboard in their ``Host`` header (against DNS
    rebinding): ``host`` itself; on loopback also localhost, 127.0.0.1 and
    ::1; on 0.0.0.0 or :: any IP address, localhost and the machine's host
    name; plus ``allow_hosts``. ``max_live`` caps the live streams served at
    once (see :func:`create_app`).
    """
    if port:
        _check_bindable(host, port)
    names, any_address = _served_names(host)
    app = create_app(
        store,
        allow_actions=allow_actions,
        credentials=credentials,
        now=now,
        allowed_hosts=[*names, *allow_hosts],
        any_address=any_address,
        max_live=max_live,
    )
    # The server adds the safety headers to every response, the app's and its own
    # refusals (400 for a malformed request, 431 for too large a request head).
    assert isinstance(app, _Headers)
    app = _Headers(app.app, safety=False)
    config = _Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # no request lines (they would hold URLs of instances)
    config.graceful_timeout = 1.0
    await hypercorn_serve(
        app,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
        mode="asgi",
    )


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _served_names(host: str) -> tuple[list[str], bool]:
    """The host names a dashboard bound to ``host`` answers, and whether any IP address is.

    The bound address itself; on loopback also localhost, 127.0.0.1 and ::1; on
    a wildcard address (0.0.0.0, ::) any IP address, localhost and this
    machine's host name.
    """
    names = [host]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if host.lower() == "localhost" or (address is not None and address.is_loopback):
        names += LOOPBACK_NAMES
    if address is not None and address.is_unspecified:
        return [*names, *LOOPBACK_NAMES, socket.gethostname()], True
    return names, False


def _check_bindable(host: str, port: int) -> None:
    """A clear error for an address in use (Hypercorn would leak its socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            msg = f"Cannot listen on {host}:{port}: {exc.strerror or exc}."
            raise ConfigurationError(msg) from None
