"""Postgres connections for the store: reaching the server, retries, and the schema.

eventsourcing's pool retries a call 10 times, each waiting for a connection: a
call on a server that is down took about a minute to fail. The helpers here try
3 times and only after a connection turned out dead (see :func:`retry_reads`).
:class:`SchemaOnce` creates the tables only when they are missing, one process
at a time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
import os
import socket
import struct
import time
import weakref
from collections.abc import Callable
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

import psycopg
import psycopg.adapt
import psycopg.postgres
import psycopg.pq
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg.sql import SQL, Identifier
from psycopg_pool import PoolTimeout

from durable_jobs.adapters import ConfigurationError, error_chain

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from psycopg import Cursor
    from psycopg.rows import DictRow

_F = TypeVar("_F", bound=Callable[..., Any])

#: Default of the store URL's ``query_timeout`` (seconds).
QUERY_TIMEOUT: Final = 15


class _AnsweredInTime(psycopg.Connection[Any]):
    """A connection whose every wait for the server ends after :attr:`query_timeout`.

    A server that stops answering without closing the connection (all its
    processes frozen, a paused VM, a partition that keeps the TCP connection
    open) would otherwise keep a call waiting until it answers again: the
    kernel acknowledges what is sent, so neither TCP keepalives nor
    ``connect_timeout`` end the wait. After ``query_timeout`` seconds without
    an answer the connection is closed and the call fails as on a lost
    connection (``OperationalError``): a commit's outcome is then unknown, as
    after any connection lost during a commit.
    """

    query_timeout: ClassVar[float] = QUERY_TIMEOUT

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # psycopg's own bounded waits (a cancel, say)
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.query_timeout)
        except psycopg.errors._WaitTimeout:  # psycopg raises it when wait() times out
            self.pgconn.finish()  # the query is still running there: this session is done
            msg = (
                f"no answer from the Postgres server within query_timeout="
                f"{self.query_timeout:g}s (frozen, overloaded or cut off); the connection "
                "was closed"
            )
            raise psycopg.OperationalError(msg) from None


@functools.cache
def answered_within(seconds: float) -> type[psycopg.Connection[Any]]:
    """The connection class whose waits for the server end after ``seconds``."""
    return type("AnsweredInTime", (_AnsweredInTime,), {"query_timeout": seconds})


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
        # Weakly: a value of the weak-keyed map that held its key kept every datastore
        # ever opened alive, with its closed pool (an Inspector or open_jobs per
        # request leaked about 30 KB each).
        self._datastore = weakref.ref(datastore)
        self.down = False

    @property
    def datastore(self) -> PostgresDatastore:
        datastore = self._datastore()
        if datastore is None:  # pragma: no cover - callers hold it
            msg = "the store was closed"
            raise OperationalError(msg)
        return datastore

    @classmethod
    def of(cls, datastore: PostgresDatastore) -> _Reach:
        reach = cls._all.get(datastore)
        if reach is None:
            reach = cls._all[datastore] = cls(datastore)
        return reach

    def failed(self, exc: BaseException) -> None:
        if _waited_in_vain(exc) or any(
            isinstance(e, psycopg.OperationalError) and not e.sqlstate for e in error_chain(exc)
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
    return any(isinstance(e, PoolTimeout) for e in error_chain(exc))


def _connect_beside(datastore: PostgresDatastore) -> psycopg.Connection[Any]:
    """A new autocommit connection with the pool's settings, outside the pool."""
    pool = datastore.pool
    kwargs = pool.kwargs() if callable(pool.kwargs) else (pool.kwargs or {})
    params = {k: v for k, v in kwargs.items() if k != "row_factory"}
    connection_class = cast("type[psycopg.Connection[Any]]", pool.connection_class)
    return connection_class.connect(
        **params, autocommit=True, connect_timeout=max(1, int(pool.timeout))
    )


def _discard_dead(datastore: PostgresDatastore) -> None:
    """Test the pool's idle connections, replacing the dead ones (quick: a server that
    closed them answers at once)."""
    with contextlib.suppress(Exception):
        datastore.pool.check()


