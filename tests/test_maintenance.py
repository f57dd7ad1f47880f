"""durable_jobs.maintenance: replay checks, JSONL export/import, purge and tail, on
stores filled by the real runtime in virtual time (SQLite and Postgres)."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import MINUTE, SECOND, advance, running
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._tools.importer import _verify
from durable_jobs.maintenance import (
    EXPORT_FORMAT,
    ExportFileError,
    InstanceExistsError,
    LiveInstanceError,
    TailEvent,
    export_jsonl,
    import_jsonl,
    purge_instance,
    replay_instance,
    replay_store,
    tail_events,
    tail_position,
    terminate_instance,
    trigger_instance,
)

#: Small, so that instances filled by the runtime have snapshots.
SNAPSHOT_INTERVAL = 5

#: (kind, job, instance_id) of every instance :func:`fill` leaves behind.
FILLED = [
    ("continuous", "flaky", "f1"),
    ("continuous", "sync", "a"),
    ("continuous", "sync", "b"),
    ("continuous", "sync", "gone"),
    ("debounce", "digest", "d1"),
    ("task", "order", "o1"),
]


def registry() -> dj.Registry:
    """A continuous job, one that always fails, a debounce and a task job."""
    reg = dj.Registry()

    @reg.continuous("sync", state=int, schedule=dj.every(MINUTE))
    async def sync(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    retry = dj.Retry(3, delay=SECOND, jitter=0, on_exhausted="pause")

    @reg.continuous("flaky", state=int, schedule=dj.every(MINUTE), retry=retry)
    async def flaky(ctx: dj.ContinuousContext[int]) -> None:
        raise RuntimeError(f"boom {ctx.attempt}")

    digest = reg.debounce("digest", event=int, state=list[int], flush_after=10 * SECOND)

    @digest
    async def send_digest(ctx: dj.DebounceContext[list[int]]) -> None:
        pass

    @send_digest.on_event
    def fold(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
        return [*(ctx.state or []), ctx.event]

    @reg.task("order", event=str, state=str)
    async def order(ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(f"{ctx.state} shipped")

    @order.on_event
    async def received(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)
        ctx.schedule(5 * SECOND)

    return reg


async def fill(url: str) -> None:
    """Fill the store at ``url`` through the runtime: ordinary runs, a run that fails,
    is retried and exhausted, debounce batches, a terminated-then-restarted instance,
    a terminated one and a task. Leaves the instances in :data:`FILLED`."""
    with dj.open_store(url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        async with running(registry(), store) as jobs:
            sync = jobs.continuous("sync")
            await sync.start("a", 0)
            await sync.start("b", 100)
            await sync.start("gone", 7)
            await jobs.continuous("flaky").start("f1", 0)
            digest = jobs.debounce("digest")
            for n in range(3):
                await digest.add("d1", n)
            await jobs.task("order").send("o1", "book")
            await advance(jobs, 3 * MINUTE)
            await sync.terminate("b", reason="moved")
            await sync.terminate("gone", reason="user asked")
            await digest.add("d1", 10)
            await digest.add("d1", 11)
            await advance(jobs, MINUTE)
            await sync.start("b", 200)
            await digest.add("d1", 20)
            await advance(jobs, MINUTE)


def uuid_of(kind: str, job: str, instance_id: str) -> Any:
    return instance_uuid(kind, job, instance_id)  # type: ignore[arg-type]


def snapshot_of(store: dj.Store) -> dict[Any, Any]:
    """Every instance's history and index row."""
    return {
        row.instance_uuid: (store.history(row.instance_uuid), row)
        for row in store.iter_instances()
    }


def export_text(store: dj.Store, **filters: Any) -> str:
    out = io.StringIO()
    export_jsonl(store, out, **filters)
    return out.getvalue()


def event_lines(text: str) -> list[str]:
    """The export without its header (which names the store and the time)."""
    return text.splitlines()[1:]


def snapshot_of_url(url: str) -> dict[Any, Any]:
    with opened(url) as store:
        return snapshot_of(store)


