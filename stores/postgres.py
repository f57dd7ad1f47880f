"""``postgresql://user:password@host:port/db``: the multi-process store.

Options: ``?schema=NAME`` (default ``public``; created with the tables if
missing, so several apps can share one database), ``?connect_timeout=SECONDS``
(default 5, at least 2 in effect: how long opening the store waits for the
server, per address, and how long an operation waits for a pooled
connection; while the server is out of reach a call fails within it, and at
once if the server refuses connections) and ``?pool_size=N`` (default 5:
connections kept open, and the most this store uses at once).
``postgres://`` is accepted as an alias.
Schema names are lower-case identifiers (eventsourcing looks its types up by
unquoted name). The password never appears in messages or reprs.

Events are kept by eventsourcing's Postgres recorder; the instance index is the
``dj_instances`` table of the same schema, written in the same transaction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

import psycopg
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    OperationalError,
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
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import PoolTimeout

from durable_jobs._errors import ConfigurationError, DurableJobsError, LockLost, StoreError
from durable_jobs._store.base import (
    INDEX_KWARG,
    TYPE_VERSIONS_KWARG,
    Store,
    index_rows_from,
    type_versions_from,
)
from durable_jobs._store.index import INDEX_COLUMNS, IndexRow, InstanceIndex, to_epoch
from durable_jobs._store.urls import scrub, scrub_chain
from durable_jobs.stores._postgres_locks import FENCE_QUERY, LockSession, fence_params

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from psycopg import Cursor
    from psycopg.rows import DictRow

    from durable_jobs._store.base import _JobsApplication
    from durable_jobs._store.urls import StoreURL

__all__ = ["PostgresApplicationRecorderWithIndex", "PostgresFactoryWithIndex", "PostgresStore"]

log = logging.getLogger("durable_jobs.store")

INDEX_TABLE: Final = "dj_instances"
#: Keyword arguments of a fenced insert: the (lock key, session marker) pairs that
#: must still be held, and the lease (seconds) bounding an idle transaction.
FENCE_KWARG: Final = "dj_fence"
LEASE_KWARG: Final = "dj_lease"
DUE_INDEX: Final = "dj_instances_due_at"
TYPE_VERSIONS_TABLE: Final = "dj_type_versions"
#: Advisory-lock queries over an array of keys, one result row per key, in order.
TRY_LOCKS: Final = (
    "SELECT pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, i) "
    "ORDER BY i"
)
UNLOCKS: Final = (
    "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i"
)
EXAMPLE_URL: Final = "postgresql://user:password@localhost:5432/dbname?schema=jobs"
#: Schema names eventsourcing handles: it looks its composite type up by the
#: unquoted name ``schema.type``, so upper case or punctuation would break it.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COLUMNS: Final = [c.strip() for c in INDEX_COLUMNS.split(",")]

_F = TypeVar("_F", bound=Callable[..., Any])


def _retry_reads(func: _F) -> _F:
    """Try again after a pooled connection turned out dead, not after waiting for one.

    Upstream tries 10 times, each try waiting up to ``connect_timeout`` for a
    connection: about a minute before a call fails on a server that is down.
    Here a try that failed on a dead connection (a server restart leaves every
    pooled one dead, and that fails at once) is followed by a connection of
    its own (see :class:`_Reach`): if the server refuses it, the call fails at
    once; if it answers, the pool's dead connections are replaced and the call
    is tried again. A try that waited for a pooled connection in vain is not
    repeated. So a call fails within ``connect_timeout``.
    """

    @functools.wraps(func)
    def tried(self: Any, *args: Any, **kwargs: Any) -> Any:
        reached = _Reach.of(self.datastore)
        reached.check()
        for attempt in range(1, _TRIES + 1):
            try:
                result = func(self, *args, **kwargs)
            except (InterfaceError, OperationalError) as exc:
                if attempt == _TRIES or _waited_in_vain(exc):
                    reached.failed(exc)
                    raise
                reached.recheck()
            else:
                reached.down = False
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    return cast(_F, tried)


class _Reach:
    """Whether a datastore's server was out of reach at its last call.

    A call is several steps (a snapshot read, then an events read...), each
    of which would wait ``connect_timeout`` for a pooled connection while the
    server is down. Once one step waited in vain, later steps and calls first
    try a connection of their own, which a server that is down refuses at
    once (or within ``connect_timeout``), and only then use the pool.
    """

    _all: ClassVar[weakref.WeakKeyDictionary[PostgresDatastore, _Reach]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.down = False

    @classmethod
    def of(cls, datastore: PostgresDatastore) -> _Reach:
        reach = cls._all.get(datastore)
        if reach is None:
            reach = cls._all[datastore] = cls(datastore)
        return reach

    def failed(self, exc: BaseException) -> None:
        if _waited_in_vain(exc) or any(
            isinstance(e, psycopg.OperationalError) and not e.sqlstate for e in _chain(exc)
        ):
            self.down = True

    def recheck(self) -> None:
        """After a pooled connection failed: go on only if the server answers."""
        self.down = True
        self.check()

    def check(self) -> None:
        """If the server was down: connect once (eventsourcing's OperationalError if it
        still is), then replace the pool's dead connections."""
        if not self.down:
            return
        try:
            _connect_beside(self.datastore).close()
        except psycopg.OperationalError as exc:
            raise OperationalError(str(exc)) from exc
        self.down = False
        _discard_dead(self.datastore)


