"""Read-only commands about the store as a whole: alarms and stats."""

from __future__ import annotations

import click
from rich.text import Text

from durable_jobs._domain.status import KIND_STATUSES
from durable_jobs._tools.args import MAX_LIMIT, STATUSES
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.views import PendingAlarm, iso
from durable_jobs.cli._app import (
    CliState,
    Unreadable,
    app,
    console,
    emit_json,
    json_option,
    opened_store,
    store_option,
)
from durable_jobs.cli._render import (
    _alarm_cell,
    _data,
    _examples,
    _now,
    _plural,
    _print_wide,
    _span,
    _status_text,
    _table,
    _when,
)

__all__ = ["alarms", "stats"]


@app.command(
    epilog=_examples(
        "durable-jobs alarms",
        "durable-jobs alarms --overdue",
        "durable-jobs alarms --limit 1000 --json",
    )
)
@click.option("--overdue", is_flag=True, help="Only alarms that are due and have not run.")
@click.option(
    "--limit",
    type=int,
    default=100,
    show_default=True,
    help=f"At most this many, from 1 to {MAX_LIMIT}.",
)
@store_option
@json_option
@click.pass_obj
def alarms(state: CliState, overdue: bool, limit: int, as_json: bool) -> None:
    """List pending alarms, earliest first, with how late or how soon each one is.

    An overdue alarm is due and has not run: normal for a moment while a
    scheduler serves the store, a sign that none does if it lasts. An index row
    that cannot be read is left out and reported on stderr (exit code 1).
    """
    now = _now()
    unreadable = Unreadable()
    with opened_store(state) as store:
        found = Inspector(store).alarms(
            now=now, overdue=overdue, limit=limit, unreadable=unreadable.append
        )
    unreadable.report()
    if as_json:
        emit_json(
            {
                "now": iso(now),
                "overdue_only": overdue,
                "alarms": [a.to_json() for a in found],
            }
        )
        return
    out = console()
    late = sum(1 for a in found if a.overdue)
    what = (
        _plural(len(found), "overdue alarm")
        if overdue
        else f"{_plural(len(found), 'pending alarm')} ({late} overdue)"
    )
    out.print(f"{what} at {_when(now)} UTC")
    if not found:
        return
    table = _table("DUE (UTC)", "LATENESS", "KIND", "JOB", "ID", "STATUS")
    for alarm in found:
        table.add_row(
            _when(alarm.due_at),
            _lateness(alarm),
            _data(alarm.kind),
            _data(alarm.job),
            _data(alarm.instance_id),
            _status_text(alarm.status),
        )
    _print_wide(table)


#: The statuses each kind's instances can have.
_KIND_STATUSES = KIND_STATUSES


def _status_count(kind: str, status: str, counts: dict[str, int]) -> str:
    if status not in _KIND_STATUSES.get(kind, ()) and status not in counts:
        return ""
    return str(counts.get(status, 0))


def _lateness(alarm: PendingAlarm) -> Text:
    if alarm.overdue:
        return Text(f"{_span(alarm.lateness)} late", style="bold red")
    return Text(f"in {_span(alarm.lateness)}")


@app.command(
    epilog=_examples(
        "durable-jobs stats",
        "durable-jobs stats --kind debounce",
        "durable-jobs stats --json",
    )
)
@click.option("--kind", help="Only jobs of this kind.")
@click.option("--job", help="Only this job.")
@store_option
@json_option
@click.pass_obj
def stats(state: CliState, kind: str | None, job: str | None, as_json: bool) -> None:
    """Count the instances of each job by status, with their pending and overdue alarms.

    Read from the instance index alone: fast on large stores. An index row that
    cannot be read is left out and reported on stderr (exit code 1).
    """
    now = _now()
    unreadable = Unreadable()
    with opened_store(state) as store:
        found = Inspector(store).stats(kind=kind, job=job, now=now, unreadable=unreadable.append)
    unreadable.report()
    if as_json:
        emit_json({"now": iso(now), "jobs": [s.to_json() for s in found]})
        return
    out = console()
    if not found:
        out.print("No instances.")
        return
    seen = {status for s in found for status in s.by_status}
    columns = [s for s in STATUSES if s in seen] + sorted(seen - set(STATUSES))
    table = _table(
        "KIND", "JOB", "TOTAL", *(c.upper() for c in columns), "ALARMS", "OVERDUE", "NEXT DUE"
    )
    for s in found:
        table.add_row(
            _data(s.kind),
            _data(s.job),
            str(s.total),
            *(_status_count(s.kind, c, s.by_status) for c in columns),
            str(s.pending_alarms),
            Text(str(s.overdue_alarms), style="bold red" if s.overdue_alarms else ""),
            _alarm_cell(s.next_due_at, now),
        )
    out.print(f"Instances per job at {_when(now)} UTC")
    _print_wide(table)
