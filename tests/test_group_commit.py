"""Group commit: runs that finish together are written in one transaction (SPEC §1).

The store is a real SQLite (or Postgres) store; the test only wraps its
``save`` to see how many instances each transaction carried.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import MINUTE, T, advance, running
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import JobInstance
from durable_jobs._runtime.commit import GroupCommit
from durable_jobs._runtime.runtime import Runtime
from durable_jobs._telemetry import telemetry


def ticking_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return registry


class CountingSaves:
    """Wraps ``store.save`` to record the size of every transaction."""

    def __init__(self, store: dj.Store) -> None:
        self.sizes: list[int] = []
        self.fail_next_batch = False
        self._save = store.save
        store.save = self  # type: ignore[method-assign]

    def __call__(self, *instances: JobInstance, **kwargs: Any) -> None:
        self.sizes.append(len(instances))
        if self.fail_next_batch and len(instances) > 1:
            self.fail_next_batch = False
            msg = "injected failure of a whole batch"
            raise dj.StoreError(msg)
        self._save(*instances, **kwargs)


async def test_runs_due_together_share_transactions(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Forty instances due at the same minute commit in fewer transactions than runs."""
    store = dj.open_store(durable_store_url)
    try:
        counting = CountingSaves(store)
        async with running(ticking_registry(), store) as jobs:
            client = jobs.continuous("tick")
            for n in range(40):
                await client.start(f"i{n}", 0)
            await jobs.wait_idle()
            counting.sizes.clear()
            await advance(jobs, MINUTE)
            assert sum(counting.sizes) == 40  # every run committed once
            assert len(counting.sizes) < 40  # ...in fewer transactions
            assert max(counting.sizes) > 1
            for n in range(40):
                assert await client.get_state(f"i{n}") == 2
    finally:
        store.close()


