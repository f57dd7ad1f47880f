"""Sliding debounce windows, by property, on memory, SQLite and Postgres.

A random stream of adds (random gaps, a random window from
``durable_jobs.testing.strategies.debounce_windows``) runs in virtual time:

* with ``window="sliding"``, nothing flushes while the adds keep arriving less
  than ``flush_after`` apart, until ``max_wait`` after a batch's first event;
* every batch flushes exactly at its committed alarm (the ``will_flush_at`` of
  the batch's last add), for the reason that set it, with all of its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from _support import fresh_postgres_url, fresh_sqlite_url, run_virtual, slow_examples
from hypothesis import given
from hypothesis import strategies as st

import durable_jobs as dj
from durable_jobs.testing import strategies as djst

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FLUSH_AFTER = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Flush:
    events: list[int]
    reason: str
    at: datetime


def gaps() -> st.SearchStrategy[list[timedelta]]:
    """Gaps between adds: mostly shorter than flush_after (the window keeps sliding)."""
    short = djst.durations(timedelta(0), FLUSH_AFTER - SECOND)
    long = djst.durations(FLUSH_AFTER, 3 * FLUSH_AFTER)
    return st.lists(st.one_of(short, short, short, long), min_size=1, max_size=25)


def expected_flushes(
    gap_list: list[timedelta], window: str, max_wait: timedelta | None
) -> list[Flush]:
    """The rule itself: a batch opened at ``s`` whose latest event came at ``t`` is due
    at ``s + flush_after`` (fixed) or ``min(t + flush_after, s + max_wait)`` (sliding)."""
    flushes: list[Flush] = []
    now = T0
    events: list[int] = []
    start = last = now

    def due() -> tuple[datetime, str]:
        if window == "fixed":
            return start + FLUSH_AFTER, "flush_after"
        quiet = last + FLUSH_AFTER
        if max_wait is not None and start + max_wait < quiet:
            return start + max_wait, "max_wait"
        return quiet, "flush_after"

    for n, gap in enumerate(gap_list):
        now += gap
        if events and due()[0] <= now:  # flushed before this add
            at, reason = due()
            flushes.append(Flush(events, reason, at))
            events = []
        if not events:
            start = now
        events.append(n)
        last = now
    if events:
        at, reason = due()
        flushes.append(Flush(events, reason, at))
    return flushes


async def run_stream(
    url: str, gap_list: list[timedelta], options: dict[str, Any]
) -> tuple[list[Flush], list[dj.AddResult], list[datetime]]:
    registry = dj.Registry()
    clock = dj.VirtualClock(T0)
    seen: list[Flush] = []

    @registry.debounce(
        "stream",
        event=int,
        state=list[int],
        flush_after=FLUSH_AFTER,
        window=options["window"],
        max_wait=options.get("max_wait"),
    )
    async def stream(ctx: dj.DebounceContext[list[int]]) -> None:
        seen.append(Flush(list(ctx.state), ctx.flush_reason, clock.now()))

    @stream.on_event
    def collect(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
        return [*(ctx.state or []), ctx.event]

    results: list[dj.AddResult] = []
    times: list[datetime] = []
    async with dj.open_jobs(registry, url, clock=clock, poll_interval=None) as jobs:
        client = jobs.debounce(stream)
        for n, gap in enumerate(gap_list):
            await trio.sleep(gap.total_seconds())
            await jobs.wait_idle()
            times.append(clock.now())
            results.append(await client.add("s", n))
        await trio.sleep(timedelta(hours=2).total_seconds())
        await jobs.wait_idle()
    return seen, results, times


def check(url: str, gap_list: list[timedelta], options: dict[str, Any]) -> None:
    seen, results, times = run_virtual(lambda: run_stream(url, gap_list, options))
    window = options["window"]
    max_wait = options.get("max_wait")
    assert seen == expected_flushes(gap_list, window, max_wait)
    # Every batch flushed at the alarm its last add committed.
    last_of_batch = {flush.events[-1]: flush for flush in seen}
    for n, result in enumerate(results):
        assert not result.duplicate
        if n in last_of_batch:
            assert result.will_flush_at == last_of_batch[n].at
    if window == "sliding":
        # No flush while adds keep coming less than flush_after apart, until max_wait.
        for flush in seen:
            first = times[flush.events[0]]
            assert flush.at >= times[flush.events[-1]] + FLUSH_AFTER or (
                max_wait is not None and flush.at == first + max_wait
            )


def windows() -> st.SearchStrategy[dict[str, Any]]:
    return djst.debounce_windows(FLUSH_AFTER, max_factor=5)


@slow_examples(60)
@given(gap_list=gaps(), options=windows())
def test_memory(gap_list: list[timedelta], options: dict[str, Any]) -> None:
    check("memory://", gap_list, options)


@slow_examples(12)
@given(gap_list=gaps(), options=windows())
def test_sqlite(gap_list: list[timedelta], options: dict[str, Any]) -> None:
    with fresh_sqlite_url() as url:
        check(url, gap_list, options)


@pytest.mark.postgres
@slow_examples(5)
@given(gap_list=gaps(), options=windows())
def test_postgres(gap_list: list[timedelta], options: dict[str, Any], postgres_url: str) -> None:
    with fresh_postgres_url(postgres_url) as url:
        check(url, gap_list, options)


def test_the_strategy_generates_both_windows() -> None:
    """``debounce_windows`` yields fixed and sliding options, valid for the registry."""
    found: set[tuple[str, bool]] = set()

    @slow_examples(200)
    @given(options=windows())
    def collect(options: dict[str, Any]) -> None:
        registry = dj.Registry()

        @registry.debounce("d", event=int, flush_after=FLUSH_AFTER, **options)
        async def d(ctx: dj.DebounceContext[int]) -> None: ...

        found.add((options["window"], options.get("max_wait") is not None))

    collect()
    assert found == {("fixed", False), ("sliding", False), ("sliding", True)}
