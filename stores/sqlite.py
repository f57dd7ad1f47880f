"""``sqlite:///path.db``: the embedded default store (one process, WAL, durable commits).

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; option
``?synchronous=full`` (default: a committed run survives power loss) or
``?synchronous=normal`` (faster; in WAL mode a power loss can drop the last
commits, never corrupt the file); ``?lock_timeout=SECONDS`` (default 5).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import resource
import sqlite3
import threading
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
)
from eventsourcing.utils import Environment

from durable_jobs.adapters import (
    INDEX_COLUMNS,
    ConfigurationError,
    IndexRow,
    InstanceIndex,
    JobsApplication,
    StatementFailed,
    Store,
    StoreError,
    error_chain,
    index_rows_from,
    rows_from,
    snapshots_from,
    statements_from,
    to_epoch,
    type_versions_from,
)

if TYPE_CHECKING:
    from durable_jobs.adapters import StoreURL

__all__ = [
    "TABLES",
    "SQLiteApplicationRecorderWithIndex",
    "SQLiteStore",
    "path_of",
    "room_problem",
]

log = logging.getLogger("durable_jobs.store")

# Statements built from constants only; every value is a bound parameter.
INDEX_TABLE = "dj_instances"
TYPE_VERSIONS_TABLE = "dj_type_versions"
_INSERT_TYPE_VERSION = (
    f"INSERT OR IGNORE INTO {TYPE_VERSIONS_TABLE} (kind, job, version) VALUES (?,?,?)"  # noqa: S608
)
#: Where eventsourcing's recorders keep the events, and the snapshots, in the same file.
EVENTS_TABLE = "stored_events"
SNAPSHOTS_TABLE = "stored_snapshots"
# A snapshot at a version already there holds the same state: keep the row there.
_INSERT_SNAPSHOT = f"INSERT OR IGNORE INTO {SNAPSHOTS_TABLE} VALUES (?,?,?,?)"  # noqa: S608
# An instance reads only its latest snapshot: the older ones would only take room.
_DROP_OLDER_SNAPSHOTS = (
    f"DELETE FROM {SNAPSHOTS_TABLE} WHERE originator_id = ? AND originator_version < ?"  # noqa: S608
)
_SELECT = f"SELECT {INDEX_COLUMNS} FROM {INDEX_TABLE} "  # noqa: S608
_UPSERT = (
    f"INSERT INTO {INDEX_TABLE} ({INDEX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?) "  # noqa: S608
    "ON CONFLICT (instance_uuid) DO UPDATE SET status=excluded.status, "
    "due_at=excluded.due_at, version=excluded.version, updated_at=excluded.updated_at "
    f"WHERE excluded.version > {INDEX_TABLE}.version"
)


def _hex(uuid: UUID | str) -> str:
    """How eventsourcing's SQLite recorders store an originator id."""
    return uuid.hex if isinstance(uuid, UUID) else uuid


