"""The Postgres recorders: eventsourcing's, keeping the instance index beside the events.

The index is the ``dj_instances`` table of the store's schema, written in the
insert transaction of the events (both commit or neither does); the type
versions ever written are kept in ``dj_type_versions``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Final, cast
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import Environment
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier
from psycopg.types.composite import CompositeInfo, register_composite

from durable_jobs.adapters import (
    INDEX_COLUMNS,
    ConfigurationError,
    IndexRow,
    InstanceIndex,
    JobsApplication,
    LockLost,
    index_rows_from,
    log_fields,
    rows_from,
    snapshots_from,
    statements_from,
    to_epoch,
    type_versions_from,
)
from durable_jobs.stores._postgres_commit import (
    FENCE_KWARG,
    PIPELINE_KWARG,
    EventColumns,
    insert_in_one_round_trip,
    insert_snapshots_sql,
    stored_columns,
)
from durable_jobs.stores._postgres_conn import (
    _POOL_RECONNECT_TIMEOUT,
    _READ_ONLY,
    _TRIES,
    READ_ONLY_ENV,
    Float8s,
    Int8s,
    Texts,
    Uuids,
    _aggregate_insert_once,
    _Reach,
    _ReadsTriedThrice,
    _retry_reads,
    _SchemaOnce,
    _waited_in_vain,
)
from durable_jobs.stores._postgres_statements import run_statements

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from psycopg import Cursor
    from psycopg.rows import DictRow

__all__ = [
    "EVENTS_TABLE",
    "FENCE_KWARG",
    "INDEX_TABLE",
    "SNAPSHOTS_TABLE",
    "TABLES",
    "TYPE_VERSIONS_TABLE",
    "EventColumns",
    "PostgresApplicationRecorderWithIndex",
    "PostgresFactoryWithIndex",
    "PostgresSnapshotRecorder",
    "alarm_channel",
]

log = logging.getLogger("durable_jobs.store")

# Upstream's readers without their 10-attempt retry decorators (see _retry_reads).
_select_notifications_once = PostgresApplicationRecorder.select_notifications.__wrapped__
_max_notification_id_once = PostgresApplicationRecorder.max_notification_id.__wrapped__

INDEX_TABLE: Final = "dj_instances"
#: Keyword argument of a fenced insert: the lease (seconds) bounding an idle transaction.
LEASE_KWARG: Final = "dj_lease"
#: Longest a commit's transaction may wait for its process between two of its statements
#: (seconds), if the lease is longer. A commit holds the events table's lock, so a
#: process frozen in the middle of one (SIGSTOP, a paused VM) stops every worker's
#: commits, and the client calls with them, until the server ends its transaction. A
#: live process sends a commit's statements without a pause: well under a second even
#: when starved of CPU. Its run then fails to commit and goes again; nothing else is lost.
COMMIT_IDLE_MAX: Final = 5.0
DUE_INDEX: Final = "dj_instances_due_at"
TYPE_VERSIONS_TABLE: Final = "dj_type_versions"
#: eventsourcing's events and snapshots tables: its factory names them after the
#: application (``<name>_events``, ``<name>_snapshots``, lower case).
EVENTS_TABLE: Final = f"{JobsApplication.name.lower()}_events"
SNAPSHOTS_TABLE: Final = f"{JobsApplication.name.lower()}_snapshots"
#: Every table a store keeps in its schema (what ``durable-jobs doctor`` looks for).
TABLES: Final = (EVENTS_TABLE, SNAPSHOTS_TABLE, INDEX_TABLE, TYPE_VERSIONS_TABLE)
_COLUMNS: Final = [c.strip() for c in INDEX_COLUMNS.split(",")]


#: The transaction's synchronous_commit, raised to on if it is off (see _insert_events).
_DURABLE_COMMIT = (
    "CASE current_setting('synchronous_commit') WHEN 'off' "
    "THEN set_config('synchronous_commit', 'on', true) END"
)


class PostgresApplicationRecorderWithIndex(
    _ReadsTriedThrice, _SchemaOnce, PostgresApplicationRecorder, InstanceIndex
):
    """eventsourcing's Postgres application recorder that also keeps the instance index.

    Index rows are upserted by :meth:`_insert_events`, which upstream runs in
    the insert transaction before the events table is locked and the events
    inserted: both commit or neither does. The schema is created (if missing)
    by :meth:`create_table`.
    """

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        if datastore.enable_db_functions:
            # Upstream's db-function insert path never calls _insert_events.
            msg = "The durable_jobs recorder cannot run with POSTGRES_ENABLE_DB_FUNCTIONS on."
            raise ConfigurationError(msg)
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(datastore.schema), Identifier(INDEX_TABLE)
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                    "instance_uuid uuid PRIMARY KEY, "
                    'kind text COLLATE "C" NOT NULL, '
                    'job text COLLATE "C" NOT NULL, '
                    'instance_id text COLLATE "C" NOT NULL, '
                    "status text NOT NULL, "
                    "due_at double precision, "
                    "version bigint NOT NULL, "
                    "updated_at double precision NOT NULL, "
                    "UNIQUE (kind, job, instance_id))"
                ).format(schema=schema, table=table),
                SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} "
                    "(due_at, instance_uuid) WHERE due_at IS NOT NULL"
                ).format(index=Identifier(DUE_INDEX), schema=schema, table=table),
                # Every job type version above 1 ever written (see select_type_versions).
                SQL(
                    "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                    'kind text COLLATE "C" NOT NULL, job text COLLATE "C" NOT NULL, '
                    "version bigint NOT NULL, PRIMARY KEY (kind, job, version))"
                ).format(schema=schema, table=Identifier(TYPE_VERSIONS_TABLE)),
            ]
        )
        self._insert_type_versions = SQL(
            "INSERT INTO {schema}.{table} (kind, job, version) SELECT * FROM unnest("
            "%s::text[], %s::text[], %s::int8[]) ON CONFLICT DO NOTHING"
        ).format(schema=schema, table=Identifier(TYPE_VERSIONS_TABLE))
        self._select_type_versions = SQL("SELECT kind, job, version FROM {schema}.{table}").format(
            schema=schema, table=Identifier(TYPE_VERSIONS_TABLE)
        )
        columns = SQL(", ").join(Identifier(c) for c in _COLUMNS)
        # The statements of every commit are plain strings (a Composed is rendered
        # again on each execute), prepared, with their arrays sent in binary.
        self._upsert_index = (
            SQL(
                "INSERT INTO {schema}.{table} AS t ({columns}) SELECT * FROM unnest("
                "%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], "
                "%b::float8[], %b::int8[], %b::float8[]) "
                "ON CONFLICT (instance_uuid) DO UPDATE SET status = excluded.status, "
                "due_at = excluded.due_at, version = excluded.version, "
                "updated_at = excluded.updated_at WHERE excluded.version > t.version"
            )
            .format(schema=schema, table=table, columns=columns)
            .as_string()
        )
        self._insert_events_sql = (
            SQL(
                "INSERT INTO {schema}.{table} AS t "
                "(originator_id, originator_version, topic, state) SELECT * FROM unnest("
                "%b::{id_type}[], %b::int8[], %b::text[], %b::bytea[]) RETURNING notification_id"
            )
            .format(
                schema=schema,
                table=Identifier(self.events_table_name),
                id_type=Identifier(datastore.originator_id_type),
            )
            .as_string()
        )
        #: The same without the notification ids (:meth:`write_columns`: nobody reads them).
        self._insert_columns_sql = self._insert_events_sql.removesuffix(
            " RETURNING notification_id"
        )
        self._lock_table_sql: list[Any] = [
            q.as_string() if isinstance(q, Composable) else q for q in self.lock_table_statements
        ]
        select = SQL("SELECT {columns} FROM {schema}.{table} ").format(
            columns=columns, schema=schema, table=table
        )
        self._select = select
        #: The alarm queries, answered from the partial index on (due_at, instance_uuid).
        self.sql_due_alarms = select + SQL(
            "WHERE due_at IS NOT NULL AND due_at <= %s ORDER BY due_at, instance_uuid LIMIT %s"
        )
        self.sql_next_alarms = select + SQL(
            "WHERE due_at IS NOT NULL ORDER BY due_at, instance_uuid LIMIT %s"
        )
        self.sql_next_alarms_after = select + SQL(
            "WHERE due_at IS NOT NULL AND due_at > %s ORDER BY due_at, instance_uuid LIMIT %s"
        )
        self.sql_next_alarms_of = select + SQL(
            "WHERE due_at IS NOT NULL AND (kind, job) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[])) "
            "ORDER BY due_at, instance_uuid LIMIT %s"
        )
        self.sql_index_row = select + SQL("WHERE instance_uuid = %s")
        # Rendered once, prepared: the scheduler reads alarms all the time.
        self._due_alarms_sql = self.sql_due_alarms.as_string()
        self._next_alarms_sql = self.sql_next_alarms.as_string()
        self._next_alarms_after_sql = self.sql_next_alarms_after.as_string()
        self._index_row_sql = self.sql_index_row.as_string()
        #: NOTIFY channel on which commits that set an alarm are announced, and the
        #: payload (the writing store's token, so a listener can skip its own).
        self.alarm_channel = alarm_channel(datastore.schema)
        self.notify_token = ""
        #: For the statements of ``ctx.execute``: the store's schema first, then public.
        self._statements_search_path = SQL("SET LOCAL search_path TO {}, public").format(schema)
        #: The insert of a commit's snapshot rows (see :meth:`use_snapshots_table`).
        self._insert_snapshots_sql: str | None = None

    def use_snapshots_table(self, table: str) -> None:
        """Write the snapshot rows a save passes down (``snapshots_from(kwargs)``) to
        ``table`` in the commit's transaction; one already at that version is left."""
        self._insert_snapshots_sql = insert_snapshots_sql(self.datastore, table)

    def _relations(self) -> list[str]:
        return [
            *super()._relations(),
            self.notification_id_index_name,
            INDEX_TABLE,
            DUE_INDEX,
            TYPE_VERSIONS_TABLE,
        ]

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent] | EventColumns,
        **kwargs: Any,
    ) -> None:
        super()._insert_events(curs, cast("Sequence[StoredEvent]", stored_events), **kwargs)
        rows = index_rows_from(kwargs)
        ordered = _newest_in_order(rows) if rows else []
        dues = [None if r.due_at is None else r.due_at.timestamp() for r in ordered]
        # First, in one statement: the settings and notifications of the transaction.
        # A commit is acknowledged once it is on disk: a role or database setting of
        # synchronous_commit=off would acknowledge commits a server crash then loses.
        # (Any other value, remote_apply say, is the DBA's and is kept.)
        calls: list[str] = [_DURABLE_COMMIT]
        params: list[Any] = []
        lease = kwargs.get(LEASE_KWARG)
        if lease:
            # A process frozen mid-commit must not hold the events table for long.
            calls.append("set_config('idle_in_transaction_session_timeout', %b, true)")
            params.append(f"{int(min(lease, COMMIT_IDLE_MAX) * 1000)}ms")
        if stored_events:
            # Upstream's NOTIFY of new events (delivered on commit, as all of these).
            calls.append("pg_notify(%b, '')")
            params.append(self.channel_name)
        set_dues = [d for d in dues if d is not None]
        if set_dues:
            # Other processes' schedulers look again once the earliest of these
            # alarms (the payload's time) is due.
            calls.append("pg_notify(%b, %b)")
            params += [self.alarm_channel, f"{self.notify_token} {min(set_dues)!r}"]
        curs.execute("SELECT " + ", ".join(calls), params, prepare=True)
        if ordered:
            columns = [
                Uuids([r.instance_uuid for r in ordered]),
                Texts([r.kind for r in ordered]),
                Texts([r.job for r in ordered]),
                Texts([r.instance_id for r in ordered]),
                Texts([r.status for r in ordered]),
                Float8s(dues),
                Int8s([r.version for r in ordered]),
                Float8s([r.updated_at.timestamp() for r in ordered]),
            ]
            curs.execute(self._upsert_index, columns, prepare=True)
        versions = type_versions_from(kwargs)
        if versions:
            curs.execute(
                self._insert_type_versions, [list(col) for col in zip(*versions, strict=True)]
            )
        run_statements(
            curs,
            statements_from(kwargs),
            self._statements_search_path,
            pipeline=kwargs.get(PIPELINE_KWARG),
        )
        snapshots = snapshots_from(kwargs)
        if snapshots:
            assert self._insert_snapshots_sql is not None, "use_snapshots_table() first"
            curs.execute(self._insert_snapshots_sql, stored_columns(snapshots), prepare=True)
        self._run_fault_hook()

    def _refuse_lost(self, held: int, kwargs: dict[str, Any]) -> None:
        """Raise :class:`LockLost` if fewer than all the locks of the commit's fence
        were ``held`` (then the transaction rolls back)."""
        if held >= len(kwargs.get(FENCE_KWARG) or ()):
            return
        names = _names(index_rows_from(kwargs))
        raise LockLost(
            f"The instance lock of {names} was lost (its session ended: connection "
            "dropped or lease expired); this commit was refused and nothing was "
            "written. The instance runs again under a new lock."
        )

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent] | EventColumns,
        **kwargs: Any,
    ) -> None:
        """Upstream's (lock the events table, insert; its NOTIFY went first, with
        :meth:`_insert_events`'s settings), with the events sent as typed arrays in
        binary, not as an array of a composite type in text."""
        for statement in self._lock_table_sql:
            curs.execute(statement, prepare=True)
        # The NOTIFY was sent first (see _insert_events): one statement less.
        sql = (
            self._insert_columns_sql
            if isinstance(stored_events, EventColumns)
            else self._insert_events_sql
        )
        curs.execute(sql, stored_columns(stored_events), prepare=True)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Upstream's insert, tried again on a dead pooled connection (see
        :func:`_retry_reads`).

        A connection can drop after the server committed but before it said
        so; the next try then finds its own events already there. That is
        recognised (the stored rows equal ours) and reported as success, not
        as a version conflict. Notification ids are unknown then: None.
        """
        return self._insert_tried(stored_events, kwargs)

    def write_columns(self, columns: EventColumns, **kwargs: Any) -> None:
        """:meth:`insert_events` of rows given as columns (no ``StoredEvent`` objects),
        without their notification ids."""
        self._insert_tried(columns, kwargs)

    def _insert_tried(
        self, stored_events: Sequence[StoredEvent] | EventColumns, kwargs: dict[str, Any]
    ) -> Sequence[int] | None:
        uncertain = False
        reached = _Reach.of(self.datastore)
        try:
            reached.check()
        except OperationalError as exc:
            raise NothingSent(str(exc)) from exc
        for attempt in range(1, _TRIES + 1):
            try:
                ids = _insert_events_once(self, stored_events, **kwargs)
            except (InterfaceError, OperationalError) as exc:
                if attempt == _TRIES or _waited_in_vain(exc):
                    reached.failed(exc)
                    if _waited_in_vain(exc) and not uncertain:
                        # No connection came: nothing of this write reached the server.
                        raise NothingSent(str(exc)) from exc
                    raise
                uncertain = True
                reached.recheck()
            except (IntegrityError, LockLost) as exc:
                # After a try whose answer was lost, a duplicate key, or a fence that
                # fails now (the lock session died with that connection), may be
                # this same commit, made by the earlier try: then it succeeded, and
                # must not be reported as refused (the caller would decide and
                # commit it again).
                if uncertain and self._already_recorded(
                    stored_events.stored_events()
                    if isinstance(stored_events, EventColumns)
                    else stored_events
                ):
                    log.info(
                        "A commit whose answer was lost had gone through: its events "
                        "are in the store as written",
                        extra=_log_fields(index_rows_from(kwargs)),
                    )
                    return None
                if isinstance(exc, LockLost):
                    rows = index_rows_from(kwargs)
                    log.warning(
                        "A commit to instance(s) %s was refused: their lock session was "
                        "lost (connection dropped or lease expired), so another process "
                        "may run them now; nothing was written and the run goes again",
                        _names(rows),
                        extra=_log_fields(rows),
                    )
                raise
            else:
                reached.down = False
                return ids
        raise AssertionError("unreachable")  # pragma: no cover

    def _already_recorded(self, stored_events: Sequence[StoredEvent]) -> bool:
        """Whether every one of ``stored_events`` is in the table exactly as given."""
        by_id: dict[UUID | str, dict[int, StoredEvent]] = {}
        for e in stored_events:
            by_id.setdefault(e.originator_id, {})[e.originator_version] = e
        for originator_id, mine in by_id.items():
            found = self.select_events(originator_id, gt=min(mine) - 1, lte=max(mine))
            theirs = {e.originator_version: (e.topic, bytes(e.state)) for e in found}
            if theirs != {v: (e.topic, bytes(e.state)) for v, e in mine.items()}:
                return False
        return True

    def delete_instance(
        self, instance_uuid: UUID, version: int, snapshots_table: str | None
    ) -> tuple[int, int] | None:
        """Delete one terminated instance's rows in one transaction (see
        :meth:`Store.delete_instance`); None, and nothing deleted, if its index
        row is not ``terminated`` at ``version``."""
        schema = Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "DELETE FROM {}.{} WHERE instance_uuid = %s AND version = %s "
                    "AND status = 'terminated'"
                ).format(schema, Identifier(INDEX_TABLE)),
                (instance_uuid, version),
            )
            if curs.rowcount != 1:
                return None  # nothing changed
            curs.execute(
                SQL("DELETE FROM {}.{} WHERE originator_id = %s").format(
                    schema, Identifier(self.events_table_name)
                ),
                (instance_uuid,),
            )
            events = curs.rowcount
            snapshots = 0
            if snapshots_table is not None:
                curs.execute(
                    SQL("DELETE FROM {}.{} WHERE originator_id = %s").format(
                        schema, Identifier(snapshots_table)
                    ),
                    (instance_uuid,),
                )
                snapshots = curs.rowcount
            return events, snapshots

    @_retry_reads
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Upstream's, tried as the other reads are (see :func:`_retry_reads`): the
        tail of the dashboard and ``tail`` failed after 10 tries, each waiting
        ``connect_timeout`` for a pooled connection, while the server was down."""
        return cast(
            "Sequence[Notification]",
            _select_notifications_once(
                self, start, limit, stop, topics, inclusive_of_start=inclusive_of_start
            ),
        )

    @_retry_reads
    def max_notification_id(self) -> int | None:
        """Upstream's, tried as the other reads are (see :meth:`select_notifications`)."""
        return cast("int | None", _max_notification_id_once(self))

    @_retry_reads
    def select_unindexed(self, limit: int) -> list[tuple[UUID, int]]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                SQL(
                    "SELECT e.originator_id, max(e.originator_version) FROM {}.{} e "
                    "LEFT JOIN {}.{} i ON i.instance_uuid = e.originator_id "
                    "WHERE i.instance_uuid IS NULL GROUP BY e.originator_id LIMIT %s"
                ).format(
                    Identifier(self.datastore.schema),
                    Identifier(self.events_table_name),
                    Identifier(self.datastore.schema),
                    Identifier(INDEX_TABLE),
                ),
                (limit,),
            )
            return [(UUID(str(r[0])), int(r[1])) for r in curs.fetchall()]

    @_retry_reads
    def select_type_versions(self) -> list[tuple[str, str, int]]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(self._select_type_versions)
            return [(str(r[0]), str(r[1]), int(r[2])) for r in curs.fetchall()]

    @_retry_reads
    def _rows(
        self, query: Composed | str, params: Sequence[Any], *, prepare: bool = False
    ) -> list[IndexRow]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            # Binary results: a float8 is unpacked, not parsed from its text (the
            # scheduler reads due rows all the time); the same Python values.
            curs.execute(query, params, prepare=prepare or None, binary=True)
            return rows_from(curs.fetchall())

    def due_alarms(self, before: datetime, limit: int) -> list[IndexRow]:
        return self._rows(self._due_alarms_sql, (to_epoch(before), limit), prepare=True)

    def next_alarms(self, limit: int, after: datetime | None = None) -> list[IndexRow]:
        if after is None:
            return self._rows(self._next_alarms_sql, (limit,), prepare=True)
        return self._rows(self._next_alarms_after_sql, (to_epoch(after), limit), prepare=True)

    def next_alarms_of(self, jobs: Collection[tuple[str, str]], limit: int) -> list[IndexRow]:
        pairs = sorted(set(jobs))
        kinds = [kind for kind, _ in pairs]
        names = [job for _, job in pairs]
        return self._rows(self.sql_next_alarms_of, (kinds, names, limit))

    def index_row(self, instance_uuid: UUID) -> IndexRow | None:
        rows = self._rows(self._index_row_sql, (instance_uuid,), prepare=True)
        return rows[0] if rows else None

    def select_index(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[IndexRow]:
        where: list[Composed] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("job", job), ("status", status)):
            if value is not None:
                where.append(SQL("{} = %s").format(Identifier(column)))
                params.append(value)
        if after is not None:
            where.append(SQL("(kind, job, instance_id) > (%s, %s, %s)").format())
            params.extend(after)
        clause = SQL("WHERE {} ").format(SQL(" AND ").join(where)) if where else SQL("")
        query = self._select + clause + SQL("ORDER BY kind, job, instance_id LIMIT %s")
        return self._rows(query, (*params, limit))


