"""Store conformance: round trips, atomicity, concurrency and the alarm index."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import Intents
from durable_jobs._domain.task import TaskInstance
from durable_jobs._errors import ConcurrencyError
from durable_jobs._store.base import Store
from durable_jobs.testing._conformance_helpers import (
    T0,
    WINDOW,
    ConformanceChecks,
    _continuous,
    _replay,
    _run,
    _save_failing,
)

__all__ = ["BasicChecks"]


class BasicChecks(ConformanceChecks):
    """Store conformance: round trips, atomicity, concurrency and the alarm index."""

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
