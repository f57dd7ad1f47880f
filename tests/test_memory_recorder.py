"""The memory store's one-pass insert: eventsourcing's checks and table, found by id."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs.stores.memory import MemoryApplicationRecorder

T = datetime(2026, 1, 1, tzinfo=UTC)


def _row(oid: object, version: int) -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=version, topic="t", state=b"{}")  # type: ignore[arg-type]


def test_inserts_check_versions_and_keep_the_tables_eventsourcing_reads() -> None:
    recorder = MemoryApplicationRecorder()
    a, b = uuid4(), uuid4()
    assert recorder.insert_events([_row(a, 1), _row(a, 2), _row(b, 1)]) == [1, 2, 3]
    with pytest.raises(IntegrityError, match="already recorded"):
        recorder.insert_events([_row(b, 2), _row(a, 2)])
    with pytest.raises(IntegrityError, match="not unique"):
        recorder.insert_events([_row(b, 2), _row(b, 2)])
    # One instance's rows, ascending (a save's usual rows), or not; the same uuid as
    # equal objects: each refused if one is recorded already or given twice.
    with pytest.raises(IntegrityError, match="already recorded"):
        recorder.insert_events([_row(a, 3), _row(a, 2)])
    with pytest.raises(IntegrityError, match="already recorded"):
        recorder.insert_events([_row(b, 2), _row(b, 1)])
    with pytest.raises(IntegrityError, match="not unique"):
        recorder.insert_events([_row(b, 3), _row(b, 2), _row(b, 3)])
    with pytest.raises(IntegrityError, match="not unique"):
        recorder.insert_events([_row(b, 2), _row(UUID(str(b)), 2)])
    # A refused insert wrote nothing.
    assert recorder.max_notification_id() == 3
    # The id as a string names the same log.
    with pytest.raises(IntegrityError, match="already recorded"):
        recorder.insert_events([_row(str(a), 1)])
    assert recorder.insert_events([_row(str(a), 3)]) == [4]
    assert [s.originator_version for s in recorder.select_events(a)] == [1, 2, 3]
    assert dict(recorder._stored_events_index[str(a)]) == {1: 0, 2: 1, 3: 3}


def test_an_instance_purged_and_started_again_has_only_its_new_log() -> None:
    store = dj.open_store("memory://")
    try:
        other, _ = ContinuousInstance.start(None, "j", "other", now=T, state=0, first_run_at=T)
        inst, _ = ContinuousInstance.start(None, "j", "i", now=T, state=1, first_run_at=T)
        store.save(other, inst)
        inst.terminate(now=T)
        store.save(inst)
        assert store.delete_instance(inst.id, version=inst.version) == (4, 0)
        again, _ = ContinuousInstance.start(None, "j", "i", now=T, state=2, first_run_at=T)
        store.save(again)
        assert [e.originator_version for e in store.history(again.id)] == [1, 2]
        assert store.get("continuous", "j", "i") == again
        other.set_alarm(None, now=T)
        store.save(other)
        assert [e.originator_version for e in store.history(other.id)] == [1, 2, 3]
        stale, _ = ContinuousInstance.start(None, "j", "i", now=T, state=3, first_run_at=T)
        with pytest.raises(dj.ConcurrencyError):
            store.save(stale)
    finally:
        store.close()


def test_a_save_refused_for_its_statements_keeps_the_pending_events() -> None:
    from durable_jobs._domain.statements import Statement

    store = dj.open_store("memory://")
    try:
        inst, _ = ContinuousInstance.start(None, "j", "i", now=T, state=1, first_run_at=T)
        with pytest.raises(dj.ConfigurationError, match=r"cannot run ctx\.execute"):
            store.save(inst, statements=[(inst.id, [Statement("SELECT 1", None)])])
        assert len(inst.pending_events) == 2
        store.save(inst)
        assert store.get("continuous", "j", "i") == inst
        # With nothing to save there is nothing to refuse.
        store.save(inst, statements=[(inst.id, [Statement("SELECT 1", None)])])
    finally:
        store.close()


def test_a_stores_saves_keep_rows_the_garbage_collector_stops_tracking() -> None:
    # Kept as tuples of an int, a str and bytes: after one collection no full
    # collection traverses them again, however many the store holds.
    store = dj.open_store("memory://")
    try:
        inst, _ = ContinuousInstance.start(None, "j", "i", now=T, state=1, first_run_at=T)
        store.save(inst)
        inst.set_alarm(None, now=T)
        store.save(inst)
        recorder = store._app.recorder
        assert isinstance(recorder, MemoryApplicationRecorder)
        gc.collect()
        assert len(recorder._rows) == 3
        assert not any(gc.is_tracked(row) for row in recorder._rows)
    finally:
        store.close()


def test_rows_saved_without_stored_events_read_back_as_those_the_stock_path_keeps() -> None:
    # The store's saves give the recorder (id, version, topic, state) rows; a
    # recorder subclass that changes how events are inserted gets StoredEvents.
    class Stock(MemoryApplicationRecorder):
        inserts = 0

        def insert_events(
            self, stored_events: Sequence[StoredEvent], **kwargs: Any
        ) -> Sequence[int] | None:
            assert all(isinstance(s, StoredEvent) for s in stored_events)
            Stock.inserts += 1
            return super().insert_events(stored_events, **kwargs)

    def saved(stock: bool) -> MemoryApplicationRecorder:
        store = dj.open_store("memory://")
        if stock:
            store._app.recorder = store._app.events.recorder = Stock()
        inst, _ = ContinuousInstance.start(None, "j", "i", now=T, state=1, first_run_at=T)
        other, _ = ContinuousInstance.start(None, "j", "o", now=T, state=2, first_run_at=T)
        store.save(inst, other)
        inst.set_alarm(None, now=T)
        store.save(inst)
        recorder = store._app.recorder
        assert isinstance(recorder, MemoryApplicationRecorder)
        assert type(recorder) is (Stock if stock else MemoryApplicationRecorder)
        return recorder

    fast, stock = saved(stock=False), saved(stock=True)
    uuid = ContinuousInstance.start(None, "j", "i", now=T, state=1, first_run_at=T)[0].id
    last_topic = fast.select_notifications(None, 10)[-1].topic
    reads: tuple[Callable[[MemoryApplicationRecorder], object], ...] = (
        lambda r: r.select_events(uuid),
        lambda r: r.select_events(str(uuid), desc=True, limit=2),
        lambda r: r.select_events(uuid, gt=1, lte=2),
        lambda r: r.select_notifications(None, 10),
        lambda r: r.select_notifications(2, 2, inclusive_of_start=False),
        lambda r: r.select_notifications(1, 10, stop=4, topics=[last_topic]),
        lambda r: r.max_notification_id(),
    )
    for read in reads:
        assert read(fast) == read(stock)
    assert len(fast.select_notifications(None, 10)) == 5
    assert Stock.inserts == 2
