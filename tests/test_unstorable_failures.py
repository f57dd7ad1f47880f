"""A failure the store cannot keep as it is: an error message with a lone surrogate (a
file name from ``os.listdir``), an exception whose ``__str__`` raises, a ``ctx.execute``
parameter SQLite cannot bind. Each is recorded like any failure, the retry policy
applies, and a task's ``send`` raises ``HandlerError``; before, the commit of the failure
itself failed, the alarm was retried by the runtime's own backoff for ever and nothing
reached the history.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio.testing

import durable_jobs as dj
from _execute import run_sql
from _runtime import HOUR, SECOND, advance, running

SURROGATE = "report-\udcff.csv"  # what os.fsdecode makes of a non-UTF-8 file name


class Unprintable(Exception):
    def __str__(self) -> str:
        raise KeyError("detail")


def _registry(raise_: Any, calls: list[int]) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        "c", state=int, schedule=dj.every(HOUR),
        retry=dj.Retry(3, delay=10 * SECOND, jitter=0, on_exhausted="terminate"),
    )  # fmt: skip
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        calls.append(1)
        raise_(ctx)

    @registry.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        pass

    @t.on_event
    async def on(event: str, ctx: dj.TaskContext[str]) -> None:
        raise_(ctx)

    return registry


def _surrogate(ctx: Any) -> None:
    raise ValueError(f"cannot parse {SURROGATE}")


def _unprintable(ctx: Any) -> None:
    raise Unprintable


def _unbindable(ctx: Any) -> None:
    ctx.execute("INSERT INTO audit (amount) VALUES (?)", (2**64,))


def _unbindable_text(ctx: Any) -> None:
    ctx.execute("INSERT INTO audit (amount) VALUES (?)", (SURROGATE,))


def _account(record: dj.RecordedEvent) -> str:
    return f"{record.data['error_type']}: {record.data['message']}"


@pytest.mark.parametrize(
    ("raise_", "message"),
    [
        (_surrogate, "cannot parse report-\\udcff.csv"),
        (_unprintable, "<str() of this test_unstorable_failures.Unprintable raised KeyError>"),
        (_unbindable, "OverflowError"),
        (_unbindable_text, "lone surrogate"),
    ],
)
async def test_the_failure_is_recorded_and_the_retry_policy_applies(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, raise_: Any, message: str
) -> None:
    dj.open_store(sqlite_url).close()  # the store's tables first, then the app's
    run_sql(sqlite_url, "CREATE TABLE audit (amount)")
    calls: list[int] = []
    async with running(_registry(raise_, calls), sqlite_url) as jobs:
        await jobs.continuous("c").start("a", 0)
        await advance(jobs, 3 * HOUR)
        # Retry(3): three tries, then on_exhausted terminates it.
        assert len(calls) == 3
        status = await jobs.continuous("c").status("a")
        assert status.status == "not_found"
        history = await jobs.continuous("c").history("a")
        failed = [r for r in history if r.name == "run_failed"]
        assert len(failed) == 3
        assert all(message in _account(r) for r in failed), failed[0].data
        assert history[-1].name == "terminated"
        with pytest.raises(dj.HandlerError):
            await jobs.task("t").send("x", "go")
        history = await jobs.task("t").history("x")
        assert [r.name for r in history][-1] == "run_failed"
        assert message in _account(history[-1])


class Unrepresentable(Exception):
    def __repr__(self) -> str:
        raise KeyError("detail")


async def test_an_error_whose_repr_raises_still_fails_a_send_with_handler_error(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The send's HandlerError names the error by its repr: one that raises gives a
    message saying so, not the KeyError of the error class's own bug."""

    def raise_(ctx: Any) -> None:
        raise Unrepresentable("no detail")

    async with running(_registry(raise_, []), sqlite_url) as jobs:
        with pytest.raises(dj.HandlerError, match="whose repr\\(\\) raised KeyError"):
            await jobs.task("t").send("x", "go")
        history = await jobs.task("t").history("x")
    assert history[-1].name == "run_failed"


@pytest.mark.postgres
async def test_postgres_a_parameter_with_a_lone_surrogate_fails_the_send(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Refused when recorded (no driver can send it): the run fails like any handler
    error. On Postgres the driver's UnicodeEncodeError came at the commit, as a store
    error: send raised StoreError and a timer run was re-run for ever, unrecorded."""
    dj.open_store(pg_url).close()
    run_sql(pg_url, "CREATE TABLE {schema}.audit (amount text)")
    async with running(_registry(_unbindable_text, []), pg_url) as jobs:
        with pytest.raises(dj.HandlerError, match="lone surrogate"):
            await jobs.task("t").send("x", "go")
        history = await jobs.task("t").history("x")
    assert history[-1].name == "run_failed"
    assert run_sql(pg_url, "SELECT count(*) FROM {schema}.audit") == [(0,)]


def test_an_error_type_from_a_module_named_with_a_lone_surrogate_is_stored_escaped() -> None:
    """A module loaded from a file name that is not UTF-8 carries a lone surrogate in
    its name, and so does the type name of its errors: written as its escape, as in a
    message (the failure could not be recorded and the run went again for ever)."""
    from durable_jobs._domain.instance import error_type_name

    odd = type("OddError", (Exception,), {"__module__": "plugins.r\udcffport"})
    name = error_type_name(odd())
    assert name == "plugins.r\\udcffport.OddError"
    name.encode("utf-8")  # storable


async def test_a_statement_that_fails_at_the_commit_is_logged_as_a_failure(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler returned, so its call was logged as nothing; the run then failed at
    the commit: that is a handler failure, logged at WARNING (it was not logged at all)."""
    dj.open_store(sqlite_url).close()

    def bad_statement(ctx: Any) -> None:
        ctx.execute("INSERT INTO no_such_table (a) VALUES (1)")

    caplog.set_level(logging.WARNING, logger="durable_jobs")
    async with running(_registry(bad_statement, []), sqlite_url) as jobs:
        await jobs.continuous("c").start("a", 0)
        await advance(jobs, HOUR)
    warned = [r for r in caplog.records if "failed when its run was committed" in r.message]
    assert warned and all(r.levelno == logging.WARNING for r in warned)
    assert "no such table" in warned[0].message


async def test_a_huge_error_message_is_recorded_cut_and_says_so(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler's error that carries megabytes (a whole response body in its message)
    was recorded whole, once per failed try, and logged whole: the record keeps the
    first 65,536 characters and says how many more there were."""
    huge = "<html>" + "x" * 3_000_000

    def _huge(ctx: Any) -> None:
        raise RuntimeError(huge)

    calls: list[int] = []
    with caplog.at_level(logging.WARNING, logger="durable_jobs"):
        async with running(_registry(_huge, calls), sqlite_url) as jobs:
            await jobs.continuous("c").start("a", 0)
            await advance(jobs, 3 * HOUR)
            history = await jobs.continuous("c").history("a")
    failed = [r for r in history if r.name == "run_failed"]
    assert len(failed) == 3
    message = failed[0].data["message"]
    assert message.startswith("<html>xxx")
    assert message.endswith(f"... [{len(huge) - 65_536:,} more characters not recorded]")
    assert len(message) < 66_000
    assert max(len(r.getMessage()) for r in caplog.records) < 70_000
