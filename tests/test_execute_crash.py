"""``ctx.execute`` with real processes killed by SIGKILL.

The child (``tests/_execute_crash_child.py``) writes one row per committed run
(and per ``send``) with ``ctx.execute``, into a table with no unique key, so
a run whose rows were written twice, or rows without their run, show up:

* killed inside the commit transaction (its statements ran, it had not
  committed): neither the run nor its rows are there; a run seen committed
  has its rows;
* killed at arbitrary points, again and again: the table always equals the
  committed runs' writes;
* two Postgres workers on one store, one of them killed: no run's rows are
  committed twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import _children as children
import durable_jobs as dj
from _execute import create_ledger, is_postgres, run_sql

pytestmark = pytest.mark.slow

CHILD = Path(__file__).resolve().with_name("_execute_crash_child.py")


class Child(children.Child):
    """One ``_execute_crash_child.py`` process whose lines the parent reads."""

    def __init__(self, url: str, mode: str, first: int = 0) -> None:
        super().__init__(CHILD, url, mode, str(first))


def create_writes(url: str) -> None:
    create_ledger(url)  # the store's tables first
    table = "{schema}.writes" if is_postgres(url) else "writes"
    run_sql(url, f"CREATE TABLE {table} (what text NOT NULL, n bigint NOT NULL)")


def writes(url: str) -> Counter[tuple[str, int]]:
    table = "{schema}.writes" if is_postgres(url) else "writes"
    return Counter((str(w), int(n)) for w, n in run_sql(url, f"SELECT what, n FROM {table}"))


def committed_writes(store: dj.Store) -> Counter[tuple[str, int]]:
    """The rows the committed runs wrote: one per beat run, one per accepted send."""
    out: Counter[tuple[str, int]] = Counter()
    beat = store.get("continuous", "beat", "b1")
    if beat is not None:
        for e in store.history(beat.id):
            if e.NAME == "run_succeeded":
                out["beat", e.run_count] += 1  # type: ignore[attr-defined]
    ping = store.get("task", "ping", "p1")
    if ping is not None:
        history = store.history(ping.id)
        for e in history:
            if e.NAME == "event_added":
                out["send", int(e.event)] += 1  # type: ignore[attr-defined]
    return out


def test_killed_inside_the_commit_leaves_neither_the_run_nor_its_rows(
    durable_store_url: str,
) -> None:
    url = durable_store_url
    create_writes(url)
    child = Child(url, "hang")
    try:
        child.read_until(lambda seen: "hanging" in seen)
        lines = child.kill()
    finally:
        child.cleanup()
    seen_runs = [x for x in lines if x.startswith("commit continuous b1") and "run_succeeded" in x]
    assert len(seen_runs) == 2  # runs 1 and 2 were committed, and seen so after their commit
    with dj.open_store(url) as store:
        assert committed_writes(store) == Counter({("beat", 1): 1, ("beat", 2): 1})
        beat = store.get("continuous", "beat", "b1")
        assert beat is not None and beat.d.state == 2
    assert writes(url) == Counter({("beat", 1): 1, ("beat", 2): 1})  # run 3's row is not there


def test_the_table_always_equals_the_committed_runs_writes(durable_store_url: str) -> None:
    url = durable_store_url
    create_writes(url)
    first = 0
    for cycle, after in enumerate((30, 75, 20, 120)):
        child = Child(url, "loop", first)
        wanted = after + 5 * cycle
        try:
            child.read_until(lambda seen: len(seen) >= wanted)  # noqa: B023 - used at once
            lines = child.kill()
        finally:
            child.cleanup()
        with dj.open_store(url) as store:
            expected = committed_writes(store)
        assert writes(url) == expected
        assert max(expected.values()) == 1
        sent = {int(x.split()[1]) for x in lines if x.startswith("sent ")}
        assert {("send", n) for n in sent} <= set(expected)  # acknowledged sends kept their rows
        beats = [x for x in lines if x.startswith("commit continuous b1") and "run_succeeded" in x]
        assert len([k for k in expected if k[0] == "beat"]) >= len(beats)
        first += 10_000


@pytest.mark.postgres
def test_two_postgres_workers_never_both_commit_one_runs_rows(pg_url: str) -> None:
    create_writes(pg_url)
    one, two = Child(pg_url, "loop", 0), Child(pg_url, "loop", 500_000)
    try:
        one.read_until(lambda seen: len(seen) >= 60)
        two.read_until(lambda seen: len(seen) >= 60)
        one.kill()
        runs = len([x for x in two.lines if "commit continuous b1" in x])
        two.read_until(
            lambda seen: len([x for x in seen if "commit continuous b1" in x]) > runs + 8
        )
        two.kill()
    finally:
        one.cleanup()
        two.cleanup()
    rows = writes(pg_url)
    assert max(rows.values()) == 1, [k for k, v in rows.items() if v > 1][:5]
    with dj.open_store(pg_url) as store:
        expected = committed_writes(store)
    assert rows == expected
    beats = sorted(n for what, n in rows if what == "beat")
    assert beats == list(range(1, len(beats) + 1))  # no run's rows twice, none skipped
