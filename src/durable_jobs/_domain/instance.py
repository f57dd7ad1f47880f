"""The job-instance aggregate shared by all kinds: its data, events and snapshots.

An instance is an eventsourcing :class:`~eventsourcing.domain.Aggregate` whose
attributes live in one pydantic model (``agg.d``) so that snapshots are plain
JSON. Events are explicit classes with an ``apply`` method; commands (the
"decide" functions) are methods of the kind-specific subclasses that check
preconditions and trigger events. Every event gets its ``timestamp`` from the
caller: the domain never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, cast

from eventsourcing.domain import Aggregate, Snapshot
from pydantic import AfterValidator, BaseModel, ConfigDict, JsonValue, StringConstraints

from durable_jobs._domain.backoff import OnExhausted, Retry, retry_decision
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.patch import apply_state_patch, state_patch

__all__ = [
    "UNCHANGED",
    "Batch",
    "Handler",
    "InstanceData",
    "InstanceSnapshot",
    "Intents",
    "JobInstance",
    "RunTicket",
]

Handler = Literal["execute", "on_event", "on_idle", "on_error"]
FlushReason = Literal["flush_after", "max_wait", "max_events", "manual"]
ExhaustedAction = OnExhausted

_I = TypeVar("_I", bound="JobInstance")


def as_utc(value: datetime) -> datetime:
    """Stored times come back as ``datetime.UTC`` times (pydantic would give its own tzinfo)."""
    if value.tzinfo is None:
        msg = "a stored time must be timezone-aware"
        raise ValueError(msg)
    return value.astimezone(UTC)


#: A timezone-aware datetime that is normalised to ``datetime.UTC`` when validated.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class _Unchanged:
    """Marker: a handler left this part of the instance as it was."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


class Batch(BaseModel):
    """A debounce batch closed for a flush that has not succeeded yet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_no: int
    event_count: int
    state: JsonValue
    started_at: UtcDatetime
    reason: FlushReason
    #: The job's type version ``state`` was written with.
    state_version: int = 1


class InstanceData(BaseModel):
    """Everything an instance knows; rebuilt from its log, stored whole in snapshots."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    kind: Kind
    job: str
    instance_id: str
    generation: int = 1
    live: bool = True
    created_at: UtcDatetime
    state: JsonValue = None
    #: The job's type version ``state`` was written with (1 for logs older than versions).
    state_version: int = 1
    alarm_at: UtcDatetime | None = None
    # The traceparent of the client call that set the alarm (see AlarmSet.trace).
    alarm_trace: str | None = None
    run_count: int = 0
    # The last failed try of the run that is waiting for a retry (0: none waiting).
    attempt: int = 0
    first_failure_at: UtcDatetime | None = None
    paused: bool = False
    # Task: events received; debounce: events in the open batch.
    event_count: int = 0
    # Task: calls of execute (retries included); other kinds: runs.
    execute_count: int = 0
    # Debounce: the open batch and the queue of closed batches.
    batch_started_at: UtcDatetime | None = None
    # When the open batch's latest event was accepted (a sliding window starts there).
    batch_last_added_at: UtcDatetime | None = None
    next_batch_no: int = 1
    closed: list[Batch] = []
    closed_due_at: UtcDatetime | None = None
    # Accepted idempotency keys and when they were accepted.
    idempotency: dict[str, UtcDatetime] = {}


@dataclass(frozen=True)
class RunTicket:
    """Which run (and which try of it) a handler call is, of which generation.

    A run is committed only if its instance is still live and in the same
    generation: a late commit never revives a terminated instance or lands on
    the instance a later ``start`` created.
    """

    run_count: int
    attempt: int
    generation: int = 1

    @property
    def is_retry(self) -> bool:
        return self.attempt > 1


@dataclass(frozen=True)
class Intents:
    """What a handler asked for through its context, committed after it returns.

    ``state`` and ``schedule`` are :data:`UNCHANGED` unless the handler set them;
    ``schedule=None`` means the handler cancelled the alarm.
    """

    state: Any = UNCHANGED
    schedule: Any = UNCHANGED
    terminate: bool = False
    terminate_reason: str | None = None
    #: The job's type version ``state`` was written with.
    state_version: int = 1

    @property
    def state_changed(self) -> bool:
        return self.state is not UNCHANGED

    @property
    def schedule_changed(self) -> bool:
        return self.schedule is not UNCHANGED


