"""A client call runs with its own ``open_jobs``'s size limits whatever limits are in
effect in the calling task: it does not set them again only when they are the very
same (the defaults, or a call made from one of its own handlers)."""

from __future__ import annotations

from datetime import timedelta

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


async def test_a_state_built_by_user_code_over_the_limit_is_a_handler_error(
    autojump_clock: MockClock,
) -> None:
    """The caller's input over a limit is a ValidationError; a state the job's own code
    built (a debounce reducer's result, a task on_event's state) is that code's
    failure: HandlerError caused by the ValidationError, and the state is not kept."""
    reg = dj.Registry()

    @reg.debounce("d", event=str, state=str, flush_after=timedelta(minutes=1))
    async def d(ctx: dj.DebounceContext[str]) -> None:
        pass

    @d.on_event
    def grow(ctx: dj.DebounceEventContext[str, str]) -> str:
        return ctx.event * 10

    @reg.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        pass

    @t.on_event
    async def t_event(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event * 10)

    async with running(reg, "memory://", max_state_bytes=64) as jobs:
        with pytest.raises(dj.HandlerError) as raised:
            await jobs.debounce(d).add("a", "x" * 10)
        assert isinstance(raised.value.__cause__, dj.ValidationError)
        assert "max_state_bytes" in str(raised.value.__cause__)
        assert (await jobs.debounce(d).status("a")).status == "not_found"
        assert (await jobs.debounce(d).add("a", "x")).event_count == 1  # under it: fine
        with pytest.raises(dj.HandlerError) as raised:
            await jobs.task(t).send("b", "x" * 10)
        assert isinstance(raised.value.__cause__, dj.ValidationError)
        assert (await jobs.task(t).get_state("b")).state is None  # type: ignore[union-attr]
