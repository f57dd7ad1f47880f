"""A client call runs with its own ``open_jobs``'s size limits whatever limits are in
effect in the calling task: it does not set them again only when they are the very
same (the defaults, or a call made from one of its own handlers)."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import running
from durable_jobs._domain.values import DEFAULT_LIMITS, Limits, current_limits, limits_in_effect

BIG = "x" * 100  # over 16 bytes, under the default limits


def registry(seen: list[Limits]) -> dj.Registry:
    reg = dj.Registry()

    @reg.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        pass

    @t.on_event
    async def t_event(event: str, ctx: dj.TaskContext[str]) -> None:
        seen.append(current_limits())

    return reg


async def test_default_limits_apply_even_where_other_limits_are_in_effect(
    autojump_clock: MockClock,
) -> None:
    seen: list[Limits] = []
    async with running(registry(seen), "memory://") as jobs:
        assert jobs.limits is DEFAULT_LIMITS
        with limits_in_effect(Limits(max_event_bytes=16)):
            assert (await jobs.task("t").send("a", BIG)).created
        assert (await jobs.task("t").send("b", BIG)).created
    assert seen == [DEFAULT_LIMITS, DEFAULT_LIMITS]
    assert current_limits() is DEFAULT_LIMITS


async def test_limits_of_open_jobs_apply_in_the_calling_task_and_its_handlers(
    autojump_clock: MockClock,
) -> None:
    seen: list[Limits] = []
    async with running(registry(seen), "memory://", max_event_bytes=16) as jobs:
        with pytest.raises(dj.ValidationError, match="max_event_bytes"):
            await jobs.task("t").send("a", BIG)
        assert (await jobs.task("t").send("a", "small")).created
        assert current_limits() is DEFAULT_LIMITS  # the call did not leave its limits set
    assert [limits.max_event_bytes for limits in seen] == [16]
