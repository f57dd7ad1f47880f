"""Commands that check, follow or delete data: replay, tail, purge (export and
import are in ``_transfer``).

They run :mod:`durable_jobs.maintenance`; the JSON shapes they print are the
``as_json()`` shapes documented there, wrapped as each command's help says.
``replay`` and ``tail`` only read; ``purge`` writes.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

import click
from rich.table import Table
from rich.text import Text

from durable_jobs._domain.ids import KINDS, Kind, check_instance_id, instance_uuid
from durable_jobs._errors import DurableJobsError, StoreError
from durable_jobs._store.base import Store
from durable_jobs.cli._app import (
    CliState,
    Spool,
    Unreadable,
    app,
    console,
    emit_json,
    emit_json_items,
    escape_controls,
    json_option,
    opened_store,
    print_wide_rows,
    printable,
    set_exit_code,
    store_option,
)
from durable_jobs.cli._render import _took, _when
from durable_jobs.maintenance import (
    LiveInstanceError,
    ReplayReport,
    TailEvent,
    purge_instance,
    replay_instance,
    replay_store,
    tail_events,
    tail_position,
)

__all__ = ["purge", "replay", "tail"]

if TYPE_CHECKING:
    _ParamType = click.ParamType[timedelta, Any]
else:  # click < 8.2 has no type parameters here
    _ParamType = click.ParamType

KIND = click.Choice(KINDS)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class Duration(_ParamType):
    """``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d``; a bare number is seconds."""

    name = "duration"

    def __init__(self, minimum: timedelta = timedelta(0)) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration (e.g. 30s, 5m, 1h30m, 250ms).", param, ctx)
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        try:
            duration = timedelta(seconds=seconds)
        except OverflowError:
            self.fail(f"{value!r} is too long: at most {timedelta.max.days}d.", param, ctx)
        if duration < self.minimum:
            least = f"{self.minimum.total_seconds() * 1000:g}ms"
            self.fail(f"{value!r} is too short: at least {least}.", param, ctx)
        return duration


def _label(kind: str, job: str, instance_id: str) -> str:
    return f"{kind} job {job!r} instance {instance_id!r}"


# ---- replay --------------------------------------------------------------------------

REPLAY_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db replay continuous sync acct-42
  durable-jobs --store sqlite:///jobs.db replay --all
  durable-jobs replay --all --json --store postgresql://app@db/jobs

\b
JSON (--json): {"ok": bool, "checked": N, "problems": N, "instances": [
  {"kind", "job", "instance_id", "instance_uuid", "ok", "version", "events",
   "status", "snapshot_version", "divergences": [{"source": "snapshot"|"index",
   "field", "expected", "found"}], "error": str|null}]}

Exit code 1 if any instance diverges or cannot be read.
"""


@app.command(epilog=REPLAY_EPILOG)
@click.argument("kind", type=KIND, required=False)
@click.argument("job", required=False)
@click.argument("instance_id", metavar="[ID]", required=False)
@click.option("--all", "check_all", is_flag=True, help="Check every instance in the store.")
@store_option
@json_option
@click.pass_obj
def replay(
    state: CliState,
    *,
    kind: str | None,
    job: str | None,
    instance_id: str | None,
    check_all: bool,
    as_json: bool,
) -> None:
    """Rebuild instances from their whole log and compare with the snapshot-based
    rebuild and the index row (status, alarm, version).

    Reports every divergence; an instance whose rows are corrupt is reported as
    an error and the check goes on with the others (an index row that cannot be
    read, on stderr). Reads only.
    """
    one = (kind, job, instance_id)
    if check_all == any(v is not None for v in one) or (not check_all and None in one):
        raise click.UsageError("Give either KIND JOB ID (all three) or --all.")
    unreadable = Unreadable()
    # The reports are kept on disk as they come (a store's worth of them is held
    # nowhere) and printed once all are in: the counts come first.
    with Spool[ReplayReport]() as reports:
        with opened_store(state, must_exist=True) as store:
            if check_all:
                found: Iterable[ReplayReport] = replay_store(store, unreadable=unreadable.append)
            else:
                assert kind is not None and job is not None and instance_id is not None
                report = replay_instance(store, kind, job, instance_id)
                if report is None:
                    msg = f"No {_label(kind, job, instance_id)} in the store {store.url}."
                    raise DurableJobsError(msg)
                found = [report]
            problems = 0
            for report in found:
                reports.add(report)
                problems += not report.ok
        unreadable.report()
        problems += len(unreadable.errors)
        if problems:
            set_exit_code(1)
        if as_json:
            emit_json_items(
                {
                    "ok": problems == 0,
                    "checked": reports.count,
                    "problems": problems,
                    "instances": (r.as_json() for r in reports),
                    "unreadable_index_rows": [str(e) for e in unreadable.errors],
                },
                "instances",
            )
            return
        _print_replay(reports, problems)


