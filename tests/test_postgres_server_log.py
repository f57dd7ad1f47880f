"""What the Postgres server logs of a store's normal life: no ERROR line.

Operators alert on ERROR lines in the server's log. A new store's first open
logged one (``type "stored_event_uuid" already exists``: the events and the
snapshots tables both declared the composite type eventsourcing uses, and the
second ``CREATE TYPE`` failed on the server, silently on our side). The server
here is the test's own (``_own_postgres.py``), so its log is ours to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import trio

import durable_jobs as dj
from _own_postgres import OwnPostgres

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def server() -> Iterator[OwnPostgres]:
    own = OwnPostgres()
    try:
        yield own
    finally:
        own.close()


def _errors(server: OwnPostgres) -> list[str]:
    log = (server.dir / "log").read_text(errors="replace")
    return [line for line in log.splitlines() if "ERROR:" in line]


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(timedelta(hours=1)))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    @registry.task("inbox", event=str, state=int)
    async def inbox(ctx: dj.TaskContext[int]) -> None:
        pass

    @inbox.on_event
    async def on_event(event: str, ctx: dj.TaskContext[int]) -> None:
        ctx.execute("INSERT INTO seen (what) VALUES (%s)", (event,))
        ctx.set_state((ctx.state or 0) + 1)

    return registry


def test_a_new_store_opened_used_and_reopened_logs_no_error(server: OwnPostgres) -> None:
    for url in (server.url, f"{server.url}?schema=app_jobs"):
        # First opens of a new store (the default schema and one of its own), as the
        # maintenance tools and the runtime do.
        dj.open_store(url).close()
        schema = url.partition("schema=")[2] or "public"
        with dj.open_store(url) as store:
            assert store.list_instances() == []
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {schema}.seen (what text)")

        async def main(url: str = url) -> None:
            async with dj.open_jobs(_registry(), url) as jobs:
                await jobs.continuous("tick").start("t1", 0)  # kept on the reopen
                for n in range(20):
                    await jobs.task("inbox").send(f"i{n % 3}", f"e{n}", idempotency_key=f"k{n}")
                await jobs.task("inbox").send("i0", "e0", idempotency_key="k0")  # a duplicate
                await jobs.wait_idle()  # the first run of t1, at once
                assert (await jobs.continuous("tick").get_state("t1") or 0) >= 1

        trio.run(main)
        trio.run(main)  # reopened: its tables are there
    assert _errors(server) == []
