"""``ctx.execute``: handler writes that commit with the run, on real SQLite files and
the real Postgres server.

Every rule: statements run in order in the run's commit; a handler that raises,
times out or is cancelled runs none; a retry runs only its own try's; a failing
statement fails its run (recorded in ``run_failed``, retried per policy) and
writes nothing, without touching the other runs of its group commit; a task's
``on_event`` statements commit with the ``send``; the memory store refuses
``ctx.execute``; bad input is a ValidationError.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _execute import create_ledger, insert_sql, is_postgres, ledger, placeholder, run_sql
from _runtime import HOUR, MINUTE, SECOND, T, advance, running

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def url(durable_store_url: str) -> str:
    """The store under test, its ``ledger`` table created."""
    create_ledger(durable_store_url)
    return durable_store_url


def _failures(records: list[dj.RecordedEvent]) -> list[dict[str, Any]]:
    return [r.data for r in records if r.name == "run_failed"]


async def _failed_twice_then_paused(client: dj.ContinuousClient[int], instance_id: str) -> None:
    """The first run of ``instance_id`` failed both tries of ``Retry(2, ...,
    on_exhausted="pause")``, each recorded."""
    status = await client.status(instance_id)
    assert (status.status, status.run_count) == ("failed", 1), (instance_id, status)
    names = [r.name for r in await client.history(instance_id)]
    assert names.count("run_failed") == 2 and "retry_exhausted" in names, names


# ---- continuous --------------------------------------------------------------------------


async def test_continuous_writes_commit_with_each_run(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous("bill", state=int, schedule=dj.every(MINUTE))
    async def bill(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, ctx.run_count, "a"))
        # Named placeholders work too; statements run in order (this one sees the first).
        named = "%(i)s" if is_postgres(url) else ":i"
        n = "%(n)s" if is_postgres(url) else ":n"
        ctx.execute(f"UPDATE ledger SET note = 'b' WHERE instance = {named} AND n = {n}",
                    {"i": ctx.instance_id, "n": ctx.run_count})  # fmt: skip
        ctx.set_state(ctx.state + 1)

    async with running(registry, url) as jobs:
        await jobs.continuous("bill").start("acme", 0)
        await jobs.wait_idle()
        assert ledger(url) == [("acme", 1, "b")]
        await advance(jobs, MINUTE)
        await jobs.continuous("bill").trigger("acme")
        assert ledger(url) == [("acme", 1, "b"), ("acme", 2, "b"), ("acme", 3, "b")]
        assert await jobs.continuous("bill").get_state("acme") == 3


async def test_a_failed_try_writes_nothing_and_its_retry_only_its_own(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous(
        "flaky",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(max_attempts=3, delay=timedelta(seconds=10), jitter=0),
    )
    async def flaky(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, ctx.attempt, f"try {ctx.attempt}"))
        if ctx.attempt < 3:
            raise RuntimeError(f"try {ctx.attempt} fails after recording its statement")

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        await jobs.continuous("flaky").start("x", 0)
        await jobs.wait_idle()
        assert ledger(url) == []
        await advance(jobs, 10 * SECOND)
        assert ledger(url) == []
        await advance(jobs, 10 * SECOND)
        assert ledger(url) == [("x", 3, "try 3")]
    assert [f["attempt"] for f in _failures(records)] == [1, 2]


async def test_a_constraint_violation_fails_the_run_which_retries_and_writes_nothing(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    run_sql(url, "INSERT INTO {schema}.ledger VALUES ('x', 1, 'taken')".replace(
        "{schema}.", "{schema}." if is_postgres(url) else ""))  # fmt: skip
    registry = dj.Registry()
    fixed = {"on": False}

    @registry.continuous(
        "dup",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(max_attempts=3, delay=timedelta(seconds=10), jitter=0),
    )
    async def dup(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)
        ctx.execute(insert_sql(url), ("x", 2 if fixed["on"] else 1, f"try {ctx.attempt}"))

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.continuous("dup")
        await client.start("x", 0)
        await jobs.wait_idle()
        [failure] = _failures(records)
        assert "IntegrityError" in failure["error_type"] or "UniqueViolation" in str(
            failure["error_type"]
        )
        assert failure["will_retry"] is True
        assert await client.get_state("x") == 0  # nothing of the run committed
        assert ledger(url) == [("x", 1, "taken")]
        status = await client.status("x")
        assert status.status == "running"
        assert status.next_run_at == T + 10 * SECOND
        fixed["on"] = True
        await advance(jobs, 10 * SECOND)
        assert ledger(url) == [("x", 1, "taken"), ("x", 2, "try 2")]
        assert await client.get_state("x") == 1


async def test_a_trigger_whose_statement_fails_reports_the_retry(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous(
        "typo",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        start_immediately=False,
        retry=dj.Retry(max_attempts=2, delay=timedelta(seconds=10)),
    )
    async def typo(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute("INSERT INTO no_such_table VALUES (1)")

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        await jobs.continuous("typo").start("t", 0)
        result = await jobs.continuous("typo").trigger("t")
        assert result == dj.TriggerResult(triggered=True, terminated=False, retry_scheduled=True)
        [failure] = _failures(records)
        assert "no_such_table" in failure["message"]


def count_transactions(store: dj.Store) -> list[int]:
    """The size of each transaction ``store`` is asked to write from now on (a list
    that grows as it writes)."""
    tried: list[int] = []
    save = store.save

    def counting_save(*instances: Any, **kwargs: Any) -> None:
        tried.append(len(instances))
        save(*instances, **kwargs)

    store.save = counting_save  # type: ignore[method-assign]
    return tried


async def test_a_failing_statement_fails_only_its_own_run_in_a_group_commit(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous("many", state=int, schedule=dj.every(MINUTE), start_immediately=False)
    async def many(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)
        n = 0 if ctx.instance_id == "bad" else ctx.run_count
        ctx.execute(
            insert_sql(url), ("bad" if ctx.instance_id == "bad" else ctx.instance_id, n, None)
        )
        ctx.execute(insert_sql(url), ("shared", 0, ctx.instance_id) if ctx.instance_id == "bad"
                    else (ctx.instance_id, n + 100, None))  # fmt: skip

    store = dj.open_store(url)
    run_sql(
        url,
        f"INSERT INTO {'{schema}.' if is_postgres(url) else ''}ledger VALUES ('shared', 0, 'x')",
    )
    records: list[dj.RecordedEvent] = []
    tried = count_transactions(store)
    try:
        async with running(registry, store, records=records) as jobs:
            client = jobs.continuous("many")
            ids = [f"i{n:02}" for n in range(30)] + ["bad"]
            for i in ids:
                await client.start(i, 0)
            await advance(jobs, MINUTE)
            assert max(tried) > 1  # the runs were tried in shared transactions
            rows = ledger(url)
            good = sorted([(i, 1, None) for i in ids[:-1]] + [(i, 101, None) for i in ids[:-1]])
            assert rows == sorted([*good, ("shared", 0, "x")])
            for i in ids[:-1]:
                assert await client.get_state(i) == 1
            assert await client.get_state("bad") == 0
            failures = _failures(records)
            assert len(failures) == 1
            assert [r.instance_id for r in records if r.name == "run_failed"] == ["bad"]
    finally:
        store.close()


async def test_a_timed_out_handler_runs_none_of_its_statements(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous("slow", state=int, schedule=dj.every(timedelta(hours=1)), timeout=5)
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 1, None))
        await trio.sleep(60)

    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        await jobs.continuous("slow").start("s", 0)
        await jobs.wait_idle()
        [failure] = _failures(records)
        assert failure["error_type"].endswith("HandlerTimeout")
    assert ledger(url) == []


async def test_a_run_cancelled_by_shutdown_runs_none_of_its_statements(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()
    started = trio.Event()

    @registry.continuous("long", state=int, schedule=dj.every(timedelta(hours=1)))
    async def long(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 1, None))
        started.set()
        await trio.sleep_forever()

    async with running(registry, url, shutdown_grace=timedelta(seconds=1)) as jobs:
        await jobs.continuous("long").start("l", 0)
        await started.wait()
    assert ledger(url) == []


async def test_on_exhausted_hook_statements_commit_with_the_outcome(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    def exhausted(error: BaseException, ctx: dj.ContinuousContext[int]) -> str:
        ctx.execute(insert_sql(url), (ctx.instance_id, 99, "gave up"))
        return "pause"

    @registry.continuous(
        "doomed",
        state=int,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(max_attempts=1, on_exhausted=exhausted),
    )
    async def doomed(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 1, "never"))
        raise RuntimeError("always")

    async with running(registry, url) as jobs:
        await jobs.continuous("doomed").start("d", 0)
        await jobs.wait_idle()
        assert (await jobs.continuous("doomed").status("d")).status == "failed"
    assert ledger(url) == [("d", 99, "gave up")]


@pytest.mark.parametrize("kind", ["continuous", "debounce"])
async def test_an_on_exhausted_hook_whose_statement_fails_is_called_once_and_pauses(
    url: str, kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The hook's statement failing is the hook failing: it is not asked again (it used
    to be called a second time with the database's error), the instance is paused
    (what a hook that raises gets), the run's own error stays the one recorded, and
    none of the hook's writes commit."""
    registry = dj.Registry()
    calls: list[str] = []

    def exhausted(error: BaseException, ctx: Any) -> str:
        calls.append(repr(error))
        ctx.execute("INSERT INTO no_such_table VALUES (1)")
        return "continue"

    retry = dj.Retry(max_attempts=1, on_exhausted=exhausted)
    if kind == "continuous":

        @registry.continuous(
            "doomed", state=int, schedule=dj.every(timedelta(hours=1)), retry=retry
        )
        async def doomed(ctx: dj.ContinuousContext[int]) -> None:
            raise RuntimeError("always")

    else:

        @registry.debounce("doomed", event=int, state=int, flush_after=MINUTE, retry=retry)
        async def flush(ctx: dj.DebounceContext[int]) -> None:
            raise RuntimeError("always")

        @flush.on_event
        def fold(ctx: dj.DebounceEventContext[int, int]) -> int:
            return (ctx.state or 0) + ctx.event

    async with running(registry, url) as jobs:
        if kind == "continuous":
            await jobs.continuous("doomed").start("d", 0)
            await jobs.wait_idle()
            status: str = (await jobs.continuous("doomed").status("d")).status
            history = await jobs.continuous("doomed").history("d")
        else:
            await jobs.debounce("doomed").add("d", 1)
            await advance(jobs, MINUTE)
            status = (await jobs.debounce("doomed").status("d")).status
            history = await jobs.debounce("doomed").history("d")
    assert calls == ["RuntimeError('always')"]
    assert status == "failed"
    failures = [r for r in history if r.name == "run_failed"]
    assert len(failures) == 1
    assert "always" in str(failures[0].data), failures[0].data
    [gave_up] = [r for r in history if r.name == "retry_exhausted"]
    assert gave_up.data.get("action") == "pause", gave_up.data
    assert ledger(url) == []


