"""The store conformance suite: what every store adapter must do.

Use it from a pytest module::

    from durable_jobs.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mystore://{tmp_path}/db"   # a fresh, empty location per test

Each test opens the URL with :func:`durable_jobs.open_store` (or, if the
subclass sets ``store_class``, with that adapter class, so an adapter can be
checked before its entry point is installed). For durable
stores (``Store.durable``) the suite opens the same URL twice to play two
processes; for a non-durable store it uses one store object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import Intents, JobInstance
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance
from durable_jobs._errors import ConcurrencyError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import DeletesInstances
from durable_jobs._store.registry import open_store
from durable_jobs._store.urls import StoreURL

__all__ = ["StoreConformance"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOURLY = every(timedelta(hours=1))
WINDOW = timedelta(hours=24)


class InjectedFault(Exception):
    """Raised by the conformance suite inside a store's write transaction."""


def _raise_fault() -> None:
    raise InjectedFault("fault injected between the event write and the index write")


def _save_failing(store: Store, *instances: JobInstance) -> None:
    """Save with a fault injected inside the write transaction; the save must fail."""
    store.index.fault_hook = _raise_fault
    try:
        with pytest.raises((InjectedFault, StoreError)):
            store.save(*instances)
    finally:
        store.index.fault_hook = None


def _continuous(
    job: str,
    instance_id: str,
    *,
    at: datetime = T0,
    due: datetime | None = None,
    state: Any = None,
) -> ContinuousInstance:
    inst, _ = ContinuousInstance.start(
        None,
        job,
        instance_id,
        now=at,
        state=state if state is not None else {"n": 0},
        first_run_at=due or at,
    )
    return inst


def _run(inst: ContinuousInstance, n: int, *, start: datetime = T0) -> None:
    """``n`` successful runs, each incrementing ``state["n"]``."""
    for i in range(n):
        ticket = inst.next_ticket(fresh=False)
        now = start + timedelta(minutes=i + 1)
        inst.complete_run(
            ticket,
            Intents(state={"n": _count(inst) + 1}),
            now=now,
            duration=0.01,
            schedule=HOURLY,
        )


def _count(inst: JobInstance) -> int:
    state = inst.d.state
    assert isinstance(state, dict)
    n = state["n"]
    assert isinstance(n, int)
    return n


def _replay(events: list[JobInstance.Event]) -> JobInstance:
    agg: Any = None
    for event in events:
        agg = event.mutate(agg)
    assert isinstance(agg, JobInstance)
    return agg


