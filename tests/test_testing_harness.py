"""The public testing harness itself: virtual time, restarts, read-outs, strategies, machines.

Includes the proof that a state machine can fail: a job whose handler does
not do what its model says, and a runtime that breaks a SPEC rule, are both
caught with a printed, shrunk example.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from pydantic import BaseModel, Field

import durable_jobs as dj
from durable_jobs.testing import (
    FailurePlan,
    Flush,
    Harness,
    InjectedFailure,
    Run,
    open_harness,
    run_harness,
)
from durable_jobs.testing import strategies as djst
from durable_jobs.testing.machines import ContinuousMachine, ModelContext, TaskMachine

T = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

failures = FailurePlan()
registry = dj.Registry()


@registry.continuous(
    "tick",
    state=int,
    schedule=dj.every(5 * MINUTE),
    retry=dj.Retry(max_attempts=2, delay=timedelta(seconds=10), jitter=0),
)
async def tick(ctx: dj.ContinuousContext[int]) -> None:
    failures.check(ctx)
    ctx.set_state(ctx.state + 1)


@registry.debounce("digest", event=str, flush_after=MINUTE, max_events=2)
async def digest(ctx: dj.DebounceContext[str]) -> None:
    failures.check(ctx)


@pytest.fixture(autouse=True)
def _no_planned_failures() -> None:
    failures.clear()


# ---- the async harness ---------------------------------------------------------------------


async def test_advance_runs_what_comes_due_and_the_log_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_harness(registry) as harness:
        assert harness.now() == T
        client = harness.continuous(tick)
        await client.start("a", 0)
        await harness.wait_idle()
        failures.fail_next("a")
        await harness.advance(5 * MINUTE)  # run 2 fails: a retry 10 s later
        assert harness.now() == T + 5 * MINUTE
        assert (await client.status("a")).next_run_at == T + 5 * MINUTE + timedelta(seconds=10)
        await harness.advance(timedelta(seconds=10))
        assert await client.get_state("a") == 2
        assert [(r.run_count, r.attempt, r.outcome) for r in harness.runs(tick)] == [
            (1, 1, "succeeded"),
            (2, 1, "failed"),
            (2, 2, "succeeded"),
        ]
        failed = harness.runs(tick, "a")[1]
        assert failed.error_type == "durable_jobs.testing.InjectedFailure"
        assert failed.error == "injected failure of execute for instance 'a'"
        assert failed.will_retry is True
        assert failed.at == T + 5 * MINUTE
        assert harness.runs("tick", "nobody") == []
        assert [r.name for r in harness.recorded(job="tick")][:2] == ["started", "alarm_set"]


async def test_flush_read_outs(autojump_clock: trio.testing.MockClock) -> None:
    async with open_harness(registry, start=T + timedelta(days=1)) as harness:
        client = harness.debounce(digest)
        await client.add("d", "x")
        await client.add("d", "y")  # max_events: flushed at once
        await harness.wait_idle()
        await client.add("d", "z")
        await harness.advance(MINUTE)
        start = T + timedelta(days=1)
        assert harness.flushes(digest) == [
            Flush("digest", "d", "max_events", 2, 1, start),
            Flush("digest", "d", "flush_after", 1, 2, start + MINUTE),
        ]
        assert harness.flushes("digest", "other") == []
        assert len(harness.runs(digest, "d")) == 2


async def test_restart_keeps_the_store_and_fires_what_was_missed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path / 'jobs.db'}"):
        async with open_harness(registry, url) as harness:
            await harness.continuous(tick).start("a", 0)
            await harness.wait_idle()
            first_jobs = harness.jobs
            await harness.restart()
            assert harness.jobs is not first_jobs
            assert harness.restarts == 1
            # The process is down for an hour: one catch-up run at the restart.
            await harness.restart(down_for=timedelta(hours=1))
            assert harness.now() == T + timedelta(hours=1)
            client = harness.continuous(tick)  # clients belong to one runtime
            assert await client.get_state("a") == 2
            assert [r.at for r in harness.runs(tick)] == [T, T + timedelta(hours=1)]
            assert (await client.status("a")).next_run_at == T + timedelta(hours=1, minutes=5)
        with pytest.raises(dj.DurableJobsError, match="not serving"):
            harness.jobs  # noqa: B018 - the property raises


async def test_an_error_in_the_block_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_harness(registry):
            raise KeyError("mine")


async def test_a_start_too_late_for_alarms_is_a_configuration_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start=datetime.max gave a trio ExceptionGroup (an alarm overflowed)."""
    with pytest.raises(dj.ConfigurationError, match="start must be at most"):
        async with open_harness(registry, start=datetime.max.replace(tzinfo=UTC)):
            pass  # pragma: no cover - refused before the block


