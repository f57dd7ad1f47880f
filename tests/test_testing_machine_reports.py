"""What a failing state machine tells its user (an outside review: a handler's own
exception was not named, and a shrunk step could print as code that does not run)."""

from __future__ import annotations

import datetime
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

import durable_jobs as dj
from durable_jobs.testing import FailurePlan
from durable_jobs.testing import strategies as djst
from durable_jobs.testing.machines import ContinuousMachine, ModelContext

failures = FailurePlan()
registry = dj.Registry()


@registry.continuous(
    "sync",
    state=int,
    schedule=dj.every(timedelta(minutes=5)),
    retry=dj.Retry(max_attempts=2, delay=timedelta(seconds=10), jitter=0),
)
async def sync(ctx: dj.ContinuousContext[int]) -> None:
    failures.check(ctx)
    cursors: dict[str, int] = {}
    if ctx.state == 2:
        cursors["cursor"]  # the handler's bug
    ctx.set_state(ctx.state + 1)


class SyncMachine(ContinuousMachine):
    registry = registry
    job = sync
    failures = failures

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 3)

    def model_execute(self, state: int, ctx: ModelContext) -> int:
        return state + 1


def failure_of(machine: type[Any], **options: Any) -> str:
    """The message and notes a failing machine run ends with."""
    with pytest.raises((AssertionError, ExceptionGroup)) as caught:
        run_state_machine_as_test(
            machine,
            settings=settings(deadline=None, database=None, derandomize=True, **options),
        )
    found = caught.value.exceptions if isinstance(caught.value, ExceptionGroup) else [caught.value]
    return "\n".join(f"{e}\n" + "\n".join(getattr(e, "__notes__", [])) for e in found)


def test_a_handler_that_raises_is_named_with_its_exception() -> None:
    report = failure_of(SyncMachine, max_examples=100, stateful_step_count=10)
    assert "execute of instance" in report
    assert "raised KeyError: 'cursor'" in report
    assert "no planned failure (FailurePlan) explains it" in report
    assert "value=2" in report  # the shrunk steps come with it


@pytest.mark.parametrize(
    "resolution", [timedelta(seconds=1), timedelta(minutes=10), timedelta(milliseconds=250)]
)
def test_a_shrunk_duration_prints_as_the_timedelta_that_ran(resolution: timedelta) -> None:
    ran: list[timedelta] = []

    class Steps(RuleBasedStateMachine):
        @rule(delta=djst.durations(timedelta(0), timedelta(days=2), resolution=resolution))
        def advance(self, delta: timedelta) -> None:
            ran.append(delta)
            assert delta < timedelta(hours=1)

    report = failure_of(Steps, max_examples=200)
    [step] = [line for line in report.splitlines() if line.startswith("state.advance(")]
    printed = step.removeprefix("state.advance(delta=").removesuffix(")")
    # Valid Python that means the step that failed (it read `2400 * resolution`).
    assert eval(printed, {"timedelta": timedelta, "datetime": datetime}) == ran[-1]
    assert ran[-1] >= timedelta(hours=1)


def test_a_handler_that_raises_is_shown_where_it_raised() -> None:
    """The report named the exception but not the line of the handler that raised it
    (the history keeps its type and message only): its traceback's end comes with it."""
    report = failure_of(SyncMachine, max_examples=100, stateful_step_count=10)
    assert 'cursors["cursor"]  # the handler\'s bug' in report
    assert "in sync\n" in report and "KeyError: 'cursor'" in report
