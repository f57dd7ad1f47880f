"""Jobs that the model-based property tests drive (test_prop_models.py).

One registry holds a job per interesting configuration: schedules, retry
policies (with and without jitter, each ``on_exhausted``), misfire
policies, debounce windows with and without ``max_events`` and a reducer,
and a task job with every optional handler. Each handler first asks the
module's :class:`FailurePlan` whether to fail.
"""

from __future__ import annotations

from datetime import timedelta

import durable_jobs as dj
from durable_jobs.testing import FailurePlan

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

failures = FailurePlan()
registry = dj.Registry()


# ---- continuous --------------------------------------------------------------------------


@registry.continuous(
    "every-5m",
    state=int,
    schedule=dj.every(5 * MINUTE),
    retry=dj.Retry(max_attempts=3, delay=dj.Backoff.constant(30 * SECOND), jitter=0),
)
async def every_5m(ctx: dj.ContinuousContext[int]) -> None:
    failures.check(ctx)
    ctx.set_state(ctx.state + ctx.run_count)


@registry.continuous(
    "hourly-skip",
    state=list[int],
    schedule=dj.every(timedelta(hours=1)),
    start_immediately=False,
    misfire="skip",
    retry=dj.Retry(
        max_attempts=4,
        delay=dj.Backoff.exponential(base=10 * SECOND, factor=2, max=MINUTE),
        jitter=0.5,
        max_duration=2 * MINUTE,
        on_exhausted="pause",
    ),
)
async def hourly_skip(ctx: dj.ContinuousContext[list[int]]) -> None:
    failures.check(ctx)
    ctx.update_state(lambda seen: [*seen[-3:], ctx.attempt])


@registry.continuous(
    "cron-paris",
    state=int,
    schedule=dj.cron("*/20 * * * *", tz="Europe/Paris"),
    retry=dj.Retry(max_attempts=2, delay=dj.Backoff.linear(MINUTE, MINUTE), jitter=0.1),
)
async def cron_paris(ctx: dj.ContinuousContext[int]) -> None:
    failures.check(ctx)
    if ctx.state >= 5:
        ctx.terminate("enough")
    else:
        ctx.set_state(ctx.state + 1)


@registry.continuous(
    "no-retry",
    state=str,
    schedule=dj.every(10 * MINUTE),
)
async def no_retry(ctx: dj.ContinuousContext[str]) -> None:
    failures.check(ctx)
    ctx.set_state(f"{ctx.state[:8]}{ctx.run_count % 10}")


@registry.continuous(
    "continue-after",
    state=int,
    schedule=dj.every(2 * MINUTE),
    retry=dj.Retry(
        max_attempts=2, delay=dj.Backoff.constant(45 * SECOND), jitter=0, on_exhausted="continue"
    ),
)
async def continue_after(ctx: dj.ContinuousContext[int]) -> None:
    failures.check(ctx)
    ctx.set_state(ctx.state * 2 % 1000)


# ---- debounce ----------------------------------------------------------------------------


@registry.debounce(
    "batch-3",
    event=int,
    state=list[int],
    flush_after=MINUTE,
    max_events=3,
    retry=dj.Retry(
        max_attempts=2, delay=dj.Backoff.constant(20 * SECOND), jitter=0, on_exhausted="pause"
    ),
    idempotency_window=timedelta(minutes=10),
)
async def batch_3(ctx: dj.DebounceContext[list[int]]) -> None:
    failures.check(ctx)


@batch_3.on_event
def collect(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
    return [*(ctx.state or []), ctx.event]


@registry.debounce("latest", event=str, flush_after=30 * SECOND)
async def latest(ctx: dj.DebounceContext[str]) -> None:
    failures.check(ctx)


@registry.debounce(
    "terminate-on-exhaust",
    event=int,
    state=int,
    flush_after=2 * MINUTE,
    max_events=5,
    retry=dj.Retry(
        max_attempts=3,
        delay=dj.Backoff.exponential(base=5 * SECOND, factor=3, max=MINUTE),
        jitter=0.3,
    ),
    idempotency_window=timedelta(minutes=3),
)
async def terminate_on_exhaust(ctx: dj.DebounceContext[int]) -> None:
    failures.check(ctx)


@terminate_on_exhaust.on_event
async def count_events(ctx: dj.DebounceEventContext[int, int]) -> int:
    return (ctx.state or 0) + 1


@registry.debounce(
    "sliding-capped",
    event=int,
    state=list[int],
    flush_after=MINUTE,
    window="sliding",
    max_wait=3 * MINUTE,
    max_events=6,
    retry=dj.Retry(
        max_attempts=2, delay=dj.Backoff.constant(20 * SECOND), jitter=0, on_exhausted="pause"
    ),
    idempotency_window=timedelta(minutes=10),
)
async def sliding_capped(ctx: dj.DebounceContext[list[int]]) -> None:
    failures.check(ctx)


@sliding_capped.on_event
def collect_sliding(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
    return [*(ctx.state or []), ctx.event]


@registry.debounce("sliding-open", event=str, flush_after=30 * SECOND, window="sliding")
async def sliding_open(ctx: dj.DebounceContext[str]) -> None:
    failures.check(ctx)


# ---- task --------------------------------------------------------------------------------


@registry.task("reminder", event=int, state=int, idempotency_window=timedelta(minutes=30))
async def reminder(ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "execute")
    ctx.update_state(lambda n: (n or 0) + 100)
    if (ctx.state or 0) < 500:
        ctx.schedule(timedelta(minutes=7))


@reminder.on_event
async def on_number(event: int, ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "on_event")
    if event < 0:
        ctx.cancel_schedule()
    elif event == 0:
        ctx.terminate("zero")
    else:
        ctx.set_state((ctx.state or 0) + event)
        ctx.schedule(timedelta(seconds=event % 600))


@reminder.on_idle
async def idle_reminder(ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "on_idle")
    if (ctx.state or 0) > 1000:
        ctx.terminate("big")


@reminder.on_error
async def reminder_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "on_error")
    ctx.schedule(timedelta(minutes=1))


@registry.task("plain", event=str, state=str)
async def plain(ctx: dj.TaskContext[str]) -> None:
    failures.check(ctx, "execute")
    ctx.set_state("ran")


@plain.on_event
async def plain_event(event: str, ctx: dj.TaskContext[str]) -> None:
    failures.check(ctx, "on_event")
    ctx.set_state(event[:5])
    ctx.schedule(timedelta(minutes=len(event) % 4))
