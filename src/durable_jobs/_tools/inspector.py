"""Read-only inspection of a store: instances, histories, time travel, alarms, stats.

:class:`Inspector` works on any store, with or without a scheduler running
against it, and never writes: it reads the instance index and rebuilds
instances from their logs (at any version). It is what the ``durable-jobs``
command line shows; every result type has a ``to_json()`` giving the CLI's
``--json`` shape (``docs/debugging.md``).

Unknown jobs and instances are not errors: they give ``None`` or nothing.
A malformed kind, job name, instance id or option raises
:class:`~durable_jobs.ValidationError`; stored data that cannot be read
raises :class:`~durable_jobs.StoreError` naming the instance.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Self, cast, final
from uuid import UUID

from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import KINDS, Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.status import STATUSES as _DOMAIN_STATUSES
from durable_jobs._errors import ConfigurationError, DurableJobsError, ValidationError
from durable_jobs._evolution import CheckReport, check_instances
from durable_jobs._records import RecordedEvent, to_records
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow
from durable_jobs._store.registry import open_store

__all__ = [
    "STATUSES",
    "Inspector",
    "InstancePage",
    "InstanceSummary",
    "JobStats",
    "PendingAlarm",
    "StateAt",
    "StateChange",
    "StateDiff",
    "iso",
    "json_diff",
    "record_to_json",
]

#: Every status an instance can have in the index (per kind, plus ``terminated``).
STATUSES: Final[tuple[str, ...]] = _DOMAIN_STATUSES
MAX_LIMIT: Final = 10_000


def iso(at: datetime | None) -> str | None:
    """``at`` as ISO 8601 in UTC with a ``Z`` (how every JSON document shows times)."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, timedeltas as seconds, UUIDs as strings."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record_to_json(record: RecordedEvent) -> dict[str, Any]:
    """One history record as JSON (the shape of ``durable-jobs history --json``)."""
    return {
        "version": record.version,
        "at": iso(record.at),
        "name": record.name,
        "run_count": record.run_count,
        "attempt": record.attempt,
        "data": _jsonable(record.data),
        "state_before": _jsonable(record.state_before) if record.is_run else None,
    }


# ---- result types ------------------------------------------------------------------------


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
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
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
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
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
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
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


# ---- JSON diff ---------------------------------------------------------------------------


def _pointer(path: str, key: str | int) -> str:
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{path}/{token}"


def json_diff(old: Any, new: Any) -> list[StateChange]:
    """The structural differences from ``old`` to ``new`` (JSON values), in document order.

    Objects are compared key by key (keys sorted), arrays index by index (a
    longer array has ``added`` items at its end, a shorter one ``removed``);
    anything else that differs, including a change of type, is ``changed``.
    """
    out: list[StateChange] = []
    _diff_into(out, "", old, new)
    return out


def _diff_into(out: list[StateChange], path: str, old: Any, new: Any) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            sub = _pointer(path, key)
            if key not in new:
                out.append(StateChange(path=sub, op="removed", old=old[key]))
            elif key not in old:
                out.append(StateChange(path=sub, op="added", new=new[key]))
            else:
                _diff_into(out, sub, old[key], new[key])
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            sub = _pointer(path, i)
            if i >= len(new):
                out.append(StateChange(path=sub, op="removed", old=old[i]))
            elif i >= len(old):
                out.append(StateChange(path=sub, op="added", new=new[i]))
            else:
                _diff_into(out, sub, old[i], new[i])
        return
    # bool is an int in Python, but true != 1 in JSON.
    if type(old) is not type(new) or old != new:
        out.append(StateChange(path=path, op="changed", old=old, new=new))


# ---- the inspector -----------------------------------------------------------------------


def _check_kind(kind: object) -> Kind:
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ValidationError(msg)
    return kind


def _uuid_of(kind: object, job: object, instance_id: object) -> UUID:
    checked = _check_kind(kind)
    check_instance_id(instance_id)
    if not isinstance(job, str):
        msg = f"A job name must be a str, not {type(job).__name__}."
        raise ValidationError(msg)
    try:
        return instance_uuid(checked, job, cast("str", instance_id))
    except ConfigurationError as exc:  # a malformed job name: the caller's input here
        raise ValidationError(str(exc)) from None


