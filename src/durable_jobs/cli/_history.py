"""Read-only commands about one instance's past: history, state and diff."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import click
from rich.console import Console
from rich.text import Text

from durable_jobs._errors import ValidationError
from durable_jobs._records import RecordedEvent
from durable_jobs._tools.common import instance_json
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.views import StateAt, iso, record_to_json
from durable_jobs.cli._app import (
    CliState,
    Spool,
    app,
    console,
    emit_json,
    emit_json_items,
    fail,
    json_option,
    opened_store,
    print_wide_rows,
    printable,
    store_option,
)
from durable_jobs.cli._render import (
    _EVENT_STYLE,
    _ago,
    _examples,
    _label,
    _not_found,
    _now,
    _offset,
    _parse_time,
    _print_grid,
    _short,
    _status_text,
    _table,
    _took,
    _when,
    _when_ago,
)

#: A version number: from 1 to the largest a store holds (SQLite's INTEGER).
VERSION = click.IntRange(1, 2**63 - 1)

__all__ = ["diff", "history", "state"]


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
@click.option("--from", "from_version", type=VERSION, help="First version to show.")
@click.option("--to", "to_version", type=VERSION, help="Last version to show.")
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
    if from_version is not None and to_version is not None and from_version > to_version:
        msg = f"--from {from_version} is after --to {to_version}: give --from <= --to."
        raise click.UsageError(msg)
    with Spool[RecordedEvent]() as records:  # on disk, read back to print
        with opened_store(state) as store:
            inspector = Inspector(store)
            summary = inspector.status(kind, job, instance_id)
            if summary is None:
                _not_found(inspector, kind, job, instance_id)
            if last is not None:
                end = to_version or summary.version
                from_version = max(1, end - last + 1)
            start = from_version or 1
            # The records are read a page at a time and kept on disk until printed (the
            # heading counts them first). A run's state_before costs a rebuild: read only
            # when shown.
            starts, last_version = 0, 0
            for record in inspector.iter_history(
                kind,
                job,
                instance_id,
                from_version=start,
                to_version=to_version,
                states=states or as_json,
            ):
                records.add(record)
                starts += record.name == "started"
                last_version = record.version
            # The generation the first record shown belongs to (each `started` begins one).
            generation = 0
            if start > 1 and starts:  # only a `started` record shows its generation
                if last_version == summary.version and summary.generation is not None:
                    # The records reach the latest: the generation now, less those they start.
                    generation = summary.generation - starts
                else:
                    before = inspector.state_at(kind, job, instance_id, version=start - 1)
                    generation = before.data["generation"] if before is not None else 0
        if as_json:
            emit_json_items(
                {
                    **instance_json(kind, job, instance_id, summary.instance_uuid),
                    "latest_version": summary.version,
                    "records": (record_to_json(r) for r in records),
                },
                "records",
            )
            return
        now = _now()
        _heading(
            kind,
            job,
            instance_id,
            f": {records.count} of {summary.version} records, now ",
            _status_text(summary.status),
        )

        def rows() -> Iterator[tuple[str, str, str, Text, Text]]:
            g = generation
            for record in records:
                if record.name == "started":
                    g += 1
                yield (
                    str(record.version),
                    _when(record.at),
                    _ago(record.at, now),
                    Text(record.name, style=_EVENT_STYLE.get(record.name, "")),
                    _details(record, g, states),
                )

        print_wide_rows(lambda: _table("V", "TIME (UTC)", "AGO", "EVENT", "DETAILS"), rows)


def _heading(kind: str, job: str, instance_id: str, *rest: str | Text) -> Console:
    """Print the instance's heading line; the console to print the rest on."""
    out = console()
    out.print(Text.assemble(_label(kind, job, instance_id), *rest))
    return out


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
        text.append(f" ok in {_took(d['duration'])}", style="green")
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
    out = _heading(kind, job, instance_id, f" at version {view.version} of {view.latest_version}")
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
    out = _heading(
        kind,
        job,
        instance_id,
        f": {'data' if full else 'state'} from ",
        _side(result.before),
        " to ",
        _side(result.after),
    )
    if not result.changes:
        out.print("  no changes")
    for change in result.changes:
        path = printable(change.path) if change.path else "(the whole value)"
        if change.op == "added":
            out.print(Text(f"  + {path}: {_short(change.new)}", style="green"))
        elif change.op == "removed":
            out.print(Text(f"  - {path}: {_short(change.old)}", style="red"))
        else:
            out.print(Text(f"  ~ {path}: {_short(change.old)} -> {_short(change.new)}", "yellow"))


def _side(view: StateAt) -> Text:
    return Text.assemble(f"v{view.version} ({_when(view.at)}, ", _status_text(view.status), ")")