@dataclass(frozen=True)
class InstanceSnapshot(Snapshot):
    """A snapshot whose ``state`` is the instance data as JSON."""

    @classmethod
    def take(cls, aggregate: Any) -> InstanceSnapshot:
        agg = cast("JobInstance", aggregate)
        return cls(
            originator_id=agg.id,
            originator_version=agg.version,
            timestamp=agg.modified_on,
            topic=stored_topic(type(agg)),
            state={
                "created_on": agg.created_on.isoformat(),
                "data": _dump_data(agg.d),
            },
        )

    def mutate(self, _: None) -> Any:
        cls = _AGGREGATES_BY_TOPIC[self.topic]
        agg = object.__new__(cls)
        agg._id = self.originator_id
        agg._version = self.originator_version
        agg._created_on = as_utc(datetime.fromisoformat(self.state["created_on"]))
        agg._modified_on = self.timestamp
        agg._pending_events = []
        agg.d = cls.data_model.model_validate(self.state["data"])
        return agg


def _dump_data(d: InstanceData) -> dict[str, Any]:
    """``d`` as JSON, without type versions that are 1 (the default): snapshots of
    version-1 jobs are what durable-jobs wrote before type versions existed."""
    data = d.model_dump(mode="json")
    if data["state_version"] == 1:
        del data["state_version"]
    if data["alarm_trace"] is None:
        del data["alarm_trace"]
    for batch in data["closed"]:
        if batch["state_version"] == 1:
            del batch["state_version"]
    return data


