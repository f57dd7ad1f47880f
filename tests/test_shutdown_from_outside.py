"""Shutdown however it is asked for: ``serve`` cancelled, the block around
``open_jobs`` cancelled, or the block left while client calls run handlers in
their callers' tasks.

Runs in flight get ``shutdown_grace`` to finish and commit, then are cancelled;
a client call whose handler is still going when the grace runs out is cancelled
too and raises ``RuntimeClosed`` (``interrupted``), having committed nothing,
instead of outliving the runtime (its commit then had no writer left: the call
hung, deaf to cancellation).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import pytest
import trio

import durable_jobs as dj
from _runtime import SECOND, T

GRACE = timedelta(seconds=3)


def slow_registry(clock: dj.VirtualClock, log: list[tuple[str, datetime]]) -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("slow", state=int, schedule=dj.every(timedelta(hours=1)))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        log.append(("run started", clock.now()))
        await trio.sleep(1)
        ctx.set_state(ctx.state + 1)
        log.append(("run returned", clock.now()))

    @reg.task("t", event=float, state=float)
    async def t(ctx: dj.TaskContext[float]) -> None: ...

    @t.on_event
    async def on_event(seconds: float, ctx: dj.TaskContext[float]) -> None:
        log.append(("on_event started", clock.now()))
        await trio.sleep(seconds)
        ctx.set_state(seconds)
        log.append(("on_event returned", clock.now()))

    return reg


@pytest.mark.parametrize("how", ["serve cancelled", "enclosing scope cancelled"])
async def test_a_run_in_flight_gets_the_grace_when_cancelled_from_outside(
    how: str, durable_store_url: str, autojump_clock: trio.abc.Clock
) -> None:
    clock = dj.VirtualClock(T)
    log: list[tuple[str, datetime]] = []
    reg = slow_registry(clock, log)
    options: dict[str, Any] = {"clock": clock, "poll_interval": None, "shutdown_grace": GRACE}

    async def started_run(jobs: dj.Jobs) -> None:
        await jobs.continuous("slow").start("s", 0)
        while not log:
            await trio.sleep(0.1)

    if how == "serve cancelled":
        async with trio.open_nursery() as service:
            jobs = await service.start(
                functools.partial(dj.serve, **options), reg, durable_store_url
            )
            await started_run(jobs)
            service.cancel_scope.cancel()
    else:
        with trio.CancelScope() as outside:
            async with dj.open_jobs(reg, durable_store_url, **options) as jobs:
                await started_run(jobs)
                outside.cancel()
                await trio.sleep_forever()
    # The run (1 s) finished within the 3 s grace, and committed.
    assert [what for what, _ in log] == ["run started", "run returned"]
    async with dj.open_jobs(reg, durable_store_url, clock=clock, run_alarms=True) as jobs:
        assert await jobs.continuous("slow").get_state("s") == 1
        status = await jobs.continuous("slow").status("s")
        assert status.run_count == 1


async def test_a_client_call_past_the_grace_is_cancelled_and_commits_nothing(
    durable_store_url: str, autojump_clock: trio.abc.Clock
) -> None:
    clock = dj.VirtualClock(T)
    log: list[tuple[str, datetime]] = []
    reg = slow_registry(clock, log)
    outcome: list[BaseException | object] = []

    async def request(jobs: dj.Jobs, seconds: float) -> None:
        try:
            outcome.append(await jobs.task("t").send("a", seconds))
        except dj.DurableJobsError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as app:
        async with trio.open_nursery() as service:
            jobs = await service.start(
                functools.partial(dj.serve, clock=clock, poll_interval=None, shutdown_grace=GRACE),
                reg,
                durable_store_url,
            )
            app.start_soon(request, jobs, 10.0)  # needs 10 s: more than the grace
            await trio.sleep(0.5)
            service.cancel_scope.cancel()
        stopped = trio.current_time()
    (error,) = outcome
    assert isinstance(error, dj.RuntimeClosed)
    assert error.interrupted and error.call == "jobs.task('t').send()"
    assert "did not finish within the shutdown grace" in str(error)
    assert [what for what, _ in log] == ["on_event started"]  # cancelled, never returned
    assert stopped == pytest.approx(0.5 + GRACE.total_seconds(), abs=0.5)
    async with dj.open_jobs(reg, durable_store_url, clock=clock) as jobs:
        status = await jobs.task("t").status("a")
    assert status.status == "not_found"  # nothing of the call was committed


async def test_a_client_call_within_the_grace_commits(
    durable_store_url: str, autojump_clock: trio.abc.Clock
) -> None:
    clock = dj.VirtualClock(T)
    log: list[tuple[str, datetime]] = []
    reg = slow_registry(clock, log)
    outcome: list[object] = []
    async with (
        trio.open_nursery() as app,
        dj.open_jobs(
            reg, durable_store_url, clock=clock, poll_interval=None, shutdown_grace=GRACE
        ) as jobs,
    ):

        async def request() -> None:
            outcome.append(await jobs.task("t").send("a", 1.0))

        app.start_soon(request)
        await trio.sleep(0.5)
    assert outcome == [dj.SendResult(created=True, scheduled_at=None, duplicate=False)]
    async with dj.open_jobs(reg, durable_store_url, clock=clock) as jobs:
        assert await jobs.task("t").get_state("a") == dj.TaskState(1.0, None)
    assert [when for _, when in log] == [T, T + SECOND]


def shielded_registry(log: list[str], shielded: list[bool]) -> dj.Registry:
    """A continuous job and a task's ``on_event`` that shield themselves from
    cancellation for 10 s (while ``shielded[0]``) before they change the state."""
    reg = dj.Registry()

    async def stubborn(what: str) -> None:
        log.append(f"{what} started")
        if shielded[0]:
            with trio.CancelScope(shield=True):
                await trio.sleep(10)
        log.append(f"{what} returned")

    @reg.continuous("stubborn", state=int, schedule=dj.every(timedelta(hours=1)))
    async def run(ctx: dj.ContinuousContext[int]) -> None:
        await stubborn("run")
        ctx.set_state(ctx.state + 1)

    @reg.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None: ...

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        await stubborn("on_event")
        ctx.set_state(event)

    return reg


@pytest.mark.parametrize("what", ["run", "on_event"])
async def test_a_handler_shielded_past_the_grace_commits_nothing(
    what: str,
    durable_store_url: str,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown says the run (or client call) still going after the grace is cancelled
    and commits nothing: so it is, even when its handler shields itself from the
    cancellation and returns later (it used to commit then; the log said otherwise)."""
    clock = dj.VirtualClock(T)
    log: list[str] = []
    shielded = [True]
    reg = shielded_registry(log, shielded)
    outcome: list[object] = []

    async def send(jobs: dj.Jobs) -> None:
        try:
            outcome.append(await jobs.task("t").send("a", 5))
        except dj.RuntimeClosed as exc:
            outcome.append(exc)

    with caplog.at_level("WARNING", logger="durable_jobs.runtime"):
        async with trio.open_nursery() as app:
            async with trio.open_nursery() as service:
                jobs = await service.start(
                    functools.partial(
                        dj.serve, clock=clock, poll_interval=None, shutdown_grace=GRACE
                    ),
                    reg,
                    durable_store_url,
                )
                if what == "run":
                    await jobs.continuous("stubborn").start("s", 0)
                else:
                    app.start_soon(send, jobs)
                await trio.sleep(0.5)
                assert log == [f"{what} started"]
                service.cancel_scope.cancel()
            stopped = trio.current_time()
    # Shutdown waited for the shielded handler (it cannot stop it), and says so (below).
    assert log == [f"{what} started", f"{what} returned"]
    assert stopped == pytest.approx(10, abs=0.5)
    shielded[0] = False
    async with dj.open_jobs(reg, durable_store_url, clock=clock, poll_interval=None) as jobs:
        await jobs.wait_idle()
        if what == "run":
            # Nothing of the cancelled run was committed: it ran again after the start.
            assert log[2:] == ["run started", "run returned"]
            assert await jobs.continuous("stubborn").get_state("s") == 1
            assert (await jobs.continuous("stubborn").status("s")).run_count == 1
        else:
            (error,) = outcome
            assert isinstance(error, dj.RuntimeClosed)
            assert error.interrupted
            assert (await jobs.task("t").status("a")).status == "not_found"
    messages = [r.getMessage() for r in caplog.records]
    runs, calls = (1, 0) if what == "run" else (0, 1)
    assert any(
        m.startswith(f"{runs} run(s) and {calls} client call(s) still in flight after")
        and "cancelled: nothing of theirs is committed" in m
        for m in messages
    ), messages
    assert any(
        m.startswith(f"Shutdown waits for {runs} run(s) and {calls} client call(s) whose")
        for m in messages
    ), messages
