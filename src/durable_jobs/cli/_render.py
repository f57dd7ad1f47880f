"""What the read-only commands share: times (absolute and relative), styles and table pieces.

The read-only commands are list, status, history, state, diff, alarms and stats.

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
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from durable_jobs._errors import ConfigurationError, ValidationError
from durable_jobs._tools.inspector import Inspector
from durable_jobs.cli._app import (
    escape_controls,
    fail,
    print_wide,
    printable,
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
    try:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-14:00 is a valid ISO time that no UTC datetime can hold.
        msg = f"{text.strip()!r} is out of range: in UTC it falls outside the years 1 to 9999."
        raise ValidationError(msg) from None


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


def _took(seconds: Any) -> str:
    """How long a handler took, readable at any scale: ``0s``, ``80µs``, ``12.5ms``,
    ``1.25s``, ``2m 5s`` (``-`` when not recorded; another value as it is)."""
    if seconds is None:
        return "-"
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return str(seconds)
    value = abs(float(seconds))
    if value == 0 or not math.isfinite(value):
        return "0s" if value == 0 else str(seconds)
    if value < 1e-3:
        return f"{value * 1e6:.3g}µs"
    if value < 1:
        return f"{value * 1e3:.3g}ms"
    if value < 60:
        return f"{value:.3g}s"
    return _span(timedelta(seconds=value))


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


def _examples(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _short(value: Any, width: int = 72) -> str:
    # JSON escapes its backslashes itself: only the characters it leaves raw are escaped.
    text = escape_controls(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))
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
    where = f"No {kind} job {job!r} instance {instance_id!r} in the store {inspector.store.url}"
    if inspector.instances(kind=kind, job=job, limit=1).items:
        fail(f"{where}; see `durable-jobs list --kind {kind} --job {job}`.")
    # Not one instance of that job (a misspelt job name, say): listing it finds nothing.
    fail(
        f"{where}, nor any instance of a {kind} job named {job!r}; "
        f"`durable-jobs stats --kind {kind}` lists the {kind} jobs the store has."
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


def _alarm_cell(due_at: datetime | None, now: datetime) -> Text:
    if due_at is None:
        return Text("-")
    if due_at <= now:
        return Text(f"{_when(due_at)} ({_span(now - due_at)} late)", style="bold red")
    return Text(f"{_when(due_at)} (in {_span(due_at - now)})")
