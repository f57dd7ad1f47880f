"""Store conformance: snapshots and replay, bad data, durability and raw rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import ConcurrencyError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import DeletesInstances
from durable_jobs.testing._conformance_helpers import (
    HOURLY,
    T0,
    ConformanceChecks,
    _continuous,
    _replay,
    _replay_rows,
    _run,
)

__all__ = ["LogChecks"]


class LogChecks(ConformanceChecks):
    """Store conformance: snapshots and replay, bad data, durability and raw rows."""

    # ---- snapshots and replay ------------------------------------------------------

    def test_snapshot_rebuild_equals_full_replay(self, store: Store, second_store: Store) -> None:
        inst = _continuous("job", "s")
        store.save(inst)
        for _ in range(10):  # several saves, so snapshots are taken along the way
            _run(inst, 3)
            store.save(inst)
        rebuilt = second_store.get("continuous", "job", "s")
        replayed = _replay(store.history(inst.id))
        assert rebuilt == replayed == inst
        assert inst.d.state == {"n": 30}

    def test_rebuild_at_a_version_is_the_state_then(self, store: Store) -> None:
        inst = _continuous("job", "v")
        store.save(inst)
        seen: dict[int, Any] = {}
        for _ in range(6):
            _run(inst, 1)
            store.save(inst)
            seen[inst.version] = inst.d.state
        for version, state in seen.items():
            old = store.get_by_uuid(inst.id, version=version)
            assert old is not None and old.version == version and old.d.state == state

    def test_rebuild_reads_only_events_after_the_latest_snapshot(self, store: Store) -> None:
        inst = _continuous("job", "long")
        store.save(inst)
        for _ in range(60):
            _run(inst, 5)
            store.save(inst)
        assert inst.version > 20 * self.snapshot_interval
        recorder = store.events.recorder
        read: list[int] = []
        original = recorder.select_events

        def counting(*args: Any, **kwargs: Any) -> Any:
            rows = original(*args, **kwargs)
            read.append(len(rows))
            return rows

        recorder.select_events = counting  # type: ignore[method-assign]
        try:
            rebuilt = store.get("continuous", "job", "long")
        finally:
            del recorder.select_events
        assert rebuilt == inst
        # One snapshot plus fewer events than one save writes past an interval.
        assert sum(read) <= self.snapshot_interval + 3 * 5

    # ---- bad data ------------------------------------------------------------------

    def _insert_raw(
        self, store: Store, uuid: UUID, version: int, topic: str, state: bytes
    ) -> None:
        store.events.recorder.insert_events([StoredEvent(uuid, version, topic, state)])

    @pytest.mark.parametrize(
        ("topic", "state", "problem"),
        [
            ("durable_jobs:ContinuousInstance.StateChanged", b"{not json", "not JSON"),
            ("durable_jobs:ContinuousInstance.StateChanged", b'{"timestamp": 1}', "fields"),
            (
                "durable_jobs:ContinuousInstance.AlarmSet",
                b'{"timestamp":"2026-03-01T12:00:00Z","at":"yesterday"}',
                "at",
            ),
            ("os:system", b"{}", "unknown topic"),
        ],
    )
    def test_corrupt_event_is_a_store_error_naming_the_instance(
        self, store: Store, topic: str, state: bytes, problem: str
    ) -> None:
        inst = _continuous("job", "bad")
        other = _continuous("job", "good")
        store.save(inst, other)
        self._insert_raw(store, inst.id, inst.version + 1, topic, state)
        with pytest.raises(StoreError) as info:
            store.get("continuous", "job", "bad")
        message = str(info.value)
        assert "'bad'" in message and f"version {inst.version + 1}" in message
        assert problem in message
        assert info.value.__cause__ is not None
        assert store.get("continuous", "job", "good") == other
        with pytest.raises(StoreError):
            store.history(inst.id)

    def test_created_event_naming_a_foreign_class_is_refused(self, store: Store) -> None:
        inst = _continuous("job", "evil")
        stored = store.events.mapper.to_stored_event(inst.collect_events()[0])
        state = stored.state.replace(b"durable_jobs:ContinuousInstance", b"os:system")
        self._insert_raw(store, inst.id, 1, stored.topic, state)
        with pytest.raises(StoreError, match="unknown aggregate topic"):
            store.get("continuous", "job", "evil")

    # ---- durability ----------------------------------------------------------------

    def test_reopened_store_has_everything(self, store: Store, store_url: str) -> None:
        """A durable store keeps committed instances; a non-durable one starts empty."""
        inst = _continuous("job", "keep", due=T0 + timedelta(minutes=5))
        inst.fail_run(
            inst.next_ticket(fresh=False),
            RuntimeError("boom"),
            now=T0,
            schedule=HOURLY,
            retry=Retry(3),
            retry_at=T0 + timedelta(seconds=1),
        )
        store.save(inst)
        store.close()
        with self.open(store_url) as again:
            if not again.durable:
                assert again.get("continuous", "job", "keep") is None
                assert again.next_alarms(10) == []
                return
            assert again.get("continuous", "job", "keep") == inst
            assert [r.due_at for r in again.due_alarms(T0 + timedelta(hours=1))] == [
                T0 + timedelta(seconds=1)
            ]

    # ---- maintenance: raw rows (export/import, purge, tail) -----------------------------

    def _rows_of(self, store: Store, inst: JobInstance) -> list[StoredEvent]:
        """``inst``'s pending events as stored rows (its pending events are collected)."""
        return [store.events.mapper.to_stored_event(e) for e in inst.collect_events()]

    def test_import_events_writes_rows_verbatim_with_their_index_rows(
        self, store: Store, second_store: Store
    ) -> None:
        inst = _continuous("job", "imported", due=T0 + timedelta(minutes=3))
        _run(inst, 4)
        rows = self._rows_of(store, inst)
        other = _continuous("job", "also")
        other_rows = self._rows_of(store, other)
        store.import_events([*rows, *other_rows], [_replay_rows(store, rows), other])
        again = second_store.get("continuous", "job", "imported")
        assert again == inst
        found = second_store.stored_events(inst.id)
        assert [(r.originator_version, r.topic, bytes(r.state)) for r in found] == [
            (r.originator_version, r.topic, bytes(r.state)) for r in rows
        ]
        assert second_store.stored_events(inst.id, desc=True, limit=1)[0].originator_version == (
            inst.version
        )
        row = second_store.index_row(inst.id)
        assert row is not None
        assert (row.version, row.status, row.due_at) == (inst.version, "running", inst.d.alarm_at)
        assert row.updated_at == inst.modified_on
        assert second_store.get("continuous", "job", "also") == other
        # Long enough for a snapshot: the import took one (a cache, as after a save).
        assert inst.version >= self.snapshot_interval
        assert second_store.snapshot_version(inst.id) == inst.version
        assert second_store.snapshot_version(inst.id, lte=inst.version - 1) is None

    def test_import_events_never_overwrites(self, store: Store) -> None:
        inst = _continuous("job", "there")
        _run(inst, 1)
        copy = _replay(cast("list[JobInstance.Event]", list(inst.pending_events)))
        store.save(inst)
        rows = [store.events.mapper.to_stored_event(e) for e in store.history(inst.id)]
        fresh = _continuous("job", "fresh")
        fresh_rows = self._rows_of(store, fresh)
        position = store.last_position()
        with pytest.raises(ConcurrencyError):
            store.import_events([*fresh_rows, *rows], [fresh, copy])
        assert store.last_position() == position
        assert store.get("continuous", "job", "fresh") is None
        assert store.index_row(fresh.id) is None
        assert store.get("continuous", "job", "there") == inst

    def test_delete_instance_removes_a_terminated_instance_only(self, store: Store) -> None:
        """Purge is optional (:class:`~durable_jobs.adapters.DeletesInstances`): a store
        without it refuses with :class:`StoreError`, deleting nothing."""
        keep = _continuous("job", "keep")
        _run(keep, 2)
        gone = _continuous("job", "gone")
        _run(gone, 8)  # past the snapshot interval: it has a snapshot
        store.save(keep, gone)
        if not isinstance(store, DeletesInstances):
            gone.terminate(now=T0 + timedelta(hours=1), reason="asked")
            store.save(gone)
            with pytest.raises(StoreError, match="cannot delete instances"):
                store.delete_instance(gone.id, version=gone.version)
            assert store.get("continuous", "job", "gone") == gone
            return
        with pytest.raises(ConcurrencyError):  # live: refused
            store.delete_instance(gone.id, version=gone.version)
        gone.terminate(now=T0 + timedelta(hours=1), reason="asked")
        store.save(gone)
        assert store.snapshot_version(gone.id) is not None
        with pytest.raises(ConcurrencyError):  # not the version the caller saw
            store.delete_instance(gone.id, version=gone.version - 1)
        assert store.index_row(gone.id) is not None
        events, snapshots = store.delete_instance(gone.id, version=gone.version)
        assert events == gone.version
        assert snapshots >= 1
        assert store.get("continuous", "job", "gone") is None
        assert store.stored_events(gone.id) == []
        assert store.index_row(gone.id) is None
        assert store.snapshot_version(gone.id) is None
        assert {n.originator_id for n in store.events_after(0, 1000)} == {keep.id}
        assert store.get("continuous", "job", "keep") == keep
        # The id is free again: a new instance starts at version 1.
        store.save(_continuous("job", "gone"))
        again = store.get("continuous", "job", "gone")
        assert again is not None and again.version == 2  # started + alarm_set

    def test_events_after_is_the_commit_order(self, store: Store) -> None:
        assert store.last_position() == 0
        assert store.events_after(0) == []
        a, b = _continuous("job", "a"), _continuous("job", "b")
        store.save(a)
        middle = store.last_position()
        assert middle == a.version
        _run(b, 1)
        store.save(b)
        _run(a, 1)
        store.save(a)
        notes = store.events_after(0, 1000)
        assert [n.id for n in notes] == sorted(n.id for n in notes)
        assert notes[-1].id == store.last_position()
        assert [(n.originator_id, n.originator_version) for n in notes] == [
            *((a.id, v) for v in range(1, 3)),
            *((b.id, v) for v in range(1, b.version + 1)),
            *((a.id, v) for v in range(3, a.version + 1)),
        ]
        later = store.events_after(middle, 2)
        assert [(n.originator_id, n.originator_version) for n in later] == [(b.id, 1), (b.id, 2)]
        assert store.events_after(store.last_position()) == []
        event = store.decode(notes[0])
        assert event.originator_version == 1 and event.NAME == "started"

    def test_decode_of_a_corrupt_row_is_a_store_error(self, store: Store) -> None:
        inst = _continuous("job", "bad")
        store.save(inst)
        with pytest.raises(StoreError, match=r"'bad'.*version 9"):
            store.decode(
                StoredEvent(inst.id, 9, "durable_jobs:ContinuousInstance.StateChanged", b"{x")
            )