#: Tries of one call on dead pooled connections (the pool is checked after the first).
_TRIES: Final = 3
#: How long the pool keeps trying to open a lost connection before it gives up and
#: leaves it to the next call (psycopg_pool's default, 5 min, backs off to a minute
#: between tries: after an outage the pool came back up to a minute late).
_POOL_RECONNECT_TIMEOUT: Final = 0.5


def _waited_in_vain(exc: BaseException) -> bool:
    """Whether ``exc`` says no connection came within the pool's timeout."""
    return any(isinstance(e, PoolTimeout) for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _connect_beside(datastore: PostgresDatastore) -> psycopg.Connection[Any]:
    """A new autocommit connection with the pool's settings, outside the pool."""
    pool = datastore.pool
    kwargs = pool.kwargs() if callable(pool.kwargs) else (pool.kwargs or {})
    params = {k: v for k, v in kwargs.items() if k != "row_factory"}
    return psycopg.connect(**params, autocommit=True, connect_timeout=max(1, int(pool.timeout)))


def _discard_dead(datastore: PostgresDatastore) -> None:
    """Test the pool's idle connections, replacing the dead ones (quick: a server that
    closed them answers at once)."""
    with contextlib.suppress(Exception):
        datastore.pool.check()


# Upstream's methods without their 10-attempt retry decorators (functools.wraps keeps them).
_insert_events_once = PostgresApplicationRecorder.insert_events.__wrapped__
_select_events_once = PostgresApplicationRecorder.select_events.__wrapped__
_aggregate_insert_once = PostgresAggregateRecorder.insert_events.__wrapped__


class _ReadsTriedThrice:
    """Upstream's ``select_events`` with 3 tries instead of 10 (see :func:`_retry_reads`)."""

    @_retry_reads
    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return cast(
            "Sequence[StoredEvent]",
            _select_events_once(self, originator_id, gt=gt, lte=lte, desc=desc, limit=limit),
        )


class _SchemaOnce(PostgresAggregateRecorder):
    """Creates its tables only when they are missing, one process at a time.

    DDL on an existing schema is not harmless: ``CREATE INDEX IF NOT EXISTS``
    takes a ShareLock on its table before it looks for the index, so a
    process opening the store held the events table while it waited for the
    index table, as a commit held the index table while it waited for the
    events table ("deadlock detected", a failed open or a stalled commit). So
    a store that finds everything in place runs no DDL at all. Otherwise the
    DDL runs under a session advisory lock of the schema (processes starting
    together on a fresh schema would collide in the catalogs), and a deadlock
    or a passing collision is tried again.
    """

    def _relations(self) -> list[str]:
        """The tables and indexes :meth:`create_table` makes (unqualified names)."""
        return [self.events_table_name]

    def _types(self) -> list[str]:
        return [self.stored_event_type_name]

    def _missing(self, curs: Cursor[DictRow]) -> bool:
        """Whether the schema lacks any of this recorder's tables, indexes or types."""
        schema = self.datastore.schema
        curs.execute(
            "SELECT (SELECT count(*) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s::text[])) AS relations, "
            "(SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = %s AND t.typname = ANY(%s::text[])) AS types",
            (schema, self._relations(), schema, self._types()),
        )
        row = curs.fetchone()
        assert row is not None
        relations, types = int(row["relations"]), int(row["types"])
        return relations < len(set(self._relations())) or types < len(set(self._types()))

    def create_table(self) -> None:
        with self.datastore.transaction(commit=False) as curs:
            missing = self._missing(curs)
        if not missing:
            self.datastore.register_type_adapters()
            return
        if self.datastore in _READ_ONLY:
            msg = (
                f"There is no durable-jobs store in the schema {self.datastore.schema!r} (the "
                "schema or its tables do not exist) and this store was opened read-only, so "
                "nothing was created; check ?schema= in the store URL."
            )
            raise ConfigurationError(msg)
        key = advisory_key(f"ddl:{self.datastore.schema}")
        # Its own connection (not a pooled one: a pool of one would deadlock).
        with _connect_beside(self.datastore) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                for attempt in range(_DDL_TRIES):
                    try:
                        self._create_schema()
                        super().create_table()
                    except (IntegrityError, OperationalError) as exc:
                        if attempt == _DDL_TRIES - 1 or not _worth_retrying(exc):
                            raise
                        time.sleep(0.1 * (attempt + 1))
                    else:
                        return
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _create_schema(self) -> None:
        # Look first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on
        # the database even when the schema exists (e.g. made by a DBA).
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.datastore.schema,))
            if curs.fetchone() is None:
                curs.execute(
                    SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.datastore.schema))
                )


