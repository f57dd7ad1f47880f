"""Read-only commands: list, status, history, state, diff, alarms, stats.

They read through :class:`durable_jobs.Inspector` and write nothing. Human
output is rich tables and timelines; ``--json`` prints one JSON document whose
shape is documented in docs/debugging.md. Times are UTC. Relative times ("5m
ago", "24m late") are computed against the current time, or against
``$DURABLE_JOBS_NOW`` (an ISO 8601 time) if set: a hidden setting for
reproducible output (docs, tests).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from durable_jobs._domain.status import KIND_STATUSES
from durable_jobs._errors import ConfigurationError, ValidationError
from durable_jobs._records import RecordedEvent
from durable_jobs._tools.args import STATUSES
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.views import InstanceSummary, PendingAlarm, StateAt, iso, record_to_json
from durable_jobs.cli._app import (
    CliState,
    app,
    console,
    emit_json,
    fail,
    json_option,
    opened_store,
    print_wide,
    printable,
    store_option,
)

__all__ = ["NOW_ENV"]

#: Hidden setting: the "now" that relative times are computed against (ISO 8601).
NOW_ENV = "DURABLE_JOBS_NOW"

_KIND_HELP = "KIND is continuous, debounce or task; JOB is the job name, ID the instance id."
_STATUS_STYLE = {
    "running": "green",
    "active": "green",
    "debouncing": "yellow",
    "idle": "dim",
    "failed": "bold red",
    "terminated": "dim",
}
_EVENT_STYLE = {
    "started": "bold cyan",
    "terminated": "bold magenta",
    "run_succeeded": "green",
    "run_failed": "bold red",
    "retry_exhausted": "bold red",
    "alarm_set": "blue",
    "alarm_cleared": "blue",
    "flushed": "green",
    "batch_closed": "yellow",
    "cleared": "magenta",
}


# ---- time -------------------------------------------------------------------------------


def _now() -> datetime:
    """The current time, or ``$DURABLE_JOBS_NOW``."""
    fixed = os.environ.get(NOW_ENV)
    if not fixed:
        return datetime.now(UTC)
    try:
        return _parse_time(fixed)
    except ValueError:
        msg = f"{NOW_ENV}={fixed!r} is not an ISO 8601 time (e.g. 2026-01-01T12:00:00Z)."
        raise ConfigurationError(msg) from None


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    at = datetime.fromisoformat(text.strip())
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{at.microsecond // 1000:03d}" if at.microsecond else text


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _span(delta: timedelta) -> str:
    """A duration in at most two units: ``1h 29m``, ``24m``, ``10s``, ``0.25s``.

    Rounded to the nearest value of its smaller unit shown (119.99 s is ``2m``,
    2.9 s is ``3s``), never cut short.
    """
    seconds = abs(delta.total_seconds())
    if seconds < 0.995:
        return f"{seconds:.2f}s".replace("0.00s", "0s")
    whole = math.floor(seconds + 0.5)
    for i, (_, size) in enumerate(_UNITS):
        if whole >= size:
            step = _UNITS[i + 1][1] if i + 1 < len(_UNITS) else 1
            whole = math.floor(whole / step + 0.5) * step
            break
    parts: list[str] = []
    for unit, size in _UNITS:
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
        elif parts:
            break
    return " ".join(parts[:2])


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    delta = now - at
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"{_span(delta)} ago" if delta > timedelta(0) else f"in {_span(delta)}"


def _when_ago(at: datetime | None, now: datetime) -> str:
    return "-" if at is None else f"{_when(at)} ({_ago(at, now)})"


def _offset(at: datetime, base: datetime) -> str:
    delta = at - base
    if delta == timedelta(0):
        return "now"
    return f"+{_span(delta)}" if delta > timedelta(0) else f"-{_span(delta)}"


# ---- shared pieces -----------------------------------------------------------------------


def _examples(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _short(value: Any, width: int = 72) -> str:
    text = printable(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))
    return text if len(text) <= width else text[: width - 3] + "..."


def _data(value: object) -> Text:
    """A piece of stored data (id, job name, message) as table-cell text: no markup,
    control characters escaped."""
    return Text(printable(str(value)))


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _print_wide(renderable: RenderableType) -> None:
    print_wide(renderable)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _not_found(inspector: Inspector, kind: str, job: str, instance_id: str) -> NoReturn:
    fail(
        f"No {kind} job {job!r} instance {instance_id!r} in the store {inspector.store.url}; "
        f"see `durable-jobs list --kind {kind} --job {job}`."
    )


def _label(kind: str, job: str, instance_id: str) -> Text:
    return Text.assemble(
        (printable(kind), "bold"),
        " job ",
        (printable(job), "bold"),
        " instance ",
        (printable(instance_id), "bold"),
    )


def _print_grid(rows: Iterable[tuple[str, str | Text]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value)
    _print_wide(grid)


# ---- list --------------------------------------------------------------------------------


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
@click.option("--limit", type=int, default=100, show_default=True, help="Instances per page.")
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
    be read is listed from the index, with the error.
    """
    with opened_store(state) as store:
        page = Inspector(store).instances(
            kind=kind, job=job, status=status, cursor=cursor, limit=limit
        )
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
            out.print(Text.assemble(("! ", "bold red"), printable(item.error)))
    if page.next_cursor is not None:
        out.print(f"More instances: add --cursor {page.next_cursor}")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _alarm_cell(due_at: datetime | None, now: datetime) -> Text:
    if due_at is None:
        return Text("-")
    if due_at <= now:
        return Text(f"{_when(due_at)} ({_span(now - due_at)} late)", style="bold red")
    return Text(f"{_when(due_at)} (in {_span(due_at - now)})")


