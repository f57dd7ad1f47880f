"""The Inspector's result types, each with the ``to_json()`` the CLI's ``--json`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, final
from uuid import UUID

from durable_jobs._records import RecordedEvent
from durable_jobs._tools.common import instance_json, isoformat

__all__ = [
    "InstancePage",
    "InstanceSummary",
    "JobStats",
    "PendingAlarm",
    "StateAt",
    "StateChange",
    "StateDiff",
    "iso",
    "jsonable",
    "record_to_json",
]


iso = isoformat


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, timedeltas as seconds, UUIDs as strings."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def record_to_json(record: RecordedEvent) -> dict[str, Any]:
    """One history record as JSON (the shape of ``durable-jobs history --json``)."""
    return {
        "version": record.version,
        "at": iso(record.at),
        "name": record.name,
        "run_count": record.run_count,
        "attempt": record.attempt,
        "data": jsonable(record.data),
        "state_before": jsonable(record.state_before) if record.is_run else None,
    }


@final
@dataclass(frozen=True, kw_only=True)
class InstanceSummary:
    """What one instance is now.

    ``status`` is the kind's status (``running``/``failed`` for continuous,
    ``debouncing``/``failed``/``idle`` for debounce, ``active``/``idle`` for
    task) or ``terminated``. ``version`` is the number of records in its log.
    ``run_count`` counts ``execute`` runs (debounce: flushes) of the current
    generation; ``event_count`` is the events not yet flushed (debounce), the
    events received (task) or None (continuous). ``attempt`` is the last failed
    try of a run waiting for its retry (0: none). ``due_at`` is its one alarm.

    ``error`` is set (and the counters are None) when :meth:`Inspector.instances`
    found the instance's log unreadable; the rest then comes from the index.
    """

    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    status: str
    version: int
    updated_at: datetime
    due_at: datetime | None
    created_at: datetime | None = None
    generation: int | None = None
    run_count: int | None = None
    event_count: int | None = None
    attempt: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (``list``/``status --json``)."""
        return {
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "status": self.status,
            "version": self.version,
            "generation": self.generation,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "due_at": iso(self.due_at),
            "run_count": self.run_count,
            "event_count": self.event_count,
            "attempt": self.attempt,
            "error": self.error,
        }


@final
@dataclass(frozen=True, kw_only=True)
class InstancePage:
    """One page of :meth:`Inspector.instances`; pass ``next_cursor`` for the next one."""

    items: list[InstanceSummary]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        """The page as JSON (``list --json``)."""
        return {
            "instances": [s.to_json() for s in self.items],
            "next_cursor": self.next_cursor,
        }


@final
@dataclass(frozen=True, kw_only=True)
class StateAt:
    """An instance as it was right after record ``version`` (at time ``at``).

    ``state`` is the job's state as JSON (debounce: the state of the batch that
    flushes next, as ``get_state`` returns it); ``data`` is everything the
    instance knew (counters, alarm, closed batches, idempotency keys), as JSON.
    """

    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    version: int
    latest_version: int
    at: datetime
    status: str
    live: bool
    state: Any
    due_at: datetime | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The state as JSON (``state --json``)."""
        return {
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "version": self.version,
            "latest_version": self.latest_version,
            "at": iso(self.at),
            "status": self.status,
            "live": self.live,
            "due_at": iso(self.due_at),
            "state": self.state,
            "data": self.data,
        }


@final
@dataclass(frozen=True, kw_only=True)
class StateChange:
    """One difference between two JSON documents.

    ``path`` is a JSON Pointer (RFC 6901: ``""`` is the whole document,
    ``/items/0/name`` a nested value); ``op`` is ``added`` (only ``new``),
    ``removed`` (only ``old``) or ``changed`` (both).
    """

    path: str
    op: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        """The change as JSON (one item of ``diff --json``)."""
        document: dict[str, Any] = {"path": self.path, "op": self.op}
        if self.op != "added":
            document["old"] = self.old
        if self.op != "removed":
            document["new"] = self.new
        return document


@final
@dataclass(frozen=True, kw_only=True)
class StateDiff:
    """What changed from ``before`` to ``after`` (``full``: the whole instance data)."""

    before: StateAt
    after: StateAt
    full: bool
    changes: list[StateChange]

    def to_json(self) -> dict[str, Any]:
        """The diff as JSON (``diff --json``)."""
        return {
            "kind": self.before.kind,
            "job": self.before.job,
            "instance_id": self.before.instance_id,
            "scope": "data" if self.full else "state",
            "from": _diff_side(self.before),
            "to": _diff_side(self.after),
            "changes": [c.to_json() for c in self.changes],
        }


def _diff_side(view: StateAt) -> dict[str, Any]:
    return {"version": view.version, "at": iso(view.at), "status": view.status}


@final
@dataclass(frozen=True, kw_only=True)
class PendingAlarm:
    """A pending alarm; ``lateness`` is ``now - due_at`` (negative: not due yet)."""

    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    status: str
    due_at: datetime
    lateness: timedelta

    @property
    def overdue(self) -> bool:
        """Whether the alarm is due (at or before ``now``) and has not run."""
        return self.lateness >= timedelta(0)

    def to_json(self) -> dict[str, Any]:
        """The alarm as JSON (one item of ``alarms --json``)."""
        return {
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "status": self.status,
            "due_at": iso(self.due_at),
            "overdue": self.overdue,
            "lateness_seconds": self.lateness.total_seconds(),
        }


@final
@dataclass(frozen=True, kw_only=True)
class JobStats:
    """Instances of one job by status, and its alarms (relative to ``now``)."""

    kind: str
    job: str
    total: int
    by_status: dict[str, int]
    pending_alarms: int
    overdue_alarms: int
    next_due_at: datetime | None
    oldest_overdue_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The counts as JSON (one item of ``stats --json``)."""
        return {
            "kind": self.kind,
            "job": self.job,
            "total": self.total,
            "by_status": dict(self.by_status),
            "pending_alarms": self.pending_alarms,
            "overdue_alarms": self.overdue_alarms,
            "next_due_at": iso(self.next_due_at),
            "oldest_overdue_at": iso(self.oldest_overdue_at),
        }