class SQLiteApplicationRecorderWithIndex(SQLiteApplicationRecorder, InstanceIndex):
    """eventsourcing's SQLite recorder that also keeps the instance index.

    The index rows are written by :meth:`_insert_events`, which upstream runs
    inside the insert transaction right after the events: both commit or
    neither does.
    """

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {INDEX_TABLE} ("
            "instance_uuid TEXT PRIMARY KEY, kind TEXT NOT NULL, job TEXT NOT NULL, "
            "instance_id TEXT NOT NULL, status TEXT NOT NULL, due_at REAL, "
            "version INTEGER NOT NULL, updated_at REAL NOT NULL, "
            "UNIQUE (kind, job, instance_id)) WITHOUT ROWID",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_due_at "
            f"ON {INDEX_TABLE} (due_at, instance_uuid) WHERE due_at IS NOT NULL",
            # Every job type version above 1 ever written (see select_type_versions).
            f"CREATE TABLE IF NOT EXISTS {TYPE_VERSIONS_TABLE} ("
            "kind TEXT NOT NULL, job TEXT NOT NULL, version INTEGER NOT NULL, "
            "PRIMARY KEY (kind, job, version)) WITHOUT ROWID",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        self._write_rest(c.sqlite_cursor, kwargs)
        return ids

    def write_rows(
        self, rows: Sequence[tuple[str, int, str, bytes | bytearray]], **kwargs: Any
    ) -> None:
        """:meth:`insert_events` of the event rows' column values ``(originator id hex,
        version, topic, state)``, without notification ids (the store's saves do not
        read them): the events in one ``executemany``, not a statement and a
        ``lastrowid`` each. Same transaction, same errors."""
        with self.datastore.transaction(commit=True) as c:
            cursor = c.sqlite_cursor
            cursor.executemany(self.insert_events_statement, rows)
            self._write_rest(cursor, kwargs)

    def _write_rest(self, cursor: sqlite3.Cursor, kwargs: dict[str, Any]) -> None:
        """What a save writes after its events, in their transaction: index rows, type
        versions, snapshots, the runs' statements; then the fault hook."""
        rows = index_rows_from(kwargs)
        if rows:
            cursor.executemany(_UPSERT, [r.as_params() for r in rows])
        versions = type_versions_from(kwargs)
        if versions:
            cursor.executemany(_INSERT_TYPE_VERSION, list(versions))
        snapshots = snapshots_from(kwargs)
        if snapshots:
            cursor.executemany(
                _INSERT_SNAPSHOT,
                [
                    (_hex(s.originator_id), s.originator_version, s.topic, s.state)
                    for s in snapshots
                ],
            )
            cursor.executemany(
                _DROP_OLDER_SNAPSHOTS,
                [(_hex(s.originator_id), s.originator_version) for s in snapshots],
            )
        statements = statements_from(kwargs)
        if statements:
            self._run_statements(cursor, statements)
        self._run_fault_hook()

    def _run_statements(
        self, cursor: sqlite3.Cursor, statements: Sequence[tuple[UUID, Sequence[Any]]]
    ) -> None:
        """Run the runs' ``ctx.execute`` statements, in order, in the commit's transaction.

        SQLite itself refuses transaction control in them (``COMMIT``, ``SAVEPOINT``,
        ``ATTACH``...) through an authorizer, whatever text got past ``ctx.execute``'s
        check: such a statement fails its run (``not authorized``) instead of
        committing part of the transaction."""
        _in_statements.active = True
        try:
            for uuid, run_statements in statements:
                for index, st in enumerate(run_statements):
                    try:
                        cursor.execute(st.sql, () if st.params is None else st.params)
                    except (sqlite3.Error, OverflowError, ValueError) as exc:
                        # OverflowError, ValueError (UnicodeEncodeError): a parameter the
                        # driver cannot bind (an int over 64 bits, a lone surrogate) fails
                        # the run, as the same parameter does on Postgres.
                        raise StatementFailed(uuid, exc, statement=index) from exc
        finally:
            _in_statements.active = False

    def select_unindexed(self, limit: int) -> list[tuple[UUID, int]]:
        with self.datastore.transaction(commit=False) as c:
            events = self.events_table_name
            c.execute(
                "SELECT e.originator_id, max(e.originator_version) "  # noqa: S608
                f'FROM "{events}" e LEFT JOIN {INDEX_TABLE} i '
                "ON i.instance_uuid = e.originator_id WHERE i.instance_uuid IS NULL "
                "GROUP BY e.originator_id LIMIT ?",
                (limit,),
            )
            return [(UUID(str(r[0])), int(r[1])) for r in c.fetchall()]

    def select_type_versions(self) -> list[tuple[str, str, int]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT kind, job, version FROM {TYPE_VERSIONS_TABLE}")  # noqa: S608
            return [(str(r[0]), str(r[1]), int(r[2])) for r in c.fetchall()]

    def delete_instance(
        self, instance_uuid: UUID, version: int, snapshots_table: str | None
    ) -> tuple[int, int] | None:
        """Delete one terminated instance's rows in one transaction (see
        :meth:`Store.delete_instance`); None, and nothing deleted, if its index
        row is not ``terminated`` at ``version``."""
        key = instance_uuid.hex
        with self.datastore.transaction(commit=True) as c:
            cur = c.sqlite_cursor
            cur.execute(
                f"DELETE FROM {INDEX_TABLE} WHERE instance_uuid = ? AND version = ? "  # noqa: S608
                "AND status = 'terminated'",
                (key, version),
            )
            if cur.rowcount != 1:
                return None  # nothing changed: the transaction ends without writes
            cur.execute(
                f'DELETE FROM "{self.events_table_name}" WHERE originator_id = ?',  # noqa: S608
                (key,),
            )
            events = cur.rowcount
            snapshots = 0
            if snapshots_table is not None:
                cur.execute(
                    f'DELETE FROM "{snapshots_table}" WHERE originator_id = ?',  # noqa: S608
                    (key,),
                )
                snapshots = cur.rowcount
            return events, snapshots

    def _rows(self, sql: str, params: Sequence[Any]) -> list[IndexRow]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples, not sqlite3.Row objects to convert
            cursor.execute(sql, params)
            return rows_from(cursor.fetchall())

    def due_alarms(self, before: datetime, limit: int) -> list[IndexRow]:
        return self._rows(
            _SELECT + "WHERE due_at IS NOT NULL AND due_at <= ? "
            "ORDER BY due_at, instance_uuid LIMIT ?",
            (to_epoch(before), limit),
        )

    def next_alarms(self, limit: int, after: datetime | None = None) -> list[IndexRow]:
        if after is None:
            return self._rows(
                _SELECT + "WHERE due_at IS NOT NULL ORDER BY due_at, instance_uuid LIMIT ?",
                (limit,),
            )
        return self._rows(
            _SELECT + "WHERE due_at IS NOT NULL AND due_at > ? "
            "ORDER BY due_at, instance_uuid LIMIT ?",
            (to_epoch(after), limit),
        )

    def next_alarms_of(self, jobs: Collection[tuple[str, str]], limit: int) -> list[IndexRow]:
        pairs = sorted(set(jobs))
        if not pairs:
            return []
        marks = ",".join(["(?,?)"] * len(pairs))
        return self._rows(
            _SELECT + f"WHERE due_at IS NOT NULL AND (kind, job) IN (VALUES {marks}) "
            "ORDER BY due_at, instance_uuid LIMIT ?",
            (*(value for pair in pairs for value in pair), limit),
        )

    def index_row(self, instance_uuid: UUID) -> IndexRow | None:
        rows = self._rows(_SELECT + "WHERE instance_uuid = ?", (instance_uuid.hex,))
        return rows[0] if rows else None

    def indexed(self, uuids: Sequence[UUID]) -> set[UUID]:
        """Which of ``uuids`` have an index row (one query)."""
        marks = ",".join("?" * len(uuids))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT instance_uuid FROM {INDEX_TABLE} WHERE instance_uuid IN ({marks})",  # noqa: S608
                [u.hex for u in uuids],
            )
            return {UUID(r[0]) for r in c.fetchall()}

    def select_index(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[IndexRow]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("job", job), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("(kind, job, instance_id) > (?, ?, ?)")
            params.extend(after)
        sql = _SELECT + (f"WHERE {' AND '.join(where)} " if where else "")
        return self._rows(sql + "ORDER BY kind, job, instance_id LIMIT ?", (*params, limit))


#: The size an -wal file is cut back to when it is next reset (SQLite's
#: ``journal_size_limit``); it checkpoints at 1,000 pages (4 MB) as it goes.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
#: Database files (and so their -wal and -shm files) and lock files: owner only.
_FILE_MODE = 0o600
#: The tables a durable-jobs SQLite file holds (what ``durable-jobs doctor`` looks for).
TABLES = (EVENTS_TABLE, SNAPSHOTS_TABLE, INDEX_TABLE, TYPE_VERSIONS_TABLE)
_OUR_TABLES = frozenset(TABLES)
#: SQLite primary result codes after which a write did not commit: BUSY, LOCKED,
#: READONLY (refused before anything was written), FULL.
_NOT_COMMITTED = frozenset({5, 6, 8, 13})


class _NotServed(Exception):
    """The cause of the StoreError of a runtime whose file is gone, or served by another
    runtime (see ``SQLiteStore._still_served``): how :meth:`SQLiteStore.unreachable`
    knows it."""


#: The runtime lock file of a database file is its real path and this.
_LOCK_SUFFIX = ".runtime-lock"


def _flocked(name: str) -> IO[bytes] | None:
    """The file ``name`` (made, owner only, if missing) opened and exclusively
    ``flock``-ed, or None if another open file holds that lock. Opening it may raise
    ``OSError``."""
    lock = os.fdopen(os.open(name, os.O_RDWR | os.O_CREAT, _FILE_MODE), "a+b")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return lock


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


#: SQLite's files beside a database file ``PATH``: ``PATH-wal``, ``PATH-shm``, ``PATH-journal``.
_SIDE_FILES = ("-wal", "-shm", "-journal")


def _remove_made(path: str, made: tuple[int, int]) -> None:
    """After a failed first open: remove the database file this open created (if it is
    still that file) and SQLite's files beside it, so that nothing is left behind (a
    new file is made by that open, and so are its side files). Best effort."""
    try:
        if _identity(os.stat(path)) != made or not _no_tables(path):
            return  # replaced, or given tables by another process meanwhile: not ours
        for name in (path + suffix for suffix in _SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        os.unlink(path)
    except OSError as exc:
        log.warning("Could not remove %s after its first open failed: %s", path, exc)


def _no_tables(path: str) -> bool:
    """Whether the database at ``path`` has no table committed (an empty file too)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)) as c:
            return int(c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0
    except sqlite3.Error:  # unreadable (the disk full, say): only an empty file is ours
        return os.stat(path).st_size == 0


#: SQLite's errors of a file it could not create, grow or write: with them, an open
#: says which of a full disk, a directory it may not write in or a size limit it is.
_NO_ROOM_CODES = frozenset(
    {
        sqlite3.SQLITE_IOERR_SHMOPEN,
        sqlite3.SQLITE_IOERR_SHMSIZE,
        sqlite3.SQLITE_IOERR_SHMMAP,
        sqlite3.SQLITE_IOERR_WRITE,
        sqlite3.SQLITE_IOERR_TRUNCATE,
    }
)
_NO_ROOM_PRIMARY = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY}
)
#: Free space under which a disk counts as full (SQLite's -shm file alone takes 32 KiB).
_FULL_BELOW = 64 * 1024


def room_problem(path: str, exc: BaseException) -> str | None:
    """What SQLite's error ``exc`` (or one it was raised from) means, in user terms,
    when it could not create, grow or write a file of the database at ``path``; None
    for another error."""
    code = next(
        (
            e.sqlite_errorcode
            for e in error_chain(exc)
            if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) is not None
        ),
        None,
    )
    if code is None or (code not in _NO_ROOM_CODES and code & 0xFF not in _NO_ROOM_PRIMARY):
        return None
    directory = os.path.dirname(os.path.abspath(path))
    try:
        disk = os.statvfs(directory)
    except OSError:
        disk = None
    if disk is not None and (
        disk.f_bavail * disk.f_frsize < _FULL_BELOW or (disk.f_files and not disk.f_favail)
    ):
        return (
            f"the disk holding {directory} is full; free some room there (SQLite needs it "
            "for the database and for its -wal and -shm files beside it)"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"this process may not write in the directory {directory}: SQLite creates its "
            "-wal and -shm files beside the database (make the directory writable)"
        )
    if code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return None  # not a file that could not grow: SQLite's own account says it
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return (
            f"this process may not write files larger than {limit} bytes (its file size "
            "limit, ulimit -f), which SQLite needs for the database or its -wal and -shm "
            f"files in {directory}"
        )
    return (
        f"there is no room to write the database or its -wal and -shm files in {directory} "
        "(a full disk or a quota)"
    )


def _uri_path(path: str) -> str:
    """``path`` for an SQLite ``file:`` URI (``?`` and ``#`` would end the path)."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


#: What SQLite's authorizer denies in the runs' ``ctx.execute`` statements: ending,
#: splitting or leaving the commit's transaction, another database file, or a PRAGMA
#: (it would change the store's own connection for every later commit).
_DENIED_IN_STATEMENTS = frozenset(
    {
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_ATTACH,
        sqlite3.SQLITE_DETACH,
        sqlite3.SQLITE_PRAGMA,
    }
)
#: ``.active`` in the thread that is running the runs' statements (see ``_run_statements``).
_in_statements = threading.local()


def _authorize(action: int, *_: object) -> int:
    """Every connection's SQLite authorizer: it denies :data:`_DENIED_IN_STATEMENTS`
    while this thread runs the runs' statements, and allows everything else."""
    if action in _DENIED_IN_STATEMENTS and getattr(_in_statements, "active", False):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class _SQLitePool(SQLiteConnectionPool):
    """Connections with our durability setting applied before first use, and the
    authorizer that keeps transaction control out of the runs' statements."""

    synchronous = "FULL"

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        cursor = conn.cursor()
        try:
            cursor.execute(f"PRAGMA synchronous={self.synchronous}")
            # The -wal file is reused from its start after each checkpoint, never made
            # smaller: after a long reader (a backup, an open sqlite3 shell) held the
            # checkpoints back it would keep its largest size for good. Cut it back.
            cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            cursor.sqlite_cursor.connection.set_authorizer(_authorize)
        finally:
            cursor.sqlite_cursor.close()
        return conn


class _SQLiteFactory(SQLiteFactory):
    application_recorder_class = SQLiteApplicationRecorderWithIndex

    def __init__(self, env: Environment, *, synchronous: str = "FULL") -> None:
        super().__init__(env)
        old = self.datastore.pool
        pool = _SQLitePool(db_name=old.db_name, lock_timeout=old.lock_timeout)
        pool.synchronous = synchronous
        old.close()
        self.datastore.pool = pool


class SQLiteStore(Store):
    """``sqlite:///path.db`` — an SQLite file in WAL mode, written by one process."""

    scheme = "sqlite"
    supports_statements = True
    # Snapshots go in the commit's transaction: no transaction (and fsync) of their own.
    snapshots_in_commit = True
    url_options = frozenset({"synchronous", "lock_timeout"})

    @property
    def path(self) -> str:
        """The database file's path (relative paths are relative to the working directory)."""
        return path_of(self.url)

    @classmethod
    def check_url(cls, url: StoreURL) -> None:
        """Its options, then the path and the option values read from it."""
        super().check_url(url)
        path_of(url)
        _lock_timeout(url)
        _synchronous_of(url)

    _runtime_lock: IO[bytes] | None = None
    #: While a runtime serves the file (see :meth:`claim_runtime`): the file's real
    #: path, and the (device, inode) of the file and of its lock file then.
    _claimed: tuple[str, tuple[int, int], tuple[int, int]] | None = None

    def claim_runtime(self) -> None:
        """Refuse a second runtime on this file, in this process or another.

        SQLite is served by one process: two schedulers on one file would both
        run its alarms. The claim is an advisory ``flock`` on ``PATH.runtime-lock``,
        ``PATH`` being the file's real path (symlinks and ``..`` resolved, so every
        name of the file takes the same lock), released by :meth:`release_runtime`,
        by :meth:`close`, or when the process dies (``kill -9`` included). A file
        with several hard links is refused: another name would take another lock.
        Readers (``open_store``) need none. A file this process cannot write, or a lock
        file it cannot open, is a :class:`ConfigurationError` caused by an ``OSError``
        (the one raised when another runtime holds the claim has no cause).
        """
        if self._runtime_lock is not None:
            raise ConfigurationError(f"A jobs runtime already serves {self.url} in this process.")
        path = os.path.realpath(self.path)
        try:
            links = os.stat(path).st_nlink
        except OSError:
            links = 1  # no file yet (created by the first open), or not ours to judge here
        if links > 1:
            msg = (
                f"The SQLite file of {self.url} has {links} hard links: a jobs runtime could "
                "serve it under another name unseen (and SQLite keeps a -wal file per name). "
                "Give the database file a single name (remove the other links)."
            )
            raise ConfigurationError(msg)
        if os.path.exists(path) and not os.access(path, os.W_OK):
            msg = (
                f"Cannot serve {self.url}: this process may not write its file {path} "
                "(a read-only file or mount, or another owner). Nothing was changed."
            )
            # An OSError as the cause: not "another runtime serves it" (see claim_runtime).
            raise ConfigurationError(msg) from PermissionError(errno.EACCES, "not writable", path)
        try:
            lock = _flocked(path + _LOCK_SUFFIX)
        except OSError as exc:
            msg = (
                f"Cannot serve {self.url}: its runtime lock file {path}{_LOCK_SUFFIX} cannot "
                f"be opened ({exc.strerror or exc}). A jobs runtime, and the tools that "
                "write, need a directory they can write in beside the database (for that "
                "file and SQLite's -wal and -shm files)."
            )
            raise ConfigurationError(msg) from exc
        if lock is None:
            msg = (
                f"Another jobs runtime already serves {self.url}. An SQLite store is served "
                "by one process (and one open_jobs) at a time; to run several worker "
                "processes, use a Postgres store."
            )
            raise ConfigurationError(msg) from None
        self._runtime_lock = lock
        try:
            served = os.stat(path)
        except OSError:
            return  # no file yet: nothing to compare (it is made by the first open)
        self._claimed = (path, _identity(served), _identity(os.fstat(lock.fileno())))

    def release_runtime(self) -> None:
        self._claimed = None
        if self._runtime_lock is not None:
            self._runtime_lock.close()  # closing the file releases the flock
            self._runtime_lock = None

    def _still_served(self) -> None:
        """(Before each write of a runtime's.) Raise :class:`StoreError` (nothing written)
        if the file at the store's path is no longer the one the runtime opened, or if
        its lock file was deleted and another runtime has taken a new one since.

        SQLite goes on writing to a file that was deleted or moved: every commit
        would be acknowledged and then lost with the process. And the claim is a lock
        on ``PATH.runtime-lock``, a file of its own that can be deleted: a deleted one
        is made again and locked anew, or, if another runtime holds the new one, this
        runtime writes nothing more (the other serves the file now).
        """
        claimed = self._claimed
        if claimed is None:
            return
        path, served, locked = claimed
        try:
            now = _identity(os.stat(path))
        except FileNotFoundError:
            now = None
        if now != served:
            raise StoreError(
                f"The SQLite file {path} of {self.url} was deleted, moved or replaced "
                "while this jobs runtime served it: nothing was written, and this runtime "
                "writes nothing more (SQLite would go on writing to the file it opened, "
                "and every write would be lost with the process). Put the file back and "
                "start the process again. Never delete or move a store's files "
                "(-wal and -shm included) while a process serves it."
            ) from _NotServed(path)
        try:
            lock_now = _identity(os.stat(path + _LOCK_SUFFIX))
        except FileNotFoundError:
            lock_now = None
        if lock_now != locked:
            self._lock_again(path)

    def _lock_again(self, path: str) -> None:
        """The runtime lock file was deleted (or replaced): lock a new one, or stop."""
        name = path + _LOCK_SUFFIX
        lock = _flocked(name)
        if lock is None:
            raise StoreError(
                f"The runtime lock file {name} of {self.url} was deleted while this jobs "
                "runtime served the file, and another runtime has locked a new one since: "
                "nothing was written, and this runtime writes nothing more (two would run "
                "the same instances). Stop one of the two processes; never delete that "
                "file while a process serves the store."
            ) from _NotServed(name)
        old, self._runtime_lock = self._runtime_lock, lock
        assert self._claimed is not None
        self._claimed = (path, self._claimed[1], _identity(os.fstat(lock.fileno())))
        if old is not None:
            old.close()
        log.warning(
            "The runtime lock file %s was deleted while a jobs runtime served %s; it was "
            "made and locked again (never delete it while a process serves the store)",
            name,
            self.url,
        )

    def _put(self, *args: Any, **kwargs: Any) -> None:
        if self._claimed is not None:
            self._still_served()
        super()._put(*args, **kwargs)

    def ping(self) -> None:
        self._still_served()

    def unreachable(self, exc: BaseException) -> bool:
        """A file deleted, moved or taken over by another runtime (see
        :meth:`_still_served`): the runtime waits (and says so once) instead of
        retrying every run."""
        return any(isinstance(e, _NotServed) for e in error_chain(exc))

    def refuses_every_write(self, exc: BaseException) -> bool:
        """The file locked by another program, full or read-only, or no longer served:
        every commit of a group would fail alone the same way."""
        for e in error_chain(exc):
            if isinstance(e, _NotServed):
                return True
            code = getattr(e, "sqlite_errorcode", None)
            if isinstance(e, sqlite3.Error) and code is not None:
                return (code & 0xFF) in _NOT_COMMITTED
        return False

    def close(self) -> None:
        self.release_runtime()
        super().close()

    def _open_application(self) -> JobsApplication:
        made = self._prepare_file()
        try:
            with self._errors(self._open_failed):
                return JobsApplication(self)
        except BaseException:
            if self._factory is not None:
                self._factory.close()  # the pool's connections: none left open on the files
            if made is not None:
                _remove_made(self.path, made)
            raise

    def _open_failed(self, exc: Exception) -> StoreError:
        """The StoreError of an open that failed: what is wrong in user terms when
        SQLite could not write or create a file (a full disk, a directory it may not
        write in, a file size limit), then what SQLite said."""
        problem = room_problem(self.path, exc)
        said = self._describe(exc)
        if problem is None:
            return StoreError(f"Could not open the store {self.url}: {said}")
        return StoreError(f"Could not open the store {self.url}: {problem}. SQLite said: {said}")

    def _prepare_file(self) -> tuple[int, int] | None:
        """Create a new database file 0600, or look at an existing one before any change.

        SQLite gives the ``-wal`` and ``-shm`` files the database file's mode, so
        they are 0600 too. An existing file is read first, without writing: one
        that holds another application's tables is refused before it is switched
        to WAL mode or given our tables; once it has our tables, the app may add its
        own (the ones handlers write with ``ctx.execute``). Without ``create`` (read-only tools) a
        missing file, or one without our tables, is refused.

        Returns the (device, inode) of the file it created (None: it was there), which
        a failed first open removes again (see :func:`_remove_made`).
        """
        path = self.path  # the URL was checked (check_url) before anything is created
        if path.endswith("/") or os.path.isdir(path):
            msg = (
                f"The SQLite store path {path!r} in {str(self.url)!r} is a directory; name "
                "a database file in it, e.g. 'sqlite:///dir/jobs.db'."
            )
            raise ConfigurationError(msg)
        if not os.path.exists(path):
            if not self.create:
                msg = f"No SQLite store at {self.url}: the file does not exist."
                raise ConfigurationError(msg)
            with self._errors(f"Could not create the SQLite store {self.url}"):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
                except FileExistsError:
                    pass  # created meanwhile: look at it below
                else:
                    try:
                        return _identity(os.fstat(fd))
                    finally:
                        os.close(fd)
        tables = self._tables(path)
        # A jobs file may also hold the app's own tables (written with ctx.execute).
        foreign = [] if INDEX_TABLE in tables else sorted(tables - _OUR_TABLES)
        if foreign or (self._holds_foreign_events(path, tables)):
            shown = ", ".join(foreign[:5]) or "stored_events without dj_instances"
            msg = (
                f"The file of {self.url} is not a durable-jobs store: it holds other tables "
                f"({shown}). Nothing was changed; use a file of its own."
            )
            raise ConfigurationError(msg)
        if not self.create and "dj_instances" not in tables:
            msg = f"The file of {self.url} is not a durable-jobs store (it has no jobs tables)."
            raise ConfigurationError(msg)
        return None

    def _tables(self, path: str) -> set[str]:
        """The table names of the database at ``path``, read without writing anything."""
        with (
            self._errors(self._open_failed),
            contextlib.closing(
                sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
            ) as conn,
        ):
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(name) for (name,) in rows if not str(name).startswith("sqlite_")}

    def _holds_foreign_events(self, path: str, tables: set[str]) -> bool:
        """An events table with rows but no index: another eventsourcing app's file."""
        if EVENTS_TABLE not in tables or INDEX_TABLE in tables:
            return False
        with contextlib.closing(
            sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
        ) as conn:
            return conn.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone() is not None

    def _outcome_unknown(self, exc: Exception) -> bool:
        """A local file's write that raised did not commit when SQLite says the database
        was busy, locked or full (the transaction was refused or rolled back)."""
        cause = exc.__cause__
        if isinstance(cause, sqlite3.Error) and (cause.sqlite_errorcode & 0xFF) in _NOT_COMMITTED:
            return False
        return super()._outcome_unknown(exc)

    def _insert_stored(self, events: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """The events' rows (their column values, no ``StoredEvent`` objects) and the
        rest of a save, without notification ids."""
        recorder = self._app.recorder
        assert isinstance(recorder, SQLiteApplicationRecorderWithIndex)
        if not _own_inserts(type(recorder)):
            # A recorder that changes how events are inserted (a subclass's hook) is
            # given them the stock way, through its hooks.
            super()._insert_stored(events, kwargs)
            return
        encode = self._event_encoder
        rows = []
        last: UUID | None = None
        key = ""
        for e in events:
            uuid = e.originator_id
            if uuid is not last:  # a run's events are of one instance: one hex
                last, key = uuid, f"{uuid.int:032x}"  # uuid.hex, without its call
            topic, state = encode(e)
            # The same BLOB, bound as a bytearray: the sqlite3 module binds those at
            # once, while a bytes value first goes through its adapter look-ups (a
            # failed attribute look-up on a type, an AttributeError made each time:
            # about twice the cost of the rest of the row).
            rows.append((key, e.originator_version, topic, bytearray(state)))
        recorder.write_rows(rows, **kwargs)

    def _indexed(self, uuids: Sequence[UUID]) -> set[UUID] | None:
        recorder = self._app.recorder
        assert isinstance(recorder, SQLiteApplicationRecorderWithIndex)
        return recorder.indexed(uuids) if uuids else set()

    def delete_instance_rows(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        """Purge support (:class:`~durable_jobs.adapters.DeletesInstances`): one transaction."""
        recorder = self._app.recorder
        assert isinstance(recorder, SQLiteApplicationRecorderWithIndex)
        snapshots = self._app.snapshots
        table = getattr(snapshots.recorder, "events_table_name", None) if snapshots else None
        return recorder.delete_instance(uuid, version, table)

    def _factory_env(self) -> dict[str, str]:
        return {"SQLITE_DBNAME": self.path, "SQLITE_LOCK_TIMEOUT": _lock_timeout(self.url)}

    def _synchronous(self) -> str:
        return _synchronous_of(self.url)

    _factory: _SQLiteFactory | None = None

    def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        self._factory = _SQLiteFactory(env, synchronous=self._synchronous())
        return self._factory


def path_of(url: StoreURL) -> str:
    """The database file's path named by ``url`` (ConfigurationError for a URL that
    names none, or an in-memory database)."""
    path = url.path
    if url.host or not path.startswith("/") or path in ("/", ""):
        msg = (
            f"Malformed SQLite URL {str(url)!r}: use 'sqlite:///relative/path.db' "
            "or 'sqlite:////absolute/path.db' (three slashes, then the path)."
        )
        raise ConfigurationError(msg)
    path = path[1:]
    if path == ":memory:" or "mode=memory" in path:
        msg = "An in-memory SQLite database is not supported: use 'memory://' instead."
        raise ConfigurationError(msg)
    return path


def _lock_timeout(url: StoreURL) -> str:
    timeout = url.option("lock_timeout", "5") or "5"
    if not timeout.isdigit():
        msg = f"lock_timeout must be a whole number of seconds, not {timeout!r}."
        raise ConfigurationError(msg)
    return timeout


def _synchronous_of(url: StoreURL) -> str:
    synchronous = (url.option("synchronous", "full") or "").upper()
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        msg = (
            "synchronous must be 'full' (default), 'normal' or 'extra', "
            f"not {synchronous.lower()!r}."
        )
        raise ConfigurationError(msg)
    return synchronous


@functools.cache
def _own_inserts(cls: type[SQLiteApplicationRecorderWithIndex]) -> bool:
    """Whether recorder class ``cls`` inserts events as this module's recorder does
    (then :meth:`SQLiteStore._insert_stored` writes the rows itself)."""
    return (
        cls.insert_events is SQLiteApplicationRecorderWithIndex.insert_events
        and cls._insert_events is SQLiteApplicationRecorderWithIndex._insert_events
    )
