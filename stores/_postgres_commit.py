"""The transaction of a Postgres commit: events, index rows, statements, fence.

eventsourcing's insert runs its transaction in a pipeline but syncs it five
times (psycopg's transaction block nests two pipelines of its own, the fence
is read mid-way, the insert is synced for its errors). Here the whole
transaction is sent at once and synced once before the commit, then once for
the commit: what is checked (the fence, the insert's errors, the
notification ids) is checked in between, before anything is committed.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from durable_jobs.stores._postgres_locks import FENCE_QUERY, fence_params

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresDatastore

    from durable_jobs.stores._postgres_recorder import PostgresApplicationRecorderWithIndex

__all__ = ["FENCE_KWARG", "insert_in_one_round_trip", "insert_snapshots_sql", "stored_columns"]

#: Keyword argument of a fenced insert: the (lock key, session marker) pairs that
#: must still be held.
FENCE_KWARG: Final = "dj_fence"
_OPEN: Final = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)


def insert_in_one_round_trip(
    recorder: PostgresApplicationRecorderWithIndex,
    stored_events: Sequence[StoredEvent],
    kwargs: dict[str, Any],
) -> Sequence[int] | None:
    """Upstream's ``insert_events`` (without its retries): the recorder's
    ``_insert_events`` hook, the fence, then the events (table lock, notify,
    insert) in one transaction; their notification ids (None without events).

    The fence (whether the commit's instance locks are still held) is the last
    statement before the events, as before; the commit is sent only once its
    answer says they are. Nothing is committed if anything fails.
    """
    with recorder.datastore.get_connection() as conn:
        assert conn.autocommit
        error: Exception | None = None
        ids: Sequence[int] | None = None
        with conn.pipeline() as pipeline:
            try:
                ids = _transaction(recorder, conn, pipeline, stored_events, kwargs)
            except Exception as exc:  # raised once the pipeline is closed (no warning)
                error = exc
        if error is not None:
            if conn.info.transaction_status in _OPEN:
                # A connection that fails here is dropped by the pool.
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise error
        return ids


def _transaction(
    recorder: PostgresApplicationRecorderWithIndex,
    conn: psycopg.Connection[Any],
    pipeline: psycopg.Pipeline,
    stored_events: Sequence[StoredEvent],
    kwargs: dict[str, Any],
) -> Sequence[int] | None:
    fence = kwargs.get(FENCE_KWARG)
    with (
        conn.cursor() as curs,
        conn.cursor(row_factory=tuple_row) as fence_curs,
        conn.cursor() as events_curs,
    ):
        curs.execute("BEGIN")
        recorder._insert_events(curs, stored_events, **kwargs)
        if fence:
            # Last before the events: a session lost after this point cannot let
            # another run start before this one's handler ended (it already had),
            # and the version keeps that run's commit from passing this one.
            fence_curs.execute(FENCE_QUERY, fence_params(fence), prepare=True)
        if stored_events:
            recorder._insert_stored_events(events_curs, stored_events, **kwargs)
        try:
            pipeline.sync()
        except psycopg.Error:
            # A lost lock explains a failed insert (another process may have
            # written the instance since): it is the error to report.
            if fence and fence_curs.pgresult is not None:
                recorder._refuse_lost(_held(fence_curs), kwargs)
            raise
        if fence:
            recorder._refuse_lost(_held(fence_curs), kwargs)
        ids = None
        if stored_events:
            ids = recorder._fetch_ids_after_insert_events(events_curs, stored_events, **kwargs)
        curs.execute("COMMIT")
        pipeline.sync()
        return ids


def stored_columns(rows: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """Stored rows as the four typed arrays an ``unnest`` insert takes (sent in binary)."""
    return (
        [r.originator_id for r in rows],
        [r.originator_version for r in rows],
        [r.topic for r in rows],
        [r.state for r in rows],
    )


def insert_snapshots_sql(datastore: PostgresDatastore, table: str) -> str:
    """The insert of a commit's snapshot rows into ``table``; a row already at that
    version is left as it is (it holds the same state)."""
    return (
        SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state) SELECT * FROM unnest("
            "%b::{id_type}[], %b::int8[], %b::text[], %b::bytea[]) ON CONFLICT DO NOTHING"
        )
        .format(
            schema=Identifier(datastore.schema),
            table=Identifier(table),
            id_type=Identifier(datastore.originator_id_type),
        )
        .as_string()
    )


def _held(curs: psycopg.Cursor[tuple[Any, ...]]) -> int:
    row = curs.fetchone()
    return 0 if row is None else int(row[0])
