"""The in-process instance locks: a free one is taken without a task switch, a
busy one is waited for, a cancelled task takes none. The cross-process lock
calls queued for the task that batches them are made even if it stops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID, uuid4

import pytest
import trio
import trio.testing

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._errors import DurableJobsError
from durable_jobs._runtime.guards import TAKEOVER_GRACE, LockGuards
from durable_jobs._runtime.locks import InstanceLocks, KeyedLocks
from durable_jobs._store.base import Store
from durable_jobs.stores.postgres import PostgresStore


async def test_a_free_lock_is_taken_without_a_task_switch() -> None:
    locks, key = KeyedLocks(), uuid4()
    order: list[str] = []

    async def other() -> None:
        order.append("other ran")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with locks(key) as held:
            assert held
            order.append("held")
    assert order == ["held", "other ran"]
    assert not locks._locks  # dropped once nobody holds or waits


async def test_a_busy_lock_is_waited_for() -> None:
    locks, key = KeyedLocks(), uuid4()
    order: list[str] = []
    first_holds = trio.Event()
    release = trio.Event()

    async def first() -> None:
        async with locks(key):
            order.append("first")
            first_holds.set()
            await release.wait()
            order.append("first done")

    async def second() -> None:
        await first_holds.wait()
        async with locks(key):
            order.append("second")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)
        await first_holds.wait()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert order == ["first", "first done", "second"]
    assert not locks._locks


async def test_a_cancelled_task_takes_no_lock() -> None:
    locks, key = KeyedLocks(), uuid4()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            async with locks(key):
                pytest.fail("held while cancelled")
    assert not locks._locks


async def _stop_run_while_a_call_is_queued(store_url: str, *, op: str) -> list[str]:
    """Start :meth:`InstanceLocks.run`, then cancel it right after a lock call (a take,
    ``op="lock"``, or a release, ``op="unlock"``) was queued for it, before it took the
    call in a batch. Returns what the caller saw; fails if the caller was stranded."""
    store, other = dj.open_store(store_url), dj.open_store(store_url)
    assert isinstance(store, PostgresStore) and isinstance(other, PostgresStore)
    locks = InstanceLocks(store, timedelta(seconds=30))
    key, seen = uuid4(), []
    returned = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            run_scope = trio.CancelScope()

            async def run() -> None:
                with run_scope:
                    await locks.run()

            async def caller() -> None:
                try:
                    if op == "lock":
                        # Cancelled with no checkpoint before the take is queued.
                        run_scope.cancel()
                        async with locks.hold(key) as held:
                            seen.append(f"held={held}")
                    else:
                        async with locks.hold(key) as held:
                            seen.append(f"held={held}")
                            # Cancelled with no checkpoint before the release is queued.
                            run_scope.cancel()
                    seen.append("released")
                except DurableJobsError as exc:
                    seen.append(f"error: {exc}")
                finally:
                    returned.set()

            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()
            running = locks._running  # waits for calls to batch
            assert running
            nursery.start_soon(caller)
            try:
                with trio.fail_after(60):  # virtual seconds: a stranded caller never returns
                    await returned.wait()
            except trio.TooSlowError:
                # Free the stranded caller, so that the test fails instead of hanging.
                stranded, locks._queue = locks._queue, []
                await locks._batch(stranded)
                pytest.fail(f"the caller of a queued {op} was stranded: {seen}")
        assert not locks._running and not locks._queue
        assert locks.held == 0
        # Not left held in the database: another session takes it at once.
        assert other.try_lock_many([(key, "instance")]) == [True]
        other.unlock_many([(key, "instance")])
        return seen
    finally:
        store.close()
        other.close()


@pytest.mark.postgres
@pytest.mark.parametrize("op", ["lock", "unlock"])
async def test_a_lock_call_queued_as_run_stops_is_made(
    pg_url: str, op: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A take or a release queued for the task that batches the cross-process lock
    calls, when that task is cancelled (the runtime stops) before it took the call,
    is made all the same: its caller returns, and no lock stays held in Postgres."""
    seen = await _stop_run_while_a_call_is_queued(pg_url, op=op)
    assert seen == ["held=True", "released"]