def _print_replay(reports: Spool[ReplayReport], problems: int) -> None:
    out = console()

    def make_table() -> Table:
        table = Table(box=None, pad_edge=False)
        for column in ("instance", "version", "events", "snapshot", "result"):
            justify: Literal["left", "right"] = (
                "right" if column in ("version", "events") else "left"
            )
            table.add_column(column, justify=justify)
        return table

    def rows() -> Iterator[tuple[Text, str, str, str, Text]]:
        for r in reports:
            if r.error is not None:
                result = Text("error", style="bold red")
            elif r.divergences:
                result = Text(f"{len(r.divergences)} divergence(s)", style="bold red")
            else:
                result = Text("ok", style="green")
            yield (
                Text(printable(f"{r.kind} {r.job} {r.instance_id}")),
                str(r.version) if r.version is not None else "-",
                str(r.events),
                f"v{r.snapshot_version}" if r.snapshot_version is not None else "none",
                result,
            )

    print_wide_rows(make_table, rows)
    for r in reports:
        if r.ok:
            continue
        label = escape_controls(_label(r.kind, r.job, r.instance_id))  # ids quoted by repr
        out.print(Text(f"\n{label}:", style="bold"))
        if r.error is not None:
            out.print(Text(f"  error: {escape_controls(r.error)}", style="red"))
        for d in r.divergences:
            line = (
                f"  {d.source} {d.field}: full replay says {json.dumps(d.expected, default=str)},"
                f" {d.source} says {json.dumps(d.found, default=str)}"
            )
            out.print(Text(escape_controls(line), style="red"))
    summary = f"\n{reports.count} instance(s) checked, {problems} with problems."
    out.print(Text(summary, style="bold red" if problems else "bold green"))


# ---- tail ----------------------------------------------------------------------------

TAIL_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db tail
  durable-jobs --store postgresql://app@db/jobs tail --for 10m --json
  durable-jobs --store sqlite:///jobs.db tail --after 1200 --count 50

\b
Ends after --for (e.g. 30s, 5m, 1h30m), after --count events, or with Ctrl-C.
JSON (--json): one line per event: {"type": "event", "position", "instance_uuid",
  "kind", "job", "instance_id", "version", "timestamp", "topic", "name",
  "state", "error"}; pass the last "position" as --after to carry on.

\b
While it follows, a store out of reach (a server down or restarting, a network
  cut) does not end it: it says so once on stderr, tries again every 1 s to 10 s,
  says when the store is back and goes on after the last event it printed (with
  --json: {"notice", "type": "out_of_reach" or "back", "position"} on stderr).
  Other errors end it (exit code 1), as does an outage at the end of --for or in
  a one-shot read (--for 0).
