"""A worker for test_postgres_frozen_commit.py: ``python _frozen_commit_child.py URL MARK
LEASE``.

It serves one continuous job on a Postgres store with a lease of LEASE seconds; each run
writes one handler statement, ``SELECT pg_sleep(0.5) -- MARK``, which runs in
the run's commit transaction. It prints ``ready`` once served; the parent
freezes it (SIGSTOP) while that statement runs.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import trio

import durable_jobs as dj
from _child_output import say


async def main(url: str, mark: str, lease: str) -> None:
    registry = dj.Registry()

    @registry.continuous("slow", state=int, schedule=dj.every(timedelta(milliseconds=100)))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)
        ctx.execute(f"SELECT pg_sleep(0.5) -- {mark}")

    async with dj.open_jobs(registry, url, lease=float(lease)) as jobs:
        await jobs.continuous("slow").start("s1", 0)
        say("ready")
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
