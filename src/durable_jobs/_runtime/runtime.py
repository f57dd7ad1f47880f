"""The runtime of one ``open_jobs`` block, and the shape every command follows.

Take the instance's lock (:mod:`.locks`), load the committed aggregate (from
the hot cache, :mod:`.cache`, or the store), decide on a *copy* with the pure
domain, run the handler if there is one (:mod:`.handlers`, the only place
application code is called), commit the copy's events in one store
transaction (:mod:`.commit`), and only then make the copy the cached,
committed instance and tell the scheduler (:mod:`.scheduler`) of its alarm.
Readers use the cache without the lock, so they only ever see committed
state. Store calls run in worker threads under a library-owned
``CapacityLimiter``. Each kind's commands live in its runner
(:mod:`.continuous`, :mod:`.debounce`, :mod:`.task`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import trio

from durable_jobs._definitions.codecs import TypeCodec, TypeVersionError
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance, error_repr
from durable_jobs._domain.statements import Statement, Writes
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    RuntimeClosed,
    StoreError,
    ValidationError,
)
from durable_jobs._records import RecordedEvent, to_records
from durable_jobs._runtime.cache import InstanceCache, clone
from durable_jobs._runtime.clock import Clock, in_thread
from durable_jobs._runtime.commit import GroupCommit
from durable_jobs._runtime.continuous import ContinuousRunner
from durable_jobs._runtime.debounce import DebounceRunner
from durable_jobs._runtime.guards import DEFAULT_LEASE
from durable_jobs._runtime.handlers import IN_HANDLER, HandlerCalls
from durable_jobs._runtime.loads import BatchedLoads
from durable_jobs._runtime.locks import InstanceLocks
from durable_jobs._runtime.scheduler import Scheduler
from durable_jobs._runtime.statistics import RuntimeStatistics
from durable_jobs._runtime.task import TaskRunner
from durable_jobs._store.base import StatementFailed, Store
from durable_jobs._telemetry import log_fields, telemetry

__all__ = ["Observer", "Runtime", "RuntimeClosed", "check_key"]

log = logging.getLogger("durable_jobs.runtime")

_A = TypeVar("_A", bound=JobInstance)
_T = TypeVar("_T")

#: Which run a commit is (its run count and attempt), or how to tell it from the
#: statement that failed (a task chain's handlers may be different runs).
RunOf = tuple[int, int] | Callable[[StatementFailed], tuple[int, int]]


def _run_of(run: RunOf, failed: StatementFailed) -> tuple[int, int]:
    return run(failed) if callable(run) else run


Observer = Callable[[RecordedEvent], None]
#: Longest key accepted for ``idempotency_key`` (characters).
MAX_IDEMPOTENCY_KEY = 1024
#: Tries of a client command that loses a version race to another process.
COMMAND_TRIES = 5
#: How long shutdown waits for the runs it cancelled before it says it is waiting for them.
STUBBORN_AFTER = timedelta(seconds=1)


class Runtime:
    """Owns the pieces of one ``open_jobs`` and the commands' common steps."""

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
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.registry = registry
        #: False: a client only (commands run, alarms are left to other processes).
        self.run_alarms = run_alarms
        self.store = store
        self.clock = clock
        self.shutdown_grace = shutdown_grace
        self.max_concurrent_runs = max_concurrent_runs
        self._observers: list[Observer] = list(observers)
        self._limiter = trio.CapacityLimiter(max(1, store.max_concurrency))
        self._commands = 0
        #: The cancel scopes of the client commands in flight (each runs in its caller's
        #: task): cancelled once the shutdown grace is over, like the runs.
        self._command_scopes: set[trio.CancelScope] = set()
        #: Set at the next change (made only when someone waits: notified on every run).
        self._changed: trio.Event | None = None
        self._closing = False
        self._closed = False
        #: The cancel scope around the ``open_jobs`` block's body (entered there):
        #: cancelled when a handler call is interrupted (see :meth:`interrupt`).
        self.body = trio.CancelScope()
        #: The ``KeyboardInterrupt`` a handler call raised, for ``open_jobs`` to raise
        #: once shut down.
        self.interrupted: KeyboardInterrupt | None = None
        #: What a call refused once closed should do instead (set by the testing harness).
        self.closed_advice: str | None = None
        #: The trio run serving this runtime (set when it starts serving).
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._runs_nursery: trio.Nursery | None = None
        self.locks = InstanceLocks(store, lease, worker=run_alarms)
        self.cache = InstanceCache(cache_size)
        self.commits = GroupCommit(store, self.io, self._store_call_waits)
        self.loads = BatchedLoads(store, self.io)
        self.handlers = HandlerCalls(clock, self.interrupt)
        if self.locks.cross is not None:  # locks in this process cannot be lost
            self.handlers.check_lock = self.locks.guards.check
        self.scheduler = Scheduler(
            self, window=alarm_window, poll_interval=poll_interval, run_alarms=run_alarms
        )
        self.continuous = ContinuousRunner(self)
        self.debounce = DebounceRunner(self)
        self.task = TaskRunner(self)

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`: the scheduler, then every run it started.

        Once started, a cancellation from outside (``serve`` cancelled, the block
        around ``open_jobs`` cancelled) does not reach the runs: :meth:`shutdown`
        gives them ``shutdown_grace`` first, then cancels them.
        """
        self._trio_token = trio.lowlevel.current_trio_token()
        unsubscribe = self.clock.on_jump(self.scheduler.kick)
        unwatch = telemetry.watch(self)
        serving = trio.CancelScope()
        try:
            with serving:
                await self._serve(serving, task_status)
        finally:
            unsubscribe()
            unwatch()
            self.locks.guards.stop()
            self._closed = True

    async def _serve(self, serving: trio.CancelScope, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as system:
            system.start_soon(self.handlers.run)
            if self.run_alarms:
                system.start_soon(self.scheduler.listen)
            if self.locks.cross is not None:
                system.start_soon(self.locks.run)
                self.locks.guards.start()
            if self.store.blocking:
                self.commits.start()
                system.start_soon(self.commits.run)
                system.start_soon(self.loads.run)
            async with trio.open_nursery() as runs:
                self._runs_nursery = runs
                async with trio.open_nursery() as sched:
                    self._scheduler_scope = sched.cancel_scope
                    if self.run_alarms:
                        await sched.start(self.scheduler.run, runs)
                    else:
                        sched.start_soon(trio.sleep_forever)
                    # From here on only shutdown() stops the runs (after the grace).
                    serving.shield = True
                    task_status.started()
            # The client commands shutdown() cancelled may still have a commit on its
            # way: the committers serve them until the last one is out.
            while self._commands:
                await self._next_change()
            # Every run and command has ended, so no commit is waiting: stop the
            # committers.
            self.commits.stop()
            system.cancel_scope.cancel()

    _scheduler_scope: trio.CancelScope | None = None

    def interrupt(self, exc: KeyboardInterrupt) -> None:
        """A handler call raised ``exc`` (Ctrl+C while it ran synchronous code): shut
        down as for a Ctrl+C in the ``open_jobs`` block. No new run starts, the block's
        body is cancelled (then ``open_jobs`` gives the runs in flight the grace, as
        always, and raises ``exc``); the interrupted run commits nothing."""
        if self.interrupted is None:
            self.interrupted = exc
        self._closing = True
        if self._scheduler_scope is not None:
            self._scheduler_scope.cancel()
        self.body.cancel()

    async def shutdown(self) -> None:
        """Start no new runs; give runs in flight ``shutdown_grace``, then cancel them."""
        self._closing = True
        if self._scheduler_scope is not None:
            self._scheduler_scope.cancel()
        with trio.move_on_after(self.shutdown_grace.total_seconds()):
            while self.scheduler.pending or self._commands:
                await self._next_change()
        if not (self.scheduler.pending or self._commands):
            return
        log.warning(
            "%d run(s) and %d client call(s) still in flight after the %s shutdown grace "
            "are cancelled: nothing of theirs is committed; the runs run again after the "
            "next start, the calls raise RuntimeClosed",
            self.scheduler.pending,
            self._commands,
            self.shutdown_grace,
        )
        # Once cancelled, a run or call commits nothing, even if its handler shields
        # itself from the cancellation and returns later (see save).
        for scope in self._command_scopes:
            scope.cancel()
        if self._runs_nursery is not None:
            self._runs_nursery.cancel_scope.cancel()
        with trio.move_on_after(STUBBORN_AFTER.total_seconds()):
            while self.scheduler.pending or self._commands:
                await self._next_change()
        if self.scheduler.pending or self._commands:
            log.warning(
                "Shutdown waits for %d run(s) and %d client call(s) whose handlers go on "
                "despite the cancellation (shielded from it, or blocking); they will commit "
                "nothing",
                self.scheduler.pending,
                self._commands,
            )

    def check_open(self, call: str | None = None, *, here: bool = True) -> None:
        """Raise :class:`RuntimeClosed` (naming ``call``) once the block is ending, and
        (``here``) :class:`ConfigurationError` for a call from outside the trio run
        serving it."""
        if self._closing or self._closed:
            raise RuntimeClosed(call, advice=self.closed_advice)
        if not here:
            return
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            token = None
        if token is not self._trio_token and self._trio_token is not None:
            where = "outside trio (asyncio?)" if token is None else "from another trio.run"
            msg = (
                f"{call or 'A client call'} was made {where}: durable-jobs clients work in "
                "the trio run whose open_jobs serves them. From another thread, use "
                "trio.from_thread.run(...) to call into that run."
            )
            raise ConfigurationError(msg)

    def check_closing(self) -> None:
        """:meth:`check_open` for work the runtime itself started in its own trio run
        (an alarm run): only the block's end refuses it."""
        if self._closing or self._closed:
            raise RuntimeClosed(None)

    def notify(self) -> None:
        """Wake whoever waits for a change (``wait_idle``, ``shutdown``)."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def _next_change(self) -> None:
        """Wait for the next :meth:`notify`."""
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    async def wait_idle(self) -> None:
        """Return once everything due has run and committed (virtual time may pass meanwhile)."""
        while not self.scheduler.is_idle():
            await self._next_change()
        await trio.lowlevel.checkpoint()

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def alarms_due(self) -> int:
        """Alarms due now and not started yet (the ``durable_jobs.alarms.due`` gauge)."""
        return self.scheduler.due_now()

    def statistics(self) -> RuntimeStatistics:
        """The runtime's live figures."""
        scheduler = self.scheduler
        return RuntimeStatistics(
            runs_in_flight=scheduler.pending,
            handlers_running=self.handlers.running,
            alarms_due=scheduler.due_now(),
            alarms_in_window=len(scheduler.window),
            commits=self.commits.commits,
            commit_batches=self.commits.batches,
            largest_batch=self.commits.largest_batch,
            cache_hits=self.cache.hits,
            cache_misses=self.cache.misses,
            cached_instances=len(self.cache),
            locks_held=self.locks.held if self.locks.cross is not None else None,
        )

    # ---- the common steps of a command --------------------------------------------------

    def hold(
        self,
        uuid: UUID,
        *,
        scope: str = "instance",
        wait: bool = True,
        starting: bool = True,
        detached: bool | None = None,
    ) -> AbstractAsyncContextManager[bool]:
        """Hold ``uuid``'s lock (see :meth:`InstanceLocks.hold`).

        Work that *starts* under the lock (``starting``) is refused once shutdown began:
        a call that waited for a busy instance must not run after the block ended.
        A handler's own instance is refused (:class:`ConfigurationError`): its run
        holds the lock, so the call would wait for itself forever.
        """
        if starting:
            self.refuse_own_instance(uuid, scope)
        return self.locks.hold(
            uuid,
            scope=scope,
            wait=wait,
            on_taken=self.check_open if starting else None,
            detached=detached,
        )

    @staticmethod
    def refuse_own_instance(uuid: UUID, scope: str = "instance") -> None:
        """Raise :class:`ConfigurationError` if the calling task is in a handler of
        instance ``uuid`` (whose run holds its lock), or in one called by a client
        call made from a handler of ``uuid`` that holds the ``scope`` lock the call
        needs (x's handler sends to y, whose ``on_event`` sends to x): either way the
        call would wait for itself. (A debounce flush holds the flush lock only: an
        ``add`` to it from further down the chain goes through.)"""
        inside = IN_HANDLER.get()
        if inside is None:
            return
        kind, job, instance_id, _, outer = inside
        if instance_uuid(kind, job, instance_id) == uuid:
            msg = (
                f"A handler of {kind} job {job!r} instance {instance_id!r} called the client "
                "on its own instance: the call would wait for the handler's own run to end, "
                "forever. Change the instance through the handler's ctx instead (set_state, "
                "schedule, terminate...), or make the call after the handler returns."
            )
            raise ConfigurationError(msg)
        chain = [f"{kind} job {job!r} instance {instance_id!r}"]
        while outer is not None:
            o_kind, o_job, o_id, holds, outer = outer
            chain.append(f"{o_kind} job {o_job!r} instance {o_id!r}")
            if holds == scope and instance_uuid(o_kind, o_job, o_id) == uuid:
                calls = " <- ".join(chain)
                msg = (
                    f"A handler of {chain[0]} called the client on {chain[-1]}, whose own "
                    f"handler is waiting for this call (the calls: {calls}): it would wait "
                    "for that handler's run to end, which waits for it, forever. Break the "
                    "cycle: make one of the calls after its handler returns (say, from "
                    "an alarm: ctx.schedule)."
                )
                raise ConfigurationError(msg)

    def writes(self) -> Writes:
        """A fresh recorder for one handler context's ``ctx.execute`` statements."""
        return Writes(supported=self.store.supports_statements)

    def _store_call_waits(self) -> bool:
        """Whether a store call waits for a thread (a plain read of the limiter's count:
        called by the group commit's writing thread)."""
        return self._limiter.statistics().tasks_waiting > 0

    async def io(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call the synchronous store in a worker thread (taking no virtual time)."""
        if not self.store.blocking:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await in_thread(fn, *args, limiter=self._limiter)

    def cached(self, cls: type[_A], uuid: UUID) -> _A | None:
        """What :meth:`load` returns when it needs no store call (the instance cached
        and, on a shared store, at the index version its lock call read), without a
        coroutine; else None (then :meth:`load` it, nothing counted yet)."""
        if self.store.shared:
            # Cached at the index version the lock call read (what load() checks).
            agg = self.cache.peek(uuid)
            if agg is None:
                return None
            known, version = self.locks.held_version(uuid)
            if not known or version != agg._version:  # the version property's value
                return None
            self.cache.hit(uuid)
        else:
            # self.cache.use(uuid), inline: on every run.
            cache = self.cache
            items, key = cache._items, uuid.int
            agg = items.get(key)
            if agg is not None:
                cache.hits += 1
                items.move_to_end(key)
        if agg is not None and not isinstance(agg, cls):
            msg = f"Stored instance {uuid} is a {type(agg).__name__}, expected a {cls.__name__}."
            raise StoreError(msg)
        return agg

    async def load(
        self, cls: type[_A], job: str, instance_id: str, uuid: UUID | None = None
    ) -> _A | None:
        """The committed instance (never to be mutated: decide on a :func:`clone`).

        ``uuid``: its :func:`instance_uuid`, if the caller has it already.
        """
        if uuid is None:
            uuid = instance_uuid(cls.kind, job, instance_id)
        cache = self.cache
        if not self.store.shared:
            agg = cache.use(uuid)  # counted as a hit if cached
        else:
            agg = cache.peek(uuid)
            # Another process may have changed it: check the version, which the
            # lock call already read if this task holds the instance.
            known, version = self.locks.held_version(uuid)
            if known and version is None:
                # The lock call found no index row: no such instance (the row is
                # written with the events, and deleted with them), so nothing to read.
                if agg is not None:
                    cache.evict(uuid)
                cache.misses += 1
                return None
            if agg is not None and not known:
                row = await self.io(self.store.index_row, uuid)
                version = None if row is None else row.version
                if cache.peek(uuid) is not agg:
                    # Evicted (or replaced) while the index was read: a lost lock stops
                    # the work on it, say. Read it again.
                    agg = None
            if agg is not None:
                if version != agg.version:
                    cache.evict(uuid)
                    agg = None
                else:
                    cache.hit(uuid)
        if agg is None:
            cache.misses += 1
            agg = await self.loads.get(cls.kind, job, instance_id)
            if agg is None:
                return None
            cache.remember(agg)
        if not isinstance(agg, cls):
            msg = f"Stored instance {uuid} is a {type(agg).__name__}, expected a {cls.__name__}."
            raise StoreError(msg)
        return agg

    async def save(
        self,
        agg: JobInstance,
        *,
        before: JobInstance | None,
        statements: Sequence[Statement] = (),
        schedule_point: bool = True,
        run: RunOf | None = None,
    ) -> None:
        """Commit ``agg``'s pending events (and run the handler's ``statements`` in the
        same transaction); then it is the committed, cached instance.

        A failing statement raises :class:`StatementFailed` and nothing is written; its
        warning names the run (``run``: its run count and attempt, or how to tell them
        from the failure) as a handler failure's does.
        ``schedule_point=False`` (an alarm run's commit): a store that does not block
        is written without letting other tasks run first (a cancellation still
        raises), so the run ends in the step that decided it.
        """
        if not agg._pending_events:  # the pending_events property's list
            return
        if self._closing:
            # Shutdown may have cancelled this run or call (the grace is over) while its
            # handler was shielded from the cancellation: then it commits nothing.
            await trio.lowlevel.checkpoint_if_cancelled()
        trace = telemetry.call_trace()
        if trace is not None:
            agg.stamp_trace(trace)
        # For the observers: the list itself, not a copy (the save takes it over whole,
        # see JobInstance.collect_events, and leaves it as it is).
        events = agg._pending_events
        try:
            await self.commits.commit(agg, statements, schedule_point=schedule_point)
        except BaseException as exc:
            self.cache.evict(agg._id)
            self.locks.unsure(agg._id)
            if isinstance(exc, StatementFailed):
                # The handler returned, but its run fails now: said as a handler failure is.
                d = agg.d
                run_count, attempt = (None, None) if run is None else _run_of(run, exc)
                log.warning(
                    "A statement a handler of %s job %r instance %r recorded failed when its "
                    "run was committed: %s; the run fails (nothing of it was written)",
                    d.kind,
                    d.job,
                    d.instance_id,
                    error_repr(exc.error),
                    extra=log_fields(
                        d.kind, d.job, d.instance_id, run_count=run_count, attempt=attempt
                    ),
                )
            raise
        self.cache.remember(agg)
        locks = self.locks
        if locks.cross is not None:  # else it holds no index versions to update
            locks.committed(agg._id, agg._version)  # the id and version properties
        self.scheduler.committed(agg)
        if self._observers:
            self._emit(events, agg, before)

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
                    log.exception(
                        "An observer raised on %s of %s job %r instance %r; it was ignored",
                        record.name,
                        d.kind,
                        d.job,
                        d.instance_id,
                        extra=log_fields(d.kind, d.job, d.instance_id),
                    )

    def decode_state(
        self, codec: TypeCodec[Any], agg: JobInstance, data: Any, type_version: int
    ) -> Any:
        """Stored state (JSON of the job's ``type_version``) as the job's type, upcast to
        the current version; a row that does not fit is a StoreError."""
        if data is None:
            return None
        try:
            return codec.read(data, type_version)
        except Exception as exc:
            d = agg.d
            if type_version > codec.version:
                # Newer code wrote it: no upcaster goes back, and terminating would
                # throw its state away.
                advice = (
                    "this process runs older code than the process that wrote it (a "
                    "deploy still under way, or a rollback): it cannot run or change the "
                    "instance, and processes with the newer code do. Finish the deploy"
                )
            else:
                advice = "register an upcaster or terminate the instance"
            msg = (
                f"The stored state of {d.kind} job {d.job!r} instance {d.instance_id!r} "
                f"(version {agg.version - len(agg.pending_events)}) does not fit the job's "
                "state type "
                f"{codec.tp!r}: {exc}. Nothing was changed; {advice}."
            )
            # The decode error itself: pydantic's, or what the user's upcaster raised
            # (never our own wrapper of it, which users cannot import); a version with
            # no way to it is said whole by the message.
            cause = exc.__cause__ if isinstance(exc, TypeVersionError) else exc
            raise StoreError(msg) from cause

    async def command(self, fn: Callable[[], Awaitable[_T]], call: str | None = None) -> _T:
        """Run a client command, again (reloaded) if another process won a version race."""
        self.check_open(call)
        self._commands += 1
        # Cancelled by shutdown() once the grace is over (the handler a call runs in its
        # caller's task, say a task's on_event, is stopped like a run).
        scope = trio.CancelScope()
        scopes = self._command_scopes
        scopes.add(scope)
        try:
            with scope:
                for attempt in range(1, COMMAND_TRIES + 1):
                    try:
                        return await fn()
                    except RuntimeClosed as closed:
                        # The instance was busy and the block ended while the call waited.
                        if closed.call is None and call is not None:
                            raise RuntimeClosed(call, advice=self.closed_advice) from None
                        raise
                    except ConcurrencyError:
                        if attempt == COMMAND_TRIES:
                            raise
                        log.info("version conflict, retrying the command (try %d)", attempt + 1)
            # Only shutdown() cancels the scope: the grace ran out, nothing was committed.
            raise RuntimeClosed(call, interrupted=True)
        finally:
            scopes.discard(scope)
            self._commands -= 1
            self.notify()

    # ---- commands every kind shares ------------------------------------------------------

    async def terminate(
        self, cls: type[JobInstance], job: str, instance_id: str, reason: str | None
    ) -> bool:
        uuid = instance_uuid(cls.kind, job, instance_id)
        async with self.hold(uuid):
            committed = await self.load(cls, job, instance_id)
            if committed is None or not committed.live:
                return False
            agg = clone(committed)
            agg.terminate(now=self.clock.now(), reason=reason)
            await self.save(agg, before=committed)
            return True

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
