"""Debounce jobs end to end: SCENARIOS.md sections 2 (D01-D10), 7 (K01-K08) and the
debounce parts of X03-X07 and X13, on each store, in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack

import pytest
import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names, running

FLUSH_AFTER = 5 * MINUTE
T5 = T + FLUSH_AFTER  # when the window opened at T ends

#: Three tries a minute apart.
RETRY_EVERY_MINUTE = dj.Retry(max_attempts=3, delay=dj.Backoff.constant(MINUTE), jitter=0)


def retry_twice(on_exhausted: Literal["terminate", "pause"]) -> dj.Retry:
    """Two tries a second apart, then ``on_exhausted``."""
    return dj.Retry(
        max_attempts=2, delay=dj.Backoff.constant(SECOND), jitter=0, on_exhausted=on_exhausted
    )


class Hook(BaseModel):
    type: str
    payload: Any


class Batch(BaseModel):
    events: list[Hook]
    first_event_at: float | None = None


def hook(n: int) -> Hook:
    return Hook(type="webhook", payload={"n": n})


def batch(*numbers: int, first_event_at: datetime = T) -> Batch:
    """The state ``fold`` builds from ``hook(n)`` for each of ``numbers``."""
    return Batch(events=[hook(n) for n in numbers], first_event_at=first_event_at.timestamp())


def batch_json(events: list[Hook], first_event_at: datetime) -> dict[str, Any]:
    """A Batch as the log stores it (JSON)."""
    return {
        "events": [e.model_dump(mode="json") for e in events],
        "first_event_at": first_event_at.timestamp(),
    }


@dataclass(frozen=True)
class Flush:
    """What one call of ``execute`` saw."""

    instance_id: str
    event_count: int
    state: Batch
    flush_reason: str
    attempt: int
    is_retry: bool
    started_at: datetime
    at: datetime


class Probe:
    """Records handler calls; can make ``execute`` fail or block until released."""

    def __init__(
        self,
        clock: dj.VirtualClock,
        *,
        failures: int = 0,
        always_fail: bool = False,
        gated: bool = False,
    ) -> None:
        self.clock = clock
        self.flushes: list[Flush] = []
        self.reducer_calls: list[tuple[Hook, Batch | None, int]] = []
        self.failures = failures  # fail the next N flushes
        self.always_fail = always_fail
        self.reducer_error = False
        # execute waits for the gate when set
        self.gate: trio.Event | None = trio.Event() if gated else None
        self.entered = trio.Event()  # set whenever execute starts

    def release(self) -> None:
        """Let the flushes blocked at the gate go on."""
        assert self.gate is not None
        self.gate.set()

    async def execute(self, ctx: dj.DebounceContext[Batch]) -> None:
        self.flushes.append(
            Flush(
                ctx.instance_id,
                ctx.event_count,
                ctx.state,
                ctx.flush_reason,
                ctx.attempt,
                ctx.is_retry,
                ctx.debounce_started_at,
                self.clock.now(),
            )
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.always_fail or self.failures > 0:
            self.failures -= 1
            raise RuntimeError("Intentional flush failure")

    def fold(self, ctx: dj.DebounceEventContext[Hook, Batch]) -> Batch:
        self.reducer_calls.append((ctx.event, ctx.state, ctx.event_count))
        if self.reducer_error:
            raise ValueError("reducer refuses this event")
        if ctx.state is None:
            return Batch(events=[ctx.event], first_event_at=self.clock.now().timestamp())
        return Batch(
            events=[*ctx.state.events, ctx.event], first_event_at=ctx.state.first_event_at
        )


Client = dj.DebounceClient[Hook, Batch]
Opened = tuple[Probe, dj.Jobs, Client]


async def add_all(client: Client, *numbers: int, instance: str = "b1") -> list[dj.AddResult]:
    """Add ``hook(n)`` for each of ``numbers``, one after the other."""
    return [await client.add(instance, hook(n)) for n in numbers]


@dataclass(frozen=True)
class Rig:
    """A virtual clock at T, a probe and a registry holding one debounce job."""

    clock: dj.VirtualClock
    probe: Probe
    registry: dj.Registry
    job: dj.DebounceJob[Hook, Batch]

    @asynccontextmanager
    async def run(
        self, url: str, *numbers: int, instance: str = "b1", **options: Any
    ) -> AsyncIterator[Opened]:
        """``running`` on ``url``, having added ``hook(n)`` for each of ``numbers``."""
        async with running(self.registry, url, clock=self.clock, **options) as jobs:
            client = jobs.debounce(self.job)
            await add_all(client, *numbers, instance=instance)
            yield self.probe, jobs, client


class Settings(TypedDict, total=False):
    """What ``registry.debounce`` takes besides the name and the types."""

    flush_after: timedelta
    max_events: int | None
    retry: dj.Retry | None
    idempotency_window: timedelta
    window: Literal["fixed", "sliding"]
    max_wait: timedelta | None


def batcher(
    *,
    name: str = "batcher",
    reducer: Literal["sync", "async"] = "sync",
    failures: int = 0,
    always_fail: bool = False,
    gated: bool = False,
    **options: Unpack[Settings],
) -> Rig:
    """``batcher`` (SCENARIOS §2: flush_after=5 min, max_events=10, a 24-hour
    idempotency window) with a fresh probe; ``options`` override those settings."""
    clock = dj.VirtualClock(T)
    probe = Probe(clock, failures=failures, always_fail=always_fail, gated=gated)
    registry = dj.Registry()
    settings: Settings = {
        "flush_after": FLUSH_AFTER,
        "max_events": 10,
        "idempotency_window": 24 * HOUR,
        **options,
    }
    register = registry.debounce(name, event=Hook, state=Batch, **settings)
    job: dj.DebounceJob[Hook, Batch] = register(probe.execute)
    if reducer == "sync":
        job.on_event(probe.fold)
    else:

        async def fold_async(ctx: dj.DebounceEventContext[Hook, Batch]) -> Batch:
            await trio.lowlevel.checkpoint()
            return probe.fold(ctx)

        job.on_event(fold_async)
    return Rig(clock, probe, registry, job)


def small(**options: Any) -> Rig:
    """``small``: flush_after=10 min, max_events=3."""
    return batcher(name="small", flush_after=10 * MINUTE, max_events=3, **options)


@asynccontextmanager
async def open_batcher(
    url: str,
    *numbers: int,
    records: list[dj.RecordedEvent] | None = None,
    **options: Any,
) -> AsyncIterator[Opened]:
    """``batcher(**options)`` running on ``url``, with ``hook(n)`` added to ``b1`` for each
    of ``numbers``."""
    async with batcher(**options).run(url, *numbers, records=records) as opened:
        yield opened


async def flush_started(probe: Probe) -> None:
    """Wait until ``execute`` runs (failing, not hanging, if it never does)."""
    with trio.fail_after(HOUR.total_seconds()):
        await probe.entered.wait()


async def alarm_flush_started(probe: Probe) -> None:
    """Let the window opened at T end, then wait until its flush runs."""
    await trio.sleep(FLUSH_AFTER.total_seconds())
    await flush_started(probe)


async def nothing_more_flushes(jobs: dj.Jobs, probe: Probe, count: int) -> None:
    """An hour later ``execute`` has still run ``count`` times: nothing else was due."""
    await advance(jobs, HOUR)
    assert len(probe.flushes) == count


def summary(flushes: list[Flush]) -> list[tuple[int, list[int], str, int, datetime]]:
    """(event_count, event numbers, flush_reason, attempt, time) of each execute call."""
    return [
        (f.event_count, [e.payload["n"] for e in f.state.events], f.flush_reason, f.attempt, f.at)
        for f in flushes
    ]


IDLE = dj.DebounceStatus("idle", 0, None, None)
NOT_FOUND = dj.DebounceStatus("not_found", 0, None, None)
#: What add returns for a known key while no batch is open.
DUPLICATE_WHILE_IDLE = dj.AddResult(0, None, created=False, duplicate=True)


# ---- 2. Debounce jobs ------------------------------------------------------------------


async def test_d01_first_add_opens_the_window(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D01 The first add opens the window."""
    async with open_batcher(store_url) as (probe, jobs, client):
        result = await client.add("b1", Hook(type="webhook", payload={"data": 1}))
        assert result == dj.AddResult(
            event_count=1, will_flush_at=T + FLUSH_AFTER, created=True, duplicate=False
        )
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        history = await client.history("b1")
        assert names(history) == ["started", "event_added", "state_changed", "alarm_set"]
        assert history[-1].data["at"] == T + FLUSH_AFTER
        assert all(r.at == T for r in history)
        await jobs.wait_idle()
        await advance(jobs, FLUSH_AFTER - SECOND)
        assert probe.flushes == []
        await advance(jobs, SECOND)
        assert [f.at for f in probe.flushes] == [T + FLUSH_AFTER]


