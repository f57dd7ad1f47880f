"""Instance lifecycle (SCENARIOS §8, L01-L06), restarts and clocks (X01, X02), stored
data (X12, X13), and the runtime's own lifecycle: shutdown, ``serve``, observers,
busy instances, reads, store ownership and errors (SPEC §1, §7, §8).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names, note_registry, running
from durable_jobs.stores.sqlite import WAL_SIZE_LIMIT

Clock = trio.testing.MockClock


class Counter(BaseModel):
    count: int


class Ping(BaseModel):
    text: str


def lifecycle_registry() -> dj.Registry:
    """One job of each kind, all doing nothing on their own."""
    registry = dj.Registry()

    @registry.continuous("beat", state=Counter, schedule=dj.every(HOUR), start_immediately=False)
    async def beat(ctx: dj.ContinuousContext[Counter]) -> None:
        ctx.update_state(lambda s: Counter(count=s.count + 1))

    @registry.debounce("batch", event=Ping, flush_after=MINUTE)
    async def batch(ctx: dj.DebounceContext[Ping]) -> None:
        pass

    @registry.task("my_task", event=Ping, state=Counter)
    async def my_task(ctx: dj.TaskContext[Counter]) -> None:
        pass

    @my_task.on_event
    async def on_event(event: Ping, ctx: dj.TaskContext[Counter]) -> None:
        ctx.update_state(lambda s: Counter(count=(s.count if s else 0) + 1))

    return registry


NOT_FOUND_CONTINUOUS = dj.ContinuousStatus("not_found", 0, None)
NOT_FOUND_DEBOUNCE = dj.DebounceStatus("not_found", 0, None, None)
NOT_FOUND_TASK = dj.TaskStatus("not_found", None, 0, 0, None)


async def assert_not_found(jobs: dj.Jobs, instance_id: str) -> None:
    c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("my_task")
    assert await c.status(instance_id) == NOT_FOUND_CONTINUOUS
    assert await c.get_state(instance_id) is None
    assert await d.status(instance_id) == NOT_FOUND_DEBOUNCE
    assert await d.get_state(instance_id) is None
    assert await t.status(instance_id) == NOT_FOUND_TASK
    assert await t.get_state(instance_id) is None


def index_keys(store: dj.Store) -> list[tuple[str, str, str]]:
    return [(r.kind, r.job, r.instance_id) for r in store.list_instances()]


# ---- §8 instance lifecycle records ---------------------------------------------------------


async def test_an_unused_id_has_no_record(store_url: str, autojump_clock: Clock) -> None:
    """L01 An unused id has no record."""
    async with running(lifecycle_registry(), store_url) as jobs:
        await assert_not_found(jobs, "nobody")
        assert await jobs.continuous("beat").history("nobody") == []
        assert await jobs.debounce("batch").history("nobody") == []
        assert await jobs.task("my_task").history("nobody") == []
        assert index_keys(jobs.store) == []


async def test_creation_records_kind_job_and_time(store_url: str, autojump_clock: Clock) -> None:
    """L02 Creation records kind, job and time."""
    async with running(lifecycle_registry(), store_url) as jobs:
        client = jobs.task("my_task")
        assert await client.send("t1", Ping(text="hi")) == dj.SendResult(True, None, False)
        status = await client.status("t1")
        assert status == dj.TaskStatus("idle", None, 1, 0, T)
        history = await client.history("t1")
        first = history[0]
        assert (first.name, first.kind, first.job, first.instance_id, first.version, first.at) == (
            "started",
            "task",
            "my_task",
            "t1",
            1,
            T,
        )
        assert (first.data["kind"], first.data["job"], first.data["instance_id"]) == (
            "task",
            "my_task",
            "t1",
        )
        assert all((r.kind, r.job, r.instance_id) == ("task", "my_task", "t1") for r in history)
        assert [r.version for r in history] == list(range(1, len(history) + 1))
        assert {r.at for r in history} == {T}
        assert index_keys(jobs.store) == [("task", "my_task", "t1")]


async def test_later_changes_carry_their_own_time(store_url: str, autojump_clock: Clock) -> None:
    """L03 Later changes carry their own time."""
    async with running(lifecycle_registry(), store_url) as jobs:
        client = jobs.task("my_task")
        await client.send("t1", Ping(text="one"))
        before = await client.history("t1")
        await trio.sleep(5)
        assert await client.send("t1", Ping(text="two")) == dj.SendResult(False, None, False)
        status = await client.status("t1")
        assert status == dj.TaskStatus("idle", None, 2, 0, T)
        after = await client.history("t1")
        assert after[: len(before)] == before
        new = after[len(before) :]
        assert new, "the second send recorded nothing"
        assert {r.at for r in new} == {T + 5 * SECOND}
        assert [r.version for r in new] == list(range(len(before) + 1, len(after) + 1))
        assert "event_added" in names(new)
        assert "started" not in names(new)
        assert await client.get_state("t1") == dj.TaskState(Counter(count=2), None)


async def test_operations_on_unknown_ids_create_nothing(
    store_url: str, autojump_clock: Clock
) -> None:
    """L04 Operations on unknown ids create nothing."""
    async with running(lifecycle_registry(), store_url) as jobs:
        c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("my_task")
        assert await c.trigger("ghost") == dj.TriggerResult(False, False, False)
        assert await c.terminate("ghost") == dj.TerminateResult(False)
        assert await d.flush("ghost") == dj.FlushResult(False, 0, "empty", False)
        assert await d.clear("ghost") == dj.ClearResult(False, 0)
        assert await t.trigger("ghost") == dj.TriggerResult(False, False, False)
        assert await t.terminate("ghost") == dj.TerminateResult(False)
        await jobs.wait_idle()
        await assert_not_found(jobs, "ghost")
        assert await c.history("ghost") == []
        assert await d.history("ghost") == []
        assert await t.history("ghost") == []
        assert index_keys(jobs.store) == []
        assert jobs.store.next_alarms() == []


async def test_terminate_deletes_the_live_record_not_the_history(
    store_url: str, autojump_clock: Clock
) -> None:
    """L05 Terminate deletes the live record, not the history."""
    async with running(lifecycle_registry(), store_url) as jobs:
        client = jobs.continuous("beat")
        started = await client.start("c1", Counter(count=1))
        assert started == dj.StartResult(True, dj.ContinuousStatus("running", 0, T + HOUR))
        await advance(jobs, HOUR)
        assert await client.status("c1") == dj.ContinuousStatus("running", 1, T + 2 * HOUR)
        assert await client.terminate("c1", reason="done") == dj.TerminateResult(True)
        assert await client.status("c1") == NOT_FOUND_CONTINUOUS
        assert await client.get_state("c1") is None
        history = await client.history("c1")
        assert names(history) == [
            "started",
            "alarm_set",
            "run_succeeded",
            "state_changed",
            "alarm_set",
            "alarm_cleared",
            "terminated",
        ]
        assert history[-1].data["reason"] == "done"
        assert history[-1].at == T + HOUR
        # The alarm is gone: nothing runs any more.
        await advance(jobs, 3 * HOUR)
        assert await client.status("c1") == NOT_FOUND_CONTINUOUS
        assert jobs.store.next_alarms() == []
        assert await client.terminate("c1") == dj.TerminateResult(False)

        again = await client.start("c1", Counter(count=10))
        assert again == dj.StartResult(True, dj.ContinuousStatus("running", 0, T + 5 * HOUR))
        assert await client.get_state("c1") == Counter(count=10)
        full = await client.history("c1")
        assert full[: len(history)] == history
        assert names(full[len(history) :]) == ["started", "alarm_set"]
        await advance(jobs, HOUR)
        assert await client.get_state("c1") == Counter(count=11)
        assert await client.status("c1") == dj.ContinuousStatus("running", 1, T + 6 * HOUR)


async def test_each_kind_keeps_its_own_instances(store_url: str, autojump_clock: Clock) -> None:
    """L06 Each kind keeps its own instances."""
    async with running(lifecycle_registry(), store_url) as jobs:
        c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("my_task")
        await c.start("x", Counter(count=7))
        await d.add("x", Ping(text="d1"))
        await d.add("x", Ping(text="d2"))
        await t.send("x", Ping(text="t1"))
        assert index_keys(jobs.store) == [
            ("continuous", "beat", "x"),
            ("debounce", "batch", "x"),
            ("task", "my_task", "x"),
        ]
        assert await c.get_state("x") == Counter(count=7)
        assert await d.get_state("x") == Ping(text="d2")
        assert await t.get_state("x") == dj.TaskState(Counter(count=1), None)
        assert await d.status("x") == dj.DebounceStatus("debouncing", 2, T, T + MINUTE)
        for client, kind, job in ((c, "continuous", "beat"), (d, "debounce", "batch")):
            history = await client.history("x")
            assert {(r.kind, r.job, r.instance_id) for r in history} == {(kind, job, "x")}
        uuids = {
            (await c.history("x"))[0].instance_uuid,
            (await d.history("x"))[0].instance_uuid,
            (await t.history("x"))[0].instance_uuid,
        }
        assert len(uuids) == 3
        # Ending one leaves the others alone.
        assert await c.terminate("x") == dj.TerminateResult(True)
        assert await c.status("x") == NOT_FOUND_CONTINUOUS
        assert await d.status("x") == dj.DebounceStatus("debouncing", 2, T, T + MINUTE)
        assert await t.status("x") == dj.TaskStatus("idle", None, 1, 0, T)


# ---- X01 restart, X02 clock jumps ----------------------------------------------------------


def alarm_registry(fired: list[tuple[str, datetime]], clock: dj.Clock) -> dj.Registry:
    """A task whose on_event sets the alarm ``event`` seconds from now; execute logs it."""
    registry = dj.Registry()

    @registry.task("alarm", event=int, state=int)
    async def alarm(ctx: dj.TaskContext[int]) -> None:
        fired.append((ctx.instance_id, clock.now()))
        ctx.set_state((ctx.state or 0) + 1)

    @alarm.on_event
    async def schedule(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=event))

    return registry


@pytest.mark.parametrize("window", [3, 1])
async def test_restart_resumes_from_the_alarm_index(
    window: int,
    durable_store_url: str,
    autojump_clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """X01 Restart resumes from the alarm index."""
    clock = dj.VirtualClock(T)
    fired: list[tuple[str, datetime]] = []
    registry = alarm_registry(fired, clock)
    ids = [f"i{k:02d}" for k in range(1, 11)]  # i01 due at T+1h ... i10 at T+10h
    async with running(registry, durable_store_url, clock=clock, alarm_window=window) as jobs:
        client = jobs.task("alarm")
        for k, instance_id in enumerate(ids, start=1):
            sent = await client.send(instance_id, k * 3600)
            assert sent.scheduled_at == T + k * HOUR
        await advance(jobs, 90 * MINUTE)
        assert fired == [("i01", T + HOUR)]
    await trio.sleep((4 * HOUR).total_seconds())  # down until T+5.5h: i02..i05 fall due

    rebuilt: list[str] = []
    store = dj.open_store(durable_store_url)
    real_get = store.get

    def counting_get(kind: Any, job: str, instance_id: str) -> Any:
        rebuilt.append(instance_id)
        return real_get(kind, job, instance_id)

    monkeypatch.setattr(store, "get", counting_get)
    restart = T + 5 * HOUR + 30 * MINUTE
    try:
        async with dj.open_jobs(
            registry, store, clock=clock, alarm_window=window, poll_interval=None
        ) as jobs:
            await jobs.wait_idle()
            # Overdue alarms ran once each, at the restart; only they were rebuilt.
            # (they run concurrently, in no particular order)
            assert fired[0] == ("i01", T + HOUR)
            assert sorted(fired[1:]) == [(i, restart) for i in ids[1:5]]
            assert sorted(rebuilt) == ids[1:5]
            await advance(jobs, 5 * HOUR)
            assert fired[5:] == [(i, T + k * HOUR) for k, i in enumerate(ids, start=1) if k > 5]
            assert sorted(i for i, _ in fired) == ids  # each exactly once
            for instance_id in ids:
                status = await jobs.task("alarm").status(instance_id)
                assert (status.status, status.execute_count, status.scheduled_at) == (
                    "idle",
                    1,
                    None,
                )
            assert store.next_alarms() == []
    finally:
        store.close()


@pytest.mark.parametrize("window", [1000, 2])
async def test_a_wall_clock_jump_loses_and_doubles_nothing(
    window: int, store_url: str, autojump_clock: Clock
) -> None:
    """X02 A wall-clock jump loses and doubles nothing."""
    clock = dj.VirtualClock(T)
    fired: list[tuple[str, datetime]] = []
    registry = alarm_registry(fired, clock)

    @registry.continuous("tick", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        fired.append((f"tick{ctx.run_count}", clock.now()))

    async with running(registry, store_url, clock=clock, alarm_window=window) as jobs:
        for instance_id, seconds in (("a1", 3600), ("a2", 7200), ("a3", 10800), ("a5", 18000)):
            await jobs.task("alarm").send(instance_id, seconds)
        await jobs.continuous("tick").start("k", 0)  # first run at T+1h
        await jobs.wait_idle()
        assert fired == []

        clock.jump(150 * MINUTE)  # to T+2.5h: past a1, a2 and tick's first slots
        await jobs.wait_idle()
        jumped = T + 150 * MINUTE
        assert sorted(fired) == [("a1", jumped), ("a2", jumped), ("tick1", jumped)]
        tick_status = await jobs.continuous("tick").status("k")
        assert tick_status == dj.ContinuousStatus("running", 1, jumped + HOUR)

        clock.jump(-2 * HOUR)  # back to T+0.5h: nothing already run runs again
        await jobs.wait_idle()
        assert len(fired) == 3
        await advance(jobs, 2 * HOUR)  # the clock reads T+2.5h again
        assert len(fired) == 3
        await advance(jobs, 30 * MINUTE)  # T+3h: a3
        assert fired[3:] == [("a3", T + 3 * HOUR)]
        await advance(jobs, 2 * HOUR)  # T+5h: tick at T+3.5h and T+4.5h, a5 at T+5h
        assert fired[4:] == [
            ("tick2", T + 210 * MINUTE),
            ("tick3", T + 270 * MINUTE),
            ("a5", T + 5 * HOUR),
        ]
        for instance_id in ("a1", "a2", "a3", "a5"):
            state = await jobs.task("alarm").get_state(instance_id)
            assert state == dj.TaskState(1, None)
        assert [name for name, _ in fired].count("a1") == 1


# ---- X12 corrupt rows, X13 bad input -------------------------------------------------------


@pytest.mark.parametrize("row", ["event", "snapshot"])
async def test_a_corrupt_store_row_is_reported_not_papered_over(
    row: str, sqlite_url: str, autojump_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """X12 A corrupt store row is reported, not papered over."""
    clock = dj.VirtualClock(T)
    runs: list[tuple[str, int]] = []
    registry = dj.Registry()

    @registry.continuous("beat", state=Counter, schedule=dj.every(HOUR))
    async def beat(ctx: dj.ContinuousContext[Counter]) -> None:
        runs.append((ctx.instance_id, ctx.run_count))
        ctx.update_state(lambda s: Counter(count=s.count + 1))

    def open_store() -> dj.Store:
        return dj.open_store(sqlite_url, snapshot_interval=2 if row == "snapshot" else 0)

    with open_store() as store:
        async with dj.open_jobs(registry, store, clock=clock, poll_interval=None) as jobs:
            await jobs.continuous("beat").start("bad", Counter(count=0))
            await jobs.continuous("beat").start("good", Counter(count=0))
            await jobs.wait_idle()
            bad_uuid = (await jobs.continuous("beat").history("bad"))[0].instance_uuid
    assert sorted(runs) == [("bad", 1), ("good", 1)]

    path = sqlite_url.removeprefix("sqlite:///")
    table = "stored_events" if row == "event" else "stored_snapshots"
    with sqlite3.connect(path) as db:
        oid, version = next(
            (oid, version)
            for oid, version in db.execute(
                f"SELECT originator_id, MAX(originator_version) FROM {table} "
                "GROUP BY originator_id"
            )
            if oid.replace("-", "") == bad_uuid.hex
        )
        corrupt_version = 1 if row == "event" else version
        db.execute(
            f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (b'{"timestamp": not json', oid, corrupt_version),
        )
    db.close()

    def dump() -> list[list[Any]]:
        with sqlite3.connect(path) as db:
            tables = [
                db.execute(
                    f"SELECT originator_version, topic, state FROM {name} "
                    "WHERE originator_id = ? ORDER BY originator_version",
                    (oid,),
                ).fetchall()
                for name in ("stored_events", "stored_snapshots")
            ]
            index = db.execute(
                "SELECT status, due_at, version FROM dj_instances WHERE instance_uuid = ?",
                (bad_uuid.hex,),
            ).fetchall()
        db.close()
        return [*tables, index]

    before = dump()
    assert before[0 if row == "event" else 1], "nothing was corrupted"
    runs.clear()
    caplog.set_level(logging.ERROR, logger="durable_jobs")
    with open_store() as store:
        async with dj.open_jobs(registry, store, clock=clock, poll_interval=None) as jobs:
            client = jobs.continuous("beat")
            reads: list[Callable[[str], Awaitable[object]]] = [client.get_state, client.status]
            if row == "event":
                reads.append(client.history)
            else:  # the events themselves are intact
                assert len(await client.history("bad")) == 5
            for read in reads:
                with pytest.raises(dj.StoreError) as info:
                    await read("bad")
                assert isinstance(info.value, dj.DurableJobsError)
                assert "'bad'" in str(info.value)
                assert info.value.__cause__ is not None
            assert await client.get_state("good") == Counter(count=1)

            await advance(jobs, 3 * HOUR)
            assert runs == [("good", 2), ("good", 3), ("good", 4)]
            assert await client.status("good") == dj.ContinuousStatus("running", 4, T + 4 * HOUR)
            with pytest.raises(dj.StoreError):
                await client.trigger("bad")
    logged = [r for r in caplog.records if "'bad'" in r.getMessage()]
    assert logged, "the failing alarm of 'bad' was not logged"
    assert all(r.levelno >= logging.ERROR for r in logged)
    fields = {(r.dj_kind, r.dj_job, r.dj_instance_id) for r in logged}  # type: ignore[attr-defined]
    assert fields == {("continuous", "beat", "bad")}
    assert not [r for r in caplog.records if "'good'" in r.getMessage()]
    assert dump() == before  # nothing overwritten, nothing appended


async def test_bad_input_writes_nothing(store_url: str, autojump_clock: Clock) -> None:
    """X13 Bad input writes nothing."""
    async with running(lifecycle_registry(), store_url) as jobs:
        c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("my_task")
        with pytest.raises(dj.ValidationError) as info:
            await c.start("x", {"count": "many"})
        assert isinstance(info.value.__cause__, pydantic.ValidationError)
        with pytest.raises(dj.ValidationError):
            await c.start("x", "not a counter")
        with pytest.raises(dj.ValidationError) as info:
            await d.add("x", {"txt": "typo"})
        assert isinstance(info.value.__cause__, pydantic.ValidationError)
        with pytest.raises(dj.ValidationError):
            await t.send("x", 42)
        await jobs.wait_idle()
        assert jobs.store.list_instances() == []
        assert jobs.store.next_alarms() == []
        assert await c.history("x") == []
        assert await d.history("x") == []
        assert await t.history("x") == []
        await assert_not_found(jobs, "x")

        # An existing instance is left exactly as it was.
        await d.add("y", Ping(text="ok"))
        (row,) = jobs.store.list_instances()
        history = await d.history("y")
        with pytest.raises(dj.ValidationError):
            await d.add("y", {"text": 5})
        with pytest.raises(dj.ValidationError):
            await d.add("y", None)
        assert jobs.store.list_instances() == [row]
        assert await d.history("y") == history
        assert await d.status("y") == dj.DebounceStatus("debouncing", 1, T, T + MINUTE)


@pytest.mark.parametrize("kind", ["continuous", "debounce"])
async def test_an_unvalidated_model_instance_is_refused(kind: str, autojump_clock: Clock) -> None:
    """X13 Bad input writes nothing: also a model instance built without validation
    (``model_construct``) whose fields do not fit; storing it would leave an instance
    that can no longer be read."""
    async with running(lifecycle_registry(), "memory://") as jobs:
        deliver: Callable[[], Awaitable[object]] = (
            (lambda: jobs.continuous("beat").start("x", Counter.model_construct(count="many")))
            if kind == "continuous"
            else (lambda: jobs.debounce("batch").add("x", Ping.model_construct(text=None)))
        )
        with pytest.raises(dj.ValidationError):
            await deliver()
        assert jobs.store.list_instances() == []
        await assert_not_found(jobs, "x")


# ---- shutdown ------------------------------------------------------------------------------


async def test_shutdown_lets_runs_in_flight_commit_and_starts_no_new_runs(
    durable_store_url: str, autojump_clock: Clock
) -> None:
    """Leaving open_jobs starts no new runs; a run that ends within the grace commits."""
    clock = dj.VirtualClock(T)
    log: list[tuple[str, datetime]] = []
    slow_started = trio.Event()
    registry = alarm_registry(log, clock)

    @registry.continuous("slow", state=Counter, schedule=dj.every(HOUR))
    async def slow(ctx: dj.ContinuousContext[Counter]) -> None:
        log.append(("slow", clock.now()))
        ctx.set_state(Counter(count=ctx.state.count + 1))
        slow_started.set()
        await trio.sleep(2)
        log.append(("slow done", clock.now()))

    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.task("alarm").send("p", 1)  # its alarm falls due during the grace
        await jobs.continuous("slow").start("s", Counter(count=0))
        await slow_started.wait()
    assert log == [("slow", T), ("slow done", T + 2 * SECOND)]
    with dj.open_store(durable_store_url) as store:
        rows = {r.instance_id: r for r in store.list_instances()}
        assert rows["p"].due_at == T + SECOND  # still pending, not run
        assert rows["s"].due_at == T + 2 * SECOND + HOUR  # the slow run committed

    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert log[2:] == [("p", T + 2 * SECOND)]
        status = await jobs.continuous("slow").status("s")
        assert status == dj.ContinuousStatus("running", 1, T + 2 * SECOND + HOUR)
        assert await jobs.continuous("slow").get_state("s") == Counter(count=1)


async def test_shutdown_cancels_a_run_past_the_grace_and_reruns_it(
    durable_store_url: str, autojump_clock: Clock
) -> None:
    """A run still going after shutdown_grace is cancelled, commits nothing, and runs
    again after the next start."""
    clock = dj.VirtualClock(T)
    attempts: list[tuple[int, datetime]] = []
    cancelled: list[datetime] = []
    started = trio.Event()
    registry = dj.Registry()

    @registry.continuous("stuck", state=Counter, schedule=dj.every(HOUR))
    async def stuck(ctx: dj.ContinuousContext[Counter]) -> None:
        attempts.append((ctx.run_count, clock.now()))
        ctx.set_state(Counter(count=ctx.state.count + 1))
        if len(attempts) == 1:
            started.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(clock.now())
                raise

    grace = timedelta(seconds=3)
    async with running(registry, durable_store_url, clock=clock, shutdown_grace=grace) as jobs:
        await jobs.continuous("stuck").start("s", Counter(count=0))
        await started.wait()
    assert attempts == [(1, T)]
    assert cancelled == [T + 3 * SECOND]
    with dj.open_store(durable_store_url) as store:
        (row,) = store.list_instances()
        assert (row.version, row.due_at) == (2, T)  # started + alarm_set: nothing of the run

    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert attempts == [(1, T), (1, T + 3 * SECOND)]
        client = jobs.continuous("stuck")
        assert await client.get_state("s") == Counter(count=1)
        assert await client.status("s") == dj.ContinuousStatus("running", 1, T + 3 * SECOND + HOUR)
        history = names(await client.history("s"))
        assert history == [
            "started",
            "alarm_set",
            "run_succeeded",
            "state_changed",
            "alarm_set",
        ]


@pytest.mark.parametrize("kind", ["debounce", "task"])
async def test_a_flush_or_task_run_cancelled_at_shutdown_runs_again(
    kind: str, durable_store_url: str, autojump_clock: Clock
) -> None:
    """A debounce flush or task execute cancelled after the grace runs again, once, on
    the same input after the next start; the cancelled try left no run record."""
    clock = dj.VirtualClock(T)
    calls: list[tuple[int, int, datetime]] = []
    started = trio.Event()
    registry = dj.Registry()

    async def block_first_call() -> None:
        if len(calls) == 1:
            started.set()
            await trio.sleep_forever()

    @registry.debounce("d", event=int, flush_after=MINUTE)
    async def flush(ctx: dj.DebounceContext[int]) -> None:
        calls.append((ctx.state, ctx.event_count, clock.now()))
        await block_first_call()

    @registry.task("t", event=int, state=int)
    async def execute(ctx: dj.TaskContext[int]) -> None:
        assert ctx.state is not None
        calls.append((ctx.state, ctx.execute_count, clock.now()))
        ctx.set_state(ctx.state + 100)
        await block_first_call()

    @execute.on_event
    async def receive(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.schedule(MINUTE)

    grace = timedelta(seconds=1)
    async with running(registry, durable_store_url, clock=clock, shutdown_grace=grace) as jobs:
        if kind == "debounce":
            await jobs.debounce("d").add("x", 1)
            await jobs.debounce("d").add("x", 2)
        else:
            await jobs.task("t").send("x", 2)
        await started.wait()
    due = T + MINUTE
    assert calls == [(2, 2 if kind == "debounce" else 1, due)]

    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert calls[1:] == [(2, 2 if kind == "debounce" else 1, due + SECOND)]
        await advance(jobs, HOUR)
        assert len(calls) == 2
        if kind == "debounce":
            d = jobs.debounce("d")
            assert await d.status("x") == dj.DebounceStatus("idle", 0, None, None)
            assert names(await d.history("x")) == [
                "started",
                "event_added",
                "state_changed",
                "alarm_set",
                "event_added",
                "state_changed",
                "batch_closed",
                "run_succeeded",
                "flushed",
                "alarm_cleared",
            ]
        else:
            t = jobs.task("t")
            assert await t.status("x") == dj.TaskStatus("idle", None, 1, 1, T)
            assert await t.get_state("x") == dj.TaskState(102, None)
            assert names(await t.history("x")) == [
                "started",
                "event_added",
                "run_succeeded",
                "state_changed",
                "alarm_set",
                "run_succeeded",
                "state_changed",
                "alarm_cleared",
            ]


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
async def test_a_call_waiting_on_a_busy_instance_at_shutdown_starts_no_run(
    durable: bool, sqlite_url: str, autojump_clock: Clock
) -> None:
    """Leaving open_jobs starts no new runs: a trigger issued from a task outside the
    block, still waiting for the instance's run in flight when the block ends, fails
    with DurableJobsError instead of running the handler against a closing runtime."""
    url = sqlite_url if durable else "memory://"
    clock = dj.VirtualClock(T)
    calls: list[tuple[object, datetime]] = []
    started = trio.Event()
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        calls.append((ctx.run_count, clock.now()))
        started.set()
        await trio.sleep(2)
        calls.append(("done", clock.now()))

    outcome: list[object] = []

    async def late_trigger(client: dj.ContinuousClient[int]) -> None:
        try:
            outcome.append(await client.trigger("x"))
        except dj.DurableJobsError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as outer, running(registry, url, clock=clock) as jobs:
        client = jobs.continuous(c)
        await client.start("x", 0)
        await started.wait()
        outer.start_soon(late_trigger, client)
        await trio.sleep(0.5)  # the trigger now waits for the run in flight
    assert calls == [(1, T), ("done", T + 2 * SECOND)]  # no run after the block ended
    assert len(outcome) == 1
    assert isinstance(outcome[0], dj.DurableJobsError)
    assert "closed" in str(outcome[0])


async def test_calls_after_the_block_ends_raise(store_url: str, autojump_clock: Clock) -> None:
    """Every client call after open_jobs has ended raises DurableJobsError."""
    async with running(lifecycle_registry(), store_url) as jobs:
        c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("my_task")
        await c.start("x", Counter(count=0))
        await d.add("x", Ping(text="a"))
        await t.send("x", Ping(text="a"))
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: c.start("y", Counter(count=0)),
        lambda: c.trigger("x"),
        lambda: c.status("x"),
        lambda: c.get_state("x"),
        lambda: c.terminate("x"),
        lambda: c.history("x"),
        lambda: d.add("x", Ping(text="b")),
        lambda: d.flush("x"),
        lambda: d.clear("x"),
        lambda: d.status("x"),
        lambda: d.get_state("x"),
        lambda: d.history("x"),
        lambda: t.send("x", Ping(text="b")),
        lambda: t.trigger("x"),
        lambda: t.status("x"),
        lambda: t.get_state("x"),
        lambda: t.terminate("x"),
        lambda: t.history("x"),
    ]
    for call in calls:
        with pytest.raises(dj.DurableJobsError, match="closed"):
            await call()


# ---- serve, observers, busy instances, stores, errors --------------------------------------


async def test_serve_runs_until_cancelled(store_url: str, autojump_clock: Clock) -> None:
    """serve(registry, url) started in a nursery hands back Jobs and serves until cancelled."""
    clock = dj.VirtualClock(T)
    runs: list[tuple[int, datetime]] = []
    registry = dj.Registry()

    @registry.continuous("beat", state=int, schedule=dj.every(HOUR))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        runs.append((ctx.run_count, clock.now()))

    async with trio.open_nursery() as nursery:
        jobs = await nursery.start(
            functools.partial(dj.serve, clock=clock, poll_interval=None), registry, store_url
        )
        assert isinstance(jobs, dj.Jobs)
        assert jobs.clock is clock
        client = jobs.continuous("beat")
        assert (await client.start("b", 0)).created
        await advance(jobs, 2 * HOUR)
        assert runs == [(1, T), (2, T + HOUR), (3, T + 2 * HOUR)]
        nursery.cancel_scope.cancel()
    with pytest.raises(dj.DurableJobsError):
        await client.status("b")
    await trio.sleep(3600 * 5)
    assert len(runs) == 3


async def test_observers_see_every_commit(
    store_url: str, autojump_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Observers (open_jobs(observers=...) and jobs.subscribe) get each committed record;
    one that raises is ignored; subscribe returns an unsubscribe function."""
    clock = dj.VirtualClock(T)
    from_option: list[dj.RecordedEvent] = []
    subscribed: list[dj.RecordedEvent] = []
    broken_calls: list[str] = []

    def broken(record: dj.RecordedEvent) -> None:
        broken_calls.append(record.name)
        raise RuntimeError("observer bug")

    caplog.set_level(logging.ERROR, logger="durable_jobs")
    async with dj.open_jobs(
        lifecycle_registry(),
        store_url,
        clock=clock,
        poll_interval=None,
        observers=[broken, from_option.append],
    ) as jobs:
        unsubscribe = jobs.subscribe(subscribed.append)
        with pytest.raises(dj.ConfigurationError, match="never be awaited"):
            jobs.subscribe(_async_observer)  # type: ignore[arg-type]
        client = jobs.continuous("beat")
        assert (await client.start("o1", Counter(count=0))).created
        summary = [(r.name, r.kind, r.job, r.instance_id, r.version, r.at) for r in from_option]
        assert summary == [
            ("started", "continuous", "beat", "o1", 1, T),
            ("alarm_set", "continuous", "beat", "o1", 2, T),
        ]
        assert from_option[1].data["at"] == T + HOUR
        assert subscribed == from_option
        assert broken_calls == ["started", "alarm_set"]
        assert from_option == await client.history("o1")

        unsubscribe()
        unsubscribe()  # harmless twice
        await advance(jobs, HOUR)
        assert len(subscribed) == 2
        run = [(r.name, r.version, r.at, r.run_count) for r in from_option[2:]]
        assert run == [
            ("run_succeeded", 3, T + HOUR, 1),
            ("state_changed", 4, T + HOUR, None),
            ("alarm_set", 5, T + HOUR, None),
        ]
        assert from_option[2].state_before == {"count": 0}
        assert await client.status("o1") == dj.ContinuousStatus("running", 1, T + 2 * HOUR)
        assert from_option == await client.history("o1")
    assert broken_calls == ["started", "alarm_set", "run_succeeded", "state_changed", "alarm_set"]
    assert any("observer" in r.getMessage() for r in caplog.records)


