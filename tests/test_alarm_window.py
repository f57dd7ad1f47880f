"""The scheduler's bounded window of the next alarms (pure, no trio)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

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
