"""The in-process instance locks: a free one is taken without a task switch, a
busy one is waited for, a cancelled task takes none. The cross-process lock
calls queued for the task that batches them are made even if it stops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import cast
from uuid import UUID, uuid4

import pytest
import trio
import trio.testing

import durable_jobs as dj
from durable_jobs._errors import DurableJobsError
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
