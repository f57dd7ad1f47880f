"""Instance locks: in this process, and on a shared store across processes.

Everything the runtime does to an instance happens under its lock. In one
process that is a ``trio.Lock`` per instance; on a shared store (Postgres)
the store's cross-process lock is taken as well, so two workers never run
the same instance at once.

The interface the rest of the runtime uses:

- :meth:`InstanceLocks.hold` - hold an instance's lock (``scope="instance"``)
  or its flush lock (``scope="flush"``), waiting or not;
- :meth:`InstanceLocks.held_version` - the instance's index version, read when
  its cross-process lock was taken (no other process can change it meanwhile);
- :meth:`InstanceLocks.committed` - record the version this process just wrote;
- :meth:`InstanceLocks.run` - the task that batches cross-process lock calls;
- :attr:`InstanceLocks.held` - how many cross-process locks this process holds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from uuid import UUID

import trio

from durable_jobs._errors import DurableJobsError
from durable_jobs._runtime import members as _members
from durable_jobs._runtime.clock import in_thread
from durable_jobs._runtime.guards import Guard, LockGuards
from durable_jobs._runtime.members import (
    MAX_DEFERRED,
    MEMBERS_REFRESH,
    PREFERRED_GRACE,
    PREFERRED_WAIT_MAX,
    LockRounds,
    instance_fields,
    preferred,
)
from durable_jobs._runtime.parking import Handoff, _cannot_abort
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import CrossProcessLocks

__all__ = ["PREFERRED_GRACE", "PREFERRED_WAIT_MAX", "Busy", "InstanceLocks", "KeyedLocks"]

log = logging.getLogger("durable_jobs.runtime")

#: How often a call polls for an instance lock another process holds.
CROSS_PROCESS_LOCK_POLL = timedelta(milliseconds=50)


class Busy(Exception):
    """Another process holds the instance: its alarm is looked at again later."""


class KeyedLocks:
    """One lock per key, in ``_locks`` while held: its entry is the tasks waiting for
    it (None: none), and it is dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        #: By ``key.int``: a uuid's own ``__hash__`` is Python code, an int's is not.
        self._locks: dict[int, deque[trio.lowlevel.Task] | None] = {}

    def __call__(self, key: UUID) -> _KeyHold:
        return _KeyHold(self._locks, key)


class _KeyHold:
    """Holding one key of :class:`KeyedLocks` (a plain class: cheaper than a generator
    context manager on every run).

    A free key is taken with one dict entry, no lock object: a ``trio.Lock`` made for
    every run cost more than the rest of taking it. A held one is waited for in turn
    (fair, like ``trio.Lock``): the holder hands it to the first waiter on release.
    """

    __slots__ = ("key", "locks", "on_taken")

    def __init__(
        self,
        locks: dict[int, deque[trio.lowlevel.Task] | None],
        key: UUID,
        on_taken: Callable[[], None] | None = None,
    ) -> None:
        self.locks = locks
        self.key = key.int
        self.on_taken = on_taken

    async def __aenter__(self) -> bool:
        locks = self.locks
        # A free lock is taken without a schedule point (a cancellation still
        # raises here): one task switch less per run. A busy one is waited for.
        await trio.lowlevel.checkpoint_if_cancelled()
        size = len(locks)
        locks.setdefault(self.key, None)
        if len(locks) == size:
            await self._wait()
        if self.on_taken is not None:
            try:
                self.on_taken()
            except BaseException:
                self._release()
                raise
        return True

    async def _wait(self) -> None:
        """Wait until the holder hands the lock over (cancellable: then not held)."""
        locks, key = self.locks, self.key
        waiters = locks[key]
        if waiters is None:
            waiters = locks[key] = deque()
        task = trio.lowlevel.current_task()
        waiters.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            waiters.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def __aexit__(self, *exc: object) -> None:
        # self._release(), inline: on every run.
        locks, key = self.locks, self.key
        waiters = locks.pop(key)
        if waiters:
            trio.lowlevel.reschedule(waiters.popleft())
            locks[key] = waiters

    def _release(self) -> None:
        locks, key = self.locks, self.key
        waiters = locks.pop(key)
        if waiters:
            # Handed over: the first waiter holds it now (the entry stays).
            trio.lowlevel.reschedule(waiters.popleft())
            locks[key] = waiters


