"""The read-only history API (``dj.Inspector``) on stores filled by the runtime.

Each store is filled by ``_cli_fixtures.fill`` (the real runtime, in virtual
time: pytest-trio's ``autojump_clock``) on real SQLite and Postgres.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from trio.testing import MockClock

import durable_jobs as dj
from _cli_fixtures import END, NOW, fill
from _runtime import HOUR, MINUTE, SECOND, T, names
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._store.registry import open_store
from durable_jobs._tools.diff import json_diff
from durable_jobs.maintenance import tail_events


@pytest.fixture
async def filled(durable_store_url: str, autojump_clock: MockClock) -> str:
    """A durable store URL holding the story of ``_cli_fixtures``."""
    await fill(durable_store_url)
    return durable_store_url


@pytest.fixture
async def inspector(filled: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dj.Inspector]:
    """An inspector on the filled store, whose store refuses every write.

    Tests that use it also take ``autojump_clock`` (pytest-trio picks the clock
    from the test's own arguments), so the store fills in virtual time.
    """

    def no_writes(*_: object, **__: object) -> None:
        raise AssertionError("the inspector wrote to the store")

    monkeypatch.setattr(dj.Store, "save", no_writes)
    monkeypatch.setattr(dj.Store, "import_events", no_writes, raising=False)
    with dj.Inspector(filled) as opened:
        yield opened


def ids(items: list[dj.InstanceSummary]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.job, s.instance_id) for s in items]


ALL = [
    ("continuous", "sync", "acct-bad"),
    ("continuous", "sync", "acct-ok"),
    ("debounce", "digest", "u1"),
    ("task", "reminder", "r1"),
]


# ---- instances and status ----------------------------------------------------------------


async def test_instances_are_listed_filtered_and_paged(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    page = inspector.instances()
    assert ids(page.items) == ALL
    assert page.next_cursor is None
    assert ids(inspector.instances(kind="continuous").items) == ALL[:2]
    assert ids(inspector.instances(job="digest").items) == [ALL[2]]
    assert ids(inspector.instances(status="failed").items) == [ALL[0]]
    assert ids(inspector.instances(kind="task", status="active").items) == [ALL[3]]
    assert inspector.instances(job="no-such-job").items == []

    seen: list[tuple[str, str, str]] = []
    cursor: str | None = None
    for _ in range(4):
        page = inspector.instances(limit=1, cursor=cursor)
        seen += ids(page.items)
        cursor = page.next_cursor
    assert seen == ALL
    assert cursor is None
    assert ids(list(inspector.iter_instances(kind="continuous"))) == ALL[:2]


async def test_summaries_carry_counters_and_alarms(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    bad, ok, digest, reminder = inspector.instances().items
    assert (bad.status, bad.run_count, bad.due_at, bad.version) == ("failed", 1, None, 9)
    assert (bad.attempt, bad.event_count, bad.error) == (0, None, None)
    assert (ok.status, ok.run_count, ok.due_at) == ("running", 2, T + 2 * HOUR)
    assert ok.updated_at == T + HOUR
    assert (digest.status, digest.run_count, digest.event_count) == ("debouncing", 2, 1)
    assert digest.due_at == END + MINUTE
    assert (reminder.status, reminder.generation, reminder.event_count) == ("active", 2, 1)
    assert reminder.created_at == END
    assert reminder.instance_uuid == instance_uuid("task", "reminder", "r1")

    assert inspector.status("continuous", "sync", "acct-ok") == ok
    assert inspector.status("continuous", "sync", "nobody") is None
    assert inspector.status("task", "no-such-job", "r1") is None
    assert ok.to_json()["due_at"] == "2026-01-01T02:00:00Z"


@pytest.mark.parametrize(
    ("kind", "job", "instance_id"),
    [("cron", "sync", "a"), ("continuous", "bad:name", "a"), ("continuous", "sync", "")],
)
async def test_malformed_names_are_validation_errors(
    inspector: dj.Inspector, autojump_clock: MockClock, kind: str, job: str, instance_id: str
) -> None:
    with pytest.raises(dj.ValidationError):
        inspector.status(kind, job, instance_id)
    with pytest.raises(dj.ValidationError):
        inspector.history(kind, job, instance_id)


async def test_malformed_options_are_validation_errors(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    with pytest.raises(dj.ValidationError, match="kind"):
        inspector.instances(kind="cron")
    with pytest.raises(dj.ValidationError, match="status"):
        inspector.instances(status="sleeping")
    with pytest.raises(dj.ValidationError, match="cursor"):
        inspector.instances(cursor="not a cursor!")
    with pytest.raises(dj.ValidationError, match="limit"):
        inspector.instances(limit=0)
    with pytest.raises(dj.ValidationError, match="timezone"):
        inspector.alarms(now=datetime(2026, 1, 1))


# ---- history -----------------------------------------------------------------------------


async def test_history_of_a_run_that_failed_retried_and_was_paused(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    records = inspector.history("continuous", "sync", "acct-bad")
    assert names(records) == [
        "started",
        "alarm_set",
        "run_failed",
        "alarm_set",
        "run_failed",
        "alarm_set",
        "run_failed",
        "retry_exhausted",
        "alarm_cleared",
    ]
    assert [r.version for r in records] == list(range(1, 10))
    failures = [r for r in records if r.name == "run_failed"]
    assert [(r.run_count, r.attempt, r.at) for r in failures] == [
        (1, 1, T),
        (1, 2, T + 10 * SECOND),
        (1, 3, T + 20 * SECOND),
    ]
    assert failures[0].data["error_type"] == "ConnectionError"
    assert failures[1].data["message"] == "bank API unreachable (try 2)"
    assert [r.data["retry_at"] for r in failures] == [T + 10 * SECOND, T + 20 * SECOND, None]
    assert all(r.state_before == {"balance": 0, "syncs": 0, "fail": True} for r in failures)
    assert records[7].data["action"] == "pause"
    assert all(r.kind == "continuous" and r.instance_id == "acct-bad" for r in records)


async def test_history_of_a_terminated_then_restarted_instance(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    records = inspector.history("task", "reminder", "r1")
    assert names(records) == [
        "started",
        "event_added",
        "run_succeeded",
        "state_changed",
        "alarm_set",
        "run_succeeded",
        "alarm_cleared",
        "terminated",
        "started",
        "event_added",
        "run_succeeded",
        "state_changed",
        "alarm_set",
    ]
    execute = records[5]
    assert (execute.data["handler"], execute.run_count, execute.at) == (
        "execute",
        1,
        T + 30 * MINUTE,
    )
    assert execute.state_before == ["first"]
    assert records[8].at == END
    assert records[11].data["state"] == ["second"]


async def test_history_ranges_keep_the_state_runs_started_from(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    whole = inspector.history("continuous", "sync", "acct-ok")
    part = inspector.history("continuous", "sync", "acct-ok", from_version=6, to_version=7)
    assert part == whole[5:7]
    assert part[0].name == "run_succeeded"
    assert part[0].state_before == {"balance": 10, "syncs": 1, "fail": False}
    assert inspector.history("continuous", "sync", "acct-ok", from_version=9) == []
    assert inspector.history("continuous", "sync", "nobody") == []
    with pytest.raises(dj.ValidationError):
        inspector.history("continuous", "sync", "acct-ok", from_version=0)
    # Beyond what a store can hold: the caller's mistake, not a store failure.
    with pytest.raises(dj.ValidationError, match="from 1 to 9223372036854775807"):
        inspector.history("continuous", "sync", "acct-ok", from_version=2**70)
    with pytest.raises(dj.ValidationError, match="from 1 to 9223372036854775807"):
        inspector.history("continuous", "sync", "acct-ok", to_version=2**63)
    with pytest.raises(dj.ValidationError, match="from 0 to 9223372036854775807"):
        next(tail_events(inspector.store, after=2**70, duration=0))


async def test_a_reversed_history_range_is_refused_as_the_cli_refuses_it(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    """`history(from_version=10, to_version=2)` returned [] while `durable-jobs history
    --from 10 --to 2` is refused (an outside review): a ValidationError, also for an
    instance that does not exist, and before anything is read."""
    refused = "from_version 10 is after to_version 2: give from_version <= to_version"
    for instance_id in ("acct-ok", "nobody"):
        with pytest.raises(dj.ValidationError, match=refused):
            inspector.history("continuous", "sync", instance_id, from_version=10, to_version=2)
        with pytest.raises(dj.ValidationError, match=refused):
            inspector.iter_history(
                "continuous", "sync", instance_id, from_version=10, to_version=2
            )
    one = inspector.history("continuous", "sync", "acct-ok", from_version=3, to_version=3)
    assert [record.version for record in one] == [3]


async def test_debounce_history_shows_each_batch(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    records = inspector.history("debounce", "digest", "u1")
    flushes = [
        (r.data["batch_no"], r.data["reason"], r.data["event_count"])
        for r in records
        if r.name == "flushed"
    ]
    assert flushes == [(1, "max_events", 3), (2, "flush_after", 2)]
    runs = [r for r in records if r.name == "run_succeeded"]
    assert [r.state_before for r in runs] == [["home", "pricing", "signup"], ["docs", "blog"]]


# ---- time travel and diff ----------------------------------------------------------------


async def test_state_at_a_version_or_a_time(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    latest = inspector.state_at("continuous", "sync", "acct-ok")
    assert latest is not None
    assert (latest.version, latest.latest_version, latest.at) == (8, 8, T + HOUR)
    assert latest.state == {"balance": 20, "syncs": 2, "fail": False}

    v5 = inspector.state_at("continuous", "sync", "acct-ok", version=5)
    assert v5 is not None
    assert (v5.version, v5.status, v5.due_at) == (5, "running", T + HOUR)
    assert v5.state == {"balance": 10, "syncs": 1, "fail": False}
    assert v5.data["run_count"] == 1
    assert inspector.state_at("continuous", "sync", "acct-ok", at=T + 30 * MINUTE) == v5
    at_start = inspector.state_at("continuous", "sync", "acct-ok", at=T)
    assert at_start is not None
    assert at_start.version == 5  # the first run committed at T too
    assert inspector.state_at("continuous", "sync", "acct-ok", at=T - SECOND) is None
    assert inspector.state_at("continuous", "sync", "nobody", version=1) is None

    with pytest.raises(dj.ValidationError, match="versions 1 to 8"):
        inspector.state_at("continuous", "sync", "acct-ok", version=9)
    with pytest.raises(dj.ValidationError):
        inspector.state_at("continuous", "sync", "acct-ok", version=0)
    with pytest.raises(dj.ValidationError, match="either"):
        inspector.state_at("continuous", "sync", "acct-ok", version=1, at=T)


async def test_state_at_across_generations(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    ended = inspector.state_at("task", "reminder", "r1", version=8)
    assert ended is not None
    assert (ended.status, ended.live, ended.state, ended.due_at) == (
        "terminated",
        False,
        None,
        None,
    )
    between = inspector.state_at("task", "reminder", "r1", at=END - MINUTE)
    assert between == ended
    now = inspector.state_at("task", "reminder", "r1")
    assert now is not None
    assert (now.status, now.state, now.data["generation"]) == ("active", ["second"], 2)


async def test_state_of_a_debounce_is_the_batch_that_flushes_next(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    closed = inspector.state_at("debounce", "digest", "u1", version=9)  # batch 1 closed
    assert closed is not None
    assert closed.state == ["home", "pricing", "signup"]
    assert closed.data["closed"][0]["reason"] == "max_events"
    flushed = inspector.state_at("debounce", "digest", "u1", version=13)
    assert flushed is not None
    assert (flushed.status, flushed.state) == ("idle", None)


async def test_diff_between_versions(inspector: dj.Inspector, autojump_clock: MockClock) -> None:
    result = inspector.diff("continuous", "sync", "acct-ok", 1, 8)
    assert result is not None
    assert [(c.path, c.op, c.old, c.new) for c in result.changes] == [
        ("/balance", "changed", 0, 20),
        ("/syncs", "changed", 0, 2),
    ]
    assert (result.before.version, result.after.version) == (1, 8)
    assert result.to_json()["changes"][0] == {
        "path": "/balance",
        "op": "changed",
        "old": 0,
        "new": 20,
    }

    full = inspector.diff("continuous", "sync", "acct-ok", 1, 8, full=True)
    assert full is not None
    paths = {c.path for c in full.changes}
    assert {"/state/balance", "/run_count", "/alarm_at"} <= paths

    same = inspector.diff("continuous", "sync", "acct-ok", 8, 8)
    assert same is not None
    assert same.changes == []
    assert inspector.diff("continuous", "sync", "nobody", 1, 2) is None
    with pytest.raises(dj.ValidationError):
        inspector.diff("continuous", "sync", "acct-ok", 1, 99)

    batches = inspector.diff("debounce", "digest", "u1", 8, 18)
    assert batches is not None
    assert [(c.path, c.op) for c in batches.changes] == [
        ("/0", "changed"),
        ("/1", "changed"),
        ("/2", "removed"),
    ]


# ---- alarms and stats --------------------------------------------------------------------


async def test_pending_and_overdue_alarms(
    inspector: dj.Inspector, autojump_clock: MockClock
) -> None:
    pending = inspector.alarms(now=NOW)
    assert [(a.job, a.instance_id, a.due_at, a.overdue) for a in pending] == [
        ("digest", "u1", END + MINUTE, True),
        ("reminder", "r1", END + 30 * MINUTE, False),
        ("sync", "acct-ok", T + 2 * HOUR, False),
    ]
    assert [a.lateness for a in pending] == [
        timedelta(minutes=24),
        timedelta(minutes=-5),
        timedelta(minutes=-30),
    ]
    overdue = inspector.alarms(now=NOW, overdue=True)
    assert [a.instance_id for a in overdue] == ["u1"]
    assert overdue[0].to_json()["lateness_seconds"] == 1440.0
    assert inspector.alarms(now=T, overdue=True) == []
    assert len(inspector.alarms(now=NOW, limit=1)) == 1
    assert len(inspector.alarms()) == 3  # against the wall clock


async def test_stats_per_job(inspector: dj.Inspector, autojump_clock: MockClock) -> None:
    stats = {(s.kind, s.job): s for s in inspector.stats(now=NOW)}
    assert list(stats) == [("continuous", "sync"), ("debounce", "digest"), ("task", "reminder")]
    sync = stats["continuous", "sync"]
    assert (sync.total, sync.by_status) == (2, {"running": 1, "failed": 1})
    assert (sync.pending_alarms, sync.overdue_alarms, sync.next_due_at) == (1, 0, T + 2 * HOUR)
    digest = stats["debounce", "digest"]
    assert (digest.overdue_alarms, digest.oldest_overdue_at) == (1, END + MINUTE)
    assert [s.job for s in inspector.stats(kind="task", now=NOW)] == ["reminder"]
    assert inspector.stats(job="nothing") == []


# ---- errors and ownership ----------------------------------------------------------------


def corrupt(url: str, instance_id: str, version: int) -> None:
    """Overwrite one stored event of an SQLite store with bytes that are not JSON."""
    with open_store(url) as store:
        row = store.list_instances(kind="continuous", job="sync")
        uuid = next(r.instance_uuid for r in row if r.instance_id == instance_id)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE stored_events SET state = ? "
            "WHERE originator_id = ? AND originator_version = ?",
            (b"\xff not json", uuid.hex, version),
        ).rowcount
    assert changed == 1


async def test_a_corrupt_log_names_its_instance(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    await fill(sqlite_url)
    corrupt(sqlite_url, "acct-bad", 3)
    with dj.Inspector(sqlite_url) as inspector:
        with pytest.raises(dj.StoreError, match=r"acct-bad.*version 3") as info:
            inspector.history("continuous", "sync", "acct-bad")
        assert "'sync'" in str(info.value)
        with pytest.raises(dj.StoreError, match="acct-bad"):
            inspector.status("continuous", "sync", "acct-bad")
        with pytest.raises(dj.StoreError, match="acct-bad"):
            inspector.state_at("continuous", "sync", "acct-bad", at=NOW)
        # Versions before the corrupt one still read.
        early = inspector.state_at("continuous", "sync", "acct-bad", version=2)
        assert early is not None
        # Listing carries on: the corrupt instance from the index, with its error.
        items = inspector.instances().items
        assert ids(items) == ALL
        bad = items[0]
        assert bad.error is not None and "acct-bad" in bad.error and "corrupt" in bad.error
        assert (bad.status, bad.version, bad.run_count) == ("failed", 9, None)
        assert all(s.error is None for s in items[1:])
        assert inspector.status("continuous", "sync", "acct-ok") == items[1]


async def test_inspector_on_an_open_store_and_on_a_memory_store(
    autojump_clock: MockClock,
) -> None:
    store = open_store("memory://")
    try:
        await fill(store)
        with dj.Inspector(store) as inspector:
            assert ids(inspector.instances().items) == ALL
            assert inspector.store is store
        # Leaving the block did not close a store the inspector did not open.
        assert dj.Inspector(store).status("task", "reminder", "r1") is not None
    finally:
        store.close()


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(dj.ConfigurationError, match="does not exist"):
        dj.Inspector(f"sqlite:///{path}")
    assert not path.exists()


# ---- the JSON diff -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (1, 1, []),
        (None, {"a": 1}, [("", "changed", None, {"a": 1})]),
        (
            {"a": 1, "b": 2},
            {"a": 1, "c": 3},
            [("/b", "removed", 2, None), ("/c", "added", None, 3)],
        ),
        (
            {"a": {"b": [1, 2]}},
            {"a": {"b": [1, 3, 4]}},
            [
                ("/a/b/1", "changed", 2, 3),
                ("/a/b/2", "added", None, 4),
            ],
        ),
        ([1, 2, 3], [1], [("/1", "removed", 2, None), ("/2", "removed", 3, None)]),
        (True, 1, [("", "changed", True, 1)]),
        (1, 1.0, [("", "changed", 1, 1.0)]),
        (
            {"a/b": 1, "m~n": 1},
            {"a/b": 2, "m~n": 2},
            [
                ("/a~1b", "changed", 1, 2),
                ("/m~0n", "changed", 1, 2),
            ],
        ),
        ({"x": [1]}, {"x": {"0": 1}}, [("/x", "changed", [1], {"0": 1})]),
    ],
)
def test_json_diff(old: Any, new: Any, expected: list[tuple[str, str, Any, Any]]) -> None:
    assert [(c.path, c.op, c.old, c.new) for c in json_diff(old, new)] == expected


def test_times_in_json_are_utc_with_z() -> None:
    summary = dj.InstanceSummary(
        kind="task",
        job="j",
        instance_id="i",
        instance_uuid=uuid4(),
        status="idle",
        version=1,
        updated_at=datetime(2026, 1, 1, 1, tzinfo=UTC),
        due_at=None,
    )
    assert summary.to_json()["updated_at"] == "2026-01-01T01:00:00Z"