class JobInstance(Aggregate):
    """Base aggregate of a job instance; see the kind-specific subclasses."""

    # Annotations only for type checkers: eventsourcing turns class-body
    # annotations of an aggregate into fields of its created event.
    if TYPE_CHECKING:
        kind: ClassVar[Kind]
        d: InstanceData
    data_model = InstanceData
    Snapshot = InstanceSnapshot

    # ---- events ----------------------------------------------------------------

    class Event(Aggregate.Event):
        """Base of the instance events."""

        NAME: ClassVar[str] = ""

    class Started(Event, Aggregate.Created):
        """The instance was created (its first generation started)."""

        NAME: ClassVar[str] = "started"
        kind: str
        job: str
        instance_id: str
        state: JsonValue
        type_version: int = 1

        def apply(self, aggregate: Any) -> None:
            agg = cast("JobInstance", aggregate)
            agg.d = agg.data_model(
                kind=cast("Kind", self.kind),
                job=self.job,
                instance_id=self.instance_id,
                created_at=self.timestamp,
                state=self.state,
                state_version=self.type_version,
            )

    class Restarted(Event):
        """A terminated instance started again: a new generation, fresh counters."""

        NAME: ClassVar[str] = "started"
        state: JsonValue
        type_version: int = 1

        def apply(self, aggregate: Any) -> None:
            agg = cast("JobInstance", aggregate)
            old = agg.d
            agg.d = agg.data_model(
                kind=old.kind,
                job=old.job,
                instance_id=old.instance_id,
                generation=old.generation + 1,
                created_at=self.timestamp,
                state=self.state,
                state_version=self.type_version,
                idempotency=old.idempotency,
                next_batch_no=old.next_batch_no,
            )

    class Terminated(Event):
        """The instance ended: alarm cancelled, state and buffers removed.

        The counters (runs, and a task's events received) are kept, as the
        history of the generation that ended; a restart starts them at zero.
        """

        NAME: ClassVar[str] = "terminated"
        reason: str | None

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.live = False
            d.state = None
            d.alarm_at = None
            d.attempt = 0
            d.first_failure_at = None
            d.paused = False
            if d.kind == "debounce":
                d.event_count = 0  # the open batch's events: dropped with it
            d.batch_started_at = None
            d.batch_last_added_at = None
            d.closed = []
            d.closed_due_at = None

    class StateChanged(Event):
        """The state (for debounce: the open batch's state) was replaced."""

        NAME: ClassVar[str] = "state_changed"
        state: JsonValue
        type_version: int = 1

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.state = self.state
            d.state_version = self.type_version

    class StatePatched(Event):
        """The state was changed by ``patch`` (a JSON Patch, RFC 6902).

        Recorded instead of :class:`StateChanged` when the patch is much
        smaller than the state (a debounce batch that grows by one event per
        ``add``), so the log grows with what changed. Its name is
        ``state_changed`` too: it records the same thing.
        """

        NAME: ClassVar[str] = "state_changed"
        patch: list[JsonValue]

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.state = apply_state_patch(d.state, self.patch)

    class AlarmSet(Event):
        """The instance's one alarm now rings at ``at`` (replacing any other).

        ``trace`` is the W3C traceparent of the client call that set it, when it
        was traced: the run it starts links to that call. An alarm set without
        one (by a run: the next run of a schedule, a retry) keeps the last one.
        """

        NAME: ClassVar[str] = "alarm_set"
        at: UtcDatetime
        trace: Annotated[str, StringConstraints(max_length=64)] | None = None

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.alarm_at = self.at
            if self.trace is not None:
                d.alarm_trace = self.trace

    class AlarmCleared(Event):
        """The instance has no alarm any more."""

        NAME: ClassVar[str] = "alarm_cleared"

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.alarm_at = None
            d.alarm_trace = None

    class RunSucceeded(Event):
        """A handler run returned normally."""

        NAME: ClassVar[str] = "run_succeeded"
        handler: str
        run_count: int
        attempt: int
        duration: float

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            if self.handler == "execute":
                d.run_count = self.run_count
                d.execute_count = _execute_count(d, self.run_count)
                d.attempt = 0
                d.first_failure_at = None
                d.paused = False

    class RunFailed(Event):
        """A handler run raised; none of its changes were committed."""

        NAME: ClassVar[str] = "run_failed"
        handler: str
        run_count: int
        attempt: int
        error_type: str
        message: str
        will_retry: bool
        retry_at: UtcDatetime | None = None
        flush_reason: str | None = None

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            if self.handler != "execute":
                return
            d.run_count = self.run_count
            d.execute_count = _execute_count(d, self.run_count)
            if self.will_retry:
                if self.attempt == 1 or d.first_failure_at is None:
                    d.first_failure_at = self.timestamp
                d.attempt = self.attempt
            else:
                d.attempt = 0
                d.first_failure_at = None
            if d.kind != "debounce":
                d.paused = False
                return
            # Debounce: the failed batch waits for its retry, or is kept, paused.
            d.paused = not self.will_retry
            d.closed_due_at = self.retry_at
            if d.closed and self.flush_reason is not None:
                d.closed[0] = d.closed[0].model_copy(
                    update={"reason": cast("FlushReason", self.flush_reason)}
                )

    class RetryExhausted(Event):
        """The last allowed try failed; ``action`` says what happened next."""

        NAME: ClassVar[str] = "retry_exhausted"
        run_count: int
        attempt: int
        action: str

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.attempt = 0
            d.first_failure_at = None
            d.paused = self.action == "pause"

    class Resumed(Event):
        """A paused (or retry-waiting) run was made due at ``at`` without running it.

        Committed by an admin command (``durable-jobs trigger``) that has no
        handlers: a runtime serving the store runs it when its alarm rings.
        """

        NAME: ClassVar[str] = "resumed"
        at: UtcDatetime

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.paused = False
            if d.closed:
                d.closed_due_at = self.at

    class EventAdded(Event):
        """An input event was accepted (debounce ``add``, task ``send``)."""

        NAME: ClassVar[str] = "event_added"
        event: JsonValue
        idempotency_key: str | None
        expired_keys: list[str]
        type_version: int = 1

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            for key in self.expired_keys:
                d.idempotency.pop(key, None)
            if self.idempotency_key is not None:
                d.idempotency[self.idempotency_key] = self.timestamp
            if d.kind == "debounce":
                if d.event_count == 0:
                    d.batch_started_at = self.timestamp
                d.batch_last_added_at = self.timestamp
            d.event_count += 1

    class BatchClosed(Event):
        """Debounce: the open batch was frozen for a flush."""

        NAME: ClassVar[str] = "batch_closed"
        batch_no: int
        reason: str
        event_count: int

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            assert d.batch_started_at is not None
            d.closed.append(
                Batch(
                    batch_no=self.batch_no,
                    event_count=d.event_count,
                    state=d.state,
                    started_at=d.batch_started_at,
                    reason=cast("FlushReason", self.reason),
                    state_version=d.state_version,
                )
            )
            if len(d.closed) == 1:
                d.closed_due_at = self.timestamp
            d.next_batch_no = self.batch_no + 1
            d.event_count = 0
            d.state = None
            d.batch_started_at = None
            d.batch_last_added_at = None

    class Flushed(Event):
        """Debounce: the oldest closed batch was flushed successfully."""

        NAME: ClassVar[str] = "flushed"
        batch_no: int
        reason: str
        event_count: int

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.closed = [b for b in d.closed if b.batch_no != self.batch_no]
            d.closed_due_at = self.timestamp if d.closed else None
            d.attempt = 0
            d.first_failure_at = None
            d.paused = False

    class Cleared(Event):
        """Debounce: every buffered event was dropped unprocessed."""

        NAME: ClassVar[str] = "cleared"
        discarded_events: int

        def apply(self, aggregate: Any) -> None:
            d = cast("JobInstance", aggregate).d
            d.event_count = 0
            d.state = None
            d.batch_started_at = None
            d.batch_last_added_at = None
            d.closed = []
            d.closed_due_at = None
            d.attempt = 0
            d.first_failure_at = None
            d.paused = False

    # ---- construction ----------------------------------------------------------

    @classmethod
    def create(
        cls: type[_I],
        job: str,
        instance_id: str,
        *,
        now: datetime,
        state: Any,
        type_version: int = 1,
    ) -> _I:
        """A new instance of this kind (its ``started`` event is pending).

        ``type_version`` is the job's version that ``state`` (and every later
        state or event this code writes) has.
        """
        check_instance_id(instance_id)
        return cls._create(
            cls.Started,
            id=instance_uuid(cls.kind, job, instance_id),
            timestamp=now,
            kind=cls.kind,
            job=job,
            instance_id=instance_id,
            state=state,
            type_version=type_version,
        )

    @classmethod
    def live_instance(
        cls: type[_I],
        existing: _I | None,
        job: str,
        instance_id: str,
        *,
        now: datetime,
        state: Any,
        type_version: int = 1,
    ) -> _I:
        """``existing`` if live, else a new instance (or generation) starting with ``state``."""
        if existing is None:
            return cls.create(job, instance_id, now=now, state=state, type_version=type_version)
        if not existing.live:
            existing.restart(now=now, state=state, type_version=type_version)
        return existing

    def restart(self, *, now: datetime, state: Any, type_version: int = 1) -> None:
        """Start a new generation of a terminated instance."""
        if self.d.live:
            msg = "restart() is for terminated instances; this one is live"
            raise ValueError(msg)
        self.trigger_event(self.Restarted, timestamp=now, state=state, type_version=type_version)

    # ---- common commands -------------------------------------------------------

    @property
    def live(self) -> bool:
        """False once terminated (until started again)."""
        return self.d.live

    @property
    def status(self) -> str:
        """The kind-specific status name, or ``"terminated"``."""
        raise NotImplementedError

    def held_json(self) -> list[tuple[str, Any, int]]:
        """``(what, json, type_version)`` of every user JSON the instance still reads.

        A terminated instance holds none; ``None`` (no state) needs no version.
        """
        d = self.d
        if not d.live or d.state is None:
            return []
        return [("state", d.state, d.state_version)]

    def type_versions(self) -> set[int]:
        """The job type versions of the JSON :meth:`held_json` returns."""
        return {version for _, _, version in self.held_json()}

    def terminate(self, *, now: datetime, reason: str | None = None) -> bool:
        """End a live instance; False (and no event) if it is not live."""
        if not self.d.live:
            return False
        # Record the alarm's end explicitly, so the history says what happened to it.
        self.set_alarm(None, now=now)
        self.trigger_event(self.Terminated, timestamp=now, reason=reason)
        return True

    def due_now(self, *, now: datetime) -> bool:
        """Make the next run due ``now``, for a runtime to run (no handler runs here).

        A paused run is resumed, a waiting retry brought forward; False (and
        nothing recorded) if there is nothing to run. See the kinds' overrides.
        """
        if not self.d.live:
            return False
        if self.d.paused:
            self.trigger_event(self.Resumed, timestamp=now, at=now)
        self.set_alarm(now, now=now)
        return True

    def set_alarm(self, at: datetime | None, *, now: datetime) -> None:
        """Make the instance's one alarm ring at ``at`` (None: no alarm)."""
        if at is not None and at.tzinfo is None:
            msg = f"An alarm time must be timezone-aware, not {at!r}"
            raise ValueError(msg)
        if at == self.d.alarm_at:
            return
        if at is None:
            self.trigger_event(self.AlarmCleared, timestamp=now)
        else:
            self.trigger_event(self.AlarmSet, timestamp=now, at=at)

    def stamp_trace(self, trace: str) -> None:
        """Record ``trace`` (the traceparent of the client call committing now) on the
        pending ``AlarmSet`` events, so the runs they make due link to that call."""
        pending = self.pending_events
        stamped = False
        for i, event in enumerate(pending):
            if isinstance(event, JobInstance.AlarmSet) and event.trace is None:
                event_cls: Any = type(event)  # a dataclass made by eventsourcing's metaclass
                pending[i] = event_cls(
                    originator_id=event.originator_id,
                    originator_version=event.originator_version,
                    timestamp=event.timestamp,
                    at=event.at,
                    trace=trace,
                )
                stamped = True
        if stamped and self.d.alarm_at is not None:
            self.d.alarm_trace = trace

    def set_state(self, state: Any, *, now: datetime, type_version: int = 1) -> None:
        """Replace the state (recorded even when equal: the handler asked for it).

        Recorded as a patch of the current state when that is much smaller
        than the new state and both are of the same ``type_version``, else whole.
        """
        same_version = self.d.live and self.d.state_version == type_version
        patch = state_patch(self.d.state, state) if same_version else None
        if patch is None:
            self.trigger_event(
                self.StateChanged, timestamp=now, state=state, type_version=type_version
            )
        else:
            self.trigger_event(self.StatePatched, timestamp=now, patch=patch)

    def is_duplicate(self, key: str, *, now: datetime, window: timedelta) -> bool:
        """Whether ``key`` was accepted less than ``window`` ago."""
        accepted = self.d.idempotency.get(key)
        return accepted is not None and now < accepted + window

    def expired_keys(self, *, now: datetime, window: timedelta) -> list[str]:
        """Accepted keys whose window has passed (forgotten with the next event)."""
        return [k for k, at in self.d.idempotency.items() if now >= at + window]

    def record_event(
        self,
        event: Any,
        *,
        now: datetime,
        idempotency_key: str | None,
        window: timedelta,
        type_version: int = 1,
    ) -> None:
        """Record an accepted input event (and its idempotency key)."""
        self.trigger_event(
            self.EventAdded,
            timestamp=now,
            event=event,
            idempotency_key=idempotency_key,
            expired_keys=self.expired_keys(now=now, window=window),
            type_version=type_version,
        )

    def apply_intents(self, intents: Intents, *, now: datetime, alarm: datetime | None) -> None:
        """Commit what a handler asked for: state, then termination or the alarm.

        ``alarm`` is the alarm to keep if the handler did not schedule anything.
        Nothing is recorded on an instance that is no longer live.
        """
        if not self.d.live:
            return
        if intents.state_changed:
            self.set_state(intents.state, now=now, type_version=intents.state_version)
        if intents.terminate:
            self.terminate(now=now, reason=intents.terminate_reason)
            return
        self.set_alarm(intents.schedule if intents.schedule_changed else alarm, now=now)

    def accepts(self, ticket: RunTicket) -> bool:
        """Whether a run with ``ticket`` may still be committed (live, same generation)."""
        return self.d.live and ticket.generation == self.d.generation

    def record_success(
        self, ticket: RunTicket, *, handler: Handler, now: datetime, duration: float
    ) -> bool:
        """Record a handler run that returned; False (nothing recorded) if it is stale."""
        if not self.accepts(ticket):
            return False
        self.trigger_event(
            self.RunSucceeded,
            timestamp=now,
            handler=handler,
            run_count=ticket.run_count,
            attempt=ticket.attempt,
            duration=duration,
        )
        return True

    def record_failure(
        self,
        ticket: RunTicket,
        error: BaseException,
        *,
        handler: Handler,
        now: datetime,
        retry_at: datetime | None,
        flush_reason: str | None = None,
    ) -> bool:
        """Record a failed handler run; ``retry_at`` is when it will be tried again.

        False (nothing recorded) if the run is stale (see :meth:`accepts`).
        """
        if not self.accepts(ticket):
            return False
        self.trigger_event(
            self.RunFailed,
            timestamp=now,
            handler=handler,
            run_count=ticket.run_count,
            attempt=ticket.attempt,
            error_type=error_type_name(error),
            message=str(error),
            will_retry=retry_at is not None,
            retry_at=retry_at,
            flush_reason=flush_reason,
        )
        return True

    def record_exhausted(
        self, ticket: RunTicket, action: ExhaustedAction, *, now: datetime
    ) -> None:
        self.trigger_event(
            self.RetryExhausted,
            timestamp=now,
            run_count=ticket.run_count,
            attempt=ticket.attempt,
            action=action,
        )

    def next_ticket(self, *, fresh: bool) -> RunTicket:
        """The ticket of the next execute run: a retry of the waiting run unless ``fresh``."""
        d = self.d
        if d.attempt and not fresh:
            return RunTicket(d.run_count, d.attempt + 1, d.generation)
        return RunTicket(d.run_count + 1, 1, d.generation)

    def plan_retry(
        self, ticket: RunTicket, retry: Retry | None, *, now: datetime
    ) -> datetime | None:
        """When the failed try ``ticket`` runs again under ``retry``, or None if it won't.

        Jitter is derived from the instance id and run number, so a replay of
        the same history computes the same times.
        """
        first = self.d.first_failure_at if ticket.attempt > 1 else None
        return retry_decision(
            retry,
            attempt=ticket.attempt,
            first_failure_at=first or now,
            now=now,
            jitter_seed=(self.id.int & 0xFFFFFFFFFFFF) ^ ticket.run_count,
        )


