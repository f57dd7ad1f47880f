"""How the dashboard shows times, durations, JSON and recorded events (as plain text;
the templates escape it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_jobs._tools.text import printable

__all__ = ["Shown", "ago", "describe", "outcome", "pretty", "short", "span", "when"]


class Shown(str):
    """Text whose backslashes are escapes already (JSON; a record's description, whose
    data went through :func:`~durable_jobs._tools.text.printable`; a message quoting ids
    with ``repr``): the templates escape only its control characters, not its
    backslashes again."""

    __slots__ = ()


def when(at: datetime | str | None) -> str:
    """``2026-03-02 09:15:00`` (UTC; milliseconds when there are any), or ``-``."""
    if at is None:
        return "-"
    if isinstance(at, str):
        try:
            parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return at
        at = parsed
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{at.microsecond // 1000:03d}" if at.microsecond else text


def span(delta: timedelta) -> str:
    """A duration in at most two units: ``1h 29m``, ``24m``, ``10s``, ``0.25s``."""
    seconds = abs(delta.total_seconds())
    if seconds < 1:
        return f"{seconds:.2f}s".replace("0.00s", "0s")
    whole = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


def ago(at: datetime | None, now: datetime) -> str:
    """``5m ago``, ``in 3m`` or ``now`` (empty for None)."""
    if at is None:
        return ""
    delta = now - at
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"{span(delta)} ago" if delta > timedelta(0) else f"in {span(delta)}"


def pretty(value: Any) -> Shown:
    """``value`` as indented JSON."""
    return Shown(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str))


def short(value: Any, width: int = 80) -> Shown:
    """``value`` as one line of JSON, cut at ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return Shown(text if len(text) <= width else text[: width - 3] + "...")


def outcome(name: str) -> str:
    """``ok``, ``failed``, ``exhausted`` for run records; empty for the others."""
    return {"run_succeeded": "ok", "run_failed": "failed", "retry_exhausted": "exhausted"}.get(
        name, ""
    )


def describe(name: str, data: dict[str, Any]) -> Shown:
    """What a record says, beyond its name, run, attempt and duration: its JSON as JSON,
    its text (messages, reasons, keys) through :func:`printable`."""
    return Shown(_describe(name, data))


def _describe(name: str, data: dict[str, Any]) -> str:
    def g(field: str) -> Any:  # a text field; JSON ones are read with data.get
        value = data.get(field)
        return printable(value) if isinstance(value, str) else value

    if name == "started":
        return f"state {short(data.get('state'))}"
    if name == "terminated":
        return f"reason: {g('reason')}" if g("reason") else ""
    if name == "state_changed":
        # A large state's small change is recorded as a JSON Patch of the state before.
        return f"patch {short(data.get('patch'))}" if "patch" in data else short(data.get("state"))
    if name == "alarm_set":
        return f"alarm at {when(g('at'))}"
    if name == "alarm_cleared":
        return "no alarm"
    if name == "run_succeeded":
        return f"{g('handler')} returned"
    if name == "run_failed":
        text = f"{g('handler')} raised {g('error_type')}: {g('message')}"
        text += f"; retry at {when(g('retry_at'))}" if g("will_retry") else "; no retry"
        if g("flush_reason"):
            text += f" (flush: {g('flush_reason')})"
        return text
    if name == "resumed":
        return f"made due at {when(g('at'))} (no handler ran)"
    if name == "retry_exhausted":
        return f"retries exhausted: {g('action')}"
    if name == "event_added":
        key = f" (key {g('idempotency_key')})" if g("idempotency_key") else ""
        return f"{short(data.get('event'))}{key}"
    if name in ("batch_closed", "flushed"):
        return f"batch {g('batch_no')}: {g('event_count')} event(s), reason {g('reason')}"
    if name == "cleared":
        return f"{g('discarded_events')} event(s) discarded"
    return short(data)
