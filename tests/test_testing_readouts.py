"""The harness's read-outs refuse names that would match nothing (docs/testing.md): a
misspelt record name for ``recorded``, and a ``handler=`` for ``runs`` that no job read
has, used to return [] so that ``assert harness.recorded("run_faild") == []`` passed."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio.testing

import durable_jobs as dj
from durable_jobs.testing import open_harness

registry = dj.Registry()


@registry.continuous("sync", state=int, schedule=dj.every(timedelta(hours=1)))
async def sync(ctx: dj.ContinuousContext[int]) -> None:
    raise RuntimeError("always fails")


@registry.task("nudge", event=str, state=int)
async def nudge(ctx: dj.TaskContext[int]) -> None:
    pass


@nudge.on_event
async def on_visit(event: str, ctx: dj.TaskContext[int]) -> None:
    pass


async def test_a_misspelt_record_name_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with open_harness(registry) as harness:
        await harness.continuous(sync).start("a", 0)
        await harness.wait_idle()
        assert len(harness.recorded("run_failed")) == 1
        assert harness.recorded("flushed") == []  # a real name that nothing has yet
        with pytest.raises(dj.ValidationError, match=r"'run_faild' is not the name of a record"):
            harness.recorded("run_faild")
        with pytest.raises(dj.ValidationError, match="run_failed, run_succeeded"):
            harness.recorded("run_faild", job="sync")


async def test_a_handler_no_job_read_has_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_harness(registry) as harness:
        await harness.task(nudge).send("a", "visit")
        assert [r.handler for r in harness.runs(nudge, "a", handler="on_event")] == ["on_event"]
        assert harness.runs(handler="on_event") != []  # some job of the registry has one
        with pytest.raises(dj.ValidationError, match=r"job 'sync' has no on_event handler"):
            harness.runs(sync, "a", handler="on_event")
        with pytest.raises(dj.ValidationError, match="any job of this registry has no on_idle"):
            harness.runs(handler="on_idle")
        assert harness.runs(sync, "a", handler=None) == []
