"""A task retry that on_error schedules reads as a retry: the failure says so,
the next execute is the same run's next try, and status's last error clears
once a retry succeeded."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import SECOND, T, advance, running
from durable_jobs.cli import run


def flaky_registry(calls: list[int]) -> dj.Registry:
    registry = dj.Registry()

    @registry.task("remind", event=str, state=int)
    async def remind(ctx: dj.TaskContext[int]) -> None:
        calls.append(ctx.execute_count)
        if len(calls) == 1:
            raise ConnectionError("mail server down")
        ctx.set_state((ctx.state or 0) + 1)

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=5))

    @remind.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=1))

    return registry


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert run(list(args)) == 0
    return capsys.readouterr().out


async def test_a_retry_on_error_scheduled_is_the_next_try(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DURABLE_JOBS_NOW", (T + 10 * SECOND).isoformat())
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    calls: list[int] = []
    store = ("--store", url)
    async with running(flaky_registry(calls), url) as jobs:
        client = jobs.task("remind")
        await client.send("r1", "go")
        await advance(jobs, 5 * SECOND)  # execute fails; on_error retries in 1 s
        failed = [r for r in await client.history("r1") if r.name == "run_failed"]
        assert len(failed) == 1
        assert (failed[0].run_count, failed[0].attempt) == (1, 1)
        assert failed[0].data["will_retry"] is True
        assert failed[0].data["retry_at"] == T + 6 * SECOND
        status = cli(capsys, *store, "status", "task", "remind", "r1")
        assert "try 1 failed; retry at the next alarm" in status
        assert "ConnectionError: mail server down (v5" in status

        await advance(jobs, 1 * SECOND)  # the retry succeeds
        history = await client.history("r1")
        runs = [(r.data["handler"], r.run_count, r.attempt, r.name) for r in history if r.is_run]
        assert runs == [
            ("on_event", 0, 1, "run_succeeded"),
            ("execute", 1, 1, "run_failed"),
            ("on_error", 1, 1, "run_succeeded"),
            ("execute", 1, 2, "run_succeeded"),  # the same run's second try
        ]
        # execute_count still counts every call of execute.
        assert calls == [1, 2]
        assert await client.status("r1") == dj.TaskStatus("idle", None, 1, 2, T)

    human = cli(capsys, *store, "history", "task", "remind", "r1")
    assert "execute run 1 try 1 failed: ConnectionError: mail server down; retry at" in human
    assert "execute run 1 try 2 ok" in human
    status = cli(capsys, *store, "status", "task", "remind", "r1")
    assert "last error" not in status and "failed" not in status
    document = json.loads(cli(capsys, *store, "status", "task", "remind", "r1", "--json"))
    assert document["last_error"] is None
    assert document["instance"]["attempt"] == 0


class OnErrorBroke(Exception):
    pass


async def test_when_on_error_raises_both_failures_are_recorded_and_nothing_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What docs/testing.md says happens when on_error itself raises."""
    registry = dj.Registry()
    idled: list[str] = []

    @registry.task("remind", event=str, state=int)
    async def remind(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(99)
        raise ConnectionError("mail server down")

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(1)
        ctx.schedule(timedelta(seconds=5))

    @remind.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=1))
        raise OnErrorBroke("on_error broke too")

    @remind.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        idled.append(ctx.instance_id)

    async with running(registry, "memory://") as jobs:
        client = jobs.task("remind")
        await client.send("r1", "go")
        with pytest.raises(dj.HandlerError) as raised:
            await client.trigger("r1")
        assert isinstance(raised.value.__cause__, OnErrorBroke)
        assert await client.get_state("r1") == dj.TaskState(1, T + 5 * SECOND)  # kept as was
        await advance(jobs, 5 * SECOND)  # the alarm runs execute: both fail again
        failed = [
            (r.data["handler"], r.data["will_retry"])
            for r in await client.history("r1")
            if r.name == "run_failed"
        ]
        assert failed == [("execute", False), ("on_error", False)] * 2
        assert await client.get_state("r1") == dj.TaskState(1, None)  # no retry, no alarm
        assert idled == []


async def test_a_send_whose_on_event_and_on_error_raise_records_both_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As for ``execute``: the failure of ``on_event`` (the root cause) is recorded,
    then that of ``on_error``; the state is unchanged. Only on_error's was before."""
    registry = dj.Registry()

    @registry.task("remind", event=str, state=int)
    async def remind(ctx: dj.TaskContext[int]) -> None:
        pass

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(7)
        raise ValueError("bad event")

    @remind.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        raise OnErrorBroke("on_error broke too")

    async with running(registry, "memory://") as jobs:
        client = jobs.task("remind")
        with pytest.raises(dj.HandlerError) as raised:
            await client.send("r1", "go")
        assert isinstance(raised.value.__cause__, OnErrorBroke)
        failed = [
            (r.data["handler"], r.data["error_type"])
            for r in await client.history("r1")
            if r.name == "run_failed"
        ]
        assert failed == [("on_event", "ValueError"), ("on_error", f"{__name__}.OnErrorBroke")]
        assert await client.get_state("r1") == dj.TaskState(None, None)  # unchanged
