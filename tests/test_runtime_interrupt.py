"""Ctrl+C while a handler runs synchronous code (``time.sleep``, CPU work, a blocking
client): Python raises ``KeyboardInterrupt`` in the handler itself.

That is not the handler's failure: the run commits nothing (its alarm stays in
the store; it runs again after the next start), and the runtime shuts down as
for a Ctrl+C that comes while the ``open_jobs`` block awaits: the other runs in
flight get ``shutdown_grace`` to finish and commit, then ``open_jobs`` raises
the ``KeyboardInterrupt`` (itself, not in an ExceptionGroup). It used to be
recorded as the run's failure, committed, and raised at once: the retry
policy counted it (``Retry(max_attempts=1)`` terminated the instance), a task
without ``on_error`` lost its alarm, and the other runs got no grace.

Here the handlers raise the ``KeyboardInterrupt`` themselves (what the signal
handler does in the handler's frame); ``test_ctrl_c_in_a_child_process`` sends
a real SIGINT.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from _children import Child
from _runtime import HOUR, MINUTE, T, running
from durable_jobs._client import _raise_after

GRACE = timedelta(seconds=3)


def two_jobs(log: list[str], interrupt: list[bool]) -> dj.Registry:
    """``slow`` (1 s awaiting before it adds 1) and ``sync``, whose run is Ctrl+C'd
    while ``interrupt[0]``; ``sync`` gives up after one try (then it is terminated)."""
    registry = dj.Registry()

    @registry.continuous("slow", state=int, schedule=dj.every(HOUR))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        log.append("slow started")
        await trio.sleep(1)
        ctx.set_state(ctx.state + 1)
        log.append("slow returned")

    @registry.continuous(
        "sync", state=int, schedule=dj.every(HOUR), retry=dj.Retry(max_attempts=1)
    )
    async def sync(ctx: dj.ContinuousContext[int]) -> None:
        log.append(f"sync run {ctx.run_count} try {ctx.attempt}")
        if interrupt[0]:
            raise KeyboardInterrupt
        ctx.set_state(ctx.state + 1)

    return registry


@pytest.mark.parametrize("grouped", [False, True], ids=["raised", "in a group"])
async def test_ctrl_c_in_a_handler_commits_nothing_and_the_other_runs_get_the_grace(
    grouped: bool, sqlite_url: str, autojump_clock: MockClock
) -> None:
    log: list[str] = []
    interrupt = [True]
    registry = two_jobs(log, interrupt)
    if grouped:
        # The KeyboardInterrupt comes out of the handler's own nursery, in a group.
        @registry.continuous(
            "nursery", state=int, schedule=dj.every(HOUR), retry=dj.Retry(max_attempts=1)
        )
        async def nursery(ctx: dj.ContinuousContext[int]) -> None:
            async def child() -> None:
                if interrupt[0]:
                    raise KeyboardInterrupt

            log.append(f"sync run {ctx.run_count} try {ctx.attempt}")
            async with trio.open_nursery() as n:
                n.start_soon(child)

    interrupted = "nursery" if grouped else "sync"
    ended: list[str] = []
    clock = dj.VirtualClock(T)

    async def session() -> None:
        async with running(registry, sqlite_url, clock=clock, shutdown_grace=GRACE) as jobs:
            await jobs.continuous("slow").start("s", 0)
            while log != ["slow started"]:
                await trio.sleep(0.1)
            await jobs.continuous(interrupted).start("x", 0)
            try:
                await trio.sleep_forever()
            finally:
                ended.append("body")  # the block's body is ended, as by Ctrl+C in it

    # Itself, not in an ExceptionGroup; fail_after (virtual seconds): fail, not hang.
    with pytest.raises(KeyboardInterrupt), trio.fail_after(3600):
        await session()
    assert ended == ["body"]
    # slow's run (1 s) had the 3 s grace to finish and commit.
    assert log == ["slow started", "sync run 1 try 1", "slow returned"]

    interrupt[0] = False
    async with running(registry, sqlite_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert await jobs.continuous("slow").get_state("s") == 1
        client = jobs.continuous(interrupted)
        history = await client.history("x")
        status = await client.status("x")
    # Not a failed try: the run was not committed, so it ran again, the same run.
    assert log[3:] == ["sync run 1 try 1"]
    assert [r.name for r in history if r.name in ("run_failed", "terminated")] == []
    assert status.status == "running"
    assert status.run_count == 1


async def test_ctrl_c_in_a_tasks_execute_keeps_its_alarm(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """A task without on_error whose alarm run is Ctrl+C'd: the alarm is still in the
    store, and the run happens after the next start."""
    registry = dj.Registry()
    runs: list[int] = []
    interrupt = [True]

    @registry.task("reminder", event=int, state=int)
    async def reminder(ctx: dj.TaskContext[int]) -> None:
        runs.append(ctx.execute_count)
        if interrupt[0]:
            raise KeyboardInterrupt

    @reminder.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.schedule(timedelta(minutes=5))

    clock = dj.VirtualClock(T)

    async def session() -> None:
        async with running(registry, sqlite_url, clock=clock) as jobs:
            await jobs.task(reminder).send("r", 1)
            await trio.sleep_forever()

    with pytest.raises(KeyboardInterrupt), trio.fail_after(3600):  # virtual s: fail, not hang
        await session()
    assert runs == [1]
    interrupt[0] = False
    async with running(registry, sqlite_url, clock=clock) as jobs:
        client = jobs.task(reminder)
        assert (await client.status("r")).scheduled_at == T + 5 * MINUTE
        await jobs.wait_idle()  # due already: it runs at the start
        status = await client.status("r")
        history = await client.history("r")
    assert runs == [1, 1]
    assert status.execute_count == 1
    assert status.scheduled_at is None  # ran, and left no alarm
    assert [r.name for r in history if r.name == "run_failed"] == []


@pytest.mark.parametrize("call", ["send", "trigger", "add"])
async def test_ctrl_c_in_a_client_calls_handler_reaches_the_caller_and_commits_nothing(
    call: str, sqlite_url: str, autojump_clock: MockClock
) -> None:
    """The handler a client call runs in its caller's task (a task's on_event or
    execute, a debounce reducer): the caller gets the KeyboardInterrupt, nothing of
    the call is written, and the runtime shuts down all the same."""
    registry = dj.Registry()
    interrupt = [False]

    @registry.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt
        ctx.set_state(event)

    @registry.debounce("d", event=int, state=int, flush_after=HOUR)
    async def d(ctx: dj.DebounceContext[int]) -> None: ...

    @d.on_event
    def reduce(ctx: dj.DebounceEventContext[int, int]) -> int:
        if interrupt[0]:
            raise KeyboardInterrupt
        return ctx.event

    caught: list[BaseException] = []

    async def session() -> None:
        async with running(registry, sqlite_url) as jobs:
            await jobs.task(t).send("x", 1)
            interrupt[0] = True
            try:
                if call == "send":
                    await jobs.task(t).send("x", 2)
                elif call == "trigger":
                    await jobs.task(t).trigger("x")
                else:
                    await jobs.debounce(d).add("y", 2)
            except KeyboardInterrupt as exc:
                caught.append(exc)  # swallowed here: open_jobs raises it all the same
            await trio.sleep_forever()

    with pytest.raises(KeyboardInterrupt) as raised, trio.fail_after(3600):
        await session()
    (exc,) = caught
    assert raised.value is exc
    interrupt[0] = False
    async with running(registry, sqlite_url) as jobs:
        status = await jobs.task(t).status("x")
        assert (status.event_count, status.execute_count) == (1, 0)
        assert await jobs.task(t).get_state("x") == dj.TaskState(1, None)
        assert [r.name for r in await jobs.task(t).history("x")].count("run_failed") == 0
        assert (await jobs.debounce(d).status("y")).status == "not_found"


CHILD = Path(__file__).with_name("_interrupt_child.py")


def test_ctrl_c_in_a_child_process(tmp_path: Path) -> None:
    """A real SIGINT while a handler sleeps synchronously: the process ends with
    KeyboardInterrupt after the other run committed; the interrupted run happens
    again after the restart (its Retry(max_attempts=1) did not terminate it)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    child = Child(CHILD, url, "serve")
    try:
        child.read_until(lambda lines: "sync started" in lines)
        child.proc.send_signal(signal.SIGINT)
        child.proc.wait(timeout=60)
        child.read_until(lambda lines: child.proc.poll() is not None)
    finally:
        child.cleanup()
    stderr = child.stderr_tail()
    assert "slow returned" in child.lines, (child.lines, stderr)
    assert "sync returned" not in child.lines
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr
    assert "ExceptionGroup" not in stderr, stderr
    check = Child(CHILD, url, "check")
    try:
        check.read_until(lambda lines: any(line.startswith("CHECKED") for line in lines))
    finally:
        check.cleanup()
    (result,) = [line for line in check.lines if line.startswith("CHECKED")]
    assert result == "CHECKED slow 1 sync running 1 1 failed 0", check.lines


def test_ctrl_c_in_a_handler_while_the_block_makes_a_call_raises_keyboard_interrupt() -> None:
    """A run's handler is interrupted while the block's call is on its way back (its
    commit written, not cancellable): the block, resumed, makes its next call, which
    is refused (RuntimeClosed: the runtime is shutting down), and open_jobs raised
    that RuntimeClosed: a Ctrl+C ended a program starting instances in a loop with a
    RuntimeClosed traceback and exit code 1 (4 times in 6 with a real SIGINT on a
    busy host). The ``KeyboardInterrupt`` is what ends it, as after a cancellation;
    an error of the block's own still wins."""
    interrupted = KeyboardInterrupt()
    refused = dj.RuntimeClosed("jobs.continuous('tick').start()")
    with pytest.raises(KeyboardInterrupt) as raised:
        _raise_after(refused, interrupted)
    assert raised.value is interrupted
    own = ValueError("the block's own")
    with pytest.raises(ValueError, match="the block's own"):
        _raise_after(own, interrupted)
    with pytest.raises(dj.RuntimeClosed):
        _raise_after(refused, None)