def _check_filter(name: str, value: object) -> None:
    """A ``job`` or ``cursor`` argument: a str or None (ValidationError otherwise)."""
    if value is not None and not isinstance(value, str):
        msg = f"{name} must be a str or None, not {type(value).__name__}."
        raise ValidationError(msg)


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        msg = f"Unknown status {status!r}: expected one of {', '.join(STATUSES)}."
        raise ValidationError(msg)


def _label(kind: str, job: str, instance_id: str) -> str:
    return f"{kind} job {job!r} instance {instance_id!r}"


def _state_of(agg: JobInstance) -> Any:
    if isinstance(agg, DebounceInstance):
        return agg.current_state
    return agg.d.state


def _event_count(agg: JobInstance) -> int | None:
    if isinstance(agg, DebounceInstance):
        return agg.buffered_events
    if agg.d.kind == "task":
        return agg.d.event_count
    return None


def _summary(agg: JobInstance) -> InstanceSummary:
    d = agg.d
    return InstanceSummary(
        kind=d.kind,
        job=d.job,
        instance_id=d.instance_id,
        instance_uuid=agg.id,
        status=agg.status,
        version=agg.version,
        updated_at=agg.modified_on,
        due_at=d.alarm_at,
        created_at=d.created_at,
        generation=d.generation,
        run_count=d.run_count,
        event_count=_event_count(agg),
        attempt=d.attempt,
    )


