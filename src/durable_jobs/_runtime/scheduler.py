"""The scheduler: the window of next alarms, wake-ups, and dispatching due runs.

One task watches the :class:`AlarmWindow` and starts a run for each alarm
that falls due (at most one per instance at a time). It sleeps until the
next alarm, the window's horizon or the next poll, and wakes early when a
commit changes an alarm (:meth:`Scheduler.kick`), when the clock jumps, or
when another process's alarm is heard of (:meth:`Scheduler.listen`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import types
from collections import deque
from collections.abc import Coroutine, Generator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import trio

from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._domain.ids import Kind
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import ConcurrencyError, DurableJobsError, RuntimeClosed
from durable_jobs._runtime.handlers import interrupt_of
from durable_jobs._runtime.locks import Busy
from durable_jobs._runtime.window import AlarmKey, AlarmWindow
from durable_jobs._store.capabilities import ListensForAlarms
from durable_jobs._store.index import IndexRow
from durable_jobs._telemetry import log_fields

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["Scheduler"]

_new_tuple = tuple.__new__

log = logging.getLogger("durable_jobs.runtime")

#: Delay before a run that failed inside the runtime (store down, corrupt row) is tried again.
RETRY_BROKEN_AFTER = timedelta(seconds=5)
MAX_RETRY_BROKEN_AFTER = timedelta(minutes=5)
#: First and longest wait before the alarm index is read again after a failed read.
RELOAD_BACKOFF = timedelta(seconds=1)
MAX_RELOAD_BACKOFF = timedelta(seconds=30)
#: How often an unreachable store (a server down or restarting) is tried while due runs
#: wait, so that they resume within about this long of its return.
OUTAGE_PROBE = timedelta(milliseconds=500)
#: Longest wait before the alarm listener's connection is opened again.
MAX_LISTEN_BACKOFF = timedelta(seconds=1)
#: When an alarm whose instance another process is running is looked at again.
BUSY_RECHECK = timedelta(seconds=1)


class Scheduler:
    """Runs the alarms of one runtime (``run_alarms=False``: only tracks commits)."""

    def __init__(
        self,
        rt: Runtime,
        *,
        window: int,
        poll_interval: timedelta | None,
        run_alarms: bool,
    ) -> None:
        self.rt = rt
        self.run_alarms = run_alarms
        self.poll_interval = poll_interval
        self.window = AlarmWindow(window)
        #: Instances with a run started and not finished (running or waiting its turn),
        #: by ``uuid.int`` (an int's hash is not Python code, a uuid's is).
        self._queued: set[int] = set()
        #: Due alarms waiting for one of the ``max_concurrent_runs`` run tasks, each with
        #: the context its run starts from (see :meth:`_runs_task`).
        self._waiting: deque[tuple[AlarmKey, contextvars.Context]] = deque()
        #: Run tasks alive (at most ``max_concurrent_runs``), and those of them waiting
        #: for an alarm to run (parked: they end when the scheduler stops).
        self._running = 0
        self._parked: deque[trio.lowlevel.Task] = deque()
        #: Parked run tasks woken and not yet running again (each takes a waiting alarm).
        self._woken = 0
        self._stopped = False
        #: Instances whose last run failed inside the runtime: (next try, delay).
        self._broken: dict[UUID, tuple[datetime, timedelta]] = {}
        self._unknown_jobs: set[tuple[str, str]] = set()
        #: Once an alarm of a job the registry does not define was met: the jobs it
        #: does define, to which the window's reads are limited from then on (such
        #: alarms, as many as the window, filled it and kept every other one out).
        self._only_defined: frozenset[tuple[str, str]] | None = None
        #: Alarm runs in flight.
        self.pending = 0
        self._dirty = run_alarms
        self._wake = trio.Event()
        #: While the scheduler sleeps: the alarm time it wakes at (or before) by itself
        #: (None: awake, or asleep with no alarm ahead).
        self._asleep_until: datetime | None = None
        #: Passes of the scheduler's loop (each looks at the window once).
        self.passes = 0
        self._reload_blocked = False
        self._reload_now = False
        #: The store is out of reach: due runs wait until it answers again.
        self._outage = False
        self._runs: trio.Nursery | None = None
        #: While the index is read: the versions this process commits meanwhile, and
        #: their alarms, by ``uuid.int`` (see :meth:`_reload`).
        self._committed_meanwhile: dict[int, tuple[int, datetime | None]] | None = None
        #: The registry's jobs by kind and name (read on every alarm run).
        self._jobs = cast("dict[str, dict[str, JobDefinition]]", rt.registry._jobs)
        rt.locks.on_left = self._worker_left

    # ---- what the rest of the runtime tells it ----------------------------------------

    def _worker_left(self) -> None:
        """A worker serving the store is gone: read the index again (the alarms put off
        for it are due here now)."""
        self._reload_now = True
        self.kick()

    def kick(self) -> None:
        """Make the scheduler look at its window again."""
        self._dirty = self.run_alarms
        self._wake.set()
        rt = self.rt
        if rt._changed is not None:  # else rt.notify() has nothing to wake: every run
            rt.notify()

    def committed(self, agg: JobInstance) -> None:
        """``agg`` was committed: its alarm is now ``agg.d.alarm_at``."""
        d, uuid = agg.d, agg._id  # the id property's value
        at = d.alarm_at
        meanwhile = self._committed_meanwhile
        if meanwhile is not None:
            meanwhile[uuid.int] = (agg.version, at)
        if self.run_alarms:
            locks = self.rt.locks
            if len(locks.members) > 1:  # else no worker is preferred: nothing is put off
                # Another live worker is the preferred one: its alarm waits here a little.
                later = locks.defer(
                    uuid, at, self.rt.clock.now(), busy=self._backlog(), version=agg.version
                )
                at = later or at
            # alarm_key(uuid, d.kind, d.job, d.instance_id), inline: on every commit.
            self.window.set(_new_tuple(AlarmKey, (uuid, d.kind, d.job, d.instance_id)), at)
        blocked, self._reload_blocked = self._reload_blocked, False
        if uuid.int in self._queued:
            return  # an alarm run's commit: the scheduler is woken once, when the run ends
        asleep_until = self._asleep_until
        if not blocked and (at is None or (asleep_until is not None and at >= asleep_until)):
            # The scheduler wakes by then anyway, and sees this alarm then: a send that
            # sets an alarm behind the next one does not cost a pass of the scheduler.
            return
        self.kick()

    def is_idle(self) -> bool:
        """Nothing due, nothing running, nothing for the scheduler to look at."""
        now = self.rt.clock.now()
        return (
            not self._dirty
            and self.pending == 0
            and not self.window.has_due(now)
            and not (self.window.needs_reload(now) and not self._reload_blocked)
        )

    def due_now(self) -> int:
        """Alarms in the window due at or before now (not yet started)."""
        return self.window.count_due(self.rt.clock.now())

    # ---- the scheduler task ------------------------------------------------------------

    async def _reload(self) -> None:
        # What this process commits while the index is read (by ``uuid.int``: the
        # version and its alarm): a row read meanwhile may be older.
        meanwhile: dict[int, tuple[int, datetime | None]] = {}
        self._committed_meanwhile = meanwhile
        try:
            if self._only_defined is None:
                rows = await self.rt.io(self.rt.store.next_alarms, self.window.size)
            else:
                rows = await self.rt.io(
                    functools.partial(
                        self.rt.store.next_alarms, self.window.size, jobs=self._only_defined
                    )
                )
        finally:
            self._committed_meanwhile = None
        # The time of the read, for every row (one clock read, not one a row).
        now = self.rt.clock.now()
        locks, busy = self.rt.locks, self._backlog()

        def newer(row: IndexRow) -> tuple[bool, datetime | None]:
            """Whether this process committed a later version of ``row``'s instance while
            the index was read, and that version's alarm (see :meth:`AlarmWindow.load`).

            Only what was committed during the read counts, not a cached instance's
            version: a purged instance started again counts its versions from 1, and
            an older instance in the cache would hide it."""
            seen = meanwhile.get(row.instance_uuid.int) if meanwhile else None
            if seen is None or seen[0] <= row.version:
                # Another live worker is the preferred one: its alarm waits here a little.
                later = locks.defer(
                    row.instance_uuid, row.due_at, now, busy=busy, version=row.version
                )
                return later is not None, later
            return True, seen[1]

        self.window.load(rows, running_ints=self._queued, newer=newer)
        # Alarms of instances already running stay in the index until their commit.
        self._reload_blocked = self.window.needs_reload(self.rt.clock.now())

    async def run(self, runs: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        """Start the runs of due alarms in ``runs`` (until cancelled)."""
        self._runs = runs
        try:
            await self._serve(task_status)
        finally:
            # Stopped (shutdown): alarms still waiting for a run task do not run now;
            # they stay in the store for the next start.
            for key, _ in self._waiting:
                self._queued.discard(key.uuid.int)
                self.pending -= 1
            self._waiting.clear()
            # Idle run tasks end (those running end after their run).
            self._stopped = True
            while self._parked:
                self._woken += 1
                trio.lowlevel.reschedule(self._parked.popleft())
            self.rt.notify()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        clock = self.rt.clock
        await self._reload()
        last_poll = trio.current_time()
        outage = timedelta(0)
        retry_reload_at = -math.inf
        task_status.started()
        while True:
            if self._outage:
                await self._until_reachable()
                continue
            now = clock.now()
            poll = self.poll_interval
            if (
                self._reload_now
                # Not while due runs wait for a run task: they are enough to do, and
                # the index would only give them again (reads every few runs otherwise).
                or (
                    self.window.needs_reload(now)
                    and not self._reload_blocked
                    and not self._backlog()
                )
                or (poll is not None and trio.current_time() >= last_poll + poll.total_seconds())
            ) and trio.current_time() >= retry_reload_at:
                self._reload_now = False
                try:
                    await self._reload()
                except DurableJobsError as exc:
                    if self.rt.store.unreachable(exc):
                        self._store_down(exc)
                        continue
                    # The index cannot be read for a while: keep serving what the
                    # window holds (its runs fail and back off) and read it again later.
                    outage = min(outage * 2, MAX_RELOAD_BACKOFF) if outage else RELOAD_BACKOFF
                    log.warning("Could not read the alarm index (%s); again in %s", exc, outage)
                    retry_reload_at = trio.current_time() + outage.total_seconds()
                else:
                    outage = timedelta(0)
                    retry_reload_at = -math.inf
                    last_poll = trio.current_time()
                    continue
            self.passes += 1
            self._start_waiting()
            for key in self.window.pop_due(now):
                self._dispatch(key, now)
            self._dirty = False
            self.rt.notify()
            # The next alarm, or the horizon while it is ahead. A horizon already
            # passed means a reload that waits (for runs in flight, or after a failed
            # read): a finished run kicks the scheduler, the retry time is below.
            wake_at = self.window.next_due()
            horizon = None if self.window.complete else self.window.horizon
            if horizon is not None and horizon > now:
                wake_at = horizon if wake_at is None else min(wake_at, horizon)
            deadline = math.inf
            if wake_at is not None:
                deadline = clock.deadline(wake_at)
                if deadline <= trio.current_time():
                    deadline = trio.current_time() + 1e-6
            if poll is not None:
                deadline = min(deadline, last_poll + poll.total_seconds())
            if outage:
                deadline = min(deadline, retry_reload_at)
            await self._sleep(deadline, wake_at)

    async def _sleep(self, deadline: float, wake_at: datetime | None) -> None:
        """Until the trio time ``deadline`` or a :meth:`kick`; ``wake_at`` is the alarm
        time the deadline stands for (see :meth:`committed`)."""
        self._asleep_until = wake_at
        try:
            if deadline == math.inf:
                # No timeout to wait for: no cancel scope to make and close (a busy
                # queue's scheduler sleeps so after nearly every job it dispatches).
                await self._wake.wait()
            else:
                with trio.move_on_at(deadline):
                    await self._wake.wait()
        finally:
            self._asleep_until = None
        if self._wake.is_set():
            self._wake = trio.Event()

    def _store_down(self, exc: BaseException) -> None:
        """The store is out of reach: the scheduler waits for it (see :meth:`_until_reachable`)."""
        if not self._outage:
            log.warning(
                "The store %s is out of reach (%s); due runs wait and it is tried again every %s",
                self.rt.store.url,
                exc,
                OUTAGE_PROBE,
            )
            self._outage = True
            self.kick()

    async def _until_reachable(self) -> None:
        """Try the store every :data:`OUTAGE_PROBE` until it answers; then read the alarm
        index again, so that everything due runs at once."""
        while True:
            try:
                await self.rt.io(self.rt.store.ping)
            except DurableJobsError:
                await trio.sleep(OUTAGE_PROBE.total_seconds())
            else:
                break
        log.warning("The store %s is reachable again; due runs resume", self.rt.store.url)
        self._outage = False
        self._reload_now = True

    async def listen(self) -> None:
        """Hear of alarms that other processes commit, and make the scheduler reload.

        Without a listener (single-process stores) this returns at once; if the
        listener's connection fails it is opened again, backing off, while the
        poll (``poll_interval``) keeps alarms from being missed meanwhile.
        """
        backoff = RELOAD_BACKOFF
        reopened = False
        while True:
            store = self.rt.store
            if not isinstance(store, ListensForAlarms):
                return
            try:
                listener = await self.rt.io(store.open_alarm_listener)
            except DurableJobsError as exc:
                log.warning("Could not listen for other processes' alarms (%s)", exc)
            else:
                if reopened:
                    # Alarms committed while nobody listened: read the index again.
                    self._reload_now = True
                    self.kick()
                reopened = True
                fd = listener.fileno()
                try:
                    while True:
                        await trio.lowlevel.wait_readable(fd)
                        if listener.drain():
                            # A listener may say when the earliest announced alarm is due.
                            earliest: datetime | None = getattr(listener, "earliest", None)
                            self._heard(earliest)
                        backoff = RELOAD_BACKOFF
                except DurableJobsError as exc:
                    log.warning("The alarm listener stopped (%s); opening it again", exc)
                finally:
                    trio.lowlevel.notify_closing(fd)
                    listener.close()
            reopened = True
            await trio.sleep(backoff.total_seconds())
            backoff = min(backoff * 2, MAX_LISTEN_BACKOFF)

    def _heard(self, earliest: datetime | None) -> None:
        """Other processes committed alarms, the earliest due at ``earliest`` (None: not
        said). The window is read again once that alarm is due, not at every commit
        (with several busy workers, every commit of one would reload all the others)."""
        if earliest is None:
            self._reload_now = True
        elif self.run_alarms:
            self.window.heard_of(earliest)
            self._reload_blocked = False
        self.kick()

    # ---- runs --------------------------------------------------------------------------

    def _dispatch(self, key: AlarmKey, now: datetime) -> None:
        if key.uuid.int in self._queued or self._runs is None:
            return
        broken = self._broken.get(key.uuid) if self._broken else None
        if broken is not None and broken[0] > now:
            self.window.set(key, broken[0])
            return
        locks = self.rt.locks
        deferred = locks.deferred
        if deferred and (put_off := deferred.pop(key.uuid, None)) is not None:
            due, version = put_off
            # Put off for its preferred worker: still, while this one has work waiting?
            later = locks.defer(key.uuid, due, now, busy=self._backlog(), version=version)
            if later is not None:
                self.window.set(key, later)
                return
            # Run here after all: the preferred worker left, or is late. If it is still
            # at the version seen when the alarm was put off, it may be stopping a run
            # whose lock session it lost: the run waits the takeover grace, as after
            # finding the lock held (see LockGuards.after_takeover).
            scope = "flush" if key.kind == "debounce" else "instance"
            locks.guards.found_busy(key.uuid, scope, version)
        self._queued.add(key.uuid.int)
        self.pending += 1
        # The run starts from a copy of the scheduler's context (see _runs_task).
        context = contextvars.copy_context()
        if self._parked:
            # An idle run task takes it (wakes once per alarm: never all of them at once).
            self._waiting.append((key, context))
            self._woken += 1
            trio.lowlevel.reschedule(self._parked.popleft())
        elif self._running < self.rt.max_concurrent_runs:
            self._running += 1
            self._runs.start_soon(self._runs_task, key, context, name="durable_jobs runs")
        else:
            self._waiting.append((key, context))

    def _start_waiting(self) -> None:
        """Start run tasks for waiting alarms while fewer than ``max_concurrent_runs`` are
        alive (a run task takes the next waiting alarm itself when its run ends: this
        only starts those that a cancelled run task left)."""
        waiting, runs = self._waiting, self._runs
        while waiting and runs is not None and self._running < self.rt.max_concurrent_runs:
            key, context = waiting.popleft()
            self._running += 1
            runs.start_soon(self._runs_task, key, context, name="durable_jobs runs")

    async def _runs_task(self, key: AlarmKey, context: contextvars.Context) -> None:
        """Run ``key``'s alarm, then the waiting ones, one at a time; when none waits,
        wait for the next (until the scheduler stops).

        Each run is driven in its own context, a copy of the scheduler's taken when
        its alarm was dispatched: a run never sees the context variables that an
        earlier run's handler set (as if it had a task of its own, which would cost
        a task per run).
        """
        waiting = self._waiting
        locks = self.rt.locks
        # On a shared store, one cancel scope for the guards of all its runs (see RunScope).
        run_scope: AbstractContextManager[None] = (
            locks.guards.run_scope() if locks.cross is not None else nullcontext()
        )
        try:
            with run_scope:
                while True:
                    yielded = await _in_context(context, self._alarm_run(key))
                    if waiting and not yielded:
                        # Let the other tasks run: a run on a store that does not block
                        # may not have yielded at all (one that waited for its commit did).
                        await trio.lowlevel.checkpoint()
                    while not waiting:
                        if self._stopped:
                            return
                        await self._park()
                    key, context = waiting.popleft()
        finally:
            self._running -= 1

    async def _park(self) -> None:
        """Wait until :meth:`_dispatch` has an alarm for this run task, or the scheduler
        stopped (cancellable)."""
        task = trio.lowlevel.current_task()
        self._parked.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            self._parked.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self._woken -= 1

    def _backlog(self) -> bool:
        """Whether due alarms wait for a run task to be free (beyond those that woken
        idle run tasks are about to take)."""
        return len(self._waiting) > self._woken

    async def _alarm_run(self, key: AlarmKey) -> None:
        rt = self.rt
        try:
            # The run (what a _fire coroutine of its own would do: one coroutine less).
            # registry.get(kind, job), without its calls (a job once registered stays).
            jobs = self._jobs.get(key.kind)
            job = None if jobs is None else jobs.get(key.job)
            if job is None:
                job = self._job_of(key)
            if job is not None:
                if isinstance(job, ContinuousJob):
                    await rt.continuous.run(job, key.instance_id, manual=False)
                elif isinstance(job, DebounceJob):
                    await rt.debounce.flush(job, key.instance_id, manual=False)
                elif isinstance(job, TaskJob):
                    await rt.task.execute(job, key.instance_id, by_alarm=True)
                cached = rt.cache._items.get(key.uuid.int)  # rt.cache.peek(key.uuid)
                if cached is not None:
                    self.window.set(key, cached.d.alarm_at)
            if self._broken:
                self._broken.pop(key.uuid, None)
        except Busy:
            self.window.set(key, self.rt.clock.now() + BUSY_RECHECK)
        except RuntimeClosed:
            pass  # shutting down: the alarm stays in the store for the next start
        except ConcurrencyError:
            # Another process committed to this instance first: look at it afresh.
            self.rt.cache.evict(key.uuid)
            self.window.set(key, self.rt.clock.now())
        except Exception as exc:
            self._run_broke(key, exc)
        except BaseException as exc:
            interrupt = interrupt_of(exc)
            if interrupt is None:
                raise  # a cancellation (shutdown), or a handler's fatal error once recorded
            # Ctrl+C while the run's handler ran synchronous code: the run committed
            # nothing, its alarm stays in the store for the next start, and the runtime
            # shuts down (the other runs get the grace; open_jobs raises it). (Also when
            # it landed in this run's own steps: then the run ends where it was.)
            rt.interrupt(interrupt)
        finally:
            self._queued.discard(key.uuid.int)
            self.pending -= 1
            self._reload_blocked = False
            self.kick()

    def _run_broke(self, key: AlarmKey, exc: Exception) -> None:
        if self.rt.store.unreachable(exc):
            # Not this instance's fault: it runs as soon as the store answers again.
            self.rt.cache.evict(key.uuid)
            self.window.set(key, self.rt.clock.now())
            self._store_down(exc)
            return
        _, delay = self._broken.get(key.uuid, (None, RETRY_BROKEN_AFTER / 2))
        delay = min(delay * 2, MAX_RETRY_BROKEN_AFTER)
        retry_at = self.rt.clock.now() + delay
        self._broken[key.uuid] = (retry_at, delay)
        self.rt.cache.evict(key.uuid)
        self.window.set(key, retry_at)
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
            extra=log_fields(key.kind, key.job, key.instance_id),
        )

    def _job_of(self, key: AlarmKey) -> JobDefinition | None:
        """The job of ``key``'s alarm; None (logged once a job) if this registry does
        not define it."""
        try:
            kind: Kind = key.kind  # type: ignore[assignment]  # (no cast() call a run)
            return self.rt.registry.get(kind, key.job)
        except DurableJobsError:
            if self._only_defined is None:
                self._only_defined = frozenset(
                    (kind, name) for kind, names in self._jobs.items() for name in names
                )
                self._reload_now = True
            if (key.kind, key.job) not in self._unknown_jobs:
                self._unknown_jobs.add((key.kind, key.job))
                log.warning(
                    "An alarm is due for %s job %r, which this registry does not define; "
                    "its instances wait until a process that defines it runs them",
                    key.kind,
                    key.job,
                    extra=log_fields(key.kind, key.job),
                )
            return None


@types.coroutine
def _in_context(
    context: contextvars.Context, coro: Coroutine[Any, Any, None]
) -> Generator[Any, Any, bool]:
    """Await ``coro`` with every step of it run in ``context`` (what trio does for a
    task, in the task that awaits this): what it sets there stays there. Returns
    whether it yielded to trio (let other tasks run) on the way."""
    value: Any = None
    error: BaseException | None = None
    yielded = False
    while True:
        try:
            if error is None:
                request = context.run(coro.send, value)
            else:
                request, error = context.run(coro.throw, error), None
        except StopIteration:
            return yielded
        yielded = True
        try:
            value = yield request
        except GeneratorExit:
            context.run(coro.close)
            raise
        except BaseException as exc:  # thrown into the awaiting task: on to the run
            error, value = exc, None