async def test_d01_later_adds_do_not_move_the_alarm(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """D01 The first add opens the window (a fixed window: later adds keep its end)."""
    async with open_batcher("memory://", 1) as (probe, jobs, client):
        await advance(jobs, 4 * MINUTE)
        second = await client.add("b1", hook(2))
        assert second == dj.AddResult(2, T + FLUSH_AFTER, created=False, duplicate=False)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 2, T, T + FLUSH_AFTER)
        await advance(jobs, MINUTE)
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T + FLUSH_AFTER)]


async def test_d02_on_event_folds_each_event(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D02 on_event folds each event into the state."""
    first = Hook(type="webhook", payload={"first": True})
    second = Hook(type="webhook", payload={"second": True})
    async with open_batcher(store_url) as (probe, jobs, client):
        await client.add("b1", first)
        await advance(jobs, MINUTE)
        await client.add("b1", second)
        state = await client.get_state("b1")
        assert state == Batch(events=[first, second], first_event_at=T.timestamp())
        assert probe.reducer_calls == [
            (first, None, 1),
            (second, Batch(events=[first], first_event_at=T.timestamp()), 2),
        ]
        await advance(jobs, FLUSH_AFTER)
        assert [f.state for f in probe.flushes] == [state]


@pytest.mark.parametrize("reducer", ["sync", "async"])
async def test_d02_reducer_may_be_sync_or_async(
    reducer: Literal["sync", "async"], autojump_clock: trio.testing.MockClock
) -> None:
    """D02 on_event folds each event into the state (a plain or an async reducer)."""
    async with open_batcher("memory://", 1, 2, 3, reducer=reducer) as (probe, _, client):
        assert await client.get_state("b1") == batch(1, 2, 3)
        assert [(e.payload["n"], s is None, c) for e, s, c in probe.reducer_calls] == [
            (1, True, 1),
            (2, False, 2),
            (3, False, 3),
        ]
        flushed = await client.flush("b1")
        assert flushed == dj.FlushResult(True, 3, "manual", False)
        assert summary(probe.flushes) == [(3, [1, 2, 3], "manual", 1, T)]


async def test_d02_first_event_of_each_batch_sees_no_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """D02 on_event folds each event into the state (ctx.state is None for the first
    event of every batch, not only the first batch)."""
    async with open_batcher("memory://", 1, 2) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        assert len(probe.flushes) == 1
        await add_all(client, 3, 4)
        await client.clear("b1")
        await client.add("b1", hook(5))
        assert probe.reducer_calls == [
            (hook(1), None, 1),
            (hook(2), batch(1), 2),
            (hook(3), None, 1),
            (hook(4), batch(3, first_event_at=T5), 2),
            (hook(5), None, 1),
        ]
        assert await client.get_state("b1") == batch(5, first_event_at=T5)


async def test_d02_without_on_event_the_state_is_the_latest_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """D02 on_event folds each event into the state (without on_event the state is the
    latest event)."""
    seen: list[tuple[Hook, int]] = []
    registry = dj.Registry()

    @registry.debounce("plain", event=Hook, flush_after=FLUSH_AFTER)
    async def plain(ctx: dj.DebounceContext[Hook]) -> None:
        seen.append((ctx.state, ctx.event_count))

    async with running(registry, "memory://") as jobs:
        client = jobs.debounce(plain)
        await client.add("p1", hook(1))
        await client.add("p1", hook(2))
        assert await client.get_state("p1") == hook(2)
        await advance(jobs, FLUSH_AFTER)
        assert seen == [(hook(2), 2)]


async def test_d02_a_raising_reducer_writes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """D02 on_event folds each event into the state (a reducer that raises gives
    HandlerError and nothing is written)."""
    records: list[dj.RecordedEvent] = []
    async with open_batcher("memory://", records=records) as (probe, _, client):
        probe.reducer_error = True
        with pytest.raises(dj.HandlerError) as info:
            await client.add("b1", hook(1), idempotency_key="k1")
        assert isinstance(info.value.__cause__, ValueError)
        assert await client.status("b1") == NOT_FOUND
        assert await client.history("b1") == []
        assert records == []
        probe.reducer_error = False
        await client.add("b1", hook(2))
        before = await client.history("b1")
        probe.reducer_error = True
        with pytest.raises(dj.HandlerError):
            await client.add("b1", hook(3), idempotency_key="k1")
        assert await client.history("b1") == before
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        assert await client.get_state("b1") == batch(2)
        probe.reducer_error = False
        # The key of the refused add was not remembered.
        accepted = await client.add("b1", hook(4), idempotency_key="k1")
        assert (accepted.event_count, accepted.duplicate) == (2, False)


async def test_d03_event_count_counts_the_adds(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D03 event_count counts the adds."""
    async with open_batcher(store_url) as (_, _, client):
        results = await add_all(client, 1, 2, 3)
        assert [(r.event_count, r.created, r.duplicate) for r in results] == [
            (1, True, False),
            (2, False, False),
            (3, False, False),
        ]
        assert (await client.status("b1")).event_count == 3


async def test_d04_reaching_max_events_flushes_at_once(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D04 Reaching max_events flushes at once."""
    async with small().run(store_url) as (probe, jobs, client):
        first, _, third = await add_all(client, 1, 2, 3, instance="s1")
        assert first.will_flush_at == T + 10 * MINUTE
        assert third == dj.AddResult(3, T, created=False, duplicate=False)
        assert probe.flushes == []  # add does not run the flush itself
        await jobs.wait_idle()
        assert probe.clock.now() == T
        assert summary(probe.flushes) == [(3, [1, 2, 3], "max_events", 1, T)]
        assert probe.flushes[0].state == batch(1, 2, 3)
        assert await client.status("s1") == IDLE
        history = await client.history("s1")
        assert names(history) == (
            ["started", "event_added", "state_changed", "alarm_set"]  # the first add
            + ["event_added", "state_changed"] * 2  # the second and the third
            + ["batch_closed", "alarm_set", "run_succeeded", "flushed", "alarm_cleared"]
        )
        closed = history[8]
        assert (closed.data["reason"], closed.data["event_count"]) == ("max_events", 3)
        assert history[9].data["at"] == T
        flushed = history[11]
        assert (flushed.data["reason"], flushed.data["event_count"]) == ("max_events", 3)
        # The batch closed in the third add's own commit: one version per event, in order.
        assert [r.version for r in history] == list(range(1, len(history) + 1))


async def test_d05_the_window_end_flushes(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D05 The window's end flushes."""
    async with open_batcher(store_url, 1) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(1, [1], "flush_after", 1, T + FLUSH_AFTER)]
        flush = probe.flushes[0]
        assert (flush.instance_id, flush.started_at, flush.is_retry) == ("b1", T, False)
        history = await client.history("b1")
        run = next(r for r in history if r.name == "run_succeeded")
        assert (run.run_count, run.attempt) == (1, 1)
        assert run.state_before == batch_json([hook(1)], T)
        assert run.at == T + FLUSH_AFTER
        assert await client.status("b1") == IDLE
        await nothing_more_flushes(jobs, probe, 1)


async def test_d06_manual_flush_below_max_events(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D06 Manual flush below max_events."""
    async with open_batcher(store_url, 1) as (probe, jobs, client):
        result = await client.flush("b1")
        assert result == dj.FlushResult(
            flushed=True, event_count=1, reason="manual", retry_scheduled=False
        )
        assert summary(probe.flushes) == [(1, [1], "manual", 1, T)]
        await nothing_more_flushes(jobs, probe, 1)


async def test_d07_a_successful_flush_empties_the_instance(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D07 A successful flush empties the instance."""
    async with open_batcher(store_url, 1) as (probe, jobs, client):
        await client.flush("b1")
        assert await client.status("b1") == IDLE
        assert await client.get_state("b1") is None
        history = await client.history("b1")
        assert names(history)[-3:] == ["run_succeeded", "flushed", "alarm_cleared"]
        await nothing_more_flushes(jobs, probe, 1)
        assert await client.status("b1") == IDLE


async def test_d08_flushing_an_empty_instance_runs_nothing(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D08 Flushing an empty instance runs nothing."""
    empty = dj.FlushResult(flushed=False, event_count=0, reason="empty", retry_scheduled=False)
    async with open_batcher(store_url) as (probe, _, client):
        assert await client.flush("b1") == empty
        assert await client.status("b1") == NOT_FOUND
        assert await client.history("b1") == []
        await client.add("b1", hook(1))
        await client.flush("b1")
        history = await client.history("b1")
        assert await client.flush("b1") == empty  # idle now
        assert await client.history("b1") == history
        assert len(probe.flushes) == 1


async def test_d09_clear_drops_the_buffer_unprocessed(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D09 Clear drops the buffer unprocessed."""
    async with open_batcher(store_url, 1, 2) as (probe, jobs, client):
        assert await client.clear("b1") == dj.ClearResult(cleared=True, discarded_events=2)
        assert await client.status("b1") == IDLE
        assert await client.get_state("b1") is None
        history = await client.history("b1")
        assert names(history)[-2:] == ["cleared", "alarm_cleared"]
        assert history[-2].data["discarded_events"] == 2
        await advance(jobs, HOUR)
        assert probe.flushes == []
        assert await client.clear("b1") == dj.ClearResult(cleared=False, discarded_events=0)
        assert await client.clear("unknown") == dj.ClearResult(False, 0)
        assert await client.status("unknown") == NOT_FOUND


async def test_d09_clear_during_a_flush_in_flight(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D09 Clear drops the buffer unprocessed (while a flush is in flight: clear waits
    for it, as terminate waits for a run of the other kinds, so that the flush is
    recorded, and then drops what was added meanwhile). It did not wait before: the
    flush ran on its batch, and its success (and its ctx.execute writes) were thrown
    away without a record."""
    async with open_batcher(store_url, 1, 2, gated=True) as (probe, jobs, client):
        await alarm_flush_started(probe)  # the alarm's flush is blocked in execute
        await client.add("b1", hook(3))  # opens the next batch, without waiting
        cleared: list[dj.ClearResult] = []

        async def clear() -> None:
            cleared.append(await client.clear("b1"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(clear)
            await trio.testing.wait_all_tasks_blocked()
            assert cleared == []  # waiting for the flush
            assert probe.clock.now() == T + FLUSH_AFTER
            probe.release()
        assert cleared == [dj.ClearResult(cleared=True, discarded_events=1)]
        history = names(await client.history("b1"))
        assert history.index("flushed") < history.index("cleared")
        assert "run_succeeded" in history
        assert await client.status("b1") == IDLE
        assert await client.get_state("b1") is None
        await advance(jobs, HOUR)
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T + FLUSH_AFTER)]
        again = await client.add("b1", hook(4))
        now = T + FLUSH_AFTER + HOUR
        assert again == dj.AddResult(1, now + FLUSH_AFTER, created=True, duplicate=False)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes)[1:] == [(1, [4], "flush_after", 1, now + FLUSH_AFTER)]
        assert await client.status("b1") == IDLE


async def test_d10_status_while_debouncing(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """D10 Status while debouncing."""
    async with open_batcher(store_url, 1, 2) as (_, _, client):
        assert await client.status("b1") == dj.DebounceStatus(
            status="debouncing", event_count=2, started_at=T, will_flush_at=T + FLUSH_AFTER
        )


# ---- 7. Idempotency keys ------------------------------------------------------------------


async def test_k01_a_new_key_is_accepted(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K01 A new key is accepted."""
    async with open_batcher(store_url) as (_, _, client):
        result = await client.add("b1", hook(1), idempotency_key="event-123")
        assert result == dj.AddResult(1, T + FLUSH_AFTER, created=True, duplicate=False)
        added = [r for r in await client.history("b1") if r.name == "event_added"]
        assert [r.data["idempotency_key"] for r in added] == ["event-123"]


async def test_k02_an_accepted_key_is_recognised(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K02 An accepted key is recognised."""
    records: list[dj.RecordedEvent] = []
    async with open_batcher(store_url, records=records) as (probe, jobs, client):
        await client.add("b1", hook(1), idempotency_key="event-123")
        history = await client.history("b1")
        written = len(records)
        await advance(jobs, MINUTE)
        repeat = await client.add("b1", hook(2), idempotency_key="event-123")
        assert repeat == dj.AddResult(1, T + FLUSH_AFTER, created=False, duplicate=True)
        assert len(probe.reducer_calls) == 1
        assert await client.history("b1") == history
        assert len(records) == written
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        assert await client.get_state("b1") == batch(1)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(1, [1], "flush_after", 1, T + FLUSH_AFTER)]


async def test_k03_accept_and_record_is_atomic(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K03 Accept-and-record is atomic."""
    results: list[dj.AddResult] = []
    async with open_batcher(store_url) as (probe, jobs, client):

        async def add(n: int) -> None:
            results.append(await client.add("b1", hook(n), idempotency_key="same-key"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, 1)
            nursery.start_soon(add, 2)
        assert sorted(r.duplicate for r in results) == [False, True]
        assert [r.event_count for r in results] == [1, 1]
        assert len(probe.reducer_calls) == 1
        assert (await client.status("b1")).event_count == 1
        added = [r for r in await client.history("b1") if r.name == "event_added"]
        assert len(added) == 1
        await advance(jobs, FLUSH_AFTER)
        assert [f.event_count for f in probe.flushes] == [1]


async def test_k04_repeats_stay_duplicates(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K04 Repeats stay duplicates."""
    async with open_batcher(store_url) as (probe, jobs, client):
        first = await client.add("b1", hook(1), idempotency_key="once")
        await client.add("b1", hook(2))  # no key: counts
        repeats = [await client.add("b1", hook(3), idempotency_key="once") for _ in range(2)]
        assert first == dj.AddResult(1, T + FLUSH_AFTER, created=True, duplicate=False)
        assert repeats == [dj.AddResult(2, T + FLUSH_AFTER, created=False, duplicate=True)] * 2
        assert (await client.status("b1")).event_count == 2
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T + FLUSH_AFTER)]


async def test_k05_keys_are_independent(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K05 Keys are independent."""
    async with open_batcher(store_url) as (_, _, client):
        a = await client.add("b1", hook(1), idempotency_key="event-a")
        b = await client.add("b1", hook(2), idempotency_key="event-b")
        c = await client.add("b1", hook(3), idempotency_key="event-c")
        assert [(r.event_count, r.duplicate) for r in (a, b, c)] == [
            (1, False),
            (2, False),
            (3, False),
        ]
        assert (await client.status("b1")).event_count == 3
        # The same key on another instance is another key.
        other = await client.add("b2", hook(4), idempotency_key="event-a")
        assert (other.event_count, other.created, other.duplicate) == (1, True, False)


async def test_k06_a_key_outlives_its_batch_not_its_window(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K06 A key outlives its batch, not its window."""
    async with open_batcher(store_url, idempotency_window=10 * MINUTE) as (probe, jobs, client):
        await client.add("b1", hook(1), idempotency_key="event-x")
        assert (await client.flush("b1")).flushed
        after_flush = await client.add("b1", hook(2), idempotency_key="event-x")
        assert after_flush == DUPLICATE_WHILE_IDLE
        await client.add("b1", hook(3), idempotency_key="event-y")
        assert await client.clear("b1") == dj.ClearResult(True, 1)
        after_clear = await client.add("b1", hook(4), idempotency_key="event-y")
        assert after_clear == DUPLICATE_WHILE_IDLE
        await advance(jobs, 10 * MINUTE - SECOND)
        still = await client.add("b1", hook(5), idempotency_key="event-x")
        assert still == DUPLICATE_WHILE_IDLE
        assert await client.status("b1") == IDLE
        await advance(jobs, 2 * SECOND)
        now = T + 10 * MINUTE + SECOND
        fresh = await client.add("b1", hook(6), idempotency_key="event-x")
        assert fresh == dj.AddResult(1, now + FLUSH_AFTER, created=True, duplicate=False)
        again = await client.add("b1", hook(7), idempotency_key="event-x")
        assert again == dj.AddResult(1, now + FLUSH_AFTER, created=False, duplicate=True)
        other = await client.add("b1", hook(8), idempotency_key="event-y")
        assert (other.event_count, other.duplicate) == (2, False)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [
            (1, [1], "manual", 1, T),
            (2, [6, 8], "flush_after", 1, now + FLUSH_AFTER),
        ]


async def test_k06_keys_after_retries_ran_out_with_terminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """K06 A key outlives its batch, not its window (keys accepted in a batch that
    on_exhausted "terminate" dropped are all treated alike: SPEC §1 remembers keys
    per instance for the window, so each repeat is a duplicate)."""
    retry = dj.Retry(max_attempts=1, on_exhausted="terminate")
    async with open_batcher("memory://", retry=retry, always_fail=True) as (probe, jobs, client):
        await client.add("b1", hook(1), idempotency_key="k1")
        await client.add("b1", hook(2), idempotency_key="k2")
        await advance(jobs, FLUSH_AFTER)
        assert await client.status("b1") == NOT_FOUND
        repeat1 = await client.add("b1", hook(1), idempotency_key="k1")
        repeat2 = await client.add("b1", hook(2), idempotency_key="k2")
        assert (repeat1.duplicate, repeat2.duplicate) == (True, True)
        assert len(probe.reducer_calls) == 2


async def test_k07_any_characters_work_in_keys(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K07 Any characters work in keys."""
    keys = [
        "orders/2024/item-1",
        "tenant:42:event",
        "a-b_c.d e",
        "user@example.com#$1",
        'quote"back\\slash\nnewline\ttab',
        "ключ-键-🔑",
        "x" * 1024,
    ]
    async with open_batcher(store_url) as (probe, _, client):
        for n, key in enumerate(keys, start=1):
            result = await client.add("b1", hook(n), idempotency_key=key)
            assert (result.event_count, result.duplicate) == (n, False), key
        for key in keys:
            result = await client.add("b1", hook(99), idempotency_key=key)
            assert (result.event_count, result.duplicate) == (len(keys), True), key
        added = [r for r in await client.history("b1") if r.name == "event_added"]
        assert [r.data["idempotency_key"] for r in added] == keys
        await client.flush("b1")
        for key in keys:  # still known after the flush (read back from the store)
            assert (await client.add("b1", hook(99), idempotency_key=key)).duplicate, key
        assert len(probe.flushes) == 1


async def test_k07_keys_must_be_non_empty_bounded_strings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """K07 Any characters work in keys (but a key is a non-empty str of bounded length:
    anything else is a ValidationError and writes nothing)."""
    async with open_batcher("memory://") as (probe, jobs, _):
        client: dj.DebounceClient[Any, Any] = jobs.debounce("batcher")
        bad_keys: list[Any] = ["", "x" * 1025, 123]
        for bad in bad_keys:
            with pytest.raises(dj.ValidationError):
                await client.add("b1", hook(1), idempotency_key=bad)
        assert await client.status("b1") == NOT_FOUND
        assert probe.reducer_calls == []


async def test_k08_keys_that_prefix_each_other_do_not_collide(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """K08 Keys that prefix each other do not collide."""
    async with open_batcher(store_url) as (_, _, client):
        for n, key in enumerate(["123", "1234", "12345"], start=1):
            assert (await client.add("b1", hook(n), idempotency_key=key)).duplicate is False
        result = await client.add("b1", hook(4), idempotency_key="123456")
        assert (result.event_count, result.duplicate) == (4, False)
        assert (await client.add("b1", hook(5), idempotency_key="12")).duplicate is False
        assert (await client.add("b1", hook(6), idempotency_key="1234")).duplicate is True
        assert (await client.status("b1")).event_count == 5


# ---- 10. Scenarios the original lacks -------------------------------------------------------


async def test_x03_idempotency_keys_survive_a_restart(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X03 Idempotency keys survive a restart."""
    rig = batcher()
    async with rig.run(durable_store_url) as (_, _, client):
        first = await client.add("b1", hook(1), idempotency_key="k1")
        assert first == dj.AddResult(1, T + FLUSH_AFTER, created=True, duplicate=False)
    await trio.sleep(MINUTE.total_seconds())
    async with rig.run(durable_store_url) as (probe, jobs, client):
        repeat = await client.add("b1", hook(2), idempotency_key="k1")
        assert repeat == dj.AddResult(1, T + FLUSH_AFTER, created=False, duplicate=True)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(1, [1], "flush_after", 1, T + FLUSH_AFTER)]
    async with rig.run(durable_store_url) as (probe, jobs, client):
        after_flush = await client.add("b1", hook(3), idempotency_key="k1")
        assert after_flush == DUPLICATE_WHILE_IDLE
        assert await client.status("b1") == IDLE
        await nothing_more_flushes(jobs, probe, 1)
        assert len(probe.reducer_calls) == 1


async def test_x04_events_added_during_a_running_flush(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X04 Events added during a flush belong to the next batch (execute blocked)."""
    async with open_batcher(store_url, 1, 2, gated=True) as (probe, jobs, client):
        await alarm_flush_started(probe)
        closed = batch(1, 2)
        with trio.fail_after(2 * MINUTE.total_seconds()):  # fails if a call waits for the flush
            third = await client.add("b1", hook(3))
            assert probe.clock.now() == T5  # add returned at once
            assert (third.event_count, third.created, third.duplicate) == (3, False, False)
            assert await client.get_state("b1") == closed
            status = await client.status("b1")
            assert (status.status, status.event_count, status.started_at) == ("debouncing", 3, T)
            await trio.sleep(MINUTE.total_seconds())  # the flush is still running
            fourth = await client.add("b1", hook(4))
            assert fourth.event_count == 4
            assert await client.get_state("b1") == closed
            assert probe.clock.now() == T5 + MINUTE
        probe.release()
        await jobs.wait_idle()
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T5)]
        assert probe.flushes[0].state == closed
        assert await client.status("b1") == dj.DebounceStatus(
            "debouncing", 2, T5, T5 + FLUSH_AFTER
        )
        assert await client.get_state("b1") == batch(3, 4, first_event_at=T5)
        assert probe.reducer_calls[2] == (hook(3), None, 1)
        await advance(jobs, FLUSH_AFTER - MINUTE)
        assert summary(probe.flushes)[1:] == [(2, [3, 4], "flush_after", 1, T5 + FLUSH_AFTER)]
        assert await client.status("b1") == IDLE
        await advance(jobs, HOUR)
        flushed = [e.payload["n"] for f in probe.flushes for e in f.state.events]
        assert flushed == [1, 2, 3, 4]
        history = await client.history("b1")
        assert [r.data["event_count"] for r in history if r.name == "flushed"] == [2, 2]


async def test_x04_add_never_waits_for_a_manual_flush(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X04 Events added during a flush belong to the next batch (a manual flush in
    flight: add returns at once, flush reports the batch it tried)."""
    flush_results: list[dj.FlushResult] = []
    async with open_batcher(store_url, 1, gated=True) as (probe, jobs, client):

        async def flush() -> None:
            flush_results.append(await client.flush("b1"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flush)
            await flush_started(probe)
            with trio.fail_after(1):
                second = await client.add("b1", hook(2))
            assert second.event_count == 2
            assert flush_results == []
            probe.release()
        assert flush_results == [dj.FlushResult(True, 1, "manual", False)]
        assert summary(probe.flushes) == [(1, [1], "manual", 1, T)]
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes)[1:] == [(1, [2], "flush_after", 1, T + FLUSH_AFTER)]


async def test_x04_max_events_while_flushing_closes_a_second_batch(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X04 Events added during a flush belong to the next batch (max_events reached
    meanwhile closes a second batch: never more than max_events per batch; status
    counts every unflushed event, get_state shows the batch that flushes next)."""
    async with small(gated=True).run(store_url, 1, 2, 3, instance="s1") as (probe, jobs, client):
        await flush_started(probe)  # batch 1 is flushing
        with trio.fail_after(1):  # fails if a call waits for the flush
            results = await add_all(client, 4, 5, 6, 7, instance="s1")
            assert [(r.event_count, r.created) for r in results] == [
                (4, False),
                (5, False),
                (6, False),
                (7, False),
            ]
            assert results[2].will_flush_at == T  # the add that filled batch 2
            assert await client.status("s1") == dj.DebounceStatus("debouncing", 7, T, T)
            assert await client.get_state("s1") == batch(1, 2, 3)
            closes = [r.data for r in await client.history("s1") if r.name == "batch_closed"]
            assert [(c["batch_no"], c["reason"], c["event_count"]) for c in closes] == [
                (1, "max_events", 3),
                (2, "max_events", 3),
            ]
        assert probe.clock.now() == T
        probe.release()
        await jobs.wait_idle()
        assert probe.clock.now() == T
        assert summary(probe.flushes) == [
            (3, [1, 2, 3], "max_events", 1, T),
            (3, [4, 5, 6], "max_events", 1, T),
        ]
        assert await client.status("s1") == dj.DebounceStatus("debouncing", 1, T, T + 10 * MINUTE)
        assert await client.get_state("s1") == batch(7)
        await advance(jobs, 10 * MINUTE)
        assert summary(probe.flushes)[2:] == [(1, [7], "flush_after", 1, T + 10 * MINUTE)]
        assert max(f.event_count for f in probe.flushes) == 3
        assert await client.status("s1") == IDLE


async def test_x04_events_added_while_a_retry_waits(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X04 Events added during a flush belong to the next batch (the flush waits for a
    retry)."""
    rig = batcher(retry=RETRY_EVERY_MINUTE, failures=1)
    async with rig.run(store_url, 1, 2) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 2, T, T5 + MINUTE)
        await advance(jobs, 30 * SECOND)
        third = await client.add("b1", hook(3))
        assert (third.event_count, third.created, third.duplicate) == (3, False, False)
        assert await client.get_state("b1") == batch(1, 2)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 3, T, T5 + MINUTE)
        await advance(jobs, 30 * SECOND)
        assert summary(probe.flushes) == [
            (2, [1, 2], "flush_after", 1, T5),
            (2, [1, 2], "flush_after", 2, T5 + MINUTE),
        ]
        t3 = T5 + 30 * SECOND  # when event 3 opened the next batch
        assert await client.status("b1") == dj.DebounceStatus(
            "debouncing", 1, t3, t3 + FLUSH_AFTER
        )
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes)[2:] == [(1, [3], "flush_after", 1, t3 + FLUSH_AFTER)]
        assert await client.status("b1") == IDLE
        history = await client.history("b1")
        assert [r.data["event_count"] for r in history if r.name == "flushed"] == [2, 1]


async def test_x05_a_failed_flush_keeps_its_buffer(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X05 A failed flush keeps its buffer."""
    closed = batch(1, 2)
    async with open_batcher(store_url, 1, 2, failures=2) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T5)]
        assert await client.status("b1") == dj.DebounceStatus("failed", 2, T, None)
        assert await client.get_state("b1") == closed
        history = await client.history("b1")
        assert "retry_exhausted" not in names(history)
        assert names(history)[-2:] == ["run_failed", "alarm_cleared"]
        failed = history[-2]
        assert failed.data["will_retry"] is False
        assert failed.data["flush_reason"] == "flush_after"
        assert failed.data["error_type"] == "RuntimeError"
        assert failed.data["message"] == "Intentional flush failure"
        assert (failed.run_count, failed.attempt) == (1, 1)
        assert failed.state_before == batch_json([hook(1), hook(2)], T)
        await nothing_more_flushes(jobs, probe, 1)  # no alarm: nothing reruns on its own
        now = T5 + HOUR
        again = await client.flush("b1")  # fails once more, still no retry policy
        assert again == dj.FlushResult(False, 2, "failed", retry_scheduled=False)
        assert await client.status("b1") == dj.DebounceStatus("failed", 2, T, None)
        ok = await client.flush("b1")
        assert ok == dj.FlushResult(True, 2, "manual", retry_scheduled=False)
        assert summary(probe.flushes)[1:] == [
            (2, [1, 2], "manual", 1, now),
            (2, [1, 2], "manual", 1, now),
        ]
        assert probe.flushes[-1].state == closed
        assert await client.status("b1") == IDLE
        assert await client.get_state("b1") is None
        flushed = [r for r in await client.history("b1") if r.name == "flushed"]
        assert [(r.data["reason"], r.data["event_count"]) for r in flushed] == [("manual", 2)]


async def test_x06_retries_follow_the_policy(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X06 Retries follow the policy (a retry keeps the flush_reason of the failed
    flush)."""
    retry = dj.Retry(max_attempts=3, delay=dj.Backoff.exponential(), jitter=0)
    async with open_batcher(store_url, 1, retry=retry, failures=2) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T5 + SECOND)
        await advance(jobs, 10 * SECOND)
        assert summary(probe.flushes) == [
            (1, [1], "flush_after", 1, T5),
            (1, [1], "flush_after", 2, T5 + SECOND),
            (1, [1], "flush_after", 3, T5 + 3 * SECOND),
        ]
        assert [f.is_retry for f in probe.flushes] == [False, True, True]
        assert await client.status("b1") == IDLE
        history = await client.history("b1")
        runs = [r for r in history if r.is_run]
        assert [(r.name, r.run_count, r.attempt) for r in runs] == [
            ("run_failed", 1, 1),
            ("run_failed", 1, 2),
            ("run_succeeded", 1, 3),
        ]
        for failed, retry_at in zip(runs[:2], [T5 + SECOND, T5 + 3 * SECOND], strict=True):
            assert failed.data["will_retry"] is True
            assert failed.data["retry_at"] == retry_at
            assert failed.data["message"] == "Intentional flush failure"
            assert failed.data["flush_reason"] == "flush_after"
        flushed = [r.data for r in history if r.name == "flushed"]
        assert [(d["reason"], d["event_count"]) for d in flushed] == [("flush_after", 1)]


async def test_x06_a_manual_flush_retries_as_manual(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X06 Retries follow the policy (the retry of a failed manual flush is manual too)."""
    rig = batcher(retry=RETRY_EVERY_MINUTE, failures=1)
    async with rig.run(store_url, 1) as (probe, jobs, client):
        result = await client.flush("b1")
        assert result == dj.FlushResult(False, 1, "failed", retry_scheduled=True)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + MINUTE)
        await advance(jobs, MINUTE)
        assert summary(probe.flushes) == [
            (1, [1], "manual", 1, T),
            (1, [1], "manual", 2, T + MINUTE),
        ]
        assert await client.status("b1") == IDLE
        await nothing_more_flushes(jobs, probe, 2)


async def test_x06_a_flush_during_the_wait_restarts_at_attempt_1(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """X06 Retries follow the policy (a flush by hand during the wait restarts at
    attempt 1, as a manual flush, and the pending retry is gone)."""
    rig = batcher(retry=RETRY_EVERY_MINUTE, failures=1)
    async with rig.run("memory://", 1) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        await advance(jobs, 10 * SECOND)
        result = await client.flush("b1")
        assert result == dj.FlushResult(True, 1, "manual", retry_scheduled=False)
        assert summary(probe.flushes) == [
            (1, [1], "flush_after", 1, T5),
            (1, [1], "manual", 1, T5 + 10 * SECOND),
        ]
        assert [f.is_retry for f in probe.flushes] == [False, False]
        assert await client.status("b1") == IDLE
        await nothing_more_flushes(jobs, probe, 2)
        runs = [r for r in await client.history("b1") if r.is_run]
        assert [(r.name, r.run_count, r.attempt) for r in runs] == [
            ("run_failed", 1, 1),
            ("run_succeeded", 2, 1),
        ]


async def test_x07_on_exhausted_pause_then_flush_resumes(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X07 on_exhausted "terminate" and "pause" (pause: the batch is kept, status
    failed, no alarm; flush resumes it)."""
    closed = batch(1, 2)
    rig = batcher(retry=retry_twice("pause"), always_fail=True)
    async with rig.run(store_url, 1, 2) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        await advance(jobs, SECOND)
        assert summary(probe.flushes) == [
            (2, [1, 2], "flush_after", 1, T5),
            (2, [1, 2], "flush_after", 2, T5 + SECOND),
        ]
        history = await client.history("b1")
        assert names(history)[-3:] == ["run_failed", "retry_exhausted", "alarm_cleared"]
        exhausted = history[-2]
        assert (exhausted.data["action"], exhausted.run_count, exhausted.attempt) == (
            "pause",
            1,
            2,
        )
        assert history[-3].data["will_retry"] is False
        assert await client.status("b1") == dj.DebounceStatus("failed", 2, T, None)
        assert await client.get_state("b1") == closed
        await nothing_more_flushes(jobs, probe, 2)
        probe.always_fail = False
        result = await client.flush("b1")
        assert result == dj.FlushResult(True, 2, "manual", retry_scheduled=False)
        assert summary(probe.flushes)[2:] == [(2, [1, 2], "manual", 1, T5 + SECOND + HOUR)]
        assert probe.flushes[2].state == closed
        assert await client.status("b1") == IDLE


async def test_x07_on_exhausted_terminate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X07 on_exhausted "terminate" and "pause" (terminate: the instance is not_found)."""
    rig = batcher(retry=retry_twice("terminate"), always_fail=True)
    async with rig.run(store_url, 1) as (probe, jobs, client):
        await advance(jobs, FLUSH_AFTER)
        await advance(jobs, SECOND)
        assert [f.attempt for f in probe.flushes] == [1, 2]
        assert await client.status("b1") == NOT_FOUND
        assert await client.get_state("b1") is None
        history = await client.history("b1")
        assert names(history)[-4:] == [
            "run_failed",
            "retry_exhausted",
            "alarm_cleared",
            "terminated",
        ]
        assert history[-3].data["action"] == "terminate"
        assert all(r.at == T5 + SECOND for r in history[-4:])
        await nothing_more_flushes(jobs, probe, 2)
        assert await client.flush("b1") == dj.FlushResult(False, 0, "empty", False)
        assert len(probe.flushes) == 2
        probe.always_fail = False
        fresh = await client.add("b1", hook(3))
        now = T5 + SECOND + HOUR
        assert fresh == dj.AddResult(1, now + FLUSH_AFTER, created=True, duplicate=False)
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes)[2:] == [(1, [3], "flush_after", 1, now + FLUSH_AFTER)]


async def test_x13_bad_events_write_nothing(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X13 Bad input writes nothing."""
    records: list[dj.RecordedEvent] = []
    async with open_batcher(store_url, records=records) as (probe, jobs, _):
        client: dj.DebounceClient[Any, Any] = jobs.debounce("batcher")
        with pytest.raises(dj.ValidationError):
            await client.add("b1", {"invalid": "event"})
        assert await client.status("b1") == NOT_FOUND
        assert await client.get_state("b1") is None
        assert await client.history("b1") == []
        assert records == []
        assert probe.reducer_calls == []
        await client.add("b1", {"type": "webhook", "payload": {"n": 1}})
        history = await client.history("b1")
        with pytest.raises(dj.ValidationError):
            await client.add("b1", Batch(events=[]), idempotency_key="k")
        assert await client.history("b1") == history
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 1, T, T + FLUSH_AFTER)
        assert len(probe.reducer_calls) == 1
        # The refused add's key was not remembered.
        assert (await client.add("b1", hook(2), idempotency_key="k")).duplicate is False
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T + FLUSH_AFTER)]


async def test_x04_restart_while_a_flush_is_in_flight(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X04 Events added during a flush belong to the next batch (even when the app
    stops while that flush runs: the closed batch flushes again after the restart,
    the event added meanwhile flushes once, in its own batch)."""
    # The gate is never released: the flush is cut off by the shutdown.
    rig = batcher(gated=True)
    async with rig.run(durable_store_url, 1, 2, shutdown_grace=SECOND) as (probe, _, client):
        await alarm_flush_started(probe)
        with trio.fail_after(1):
            await client.add("b1", hook(3))
    assert summary(probe.flushes) == [(2, [1, 2], "flush_after", 1, T5)]
    probe.gate = None
    restart = T5 + SECOND
    assert probe.clock.now() == restart
    async with rig.run(durable_store_url) as (probe, jobs, client):
        await jobs.wait_idle()
        assert summary(probe.flushes)[1:] == [(2, [1, 2], "flush_after", 1, restart)]
        assert await client.status("b1") == dj.DebounceStatus(
            "debouncing", 1, T5, T5 + FLUSH_AFTER
        )
        await advance(jobs, FLUSH_AFTER)
        assert summary(probe.flushes)[2:] == [(1, [3], "flush_after", 1, T5 + FLUSH_AFTER)]
        assert await client.status("b1") == IDLE
        flushed = [
            r.data["event_count"] for r in await client.history("b1") if r.name == "flushed"
        ]
        assert flushed == [2, 1]


async def test_x06_a_pending_retry_survives_a_restart(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X06 Retries follow the policy (a retry is an alarm: it survives a restart and
    keeps its attempt and flush_reason)."""
    rig = batcher(retry=RETRY_EVERY_MINUTE, failures=1)
    async with rig.run(durable_store_url, 1) as (_, jobs, _):
        await advance(jobs, FLUSH_AFTER)
    await trio.sleep((2 * MINUTE).total_seconds())  # down while the retry falls due
    async with rig.run(durable_store_url) as (probe, jobs, client):
        await jobs.wait_idle()
        assert summary(probe.flushes) == [
            (1, [1], "flush_after", 1, T5),
            (1, [1], "flush_after", 2, T5 + 2 * MINUTE),
        ]
        assert await client.status("b1") == IDLE
        await nothing_more_flushes(jobs, probe, 2)


async def test_without_a_reducer_an_event_that_does_not_fit_the_state_is_not_added(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """With no reducer the state is the latest event: an event the state type cannot
    read is refused as a reducer's state that does not fit (HandlerError, nothing
    written), not committed as a state that no flush, read or alarm can load."""
    registry = dj.Registry()
    flushed: list[int | None] = []

    # The registry cannot tell: "12" reads as the int 12, "twelve" does not.
    @registry.debounce("counts", event=str, state=int, flush_after=FLUSH_AFTER)
    async def counts(ctx: dj.DebounceContext[int]) -> None:
        flushed.append(ctx.state)

    records: list[dj.RecordedEvent] = []
    async with running(registry, store_url, records=records) as jobs:
        client = jobs.debounce(counts)
        with pytest.raises(dj.HandlerError, match="has no on_event reducer") as info:
            await client.add("a", "twelve", idempotency_key="k1")
        assert isinstance(info.value.__cause__, dj.ValidationError)
        assert "The event was not added." in str(info.value)
        assert await client.status("a") == dj.DebounceStatus("not_found", 0, None, None)
        assert await client.history("a") == []
        assert records == []
        accepted = await client.add("a", "12", idempotency_key="k1")
        assert (accepted.event_count, accepted.duplicate) == (1, False)
        assert await client.get_state("a") == 12
        with pytest.raises(dj.HandlerError):
            await client.add("a", "thirteen")
        assert await client.status("a") == dj.DebounceStatus("debouncing", 1, T, T5)
        await advance(jobs, FLUSH_AFTER)
        assert flushed == [12]
