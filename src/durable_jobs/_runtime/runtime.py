"""The runtime: one scheduler task, a bounded pool of runs, per-instance locks.

Every command follows the same shape: take the instance's lock, load the
committed aggregate (from the hot cache or the store), decide on a *copy*
with the pure domain, run the handler if there is one, commit the copy's
events in one store transaction, and only then make the copy the cached,
committed instance. Readers use the cache without the lock, so they only
ever see committed state. Store calls run in worker threads under a
library-owned ``CapacityLimiter``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

import trio

from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance, FlushTicket
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import Intents, JobInstance, RunTicket
from durable_jobs._domain.schedules import catch_up
from durable_jobs._domain.task import TaskInstance
from durable_jobs._errors import (
    ConcurrencyError,
    DurableJobsError,
    HandlerError,
    StoreError,
    ValidationError,
)
from durable_jobs._records import RecordedEvent, to_records
from durable_jobs._registry import (
    ContinuousJob,
    DebounceJob,
    JobDefinition,
    Registry,
    TaskJob,
    TypeCodec,
)
from durable_jobs._runtime.clock import Clock, in_thread
from durable_jobs._runtime.contexts import (
    ContinuousContext,
    DebounceContext,
    DebounceEventContext,
    TaskContext,
)
from durable_jobs._runtime.window import AlarmKey, AlarmWindow
from durable_jobs._store.base import Store

__all__ = ["Observer", "Runtime"]

log = logging.getLogger("durable_jobs.runtime")

_A = TypeVar("_A", bound=JobInstance)
_T = TypeVar("_T")

Observer = Callable[[RecordedEvent], None]
#: Longest key accepted for ``idempotency_key`` (characters).
MAX_IDEMPOTENCY_KEY = 1024
#: Tries of a client command that loses a version race to another process.
COMMAND_TRIES = 5
#: Delay before a run that failed inside the runtime (store down, corrupt row) is tried again.
RETRY_BROKEN_AFTER = timedelta(seconds=5)
MAX_RETRY_BROKEN_AFTER = timedelta(minutes=5)
#: First and longest wait before the alarm index is read again after a failed read.
RELOAD_BACKOFF = timedelta(seconds=1)
MAX_RELOAD_BACKOFF = timedelta(seconds=30)
#: How often a command polls for an instance lock another process holds.
CROSS_PROCESS_LOCK_POLL = timedelta(milliseconds=50)
#: When an alarm whose instance another process is running is looked at again.
BUSY_RECHECK = timedelta(seconds=1)


#: Most commits written in one transaction.
MAX_GROUP_COMMIT = 100


class _Commit:
    """One aggregate waiting to be written, and the outcome of its write."""

    __slots__ = ("agg", "done", "error")

    def __init__(self, agg: JobInstance) -> None:
        self.agg = agg
        self.done = trio.Event()
        self.error: Exception | None = None


class RuntimeClosed(DurableJobsError):
    """The ``open_jobs`` block has ended: no new run starts."""

    def __init__(self) -> None:
        super().__init__(
            "This jobs runtime is closed (its open_jobs block has ended); no new run starts."
        )


class _LockRequest:
    """One cross-process lock call waiting to be made, and its outcome."""

    __slots__ = ("done", "error", "op", "result", "scope", "uuid", "version")

    def __init__(self, op: str, uuid: UUID, scope: str) -> None:
        self.op = op
        self.uuid = uuid
        self.scope = scope
        self.done = trio.Event()
        self.result = False
        #: The instance's index version, read once the lock was taken (None: no row).
        self.version: int | None = None
        self.error: Exception | None = None


class _Busy(Exception):
    """Another process holds the instance: its alarm is looked at again later."""


def clone(agg: _A) -> _A:
    """A copy of a committed aggregate to decide on (the cached one is never mutated)."""
    new = object.__new__(type(agg))
    new.__dict__.update(agg.__dict__)
    new._pending_events = []
    d = agg.d
    # Events replace values (states are never mutated in place) except these two
    # containers, which they update: copying them is enough, and much cheaper
    # than a deep copy.
    new.d = d.model_copy(update={"closed": list(d.closed), "idempotency": dict(d.idempotency)})
    return new


class _KeyedLocks:
    """One ``trio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[UUID, tuple[trio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def __call__(self, key: UUID) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (trio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class Runtime:
    """Owns the scheduler, the runs and the hot aggregates of one ``open_jobs``."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        clock: Clock,
        max_concurrent_runs: int,
        shutdown_grace: timedelta,
        alarm_window: int,
        poll_interval: timedelta | None,
        cache_size: int,
        observers: Sequence[Observer],
        run_alarms: bool = True,
    ) -> None:
        self.registry = registry
        #: False: a client only (commands run, alarms are left to other processes).
        self.run_alarms = run_alarms
        self.store = store
        self.clock = clock
        self.shutdown_grace = shutdown_grace
        self.poll_interval = poll_interval
        self.cache_size = cache_size
        self._observers: list[Observer] = list(observers)
        self._limiter = trio.CapacityLimiter(max(1, store.max_concurrency))
        self._run_limiter = trio.CapacityLimiter(max_concurrent_runs)
        self._lock_limiter = trio.CapacityLimiter(1)
        self._lock_queue: list[_LockRequest] = []
        #: Index versions of the instances this process holds across processes.
        self._fresh: dict[UUID, int | None] = {}
        self._lock_ready = trio.Event()
        self._locker_running = False
        self._locks = _KeyedLocks()
        self._flush_locks = _KeyedLocks()
        self._cache: OrderedDict[UUID, JobInstance] = OrderedDict()
        self._window = AlarmWindow(alarm_window)
        self._queued: set[UUID] = set()
        self._broken: dict[UUID, tuple[datetime, timedelta]] = {}
        self._unknown_jobs: set[tuple[str, str]] = set()
        self._pending = 0
        self._commands = 0
        self._dirty = run_alarms
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._reload_blocked = False
        self._reload_now = False
        self._closing = False
        self._closed = False
        self._runs_nursery: trio.Nursery | None = None
        self._group_commit = False
        self._commit_queue: list[_Commit] = []
        self._commit_ready = trio.Event()
        self._scheduler_scope: trio.CancelScope | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`: the scheduler, then every run it started."""
        unsubscribe = self.clock.on_jump(self._kick)
        try:
            async with trio.open_nursery() as system:
                if self.run_alarms:
                    system.start_soon(self._listen)
                if self.store.shared:
                    system.start_soon(self._locker)
                if self.store.blocking:
                    # One committer: commits serialise in the store anyway (SQLite has
                    # one writer; eventsourcing's Postgres recorder locks the events
                    # table), so a single writer makes the biggest groups.
                    system.start_soon(self._committer)
                    self._group_commit = True
                async with trio.open_nursery() as runs:
                    self._runs_nursery = runs
                    async with trio.open_nursery() as sched:
                        self._scheduler_scope = sched.cancel_scope
                        if self.run_alarms:
                            await sched.start(self._scheduler)
                        else:
                            sched.start_soon(trio.sleep_forever)
                        task_status.started()
                # Every run has ended, so no commit is waiting: stop the committers.
                self._group_commit = False
                system.cancel_scope.cancel()
        finally:
            unsubscribe()
            self._closed = True

    async def shutdown(self) -> None:
        """Start no new runs; give runs in flight ``shutdown_grace``, then cancel them."""
        self._closing = True
        if self._scheduler_scope is not None:
            self._scheduler_scope.cancel()
        with trio.move_on_after(self.shutdown_grace.total_seconds()):
            while self._pending or self._commands:
                await self._wait_changed()
        if self._pending:
            log.warning(
                "%d run(s) still in flight after the %s shutdown grace were cancelled; "
                "they run again after the next start",
                self._pending,
                self.shutdown_grace,
            )
        if self._runs_nursery is not None:
            self._runs_nursery.cancel_scope.cancel()

    def check_open(self) -> None:
        if self._closing or self._closed:
            raise RuntimeClosed

    # ---- bookkeeping -------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _kick(self) -> None:
        """Make the scheduler look at its window again."""
        self._dirty = self.run_alarms
        self._wake.set()
        self._notify()

    def is_idle(self) -> bool:
        """Nothing due, nothing running, nothing for the scheduler to look at."""
        return (
            not self._dirty
            and self._pending == 0
            and not self._window.has_due(self.clock.now())
            and not (self._window.needs_reload(self.clock.now()) and not self._reload_blocked)
        )

    async def wait_idle(self) -> None:
        """Return once everything due has run and committed (virtual time may pass meanwhile)."""
        while not self.is_idle():
            await self._wait_changed()
        await trio.lowlevel.checkpoint()

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    # ---- instance locks ----------------------------------------------------------------

    @asynccontextmanager
    async def _hold(
        self, uuid: UUID, *, scope: str = "instance", wait: bool = True, starting: bool = True
    ) -> AsyncIterator[bool]:
        """Hold ``uuid``'s ``scope`` lock in this process and, on a shared store, across
        processes; yields False (not held) if ``wait`` is False and another process has it.

        Work that *starts* under the lock (``starting``) is refused once shutdown began:
        a call that waited for a busy instance must not run after the block ended.
        """
        locks = self._locks if scope == "instance" else self._flush_locks
        async with locks(uuid):
            if starting and self._closing:
                raise RuntimeClosed
            if not self.store.shared:
                yield True
                return
            while not (taken := await self._lock_call("lock", uuid, scope)).result:
                if not wait:
                    break
                await trio.sleep(CROSS_PROCESS_LOCK_POLL.total_seconds())
            else:
                if scope == "instance":
                    # Read under the lock: no other process can change it meanwhile.
                    self._fresh[uuid] = taken.version
                try:
                    yield True
                finally:
                    self._fresh.pop(uuid, None)
                    with trio.CancelScope(shield=True):
                        try:
                            await self._lock_call("unlock", uuid, scope)
                        except DurableJobsError:
                            log.warning("Could not release the lock of %s", uuid, exc_info=True)
                return
            yield False

    # ---- store access ----------------------------------------------------------------

    async def io(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call the synchronous store in a worker thread (taking no virtual time)."""
        if not self.store.blocking:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await in_thread(fn, *args, limiter=self._limiter)

    async def _lock_call(self, op: str, uuid: UUID, scope: str) -> _LockRequest:
        """Take (``op="lock"``, without waiting) or release a cross-process lock.

        Calls that queue while one is in flight go to the store together, in one
        round trip (like group commit). The wait is shielded: a lock the store
        took must be known, so that it is released.
        """
        request = _LockRequest(op, uuid, scope)
        if not self._locker_running:
            await self._lock_batch([request])
        else:
            self._lock_queue.append(request)
            self._lock_ready.set()
            with trio.CancelScope(shield=True):
                await request.done.wait()
        if request.error is not None:
            raise request.error
        return request

    async def _locker(self) -> None:
        self._locker_running = True
        try:
            while True:
                while not self._lock_queue:
                    await self._lock_ready.wait()
                    self._lock_ready = trio.Event()
                batch, self._lock_queue = self._lock_queue, []
                with trio.CancelScope(shield=True):
                    await self._lock_batch(batch)
        finally:
            self._locker_running = False

    async def _lock_batch(self, batch: list[_LockRequest]) -> None:
        """Releases first, then takes, each group in one store call on the store's own
        lock connection (it neither waits for nor holds up the pooled connections);
        for instance locks taken, the index versions are read in the same call."""
        store = self.store

        def take(keys: list[tuple[UUID, str]]) -> tuple[list[bool], dict[UUID, int]]:
            held = store.try_lock_many(keys)
            taken = [uuid for (uuid, scope), ok in zip(keys, held, strict=True) if ok]
            return held, (store.index_versions(taken) if taken else {})

        def release(keys: list[tuple[UUID, str]]) -> tuple[list[bool], dict[UUID, int]]:
            store.unlock_many(keys)
            return [True] * len(keys), {}

        for op, call in (("unlock", release), ("lock", take)):
            group = [r for r in batch if r.op == op]
            if not group:
                continue
            try:
                held, versions = await in_thread(
                    call, [(r.uuid, r.scope) for r in group], limiter=self._lock_limiter
                )
            except Exception as exc:
                for r in group:
                    r.error = exc
            else:
                for r, ok in zip(group, held, strict=True):
                    r.result = ok
                    r.version = versions.get(r.uuid)
        for r in batch:
            r.done.set()

    def _remember(self, agg: JobInstance) -> None:
        cached = self._cache.get(agg.id)
        if cached is not None and cached.version > agg.version:
            return
        self._cache[agg.id] = agg
        self._cache.move_to_end(agg.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _evict(self, uuid: UUID) -> None:
        self._cache.pop(uuid, None)

    async def load(self, cls: type[_A], job: str, instance_id: str) -> _A | None:
        """The committed instance (never to be mutated: decide on a :func:`clone`)."""
        uuid = instance_uuid(cls.kind, job, instance_id)
        agg = self._cache.get(uuid)
        if agg is not None and self.store.shared:
            # Another process may have changed it: check the version, which the
            # lock call already read if this task holds the instance.
            if uuid in self._fresh:
                version = self._fresh[uuid]
            else:
                row = await self.io(self.store.index_row, uuid)
                version = None if row is None else row.version
            if version != agg.version:
                self._evict(uuid)
                agg = None
        if agg is None:
            agg = await self.io(self.store.get, cls.kind, job, instance_id)
            if agg is None:
                return None
            self._remember(agg)
        else:
            self._cache.move_to_end(uuid)
        if not isinstance(agg, cls):
            msg = f"Stored instance {uuid} is a {type(agg).__name__}, expected a {cls.__name__}."
            raise StoreError(msg)
        return agg

    async def save(self, agg: JobInstance, *, before: JobInstance | None) -> None:
        """Commit ``agg``'s pending events; then it is the committed, cached instance."""
        if not agg.pending_events:
            return
        events = list(agg.pending_events)
        try:
            await self._commit(agg)
        except BaseException:
            self._evict(agg.id)
            raise
        self._remember(agg)
        if agg.id in self._fresh:
            self._fresh[agg.id] = agg.version
        d = agg.d
        if self.run_alarms:
            self._window.set(AlarmKey(agg.id, d.kind, d.job, d.instance_id), d.alarm_at)
        self._reload_blocked = False
        self._kick()
        if self._observers:
            self._emit(events, agg, before)

    # ---- group commit --------------------------------------------------------------------

    async def _commit(self, agg: JobInstance) -> None:
        """Save ``agg``, in one transaction with whatever other commits are waiting."""
        if not self._group_commit:
            await self.io(self.store.save, agg)
            return
        item = _Commit(agg)
        self._commit_queue.append(item)
        self._commit_ready.set()
        # The write is already on its way: wait for its outcome even if cancelled.
        with trio.CancelScope(shield=True):
            await item.done.wait()
        if item.error is not None:
            raise item.error

    async def _committer(self) -> None:
        """Write waiting commits together: everything that queued during the last write."""
        while True:
            while not self._commit_queue:
                await self._commit_ready.wait()
                self._commit_ready = trio.Event()
            batch = self._commit_queue[:MAX_GROUP_COMMIT]
            del self._commit_queue[:MAX_GROUP_COMMIT]
            with trio.CancelScope(shield=True):
                await self._write(batch)

    async def _write(self, batch: list[_Commit]) -> None:
        try:
            await self._save_batch(batch)
        except BaseException as fatal:
            # Not a store failure (KeyboardInterrupt, a bug): the writer dies and takes
            # the runtime down with it, but no waiting commit may wait for it forever.
            for c in batch:
                if c.error is None:
                    msg = "The commit's outcome is unknown: the store write was interrupted."
                    c.error = DurableJobsError(msg)
                    c.error.__cause__ = fatal
            raise
        finally:
            for c in batch:
                c.done.set()

    async def _save_batch(self, batch: list[_Commit]) -> None:
        try:
            await self.io(self.store.save, *(c.agg for c in batch))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                # One commit's conflict must not fail the others: write each alone.
                for c in batch:
                    try:
                        await self.io(self.store.save, c.agg)
                    except Exception as one:
                        c.error = one

    def _emit(self, events: list[Any], agg: JobInstance, before: JobInstance | None) -> None:
        d = agg.d
        records = to_records(
            events,
            kind=d.kind,
            job=d.job,
            instance_id=d.instance_id,
            before=clone(before) if before is not None else None,
        )
        for record in records:
            for observer in list(self._observers):
                try:
                    observer(record)
                except Exception:
                    log.exception("An observer raised on %s; it was ignored", record.name)

    def decode_state(self, codec: TypeCodec[Any], agg: JobInstance, data: Any) -> Any:
        """Stored state as the job's type; a row that no longer fits is a StoreError."""
        if data is None:
            return None
        try:
            return codec.from_json(data)
        except Exception as exc:
            d = agg.d
            msg = (
                f"The stored state of {d.kind} job {d.job!r} instance {d.instance_id!r} "
                f"(version {agg.version - len(agg.pending_events)}) does not fit the job's "
                "state type "
                f"{codec.tp!r}: {exc}. Nothing was changed; migrate or terminate the instance."
            )
            raise StoreError(msg) from exc

    async def command(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """Run a client command, again (reloaded) if another process won a version race."""
        self.check_open()
        self._commands += 1
        try:
            for attempt in range(1, COMMAND_TRIES + 1):
                try:
                    return await fn()
                except ConcurrencyError:
                    if attempt == COMMAND_TRIES:
                        raise
                    log.info("version conflict, retrying the command (try %d)", attempt + 1)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._commands -= 1
            self._notify()

    # ---- the scheduler -----------------------------------------------------------------

    async def _reload(self) -> None:
        rows = await self.io(self.store.next_alarms, self._window.size)
        self._window.load(rows)
        # Alarms of instances already running stay in the index until their commit.
        self._reload_blocked = self._window.needs_reload(self.clock.now())

    async def _scheduler(self, *, task_status: trio.TaskStatus[None]) -> None:
        await self._reload()
        last_poll = trio.current_time()
        outage = timedelta(0)
        retry_reload_at = -math.inf
        task_status.started()
        while True:
            now = self.clock.now()
            poll = self.poll_interval
            if (
                self._reload_now
                or (self._window.needs_reload(now) and not self._reload_blocked)
                or (poll is not None and trio.current_time() >= last_poll + poll.total_seconds())
            ) and trio.current_time() >= retry_reload_at:
                self._reload_now = False
                try:
                    await self._reload()
                except DurableJobsError as exc:
                    # The store is down for a while: keep serving what the window
                    # holds (its runs fail and back off) and read it again later.
                    outage = min(outage * 2, MAX_RELOAD_BACKOFF) if outage else RELOAD_BACKOFF
                    log.warning("Could not read the alarm index (%s); again in %s", exc, outage)
                    retry_reload_at = trio.current_time() + outage.total_seconds()
                else:
                    outage = timedelta(0)
                    retry_reload_at = -math.inf
                    last_poll = trio.current_time()
                    continue
            for key in self._window.pop_due(now):
                self._dispatch(key, now)
            self._dirty = False
            self._notify()
            # The next alarm, or the horizon while it is ahead. A horizon already
            # passed means a reload that waits (for runs in flight, or after a failed
            # read): a finished run kicks the scheduler, the retry time is below.
            wake_at = self._window.next_due()
            horizon = None if self._window.complete else self._window.horizon
            if horizon is not None and horizon > now:
                wake_at = horizon if wake_at is None else min(wake_at, horizon)
            deadline = math.inf
            if wake_at is not None:
                deadline = self.clock.deadline(wake_at)
                if deadline <= trio.current_time():
                    deadline = trio.current_time() + 1e-6
            if poll is not None:
                deadline = min(deadline, last_poll + poll.total_seconds())
            if outage:
                deadline = min(deadline, retry_reload_at)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _listen(self) -> None:
        """Hear of alarms that other processes commit, and make the scheduler reload.

        Without a listener (single-process stores) this returns at once; if the
        listener's connection fails it is opened again, backing off, while the
        poll (``poll_interval``) keeps alarms from being missed meanwhile.
        """
        backoff = RELOAD_BACKOFF
        while True:
            try:
                listener = await self.io(self.store.open_alarm_listener)
            except DurableJobsError as exc:
                log.warning("Could not listen for other processes' alarms (%s)", exc)
            else:
                if listener is None:
                    return
                fd = listener.fileno()
                try:
                    while True:
                        await trio.lowlevel.wait_readable(fd)
                        if listener.drain():
                            self._reload_now = True
                            self._kick()
                        backoff = RELOAD_BACKOFF
                except DurableJobsError as exc:
                    log.warning("The alarm listener stopped (%s); opening it again", exc)
                finally:
                    trio.lowlevel.notify_closing(fd)
                    listener.close()
            await trio.sleep(backoff.total_seconds())
            backoff = min(backoff * 2, MAX_RELOAD_BACKOFF)

    def _dispatch(self, key: AlarmKey, now: datetime) -> None:
        if key.uuid in self._queued or self._runs_nursery is None:
            return
        broken = self._broken.get(key.uuid)
        if broken is not None and broken[0] > now:
            self._window.set(key, broken[0])
            return
        self._queued.add(key.uuid)
        self._pending += 1
        self._runs_nursery.start_soon(self._alarm_run, key, name=f"durable_jobs run {key.job}")

    async def _alarm_run(self, key: AlarmKey) -> None:
        try:
            async with self._run_limiter:
                await self._fire(key)
            self._broken.pop(key.uuid, None)
        except _Busy:
            self._window.set(key, self.clock.now() + BUSY_RECHECK)
        except RuntimeClosed:
            pass  # shutting down: the alarm stays in the store for the next start
        except ConcurrencyError:
            # Another process committed to this instance first: look at it afresh.
            self._evict(key.uuid)
            self._window.set(key, self.clock.now())
        except Exception as exc:
            self._run_broke(key, exc)
        finally:
            self._queued.discard(key.uuid)
            self._pending -= 1
            self._reload_blocked = False
            self._kick()

    def _run_broke(self, key: AlarmKey, exc: Exception) -> None:
        _, delay = self._broken.get(key.uuid, (None, RETRY_BROKEN_AFTER / 2))
        delay = min(delay * 2, MAX_RETRY_BROKEN_AFTER)
        retry_at = self.clock.now() + delay
        self._broken[key.uuid] = (retry_at, delay)
        self._evict(key.uuid)
        self._window.set(key, retry_at)
        level = logging.ERROR if isinstance(exc, DurableJobsError) else logging.CRITICAL
        log.log(
            level,
            "The alarm of %s job %r instance %r could not run (%s); trying again in %s",
            key.kind,
            key.job,
            key.instance_id,
            exc,
            delay,
            exc_info=not isinstance(exc, DurableJobsError),
        )

    async def _fire(self, key: AlarmKey) -> None:
        try:
            job = self.registry.get(cast("Kind", key.kind), key.job)
        except DurableJobsError:
            if (key.kind, key.job) not in self._unknown_jobs:
                self._unknown_jobs.add((key.kind, key.job))
                log.warning(
                    "An alarm is due for %s job %r, which this registry does not define; "
                    "its instances wait until a process that defines it runs them",
                    key.kind,
                    key.job,
                )
            return
        if isinstance(job, ContinuousJob):
            await self.continuous_run(job, key.instance_id, manual=False)
        elif isinstance(job, DebounceJob):
            await self.flush(job, key.instance_id, manual=False)
        elif isinstance(job, TaskJob):
            await self.task_execute(job, key.instance_id, by_alarm=True)
        cached = self._cache.get(key.uuid)
        if cached is not None:
            self._window.set(key, cached.d.alarm_at)

    # ---- handlers ----------------------------------------------------------------------

    async def _exhausted_action(
        self, job: JobDefinition, error: BaseException, ctx: object
    ) -> str:
        assert job.retry is not None
        hook = job.retry.on_exhausted
        if isinstance(hook, str):
            return hook
        try:
            decision = hook(error, ctx)
            if inspect.isawaitable(decision):
                decision = await decision
        except Exception:
            log.exception(
                "The on_exhausted hook of job %r raised; the instance is paused", job.name
            )
            return "pause"
        if decision is None:
            return "pause"
        if decision not in ("terminate", "pause", "continue"):
            log.error(
                "The on_exhausted hook of job %r returned %r (expected 'terminate', 'pause', "
                "'continue' or None); the instance is paused",
                job.name,
                decision,
            )
            return "pause"
        return cast(str, decision)

    # ---- continuous --------------------------------------------------------------------

    async def continuous_start(
        self, job: ContinuousJob[Any], instance_id: str, state_json: Any
    ) -> tuple[ContinuousInstance, bool]:
        uuid = instance_uuid("continuous", job.name, instance_id)
        async with self._hold(uuid):
            committed = await self.load(ContinuousInstance, job.name, instance_id)
            if committed is not None and committed.live:
                return committed, False
            now = self.clock.now()
            agg = clone(committed) if committed is not None else None
            first = ContinuousInstance.first_run_at(
                job.schedule, now=now, start_immediately=job.start_immediately
            )
            agg, created = ContinuousInstance.start(
                agg, job.name, instance_id, now=now, state=state_json, first_run_at=first
            )
            await self.save(agg, before=committed)
            return agg, created

    async def continuous_run(
        self, job: ContinuousJob[Any], instance_id: str, *, manual: bool
    ) -> tuple[bool, bool, bool]:
        """One run of ``execute``: (triggered, terminated, retry_scheduled)."""
        uuid = instance_uuid("continuous", job.name, instance_id)
        async with self._hold(uuid, wait=manual) as held:
            if not held:
                raise _Busy
            committed = await self.load(ContinuousInstance, job.name, instance_id)
            if committed is None or not committed.live:
                return False, False, False
            now = self.clock.now()
            due = committed.d.alarm_at
            if not manual:
                if due is None or due > now:
                    return False, False, False
                if job.misfire == "skip" and committed.d.attempt == 0 and committed.d.run_count:
                    at = catch_up(job.schedule, due, now, "skip")
                    if at > now:
                        agg = clone(committed)
                        agg.reschedule(at, now=now)
                        await self.save(agg, before=committed)
                        return False, False, False
            agg = clone(committed)
            ticket = agg.next_ticket(fresh=manual)

            def new_ctx() -> ContinuousContext[Any]:
                return ContinuousContext(
                    codec=job.state_codec,
                    state=self.decode_state(job.state_codec, committed, committed.d.state),
                    instance_id=instance_id,
                    job_name=job.name,
                    run_count=ticket.run_count,
                    attempt=ticket.attempt,
                )

            ctx = new_ctx()
            started = self.clock.now()
            try:
                await job.execute(ctx)
                intents = ctx._intents()
            except Exception as exc:
                end = self.clock.now()
                retry_at = agg.plan_retry(ticket, job.retry, now=end)
                exhausted = None
                if retry_at is None and job.retry is not None:
                    # The hook sees the committed state, not the failed try's changes.
                    exhausted = await self._exhausted_action(job, exc, new_ctx())
                agg.fail_run(
                    ticket,
                    exc,
                    now=end,
                    schedule=job.schedule,
                    retry=job.retry,
                    retry_at=retry_at,
                    exhausted=cast(Any, exhausted),
                )
                await self.save(agg, before=committed)
                return True, not agg.live, retry_at is not None
            end = self.clock.now()
            agg.complete_run(
                ticket,
                intents,
                now=end,
                duration=(end - started).total_seconds(),
                schedule=job.schedule,
            )
            await self.save(agg, before=committed)
            return True, not agg.live, False

    async def terminate(
        self, cls: type[JobInstance], job: str, instance_id: str, reason: str | None
    ) -> bool:
        uuid = instance_uuid(cls.kind, job, instance_id)
        async with self._hold(uuid):
            committed = await self.load(cls, job, instance_id)
            if committed is None or not committed.live:
                return False
            agg = clone(committed)
            agg.terminate(now=self.clock.now(), reason=reason)
            await self.save(agg, before=committed)
            return True

    # ---- debounce ----------------------------------------------------------------------

    async def debounce_add(
        self,
        job: DebounceJob[Any, Any],
        instance_id: str,
        event: Any,
        event_json: Any,
        key: str | None,
    ) -> tuple[DebounceInstance, bool, bool]:
        """(instance, opened a batch, duplicate)."""
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with self._hold(uuid):
            committed = await self.load(DebounceInstance, job.name, instance_id)
            now = self.clock.now()
            live = committed if committed is not None and committed.live else None
            # Keys outlive a termination too (a restarted instance keeps them).
            if (
                key is not None
                and committed is not None
                and committed.is_duplicate(key, now=now, window=job.idempotency_window)
            ):
                return committed, False, True
            if job.reducer is None:
                new_json = event_json
            else:
                prior = None
                if live is not None and live.d.event_count:
                    prior = self.decode_state(job.state_codec, live, live.d.state)
                ctx: DebounceEventContext[Any, Any] = DebounceEventContext(
                    event=event,
                    state=prior,
                    event_count=(live.d.event_count if live is not None else 0) + 1,
                    instance_id=instance_id,
                    job_name=job.name,
                )
                try:
                    new = job.reducer(ctx)
                    if inspect.isawaitable(new):
                        new = await new
                except Exception as exc:
                    msg = (
                        f"The on_event reducer of debounce job {job.name!r} raised for "
                        f"instance {instance_id!r}: {exc!r}. The event was not added."
                    )
                    raise HandlerError(msg) from exc
                new_json = job.state_codec.to_json(new)  # ValidationError: nothing added
            agg = clone(committed) if committed is not None else None
            agg, opened = DebounceInstance.add(
                agg,
                job.name,
                instance_id,
                event_json,
                now=now,
                new_state=new_json,
                idempotency_key=key,
                window=job.idempotency_window,
                flush_after=job.flush_after,
                max_events=job.max_events,
            )
            await self.save(agg, before=committed)
            return agg, opened, False

    async def flush(
        self, job: DebounceJob[Any, Any], instance_id: str, *, manual: bool
    ) -> tuple[bool, int, str, bool]:
        """One flush: (flushed, event_count, reason, retry_scheduled)."""
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with self._hold(uuid, scope="flush", wait=manual) as held:
            if not held:
                raise _Busy
            async with self._hold(uuid):
                committed = await self.load(DebounceInstance, job.name, instance_id)
                if committed is None:
                    return False, 0, "empty", False
                agg = clone(committed)
                ft = agg.begin_flush(
                    now=self.clock.now(), manual=manual, flush_after=job.flush_after
                )
                if ft is None:
                    return False, 0, "empty", False
                await self.save(agg, before=committed)
                state = self.decode_state(job.state_codec, agg, ft.batch.state)
            return await self._run_flush(job, instance_id, ft, state)

    async def _run_flush(
        self, job: DebounceJob[Any, Any], instance_id: str, ft: FlushTicket, state: Any
    ) -> tuple[bool, int, str, bool]:
        ctx: DebounceContext[Any] = DebounceContext(
            state=state,
            event_count=ft.batch.event_count,
            debounce_started_at=ft.batch.started_at,
            flush_reason=ft.reason,
            attempt=ft.ticket.attempt,
            instance_id=instance_id,
            job_name=job.name,
        )
        count = ft.batch.event_count
        started = self.clock.now()
        error: Exception | None = None
        try:
            await job.execute(ctx)
        except Exception as exc:
            error = exc
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with self._hold(uuid, starting=False):
            committed = await self.load(DebounceInstance, job.name, instance_id)
            if committed is None:  # pragma: no cover - the batch was committed above
                return False, count, "empty", False
            agg = clone(committed)
            end = self.clock.now()
            if error is None:
                ok = agg.flush_succeeded(
                    ft,
                    now=end,
                    duration=(end - started).total_seconds(),
                    flush_after=job.flush_after,
                )
                await self.save(agg, before=committed)
                return ok, count, "manual" if ok else "empty", False
            retry_at = agg.plan_retry(ft.ticket, job.retry, now=end)
            exhausted = None
            if retry_at is None and job.retry is not None:
                exhausted = await self._exhausted_action(job, error, ctx)
            agg.flush_failed(
                ft,
                error,
                now=end,
                retry_at=retry_at,
                exhausted=cast(Any, exhausted),
                flush_after=job.flush_after,
            )
            await self.save(agg, before=committed)
            return False, count, "failed", retry_at is not None

    async def clear(self, job: DebounceJob[Any, Any], instance_id: str) -> int:
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with self._hold(uuid):
            committed = await self.load(DebounceInstance, job.name, instance_id)
            if committed is None:
                return 0
            agg = clone(committed)
            discarded = agg.clear(now=self.clock.now())
            await self.save(agg, before=committed)
            return discarded

    # ---- task --------------------------------------------------------------------------

    def _task_ctx(
        self,
        job: TaskJob[Any, Any],
        agg: TaskInstance,
        *,
        alarm: datetime | None,
        execute_count: int | None = None,
    ) -> TaskContext[Any]:
        d = agg.d
        return TaskContext(
            codec=job.state_codec,
            state=self.decode_state(job.state_codec, agg, d.state),
            instance_id=d.instance_id,
            job_name=job.name,
            now=self.clock.now,
            scheduled_at=alarm,
            event_count=d.event_count,
            execute_count=d.execute_count if execute_count is None else execute_count,
            created_at=d.created_at,
        )

    async def _task_handler(
        self,
        job: TaskJob[Any, Any],
        agg: TaskInstance,
        handler: str,
        call: Callable[[TaskContext[Any]], Awaitable[None]],
        *,
        ticket: RunTicket,
        alarm: datetime | None,
    ) -> BaseException | None:
        """Run one task handler on ``agg`` and record its outcome; its error if unhandled.

        A failure goes to ``on_error`` if the job has one (its outcome is then
        the handler's); ``alarm`` is what the alarm becomes unless the handler
        changes it. Afterwards, if the instance is live with no alarm,
        ``on_idle`` runs.
        """
        ctx = self._task_ctx(
            job,
            agg,
            alarm=alarm,
            execute_count=ticket.run_count if handler == "execute" else None,
        )
        started = self.clock.now()
        try:
            await call(ctx)
            intents = ctx.intents()
        except Exception as exc:
            end = self.clock.now()
            agg.record_failure(ticket, exc, handler=cast(Any, handler), now=end, retry_at=None)
            if job.error_handler is not None and handler != "on_error":
                on_error = functools.partial(job.error_handler, exc)
                return await self._task_handler(
                    job,
                    agg,
                    "on_error",
                    on_error,
                    ticket=ticket,
                    alarm=alarm,
                )
            agg.apply_intents(Intents(), now=end, alarm=alarm)
            return exc
        end = self.clock.now()
        agg.record_success(
            ticket, handler=cast(Any, handler), now=end, duration=(end - started).total_seconds()
        )
        agg.apply_intents(intents, now=end, alarm=alarm)
        if (
            handler != "on_idle"
            and agg.live
            and agg.d.alarm_at is None
            and job.idle_handler is not None
        ):
            idle = job.idle_handler
            return await self._task_handler(
                job,
                agg,
                "on_idle",
                idle,
                ticket=RunTicket(agg.d.run_count, 1, agg.d.generation),
                alarm=None,
            )
        return None

    async def task_send(
        self,
        job: TaskJob[Any, Any],
        instance_id: str,
        event: Any,
        event_json: Any,
        key: str | None,
    ) -> tuple[TaskInstance, bool, bool]:
        """(instance, created, duplicate); raises HandlerError if on_event failed unhandled."""
        uuid = instance_uuid("task", job.name, instance_id)
        assert job.event_handler is not None
        on_event = job.event_handler
        async with self._hold(uuid):
            committed = await self.load(TaskInstance, job.name, instance_id)
            now = self.clock.now()
            if (
                key is not None
                and committed is not None
                and committed.is_duplicate(key, now=now, window=job.idempotency_window)
            ):
                return committed, False, True
            agg = clone(committed) if committed is not None else None
            agg, created = TaskInstance.receive(
                agg,
                job.name,
                instance_id,
                event_json,
                now=now,
                idempotency_key=key,
                window=job.idempotency_window,
            )
            ticket = RunTicket(agg.d.run_count, 1, agg.d.generation)
            error = await self._task_handler(
                job,
                agg,
                "on_event",
                lambda ctx: on_event(event, ctx),
                ticket=ticket,
                alarm=agg.d.alarm_at,
            )
            if error is not None:
                # Recorded, but the key is not kept: the caller's retry delivers it again.
                agg = clone(committed) if committed is not None else None
                agg, created = TaskInstance.receive(
                    agg,
                    job.name,
                    instance_id,
                    event_json,
                    now=now,
                    idempotency_key=None,
                    window=job.idempotency_window,
                )
                agg.record_failure(
                    ticket, error, handler="on_event", now=self.clock.now(), retry_at=None
                )
            await self.save(agg, before=committed)
            if error is not None:
                msg = (
                    f"on_event of task job {job.name!r} raised for instance {instance_id!r}: "
                    f"{error!r}. The event and the failure are recorded; the state is unchanged."
                )
                raise HandlerError(msg) from error
            return agg, created, False

    async def task_execute(
        self, job: TaskJob[Any, Any], instance_id: str, *, by_alarm: bool
    ) -> tuple[bool, bool, bool]:
        """Run ``execute``: (triggered, terminated, retry_scheduled); HandlerError if unhandled."""
        uuid = instance_uuid("task", job.name, instance_id)
        execute = job.execute
        async with self._hold(uuid, wait=not by_alarm) as held:
            if not held:
                raise _Busy
            committed = await self.load(TaskInstance, job.name, instance_id)
            if committed is None or not committed.live:
                return False, False, False
            now = self.clock.now()
            if by_alarm and (committed.d.alarm_at is None or committed.d.alarm_at > now):
                return False, False, False
            agg = clone(committed)
            ticket = agg.next_ticket(fresh=True)
            error = await self._task_handler(
                job,
                agg,
                "execute",
                execute,
                ticket=ticket,
                alarm=None if by_alarm else agg.d.alarm_at,
            )
            failed = error is not None or any(
                getattr(e, "NAME", "") == "run_failed" for e in agg.pending_events
            )
            await self.save(agg, before=committed)
            if error is not None and not by_alarm:
                msg = (
                    f"execute of task job {job.name!r} raised for instance {instance_id!r}: "
                    f"{error!r}. The failure is recorded; the state is unchanged."
                )
                raise HandlerError(msg) from error
            if error is not None:
                log.warning(
                    "execute of task job %r instance %r raised %r (recorded; no on_error)",
                    job.name,
                    instance_id,
                    error,
                )
            # A retry is pending if on_error set an alarm (not the one a trigger kept).
            alarm = agg.d.alarm_at if agg.live else None
            retry = failed and alarm is not None and (by_alarm or alarm != committed.d.alarm_at)
            return True, not agg.live, retry

    # ---- reads -------------------------------------------------------------------------

    async def history(self, kind: Kind, job: str, instance_id: str) -> list[RecordedEvent]:
        check_instance_id(instance_id)
        uuid = instance_uuid(kind, job, instance_id)
        events = await self.io(self.store.history, uuid)
        return to_records(events, kind=kind, job=job, instance_id=instance_id)


def check_key(key: object) -> str | None:
    """An idempotency key as given, or ValidationError."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        msg = (
            f"idempotency_key must be a non-empty str of at most {MAX_IDEMPOTENCY_KEY} "
            f"characters, got {key!r:.80}."
        )
        raise ValidationError(msg)
    return key