async def test_advance_checks_its_argument(autojump_clock: trio.testing.MockClock) -> None:
    async with open_harness(registry) as harness:
        # Library errors (were ValueError / TypeError).
        for bad in (-1, math.nan, math.inf, timedelta(days=-1)):
            with pytest.raises(dj.ValidationError, match=">= 0"):
                await harness.advance(bad)
            with pytest.raises(dj.ValidationError, match=">= 0"):
                await harness.restart(down_for=bad)
        with pytest.raises(dj.ValidationError, match="timedelta or a number"):
            await harness.advance("1s")  # type: ignore[arg-type]
        with pytest.raises(dj.ValidationError, match="timedelta or a number"):
            await harness.restart(down_for="x")  # type: ignore[arg-type]
        await harness.advance(1.5)
        await harness.advance_to(T)  # in the past: nothing
        assert harness.now() == T + timedelta(seconds=1.5)
        assert "Harness" in repr(harness)
        # Past the latest time a store keeps: refused before any time passes (a bare
        # OverflowError escaped, and the clock had jumped, breaking the harness).
        for far in (10**15, timedelta(days=300_000 * 365), timedelta.max):
            with pytest.raises(dj.ValidationError, match="latest time a store keeps"):
                await harness.advance(far)
            with pytest.raises(dj.ValidationError, match="latest time a store keeps"):
                await harness.restart(down_for=far)
        assert harness.now() == T + timedelta(seconds=1.5)
        await harness.advance(60)
        assert harness.now() == T + timedelta(seconds=61.5)


async def test_the_harness_needs_virtual_time() -> None:
    with pytest.raises(dj.ConfigurationError, match="MockClock"):
        async with open_harness(registry):
            pass  # pragma: no cover


# ---- the sync entry point ----------------------------------------------------------------


def test_run_harness_is_one_trio_run_in_virtual_time() -> None:
    async def scenario(harness: Harness) -> list[Run]:
        await harness.continuous(tick).start("a", 10)
        await harness.advance(timedelta(hours=1))
        return harness.runs(tick)

    runs = run_harness(scenario, registry)
    assert [r.at for r in runs] == [T + n * 5 * MINUTE for n in range(13)]
    # A fresh store each time.
    assert len(run_harness(scenario, registry)) == 13


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(djst.durations(timedelta(0), 7 * MINUTE), max_size=4))
def test_run_harness_under_given(steps: list[timedelta]) -> None:
    async def scenario(harness: Harness) -> int | None:
        client = harness.continuous(tick)
        await client.start("a", 0)
        await harness.wait_idle()  # reads do not wait for the first run
        for step in steps:
            await harness.advance(step)
        return await client.get_state("a")

    elapsed = sum(steps, timedelta(0))
    assert run_harness(scenario, registry) == 1 + elapsed // (5 * MINUTE)


# ---- the failure plan --------------------------------------------------------------------


def test_failure_plan() -> None:
    plan = FailurePlan()
    plan.fail_next("a", 2)
    plan.fail_next("a", handler="on_event")
    assert plan.pending("a") == 2
    plan.check("b")  # nothing planned for b
    with pytest.raises(InjectedFailure, match="execute for instance 'a'"):
        plan.check("a")
    with pytest.raises(InjectedFailure):
        plan.check("a")
    plan.check("a")
    with pytest.raises(InjectedFailure, match="on_event"):
        plan.check("a", "on_event")
    assert plan.injected == [("a", "execute"), ("a", "execute"), ("a", "on_event")]
    plan.fail_next("a", 0)
    assert plan.pending("a") == 0
    with pytest.raises(dj.ValidationError, match="int >= 0"):
        plan.fail_next("a", -1)
    with pytest.raises(dj.ValidationError, match="instance_id must be a string"):
        plan.fail_next(5)  # type: ignore[arg-type]
    plan.fail_next("c")
    plan.clear()
    assert plan.pending("c") == 0
    assert plan.injected == []


