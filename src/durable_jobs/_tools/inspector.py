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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, cast, final
from uuid import UUID

from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import (
    ConfigurationError,
    DurableJobsError,
    UnreadableIndexRow,
    ValidationError,
)
from durable_jobs._evolution import CheckReport, check_instances, refuse_missing_upcasters
from durable_jobs._records import RecordedEvent, iter_records
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow, Unreadable
from durable_jobs._store.registry import open_store
from durable_jobs._tools.args import (
    STATUSES,
    aware,
    check_filter,
    check_kind,
    check_limit,
    check_status,
    check_version,
    decode_cursor,
    encode_cursor,
    label_of,
    uuid_of,
)
from durable_jobs._tools.diff import json_diff
from durable_jobs._tools.views import (
    InstancePage,
    InstanceSummary,
    JobStats,
    PendingAlarm,
    StateAt,
    StateDiff,
)

__all__ = ["HISTORY_PAGE", "Inspector"]

#: Records :meth:`Inspector.iter_history` reads from the store at a time.
HISTORY_PAGE = 1000


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

        Raises :class:`ConfigurationError` where ``open_jobs`` would refuse the
        registry whatever the store holds: a job missing a required handler, or
        (when every instance reads) a job at ``version`` N missing the upcaster of
        a step from 1 to N.
        """
        if not isinstance(cast(object, registry), Registry):
            msg = f"check() needs the app's durable_jobs.Registry, got {registry!r:.80}."
            raise ConfigurationError(msg)
        registry.check()  # what open_jobs refuses before it opens the store
        report = check_instances(self._store, registry)
        if report.ok:
            refuse_missing_upcasters(registry)  # what open_jobs refuses next
        return report

    # ---- instances ---------------------------------------------------------------

    def instances(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        unreadable: Unreadable | None = None,
    ) -> InstancePage:
        """Instances ordered by (kind, job, instance id), filtered, ``limit`` at a time.

        Pass a page's ``next_cursor`` as ``cursor`` to get the next page
        (``next_cursor`` is None on the last one). An instance whose log cannot
        be read is listed from the index with its ``error`` set. An index row that
        cannot be read fails the call with a :class:`~durable_jobs.StoreError`
        naming it or, given ``unreadable``, is passed to it and left out.
        """
        if kind is not None:
            check_kind(kind)
        check_status(status)
        check_filter("job", job)
        check_filter("cursor", cursor)
        check_limit(limit)
        after = decode_cursor(cursor) if cursor is not None else None
        skipped: list[UnreadableIndexRow] = []
        rows = self._store.list_instances(
            kind=kind,
            job=job,
            status=status,
            after=after,
            limit=limit + 1,
            unreadable=None if unreadable is None else skipped.append,
        )
        # The rows read and those skipped, in index order: the page is the first
        # ``limit`` of them, and the next one starts after its last, read or not.
        entries: list[tuple[tuple[str, str, str], IndexRow | UnreadableIndexRow]] = [
            ((r.kind, r.job, r.instance_id), r) for r in rows
        ]
        entries += [(e.key, e) for e in skipped if e.key is not None]
        entries.sort(key=lambda entry: entry[0])
        page = entries[:limit]
        for error in [e for _, e in page if isinstance(e, UnreadableIndexRow)] + [
            e for e in skipped if e.key is None
        ]:
            assert unreadable is not None
            unreadable(error)
        items = [self._summary_of_row(e) for _, e in page if isinstance(e, IndexRow)]
        more = len(entries) > limit
        return InstancePage(
            items=items, next_cursor=encode_cursor(page[-1][0]) if more and page else None
        )

    def iter_instances(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        unreadable: Unreadable | None = None,
    ) -> Iterator[InstanceSummary]:
        """Every instance matching the filters (see :meth:`instances`), page by page."""
        cursor: str | None = None
        while True:
            page = self.instances(
                kind=kind,
                job=job,
                status=status,
                cursor=cursor,
                limit=500,
                unreadable=unreadable,
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _summary_of_row(self, row: IndexRow) -> InstanceSummary:
        label = label_of(row.kind, row.job, row.instance_id)
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
        uuid = uuid_of(kind, job, instance_id)
        agg = self._store.get_by_uuid(uuid, label=label_of(kind, job, instance_id))
        return None if agg is None else _summary(agg)

    def history(
        self,
        kind: str,
        job: str,
        instance_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        states: bool = True,
    ) -> list[RecordedEvent]:
        """The instance's records from ``from_version`` to ``to_version`` (inclusive), oldest
        first, across all its generations; empty if it never existed. A
        ``from_version`` after ``to_version`` is a :class:`ValidationError`.

        Run records carry ``run_count``, ``attempt`` and ``state_before`` (the
        state the run started from), also when the range starts after the run's
        earlier records. Only the records asked for are read; a run's
        ``state_before`` rebuilds the instance before the first run shown (from
        its latest snapshot before it, else from its first record), once: later
        runs' states come from replaying the records shown on it. With
        ``states`` False, ``state_before`` is None and nothing else is read.
        """
        return list(
            self.iter_history(
                kind,
                job,
                instance_id,
                from_version=from_version,
                to_version=to_version,
                states=states,
            )
        )

    def iter_history(
        self,
        kind: str,
        job: str,
        instance_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        states: bool = True,
        page: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """:meth:`history`, one record at a time: the log (and the rebuild of the instance
        before the first run shown) is read ``page`` records at a time, so a long log
        is never held whole (``page``: :data:`HISTORY_PAGE` by default)."""
        page = page or HISTORY_PAGE
        uuid = uuid_of(kind, job, instance_id)
        check_version(from_version, "from_version")
        if to_version is not None:
            check_version(to_version, "to_version")
            if from_version > to_version:
                msg = (
                    f"from_version {from_version} is after to_version {to_version}: give "
                    "from_version <= to_version."
                )
                raise ValidationError(msg)
        label = label_of(kind, job, instance_id)

        def rebuild(version: int) -> JobInstance | None:
            # Only for a run record's state: from the latest snapshot at or before
            # ``version`` (the log from its start only when there is none), paged.
            if version < 1:
                return None
            return self._store.rebuild(uuid, version=version, label=label, page=page)

        events = self._store.iter_history(
            uuid, gt=from_version - 1, lte=to_version, label=label, page=page
        )
        return iter_records(
            events, kind=kind, job=job, instance_id=instance_id, rebuild=rebuild, states=states
        )

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
        uuid = uuid_of(kind, job, instance_id)
        label = label_of(kind, job, instance_id)
        # The index knows the latest version: versions before a corrupt record still read.
        row = self._store.index_row(uuid)
        if row is None:
            return None
        if at is not None:
            version = self._version_at(uuid, aware(at), label)
            if version is None:
                return None
        if version is None:
            version = row.version
        check_version(version, "version")
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
        self,
        *,
        now: datetime | None = None,
        overdue: bool = False,
        limit: int = 100,
        unreadable: Unreadable | None = None,
    ) -> list[PendingAlarm]:
        """Pending alarms, earliest first (``overdue``: only those due at or before ``now``).

        ``now`` defaults to the current UTC time; ``lateness`` is relative to it.
        ``unreadable``: as for :meth:`instances`.
        """
        when = aware(now) if now is not None else datetime.now(UTC)
        check_limit(limit)
        rows = (
            self._store.due_alarms(when, limit, unreadable=unreadable)
            if overdue
            else self._store.next_alarms(limit, unreadable=unreadable)
        )
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
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        now: datetime | None = None,
        unreadable: Unreadable | None = None,
    ) -> list[JobStats]:
        """Per job: instances by status, pending and overdue alarms (relative to ``now``).

        Read from the index alone (no log is replayed), ordered by kind and job.
        ``unreadable``: as for :meth:`instances`.
        """
        if kind is not None:
            check_kind(kind)
        check_filter("job", job)
        when = aware(now) if now is not None else datetime.now(UTC)
        acc: dict[tuple[str, str], _Tally] = {}
        for row in self._store.iter_instances(kind=kind, job=job, unreadable=unreadable):
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
