"""``durable-jobs ui``: the web dashboard (imported on use: it needs the ``ui`` extra)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from durable_jobs._errors import ConfigurationError, DurableJobsError
from durable_jobs.cli._app import CliState, app, opened_store, store_option

__all__ = ["ui"]

UI_EPILOG = """\b
Examples:
  durable-jobs ui --store sqlite:///demo-data/jobs.db
  DASH_AUTH=admin:secret durable-jobs ui --store postgresql://app@db/jobs \\
      --host 0.0.0.0 --auth-env DASH_AUTH --allow-actions

Needs the ui extra: pip install 'durable-jobs[ui]'.
"""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command(epilog=UI_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8470,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Offer run now, resume, terminate and purge (each confirmed; they write).",
)
@click.option(
    "--auth-env",
    metavar="VAR",
    help="Require HTTP basic auth with the 'user:password' held by environment variable VAR.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    metavar="NAME",
    multiple=True,
    envvar="DURABLE_JOBS_UI_ALLOW_HOSTS",
    help="Also answer requests for host NAME (repeatable; $DURABLE_JOBS_UI_ALLOW_HOSTS: "
    "names separated by spaces). Others are refused (DNS rebinding).",
)
@click.option(
    "--max-live",
    type=click.IntRange(0),
    default=16,
    show_default=True,
    help="Serve at most N live streams (open live pages) at once; more pages work "
    "without live updates. 0: no live updates.",
    metavar="N",
)
@store_option
@click.pass_obj
def ui(
    state: CliState,
    *,
    host: str,
    port: int,
    allow_actions: bool,
    auth_env: str | None,
    allow_hosts: tuple[str, ...],
    max_live: int,
) -> None:
    """Serve the web dashboard: instances, timelines, alarms and stats, updated live.

    Read-only unless --allow-actions. Listens on 127.0.0.1 unless --host says
    otherwise; stop it with Ctrl-C.
    """
    try:
        import trio

        from durable_jobs.ui import serve
    except ImportError as exc:
        msg = (
            f"The dashboard needs the ui extra ({exc.name} is missing): "
            "pip install 'durable-jobs[ui]'."
        )
        raise ConfigurationError(msg) from None
    credentials = None
    if auth_env is not None:
        credentials = os.environ.get(auth_env)
        user, _, password = (credentials or "").partition(":")
        if not user or not password:
            # Never echo the value: it may be a password with a typo.
            msg = f"--auth-env {auth_env}: set ${auth_env} to 'user:password' (both non-empty)."
            raise ConfigurationError(msg)
    elif host not in LOCAL_HOSTS and allow_actions:
        msg = (
            f"--allow-actions on {host} needs --auth-env: anyone who can reach the "
            "dashboard could terminate, trigger and purge instances (a purge cannot be "
            "undone). Set a user and password with --auth-env, or serve on 127.0.0.1."
        )
        raise ConfigurationError(msg)
    elif host not in LOCAL_HOSTS:
        click.echo(
            f"warning: serving on {host} without --auth-env: anyone who can reach it can "
            "read the store.",
            err=True,
        )
    with opened_store(state, must_exist=True) as store:

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(
                    lambda task_status: serve(
                        store,
                        host=host,
                        port=port,
                        allow_actions=allow_actions,
                        credentials=credentials,
                        allow_hosts=allow_hosts,
                        max_live=max_live,
                        task_status=task_status,
                    )
                )
                mode = "actions allowed" if allow_actions else "read-only"
                auth = ", basic auth" if credentials else ""
                for url in urls:
                    click.echo(f"Dashboard on {url}/ ({store.url}, {mode}{auth})")
                sys.stdout.flush()

        try:
            trio.run(main)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how it stops
        except BaseExceptionGroup as group:
            _reraise_leaf(group, host, port)


def _reraise_leaf(group: BaseExceptionGroup[BaseException], host: str, port: int) -> NoReturn:
    """A lone error inside trio's exception group, as the one-line error it is."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1:
        leaf = leaves[0]
        if isinstance(leaf, KeyboardInterrupt):
            raise SystemExit(130) from None
        if isinstance(leaf, DurableJobsError):
            raise leaf from None
        if isinstance(leaf, OSError):
            msg = f"Cannot listen on {host}:{port}: {leaf.strerror or leaf}."
            raise ConfigurationError(msg) from None
    raise group