@contextmanager
def opened(url: str) -> Iterator[dj.Store]:
    with dj.open_store(url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        yield store


# ---- the fill itself ---------------------------------------------------------------


async def test_fill_covers_failures_batches_and_restarts(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        keys = [(r.kind, r.job, r.instance_id) for r in store.iter_instances()]
        assert keys == FILLED
        statuses = {r.instance_id: r.status for r in store.iter_instances()}
        assert statuses["f1"] == "failed"
        assert statuses["gone"] == "terminated"
        assert statuses["b"] == "running"
        names = [e.NAME for e in store.history(uuid_of("continuous", "flaky", "f1"))]
        assert names.count("run_failed") == 3 and "retry_exhausted" in names
        names = [e.NAME for e in store.history(uuid_of("debounce", "digest", "d1"))]
        assert names.count("flushed") >= 2
        names = [e.NAME for e in store.history(uuid_of("continuous", "sync", "b"))]
        assert names.count("started") == 2 and "terminated" in names
        assert store.snapshot_version(uuid_of("continuous", "sync", "a")) is not None


# ---- export / import ---------------------------------------------------------------


async def test_round_trip_sqlite_to_postgres_and_back(
    sqlite_url: str, pg_url: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    with opened(sqlite_url) as source, opened(pg_url) as target, opened(back_url) as back:
        text = export_text(source)
        header = json.loads(text.splitlines()[0])
        assert header["format"] == EXPORT_FORMAT and header["version"] == 1
        footer = json.loads(text.splitlines()[-1])
        events = sum(len(h) for h, _ in snapshot_of(source).values())
        assert footer == {"type": "footer", "instances": len(FILLED), "events": events}

        summary = import_jsonl(target, io.StringIO(text))
        assert (summary.instances, summary.events) == (len(FILLED), events)
        assert snapshot_of(target) == snapshot_of(source)

        again = export_text(target)
        assert event_lines(again) == event_lines(text)
        import_jsonl(back, io.StringIO(again))
        assert snapshot_of(back) == snapshot_of(source)
        for store in (target, back):
            reports = list(replay_store(store))
            assert [r.ok for r in reports] == [True] * len(FILLED)
        # The import took snapshots of the long instances, as a save would have.
        assert target.snapshot_version(uuid_of("continuous", "sync", "a")) is not None


async def test_an_import_from_a_stream_holds_one_line_at_a_time(
    sqlite_url: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A stream (``durable-jobs import -`` reads standard input) was read into a list
    of its lines before it was checked and written: an import of a 10 GB export from
    a pipe needed 10 GB of memory. It goes to a temporary file instead."""
    big = "x" * 150_000
    with opened(sqlite_url) as store:
        async with running(registry(), store) as jobs:
            for n in range(48):
                await jobs.task("order").send(f"o{n}", f"{n}{big}")
        text = export_text(store)
    assert len(text) > 13_000_000
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    with opened(target_url) as target:
        stream = io.StringIO(text)
        tracemalloc.start()
        try:
            summary = import_jsonl(target, stream, batch_events=1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert summary.instances == 48
        assert snapshot_of(target) == snapshot_of_url(sqlite_url)
    # A few lines' worth (a line is about 0.3 MB here), never the whole 14 MB.
    assert peak < len(text) // 4, (peak, len(text))


async def test_round_trip_postgres_to_sqlite(
    pg_url: str, sqlite_url: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(pg_url)
    path = tmp_path / "jobs.jsonl"
    with opened(pg_url) as source, opened(sqlite_url) as target:
        with path.open("w", encoding="utf-8") as f:
            exported = export_jsonl(source, f)
        summary = import_jsonl(target, path)
        assert (summary.instances, summary.events) == (exported.instances, exported.events)
        assert snapshot_of(target) == snapshot_of(source)
        # The imported store is usable by the runtime: its alarms are there.
        assert [r.instance_id for r in target.next_alarms(10)] == [
            r.instance_id for r in source.next_alarms(10)
        ]


async def test_export_filters(sqlite_url: str, autojump_clock: trio.testing.MockClock) -> None:
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        lines = [json.loads(x) for x in event_lines(export_text(store, job="sync"))]
        assert {x["instance_id"] for x in lines if x["type"] == "event"} == {"a", "b", "gone"}
        lines = [json.loads(x) for x in event_lines(export_text(store, status="terminated"))]
        assert {x["instance_id"] for x in lines if x["type"] == "event"} == {"gone"}
        first = lines[0]
        assert set(first) == {
            "type",
            "instance_uuid",
            "kind",
            "job",
            "instance_id",
            "version",
            "timestamp",
            "topic",
            "name",
            "state",
        }
        assert (first["version"], first["name"], first["kind"]) == (1, "started", "continuous")
        assert first["timestamp"] == first["state"]["timestamp"]


async def test_import_refuses_existing_instances_and_writes_nothing(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        text = export_text(store)
        before = (store.last_position(), snapshot_of(store))
        with pytest.raises(InstanceExistsError, match="already has") as info:
            import_jsonl(store, io.StringIO(text))
        assert "nothing was written" in str(info.value)
        assert len(info.value.labels) == len(FILLED)
        assert (store.last_position(), snapshot_of(store)) == before
    # A target holding only one of them refuses the whole file too.
    with dj.open_store("memory://") as target:
        one = export_text_of_one(text, "d1")
        import_jsonl(target, io.StringIO(one))
        position = target.last_position()
        with pytest.raises(InstanceExistsError, match="'d1'"):
            import_jsonl(target, io.StringIO(text))
        assert target.last_position() == position
        assert [r.instance_id for r in target.iter_instances()] == ["d1"]


async def test_import_into_an_sqlite_store_a_runtime_serves_is_refused(
    sqlite_url: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The serving runtime keeps its alarms in memory and never ran the imported ones
    (as for terminate and trigger from outside): refused, and nothing is written."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    await fill(source)
    with opened(source) as store:
        text = export_text(store)
    async with running(dj.Registry(), sqlite_url):
        with opened(sqlite_url) as store:
            with pytest.raises(dj.ConfigurationError, match="while a jobs runtime serves it"):
                import_jsonl(store, io.StringIO(text))
            assert store.last_position() == 0
    with opened(sqlite_url) as store:  # once it has stopped, the import goes in
        summary = import_jsonl(store, io.StringIO(text))
        assert summary.instances == len(FILLED)


@pytest.mark.parametrize(
    "call",
    [
        # Both were committed and left the instance unreadable for ever.
        lambda s: terminate_instance(s, "continuous", "sync", "a", reason=5),  # type: ignore[arg-type]
        lambda s: terminate_instance(s, "continuous", "sync", "a", now=datetime(2026, 1, 1)),
        lambda s: terminate_instance(s, "continuous", "sync", "a", reason="x" * 2_000_000),
        lambda s: trigger_instance(s, "continuous", "sync", "a", now=datetime(2026, 1, 1)),
        lambda s: trigger_instance(s, "continuous", "sync", "a", now="now"),  # type: ignore[arg-type]
    ],
    ids=["int-reason", "naive-now", "huge-reason", "trigger-naive-now", "trigger-str-now"],
)
async def test_bad_admin_arguments_are_refused_and_write_nothing(
    sqlite_url: str, autojump_clock: trio.testing.MockClock, call: Any
) -> None:
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        before = store.last_position()
        with pytest.raises(dj.ValidationError):
            call(store)
        assert store.last_position() == before
        assert store.get("continuous", "sync", "a") is not None  # still readable


@pytest.mark.parametrize(
    "options",
    [
        {"poll_interval": -1},
        {"poll_interval": 0},
        {"poll_interval": math.nan},
        {"duration": math.nan},
        {"duration": -1},
        {"limit": 0},
        {"after": -5},
    ],
)
def test_bad_tail_arguments_are_refused_at_the_call(options: dict[str, Any]) -> None:
    """They were bare ValueErrors, raised only at the first next() (or, for a NaN
    duration, a tail that never ended)."""
    with dj.open_store("memory://") as store, pytest.raises(dj.ValidationError):
        tail_events(store, **options)


@pytest.mark.postgres
async def test_import_verification_allows_runs_of_live_workers(
    sqlite_url: str, pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """On Postgres a worker serving the store runs an imported instance whose alarm is
    due at once, so its log may be longer than imported by the time the import counts
    it again: that failed the import ("verification failed") although it was written."""
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        text = export_text(store)
    with opened(pg_url) as store:
        import_jsonl(store, io.StringIO(text))
        expected = {row.instance_uuid: row.version for row in store.iter_instances()}
    later = dj.VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))  # every alarm is overdue
    async with running(registry(), pg_url, clock=later) as jobs:  # a live worker runs them
        await advance(jobs, MINUTE)
    with opened(pg_url) as store:
        assert any(row.version > expected[row.instance_uuid] for row in store.iter_instances())
        summary = _verify(store, expected, set())
    assert summary.instances == len(FILLED)


def export_text_of_one(text: str, instance_id: str) -> str:
    lines = text.splitlines()
    events = [x for x in lines[1:-1] if json.loads(x)["instance_id"] == instance_id]
    footer = json.dumps({"type": "footer", "instances": 1, "events": len(events)})
    return "\n".join([lines[0], *events, footer]) + "\n"


def _edit(lines: list[str], n: int, **changes: Any) -> list[str]:
    doc = json.loads(lines[n])
    doc.update(changes)
    return [*lines[:n], json.dumps(doc), *lines[n + 1 :]]


def _edit_state(lines: list[str], n: int, **changes: Any) -> list[str]:
    doc = json.loads(lines[n])
    doc["state"].update(changes)
    return [*lines[:n], json.dumps(doc), *lines[n + 1 :]]


def _drop_key(lines: list[str], n: int, key: str) -> list[str]:
    doc = json.loads(lines[n])
    del doc["state"][key]
    return [*lines[:n], json.dumps(doc), *lines[n + 1 :]]


# (name, edit of the export's lines, line number reported (1-based) or None, message part)
BAD_FILES: list[tuple[str, Any, int | None, str]] = [
    ("not json", lambda ls: [*ls[:2], "{oops", *ls[3:]], 3, "not a JSON object"),
    ("a list", lambda ls: [*ls[:2], "[1, 2]", *ls[3:]], 3, "not a JSON object"),
    ("no header", lambda ls: ls[1:], 1, "not a durable-jobs export"),
    ("newer format", lambda ls: _edit(ls, 0, version=2), 1, "format version 2"),
    ("missing footer", lambda ls: ls[:-1], None, "without its footer"),
    (
        "wrong footer",
        lambda ls: [*ls[:-1], '{"type":"footer","instances":1,"events":1}'],
        -1,
        "footer counts",
    ),
    ("after footer", lambda ls: [*ls, ls[1]], -1, "after the footer"),
    ("version gap", lambda ls: [*ls[:2], *ls[3:]], 3, "follows version 1"),
    ("bad version", lambda ls: _edit(ls, 2, version="2"), 3, "whole number"),
    ("wrong uuid", lambda ls: _edit(ls, 2, instance_id="other"), 3, "is not the id of"),
    ("unknown kind", lambda ls: _edit(ls, 2, kind="cron"), 3, "unknown kind"),
    ("no state", lambda ls: _edit(ls, 2, state=None), 3, "'state'"),
    ("bad field", lambda ls: _edit_state(ls, 2, at="yesterday"), 3, "not a valid event"),
    ("missing field", lambda ls: _drop_key(ls, 2, "timestamp"), 3, "not a valid event"),
    ("foreign topic", lambda ls: _edit(ls, 2, topic="os:system"), 3, "unknown topic"),
    (
        "another kind's event",
        lambda ls: _edit(ls, 2, topic="durable_jobs:TaskInstance.AlarmSet"),
        3,
        "another kind's instances than this continuous instance",
    ),
    (
        "another kind's start",
        lambda ls: _edit(ls, 1, topic="durable_jobs:TaskInstance.Started"),
        2,
        "another kind's instances than this continuous instance",
    ),
    ("empty line", lambda ls: [*ls[:2], "", *ls[2:]], 3, "not a JSON object"),
]


@pytest.mark.parametrize(
    ("edit", "line", "problem"),
    [pytest.param(e, n, p, id=name) for name, e, n, p in BAD_FILES],
)
async def test_malformed_files_are_rejected_with_their_line_and_write_nothing(
    autojump_clock: trio.testing.MockClock, edit: Any, line: int | None, problem: str
) -> None:
    with dj.open_store("memory://") as source:
        async with running(registry(), source) as jobs:
            await jobs.continuous("sync").start("x", 0)  # started + alarm_set...
            await advance(jobs, 2 * MINUTE)
            await jobs.continuous("sync").start("y", 0)
            await advance(jobs, MINUTE)
        lines = export_text(source).splitlines()
    assert json.loads(lines[2])["name"] == "alarm_set"
    bad = edit(lines)
    with dj.open_store("memory://") as target:
        with pytest.raises(ExportFileError, match=problem) as info:
            import_jsonl(target, io.StringIO("\n".join(bad) + "\n"))
        expected = len(bad) + line + 1 if line is not None and line < 0 else line
        assert info.value.line == expected
        assert "nothing was written" in str(info.value)
        if expected is not None:
            assert f"line {expected}:" in str(info.value)
        assert target.last_position() == 0
        assert target.list_instances() == []


def test_empty_and_missing_files_are_rejected(tmp_path: Path) -> None:
    with dj.open_store("memory://") as target:
        with pytest.raises(ExportFileError, match="empty"):
            import_jsonl(target, io.StringIO(""))
        with pytest.raises(ExportFileError, match="cannot read"):
            import_jsonl(target, tmp_path / "nope.jsonl")
        path = tmp_path / "binary.jsonl"
        path.write_bytes(b"\xff\xfe\x00")
        with pytest.raises(ExportFileError, match="UTF-8"):
            import_jsonl(target, path)


# ---- replay ------------------------------------------------------------------------


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def test_replay_of_a_store_a_worker_commits_to_finds_no_divergence(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Replay beside a worker: another process commits to the instance between the
    replay's reads. The replay read the whole log, then the index row, and reported
    every instance committed to in between as diverging (exit 1 from the command);
    it now reads the row first, then the log up to the row's version."""
    await fill(sqlite_url)
    with opened(sqlite_url) as store, opened(sqlite_url) as worker:
        real_history = store.iter_history  # the replay reads the log a page at a time
        commits = [0]

        def history_then_a_commit(uuid: Any, **kwargs: Any) -> Any:
            events = list(real_history(uuid, **kwargs))
            # Another process commits to the instance right after the log was read.
            assert trigger_instance(worker, "continuous", "sync", "b").done
            commits[0] += 1
            return iter(events)

        store.iter_history = history_then_a_commit  # type: ignore[method-assign]
        report = replay_instance(store, "continuous", "sync", "b")
        assert report is not None
        assert (report.error, report.divergences) == (None, ())
        assert commits[0] >= 1
        store.iter_history = real_history  # type: ignore[method-assign]
        assert all(r.ok for r in replay_store(store))


async def test_replay_finds_corrupt_rows_and_divergences_and_carries_on(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    with opened(sqlite_url) as store:
        assert all(r.ok for r in replay_store(store))
        a = uuid_of("continuous", "sync", "a")
        version = store.snapshot_version(a)
        assert version is not None
    db = sqlite3.connect(_sqlite_path(sqlite_url))
    with db:
        # A garbage event in f1, a wrong index row for o1, a tampered snapshot of a.
        db.execute(
            "UPDATE stored_events SET state = ? "
            "WHERE originator_id = ? AND originator_version = 3",
            (b"{garbage", uuid_of("continuous", "flaky", "f1").hex),
        )
        db.execute(
            "UPDATE dj_instances SET status = 'active', due_at = 12345 WHERE instance_id = 'o1'"
        )
        row = db.execute(
            "SELECT state FROM stored_snapshots "
            "WHERE originator_id = ? AND originator_version = ?",
            (a.hex, version),
        ).fetchone()
        snap = json.loads(row[0])
        snap["state"]["data"]["run_count"] += 100
        db.execute(
            "UPDATE stored_snapshots SET state = ? WHERE originator_id = ? "
            "AND originator_version = ?",
            (json.dumps(snap).encode(), a.hex, version),
        )
    db.close()
    with opened(sqlite_url) as store:
        reports = {r.instance_id: r for r in replay_store(store)}
        assert sorted(reports) == sorted(i for _, _, i in FILLED)
        f1 = reports["f1"]
        assert not f1.ok and f1.error is not None
        assert "'f1'" in f1.error and "version 3" in f1.error and "not JSON" in f1.error
        o1 = reports["o1"]
        assert o1.error is None
        assert {(d.source, d.field) for d in o1.divergences} == {
            ("index", "status"),
            ("index", "due_at"),
        }
        status = next(d for d in o1.divergences if d.field == "status")
        assert (status.expected, status.found) == ("idle", "active")
        snapshot = reports["a"]
        assert [(d.source, d.field) for d in snapshot.divergences] == [
            ("snapshot", "data.run_count")
        ]
        assert snapshot.snapshot_version == version
        for name in ("b", "gone", "d1"):
            assert reports[name].ok, reports[name]
        one = replay_instance(store, "continuous", "flaky", "f1")
        assert one is not None and one.error == f1.error
        assert replay_instance(store, "continuous", "flaky", "nobody") is None
        as_json = json.loads(json.dumps(o1.as_json()))
        assert as_json["ok"] is False
        assert as_json["divergences"][0].keys() == {"source", "field", "expected", "found"}


# ---- purge -------------------------------------------------------------------------


async def test_purge_refuses_live_and_removes_terminated(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(durable_store_url)
    with opened(durable_store_url) as store:
        before = snapshot_of(store)
        for job, instance_id in (("flaky", "f1"), ("sync", "a"), ("sync", "b")):
            with pytest.raises(LiveInstanceError, match="is live"):
                purge_instance(store, "continuous", job, instance_id)
        assert snapshot_of(store) == before
        gone = uuid_of("continuous", "sync", "gone")
        n_events = len(store.history(gone))
        result = purge_instance(store, "continuous", "sync", "gone")
        assert result.purged and result.events == n_events
        assert result.snapshots == 1  # its latest: each new snapshot drops the older ones
        assert store.history(gone) == []
        assert store.stored_events(gone) == []
        assert store.index_row(gone) is None
        assert store.snapshot_version(gone) is None
        assert store.get("continuous", "sync", "gone") is None
        del before[gone]
        assert snapshot_of(store) == before
        again = purge_instance(store, "continuous", "sync", "gone")
        assert not again.purged and again.as_json()["purged"] is False
    # The id can be started afresh, as a new instance.
    async with running(registry(), durable_store_url) as jobs:
        started = await jobs.continuous("sync").start("gone", 1)
        assert started.created


async def test_purge_refuses_while_a_runtime_serves_sqlite(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    async with running(registry(), sqlite_url):
        with opened(sqlite_url) as store, pytest.raises(LiveInstanceError, match="runtime"):
            purge_instance(store, "continuous", "sync", "gone")
    with opened(sqlite_url) as store:
        assert store.index_row(uuid_of("continuous", "sync", "gone")) is not None


# ---- tail --------------------------------------------------------------------------


async def test_tail_follows_what_the_runtime_commits(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    with opened(durable_store_url) as reader:
        start = tail_position(reader)
        assert start == 0
        seen: list[TailEvent] = []
        stop = threading.Event()

        def follow() -> None:
            for event in tail_events(reader, after=start, stop=stop, poll_interval=0.05):
                seen.append(event)

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            await fill(durable_store_url)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        committed = reader.events_after(start, 10_000)
        assert [(e.position, e.instance_uuid, e.version) for e in seen] == [
            (n.id, n.originator_id, n.originator_version) for n in committed
        ]
        assert all(e.error is None and e.name for e in seen)
        failed = [e for e in seen if e.name == "run_failed"]
        assert [e.instance_id for e in failed] == ["f1"] * 3
        assert failed[0].state["message"] == "boom 1"
        assert failed[0].as_json()["position"] == failed[0].position
        # Carrying on from a position, bounded by a count or by a duration.
        middle = seen[len(seen) // 2].position
        later = list(tail_events(reader, after=middle, limit=3))
        assert [e.position for e in later] == [e.position for e in seen if e.position > middle][:3]
        assert list(tail_events(reader, duration=0)) == []
