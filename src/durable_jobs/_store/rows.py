"""The store's reads of raw rows and of the index (export/import, purge, tail, tools).

A mixin of :class:`~durable_jobs.adapters.Store`: the methods here only read
and write through the store's eventsourcing application and its recorder's
:class:`~durable_jobs.adapters.InstanceIndex`, so adapters need not touch them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import (
    ConcurrencyError,
    DurableJobsError,
    StoreError,
    UnreadableIndexRow,
)
from durable_jobs._store.capabilities import DeletesInstances
from durable_jobs._store.crypto import is_encrypted, row_aad
from durable_jobs._store.index import (
    INDEX_KWARG,
    TYPE_VERSIONS_KWARG,
    IndexRow,
    InstanceIndex,
    Unreadable,
    reporting_unreadable,
)
from durable_jobs._store.snapshots import write_snapshots

if TYPE_CHECKING:
    from collections.abc import Iterable

    from durable_jobs._store.base import JobsApplication
    from durable_jobs._store.crypto import Cipher
    from durable_jobs._store.urls import StoreURL

__all__ = ["RowsAndIndex", "index_row_of", "label", "page_end"]

log = logging.getLogger("durable_jobs.store")
_T = TypeVar("_T")


class RowsAndIndex:
    """Raw rows and index queries of a store (see :class:`~durable_jobs.adapters.Store`)."""

    if TYPE_CHECKING:
        # Provided by Store.
        url: StoreURL
        snapshot_interval: int
        _app: JobsApplication
        _cipher: Cipher | None
        _known_versions: set[tuple[str, str, int]]

        @property
        def index(self) -> InstanceIndex: ...

        def _errors(
            self, error: str | Callable[[Exception], DurableJobsError]
        ) -> AbstractContextManager[None]: ...

        def _read_error(self, uuid: UUID, label: str | None, exc: Exception) -> StoreError: ...

        def _write(self, write: Callable[[], object], rows: Sequence[IndexRow]) -> None: ...

        def _new_type_versions(
            self, found: Iterable[tuple[str, str, int]]
        ) -> list[tuple[str, str, int]]: ...

    # ---- maintenance: raw rows (export/import, purge, tail) ------------------------

    def stored_events(
        self,
        uuid: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """One instance's rows exactly as stored (topic and JSON, not decoded), oldest
        first (newest first with ``desc``)."""
        recorder = self._app.recorder
        return self._query(
            lambda: list(recorder.select_events(uuid, gt=gt, lte=lte, desc=desc, limit=limit))
        )

    def decode(self, stored: StoredEvent) -> JobInstance.Event:
        """The event of one stored row; a corrupt row raises :class:`StoreError` naming it."""
        uuid = stored.originator_id
        with self._errors(
            lambda exc: self._read_error(
                uuid if isinstance(uuid, UUID) else UUID(str(uuid)), None, exc
            )
        ):
            return cast("JobInstance.Event", self._app.mapper.to_domain_event(stored))

    def snapshot_version(self, uuid: UUID, *, lte: int | None = None) -> int | None:
        """The version of the latest snapshot of ``uuid`` (at most ``lte``), or None."""
        snapshots = self._app.snapshots
        if snapshots is None:
            return None
        recorder = snapshots.recorder
        rows = self._query(lambda: recorder.select_events(uuid, lte=lte, desc=True, limit=1))
        return rows[0].originator_version if rows else None

    def import_events(
        self, stored: Sequence[StoredEvent], instances: Sequence[JobInstance]
    ) -> None:
        """Write rows recorded elsewhere verbatim (versions, timestamps, JSON), in one
        transaction with the index rows of ``instances`` (rebuilt from those rows).

        ``instances`` are the aggregates the rows rebuild to, with no pending
        events. If any of the versions is already taken, :class:`ConcurrencyError`
        is raised and nothing is written. Instances at least
        ``snapshot_interval`` events long are snapshotted afterwards (a cache).
        """
        rows = [index_row_of(i) for i in instances]
        recorder = self._app.recorder
        versions = self._new_type_versions(
            (i.d.kind, i.d.job, version) for i in instances for version in i.type_versions()
        )
        if self._cipher is not None:
            # Plain rows (from an export) are encrypted like every row this store writes.
            cipher = self._cipher
            stored = [
                s
                if is_encrypted(s.state)
                else StoredEvent(
                    s.originator_id,
                    s.originator_version,
                    s.topic,
                    cipher.encrypt(
                        bytes(s.state), row_aad(s.originator_id, s.originator_version, s.topic)
                    ),
                )
                for s in stored
            ]
        kwargs = {INDEX_KWARG: rows, TYPE_VERSIONS_KWARG: versions}
        self._write(lambda: recorder.insert_events(list(stored), **kwargs), rows)
        self._known_versions.update(versions)
        snapshots = self._app.snapshots
        interval = self.snapshot_interval
        if snapshots is not None and interval:
            write_snapshots(snapshots, [inst for inst in instances if inst.version >= interval])

    def delete_instance(self, uuid: UUID, *, version: int) -> tuple[int, int]:
        """Delete a terminated instance's events, snapshots and index row, in one transaction.

        Only if its index row still says ``terminated`` at ``version``; else
        :class:`ConcurrencyError` and nothing is deleted. Returns how many
        events and snapshots were deleted. Adapters offer it with
        :class:`~durable_jobs.adapters.DeletesInstances`; a store without it
        cannot purge (:class:`StoreError`).
        """
        if not isinstance(self, DeletesInstances):
            msg = f"The store {self.url} ({type(self).__name__}) cannot delete instances."
            raise StoreError(msg)
        with self._errors(f"Could not purge {uuid} in the store {self.url}"):
            counts = self.delete_instance_rows(uuid, version)
        if counts is None:
            msg = (
                f"Instance {uuid} changed while it was being deleted (it is no longer "
                f"terminated at version {version}); nothing was deleted."
            )
            raise ConcurrencyError(msg)
        return counts

    def last_position(self) -> int:
        """The global position of the latest committed event (0: none); see events_after."""
        return self._query(lambda: self._app.recorder.max_notification_id() or 0)

    def events_after(self, position: int, limit: int = 500) -> list[Notification]:
        """Rows committed after global ``position``, in commit order (``.id`` is the position)."""
        recorder = self._app.recorder
        return self._query(
            lambda: list(recorder.select_notifications(position, limit, inclusive_of_start=False))
        )

    # ---- the index ---------------------------------------------------------------

    def due_alarms(
        self, before: datetime, limit: int = 1000, *, unreadable: Unreadable | None = None
    ) -> list[IndexRow]:
        """Instances whose alarm is due at or before ``before``, earliest first.

        ``unreadable`` (here and in the other index reads): told of each index row
        that cannot be read, which is then left out; without it such a row fails
        the read with a :class:`~durable_jobs.StoreError` naming it.
        """
        return self._query(lambda: self.index.due_alarms(before, limit), unreadable)

    def next_alarms(
        self,
        limit: int = 1000,
        after: datetime | None = None,
        *,
        unreadable: Unreadable | None = None,
        jobs: Collection[tuple[str, str]] | None = None,
    ) -> list[IndexRow]:
        """The next ``limit`` alarms, earliest first; with ``jobs`` (``(kind, job)``
        pairs), only those of their instances (``after`` is not given then)."""
        if jobs is not None:
            return self._query(lambda: self.index.next_alarms_of(jobs, limit), unreadable)
        return self._query(lambda: self.index.next_alarms(limit, after), unreadable)

    def index_row(self, uuid: UUID) -> IndexRow | None:
        """The index row of one instance."""
        return self._query(lambda: self.index.index_row(uuid))

    def unindexed_logs(self, limit: int = 20) -> list[tuple[UUID, int]]:
        """Up to ``limit`` instance logs that have no index row, as (uuid, last version):
        a store written to outside durable-jobs, or tables restored from different
        backups. The runtime never runs such an instance. Empty if the adapter cannot
        tell."""
        return self._query(lambda: self.index.select_unindexed(limit)) or []

    def list_instances(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
        unreadable: Unreadable | None = None,
    ) -> list[IndexRow]:
        """Index rows ordered by (kind, job, instance_id); page with ``after``."""
        return self._query(
            lambda: self.index.select_index(
                kind=kind, job=job, status=status, after=after, limit=limit
            ),
            unreadable,
        )

    def iter_instances(
        self, *, unreadable: Unreadable | None = None, **filters: Any
    ) -> Iterator[IndexRow]:
        """Every index row matching ``filters`` (see :meth:`list_instances`), paged."""
        after: tuple[str, str, str] | None = None
        while True:
            # The next page starts after the last row the query returned, read or not.
            skipped: list[UnreadableIndexRow] = []
            page = self.list_instances(
                after=after,
                limit=500,
                unreadable=skipped.append if unreadable is not None else None,
                **filters,
            )
            yield from page
            for error in skipped:
                if unreadable is not None:
                    unreadable(error)
            after = page_end(page, skipped)
            if len(page) + len(skipped) < 500 or after is None:
                return

    def _query(self, fn: Callable[[], _T], unreadable: Unreadable | None = None) -> _T:
        with self._errors(f"Could not read the store {self.url}"):
            if unreadable is None:  # the runtime's reads: a row that cannot be read fails
                return fn()
            with reporting_unreadable(unreadable):
                return fn()


def page_end(
    rows: Sequence[IndexRow], skipped: Sequence[UnreadableIndexRow]
) -> tuple[str, str, str] | None:
    """The key the next page of an index listing starts after: that of the last row
    the query returned, read (``rows``) or not (``skipped``); None if none has one."""
    keys = [(r.kind, r.job, r.instance_id) for r in rows[-1:]]
    keys += [e.key for e in skipped if e.key is not None]
    return max(keys, default=None)


def label(kind: str, job: str, instance_id: str) -> str:
    """How messages name an instance."""
    return f"{kind} job {job!r} instance {instance_id!r}"


def index_row_of(inst: JobInstance) -> IndexRow:
    """The index row of an instance as it stands."""
    d = inst.d
    # Built without the dataclass __init__ (built(IndexRow, ...), inline): every save.
    row = _new_object(IndexRow)
    _set_attribute(
        row,
        "__dict__",
        {
            # _id, _version, _modified_on: what eventsourcing's properties return.
            "instance_uuid": inst._id,
            "kind": d.kind,
            "job": d.job,
            "instance_id": d.instance_id,
            "status": inst.status,
            "due_at": d.alarm_at,
            "version": inst._version,
            "updated_at": inst._modified_on,
        },
    )
    return row


_new_object = object.__new__
_set_attribute = object.__setattr__