"""


@app.command(epilog=TAIL_EPILOG)
@click.option("--for", "duration", type=Duration(), help="Stop after this long.")
@click.option(
    "--after",
    type=click.IntRange(0, 2**63 - 1),
    help="Start after this global position (default: now; 0: from the beginning).",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--poll",
    type=Duration(minimum=timedelta(milliseconds=1)),
    default="250ms",
    show_default=True,
    help="How often to look for new events (Postgres also wakes on NOTIFY).",
)
@store_option
@json_option
@click.pass_obj
def tail(
    state: CliState,
    *,
    duration: timedelta | None,
    after: int | None,
    count: int | None,
    poll: timedelta,
    as_json: bool,
) -> None:
    """Follow events as they are committed. Reads only."""
    # Ctrl-C ends a tail: that is how it is meant to stop.
    with opened_store(state, must_exist=True) as store, contextlib.suppress(KeyboardInterrupt):
        _follow(store, after=after, duration=duration, count=count, poll=poll, as_json=as_json)


#: First and longest wait (seconds) between tries while a followed store is out of reach.
OUTAGE_RETRY = 1.0
MAX_OUTAGE_RETRY = 10.0


def _follow(
    store: Store,
    *,
    after: int | None,
    duration: timedelta | None,
    count: int | None,
    poll: timedelta,
    as_json: bool,
) -> None:
    """Print the events of ``tail``; while following (not ``--for 0``), ride out the
    store going out of reach and go on after the last event printed."""
    deadline = None if duration is None else time.monotonic() + duration.total_seconds()
    follows = duration is None or duration > timedelta(0)
    position = tail_position(store) if after is None else after
    seen = 0
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        limit = None if count is None else count - seen
        events = tail_events(
            store, after=position, duration=remaining, limit=limit, poll_interval=poll
        )
        try:
            for event in events:
                if as_json:
                    emit_json(event.as_json())
                else:
                    console().print(_tail_line(event))
                position = event.position
                seen += 1
        except StoreError as exc:
            # A last read (--for 0, or the end of --for) reports its failure as ever.
            if not follows or remaining == 0 or not store.unreachable(exc):
                raise
            outage = exc
        else:
            return
        finally:
            events.close()
        _wait_for_store(store, outage, position, deadline, as_json=as_json)


def _wait_for_store(
    store: Store, exc: StoreError, position: int, deadline: float | None, *, as_json: bool
) -> None:
    """Say once that the store is out of reach, try it with a capped backoff until it
    answers (then say so) or until ``deadline``, when its error ends the tail."""
    _notice(
        f"store out of reach ({exc}); still following after position {position}, trying "
        f"again every {OUTAGE_RETRY:g} s to {MAX_OUTAGE_RETRY:g} s",
        "out_of_reach",
        position,
        as_json=as_json,
    )
    began = time.monotonic()
    delay = OUTAGE_RETRY
    while True:
        pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)
        try:
            store.ping()  # after a restart: also replaces the pool's dead connections
        except StoreError as again:
            if not store.unreachable(again) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                raise
            delay = min(delay * 2, MAX_OUTAGE_RETRY)
            continue
        took = _took(time.monotonic() - began)
        _notice(
            f"store back after {took}; following on after position {position}",
            "back",
            position,
            as_json=as_json,
        )
        return


def _notice(message: str, kind: str, position: int, *, as_json: bool) -> None:
    """One line on stderr (stdout has only events): JSON with ``--json``."""
    text = " ".join(message.split())
    if as_json:
        document = {"notice": text, "type": kind, "position": position}
        click.echo(json.dumps(document, ensure_ascii=False), err=True)
    else:
        click.echo(f"tail: {escape_controls(text)}", err=True)


def _tail_line(e: TailEvent) -> Text:
    text = Text()
    text.append(f"{e.position:>6} ", style="dim")
    text.append(f"{_time(e.timestamp) if e.timestamp else '?'} ", style="cyan")
    who = f"{e.kind} {e.job} {e.instance_id}" if e.kind else str(e.instance_uuid)
    text.append(f"{printable(who)} v{e.version} ")
    style = "bold red" if e.name in ("run_failed", "retry_exhausted") or e.error else "bold"
    text.append(e.name or e.topic, style=style)
    # A message quotes ids with repr and _detail escapes the data it quotes: only
    # control characters are left to escape.
    detail = e.error or _detail(e.name, e.state if isinstance(e.state, dict) else {})
    if detail:
        text.append(f"  {escape_controls(detail)}")
    return text


def _time(value: Any) -> str:
    """A stored ISO time as ``history`` shows times (``2026-01-01 00:00:20``)."""
    try:
        return _when(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _run(s: dict[str, Any]) -> str:
    """``execute run 1 try 2`` (other handlers by name), as ``history`` says it."""
    handler = s.get("handler")
    if handler == "execute":
        return f"execute run {s.get('run_count')} try {s.get('attempt')}"
    return str(handler)


def _detail(name: str | None, s: dict[str, Any]) -> str:
    if name == "run_failed":
        retry = f"; retry at {_time(s['retry_at'])}" if s.get("retry_at") else "; no retry"
        error = printable(f"{s.get('error_type')}: {s.get('message')}")
        return f"{_run(s)} failed: {error}{retry}"
    if name == "run_succeeded":
        return f"{_run(s)} ok in {_took(s.get('duration'))}"
    if name == "retry_exhausted":
        return f"run {s.get('run_count')} after {s.get('attempt')} tries: {s.get('action')}"
    if name in ("alarm_set", "resumed"):
        return f"{'alarm' if name == 'alarm_set' else 'due'} at {_time(s.get('at'))}"
    if name in ("batch_closed", "flushed"):
        return f"batch {s.get('batch_no')}: {s.get('reason')}, {s.get('event_count')} event(s)"
    if name == "terminated":
        return f"reason: {printable(str(s.get('reason')))}"
    if name == "cleared":
        return f"{s.get('discarded_events')} event(s) discarded"
    if name in ("state_changed", "started"):
        return f"patch {_short(s['patch'])}" if "patch" in s else _short(s.get("state"))
    if name == "event_added":
        return _short(s.get("event"))
    return ""


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- purge ---------------------------------------------------------------------------

PURGE_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db purge continuous sync acct-42
  durable-jobs --store postgresql://app@db/jobs purge task order o-7 --yes --json

\b
JSON (--json): {"purged": bool, "kind", "job", "instance_id", "instance_uuid",
  "events": N, "snapshots": N}; "purged" is false for an unknown instance.
"""