@asynccontextmanager
async def batching(store: Store) -> AsyncIterator[InstanceLocks]:
    """The instance locks of ``store`` with their batching task running; it is stopped
    at the end (making the calls still queued, as it does when a runtime closes)."""
    locks = InstanceLocks(store, timedelta(seconds=30))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(locks.run)
        await trio.testing.wait_all_tasks_blocked()
        yield locks
        nursery.cancel_scope.cancel()


@pytest.fixture
def two_stores(pg_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two Postgres stores on one schema: this process's and another process's."""
    store, other = dj.open_store(pg_url), dj.open_store(pg_url)
    assert isinstance(store, PostgresStore) and isinstance(other, PostgresStore)
    try:
        yield store, other
    finally:
        store.close()
        other.close()


@pytest.mark.postgres
async def test_a_release_is_not_waited_for_and_comes_before_the_next_take(
    two_stores: tuple[PostgresStore, PostgresStore], autojump_clock: trio.testing.MockClock
) -> None:
    """With the batching task running, leaving a held lock queues its release and
    returns at once; a take of the same instance queued right after it (the next
    holder in this process) goes in the same round, after it: the lock is held and
    fenced, and released in the end (nothing left held in Postgres)."""
    store, other = two_stores
    key = uuid4()
    async with batching(store) as locks:
        async with locks.hold(key, wait=False) as held:
            assert held
        # Queued, not made yet, and not waited for.
        assert [(r.op, r.uuid) for r in locks._queue] == [("unlock", key)]
        assert locks.held == 0
        async with locks.hold(key, wait=False) as held:
            assert held
            assert store.lock_session(key) is not None  # its commits are fenced
            assert other.try_lock_many([(key, "instance")]) == [False]
        # A take waits for its round: the release queued before it is made by then.
        async with locks.hold(uuid4()):
            pass
        assert locks.held == 0
        assert store.lock_session(key) is None
    # Released in the database: another session takes it at once.
    assert other.try_lock_many([(key, "instance")]) == [True]
    other.unlock_many([(key, "instance")])


@pytest.mark.postgres
async def test_a_calls_release_is_made_before_it_returns(
    two_stores: tuple[PostgresStore, PostgresStore], autojump_clock: trio.testing.MockClock
) -> None:
    """A hold that waits for a busy instance (a client call's, a manual trigger's) has
    its release made before it returns: once the caller is answered, another process
    (a worker, the dashboard, the CLI) can take the instance at once. Only an alarm
    run's release (``wait=False``) is left to the batching task."""
    store, other = two_stores
    key = uuid4()
    async with batching(store) as locks:
        async with locks.hold(key) as held:
            assert held
        assert locks._queue == []
        assert other.try_lock_many([(key, "instance")]) == [True]
        other.unlock_many([(key, "instance")])


class _UnlocksFail:
    """Cross-process locks (without lock rounds) whose releases fail."""

    def try_lock(self, uuid: UUID, scope: str = "instance") -> bool:
        return True

    def unlock(self, uuid: UUID, scope: str = "instance") -> None:
        self.unlock_many([(uuid, scope)])

    def try_lock_many(self, keys: Sequence[tuple[UUID, str]]) -> list[bool]:
        return [True] * len(keys)

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        raise dj.StoreError("unlock refused")

    def index_versions(self, uuids: Sequence[UUID]) -> dict[UUID, int]:
        return {}

    def watch_locks(self, lease: float, on_lost: Callable[[int], None]) -> None:
        pass

    def unwatch_locks(self) -> None:
        pass

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        return None

    def session_alive(self, session: int) -> bool:
        return True


async def test_a_release_not_waited_for_that_fails_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = uuid4()
    with caplog.at_level(logging.WARNING, logger="durable_jobs.runtime"):
        async with batching(cast("Store", _UnlocksFail())) as locks:
            async with locks.hold(key, wait=False):
                pass
            assert [r.op for r in locks._queue] == ["unlock"]
            async with locks.hold(uuid4()):  # waits for its round: the release's too
                pass
    failed = [
        r for r in caplog.records if r.getMessage() == f"Could not release the lock of {key}"
    ]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert locks.held == 0


class _Recorded(_UnlocksFail):
    """Cross-process locks (without lock rounds) that record their releases."""

    def __init__(self) -> None:
        self.released: list[UUID] = []

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        self.released += [uuid for uuid, _ in keys]


@pytest.mark.parametrize("batched", [True, False])
async def test_a_cancelled_calls_release_is_made_before_the_cancellation_goes_on(
    batched: bool,
) -> None:
    """A call cancelled while it holds an instance (its release waited for, with the
    batching task running or not) has its lock released all the same before the
    cancellation leaves the hold."""
    store = _Recorded()
    key = uuid4()

    async def cancelled_holder(locks: InstanceLocks) -> None:
        with trio.CancelScope() as scope:
            async with locks.hold(key) as held:
                assert held
                scope.cancel()
                await trio.sleep(0)
            pytest.fail("not cancelled")  # pragma: no cover
        assert scope.cancelled_caught
        assert store.released == [key]
        assert locks.held == 0

    if batched:
        async with batching(cast("Store", store)) as locks:
            await cancelled_holder(locks)
    else:
        await cancelled_holder(InstanceLocks(cast("Store", store), timedelta(seconds=30)))


class _Counted(_UnlocksFail):
    """Cross-process locks (without lock rounds), which count their takes and releases;
    each is held in the session open when it was taken (:meth:`lose_session` ends it:
    the next take is made in a new one)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, UUID]] = []
        self.session = 1
        self.held: dict[UUID, int] = {}

    def lose_session(self) -> None:
        self.session += 1

    def try_lock_many(self, keys: Sequence[tuple[UUID, str]]) -> list[bool]:
        self.calls += [("take", uuid) for uuid, _ in keys]
        self.held.update((uuid, self.session) for uuid, _ in keys)
        return [True] * len(keys)

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        self.calls += [("release", uuid) for uuid, _ in keys]
        for uuid, _ in keys:
            self.held.pop(uuid, None)

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        return self.held.get(uuid)

    def session_alive(self, session: int) -> bool:
        return session == self.session


async def _one_after_another(
    locks: InstanceLocks,
    key: UUID,
    *,
    first_fails: bool = False,
    second_refused: bool = False,
    third: bool = False,
) -> list[str]:
    """A holds ``key`` while B (and C) queue for it; what each saw."""
    seen: list[str] = []
    a_holds, a_done = trio.Event(), trio.Event()

    def refuse() -> None:
        raise dj.RuntimeClosed("refused")

    async def a() -> None:
        try:
            async with locks.hold(key) as held:
                seen.append(f"A held={held}")
                a_holds.set()
                await a_done.wait()
                if first_fails:
                    raise ValueError
        except ValueError:
            seen.append("A failed")

    async def b(name: str, on_taken: Callable[[], None] | None) -> None:
        try:
            async with locks.hold(key, on_taken=on_taken) as held:
                seen.append(f"{name} held={held}")
                await trio.sleep(0)
        except dj.RuntimeClosed:
            seen.append(f"{name} refused")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(a)
        await a_holds.wait()
        nursery.start_soon(b, "B", refuse if second_refused else None)
        await trio.testing.wait_all_tasks_blocked()
        if third:
            nursery.start_soon(b, "C", None)
            await trio.testing.wait_all_tasks_blocked()
        a_done.set()
    assert locks.held == 0
    assert not locks._handed
    return seen


@pytest.mark.parametrize("batched", [True, False])
async def test_a_lock_waited_for_here_is_passed_on_without_a_release_and_a_take(
    batched: bool,
) -> None:
    """The next holder in this process gets the cross-process lock with the in-process
    one: one take and one release in all, and it is held (by this process) throughout."""
    store, key = _Counted(), uuid4()

    async def check(locks: InstanceLocks) -> None:
        seen = await _one_after_another(locks, key, third=True)
        assert seen == ["A held=True", "B held=True", "C held=True"]

    if batched:
        async with batching(cast("Store", store)) as locks:
            await check(locks)
    else:
        await check(InstanceLocks(cast("Store", store), timedelta(seconds=30)))
    assert store.calls == [("take", key), ("release", key)]


async def test_a_lock_is_not_passed_on_after_a_failure() -> None:
    """A holder that fails releases its lock; the next one takes it anew."""
    store, key = _Counted(), uuid4()
    seen = await _one_after_another(
        InstanceLocks(cast("Store", store), timedelta(seconds=30)), key, first_fails=True
    )
    assert seen == ["A held=True", "A failed", "B held=True"]
    assert store.calls == [("take", key), ("release", key)] * 2


async def test_a_lock_of_a_lost_session_is_not_passed_on() -> None:
    store, key = _Counted(), uuid4()
    locks = InstanceLocks(cast("Store", store), timedelta(seconds=30))
    b_waits = trio.Event()

    async def b() -> None:
        b_waits.set()
        async with locks.hold(key):
            pass

    async with trio.open_nursery() as nursery, locks.hold(key):
        nursery.start_soon(b)
        await b_waits.wait()
        await trio.testing.wait_all_tasks_blocked()
        store.lose_session()
    assert store.calls == [("take", key), ("release", key)] * 2
    assert not locks._handed


@pytest.mark.parametrize("third", [False, True])
async def test_a_lock_passed_on_to_a_refused_task_goes_to_the_next_or_is_released(
    third: bool,
) -> None:
    """The task handed the lock is refused (the runtime is closing): the one after it,
    if any, holds it; else it is released."""
    store, key = _Counted(), uuid4()
    seen = await _one_after_another(
        InstanceLocks(cast("Store", store), timedelta(seconds=30)),
        key,
        second_refused=True,
        third=third,
    )
    assert seen == ["A held=True", "B refused", *(["C held=True"] if third else [])]
    assert store.calls == [("take", key), ("release", key)]


@pytest.mark.postgres
async def test_a_lock_passed_on_stays_held_in_postgres(
    two_stores: tuple[PostgresStore, PostgresStore], autojump_clock: trio.testing.MockClock
) -> None:
    """While the next holder here has the lock passed on to it, another process cannot
    take it (it is fenced as before); once that holder is done, it is free."""
    store, other = two_stores
    key = uuid4()
    seen: list[bool] = []
    async with batching(store) as locks, trio.open_nursery() as nursery, locks.hold(key):

        async def next_holder() -> None:
            async with locks.hold(key) as held:
                seen.append(held)
                assert store.lock_session(key) is not None
                assert other.try_lock_many([(key, "instance")]) == [False]

        nursery.start_soon(next_holder)
        await trio.testing.wait_all_tasks_blocked()
    assert seen == [True]
    assert other.try_lock_many([(key, "instance")]) == [True]
    other.unlock_many([(key, "instance")])


async def test_after_a_failed_commit_the_index_version_is_read_again() -> None:
    """A commit that failed may have been written all the same (a connection lost at
    its end): the version read with the lock is no longer taken as known, so that the
    next load (this holder's, or the next one's it is passed on to) reads it again."""
    store, key = _Counted(), uuid4()
    locks = InstanceLocks(cast("Store", store), timedelta(seconds=30))
    async with locks.hold(key):
        assert locks.held_version(key) == (True, None)  # no index row when taken
        locks.committed(key, 3)
        assert locks.held_version(key) == (True, 3)
        locks.unsure(key)
        assert locks.held_version(key) == (False, None)


@pytest.mark.parametrize("alive", [True, False])
async def test_a_take_whose_release_is_still_queued_takes_the_lock_over(alive: bool) -> None:
    """A lock released (queued for the batching task) and taken again here before the
    release was made stays held: neither call is made, and the one release at the end
    frees it. Not if its session was lost meanwhile: then both calls are made."""
    store, key = _Counted(), uuid4()
    async with batching(cast("Store", store)) as locks:
        async with locks.hold(key, wait=False) as held:
            assert held
        assert [r.op for r in locks._queue] == ["unlock"]
        if not alive:
            store.lose_session()
        async with locks.hold(key, wait=False) as held:
            assert held
            assert locks.held == 1
        async with locks.hold(uuid4()):  # waits for its round: the release's too
            pass
        assert locks.held == 0
    takes = [("take", key), ("release", key)]
    assert [c for c in store.calls if c[1] == key] == (takes if alive else takes * 2)


async def test_a_task_woken_as_a_call_releases_takes_its_lock_over() -> None:
    """A call's release (waited for) is queued and the in-process lock freed at once; a
    task woken at that moment takes the lock over before the batching task makes the
    release (it lets the tasks just woken run first): one take and one release in all,
    and the call returns once its lock went to the next holder."""
    store, key = _Counted(), uuid4()
    go = trio.Event()
    seen: list[str] = []

    async def next_holder(locks: InstanceLocks) -> None:
        await go.wait()
        async with locks.hold(key) as held:
            seen.append(f"next held={held}")

    async with batching(cast("Store", store)) as locks, trio.open_nursery() as nursery:
        nursery.start_soon(next_holder, locks)
        await trio.testing.wait_all_tasks_blocked()
        async with locks.hold(key):
            go.set()
        seen.append("call returned")
    assert seen == ["next held=True", "call returned"] or seen == [
        "call returned",
        "next held=True",
    ]
    assert store.calls == [("take", key), ("release", key)]


@pytest.mark.postgres
async def test_a_call_that_waited_for_a_lock_held_elsewhere_waits_the_takeover_grace(
    two_stores: tuple[PostgresStore, PostgresStore], autojump_clock: trio.testing.MockClock
) -> None:
    """A call (it waits for a busy instance) whose holder in another process lets the
    lock go without committing anything (its session was cut while its handler ran,
    say) waits the takeover grace before it goes on, as an alarm run does: the holder
    may still be stopping its handler (outside review: a task's on_event in a client
    process overlapped a worker's execute whose lock session an admin had ended). A
    holder that committed meanwhile was done: no wait then."""
    store, other = two_stores
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for commits in (False, True):
        inst, _ = ContinuousInstance.start(
            None, "j", f"held-{commits}", now=start, state=1, first_run_at=start
        )
        key = inst.id
        assert other.try_lock_many([(key, "instance")]) == [True]
        async with batching(store) as locks, trio.open_nursery() as nursery:

            async def holder_lets_go(inst: ContinuousInstance, commits: bool) -> None:
                await trio.sleep(1)
                if commits:
                    other.save(inst)  # a new index version: the holder was done
                other.unlock_many([(inst.id, "instance")])

            nursery.start_soon(holder_lets_go, inst, commits)
            began = trio.current_time()
            async with locks.hold(key) as held:
                assert held
                waited = trio.current_time() - began
        grace = TAKEOVER_GRACE.total_seconds()
        if commits:
            assert waited < 1 + grace, waited
        else:
            assert waited >= 1 + grace, waited


@pytest.mark.parametrize(("lease", "grace"), [(30, 2.0), (8, 2.0), (4, 1.0), (1, 0.25)])
async def test_the_takeover_grace_is_a_quarter_of_a_short_lease(
    lease: float, grace: float, autojump_clock: trio.testing.MockClock
) -> None:
    """2 s, or a quarter of the lease if that is shorter: with a 4 s lease a frozen
    worker's instances were taken over up to 3 s after it (the verifying review);
    a short lease asks for quick takeovers."""
    guards = LockGuards(None, timedelta(seconds=lease))
    key = uuid4()
    guards.found_busy(key, "instance", 3)
    began = trio.current_time()
    await guards.after_takeover(key, "instance", 3)
    assert trio.current_time() - began == pytest.approx(grace)
    began = trio.current_time()
    await guards.after_takeover(key, "instance", 3)  # seen busy once: waited once
    assert trio.current_time() == began
