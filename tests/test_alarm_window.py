"""The scheduler's bounded window of the next alarms (pure, no trio)."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from durable_jobs._runtime.window import AlarmKey, AlarmWindow
from durable_jobs._store.index import IndexRow

T = datetime(2026, 1, 1, tzinfo=UTC)


def key(n: int) -> AlarmKey:
    return AlarmKey(UUID(int=n), "task", "job", f"i{n}")


def row(n: int, due: datetime) -> IndexRow:
    return IndexRow(UUID(int=n), "task", "job", f"i{n}", "active", due, 1, T)


def test_a_short_load_is_complete_and_pops_in_order() -> None:
    window = AlarmWindow(10)
    window.load([row(1, T), row(2, T + timedelta(seconds=5))])
    assert window.complete and window.horizon is None
    window.set(key(3), T + timedelta(seconds=2))
    assert window.pop_due(T + timedelta(seconds=3)) == [key(1), key(3)]
    assert window.next_due() == T + timedelta(seconds=5)
    assert not window.needs_reload(T + timedelta(days=1))


def test_a_full_load_has_a_horizon_and_asks_for_a_reload_there() -> None:
    window = AlarmWindow(2)
    window.load([row(1, T), row(2, T + timedelta(minutes=1))])
    assert not window.complete
    assert window.horizon == T + timedelta(minutes=1)
    window.set(key(3), T + timedelta(minutes=5))  # beyond the horizon: left in the store
    assert len(window) == 2
    assert window.next_due() == T
    assert not window.needs_reload(T)
    assert window.needs_reload(T + timedelta(minutes=1))


def test_moving_or_clearing_an_alarm_drops_the_old_entry() -> None:
    window = AlarmWindow(10)
    window.set(key(1), T)
    window.set(key(1), T + timedelta(minutes=1))
    window.set(key(2), T)
    window.set(key(2), None)
    assert window.pop_due(T) == []
    assert window.pop_due(T + timedelta(minutes=1)) == [key(1)]


def test_the_window_stays_bounded_and_exact_below_its_horizon() -> None:
    """Commits beyond twice the size trim it back; what it keeps is every earliest alarm."""
    rng = random.Random(4)
    window = AlarmWindow(50)
    alarms: dict[int, datetime] = {}
    for n in range(2000):
        due = T + timedelta(seconds=rng.randrange(100_000))
        alarms[n] = due
        window.set(key(n), due)
        assert len(window) <= 100
    assert not window.complete
    horizon = window.horizon
    assert horizon is not None
    expected = sorted((due, n) for n, due in alarms.items() if due < horizon)
    popped = window.pop_due(horizon - timedelta(microseconds=1))
    assert [k.uuid.int for k in popped] == [n for _, n in expected]


def test_unknown_uuid_keys_are_fine() -> None:
    window = AlarmWindow(1)
    a = AlarmKey(uuid4(), "continuous", "c", "x")
    window.set(a, T)
    assert window.pop_due(T) == [a]


def test_a_load_leaves_out_running_instances_and_keeps_newer_alarms() -> None:
    """Rows of instances with a run in flight are not dispatched again; a row read
    before this process committed a later version gives way to that version's alarm."""
    window = AlarmWindow(10)
    later = T + timedelta(minutes=5)

    def newer(r: IndexRow) -> tuple[bool, datetime | None]:
        return (True, later) if r.instance_uuid == UUID(int=3) else (False, None)

    window.load([row(1, T), row(2, T), row(3, T)], running={UUID(int=2)}, newer=newer)
    assert window.pop_due(T) == [key(1)]
    assert window.pop_due(later) == [key(3)]


