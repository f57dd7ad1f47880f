"""``memory://``: everything in this process's memory (tests, demos). Not durable."""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Collection, Container, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    Notification,
    StoredEvent,
)
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOFactory
from eventsourcing.utils import Environment, reversed_keys

from durable_jobs.adapters import (
    INDEX_KWARG,
    TYPE_VERSIONS_KWARG,
    ConfigurationError,
    IndexRow,
    InstanceIndex,
    Store,
    StoreURL,
)

__all__ = ["MemoryApplicationRecorder", "MemoryStore"]

#: An event row as the recorder keeps it: ``(originator key, version, topic, state)``,
#: the key a uuid's ``int`` (its uuid in ``_uuids``) or the id as given (a str). Rows
#: of ints, strs and bytes only: the garbage collector stops tracking them at their
#: first collection, where a ``StoredEvent`` (and its ``__dict__``) would be traversed
#: by every full collection for as long as the store lives.
_Row = tuple[int | str, int, str, bytes]


class MemoryApplicationRecorder(POPOApplicationRecorder, InstanceIndex):
    """eventsourcing's in-memory recorder plus a dict of index rows, updated under its lock."""

    def __init__(self) -> None:
        super().__init__()
        #: The event rows (see :data:`_Row`), in commit order: what eventsourcing's
        #: ``_stored_events`` holds, as tuples (``_stored_events_index`` is kept as is).
        self._rows: list[_Row] = []
        #: The uuid of each row key that is a uuid's int (the first one given).
        self._uuids: dict[int, UUID] = {}
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
        ids = self._insert(_rows_of(stored_events), kwargs)
        if self._listeners:
            self._notify_listeners()
        return ids

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self._insert(_rows_of(stored_events), kwargs)

    def write_rows(
        self, rows: Sequence[tuple[UUID | str, int, str, bytes]], kwargs: dict[str, Any]
    ) -> None:
        """:meth:`insert_events` of the events' ``(originator id, version, topic,
        state)``, without ``StoredEvent`` objects nor notification ids (the store's
        saves do not read them). Same checks, same errors."""
        self._insert(rows, kwargs)
        if self._listeners:
            self._notify_listeners()

    def _insert(
        self, rows: Sequence[tuple[UUID | str, int, str, bytes]], kwargs: dict[str, Any]
    ) -> list[int]:
        """eventsourcing's checks and table update (``_assert_uniqueness``,
        ``_update_table``) in one pass, then the index rows, under the lock (the
        keywords of ``insert_events`` passed on as they are, not unpacked again)."""
        with self._database_lock:
            # Check that no event is recorded already, nor given twice (an originator's
            # events are told apart by its versions dict: the same for its uuid and str).
            one = self._one_originator(rows)
            if one is not None:
                # A save's usual rows: one instance, versions ascending (none twice).
                key, versions = one
                for row in rows:
                    if row[1] in versions:
                        msg = f"Stored event already recorded: {StoredEvent(*row)}"
                        raise IntegrityError(msg)
                keys: Sequence[int | str] = (key,) * len(rows)
                targets: Sequence[dict[int, int]] = (versions,) * len(rows)
            else:
                keys, targets = self._checked_targets(rows)
            index_rows = kwargs.get(INDEX_KWARG) or ()
            # Nothing is applied before this point, so a fault leaves no trace.
            if self.fault_hook is not None:  # self._run_fault_hook(), inline
                self.fault_hook()
            table = self._rows
            ids: list[int] = []
            position = len(table)
            for (_, version, topic, state), key, versions in zip(rows, keys, targets, strict=True):
                table.append((key, version, topic, state))
                versions[version] = position
                position += 1
                ids.append(position)
            if index_rows:
                self._put_index(index_rows)
            versions_given = kwargs.get(TYPE_VERSIONS_KWARG)
            if versions_given:
                self._type_versions.update(versions_given)
            return ids

    def _one_originator(
        self, rows: Sequence[tuple[UUID | str, int, str, bytes]]
    ) -> tuple[int | str, dict[int, int]] | None:
        """The row key and versions dict of ``rows``' one originator, if they are all of
        one (the same object) with versions strictly ascending; else ``None``."""
        if not rows:
            return None
        oid = rows[0][0]
        last = -1
        for row in rows:
            if row[0] is not oid or row[1] <= last:
                return None
            last = row[1]
        if isinstance(oid, UUID):
            # self._versions_of(oid), inline for a uuid already seen.
            key: int | str = oid.int
            versions = self._versions_by_id.get(key)
            if versions is None:
                versions = self._versions_of(oid)
                self._uuids.setdefault(oid.int, oid)
            return key, versions
        return oid, self._versions_of(oid)

    def _checked_targets(
        self, rows: Sequence[tuple[UUID | str, int, str, bytes]]
    ) -> tuple[list[int | str], list[dict[int, int]]]:
        """Each row's key and versions dict, any rows: IntegrityError if one is recorded
        already or given twice."""
        targets: list[dict[int, int]] = []
        keys: list[int | str] = []
        new: set[tuple[int, int]] = set()
        last_id: UUID | str | None = None
        versions: dict[int, int] = {}
        key: int | str = ""
        for row in rows:
            oid, version = row[0], row[1]
            if oid is not last_id:
                if isinstance(oid, UUID):
                    key = oid.int
                    self._uuids.setdefault(key, oid)
                else:
                    key = oid
                versions = self._versions_of(oid)
                last_id = oid
            if version in versions:
                msg = f"Stored event already recorded: {StoredEvent(*row)}"
                raise IntegrityError(msg)
            new.add((id(versions), version))
            targets.append(versions)
            keys.append(key)
        if len(new) < len(rows):
            given = [StoredEvent(*row) for row in rows]
            msg = f"Stored events are not unique: {given}"
            raise IntegrityError(msg)
        return keys, targets

    def _put_index(self, rows: Sequence[IndexRow]) -> None:
        """Keep the index ``rows`` (under the lock), with their alarms."""
        index, alarms = self._index, self._alarms
        for row in rows:
            uuid = row.instance_uuid.int
            old = index.get(uuid)
            index[uuid] = row
            due = row.due_at
            if due is not None and (old is None or old.due_at != due):
                heapq.heappush(alarms, (due, uuid))
        if len(alarms) > 2 * len(index) + 64:
            self._alarms = [(r.due_at, key) for key, r in index.items() if r.due_at is not None]
            heapq.heapify(self._alarms)

    def _event(self, row: _Row) -> StoredEvent:
        """The ``StoredEvent`` of a kept row."""
        key, version, topic, state = row
        oid = self._uuids[key] if isinstance(key, int) else key
        return StoredEvent(
            originator_id=oid,  # eventsourcing keeps str ids too
            originator_version=version,
            topic=topic,
            state=state,
        )

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """eventsourcing's ``select_events``, from the kept rows."""
        with self._database_lock:
            results: list[StoredEvent] = []
            index = self._stored_events_index[str(originator_id)]
            positions = reversed_keys(index) if desc else index.keys()
            table = self._rows
            for p in positions:
                if gt is not None and not p > gt:
                    continue
                if lte is not None and not p <= lte:
                    continue
                results.append(self._event(table[index[p]]))
                if len(results) == limit:
                    break
            return results

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """eventsourcing's ``select_notifications``, from the kept rows."""
        with self._database_lock:
            results: list[Notification] = []
            if start is None:
                start = 1
                inclusive_of_start = True
            if not inclusive_of_start:
                start += 1
            i = max(start, 1) - 1  # zero-based; no negative indexes
            table = self._rows
            uuids = self._uuids
            while stop is None or i <= stop - 1:
                if i >= len(table):
                    break
                key, version, topic, state = table[i]
                i += 1
                if topics and topic not in topics:
                    continue
                results.append(
                    Notification(
                        id=i,
                        originator_id=uuids[key] if isinstance(key, int) else key,
                        originator_version=version,
                        topic=topic,
                        state=state,
                    )
                )
                if len(results) == limit:
                    break
            return results

    def max_notification_id(self) -> int | None:
        with self._database_lock:
            return len(self._rows) or None

    def _drop_rows(self, instance_uuid: UUID) -> int:
        """Remove every event row of ``instance_uuid``; how many (see :func:`_drop`)."""
        key = instance_uuid.int
        kept = [r for r in self._rows if r[0] != key]
        dropped = len(self._rows) - len(kept)
        if dropped:
            self._rows = kept
            self._stored_events_index.clear()
            uuids = self._uuids
            for position, (k, version, _, _) in enumerate(kept):
                oid = str(uuids[k]) if isinstance(k, int) else k
                self._stored_events_index[oid][version] = position
        return dropped

    def select_unindexed(self, limit: int) -> list[tuple[UUID, int]]:
        with self._database_lock:
            found = [
                (UUID(key), max(versions))
                for key, versions in self._stored_events_index.items()
                if versions and UUID(key).int not in self._index
            ]
        return found[:limit]

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
            events = self._drop_rows(instance_uuid)
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

    def next_alarms_of(self, jobs: Collection[tuple[str, str]], limit: int) -> list[IndexRow]:
        with self._database_lock:
            return self._earliest(limit, None, None, set(jobs))

    def _earliest(
        self,
        limit: int,
        until: Callable[[datetime], bool] | None,
        after: datetime | None,
        jobs: Container[tuple[str, str]] | None = None,
    ) -> list[IndexRow]:
        """The ``limit`` earliest alarms (due while ``until`` holds, later than ``after``,
        of ``jobs``): taken off the heap, stale entries dropped, the current ones put
        back."""
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
                if (after is None or due > after) and (
                    jobs is None or (row.kind, row.job) in jobs
                ):
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