async def test_client_calls_on_a_busy_instance_wait_for_the_run(
    store_url: str, autojump_clock: Clock
) -> None:
    """trigger, terminate and task send wait for the run in flight (per-instance lock);
    status, get_state and start of an existing instance do not, and show the last
    committed state."""
    clock = dj.VirtualClock(T)
    release = trio.Event()
    entered = trio.Event()
    log: list[str] = []
    registry = dj.Registry()

    @registry.continuous("busy", state=Counter, schedule=dj.every(HOUR))
    async def busy(ctx: dj.ContinuousContext[Counter]) -> None:
        log.append(f"{ctx.instance_id} run {ctx.run_count}")
        ctx.set_state(Counter(count=ctx.state.count + 1))
        entered.set()
        await release.wait()

    @registry.task("worker", event=int, state=int)
    async def worker(ctx: dj.TaskContext[int]) -> None:
        log.append(f"execute {ctx.execute_count}")
        entered.set()
        await release.wait()

    @worker.on_event
    async def receive(event: int, ctx: dj.TaskContext[int]) -> None:
        log.append(f"on_event {event}")
        ctx.set_state(event)
        ctx.schedule(timedelta(0))

    results: dict[str, object] = {}

    async def call(key: str, fn: Callable[[], Awaitable[object]]) -> None:
        results[key] = await fn()

    async with running(registry, store_url, clock=clock) as jobs:
        c = jobs.continuous("busy")
        await c.start("b", Counter(count=0))
        await entered.wait()
        with trio.fail_after(1):  # reads never wait for the run in flight
            assert await c.status("b") == dj.ContinuousStatus("running", 0, T)
            assert await c.get_state("b") == Counter(count=0)
            # Nor does start of the existing instance (it is returned unchanged).
            started = await c.start("b", Counter(count=5))
            assert started == dj.StartResult(False, dj.ContinuousStatus("running", 0, T))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "trigger", lambda: c.trigger("b"))
            await trio.sleep(10)
            assert results == {}
            assert log == ["b run 1"]
            release.set()
        assert results == {"trigger": dj.TriggerResult(True, False, False)}
        assert log == ["b run 1", "b run 2"]
        assert await c.get_state("b") == Counter(count=2)
        assert (await c.status("b")).run_count == 2

        release, entered = trio.Event(), trio.Event()
        await c.start("b2", Counter(count=0))
        await entered.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "terminate", lambda: c.terminate("b2"))
            await trio.sleep(10)
            assert "terminate" not in results
            release.set()
        assert results["terminate"] == dj.TerminateResult(True)
        assert names(await c.history("b2")) == [  # the run committed before the terminate
            "started",
            "alarm_set",
            "run_succeeded",
            "state_changed",
            "alarm_set",
            "alarm_cleared",
            "terminated",
        ]

        release, entered = trio.Event(), trio.Event()
        log.clear()
        t = jobs.task("worker")
        assert (await t.send("w", 1)).scheduled_at == T + 20 * SECOND
        await entered.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "send", lambda: t.send("w", 2))
            await trio.sleep(10)
            assert "send" not in results
            with trio.fail_after(1):
                assert await t.get_state("w") == dj.TaskState(1, T + 20 * SECOND)
            release.set()
        sent = results["send"]
        assert sent == dj.SendResult(False, T + 30 * SECOND, False)
        await jobs.wait_idle()
        assert log == ["on_event 1", "execute 1", "on_event 2", "execute 2"]
        assert await t.status("w") == dj.TaskStatus("idle", None, 2, 2, T + 20 * SECOND)


