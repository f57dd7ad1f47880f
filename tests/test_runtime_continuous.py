"""Continuous jobs through the runtime: SCENARIOS §1 (C01-C20), §4 (R01-R06) and the
continuous parts of X06-X11, against SPEC §1, §2, §5, §6 and §7.

Every async test runs on trio's ``MockClock`` (autojump) with the jobs' ``VirtualClock``
following it: only virtual time passes. Handlers record what they saw; assertions read
the public API only (client results, ``status``, ``get_state``, ``history`` and the
records an observer collected).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeVar, cast
from zoneinfo import ZoneInfo

import pytest
import trio
from pydantic import BaseModel
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names, running

NEW_YORK = ZoneInfo("America/New_York")
VALIDATION_ERROR_TYPE = f"{dj.ValidationError.__module__}.ValidationError"
NOT_FOUND = dj.ContinuousStatus("not_found", 0, None)
NOT_TRIGGERED = dj.TriggerResult(False, False, False)

S = TypeVar("S")
Session = tuple[dj.Jobs, dj.ContinuousClient[S]]


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


def assert_terminated(history: list[dj.RecordedEvent], reason: str | None = None) -> None:
    """The log ends with the instance's termination (for ``reason``, if given)."""
    assert names(history)[-2:] == ["alarm_cleared", "terminated"]
    if reason is not None:
        assert history[-1].data["reason"] == reason


async def start_new(
    jobs: dj.Jobs, client: dj.ContinuousClient[S], instance_id: str, state: S, due: datetime = T
) -> None:
    """Start ``instance_id``, which must be created with its first run due at ``due``; then
    wait until what is due has run."""
    result = await client.start(instance_id, state)
    assert result == dj.StartResult(True, dj.ContinuousStatus("running", 0, due))
    await jobs.wait_idle()


# ---- helpers -----------------------------------------------------------------------------


class Bench:
    """A registry whose jobs run on one ``VirtualClock`` (from ``start``), opened on ``url``.

    Opened with ``observe=True``, the runtime appends every committed record to ``records``.
    """

    def __init__(self, url: str, start: datetime = T) -> None:
        self.url = url
        self.clock = dj.VirtualClock(start)
        self.registry = dj.Registry()
        self.records: list[dj.RecordedEvent] = []

    def open(self, *, observe: bool = False) -> AbstractAsyncContextManager[dj.Jobs]:
        records = self.records if observe else None
        return running(self.registry, self.url, clock=self.clock, records=records)

    @asynccontextmanager
    async def session(
        self, job: dj.ContinuousJob[S], *, observe: bool = False
    ) -> AsyncIterator[Session[S]]:
        """The open runtime and ``job``'s client."""
        async with self.open(observe=observe) as jobs:
            yield jobs, jobs.continuous(job)

    @asynccontextmanager
    async def started(
        self, job: dj.ContinuousJob[S], instance_id: str, state: S, *, observe: bool = False
    ) -> AsyncIterator[Session[S]]:
        """``session``, with ``instance_id`` started on ``state`` and what was due run."""
        async with self.session(job, observe=observe) as (jobs, client):
            await client.start(instance_id, state)
            await jobs.wait_idle()
            yield jobs, client

    async def logs(
        self, job: dj.ContinuousJob[S], instance_id: str, state: S, wait: timedelta | None = None
    ) -> tuple[list[dj.RecordedEvent], list[dj.RecordedEvent]]:
        """Start ``instance_id`` on ``state`` with the observer on, let what is due run (then
        ``wait`` pass): the records the observer collected and the instance's history."""
        async with self.started(job, instance_id, state, observe=True) as (jobs, client):
            if wait is not None:
                await advance(jobs, wait)
            return self.records, await client.history(instance_id)


# ---- SCENARIOS §1 fixtures ---------------------------------------------------------------