_DDL_TRIES: Final = 5
#: admin_shutdown, crash_shutdown, cannot_connect_now (starting or stopping).
_SERVER_GOING_AWAY: Final = frozenset({"57P01", "57P02", "57P03"})
#: Environment setting of a store opened with ``create=False``: its recorders create nothing.
READ_ONLY_ENV: Final = "DURABLE_JOBS_READ_ONLY"
#: The datastores of such stores.
_READ_ONLY: weakref.WeakSet[PostgresDatastore] = weakref.WeakSet()


def _worth_retrying(exc: BaseException) -> bool:
    """A catalog collision or a deadlock with another process's DDL or commit."""
    cause = exc.__cause__
    return isinstance(exc, IntegrityError) or isinstance(
        cause, psycopg.errors.DeadlockDetected | psycopg.errors.LockNotAvailable
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
        self._upsert_index = SQL(
            "INSERT INTO {schema}.{table} AS t ({columns}) SELECT * FROM unnest("
            "%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], "
            "%s::float8[], %s::int8[], %s::float8[]) "
            "ON CONFLICT (instance_uuid) DO UPDATE SET status = excluded.status, "
            "due_at = excluded.due_at, version = excluded.version, "
            "updated_at = excluded.updated_at WHERE excluded.version > t.version"
        ).format(schema=schema, table=table, columns=columns)
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
        self.sql_index_row = select + SQL("WHERE instance_uuid = %s")
        #: NOTIFY channel on which commits that set an alarm are announced, and the
        #: payload (the writing store's token, so a listener can skip its own).
        self.alarm_channel = alarm_channel(datastore.schema)
        self.notify_token = ""

    def _relations(self) -> list[str]:
        return [
            *super()._relations(),
            self.notification_id_index_name,
            INDEX_TABLE,
            DUE_INDEX,
            TYPE_VERSIONS_TABLE,
        ]

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        lease = kwargs.get(LEASE_KWARG)
        if lease:
            # A process frozen mid-commit must not hold the events table for longer.
            curs.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
                (f"{int(lease * 1000)}ms",),
            )
        rows = index_rows_from(kwargs)
        if rows:
            # ON CONFLICT cannot touch one row twice in a statement: keep each
            # instance's newest row. Sorted, so concurrent saves lock rows in
            # one order and cannot deadlock each other.
            newest: dict[UUID, IndexRow] = {}
            for row in rows:
                seen = newest.get(row.instance_uuid)
                if seen is None or row.version > seen.version:
                    newest[row.instance_uuid] = row
            ordered = [newest[u] for u in sorted(newest, key=lambda u: u.bytes)]
            params = [list(col) for col in zip(*(_row_params(r) for r in ordered), strict=True)]
            curs.execute(self._upsert_index, params)
            if any(r.due_at is not None for r in ordered):
                # Delivered on commit only: other processes' schedulers look again.
                curs.execute("SELECT pg_notify(%s, %s)", (self.alarm_channel, self.notify_token))
        versions = type_versions_from(kwargs)
        if versions:
            curs.execute(
                self._insert_type_versions, [list(col) for col in zip(*versions, strict=True)]
            )
        fence = kwargs.get(FENCE_KWARG)
        if fence:
            # Last before the events: a session lost after this point cannot let
            # another run start before this one's handler ended (it already had),
            # and the version keeps that run's commit from passing this one.
            curs.execute(FENCE_QUERY, fence_params(fence))
            held = curs.fetchone()
            if held is None or int(held["count"]) < len(fence):
                names = ", ".join(sorted({str(r.instance_uuid) for r in rows}))
                log.warning(
                    "A commit to instance(s) %s was refused: their lock session was lost "
                    "(connection dropped or lease expired), so another process may run "
                    "them now; nothing was written and the run goes again",
                    names,
                )
                raise LockLost(
                    f"The instance lock of {names} was lost (its session ended: connection "
                    "dropped or lease expired); this commit was refused and nothing was "
                    "written. The instance runs again under a new lock."
                )
        self._run_fault_hook()

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
        uncertain = False
        reached = _Reach.of(self.datastore)
        reached.check()
        for attempt in range(1, _TRIES + 1):
            try:
                ids = _insert_events_once(self, stored_events, **kwargs)
            except (InterfaceError, OperationalError) as exc:
                if attempt == _TRIES or _waited_in_vain(exc):
                    reached.failed(exc)
                    raise
                uncertain = True
                reached.recheck()
            except IntegrityError:
                if uncertain and self._already_recorded(stored_events):
                    return None
                raise
            else:
                reached.down = False
                return cast("Sequence[int] | None", ids)
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
    def select_type_versions(self) -> list[tuple[str, str, int]]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(self._select_type_versions)
            return [(str(r[0]), str(r[1]), int(r[2])) for r in curs.fetchall()]

    @_retry_reads
    def _rows(self, query: Composed, params: Sequence[Any]) -> list[IndexRow]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(query, params)
            return [IndexRow.from_params(r) for r in curs.fetchall()]

    def due_alarms(self, before: datetime, limit: int) -> list[IndexRow]:
        return self._rows(self.sql_due_alarms, (to_epoch(before), limit))

    def next_alarms(self, limit: int, after: datetime | None = None) -> list[IndexRow]:
        if after is None:
            return self._rows(self.sql_next_alarms, (limit,))
        return self._rows(self.sql_next_alarms_after, (to_epoch(after), limit))

    def index_row(self, instance_uuid: UUID) -> IndexRow | None:
        rows = self._rows(self.sql_index_row, (instance_uuid,))
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