def _execute_count(d: InstanceData, run_count: int) -> int:
    """``execute_count`` after one more ``execute`` record of run ``run_count``.

    A task counts every call of ``execute`` (a retry its ``on_error`` scheduled
    is the same run's next try, and still a call); the other kinds count runs.
    """
    return d.execute_count + 1 if d.kind == "task" else run_count


def error_type_name(error: BaseException) -> str:
    """``module.QualName`` of an exception's type (builtins without the module)."""
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_AGGREGATES_BY_TOPIC: dict[str, type[JobInstance]] = {}


def stored_topic(cls: type[JobInstance]) -> str:
    """The topic that stored rows use for aggregate class ``cls``.

    Short and independent of the module layout (``durable_jobs:TaskInstance``),
    so moving code never strands stored logs.
    """
    return f"durable_jobs:{cls.__name__}"


def register_aggregate(cls: type[_I]) -> type[_I]:
    """Class decorator: allow ``cls`` to be rebuilt from stored events and snapshots."""
    _AGGREGATES_BY_TOPIC[stored_topic(cls)] = cls
    return cls


def aggregate_classes() -> dict[str, type[JobInstance]]:
    """The aggregate classes that stored data may name, by stored topic."""
    return dict(_AGGREGATES_BY_TOPIC)


EVENT_NAMES: tuple[str, ...] = (
    "Started",
    "Restarted",
    "Terminated",
    "StateChanged",
    "StatePatched",
    "AlarmSet",
    "AlarmCleared",
    "RunSucceeded",
    "RunFailed",
    "RetryExhausted",
    "Resumed",
    "EventAdded",
    "BatchClosed",
    "Flushed",
    "Cleared",
)


def event_classes() -> dict[str, type[JobInstance.Event]]:
    """The stored topic of every event class of every registered aggregate.

    Topics are ``durable_jobs:{Aggregate}.{Event}``: short, and independent of
    the module layout, so moving code never strands stored logs.
    """
    return {
        f"durable_jobs:{agg.__name__}.{name}": getattr(agg, name)
        for agg in _AGGREGATES_BY_TOPIC.values()
        for name in EVENT_NAMES
    }