def _insert_events_once(
    recorder: PostgresApplicationRecorderWithIndex,
    stored_events: Sequence[StoredEvent] | EventColumns,
    **kwargs: Any,
) -> Sequence[int] | None:
    """One try of the insert (see :func:`insert_in_one_round_trip`)."""
    return insert_in_one_round_trip(recorder, stored_events, kwargs)


class NothingSent(OperationalError):
    """A write that failed before any of it reached the server (no connection came,
    or the server was known down and still is): certainly not committed."""


def _names(rows: Sequence[IndexRow]) -> str:
    """The instances of a commit's index rows, for its messages (by job and id: a uuid
    alone told an operator nothing)."""
    return ", ".join(sorted({f"{r.kind} job {r.job!r} instance {r.instance_id!r}" for r in rows}))


def _log_fields(rows: Sequence[IndexRow]) -> dict[str, Any]:
    """The structured log fields of the instances of ``rows``: all of one instance's,
    or the kind and job that all of them share."""
    if not rows:
        return {}
    first = rows[0]
    if all(r.instance_uuid == first.instance_uuid for r in rows):
        return log_fields(first.kind, first.job, first.instance_id)
    if all((r.kind, r.job) == (first.kind, first.job) for r in rows):
        return log_fields(first.kind, first.job)
    return {}


