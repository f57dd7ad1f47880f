"""The transaction of a Postgres commit: events, index rows, statements, fence.

eventsourcing's insert runs its transaction in a pipeline but syncs it five
times (psycopg's transaction block nests two pipelines of its own, the fence
is read mid-way, the insert is synced for its errors). Here the whole
transaction, COMMIT included, is sent at once and synced once: one round trip.
What must hold for it to commit is checked by the server in the transaction:
the fence (whether the commit's instance locks are still held) fails unless
they are, and then, like any error, it aborts the transaction, so that the
statements after it do not run and the COMMIT rolls back.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import pq
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from durable_jobs.adapters import StatementFailed, statements_from
from durable_jobs.stores._postgres_conn import Byteas, Int8s, Texts, Uuids
from durable_jobs.stores._postgres_locks import (
    FENCE_FAILED,
    FENCE_MESSAGE,
    FENCE_QUERY,
    fence_params,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.postgres import PostgresDatastore

    from durable_jobs.stores._postgres_recorder import PostgresApplicationRecorderWithIndex

__all__ = [
    "FENCE_KWARG",
    "PIPELINE_KWARG",
    "EventColumns",
    "insert_in_one_round_trip",
    "insert_snapshots_sql",
    "stored_columns",
]

#: Keyword argument of a fenced insert: the (lock key, session marker) pairs that
#: must still be held.
FENCE_KWARG: Final = "dj_fence"
#: Keyword argument the recorder's ``_insert_events`` hook is given inside
#: :func:`insert_in_one_round_trip`: the transaction's pipeline, which the handler
#: statements sync mid-way (see :func:`~._postgres_statements.run_statements`).
PIPELINE_KWARG: Final = "dj_pipeline"
_UUID_TYPE: Final = frozenset({UUID})
_OPEN: Final = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)


class EventColumns:
    """A commit's event rows as the four columns of the insert (what
    :func:`stored_columns` makes of ``StoredEvent`` objects), written without them and
    without asking for their notification ids: no objects per event to build, keep
    alive across the round trip and collect."""

    __slots__ = ("ids", "states", "topics", "versions")

    def __init__(
        self, ids: list[UUID], versions: list[int], topics: list[str], states: list[bytes]
    ) -> None:
        self.ids = ids
        self.versions = versions
        self.topics = topics
        self.states = states

    def __len__(self) -> int:
        return len(self.ids)

    def stored_events(self) -> list[StoredEvent]:
        """The rows as ``StoredEvent`` objects (to compare with what is stored)."""
        return [
            StoredEvent(*row)
            for row in zip(self.ids, self.versions, self.topics, self.states, strict=True)
        ]


def insert_in_one_round_trip(
    recorder: PostgresApplicationRecorderWithIndex,
    stored_events: Sequence[StoredEvent] | EventColumns,
    kwargs: dict[str, Any],
) -> Sequence[int] | None:
    """Upstream's ``insert_events`` (without its retries): the recorder's
    ``_insert_events`` hook, the fence, then the events (table lock, notify,
    insert) and the COMMIT, in one transaction sent at once; their notification
    ids (None without events, or for :class:`EventColumns`).

    The fence is the last statement before the events, as before; it fails unless
    the commit's instance locks are still held, and then nothing after it runs and
    nothing is committed (:class:`LockLost`). Nothing is committed if anything fails.
    """
    fence = kwargs.get(FENCE_KWARG)
    with recorder.datastore.get_connection() as conn:
        assert conn.autocommit
        # Tuple rows: the pool's dict rows cost a row factory on every result.
        curs = conn.cursor(row_factory=tuple_row)
        # The one result read is the events' ids (none of EventColumns): the other
        # statements share one cursor (each costs about 10 µs). An error is raised
        # when the pipeline syncs, whichever cursor's statement it was.
        fence_curs = curs if fence else None
        columns = isinstance(stored_events, EventColumns)
        events_curs = curs if columns else conn.cursor(row_factory=tuple_row)
        error: Exception | None = None
        try:
            # The pipeline syncs once, when it ends: the one round trip. An error
            # raised inside it is raised once it is closed (no warning).
            with conn.pipeline() as pipeline:
                try:
                    _transaction(
                        recorder,
                        stored_events,
                        {**kwargs, PIPELINE_KWARG: pipeline},
                        curs,
                        fence=fence_curs,
                        events=events_curs,
                    )
                except Exception as exc:
                    error = exc
        except Exception as exc:
            error = error or exc
        try:
            if error is not None:
                if conn.info.transaction_status in _OPEN:
                    # A connection that fails here is dropped by the pool.
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                if fence and _fence_failed(error):
                    recorder._refuse_lost(0, kwargs)
                late = _statements_failed_late(recorder, error, kwargs)
                if late is not None:
                    raise late from error
                raise error
            if not stored_events or columns:
                return None
            return [row[0] for row in events_curs.fetchall()]
        finally:
            curs.close()
            if events_curs is not curs:
                events_curs.close()


def _transaction(
    recorder: PostgresApplicationRecorderWithIndex,
    stored_events: Sequence[StoredEvent] | EventColumns,
    kwargs: dict[str, Any],
    curs: psycopg.Cursor[Any],
    *,
    fence: psycopg.Cursor[Any] | None,
    events: psycopg.Cursor[Any],
) -> None:
    """Queue the statements of the transaction, COMMIT last (in a pipeline)."""
    curs.execute("BEGIN")
    recorder._insert_events(curs, stored_events, **kwargs)
    if fence is not None:
        # Last before the events: a session lost after this point cannot let
        # another run start before this one's handler ended (it already had), and
        # the version keeps that run's commit from passing this one.
        fence.execute(FENCE_QUERY, fence_params(kwargs[FENCE_KWARG]), prepare=True)
    if stored_events:
        recorder._insert_stored_events(events, stored_events, **kwargs)
    curs.execute("COMMIT")


#: Errors that a run's own statements cause in the store's writes after them: a
#: setting they made (SET LOCAL transaction_read_only, ROLE, statement_timeout,
#: lock_timeout) reaching the events insert or the COMMIT.
_SETTING_FAILURES: Final = frozenset({"25006", "42501", "57014", "55P03"})


def _statements_failed_late(
    recorder: PostgresApplicationRecorderWithIndex,
    error: Exception,
    kwargs: dict[str, Any],
) -> StatementFailed | None:
    """The runs' statements' failure (:class:`StatementFailed`) when ``error``, raised
    after they all ran, is theirs: a constraint of an application table checked at
    COMMIT (``DEFERRABLE INITIALLY DEFERRED``), or a setting one of them made that
    failed the store's own writes after them. Else None (a store error).

    Such a run fails like one whose statement failed (its failure recorded, its
    retry policy applied), instead of failing to commit again and again."""
    runs = statements_from(kwargs)
    if not runs or isinstance(error, StatementFailed) or not isinstance(error, psycopg.Error):
        return None
    state = error.sqlstate or ""
    if state.startswith("23"):
        # A conflict on the store's own tables (a version taken) is not theirs.
        ours = set(recorder._relations())
        if (error.diag.table_name or "") in ours or (error.diag.constraint_name or "") in ours:
            return None
    elif state not in _SETTING_FAILURES or not any(st.alone for _, sts in runs for st in sts):
        return None
    return StatementFailed(runs[0][0] if len(runs) == 1 else None, error, statement=None)


def _fence_failed(exc: Exception) -> bool:
    """Whether ``exc`` is the fence's failure (the commit's locks not all held)."""
    return (
        isinstance(exc, psycopg.Error)
        and exc.sqlstate == FENCE_FAILED
        and FENCE_MESSAGE in (exc.diag.message_primary or "")
    )


def stored_columns(rows: Sequence[StoredEvent] | EventColumns) -> tuple[Any, ...]:
    """Stored rows as the four typed arrays an ``unnest`` insert takes (sent in binary)."""
    ids: Sequence[UUID | str]
    if isinstance(rows, EventColumns):
        ids, versions, topics, states = rows.ids, rows.versions, rows.topics, rows.states
    else:
        ids = [r.originator_id for r in rows]
        versions = [r.originator_version for r in rows]
        topics = [r.topic for r in rows]
        states = [r.state for r in rows]
    # Ids of another type (``text`` ids) are left to psycopg.
    uuids = set(map(type, ids)) <= _UUID_TYPE
    return (
        Uuids(ids) if uuids else ids,
        Int8s(versions),
        Texts(topics),
        Byteas(states),
    )


def insert_snapshots_sql(datastore: PostgresDatastore, table: str) -> str:
    """The insert of a commit's snapshot rows into ``table``, which also drops each
    instance's older snapshots (an instance reads only its latest: the older ones
    would only take room, each as large as the state was). A row already at that
    version is left as it is (it holds the same state)."""
    return (
        SQL(
            "WITH new AS (SELECT * FROM unnest("
            "%b::{id_type}[], %b::int8[], %b::text[], %b::bytea[]) AS n(id, version, topic, state)"
            "), older AS (DELETE FROM {schema}.{table} t USING new "
            "WHERE t.originator_id = new.id AND t.originator_version < new.version) "
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM new ON CONFLICT DO NOTHING"
        )
        .format(
            schema=Identifier(datastore.schema),
            table=Identifier(table),
            id_type=Identifier(datastore.originator_id_type),
        )
        .as_string()
    )