async def test_open_jobs_leaves_a_store_object_open(store_url: str, autojump_clock: Clock) -> None:
    """open_jobs with an already-open Store uses it and leaves it open."""
    clock = dj.VirtualClock(T)
    registry = lifecycle_registry()
    store = dj.open_store(store_url)
    try:
        async with dj.open_jobs(registry, store, clock=clock, poll_interval=None) as jobs:
            assert jobs.store is store
            await jobs.continuous("beat").start("c1", Counter(count=3))
        assert index_keys(store) == [("continuous", "beat", "c1")]
        async with dj.open_jobs(registry, store, clock=clock, poll_interval=None) as jobs:
            assert await jobs.continuous("beat").get_state("c1") == Counter(count=3)
            await advance(jobs, HOUR)
            assert await jobs.continuous("beat").get_state("c1") == Counter(count=4)
        assert store.list_instances()[0].due_at == T + 2 * HOUR
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "nosuchscheme://somewhere",
        "sqlite:///{tmp}/jobs.db?bogus=1",
        "postgresql://user@localhost:notaport/db",
        "memory://?colour=blue",
    ],
)
async def test_a_malformed_store_url_is_a_configuration_error(
    url: str, tmp_path: Path, autojump_clock: Clock
) -> None:
    """A malformed store URL raises ConfigurationError before anything is served."""
    body_ran = False
    with pytest.raises(dj.ConfigurationError):
        async with dj.open_jobs(lifecycle_registry(), url.format(tmp=tmp_path)):
            body_ran = True
    assert body_ran is False
    assert list(tmp_path.iterdir()) == []


