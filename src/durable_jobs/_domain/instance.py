"""The job-instance aggregate shared by all kinds: its data, events and snapshots.

An instance is an eventsourcing :class:`~eventsourcing.domain.Aggregate` whose
attributes live in one pydantic model (``agg.d``) so that snapshots are plain
JSON. Events are explicit classes with an ``apply`` method; commands (the
"decide" functions) are methods of the kind-specific subclasses that check
preconditions and trigger events. Every event gets its ``timestamp`` from the
caller: the domain never reads a clock.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar, cast
from uuid import UUID

from eventsourcing.domain import (
    Aggregate,
    CanInitAggregate,
    CanMutateAggregate,
    DomainEvent,
    Snapshot,
    _init_mentions_id,
)
from eventsourcing.utils import get_topic

from durable_jobs._domain import events
from durable_jobs._domain.backoff import Retry, retry_decision
from durable_jobs._domain.data import (
    UNCHANGED,
    ExhaustedAction,
    Handler,
    InstanceData,
    Intents,
    RunTicket,
    as_utc,
    built,
)
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.patch import state_patch
from durable_jobs._domain.topics import (
    _AGGREGATES_BY_TOPIC,
    EVENT_NAMES,
    aggregate_classes,
    event_classes,
    register_aggregate,
    stored_topic,
)

__all__ = [
    "EVENT_NAMES",
    "UNCHANGED",
    "ExhaustedAction",
    "Handler",
    "InstanceData",
    "InstanceSnapshot",
    "Intents",
    "JobInstance",
    "RunTicket",
    "aggregate_classes",
    "error_type_name",
    "event_classes",
    "register_aggregate",
    "stored_topic",
]

_I = TypeVar("_I", bound="JobInstance")


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
        agg.d = cls.data_model.model_validate(_without_legacy_keys(cls, self.state["data"]))
        return agg


#: Debounce fields that snapshots of every kind held (at their defaults) before they
#: moved to the debounce data: dropped when such a snapshot is read.
_LEGACY_DEFAULTS: dict[str, Any] = {
    "batch_started_at": None,
    "batch_last_added_at": None,
    "next_batch_no": 1,
    "closed": [],
    "closed_due_at": None,
}


def _without_legacy_keys(cls: type[JobInstance], data: dict[str, Any]) -> dict[str, Any]:
    fields = cls.data_model.model_fields
    return {
        k: v
        for k, v in data.items()
        if k in fields or k not in _LEGACY_DEFAULTS or v != _LEGACY_DEFAULTS[k]
    }


def _dump_data(d: InstanceData) -> dict[str, Any]:
    """``d`` as JSON, without type versions that are 1 (the default): snapshots of
    version-1 jobs are what durable-jobs wrote before type versions existed."""
    data = d.model_dump(mode="json")
    if data["state_version"] == 1:
        del data["state_version"]
    if data["alarm_trace"] is None:
        del data["alarm_trace"]
    if not data["alarm_manual"]:
        del data["alarm_manual"]
    for batch in data.get("closed", ()):
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
    data_model: ClassVar[type[InstanceData]] = InstanceData
    Snapshot = InstanceSnapshot
    #: Events of this kind only, besides the common ones (stored topics).
    OWN_EVENTS: ClassVar[tuple[str, ...]] = ()

    # ---- events (see .events) ---------------------------------------------------

    # Aliases, not annotations: eventsourcing would turn class-body annotations
    # into fields of the created event.
    if TYPE_CHECKING:
        Event: TypeAlias = events.Event
        Started: TypeAlias = events.Started
        Restarted: TypeAlias = events.Restarted
        Terminated: TypeAlias = events.Terminated
        StateChanged: TypeAlias = events.StateChanged
        StatePatched: TypeAlias = events.StatePatched
        AlarmSet: TypeAlias = events.AlarmSet
        AlarmCleared: TypeAlias = events.AlarmCleared
        RunSucceeded: TypeAlias = events.RunSucceeded
        RunFailed: TypeAlias = events.RunFailed
        RetryExhausted: TypeAlias = events.RetryExhausted
        Resumed: TypeAlias = events.Resumed
        EventAdded: TypeAlias = events.EventAdded
    else:
        Event = events.Event
        Started = events.Started
        Restarted = events.Restarted
        Terminated = events.Terminated
        StateChanged = events.StateChanged
        StatePatched = events.StatePatched
        AlarmSet = events.AlarmSet
        AlarmCleared = events.AlarmCleared
        RunSucceeded = events.RunSucceeded
        RunFailed = events.RunFailed
        RetryExhausted = events.RetryExhausted
        Resumed = events.Resumed
        EventAdded = events.EventAdded

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
        uuid = instance_uuid(cls.kind, job, instance_id)
        topic = _plain_created_topic(cls)
        fields = {
            "kind": cls.kind,
            "job": job,
            "instance_id": instance_id,
            "state": state,
            "type_version": type_version,
        }
        if topic is None or now is None:
            return cls._create(cls.Started, id=uuid, timestamp=now, **fields)
        # What eventsourcing's _create and the created event's mutate do (the
        # aggregate's __init__ takes nothing), without their generic steps:
        # filtering keyword arguments by signature, copies, topic lookups.
        started: Any = cls.Started  # a dataclass made by eventsourcing's metaclass
        try:
            event = started(
                originator_topic=topic,
                originator_id=uuid,
                originator_version=cls.INITIAL_VERSION,
                timestamp=now,
                **fields,
            )
        except TypeError as exc:
            msg = f"Unable to construct '{started.__qualname__}' event: {exc}"
            raise TypeError(msg) from exc
        agg = cls.__new__(cls)
        agg.__base_init__(uuid, cls.INITIAL_VERSION, now)
        cls.__init__(agg)
        event.apply(agg)
        agg._pending_events.append(event)
        return agg

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

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """Record the next event: what eventsourcing's ``trigger_event`` does, cheaper.

        An event with eventsourcing's own ``mutate`` (all but the created event),
        given a ``timestamp``, is applied without ``mutate``'s checks (its id and
        version are this instance's, set here) and without copying ``kwargs``;
        anything else goes the stock way.
        """
        plan = _PLAIN.get(event_class)
        if plan is None:
            plan = _PLAIN[event_class] = _plain_plan(event_class)
            if not isinstance(plan, bool):
                _FIELDS[event_class] = tuple(plan[0].items())
        if (
            plan is False
            or kwargs.get("timestamp") is None
            or "originator_id" in kwargs
            or "originator_version" in kwargs
        ):
            super().trigger_event(event_class, **kwargs)
            return
        version = self._version + 1
        values: dict[str, Any] | None = None
        if plan is not True:
            # Built without the dataclass __init__ (see built) when ``kwargs`` name
            # every field without a default and nothing else (the fields in their
            # declared order, as __init__ sets them); else __init__ says what is wrong.
            template, required, size = plan
            values = template.copy()
            values["originator_id"] = self._id
            values["originator_version"] = version
            values.update(kwargs)
            if len(values) != size or not kwargs.keys() >= required:
                values = None
        if values is not None:
            event = _new_object(event_class)  # built(event_class, values), inline
            _set_attribute(event, "__dict__", values)
        else:
            try:
                event = event_class(originator_id=self._id, originator_version=version, **kwargs)
            except TypeError as exc:
                msg = f"Can't construct event {event_class}: {exc}"
                raise TypeError(msg) from None
        self._record(event, version)

    def _record(self, event: Any, version: int) -> None:
        """Apply ``event``, this instance's next (at ``version``), and keep it pending:
        the end of every :meth:`trigger_event` and of the run commands' own builds."""
        event.apply(self)
        self._version = version
        self._modified_on = event.timestamp
        self._pending_events.append(event)

    def collect_events(self) -> list[Any]:
        """The pending events, oldest first; none are pending afterwards (the list
        is handed over whole, not emptied one event at a time)."""
        events = self._pending_events
        self._pending_events = []
        return events

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
            return
        cls = self.AlarmSet
        if now is None or _FIELDS.get(cls) != _ALARM_SET_FIELDS:
            self.trigger_event(cls, timestamp=now, at=at)
            return
        # What trigger_event(cls, timestamp=now, at=at) does for such a class (it
        # built one before, see _FIELDS), without its generic steps: on every run.
        version = self._version + 1
        values = {
            "originator_id": self._id,
            "originator_version": version,
            "timestamp": now,
            "at": at,
            "trace": None,
        }
        self._record(built(cls, values), version)

    def stamp_trace(self, trace: str) -> None:
        """Record ``trace`` (the traceparent of the client call committing now) on the
        pending ``AlarmSet`` events, so the runs they make due link to that call."""
        pending = self.pending_events
        stamped = False
        for i, event in enumerate(pending):
            if isinstance(event, events.AlarmSet) and event.trace is None:
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
        """Accepted keys whose window has passed (forgotten with the next event).

        Keys are kept in the order they were accepted (a key accepted again after it
        expired is forgotten first, then added at the end), so the expired ones are at
        the front: the scan stops at the first key still in its window, and an add
        costs the same with 10 keys remembered or 100,000. (A clock set back between
        two adds keeps the later key a little longer, never forgets one too soon.)
        """
        expired: list[str] = []
        horizon = now - window  # accepted at or before it: expired
        for key, at in self.d.idempotency.items():
            if at > horizon:
                break
            expired.append(key)
        return expired

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
        # intents.state_changed and .schedule_changed, without their property calls.
        if intents.state is not UNCHANGED:
            self.set_state(intents.state, now=now, type_version=intents.state_version)
        if intents.terminate:
            self.terminate(now=now, reason=intents.terminate_reason)
            return
        schedule = intents.schedule
        self.set_alarm(alarm if schedule is UNCHANGED else schedule, now=now)

    def accepts(self, ticket: RunTicket) -> bool:
        """Whether a run with ``ticket`` may still be committed (live, same generation)."""
        return self.d.live and ticket.generation == self.d.generation

    def record_success(
        self, ticket: RunTicket, *, handler: Handler, now: datetime, duration: float
    ) -> bool:
        """Record a handler run that returned; False (nothing recorded) if it is stale."""
        d = self.d
        if not (d.live and ticket.generation == d.generation):  # self.accepts(ticket)
            return False
        cls = self.RunSucceeded
        if now is None or _FIELDS.get(cls) != _RUN_SUCCEEDED_FIELDS:
            self.trigger_event(
                cls,
                timestamp=now,
                handler=handler,
                run_count=ticket.run_count,
                attempt=ticket.attempt,
                duration=duration,
            )
            return True
        # What trigger_event does for such a class (see set_alarm), on every run.
        version = self._version + 1
        values = {
            "originator_id": self._id,
            "originator_version": version,
            "timestamp": now,
            "handler": handler,
            "run_count": ticket.run_count,
            "attempt": ticket.attempt,
            "duration": duration,
        }
        self._record(built(cls, values), version)
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
            message=error_message(error),
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
        # Built without RunTicket's __init__ (see built): made on every run.
        if d.attempt and not fresh:
            run_count, attempt = d.run_count, d.attempt + 1
        else:
            run_count, attempt = d.run_count + 1, 1
        ticket = _new_object(RunTicket)  # built(RunTicket, ...), inline
        _set_attribute(
            ticket,
            "__dict__",
            {"run_count": run_count, "attempt": attempt, "generation": d.generation},
        )
        return ticket

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


