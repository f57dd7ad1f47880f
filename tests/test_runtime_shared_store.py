"""Several runtimes on one Postgres store (as several worker processes would be).

Each runtime opens its own store, so each has its own connections and its own
advisory-lock session, exactly as a separate process would: runs of one
instance never overlap, and each alarm is run once, by one of them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import MINUTE, T, running
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._runtime.locks import InstanceLocks
from durable_jobs._tools.purge import purge_instance
from durable_jobs.stores.postgres import PostgresStore, alarm_channel

pytestmark = pytest.mark.postgres


def shared_registry(log: list[tuple[str, int]], inside: dict[str, int]) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        inside[ctx.instance_id] = inside.get(ctx.instance_id, 0) + 1
        try:
            assert inside[ctx.instance_id] == 1, "two runs of one instance at once"
            log.append((ctx.instance_id, ctx.run_count))
            await trio.sleep(5)  # a run takes a while: the other runtime looks meanwhile
            ctx.set_state(ctx.state + 1)
        finally:
            inside[ctx.instance_id] -= 1

    return registry


async def test_two_runtimes_run_each_alarm_once(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Per-instance serialisation across processes: every run once, never two at once."""
    log: list[tuple[str, int]] = []
    inside: dict[str, int] = {}
    clock = dj.VirtualClock(T)
    ids = [f"i{n}" for n in range(4)]
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(
                running(
                    shared_registry(log, inside),
                    pg_url,
                    clock=clock,
                    poll_interval=timedelta(seconds=1),
                )
            )
            for _ in range(2)
        ]
        for n, instance_id in enumerate(ids):
            await workers[n % 2].continuous("tick").start(instance_id, 0)
        await trio.sleep((10 * MINUTE).total_seconds())
        for worker in workers:
            await worker.wait_idle()
        for instance_id in ids:
            counts = [c for i, c in log if i == instance_id]
            assert counts == list(range(1, len(counts) + 1)), counts
            assert len(counts) >= 9
            status = await workers[0].continuous("tick").status(instance_id)
            assert status.run_count == len(counts)
            assert await workers[1].continuous("tick").get_state(instance_id) == len(counts)


@asynccontextmanager
async def x_running_in_the_first(
    pg_url: str, log: list[tuple[str, int]], inside: dict[str, int]
) -> AsyncIterator[dj.Jobs]:
    """Two runtimes on ``pg_url``; the first starts instance ``x`` of ``tick``, whose
    immediate run (5 s) is in flight when the second runtime is handed over."""
    clock = dj.VirtualClock(T)
    async with (
        running(shared_registry(log, inside), pg_url, clock=clock) as first,
        running(shared_registry(log, inside), pg_url, clock=clock) as second,
    ):
        await first.continuous("tick").start("x", 0)
        await trio.testing.wait_all_tasks_blocked()
        yield second