class _LockRequest(Handoff):
    """One cross-process lock call waiting to be made, and its outcome (the caller
    of a take waits for it uncancellably: a lock the store took must be known, so
    that it is released; a release queued for the batching task is not waited for:
    it is *detached*)."""

    __slots__ = ("detached", "error", "names", "op", "result", "scope", "uuid", "version")

    def __init__(self, op: str, uuid: UUID, scope: str, *, detached: bool = False) -> None:
        # Handoff.__init__'s fields, set here: one call less for every lock call.
        self.done = False
        self._waiter = None
        self.detached = detached
        self.op = op
        self.uuid = uuid
        self.scope = scope
        self.result = False
        #: The instance's index version, read right after the lock call (None: no row).
        self.version: int | None = None
        #: Its (kind, job, instance_id), read with the version (None: not read).
        self.names: tuple[str, str, str] | None = None
        self.error: Exception | None = None


class _SharedHold:
    """Holding an instance's lock in this process and across processes (see
    :meth:`InstanceLocks.hold`; a plain class: cheaper than a generator context
    manager on every run)."""

    __slots__ = ("detached", "guard", "inner", "owner", "scope", "taken", "uuid", "wait")

    def __init__(
        self,
        owner: InstanceLocks,
        locks: KeyedLocks,
        uuid: UUID,
        scope: str,
        *,
        wait: bool,
        on_taken: Callable[[], None] | None,
        detached: bool | None = None,
    ) -> None:
        self.owner = owner
        self.inner = _KeyHold(locks._locks, uuid, on_taken)
        self.uuid = uuid
        self.scope = scope
        self.wait = wait
        self.detached = not wait if detached is None else detached
        self.taken = False
        self.guard: Guard | None = None

    async def __aenter__(self) -> bool:
        owner, uuid, scope = self.owner, self.uuid, self.scope
        inner = self.inner
        try:
            await inner.__aenter__()
        except BaseException:
            if owner._handed:
                await owner._unclaimed(inner, uuid, scope)
            raise
        handed = owner._handed
        if handed and (inner.key, scope) in handed:
            # The holder before this one, in this process, passed its cross-process
            # lock on with the in-process one (see __aexit__): held already.
            handed.discard((inner.key, scope))
            self.taken = True
            busy = owner.guards._busy
            if busy:
                busy.pop((inner.key, scope), None)  # held here all along: no takeover
            try:
                guard = owner.guards.guard(uuid, scope)
                guard.__enter__()
                self.guard = guard
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            return True
        try:
            while not (taken := await owner._call("lock", uuid, scope)).result:
                # A call that waits for it too: if its holder lets it go without
                # committing (its session was cut while its handler ran), the take
                # waits the takeover grace, as an alarm run's does.
                owner.guards.found_busy(uuid, scope, taken.version)
                if not self.wait:
                    return False
                await trio.sleep(CROSS_PROCESS_LOCK_POLL.total_seconds())
        except BaseException:
            await self.inner.__aexit__()
            raise
        owner.held += 1
        if scope == "instance":
            owner._fresh[uuid.int] = taken.version
        if taken.names is not None:
            owner.names[uuid.int] = taken.names
        self.taken = True
        try:
            guards = owner.guards
            guard = guards.guard(uuid, scope)
            guard.__enter__()
            self.guard = guard
            if guards._busy:  # else after_takeover has nothing to look up: no coroutine
                await guards.after_takeover(uuid, scope, taken.version)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return True

    async def __aexit__(
        self,
        etype: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        guard, self.guard = self.guard, None
        handed = False
        try:
            if guard is not None:
                # Raises LockLost if the session was lost meanwhile.
                guard.__exit__(etype, exc, tb)
            # Only when a task here waits for the in-process lock (one call less a run).
            inner = self.inner
            handed = (
                etype is None
                and self.taken
                and bool(inner.locks.get(inner.key))
                and self._hand_over()
            )
        finally:
            released = False
            try:
                if self.taken and not handed:
                    self.taken = False
                    owner = self.owner
                    # An alarm run's release (it does not wait for a busy instance) is
                    # not waited for; a call's is: once the caller is answered, another
                    # process can take the instance at once.
                    detached = self.detached
                    request = owner._queue_release(self.uuid, self.scope, detach=detached)
                    if request is None:
                        await owner._release_now(self.uuid, self.scope)
                    elif not detached:
                        # The in-process lock first: a task here waiting for it may take
                        # the cross-process one over while its release is queued.
                        released = True
                        self.inner._release()
                        await owner._released(request)
                self.taken = False
            finally:
                if not released:
                    self.inner._release()

    def _hand_over(self) -> bool:
        """Pass the cross-process lock on to the task of this process that waits for the
        in-process one (it is next, see :class:`_KeyHold`), instead of releasing it for
        that task to take it again: one lock call less each, and the instance is not
        free in between anyway. Only a lock whose session is alive is passed on."""
        inner = self.inner
        if not inner.locks.get(inner.key):
            return False  # nobody here waits for it
        store = self.owner.cross
        assert store is not None  # only a shared store's holds are _SharedHolds
        session = store.lock_session(self.uuid, self.scope)
        if session is None or not store.session_alive(session):
            return False
        self.owner._handed.add((inner.key, self.scope))
        return True


def _release_failed(
    uuid: UUID, names: tuple[str, str, str] | None, exc: BaseException | None = None
) -> None:
    log.warning(
        "Could not release the lock of %s",
        uuid,
        exc_info=exc if exc is not None else True,
        extra=instance_fields(uuid, names),
    )


class InstanceLocks:
    """The instance and flush locks of one runtime."""

    def __init__(self, store: Store, lease: timedelta, *, worker: bool = True) -> None:
        self.store = store
        #: Whether this process runs alarms, and so counts among the store's workers
        #: (a process that only makes client calls is never preferred for an instance:
        #: the workers would put off its share of the alarms for nobody).
        self.worker = worker
        #: The store's cross-process locks (None: a store written by one process).
        self.cross = store if isinstance(store, CrossProcessLocks) else None
        #: Stops the work under a cross-process lock whose session was lost.
        self.guards = LockGuards(self.cross, lease)
        self._instance = KeyedLocks()
        self._flush = KeyedLocks()
        #: The cross-process locks passed on with their in-process lock to the task
        #: waiting for it, and not yet claimed by it: (``uuid.int``, scope).
        self._handed: set[tuple[int, str]] = set()
        #: Releases queued and not yet in a batch, which the next take of their lock
        #: in this process takes over (see :meth:`_call`).
        self._releasing: dict[tuple[int, str], _LockRequest] = {}
        #: Index versions of the instances this process holds across processes, by
        #: ``uuid.int`` (hashed in C: a UUID's hash is a Python call).
        self._fresh: dict[int, int | None] = {}
        self._limiter = trio.CapacityLimiter(1)
        self._queue: list[_LockRequest] = []
        self._ready = trio.Event()
        self._running = False
        #: Cross-process locks this process holds now (both scopes).
        self.held = 0
        #: (kind, job, instance_id) of instances held across processes, when known, by
        #: ``uuid.int`` (hashed in C: a UUID's hash is a Python call).
        self.names: dict[int, tuple[str, str, str]] = {}
        self.guards.names = self.names
        #: A store whose lock calls are made in one call (one thread hop), and list its
        #: workers.
        self._rounds = store if isinstance(store, LockRounds) else None
        #: The member ids of the workers serving the store (read with the lock calls of
        #: a runtime that runs alarms), this process's, and when they were read.
        self.members: tuple[int, ...] = ()
        #: Called when a worker left the list (its alarms are no longer put off).
        self.on_left: Callable[[], None] | None = None
        #: Due times of the alarms :meth:`defer` put off (the scheduler takes them back),
        #: and their instance's index version then.
        self.deferred: dict[UUID, tuple[datetime, int | None]] = {}
        self.member = 0
        self._members_at = -float("inf")

    def hold(
        self,
        uuid: UUID,
        *,
        scope: str = "instance",
        wait: bool = True,
        on_taken: Callable[[], None] | None = None,
        detached: bool | None = None,
    ) -> AbstractAsyncContextManager[bool]:
        """Hold ``uuid``'s ``scope`` lock in this process and, on a shared store, across
        processes; yields False (not held) if ``wait`` is False and another process has it.

        ``on_taken`` runs once the in-process lock is taken; it may raise to refuse
        the work (say, the runtime began to shut down while the call waited).
        ``detached``: the cross-process release is queued and not waited for (default:
        when ``wait`` is False, an alarm run's way; a client call waits for it, so
        another process can take the instance as soon as the caller is answered).
        """
        locks = self._instance if scope == "instance" else self._flush
        if self.cross is None:
            return _KeyHold(locks._locks, uuid, on_taken)
        return _SharedHold(
            self, locks, uuid, scope, wait=wait, on_taken=on_taken, detached=detached
        )

    async def _unclaimed(self, inner: _KeyHold, uuid: UUID, scope: str) -> None:
        """A task handed a cross-process lock (see :meth:`_SharedHold._hand_over`) did not
        take the in-process one after all (refused by ``on_taken``): the next waiter, if
        any, has both now; else the cross-process lock is released here."""
        key = (inner.key, scope)
        if key in self._handed and inner.key not in inner.locks:
            self._handed.discard(key)
            await self._release(uuid, scope, detach=True)

    def busy(self, uuid: UUID) -> bool:
        """Whether a task of this process holds (or is taking) ``uuid``'s instance lock."""
        return uuid.int in self._instance._locks

    def unsure(self, uuid: UUID) -> None:
        """A commit to ``uuid`` failed: whether it wrote anything is not known here (its
        index version is read again when it is next asked for)."""
        self._fresh.pop(uuid.int, None)

    async def _release(self, uuid: UUID, scope: str, *, detach: bool = False) -> None:
        """Release a cross-process lock (shielded: a lock taken must be released);
        ``detach``: queue it for the batching task and do not wait for it."""
        request = self._queue_release(uuid, scope, detach=detach)
        if request is None:
            await self._release_now(uuid, scope)
        elif not detach:
            await self._released(request)

    def _queue_release(self, uuid: UUID, scope: str, *, detach: bool) -> _LockRequest | None:
        """Forget ``uuid``'s ``scope`` lock here and queue its release for the batching
        task: it is made before any take queued after it (releases go first in a
        batch, and the batches in order), so before the next holder in this process
        takes the lock again, unless that holder takes it over first (see
        :meth:`_call`); and the task makes the calls queued when it stops. None (and
        nothing forgotten) if the task is not running."""
        if not self._running:
            return None
        number = uuid.int
        fresh = self._fresh
        known = number in fresh
        version = fresh.pop(number, None)
        # Forgotten at any release (a flush lock is released after the instance lock
        # taken inside it): nothing stays behind for instances no longer held.
        names = self.names.pop(number, None)
        self.held -= 1
        request = _LockRequest("unlock", uuid, scope, detached=detach)
        request.names = names
        if known or scope != "instance":
            # The index version the next holder here has if it takes the lock over (no
            # other process can change the instance while it is held).
            request.version = version
            self._releasing[(number, scope)] = request
        self._queue.append(request)
        self._ready.set()
        return request

    async def _released(self, request: _LockRequest) -> None:
        """Wait (uncancellably) until the queued release ``request`` was made."""
        await request.wait()
        error = request.error
        if error is not None:
            if not isinstance(error, DurableJobsError):
                raise error
            _release_failed(request.uuid, request.names)

    async def _release_now(self, uuid: UUID, scope: str) -> None:
        """Release a cross-process lock without the batching task (shielded)."""
        self._fresh.pop(uuid.int, None)
        names = self.names.pop(uuid.int, None)
        self.held -= 1
        try:
            with trio.CancelScope(shield=True):
                await self._call("unlock", uuid, scope)
        except DurableJobsError:
            _release_failed(uuid, names)

    def defer(
        self,
        uuid: UUID,
        due: datetime | None,
        now: datetime,
        *,
        busy: bool,
        version: int | None = None,
    ) -> datetime | None:
        """When to look again at ``uuid``'s alarm, due at ``due``, if another live worker
        is preferred for it (None: run it when due).

        A worker with free run tasks runs it once it is :data:`PREFERRED_GRACE`
        late (its preferred worker may be overloaded, or may not define the job);
        a ``busy`` one (due runs wait for a run task) lets it wait while it has
        work of its own, up to :data:`PREFERRED_WAIT_MAX` late.
        """
        if not _members.PREFER_WORKERS or due is None or len(self.members) < 2:
            return None
        if self.prefers(uuid):
            return None
        latest = due + PREFERRED_WAIT_MAX
        later = min(now + PREFERRED_GRACE if busy else due + PREFERRED_GRACE, latest)
        if later <= now:
            return None
        deferred = self.deferred
        deferred[uuid] = (due, version)
        if len(deferred) > MAX_DEFERRED:
            del deferred[next(iter(deferred))]
        return later

    def prefers(self, uuid: UUID) -> bool:
        """Whether this worker is the preferred one to run ``uuid``'s alarms among the
        live workers serving the store (always, alone or on a store that does not
        list them).

        Each instance has one preferred worker (rendezvous hashing of the member
        ids): the others let its alarms wait up to :data:`PREFERRED_GRACE`, so that
        workers do not take turns on one instance (each turn reloads it from the
        store, and they find each other's instances locked). A worker that died
        leaves the list with its lock session.
        """
        members = self.members
        if len(members) < 2 or self.member not in members:
            return True
        return preferred(uuid, members) == self.member

    def held_version(self, uuid: UUID) -> tuple[bool, int | None]:
        """(known, version): the index version read when this task took ``uuid``'s lock."""
        fresh = self._fresh
        number = uuid.int
        if number in fresh:
            return True, fresh[number]
        return False, None

    def committed(self, uuid: UUID, version: int) -> None:
        """This process wrote ``version`` of an instance it holds."""
        fresh = self._fresh
        if fresh:
            number = uuid.int
            if number in fresh:
                fresh[number] = version

    async def _call(self, op: str, uuid: UUID, scope: str) -> _LockRequest:
        """Take (``op="lock"``, without waiting) or release a cross-process lock.

        Calls that queue while one is in flight go to the store together, in one
        round trip (like group commit). The wait is not cancellable: a lock the
        store took must be known, so that it is released.
        """
        releasing = self._releasing
        if releasing and op == "lock":
            queued = releasing.pop((uuid.int, scope), None)
            if queued is not None and not queued.done and self._alive(uuid, scope):
                # Its release is still queued: the lock is taken over as it is held (the
                # release is not made, and this take neither), at the version it had.
                queued.result = True
                queued.finish()
                request = _LockRequest(op, uuid, scope)
                request.result = True
                request.version = queued.version
                request.names = queued.names
                return request
        request = _LockRequest(op, uuid, scope)
        if not self._running:
            await self._batch([request])
        else:
            self._queue.append(request)
            self._ready.set()
            # request.wait(), inline: a coroutine less on every lock call.
            if not request.done:
                request._waiter = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        if request.error is not None:
            raise request.error
        return request

    def _alive(self, uuid: UUID, scope: str) -> bool:
        """Whether ``uuid``'s ``scope`` lock is held here, in a session still alive."""
        store = self.cross
        assert store is not None  # only a store with cross-process locks has lock calls
        session = store.lock_session(uuid, scope)
        return session is not None and store.session_alive(session)

    def _take_queue(self) -> list[_LockRequest]:
        """The queued calls, for one batch (a release in it is no longer taken over)."""
        batch, self._queue = self._queue, []
        self._releasing.clear()
        return batch

    async def run(self) -> None:
        """Make the queued lock calls, a batch at a time (runs until cancelled).

        A runtime that runs alarms (:attr:`worker`) counts among the store's workers
        (see :meth:`prefers`); one that only makes client calls neither joins the
        list nor reads it."""
        self._running = True
        try:
            while True:
                while not self._queue:
                    rounds = self._rounds
                    if rounds is not None and len(self.members) > 1:
                        # Among other workers: notice one that left even while idle.
                        with trio.move_on_after(MEMBERS_REFRESH.total_seconds()) as idle:
                            await self._ready.wait()
                        if idle.cancelled_caught:
                            with trio.CancelScope(shield=True):
                                await self._round(rounds, [])
                            continue
                    else:
                        await self._ready.wait()
                    self._ready = trio.Event()
                if self._releasing:
                    # Let the tasks woken with these releases run first (a scheduler
                    # pass, then the runs it starts): the next holder of a lock here
                    # takes it over while its release is queued (see _call).
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                batch = self._take_queue()
                with trio.CancelScope(shield=True):
                    await self._batch(batch)
        finally:
            # Stopped (cancelled, say): the calls queued and not yet made are made now
            # (their callers wait for them); a call from now on is made by its caller.
            self._running = False
            self._releasing.clear()
            with trio.CancelScope(shield=True):
                while self._queue:
                    batch = self._take_queue()
                    await self._batch(batch)

    async def _batch(self, batch: list[_LockRequest]) -> None:
        """Releases first, then takes, in one store call on the store's own lock
        connection (it neither waits for nor holds up the pooled connections); for the
        instances taken, the index versions are read in the same call. Releases taken
        over meanwhile (see :meth:`_call`) are done already: they are left out."""
        batch = [r for r in batch if not r.done]
        if not batch:
            return
        if self._rounds is not None:
            await self._round(self._rounds, batch)
            return
        store = self.cross
        assert store is not None  # only a store with cross-process locks has lock calls

        def take(keys: list[tuple[UUID, str]]) -> tuple[list[bool], dict[UUID, int]]:
            held = store.try_lock_many(keys)
            # Of those held elsewhere too: a takeover later compares them.
            return held, store.index_versions(list({uuid for uuid, _ in keys}))

        def release(keys: list[tuple[UUID, str]]) -> tuple[list[bool], dict[UUID, int]]:
            store.unlock_many(keys)
            return [True] * len(keys), {}

        for op, call in (("unlock", release), ("lock", take)):
            group = [r for r in batch if r.op == op]
            if not group:
                continue
            try:
                held, versions = await in_thread(
                    call, [(r.uuid, r.scope) for r in group], limiter=self._limiter
                )
            except Exception as exc:
                for r in group:
                    r.error = exc
                    if op == "unlock" and r.detached and isinstance(exc, DurableJobsError):
                        _release_failed(r.uuid, r.names, exc)
            else:
                for r, ok in zip(group, held, strict=True):
                    r.result = ok
                    r.version = versions.get(r.uuid)
        for r in batch:
            r.finish()

    async def _round(self, store: LockRounds, batch: list[_LockRequest]) -> None:
        """:meth:`_batch` in one store call, reading the list of workers now and then."""
        release = [(r.uuid, r.scope) for r in batch if r.op == "unlock"]
        takes = [r for r in batch if r.op == "lock"]
        now = trio.current_time()
        # The list of workers serves only the preference (off: never read, never joined).
        members = (
            _members.PREFER_WORKERS
            and self.worker
            and self._running
            and now >= self._members_at + MEMBERS_REFRESH.total_seconds()
        )
        try:
            held, rows, found, me = await in_thread(
                lambda: store.lock_round(
                    release,
                    [(r.uuid, r.scope) for r in takes],
                    members=members,
                    join=members,
                ),
                limiter=self._limiter,
            )
        except Exception as exc:
            for r in takes:  # a failed release went with its session
                r.error = exc
        else:
            # By the uuid's number: a UUID's hash is a Python call.
            found_rows = {u.int: row for u, row in rows.items()} if rows else {}
            for r, ok in zip(takes, held, strict=True):
                r.result = ok
                row = found_rows.get(r.uuid.int)
                if row is not None:
                    r.version = row[0]
                    r.names = (row[1], row[2], row[3])
            if found is not None:
                self._members_at = now
                listed = tuple(found)
                left = not set(self.members) <= set(listed)
                self.members, self.member = listed, me
                if left and self.on_left is not None:
                    # Alarms put off for a worker that is gone: look at them again now.
                    self.on_left()
        for r in batch:
            r.finish()