# ---- debounce ----------------------------------------------------------------------------


async def test_debounce_flush_and_reducer_statements(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.debounce("digest", event=int, state=int, flush_after=MINUTE)
    async def digest(ctx: dj.DebounceContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 1000 + ctx.state, "flush"))

    @digest.on_event
    def fold(ctx: dj.DebounceEventContext[int, int]) -> int:
        ctx.execute(insert_sql(url), (ctx.instance_id, ctx.event, "event"))
        return (ctx.state or 0) + ctx.event

    async with running(registry, url) as jobs:
        client = jobs.debounce("digest")
        await client.add("u", 1)
        await client.add("u", 2)
        assert ledger(url) == [("u", 1, "event"), ("u", 2, "event")]
        # A reducer whose statement fails: the add raises HandlerError, nothing is added.
        with pytest.raises(dj.HandlerError, match="not added"):
            await client.add("u", 2)
        assert (await client.status("u")).event_count == 2
        await advance(jobs, MINUTE)
        assert ledger(url) == [("u", 1, "event"), ("u", 2, "event"), ("u", 1003, "flush")]


async def test_debounce_flush_whose_statement_fails_keeps_the_batch(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.debounce("d", event=int, flush_after=MINUTE)
    async def flush(ctx: dj.DebounceContext[int]) -> None:
        ctx.execute(insert_sql(url), ("same", 1, f"{ctx.state}"))

    run_sql(
        url, f"INSERT INTO {'{schema}.' if is_postgres(url) else ''}ledger VALUES ('same', 1, 'x')"
    )
    async with running(registry, url) as jobs:
        client = jobs.debounce("d")
        await client.add("u", 7)
        result = await client.flush("u")
        assert result == dj.FlushResult(
            flushed=False, event_count=1, reason="failed", retry_scheduled=False
        )
        status = await client.status("u")
        assert (status.status, status.event_count) == ("failed", 1)
    assert ledger(url) == [("same", 1, "x")]


# ---- task --------------------------------------------------------------------------------


async def test_task_on_event_statements_commit_with_the_send(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("orders", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 500 + ctx.execute_count, "execute"))

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, event, "on_event"))
        ctx.set_state(event)
        if event == 1:
            ctx.schedule(timedelta(seconds=5))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), (ctx.instance_id, 900 + ctx.event_count, "on_idle"))

    async with running(registry, url) as jobs:
        client = jobs.task("orders")
        await client.send("o", 1)
        assert ledger(url) == [("o", 1, "on_event")]
        await advance(jobs, 5 * SECOND)
        assert ledger(url) == [("o", 1, "on_event"), ("o", 501, "execute"), ("o", 901, "on_idle")]
        # A statement that fails at commit: HandlerError, the event's failure is recorded,
        # the state is unchanged and none of the send's writes are there.
        with pytest.raises(dj.HandlerError):
            await client.send("o", 1)
        state = await client.get_state("o")
        assert state is not None and state.state == 1
        assert (await client.status("o")).event_count == 2
        assert len(ledger(url)) == 3


