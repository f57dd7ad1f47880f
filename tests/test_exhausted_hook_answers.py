"""What an ``on_exhausted`` hook returns, on a real SQLite file: an answer the job's
kind does not take pauses the instance, and is logged (WARNING, with the run's
``dj_*`` fields) naming the answers that kind does take. ``"continue"`` is one of
them only for continuous jobs: a debounce batch is never dropped, silently or not.
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

HOOK_LOG = "The on_exhausted hook of"


def _hook_warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.getMessage(), {k: v for k, v in vars(r).items() if k.startswith("dj_")})
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(HOOK_LOG)
    ]


def _retry(answer: object) -> dj.Retry:
    def on_exhausted(error: BaseException, ctx: Any) -> Any:
        return answer

    return dj.Retry(2, delay=SECOND, jitter=0, on_exhausted=on_exhausted)


def _debounce(answer: object) -> dj.Registry:
    registry = dj.Registry()

    @registry.debounce("d", event=int, flush_after=SECOND, retry=_retry(answer))
    async def flush(ctx: dj.DebounceContext[int]) -> None:
        raise RuntimeError("flush failed")

    return registry


DEBOUNCE_FIELDS = {
    "dj_kind": "debounce",
    "dj_job": "d",
    "dj_instance_id": "x",
    "dj_run_count": 1,
    "dj_attempt": 2,
}


@pytest.mark.parametrize("answer", ["continue", "bogus"])
async def test_a_debounce_hook_answer_it_does_not_take_pauses_and_says_why(
    answer: str,
    sqlite_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    async with running(_debounce(answer), sqlite_url) as jobs:
        await jobs.debounce("d").add("x", 1)
        await advance(jobs, 10 * SECOND)
        status = await jobs.debounce("d").status("x")
    assert status.status == "failed"  # paused: the batch is kept
    ((message, fields),) = _hook_warnings(caplog)
    assert fields == DEBOUNCE_FIELDS
    assert f"returned {answer!r} (expected 'terminate', 'pause' or None" in message
    assert message.endswith("the instance is paused")
    if answer == "continue":
        assert "'continue' is for continuous jobs" in message


async def test_a_continuous_hook_answer_it_does_not_take_lists_continue(
    sqlite_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    registry = dj.Registry()

    @registry.continuous(
        "c", state=int, schedule=dj.every(timedelta(hours=1)), retry=_retry("bogus")
    )
    async def run(ctx: dj.ContinuousContext[int]) -> None:
        raise RuntimeError("run failed")

    async with running(registry, sqlite_url) as jobs:
        await jobs.continuous(run).start("y", 0)
        await advance(jobs, 10 * SECOND)
    ((message, fields),) = _hook_warnings(caplog)
    assert "(expected 'terminate', 'pause', 'continue' or None)" in message
    assert fields == {
        **DEBOUNCE_FIELDS,
        "dj_kind": "continuous",
        "dj_job": "c",
        "dj_instance_id": "y",
    }


async def test_a_hook_statement_failing_is_logged_with_the_run(
    sqlite_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    registry = dj.Registry()

    def on_exhausted(error: BaseException, ctx: dj.ContinuousContext[int]) -> str:
        ctx.execute("INSERT INTO no_such_table VALUES (1)")
        return "continue"

    @registry.continuous(
        "c",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(2, delay=SECOND, jitter=0, on_exhausted=on_exhausted),
    )
    async def run(ctx: dj.ContinuousContext[int]) -> None:
        raise RuntimeError("run failed")

    async with running(registry, sqlite_url) as jobs:
        await jobs.continuous(run).start("y", 0)
        await advance(jobs, 10 * SECOND)
    hook = [
        {k: v for k, v in vars(r).items() if k.startswith("dj_")}
        for r in caplog.records
        if r.getMessage().startswith("A statement of the on_exhausted hook")
    ]
    assert hook == [
        {**DEBOUNCE_FIELDS, "dj_kind": "continuous", "dj_job": "c", "dj_instance_id": "y"}
    ]
