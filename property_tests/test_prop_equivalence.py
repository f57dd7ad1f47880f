"""Store equivalence: one workload gives the same results on memory, SQLite and Postgres.

The same random workload (``_workloads``) runs, in virtual time from the same
instant, on each store; everything observable must be equal, exactly (time
is virtual, so even timestamps and run durations match):

* every client call's result, in order;
* after every step (once the runtime is idle) and at the end: each
  instance's status and state through the client, and the instance index;
* each instance's history (record names, versions, times, fields and the
  state each run started from);
* the instance index (kind, job, id, status, alarm, version, update time);
* the handler calls made on each instance (what ran, with which attempt, when).

Postgres runs fewer examples (a schema per example). Its test is marked
``postgres`` and fails, never skips, without the server.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from _support import fresh_postgres_url, fresh_sqlite_url, run_virtual, slow_examples
from _workloads import (
    T0,
    Call,
    Effects,
    Step,
    audit_store,
    drive,
    make_registry,
    snapshot_of_client,
    stored_records,
    workloads,
)
from hypothesis import given

import durable_jobs as dj
from durable_jobs._records import RecordedEvent
from durable_jobs._store.index import IndexRow


@dataclass(frozen=True)
class Outcome:
    results: list[tuple[Step, object]]
    client: list[dict[tuple[str, str, str], tuple[Any, Any]]]
    histories: dict[tuple[str, str, str], list[RecordedEvent]]
    index: list[list[IndexRow]]
    #: Per instance: runs of different instances due at one instant may interleave
    #: in any order, runs of one instance never.
    calls: dict[tuple[str, str], list[Call]]


def outcome(url: str, steps: list[Step]) -> Outcome:
    """Run ``steps`` on a fresh store at ``url``; everything observable afterwards."""
    effects = Effects(clock=dj.VirtualClock(T0))
    results: list[tuple[Step, object]] = []
    client: list[dict[tuple[str, str, str], tuple[Any, Any]]] = []
    index: list[list[IndexRow]] = []

    with dj.open_store(url, snapshot_interval=4) as store:

        async def main() -> None:
            async with dj.open_jobs(
                make_registry(effects), store, clock=effects.clock, poll_interval=None
            ) as jobs:

                async def observe() -> None:
                    client.append(await snapshot_of_client(jobs))
                    index.append(list(store.iter_instances()))

                results.extend(await drive(jobs, steps, effects, observe=observe))
                await observe()

        run_virtual(main)
        audit_store(store)
        return Outcome(
            results=results,
            client=client,
            histories=stored_records(store),
            index=index,
            calls=_per_instance(effects.calls),
        )


def _per_instance(calls: list[Call]) -> dict[tuple[str, str], list[Call]]:
    out: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in calls:
        out[(call.kind, call.instance_id)].append(call)
    return dict(out)


def assert_same(expected: Outcome, found: Outcome, name: str) -> None:
    for part in ("results", "client", "histories", "index", "calls"):
        assert getattr(found, part) == getattr(expected, part), f"{name} differs in {part}"


@slow_examples(50)
@given(steps=workloads())
def test_memory_and_sqlite_agree(steps: list[Step]) -> None:
    reference = outcome("memory://", steps)
    with fresh_sqlite_url() as url:
        assert_same(reference, outcome(url, steps), "SQLite")


@pytest.mark.postgres
@slow_examples(12)
@given(steps=workloads(max_size=20))
def test_memory_and_postgres_agree(postgres_url: str, steps: list[Step]) -> None:
    reference = outcome("memory://", steps)
    with fresh_postgres_url(postgres_url) as url:
        assert_same(reference, outcome(url, steps), "Postgres")