def _row_params(row: IndexRow) -> tuple[Any, ...]:
    _, *rest = row.as_params()
    return (row.instance_uuid, *rest)


class PostgresSnapshotRecorder(_ReadsTriedThrice, _SchemaOnce, PostgresAggregateRecorder):
    """eventsourcing's Postgres aggregate recorder (for snapshots) with 3 tries, not 10."""

    @_retry_reads
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return cast("Sequence[int] | None", _aggregate_insert_once(self, stored_events, **kwargs))


class PostgresFactoryWithIndex(PostgresFactory):
    """eventsourcing's Postgres factory whose application recorder keeps the index."""

    application_recorder_class = PostgresApplicationRecorderWithIndex
    aggregate_recorder_class = PostgresSnapshotRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # Our pool's own setting (upstream does not expose it): see _POOL_RECONNECT_TIMEOUT.
        self.datastore.pool.reconnect_timeout = _POOL_RECONNECT_TIMEOUT
        if env.get(READ_ONLY_ENV):
            _READ_ONLY.add(self.datastore)
        if self.datastore.enable_db_functions:
            self.close()
            msg = (
                "POSTGRES_ENABLE_DB_FUNCTIONS must be off for durable_jobs: its insert "
                "path skips the hook that writes the instance index."
            )
            raise ConfigurationError(msg)


