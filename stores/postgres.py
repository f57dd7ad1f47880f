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

import logging
import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import psycopg
from eventsourcing.persistence import InfrastructureFactory, IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier
from psycopg_pool import PoolTimeout

from durable_jobs.adapters import (
    INDEX_KWARG,
    SNAPSHOTS_KWARG,
    STATEMENTS_KWARG,
    TYPE_VERSIONS_KWARG,
    ConfigurationError,
    CrossProcessLocks,
    DeletesInstances,
    DurableJobsError,
    JobsApplication,
    ListensForAlarms,
    Store,
    StoreError,
    error_chain,
    scrub_chain,
)
from durable_jobs.stores._postgres_commit import EventColumns
from durable_jobs.stores._postgres_conn import (
    _SERVER_GOING_AWAY,
    QUERY_TIMEOUT,
    READ_ONLY_ENV,
    Int8s,
    Uuids,
    _discard_dead,
    advisory_key,
    answered_within,
    application_name,
)
from durable_jobs.stores._postgres_listener import PostgresAlarmListener
from durable_jobs.stores._postgres_locks import MEMBERS_QUERY, LockSession, NoReply
from durable_jobs.stores._postgres_recorder import (
    EVENTS_TABLE,
    FENCE_KWARG,
    INDEX_TABLE,
    LEASE_KWARG,
    SNAPSHOTS_TABLE,
    TABLES,
    NothingSent,
    PostgresApplicationRecorderWithIndex,
    PostgresFactoryWithIndex,
    PostgresSnapshotRecorder,
    alarm_channel,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from durable_jobs.adapters import IndexRow, StoreURL

__all__ = [
    "EVENTS_TABLE",
    "INDEX_TABLE",
    "SNAPSHOTS_TABLE",
    "TABLES",
    "PostgresAlarmListener",
    "PostgresApplicationRecorderWithIndex",
    "PostgresFactoryWithIndex",
    "PostgresSnapshotRecorder",
    "PostgresStore",
    "advisory_key",
    "alarm_channel",
    "schema_of",
    "settings_of",
]

log = logging.getLogger("durable_jobs.store")

#: Advisory-lock queries over an array of keys, one result row per key, in order.
TRY_LOCKS: Final = (
    "SELECT pg_try_advisory_lock(k) FROM unnest(%b::bigint[]) WITH ORDINALITY AS t(k, i) "
    "ORDER BY i"
)
UNLOCKS: Final = (
    "SELECT pg_advisory_unlock(k) FROM unnest(%b::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i"
)
#: Releases (the first array) and takes (the second) in one query: a row per key, the
#: releases' first, each array in order. Which is made first does not matter: a lock
#: released and taken again in one round is held in the end either way (session
#: advisory locks count), and otherwise they are different locks.
UNLOCKS_AND_TRY_LOCKS: Final = (
    "SELECT ok FROM (SELECT 1 AS part, i, pg_advisory_unlock(k) AS ok "
    "FROM unnest(%b::bigint[]) WITH ORDINALITY AS u(k, i) UNION ALL "
    "SELECT 2, i, pg_try_advisory_lock(k) FROM unnest(%b::bigint[]) WITH ORDINALITY AS t(k, i)"
    ") AS calls ORDER BY part, i"
)
#: Advisory keys remembered (computing one hashes its name).
_LOCK_KEYS_KEPT: Final = 100_000
EXAMPLE_URL: Final = "postgresql://user:password@localhost:5432/dbname?schema=jobs"
#: Schema names eventsourcing handles: it looks its composite type up by the
#: unquoted name ``schema.type``, so upper case or punctuation would break it.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Words that cannot start the type name ``schema.type`` unquoted: PostgreSQL's
#: keywords other than the unreserved ones (``pg_get_keywords()`` categories R, T and
#: C, to PostgreSQL 17), and the system schema information_schema.
_KEYWORDS_C: Final = (
    "between bigint bit boolean char character coalesce dec decimal exists extract float "
    "greatest grouping inout int integer interval json json_array json_arrayagg "
    "json_exists json_object json_objectagg json_query json_scalar json_serialize "
    "json_table json_value least merge_action national nchar none normalize nullif "
    "numeric out overlay position precision real row setof smallint substring time "
    "timestamp treat trim values varchar xmlattributes xmlconcat xmlelement xmlexists "
    "xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable"
)
_KEYWORDS_R_T: Final = (
    "all analyse analyze and any array as asc asymmetric authorization binary both case "
    "cast check collate collation column concurrently constraint create cross "
    "current_catalog current_date current_role current_schema current_time "
    "current_timestamp current_user default deferrable desc distinct do else end except "
    "false fetch for foreign freeze from full grant group having ilike in initially inner "
    "intersect into is isnull join lateral leading left like limit localtime "
    "localtimestamp natural not notnull null offset on only or order outer overlaps "
    "placing primary references returning right select session_user similar some "
    "symmetric system_user table tablesample then to trailing true union unique user "
    "using variadic verbose when where window with"
)
_RESERVED_SCHEMA_NAMES: Final = frozenset(
    [*_KEYWORDS_C.split(), *_KEYWORDS_R_T.split(), "information_schema"]
)


#: libpq's TLS settings a store URL may carry, passed to every connection
#: (``?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem``).
TLS_OPTIONS: Final = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
#: libpq's ``sslmode`` values.
SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


#: Turns a role's or database's ``idle_session_timeout`` off for one session (Postgres 14
#: and later; older servers have no such setting, and the statement does nothing).
_NO_IDLE_TIMEOUT = (
    "SELECT set_config('idle_session_timeout', '0', false) "
    "WHERE current_setting('idle_session_timeout', true) IS NOT NULL"
)


class PostgresStore(Store, CrossProcessLocks, ListensForAlarms, DeletesInstances):
    """``postgresql://user:password@host:port/db?schema=NAME`` — shared by many processes."""

    scheme = "postgresql"
    supports_statements = True
    # Snapshots go in the commit's transaction: no transaction (and round trips) of their own.
    snapshots_in_commit = True
    _snapshots_table_set = False
    url_options = frozenset(
        {
            "schema",
            "connect_timeout",
            "query_timeout",
            "pool_size",
            "target_session_attrs",
            *TLS_OPTIONS,
        }
    )
    shared = True

    _factory: PostgresFactoryWithIndex | None = None

    @property
    def schema(self) -> str:
        """The schema holding this store's tables."""
        return schema_of(self.url)

    @classmethod
    def check_url(cls, url: StoreURL) -> None:
        """Its options, then the settings and the schema name read from it."""
        super().check_url(url)
        settings_of(url)
        schema_of(url)

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

    #: Keyed by the uuid's number (hashed in C; the tuple is not tracked by the GC).
    _lock_keys: dict[tuple[int, str], int] | None = None

    def _lock_key(self, uuid: UUID, scope: str) -> int:
        return advisory_key(f"{self.schema}:{scope}:{uuid}")

    def _keyed(self, keys: Sequence[tuple[UUID, str]]) -> list[tuple[UUID, str, int]]:
        # The keys of the instances taken lately (each run takes and releases its own).
        cache = self._lock_keys
        if cache is None:
            cache = self._lock_keys = {}
        keyed = []
        for uuid, scope in keys:
            key = cache.get((uuid.int, scope))
            if key is None:
                if len(cache) >= _LOCK_KEYS_KEPT:
                    cache.clear()
                key = cache[(uuid.int, scope)] = self._lock_key(uuid, scope)
            keyed.append((uuid, scope, key))
        return keyed

    _index_rows_sql: str | None = None

    def lock_round(
        self,
        release: Sequence[tuple[UUID, str]],
        take: Sequence[tuple[UUID, str]],
        *,
        members: bool = False,
        join: bool = False,
    ) -> tuple[list[bool], dict[UUID, tuple[Any, ...]], list[int] | None, int]:
        """Release ``release``, take ``take`` without waiting, read the index rows of the
        instances taken (after taking them) and, with ``members``, the member ids of the
        workers serving this schema: one call, in the lock session.

        Returns whether each of ``take`` was taken, the (version, kind, job,
        instance_id) of each of their instances that has an index row, the member
        ids (None unless asked) and this process's (0: none; ``join`` makes it one).
        Releases never fail (a session that fails is closed, which releases its locks).
        """
        locks = self._locks
        if join:
            locks.join(self._namespace)
        queries: list[tuple[str, Sequence[Any]]] = []
        ours = locks.forget(self._keyed(release)) if release else []
        keyed = self._keyed(take) if take else []
        uuids: list[UUID] = []
        if keyed:
            # One query for the releases and the takes; the rows in one of their own,
            # after it (a query sees what was committed before it began).
            queries.append((UNLOCKS_AND_TRY_LOCKS, (Int8s(ours), Int8s([k for _, _, k in keyed]))))
            # Each instance once (keyed by number: a UUID's hash is a Python call).
            uuids = list({u.int: u for u, _ in take}.values())
            queries.append((self._rows_sql(), (Uuids(uuids),)))
        elif ours:
            queries.append((UNLOCKS, (Int8s(ours),)))
        if members:
            queries.append((MEMBERS_QUERY, (self._namespace,)))
        if not queries:
            return [], {}, None, locks.member
        try:
            results, mark = locks.queries(queries)
        except StoreError:
            if keyed or members:
                raise
            return [], {}, None, locks.member  # released with the closed session
        found = results[-1] if members else None
        taken: list[bool] = []
        rows: dict[UUID, tuple[Any, ...]] = {}
        if keyed:
            taken = locks.taken(keyed, results[0][len(ours) :], mark)
            # Each row names its instance by its place in ``uuids`` (no UUID to parse).
            rows = {uuids[row[0] - 1]: (int(row[1]), *row[2:]) for row in results[1]}
        return taken, rows, None if found is None else [r[0] for r in found], locks.member

    @property
    def _namespace(self) -> int:
        """The 31-bit number naming this schema's workers (see :meth:`lock_round`)."""
        return advisory_key(f"workers:{self.schema}") & 0x7FFFFFFF

    def _rows_sql(self) -> str:
        query = self._index_rows_sql
        if query is None:
            query = self._index_rows_sql = (
                SQL(
                    "SELECT t.i, x.version, x.kind, x.job, x.instance_id "
                    "FROM unnest(%b::uuid[]) WITH ORDINALITY AS t(u, i) "
                    "JOIN {}.{} AS x ON x.instance_uuid = t.u"
                )
                .format(Identifier(self.schema), Identifier(INDEX_TABLE))
                .as_string()
            )
        return query

    def index_versions(self, uuids: Sequence[UUID]) -> dict[UUID, int]:
        """Read in the lock session (right after taking locks, never from the pool)."""
        asked = list(uuids)
        rows, _ = self._locks.query(self._rows_sql(), (Uuids(asked),))
        return {asked[row[0] - 1]: int(row[1]) for row in rows}

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
        # Asked on every run: no session opened (nor object made) for the question.
        locks = self._lock_session
        return None if locks is None else locks.session_of(uuid, scope)

    def session_alive(self, session: int) -> bool:
        locks = self._lock_session
        return locks is not None and locks.is_live(session)

    def _put(
        self,
        events: Sequence[Any],
        rows: Sequence[IndexRow],
        versions: Sequence[tuple[str, str, int]] = (),
        statements: Sequence[tuple[UUID, Sequence[Any]]] = (),
        snapshots: Sequence[StoredEvent] = (),
    ) -> None:
        """Write in one transaction that first checks the locks held on these instances
        are still held by the sessions that took them (else :class:`LockLost`)."""
        if snapshots and not self._snapshots_table_set:
            recorder = self._app.recorder
            assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
            snapshots_recorder = self._app.snapshots and self._app.snapshots.recorder
            assert isinstance(snapshots_recorder, PostgresSnapshotRecorder)
            recorder.use_snapshots_table(snapshots_recorder.events_table_name)
            self._snapshots_table_set = True
        fence = self._locks.fence([r.instance_uuid for r in rows]) if self._lock_session else []
        if not fence:
            super()._put(events, rows, versions, statements, snapshots)
            return
        kwargs: dict[str, Any] = {
            INDEX_KWARG: rows,
            TYPE_VERSIONS_KWARG: versions,
            STATEMENTS_KWARG: statements,
            FENCE_KWARG: fence,
            LEASE_KWARG: self._locks.lease,
        }
        if snapshots:
            kwargs[SNAPSHOTS_KWARG] = snapshots
        self._write(lambda: self._insert_stored(events, kwargs), rows)

    def _insert_stored(self, events: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """The events' rows as columns (no ``StoredEvent`` objects), without their
        notification ids; a recorder that changes how events are inserted (a
        subclass's hooks) is given them the stock way."""
        recorder = self._app.recorder
        if not _own_inserts(type(recorder)):
            super()._insert_stored(events, kwargs)
            return
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        encode = self._event_encoder
        ids: list[UUID] = []
        versions: list[int] = []
        topics: list[str] = []
        states: list[bytes] = []
        for e in events:
            ids.append(e.originator_id)
            versions.append(e.originator_version)
            topic, state = encode(e)
            topics.append(topic)
            states.append(state)
        recorder.write_columns(EventColumns(ids, versions, topics, states), **kwargs)

    def open_alarm_listener(self) -> PostgresAlarmListener:
        """LISTEN for other processes' alarms (see :class:`PostgresAlarmListener`)."""
        recorder = self._app.recorder
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        if not recorder.notify_token:
            recorder.notify_token = secrets.token_hex(8)
        with self._errors(f"Could not listen for alarms on {self.url}"):
            conn = self._connect(autocommit=True, application_name=application_name("listener"))
            # It only waits for notifications: a role's idle_session_timeout would end
            # it every few seconds (and it was opened again, logged each time).
            conn.execute(_NO_IDLE_TIMEOUT)
            conn.execute(SQL("LISTEN {}").format(Identifier(recorder.alarm_channel)))
        return PostgresAlarmListener(conn, recorder.notify_token, self._describe)

    def delete_instance_rows(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        """Purge support (:class:`~durable_jobs.adapters.DeletesInstances`): one transaction."""
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
        for e in error_chain(exc):
            if isinstance(e, PoolTimeout | psycopg.InterfaceError | NoReply):
                return True
            if isinstance(e, psycopg.OperationalError):
                state = e.sqlstate or ""
                return not state or state.startswith("08") or state in _SERVER_GOING_AWAY
        return False

    def _outcome_unknown(self, exc: Exception) -> bool:
        """A write that never reached the server (see :class:`NothingSent`) did not
        commit; any other lost connection may have (network review: "may or may not
        have been committed" when no connection had come)."""
        return not isinstance(exc, NothingSent) and super()._outcome_unknown(exc)

    def _is_version_conflict(self, exc: IntegrityError) -> bool:
        """Only a duplicate (originator_id, originator_version) is a version conflict."""
        cause = exc.__cause__
        recorder = self._app.recorder
        assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
        return isinstance(cause, psycopg.errors.UniqueViolation) and (
            cause.diag.table_name == recorder.events_table_name
        )

    def _settings(self) -> dict[str, Any]:
        return settings_of(self.url)

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
        s = self._settings()
        attrs = s["target_session_attrs"]
        pool_kwargs = self._factory.datastore.pool.kwargs
        if isinstance(pool_kwargs, dict):
            # Not eventsourcing settings: every pooled connection asks for them (the
            # pool is not open yet, so none was made without them).
            if attrs is not None:
                pool_kwargs["target_session_attrs"] = attrs
            pool_kwargs.update(s["tls"])
            pool_kwargs["application_name"] = application_name("pool")
        # Every pooled connection waits for an answer at most query_timeout.
        self._factory.datastore.pool.connection_class = answered_within(s["query_timeout"])
        return self._factory

    def _connect(self, *, autocommit: bool = True, **options: Any) -> psycopg.Connection[Any]:
        """A new connection of our own (outside eventsourcing's pool), with libpq
        ``options`` (keepalives...)."""
        s = self._settings()
        options.setdefault("application_name", application_name("probe"))
        return answered_within(s["query_timeout"]).connect(
            **options,
            host=s["host"],
            port=s["port"],
            dbname=s["dbname"],
            user=s["user"],
            password=s["password"],
            connect_timeout=s["connect_timeout"],
            autocommit=autocommit,
            **(
                {"target_session_attrs": s["target_session_attrs"]}
                if s["target_session_attrs"]
                else {}
            ),
            **s["tls"],
        )

    def _probe(self) -> None:
        """Connect once, so an unreachable server fails within ``connect_timeout``.

        eventsourcing's pool would otherwise retry for minutes.
        """
        with self._errors(f"Could not connect to the Postgres store {self.url}"):
            self._connect().close()

    def _open_application(self) -> JobsApplication:
        try:
            return super()._open_application()
        except BaseException as exc:
            if self._factory is not None:
                self._factory.close()
            if isinstance(exc, DurableJobsError):
                scrub_chain(exc, self.url.password)
            raise


def schema_of(url: StoreURL) -> str:
    """The schema named by ``url`` (``public`` by default); ConfigurationError for a name
    the store cannot use."""
    schema = url.option("schema", "public") or ""
    if not _SCHEMA_NAME.fullmatch(schema):
        msg = (
            f"Invalid schema {schema!r} in store URL {str(url)!r}: use 1-63 "
            "lower-case letters, digits and '_', not starting with a digit."
        )
        raise ConfigurationError(msg)
    if schema in _RESERVED_SCHEMA_NAMES or schema.startswith("pg_"):
        msg = (
            f"Invalid schema {schema!r} in store URL {str(url)!r}: an SQL keyword "
            "(other than the unreserved ones), information_schema or a name starting "
            "with 'pg_' (reserved for system schemas) cannot hold the jobs tables; "
            "pick another name, e.g. 'jobs'."
        )
        raise ConfigurationError(msg)
    return schema


def settings_of(url: StoreURL) -> dict[str, Any]:
    """The connection settings of ``url`` (ConfigurationError for a value it cannot take):
    libpq's host(s), port(s) and ``target_session_attrs``, ``dbname``, ``user``,
    ``password``, ``connect_timeout``, ``pool_size``, ``query_timeout`` and ``tls``."""
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
        **libpq_hosts(url),
        "dbname": dbname,
        "user": url.username,
        "password": url.password or "",
        "connect_timeout": _whole(url, "connect_timeout", "5"),
        "pool_size": _whole(url, "pool_size", "5"),
        "query_timeout": _whole(url, "query_timeout", str(QUERY_TIMEOUT)),
        "tls": libpq_tls(url),
    }


def _own_inserts(cls: type[Any]) -> bool:
    """Whether recorder class ``cls`` inserts events as this module's recorder does
    (then :meth:`PostgresStore._insert_stored` writes the rows as columns)."""
    ours = PostgresApplicationRecorderWithIndex
    return (
        cls.insert_events is ours.insert_events
        and cls._insert_events is ours._insert_events
        and cls._insert_stored_events is ours._insert_stored_events
    )


#: libpq's ``target_session_attrs`` values.
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")


def libpq_hosts(url: StoreURL) -> dict[str, Any]:
    """libpq's ``host``, ``port`` and ``target_session_attrs`` for ``url``.

    A multi-host URL (``postgresql://u@db1:5432,db2:5432/jobs``) gives libpq
    every host in order, with a port each (5432 where none is given); libpq
    connects to the first that answers and, with ``?target_session_attrs=``,
    has the session it asks for (``read-write``: the primary).
    """
    attrs = url.option("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        msg = f"target_session_attrs must be one of {', '.join(SESSION_ATTRS)}, not {attrs!r}."
        raise ConfigurationError(msg)
    if url.hosts:
        host = ",".join(h for h, _ in url.hosts)
        port: str | int = ",".join(str(p or 5432) for _, p in url.hosts)
    else:
        host, port = url.host or "", url.port or 5432
    return {"host": host, "port": port, "target_session_attrs": attrs}


def libpq_tls(url: StoreURL) -> dict[str, str]:
    """The TLS settings of ``url`` (only those it sets), for libpq.

    Unset ones are libpq's: its defaults, or ``PGSSLMODE``, ``PGSSLROOTCERT``...
    from the environment. The files are read by libpq, which names a missing one.
    """
    tls = {name: value for name in TLS_OPTIONS if (value := url.option(name)) is not None}
    mode = tls.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        msg = f"sslmode must be one of {', '.join(SSL_MODES)}, not {mode[:40]!r}."
        raise ConfigurationError(msg)
    for name, value in tls.items():
        if not value or "\0" in value:
            msg = f"{name} in the store URL must be a non-empty value, not {value[:40]!r}."
            raise ConfigurationError(msg)
    return tls


def _whole(url: StoreURL, name: str, default: str) -> int:
    value = url.option(name, default) or ""
    if not value.isdigit() or int(value) < 1:
        msg = f"{name} must be a whole number >= 1, not {value!r}."
        raise ConfigurationError(msg)
    return int(value)
