"""The warning a ``ctx.execute`` statement that fails at the commit logs is about a
run, on real SQLite files and the real Postgres server: like a handler failure's, it
carries ``dj_run_count`` and ``dj_attempt`` besides ``dj_kind``, ``dj_job`` and
``dj_instance_id``, for every kind of job.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import SECOND, advance, running

pytestmark = pytest.mark.filterwarnings("error")

BAD = "INSERT INTO no_such_table VALUES (1)"
STATEMENT_FAILED = "A statement a handler of"


def _statement_failures(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The ``dj_`` fields of each statement-failure warning, in order."""
    return [
        {k: v for k, v in vars(r).items() if k.startswith("dj_")}
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(STATEMENT_FAILED)
    ]


async def test_a_continuous_run_and_its_retry_are_told_apart(
    durable_store_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    registry = dj.Registry()

    @registry.continuous(
        "c",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(2, delay=SECOND, jitter=0),
    )
    async def run(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(BAD)

    async with running(registry, durable_store_url) as jobs:
        await jobs.continuous(run).start("x", 0)
        await advance(jobs, 10 * SECOND)
    fields = {"dj_kind": "continuous", "dj_job": "c", "dj_instance_id": "x", "dj_run_count": 1}
    assert _statement_failures(caplog) == [
        {**fields, "dj_attempt": 1},
        {**fields, "dj_attempt": 2},
    ]


async def test_a_debounce_flush_and_a_reducer(
    durable_store_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    registry = dj.Registry()

    @registry.debounce("d", event=int, state=int, flush_after=SECOND)
    async def flush(ctx: dj.DebounceContext[int]) -> None:
        ctx.execute(BAD)

    @flush.on_event
    async def reduce(ctx: dj.DebounceEventContext[int, int]) -> int:
        if ctx.event < 0:
            ctx.execute(BAD)
        return ctx.event

    async with running(registry, durable_store_url) as jobs:
        await jobs.debounce(flush).add("z", 1)
        await advance(jobs, 5 * SECOND)
        with pytest.raises(dj.HandlerError):
            await jobs.debounce(flush).add("r", -1)
    fields = {"dj_kind": "debounce", "dj_job": "d", "dj_run_count": 1, "dj_attempt": 1}
    assert _statement_failures(caplog) == [
        {**fields, "dj_instance_id": "z"},
        # The reducer's, as its own failure would be: the flush its batch would be.
        {**fields, "dj_instance_id": "r"},
    ]


async def test_a_task_chain_names_the_handler_that_recorded_it(
    durable_store_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(BAD)

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        pass

    async with running(registry, durable_store_url) as jobs:
        await jobs.task(run).send("y", 1)
        for _ in range(2):
            with pytest.raises(dj.HandlerError):
                await jobs.task(run).trigger("y")
    fields = {"dj_kind": "task", "dj_job": "t", "dj_instance_id": "y", "dj_attempt": 1}
    assert _statement_failures(caplog) == [
        {**fields, "dj_run_count": 1},
        {**fields, "dj_run_count": 2},
    ]
