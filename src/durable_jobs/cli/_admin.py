"""Admin commands that need no handlers: terminate, trigger.

They run :func:`durable_jobs.maintenance.terminate_instance` and
:func:`~durable_jobs.maintenance.trigger_instance`: each commits domain events
to one instance (no handler runs, no other alarm fires), and a runtime serving
the store acts on them. An SQLite store a runtime is serving is refused.
"""

from __future__ import annotations

import math
from typing import Any

import click
from rich.text import Text

from durable_jobs._domain.ids import KINDS
from durable_jobs._tools.inspector import Inspector
from durable_jobs.cli._app import (
    CliState,
    app,
    console,
    emit_json,
    json_option,
    opened_store,
    store_option,
)
from durable_jobs.cli._render import _not_found, _when
from durable_jobs.maintenance import AdminResult, terminate_instance, trigger_instance


class _Seconds(click.FloatRange):
    """Seconds from ``min`` to ``max``; ``nan`` is refused too (a FloatRange lets it
    through: it compares false with both ends)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


_WAIT_SECONDS = _Seconds(0, 3600)


__all__ = ["terminate", "trigger"]

KIND = click.Choice(KINDS)

_JSON_SHAPE = """\b
JSON (--json): {"action", "done": bool, "found": true, "kind", "job",
  "instance_id", "instance_uuid", "status", "due_at", "version"}; "done" is
  false when nothing was written (see above).

\b
Exit code 0 when the instance exists, also when there was nothing to do;
1 when it does not (a typo in JOB or ID): an error, as for status.
"""

TERMINATE_EPILOG = f"""\b
Examples:
  durable-jobs --store sqlite:///jobs.db terminate task reminder r-7
  durable-jobs --store sqlite:///jobs.db terminate continuous sync acct-42 --reason "closed"

{_JSON_SHAPE}"""

TRIGGER_EPILOG = f"""\b
Examples:
  durable-jobs --store sqlite:///jobs.db trigger continuous sync acct-42
  durable-jobs --store postgresql://app@db/jobs trigger debounce digest user-7 --json

{_JSON_SHAPE}"""


#: How long the commands wait by default for a run in flight (Postgres, a live worker).
DEFAULT_WAIT = 30.0

_wait_option = click.option(
    "--wait",
    "wait",
    type=_WAIT_SECONDS,
    default=DEFAULT_WAIT,
    show_default=True,
    metavar="SECONDS",
    help="On Postgres, how long to wait for a run of the instance in flight in a "
    "worker (the instance is busy until it ends); 0: do not wait.",
)


def _label(kind: str, job: str, instance_id: str) -> str:
    return f"{kind} job {job!r} instance {instance_id!r}"


def _report(result: AdminResult, as_json: bool, done: str, not_done: str) -> None:
    if as_json:
        emit_json(result.as_json())
        return
    label = _label(result.kind, result.job, result.instance_id)
    if result.done:
        console().print(Text(f"{done.format(label=label)} (version {result.version})."))
    else:
        console().print(Text(not_done.format(label=label, status=result.status)))


@app.command(epilog=TERMINATE_EPILOG)
@click.argument("kind", type=KIND)
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@click.option("--reason", help="Recorded with the termination.")
@_wait_option
@store_option
@json_option
@click.pass_obj
def terminate(
    state: CliState,
    *,
    kind: str,
    job: str,
    instance_id: str,
    reason: str | None,
    wait: float,
    as_json: bool,
) -> None:
    """Terminate one instance, without the app's handlers. Writes.

    What the client's terminate(id) does: the state, alarm, pending retry and
    buffered events are removed; the log and counters stay. No handler runs
    and no other alarm fires. On Postgres, a run of the instance in flight in
    a worker is waited for (--wait), then the instance is terminated and runs
    no more. Refused while a jobs runtime serves an SQLite store (stop it, or
    use its client).

    An instance that is terminated already is left as it is ("Nothing done",
    exit code 0); one that does not exist is an error (exit code 1).
    """
    with opened_store(state, must_exist=True) as store:
        # Records are dated by the real clock ($DURABLE_JOBS_NOW is for displayed times only).
        result = terminate_instance(store, kind, job, instance_id, reason=reason, wait=wait)
        if not result.found:
            _not_found(Inspector(store), kind, job, instance_id)
    _report(result, as_json, "Terminated {label}", "Nothing done: {label} is {status}.")


@app.command(epilog=TRIGGER_EPILOG)
@click.argument("kind", type=KIND)
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@_wait_option
@store_option
@json_option
@click.pass_obj
def trigger(
    state: CliState, *, kind: str, job: str, instance_id: str, wait: float, as_json: bool
) -> None:
    """Make one instance's next run due now; resumes a paused instance. Writes.

    Runs nothing itself (it needs no handlers): it sets the instance's alarm to
    now, resuming a paused (failed) instance, bringing a waiting retry forward,
    or closing a debounce instance's open batch (reason manual). A runtime
    serving the store runs it: at once on Postgres, when one starts on SQLite.
    On Postgres, a run of the instance in flight is waited for (--wait).
    Refused while a jobs runtime serves an SQLite store (stop it, or use its
    client's trigger/flush).

    An instance with nothing to run (terminated, or a debounce instance with no
    buffered events) is left as it is ("Nothing done", exit code 0); one that does not
    exist is an error (exit code 1).
    """
    with opened_store(state, must_exist=True) as store:
        result = trigger_instance(store, kind, job, instance_id, wait=wait)
        if not result.found:
            _not_found(Inspector(store), kind, job, instance_id)
    due = _when(result.due_at)
    _report(
        result,
        as_json,
        "Triggered {label}: its run is due at " + due + "; a runtime serving the store runs it",
        "Nothing done: {label} is {status}, with nothing to run.",
    )
