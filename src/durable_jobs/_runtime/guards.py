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
import time
from contextlib import suppress
from datetime import timedelta
from types import TracebackType
from uuid import UUID

import trio

from durable_jobs._errors import LockLost
from durable_jobs._store.capabilities import CrossProcessLocks
from durable_jobs._telemetry import log_fields

__all__ = ["DEFAULT_LEASE", "MIN_LEASE", "TAKEOVER_GRACE", "Guard", "LockGuards", "RunScope"]

log = logging.getLogger("durable_jobs.runtime")

#: How long a worker that stopped responding keeps its instances.
DEFAULT_LEASE = timedelta(seconds=30)
#: The shortest lease accepted (the session is pinged every quarter of it).
MIN_LEASE = timedelta(seconds=1)
#: How long a run or call waits after taking over an instance it found held by
#: another process that then released it without committing anything: if that
#: holder lost its session (rather than finishing), it hears of it and stops its
#: handler; this wait keeps the two runs apart even when the takeover came in that
#: moment. A holder hears of it within milliseconds on an idle host, but on a
#: loaded one (a load of 40 on two cores) it took 0.6 s at the median and up to
#: 0.9 s: 250 ms, the grace before, let such runs overlap (outside review). (A
#: holder that finished committed a new version: then there is no wait.)
TAKEOVER_GRACE = timedelta(seconds=2)
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
        #: (kind, job, instance_id) of the instances held, when known (for the logs), by
        #: ``uuid.int``.
        self.names: dict[int, tuple[str, str, str]] = {}
        #: The cancel scopes of the long-lived tasks that run one run after another
        #: (see :meth:`run_scope`), by task.
        self._runs: dict[trio.lowlevel.Task, RunScope] = {}
        self._wakes = _WakeCheck(self)

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
        trio.lowlevel.add_instrument(self._wakes)

    def stop(self) -> None:
        if self._watching and self.store is not None:
            self._watching = False
            with suppress(KeyError, RuntimeError):  # (not added, or the trio run is over)
                trio.lowlevel.remove_instrument(self._wakes)
            self.store.unwatch_locks()

    def check_sessions(self) -> None:
        """Stop the runs whose lock session is no longer confirmed (nothing answered it
        for half the lease): called as the trio loop wakes up, before it steps any task.

        A worker frozen past its lease (SIGSTOP, a paused VM) wakes up with handlers
        whose waits ran out meanwhile; the store's keeper thread, frozen too, reports the
        lost session a few milliseconds later, and until then those handlers went on (an
        outside review: every one finished, beside the worker that had taken their
        instances over). Checked here first, they are cancelled at their next
        checkpoint instead."""
        store = self.store
        guards = self._guards
        if store is None or not guards:
            return
        for session in {g.session for g in guards if g.session is not None}:
            if not store.session_alive(session):
                self._lost(session)

    def _lost(self, session: int) -> None:
        for guard in list(self._guards):
            if guard.session == session:
                # Stopped: not reported again (the wake-up check and the keeper thread
                # may both report one loss), while guards entered later are.
                guard.session = None
                names = guard.names or self.names.get(guard.uuid.int)
                log.warning(
                    "Stopping the work on %s (%s lock lost)",
                    guard.uuid
                    if names is None
                    else f"{names[0]} job {names[1]!r} instance {names[2]!r}",
                    guard.scope,
                    extra={} if names is None else log_fields(*names),
                )
                guard.cancel_scope.cancel()

    def check(self, uuid: UUID, scope: str = "instance") -> None:
        """Raise :class:`LockLost` if the session holding ``uuid``'s ``scope`` lock is
        known to be lost: called right before a handler starts. A session cut after the
        lock was taken (while the instance was loaded, say) is dropped by the store's
        keeper thread at once, but the runtime hears of it only once the trio thread
        gets to it: on a loaded host, after the handler had started, and another
        process that took the instance meanwhile ran it too (outside review)."""
        store = self.store
        if store is None:
            return
        session = store.lock_session(uuid, scope)
        if session is not None and not store.session_alive(session):
            raise _lost(uuid)

    def found_busy(self, uuid: UUID, scope: str, version: int | None) -> None:
        """Another process held ``uuid``'s ``scope`` lock when this one tried (the
        instance was at index ``version``)."""
        self._busy[(uuid.int, scope)] = version
        if len(self._busy) > _MAX_BUSY:
            del self._busy[next(iter(self._busy))]

    async def after_takeover(self, uuid: UUID, scope: str, version: int | None) -> None:
        """Wait :data:`TAKEOVER_GRACE` (a quarter of the lease if that is shorter: a short
        lease asks for quick takeovers) if the lock just taken (the instance at index
        ``version``) was last seen held by another process at that same version: its
        holder may be stopping a run whose session it lost."""
        busy = self._busy
        if not busy:
            return  # the usual case: nothing to look up
        key = (uuid.int, scope)
        if key in busy and busy.pop(key) == version:
            await trio.sleep(min(TAKEOVER_GRACE, self.lease / 4).total_seconds())

    def guard(self, uuid: UUID, scope: str) -> Guard:
        """Run the body under ``uuid``'s ``scope`` lock, just taken: cancelled if its
        session is lost, and then :class:`LockLost` is raised."""
        runs = self._runs
        if runs:
            run = runs.get(trio.lowlevel.current_task())
            if run is not None and run.guard is None:
                return Guard(self, uuid, scope, run)
        return Guard(self, uuid, scope)

    def run_scope(self) -> RunScope:
        """The cancel scope of a task that runs one run after another: the outermost
        guard of each of its runs is cancelled through it (see :class:`RunScope`)."""
        return RunScope(self)


