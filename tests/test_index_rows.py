"""Index rows: written and read back (uuids remembered), and of an instance."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from uuid import uuid4

from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._store import index
from durable_jobs._store.index import IndexRow
from durable_jobs._store.rows import index_row_of

T = datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_a_row_read_back_is_the_row_written() -> None:
    row = IndexRow(uuid4(), "continuous", "j", "i", "running", T, 7, T)
    back = IndexRow.from_params(row.as_params())
    assert back == row
    assert list(vars(back)) == [f.name for f in fields(IndexRow)]
    assert back.due_at is not None and back.due_at.tzinfo is UTC
    assert IndexRow.from_params((row.instance_uuid, *row.as_params()[1:])) == row
    # No alarm; and drivers that give text, decimals or ints for the numbers.
    none = IndexRow.from_params((row.instance_uuid.hex, "task", "j", "i", "idle", None, "3", 0))
    assert none == IndexRow(
        row.instance_uuid, "task", "j", "i", "idle", None, 3, datetime.fromtimestamp(0, UTC)
    )


def test_uuids_read_back_are_remembered_within_a_bound() -> None:
    index._UUIDS.clear()
    uuid = uuid4()
    first = IndexRow.from_params((uuid.hex, "task", "j", "i", "idle", None, 1, 0.0))
    again = IndexRow.from_params((uuid.hex, "task", "j", "i", "idle", None, 2, 0.0))
    assert first.instance_uuid == uuid and again.instance_uuid is first.instance_uuid
    for _ in range(index._MAX_UUIDS + 1):
        IndexRow.from_params((uuid4().hex, "task", "j", "i", "idle", None, 1, 0.0))
    assert len(index._UUIDS) <= index._MAX_UUIDS
    # A hyphenated id (another writer's text) is still the same uuid.
    assert (
        IndexRow.from_params((str(uuid), "task", "j", "i", "idle", None, 1, 0)).instance_uuid
        == uuid
    )


def test_the_row_of_an_instance() -> None:
    inst, _ = ContinuousInstance.start(None, "j", "i", now=T, state=0, first_run_at=T)
    row = index_row_of(inst)
    assert row == IndexRow(inst.id, "continuous", "j", "i", "running", T, 2, T)
    assert list(vars(row)) == [f.name for f in fields(IndexRow)]
    assert hash(row) == hash(IndexRow(*vars(row).values()))