async def _async_observer(record: object) -> None:  # pragma: no cover - refused
    pass


@pytest.mark.parametrize(
    "options",
    [
        {"alarm_window": 0},
        {"max_concurrent_runs": 0},
        {"shutdown_grace": timedelta(seconds=-1)},
        {"poll_interval": timedelta(0)},
        {"clock": "now"},
        {"lease": timedelta(milliseconds=500)},
        {"lease": "30s"},
        {"lease": timedelta(days=1, seconds=1)},
        {"lease": timedelta.max},
        {"observers": 5},
        {"observers": [_async_observer]},
        {"shutdown_grace": 1e300},
        {"poll_interval": 1e300},
        {"lease": 1e300},
        {"shutdown_grace": timedelta.max},
    ],
    ids=[
        "alarm_window",
        "max_concurrent_runs",
        "shutdown_grace",
        "poll_interval",
        "clock",
        "lease_too_short",
        "lease_not_a_duration",
        "lease_too_long",  # Postgres: TCP_KEEPIDLE out of range
        "lease_max",  # lock keeper thread overflow
        "observers_not_a_list",  # was a TypeError
        "observer_async",  # was never awaited
        "shutdown_grace_huge",  # these three were OverflowErrors
        "poll_interval_huge",
        "lease_huge",
        "shutdown_grace_max",
    ],
)
async def test_bad_open_jobs_options_are_configuration_errors(
    options: dict[str, Any], autojump_clock: Clock
) -> None:
    """Bad open_jobs options raise ConfigurationError."""
    with pytest.raises(dj.ConfigurationError):
        async with dj.open_jobs(lifecycle_registry(), "memory://", **options):
            pass