def _newest_in_order(rows: Sequence[IndexRow]) -> list[IndexRow]:
    """Each instance's newest row (ON CONFLICT cannot touch one row twice in a
    statement), sorted by uuid, so that concurrent saves lock rows in one order and
    cannot deadlock each other (a uuid's number orders as its bytes, as Postgres does)."""
    newest: dict[int, IndexRow] = {}
    for row in rows:
        key = row.instance_uuid.int
        seen = newest.get(key)
        if seen is None or row.version > seen.version:
            newest[key] = row
    return [newest[k] for k in sorted(newest)]


class PostgresSnapshotRecorder(_ReadsTriedThrice, _SchemaOnce, PostgresAggregateRecorder):
    """eventsourcing's Postgres aggregate recorder (for snapshots) with 3 tries, not 10."""

    def create_table(self) -> None:
        super().create_table()
        if self.datastore not in _READ_ONLY:
            self._vacuumed_as_deleted_from()

    def _vacuumed_as_deleted_from(self) -> None:
        """Give the snapshots table Postgres's default autovacuum thresholds.

        eventsourcing creates its tables for appends only: autovacuum waits for
        100,000,000 dead rows. Ours deletes an instance's older snapshots with
        every new one, so the table (and its TOAST table, which follows it) kept
        every snapshot ever replaced: 20 live rows and 26 MB after 20,000 keyed
        sends. Stores made before are mended when a writer opens them; a role
        that does not own the table is told how, and the open goes on.
        """
        schema, table = self.datastore.schema, self.events_table_name
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT c.reloptions AS options FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, table),
            )
            row = curs.fetchone()
        options = (row or {}).get("options") or []
        if not any(o.startswith(_APPEND_ONLY_OPTIONS) for o in options):
            return
        alter = SQL("ALTER TABLE {}.{} RESET ({})").format(
            Identifier(schema), Identifier(table), SQL(", ").join(map(SQL, _APPEND_ONLY_OPTIONS))
        )
        try:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(alter)
        except PersistenceError as exc:
            log.warning(
                "The snapshots table %s.%s keeps the autovacuum settings of an append-only "
                "table, so Postgres seldom vacuums it and it grows with every snapshot "
                "replaced; this role could not change them (%s). Its owner can: %s",
                schema,
                table,
                exc,
                alter.as_string(),
            )

    @_retry_reads
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return cast("Sequence[int] | None", _aggregate_insert_once(self, stored_events, **kwargs))