def advisory_key(name: str) -> int:
    """The 64-bit key of the advisory lock called ``name`` (signed, as Postgres wants)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"dj-advisory-lk").digest()
    return int.from_bytes(digest, "big", signed=True)


def alarm_channel(schema: str) -> str:
    """The NOTIFY channel of a schema's alarms (short: channel names stop at 63 bytes)."""
    return "dj_alarms_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()


class PostgresAlarmListener:
    """A LISTEN connection on the alarm channel, read without blocking.

    The runtime waits for :meth:`fileno` to be readable, then calls :meth:`drain`.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], token: str, describe: Callable[[BaseException], str]
    ) -> None:
        self._conn = conn
        self._token = token.encode()
        self._describe = describe

    def fileno(self) -> int:
        return int(self._conn.pgconn.socket)

    def drain(self) -> bool:
        """Read what arrived; True if another store announced an alarm."""
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            raise StoreError(
                "The alarm listener lost its connection: " + self._describe(exc)
            ) from exc
        foreign = False
        while (note := pgconn.notifies()) is not None:
            foreign = foreign or note.extra != self._token
        return foreign

    def close(self) -> None:
        self._conn.close()


class PostgresStore(Store):
    """``postgresql://user:password@host:port/db?schema=NAME`` — shared by many processes."""

    scheme = "postgresql"
    url_options = frozenset({"schema", "connect_timeout", "pool_size"})
    shared = True

    _factory: PostgresFactoryWithIndex | None = None

    @property
    def schema(self) -> str:
        """The schema holding this store's tables."""
        schema = self.url.option("schema", "public") or ""
        if not _SCHEMA_NAME.fullmatch(schema):
            msg = (
                f"Invalid schema {schema!r} in store URL {str(self.url)!r}: use 1-63 "
                "lower-case letters, digits and '_', not starting with a digit."
            )
            raise ConfigurationError(msg)
        return schema

    @property
    def max_concurrency(self) -> int:
        """One call per pooled connection."""
        return int(self._settings()["pool_size"])

    # ---- cross-process instance locks: session advisory locks -----------------------
    #
    # One dedicated connection per store holds this process's locks, so a process
    # that dies (kill -9 included) releases all of them with its session, at once.
    # A session lost while the process lives on is handled by LockSession: commits
    # under its locks are fenced, and the runtime is told to stop their runs.

    _lock_session: LockSession | None = None

    @property
    def _locks(self) -> LockSession:
        if self._lock_session is None:
            self._lock_session = LockSession(self._connect, self._describe, str(self.url))
        return self._lock_session

    def _lock_key(self, uuid: UUID, scope: str) -> int:
        return advisory_key(f"{self.schema}:{scope}:{uuid}")

    def _keyed(self, keys: Sequence[tuple[UUID, str]]) -> list[tuple[UUID, str, int]]:
        return [(uuid, scope, self._lock_key(uuid, scope)) for uuid, scope in keys]

    def index_versions(self, uuids: Sequence[UUID]) -> dict[UUID, int]:
        """Read in the lock session (right after taking locks, never from the pool)."""
        query = SQL(
            "SELECT instance_uuid, version FROM {}.{} WHERE instance_uuid = ANY(%s::uuid[])"
        ).format(Identifier(self.schema), Identifier(INDEX_TABLE))
        rows, _ = self._locks.query(query, (list(uuids),))
        return {row[0]: int(row[1]) for row in rows}

    def try_lock(self, uuid: UUID, scope: str = "instance") -> bool:
        return self.try_lock_many([(uuid, scope)])[0]

    def unlock(self, uuid: UUID, scope: str = "instance") -> None:
        self.unlock_many([(uuid, scope)])

    def try_lock_many(self, keys: Sequence[tuple[UUID, str]]) -> list[bool]:
        return self._locks.try_lock_many(TRY_LOCKS, self._keyed(keys))

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        self._locks.unlock_many(UNLOCKS, self._keyed(keys))

    def watch_locks(self, lease: float, on_lost: Callable[[int], None]) -> None:
        """Keep the lock session alive and have the server end it after ``lease`` seconds
        without a ping; ``on_lost(session)`` is called (from another thread) when it ends."""
        self._locks.watch(lease, on_lost)

    def unwatch_locks(self) -> None:
        self._locks.unwatch()

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        return self._locks.session_of(uuid, scope)

    def session_alive(self, session: int) -> bool:
        return self._locks.is_live(session)

    def _put(
        self,
        events: Sequence[Any],
        rows: Sequence[IndexRow],
        versions: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        """Write in one transaction that first checks the locks held on these instances
        are still held by the sessions that took them (else :class:`LockLost`)."""
        fence = self._locks.fence([r.instance_uuid for r in rows]) if self._lock_session else []
        if not fence:
            super()._put(events, rows, versions)
            return
        kwargs = {
            INDEX_KWARG: rows,
            TYPE_VERSIONS_KWARG: versions,
            FENCE_KWARG: fence,
            LEASE_KWARG: self._locks.lease,
        }
        self._write(lambda: self._app.events.put(events, **kwargs), rows)

    def open_alarm_listener(self) -> PostgresAlarmListener:
        """LISTEN for other processes' alarms (see :class:`PostgresAlarmListener`)."""
        recorder = self._app.recorder
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        if not recorder.notify_token:
            recorder.notify_token = secrets.token_hex(8)
        try:
            conn = self._connect(autocommit=True)
            conn.execute(SQL("LISTEN {}").format(Identifier(recorder.alarm_channel)))
        except psycopg.Error as exc:
            msg = f"Could not listen for alarms on {self.url}: {self._describe(exc)}"
            raise StoreError(msg) from exc
        return PostgresAlarmListener(conn, recorder.notify_token, self._describe)

    def _delete_instance(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        recorder = self._app.recorder
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        snapshots = self._app.snapshots
        table = getattr(snapshots.recorder, "events_table_name", None) if snapshots else None
        return recorder.delete_instance(uuid, version, table)

    def close(self) -> None:
        if self._lock_session is not None:
            self._lock_session.close()
        super().close()

    def ping(self) -> None:
        """Connect once (StoreError if the server does not accept connections), then
        replace the pool's dead connections (all of them after a server restart)."""
        self._probe()
        if self._factory is not None:
            _discard_dead(self._factory.datastore)

    def unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` came from the server being out of reach (down, restarting,
        refusing or dropping connections), not from what was asked of it."""
        for e in _chain(exc):
            if isinstance(e, PoolTimeout | psycopg.InterfaceError):
                return True
            if isinstance(e, psycopg.OperationalError):
                state = e.sqlstate or ""
                return not state or state.startswith("08") or state in _SERVER_GOING_AWAY
        return False

    def _is_version_conflict(self, exc: IntegrityError) -> bool:
        """Only a duplicate (originator_id, originator_version) is a version conflict."""
        cause = exc.__cause__
        recorder = self._app.recorder
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        return isinstance(cause, psycopg.errors.UniqueViolation) and (
            cause.diag.table_name == recorder.events_table_name
        )

    def _settings(self) -> dict[str, Any]:
        url = self.url
        dbname = url.path[1:] if url.path.startswith("/") else url.path
        missing = [
            what
            for what, value in (("user", url.username), ("host", url.host), ("database", dbname))
            if not value
        ]
        if missing or "/" in dbname:
            problem = f"no {' and no '.join(missing)}" if missing else "a malformed database name"
            msg = f"The Postgres store URL {str(url)!r} has {problem}; use e.g. {EXAMPLE_URL!r}."
            raise ConfigurationError(msg)
        return {
            "host": url.host,
            "port": url.port or 5432,
            "dbname": dbname,
            "user": url.username,
            "password": url.password or "",
            "connect_timeout": _whole(url, "connect_timeout", "5"),
            "pool_size": _whole(url, "pool_size", "5"),
        }

    def _factory_env(self) -> dict[str, str]:
        s = self._settings()
        return {
            PostgresFactory.POSTGRES_HOST: s["host"],
            PostgresFactory.POSTGRES_PORT: str(s["port"]),
            PostgresFactory.POSTGRES_DBNAME: s["dbname"],
            PostgresFactory.POSTGRES_USER: s["user"],
            PostgresFactory.POSTGRES_PASSWORD: s["password"],
            PostgresFactory.POSTGRES_CONNECT_TIMEOUT: str(s["connect_timeout"]),
            PostgresFactory.POSTGRES_POOL_SIZE: str(s["pool_size"]),
            PostgresFactory.POSTGRES_MAX_OVERFLOW: "0",
            PostgresFactory.POSTGRES_SCHEMA: self.schema,
            PostgresFactory.POSTGRES_ENABLE_DB_FUNCTIONS: "no",
            READ_ONLY_ENV: "" if self.create else "yes",
        }

    def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        self._probe()
        self._factory = PostgresFactoryWithIndex(env)
        return self._factory

    def _connect(self, *, autocommit: bool = True, **options: Any) -> psycopg.Connection[Any]:
        """A new connection of our own (outside eventsourcing's pool), with libpq
        ``options`` (keepalives...)."""
        s = self._settings()
        return psycopg.connect(
            **options,
            host=s["host"],
            port=s["port"],
            dbname=s["dbname"],
            user=s["user"],
            password=s["password"],
            connect_timeout=s["connect_timeout"],
            autocommit=autocommit,
        )

    def _probe(self) -> None:
        """Connect once, so an unreachable server fails within ``connect_timeout``.

        eventsourcing's pool would otherwise retry for minutes.
        """
        try:
            self._connect().close()
        except psycopg.Error as exc:
            scrub_chain(exc, self.url.password)
            detail = scrub(str(exc).strip() or type(exc).__name__, self.url.password)
            msg = f"Could not connect to the Postgres store {self.url}: {detail}"
            raise StoreError(msg) from exc

    def _open_application(self) -> _JobsApplication:
        try:
            return super()._open_application()
        except BaseException as exc:
            if self._factory is not None:
                self._factory.close()
            if isinstance(exc, DurableJobsError):
                scrub_chain(exc, self.url.password)
            raise


def _whole(url: StoreURL, name: str, default: str) -> int:
    value = url.option(name, default) or ""
    if not value.isdigit() or int(value) < 1:
        msg = f"{name} must be a whole number >= 1, not {value!r}."
        raise ConfigurationError(msg)
    return int(value)