def test_an_alarm_heard_of_lowers_the_horizon_to_it_and_never_raises_it() -> None:
    """Another process's alarm: the window is exact only below it, and reloads there."""
    window = AlarmWindow(10)
    window.load([row(1, T), row(2, T + timedelta(minutes=10))])
    assert window.complete
    window.heard_of(T + timedelta(minutes=5))
    assert (window.complete, window.horizon) == (False, T + timedelta(minutes=5))
    assert not window.needs_reload(T + timedelta(minutes=4))
    assert window.needs_reload(T + timedelta(minutes=5))
    window.heard_of(T + timedelta(minutes=8))  # later than the horizon: nothing to do
    assert window.horizon == T + timedelta(minutes=5)
    # Alarms at or beyond the new horizon wait for the reload.
    assert window.pop_due(T + timedelta(hours=1)) == [key(1)]


def test_an_alarm_moved_on_every_commit_does_not_grow_the_heap() -> None:
    """A sliding window moves its alarm later at every event: the entries it leaves
    behind are dropped long before their times come."""
    window = AlarmWindow(1000)
    window.set(key(2), T + timedelta(days=1))
    for n in range(10_000):
        window.set(key(1), T + timedelta(minutes=1, milliseconds=n))
        assert window.entries <= 2 * len(window) + 64 + 1
    assert window.pop_due(T + timedelta(minutes=1, seconds=9)) == []
    assert window.pop_due(T + timedelta(minutes=2)) == [key(1)]
    assert window.next_due() == T + timedelta(days=1)
    assert window.entries == 1


def test_a_load_of_rows_out_of_order_still_pops_earliest_first() -> None:
    """Rows come earliest first from every store, and the window takes them as they come
    (no push per row); rows out of order (a third-party store's) still pop in order."""
    window = AlarmWindow(10)
    window.load([row(2, T + timedelta(seconds=5)), row(1, T), row(3, T + timedelta(seconds=2))])
    assert window.next_due() == T
    assert window.pop_due(T + timedelta(seconds=10)) == [key(1), key(3), key(2)]


def test_pop_due_drops_entries_that_moved_alarms_left_behind() -> None:
    window = AlarmWindow(10)
    window.load([row(1, T), row(2, T + timedelta(seconds=1))])
    window.set(key(1), T + timedelta(seconds=3))  # moved later: its first entry is stale
    window.set(key(2), None)  # cleared
    assert window.pop_due(T + timedelta(seconds=2)) == []
    assert window.pop_due(T + timedelta(seconds=3)) == [key(1)]
    assert window.entries == 0 and len(window) == 0