# Upstream's methods without their 10-attempt retry decorators (functools.wraps keeps them).
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

    def _lacking(self, curs: Cursor[DictRow]) -> tuple[bool, bool]:
        """Whether the schema lacks any of this recorder's tables and indexes, and
        whether it lacks any of its types."""
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
        return relations < len(set(self._relations())), types < len(set(self._types()))

    def create_table(self) -> None:
        with self.datastore.transaction(commit=False) as curs:
            missing = any(self._lacking(curs))
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
                        self._create_all()
                    except (IntegrityError, OperationalError) as exc:
                        if attempt == _DDL_TRIES - 1 or not _worth_retrying(exc):
                            raise
                        time.sleep(0.1 * (attempt + 1))
                    else:
                        return
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _create_all(self) -> None:
        """eventsourcing's ``create_table``, without a ``CREATE TYPE`` of a type the
        schema has: the events and the snapshots recorders declare the same one, and
        the second ``CREATE TYPE`` failed on the server (eventsourcing suppresses the
        error, but the server logs it: an ERROR line in every new store's first open,
        which operators alert on)."""
        types = [st for st in self.sql_create_statements if "CREATE TYPE" in st.as_string()]
        if types and self._types_missing():
            for statement in types:
                with (
                    self.datastore.transaction(commit=True) as curs,
                    # Another process's, between the look and this (no IF NOT EXISTS).
                    contextlib.suppress(psycopg.errors.DuplicateObject),
                ):
                    curs.execute(statement, prepare=False)
        with self.datastore.transaction(commit=True) as curs:
            self._create_table(curs)
        self.datastore.register_type_adapters()

    def _types_missing(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            return self._lacking(curs)[1]

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
#: admin_shutdown, crash_shutdown, cannot_connect_now (starting or stopping), and
#: idle_session_timeout (a session the server ended for want of a ping: the lock
#: session of a worker cut off from it for its lease).
_SERVER_GOING_AWAY: Final = frozenset({"57P01", "57P02", "57P03", "57P05"})
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


def advisory_key(name: str) -> int:
    """The 64-bit key of the advisory lock called ``name`` (signed, as Postgres wants)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"dj-advisory-lk").digest()
    return int.from_bytes(digest, "big", signed=True)


# ---- arrays sent in binary without a Python call per element ---------------------------
#
# psycopg dumps a list parameter element by element in Python (a dumper call, a
# length, two appends each): the commit's and the lock calls' arrays cost more
# than the rest of their Python. These wrappers are dumped by the C iteration of
# ``map`` and ``bytes.join``, to the same binary array psycopg sends (one
# dimension, lower bound 1), typed: the statements cast them as before.

_pack_len = struct.Struct(">i").pack
_pack_head = struct.Struct(">iiIii").pack
_pack_empty = struct.Struct(">iiI").pack
_pack_int8 = struct.Struct(">iq").pack
_pack_float8 = struct.Struct(">id").pack
_pack_uuid = struct.Struct(">i16s").pack
_NULL: Final = _pack_len(-1)
_uuid_int = operator.attrgetter("int")
_to_bytes: Callable[[int, int, str], bytes] = int.to_bytes  # type: ignore[assignment]


class BinaryArray:
    """A list parameter sent as one binary array of :attr:`element` values (None is
    NULL)."""

    __slots__ = ("values",)
    #: The Postgres type of the elements.
    element: ClassVar[str] = ""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.values)!r})"


class Int8s(BinaryArray):
    __slots__ = ()
    element = "int8"


class Float8s(BinaryArray):
    __slots__ = ()
    element = "float8"


class Uuids(BinaryArray):
    __slots__ = ()
    element = "uuid"


class Texts(BinaryArray):
    __slots__ = ()
    element = "text"


class Byteas(BinaryArray):
    __slots__ = ()
    element = "bytea"


class _ArrayDumper(psycopg.adapt.Dumper):
    format = psycopg.pq.Format.BINARY
    element_oid: ClassVar[int] = 0

    def dump(self, obj: BinaryArray) -> bytes:
        values = obj.values
        n = len(values)
        if not n:
            return _pack_empty(0, 0, self.element_oid)
        # By identity (``None in values`` would call a UUID's Python ``__eq__`` each).
        if any(map(operator.is_, values, repeat(None, n))):
            one = self._one
            body = b"".join(_NULL if v is None else one(v) for v in values)
            return _pack_head(1, 1, self.element_oid, n, 1) + body
        return _pack_head(1, 0, self.element_oid, n, 1) + self._body(values, n)

    def _body(self, values: Sequence[Any], n: int) -> bytes:
        raise NotImplementedError  # pragma: no cover

    def _one(self, value: Any) -> bytes:
        return self._body([value], 1)


class _Int8sDumper(_ArrayDumper):
    def _body(self, values: Sequence[Any], n: int) -> bytes:
        return b"".join(map(_pack_int8, repeat(8, n), values))


class _Float8sDumper(_ArrayDumper):
    def _body(self, values: Sequence[Any], n: int) -> bytes:
        return b"".join(map(_pack_float8, repeat(8, n), values))


class _UuidsDumper(_ArrayDumper):
    def _body(self, values: Sequence[Any], n: int) -> bytes:
        raw = map(_to_bytes, map(_uuid_int, values), repeat(16, n), repeat("big", n))
        return b"".join(map(_pack_uuid, repeat(16, n), raw))


class _ByteasDumper(_ArrayDumper):
    def _body(self, values: Sequence[Any], n: int) -> bytes:
        return _join_sized(values)


class _TextsDumper(_ArrayDumper):
    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        # As psycopg's text dumper: the connection's encoding (SQL_ASCII: UTF-8).
        conn = self.connection
        encoding = conn.info.encoding if conn is not None else "utf-8"
        self._encoding = encoding if encoding != "ascii" else "utf-8"

    def _body(self, values: Sequence[Any], n: int) -> bytes:
        return _join_sized(list(map(str.encode, values, repeat(self._encoding, n))))


def _join_sized(items: Sequence[Any]) -> bytes:
    """Each of ``items`` (bytes-like) after its length."""
    return b"".join(chain.from_iterable(zip(map(_pack_len, map(len, items)), items, strict=True)))


for _wrapper, _dumper in (
    (Int8s, _Int8sDumper),
    (Float8s, _Float8sDumper),
    (Uuids, _UuidsDumper),
    (Texts, _TextsDumper),
    (Byteas, _ByteasDumper),
):
    _info = psycopg.postgres.types[_wrapper.element]
    _dumper.element_oid = _info.oid
    _dumper.oid = _info.array_oid
    # Every connection made from now on (the pool's and the lock session's).
    psycopg.adapters.register_dumper(_wrapper, _dumper)


def application_name(role: str) -> str:
    """The ``application_name`` of this process's connections of ``role`` (``pool``,
    ``locks``, ``listener``, ``probe``), as ``pg_stat_activity`` shows it: which
    worker (host and pid) and which of its connections a backend serves."""
    return f"durable-jobs {role} {socket.gethostname()[:24]}:{os.getpid()}"
