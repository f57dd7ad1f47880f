"""``ctx.execute`` in a task's chain of handlers, on real SQLite files and the real
Postgres server: a statement that fails at the commit is the failure of the handler
that recorded it, as if that handler had raised the database's error there. The
handlers before it keep their success (state and statements), that handler's are
dropped, and the chain goes on as it does after that handler raises.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio.testing
from eventsourcing.utils import Environment

import durable_jobs as dj
from _execute import create_ledger, insert_sql, is_postgres, ledger, run_sql
from _runtime import SECOND, advance, running
from durable_jobs.adapters import StoreURL
from durable_jobs.stores.sqlite import (
    SQLiteApplicationRecorderWithIndex,
    SQLiteStore,
    _SQLiteFactory,
)

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def url(durable_store_url: str) -> str:
    """The store under test, its ``ledger`` table created and row ``("a", 9)`` taken."""
    create_ledger(durable_store_url)
    table = "{schema}.ledger" if is_postgres(durable_store_url) else "ledger"
    run_sql(durable_store_url, f"INSERT INTO {table} VALUES ('a', 9, 'taken')")
    return durable_store_url


def _runs(records: list[dj.RecordedEvent]) -> list[tuple[str, str, str]]:
    """(record, handler, error type) of each run record."""
    return [
        (r.name, r.data["handler"], str(r.data.get("error_type", "")).rsplit(".", 1)[-1])
        for r in records
        if r.name in ("run_succeeded", "run_failed")
    ]


def _db_error(url: str) -> str:
    return "UniqueViolation" if is_postgres(url) else "IntegrityError"


async def test_on_idle_statement_failing_is_on_idle_failing_after_on_event(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()
    seen: list[tuple[str, Any]] = []

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        pass

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.execute(insert_sql(url), (ctx.instance_id, event, "on_event"))
        ctx.execute(insert_sql(url), (ctx.instance_id, event + 1, "on_event"))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 8, "on_idle"))  # dropped
        ctx.execute(insert_sql(url), (ctx.instance_id, 9, "on_idle"))  # taken

    @run.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        seen.append((type(error).__name__, ctx.state))
        ctx.execute(insert_sql(url), (ctx.instance_id, 10, "on_error"))

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.task("t")
        await client.send("a", 5)
        state = await client.get_state("a")
        assert state is not None and state.state == 5
    # on_error got on_idle's failure, with on_event's state: both commit their rows.
    assert seen == [(_db_error(url), 5)]
    assert ledger(url) == [
        ("a", 5, "on_event"),
        ("a", 6, "on_event"),
        ("a", 9, "taken"),
        ("a", 10, "on_error"),
    ]
    assert _runs(records) == [
        ("run_succeeded", "on_event", ""),
        ("run_failed", "on_idle", _db_error(url)),
        ("run_succeeded", "on_error", ""),
    ]


async def test_on_idle_statement_failing_after_execute_keeps_execute(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(100)
        ctx.execute(insert_sql(url), (ctx.instance_id, 100, "execute"))

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.schedule(timedelta(seconds=5))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(999)  # dropped with its statement
        ctx.execute(insert_sql(url), (ctx.instance_id, 9, "on_idle"))  # taken

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.task("t")
        await client.send("a", 1)
        await advance(jobs, 5 * SECOND)  # execute by its alarm; no on_error
        state = await client.get_state("a")
        assert state is not None and state.state == 100
        assert state.scheduled_at is None
    assert ledger(url) == [("a", 9, "taken"), ("a", 100, "execute")]
    assert _runs(records)[1:] == [
        ("run_succeeded", "execute", ""),
        ("run_failed", "on_idle", _db_error(url)),
    ]


async def test_an_on_idle_that_raises_after_execute_keeps_execute_statements(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The same chain with on_idle raising: execute's state and its rows commit together."""
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(100)
        ctx.execute(insert_sql(url), (ctx.instance_id, 100, "execute"))

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=5))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        raise RuntimeError("on_idle fails")

    async with running(registry, url) as jobs:
        client = jobs.task("t")
        await client.send("a", 1)
        await advance(jobs, 5 * SECOND)
        state = await client.get_state("a")
        assert state is not None and state.state == 100
    assert ledger(url) == [("a", 9, "taken"), ("a", 100, "execute")]


