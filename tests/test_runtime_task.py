"""Task jobs end to end: SCENARIOS.md sections 3, 5 and 6, X14, X15 and task keys.

Every test runs the real runtime on a store URL in virtual time (pytest-trio's
``autojump_clock``); what handlers saw is collected in plain lists, what was
committed is read back through the client (``status``, ``get_state``,
``history``) and the observer records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack
from zoneinfo import ZoneInfo

import pydantic
import pytest
import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import MINUTE, SECOND, T, advance, names, running

# ---- fixtures (SCENARIOS.md section 3 and 6) ----------------------------------------------


class Cmd(BaseModel):
    type: Literal["increment", "decrement", "reset"]
    amount: int | None = None


class Tally(BaseModel):
    counter: int
    last_updated: float


class Item(BaseModel):
    count: int
    name: str
    flag: bool | None = None


Ctx = dj.TaskContext[Any]
Client = dj.TaskClient[Any, Any]
Log = list[tuple[str, Any]]
OnEvent = Callable[[Any, Ctx], Awaitable[None]]
OnCtx = Callable[[Ctx], Awaitable[None]]
OnError = Callable[[BaseException, Ctx], Awaitable[None]]
When = timedelta | datetime | float
#: A runtime and the client of its task job.
Opened = tuple[dj.Jobs, Client]
#: A runtime, the client of its task job and what the job's handlers logged.
Logged = tuple[dj.Jobs, Client, Log]
#: A runtime, the client of its task job and when its ``execute`` ran.
Timed = tuple[dj.Jobs, Client, list[datetime]]
#: Opens the runtime of a registry (see ``restarts``).
Start = Callable[[dj.Registry], AbstractAsyncContextManager[dj.Jobs]]

EPOCH_T = T.timestamp()
INC10 = Cmd(type="increment", amount=10)
NOT_FOUND = dj.TaskStatus("not_found", None, 0, 0, None)
NOTHING_RAN = dj.TriggerResult(triggered=False, terminated=False, retry_scheduled=False)
RAN = dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)


def applied(state: Tally | None, cmd: Cmd, at: float) -> Tally:
    counter = 0 if state is None else state.counter
    amount = 1 if cmd.amount is None else cmd.amount
    if cmd.type == "increment":
        counter += amount
    elif cmd.type == "decrement":
        counter -= amount
    else:
        counter = 0
    return Tally(counter=counter, last_updated=at)


class CounterOptions(TypedDict, total=False):
    """What ``counter_registry`` takes besides the log."""

    schedule_in: timedelta | None
    idle: bool
    rearm: timedelta | None


def counter_registry(
    log: Log,
    *,
    schedule_in: timedelta | None = None,
    idle: bool = False,
    rearm: timedelta | None = None,
) -> dj.Registry:
    """``counter_task`` (or ``scheduling_task`` with ``schedule_in``, ``idle_task``,
    ``rearm_task``), always registered as "t" with the decorator API."""
    registry = dj.Registry()

    @registry.task("t", event=Cmd, state=Tally)
    async def job(ctx: dj.TaskContext[Tally]) -> None:
        log.append(("execute", ctx.execute_count))

    @job.on_event
    async def on_event(event: Cmd, ctx: dj.TaskContext[Tally]) -> None:
        log.append(("on_event", event))
        ctx.set_state(applied(ctx.state, event, float(ctx.event_count)))
        if schedule_in is not None:
            ctx.schedule(schedule_in)

    if idle or rearm is not None:

        @job.on_idle
        async def on_idle(ctx: dj.TaskContext[Tally]) -> None:
            log.append(("on_idle", ctx.scheduled_at))
            if rearm is not None:
                ctx.schedule(rearm)

    return registry


@asynccontextmanager
async def open_counter(
    url: str,
    *,
    records: list[dj.RecordedEvent] | None = None,
    **options: Unpack[CounterOptions],
) -> AsyncIterator[Logged]:
    """``counter_registry(log, **options)`` running on ``url``."""
    log: Log = []
    async with running(counter_registry(log, **options), url, records=records) as jobs:
        yield jobs, jobs.task("t"), log


def executed(log: Log) -> Log:
    """The ``execute`` entries of a counter log."""
    return [e for e in log if e[0] == "execute"]


async def _nothing(ctx: Ctx) -> None:
    return None


class TaskOptions(TypedDict, total=False):
    """What ``task_registry`` takes besides ``on_event``."""

    execute: OnCtx
    on_idle: OnCtx | None
    on_error: OnError | None
    event: Any
    state: Any
    name: str
    idempotency_window: timedelta


def task_registry(
    on_event: OnEvent,
    *,
    execute: OnCtx = _nothing,
    on_idle: OnCtx | None = None,
    on_error: OnError | None = None,
    event: Any = str,
    state: Any = Item,
    name: str = "t",
    idempotency_window: timedelta = timedelta(hours=24),
) -> dj.Registry:
    """One task job, its handlers passed to ``registry.task``."""
    registry = dj.Registry()
    registry.task(
        name,
        event=event,
        state=state,
        on_event=on_event,
        on_idle=on_idle,
        on_error=on_error,
        idempotency_window=idempotency_window,
    )(execute)
    return registry


@asynccontextmanager
async def open_task(
    url: str, on_event: OnEvent, **options: Unpack[TaskOptions]
) -> AsyncIterator[Opened]:
    """``task_registry(on_event, **options)`` running on ``url``."""
    async with running(task_registry(on_event, **options), url) as jobs:
        yield jobs, jobs.task(options.get("name", "t"))


def restarts(url: str) -> Start:
    """``running`` on ``url``, every time on one virtual clock from T: each call (re)starts."""
    clock = dj.VirtualClock(T)
    return lambda registry: running(registry, url, clock=clock)


@asynccontextmanager
async def open_timed(url: str, on_event: OnEvent) -> AsyncIterator[Timed]:
    """``open_task`` with an ``execute`` that notes the virtual time of each of its runs."""
    ran: list[datetime] = []

    async def execute(ctx: Ctx) -> None:
        ran.append(jobs.clock.now())

    async with open_task(url, on_event, execute=execute) as (jobs, client):
        yield jobs, client, ran


def scheduling(*whens: When, cancel: bool = False) -> OnEvent:
    """An ``on_event`` that schedules each of ``whens`` in turn, then cancels if ``cancel``."""

    async def on_event(event: Any, ctx: Ctx) -> None:
        for when in whens:
            ctx.schedule(when)
        if cancel:
            ctx.cancel_schedule()

    return on_event


def storing(state: BaseModel) -> OnEvent:
    """An ``on_event`` that sets ``state``."""

    async def on_event(event: Any, ctx: Ctx) -> None:
        ctx.set_state(state)

    return on_event


def named(history: list[dj.RecordedEvent], name: str) -> list[dj.RecordedEvent]:
    return [r for r in history if r.name == name]


def handler_names(history: list[dj.RecordedEvent]) -> list[tuple[str, Any]]:
    return [(r.name, r.data.get("handler")) for r in history if r.is_run]


# ---- 3. Task jobs --------------------------------------------------------------------------


async def test_t01_send_validates_the_event(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T01 send validates the event."""
    records: list[dj.RecordedEvent] = []
    async with open_counter(store_url, records=records) as (jobs, client, log):
        for invalid in ({"invalid": "event"}, {"type": "explode"}):
            with pytest.raises(dj.ValidationError):
                await client.send("t1", invalid)
        await jobs.wait_idle()
        assert log == []
        assert await client.status("t1") == NOT_FOUND
        assert await client.get_state("t1") is None
        assert await client.history("t1") == []
    assert records == []


