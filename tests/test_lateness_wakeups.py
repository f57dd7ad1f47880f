"""The scheduler's wake-ups under many sends (virtual time): a send whose alarm is
behind the next one does not wake the scheduler (at 1,000 sends/s, each woke it
for one pass of its loop), and every alarm still starts at its time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import HOUR, MINUTE, T, running


def registry(ran: list[tuple[str, datetime]], clock: dj.Clock) -> dj.Registry:
    reg = dj.Registry()

    @reg.task("alarm", event=int, state=int)
    async def alarm(ctx: dj.TaskContext[int]) -> None:
        ran.append((ctx.instance_id, clock.now()))

    @alarm.on_event
    async def schedule(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.schedule(T + timedelta(minutes=event))

    return reg


@pytest.mark.parametrize("later", [True, False], ids=["behind", "ahead"])
async def test_a_send_wakes_the_scheduler_only_for_an_alarm_ahead_of_its_next(
    store_url: str, autojump_clock: trio.testing.MockClock, later: bool
) -> None:
    clock = dj.VirtualClock(T)
    ran: list[tuple[str, datetime]] = []
    async with running(registry(ran, clock), store_url, clock=clock) as jobs:
        alarms = jobs.task("alarm")
        await alarms.send("first", 30)
        await jobs.wait_idle()
        scheduler = jobs._rt.scheduler
        before = scheduler.passes
        # Sends one after the other, the scheduler given its turn after each: their
        # alarms are behind the first one (31 to 80 minutes), or each ahead of the one
        # before (29 down to 1 minute: each wakes the scheduler, to sleep until it).
        minutes = range(31, 81) if later else range(29, 0, -1)
        for n in minutes:
            await alarms.send(f"a{n}", n)
            for _ in range(3):
                await trio.lowlevel.checkpoint()
        passes = scheduler.passes - before
        if later:
            assert passes <= 2
        else:
            assert passes >= len(minutes)
        await trio.sleep(2 * HOUR.total_seconds())
        await jobs.wait_idle()
    assert sorted(ran) == sorted(
        [("first", T + 30 * MINUTE)] + [(f"a{n}", T + n * MINUTE) for n in minutes]
    )