# ---- status ------------------------------------------------------------------------------

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
        records = inspector.history(kind, job, instance_id, from_version=start)
    last_error = _last_error(records)
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
                    (f"{d['error_type']}: {d['message']}", "red"),
                    f" (v{last_error.version}, {_when(last_error.at)}, "
                    f"run {last_error.run_count} try {last_error.attempt})",
                ),
            )
        )
    return rows


# ---- history -----------------------------------------------------------------------------


@app.command(
    epilog=_examples(
        "durable-jobs history continuous sync acct-42",
        "durable-jobs history continuous sync acct-42 --last 20 --states",
        "durable-jobs history debounce digest user-7 --from 10 --to 30",
        "durable-jobs history task reminder r1 --json",
    )
)
@click.argument("kind")
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@click.option("--from", "from_version", type=int, help="First version to show.")
@click.option("--to", "to_version", type=int, help="Last version to show.")
@click.option("--last", type=int, help="Only the last N records.")
@click.option("--states", is_flag=True, help="Show the state each run started from.")
@store_option
@json_option
@click.pass_obj
def history(
    state: CliState,
    *,
    kind: str,
    job: str,
    instance_id: str,
    from_version: int | None,
    to_version: int | None,
    last: int | None,
    states: bool,
    as_json: bool,
) -> None:
    """Show the timeline of one instance: every record of its log, oldest first.

    KIND is continuous, debounce or task; JOB is the job name, ID the instance id.
    Shows each record's version, time (UTC, and how long ago), runs with their
    attempts and errors, alarm changes, events and flushes, across every
    generation (a terminated instance started again keeps its old records).
    """
    if last is not None and (last < 1 or from_version is not None):
        raise ValidationError("--last takes a number >= 1 and does not go with --from.")
    with opened_store(state) as store:
        inspector = Inspector(store)
        summary = inspector.status(kind, job, instance_id)
        if summary is None:
            _not_found(inspector, kind, job, instance_id)
        if last is not None:
            end = to_version or summary.version
            from_version = max(1, end - last + 1)
        start = from_version or 1
        records = inspector.history(
            kind, job, instance_id, from_version=start, to_version=to_version
        )
        # The generation the first record shown belongs to (each `started` begins one).
        generation = 0
        if start > 1 and records:
            before = inspector.state_at(kind, job, instance_id, version=start - 1)
            generation = before.data["generation"] if before is not None else 0
    if as_json:
        emit_json(
            {
                "kind": kind,
                "job": job,
                "instance_id": instance_id,
                "instance_uuid": str(summary.instance_uuid),
                "latest_version": summary.version,
                "records": [record_to_json(r) for r in records],
            }
        )
        return
    now = _now()
    out = console()
    out.print(
        Text.assemble(
            _label(kind, job, instance_id),
            f": {len(records)} of {summary.version} records, now ",
            _status_text(summary.status),
        )
    )
    table = _table("V", "TIME (UTC)", "AGO", "EVENT", "DETAILS")
    for record in records:
        if record.name == "started":
            generation += 1
        table.add_row(
            str(record.version),
            _when(record.at),
            _ago(record.at, now),
            Text(record.name, style=_EVENT_STYLE.get(record.name, "")),
            _details(record, generation, states),
        )
    _print_wide(table)


