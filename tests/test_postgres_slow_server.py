"""A slow server: the store's tables locked (a migration, an admin's ``LOCK TABLE``) for
longer than half the lease, while a worker runs.

The worker's lock session gets no reply in time and is given up; that is the store
out of reach for a while, which the runtime logs at WARNING and waits out, then runs
resume at once. It used to log each waiting run at ERROR ("could not run") and put
those runs off by 5 s more after the server was fine again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import psycopg
import pytest
import trio

import durable_jobs as dj

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: Longer than half the lease (1 s), shorter than the query timeout (5 s).
LOCKED_FOR = 3.0


def _lock_tables(postgres_url: str, schema: str, locked: threading.Event) -> None:
    with psycopg.connect(postgres_url) as conn:
        # In the order a commit takes them (the index, then the events), so that this
        # waits for a commit in flight instead of deadlocking with it.
        conn.execute(
            f"LOCK TABLE {schema}.dj_instances, {schema}.durablejobs_events "
            "IN ACCESS EXCLUSIVE MODE"
        )
        locked.set()
        time.sleep(LOCKED_FOR)  # holding the lock: what the test is about, not a timing
        conn.rollback()


async def test_tables_locked_for_longer_than_half_the_lease_is_an_outage_not_an_error(
    pg_url: str, pg_schema: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(timedelta(seconds=0.2)))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    caplog.set_level(logging.INFO, logger="durable_jobs")
    url = f"{pg_url}&query_timeout=5"
    async with dj.open_jobs(registry, url, lease=timedelta(seconds=2)) as jobs:
        client = jobs.continuous("tick")
        ids = [f"i{n}" for n in range(5)]
        for i in ids:
            await client.start(i, 0)
        locked = threading.Event()
        await trio.to_thread.run_sync(_lock_tables, postgres_url, pg_schema, locked)
        assert locked.is_set()
        # Every instance runs again once the server answers.
        before = {i: (await client.status(i)).run_count for i in ids}
        with trio.fail_after(30):  # a bound for a hang, not a measure of speed
            for i in ids:
                while (await client.status(i)).run_count < before[i] + 2:
                    await trio.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert any("taken as lost" in m or "out of reach" in m for m in messages), messages
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
