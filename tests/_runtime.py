"""Helpers for runtime tests: open a registry on a store URL in virtual time.

Tests that use these take pytest-trio's ``autojump_clock`` fixture, so trio
runs on ``MockClock(autojump_threshold=0)`` and the jobs' ``VirtualClock``
follows it: hours pass in milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
import trio.testing

import durable_jobs as dj

#: The virtual clock's start: "T" in SCENARIOS.md.
T = datetime(2026, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@asynccontextmanager
async def running(
    registry: dj.Registry,
    url: str | dj.Store,
    *,
    clock: dj.Clock | None = None,
    records: list[dj.RecordedEvent] | None = None,
    **options: Any,
) -> AsyncIterator[dj.Jobs]:
    """``open_jobs`` on ``url`` with a VirtualClock starting at T (or ``clock``).

    ``records``, if given, collects every committed record (the observer hook).
    Polling is off: these tests run one process per store.
    """
    options.setdefault("poll_interval", None)
    observers = [records.append] if records is not None else []
    async with dj.open_jobs(
        registry, url, clock=clock or dj.VirtualClock(T), observers=observers, **options
    ) as jobs:
        yield jobs


async def advance(jobs: dj.Jobs, delta: timedelta) -> None:
    """Let ``delta`` of virtual time pass, then wait until everything due has run."""
    await trio.sleep(delta.total_seconds())
    await jobs.wait_idle()


def note_registry() -> dj.Registry:
    """A task job ``note`` whose ``on_event`` keeps the last event as its state."""
    registry = dj.Registry()

    @registry.task("note", event=str, state=str)
    async def note(ctx: dj.TaskContext[str]) -> None:
        pass

    @note.on_event
    async def keep(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)

    return registry


def sqlite_of_notes(path: Path, sends: Iterable[tuple[str, str]]) -> str:
    """A new SQLite store at ``path`` where :func:`note_registry`'s ``note`` was sent
    each ``(instance id, event)`` of ``sends`` in turn (in virtual time); its URL."""
    url = f"sqlite:///{path}"

    async def fill() -> None:
        async with running(note_registry(), url) as jobs:
            for instance_id, event in sends:
                await jobs.task("note").send(instance_id, event)

    trio.run(fill, clock=trio.testing.MockClock(autojump_threshold=0))
    return url


def names(records: list[dj.RecordedEvent]) -> list[str]:
    return [r.name for r in records]


def parked_job() -> tuple[dj.Registry, trio.Event, trio.Event]:
    """A continuous job ``slow`` (every hour) whose run sets ``running_now`` and then waits
    for ``release`` before it adds 1 to its state: a run held in flight by the test.
    Returns (registry, running_now, release)."""
    registry = dj.Registry()
    running_now = trio.Event()
    release = trio.Event()

    @registry.continuous("slow", state=int, schedule=dj.every(HOUR))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        running_now.set()
        await release.wait()
        ctx.set_state(ctx.state + 1)

    return registry, running_now, release
