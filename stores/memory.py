"""``memory://``: everything in this process's memory (tests, demos). Not durable."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    StoredEvent,
)
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOFactory
from eventsourcing.utils import Environment

from durable_jobs.adapters import (
    INDEX_KWARG,
    TYPE_VERSIONS_KWARG,
    ConfigurationError,
    IndexRow,
    InstanceIndex,
    Store,
)

__all__ = ["MemoryApplicationRecorder", "MemoryStore"]


class MemoryApplicationRecorder(POPOApplicationRecorder, InstanceIndex):
    """eventsourcing's in-memory recorder plus a dict of index rows, updated under its lock."""

    def __init__(self) -> None:
        super().__init__()
        #: By ``uuid.int`` (a uuid's own ``__hash__`` is Python code, an int's is not).
        self._index: dict[int, IndexRow] = {}
        #: The index rows' alarms, earliest first: ``(due_at, uuid.int)`` (uuids order
        #: like their int, and their hex). Entries go stale when an alarm changes
        #: (they are dropped when met); a row's current alarm always has an entry, so
        #: the next alarms are read without a full scan.
        self._alarms: list[tuple[datetime, int]] = []
        self._type_versions: set[tuple[str, str, int]] = set()
        #: ``_stored_events_index[str(id)]`` by the originator id as given, a uuid by its
        #: int (the same dicts): a save finds its instance's versions without
        #: ``str(uuid)``, nor a uuid's Python ``__hash__``.
        self._versions_by_id: dict[int | str, dict[int, int]] = {}

    def _versions_of(self, originator_id: UUID | str) -> dict[int, int]:
        """The ``{version: position}`` of one originator's stored events."""
        key = originator_id.int if isinstance(originator_id, UUID) else originator_id
        versions = self._versions_by_id.get(key)
        if versions is None:
            versions = self._versions_by_id[key] = self._stored_events_index[str(originator_id)]
        return versions

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = self._insert(stored_events, kwargs)
        if self._listeners:
            self._notify_listeners()
        return ids

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self._insert(stored_events, kwargs)

    def _insert(self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]) -> list[int]:
        """eventsourcing's checks and table update (``_assert_uniqueness``,
        ``_update_table``) in one pass, then the index rows, under the lock (the
        keywords of ``insert_events`` passed on as they are, not unpacked again)."""
        with self._database_lock:
            table = self._stored_events
            # Check that no event is recorded already, nor given twice (an originator's
            # events are told apart by its versions dict: the same for its uuid and str).
            targets: list[dict[int, int]] = []
            new: set[tuple[int, int]] = set()
            last_id: UUID | str | None = None
            versions: dict[int, int] = {}
            by_id = self._versions_by_id
            for s in stored_events:
                oid = s.originator_id
                if oid is not last_id:
                    # self._versions_of(oid), inline for a uuid already seen.
                    found = by_id.get(oid.int) if isinstance(oid, UUID) else None
                    versions = found if found is not None else self._versions_of(oid)
                    last_id = oid
                if s.originator_version in versions:
                    msg = f"Stored event already recorded: {s}"
                    raise IntegrityError(msg)
                new.add((id(versions), s.originator_version))
                targets.append(versions)
            if len(new) < len(stored_events):
                msg = f"Stored events are not unique: {stored_events}"
                raise IntegrityError(msg)
            rows = kwargs.get(INDEX_KWARG) or ()
            # Nothing is applied before this point, so a fault leaves no trace.
            if self.fault_hook is not None:  # self._run_fault_hook(), inline
                self.fault_hook()
            ids: list[int] = []
            position = len(table)
            for s, versions in zip(stored_events, targets, strict=True):
                table.append(s)
                versions[s.originator_version] = position
                position += 1
                ids.append(position)
            index, alarms = self._index, self._alarms
            for row in rows:
                uuid = row.instance_uuid.int
                old = index.get(uuid)
                index[uuid] = row
                due = row.due_at
                if due is not None and (old is None or old.due_at != due):
                    heapq.heappush(alarms, (due, uuid))
            if len(alarms) > 2 * len(index) + 64:
                self._alarms = [
                    (r.due_at, key) for key, r in index.items() if r.due_at is not None
                ]
                heapq.heapify(self._alarms)
            versions_given = kwargs.get(TYPE_VERSIONS_KWARG)
            if versions_given:
                self._type_versions.update(versions_given)
            return ids

    def select_type_versions(self) -> list[tuple[str, str, int]]:
        with self._database_lock:
            return sorted(self._type_versions)

    def delete_instance(
        self, instance_uuid: UUID, version: int, snapshots: POPOAggregateRecorder | None
    ) -> tuple[int, int] | None:
        """Drop one terminated instance's events, snapshots and index row (see
        :meth:`Store.delete_instance`). Later events' positions shift down."""
        with self._database_lock:
            row = self._index.get(instance_uuid.int)
            if row is None or row.version != version or row.status != "terminated":
                return None
            events = _drop(self, instance_uuid)
            self._versions_by_id.clear()  # _drop made new version dicts
            counts = (events, _drop(snapshots, instance_uuid) if snapshots is not None else 0)
            del self._index[instance_uuid.int]
            return counts

    def due_alarms(self, before: datetime, limit: int) -> list[IndexRow]:
        with self._database_lock:
            return self._earliest(limit, lambda due: due <= before, None)

    def next_alarms(self, limit: int, after: datetime | None = None) -> list[IndexRow]:
        with self._database_lock:
            return self._earliest(limit, None, after)

    def _earliest(
        self, limit: int, until: Callable[[datetime], bool] | None, after: datetime | None
    ) -> list[IndexRow]:
        """The ``limit`` earliest alarms (due while ``until`` holds, later than ``after``):
        taken off the heap, stale entries dropped, the current ones put back."""
        heap, index = self._alarms, self._index
        taken: list[tuple[datetime, int]] = []
        seen: set[int] = set()
        rows: list[IndexRow] = []
        try:
            while heap and len(rows) < limit:
                entry = heap[0]
                due, uuid = entry
                if until is not None and not until(due):
                    break
                heapq.heappop(heap)
                row = index.get(uuid)
                if row is None or row.due_at != due or uuid in seen:
                    continue  # stale: the alarm changed, or the instance was deleted
                seen.add(uuid)
                taken.append(entry)
                if after is None or due > after:
                    rows.append(row)
        finally:
            for entry in taken:
                heapq.heappush(heap, entry)
        return rows

    def index_row(self, instance_uuid: UUID) -> IndexRow | None:
        with self._database_lock:
            return self._index.get(instance_uuid.int)

    def select_index(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[IndexRow]:
        with self._database_lock:
            rows = [
                r
                for r in self._index.values()
                if (kind is None or r.kind == kind)
                and (job is None or r.job == job)
                and (status is None or r.status == status)
                and (after is None or (r.kind, r.job, r.instance_id) > after)
            ]
        return heapq.nsmallest(limit, rows, key=lambda r: (r.kind, r.job, r.instance_id))


def _drop(recorder: POPOAggregateRecorder, instance_uuid: UUID) -> int:
    """Remove every row of ``instance_uuid`` from an in-memory recorder; how many."""
    with recorder._database_lock:
        kept = [s for s in recorder._stored_events if s.originator_id != instance_uuid]
        dropped = len(recorder._stored_events) - len(kept)
        if dropped:
            recorder._stored_events = kept
            recorder._stored_events_index.clear()
            for position, s in enumerate(kept):
                recorder._stored_events_index[str(s.originator_id)][s.originator_version] = (
                    position
                )
        return dropped


class _MemoryFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return MemoryApplicationRecorder()


class MemoryStore(Store):
    """``memory://`` — a store in this process's memory; gone when the process ends."""

    scheme = "memory"
    durable = False
    blocking = False

    def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        url = self.url
        if (
            url.host
            or url.path not in ("", "/")
            or url.username is not None
            or url.password is not None
            or url.port is not None
        ):
            msg = f"The memory store takes no location: use 'memory://', not {str(self.url)!r}."
            raise ConfigurationError(msg)
        return _MemoryFactory(env)

    def _indexed(self, uuids: Sequence[UUID]) -> set[UUID] | None:
        recorder = self._app.recorder
        assert isinstance(recorder, MemoryApplicationRecorder)
        with recorder._database_lock:
            return {u for u in uuids if u.int in recorder._index}

    def delete_instance_rows(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        """Purge support (:class:`~durable_jobs.adapters.DeletesInstances`), under the lock."""
        recorder = self._app.recorder
        assert isinstance(recorder, MemoryApplicationRecorder)
        snapshots = self._app.snapshots
        snapshot_recorder = snapshots.recorder if snapshots is not None else None
        assert snapshot_recorder is None or isinstance(snapshot_recorder, POPOAggregateRecorder)
        return recorder.delete_instance(uuid, version, snapshot_recorder)
