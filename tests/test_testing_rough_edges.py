"""``durable_jobs.testing`` details a new user tripped on."""

from __future__ import annotations

import collections
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pydantic_core
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import durable_jobs as dj
from durable_jobs._domain.values import check_json_value
from durable_jobs.testing import FailurePlan, Harness, InjectedFailure, open_harness, run_harness
from durable_jobs.testing import strategies as djst
from durable_jobs.testing.machines import (
    ContinuousMachine,
    DebounceMachine,
    JobMachine,
    TaskMachine,
)

MINUTE = timedelta(minutes=1)
BOUND = 5 * MINUTE
SLOW_RETRY = dj.Retry(max_attempts=4, delay=dj.Backoff.constant(timedelta(hours=2)), jitter=0)

registry = dj.Registry()


@registry.continuous("half-hourly", state=int, schedule=dj.every(30 * MINUTE), retry=SLOW_RETRY)
async def half_hourly(ctx: dj.ContinuousContext[int]) -> None:
    return None


@registry.debounce("collect", event=str, flush_after=30 * MINUTE, retry=SLOW_RETRY)
async def collect(ctx: dj.DebounceContext[str]) -> None:
    return None


@registry.task("remind", event=str, state=int)
async def remind(ctx: dj.TaskContext[int]) -> None:
    return None


@remind.on_event
async def remind_on_event(event: str, ctx: dj.TaskContext[int]) -> None:
    return None


class Continuous(ContinuousMachine):
    registry = registry
    job = half_hourly
    max_advance = BOUND


class Debounce(DebounceMachine):
    registry = registry
    job = collect
    max_advance = BOUND


class Task(TaskMachine):
    registry = registry
    job = remind
    max_advance = BOUND


@pytest.mark.parametrize("machine", [Continuous, Debounce, Task])
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_max_advance_bounds_every_step(machine: type[JobMachine], data: st.DataObject) -> None:
    # The strategy only needs the class settings: no runtime is started for it.
    steps = object.__new__(machine).time_steps()
    step = data.draw(steps)
    assert timedelta(0) <= step <= BOUND


# ---- names the helpers do not know are refused, not read as "nothing happened" ---------------


async def test_read_outs_refuse_jobs_and_handlers_the_registry_does_not_have(
    autojump_clock: trio.testing.MockClock,
) -> None:
    other = dj.Registry()

    @other.continuous("elsewhere", state=int, schedule=dj.every(MINUTE))
    async def elsewhere(ctx: dj.ContinuousContext[int]) -> None:
        return None

    async with open_harness(registry) as harness:
        await harness.continuous(half_hourly).start("a", 0)
        await harness.wait_idle()
        # A typo returned [], so `assert harness.runs("half-hourli", "a") == []` passed.
        with pytest.raises(dj.JobNotFound, match=r"'half-hourli'.*Registered .*half-hourly"):
            harness.runs("half-hourli", "a")
        with pytest.raises(dj.JobNotFound, match="'elsewhere'"):
            harness.runs(elsewhere)
        with pytest.raises(dj.JobNotFound, match=r"No debounce job named 'colect'.*collect"):
            harness.flushes("colect")
        with pytest.raises(dj.JobNotFound, match="No debounce job named 'half-hourly'"):
            harness.flushes(half_hourly)  # type: ignore[arg-type]
        with pytest.raises(dj.JobNotFound, match="'typo'"):
            harness.recorded(job="typo")
        with pytest.raises(dj.ValidationError, match="handler must be one of execute, on_event"):
            harness.runs(half_hourly, "a", handler="on-event")
        # What exists still reads as before (an instance that never ran: nothing).
        assert [r.outcome for r in harness.runs("half-hourly", "a")] == ["succeeded"]
        assert harness.runs(remind, "a", handler=None) == []
        assert harness.flushes("collect") == []
        assert len(harness.recorded(job="half-hourly")) >= 1


async def test_advance_to_a_naive_datetime_is_a_validation_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_harness(registry) as harness:
        start = harness.now()
        for bad in (datetime(2026, 1, 2), "2026-01-02T00:00:00Z", 86_400):
            with pytest.raises(dj.ValidationError, match="aware datetime"):
                await harness.advance_to(bad)  # type: ignore[arg-type]
        assert harness.now() == start  # no time passed
        await harness.advance_to(datetime(2026, 1, 2, tzinfo=UTC))
        assert harness.now() == datetime(2026, 1, 2, tzinfo=UTC)


def test_fail_next_refuses_handler_names_no_job_has() -> None:
    plan = FailurePlan()
    with pytest.raises(dj.ValidationError, match="execute, on_event, on_idle, on_error"):
        plan.fail_next("a", handler="on-event")
    with pytest.raises(dj.ValidationError, match="handler must be one of"):
        plan.pending("a", handler="on-event")
    with pytest.raises(dj.ValidationError, match="handler must be one of"):
        plan.check("a", "on-event")
    with pytest.raises(dj.ValidationError, match="job must be a job name"):
        plan.fail_next("a", job=5)  # type: ignore[arg-type]
    assert plan._planned == {}  # nothing planned by a refused call
    for handler in ("execute", "on_event", "on_idle", "on_error", "reducer", "on_exhausted"):
        plan.fail_next("a", handler=handler)
        assert plan.pending("a", handler=handler) == 1


# ---- a planned failure can name its job ----------------------------------------------------

shared_failures = FailurePlan()
two_jobs = dj.Registry()