def _rows_of(stored_events: Sequence[StoredEvent]) -> list[tuple[UUID | str, int, str, bytes]]:
    """The ``(originator id, version, topic, state)`` of each of ``stored_events``."""
    return [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events]


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

    @classmethod
    def check_url(cls, url: StoreURL) -> None:
        """No options, and nothing after the ``//``."""
        super().check_url(url)
        if (
            url.host
            or url.path not in ("", "/")
            or url.username is not None
            or url.password is not None
            or url.port is not None
        ):
            msg = f"The memory store takes no location: use 'memory://', not {str(url)!r}."
            raise ConfigurationError(msg)

    def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        return _MemoryFactory(env)

    def _insert_stored(self, events: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """The events' ``(originator id, version, topic, state)``, without ``StoredEvent``
        objects, given to the recorder's :meth:`~MemoryApplicationRecorder.write_rows`."""
        recorder = self._app.recorder
        if not _own_inserts(type(recorder)):
            # A recorder that changes how events are inserted is given them the stock way.
            super()._insert_stored(events, kwargs)
            return
        assert isinstance(recorder, MemoryApplicationRecorder)
        # self._event_encoder, without the property's two calls on every save.
        encode: Callable[[Any], tuple[str, bytes]] = self._app.mapper.topic_and_state  # type: ignore[attr-defined]
        recorder.write_rows(
            [(e.originator_id, e.originator_version, *encode(e)) for e in events], kwargs
        )

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


@functools.cache
def _own_inserts(cls: type[ApplicationRecorder]) -> bool:
    """Whether recorder class ``cls`` inserts events as this module's recorder does
    (then :meth:`MemoryStore._insert_stored` gives it the rows itself)."""
    return issubclass(cls, MemoryApplicationRecorder) and (
        cls.insert_events is MemoryApplicationRecorder.insert_events
        and cls._insert_events is MemoryApplicationRecorder._insert_events
        and cls._insert is MemoryApplicationRecorder._insert
    )
