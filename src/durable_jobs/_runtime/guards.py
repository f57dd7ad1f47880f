"""Stopping the work of instances whose cross-process lock was lost.

On a shared store each run holds its instance's lock in a *lock session* of
the store (on Postgres, a database session). If that session ends while this
process lives on (the connection dropped, an admin ended it, or the worker
missed its lease), other processes may take the instance at once. The store
then refuses any commit under the lost lock; this module makes the work
itself stop: every holder runs inside a cancel scope that is cancelled when
the store reports its session lost, and leaves with :class:`LockLost`, so the
run is not committed and runs again later under a new lock.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta
from types import TracebackType
from uuid import UUID

import trio

from durable_jobs._errors import LockLost
from durable_jobs._store.capabilities import CrossProcessLocks
from durable_jobs._telemetry import log_fields

__all__ = ["DEFAULT_LEASE", "MIN_LEASE", "TAKEOVER_GRACE", "Guard", "LockGuards"]

log = logging.getLogger("durable_jobs.runtime")

#: How long a worker that stopped responding keeps its instances.
DEFAULT_LEASE = timedelta(seconds=30)
#: The shortest lease accepted (the session is pinged every quarter of it).
MIN_LEASE = timedelta(seconds=1)
#: How long a run waits after taking over an instance it found held by another
#: process that then released it without committing anything: if that holder
#: lost its session (rather than finishing), it hears of it and stops its
#: handler within milliseconds; this wait keeps the two runs apart even when the
#: takeover came in that moment. (A holder that finished committed a new version:
#: then there is no wait.)
TAKEOVER_GRACE = timedelta(milliseconds=250)
#: Instances remembered as held by others (the oldest are forgotten first).
_MAX_BUSY = 10_000


class LockGuards:
    """Cancel scopes of the holders of cross-process locks, cancelled when the store
    reports their session lost."""

    def __init__(self, store: CrossProcessLocks | None, lease: timedelta) -> None:
        self.store = store
        self.lease = lease
        #: The guards entered and not yet left (each knows its session and scope).
        self._guards: set[Guard] = set()
        self._watching = False
        #: Locks this process found held by another process, not taken since, and the
        #: instance's index version at the time; keyed by (the uuid's number, scope):
        #: hashed in C (a UUID's hash is a Python call).
        self._busy: dict[tuple[int, str], int | None] = {}
        #: (kind, job, instance_id) of the instances held, when known (for the logs).
        self.names: dict[UUID, tuple[str, str, str]] = {}

    def start(self) -> None:
        """Have the store watch its lock sessions and report losses to this trio run."""
        if self.store is None:
            return  # locks that live in this process cannot be lost
        token = trio.lowlevel.current_trio_token()

        def lost(session: int) -> None:  # any thread
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(self._lost, session)

        self.store.watch_locks(self.lease.total_seconds(), lost)
        self._watching = True

    def stop(self) -> None:
        if self._watching and self.store is not None:
            self._watching = False
            self.store.unwatch_locks()

    def _lost(self, session: int) -> None:
        for guard in list(self._guards):
            if guard.session == session:
                names = self.names.get(guard.uuid)
                log.warning(
                    "Stopping the work on %s (%s lock lost)",
                    guard.uuid,
                    guard.scope,
                    extra={} if names is None else log_fields(*names),
                )
                guard.cancel_scope.cancel()

    def found_busy(self, uuid: UUID, scope: str, version: int | None) -> None:
        """Another process held ``uuid``'s ``scope`` lock when this one tried (the
        instance was at index ``version``)."""
        self._busy[(uuid.int, scope)] = version
        if len(self._busy) > _MAX_BUSY:
            del self._busy[next(iter(self._busy))]

    async def after_takeover(self, uuid: UUID, scope: str, version: int | None) -> None:
        """Wait :data:`TAKEOVER_GRACE` if the lock just taken (the instance at index
        ``version``) was last seen held by another process at that same version: its
        holder may be stopping a run whose session it lost."""
        busy = self._busy
        if not busy:
            return  # the usual case: nothing to look up
        key = (uuid.int, scope)
        if key in busy and busy.pop(key) == version:
            await trio.sleep(TAKEOVER_GRACE.total_seconds())

    def guard(self, uuid: UUID, scope: str) -> Guard:
        """Run the body under ``uuid``'s ``scope`` lock, just taken: cancelled if its
        session is lost, and then :class:`LockLost` is raised."""
        return Guard(self, uuid, scope)


class Guard:
    """The context of :meth:`LockGuards.guard` (a plain class: cheaper than a
    generator context manager on every run). Entered, it is in its guards' set (by
    identity: hashed in C), with the session it runs under."""

    __slots__ = ("cancel_scope", "guards", "scope", "session", "uuid")

    def __init__(self, guards: LockGuards, uuid: UUID, scope: str) -> None:
        self.guards = guards
        self.uuid = uuid
        self.scope = scope
        self.session: int | None = None
        self.cancel_scope = trio.CancelScope()

    def __enter__(self) -> None:
        store = self.guards.store
        if store is not None:
            session = store.lock_session(self.uuid, self.scope)
            if session is not None:
                if not store.session_alive(session):
                    raise _lost(self.uuid)
                self.session = session
        entered = self.guards._guards
        entered.add(self)
        try:
            self.cancel_scope.__enter__()
        except BaseException:
            entered.discard(self)
            raise

    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        cancel_scope = self.cancel_scope
        try:
            swallowed = cancel_scope.__exit__(etype, exc, tb)
        finally:
            self.guards._guards.discard(self)
        if cancel_scope.cancelled_caught:
            raise _lost(self.uuid)
        return swallowed


def _lost(uuid: UUID) -> LockLost:
    return LockLost(
        f"The cross-process lock of instance {uuid} was lost while it ran (its session "
        "ended, or this worker missed its lease); the run was stopped and nothing of it "
        "was committed. It runs again under a new lock."
    )
