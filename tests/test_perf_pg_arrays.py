"""The binary arrays of the Postgres commit and lock calls (stores/_postgres_conn.py):
the server reads from them exactly what it reads from psycopg's own lists, and a
commit through them stores the rows a ``StoredEvent`` insert stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest

from durable_jobs import open_store
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs.stores._postgres_commit import EventColumns, stored_columns
from durable_jobs.stores._postgres_conn import BinaryArray, Byteas, Float8s, Int8s, Texts, Uuids
from durable_jobs.stores.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres

T = datetime(2026, 1, 1, tzinfo=UTC)

CASES: list[tuple[str, type[BinaryArray], list[Any]]] = [
    ("int8", Int8s, [1, -2, 2**62, -(2**63), 2**63 - 1]),
    ("int8", Int8s, [7]),
    ("int8", Int8s, []),
    ("int8", Int8s, [1, None, 3]),
    ("float8", Float8s, [1.5, None, -3e300, 0.0]),
    ("float8", Float8s, [1767225600.123456]),
    ("uuid", Uuids, [uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    ("uuid", Uuids, [uuid.uuid4(), None]),
    ("text", Texts, ["a", "", "héllo €", "x" * 300, "日本"]),
    ("text", Texts, [None, "b"]),
    ("bytea", Byteas, [b"", b"\x00\x01\xff", b"x" * 1000]),
]


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_url, autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("pg_type", "wrapper", "values"), CASES)
def test_an_array_reads_as_the_list_would(
    conn: psycopg.Connection[Any], pg_type: str, wrapper: type[BinaryArray], values: list[Any]
) -> None:
    query = f"SELECT %b::{pg_type}[], %b::{pg_type}[] IS NOT DISTINCT FROM %b::{pg_type}[]"
    row = conn.execute(query, (wrapper(values), wrapper(values), list(values))).fetchone()
    assert row is not None
    assert row[0] == values
    assert row[1] is True
    # Prepared, as the commit's statements are: the same again.
    again = conn.execute(f"SELECT %b::{pg_type}[]", (wrapper(values),), prepare=True).fetchone()
    assert again is not None and again[0] == values


def test_the_columns_of_events_are_those_of_stored_events(pg_url: str) -> None:
    """A save (columns) stores the same rows as the StoredEvent path would send."""
    store = open_store(pg_url)
    try:
        assert isinstance(store, PostgresStore)
        inst, _ = ContinuousInstance.start(
            None, "job", "cols", now=T, state={"n": "é"}, first_run_at=T
        )
        inst.reschedule(T + timedelta(hours=1), now=T)
        pending = list(inst.pending_events)
        stored = [store._app.mapper.to_stored_event(e) for e in pending]
        columns = EventColumns(
            [cast("uuid.UUID", s.originator_id) for s in stored],
            [s.originator_version for s in stored],
            [s.topic for s in stored],
            [s.state for s in stored],
        )
        assert len(columns) == len(stored)
        assert columns.stored_events() == stored
        as_columns = stored_columns(columns)
        as_events = stored_columns(stored)
        assert [a.values for a in as_columns] == [a.values for a in as_events]
        store.save(inst)
        found = store._app.recorder.select_events(inst.id)
        assert [(e.originator_version, e.topic, bytes(e.state)) for e in found] == [
            (s.originator_version, s.topic, bytes(s.state)) for s in stored
        ]
        again = store.get("continuous", "job", "cols")
        assert again == inst
    finally:
        store.close()


def test_text_ids_are_left_to_psycopg() -> None:
    """Ids that are not UUIDs (a text id column) are sent as a plain list."""
    text_ids: list[Any] = ["a", "b"]
    columns = EventColumns(text_ids, [1, 2], ["t", "t"], [b"x", b"y"])
    ids, versions, topics, states = stored_columns(columns)
    assert ids == ["a", "b"]
    assert isinstance(versions, Int8s) and isinstance(topics, Texts)
    assert isinstance(states, Byteas)