def _encode_cursor(row: IndexRow) -> str:
    raw = json.dumps([row.kind, row.job, row.instance_id], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, job, instance_id = json.loads(raw)
        if not all(isinstance(x, str) for x in (kind, job, instance_id)):
            raise TypeError(cursor)  # noqa: TRY301 - one message for every malformed cursor
    except (binascii.Error, ValueError, TypeError):
        msg = f"Malformed cursor {cursor[:80]!r}: pass the next_cursor of a previous page."
        raise ValidationError(msg) from None
    return kind, job, instance_id


def _open_existing(url: str, encryption_key: str | Sequence[str] | None = None) -> Store:
    """Open ``url`` read-only: a missing SQLite file or Postgres schema is a
    ConfigurationError, never created (reads must not create anything)."""
    return open_store(url, create=False, encryption_key=encryption_key)


@final
class Inspector:
    """Read-only views of the instances in a store (no scheduler needed, nothing written).

    ``store`` is an open :class:`~durable_jobs.Store` (left open) or a store URL
    (opened here and closed by :meth:`close` or at the end of a ``with`` block;
    an SQLite file that does not exist is a :class:`ConfigurationError`).
    Methods are synchronous and make blocking store calls: in a trio app run
    them with ``trio.to_thread.run_sync``.
    """

    def __init__(
        self, store: Store | str, *, encryption_key: str | Sequence[str] | None = None
    ) -> None:
        given = cast(object, store)  # checked: callers may pass anything
        if isinstance(given, str):
            self._store = _open_existing(given, encryption_key)
            self._owned = True
        elif isinstance(given, Store):
            if encryption_key is not None:
                msg = (
                    "encryption_key is for a store URL; an open Store has its own: pass "
                    "encryption_key to open_store() instead."
                )
                raise ConfigurationError(msg)
            self._store = given
            self._owned = False
        else:
            msg = f"Inspector needs a store URL or an open Store, not {type(store).__name__}."
            raise ConfigurationError(msg)

    @property
    def store(self) -> Store:
        """The store being inspected."""
        return self._store

    def close(self) -> None:
        """Close the store if this inspector opened it from a URL."""
        if self._owned:
            self._owned = False
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- type versions -----------------------------------------------------------

    def check(self, registry: Registry) -> CheckReport:
        """Decode every live instance's state and pending events with ``registry``'s
        job definitions (types, versions, upcasters) and list those that would fail.

        Run it before deploying new job definitions; nothing is written. Instances
        of jobs the registry does not define are not checked.
        """
        if not isinstance(cast(object, registry), Registry):
            msg = f"check() needs the app's durable_jobs.Registry, got {registry!r:.80}."
            raise ConfigurationError(msg)
        return check_instances(self._store, registry)

    # ---- instances ---------------------------------------------------------------

    def instances(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> InstancePage:
        """Instances ordered by (kind, job, instance id), filtered, ``limit`` at a time.

        Pass a page's ``next_cursor`` as ``cursor`` to get the next page
        (``next_cursor`` is None on the last one). An instance whose log cannot
        be read is listed from the index with its ``error`` set.
        """
        if kind is not None:
            _check_kind(kind)
        _check_status(status)
        _check_filter("job", job)
        _check_filter("cursor", cursor)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            msg = f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}."
            raise ValidationError(msg)
        after = _decode_cursor(cursor) if cursor is not None else None
        rows = self._store.list_instances(
            kind=kind, job=job, status=status, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [self._summary_of_row(row) for row in rows]
        return InstancePage(
            items=items, next_cursor=_encode_cursor(rows[-1]) if more and rows else None
        )

    def iter_instances(
        self, *, kind: str | None = None, job: str | None = None, status: str | None = None
    ) -> Iterator[InstanceSummary]:
        """Every instance matching the filters (see :meth:`instances`), page by page."""
        cursor: str | None = None
        while True:
            page = self.instances(kind=kind, job=job, status=status, cursor=cursor, limit=500)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _summary_of_row(self, row: IndexRow) -> InstanceSummary:
        label = _label(row.kind, row.job, row.instance_id)
        error: str | None
        try:
            agg = self._store.get_by_uuid(row.instance_uuid, label=label)
        except DurableJobsError as exc:
            agg, error = None, str(exc)
        else:
            error = None if agg is not None else f"Cannot read {label}: its log is missing."
        if agg is not None:
            return _summary(agg)
        return InstanceSummary(
            kind=row.kind,
            job=row.job,
            instance_id=row.instance_id,
            instance_uuid=row.instance_uuid,
            status=row.status,
            version=row.version,
            updated_at=row.updated_at,
            due_at=row.due_at,
            error=error,
        )

    def status(self, kind: str, job: str, instance_id: str) -> InstanceSummary | None:
        """The instance as it is now (also when terminated), or None if it never existed."""
        uuid = _uuid_of(kind, job, instance_id)
        agg = self._store.get_by_uuid(uuid, label=_label(kind, job, instance_id))
        return None if agg is None else _summary(agg)

    def history(
        self,
        kind: str,
        job: str,
        instance_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
    ) -> list[RecordedEvent]:
        """The instance's records from ``from_version`` to ``to_version`` (inclusive), oldest
        first, across all its generations; empty if it never existed.

        Run records carry ``run_count``, ``attempt`` and ``state_before`` (the
        state the run started from), also when the range starts after the run's
        earlier records.
        """
        uuid = _uuid_of(kind, job, instance_id)
        _check_version(from_version, "from_version")
        if to_version is not None:
            _check_version(to_version, "to_version")
        label = _label(kind, job, instance_id)
        before = None
        if from_version > 1:
            before = self._store.get_by_uuid(uuid, version=from_version - 1, label=label)
            if before is None or before.version < from_version - 1:
                return []
        events = self._store.history(uuid, gt=from_version - 1, lte=to_version)
        return to_records(events, kind=kind, job=job, instance_id=instance_id, before=before)

    # ---- time travel -------------------------------------------------------------

    def state_at(
        self,
        kind: str,
        job: str,
        instance_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> StateAt | None:
        """The instance right after record ``version``, or as it was at time ``at``.

        With neither, the latest version. ``at`` takes the last record whose time
        is at or before it (so a run's records, committed together, count
        together). None if the instance never existed, or did not exist yet at
        ``at``. A ``version`` outside 1..latest is a :class:`ValidationError`.
        """
        if version is not None and at is not None:
            msg = "Pass either version or at, not both."
            raise ValidationError(msg)
        uuid = _uuid_of(kind, job, instance_id)
        label = _label(kind, job, instance_id)
        # The index knows the latest version: versions before a corrupt record still read.
        row = self._store.index_row(uuid)
        if row is None:
            return None
        if at is not None:
            version = self._version_at(uuid, _aware(at), label)
            if version is None:
                return None
        if version is None:
            version = row.version
        _check_version(version, "version")
        if version > row.version:
            msg = f"{label} has versions 1 to {row.version}; there is no version {version}."
            raise ValidationError(msg)
        agg = self._store.get_by_uuid(uuid, version=version, label=label)
        if agg is None:  # pragma: no cover - the index row says it exists
            return None
        return _state_view(agg, row.version)

    def _version_at(self, uuid: UUID, at: datetime, label: str) -> int | None:
        found: int | None = None
        try:
            events = self._store.history(uuid)
        except DurableJobsError as exc:
            raise type(exc)(str(exc).replace(f"instance {uuid}", label)) from exc
        for event in events:
            if event.timestamp > at:
                break
            found = event.originator_version
        return found

    def diff(
        self,
        kind: str,
        job: str,
        instance_id: str,
        from_version: int,
        to_version: int,
        *,
        full: bool = False,
    ) -> StateDiff | None:
        """What changed in the state (``full``: in all the instance's data) between two
        versions; None if the instance never existed."""
        before = self.state_at(kind, job, instance_id, version=from_version)
        if before is None:
            return None
        after = self.state_at(kind, job, instance_id, version=to_version)
        if after is None:  # pragma: no cover - it existed a moment ago
            return None
        old, new = (before.data, after.data) if full else (before.state, after.state)
        return StateDiff(before=before, after=after, full=full, changes=json_diff(old, new))

    # ---- alarms and stats --------------------------------------------------------

    def alarms(
        self, *, now: datetime | None = None, overdue: bool = False, limit: int = 100
    ) -> list[PendingAlarm]:
        """Pending alarms, earliest first (``overdue``: only those due at or before ``now``).

        ``now`` defaults to the current UTC time; ``lateness`` is relative to it.
        """
        when = _aware(now) if now is not None else datetime.now(UTC)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            msg = f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}."
            raise ValidationError(msg)
        rows = self._store.due_alarms(when, limit) if overdue else self._store.next_alarms(limit)
        return [
            PendingAlarm(
                kind=row.kind,
                job=row.job,
                instance_id=row.instance_id,
                instance_uuid=row.instance_uuid,
                status=row.status,
                due_at=row.due_at,
                lateness=when - row.due_at,
            )
            for row in rows
            if row.due_at is not None
        ]

    def stats(
        self, *, kind: str | None = None, job: str | None = None, now: datetime | None = None
    ) -> list[JobStats]:
        """Per job: instances by status, pending and overdue alarms (relative to ``now``).

        Read from the index alone (no log is replayed), ordered by kind and job.
        """
        if kind is not None:
            _check_kind(kind)
        _check_filter("job", job)
        when = _aware(now) if now is not None else datetime.now(UTC)
        acc: dict[tuple[str, str], _Tally] = {}
        for row in self._store.iter_instances(kind=kind, job=job):
            acc.setdefault((row.kind, row.job), _Tally()).add(row, when)
        return [tally.stats(k, j) for (k, j), tally in sorted(acc.items())]


@dataclass
class _Tally:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    overdue: int = 0
    next_due: datetime | None = None
    oldest_overdue: datetime | None = None

    def add(self, row: IndexRow, now: datetime) -> None:
        self.total += 1
        self.by_status[row.status] = self.by_status.get(row.status, 0) + 1
        due = row.due_at
        if due is None:
            return
        self.pending += 1
        if self.next_due is None or due < self.next_due:
            self.next_due = due
        if due <= now:
            self.overdue += 1
            if self.oldest_overdue is None or due < self.oldest_overdue:
                self.oldest_overdue = due

    def stats(self, kind: str, job: str) -> JobStats:
        order = {s: i for i, s in enumerate(STATUSES)}
        return JobStats(
            kind=kind,
            job=job,
            total=self.total,
            by_status=dict(sorted(self.by_status.items(), key=lambda kv: order.get(kv[0], 99))),
            pending_alarms=self.pending,
            overdue_alarms=self.overdue,
            next_due_at=self.next_due,
            oldest_overdue_at=self.oldest_overdue,
        )


def _state_view(agg: JobInstance, latest: int) -> StateAt:
    d = agg.d
    return StateAt(
        kind=d.kind,
        job=d.job,
        instance_id=d.instance_id,
        instance_uuid=agg.id,
        version=agg.version,
        latest_version=latest,
        at=agg.modified_on,
        status=agg.status,
        live=d.live,
        state=_state_of(agg),
        due_at=d.alarm_at,
        data=d.model_dump(mode="json"),
    )


def _check_version(version: object, name: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        msg = f"{name} must be a whole number >= 1 (versions count from 1), not {version!r}."
        raise ValidationError(msg)


def _aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        msg = f"A time must be a timezone-aware datetime, not {at!r}."
        raise ValidationError(msg)
    return at.astimezone(UTC)