async def test_a_client_call_waits_for_a_run_in_another_runtime(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A trigger from one process waits while another process runs the same instance."""
    log: list[tuple[str, int]] = []
    inside: dict[str, int] = {}
    async with x_running_in_the_first(pg_url, log, inside) as second:
        # The first runtime's immediate run sleeps 5 s; the trigger must wait for it.
        result = await second.continuous("tick").trigger("x")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)
        assert [c for _, c in log] == [1, 2]
        assert await second.continuous("tick").get_state("x") == 2


async def test_start_of_an_instance_another_runtime_runs_does_not_wait(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """start of an existing instance returns it unchanged at once, even while another
    process runs it (it waits for no run); a new one is created as usual."""
    log: list[tuple[str, int]] = []
    inside: dict[str, int] = {}
    async with x_running_in_the_first(pg_url, log, inside) as second:
        assert inside == {"x": 1}  # the first runtime's run sleeps 5 s
        with trio.fail_after(1):
            again = await second.continuous("tick").start("x", 7)
        assert again == dj.StartResult(False, dj.ContinuousStatus("running", 0, T))
        assert inside == {"x": 1}
        created = await second.continuous("tick").start("y", 0)
        assert created.created


def later_registry(ran: list[str], name: str) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("later", state=int, schedule=dj.every(MINUTE), start_immediately=False)
    async def later(ctx: dj.ContinuousContext[int]) -> None:
        ran.append(name)

    return registry


async def test_an_alarm_committed_elsewhere_is_heard_without_polling(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """LISTEN/NOTIFY: a runtime hears of an alarm another process committed (no polling)."""
    ran: list[str] = []
    clock = dj.VirtualClock(T)
    # Let real time pass before virtual time jumps, so the notification (real
    # network I/O) reaches the worker before the alarm is due.
    autojump_clock.autojump_threshold = 0.05
    async with running(later_registry(ran, "worker"), pg_url, clock=clock) as worker:
        # poll_interval is off in both (the helper's default): only NOTIFY can tell.
        async with running(later_registry(ran, "client"), pg_url, clock=clock) as client:
            await client.continuous("later").start("y", 0)
        # The client went away before the first run (due in a minute).
        for _ in range(100):
            await trio.sleep(5)
            if ran:
                break
        await worker.wait_idle()
        assert ran == ["worker"]
        status = await worker.continuous("later").status("y")
        assert status == dj.ContinuousStatus("running", 1, status.next_run_at)
        assert status.next_run_at is not None
        assert status.next_run_at > T + MINUTE


async def test_a_dropped_listener_connection_is_opened_again(
    pg_url: str, pg_schema: str, postgres_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The server ends the LISTEN session: the runtime listens again and still hears alarms."""
    ran: list[str] = []
    clock = dj.VirtualClock(T)
    autojump_clock.autojump_threshold = 0.05
    async with running(later_registry(ran, "worker"), pg_url, clock=clock) as worker:
        await trio.sleep(1)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                (f'LISTEN "{alarm_channel(pg_schema)}"',),
            ).fetchall()
        assert ended  # the worker's listener was there, and is gone now
        await trio.sleep(5)  # the listener notices and opens again (1 s backoff)
        async with running(later_registry(ran, "client"), pg_url, clock=clock) as client:
            await client.continuous("later").start("z", 0)
        for _ in range(100):
            await trio.sleep(5)
            if ran:
                break
        await worker.wait_idle()
        assert ran == ["worker"]