class Section1(Bench):
    """The jobs of SCENARIOS §1 (counter, failing, no_immediate, terminating) on one clock."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
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

    def counter_c1(
        self, state: Counter | None = None, *, observe: bool = False
    ) -> AbstractAsyncContextManager[Session[Counter]]:
        """The usual start: "counter" instance "c1" on ``state`` (count 0), first run done."""
        state = Counter(count=0) if state is None else state
        return self.started(self.counter, "c1", state, observe=observe)

    def terminating_t1(
        self, max_runs: int, *, observe: bool = False
    ) -> AbstractAsyncContextManager[Session[Limit]]:
        """Instance "t1" of "terminating" started with ``max_runs``, first run done."""
        state = Limit(max_runs=max_runs, current_run=0)
        return self.started(self.terminating, "t1", state, observe=observe)

    async def assert_no_more_runs(
        self, jobs: dj.Jobs, client: dj.ContinuousClient[Any], instance_id: str, *waits: timedelta
    ) -> None:
        """After ``waits`` pass, the gone ``instance_id`` of ``client``'s job has still run
        once and nothing more was recorded."""
        job = client.job.name
        seen = len(self.records)
        for wait in waits:
            await advance(jobs, wait)
        assert len(self.runs[job]) == 1
        assert len(self.records) == seen
        assert await client.status(instance_id) == NOT_FOUND


@pytest.fixture
def section1(store_url: str) -> Section1:
    """The jobs of SCENARIOS §1 on a fresh store of each adapter."""
    return Section1(store_url)


# ---- C01-C20 -----------------------------------------------------------------------------


async def test_c01_start_creates_and_runs_at_once(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C01 Start creates the instance and runs it at once."""
    async with section1.session(section1.counter) as (jobs, client):
        await start_new(jobs, client, "c1", Counter(count=0, last_run=None))
        assert section1.runs["counter"] == [Run("c1", 1, Counter(count=0, last_run=None))]
        assert section1.clock.now() == T