def _details(record: RecordedEvent, generation: int, states: bool) -> Text:
    d = record.data
    name = record.name
    text = Text()
    if name == "started":
        if generation > 1:
            text.append(f"generation {generation} (restarted)", style="bold")
            text.append(f"; state {_short(d.get('state'))}")
        else:
            text.append(f"state {_short(d.get('state'))}")
    elif name == "terminated":
        reason = d.get("reason")
        text.append(f"reason: {printable(str(reason))}" if reason else "no reason given")
    elif name == "state_changed":
        # A whole state, or a JSON Patch of the state before it.
        field = "patch" if "patch" in d else "state"
        text.append(f"{field} {_short(d.get(field))}")
    elif name in {"alarm_set", "resumed"}:
        what = "alarm" if name == "alarm_set" else "resumed (trigger): due"
        text.append(f"{what} at {_when(d['at'])} ({_offset(d['at'], record.at)})")
    elif name == "alarm_cleared":
        text.append("no alarm")
    elif name == "run_succeeded":
        text.append(_run_label(record))
        text.append(f" ok in {d['duration']:.3g}s", style="green")
    elif name == "run_failed":
        text.append(_run_label(record))
        text.append(" failed: ", style="red")
        text.append(printable(f"{d['error_type']}: {d['message']}"), style="red")
        if d.get("flush_reason"):
            text.append(f"; flush reason {d['flush_reason']}")
        retry_at = d.get("retry_at")
        if retry_at is not None:
            text.append(f"; retry at {_when(retry_at)} ({_offset(retry_at, record.at)})")
        else:
            text.append("; no retry")
    elif name == "retry_exhausted":
        text.append(
            f"run {record.run_count}: gave up after {record.attempt} tries; action {d['action']}",
            style="red",
        )
    elif name == "event_added":
        text.append(f"event {_short(d.get('event'))}")
        if d.get("idempotency_key") is not None:
            text.append(f" (key {printable(str(d['idempotency_key']))})")
    elif name == "batch_closed":
        text.append(f"batch {d['batch_no']}: {d['event_count']} events, reason {d['reason']}")
    elif name == "flushed":
        text.append(
            f"batch {d['batch_no']} flushed: {d['event_count']} events, reason {d['reason']}"
        )
    elif name == "cleared":
        text.append(f"{d['discarded_events']} events dropped unprocessed")
    else:  # pragma: no cover - a record type this version does not know
        text.append(_short(record_to_json(record)["data"]))
    if states and name in {"run_succeeded", "run_failed"}:
        text.append(f"\nstarted from {_short(record.state_before)}", style="dim")
    return text


def _run_label(record: RecordedEvent) -> str:
    handler = record.data.get("handler", "execute")
    if handler == "execute":
        return f"{handler} run {record.run_count} try {record.attempt}"
    return str(handler)


# ---- state and diff ----------------------------------------------------------------------


def _parse_at(value: str) -> int | datetime:
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        return _parse_time(text)
    except ValueError:
        msg = (
            f"--at {value!r} is neither a version (a whole number) nor an ISO 8601 time "
            "(e.g. 2026-01-01T12:00:00Z; without an offset it is UTC)."
        )
        raise ValidationError(msg) from None