class _HeapWindow:
    """The window as it was before loaded rows were kept as read: every alarm an entry
    of one heap. The window must behave exactly like it (see the test below)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[datetime, int, AlarmKey]] = []
        self.due: dict[UUID, datetime] = {}
        self.seq = 0
        self.complete = True
        self.horizon: datetime | None = None

    def load(self, rows: list[IndexRow], running: set[UUID], newer: Any) -> None:
        self.heap, self.due = [], {}
        self.complete = len(rows) < self.size
        self.horizon = None if self.complete or not rows else rows[-1].due_at
        moved = []
        for r in rows:
            if r.due_at is None or r.instance_uuid in running:
                continue
            k = AlarmKey(r.instance_uuid, r.kind, r.job, r.instance_id)
            known, at = newer(r)
            if known:
                moved.append((k, at))
                continue
            self.push(k, r.due_at)
        for k, at in moved:
            self.set(k, at)

    def push(self, k: AlarmKey, due: datetime) -> None:
        self.due[k.uuid] = due
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, k))

    def set(self, k: AlarmKey, due: datetime | None) -> None:
        if due is None or not (self.complete or (self.horizon is not None and due < self.horizon)):
            self.due.pop(k.uuid, None)
            return
        if self.due.get(k.uuid) != due:
            self.push(k, due)
            if len(self.due) > 2 * self.size:
                keys = {k.uuid: k for _, _, k in self.heap}
                kept = heapq.nsmallest(self.size, ((d, u) for u, d in self.due.items()))
                self.complete, self.horizon = False, kept[-1][0]
                self.heap, self.due = [], {}
                for d, u in kept:
                    self.push(keys[u], d)

    def clean(self) -> None:
        while self.heap and self.due.get(self.heap[0][2].uuid) != self.heap[0][0]:
            heapq.heappop(self.heap)

    def next_due(self) -> datetime | None:
        self.clean()
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: datetime) -> list[AlarmKey]:
        out: list[AlarmKey] = []
        while True:
            self.clean()
            if not self.heap or self.heap[0][0] > now:
                return out
            _, _, k = heapq.heappop(self.heap)
            del self.due[k.uuid]
            out.append(k)

    def heard_of(self, due: datetime) -> None:
        if self.complete or (self.horizon is not None and due < self.horizon):
            self.complete, self.horizon = False, due
            self.due = {u: at for u, at in self.due.items() if at < due}


@pytest.mark.parametrize("seed", range(40))
def test_the_window_behaves_like_one_heap_of_every_alarm(seed: int) -> None:
    """Random loads (with running instances and newer versions), moves, clears, pops,
    alarms heard of: the same alarms come out, earliest first."""
    rng = random.Random(seed)
    size = rng.choice([3, 5, 8, 20])
    window, model = AlarmWindow(size), _HeapWindow(size)
    now = T
    loaded: dict[int, datetime | None] = {}

    def at() -> datetime:
        return now + timedelta(seconds=rng.randrange(-3, 12))  # few values: many ties

    for _ in range(600):
        op = rng.random()
        if op < 0.1:
            ns = rng.sample(range(30), min(30, rng.randrange(0, 2 * size)))
            rows = sorted((row(n, at()) for n in ns), key=lambda r: r.due_at or T)[: size + 2]
            running = {UUID(int=n) for n in rng.sample(range(30), 3)}
            moved = {UUID(int=n): rng.choice([None, at()]) for n in rng.sample(range(30), 3)}

            def newer(
                r: IndexRow, moved: dict[UUID, datetime | None] = moved
            ) -> tuple[bool, datetime | None]:
                if r.instance_uuid in moved:
                    return True, moved[r.instance_uuid]
                return False, None

            window.load(rows, running=running, newer=newer)
            model.load(rows, running, newer)
            loaded = {r.instance_uuid.int: r.due_at for r in rows}
        elif op < 0.6:
            n = rng.randrange(30)
            due = None if rng.random() < 0.15 else at()
            if loaded and rng.random() < 0.3:  # back to the time it was loaded with
                n = rng.choice(list(loaded))
                due = loaded[n]
            window.set(key(n), due)
            model.set(key(n), due)
        elif op < 0.75:
            now += timedelta(seconds=rng.randrange(0, 3))
            _same_pops(window, model, now)
        elif op < 0.8:
            heard = at()
            window.heard_of(heard)
            model.heard_of(heard)
        assert window.next_due() == model.next_due()
        assert len(window) == len(model.due)
        assert (window.complete, window.horizon) == (model.complete, model.horizon)
        assert window.count_due(now) == sum(1 for d in model.due.values() if d <= now)
    _same_pops(window, model, now + timedelta(days=1))
    assert window.entries == 0


def _same_pops(window: AlarmWindow, model: _HeapWindow, now: datetime) -> None:
    """The same alarms pop, earliest first (the order of equal times may differ)."""
    dues = dict(model.due)
    got, want = window.pop_due(now), model.pop_due(now)
    assert sorted(got) == sorted(want)
    assert [dues[k.uuid] for k in got] == sorted(dues[k.uuid] for k in got)


def test_an_alarm_moved_away_and_back_to_its_loaded_time_pops_once() -> None:
    """Its loaded row and its new entry both stand for it: it runs once, and the entry
    it leaves behind is passed over (not taken for another alarm's)."""
    window = AlarmWindow(10)
    window.load([row(1, T), row(2, T + timedelta(seconds=5))])
    window.set(key(1), T + timedelta(seconds=1))
    window.set(key(1), T)
    assert window.pop_due(T + timedelta(seconds=10)) == [key(1), key(2)]
    assert window.next_due() is None and len(window) == 0
