"""The web dashboard: ``durable-jobs ui --store URL``.

Pages of instances (filtered, searched, paged), one instance (status,
counters, state at any version, diff, a live timeline of its records),
pending and overdue alarms, and per-job stats; server-rendered by Starlette
and Jinja2, served by Hypercorn on trio. Read-only unless started with
``allow_actions``. Needs the ``ui`` extra: ``pip install 'durable-jobs[ui]'``.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import datetime

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from durable_jobs._errors import ConfigurationError
from durable_jobs._store.base import Store
from durable_jobs.ui._actions import ActionRefused
from durable_jobs.ui._app import BasicAuth, create_app

__all__ = ["ActionRefused", "BasicAuth", "create_app", "serve"]


async def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8470,
    allow_actions: bool = False,
    credentials: str | None = None,
    now: Callable[[], datetime] | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard on ``host:port`` until ``shutdown_trigger`` returns (or
    SIGINT/SIGTERM without one). ``task_status.started`` gets the bound URLs
    (``port=0``: a free port)."""
    if port:
        _check_bindable(host, port)
    app = create_app(store, allow_actions=allow_actions, credentials=credentials, now=now)
    config = Config()
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