@app.command(epilog=PURGE_EPILOG)
@click.argument("kind", type=KIND)
@click.argument("job")
@click.argument("instance_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_option
@json_option
@click.pass_obj
def purge(
    state: CliState, *, kind: str, job: str, instance_id: str, yes: bool, as_json: bool
) -> None:
    """Delete a terminated instance's whole history (events, snapshots, index row).

    For data-removal requests; cannot be undone. A live instance is refused
    (terminate it first), and so is an SQLite store a jobs runtime is serving.
    Asks for confirmation unless --yes. Writes.
    """
    label = _label(kind, job, instance_id)
    with opened_store(state, must_exist=True) as store:
        if not yes and _exists_and_terminated(store, kind, job, instance_id):
            click.confirm(
                f"Permanently delete the whole history of {label}? This cannot be undone.",
                abort=True,
                err=True,
            )
        result = purge_instance(store, kind, job, instance_id)
        url = str(store.url)
    if as_json:
        emit_json(result.as_json())
    elif result.purged:
        console().print(
            Text(
                f"Purged {label}: {result.events} event(s), {result.snapshots} snapshot(s) "
                "and its index row."
            )
        )
    else:
        console().print(Text(f"Nothing to purge: there is no {label} in {url}."))


def _exists_and_terminated(store: Store, kind: str, job: str, instance_id: str) -> bool:
    """Whether to ask: False for an unknown instance; a live one is refused before asking."""
    uuid = instance_uuid(cast("Kind", kind), job, check_instance_id(instance_id))
    row = store.index_row(uuid)
    if row is None:
        return False
    if row.status != "terminated":
        msg = (
            f"Refusing to purge {_label(kind, job, instance_id)}: it is live (status "
            f"{row.status!r}). Terminate it first, then purge; nothing was deleted."
        )
        raise LiveInstanceError(msg)
    return True