class StoreConformance:
    """Checks every store adapter must pass. Override the ``store_url`` fixture."""

    #: Events between snapshots used by the suite (small, so snapshots happen).
    snapshot_interval: ClassVar[int] = 7
    #: The adapter class to open ``store_url`` with; None: the one installed for its
    #: scheme (entry-point group ``durable_jobs.stores``), as ``open_store`` finds it.
    store_class: ClassVar[type[Store] | None] = None

    def open(self, url: str, **options: Any) -> Store:
        """Open ``url`` the way this suite does (see :attr:`store_class`)."""
        if self.store_class is None:
            return open_store(url, **options)
        return self.store_class.from_url(StoreURL.parse(url), **options)

    @pytest.fixture
    def store_url(self) -> str:
        """A URL of a fresh, empty store location (override in your subclass)."""
        raise NotImplementedError(
            "Override the store_url fixture in your StoreConformance subclass."
        )

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        """The store at ``store_url``, opened for the test and closed after it."""
        with self.open(store_url, snapshot_interval=self.snapshot_interval) as store:
            yield store

    @pytest.fixture
    def second_store(self, store: Store, store_url: str) -> Iterator[Store]:
        """A second handle on the same data: another process for durable stores."""
        if not store.durable:
            yield store
            return
        with self.open(store_url, snapshot_interval=self.snapshot_interval) as other:
            yield other

    # ---- round trips -------------------------------------------------------------

    def test_unknown_instance_is_none(self, store: Store) -> None:
        assert store.get("continuous", "job", "nobody") is None
        assert store.list_instances() == []
        assert store.due_alarms(T0 + timedelta(days=365)) == []

    def test_saved_instances_rebuild_equal(self, store: Store, second_store: Store) -> None:
        cont = _continuous("c", "i1", state={"nested": {"list": [1, 2.5, "x", None, True]}})
        deb, _ = DebounceInstance.add(
            None,
            "d",
            "i1",
            {"e": 1},
            now=T0,
            new_state=[1],
            idempotency_key="k1",
            window=WINDOW,
            flush_after=timedelta(minutes=5),
            max_events=None,
        )
        task, _ = TaskInstance.receive(
            None, "t", "i1", {"cmd": "go"}, now=T0, idempotency_key=None, window=WINDOW
        )
        task.apply_intents(
            Intents(state="s", schedule=T0 + timedelta(seconds=5)), now=T0, alarm=None
        )
        store.save(cont, deb, task)
        for inst in (cont, deb, task):
            again = second_store.get(inst.d.kind, inst.d.job, "i1")
            assert again == inst
            assert again is not None and again.version == inst.version

    def test_instances_are_keyed_by_kind_job_and_id(self, store: Store) -> None:
        store.save(_continuous("job", "x"), _continuous("job", "y"), _continuous("other", "x"))
        task, _ = TaskInstance.receive(
            None, "job", "x", 1, now=T0, idempotency_key=None, window=WINDOW
        )
        store.save(task)
        keys = [(r.kind, r.job, r.instance_id) for r in store.list_instances()]
        assert keys == [
            ("continuous", "job", "x"),
            ("continuous", "job", "y"),
            ("continuous", "other", "x"),
            ("task", "job", "x"),
        ]

    def test_any_characters_in_instance_ids(self, store: Store) -> None:
        ids = ["a/b:c", "spaces and tabs\t", "üñíçødé ✓", "'; DROP TABLE x; --", "%_*?"]
        store.save(*(_continuous("job", i) for i in ids))
        for i in ids:
            inst = store.get("continuous", "job", i)
            assert inst is not None and inst.d.instance_id == i
        assert sorted(r.instance_id for r in store.list_instances()) == sorted(ids)

    def test_history_is_the_log_in_order(self, store: Store) -> None:
        inst = _continuous("job", "h")
        _run(inst, 3)
        store.save(inst)
        history = store.history(inst.id)
        assert [e.originator_version for e in history] == list(range(1, inst.version + 1))
        assert [type(e).__name__ for e in history[:5]] == [
            "Started",
            "AlarmSet",
            "RunSucceeded",
            "StateChanged",
            "AlarmSet",
        ]
        assert _replay(history) == inst

    # ---- atomicity -----------------------------------------------------------------

    def test_fault_between_events_and_index_leaves_nothing(self, store: Store) -> None:
        inst = _continuous("job", "f")
        _save_failing(store, inst)
        assert store.get("continuous", "job", "f") is None
        assert store.index_row(inst.id) is None
        assert store.history(inst.id) == []
        assert store.due_alarms(T0 + timedelta(days=1)) == []

    def test_fault_on_update_keeps_the_previous_version(self, store: Store) -> None:
        inst = _continuous("job", "f2")
        store.save(inst)
        saved_version = inst.version
        loaded = store.get("continuous", "job", "f2")
        assert isinstance(loaded, ContinuousInstance)
        loaded.terminate(now=T0 + timedelta(minutes=1), reason="test")
        _save_failing(store, loaded)
        again = store.get("continuous", "job", "f2")
        assert again is not None and again.version == saved_version and again.live
        row = store.index_row(inst.id)
        assert row is not None
        assert (row.version, row.status, row.due_at) == (saved_version, "running", T0)
        assert [r.instance_id for r in store.due_alarms(T0)] == ["f2"]

    def test_a_failed_save_can_be_tried_again(self, store: Store) -> None:
        """After an error the instance keeps its pending events; the retry writes them all."""
        inst = _continuous("job", "again")
        _run(inst, 2)
        _save_failing(store, inst)
        assert len(inst.pending_events) == inst.version
        store.save(inst)
        assert inst.pending_events == []
        assert store.get("continuous", "job", "again") == inst
        row = store.index_row(inst.id)
        assert row is not None and row.version == inst.version

    # ---- concurrency ---------------------------------------------------------------

    def test_two_writers_of_one_version_one_wins(self, store: Store, second_store: Store) -> None:
        store.save(_continuous("job", "race"))
        first = store.get("continuous", "job", "race")
        second = second_store.get("continuous", "job", "race")
        assert isinstance(first, ContinuousInstance) and isinstance(second, ContinuousInstance)
        _run(first, 1)
        second.terminate(now=T0, reason="loser")
        store.save(first)
        with pytest.raises(ConcurrencyError):
            second_store.save(second)
        winner = store.get("continuous", "job", "race")
        assert winner == first
        row = store.index_row(first.id)
        assert row is not None and row.version == first.version and row.status == "running"

    def test_conflict_in_a_group_commit_writes_nothing(
        self, store: Store, second_store: Store
    ) -> None:
        store.save(_continuous("job", "g1"))
        a = store.get("continuous", "job", "g1")
        b = second_store.get("continuous", "job", "g1")
        assert isinstance(a, ContinuousInstance) and isinstance(b, ContinuousInstance)
        _run(a, 1)
        store.save(a)
        fresh = _continuous("job", "g2")
        _run(b, 2)
        with pytest.raises(ConcurrencyError):
            second_store.save(fresh, b)
        assert store.get("continuous", "job", "g2") is None
        assert store.index_row(fresh.id) is None

    def test_racing_threads_commit_each_version_once(
        self, store: Store, second_store: Store
    ) -> None:
        """Writers on threads (as the runtime's workers are) never both commit a version."""
        store.save(_continuous("job", "hot"))
        stores = [store, second_store] * 4
        results: list[str] = []
        barrier = threading.Barrier(len(stores))

        def worker(n: int, target: Store) -> None:
            inst = target.get("continuous", "job", "hot")
            assert isinstance(inst, ContinuousInstance)
            _run(inst, 1 + n % 3)
            barrier.wait(timeout=30)
            try:
                target.save(inst)
            except ConcurrencyError:
                results.append("conflict")
            else:
                results.append("won")

        threads = [threading.Thread(target=worker, args=(n, s)) for n, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(results) == ["conflict"] * (len(stores) - 1) + ["won"]
        winner = store.get("continuous", "job", "hot")
        assert winner is not None
        row = store.index_row(winner.id)
        assert row is not None and row.version == winner.version
        assert _replay(store.history(winner.id)) == winner

    def test_threads_saving_different_instances_all_commit(self, store: Store) -> None:
        def worker(n: int) -> None:
            for i in range(5):
                inst = _continuous("job", f"t{n}-{i}", due=T0 + timedelta(seconds=n * 10 + i))
                _run(inst, 2)
                store.save(inst)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        rows = store.list_instances(limit=100)
        assert len(rows) == 30
        for row in rows:
            inst = store.get("continuous", "job", row.instance_id)
            assert inst is not None and inst.version == row.version

    # ---- the alarm index -----------------------------------------------------------

    def test_due_alarms_are_ordered_filtered_and_limited(self, store: Store) -> None:
        dues = {f"i{n}": T0 + timedelta(minutes=m) for n, m in enumerate([30, -5, 10, 0, 90])}
        store.save(*(_continuous("job", i, due=at) for i, at in dues.items()))
        no_alarm = _continuous("job", "paused")
        no_alarm.set_alarm(None, now=T0)
        store.save(no_alarm)
        due = store.due_alarms(T0 + timedelta(minutes=30))
        assert [r.instance_id for r in due] == ["i1", "i3", "i2", "i0"]
        assert [r.due_at for r in due] == sorted(r.due_at for r in due if r.due_at)
        assert [r.instance_id for r in store.due_alarms(T0 + timedelta(minutes=30), limit=2)] == [
            "i1",
            "i3",
        ]
        assert [r.instance_id for r in store.next_alarms(2, after=T0)] == ["i2", "i0"]
        assert len(store.next_alarms(100)) == 5

    def test_changed_and_cleared_alarms_follow_the_instance(self, store: Store) -> None:
        inst = _continuous("job", "a", due=T0)
        store.save(inst)
        inst.set_alarm(T0 + timedelta(hours=2), now=T0)
        store.save(inst)
        assert store.due_alarms(T0 + timedelta(hours=1)) == []
        assert [r.due_at for r in store.next_alarms(10)] == [T0 + timedelta(hours=2)]
        inst.terminate(now=T0, reason=None)
        store.save(inst)
        assert store.next_alarms(10) == []
        row = store.index_row(inst.id)
        assert row is not None and row.status == "terminated" and row.due_at is None

    def test_list_instances_filters_and_pages(self, store: Store) -> None:
        store.save(*(_continuous("job", f"{n:03}") for n in range(25)))
        deb, _ = DebounceInstance.add(
            None,
            "job",
            "d",
            1,
            now=T0,
            new_state=1,
            idempotency_key=None,
            window=WINDOW,
            flush_after=timedelta(minutes=1),
            max_events=None,
        )
        store.save(deb)
        assert [r.instance_id for r in store.list_instances(kind="debounce")] == ["d"]
        assert [r.status for r in store.list_instances(status="debouncing")] == ["debouncing"]
        pages: list[str] = []
        after = None
        while True:
            page = store.list_instances(kind="continuous", job="job", after=after, limit=10)
            pages += [r.instance_id for r in page]
            if len(page) < 10:
                break
            after = (page[-1].kind, page[-1].job, page[-1].instance_id)
        assert pages == [f"{n:03}" for n in range(25)]
        assert len(list(store.iter_instances())) == 26

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


def _replay_rows(store: Store, rows: list[StoredEvent]) -> JobInstance:
    """The instance ``rows`` rebuild to."""
    return _replay([store.decode(r) for r in rows])