async def test_an_exception_in_the_body_propagates_unwrapped(
    store_url: str, autojump_clock: Clock
) -> None:
    """An exception raised in the ``async with open_jobs`` body comes out as itself."""
    registry = lifecycle_registry()

    async def fail_in_body() -> None:
        async with running(registry, store_url) as jobs:
            await jobs.continuous("beat").start("c1", Counter(count=0))
            raise KeyError("boom")

    with pytest.raises(KeyError) as info:
        await fail_in_body()
    assert type(info.value) is KeyError
    assert info.value.args == ("boom",)

    class AppError(Exception):
        pass

    release = trio.Event()
    busy = dj.Registry()

    @busy.continuous("b", state=int, schedule=dj.every(HOUR))
    async def b(ctx: dj.ContinuousContext[int]) -> None:
        release.set()
        await trio.sleep(1)

    async def fail_during_a_run() -> None:
        async with running(busy, store_url) as jobs:
            await jobs.continuous("b").start("x", 0)
            await release.wait()  # a run is in flight when the body fails
            raise AppError("app failed")

    with pytest.raises(AppError) as app:
        await fail_during_a_run()
    assert type(app.value) is AppError
    assert not isinstance(app.value, BaseExceptionGroup)


async def test_the_scheduler_survives_a_failing_alarm_index(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A store outage while reading the alarm index is logged and retried, not fatal."""
    store = dj.open_store(sqlite_url)
    try:
        real = store.next_alarms
        failures = [0]

        def flaky(limit: int = 1000, after: datetime | None = None) -> list[Any]:
            if 1 <= failures[0] <= 3:
                failures[0] += 1
                msg = "the database is down"
                raise dj.StoreError(msg)
            return real(limit, after)

        store.next_alarms = flaky  # type: ignore[method-assign, assignment]
        registry = dj.Registry()
        runs: list[int] = []

        @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
        async def tick(ctx: dj.ContinuousContext[int]) -> None:
            runs.append(ctx.run_count)

        clock = dj.VirtualClock(T)
        async with running(registry, store, clock=clock) as jobs:
            await jobs.continuous("tick").start("a", 0)
            await jobs.continuous("tick").start("b", 0)
            await jobs.wait_idle()
        # Reopened with a one-alarm window: the scheduler reads the index at every alarm.
        async with running(registry, store, clock=clock, alarm_window=1) as jobs:
            failures[0] = 1  # the next three reads fail
            await advance(jobs, 10 * MINUTE)
            assert failures[0] == 4
            assert "Could not read the alarm index" in caplog.text
            status = await jobs.continuous("tick").status("a")
            assert status.run_count >= 9
    finally:
        store.close()


async def test_one_runtime_per_sqlite_file(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SQLite is served by one process: a second open_jobs on the file is refused, clearly."""
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        pass

    async with running(registry, sqlite_url):
        with pytest.raises(dj.ConfigurationError, match="use a Postgres store"):
            async with running(registry, sqlite_url):
                pass  # pragma: no cover - refused before the block
        # Readers are fine meanwhile (the CLI and tests open the store directly).
        with dj.open_store(sqlite_url) as reader:
            assert reader.list_instances() == []
    async with running(registry, sqlite_url) as jobs:  # released when the first ended
        await jobs.continuous("tick").start("a", 0)


async def test_one_runtime_per_sqlite_file_whatever_name_reaches_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A symlink or a ``sub/..`` path takes the same lock; a hard-linked file is refused.

    The CLI's "refused while a runtime serves" check is the same claim_runtime.
    """
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        pass

    (tmp_path / "sub").mkdir()
    real = tmp_path / "real.db"
    (tmp_path / "link.db").symlink_to(real)
    other_names = [tmp_path / "link.db", tmp_path / "sub" / ".." / "real.db"]
    async with running(registry, f"sqlite:///{real}"):
        for name in other_names:
            with pytest.raises(dj.ConfigurationError, match="use a Postgres store"):
                async with running(registry, f"sqlite:///{name}"):
                    pass  # pragma: no cover - refused before the block
            with (
                dj.open_store(f"sqlite:///{name}") as store,  # as the CLI checks
                pytest.raises(dj.ConfigurationError, match="already serves"),
            ):
                store.claim_runtime()
    (tmp_path / "hard.db").hardlink_to(real)
    for name in (real, tmp_path / "hard.db"):
        with pytest.raises(dj.ConfigurationError, match="2 hard links"):
            async with running(registry, f"sqlite:///{name}"):
                pass  # pragma: no cover - refused before the block
    (tmp_path / "hard.db").unlink()
    async with running(registry, f"sqlite:///{tmp_path / 'link.db'}") as jobs:
        await jobs.continuous("tick").start("a", 0)


def _tick_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return registry


async def test_a_deleted_runtime_lock_file_is_locked_again_before_the_next_write(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim is a lock on ``PATH.runtime-lock``, a file that can be deleted (a
    clean-up script): a second runtime then started on the file, and both ran the same
    instances at once. Now the first makes and locks a new one before its next write."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    lock_file = tmp_path / "jobs.db.runtime-lock"
    async with running(_tick_registry(), url) as jobs:
        client = jobs.continuous("tick")
        await client.start("a", 0)
        lock_file.unlink()
        await client.start("b", 0)
        assert lock_file.exists()
        assert "runtime lock file" in caplog.text
        with pytest.raises(dj.ConfigurationError, match="already serves"):
            async with running(_tick_registry(), url):
                pass  # pragma: no cover - refused before the block
        before = await client.get_state("a")
        await advance(jobs, MINUTE)
        assert await client.get_state("a") == (before or 0) + 1


async def test_a_runtime_whose_lock_file_another_runtime_took_writes_nothing_more(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The lock file deleted, and another runtime started on the file before the first
    wrote again: the first writes nothing more (it says why), the second serves."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with running(_tick_registry(), url) as first:
        # (Nothing written yet: a write, a run's say, would lock a new file first.)
        (tmp_path / "jobs.db.runtime-lock").unlink()
        async with running(_tick_registry(), url) as second:
            with pytest.raises(dj.StoreError, match="another runtime has locked a new one"):
                await first.continuous("tick").start("b", 0)
            await second.continuous("tick").start("c", 0)
        with dj.open_store(url) as reader:
            assert [r.instance_id for r in reader.list_instances()] == ["c"]


@pytest.mark.parametrize("how", ["deleted", "moved"])
async def test_a_runtime_whose_file_was_deleted_or_moved_writes_nothing_more(
    how: str,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SQLite goes on writing to the file it opened, deleted or moved: every later
    commit was acknowledged and then lost (0 of 40 sends there after a restart). Now
    each write says the file is gone and writes nothing; due runs wait, said once."""
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    (tmp_path / "elsewhere").mkdir()
    async with running(_tick_registry(), url) as jobs:
        client = jobs.continuous("tick")
        await client.start("a", 0)
        for suffix in ("", "-wal", "-shm"):
            name = tmp_path / f"jobs.db{suffix}"
            if how == "deleted":
                name.unlink()
            else:
                name.rename(tmp_path / "elsewhere" / name.name)
        with pytest.raises(dj.StoreError, match="was deleted, moved or replaced") as info:
            await client.start("b", 0)
        assert "nothing was written" in str(info.value)
        await trio.sleep((3 * MINUTE).total_seconds())  # "a" is due meanwhile: it waits
        out_of_reach = [r for r in caplog.records if "out of reach" in r.getMessage()]
        assert len(out_of_reach) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if how == "moved":
        with dj.open_store(f"sqlite:///{tmp_path / 'elsewhere' / 'jobs.db'}") as moved:
            assert [r.instance_id for r in moved.list_instances()] == ["a"]


async def test_the_wal_is_cut_back_after_a_long_reader(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A reader holding the checkpoints back (a backup, an open sqlite3 shell) lets
    the -wal file grow; SQLite then reuses it from its start but never shrinks it, so
    it kept its largest size (100-390 MB seen) for as long as the runtime ran."""
    path = tmp_path / "jobs.db"
    wal = tmp_path / "jobs.db-wal"
    async with running(note_registry(), f"sqlite:///{path}") as jobs:
        note = jobs.task("note")
        await note.send("n0", "x")
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM stored_events").fetchall()
            for n in range(50):
                await note.send(f"n{n % 10}", str(n) * 500_000)
            grown = wal.stat().st_size
            assert grown > 2 * WAL_SIZE_LIMIT
            reader.execute("COMMIT")
        finally:
            reader.close()
        for n in range(30):  # a checkpoint, then the next write starts the -wal again
            await note.send(f"n{n % 10}", "small")
        assert wal.stat().st_size <= WAL_SIZE_LIMIT


async def test_a_pending_retry_survives_a_restart(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §5: a retry is an alarm; it survives restarts like any alarm."""
    tries: list[tuple[int, int, bool, datetime]] = []
    clock = dj.VirtualClock(T)
    registry = dj.Registry()

    @registry.continuous(
        "flaky",
        state=int,
        schedule=dj.every(HOUR),
        retry=dj.Retry(max_attempts=3, delay=dj.Backoff.constant(10 * MINUTE), jitter=0),
    )
    async def flaky(ctx: dj.ContinuousContext[int]) -> None:
        tries.append((ctx.run_count, ctx.attempt, ctx.is_retry, clock.now()))
        if ctx.attempt == 1:
            msg = "first try fails"
            raise RuntimeError(msg)
        ctx.set_state(ctx.state + 1)

    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.continuous("flaky").start("f", 0)
        await jobs.wait_idle()
        status = await jobs.continuous("flaky").status("f")
        assert status == dj.ContinuousStatus("running", 1, T + 10 * MINUTE)
    await trio.sleep((4 * MINUTE).total_seconds())  # down while the retry waits
    async with running(registry, durable_store_url, clock=clock) as jobs:
        await advance(jobs, 10 * MINUTE)
        assert tries == [(1, 1, False, T), (1, 2, True, T + 10 * MINUTE)]
        status = await jobs.continuous("flaky").status("f")
        assert status == dj.ContinuousStatus("running", 1, T + 70 * MINUTE)
        assert await jobs.continuous("flaky").get_state("f") == 1


class CountingClock(dj.Clock):
    """A VirtualClock that counts how often the scheduler asks when to wake."""

    def __init__(self, inner: dj.VirtualClock) -> None:
        super().__init__()
        self.inner = inner
        self.deadlines = 0

    def now(self) -> datetime:
        return self.inner.now()

    def deadline(self, when: datetime) -> float:
        self.deadlines += 1
        # Fail fast (the error ends the runtime) rather than spin for hours.
        assert self.deadlines < 10_000, "the scheduler is busy-looping"
        return self.inner.deadline(when)


async def test_a_reload_waiting_for_a_long_run_does_not_spin(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A window past its horizon waits for the run in flight without busy-looping."""
    clock = CountingClock(dj.VirtualClock(T))
    registry = dj.Registry()
    runs: list[tuple[str, datetime]] = []

    @registry.continuous("slow", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        runs.append((ctx.instance_id, clock.now()))
        await trio.sleep(60)  # a minute of work

    async with running(registry, sqlite_url, clock=clock) as jobs:
        for name in ("a", "b", "c"):
            await jobs.continuous("slow").start(name, 0)
    async with running(registry, sqlite_url, clock=clock, alarm_window=1) as jobs:
        clock.deadlines = 0
        await advance(jobs, 2 * HOUR + 10 * MINUTE)
        assert sorted(name for name, _ in runs) == ["a", "a", "b", "b", "c", "c"]
        # A handful per alarm, not one per microsecond of the runs' minutes.
        assert clock.deadlines < 200, clock.deadlines


async def test_a_store_failing_at_start_raises_its_own_error(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A runtime that cannot start says why with our error, not an ExceptionGroup."""
    store = dj.open_store(sqlite_url)
    try:

        def broken(limit: int = 1000, after: datetime | None = None) -> list[Any]:
            msg = "the alarm index is unreadable"
            raise dj.StoreError(msg)

        store.next_alarms = broken  # type: ignore[method-assign, assignment]
        with pytest.raises(dj.StoreError, match="unreadable"):
            async with running(dj.Registry(), store):
                pass  # pragma: no cover - the runtime never starts
    finally:
        store.close()
