"""Read-only commands about instances: list and status.

They read through :class:`durable_jobs.Inspector` and write nothing; the
shared time and table helpers are in ``_render``.
"""

from __future__ import annotations

from datetime import datetime

import click
from rich.text import Text

from durable_jobs._records import RecordedEvent
from durable_jobs._tools.args import MAX_LIMIT, STATUSES
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.text import printable
from durable_jobs._tools.views import InstanceSummary, record_to_json
from durable_jobs.cli._app import (
    CliState,
    Unreadable,
    app,
    console,
    emit_json,
    escape_controls,
    json_option,
    opened_store,
    store_option,
)
from durable_jobs.cli._render import (
    _alarm_cell,
    _data,
    _examples,
    _label,
    _not_found,
    _now,
    _print_grid,
    _print_wide,
    _status_text,
    _table,
    _when,
    _when_ago,
)

__all__ = ["list_", "status"]


@app.command(
    "list",
    epilog=_examples(
        "durable-jobs --store sqlite:///jobs.db list",
        "durable-jobs list --kind continuous --status failed",
        "durable-jobs list --job digest --limit 20 --cursor <next_cursor>",
        "durable-jobs list --json",
    ),
)
@click.option("--kind", help="Only instances of this kind (continuous, debounce, task).")
@click.option("--job", help="Only instances of this job.")
@click.option("--status", help=f"Only instances in this status ({', '.join(STATUSES)}).")
@click.option(
    "--limit",
    type=int,
    default=100,
    show_default=True,
    help=f"Instances per page, from 1 to {MAX_LIMIT}.",
)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@store_option
@json_option
@click.pass_obj
def list_(
    state: CliState,
    *,
    kind: str | None,
    job: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List instances: kind, job, id, status, runs, events and next alarm.

    Ordered by kind, job and id, LIMIT at a time. An instance whose log cannot
    be read is listed from the index, with the error; an index row that cannot be
    read is left out, reported on stderr, and the exit code is 1.
    """
    unreadable = Unreadable()
    with opened_store(state) as store:
        page = Inspector(store).instances(
            kind=kind,
            job=job,
            status=status,
            cursor=cursor,
            limit=limit,
            unreadable=unreadable.append,
        )
    unreadable.report()
    if as_json:
        emit_json(page.to_json())
        return
    now = _now()
    out = console()
    if not page.items:
        out.print("No instances.")
        return
    table = _table("KIND", "JOB", "ID", "STATUS", "VER", "RUNS", "EVENTS", "NEXT ALARM")
    for item in page.items:
        table.add_row(
            _data(item.kind),
            _data(item.job),
            _data(item.instance_id),
            _status_text(item.status) if item.error is None else Text("unreadable", "bold red"),
            str(item.version),
            _count(item.run_count),
            _count(item.event_count),
            _alarm_cell(item.due_at, now),
        )
    _print_wide(table)
    for item in page.items:
        if item.error is not None:
            out.print(Text.assemble(("! ", "bold red"), escape_controls(item.error)))
    if page.next_cursor is not None:
        out.print(f"More instances: add --cursor {page.next_cursor}")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


#: How far back ``status`` looks for the last failed run.
_LAST_ERROR_WINDOW = 500


@app.command(
    epilog=_examples(
        "durable-jobs status continuous sync acct-42",
        "durable-jobs status debounce digest user-7 --json",
    )
)
@click.argument("kind")
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@store_option
@json_option
@click.pass_obj
def status(state: CliState, kind: str, job: str, instance_id: str, as_json: bool) -> None:
    """Show one instance now: status, counters, next alarm and its last error.

    KIND is continuous, debounce or task; JOB is the job name, ID the instance id.
    The last error is the latest failed run of the current generation (among
    its last 500 records) that no later run of the same handler made good.
    """
    with opened_store(state) as store:
        inspector = Inspector(store)
        summary = inspector.status(kind, job, instance_id)
        if summary is None:
            _not_found(inspector, kind, job, instance_id)
        start = max(1, summary.version - _LAST_ERROR_WINDOW + 1)
        records = inspector.history(kind, job, instance_id, from_version=start, states=False)
        last_error = _last_error(records)
        if as_json and last_error is not None:  # its state_before is shown: read it now
            v = last_error.version
            again = inspector.history(kind, job, instance_id, from_version=v, to_version=v)
            last_error = again[0] if again else last_error
    if as_json:
        emit_json(
            {
                "instance": summary.to_json(),
                "last_error": None if last_error is None else record_to_json(last_error),
            }
        )
        return
    now = _now()
    console().print(_label(kind, job, instance_id))
    _print_grid(_status_rows(summary, last_error, now))


def _last_error(records: list[RecordedEvent]) -> RecordedEvent | None:
    """The latest failure not made good since: a later success of the same handler
    (a successful retry, say) clears it."""
    succeeded: set[str | None] = set()
    for record in reversed(records):
        if record.name == "started":
            return None
        handler = record.data.get("handler")
        if record.name == "run_succeeded":
            succeeded.add(handler)
        elif record.name == "run_failed" and handler not in succeeded:
            return record
    return None


def _status_rows(
    s: InstanceSummary, last_error: RecordedEvent | None, now: datetime
) -> list[tuple[str, str | Text]]:
    status = _status_text(s.status)
    if s.status == "failed":
        resume = "flush" if s.kind == "debounce" else "trigger"
        status.append(f" (paused after a failure; `{resume}` resumes it)", style="")
    if s.attempt:
        status.append(f" (try {s.attempt} failed; retry at the next alarm)", style="")
    rows: list[tuple[str, str | Text]] = [
        ("status", status),
        ("uuid", str(s.instance_uuid)),
        ("version", f"{s.version} (generation {s.generation})"),
        ("created", _when_ago(s.created_at, now)),
        ("updated", _when_ago(s.updated_at, now)),
        ("runs", _count(s.run_count)),
    ]
    if s.event_count is not None:
        label = "events buffered" if s.kind == "debounce" else "events received"
        rows.append((label, str(s.event_count)))
    rows.append(("next alarm", _alarm_cell(s.due_at, now)))
    if last_error is not None:
        d = last_error.data
        rows.append(
            (
                "last error",
                Text.assemble(
                    (printable(f"{d['error_type']}: {d['message']}"), "red"),
                    f" (v{last_error.version}, {_when(last_error.at)}, "
                    f"run {last_error.run_count} try {last_error.attempt})",
                ),
            )
        )
    return rows
