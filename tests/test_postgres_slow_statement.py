"""A handler statement slower than the store's ``query_timeout``, on a real Postgres.

The server cancels it (``statement_timeout``, a share of ``query_timeout``, set for the
handler statements of each commit): the run fails with the database's error and the
retry policy applies. Before, the client gave up after ``query_timeout`` while the
statement went on running on the server inside the commit, holding its locks (every
other commit waited), and the run was tried again from scratch, nothing recorded, for
ever.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

import durable_jobs as dj
from _runtime import running
from durable_jobs.stores._postgres_statements import STATEMENT_SHARE, statement_limit_ms

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    "sleeps",
    [
        [5.0],  # one statement slower than query_timeout
        [0.6, 0.6],  # each one within it, together past the client's wait
        ["SET LOCAL statement_timeout = '60s'", 5.0],  # a run may lower it, not raise it
    ],
)
async def test_statements_slower_than_query_timeout_fail_their_run(
    pg_url: str, sleeps: list[float | str]
) -> None:
    """The budget is the commit's (the client waits query_timeout for the whole commit),
    not each statement's: two statements of 60% each failed the same endless way."""
    registry = dj.Registry()
    tries: list[int] = []

    @registry.continuous(
        "slow", state=int, schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(2, delay=timedelta(milliseconds=100), jitter=0, on_exhausted="pause"),
    )  # fmt: skip
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        tries.append(ctx.attempt)
        for step in sleeps:
            if isinstance(step, str):
                ctx.execute(step)
            else:
                ctx.execute("SELECT pg_sleep(%s)", (step,))

    async with running(registry, pg_url + "&query_timeout=1") as jobs:
        client = jobs.continuous("slow")
        await client.start("s", 0)
        with trio.fail_after(30):  # two tries of about 0.8 s each
            while (await client.status("s")).status != "failed":  # paused by on_exhausted
                await trio.sleep(0.05)
        history = await client.history("s")
    failed = [r.data for r in history if r.name == "run_failed"]
    assert [f["error_type"] for f in failed] == ["psycopg.errors.QueryCanceled"] * 2
    assert "statement timeout" in failed[0]["message"]
    assert tries == [1, 2]


def test_the_statement_limit_is_a_share_of_query_timeout() -> None:
    class Conn:
        query_timeout = 15.0

    assert statement_limit_ms(Conn()) == int(15_000 * STATEMENT_SHARE)  # type: ignore[arg-type]
    Conn.query_timeout = 0.0001
    assert statement_limit_ms(Conn()) == 1  # type: ignore[arg-type]
    assert statement_limit_ms(object()) is None  # type: ignore[arg-type]