@cache
def _plain_created_topic(cls: type[JobInstance]) -> str | None:
    """eventsourcing's topic of aggregate class ``cls`` if :meth:`JobInstance.create`
    may make its instances itself: its created event has eventsourcing's own
    ``mutate``, its ``__init__`` takes no argument and no id; else None."""
    if cls.Started.mutate is not CanInitAggregate.mutate or cls in _init_mentions_id:
        return None
    if list(inspect.signature(cls.__init__).parameters) != ["self"]:
        return None
    return get_topic(cls)


#: Whether ``JobInstance.trigger_event`` applies events of a class itself, by class,
#: and how it builds them (see :func:`_plain_plan`).
_PLAIN: dict[type[Any], bool | tuple[dict[str, Any], frozenset[str], int]] = {}


def _is_plain(cls: type[Any]) -> bool:
    """Whether events of ``cls`` are applied by eventsourcing's own ``mutate``: check
    the id and version, ``apply``, set the version and time of modification."""
    return getattr(cls, "mutate", None) is CanMutateAggregate.mutate


def _plain_plan(cls: type[Any]) -> bool | tuple[dict[str, Any], frozenset[str], int]:
    """False if events of ``cls`` are not :func:`_is_plain` (``trigger_event`` leaves
    them to eventsourcing); else how it builds one without the dataclass ``__init__``:
    ``(every field, in order, with its default or None; the fields without a
    default besides the id and version; how many fields)``, or True (built by ``__init__``) for a
    class whose ``__init__`` does more than set its fields."""
    if not _is_plain(cls):
        return False
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.frozen
        or cls.__dictoffset__ == 0  # slots: no __dict__ to set
        or getattr(cls, "__post_init__", None) is not DomainEvent.__post_init__
    ):
        return True
    template: dict[str, Any] = {}
    required: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.init or f.default_factory is not dataclasses.MISSING:
            return True
        if f.default is dataclasses.MISSING:
            template[f.name] = None
            if f.name not in _ID_FIELDS:
                required.add(f.name)
        else:
            template[f.name] = f.default
    # Its __init__ must do nothing but set the fields: tried once, with stand-ins.
    values: dict[str, Any] = {name: object() for name in template}
    values["originator_id"] = UUID(int=0)
    try:
        if vars(cls(**values)) != values:
            return True
    except Exception:
        return True
    return template, frozenset(required), len(template)


