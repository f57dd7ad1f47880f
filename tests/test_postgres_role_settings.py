"""Settings a DBA puts on the app's role or database, and what the store does about them.

The tests set them the way a role setting reaches a session, at connection time
(libpq's ``PGOPTIONS``, which every connection of the test process sends), so the
shared server's own configuration is never changed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import trio
from psycopg import sql

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs.maintenance import TailEvent, tail_events
from durable_jobs.stores._postgres_recorder import alarm_channel

pytestmark = pytest.mark.postgres

WAIT = 20  # seconds something may take before the test fails
T = datetime(2026, 1, 1, tzinfo=UTC)


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.task("note", event=str, state=str)
    async def note(ctx: dj.TaskContext[str]) -> None:
        ctx.execute("INSERT INTO seen VALUES (current_setting('synchronous_commit'))")

    @note.on_event
    async def keep(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)
        ctx.execute("INSERT INTO seen VALUES (current_setting('synchronous_commit'))")
        ctx.schedule(timedelta(0))

    return registry


def test_a_role_with_synchronous_commit_off_still_gets_durable_commits(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``synchronous_commit=off`` on the role: each commit was acknowledged before it
    was on disk, and a server crash lost acknowledged sends (3 of a few hundred). Now
    the commits of the store raise it to ``on`` for their own transaction."""
    schema = pg_url.rsplit("schema=", 1)[1]
    monkeypatch.setenv("PGOPTIONS", "-c synchronous_commit=off")

    async def main() -> None:
        async with dj.open_jobs(_registry(), pg_url) as jobs:
            with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as conn:
                assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
                conn.execute(f'CREATE TABLE "{schema}".seen (setting text)')
            await jobs.task("note").send("a", "hello")
            await jobs.wait_idle()

    trio.run(main)
    with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as conn:
        rows = conn.execute(f'SELECT setting FROM "{schema}".seen').fetchall()
    assert rows == [("on",), ("on",)]  # on_event's commit (the send's), then execute's


def test_the_alarm_listener_outlives_a_roles_idle_session_timeout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LISTEN connection only waits: with ``idle_session_timeout`` on the role the
    server ended it every few seconds, and it was opened again, a warning each time."""
    monkeypatch.setenv("PGOPTIONS", "-c idle_session_timeout=2000")
    with dj.open_store(pg_url) as store:
        listener = store.open_alarm_listener()  # type: ignore[attr-defined]
        try:
            conn = listener._conn
            assert conn.execute("SHOW idle_session_timeout").fetchone() == ("0",)
        finally:
            listener.close()


def test_tail_goes_on_when_its_listen_connection_ends(pg_url: str) -> None:
    """``durable-jobs tail`` (and the dashboard's live stream) stopped with "The alarm
    listener lost its connection" when the server ended its LISTEN connection (an
    idle_session_timeout, pg_terminate_backend): it polls anyway, so now it goes on."""
    schema = pg_url.rsplit("schema=", 1)[1]

    async def send(instance_id: str) -> None:
        async with dj.open_jobs(_registry(), pg_url, run_alarms=False) as jobs:
            await jobs.task("note").send(instance_id, "x")

    def ensure_table() -> None:
        with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as conn:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".seen (setting text)')

    seen: list[TailEvent] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    with dj.open_store(pg_url) as store:  # (it makes the schema and the tables)
        ensure_table()
        start = store.last_position()

        def follow() -> None:
            try:
                for event in tail_events(store, after=start, stop=stop, poll_interval=0.05):
                    seen.append(event)
            except BaseException as exc:  # reported by the test
                failed.append(exc)

        def until(check: object, what: str) -> None:
            deadline = time.monotonic() + WAIT
            while not check():  # type: ignore[operator]
                assert not failed, f"the tail stopped: {failed[0]!r}"
                assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
                time.sleep(0.05)

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            listen = f'LISTEN "{alarm_channel(schema)}"'
            with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as admin:

                def listening() -> list[int]:
                    rows = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE query = %s", (listen,)
                    ).fetchall()
                    return [int(pid) for (pid,) in rows]

                until(listening, "the tail listens")
                trio.run(send, "first")
                until(lambda: any(e.instance_id == "first" for e in seen), "the first send")
                for pid in listening():
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                trio.run(send, "second")
                until(lambda: any(e.instance_id == "second" for e in seen), "the second send")
        finally:
            stop.set()
            thread.join(WAIT)
    assert not failed


def _documented_grants() -> str:
    """The SQL block of docs/operations.md that a test runs (its marker says which)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    found = re.search(
        r"<!-- docs-check: sql \(tests/test_postgres_role_settings\.py runs it\) -->\s*"
        r"```sql\n(.*?)```",
        text,
        re.DOTALL,
    )
    assert found, "the grants block of docs/operations.md"
    return found.group(1)


def _as(postgres_url: str, role: str, schema: str) -> str:
    parts = urlsplit(postgres_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}")) + f"?schema={schema}"


def test_the_documented_grants_are_enough_for_the_app_and_a_reader(
    postgres_url: str, pg_schema: str
) -> None:
    """docs/operations.md's grants, run as written (its names replaced): an admin role
    makes the store; the app role runs jobs with what it is granted; the reader reads
    and cannot write."""
    app, reader = f"{pg_schema}_app", f"{pg_schema}_reader"
    grants = _documented_grants()
    for name, to in (("jobs", pg_schema), ("app", app), ("reader", reader)):
        grants = re.sub(rf"\b{name}\b", to, grants)
    admin = psycopg.connect(postgres_url.split("?", 1)[0], autocommit=True)
    try:
        for role in (app, reader):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        with dj.open_store(f"{postgres_url}?schema={pg_schema}"):
            pass  # the admin role makes the schema and the tables
        for statement in filter(str.strip, grants.split(";")):
            admin.execute(statement)

        ran: list[str] = []

        async def main() -> None:
            registry = dj.Registry()

            @registry.task("note", event=str, state=str)
            async def note(ctx: dj.TaskContext[str]) -> None:
                ran.append(ctx.instance_id)

            @note.on_event
            async def keep(event: str, ctx: dj.TaskContext[str]) -> None:
                ctx.set_state(event)
                ctx.schedule(timedelta(0))

            async with dj.open_jobs(registry, _as(postgres_url, app, pg_schema)) as jobs:
                await jobs.task("note").send("a", "hello")
                await jobs.wait_idle()

        trio.run(main)
        assert ran == ["a"]
        with dj.open_store(_as(postgres_url, reader, pg_schema)) as store:
            assert [r.instance_id for r in store.list_instances()] == ["a"]
            started, _ = ContinuousInstance.start(
                None, "tick", "b", now=T, state=0, first_run_at=T, type_version=1
            )
            with pytest.raises(dj.StoreError, match="permission denied") as info:
                store.save(started)
            assert "nothing was written" in str(info.value)
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(pg_schema))
            )
        for role in (app, reader):
            with contextlib.suppress(psycopg.Error):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        admin.close()