@two_jobs.continuous("sync", state=int, schedule=dj.every(5 * MINUTE))
async def sync(ctx: dj.ContinuousContext[int]) -> None:
    shared_failures.check(ctx)
    ctx.set_state(ctx.state + 1)


@two_jobs.debounce("digest", event=str, flush_after=MINUTE)
async def digest(ctx: dj.DebounceContext[str]) -> None:
    shared_failures.check(ctx)


async def _sync_and_digest_of_user_1(harness: Harness, **aim: Any) -> tuple[list[str], list[str]]:
    """Plan one failure for "user-1" (``aim``: fail_next's job=), then let digest's
    user-1 flush (at +1 min) before sync's user-1 runs (at +5 min)."""
    await harness.continuous(sync).start("user-1", 0)
    await harness.wait_idle()
    await harness.debounce(digest).add("user-1", "hello")
    shared_failures.fail_next("user-1", **aim)
    await harness.advance(5 * MINUTE)
    return (
        [r.outcome for r in harness.runs(sync, "user-1")],
        [r.outcome for r in harness.runs(digest, "user-1")],
    )


@pytest.mark.parametrize("job", ["sync", sync])
async def test_a_failure_aimed_at_a_job_fails_only_that_jobs_instance(
    autojump_clock: trio.testing.MockClock, job: Any
) -> None:
    shared_failures.clear()
    async with open_harness(two_jobs) as harness:
        # digest's user-1 (a different instance with the same id) took it before.
        assert await _sync_and_digest_of_user_1(harness, job=job) == (
            ["succeeded", "failed"],
            ["succeeded"],
        )
    assert shared_failures.pending("user-1", job=job) == 0
    assert shared_failures.injected == [("user-1", "execute")]


async def test_a_failure_planned_for_any_job_goes_to_the_first_matching_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared_failures.clear()
    async with open_harness(two_jobs) as harness:
        assert await _sync_and_digest_of_user_1(harness) == (
            ["succeeded", "succeeded"],
            ["failed"],
        )
    # Aimed and unaimed plans are counted apart; a job's calls take the aimed ones first.
    shared_failures.fail_next("user-1", job=sync)
    shared_failures.fail_next("user-1")
    assert shared_failures.pending("user-1", job="sync") == 1
    assert shared_failures.pending("user-1") == 1
    with pytest.raises(InjectedFailure):
        shared_failures.check("user-1")  # an id alone names no job: the unaimed one
    assert shared_failures.pending("user-1") == 0
    shared_failures.check("user-1")  # the one aimed at sync waits for sync
    assert shared_failures.pending("user-1", job=sync) == 1
    shared_failures.clear()


# ---- Any in a stored type is drawn as JSON values ------------------------------------------


class Hook(pydantic.BaseModel):
    type: str
    payload: Any
    meta: dict[str, Any] = {}


class Node(pydantic.BaseModel):
    value: Any
    children: list[Node] = []


@dataclasses.dataclass
class Row:
    id: int
    data: Any = None


hooks = dj.Registry()


@hooks.debounce("hooks", event=dict[str, Any], flush_after=5 * MINUTE)
async def hooks_job(ctx: dj.DebounceContext[dict[str, Any]]) -> None:
    return None


@hooks.continuous("tree", state=Node, schedule=dj.every(MINUTE))
async def tree(ctx: dj.ContinuousContext[Node]) -> None:
    return None


DRAWS = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@DRAWS
@given(
    djst.events_for(hooks_job),
    djst.values_of(list[Any]),
    djst.values_of(Hook),
    djst.values_of(Row | None),
    djst.values_of(tuple[int, Any]),
)
def test_any_is_drawn_as_json_values(
    event: dict[str, Any], items: list[Any], hook: Hook, row: Row | None, pair: tuple[int, Any]
) -> None:
    """Drawing failed at once: hypothesis "Could not resolve typing.Any to a strategy"."""
    assert isinstance(event, dict)
    assert isinstance(items, list)
    assert isinstance(hook, Hook)
    assert row is None or isinstance(row, Row)
    assert isinstance(pair, tuple) and isinstance(pair[0], int)

    async def keep(harness: Harness) -> Any:
        await harness.debounce(hooks_job).add("i", event)
        await harness.restart()
        return await harness.debounce(hooks_job).get_state("i")

    assert run_harness(keep, hooks) == event  # stored and read back as drawn


@DRAWS
@given(djst.states_for(tree))
def test_a_recursive_model_with_any_is_drawn(node: Node) -> None:
    assert isinstance(node, Node)


@DRAWS
@given(djst.json_values())
def test_json_values_are_what_the_stores_keep(value: Any) -> None:
    check_json_value(value, "value")  # no NaN, infinity, lone surrogate, deep nesting
    assert pydantic_core.from_json(pydantic_core.to_json(value)) == value


class HooksMachine(DebounceMachine):
    """No events() override: the machine draws events of dict[str, Any]."""

    registry = hooks
    job = hooks_job
    max_advance = 10 * MINUTE


def test_a_machine_draws_events_of_a_type_with_any() -> None:
    run_state_machine_as_test(
        HooksMachine,
        settings=settings(DRAWS, max_examples=5, stateful_step_count=8),
    )


def test_a_type_that_cannot_be_drawn_says_to_give_a_strategy() -> None:
    @settings(DRAWS, max_examples=1)
    @given(djst.values_of(collections.deque[Any]))
    def draw(value: Any) -> None:
        raise AssertionError("not drawn")  # pragma: no cover

    with pytest.raises(dj.ConfigurationError, match=r"deque\[typing.Any\].*override events\(\)"):
        draw()
