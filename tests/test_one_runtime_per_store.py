"""One ``open_jobs`` at a time per store object.

Two runtimes on one store object would share its cache and, on Postgres, its
lock session, whose advisory locks are re-entrant: both would run one
instance at once. The second ``open_jobs`` is refused while the first
serves; one after the other is fine (a restart), and so are two store
objects on one Postgres schema (as two processes would have).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

import durable_jobs as dj


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(timedelta(seconds=1)))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return registry


@pytest.mark.parametrize("store_kind", ["memory", "sqlite", "postgres"])
async def test_a_second_open_jobs_on_one_store_object_is_refused(
    store_kind: str, request: pytest.FixtureRequest, autojump_clock: trio.testing.MockClock
) -> None:
    url = "memory://"
    if store_kind != "memory":
        url = str(request.getfixturevalue("sqlite_url" if store_kind == "sqlite" else "pg_url"))
    store = dj.open_store(url)
    try:
        async with dj.open_jobs(_registry(), store, clock=dj.VirtualClock()) as jobs:
            await jobs.continuous("tick").start("t", 0)
            with pytest.raises(dj.ConfigurationError, match="already serves another open_jobs"):
                async with dj.open_jobs(_registry(), store, clock=dj.VirtualClock()):
                    pass  # pragma: no cover - refused
            # The first one goes on serving.
            await trio.sleep(3.5)
            status = await jobs.continuous("tick").status("t")
            assert status is not None
            assert status.run_count == 4
        # One after the other: a restart on the same object.
        async with dj.open_jobs(_registry(), store, clock=dj.VirtualClock()) as again:
            status = await again.continuous("tick").status("t")
            assert status is not None
            assert status.run_count >= 4
    finally:
        store.close()


async def test_two_store_objects_on_one_postgres_schema_serve_together(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    one, two = dj.open_store(pg_url), dj.open_store(pg_url)
    try:
        async with (
            dj.open_jobs(_registry(), one, clock=dj.VirtualClock()),
            dj.open_jobs(_registry(), two, clock=dj.VirtualClock()) as jobs,
        ):
            await jobs.continuous("tick").start("t", 0)
    finally:
        one.close()
        two.close()