async def test_task_statement_failure_goes_to_on_error(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()
    seen: list[str] = []

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        pass

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.execute(insert_sql(url), (ctx.instance_id, 1, "on_event"))

    @run.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        seen.append(type(error).__name__)
        ctx.execute(insert_sql(url), (ctx.instance_id, 2, "on_error"))

    async with running(registry, url) as jobs:
        client = jobs.task("t")
        await client.send("a", 5)
        await client.send("a", 6)  # (a, 1) exists: on_error runs with the database's error
        assert seen == ["UniqueViolation" if is_postgres(url) else "IntegrityError"]
        state = await client.get_state("a")
        assert state is not None and state.state == 5
    assert ledger(url) == [("a", 1, "on_event"), ("a", 2, "on_error")]


# ---- the rules around the call -----------------------------------------------------------


async def test_memory_store_refuses_ctx_execute(autojump_clock: trio.testing.MockClock) -> None:
    registry = dj.Registry()
    errors: list[BaseException] = []

    @registry.continuous("m", state=int, schedule=dj.every(MINUTE))
    async def m(ctx: dj.ContinuousContext[int]) -> None:
        try:
            ctx.execute("INSERT INTO t VALUES (1)")
        except dj.ConfigurationError as exc:
            errors.append(exc)

    async with running(registry, "memory://") as jobs:
        await jobs.continuous("m").start("x", 0)
        await jobs.wait_idle()
    [error] = errors
    assert "SQLite or Postgres store" in str(error)


@pytest.mark.parametrize(
    ("sql", "params", "match"),
    [
        (b"SELECT 1", None, "as a str"),
        ("   ", None, "empty"),
        ("BEGIN", None, "transaction control"),
        ("  -- note\n commit", None, "transaction control"),
        ("/* x */ SAVEPOINT a", None, "transaction control"),
        ("rollback to savepoint a", None, "transaction control"),
        # SQLite skips empty statements and a byte-order mark before a statement.
        (";COMMIT", None, "transaction control"),
        (" ;; commit", None, "transaction control"),
        ("\ufeffCOMMIT", None, "transaction control"),
        ("\ufeff;\ufeff release a", None, "transaction control"),
        # Session settings would outlive the run on the store's pooled connection.
        ("PRAGMA query_only = 1", None, "session settings"),
        (" /* x */ pragma locking_mode = EXCLUSIVE", None, "session settings"),
        ("SET default_transaction_read_only = on", None, "session settings"),
        ("set session statement_timeout = 1", None, "session settings"),
        ("SET search_path TO other", None, "session settings"),
        ("RESET ALL", None, "session settings"),
        ("DISCARD ALL", None, "session settings"),
        ("LISTEN channel", None, "session settings"),
        ("LOAD 'x'", None, "session settings"),
        # Postgres' SET by another name.
        ("UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'", None, "session"),
        ('update pg_catalog."pg_settings" set setting = 1', None, "session settings"),
        ("WITH s AS (SELECT 1) UPDATE pg_settings SET setting = 'x'", None, "pg_settings"),
        # Spelled with Unicode escapes, or after an escape string that holds a quote.
        ("UPDATE U&\"pg\\005fsettings\" SET setting = 'o'", None, "pg_settings"),
        ("WITH q AS (SELECT E'it\\'s') UPDATE pg_settings SET setting = 'o'", None, "pg_"),
        # More spellings of temporary objects.
        ("SELECT 1 AS a INTO pg_temp.x", None, "leave something in the session"),
        ("SELECT E'O\\'Brien' AS n INTO TEMP x --'", None, "leave something"),
        ('CREATE TEMP TABLE x ("on commit drop" int)', None, "leave something"),
        ("CREATE RECURSIVE VIEW pg_temp.v (a) AS SELECT 1", None, "leave something"),
        ("CREATE FUNCTION pg_temp.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", None, "leave"),
        ("CREATE TABLE [temp].x (a int)", None, "leave something in the session"),
        ("CREATE TABLE `temp`.x (a int)", None, "leave something in the session"),
        ("CREATE TABLE 'temp'.x (a int)", None, "leave something in the session"),
        ("CREATE TABLE temp/**/.x (a int)", None, "leave something in the session"),
        ('CREATE TABLE U&"pg\\005ftemp".x (a int)', None, "leave something in the session"),
        # So would objects made in the session (DEALLOCATE drops the store's own
        # prepared statements).
        ("DEALLOCATE ALL", None, "leave something in the session"),
        ("deallocate prepare _pg3_1", None, "leave something in the session"),
        ("PREPARE q AS SELECT 1", None, "leave something in the session"),
        ("CREATE TEMP TABLE t2 (a int)", None, "leave something in the session"),
        ("create temporary view v AS SELECT 1", None, "leave something in the session"),
        ("CREATE GLOBAL TEMPORARY TABLE t2 (a int)", None, "leave something in the session"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", None, "leave something in the session"),
        # The same objects made by other spellings: in the temporary schema by name,
        # or by SELECT ... INTO TEMP.
        ("SELECT 1 AS a INTO TEMP scratch", None, "leave something in the session"),
        ("WITH s AS (SELECT 1) SELECT * INTO TEMPORARY TABLE x FROM s", None, "leave"),
        ("CREATE TABLE pg_temp.scratch (a int)", None, "leave something in the session"),
        ('create view "pg_temp".v as select 1', None, "leave something in the session"),
        ("CREATE TABLE temp.scratch (a int)", None, "leave something in the session"),
        ("CREATE VIEW IF NOT EXISTS temp.v AS SELECT 1", None, "leave something"),
        ("CREATE TRIGGER temp.t AFTER UPDATE ON x BEGIN SELECT 1; END", None, "leave"),
        ("INSERT INTO t VALUES (?)", "a", "sequence"),
        ("INSERT INTO t VALUES (?)", 5, "sequence"),
        ("INSERT INTO t VALUES (:a)", {1: 2}, "str keys"),
    ],
)
async def test_bad_statements_are_refused_in_the_handler(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, sql: Any, params: Any, match: str
) -> None:
    create_ledger(sqlite_url)
    registry = dj.Registry()
    errors: list[BaseException] = []

    @registry.continuous("v", state=int, schedule=dj.every(MINUTE))
    async def v(ctx: dj.ContinuousContext[int]) -> None:
        try:
            ctx.execute(sql, params)
        except dj.ValidationError as exc:
            errors.append(exc)
        ctx.execute(insert_sql(sqlite_url), ("ok", 1, None))

    async with running(registry, sqlite_url) as jobs:
        await jobs.continuous("v").start("x", 0)
        await jobs.wait_idle()
    [error] = errors
    assert match in str(error)
    assert ledger(sqlite_url) == [("ok", 1, None)]  # the refused one was not recorded


@pytest.mark.parametrize(
    "sql",
    [
        "COMMIT",
        "SAVEPOINT s",
        "RELEASE s",
        "BEGIN",
        "ATTACH ':memory:' AS other",
        "DETACH other",
        "PRAGMA query_only = 1",
        "PRAGMA locking_mode = EXCLUSIVE",
    ],
)
async def test_sqlite_refuses_transaction_control_that_got_past_the_text_check(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, sql: str
) -> None:
    """The store's own guard: were a statement that ends or splits the commit's
    transaction to get past ``ctx.execute``'s check (put straight into the recorded
    statements here), SQLite refuses it and the run fails as with any failing
    statement: nothing of it commits, and the runtime goes on."""
    from durable_jobs._domain.statements import Statement

    create_ledger(sqlite_url)
    registry = dj.Registry()

    @registry.continuous("g", state=int, schedule=dj.every(timedelta(hours=1)))
    async def g(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)
        ctx.execute(insert_sql(sqlite_url), ("g", ctx.state, "before"))
        ctx._writes.statements.append(Statement(sql))  # what the text check would refuse
        ctx.execute(insert_sql(sqlite_url), ("g", ctx.state + 100, "after"))

    records: list[dj.RecordedEvent] = []
    async with running(registry, sqlite_url, records=records) as jobs:
        client = jobs.continuous("g")
        await client.start("x", 0)
        await jobs.wait_idle()
        [failure] = _failures(records)
        assert "not authorized" in str(failure), failure
        assert await client.get_state("x") == 0  # nothing of the run committed
        assert ledger(sqlite_url) == []
        await advance(jobs, timedelta(hours=1))  # the runtime goes on; the next run fails too
        assert len(_failures(records)) == 2
        assert ledger(sqlite_url) == []
        assert await client.get_state("x") == 0


@pytest.mark.postgres
async def test_postgres_names_resolve_in_the_store_schema_then_public(
    pg_url: str, pg_schema: str, autojump_clock: trio.testing.MockClock
) -> None:
    create_ledger(pg_url)
    public_table = f"{pg_schema}_pub"
    run_sql(pg_url, f"CREATE TABLE public.{public_table} (v int)")
    # A public table with the same name as the schema's: the schema's wins.
    run_sql(pg_url, "CREATE TABLE IF NOT EXISTS public.ledger_shadow_check (v int)")
    registry = dj.Registry()

    @registry.continuous("p", state=int, schedule=dj.every(MINUTE))
    async def p(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert_sql(pg_url), (ctx.instance_id, 1, None))
        ctx.execute(f"INSERT INTO {public_table} (v) VALUES ({placeholder(pg_url)})", (7,))

    try:
        async with running(registry, pg_url) as jobs:
            await jobs.continuous("p").start("x", 0)
            await jobs.wait_idle()
        assert ledger(pg_url) == [("x", 1, None)]
        assert run_sql(pg_url, f"SELECT v FROM public.{public_table}") == [(7,)]
    finally:
        run_sql(pg_url, f"DROP TABLE IF EXISTS public.{public_table}")
        run_sql(pg_url, "DROP TABLE IF EXISTS public.ledger_shadow_check")


@pytest.mark.postgres
async def test_postgres_set_local_ends_with_the_run(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """SET LOCAL is accepted: it ends with the run's transaction, so the next
    commits on the same pooled connections are not read-only."""
    create_ledger(pg_url)
    url = pg_url + "&pool_size=1"  # one connection: every later commit reuses it
    registry = dj.Registry()

    @registry.continuous("s", state=int, schedule=dj.every(MINUTE))
    async def s(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.state == 0:
            ctx.execute("SET LOCAL transaction_read_only = off")
            ctx.execute("SET LOCAL statement_timeout = '5s'")
        ctx.execute(insert_sql(url), (ctx.instance_id, ctx.state, None))
        ctx.set_state(ctx.state + 1)

    async with running(registry, url) as jobs:
        await jobs.continuous("s").start("x", 0)
        await jobs.wait_idle()
        await advance(jobs, 3 * MINUTE)
    assert ledger(pg_url) == [("x", n, None) for n in range(4)]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "setting",
    [
        "SET LOCAL search_path TO {other}",
        "SELECT set_config('search_path', '{other}', true)",
        # Quoted, as SQL generators write it.
        """SELECT "set_config"('search_path', '{other}', true)""",
        """SELECT pg_catalog."set_config"('search_path', '{other}', true)""",
    ],
)
async def test_postgres_a_set_local_reaches_no_other_run_of_a_group_commit(
    pg_url: str, pg_schema: str, setting: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A run's SET LOCAL (or local set_config) lasts to the end of its transaction:
    that run commits alone, so the runs committed in a group with it do not run their
    statements with its settings. They did: unqualified names of the others resolved
    in the schema it set, and their rows went there."""
    create_ledger(pg_url)
    other = f"{pg_schema}_other"
    run_sql(pg_url, f"CREATE SCHEMA {other}")
    run_sql(pg_url, f"CREATE TABLE {other}.ledger (instance text, n int, note text)")
    registry = dj.Registry()

    @registry.continuous("many", state=int, schedule=dj.every(MINUTE), start_immediately=False)
    async def many(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.instance_id == "setter":
            ctx.execute(setting.format(other=other))
        else:
            ctx.execute(insert_sql(pg_url), (ctx.instance_id, ctx.run_count, None))
        ctx.set_state(ctx.state + 1)

    store = dj.open_store(pg_url)
    tried = count_transactions(store)
    ids = ["setter", *(f"i{n:02}" for n in range(30))]
    try:
        async with running(registry, store) as jobs:
            for i in ids:
                await jobs.continuous("many").start(i, 0)
            await advance(jobs, 3 * MINUTE)
            assert max(tried) > 1  # the runs were committed in shared transactions
            for i in ids:
                assert await jobs.continuous("many").get_state(i) == 3
        assert ledger(pg_url) == sorted((i, n, None) for i in ids[1:] for n in (1, 2, 3))
        assert run_sql(pg_url, f"SELECT count(*) FROM {other}.ledger") == [(0,)]
    finally:
        store.close()
        run_sql(pg_url, f"DROP SCHEMA IF EXISTS {other} CASCADE")


@pytest.mark.postgres
async def test_postgres_a_statement_that_fails_only_at_commit_fails_its_run(
    pg_url: str, pg_schema: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A deferred foreign key is checked at COMMIT, and a SET LOCAL read-only fails
    the store's own insert after the statements: either fails its run like a handler
    error (run_failed, the retry policy), and the runs committed with it are not
    affected. Before, such a run was never recorded: its alarm failed again and again
    (an ERROR each time), and a send raised StoreError instead of HandlerError."""
    dj.open_store(pg_url).close()
    run_sql(pg_url, "CREATE TABLE {schema}.parent (id int PRIMARY KEY)")
    run_sql(
        pg_url,
        "CREATE TABLE {schema}.child (k text, pid int REFERENCES {schema}.parent (id) "
        "DEFERRABLE INITIALLY DEFERRED)",
    )
    run_sql(pg_url, "INSERT INTO {schema}.parent VALUES (1)")
    registry = dj.Registry()

    @registry.continuous(
        "c",
        state=int,
        schedule=dj.every(HOUR),
        retry=dj.Retry(2, delay=MINUTE, jitter=0, on_exhausted="pause"),
    )
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.instance_id == "read-only":
            ctx.execute("SET LOCAL transaction_read_only = on")
        pid = 999 if ctx.instance_id == "orphan" else 1  # 999: no parent, seen at COMMIT
        ctx.execute("INSERT INTO child (k, pid) VALUES (%s, %s)", (ctx.instance_id, pid))
        ctx.set_state(ctx.state + 1)

    @registry.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.execute("INSERT INTO child (k, pid) VALUES (%s, %s)", (ctx.instance_id, event))

    records: list[dj.RecordedEvent] = []
    async with running(registry, pg_url, records=records) as jobs:
        client = jobs.continuous("c")
        for i in ("good", "orphan", "read-only", "good2"):
            await client.start(i, 0)
        await advance(jobs, 2 * HOUR)
        for bad in ("orphan", "read-only"):
            await _failed_twice_then_paused(client, bad)
        for good in ("good", "good2"):
            assert await client.get_state(good) == 3
        with pytest.raises(dj.HandlerError) as raised:
            await jobs.task("t").send("t1", 999)
        assert "ForeignKeyViolation" in type(raised.value.__cause__).__name__
        await jobs.task("t").send("t2", 1)
    failures = [r.data for r in records if r.name == "run_failed" and r.instance_id == "orphan"]
    assert failures[0]["error_type"].endswith("ForeignKeyViolation")
    rows = run_sql(pg_url, "SELECT k FROM {schema}.child ORDER BY k")
    assert sorted({r[0] for r in rows}) == ["good", "good2", "t2"]


async def test_parameters_of_the_wrong_kind_fail_the_run_on_both_stores(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A dict for positional placeholders (or a sequence for named ones) fails the
    run like a handler error. On Postgres it failed the commit as a store outage
    (psycopg raises a plain TypeError): the alarm was tried again unrecorded for
    ever, the retry policy never applied, and a send raised StoreError."""
    p = placeholder(url)
    named = "%(i)s" if is_postgres(url) else ":i"
    registry = dj.Registry()

    @registry.continuous(
        "c",
        state=int,
        schedule=dj.every(HOUR),
        retry=dj.Retry(2, delay=MINUTE, jitter=0, on_exhausted="pause"),
    )
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.instance_id == "dict":
            ctx.execute(f"INSERT INTO ledger (instance, n) VALUES ({p}, {p})", {"a": 1})
        elif ctx.instance_id == "tuple":
            ctx.execute(f"INSERT INTO ledger (instance, n) VALUES ({named}, 1)", ("x",))
        else:
            ctx.execute(insert_sql(url), (ctx.instance_id, ctx.run_count, "ok"))
        ctx.set_state(ctx.state + 1)

    @registry.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert_sql(url), ("second statement fails", event, "never"))
        ctx.execute(f"INSERT INTO ledger (instance, n) VALUES ({p}, {p})", {"a": event})

    # sqlite3 takes a sequence for named placeholders (by position): no error there.
    bad_ones = ("dict", "tuple") if is_postgres(url) else ("dict",)
    records: list[dj.RecordedEvent] = []
    async with running(registry, url, records=records) as jobs:
        client = jobs.continuous("c")
        for i in ("good", *bad_ones):
            await client.start(i, 0)
        await jobs.wait_idle()
        await advance(jobs, MINUTE)
        for bad in bad_ones:
            await _failed_twice_then_paused(client, bad)
        assert await client.get_state("good") == 1
        with pytest.raises(dj.HandlerError) as raised:
            await jobs.task("t").send("t1", 5)
        assert "ProgrammingError" in type(raised.value.__cause__).__name__
    failures = [r.data for r in records if r.name == "run_failed" and r.instance_id == "dict"]
    assert failures[0]["error_type"].endswith("ProgrammingError")
    assert ledger(url) == [("good", 1, "ok")]


async def test_postgres_a_parameter_of_many_megabytes_commits(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A statement larger than the socket takes at once was left partly unsent by
    psycopg's pipeline sync: the server waited for the rest and this process for
    its results, until query_timeout failed the commit as a frozen server (and
    every other commit of the process waited behind it)."""
    dj.open_store(pg_url).close()
    run_sql(pg_url, "CREATE TABLE {schema}.blob (n int, b bytea)")
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.execute("INSERT INTO blob VALUES (%s, %s)", (event, b"\x01" * (event << 20)))
        ctx.set_state(event)

    async with running(registry, pg_url) as jobs:
        for mb in (32, 1, 48):
            await jobs.task("t").send(f"m{mb}", mb)
    rows = run_sql(pg_url, "SELECT n, length(b) FROM {schema}.blob ORDER BY n")
    assert rows == [(1, 1 << 20), (32, 32 << 20), (48, 48 << 20)]


async def test_sqlite_file_with_app_tables_next_to_the_jobs_tables_opens(
    sqlite_url: str,
) -> None:
    create_ledger(sqlite_url)
    dj.open_store(sqlite_url).close()  # the app's own table does not make it "foreign"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO temp_log VALUES (1)",
        "INSERT INTO temporary_rows SELECT 1",
        "CREATE TABLE temp_totals (a int)",
        "CREATE TABLE pg_temp.scratch (a int) ON COMMIT DROP",
        "CREATE TEMP TABLE scratch (a int) ON COMMIT DROP",
        "SELECT 1 INTO x",
        # A table named temp, and the words in a string or a comment.
        "WITH m AS (SELECT 1 AS id) INSERT INTO temp (id) SELECT id FROM m",
        "INSERT INTO temp SELECT 1",
        "SELECT * FROM notes WHERE body = 'copied INTO temp storage'",
        "SELECT 1 -- INTO TEMP x",
        "SELECT $$ UPDATE pg_settings $$",
        "SELECT E'it\\'s' AS a, 'select 1 into temp x' AS b",
    ],
)
def test_statements_that_only_look_like_session_objects_are_accepted(sql: str) -> None:
    from durable_jobs._domain.statements import check_statement

    assert check_statement(sql).sql == sql