async def test_a_failed_batch_is_written_one_by_one(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A batch that fails as a whole is retried commit by commit: no run is lost."""
    store = dj.open_store(sqlite_url)
    try:
        counting = CountingSaves(store)
        async with running(ticking_registry(), store) as jobs:
            client = jobs.continuous("tick")
            for n in range(20):
                await client.start(f"i{n}", 0)
            await jobs.wait_idle()
            counting.fail_next_batch = True
            await advance(jobs, MINUTE)
            assert not counting.fail_next_batch  # a batch did fail
            states: list[Any] = [await client.get_state(f"i{n}") for n in range(20)]
            assert states == [2] * 20
            status = await client.status("i0")
            assert status.next_run_at == T + 2 * MINUTE
    finally:
        store.close()


async def test_a_commit_cancelled_while_its_write_is_on_the_way_waits_for_it(
    sqlite_url: str,
) -> None:
    """The wait for a queued write is not cut short by a cancellation: the commit's
    outcome is known before the cancellation shows (at the caller's next checkpoint)."""
    store = dj.open_store(sqlite_url)
    writing, release = trio.Event(), trio.Event()

    async def io(fn: Any, *args: Any) -> Any:
        writing.set()
        await release.wait()
        return await trio.to_thread.run_sync(fn, *args)

    commits = GroupCommit(store, io)
    agg, _ = ContinuousInstance.start(
        None, "tick", "c", now=T, state=0, first_run_at=T + MINUTE, type_version=1
    )
    seen: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            commits.start()
            nursery.start_soon(commits.run)
            with trio.CancelScope() as caller:

                async def cancel_once_writing() -> None:
                    await writing.wait()
                    caller.cancel()
                    await trio.sleep(0)
                    seen.append("cancelled")
                    release.set()

                nursery.start_soon(cancel_once_writing)
                await commits.commit(agg)
                seen.append("committed")
                await trio.lowlevel.checkpoint()
                seen.append("not reached")
            assert caller.cancelled_caught
            nursery.cancel_scope.cancel()
        assert seen == ["cancelled", "committed"]
        assert commits.commits == 1
        assert store.get("continuous", "tick", "c") is not None
    finally:
        store.close()


async def test_an_alarm_run_s_commit_on_a_store_that_does_not_block_needs_no_task_switch() -> None:
    """Written at once, so that its objects die young (a client's commit keeps its
    schedule point); a cancelled one writes nothing."""
    store = dj.open_store("memory://")
    commits = GroupCommit(store, Runtime.io.__get__(_NonBlocking(store)))
    order: list[str] = []

    async def other() -> None:
        order.append("other ran")

    def instance(name: str) -> JobInstance:
        agg, _ = ContinuousInstance.start(
            None, "tick", name, now=T, state=0, first_run_at=T + MINUTE, type_version=1
        )
        return agg

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await commits.commit(instance("run"), schedule_point=False)
        order.append("run committed")
    assert order == ["run committed", "other ran"]
    await commits.commit(instance("client"))
    with trio.CancelScope() as scope:
        scope.cancel()
        await commits.commit(instance("cancelled"), schedule_point=False)
    assert scope.cancelled_caught
    assert store.get("continuous", "tick", "run") is not None
    assert store.get("continuous", "tick", "client") is not None
    assert store.get("continuous", "tick", "cancelled") is None
    assert commits.commits == 2


class _NonBlocking:
    """What Runtime.io reads of its runtime."""

    def __init__(self, store: dj.Store) -> None:
        self.store = store


def _instances(prefix: str, n: int) -> list[JobInstance]:
    return [
        ContinuousInstance.start(
            None, "tick", f"{prefix}{i}", now=T, state=0, first_run_at=T + MINUTE, type_version=1
        )[0]
        for i in range(n)
    ]


class _HeldSaves:
    """Wraps ``store.save``: the first transaction waits (in its worker thread) until
    :attr:`go` is set; records each transaction's size."""

    def __init__(self, store: dj.Store) -> None:
        self.go = threading.Event()
        self.writing = threading.Event()
        self.sizes: list[int] = []
        self._save = store.save
        store.save = self  # type: ignore[method-assign]

    def __call__(self, *instances: JobInstance, **kwargs: Any) -> None:
        self.writing.set()
        assert self.go.wait(10)
        self.sizes.append(len(instances))
        self._save(*instances, **kwargs)


async def _wait_for(event: threading.Event) -> None:
    await trio.to_thread.run_sync(event.wait, 10)


class _Writer:
    """A group commit on ``store`` whose first transaction waits (:class:`_HeldSaves`),
    its store calls made in threads under one limiter (SQLite's), the calls recorded."""

    def __init__(self, store: dj.Store) -> None:
        self.held = _HeldSaves(store)
        self.limiter = trio.CapacityLimiter(1)
        self.calls: list[str] = []
        self.commits = GroupCommit(
            store, self.io, lambda: self.limiter.statistics().tasks_waiting > 0
        )

    async def io(self, fn: Any, *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def behind_the_first(
        self, behind: int, also: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Commit one instance; while it is written, ``behind`` more (and start
        ``also``); then let the write go. Returns once every commit is written."""
        commits = self.commits
        async with trio.open_nursery() as writer:
            commits.start()
            writer.start_soon(commits.run)
            async with trio.open_nursery() as callers:
                for agg in _instances("first", 1):
                    callers.start_soon(commits.commit, agg)
                await _wait_for(self.held.writing)
                for agg in _instances("more", behind):
                    callers.start_soon(commits.commit, agg)
                if also is not None:
                    callers.start_soon(also)
                await trio.testing.wait_all_tasks_blocked()
                self.held.go.set()
            writer.cancel_scope.cancel()


async def test_the_writing_thread_takes_the_next_groups_itself(sqlite_url: str) -> None:
    """Commits queued while a group is being written are written by the same thread
    call, a group after the other, without waiting for the writer task to be scheduled
    again (under load that wait was as long as a write)."""
    store = dj.open_store(sqlite_url)
    try:
        w = _Writer(store)
        # 150 behind the first: two more groups (100 at most).
        await w.behind_the_first(150)
        assert w.held.sizes == [1, 100, 50]
        assert w.calls == ["_drain"]
        commits = w.commits
        assert (commits.commits, commits.batches, commits.largest_batch) == (151, 3, 100)
        assert store.get("continuous", "tick", "more149") is not None
    finally:
        store.close()


async def test_the_writing_thread_lets_a_waiting_store_call_go_first(sqlite_url: str) -> None:
    """On SQLite (one thread for store calls) a read that waits while commits keep
    coming is made after the group being written, not after all of them."""
    store = dj.open_store(sqlite_url)
    try:
        w = _Writer(store)
        read: list[int] = []

        async def reader() -> None:
            # Written by then: the group of the first commit only.
            await w.io(lambda: read.append(len(w.held.sizes)))

        await w.behind_the_first(10, reader)
        assert read == [1]
        assert w.held.sizes == [1, 10]
        assert w.calls == ["_drain", "<lambda>", "_drain"]
    finally:
        store.close()


async def test_a_failing_commit_count_wakes_the_callers_and_is_logged(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A written group's callers are woken by a callback of the trio run: an error in
    counting its transaction (an OpenTelemetry exporter, say) is logged there instead
    of ending the trio run."""
    store = dj.open_store(sqlite_url)

    def broken(size: int) -> None:
        msg = "exporter broke"
        raise RuntimeError(msg)

    monkeypatch.setattr(telemetry, "record_commit", broken)
    try:
        w = _Writer(store)
        w.held.go.set()  # nothing held back
        await w.behind_the_first(2)
        assert store.get("continuous", "tick", "more1") is not None
        assert "Could not count a group commit's transactions" in caplog.text
    finally:
        store.close()


class _Boom(BaseException):
    """Not a store failure: what kills the writer (a bug, say)."""


async def test_commits_queued_behind_a_writer_that_died_are_not_left_waiting(
    sqlite_url: str,
) -> None:
    """The writer dies on a group (a BaseException from the store call): that group's
    callers and those queued behind it are told their commit was not written, instead
    of waiting for ever (and the runtime's shutdown with them)."""
    store = dj.open_store(sqlite_url)
    held = _HeldSaves(store)
    save = held._save

    def boom(*instances: JobInstance, **kwargs: Any) -> None:
        raise _Boom

    held._save = boom

    async def io(fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    commits = GroupCommit(store, io)
    outcomes: list[str] = []

    async def commit(agg: JobInstance) -> None:
        try:
            await commits.commit(agg)
        except dj.DurableJobsError as exc:
            outcomes.append(type(exc).__name__ + ": " + str(exc))
        else:
            outcomes.append("written")

    async def serve() -> None:
        async with trio.open_nursery() as writer:
            commits.start()
            writer.start_soon(commits.run)
            for agg in _instances("first", 1):
                writer.start_soon(commit, agg)
            await _wait_for(held.writing)
            for agg in _instances("behind", 5):
                writer.start_soon(commit, agg)
            await trio.testing.wait_all_tasks_blocked()
            held.go.set()

    try:
        with pytest.raises(BaseExceptionGroup) as died:
            await serve()
        assert died.group_contains(_Boom)
        assert len(outcomes) == 6
        assert sum("interrupted" in o for o in outcomes) == 1
        assert sum("writer stopped before it" in o for o in outcomes) == 5
        assert store.get("continuous", "tick", "behind0") is None
        # After the writer is gone a commit is written by its caller.
        held._save = save
        agg = _instances("after", 1)[0]
        await commits.commit(agg)
        assert store.get("continuous", "tick", "after0") is not None
    finally:
        store.close()


async def test_a_group_the_store_refuses_as_a_whole_fails_at_once(tmp_path: Path) -> None:
    """A group refused because another program holds the SQLite file's lock fails
    whole, each caller with its own error: each commit was tried alone after it
    before, each waiting ``lock_timeout`` again, so a send queued behind twenty runs
    waited twenty-one times as long as ``?lock_timeout`` says (and could not be
    cancelled meanwhile)."""
    path = tmp_path / "jobs.db"
    store = dj.open_store(f"sqlite:///{path}?lock_timeout=0")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        w = _Writer(store)
        errors: list[BaseException] = []

        async def commit(agg: JobInstance) -> None:
            try:
                await w.commits.commit(agg)
            except dj.StoreError as exc:
                errors.append(exc)

        other.execute("BEGIN EXCLUSIVE")
        async with trio.open_nursery() as writer:
            w.commits.start()
            writer.start_soon(w.commits.run)
            async with trio.open_nursery() as callers:
                callers.start_soon(commit, _instances("first", 1)[0])
                await _wait_for(w.held.writing)
                for agg in _instances("more", 5):
                    callers.start_soon(commit, agg)
                await trio.testing.wait_all_tasks_blocked()
                w.held.go.set()
            writer.cancel_scope.cancel()
        assert w.held.sizes == [1, 5]  # not [1, 5, 1, 1, 1, 1, 1]
        assert len(errors) == 6
        assert len({id(e) for e in errors}) == 6
        for e in errors:
            assert "database is locked" in str(e)
            assert "nothing was written" in str(e)
        other.execute("ROLLBACK")
        assert store.get("continuous", "tick", "more0") is None
    finally:
        other.close()
        store.close()
