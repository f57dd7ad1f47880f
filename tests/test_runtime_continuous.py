"""Continuous jobs through the runtime: SCENARIOS §1 (C01-C20), §4 (R01-R06) and the
continuous parts of X06-X11, against SPEC §1, §2, §5, §6 and §7.

Every async test runs on trio's ``MockClock`` (autojump) with the jobs' ``VirtualClock``
following it: only virtual time passes. Handlers record what they saw; assertions read
the public API only (client results, ``status``, ``get_state``, ``history`` and the
records an observer collected).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, cast
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names, running

NEW_YORK = ZoneInfo("America/New_York")
VALIDATION_ERROR_TYPE = f"{dj.ValidationError.__module__}.ValidationError"


class Counter(BaseModel):
    count: int
    last_run: float | None = None


class Limit(BaseModel):
    max_runs: int
    current_run: int


class Run(NamedTuple):
    """What one call of ``execute`` saw."""

    instance_id: str
    run_count: int
    state: Any


class Try(NamedTuple):
    """One try of a (possibly retried) run."""

    at: datetime
    run_count: int
    attempt: int
    is_retry: bool


def run_records(records: list[dj.RecordedEvent], name: str) -> list[dj.RecordedEvent]:
    return [r for r in records if r.name == name]


# ---- SCENARIOS §1 fixtures ---------------------------------------------------------------


class Section1:
    """The jobs of SCENARIOS §1 (counter, failing, no_immediate, terminating) on one clock."""

    def __init__(self) -> None:
        self.clock = dj.VirtualClock(T)
        self.registry = dj.Registry()
        self.runs: dict[str, list[Run]] = {
            "counter": [],
            "failing": [],
            "no_immediate": [],
            "terminating": [],
        }
        reg = self.registry

        @reg.continuous("counter", state=Counter, schedule=dj.every(30 * MINUTE))
        async def counter(ctx: dj.ContinuousContext[Counter]) -> None:
            self.runs["counter"].append(Run(ctx.instance_id, ctx.run_count, ctx.state))
            now = self.clock.now().timestamp()
            ctx.update_state(lambda s: Counter(count=s.count + 1, last_run=now))

        @reg.continuous("failing", state=Counter, schedule=dj.every(HOUR))
        async def failing(ctx: dj.ContinuousContext[Counter]) -> None:
            self.runs["failing"].append(Run(ctx.instance_id, ctx.run_count, ctx.state))
            ctx.set_state(Counter(count=-1))  # never committed: the run fails
            raise RuntimeError("Intentional test failure")

        @reg.continuous(
            "no_immediate", state=Counter, schedule=dj.every(HOUR), start_immediately=False
        )
        async def no_immediate(ctx: dj.ContinuousContext[Counter]) -> None:
            self.runs["no_immediate"].append(Run(ctx.instance_id, ctx.run_count, ctx.state))

        @reg.continuous("terminating", state=Limit, schedule=dj.every(10 * MINUTE))
        async def terminating(ctx: dj.ContinuousContext[Limit]) -> None:
            self.runs["terminating"].append(Run(ctx.instance_id, ctx.run_count, ctx.state))
            if ctx.run_count >= ctx.state.max_runs:
                ctx.terminate("max runs reached")
            else:
                ctx.update_state(
                    lambda s: Limit(max_runs=s.max_runs, current_run=s.current_run + 1)
                )

        self.counter = counter
        self.failing = failing
        self.no_immediate = no_immediate
        self.terminating = terminating

    def open(
        self, url: str, records: list[dj.RecordedEvent] | None = None
    ) -> AbstractAsyncContextManager[dj.Jobs]:
        return running(self.registry, url, clock=self.clock, records=records)


NOT_FOUND = dj.ContinuousStatus("not_found", 0, None)


# ---- C01-C20 -----------------------------------------------------------------------------


async def test_c01_start_creates_and_runs_at_once(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C01 Start creates the instance and runs it at once."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        result = await client.start("c1", Counter(count=0, last_run=None))
        assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, T))
        await jobs.wait_idle()
        assert s.runs["counter"] == [Run("c1", 1, Counter(count=0, last_run=None))]
        assert s.clock.now() == T


async def test_c02_starting_again_returns_the_existing_instance(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C02 Starting again returns the existing instance."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        again = await client.start("c1", Counter(count=100))
        assert again == dj.StartResult(False, dj.ContinuousStatus("running", 1, T + 30 * MINUTE))
        await jobs.wait_idle()
        assert [r.run_count for r in s.runs["counter"]] == [1]
        assert await client.get_state("c1") == Counter(count=1, last_run=T.timestamp())
        history = await client.history("c1")
        assert names(history).count("started") == 1


async def test_c03_start_immediately_false_waits_for_the_schedule(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C03 start_immediately=False waits for the schedule."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.no_immediate)
        result = await client.start("n1", Counter(count=0))
        assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, T + HOUR))
        await jobs.wait_idle()
        assert s.runs["no_immediate"] == []
        assert await client.status("n1") == dj.ContinuousStatus("running", 0, T + HOUR)
        await advance(jobs, HOUR - SECOND)
        assert s.runs["no_immediate"] == []
        await advance(jobs, SECOND)
        assert s.runs["no_immediate"] == [Run("n1", 1, Counter(count=0))]


async def test_c04_terminate_removes_a_running_instance(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C04 Terminate removes a running instance."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        assert await client.terminate("c1", reason="user requested") == dj.TerminateResult(True)
        assert await client.status("c1") == NOT_FOUND
        assert await client.get_state("c1") is None
        history = await client.history("c1")
        assert names(history)[-2:] == ["alarm_cleared", "terminated"]
        assert history[-1].data["reason"] == "user requested"
        assert history[-1].at == T


async def test_c05_terminate_of_an_unknown_id(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C05 Terminate of an unknown id is not an error."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        assert await client.terminate("c1") == dj.TerminateResult(False)
        assert await client.status("c1") == NOT_FOUND
        assert await client.history("c1") == []


async def test_c06_a_second_terminate_finds_nothing(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C06 A second terminate finds nothing."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        assert await client.terminate("c1") == dj.TerminateResult(True)
        assert await client.terminate("c1") == dj.TerminateResult(False)
        history = await client.history("c1")
        assert names(history).count("terminated") == 1
        assert history[-1].name == "terminated"


async def test_c07_trigger_runs_the_job_now(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C07 Trigger runs the job now."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        await advance(jobs, 10 * MINUTE)
        result = await client.trigger("c1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)
        # trigger returns after its run committed
        assert [(r.run_count, r.state.count) for r in s.runs["counter"]] == [(1, 0), (2, 1)]
        # the next alarm is scheduled from the end of the triggered run
        assert await client.status("c1") == dj.ContinuousStatus("running", 2, T + 40 * MINUTE)
        assert await client.get_state("c1") == Counter(
            count=2, last_run=(T + 10 * MINUTE).timestamp()
        )


async def test_c08_trigger_of_an_unknown_id(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C08 Trigger of an unknown id."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        assert await client.trigger("c1") == dj.TriggerResult(False, False, False)
        await jobs.wait_idle()
        assert s.runs["counter"] == []
        assert await client.status("c1") == NOT_FOUND


async def test_c09_trigger_after_terminate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C09 Trigger after terminate."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        await client.terminate("c1")
        assert await client.trigger("c1") == dj.TriggerResult(False, False, False)
        assert len(s.runs["counter"]) == 1
        assert await client.status("c1") == NOT_FOUND


async def test_c10_status_of_a_running_instance(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C10 Status of a running instance."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        assert await client.status("c1") == dj.ContinuousStatus("running", 1, T + 30 * MINUTE)


async def test_c11_status_of_an_unknown_id(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C11 Status of an unknown id."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        assert await client.status("c1") == NOT_FOUND
        assert await client.get_state("c1") is None


async def test_c12_get_state_returns_the_committed_state(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C12 get_state returns the committed state."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=5, last_run=None))
        await jobs.wait_idle()
        state = await client.get_state("c1")
        assert state == Counter(count=6, last_run=T.timestamp())


async def test_c13_the_alarm_runs_the_job_and_reschedules(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C13 The alarm runs the job and reschedules."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        await advance(jobs, 30 * MINUTE - SECOND)
        assert len(s.runs["counter"]) == 1
        await advance(jobs, SECOND)
        assert s.runs["counter"] == [
            Run("c1", 1, Counter(count=0)),
            Run("c1", 2, Counter(count=1, last_run=T.timestamp())),
        ]
        assert await client.status("c1") == dj.ContinuousStatus("running", 2, T + 60 * MINUTE)
        history = await client.history("c1")
        assert history[-1].name == "alarm_set"
        assert history[-1].data["at"] == T + 60 * MINUTE


async def test_c14_no_run_after_terminate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C14 No run after terminate."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0))
        await jobs.wait_idle()
        await client.terminate("c1")
        seen = len(records)
        await advance(jobs, 30 * MINUTE)
        await advance(jobs, 2 * HOUR)
        assert len(s.runs["counter"]) == 1
        assert len(records) == seen
        assert await client.status("c1") == NOT_FOUND


async def test_c15_a_failing_run_without_retry_keeps_the_schedule(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C15 A failing run without retry keeps the schedule."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.failing)
        result = await client.start("f1", Counter(count=42, last_run=999))
        assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, T))
        await jobs.wait_idle()
        assert s.runs["failing"] == [Run("f1", 1, Counter(count=42, last_run=999))]
        failed = run_records(await client.history("f1"), "run_failed")
        assert len(failed) == 1
        assert failed[0].data["will_retry"] is False
        assert await client.get_state("f1") == Counter(count=42, last_run=999)
        assert await client.status("f1") == dj.ContinuousStatus("running", 1, T + HOUR)
        # the schedule really holds: the next regular run comes, and fails again
        await advance(jobs, HOUR)
        assert [r.run_count for r in s.runs["failing"]] == [1, 2]
        assert await client.status("f1") == dj.ContinuousStatus("running", 2, T + 2 * HOUR)
        assert await client.get_state("f1") == Counter(count=42, last_run=999)


async def test_c16_ctx_terminate_on_the_first_run(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C16 ctx.terminate on the first run."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.terminating)
        result = await client.start("t1", Limit(max_runs=1, current_run=0))
        assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, T))
        await jobs.wait_idle()
        assert s.runs["terminating"] == [Run("t1", 1, Limit(max_runs=1, current_run=0))]
        history = await client.history("t1")
        assert names(history)[-2:] == ["alarm_cleared", "terminated"]
        assert history[-1].data["reason"] == "max runs reached"
        assert "run_succeeded" in names(history)
        assert await client.status("t1") == NOT_FOUND
        assert await client.get_state("t1") is None


async def test_c17_ctx_terminate_in_an_alarm_run_stops_the_schedule(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C17 ctx.terminate in an alarm run stops the schedule."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.terminating)
        await client.start("t1", Limit(max_runs=2, current_run=0))
        await jobs.wait_idle()
        assert await client.status("t1") == dj.ContinuousStatus("running", 1, T + 10 * MINUTE)
        await advance(jobs, 10 * MINUTE)
        assert s.runs["terminating"] == [
            Run("t1", 1, Limit(max_runs=2, current_run=0)),
            Run("t1", 2, Limit(max_runs=2, current_run=1)),
        ]
        assert await client.status("t1") == NOT_FOUND
        history = await client.history("t1")
        assert names(history)[-2:] == ["alarm_cleared", "terminated"]
        assert history[-1].data["reason"] == "max runs reached"
        await advance(jobs, HOUR)
        assert len(s.runs["terminating"]) == 2
        assert len(await client.history("t1")) == len(history)


async def test_c18_trigger_whose_run_terminates(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C18 Trigger whose run terminates."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.terminating)
        await client.start("t1", Limit(max_runs=2, current_run=0))
        await jobs.wait_idle()
        result = await client.trigger("t1")
        assert result == dj.TriggerResult(triggered=True, terminated=True, retry_scheduled=False)
        assert [r.run_count for r in s.runs["terminating"]] == [1, 2]
        assert await client.status("t1") == NOT_FOUND


async def test_c19_trigger_after_self_termination(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C19 Trigger after self-termination."""
    s = Section1()
    async with s.open(store_url) as jobs:
        client = jobs.continuous(s.terminating)
        await client.start("t1", Limit(max_runs=1, current_run=0))
        await jobs.wait_idle()
        assert await client.trigger("t1") == dj.TriggerResult(False, False, False)
        assert len(s.runs["terminating"]) == 1