async def test_a_client_only_process_leaves_alarms_to_the_workers(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """run_alarms=False (a web process): its calls work, its due runs go to a worker."""
    log: list[tuple[str, int]] = []
    inside: dict[str, int] = {}
    ran_in: list[str] = []
    clock = dj.VirtualClock(T)
    autojump_clock.autojump_threshold = 0.05  # let NOTIFY arrive before time jumps

    def registry_for(name: str) -> dj.Registry:
        registry = shared_registry(log, inside)

        @registry.continuous("now", state=int, schedule=dj.every(MINUTE))
        async def now(ctx: dj.ContinuousContext[int]) -> None:
            ran_in.append(name)

        return registry

    async with (
        running(registry_for("worker"), pg_url, clock=clock) as worker,
        running(registry_for("client"), pg_url, clock=clock, run_alarms=False) as client,
    ):
        started = await client.continuous("now").start("n", 0)  # due at once
        assert started.status.next_run_at == T
        await client.wait_idle()  # nothing to wait for in a client
        for _ in range(100):
            await trio.sleep(0.5)
            if ran_in:
                break
        await worker.wait_idle()
        assert ran_in == ["worker"]
        # A trigger from the client still runs its handler in the client.
        assert (await client.continuous("now").trigger("n")).triggered
        assert ran_in == ["worker", "client"]


async def test_a_client_only_process_needs_a_shared_store(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Refused before anything is written: the SQLite file was created first (a
    newcomer's review), and an open Store object is refused as well."""
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not path.exists()
    with pytest.raises(dj.ConfigurationError, match="Postgres"):
        async with running(dj.Registry(), sqlite_url, run_alarms=False):
            pass  # pragma: no cover
    assert not path.exists()
    with dj.open_store(sqlite_url) as store, pytest.raises(dj.ConfigurationError):
        async with running(dj.Registry(), store, run_alarms=False):
            pass  # pragma: no cover


def test_workers_starting_together_on_a_fresh_schema(pg_url: str) -> None:
    """Several processes opening one new schema at once all succeed (serialised DDL)."""
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            dj.open_store(pg_url).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


async def test_a_lock_found_lost_as_it_is_taken_is_released(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session of a cross-process lock just taken is already lost when the work
    would start: LockLost, nothing runs, and the lock is released both across
    processes and in this one."""
    store = dj.open_store(pg_url)
    try:
        locks = InstanceLocks(store, timedelta(seconds=30))
        uuid = instance_uuid("continuous", "tick", "a")
        monkeypatch.setattr(store, "session_alive", lambda session: False)
        with pytest.raises(dj.LockLost):
            async with locks.hold(uuid):
                pytest.fail("the work ran under a lost lock")
        monkeypatch.undo()
        assert locks.held == 0
        assert isinstance(store, PostgresStore)
        assert store.lock_session(uuid) is None
        with trio.fail_after(5):
            async with locks.hold(uuid) as held:
                assert held
        assert store.lock_session(uuid) is None
    finally:
        store.close()


async def test_a_load_whose_cached_instance_is_evicted_meanwhile_reads_it_again(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """On a shared store a load not under the instance's lock reads the index version
    first; if the cached instance is evicted meanwhile (a lost lock stops the work on
    it), the load reads it again instead of failing on the cache (a KeyError ended a
    worker in an outage)."""
    ran: list[str] = []
    async with running(later_registry(ran, "a"), pg_url) as jobs:
        client = jobs.continuous("later")
        await client.start("x", 0)
        rt = jobs._rt
        uuid = instance_uuid("continuous", "later", "x")
        assert rt.cache.peek(uuid) is not None
        io = rt.io

        async def evicting_io(fn: Any, *args: Any) -> Any:
            if fn == rt.store.index_row:
                rt.cache.evict(uuid)
            return await io(fn, *args)

        rt.io = evicting_io  # type: ignore[method-assign]
        try:
            assert await client.get_state("x") == 0
        finally:
            rt.io = io  # type: ignore[method-assign]


async def test_an_instance_purged_and_started_again_is_run_by_a_live_worker(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A purge removes an instance's log, so the instance started again under the same id
    counts its versions from 1. A worker that still had the old instance cached, at a
    higher version, took its cached (terminated: no alarm) state for a newer one than the
    index row whenever it read the index again, and ran the new instance only once the
    old one left its cache (never, in an outside test)."""
    clock = dj.VirtualClock(T)
    runs: list[int] = []
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(MINUTE))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        runs.append(ctx.state)
        ctx.set_state(ctx.state + 1)

    async with (
        running(registry, pg_url, clock=clock, poll_interval=timedelta(seconds=1)) as worker,
        running(registry, pg_url, clock=clock, run_alarms=False) as client,
    ):
        await client.continuous("c").start("x", 0)
        await trio.sleep((5 * MINUTE).total_seconds())
        await worker.wait_idle()
        assert len(runs) >= 5  # the worker ran it (and has it cached, at version 6 or so)
        await client.continuous("c").terminate("x")
        with dj.open_store(pg_url) as store:
            purge_instance(store, "continuous", "c", "x")
        runs.clear()
        await client.continuous("c").start("x", 100)  # its first run is due at once
        await trio.sleep(5)  # the worker hears of it at once, and reads the index every 1 s
        await worker.wait_idle()
        assert runs == [100], "the new instance was not run"
        assert (await client.continuous("c").status("x")).run_count == 1


@pytest.mark.postgres
async def test_each_connection_names_its_worker_and_role(pg_url: str, postgres_url: str) -> None:
    """pg_stat_activity showed every connection of every worker with an empty
    application_name: an operator could not tell the workers, nor a worker's lock
    session, listener and pool, apart (an outside review)."""
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(MINUTE))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    async with dj.open_jobs(registry, pg_url) as jobs:
        await jobs.continuous(c).start("a", 0)
        await jobs.wait_idle()  # its first run took the instance's lock: a lock session
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            names = [
                str(row[0])
                for row in conn.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
                    (f"durable-jobs % {socket.gethostname()[:24]}:{os.getpid()}",),
                )
            ]
    roles = sorted({name.split()[1] for name in names})
    assert roles == ["listener", "locks", "pool"], names