async def test_c02_starting_again_returns_the_existing_instance(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C02 Starting again returns the existing instance."""
    async with section1.counter_c1() as (jobs, client):
        again = await client.start("c1", Counter(count=100))
        assert again == dj.StartResult(False, dj.ContinuousStatus("running", 1, T + 30 * MINUTE))
        await jobs.wait_idle()
        assert [r.run_count for r in section1.runs["counter"]] == [1]
        assert await client.get_state("c1") == Counter(count=1, last_run=T.timestamp())
        history = await client.history("c1")
        assert names(history).count("started") == 1


async def test_c03_start_immediately_false_waits_for_the_schedule(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C03 start_immediately=False waits for the schedule."""
    runs = section1.runs["no_immediate"]
    async with section1.session(section1.no_immediate) as (jobs, client):
        await start_new(jobs, client, "n1", Counter(count=0), due=T + HOUR)
        assert runs == []
        assert await client.status("n1") == dj.ContinuousStatus("running", 0, T + HOUR)
        await advance(jobs, HOUR - SECOND)
        assert runs == []
        await advance(jobs, SECOND)
        assert runs == [Run("n1", 1, Counter(count=0))]


async def test_c04_terminate_removes_a_running_instance(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C04 Terminate removes a running instance."""
    async with section1.counter_c1() as (_, client):
        assert await client.terminate("c1", reason="user requested") == dj.TerminateResult(True)
        assert await client.status("c1") == NOT_FOUND
        assert await client.get_state("c1") is None
        history = await client.history("c1")
        assert_terminated(history, "user requested")
        assert history[-1].at == T


async def test_c05_terminate_of_an_unknown_id(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C05 Terminate of an unknown id is not an error."""
    async with section1.session(section1.counter) as (_, client):
        assert await client.terminate("c1") == dj.TerminateResult(False)
        assert await client.status("c1") == NOT_FOUND
        assert await client.history("c1") == []


async def test_c06_a_second_terminate_finds_nothing(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C06 A second terminate finds nothing."""
    async with section1.counter_c1() as (_, client):
        assert await client.terminate("c1") == dj.TerminateResult(True)
        assert await client.terminate("c1") == dj.TerminateResult(False)
        history = await client.history("c1")
        assert names(history).count("terminated") == 1
        assert history[-1].name == "terminated"


async def test_c07_trigger_runs_the_job_now(section1: Section1, autojump_clock: MockClock) -> None:
    """C07 Trigger runs the job now."""
    async with section1.counter_c1() as (jobs, client):
        await advance(jobs, 10 * MINUTE)
        result = await client.trigger("c1")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=False)
        # trigger returns after its run committed
        runs = section1.runs["counter"]
        assert [(r.run_count, r.state.count) for r in runs] == [(1, 0), (2, 1)]
        # the next alarm is scheduled from the end of the triggered run
        assert await client.status("c1") == dj.ContinuousStatus("running", 2, T + 40 * MINUTE)
        assert await client.get_state("c1") == Counter(
            count=2, last_run=(T + 10 * MINUTE).timestamp()
        )


async def test_c08_trigger_of_an_unknown_id(section1: Section1, autojump_clock: MockClock) -> None:
    """C08 Trigger of an unknown id."""
    async with section1.session(section1.counter) as (jobs, client):
        assert await client.trigger("c1") == NOT_TRIGGERED
        await jobs.wait_idle()
        assert section1.runs["counter"] == []
        assert await client.status("c1") == NOT_FOUND


async def test_c09_trigger_after_terminate(section1: Section1, autojump_clock: MockClock) -> None:
    """C09 Trigger after terminate."""
    async with section1.counter_c1() as (_, client):
        await client.terminate("c1")
        assert await client.trigger("c1") == NOT_TRIGGERED
        assert len(section1.runs["counter"]) == 1
        assert await client.status("c1") == NOT_FOUND


async def test_c10_status_of_a_running_instance(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C10 Status of a running instance."""
    async with section1.counter_c1() as (_, client):
        assert await client.status("c1") == dj.ContinuousStatus("running", 1, T + 30 * MINUTE)


async def test_c11_status_of_an_unknown_id(section1: Section1, autojump_clock: MockClock) -> None:
    """C11 Status of an unknown id."""
    async with section1.session(section1.counter) as (_, client):
        assert await client.status("c1") == NOT_FOUND
        assert await client.get_state("c1") is None


async def test_c12_get_state_returns_the_committed_state(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C12 get_state returns the committed state."""
    async with section1.counter_c1(Counter(count=5, last_run=None)) as (_, client):
        state = await client.get_state("c1")
        assert state == Counter(count=6, last_run=T.timestamp())


async def test_c13_the_alarm_runs_the_job_and_reschedules(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C13 The alarm runs the job and reschedules."""
    async with section1.counter_c1() as (jobs, client):
        await advance(jobs, 30 * MINUTE - SECOND)
        assert len(section1.runs["counter"]) == 1
        await advance(jobs, SECOND)
        assert section1.runs["counter"] == [
            Run("c1", 1, Counter(count=0)),
            Run("c1", 2, Counter(count=1, last_run=T.timestamp())),
        ]
        assert await client.status("c1") == dj.ContinuousStatus("running", 2, T + 60 * MINUTE)
        history = await client.history("c1")
        assert history[-1].name == "alarm_set"
        assert history[-1].data["at"] == T + 60 * MINUTE


async def test_c14_no_run_after_terminate(section1: Section1, autojump_clock: MockClock) -> None:
    """C14 No run after terminate."""
    async with section1.counter_c1(observe=True) as (jobs, client):
        await client.terminate("c1")
        await section1.assert_no_more_runs(jobs, client, "c1", 30 * MINUTE, 2 * HOUR)


async def test_c15_a_failing_run_without_retry_keeps_the_schedule(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C15 A failing run without retry keeps the schedule."""
    runs = section1.runs["failing"]
    async with section1.session(section1.failing) as (jobs, client):
        await start_new(jobs, client, "f1", Counter(count=42, last_run=999))
        assert runs == [Run("f1", 1, Counter(count=42, last_run=999))]
        failed = run_records(await client.history("f1"), "run_failed")
        assert len(failed) == 1
        assert failed[0].data["will_retry"] is False
        assert await client.get_state("f1") == Counter(count=42, last_run=999)
        assert await client.status("f1") == dj.ContinuousStatus("running", 1, T + HOUR)
        # the schedule really holds: the next regular run comes, and fails again
        await advance(jobs, HOUR)
        assert [r.run_count for r in runs] == [1, 2]
        assert await client.status("f1") == dj.ContinuousStatus("running", 2, T + 2 * HOUR)
        assert await client.get_state("f1") == Counter(count=42, last_run=999)


async def test_c16_ctx_terminate_on_the_first_run(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C16 ctx.terminate on the first run."""
    async with section1.session(section1.terminating) as (jobs, client):
        await start_new(jobs, client, "t1", Limit(max_runs=1, current_run=0))
        assert section1.runs["terminating"] == [Run("t1", 1, Limit(max_runs=1, current_run=0))]
        history = await client.history("t1")
        assert_terminated(history, "max runs reached")
        assert "run_succeeded" in names(history)
        assert await client.status("t1") == NOT_FOUND
        assert await client.get_state("t1") is None


async def test_c17_ctx_terminate_in_an_alarm_run_stops_the_schedule(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C17 ctx.terminate in an alarm run stops the schedule."""
    async with section1.terminating_t1(max_runs=2) as (jobs, client):
        assert await client.status("t1") == dj.ContinuousStatus("running", 1, T + 10 * MINUTE)
        await advance(jobs, 10 * MINUTE)
        assert section1.runs["terminating"] == [
            Run("t1", 1, Limit(max_runs=2, current_run=0)),
            Run("t1", 2, Limit(max_runs=2, current_run=1)),
        ]
        assert await client.status("t1") == NOT_FOUND
        history = await client.history("t1")
        assert_terminated(history, "max runs reached")
        await advance(jobs, HOUR)
        assert len(section1.runs["terminating"]) == 2
        assert len(await client.history("t1")) == len(history)


async def test_c18_trigger_whose_run_terminates(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C18 Trigger whose run terminates."""
    async with section1.terminating_t1(max_runs=2) as (_, client):
        result = await client.trigger("t1")
        assert result == dj.TriggerResult(triggered=True, terminated=True, retry_scheduled=False)
        assert [r.run_count for r in section1.runs["terminating"]] == [1, 2]
        assert await client.status("t1") == NOT_FOUND


async def test_c19_trigger_after_self_termination(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C19 Trigger after self-termination."""
    async with section1.terminating_t1(max_runs=1) as (_, client):
        assert await client.trigger("t1") == NOT_TRIGGERED
        assert len(section1.runs["terminating"]) == 1


async def test_c20_no_alarm_fires_after_self_termination(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """C20 No alarm fires after self-termination."""
    async with section1.terminating_t1(max_runs=1, observe=True) as (jobs, client):
        assert names(section1.records)[-1] == "terminated"
        await section1.assert_no_more_runs(jobs, client, "t1", 10 * MINUTE, HOUR)


# ---- R01-R06 -----------------------------------------------------------------------------


async def test_r01_a_successful_run_is_recorded(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """R01 A successful run is recorded."""
    for log in await section1.logs(section1.counter, "c1", Counter(count=5, last_run=None)):
        succeeded = run_records(log, "run_succeeded")
        assert len(succeeded) == 1
        assert (succeeded[0].run_count, succeeded[0].attempt) == (1, 1)
        assert succeeded[0].state_before == {"count": 5, "last_run": None}
        assert run_records(log, "run_failed") == []


async def test_r02_pre_run_state_is_taken_before_the_handlers_change(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """R02 Pre-run state is taken before the handler's change."""
    async with section1.counter_c1(Counter(count=10, last_run=None), observe=True) as (_, client):
        history = await client.history("c1")
        assert await client.get_state("c1") == Counter(count=11, last_run=T.timestamp())
    assert section1.runs["counter"][0].state == Counter(count=10)
    for log in (section1.records, history):
        (succeeded,) = run_records(log, "run_succeeded")
        assert succeeded.state_before["count"] == 10


async def test_r03_falsy_states_are_recorded_as_they_are(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """R03 Falsy states are recorded as they are."""
    for log in await section1.logs(section1.counter, "c1", Counter(count=0, last_run=None)):
        (succeeded,) = run_records(log, "run_succeeded")
        assert succeeded.state_before == {"count": 0, "last_run": None}
        assert Counter.model_validate(succeeded.state_before) == Counter(count=0, last_run=None)


async def test_r04_a_failed_run_is_recorded(section1: Section1, autojump_clock: MockClock) -> None:
    """R04 A failed run is recorded."""
    for log in await section1.logs(section1.failing, "f1", Counter(count=42, last_run=999)):
        (failed,) = run_records(log, "run_failed")
        assert failed.data["will_retry"] is False
        assert "Intentional test failure" in failed.data["message"]
        assert failed.data["error_type"] == "RuntimeError"
        assert (failed.run_count, failed.attempt) == (1, 1)
        assert failed.state_before == {"count": 42, "last_run": 999}
        assert run_records(log, "run_succeeded") == []
        assert "state_changed" not in names(log)


async def test_r05_each_run_records_its_own_pre_run_state(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """R05 Each run records its own pre-run state."""
    state = Counter(count=0, last_run=None)
    for log in await section1.logs(section1.counter, "c1", state, wait=30 * MINUTE):
        succeeded = run_records(log, "run_succeeded")
        assert [r.run_count for r in succeeded] == [1, 2]
        assert [r.state_before for r in succeeded] == [
            {"count": 0, "last_run": None},
            {"count": 1, "last_run": T.timestamp()},
        ]


async def test_r06_run_records_carry_identity_and_timing(
    section1: Section1, autojump_clock: MockClock
) -> None:
    """R06 Run records carry identity and timing."""
    state = Counter(count=100, last_run=None)
    records, history = await section1.logs(section1.counter, "c1", state)
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
    store_url: str, autojump_clock: MockClock
) -> None:
    """SPEC §2 every(duration): next run = end of previous run + duration; start does not
    wait for a slow first run."""
    bench = Bench(store_url)
    clock = bench.clock
    starts: list[datetime] = []

    @bench.registry.continuous("slow", state=int, schedule=dj.every(10 * MINUTE))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        starts.append(clock.now())
        await trio.sleep(90)
        ctx.update_state(lambda n: n + 1)

    async with bench.session(slow, observe=True) as (jobs, client):
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
    succeeded = run_records(bench.records, "run_succeeded")
    assert [r.data["duration"] for r in succeeded] == [90.0] * 3
    assert [r.at for r in succeeded] == [T + 1.5 * MINUTE, T + 13 * MINUTE, T + 24.5 * MINUTE]


async def test_plain_int_state(store_url: str, autojump_clock: MockClock) -> None:
    """SPEC §1 State types may be plain int (0 is a state, not "no state")."""
    bench = Bench(store_url)
    seen: list[int] = []

    @bench.registry.continuous(
        "ticks", state=int, schedule=dj.every(MINUTE), start_immediately=False
    )
    async def ticks(ctx: dj.ContinuousContext[int]) -> None:
        seen.append(ctx.state)
        ctx.update_state(lambda n: n + 1)

    async with bench.session(ticks, observe=True) as (jobs, client):
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
    assert [r.state_before for r in run_records(bench.records, "run_succeeded")] == [0, 1, 2]
    assert [r.data["state"] for r in run_records(bench.records, "state_changed")] == [1, 2, 3]


@pytest.mark.parametrize("how", ["set_state", "update_state"])
async def test_a_state_of_the_wrong_type_fails_the_run(
    store_url: str, how: str, autojump_clock: MockClock
) -> None:
    """SPEC §1 A handler that sets a state of the wrong type: run_failed, old state kept."""
    bench = Bench(store_url)
    bad = cast(Counter, {"count": "not a number"})

    @bench.registry.continuous("wrong", state=Counter, schedule=dj.every(30 * MINUTE))
    async def wrong(ctx: dj.ContinuousContext[Counter]) -> None:
        if how == "set_state":
            ctx.set_state(bad)
        else:
            ctx.update_state(lambda _: bad)

    async with bench.started(wrong, "w1", Counter(count=7), observe=True) as (_, client):
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


class Flaky(Bench):
    """A continuous job ``flaky`` (state int, every 1 h) whose next ``failures`` tries fail.

    A try adds 1 to the state before it fails or returns, so a failed try's change shows
    if it was (wrongly) kept.
    """

    def __init__(self, url: str, retry: dj.Retry | None, failures: int = 1_000_000) -> None:
        super().__init__(url)
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

    def flaky(self, *, observe: bool = False) -> AbstractAsyncContextManager[Session[int]]:
        """``session`` of the ``flaky`` job."""
        return self.session(self.job, observe=observe)

    def times(self) -> list[timedelta]:
        return [t.at - T for t in self.tries]


OnExhausted = Literal["terminate", "pause", "continue"] | Callable[[BaseException, Any], Any]

#: Up to three tries, 1 s then 2 s apart.
THREE_TRIES = dj.Retry(max_attempts=3, delay=dj.Backoff.exponential(), jitter=0)


def two_tries(on_exhausted: OnExhausted) -> dj.Retry:
    """Up to two tries, 1 s apart, then ``on_exhausted``."""
    return dj.Retry(2, delay=dj.Backoff.exponential(), jitter=0, on_exhausted=on_exhausted)


def exhausted_as(history: list[dj.RecordedEvent]) -> list[tuple[int | None, int | None, Any]]:
    """(run_count, attempt, action) of each ``retry_exhausted`` record."""
    exhausted = run_records(history, "retry_exhausted")
    return [(r.run_count, r.attempt, r.data["action"]) for r in exhausted]


async def test_x06_retries_follow_the_policy(store_url: str, autojump_clock: MockClock) -> None:
    """X06 Retries follow the policy."""
    f = Flaky(store_url, THREE_TRIES, failures=2)
    async with f.flaky(observe=True) as (jobs, client):
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
    for log in (f.records, history):
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
    store_url: str, autojump_clock: MockClock
) -> None:
    """X06 Retries follow the policy: a trigger during the wait restarts at attempt 1."""
    f = Flaky(store_url, THREE_TRIES, failures=3)
    async with f.started(f.job, "x1", 0) as (jobs, client):
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
    autojump_clock: MockClock,
) -> None:
    """X06 Retries follow the policy: a trigger that succeeds ends the retry sequence."""
    f = Flaky("memory://", THREE_TRIES, failures=1)
    async with f.started(f.job, "x1", 0) as (jobs, client):
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
    autojump_clock: MockClock,
) -> None:
    """SPEC §5 Backoff.constant/linear/exponential (and a plain timedelta) space the tries."""
    retry = dj.Retry(max_attempts, delay=delay, jitter=0, on_exhausted="pause")
    f = Flaky("memory://", retry)
    async with f.flaky(observe=True) as (jobs, client):
        await client.start("b1", 0)
        await advance(jobs, 5 * MINUTE)
        assert f.times() == [s * SECOND for s in offsets]
        assert [t.attempt for t in f.tries] == list(range(1, max_attempts + 1))
        assert {t.run_count for t in f.tries} == {1}
        assert await client.status("b1") == dj.ContinuousStatus("failed", 1, None)
    failed = run_records(f.records, "run_failed")
    assert [r.data["retry_at"] for r in failed] == [T + s * SECOND for s in offsets[1:]] + [None]
    assert [r.data["will_retry"] for r in failed] == [True] * (max_attempts - 1) + [False]
    assert exhausted_as(f.records) == [(1, max_attempts, "pause")]


async def test_retry_max_duration_stops_retrying(autojump_clock: MockClock) -> None:
    """SPEC §5 max_duration stops retrying once that much time passed since the first
    failed try."""
    retry = dj.Retry(
        10,
        delay=dj.Backoff.constant(10 * SECOND),
        jitter=0,
        max_duration=25 * SECOND,
        on_exhausted="pause",
    )
    f = Flaky("memory://", retry)
    async with f.flaky(observe=True) as (jobs, client):
        await client.start("m1", 0)
        await advance(jobs, 5 * MINUTE)
        # T + 30 s would be past T + 25 s: the third try is the last
        assert f.times() == [0 * SECOND, 10 * SECOND, 20 * SECOND]
        assert await client.status("m1") == dj.ContinuousStatus("failed", 1, None)
    (exhausted,) = run_records(f.records, "retry_exhausted")
    assert (exhausted.attempt, exhausted.data["action"]) == (3, "pause")
    assert [r.data["will_retry"] for r in run_records(f.records, "run_failed")] == [
        True,
        True,
        False,
    ]


async def test_x07_on_exhausted_terminate(store_url: str, autojump_clock: MockClock) -> None:
    """X07 on_exhausted "terminate" and "pause": "terminate" purges the instance."""
    f = Flaky(store_url, two_tries("terminate"))
    async with f.flaky() as (jobs, client):
        await client.start("e1", 0)
        await advance(jobs, 10 * SECOND)
        assert f.times() == [0 * SECOND, 1 * SECOND]
        assert await client.status("e1") == NOT_FOUND
        assert await client.get_state("e1") is None
        history = await client.history("e1")
        await advance(jobs, 2 * HOUR)
        assert len(f.tries) == 2
    assert [r.name for r in history if r.is_run] == ["run_failed", "run_failed", "retry_exhausted"]
    assert exhausted_as(history)[0] == (1, 2, "terminate")
    assert run_records(history, "retry_exhausted")[0].at == T + SECOND
    assert_terminated(history)
    assert [r.data["will_retry"] for r in run_records(history, "run_failed")] == [True, False]


async def test_x07_on_exhausted_pause_and_trigger_resumes(
    store_url: str, autojump_clock: MockClock
) -> None:
    """X07 on_exhausted "terminate" and "pause": "pause" keeps the state, status failed,
    no alarm; trigger resumes it."""
    f = Flaky(store_url, two_tries("pause"), 2)
    async with f.flaky() as (jobs, client):
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


async def test_x08_on_exhausted_continue(store_url: str, autojump_clock: MockClock) -> None:
    """X08 on_exhausted "continue" and a hook: "continue" schedules the next regular run."""
    f = Flaky(store_url, two_tries("continue"), 2)
    async with f.flaky() as (jobs, client):
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
    assert exhausted_as(history) == [(1, 2, "continue")]


class HookCall(NamedTuple):
    error_type: type[BaseException]
    message: str
    instance_id: str
    job_name: str
    run_count: int
    attempt: int


PAUSED = dj.ContinuousStatus("failed", 1, None)
CONTINUED = dj.ContinuousStatus("running", 1, T + SECOND + HOUR)


@pytest.mark.parametrize(
    ("decision", "is_async", "action", "status"),
    [
        pytest.param("terminate", False, "terminate", NOT_FOUND, id="terminate"),
        pytest.param("pause", True, "pause", PAUSED, id="async-pause"),
        pytest.param("continue", False, "continue", CONTINUED, id="continue"),
        pytest.param("continue", True, "continue", CONTINUED, id="async-continue"),
        pytest.param(None, False, "pause", PAUSED, id="none-pauses"),
        pytest.param(None, True, "pause", PAUSED, id="async-none-pauses"),
    ],
)
async def test_x08_an_on_exhausted_hook_decides(
    decision: str | None,
    is_async: bool,
    action: str,
    status: dj.ContinuousStatus,
    autojump_clock: MockClock,
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
    f = Flaky("memory://", two_tries(hook))
    async with f.flaky() as (jobs, client):
        await client.start("h1", 3)
        await advance(jobs, 10 * SECOND)
        assert calls == [HookCall(RuntimeError, "boom 2", "h1", "flaky", 1, 2)]
        assert await client.status("h1") == status
        history = await client.history("h1")
    assert exhausted_as(history) == [(1, 2, action)]
    if action == "terminate":
        assert history[-1].name == "terminated"
    else:
        assert names(history)[-1] == ("alarm_cleared" if action == "pause" else "alarm_set")


@pytest.mark.parametrize("call", ["terminate", "set_state"])
async def test_an_on_exhausted_hook_cannot_terminate_or_set_state_through_ctx(
    call: str, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook decides by what it returns. ``ctx.terminate()`` and ``ctx.set_state()``
    in it did nothing at all, silently (the instance stayed paused, its state as it
    was); they raise now, which the runtime reports like any hook that raises."""
    refused: list[BaseException] = []

    def hook(error: BaseException, ctx: dj.ContinuousContext[int]) -> str | None:
        try:
            if call == "terminate":
                ctx.terminate("give up")
            else:
                ctx.set_state(-1)
        except dj.ConfigurationError as exc:
            refused.append(exc)
            raise
        return None  # pragma: no cover - refused above

    f = Flaky("memory://", two_tries(hook))
    async with f.flaky() as (jobs, client):
        await client.start("h1", 3)
        await advance(jobs, 10 * SECOND)
        assert await client.status("h1") == PAUSED
        assert await client.get_state("h1") == 3
    [exc] = refused
    assert f"ctx.{call}() does nothing in an on_exhausted hook" in str(exc)
    assert "Return 'terminate'" in str(exc)
    assert any("on_exhausted" in r.getMessage() for r in caplog.records if r.levelno >= 30)


# ---- X09-X11 misfires and cron -----------------------------------------------------------


class Hourly(Bench):
    """A continuous job ``hourly`` (state int, +1 a run) on ``schedule`` with ``misfire``."""

    def __init__(self, url: str, schedule: Any, misfire: Literal["run_once", "skip"]) -> None:
        super().__init__(url)
        self.ran: list[datetime] = []

        @self.registry.continuous("hourly", state=int, schedule=schedule, misfire=misfire)
        async def job(ctx: dj.ContinuousContext[int]) -> None:
            self.ran.append(self.clock.now())
            ctx.update_state(lambda n: n + 1)

        self.job = job

    async def run_then_stay_down(self) -> None:
        """Start "m1", run until T + 1.5 h (runs at T and T + 1 h), then stay down for 5 h:
        five slots are missed."""
        async with self.started(self.job, "m1", 0) as (jobs, _):
            await advance(jobs, 1.5 * HOUR)
            assert self.ran == [T, T + HOUR]
        await trio.sleep((5 * HOUR).total_seconds())


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
    durable_store_url: str, schedule: Any, next_slot: datetime, autojump_clock: MockClock
) -> None:
    """X09 Misfire "run_once" catches up once."""
    h = Hourly(durable_store_url, schedule, "run_once")
    await h.run_then_stay_down()
    restarted = T + 6.5 * HOUR
    async with h.session(h.job) as (jobs, client):
        await jobs.wait_idle()
        assert h.ran == [T, T + HOUR, restarted]  # exactly one catch-up run
        assert await client.status("m1") == dj.ContinuousStatus("running", 3, next_slot)
        await advance(jobs, HOUR)
        assert h.ran == [T, T + HOUR, restarted, next_slot]  # then the normal schedule
        assert await client.get_state("m1") == 4
        history = await client.history("m1")
    assert [r.run_count for r in run_records(history, "run_succeeded")] == [1, 2, 3, 4]


@pytest.mark.parametrize("schedule", HOURLY)
async def test_x10_misfire_skip_drops_missed_slots(
    durable_store_url: str, schedule: Any, autojump_clock: MockClock
) -> None:
    """X10 Misfire "skip" drops missed slots."""
    h = Hourly(durable_store_url, schedule, "skip")
    await h.run_then_stay_down()
    async with h.session(h.job) as (jobs, client):
        await jobs.wait_idle()
        assert h.ran == [T, T + HOUR]  # no catch-up run
        assert await client.status("m1") == dj.ContinuousStatus("running", 2, T + 7 * HOUR)
        await advance(jobs, HOUR)  # to T + 7.5 h
        assert h.ran == [T, T + HOUR, T + 7 * HOUR]
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
    start: datetime, fires: list[datetime], autojump_clock: MockClock
) -> None:
    """X11 Cron in a time zone across DST."""
    bench = Bench("memory://", start)
    ran: list[datetime] = []

    @bench.registry.continuous(
        "nine",
        state=int,
        schedule=dj.cron("0 9 * * *", tz="America/New_York"),
        start_immediately=False,
    )
    async def nine(ctx: dj.ContinuousContext[int]) -> None:
        ran.append(bench.clock.now())

    async with bench.session(nine) as (jobs, client):
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