# ---- strategies --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(djst.schedules(), djst.retries())
def test_strategies_build_what_the_library_accepts(schedule: Any, retry: dj.Retry) -> None:
    after = djst.TIME_ZONES and T
    assert schedule.next_fire(after) > after
    reg = dj.Registry()
    reg.continuous("x", state=int, schedule=schedule, retry=retry)(tick.execute)


@settings(max_examples=50, deadline=None)
@given(djst.cron_expressions(seconds=True), djst.time_zones())
def test_cron_expressions_with_seconds_fire(expr: str, tz: str) -> None:
    assert len(expr.split()) == 6
    assert dj.cron(expr, tz=tz).next_fire(T) > T


@settings(max_examples=50, deadline=None)
@given(djst.events_for(digest), djst.states_for(tick), djst.instance_ids())
def test_events_states_and_ids(event: str, state: int, instance_id: str) -> None:
    assert isinstance(event, str)
    assert isinstance(state, int)
    assert len(instance_id) >= 1 and "\x00" not in instance_id


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(djst.commands(digest, max_size=8))
def test_command_sequences_play_on_a_harness(commands: list[djst.Command]) -> None:
    async def play(harness: Harness) -> None:
        for command in commands:
            client = harness.debounce(digest)
            if command.op == "advance":
                assert command.delta is not None
                await harness.advance(command.delta)
            elif command.op == "restart":
                await harness.restart(down_for=command.delta or timedelta(0))
            elif command.op == "fail":
                assert command.instance_id is not None
                failures.fail_next(command.instance_id, command.times)
            elif command.op == "add":
                assert command.instance_id is not None
                await client.add(
                    command.instance_id, command.value, idempotency_key=command.idempotency_key
                )
            else:
                await getattr(client, command.op)(command.instance_id)
        repr(commands)

    failures.clear()
    run_harness(play, registry)


class Positive(BaseModel):
    n: int = Field(gt=0)
    tags: list[str] = []


floats = dj.Registry()


@floats.continuous("floats", state=dict[str, float], schedule=dj.every(MINUTE))
async def float_job(ctx: dj.ContinuousContext[dict[str, float]]) -> None:
    pass


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(djst.values_of(Positive), djst.states_for(float_job))
def test_values_of_gives_what_the_stores_keep(model: Positive, state: dict[str, float]) -> None:
    assert isinstance(model, Positive)
    assert model.n > 0

    async def keep(harness: Harness) -> dict[str, float] | None:
        await harness.continuous(float_job).start("f", state)
        await harness.restart()
        return await harness.continuous(float_job).get_state("f")

    # NaN and the infinities are never drawn: the stores refuse them.
    assert all(math.isfinite(v) for v in state.values())
    assert repr(run_harness(keep, floats)) == repr(state)


# ---- the machines can fail ---------------------------------------------------------------


QUICK = settings(
    max_examples=60,
    stateful_step_count=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TickMachine(ContinuousMachine):
    registry = registry
    job = tick
    failures = failures

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 10)

    def model_execute(self, state: int, ctx: ModelContext) -> int:
        return state + 1


def test_a_correct_job_passes() -> None:
    run_state_machine_as_test(TickMachine, settings=QUICK)


def test_a_job_that_does_not_do_what_its_model_says_fails() -> None:
    class WrongModel(TickMachine):
        def model_execute(self, state: int, ctx: ModelContext) -> int:
            return state + 1 if ctx.run_count < 2 else state + 2

    with pytest.raises(AssertionError, match="state is") as info:
        run_state_machine_as_test(WrongModel, settings=QUICK)
    # hypothesis's report: the shrunk steps and how to reproduce them.
    report = "\n".join(getattr(info.value, "__notes__", []))
    assert "state = WrongModel()" in report
    assert "@reproduce_failure" in report


def test_a_runtime_that_breaks_the_spec_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from durable_jobs._domain.continuous import ContinuousInstance

    # A "bug": the first run of a started instance is due a second late.
    real = ContinuousInstance.first_run_at

    def late(schedule: Any, *, now: datetime, start_immediately: bool) -> datetime:
        return real(schedule, now=now, start_immediately=start_immediately) + timedelta(seconds=1)

    monkeypatch.setattr(ContinuousInstance, "first_run_at", staticmethod(late))
    with pytest.raises(AssertionError, match="start") as info:
        run_state_machine_as_test(TickMachine, settings=QUICK)
    report = "\n".join(getattr(info.value, "__notes__", []))
    assert "state.start_instance(" in report


