"""A store filled by the real runtime in virtual time, for the history API and CLI tests.

:func:`fill` runs one story on a store URL (it must run under trio's
``MockClock(autojump_threshold=0)``, e.g. with pytest-trio's ``autojump_clock``):

- ``continuous/sync/acct-ok``: runs every hour from T (T, T+1h): ``running``;
- ``continuous/sync/acct-bad``: its first run fails three times (at T, T+10s,
  T+20s) and is paused: ``failed``, no alarm;
- ``debounce/digest/u1``: a batch of 3 flushed by ``max_events`` at T, a batch
  of 2 flushed by ``flush_after`` at T+6m, then one event at T+1h5m that waits
  (alarm at T+1h6m): ``debouncing``;
- ``task/reminder/r1``: created at T, its alarm at T+30m terminates it, a new
  ``send`` at T+1h5m restarts it (second generation, alarm at T+1h35m): ``active``.

The runtime stops at :data:`END` (T+1h5m). At :data:`NOW` (T+1h30m) the
digest's alarm is 24 minutes late and the others are still pending.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, running
from durable_jobs.cli import run

END = T + HOUR + 5 * MINUTE
NOW = T + HOUR + 30 * MINUTE
NOW_ISO = "2026-01-01T01:30:00Z"


class Account(BaseModel):
    balance: int = 0
    syncs: int = 0
    fail: bool = False


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        "sync",
        state=Account,
        schedule=dj.every(HOUR),
        retry=dj.Retry(3, delay=10 * SECOND, jitter=0, on_exhausted="pause"),
    )
    async def sync(ctx: dj.ContinuousContext[Account]) -> None:
        if ctx.state.fail:
            raise ConnectionError(f"bank API unreachable (try {ctx.attempt})")
        ctx.set_state(
            ctx.state.model_copy(
                update={"syncs": ctx.state.syncs + 1, "balance": ctx.state.balance + 10}
            )
        )

    @registry.debounce("digest", event=str, state=list[str], flush_after=MINUTE, max_events=3)
    async def digest(ctx: dj.DebounceContext[list[str]]) -> None:
        pass

    @digest.on_event
    def fold(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event]

    @registry.task("reminder", event=str, state=list[str])
    async def remind(ctx: dj.TaskContext[list[str]]) -> None:
        ctx.terminate()

    @remind.on_event
    async def note(event: str, ctx: dj.TaskContext[list[str]]) -> None:
        ctx.set_state([*(ctx.state or []), event])
        ctx.schedule(30 * MINUTE)

    return registry


async def fill(url: str | dj.Store) -> None:
    """Run the story above on ``url`` (virtual time must be on)."""
    async with running(make_registry(), url) as jobs:
        sync = jobs.continuous("sync")
        digest = jobs.debounce("digest")
        reminder = jobs.task("reminder")
        await sync.start("acct-ok", Account())
        await sync.start("acct-bad", Account(fail=True))
        for page in ("home", "pricing", "signup"):
            await digest.add("u1", page)
        await reminder.send("r1", "first")
        await advance(jobs, 5 * MINUTE)
        await digest.add("u1", "docs")
        await digest.add("u1", "blog")
        await advance(jobs, HOUR)
        await digest.add("u1", "faq")
        await reminder.send("r1", "second")
        await jobs.wait_idle()
        assert jobs.clock.now() == END


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process with ``args``: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