_ID_FIELDS = ("originator_id", "originator_version")
#: By event class that ``JobInstance.trigger_event`` builds without its ``__init__`` (a
#: tuple plan, see :func:`_plain_plan`): its fields in declared order with their
#: defaults (None: required), set when it first builds one. The commands of every run
#: (``record_success``, ``set_alarm``) then build such an event themselves, when its
#: fields are the ones they set.
_FIELDS: dict[type[Any], tuple[tuple[str, Any], ...]] = {}
_RUN_SUCCEEDED_FIELDS = tuple(
    (name, None)
    for name in (
        "originator_id",
        "originator_version",
        "timestamp",
        "handler",
        "run_count",
        "attempt",
        "duration",
    )
)
_ALARM_SET_FIELDS = tuple(
    (name, None) for name in ("originator_id", "originator_version", "timestamp", "at", "trace")
)
_new_object = object.__new__
_set_attribute = object.__setattr__


#: The longest error message recorded (characters): the rest is cut, and the message
#: says how much (a handler's error carrying a whole response body, say, was recorded
#: whole, once per failed try).
MAX_ERROR_MESSAGE = 64 * 1024


def _clipped(text: str) -> str:
    if len(text) <= MAX_ERROR_MESSAGE:
        return text
    return (
        f"{text[:MAX_ERROR_MESSAGE]}... [{len(text) - MAX_ERROR_MESSAGE:,} more characters "
        "not recorded]"
    )


def error_message(error: BaseException) -> str:
    """``str(error)``, made storable: a lone surrogate (a file name from ``os.listdir``,
    bytes decoded with ``surrogateescape``) is written as its escape, and a ``__str__``
    that raises gives a message saying so; at most :data:`MAX_ERROR_MESSAGE`
    characters of it (the rest cut, and said). A failure is always recorded."""
    try:
        text = str(error)
    except Exception as exc:  # the error's own __str__ is broken
        return f"<str() of this {error_type_name(error)} raised {error_type_name(exc)}>"
    return _storable(_clipped(text))


def error_repr(error: BaseException) -> str:
    """``repr(error)`` for a message, or what it is when its ``__repr__`` raises: a
    handler's broken error class must not turn a failure into an exception of ours."""
    try:
        return _clipped(repr(error))
    except Exception as exc:
        return f"<{error_type_name(error)} whose repr() raised {error_type_name(exc)}>"


def error_type_name(error: BaseException) -> str:
    """``module.QualName`` of an exception's type (builtins without the module), made
    storable as :func:`error_message` makes the message (a module loaded from a file
    name that is not UTF-8 has a lone surrogate in its name)."""
    t = type(error)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return _storable(name)


def _storable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\udcff``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