async def test_c20_no_alarm_fires_after_self_termination(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C20 No alarm fires after self-termination."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.terminating)
        await client.start("t1", Limit(max_runs=1, current_run=0))
        await jobs.wait_idle()
        seen = len(records)
        assert names(records)[-1] == "terminated"
        await advance(jobs, 10 * MINUTE)
        await advance(jobs, HOUR)
        assert len(s.runs["terminating"]) == 1
        assert len(records) == seen
        assert await client.status("t1") == NOT_FOUND


# ---- R01-R06 -----------------------------------------------------------------------------


async def test_r01_a_successful_run_is_recorded(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R01 A successful run is recorded."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=5, last_run=None))
        await jobs.wait_idle()
        history = await client.history("c1")
    for log in (records, history):
        succeeded = run_records(log, "run_succeeded")
        assert len(succeeded) == 1
        assert (succeeded[0].run_count, succeeded[0].attempt) == (1, 1)
        assert succeeded[0].state_before == {"count": 5, "last_run": None}
        assert run_records(log, "run_failed") == []


async def test_r02_pre_run_state_is_taken_before_the_handlers_change(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R02 Pre-run state is taken before the handler's change."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=10, last_run=None))
        await jobs.wait_idle()
        history = await client.history("c1")
        assert await client.get_state("c1") == Counter(count=11, last_run=T.timestamp())
    assert s.runs["counter"][0].state == Counter(count=10)
    for log in (records, history):
        (succeeded,) = run_records(log, "run_succeeded")
        assert succeeded.state_before["count"] == 10


async def test_r03_falsy_states_are_recorded_as_they_are(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R03 Falsy states are recorded as they are."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0, last_run=None))
        await jobs.wait_idle()
        history = await client.history("c1")
    for log in (records, history):
        (succeeded,) = run_records(log, "run_succeeded")
        assert succeeded.state_before == {"count": 0, "last_run": None}
        assert Counter.model_validate(succeeded.state_before) == Counter(count=0, last_run=None)


async def test_r04_a_failed_run_is_recorded(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R04 A failed run is recorded."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.failing)
        await client.start("f1", Counter(count=42, last_run=999))
        await jobs.wait_idle()
        history = await client.history("f1")
    for log in (records, history):
        (failed,) = run_records(log, "run_failed")
        assert failed.data["will_retry"] is False
        assert "Intentional test failure" in failed.data["message"]
        assert failed.data["error_type"] == "RuntimeError"
        assert (failed.run_count, failed.attempt) == (1, 1)
        assert failed.state_before == {"count": 42, "last_run": 999}
        assert run_records(log, "run_succeeded") == []
        assert "state_changed" not in names(log)


async def test_r05_each_run_records_its_own_pre_run_state(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R05 Each run records its own pre-run state."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=0, last_run=None))
        await jobs.wait_idle()
        await advance(jobs, 30 * MINUTE)
        history = await client.history("c1")
    for log in (records, history):
        succeeded = run_records(log, "run_succeeded")
        assert [r.run_count for r in succeeded] == [1, 2]
        assert [r.state_before for r in succeeded] == [
            {"count": 0, "last_run": None},
            {"count": 1, "last_run": T.timestamp()},
        ]


async def test_r06_run_records_carry_identity_and_timing(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R06 Run records carry identity and timing."""
    s = Section1()
    records: list[dj.RecordedEvent] = []
    async with s.open(store_url, records) as jobs:
        client = jobs.continuous(s.counter)
        await client.start("c1", Counter(count=100, last_run=None))
        await jobs.wait_idle()
        history = await client.history("c1")
    (succeeded,) = run_records(records, "run_succeeded")
    assert (succeeded.kind, succeeded.job, succeeded.instance_id) == (
        "continuous",
        "counter",
        "c1",
    )
    assert (succeeded.run_count, succeeded.attempt) == (1, 1)
    assert succeeded.is_run
    assert succeeded.at == T
    assert succeeded.data["handler"] == "execute"
    duration = succeeded.data["duration"]
    assert isinstance(duration, float)
    assert duration == 0.0
    # (instance_uuid, version) is unique, versions count 1, 2, 3... without gaps
    keys = [(r.instance_uuid, r.version) for r in records]
    assert len(set(keys)) == len(keys)
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    assert {r.instance_uuid for r in records} == {succeeded.instance_uuid}
    # the history API shows the same records
    assert [(r.name, r.version, r.at, r.data) for r in history] == [
        (r.name, r.version, r.at, r.data) for r in records
    ]
    assert all(r.at.utcoffset() == timedelta(0) for r in records)


# ---- SPEC §2 schedules, §1 state types ---------------------------------------------------


async def test_every_counts_from_the_end_of_the_previous_run(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §2 every(duration): next run = end of previous run + duration; start does not
    wait for a slow first run."""
    clock = dj.VirtualClock(T)
    registry = dj.Registry()
    starts: list[datetime] = []

    @registry.continuous("slow", state=int, schedule=dj.every(10 * MINUTE))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        starts.append(clock.now())
        await trio.sleep(90)
        ctx.update_state(lambda n: n + 1)

    records: list[dj.RecordedEvent] = []
    async with running(registry, store_url, clock=clock, records=records) as jobs:
        client = jobs.continuous(slow)
        result = await client.start("s1", 0)
        assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, T))
        assert clock.now() == T  # start returned without waiting for the 90 s run
        await jobs.wait_idle()
        assert clock.now() == T + 90 * SECOND
        assert await client.status("s1") == dj.ContinuousStatus(
            "running", 1, T + 90 * SECOND + 10 * MINUTE
        )
        await advance(jobs, 30 * MINUTE)
        assert starts == [T, T + 11.5 * MINUTE, T + 23 * MINUTE]
        assert await client.status("s1") == dj.ContinuousStatus("running", 3, T + 34.5 * MINUTE)
        assert await client.get_state("s1") == 3
    assert [r.data["duration"] for r in run_records(records, "run_succeeded")] == [90.0] * 3
    assert [r.at for r in run_records(records, "run_succeeded")] == [
        T + 1.5 * MINUTE,
        T + 13 * MINUTE,
        T + 24.5 * MINUTE,
    ]


async def test_plain_int_state(store_url: str, autojump_clock: trio.testing.MockClock) -> None:
    """SPEC §1 State types may be plain int (0 is a state, not "no state")."""
    registry = dj.Registry()
    seen: list[int] = []

    @registry.continuous("ticks", state=int, schedule=dj.every(MINUTE), start_immediately=False)
    async def ticks(ctx: dj.ContinuousContext[int]) -> None:
        seen.append(ctx.state)
        ctx.update_state(lambda n: n + 1)

    records: list[dj.RecordedEvent] = []
    async with running(registry, store_url, records=records) as jobs:
        client = jobs.continuous(ticks)
        await client.start("i1", 0)
        state = await client.get_state("i1")
        assert state == 0
        assert type(state) is int
        await advance(jobs, 3 * MINUTE)
        assert seen == [0, 1, 2]
        state = await client.get_state("i1")
        assert state == 3
        assert type(state) is int
        assert await client.status("i1") == dj.ContinuousStatus("running", 3, T + 4 * MINUTE)
    assert [r.state_before for r in run_records(records, "run_succeeded")] == [0, 1, 2]
    assert [r.data["state"] for r in records if r.name == "state_changed"] == [1, 2, 3]


@pytest.mark.parametrize("how", ["set_state", "update_state"])
async def test_a_state_of_the_wrong_type_fails_the_run(
    store_url: str, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SPEC §1 A handler that sets a state of the wrong type: run_failed, old state kept."""
    registry = dj.Registry()
    bad = cast(Counter, {"count": "not a number"})

    @registry.continuous("wrong", state=Counter, schedule=dj.every(30 * MINUTE))
    async def wrong(ctx: dj.ContinuousContext[Counter]) -> None:
        if how == "set_state":
            ctx.set_state(bad)
        else:
            ctx.update_state(lambda _: bad)

    records: list[dj.RecordedEvent] = []
    async with running(registry, store_url, records=records) as jobs:
        client = jobs.continuous(wrong)
        await client.start("w1", Counter(count=7))
        await jobs.wait_idle()
        assert await client.get_state("w1") == Counter(count=7)
        assert await client.status("w1") == dj.ContinuousStatus("running", 1, T + 30 * MINUTE)
        history = await client.history("w1")
    (failed,) = run_records(history, "run_failed")
    assert failed.data["error_type"] == VALIDATION_ERROR_TYPE
    assert "wrong" in failed.data["message"]
    assert failed.data["will_retry"] is False
    assert failed.state_before == {"count": 7, "last_run": None}
    assert "state_changed" not in names(history)
    assert run_records(history, "run_succeeded") == []


# ---- X06-X08 retries ---------------------------------------------------------------------


class Flaky:
    """A continuous job ``flaky`` (state int, every 1 h) whose next ``failures`` tries fail.

    A try adds 1 to the state before it fails or returns, so a failed try's change shows
    if it was (wrongly) kept.
    """

    def __init__(self, retry: dj.Retry | None, failures: int = 1_000_000) -> None:
        self.clock = dj.VirtualClock(T)
        self.registry = dj.Registry()
        self.tries: list[Try] = []
        self.failures = failures

        @self.registry.continuous("flaky", state=int, schedule=dj.every(HOUR), retry=retry)
        async def flaky(ctx: dj.ContinuousContext[int]) -> None:
            self.tries.append(Try(self.clock.now(), ctx.run_count, ctx.attempt, ctx.is_retry))
            ctx.update_state(lambda n: n + 1)
            if self.failures > 0:
                self.failures -= 1
                raise RuntimeError(f"boom {len(self.tries)}")

        self.job = flaky

    def open(
        self, url: str, records: list[dj.RecordedEvent] | None = None
    ) -> AbstractAsyncContextManager[dj.Jobs]:
        return running(self.registry, url, clock=self.clock, records=records)

    def times(self) -> list[timedelta]:
        return [t.at - T for t in self.tries]


async def test_x06_retries_follow_the_policy(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X06 Retries follow the policy."""
    f = Flaky(dj.Retry(max_attempts=3, delay=dj.Backoff.exponential(), jitter=0), failures=2)
    records: list[dj.RecordedEvent] = []
    async with f.open(store_url, records) as jobs:
        client = jobs.continuous(f.job)
        assert (await client.start("x1", 10)).created
        await jobs.wait_idle()
        # the first try failed at T; its retry is pending at T + 1 s: still `running`
        assert await client.status("x1") == dj.ContinuousStatus("running", 1, T + SECOND)
        assert await client.get_state("x1") == 10
        await advance(jobs, 10 * SECOND)
        assert f.tries == [
            Try(T, 1, 1, False),
            Try(T + SECOND, 1, 2, True),
            Try(T + 3 * SECOND, 1, 3, True),
        ]
        assert await client.status("x1") == dj.ContinuousStatus(
            "running", 1, T + 3 * SECOND + HOUR
        )
        assert await client.get_state("x1") == 11
        history = await client.history("x1")
    for log in (records, history):
        failed = run_records(log, "run_failed")
        assert [(r.run_count, r.attempt) for r in failed] == [(1, 1), (1, 2)]
        assert [r.data["message"] for r in failed] == ["boom 1", "boom 2"]
        assert [r.data["error_type"] for r in failed] == ["RuntimeError"] * 2
        assert [r.data["will_retry"] for r in failed] == [True, True]
        assert [r.data["retry_at"] for r in failed] == [T + SECOND, T + 3 * SECOND]
        assert [r.state_before for r in failed] == [10, 10]
        succeeded = run_records(log, "run_succeeded")
        assert [(r.run_count, r.attempt, r.at) for r in succeeded] == [(1, 3, T + 3 * SECOND)]
        assert "retry_exhausted" not in names(log)


async def test_x06_a_trigger_during_the_wait_restarts_at_attempt_1(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X06 Retries follow the policy: a trigger during the wait restarts at attempt 1."""
    f = Flaky(dj.Retry(max_attempts=3, delay=dj.Backoff.exponential(), jitter=0), failures=3)
    async with f.open(store_url) as jobs:
        client = jobs.continuous(f.job)
        await client.start("x1", 0)
        await jobs.wait_idle()
        await advance(jobs, 2 * SECOND)  # tries at T and T + 1 s failed; try 3 waits for T + 3 s
        assert await client.status("x1") == dj.ContinuousStatus("running", 1, T + 3 * SECOND)
        result = await client.trigger("x1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=True)
        # a fresh run: attempt 1 again, whose retry waits the first delay (1 s), not the third
        assert f.tries[-1] == Try(T + 2 * SECOND, 2, 1, False)
        assert await client.status("x1") == dj.ContinuousStatus("running", 2, T + 3 * SECOND)
        await advance(jobs, 10 * SECOND)
        assert f.tries == [
            Try(T, 1, 1, False),
            Try(T + SECOND, 1, 2, True),
            Try(T + 2 * SECOND, 2, 1, False),
            Try(T + 3 * SECOND, 2, 2, True),
        ]
        assert await client.status("x1") == dj.ContinuousStatus(
            "running", 2, T + 3 * SECOND + HOUR
        )
        assert await client.get_state("x1") == 1
        history = await client.history("x1")
    failed = run_records(history, "run_failed")
    assert [(r.run_count, r.attempt, r.data["will_retry"]) for r in failed] == [
        (1, 1, True),
        (1, 2, True),
        (2, 1, True),
    ]
    assert "retry_exhausted" not in names(history)


async def test_x06_a_successful_trigger_cancels_the_pending_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """X06 Retries follow the policy: a trigger that succeeds ends the retry sequence."""
    f = Flaky(dj.Retry(max_attempts=3, delay=dj.Backoff.exponential(), jitter=0), failures=1)
    async with f.open("memory://") as jobs:
        client = jobs.continuous(f.job)
        await client.start("x1", 0)
        await jobs.wait_idle()
        assert await client.status("x1") == dj.ContinuousStatus("running", 1, T + SECOND)
        result = await client.trigger("x1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)
        assert await client.status("x1") == dj.ContinuousStatus("running", 2, T + HOUR)
        await advance(jobs, 30 * MINUTE)
        assert f.tries == [Try(T, 1, 1, False), Try(T, 2, 1, False)]


@pytest.mark.parametrize(
    ("delay", "max_attempts", "offsets"),
    [
        pytest.param(dj.Backoff.constant(5 * SECOND), 4, [0, 5, 10, 15], id="constant"),
        pytest.param(timedelta(seconds=7), 3, [0, 7, 14], id="timedelta"),
        pytest.param(
            dj.Backoff.linear(2 * SECOND, 3 * SECOND, max=6 * SECOND),
            5,
            [0, 2, 7, 13, 19],
            id="linear",
        ),
        pytest.param(
            dj.Backoff.exponential(2 * SECOND, factor=3, max=10 * SECOND),
            4,
            [0, 2, 8, 18],
            id="exponential",
        ),
    ],
)
async def test_backoff_delays_seen_through_the_runtime(
    delay: dj.Backoff | timedelta,
    max_attempts: int,
    offsets: list[int],
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SPEC §5 Backoff.constant/linear/exponential (and a plain timedelta) space the tries."""
    f = Flaky(dj.Retry(max_attempts, delay=delay, jitter=0, on_exhausted="pause"))
    records: list[dj.RecordedEvent] = []
    async with f.open("memory://", records) as jobs:
        client = jobs.continuous(f.job)
        await client.start("b1", 0)
        await advance(jobs, 5 * MINUTE)
        assert f.times() == [s * SECOND for s in offsets]
        assert [t.attempt for t in f.tries] == list(range(1, max_attempts + 1))
        assert {t.run_count for t in f.tries} == {1}
        assert await client.status("b1") == dj.ContinuousStatus("failed", 1, None)
    failed = run_records(records, "run_failed")
    assert [r.data["retry_at"] for r in failed] == [T + s * SECOND for s in offsets[1:]] + [None]
    assert [r.data["will_retry"] for r in failed] == [True] * (max_attempts - 1) + [False]
    (exhausted,) = run_records(records, "retry_exhausted")
    assert (exhausted.run_count, exhausted.attempt) == (1, max_attempts)
    assert exhausted.data["action"] == "pause"


async def test_retry_max_duration_stops_retrying(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SPEC §5 max_duration stops retrying once that much time passed since the first
    failed try."""
    retry = dj.Retry(
        10,
        delay=dj.Backoff.constant(10 * SECOND),
        jitter=0,
        max_duration=25 * SECOND,
        on_exhausted="pause",
    )
    f = Flaky(retry)
    records: list[dj.RecordedEvent] = []
    async with f.open("memory://", records) as jobs:
        client = jobs.continuous(f.job)
        await client.start("m1", 0)
        await advance(jobs, 5 * MINUTE)
        # T + 30 s would be past T + 25 s: the third try is the last
        assert f.times() == [0 * SECOND, 10 * SECOND, 20 * SECOND]
        assert await client.status("m1") == dj.ContinuousStatus("failed", 1, None)
    (exhausted,) = run_records(records, "retry_exhausted")
    assert (exhausted.attempt, exhausted.data["action"]) == (3, "pause")
    assert [r.data["will_retry"] for r in run_records(records, "run_failed")] == [
        True,
        True,
        False,
    ]


async def test_x07_on_exhausted_terminate(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X07 on_exhausted "terminate" and "pause": "terminate" purges the instance."""
    f = Flaky(dj.Retry(2, delay=dj.Backoff.exponential(), jitter=0, on_exhausted="terminate"))
    async with f.open(store_url) as jobs:
        client = jobs.continuous(f.job)
        await client.start("e1", 0)
        await advance(jobs, 10 * SECOND)
        assert f.times() == [0 * SECOND, 1 * SECOND]
        assert await client.status("e1") == NOT_FOUND
        assert await client.get_state("e1") is None
        history = await client.history("e1")
        await advance(jobs, 2 * HOUR)
        assert len(f.tries) == 2
    assert [r.name for r in history if r.is_run] == ["run_failed", "run_failed", "retry_exhausted"]
    exhausted = run_records(history, "retry_exhausted")[0]
    assert (exhausted.run_count, exhausted.attempt, exhausted.data["action"]) == (
        1,
        2,
        "terminate",
    )
    assert exhausted.at == T + SECOND
    assert names(history)[-2:] == ["alarm_cleared", "terminated"]
    assert [r.data["will_retry"] for r in run_records(history, "run_failed")] == [True, False]


async def test_x07_on_exhausted_pause_and_trigger_resumes(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X07 on_exhausted "terminate" and "pause": "pause" keeps the state, status failed,
    no alarm; trigger resumes it."""
    f = Flaky(dj.Retry(2, delay=dj.Backoff.exponential(), jitter=0, on_exhausted="pause"), 2)
    async with f.open(store_url) as jobs:
        client = jobs.continuous(f.job)
        await client.start("p1", 5)
        await advance(jobs, 10 * SECOND)
        assert f.times() == [0 * SECOND, 1 * SECOND]
        assert await client.status("p1") == dj.ContinuousStatus("failed", 1, None)
        assert await client.get_state("p1") == 5
        history = await client.history("p1")
        exhausted = run_records(history, "retry_exhausted")
        assert [(r.attempt, r.data["action"]) for r in exhausted] == [(2, "pause")]
        assert history[-1].name == "alarm_cleared"
        await advance(jobs, timedelta(days=1))  # paused: nothing runs
        assert len(f.tries) == 2
        now = T + 10 * SECOND + timedelta(days=1)
        result = await client.trigger("p1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)
        assert f.tries[-1] == Try(now, 2, 1, False)
        assert await client.status("p1") == dj.ContinuousStatus("running", 2, now + HOUR)
        assert await client.get_state("p1") == 6
        await advance(jobs, HOUR)
        assert [t.run_count for t in f.tries] == [1, 1, 2, 3]


async def test_x08_on_exhausted_continue(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X08 on_exhausted "continue" and a hook: "continue" schedules the next regular run."""
    f = Flaky(dj.Retry(2, delay=dj.Backoff.exponential(), jitter=0, on_exhausted="continue"), 2)
    async with f.open(store_url) as jobs:
        client = jobs.continuous(f.job)
        await client.start("k1", 0)
        await advance(jobs, 10 * SECOND)
        assert await client.status("k1") == dj.ContinuousStatus("running", 1, T + SECOND + HOUR)
        assert await client.get_state("k1") == 0
        await advance(jobs, HOUR)
        assert f.tries == [
            Try(T, 1, 1, False),
            Try(T + SECOND, 1, 2, True),
            Try(T + SECOND + HOUR, 2, 1, False),
        ]
        assert await client.get_state("k1") == 1
        history = await client.history("k1")
    exhausted = run_records(history, "retry_exhausted")
    assert [(r.run_count, r.attempt, r.data["action"]) for r in exhausted] == [(1, 2, "continue")]


class HookCall(NamedTuple):
    error_type: type[BaseException]
    message: str
    instance_id: str
    job_name: str
    run_count: int
    attempt: int


@pytest.mark.parametrize(
    ("decision", "is_async", "action", "status"),
    [
        pytest.param("terminate", False, "terminate", NOT_FOUND, id="terminate"),
        pytest.param(
            "pause", True, "pause", dj.ContinuousStatus("failed", 1, None), id="async-pause"
        ),
        pytest.param(
            "continue",
            False,
            "continue",
            dj.ContinuousStatus("running", 1, T + SECOND + HOUR),
            id="continue",
        ),
        pytest.param(
            "continue",
            True,
            "continue",
            dj.ContinuousStatus("running", 1, T + SECOND + HOUR),
            id="async-continue",
        ),
        pytest.param(
            None, False, "pause", dj.ContinuousStatus("failed", 1, None), id="none-pauses"
        ),
        pytest.param(
            None, True, "pause", dj.ContinuousStatus("failed", 1, None), id="async-none-pauses"
        ),
    ],
)
async def test_x08_an_on_exhausted_hook_decides(
    decision: str | None,
    is_async: bool,
    action: str,
    status: dj.ContinuousStatus,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """X08 on_exhausted "continue" and a hook: the hook gets (error, ctx) with the last
    error and its decision is applied (None means pause)."""
    calls: list[HookCall] = []

    def record(error: BaseException, ctx: dj.ContinuousContext[int]) -> str | None:
        calls.append(
            HookCall(
                type(error), str(error), ctx.instance_id, ctx.job_name, ctx.run_count, ctx.attempt
            )
        )
        return decision

    async def async_hook(error: BaseException, ctx: dj.ContinuousContext[int]) -> str | None:
        await trio.lowlevel.checkpoint()
        return record(error, ctx)

    hook: Callable[[BaseException, Any], Awaitable[str | None] | str | None]
    hook = async_hook if is_async else record
    f = Flaky(dj.Retry(2, delay=dj.Backoff.exponential(), jitter=0, on_exhausted=hook))
    async with f.open("memory://") as jobs:
        client = jobs.continuous(f.job)
        await client.start("h1", 3)
        await advance(jobs, 10 * SECOND)
        assert calls == [HookCall(RuntimeError, "boom 2", "h1", "flaky", 1, 2)]
        assert await client.status("h1") == status
        history = await client.history("h1")
    exhausted = run_records(history, "retry_exhausted")
    assert [(r.run_count, r.attempt, r.data["action"]) for r in exhausted] == [(1, 2, action)]
    if action == "terminate":
        assert history[-1].name == "terminated"
    else:
        assert names(history)[-1] == ("alarm_cleared" if action == "pause" else "alarm_set")


# ---- X09-X11 misfires and cron -----------------------------------------------------------


def hourly(
    schedule: Any, misfire: Literal["run_once", "skip"]
) -> tuple[dj.Registry, dj.ContinuousJob[int], list[datetime], dj.VirtualClock]:
    clock = dj.VirtualClock(T)
    registry = dj.Registry()
    ran: list[datetime] = []

    @registry.continuous("hourly", state=int, schedule=schedule, misfire=misfire)
    async def job(ctx: dj.ContinuousContext[int]) -> None:
        ran.append(clock.now())
        ctx.update_state(lambda n: n + 1)

    return registry, job, ran, clock


HOURLY = [
    pytest.param(dj.every(HOUR), id="every"),
    pytest.param(dj.cron("0 * * * *"), id="cron"),
]


@pytest.mark.parametrize(
    ("schedule", "next_slot"),
    [
        # every: an hour after the catch-up run ended; cron: the next full hour
        pytest.param(dj.every(HOUR), T + 7.5 * HOUR, id="every"),
        pytest.param(dj.cron("0 * * * *"), T + 7 * HOUR, id="cron"),
    ],
)
async def test_x09_misfire_run_once_catches_up_once(
    durable_store_url: str,
    schedule: Any,
    next_slot: datetime,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """X09 Misfire "run_once" catches up once."""
    registry, job, ran, clock = hourly(schedule, "run_once")
    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.continuous(job).start("m1", 0)
        await jobs.wait_idle()
        await advance(jobs, 1.5 * HOUR)
        assert ran == [T, T + HOUR]
    await trio.sleep((5 * HOUR).total_seconds())  # down for 5 h: five slots missed
    restarted = T + 6.5 * HOUR
    async with running(registry, durable_store_url, clock=clock) as jobs:
        client = jobs.continuous(job)
        await jobs.wait_idle()
        assert ran == [T, T + HOUR, restarted]  # exactly one catch-up run
        assert await client.status("m1") == dj.ContinuousStatus("running", 3, next_slot)
        await advance(jobs, HOUR)
        assert ran == [T, T + HOUR, restarted, next_slot]  # then the normal schedule
        assert await client.get_state("m1") == 4
        history = await client.history("m1")
    assert [r.run_count for r in run_records(history, "run_succeeded")] == [1, 2, 3, 4]


@pytest.mark.parametrize("schedule", HOURLY)
async def test_x10_misfire_skip_drops_missed_slots(
    durable_store_url: str, schedule: Any, autojump_clock: trio.testing.MockClock
) -> None:
    """X10 Misfire "skip" drops missed slots."""
    registry, job, ran, clock = hourly(schedule, "skip")
    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.continuous(job).start("m1", 0)
        await jobs.wait_idle()
        await advance(jobs, 1.5 * HOUR)
        assert ran == [T, T + HOUR]
    await trio.sleep((5 * HOUR).total_seconds())  # down for 5 h: five slots missed
    async with running(registry, durable_store_url, clock=clock) as jobs:
        client = jobs.continuous(job)
        await jobs.wait_idle()
        assert ran == [T, T + HOUR]  # no catch-up run
        assert await client.status("m1") == dj.ContinuousStatus("running", 2, T + 7 * HOUR)
        await advance(jobs, HOUR)  # to T + 7.5 h
        assert ran == [T, T + HOUR, T + 7 * HOUR]
        assert await client.status("m1") == dj.ContinuousStatus("running", 3, T + 8 * HOUR)
        assert await client.get_state("m1") == 3
        history = await client.history("m1")
    assert [r.run_count for r in run_records(history, "run_succeeded")] == [1, 2, 3]
    assert run_records(history, "run_failed") == []


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "fires"),
    [
        pytest.param(
            utc(2026, 3, 6),
            [
                utc(2026, 3, 6, 14),
                utc(2026, 3, 7, 14),
                utc(2026, 3, 8, 13),  # EDT from 2026-03-08 02:00
                utc(2026, 3, 9, 13),
                utc(2026, 3, 10, 13),
            ],
            id="march",
        ),
        pytest.param(
            utc(2026, 10, 30),
            [
                utc(2026, 10, 30, 13),
                utc(2026, 10, 31, 13),
                utc(2026, 11, 1, 14),  # EST from 2026-11-01 02:00
                utc(2026, 11, 2, 14),
                utc(2026, 11, 3, 14),
            ],
            id="november",
        ),
    ],
)
async def test_x11_cron_in_a_time_zone_across_dst(
    start: datetime, fires: list[datetime], autojump_clock: trio.testing.MockClock
) -> None:
    """X11 Cron in a time zone across DST."""
    clock = dj.VirtualClock(start)
    registry = dj.Registry()
    ran: list[datetime] = []

    @registry.continuous(
        "nine",
        state=int,
        schedule=dj.cron("0 9 * * *", tz="America/New_York"),
        start_immediately=False,
    )
    async def nine(ctx: dj.ContinuousContext[int]) -> None:
        ran.append(clock.now())

    async with running(registry, "memory://", clock=clock) as jobs:
        client = jobs.continuous(nine)
        result = await client.start("n1", 0)
        assert result.status.next_run_at == fires[0]
        await advance(jobs, timedelta(days=5))
        assert ran == fires
        assert await client.status("n1") == dj.ContinuousStatus(
            "running", 5, fires[-1] + timedelta(days=1)
        )
    local = [t.astimezone(NEW_YORK) for t in ran]
    assert [(t.hour, t.minute) for t in local] == [(9, 0)] * 5
    assert [t.day for t in local] == [f.day for f in fires]
    assert all(a < b for a, b in itertools.pairwise(ran))
