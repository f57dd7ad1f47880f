"""The runtime end to end on each store: a first look before the scenario modules."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, T, advance, names, running


class Counter(BaseModel):
    count: int
    last_run: float | None = None


def counter_registry(runs: list[tuple[str, int, Counter]]) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("counter", state=Counter, schedule=dj.every(timedelta(minutes=30)))
    async def counter(ctx: dj.ContinuousContext[Counter]) -> None:
        runs.append((ctx.instance_id, ctx.run_count, ctx.state))
        ctx.update_state(lambda s: s.model_copy(update={"count": s.count + 1}))

    return registry


async def test_a_week_of_half_hourly_runs(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """C13 The alarm runs the job and reschedules, for a week of virtual time."""
    runs: list[tuple[str, int, Counter]] = []
    records: list[dj.RecordedEvent] = []
    async with running(counter_registry(runs), store_url, records=records) as jobs:
        client = jobs.continuous("counter")
        result = await client.start("c1", Counter(count=0))
        assert result.created
        assert result.status == dj.ContinuousStatus("running", 0, T)
        await jobs.wait_idle()
        assert runs == [("c1", 1, Counter(count=0))]
        await advance(jobs, timedelta(days=7))
        status = await client.status("c1")
        assert status.run_count == 1 + 7 * 48
        assert status.next_run_at == T + timedelta(days=7, minutes=30)
        state = await client.get_state("c1")
        assert state == Counter(count=1 + 7 * 48)
    assert names(records)[:4] == ["started", "alarm_set", "run_succeeded", "state_changed"]
    assert records[2].state_before == {"count": 0, "last_run": None}


async def test_restart_picks_up_the_alarm(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """X01 Restart resumes from the alarm index."""
    runs: list[tuple[str, int, Counter]] = []
    registry = counter_registry(runs)
    clock = dj.VirtualClock(T)
    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.continuous("counter").start("c1", Counter(count=0))
        await jobs.wait_idle()
    assert len(runs) == 1
    await trio.sleep((2 * HOUR).total_seconds())  # down for two hours: three slots missed
    async with running(registry, durable_store_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert [r[1] for r in runs] == [1, 2]  # one catch-up run (misfire="run_once")
        status = await jobs.continuous("counter").status("c1")
        assert status.next_run_at == T + 2 * HOUR + 30 * MINUTE


@pytest.mark.parametrize("kind", ["continuous", "debounce", "task"])
async def test_unknown_job_names_raise(kind: str, autojump_clock: trio.testing.MockClock) -> None:
    """G08/G10/G12 Unknown names raise JobNotFound naming the kind and the name."""
    async with running(dj.Registry(), "memory://") as jobs:
        with pytest.raises(dj.JobNotFound) as info:
            getattr(jobs, kind)("nonexistent")
        assert (info.value.kind, info.value.name) == (kind, "nonexistent")