#: The autovacuum settings eventsourcing gives its tables, for appends only.
_APPEND_ONLY_OPTIONS: Final = ("autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor")


class PostgresFactoryWithIndex(PostgresFactory):
    """eventsourcing's Postgres factory whose application recorder keeps the index."""

    application_recorder_class = PostgresApplicationRecorderWithIndex
    aggregate_recorder_class = PostgresSnapshotRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # Our pool's own setting (upstream does not expose it): see _POOL_RECONNECT_TIMEOUT.
        self.datastore.pool.reconnect_timeout = _POOL_RECONNECT_TIMEOUT
        # Before any recorder registers the store's composite type (see _register_types).
        self.datastore.register_type_adapters = functools.partial(  # type: ignore[method-assign]
            _register_types, self.datastore
        )
        if env.get(READ_ONLY_ENV):
            _READ_ONLY.add(self.datastore)
        if self.datastore.enable_db_functions:
            self.close()
            msg = (
                "POSTGRES_ENABLE_DB_FUNCTIONS must be off for durable_jobs: its insert "
                "path skips the hook that writes the instance index."
            )
            raise ConfigurationError(msg)


#: One ``CompositeInfo`` per distinct composite type seen by this process (by name,
#: oids and fields): see :func:`_register_types`.
_SHARED_TYPES: dict[tuple[Any, ...], CompositeInfo] = {}