async def test_t02_first_send_creates_every_send_counts(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T02 The first send creates; every send counts."""
    async with open_counter(store_url) as (_, client, _):
        first = await client.send("t1", Cmd(type="increment"))
        second = await client.send("t1", Cmd(type="increment", amount=2))
        assert first == dj.SendResult(created=True, scheduled_at=None, duplicate=False)
        assert second == dj.SendResult(created=False, scheduled_at=None, duplicate=False)
        status = await client.status("t1")
        assert status == dj.TaskStatus("idle", None, 2, 0, T)
        state = await client.get_state("t1")
        assert state == dj.TaskState(Tally(counter=3, last_updated=2.0), None)
        history = await client.history("t1")
        assert names(history).count("event_added") == 2
        assert names(history)[0] == "started"


async def test_t03_on_event_gets_the_validated_event(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T03 on_event gets the validated event."""
    async with open_counter(store_url) as (_, client, log):
        await client.send("t1", {"type": "increment", "amount": 10})
        assert log == [("on_event", INC10)]
        assert isinstance(log[0][1], Cmd)
        added = named(await client.history("t1"), "event_added")
        assert [r.data["event"] for r in added] == [{"type": "increment", "amount": 10}]


async def test_t04_trigger_runs_execute_and_counts_it(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T04 trigger runs execute and counts it."""
    async with open_counter(store_url) as (_, client, log):
        await client.send("t1", INC10)
        assert await client.trigger("t1") == RAN
        assert log == [("on_event", INC10), ("execute", 1)]
        status = await client.status("t1")
        assert (status.execute_count, status.event_count) == (1, 1)
        runs = handler_names(await client.history("t1"))
        assert runs == [("run_succeeded", "on_event"), ("run_succeeded", "execute")]


async def test_t05_trigger_of_an_unknown_id(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T05 trigger of an unknown id."""
    async with open_counter(store_url) as (jobs, client, log):
        assert await client.trigger("t1") == NOTHING_RAN
        await jobs.wait_idle()
        assert log == []
        assert (await client.status("t1")).status == "not_found"
        assert await client.history("t1") == []


async def test_t06_schedule_in_on_event_sets_the_alarm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T06 ctx.schedule in on_event sets the alarm."""
    async with open_counter(store_url, schedule_in=5 * SECOND) as (_, client, _):
        result = await client.send("t1", Cmd(type="increment"))
        assert result == dj.SendResult(created=True, scheduled_at=T + 5 * SECOND, duplicate=False)
        assert await client.status("t1") == dj.TaskStatus("active", T + 5 * SECOND, 1, 0, T)
        state = await client.get_state("t1")
        assert state is not None
        assert state.scheduled_at == T + 5 * SECOND
        alarms = named(await client.history("t1"), "alarm_set")
        assert [(r.data["at"], r.at) for r in alarms] == [(T + 5 * SECOND, T)]


async def test_t07_cancel_schedule_removes_the_alarm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T07 cancel_schedule removes the alarm."""
    on_event = scheduling(timedelta(seconds=5), cancel=True)
    async with open_task(store_url, on_event) as (_, client):
        result = await client.send("t1", "go")
        assert result == dj.SendResult(created=True, scheduled_at=None, duplicate=False)
        assert await client.status("t1") == dj.TaskStatus("idle", None, 1, 0, T)
        assert await client.get_state("t1") == dj.TaskState(None, None)
        history = names(await client.history("t1"))
        assert "alarm_set" not in history


async def test_t08_the_alarm_runs_execute(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T08 The alarm runs execute."""
    async with open_counter(store_url, schedule_in=5 * SECOND) as (jobs, client, log):
        await client.send("t1", Cmd(type="increment"))
        await advance(jobs, 4 * SECOND)
        assert executed(log) == []
        await advance(jobs, 1 * SECOND)
        assert executed(log) == [("execute", 1)]
        status = await client.status("t1")
        assert (status.execute_count, status.status, status.scheduled_at) == (1, "idle", None)
        ran = [r for r in await client.history("t1") if r.data.get("handler") == "execute"]
        assert [(r.name, r.at, r.run_count) for r in ran] == [("run_succeeded", T + 5 * SECOND, 1)]
        await advance(jobs, timedelta(hours=1))
        assert executed(log) == [("execute", 1)]


async def test_t09_on_idle_follows_on_event(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T09 on_idle follows on_event when nothing is scheduled."""
    async with open_counter(store_url, idle=True) as (_, client, log):
        result = await client.send("t1", INC10)
        assert result.scheduled_at is None
        assert log == [("on_event", INC10), ("on_idle", None)]
        runs = handler_names(await client.history("t1"))
        assert runs == [("run_succeeded", "on_event"), ("run_succeeded", "on_idle")]
        assert (await client.status("t1")).status == "idle"


async def test_t09b_on_idle_skipped_when_an_alarm_is_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """T09 on_idle follows on_event when nothing is scheduled (and only then)."""
    async with open_counter("memory://", schedule_in=5 * SECOND, idle=True) as (_, client, log):
        await client.send("t1", INC10)
        assert log == [("on_event", INC10)]


async def test_t10_on_idle_can_rearm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T10 on_idle can re-arm."""
    async with open_counter(store_url, rearm=10 * SECOND) as (_, client, log):
        result = await client.send("t1", INC10)
        assert log == [("on_event", INC10), ("on_idle", None)]
        assert result.scheduled_at == T + 10 * SECOND
        assert await client.status("t1") == dj.TaskStatus("active", T + 10 * SECOND, 1, 0, T)


async def test_t11_terminate_purges_state_and_cancels_the_alarm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """T11 Terminate purges state and cancels the alarm."""
    async with open_counter(store_url, schedule_in=5 * SECOND) as (jobs, client, log):
        await client.send("t1", INC10)
        result = await client.terminate("t1")
        assert result == dj.TerminateResult(terminated=True)
        assert await client.status("t1") == NOT_FOUND
        assert await client.get_state("t1") is None
        await advance(jobs, MINUTE)
        assert executed(log) == []
        assert names(await client.history("t1"))[-2:] == ["alarm_cleared", "terminated"]
        assert await client.terminate("t1") == dj.TerminateResult(terminated=False)


# ---- 5. Alarms set from handlers -----------------------------------------------------------


async def scheduled(
    url: str, when: When, *, after: timedelta | None = None
) -> tuple[dj.SendResult, dj.TaskStatus]:
    """Send "go" to "t1" of a job whose ``on_event`` schedules ``when`` (once ``after`` has
    passed, if given): what the send returned and the status then."""
    async with open_task(url, scheduling(when)) as (jobs, client):
        if after is not None:
            await advance(jobs, after)
        return await client.send("t1", "go"), await client.status("t1")


async def test_a01_epoch_seconds_are_absolute(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A01 Epoch seconds are absolute."""
    # "now" is not T: epoch seconds do not move
    result, status = await scheduled(store_url, EPOCH_T + 500, after=100 * SECOND)
    assert result.scheduled_at == T + 500 * SECOND
    assert status.scheduled_at == T + 500 * SECOND


TARGET = datetime.fromtimestamp(EPOCH_T + 1000, UTC)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(TARGET, id="utc"),
        pytest.param(TARGET.astimezone(ZoneInfo("America/New_York")), id="eastern"),
    ],
)
async def test_a02_an_aware_datetime_is_absolute(
    target: datetime, store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A02 An aware datetime is absolute."""
    result, status = await scheduled(store_url, target)
    assert result.scheduled_at == T + 1000 * SECOND
    assert status.scheduled_at == T + 1000 * SECOND
    assert status.scheduled_at is not None
    assert status.scheduled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("minutes", [30, 5])
async def test_a03_a_timedelta_is_relative_to_now(
    minutes: int, store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A03 A timedelta is relative to now."""
    result, status = await scheduled(store_url, timedelta(minutes=minutes))
    assert result.scheduled_at == T + minutes * MINUTE
    assert status.scheduled_at == T + minutes * MINUTE


async def test_a04_cancel_schedule_undoes_schedule(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A04 cancel_schedule undoes schedule."""
    ran: list[str] = []

    async def execute(ctx: Ctx) -> None:
        ran.append(ctx.instance_id)

    on_event = scheduling(EPOCH_T + 1000, cancel=True)
    async with open_task(store_url, on_event, execute=execute) as (jobs, client):
        result = await client.send("t1", "go")
        assert result.scheduled_at is None
        assert (await client.status("t1")).status == "idle"
        await advance(jobs, 2000 * SECOND)
        assert ran == []


async def test_a04b_cancel_schedule_removes_a_committed_alarm(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A04 cancel_schedule undoes schedule (an alarm committed by an earlier send)."""

    async def on_event(event: str, ctx: Ctx) -> None:
        if event == "arm":
            ctx.schedule(EPOCH_T + 1000)
        else:
            ctx.cancel_schedule()

    async with open_task("memory://", on_event) as (_, client):
        assert (await client.send("t1", "arm")).scheduled_at == T + 1000 * SECOND
        assert (await client.send("t1", "disarm")).scheduled_at is None
        assert (await client.status("t1")).status == "idle"
        assert names(await client.history("t1"))[-1] == "alarm_cleared"


async def test_a05_scheduled_at_reads_the_alarm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A05 scheduled_at reads the alarm."""
    seen: list[datetime | None] = []

    async def on_event(event: str, ctx: Ctx) -> None:
        seen.append(ctx.scheduled_at)
        ctx.schedule(EPOCH_T + 500)
        seen.append(ctx.scheduled_at)

    async with open_task(store_url, on_event) as (_, client):
        await client.send("t1", "go")
        assert seen == [None, T + 500 * SECOND]
        assert (await client.status("t1")).scheduled_at == T + 500 * SECOND
        await client.send("t1", "again")  # the committed alarm is what the next handler reads
        assert seen[2] == T + 500 * SECOND


async def test_a06_the_last_schedule_wins(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A06 The last schedule wins."""
    on_event = scheduling(EPOCH_T + 500, EPOCH_T + 1000, EPOCH_T + 200)
    async with open_timed(store_url, on_event) as (jobs, client, ran):
        assert (await client.send("t1", "go")).scheduled_at == T + 200 * SECOND
        alarms = [r.data["at"] for r in named(await client.history("t1"), "alarm_set")]
        assert alarms == [T + 200 * SECOND]
        await advance(jobs, 1100 * SECOND)
        assert ran == [T + 200 * SECOND]
        assert (await client.status("t1")).status == "idle"


async def test_a07_relative_times_use_the_current_clock(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A07 Relative times use the current clock."""
    async with open_timed(store_url, scheduling(timedelta(minutes=1))) as (jobs, client, ran):
        assert (await client.send("t1", "first")).scheduled_at == T + MINUTE
        await advance(jobs, 30 * SECOND)
        assert (await client.send("t1", "second")).scheduled_at == T + 90 * SECOND
        assert (await client.status("t1")).scheduled_at == T + 90 * SECOND
        await advance(jobs, 30 * SECOND)  # T + 60 s: the replaced alarm does not ring
        assert ran == []
        await advance(jobs, 30 * SECOND)
        assert ran == [T + 90 * SECOND]
        await advance(jobs, 5 * MINUTE)
        assert ran == [T + 90 * SECOND]


# ---- 6. Stored state -----------------------------------------------------------------------


async def reloaded(url: str, state: BaseModel, instance: str) -> dj.TaskState[Any] | None:
    """Send once to ``instance`` of a job whose ``on_event`` sets ``state``; then restart
    and read the state back."""
    registry = task_registry(storing(state), state=type(state))
    start = restarts(url)
    async with start(registry) as jobs:
        await jobs.task("t").send(instance, "go")
    async with start(registry) as jobs:
        return await jobs.task("t").get_state(instance)


async def test_s01_no_state_until_a_handler_sets_one(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S01 No state until a handler sets one."""
    seen: list[Any] = []

    async def on_event(event: str, ctx: Ctx) -> None:
        seen.append(ctx.state)

    async with open_task(store_url, on_event) as (_, client):
        await client.send("i1", "go")
        await client.send("i1", "again")
        assert seen == [None, None]
        assert await client.get_state("i1") == dj.TaskState(None, None)
        assert "state_changed" not in names(await client.history("i1"))


async def test_s02_set_state_round_trips(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S02 set_state round-trips (after reload)."""
    state = await reloaded(durable_store_url, Item(count=42, name="test"), "i1")
    assert state == dj.TaskState(Item(count=42, name="test"), None)
    assert state is not None
    assert isinstance(state.state, Item)


async def test_s03_update_state_applies_a_function(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S03 update_state applies a function to the current state."""
    seen: list[Any] = []

    async def on_event(event: str, ctx: Ctx) -> None:
        if event == "init":
            ctx.set_state(Item(count=10, name="original"))
        else:

            def add5(item: Item | None) -> Item:
                seen.append(item)
                assert item is not None
                return item.model_copy(update={"count": item.count + 5})

            ctx.update_state(add5)
            seen.append(ctx.state)

    async with open_task(store_url, on_event) as (_, client):
        await client.send("i1", "init")
        await client.send("i1", "add5")
        assert seen == [Item(count=10, name="original"), Item(count=15, name="original")]
        assert await client.get_state("i1") == dj.TaskState(Item(count=15, name="original"), None)


async def test_s04_update_state_with_no_state_passes_none(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S04 update_state with no state passes None."""
    seen: list[Any] = []

    def fresh(item: Item | None) -> Item:
        seen.append(item)
        return Item(count=1, name="fresh") if item is None else item

    async def on_event(event: str, ctx: Ctx) -> None:
        ctx.update_state(fresh)

    async with open_task(store_url, on_event) as (_, client):
        await client.send("i1", "go")
        assert seen == [None]
        assert await client.get_state("i1") == dj.TaskState(Item(count=1, name="fresh"), None)


async def test_s05_terminate_deletes_the_state(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S05 Terminate deletes the state."""
    async with open_task(store_url, storing(Item(count=42, name="test"))) as (_, client):
        await client.send("i1", "go")
        assert await client.terminate("i1", reason="done") == dj.TerminateResult(True)
        assert await client.get_state("i1") is None
        history = await client.history("i1")
        assert names(history) == [
            "started",
            "event_added",
            "run_succeeded",
            "state_changed",
            "terminated",
        ]
        assert history[3].data["state"] == {"count": 42, "name": "test", "flag": None}
        assert history[-1].data["reason"] == "done"


class Renamed(BaseModel):
    total: int
    label: str


async def test_s06_a_stored_state_that_no_longer_fits_is_refused(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S06 A stored state that no longer fits its type is refused."""
    ran: list[str] = []

    async def on_event_new(event: str, ctx: Ctx) -> None:
        ran.append("on_event")

    async def execute_new(ctx: Ctx) -> None:
        ran.append("execute")

    old = task_registry(storing(Item(count=42, name="test")), name="items")
    new = task_registry(on_event_new, execute=execute_new, state=Renamed, name="items")
    start = restarts(durable_store_url)
    async with start(old) as jobs:
        await jobs.task("items").send("i1", "go")
        before = await jobs.task("items").history("i1")
    version = before[-1].version
    async with start(new) as jobs:
        client = jobs.task("items")
        reads: dict[str, Callable[[], Awaitable[object]]] = {
            "get_state": lambda: client.get_state("i1"),
            "send": lambda: client.send("i1", "go"),
            "trigger": lambda: client.trigger("i1"),
        }
        for read, call in reads.items():
            with pytest.raises(dj.StoreError) as info:
                await call()
            message = str(info.value)
            assert "'items'" in message, read
            assert "'i1'" in message, read
            assert f"version {version}" in message, (read, message)
            assert isinstance(info.value.__cause__, pydantic.ValidationError), read
        assert ran == []
        assert len(await client.history("i1")) == len(before)
        assert (await client.status("i1")).event_count == 1
    async with start(old) as jobs:
        assert await jobs.task("items").get_state("i1") == dj.TaskState(
            Item(count=42, name="test"), None
        )


async def test_s07_optional_fields_survive(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S07 Optional fields survive."""

    async def on_event(event: str, ctx: Ctx) -> None:
        if event == "init":
            ctx.set_state(Item(count=1, name="test"))
        else:
            ctx.update_state(
                lambda item: Item.model_validate(item).model_copy(update={"flag": True})
            )

    async with open_task(store_url, on_event) as (_, client):
        await client.send("i1", "init")
        first = await client.get_state("i1")
        assert first is not None
        assert first.state == Item(count=1, name="test")
        assert first.state.flag is None
        await client.send("i1", "flag")
        second = await client.get_state("i1")
        assert second is not None
        assert second.state == Item(count=1, name="test", flag=True)


class User(BaseModel):
    id: int
    email: str


class LineItem(BaseModel):
    name: str
    quantity: int


class Order(BaseModel):
    user: User
    items: list[LineItem]
    metadata: dict[str, Any]


NESTED = Order(
    user=User(id=7, email="a@example.com"),
    items=[LineItem(name="apple", quantity=3), LineItem(name="pear", quantity=1)],
    metadata={"source": "web", "nested": {"depth": 2, "tags": ["x", "y"], "ok": True}},
)


async def test_s08_nested_structures_round_trip(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """S08 Nested structures round-trip (after reload)."""
    state = await reloaded(durable_store_url, NESTED, "o1")
    assert state == dj.TaskState(NESTED, None)
    assert state is not None
    assert isinstance(state.state, Order)
    assert state.state.metadata["nested"] == {"depth": 2, "tags": ["x", "y"], "ok": True}


# ---- 10. X14, X15 --------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


async def test_x14_handler_error_without_on_error(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X14 Task handler errors: without on_error, trigger raises HandlerError."""

    async def on_event(event: str, ctx: Ctx) -> None:
        ctx.set_state(Item(count=1, name="kept"))
        ctx.schedule(timedelta(hours=1))

    async def execute(ctx: Ctx) -> None:
        ctx.set_state(Item(count=99, name="lost"))
        ctx.schedule(timedelta(minutes=1))
        raise Boom("execute blew up")

    async with open_task(store_url, on_event, execute=execute) as (_, client):
        await client.send("t1", "go")
        with pytest.raises(dj.HandlerError) as info:
            await client.trigger("t1")
        assert isinstance(info.value.__cause__, Boom)
        assert str(info.value.__cause__) == "execute blew up"
        assert await client.get_state("t1") == dj.TaskState(
            Item(count=1, name="kept"), T + timedelta(hours=1)
        )
        failed = named(await client.history("t1"), "run_failed")
        assert len(failed) == 1
        assert failed[0].data["handler"] == "execute"
        assert failed[0].data["message"] == "execute blew up"
        assert failed[0].data["error_type"].endswith("Boom")
        assert failed[0].data["will_retry"] is False
        assert failed[0].state_before == {"count": 1, "name": "kept", "flag": None}


async def test_x14_handler_error_with_on_error_schedules_a_retry(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X14 Task handler errors: an on_error that schedules; trigger returns normally."""
    errors: list[BaseException] = []
    tries: list[int] = []

    async def execute(ctx: Ctx) -> None:
        tries.append(ctx.execute_count)
        if len(tries) == 1:
            ctx.set_state(Item(count=99, name="lost"))
            raise Boom("first try fails")
        item = Item.model_validate(ctx.state)
        ctx.set_state(item.model_copy(update={"count": item.count + 1}))

    async def on_error(error: BaseException, ctx: Ctx) -> None:
        errors.append(error)
        assert ctx.state == Item(count=1, name="kept")
        ctx.schedule(timedelta(seconds=30))

    on_event = storing(Item(count=1, name="kept"))
    async with open_task(store_url, on_event, execute=execute, on_error=on_error) as opened:
        jobs, client = opened
        await client.send("t1", "go")
        await advance(jobs, 10 * SECOND)
        result = await client.trigger("t1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=True)
        assert len(errors) == 1
        assert isinstance(errors[0], Boom)
        assert await client.status("t1") == dj.TaskStatus("active", T + 40 * SECOND, 1, 1, T)
        assert await client.get_state("t1") == dj.TaskState(
            Item(count=1, name="kept"), T + 40 * SECOND
        )
        runs = handler_names(await client.history("t1"))
        assert runs[-2:] == [("run_failed", "execute"), ("run_succeeded", "on_error")]
        await advance(jobs, 30 * SECOND)
        assert tries == [1, 2]
        assert await client.status("t1") == dj.TaskStatus("idle", None, 1, 2, T)
        assert await client.get_state("t1") == dj.TaskState(Item(count=2, name="kept"), None)


async def test_x15_scheduled_at_is_the_committed_alarm(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X15 Task scheduled_at is the committed alarm."""
    seen: dict[str, list[datetime | None]] = {}

    async def on_event(event: str, ctx: Ctx) -> None:
        ctx.set_state(Item(count=0, name=event))
        ctx.schedule(timedelta(seconds=5))

    async def execute(ctx: Ctx) -> None:
        # SPEC §1: None in an alarm-fired execute. The two instances' alarms ring at
        # the same instant and run concurrently, so record per instance.
        mine = seen.setdefault(ctx.instance_id, [])
        mine.append(ctx.scheduled_at)
        if Item.model_validate(ctx.state).name == "again":
            ctx.schedule(timedelta(minutes=1))
            mine.append(ctx.scheduled_at)

    async with open_task(store_url, on_event, execute=execute) as (jobs, client):
        await client.send("once", "once")
        await client.send("rearm", "again")
        await advance(jobs, 5 * SECOND)
        assert await client.status("once") == dj.TaskStatus("idle", None, 1, 1, T)
        once = await client.get_state("once")
        assert once is not None
        assert once.scheduled_at is None
        rearmed = await client.status("rearm")
        assert rearmed == dj.TaskStatus("active", T + 65 * SECOND, 1, 1, T)
        assert seen == {"once": [None], "rearm": [None, T + 65 * SECOND]}


# ---- task idempotency keys (section 7 restated for send) -----------------------------------


def keyed_registry(log: Log, *, window: timedelta = timedelta(hours=24)) -> dj.Registry:
    async def on_event(event: str, ctx: Ctx) -> None:
        log.append(("on_event", event))
        ctx.update_state(
            lambda item: (
                Item(count=1, name=event)
                if item is None
                else Item(count=item.count + 1, name=event)
            )
        )
        ctx.schedule(timedelta(seconds=5))

    return task_registry(on_event, idempotency_window=window)


@asynccontextmanager
async def open_keyed(
    url: str, *, window: timedelta = timedelta(hours=24)
) -> AsyncIterator[Logged]:
    """``keyed_registry(log, window=window)`` running on ``url``."""
    log: Log = []
    async with running(keyed_registry(log, window=window), url) as jobs:
        yield jobs, jobs.task("t"), log


async def test_k01_k02_a_repeated_key_is_a_duplicate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K01/K02 A new key is accepted; an accepted key is recognised (task send)."""
    async with open_keyed(store_url) as (jobs, client, log):
        first = await client.send("t1", "a", idempotency_key="event-123")
        assert first == dj.SendResult(created=True, scheduled_at=T + 5 * SECOND, duplicate=False)
        history = await client.history("t1")
        added = named(history, "event_added")
        assert [r.data["idempotency_key"] for r in added] == ["event-123"]
        await advance(jobs, 2 * SECOND)
        again = await client.send("t1", "b", idempotency_key="event-123")
        assert again == dj.SendResult(created=False, scheduled_at=T + 5 * SECOND, duplicate=True)
        assert log == [("on_event", "a")]
        assert await client.status("t1") == dj.TaskStatus("active", T + 5 * SECOND, 1, 0, T)
        assert await client.get_state("t1") == dj.TaskState(
            Item(count=1, name="a"), T + 5 * SECOND
        )
        assert len(await client.history("t1")) == len(history)


async def test_k06_a_key_outlives_a_termination(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K06 A key outlives its batch, not its window (task: it outlives terminate too)."""
    async with open_keyed(store_url) as (_, client, log):
        await client.send("t1", "a", idempotency_key="k1")
        await client.send("t1", "b", idempotency_key="k2")
        assert await client.terminate("t1") == dj.TerminateResult(terminated=True)
        for key in ("k1", "k2"):  # both repeats alike: acknowledged, nothing created
            again = await client.send("t1", "c", idempotency_key=key)
            assert again == dj.SendResult(created=False, scheduled_at=None, duplicate=True)
        assert (await client.status("t1")).status == "not_found"
        fresh = await client.send("t1", "d", idempotency_key="k3")
        assert fresh.created and not fresh.duplicate
        assert log == [("on_event", "a"), ("on_event", "b"), ("on_event", "d")]


async def test_k03_concurrent_repeats_count_once(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K03 Accept-and-record is atomic (task send)."""
    async with open_keyed(store_url) as (_, client, log):
        results: list[dj.SendResult] = []

        async def send(event: str) -> None:
            results.append(await client.send("t1", event, idempotency_key="same"))

        async with trio.open_nursery() as nursery:
            for event in ("x", "y", "z"):
                nursery.start_soon(send, event)
        assert sorted(r.duplicate for r in results) == [False, True, True]
        assert sum(r.created for r in results) == 1
        assert len(log) == 1
        assert (await client.status("t1")).event_count == 1


async def test_k04_repeats_stay_duplicates(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K04 Repeats stay duplicates (task send)."""
    async with open_keyed(store_url) as (_, client, log):
        results = [await client.send("t1", "a", idempotency_key="k") for _ in range(3)]
        assert [(r.created, r.duplicate) for r in results] == [
            (True, False),
            (False, True),
            (False, True),
        ]
        assert len(log) == 1
        assert (await client.status("t1")).event_count == 1


async def test_k05_k07_k08_keys_are_independent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """K05/K07/K08 Keys are independent, may hold any characters, and prefixes differ."""
    keys = [
        "event-a",
        "event-b",
        "a/b:c-d_e.f g@#$",
        "tenant:42/order#7 @ 2026-01-01",
        "123",
        "1234",
        "12345",
        "123456",
    ]
    async with open_keyed("memory://") as (_, client, log):
        for key in keys:
            assert not (await client.send("t1", key, idempotency_key=key)).duplicate, key
        for key in keys:
            assert (await client.send("t1", "again", idempotency_key=key)).duplicate, key
        assert [e[1] for e in log] == keys
        assert (await client.status("t1")).event_count == len(keys)


async def test_k06_a_key_outlives_runs_not_its_window(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K06 A key outlives its batch (here: execute runs), not its window (task send)."""
    async with open_keyed(store_url, window=timedelta(hours=1)) as (jobs, client, log):
        await client.send("t1", "a", idempotency_key="event-x")
        await advance(jobs, 10 * SECOND)  # the alarm ran execute
        assert (await client.status("t1")).execute_count == 1
        assert (await client.send("t1", "b", idempotency_key="event-x")).duplicate
        await advance(jobs, timedelta(minutes=59, seconds=49))  # T + 59:59
        assert (await client.send("t1", "c", idempotency_key="event-x")).duplicate
        await advance(jobs, SECOND)  # T + 1 h: the window has passed
        late = await client.send("t1", "d", idempotency_key="event-x")
        assert (late.created, late.duplicate) == (False, False)
        assert log == [("on_event", "a"), ("on_event", "d")]
        assert (await client.send("t1", "e", idempotency_key="event-x")).duplicate


async def test_x03_task_keys_survive_a_restart(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X03 Idempotency keys survive a restart (task send)."""
    log: Log = []
    registry = keyed_registry(log)
    start = restarts(durable_store_url)
    async with start(registry) as jobs:
        await jobs.task("t").send("t1", "a", idempotency_key="k1")
    async with start(registry) as jobs:
        result = await jobs.task("t").send("t1", "b", idempotency_key="k1")
        assert (result.created, result.duplicate) == (False, True)
        assert log == [("on_event", "a")]
        assert (await jobs.task("t").status("t1")).event_count == 1


async def test_failed_on_event_does_not_keep_its_key(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Task keys: an on_event that raised (no on_error) does not keep the key; a retry runs."""
    calls: list[str] = []

    async def on_event(event: str, ctx: Ctx) -> None:
        calls.append(event)
        if len(calls) == 1:
            ctx.set_state(Item(count=99, name="lost"))
            raise Boom("not yet")
        ctx.set_state(Item(count=1, name=event))

    async with open_task(store_url, on_event) as (_, client):
        with pytest.raises(dj.HandlerError) as info:
            await client.send("t1", "first", idempotency_key="k")
        assert isinstance(info.value.__cause__, Boom)
        assert await client.get_state("t1") == dj.TaskState(None, None)
        history = await client.history("t1")
        assert handler_names(history) == [("run_failed", "on_event")]
        assert [r.data["idempotency_key"] for r in named(history, "event_added")] == [None]
        retry = await client.send("t1", "retry", idempotency_key="k")
        assert (retry.created, retry.duplicate) == (False, False)
        assert calls == ["first", "retry"]
        assert await client.get_state("t1") == dj.TaskState(Item(count=1, name="retry"), None)
        repeat = await client.send("t1", "third", idempotency_key="k")
        assert repeat.duplicate
        assert calls == ["first", "retry"]


async def test_handled_on_event_failure_keeps_its_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Task keys: with on_error the send's outcome is on_error's, so the key is kept."""
    calls: list[str] = []

    async def on_event(event: str, ctx: Ctx) -> None:
        calls.append(event)
        raise Boom("always")

    async def on_error(error: BaseException, ctx: Ctx) -> None:
        calls.append("on_error")

    async with open_task("memory://", on_event, on_error=on_error) as (_, client):
        first = await client.send("t1", "a", idempotency_key="k")
        assert first == dj.SendResult(created=True, scheduled_at=None, duplicate=False)
        again = await client.send("t1", "b", idempotency_key="k")
        assert again.duplicate
        assert calls == ["a", "on_error"]


# ---- more of SPEC §4 -----------------------------------------------------------------------


async def test_on_idle_runs_after_execute_when_no_alarm_is_left(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §4: after execute (by trigger or by alarm) with no alarm left, on_idle runs."""
    log: Log = []

    async def on_event(event: str, ctx: Ctx) -> None:
        log.append(("on_event", event))
        if event == "arm":
            ctx.schedule(timedelta(seconds=5))

    async def execute(ctx: Ctx) -> None:
        log.append(("execute", ctx.execute_count))

    async def on_idle(ctx: Ctx) -> None:
        log.append(("on_idle", ctx.execute_count))

    async with open_task(store_url, on_event, execute=execute, on_idle=on_idle) as (jobs, client):
        await client.send("t1", "arm")
        assert log == [("on_event", "arm")]
        await advance(jobs, 5 * SECOND)
        assert log[1:] == [("execute", 1), ("on_idle", 1)]
        await client.trigger("t1")
        assert log[3:] == [("execute", 2), ("on_idle", 2)]
        runs = handler_names(await client.history("t1"))
        assert runs == [
            ("run_succeeded", "on_event"),
            ("run_succeeded", "execute"),
            ("run_succeeded", "on_idle"),
            ("run_succeeded", "execute"),
            ("run_succeeded", "on_idle"),
        ]


async def test_on_error_can_terminate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §4: on_error may terminate; trigger reports terminated, send returns normally."""

    async def on_event(event: str, ctx: Ctx) -> None:
        if event == "bad":
            raise Boom("bad event")
        ctx.set_state(Item(count=1, name=event))
        ctx.schedule(timedelta(minutes=5))

    async def execute(ctx: Ctx) -> None:
        raise Boom("bad run")

    errors: list[str] = []

    async def on_error(error: BaseException, ctx: Ctx) -> None:
        errors.append(str(error))
        ctx.terminate("gave up")

    async with open_task(store_url, on_event, execute=execute, on_error=on_error) as opened:
        jobs, client = opened
        await client.send("t1", "ok")
        result = await client.trigger("t1")
        assert result == dj.TriggerResult(triggered=True, terminated=True, retry_scheduled=False)
        assert await client.status("t1") == NOT_FOUND
        assert await client.get_state("t1") is None
        history = await client.history("t1")
        assert names(history)[-2:] == ["alarm_cleared", "terminated"]
        assert history[-1].data["reason"] == "gave up"
        sent = await client.send("t2", "bad")
        assert sent == dj.SendResult(created=True, scheduled_at=None, duplicate=False)
        assert (await client.status("t2")).status == "not_found"
        assert errors == ["bad run", "bad event"]
        await advance(jobs, 10 * MINUTE)
        assert errors == ["bad run", "bad event"]


async def test_trigger_keeps_an_existing_alarm_unless_changed(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §4: trigger runs execute now; an existing alarm stays unless a handler changes it."""
    ran: list[tuple[int, datetime, datetime | None]] = []

    async def execute(ctx: Ctx) -> None:
        ran.append((ctx.execute_count, jobs.clock.now(), ctx.scheduled_at))
        if ctx.execute_count == 2:
            ctx.schedule(timedelta(minutes=1))

    on_event = scheduling(timedelta(seconds=5))
    async with open_task(store_url, on_event, execute=execute) as (jobs, client):
        await client.send("t1", "go")
        await advance(jobs, SECOND)
        assert await client.trigger("t1") == RAN
        assert await client.status("t1") == dj.TaskStatus("active", T + 5 * SECOND, 1, 1, T)
        assert ran == [(1, T + SECOND, T + 5 * SECOND)]
        await client.trigger("t1")  # this run schedules: the alarm moves
        assert await client.status("t1") == dj.TaskStatus("active", T + 61 * SECOND, 1, 2, T)
        await advance(jobs, 10 * SECOND)  # the old T + 5 s alarm is gone
        assert len(ran) == 2
        await advance(jobs, MINUTE)
        assert [r[:2] for r in ran] == [
            (1, T + SECOND),
            (2, T + SECOND),
            (3, T + 61 * SECOND),
        ]
        assert (await client.status("t1")).status == "idle"


async def test_context_counters_and_created_at(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §4: ctx.event_count, execute_count, created_at, instance_id and job_name."""
    seen: list[tuple[str, int, int, datetime, str, str]] = []

    def note(handler: str, ctx: Ctx) -> None:
        seen.append(
            (
                handler,
                ctx.event_count,
                ctx.execute_count,
                ctx.created_at,
                ctx.instance_id,
                ctx.job_name,
            )
        )

    async def on_event(event: str, ctx: Ctx) -> None:
        note("on_event", ctx)

    async def execute(ctx: Ctx) -> None:
        note("execute", ctx)

    async with open_task(store_url, on_event, execute=execute, name="counting") as (jobs, client):
        await advance(jobs, 3 * SECOND)
        created = T + 3 * SECOND
        await client.send("Order/42", "a")
        await advance(jobs, 10 * SECOND)
        await client.send("Order/42", "b")
        await client.trigger("Order/42")
        await client.trigger("Order/42")
        await client.send("Order/42", "c")
        ids = ("Order/42", "counting")
        assert seen == [
            ("on_event", 1, 0, created, *ids),
            ("on_event", 2, 0, created, *ids),
            ("execute", 2, 1, created, *ids),
            ("execute", 2, 2, created, *ids),
            ("on_event", 3, 2, created, *ids),
        ]
        assert await client.status("Order/42") == dj.TaskStatus("idle", None, 3, 2, created)


async def test_plain_int_state(store_url: str, autojump_clock: trio.testing.MockClock) -> None:
    """SPEC §1/§4: a task job whose state and event types are plain int."""
    seen: list[Any] = []

    async def on_event(event: int, ctx: Ctx) -> None:
        seen.append(ctx.state)
        ctx.update_state(lambda total: event if total is None else total + event)

    async def execute(ctx: Ctx) -> None:
        seen.append(ctx.state)
        ctx.set_state((ctx.state or 0) * 10)

    async with open_task(store_url, on_event, execute=execute, event=int, state=int) as opened:
        _, client = opened
        await client.send("n", 3)
        await client.send("n", 4)
        assert await client.get_state("n") == dj.TaskState(7, None)
        await client.trigger("n")
        assert await client.get_state("n") == dj.TaskState(70, None)
        assert seen == [None, 3, 7]
        changes = [r.data["state"] for r in named(await client.history("n"), "state_changed")]
        assert changes == [3, 7, 70]
        with pytest.raises(dj.ValidationError):
            await client.send("n", "not a number")
        assert (await client.status("n")).event_count == 2


async def test_an_alarm_run_commits_on_memory_without_a_task_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On a store that does not block, execute started by the alarm is committed in the
    task step that ran it (its objects die young); a trigger's commit keeps its
    schedule point: the task lets others run before it commits."""
    registry = dj.Registry()
    order: list[str] = []

    class Steps(trio.abc.Instrument):
        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            if order and order[-1] == "execute ran":
                order.append("task switch")

    def observed(record: dj.RecordedEvent) -> None:
        if record.name == "run_succeeded" and record.data.get("handler") == "execute":
            order.append("committed")

    @registry.task("t", event=int, state=int)
    async def t(ctx: Ctx) -> None:
        order.append("execute ran")

    @t.on_event
    async def on_event(event: int, ctx: Ctx) -> None:
        ctx.schedule(timedelta(seconds=event))

    async with dj.open_jobs(
        registry, "memory://", clock=dj.VirtualClock(T), observers=[observed], poll_interval=None
    ) as jobs:
        client = jobs.task(t)
        await client.send("a", 1)
        trio.lowlevel.add_instrument(Steps())
        await advance(jobs, 2 * SECOND)
        assert order == ["execute ran", "committed"]
        order.clear()
        await client.trigger("a")
        assert order == ["execute ran", "task switch", "committed"]
