"""SQLite saves write their events' column values with one executemany (no
``StoredEvent`` objects, no notification ids): the same rows as ``insert_events``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.data import Intents
from durable_jobs._domain.schedules import every
from durable_jobs._store.base import INDEX_KWARG
from durable_jobs._store.rows import index_row_of

T = datetime(2026, 1, 1, tzinfo=UTC)
KEY = dj.generate_key()


def _ran(inst_id: str) -> ContinuousInstance:
    """An instance started and run once: five events of three classes, a trace."""
    inst, _ = ContinuousInstance.start(None, "j", inst_id, now=T, state={"n": 1}, first_run_at=T)
    ticket = inst.next_ticket(fresh=True)
    schedule = every(timedelta(seconds=1))
    inst.complete_run(ticket, Intents(state=[1, "é"]), now=T, duration=1e-05, schedule=schedule)
    inst.stamp_trace("00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    return inst


def _rows(path: Path, uuid_hex: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT originator_version, topic, state FROM stored_events "
            "WHERE originator_id = ? ORDER BY originator_version",
            (uuid_hex,),
        ).fetchall()


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_save_writes_the_rows_insert_events_writes(tmp_path: Path, key: str | None) -> None:
    ours_path, theirs_path = tmp_path / "ours.db", tmp_path / "theirs.db"
    ours = dj.open_store(f"sqlite:///{ours_path}", encryption_key=key)
    theirs = dj.open_store(f"sqlite:///{theirs_path}", encryption_key=key)
    try:
        saved, upstream = _ran("a"), _ran("a")
        ours.save(saved)
        # eventsourcing's way, with the index row Store.save passes down.
        events = upstream.collect_events()
        mapper = theirs._app.mapper
        theirs._app.recorder.insert_events(
            [mapper.to_stored_event(e) for e in events],
            **{INDEX_KWARG: [index_row_of(upstream)]},
        )
        written, expected = _rows(ours_path, saved.id.hex), _rows(theirs_path, saved.id.hex)
        assert [r[:2] for r in written] == [r[:2] for r in expected]
        assert len(written) == 5
        if key is None:
            assert written == expected
        rows, their_rows = ours.stored_events(saved.id), theirs.stored_events(saved.id)
        assert [ours.plaintext(r) for r in rows] == [theirs.plaintext(r) for r in their_rows]
        assert ours.get("continuous", "j", "a") == theirs.get("continuous", "j", "a") == saved
        assert ours.index_row(saved.id) == theirs.index_row(saved.id) == index_row_of(saved)
    finally:
        ours.close()
        theirs.close()


def test_a_save_that_meets_a_taken_version_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = dj.open_store(f"sqlite:///{path}")
    try:
        first, second, other = _ran("a"), _ran("a"), _ran("c")
        store.save(first)
        with pytest.raises(dj.ConcurrencyError):
            store.save(other, second)
        assert _rows(path, other.id.hex) == []
        assert store.index_row(other.id) is None
        assert len(other.pending_events) == 5
        store.save(other)
        assert len(_rows(path, other.id.hex)) == 5
    finally:
        store.close()