def _register_types(datastore: PostgresDatastore) -> None:
    """eventsourcing's ``PostgresDatastore.register_type_adapters``, with the type's
    ``CompositeInfo`` shared by every store of the process that has the same type.

    psycopg keeps the adapter classes it makes for a composite type in caches keyed
    by the info object (``functools.cache``), and eventsourcing fetches a new info
    for every store opened: each one left four classes behind for good (an
    ``Inspector`` or ``open_jobs`` per request grew the process without bound).
    """
    names = [n for n in datastore.db_type_names if n not in datastore.psycopg_type_adapters]
    if not names:
        return
    with datastore.get_connection() as conn:
        for name in names:
            info = CompositeInfo.fetch(conn, f"{datastore.schema}.{name}")
            if info is None:
                continue
            key = (
                info.name,
                info.oid,
                info.array_oid,
                tuple(info.field_names),
                tuple(info.field_types),
            )
            info = _SHARED_TYPES.setdefault(key, info)
            register_composite(info, conn)
            datastore.psycopg_type_adapters[name] = info
            assert info.python_type is not None, info
            datastore.psycopg_python_types[name] = info.python_type


def alarm_channel(schema: str) -> str:
    """The NOTIFY channel of a schema's alarms (short: channel names stop at 63 bytes)."""
    return "dj_alarms_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
