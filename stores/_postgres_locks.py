"""This process's cross-process instance locks on Postgres, and how their loss is noticed.

The locks are session advisory locks held by one dedicated connection (the
*lock session*). A process that dies releases all of them with its session,
at once, so the others take its instances over without waiting. The risk is
the other way round: a session can end while its process lives on (an admin's
``pg_terminate_backend``, a proxy or a network blip, a server restart, an
idle timeout), and then its locks are free while its runs still go on. Three
things keep two runs of one instance from overlapping or both committing:

* **The fence.** Every commit made under a lock checks, in its own
  transaction, that the lock is still held by the session that took it (in
  ``pg_locks``); if not, the transaction fails and nothing commits. A
  session is recognised by a random *marker* advisory lock it takes first, so
  a reused backend pid cannot pass for it.
* **The keeper.** A thread watches the lock connection: it wakes the moment
  the socket turns readable while no query runs (the server's "terminating
  connection" message or the close), and pings it every quarter of the
  lease. When the session is gone, or nothing confirmed it for half the
  lease, the session is dropped and the runtime is told, so that it cancels
  the runs holding its locks. The next lock call opens a new session.
* **The lease.** The session is opened with ``idle_session_timeout`` set to
  the lease: the server itself ends the session of a process that stopped
  pinging (frozen, paused, cut off), which frees its locks after ``lease``.
  The same process gives its runs up after half the lease without a
  confirmed round trip, before the server can hand them to anyone else, and
  starts no handler under such a session even before its keeper has looked
  (:meth:`LockSession.is_live`: a process just woken from a freeze).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import pq

from durable_jobs.adapters import StoreError, driver_errors
from durable_jobs.stores._postgres_conn import Int8s, application_name

if TYPE_CHECKING:
    from uuid import UUID

    from psycopg.sql import Composed

__all__ = [
    "FENCE_FAILED",
    "FENCE_MESSAGE",
    "FENCE_QUERY",
    "MEMBERS_QUERY",
    "LockSession",
    "NoReply",
    "fence_params",
]

log = logging.getLogger("durable_jobs.store")

#: Pings of the lock connection per lease.
PINGS_PER_LEASE: Final = 4
#: Share of the lease after which a session nothing confirmed counts as lost here
#: (the server ends it after the whole lease: the rest is the margin to stop runs).
GIVE_UP_SHARE: Final = 0.5

#: What the error of a failed fence says (the text its cast fails on, in
#: :data:`FENCE_QUERY`, begins with it).
FENCE_MESSAGE: Final = "durable_jobs: instance lock lost"
#: The fence of a commit: whether all of the (lock key, marker key) pairs are held by
#: one backend each. It fails (SQLSTATE :data:`FENCE_FAILED`, its transaction then
#: aborted: the statements after it are not run and the COMMIT after them rolls back)
#: unless all are, so that the whole commit is sent at once, COMMIT included.
#:
#: Its cost grows with the locks held in the database (one read of ``pg_locks``), not
#: with their square: the locks held by the backends that hold the commit's markers
#: (a few rows: ``marks`` is their distinct keys) are joined to the lock keys by hash.
#: (It once joined every advisory lock to every other of the same backend: 1.8 ms a
#: commit with 100 locks held, 0.9 s with 2,000.)
FENCE_QUERY: Final = (
    "WITH held AS MATERIALIZED (SELECT pid, "
    # pg_locks shows a bigint key as (classid, objid): its upper and lower 32 bits.
    "(classid::int8 << 32) | objid::int8 AS key FROM pg_catalog.pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND database = "
    "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())), "
    "ours AS MATERIALIZED (SELECT l.key AS lock, m.key AS mark FROM held m "
    "JOIN held l ON l.pid = m.pid WHERE m.key = ANY(%(marks)b::int8[])) "
    "SELECT CASE WHEN count(*) >= %(n)s::int8 THEN count(*) ELSE "
    "('durable_jobs: instance lock lost (' || count(*) || ' of ' || %(n)s::int8 || "
    "' held)')::int8 END "
    "FROM unnest(%(locks)b::int8[], %(pair_marks)b::int8[]) AS f(lock, mark) "
    "WHERE EXISTS (SELECT 1 FROM ours o WHERE o.lock = f.lock AND o.mark = f.mark)"
)
#: The SQLSTATE of a failed fence (invalid_text_representation, from its message cast).
FENCE_FAILED: Final = "22P02"
#: Longest wait for the keeper thread to stop (seconds).
KEEPER_JOIN: Final = 2.0
_MARK: Final = "SELECT pg_try_advisory_lock(%s)"
#: A worker's membership lock: (namespace of the schema, random member id). Its
#: locks have objsubid 2 in ``pg_locks``, the instance locks (one bigint key) 1.
_JOIN: Final = "SELECT pg_try_advisory_lock(%s::int4, %s::int4)"
#: The member ids of the workers serving a schema (its namespace): those whose
#: lock sessions hold a membership lock.
MEMBERS_QUERY: Final = (
    "SELECT objid::int8 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
    "AND objsubid = 2 AND granted AND classid = %s::int4::oid AND database = "
    "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
)
_MEMBER_IDS: Final = (1 << 31) - 1


def fence_params(pairs: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The parameters of :data:`FENCE_QUERY` for (lock key, marker key) pairs."""
    marks = [p[1] for p in pairs]
    return {
        "n": len(pairs),
        "locks": Int8s([p[0] for p in pairs]),
        "pair_marks": Int8s(marks),
        "marks": Int8s(list(dict.fromkeys(marks))),
    }