@app.command(
    epilog=_examples(
        "durable-jobs state continuous sync acct-42",
        "durable-jobs state continuous sync acct-42 --at 7",
        "durable-jobs state continuous sync acct-42 --at 2026-01-01T00:30:00Z",
        "durable-jobs state debounce digest user-7 --at 12 --full --json",
    )
)
@click.argument("kind")
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@click.option(
    "--at",
    "at",
    metavar="VERSION|TIME",
    help="A version, or an ISO 8601 time (the last version at or before it); default: the latest.",
)
@click.option("--full", is_flag=True, help="Show all the instance's data, not only its state.")
@store_option
@json_option
@click.pass_obj
def state(
    obj: CliState,
    *,
    kind: str,
    job: str,
    instance_id: str,
    at: str | None,
    full: bool,
    as_json: bool,
) -> None:
    """Show the state of one instance at a version or a time (time travel).

    KIND is continuous, debounce or task; JOB is the job name, ID the instance id.
    The state is rebuilt from the log (and snapshots) up to that version; with
    --full, the whole instance (counters, alarm, closed batches, keys) is shown.
    """
    point = _parse_at(at) if at is not None else None
    with opened_store(obj) as store:
        inspector = Inspector(store)
        if isinstance(point, datetime):
            view = inspector.state_at(kind, job, instance_id, at=point)
        else:
            view = inspector.state_at(kind, job, instance_id, version=point)
        if view is None:
            if isinstance(point, datetime) and inspector.status(kind, job, instance_id):
                fail(
                    f"{kind} job {job!r} instance {instance_id!r} did not exist yet at "
                    f"{iso(point)}."
                )
            _not_found(inspector, kind, job, instance_id)
    if as_json:
        emit_json(view.to_json())
        return
    now = _now()
    out = console()
    out.print(
        Text.assemble(
            _label(kind, job, instance_id),
            f" at version {view.version} of {view.latest_version}",
        )
    )
    _print_grid(
        [
            ("time", _when_ago(view.at, now)),
            ("status", _status_text(view.status)),
            ("alarm", _when(view.due_at) if view.due_at else "-"),
        ]
    )
    out.print("data:" if full else "state:")
    out.print_json(data=view.data if full else view.state)


@app.command(
    epilog=_examples(
        "durable-jobs diff continuous sync acct-42 3 8",
        "durable-jobs diff debounce digest user-7 1 20 --full",
        "durable-jobs diff task reminder r1 5 9 --json",
    )
)
@click.argument("kind")
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@click.argument("v1", type=int)
@click.argument("v2", type=int)
@click.option("--full", is_flag=True, help="Compare all the instance's data, not only its state.")
@store_option
@json_option
@click.pass_obj
def diff(
    state: CliState,
    *,
    kind: str,
    job: str,
    instance_id: str,
    v1: int,
    v2: int,
    full: bool,
    as_json: bool,
) -> None:
    """Show what changed in the state of one instance from version V1 to version V2.

    KIND is continuous, debounce or task; JOB is the job name, ID the instance id.
    Paths are JSON Pointers (/items/0/name); + added, - removed, ~ changed.
    """
    with opened_store(state) as store:
        inspector = Inspector(store)
        result = inspector.diff(kind, job, instance_id, v1, v2, full=full)
        if result is None:
            _not_found(inspector, kind, job, instance_id)
    if as_json:
        emit_json(result.to_json())
        return
    out = console()
    out.print(
        Text.assemble(
            _label(kind, job, instance_id),
            f": {'data' if full else 'state'} from ",
            _side(result.before),
            " to ",
            _side(result.after),
        )
    )
    if not result.changes:
        out.print("  no changes")
    for change in result.changes:
        path = change.path or "(the whole value)"
        if change.op == "added":
            out.print(Text(f"  + {path}: {_short(change.new)}", style="green"))
        elif change.op == "removed":
            out.print(Text(f"  - {path}: {_short(change.old)}", style="red"))
        else:
            out.print(Text(f"  ~ {path}: {_short(change.old)} -> {_short(change.new)}", "yellow"))


def _side(view: StateAt) -> Text:
    return Text.assemble(f"v{view.version} ({_when(view.at)}, ", _status_text(view.status), ")")


# ---- alarms and stats --------------------------------------------------------------------


@app.command(
    epilog=_examples(
        "durable-jobs alarms",
        "durable-jobs alarms --overdue",
        "durable-jobs alarms --limit 1000 --json",
    )
)
@click.option("--overdue", is_flag=True, help="Only alarms that are due and have not run.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@store_option
@json_option
@click.pass_obj
def alarms(state: CliState, overdue: bool, limit: int, as_json: bool) -> None:
    """List pending alarms, earliest first, with how late or how soon each one is.

    An overdue alarm is due and has not run: normal for a moment while a
    scheduler serves the store, a sign that none does if it lasts.
    """
    now = _now()
    with opened_store(state) as store:
        found = Inspector(store).alarms(now=now, overdue=overdue, limit=limit)
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

    Read from the instance index alone: fast on large stores.
    """
    now = _now()
    with opened_store(state) as store:
        found = Inspector(store).stats(kind=kind, job=job, now=now)
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
