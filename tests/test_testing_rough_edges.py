"""``durable_jobs.testing`` details a new user tripped on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_jobs as dj
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