def test_a_handler_that_ignores_the_failure_plan_is_named() -> None:
    deaf = dj.Registry()

    @deaf.continuous("deaf", state=int, schedule=dj.every(MINUTE))
    async def deaf_job(ctx: dj.ContinuousContext[int]) -> None:
        pass

    class Deaf(ContinuousMachine):
        registry = deaf
        job = deaf_job
        failures = FailurePlan()

    # Derandomized: the search must find "plan a failure, then run" every time,
    # not in most runs (a random search missed it in about 1 of 8 suite runs; the
    # derandomized one once in a dozen runs on a loaded machine, so more examples:
    # it stops at the first that fails, at once when the search finds it early).
    with pytest.raises(AssertionError, match=r"failures\.check\(ctx\)"):
        run_state_machine_as_test(
            Deaf, settings=settings(QUICK, derandomize=True, max_examples=300)
        )


def no_hooks_machine() -> type[TaskMachine]:
    """A task machine whose job has an ``on_event`` the machine has no model of."""
    tasks = dj.Registry()

    @tasks.task("t", event=int, state=int)
    async def task_job(ctx: dj.TaskContext[int]) -> None:
        pass

    @task_job.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        pass

    class NoHooks(TaskMachine):
        registry = tasks
        job = task_job

    return NoHooks


def test_machines_say_what_they_need() -> None:
    class Unset(ContinuousMachine):
        pass

    with pytest.raises(dj.ConfigurationError, match="registry"):
        run_state_machine_as_test(Unset, settings=QUICK)

    class WrongKind(TaskMachine):
        registry = registry
        job = tick

    with pytest.raises(dj.ConfigurationError, match="is a continuous job"):
        run_state_machine_as_test(WrongKind, settings=QUICK)

    with pytest.raises(dj.ConfigurationError, match=r"model_on_event\(\)"):
        run_state_machine_as_test(no_hooks_machine(), settings=QUICK)

    hooked = dj.Registry()

    @hooked.continuous(
        "h",
        state=int,
        schedule=dj.every(MINUTE),
        retry=dj.Retry(2, on_exhausted=lambda error, ctx: "pause"),
    )
    async def hooked_job(ctx: dj.ContinuousContext[int]) -> None:
        pass

    class Hooked(ContinuousMachine):
        registry = hooked
        job = hooked_job

    with pytest.raises(dj.ConfigurationError, match="on_exhausted hook"):
        run_state_machine_as_test(Hooked, settings=QUICK)


def test_a_machine_refused_for_a_missing_model_hook_leaves_no_runtime_open() -> None:
    """The model's own checks run before the harness opens the jobs: a refused
    machine leaves no loop thread (with its runtime and store) behind."""
    import threading

    def harness_threads() -> int:
        return sum(t.name == "durable-jobs harness" for t in threading.enumerate())

    before = harness_threads()
    with pytest.raises(dj.ConfigurationError, match=r"model_on_event\(\)"):
        run_state_machine_as_test(no_hooks_machine(), settings=QUICK)
    assert harness_threads() == before


@pytest.mark.parametrize("module", ["strategies", "machines"])
def test_without_hypothesis_the_error_says_what_to_install(module: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import durable_jobs.testing\n"  # the harness itself needs no hypothesis
        f"import durable_jobs.testing.{module}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "pip install 'durable-jobs[testing]'" in done.stderr


def test_a_harness_shown_after_its_run_ended_does_not_raise() -> None:
    """pytest shows a failing scenario's arguments after trio's run ended: the harness's
    repr read the trio clock there and raised."""
    kept: list[Harness] = []

    async def scenario() -> None:
        async with open_harness(registry) as harness:
            kept.append(harness)
            assert "at 2026-01-01" in repr(harness)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    assert repr(kept[0]).endswith(", closed>")


async def test_a_client_kept_across_a_restart_says_to_ask_the_harness_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_harness(registry, start=T) as harness:
        client = harness.continuous(tick)
        await client.start("a", 0)
        await harness.restart()
        with pytest.raises(dj.RuntimeClosed) as caught:
            await client.status("a")
        message = str(caught.value)
        assert "jobs.continuous('tick').status() was refused" in message
        assert "harness.restart() replaced it" in message
        assert "ask the harness for the client again (harness.continuous(job)" in message
        assert "Open a new block" not in message
        with pytest.raises(dj.RuntimeClosed, match=r"harness.restart\(\) replaced it"):
            await client.trigger("a")
        assert (await harness.continuous(tick).status("a")).status == "running"