class NoReply(TimeoutError):
    """The cause of the StoreError of a lock session that went without a reply from the
    server for longer than the lease allows (a slow or stalled server): the store is
    out of reach for now, like a dropped connection (see ``PostgresStore.unreachable``);
    the runs under its locks stop. Not a library error: only a marker of the cause."""


class LockSession:
    """One connection holding this process's advisory locks, watched by a keeper thread.

    ``connect(**libpq_options)`` opens a new autocommit connection. All
    methods are thread-safe. :meth:`watch` starts the keeper (with the lease)
    and names the callback told of a lost session (its marker key); without
    it, the locks work but nothing watches them.
    """

    def __init__(
        self,
        connect: Callable[..., psycopg.Connection[Any]],
        describe: Callable[[BaseException], str],
        where: str,
    ) -> None:
        self._connect = connect
        self._describe = describe
        self._where = where
        #: Held while the connection is used (one query at a time).
        self._mutex = threading.Lock()
        #: Guards the bookkeeping below (never held across a query).
        self._books = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        #: The marker key of the open session (0: none).
        self._mark = 0
        #: Set when the session counts as lost but its connection was in use.
        self._condemned = False
        #: (uuid's number, scope) -> (lock key, marker key of the session that took it).
        #: Keyed by the uuid's number: hashed in C (a UUID's hash is a Python call),
        #: and a tuple of an int and a str is not tracked by the garbage collector.
        self._held: dict[tuple[int, str], tuple[int, int]] = {}
        #: The scopes ever locked (a commit's fence looks each up per instance).
        self._scopes: set[str] = set()
        #: Membership (see :meth:`join`): the schema's namespace (None: not joined),
        #: and this session's member id (0: none yet).
        self._namespace: int | None = None
        self.member = 0
        self._last_ok = 0.0
        self._lease: float | None = None
        self._on_lost: Callable[[int], None] | None = None
        self._keeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake: tuple[int, int] | None = None

    # ---- the session -------------------------------------------------------------------

    def _open(self) -> psycopg.Connection[Any]:
        """A new session (mutex held): connection, lease settings, marker lock."""
        lease = self._lease
        options: dict[str, Any] = {"application_name": application_name("locks")}
        if lease is not None:
            # The client side of a cut connection gives up within the lease too.
            options |= {
                "keepalives": 1,
                "keepalives_idle": max(1, int(lease / PINGS_PER_LEASE)),
                "keepalives_interval": max(1, int(lease / PINGS_PER_LEASE)),
                "keepalives_count": 2,
                "tcp_user_timeout": int(lease * 1000 * GIVE_UP_SHARE),
            }
        sent = time.monotonic()
        conn = self._connect(**options)
        try:
            if lease is not None:
                self._set_idle_timeout(conn, lease)
            mark = 0
            while not mark:
                mark = secrets.randbits(63) - (1 << 62)
                row = conn.execute(_MARK, (mark,)).fetchone()
                if not (row and row[0]):
                    mark = 0
            member = self._take_member(conn)
        except BaseException:
            conn.close()
            raise
        with self._books:
            self._conn, self._mark, self._condemned = conn, mark, False
            self.member = member
            self._last_ok = sent
            wake = self._wake
            if wake is not None:
                # The keeper watches the sockets it knew of when it last went to sleep:
                # woken, it watches this one too (else a session cut before its next
                # ping, a quarter of the lease away, goes unnoticed until then).
                with contextlib.suppress(OSError):
                    os.write(wake[1], b"c")
        return conn

    def _take_member(self, conn: psycopg.Connection[Any]) -> int:
        """Take a membership lock in a new session if this process joined (its id, or 0)."""
        if self._namespace is None:
            return 0
        while True:
            member = 1 + secrets.randbelow(_MEMBER_IDS)
            row = conn.execute(_JOIN, (self._namespace, member)).fetchone()
            if row and row[0]:
                return member

    def join(self, namespace: int) -> None:
        """Count this process among the workers of ``namespace`` (a 31-bit number) while
        its lock session lives: :meth:`queries` can then list them (``MEMBERS_QUERY``)."""
        with self._mutex:
            if self._namespace is not None:
                return
            self._namespace = namespace
            conn = self._conn
            if conn is None:
                return  # the next session takes it
            with driver_errors(self._failed):
                member = self._take_member(conn)
            with self._books:
                self.member = member

    @staticmethod
    def _set_idle_timeout(conn: psycopg.Connection[Any], lease: float) -> None:
        try:
            conn.execute(
                "SELECT set_config('idle_session_timeout', %s, false)",
                (f"{int(lease * 1000)}ms",),
            )
        except psycopg.errors.UndefinedObject:
            # Before Postgres 14: a frozen process keeps its locks until TCP gives up.
            log.warning(
                "This Postgres server has no idle_session_timeout (before 14): a frozen "
                "worker keeps its instances until its connection drops"
            )

    def _drop(self, reason: str) -> None:
        """End the session (mutex held) and tell the watcher its locks are gone."""
        with self._books:
            conn, mark = self._conn, self._mark
            self._conn, self._mark, self._condemned = None, 0, False
            self.member = 0
            on_lost = self._on_lost
        if conn is None:
            return
        conn.close()
        log.warning(
            "The instance-lock session on %s was lost (%s); the runs holding its locks "
            "stop without committing and run again",
            self._where,
            reason,
        )
        if on_lost is not None:
            on_lost(mark)

    def _condemn(self, reason: str) -> None:
        """The session counts as lost but its connection is in use: tell the watcher now,
        and let whoever holds the connection close it."""
        with self._books:
            if self._conn is None or self._condemned:
                return
            self._condemned = True
            mark, on_lost = self._mark, self._on_lost
        log.warning("The instance-lock session on %s is taken as lost (%s)", self._where, reason)
        if on_lost is not None:
            on_lost(mark)

    def _failed(self, exc: Exception) -> StoreError:
        self._drop(self._describe(exc))
        msg = f"Could not take or release an instance lock on {self._where}: "
        return StoreError(msg + self._describe(exc))

    def query(self, query: str | Composed, params: Sequence[Any]) -> tuple[list[Any], int]:
        """Run one query in the lock session (opened if there is none): its rows and the
        session's marker key."""
        results, mark = self.queries([(query, params)])
        return results[0], mark

    def queries(
        self, queries: Sequence[tuple[str | Composed, Sequence[Any]]]
    ) -> tuple[list[list[Any]], int]:
        """Run ``queries`` in the lock session (opened if there is none), in order
        (each sees what the ones before it did): the rows of each, and the
        session's marker key."""
        with self._mutex:
            with driver_errors(self._failed):
                conn = self._conn if self._conn is not None else self._open()
                sent = time.monotonic()
                # One after the other, not pipelined: after a pipeline the server does
                # not arm idle_session_timeout (psycopg's last message is a Flush), and
                # the lease of a process frozen then would never end.
                # One cursor for them (``conn.execute`` makes one per query).
                with conn.cursor() as curs:
                    results = []
                    for query, params in queries:
                        curs.execute(query, params, prepare=True)
                        results.append(curs.fetchall())
            with self._books:
                condemned, mark = self._condemned, self._mark
                if not condemned:
                    self._last_ok = max(self._last_ok, sent)
            if condemned:
                self._drop("no reply within the lease")
                msg = f"The instance-lock session on {self._where} was lost (no reply in time)."
                raise StoreError(msg) from NoReply(msg)
            return results, mark

    # ---- locks ---------------------------------------------------------------------------

    def try_lock_many(self, query: str, keys: Sequence[tuple[UUID, str, int]]) -> list[bool]:
        """Take the locks of ``(uuid, scope, key)``, without waiting; remember those taken."""
        rows, mark = self.query(query, (Int8s([k for _, _, k in keys]),))
        return self.taken(keys, rows, mark)

    def taken(
        self, keys: Sequence[tuple[UUID, str, int]], rows: list[Any], mark: int
    ) -> list[bool]:
        """Remember the locks of ``keys`` that the rows of a try-lock query say were
        taken (in the session with marker ``mark``); whether each was."""
        taken = [bool(row[0]) for row in rows]
        with self._books:
            for (uuid, scope, key), ok in zip(keys, taken, strict=True):
                if ok:
                    self._held[(uuid.int, scope)] = (key, mark)
                    self._scopes.add(scope)
        return taken

    def unlock_many(self, query: str, keys: Sequence[tuple[UUID, str, int]]) -> None:
        """Release the locks of ``(uuid, scope, key)`` that the open session holds; forget
        all of them (those of a lost session went with it). Never fails: a session
        that fails is closed, which releases its locks."""
        ours = self.forget(keys)
        if ours:
            # A session that fails is closed: its locks go with it.
            with contextlib.suppress(StoreError):
                self.query(query, (Int8s(ours),))

    def forget(self, keys: Sequence[tuple[UUID, str, int]]) -> list[int]:
        """Forget the locks of ``keys``; the lock keys of those the open session holds
        (to release)."""
        with self._books:
            mark = self._mark
            held = self._held
            ours = [k for u, s, k in keys if held.pop((u.int, s), (0, -1))[1] == mark]
        return ours if mark else []

    def session_of(self, uuid: UUID, scope: str) -> int | None:
        """The marker key of the session holding ``uuid``'s ``scope`` lock, if held."""
        # One dict read (atomic): no need of the books' lock, asked on every run.
        held = self._held.get((uuid.int, scope))
        return None if held is None else held[1]

    def is_live(self, mark: int) -> bool:
        """Whether the session with marker key ``mark`` is open, not taken as lost, and
        confirmed (a round trip answered) within half the lease."""
        # Without the books' lock (asked on every run): a session being dropped or
        # condemned meanwhile reads as either the state before or not live, as a read
        # just before or after the lock would.
        if not (mark and mark == self._mark and not self._condemned):
            return False
        # Nothing confirmed it for half the lease: the keeper gives it up as soon as it
        # runs, but in a process just woken from a freeze it has not run yet, and a run
        # started a handler there, on a state other workers had moved on from since.
        lease = self._lease
        return lease is None or time.monotonic() - self._last_ok <= lease * GIVE_UP_SHARE

    def fence(self, uuids: Sequence[UUID]) -> list[tuple[int, int]]:
        """(lock key, marker key) of the locks held on ``uuids`` that a commit checks: each
        instance lock, and any other lock of them (a debounce flush lock) taken in an
        earlier session than the current one.

        Every commit is made under its instance's lock. A flush lock of the current
        session is covered by it (a lost session fails the fence through the instance
        lock) and is left out: one being released by a flush that is just ending (its
        release is queued, not waited for) failed the commit of another task, so a
        healthy worker refused its own commits as "lock session lost" when that release
        landed between reading the books and the fence query. A flush lock of an
        earlier session (the flush's own commit, its instance lock taken again in a new
        session after the old one was lost) still fails the fence.
        """
        with self._books:
            held = self._held
            scopes = self._scopes
            current = self._mark
            return [
                pair
                for number in dict.fromkeys([u.int for u in uuids])
                for scope in scopes
                if (pair := held.get((number, scope))) is not None
                and (scope == "instance" or pair[1] != current)
            ]

    @property
    def lease(self) -> float | None:
        return self._lease

    # ---- the keeper ----------------------------------------------------------------------

    def watch(self, lease: float, on_lost: Callable[[int], None]) -> None:
        """Keep the session alive every ``lease / 4``; call ``on_lost(marker)`` (from any
        thread, quickly) when a session ends or goes unconfirmed for half the lease."""
        self.unwatch()
        with self._mutex:
            self._lease = lease
            with self._books:
                self._on_lost = on_lost
                conn = self._conn
            if conn is not None:
                try:
                    self._set_idle_timeout(conn, lease)
                except psycopg.Error as exc:
                    self._drop(self._describe(exc))
        self._stop.clear()
        wake = os.pipe()
        with self._books:
            self._wake = wake
        self._keeper = threading.Thread(
            target=self._keep, args=(wake,), name="durable_jobs lock keeper", daemon=True
        )
        self._keeper.start()

    def unwatch(self) -> None:
        """Stop the keeper; lost sessions are no longer reported."""
        keeper = self._keeper
        with self._books:
            self._on_lost = None
            # No more wake-ups for new connections (the pipe is closed below).
            wake, self._wake = self._wake, None
        if keeper is None or wake is None:
            return
        self._stop.set()
        os.write(wake[1], b"x")
        # At once, unless it waits for a reply (bounded by the TCP user timeout).
        keeper.join(timeout=KEEPER_JOIN)
        if not keeper.is_alive():
            os.close(wake[0])
            os.close(wake[1])
        self._keeper = None

    def close(self) -> None:
        self.unwatch()
        with self._mutex, self._books:
            conn, self._conn, self._mark = self._conn, None, 0
            self._held.clear()
            self.member = 0
        if conn is not None:
            conn.close()

    def _keep(self, wake: tuple[int, int]) -> None:
        lease = self._lease
        assert lease is not None
        interval = lease / PINGS_PER_LEASE
        next_ping = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                next_ping = self._keep_once(lease, wake[0], interval, next_ping)
            except Exception:  # never let the keeper die: the locks would be lost
                log.exception("The instance-lock keeper failed; it goes on")
                self._stop.wait(interval)

    def _keep_once(self, lease: float, wake: int, interval: float, next_ping: float) -> float:
        """Wait for the socket or the next ping, then look at the session; the next ping's
        time."""
        with self._books:
            conn = self._conn
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        if conn is not None:
            # Closed meanwhile: look again next time.
            with contextlib.suppress(psycopg.Error, OSError, ValueError):
                poller.register(conn.pgconn.socket, select.POLLIN)
        timeout = max(0.0, next_ping - time.monotonic())
        events = poller.poll(timeout * 1000)
        if self._stop.is_set():
            return next_ping
        readable = [fd for fd, _ in events if fd != wake]
        if len(readable) < len(events):
            # Woken (a new connection to watch): emptied, so that it sleeps again.
            with contextlib.suppress(OSError):
                os.read(wake, 4096)
        now = time.monotonic()
        ping = now >= next_ping
        if ping:
            next_ping = now + interval
        elif not readable:
            if conn is not None and conn.closed:
                self._stop.wait(0.01)  # being replaced: no busy loop meanwhile
            return next_ping
        with self._books:
            give_up_at = self._last_ok + lease * GIVE_UP_SHARE
        if self._mutex.acquire(timeout=max(0.0, give_up_at - now)):
            try:
                self._check(ping=ping, give_up_at=give_up_at)
            finally:
                self._mutex.release()
        elif conn is not None:
            self._condemn(f"no reply for {lease * GIVE_UP_SHARE:g} s")
        return next_ping

    def _check(self, *, ping: bool, give_up_at: float) -> None:
        """Look at the idle session (mutex held): a message or a close that arrived, or a
        ping's reply; drop it if it is gone or overdue."""
        conn = self._conn
        if conn is None:
            return
        if self._condemned:
            self._drop("no reply within the lease")
            return
        try:
            if ping:
                sent = time.monotonic()
                conn.execute("SELECT 1")
                with self._books:
                    self._last_ok = max(self._last_ok, sent)
                    give_up_at = self._last_ok + (self._lease or 0) * GIVE_UP_SHARE
            else:
                conn.pgconn.consume_input()
                if conn.pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the server closed the connection")
        except psycopg.Error as exc:
            self._drop(self._describe(exc))
            return
        if time.monotonic() > give_up_at:
            self._drop("no reply within the lease")