class _WakeCheck(trio.abc.Instrument):
    """Runs :meth:`LockGuards.check_sessions` when the trio loop wakes from waiting for
    I/O, before the tasks it wakes are stepped: at most every :data:`_WAKE_CHECK_EVERY`
    seconds (a process that was frozen comes back later than that)."""

    def __init__(self, guards: LockGuards) -> None:
        self.guards = guards
        self._next = 0.0

    def after_io_wait(self, timeout: float) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + _WAKE_CHECK_EVERY
            self.guards.check_sessions()


#: Seconds between two wake-up checks of the lock sessions (see :class:`_WakeCheck`).
_WAKE_CHECK_EVERY = 0.01


class RunScope:
    """A cancel scope a task holds across its runs, which the outermost guard of each
    run uses instead of a scope of its own (entering and leaving a trio cancel scope
    on every run cost about 8% of a Postgres run).

    It is entered once, around the task's loop. A guard that is left while the scope
    is cancelled (its lock was lost) ends the scope there, as its own scope would
    have ended, and enters a fresh one for the task's next runs: a cancellation never
    outlives the guard it was meant for.
    """

    __slots__ = ("guard", "guards", "scope", "task")

    def __init__(self, guards: LockGuards) -> None:
        self.guards = guards
        self.scope = trio.CancelScope()
        #: The guard using the scope (None: none is entered).
        self.guard: Guard | None = None
        self.task: trio.lowlevel.Task | None = None

    def __enter__(self) -> None:
        task = self.task = trio.lowlevel.current_task()
        self.scope.__enter__()
        self.guards._runs[task] = self

    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self.task is not None:
            self.guards._runs.pop(self.task, None)
        return self.scope.__exit__(etype, exc, tb)

    def renew(self) -> None:
        """A new scope in place of the one just left (cancelled)."""
        scope = trio.CancelScope()
        scope.__enter__()
        self.scope = scope


class Guard:
    """The context of :meth:`LockGuards.guard` (a plain class: cheaper than a
    generator context manager on every run). Entered, it is in its guards' set (by
    identity: hashed in C), with the session it runs under.

    Its cancel scope is its own, or (``run``) the scope its task holds across runs,
    which it uses while it is entered."""

    __slots__ = ("cancel_scope", "guards", "names", "run", "scope", "session", "uuid")

    def __init__(
        self, guards: LockGuards, uuid: UUID, scope: str, run: RunScope | None = None
    ) -> None:
        self.guards = guards
        self.uuid = uuid
        #: (kind, job, instance id) for the logs, as known when the lock was taken: a
        #: debounce flush lock outlives the instance lock, whose release forgets them.
        self.names = guards.names.get(uuid.int) if guards.names else None
        self.scope = scope
        self.session: int | None = None
        self.run = run
        self.cancel_scope = trio.CancelScope() if run is None else run.scope

    def __enter__(self) -> None:
        store = self.guards.store
        if store is not None:
            session = store.lock_session(self.uuid, self.scope)
            if session is not None:
                if not store.session_alive(session):
                    raise _lost(self.uuid)
                self.session = session
        entered = self.guards._guards
        run = self.run
        if run is not None:
            run.guard = self
            entered.add(self)
            return
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
        run = self.run
        if run is not None:
            self.guards._guards.discard(self)
            run.guard = None
            if not cancel_scope.cancel_called:
                return False
            # Cancelled for a lost lock: the scope ends here, as a guard's own would.
            try:
                swallowed = cancel_scope.__exit__(etype, exc, tb)
            finally:
                run.renew()
        else:
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