async def test_on_error_statement_failing_is_on_error_failing(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()
    seen: list[str] = []

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        pass

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        raise ValueError("bad event")

    @run.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        seen.append(type(error).__name__)
        ctx.set_state(7)
        ctx.execute(insert_sql(url), (ctx.instance_id, 9, "on_error"))  # taken

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.task("t")
        with pytest.raises(dj.HandlerError) as raised:
            await client.send("a", 1)
        assert type(raised.value.__cause__).__name__ == _db_error(url)
        state = await client.get_state("a")
        assert state is not None and state.state is None
    # Asked once: its own statement failing is its failure, not a new one to handle.
    assert seen == ["ValueError"]
    assert ledger(url) == [("a", 9, "taken")]
    # The failure the send reports is on_error's (its statement's error); both are
    # recorded, on_event's first.
    assert _runs(records) == [
        ("run_failed", "on_event", "ValueError"),
        ("run_failed", "on_error", _db_error(url)),
    ]
    assert str(raised.value).startswith("on_error of task job 't' raised for instance 'a'")


async def test_second_settle_failing_too_moves_on_to_the_next_handler(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """execute's row and state commit; on_idle's statement fails, then on_error's
    (it handles on_idle's failure) fails as well: both are recorded failed."""
    registry = dj.Registry()
    seen: list[tuple[str, Any]] = []

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(100)
        ctx.cancel_schedule()
        ctx.execute(insert_sql(url), (ctx.instance_id, 100, "execute"))

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(seconds=5))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 9, "on_idle"))  # taken

    @run.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        seen.append((type(error).__name__, ctx.state))
        ctx.set_state(-1)  # dropped with its statement
        ctx.execute(insert_sql(url), (ctx.instance_id, 9, "on_error"))  # taken

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.task("t")
        await client.send("a", 1)
        with pytest.raises(dj.HandlerError):
            await client.trigger("a")
        state = await client.get_state("a")
        assert state is not None and state.state == 100
    assert seen == [(_db_error(url), 100)]
    assert ledger(url) == [("a", 9, "taken"), ("a", 100, "execute")]
    assert _runs(records)[1:] == [
        ("run_succeeded", "execute", ""),
        ("run_failed", "on_idle", _db_error(url)),
        ("run_failed", "on_error", _db_error(url)),
    ]


# ---- an adapter that does not say which statement failed ---------------------------------


class _BlindRecorder(SQLiteApplicationRecorderWithIndex):
    """A third-party-like recorder: its StatementFailed names no statement."""

    def _insert_events(self, c: Any, stored_events: Any, **kwargs: Any) -> Any:
        try:
            return super()._insert_events(c, stored_events, **kwargs)
        except dj.StatementFailed as failed:
            raise dj.StatementFailed(failed.instance_uuid, failed.error) from failed.error


class _BlindFactory(_SQLiteFactory):
    application_recorder_class = _BlindRecorder


class _BlindStore(SQLiteStore):
    def _make_factory(self, env: Environment) -> Any:
        return _BlindFactory(env, synchronous=self._synchronous())


async def test_an_adapter_not_naming_the_statement_blames_the_first_handler(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    create_ledger(sqlite_url)
    run_sql(sqlite_url, "INSERT INTO ledger VALUES ('a', 9, 'taken')")
    registry = dj.Registry()
    seen: list[str] = []

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        pass

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.execute(insert_sql(sqlite_url), (ctx.instance_id, event, "on_event"))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(sqlite_url), (ctx.instance_id, 9, "on_idle"))  # taken

    @run.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        seen.append(type(error).__name__)

    store = _BlindStore(StoreURL.parse(sqlite_url))
    records: list[dj.RecordedEvent] = []
    try:
        async with running(registry, store, records=records) as jobs:
            client = jobs.task("t")
            # on_event is blamed (on_error is asked with the error), and on_idle's
            # statement fails again after it: the last try is on_event failing alone.
            with pytest.raises(dj.HandlerError):
                await client.send("a", 5)
            assert await client.get_state("a") is not None
    finally:
        store.close()
    assert seen == ["IntegrityError"]
    assert ledger(sqlite_url) == [("a", 9, "taken")]
    assert _runs(records) == [("run_failed", "on_event", "IntegrityError")]
