"""Model-based tests: each job kind against the reference model, on every store.

The machines of ``durable_jobs.testing.machines`` drive the jobs of
``_prop_jobs.py`` with random interleavings of client calls, time advances,
injected handler failures and restarts, and compare every observable (status,
state, the runs and flushes in the log, the clock) with the model after each
step.

Budget (default profile, 2 cores): memory 80 examples x 30 steps per job
configuration, SQLite 25 x 25, Postgres 8 x 20: the whole file (37 tests) runs in
about 70 s. ``HYPOTHESIS_PROFILE=thorough`` multiplies the examples (the
profile's ``max_examples`` over the default's 100) and doubles the steps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _prop_jobs import (
    batch_3,
    continue_after,
    cron_paris,
    every_5m,
    failures,
    hourly_skip,
    latest,
    no_retry,
    plain,
    registry,
    reminder,
    sliding_capped,
    sliding_open,
    terminate_on_exhaust,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import durable_jobs as dj
from durable_jobs.testing.machines import (
    TERMINATE,
    UNCHANGED,
    ContinuousMachine,
    DebounceMachine,
    JobMachine,
    ModelContext,
    TaskMachine,
    TaskStep,
    TaskView,
)

# ---- the machines ------------------------------------------------------------------------


class EveryMachine(ContinuousMachine):
    registry = registry
    job = every_5m
    failures = failures

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.integers(-1000, 1000)

    def model_execute(self, state: int, ctx: ModelContext) -> int:
        return state + ctx.run_count


class SkipMachine(ContinuousMachine):
    registry = registry
    job = hourly_skip
    failures = failures

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.lists(st.integers(0, 9), max_size=3)

    def model_execute(self, state: list[int], ctx: ModelContext) -> list[int]:
        return [*state[-3:], ctx.attempt]


class CronMachine(ContinuousMachine):
    registry = registry
    job = cron_paris
    failures = failures
    start = datetime(2026, 3, 28, 23, tzinfo=UTC)  # Paris moves to summer time that night

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 6)

    def model_execute(self, state: int, ctx: ModelContext) -> Any:
        return TERMINATE if state >= 5 else state + 1


class NoRetryMachine(ContinuousMachine):
    registry = registry
    job = no_retry
    failures = failures

    def model_execute(self, state: str, ctx: ModelContext) -> str:
        return f"{state[:8]}{ctx.run_count % 10}"


class ContinueMachine(ContinuousMachine):
    registry = registry
    job = continue_after
    failures = failures

    def inputs(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 999)

    def model_execute(self, state: int, ctx: ModelContext) -> int:
        return state * 2 % 1000


class BatchMachine(DebounceMachine):
    registry = registry
    job = batch_3
    failures = failures

    def events(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 99)

    def model_reduce(self, state: list[int] | None, event: int, event_count: int) -> list[int]:
        return [*(state or []), event]


class LatestMachine(DebounceMachine):
    registry = registry
    job = latest
    failures = failures
    idempotency_keys = ("k",)


class TerminatingMachine(DebounceMachine):
    registry = registry
    job = terminate_on_exhaust
    failures = failures

    def events(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 9)

    def model_reduce(self, state: int | None, event: int, event_count: int) -> int:
        return (state or 0) + 1


class SlidingCappedMachine(DebounceMachine):
    registry = registry
    job = sliding_capped
    failures = failures

    def events(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 99)

    def model_reduce(self, state: list[int] | None, event: int, event_count: int) -> list[int]:
        return [*(state or []), event]


class SlidingOpenMachine(DebounceMachine):
    registry = registry
    job = sliding_open
    failures = failures
    idempotency_keys = ("k",)


class ReminderMachine(TaskMachine):
    registry = registry
    job = reminder
    failures = failures
    max_advance = timedelta(minutes=15)

    def events(self) -> st.SearchStrategy[Any]:
        return st.integers(-2, 1300)

    def model_on_event(self, event: int, view: TaskView) -> TaskStep:
        if event < 0:
            return TaskStep(schedule=None)
        if event == 0:
            return TaskStep(terminate=True)
        return TaskStep(state=(view.state or 0) + event, schedule=timedelta(seconds=event % 600))

    def model_execute(self, view: TaskView) -> TaskStep:
        state = (view.state or 0) + 100
        return TaskStep(state=state, schedule=timedelta(minutes=7) if state < 500 else UNCHANGED)

    def model_on_idle(self, view: TaskView) -> TaskStep:
        return TaskStep(terminate=(view.state or 0) > 1000)

    def model_on_error(self, failed_handler: str, view: TaskView) -> TaskStep:
        return TaskStep(schedule=timedelta(minutes=1))


class PlainMachine(TaskMachine):
    registry = registry
    job = plain
    failures = failures
    max_advance = timedelta(minutes=5)

    def model_on_event(self, event: str, view: TaskView) -> TaskStep:
        return TaskStep(state=event[:5], schedule=timedelta(minutes=len(event) % 4))

    def model_execute(self, view: TaskView) -> TaskStep:
        return TaskStep(state="ran")


MACHINES: list[type[JobMachine]] = [
    EveryMachine,
    SkipMachine,
    CronMachine,
    NoRetryMachine,
    ContinueMachine,
    BatchMachine,
    LatestMachine,
    TerminatingMachine,
    SlidingCappedMachine,
    SlidingOpenMachine,
    ReminderMachine,
    PlainMachine,
]

# ---- budgets -----------------------------------------------------------------------------

#: (examples, steps) per store in the default profile.
BUDGETS = {"memory": (80, 30), "sqlite": (25, 25), "postgres": (8, 20)}


def _budget(store: str) -> settings:
    examples, steps = BUDGETS[store]
    current = settings()
    scale = max(1, current.max_examples // 100)  # thorough: 2000 // 100 = 20x
    return settings(
        current,
        max_examples=examples * scale,
        stateful_step_count=steps * (2 if scale > 1 else 1),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _run(machine: type[JobMachine], store: str, url: str) -> None:
    subclass = type(machine.__name__, (machine,), {"store": url})
    run_state_machine_as_test(subclass, settings=_budget(store))


IDS = [m.__name__.removesuffix("Machine") for m in MACHINES]


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_memory(machine: type[JobMachine]) -> None:
    _run(machine, "memory", "memory://")


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_sqlite(machine: type[JobMachine]) -> None:
    _run(machine, "sqlite", "sqlite:///{tmp}/jobs.db")


@pytest.mark.postgres
@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_postgres(machine: type[JobMachine], postgres_url: str, pg_schema: str) -> None:
    from conftest import drop_schema

    url = f"{postgres_url}?schema={pg_schema}_{{unique}}"
    try:
        _run(machine, "postgres", url)
    finally:
        for schema in _schemas_like(postgres_url, pg_schema):
            drop_schema(postgres_url, schema)


def _schemas_like(postgres_url: str, prefix: str) -> list[str]:
    from conftest import connect_postgres

    with connect_postgres(postgres_url) as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (f"{prefix}\\_%",),
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_jobs_are_the_registry_s() -> None:
    assert registry.names("continuous") == sorted(
        j.name for j in (every_5m, hourly_skip, cron_paris, no_retry, continue_after)
    )
    assert isinstance(latest, dj.DebounceJob)
