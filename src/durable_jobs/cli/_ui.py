"""``durable-jobs ui``: the web dashboard (imported on use: it needs the ``ui`` extra)."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from durable_jobs._errors import ConfigurationError
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
@store_option
@click.pass_obj
def ui(
    state: CliState, *, host: str, port: int, allow_actions: bool, auth_env: str | None
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
        if not credentials or ":" not in credentials:
            msg = f"--auth-env {auth_env}: set ${auth_env} to 'user:password'."
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
                        task_status=task_status,
                    )
                )
                mode = "actions allowed" if allow_actions else "read-only"
                auth = ", basic auth" if credentials else ""
                for url in urls:
                    click.echo(f"Dashboard on {url}/ ({store.url}, {mode}{auth})")
                sys.stdout.flush()

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
            trio.run(main)
