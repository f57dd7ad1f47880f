"""The events every kind of instance records, and how each changes the instance.

They are the classes ``JobInstance.Started``, ``JobInstance.RunFailed``...
(each kind's aggregate has its own subclasses, ``ContinuousInstance.RunFailed``);
the debounce batches' own events are in :mod:`.batches`. An event's ``NAME``
is its name in the history; its ``apply`` is the only code that changes the
instance's data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, cast

from eventsourcing.domain import Aggregate
from pydantic import JsonValue, StringConstraints

from durable_jobs._domain.data import InstanceData, UtcDatetime, new_data
from durable_jobs._domain.patch import apply_state_patch

if TYPE_CHECKING:
    from durable_jobs._domain.instance import JobInstance

__all__ = [
    "AlarmCleared",
    "AlarmSet",
    "Event",
    "EventAdded",
    "Restarted",
    "Resumed",
    "RetryExhausted",
    "RunFailed",
    "RunSucceeded",
    "Started",
    "StateChanged",
    "StatePatched",
    "Terminated",
]


class Event(Aggregate.Event):
    """Base of the instance events (``JobInstance.Event``)."""

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
        # aggregate: a JobInstance; its data built without validating our own values.
        aggregate.d = new_data(
            aggregate.data_model,
            kind=self.kind,
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
        )


class Terminated(Event):
    """The instance ended: alarm cancelled, state and buffers removed.

    The counters (runs, and a task's events received) are kept, as the
    history of the generation that ended; a restart starts them at zero.
    """

    NAME: ClassVar[str] = "terminated"
    reason: str | None

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
        _assign(
            d,
            {
                "live": False,
                "state": None,
                "alarm_at": None,
                "alarm_manual": False,
                "attempt": 0,
                "first_failure_at": None,
                "paused": False,
            },
        )


class StateChanged(Event):
    """The state (for debounce: the open batch's state) was replaced."""

    NAME: ClassVar[str] = "state_changed"
    state: JsonValue
    type_version: int = 1

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
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
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
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
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
        # What pydantic's __setattr__ does for a field (see _assign), without its calls.
        d.__dict__["alarm_at"] = self.at
        d.__dict__["alarm_manual"] = self.at == self.timestamp
        d.__pydantic_fields_set__.add("alarm_at")
        if self.trace is not None:
            d.alarm_trace = self.trace


class AlarmCleared(Event):
    """The instance has no alarm any more."""

    NAME: ClassVar[str] = "alarm_cleared"

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
        d.alarm_at = None
        d.alarm_trace = None
        d.alarm_manual = False


class RunSucceeded(Event):
    """A handler run returned normally."""

    NAME: ClassVar[str] = "run_succeeded"
    handler: str
    run_count: int
    attempt: int
    duration: float

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
        if self.handler == "execute":
            run_count = self.run_count
            # _assign(d, ...) with _execute_count(d, run_count), inline: on every run.
            values = {
                "run_count": run_count,
                "execute_count": d.execute_count + 1 if d.kind == "task" else run_count,
                "attempt": 0,
                "first_failure_at": None,
                "paused": False,
            }
            d.__dict__.update(values)
            d.__pydantic_fields_set__.update(values)


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
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
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
        d.paused = False


class RetryExhausted(Event):
    """The last allowed try failed; ``action`` says what happened next."""

    NAME: ClassVar[str] = "retry_exhausted"
    run_count: int
    attempt: int
    action: str

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
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
        aggregate.d.paused = False  # a JobInstance


class EventAdded(Event):
    """An input event was accepted (debounce ``add``, task ``send``)."""

    NAME: ClassVar[str] = "event_added"
    event: JsonValue
    idempotency_key: str | None
    expired_keys: list[str]
    type_version: int = 1

    def apply(self, aggregate: Any) -> None:
        d: InstanceData = aggregate.d  # aggregate: a JobInstance (no cast() call a run)
        for key in self.expired_keys:
            d.idempotency.pop(key, None)
        if self.idempotency_key is not None:
            d.idempotency[self.idempotency_key] = self.timestamp
        d.event_count += 1


def _assign(d: InstanceData, values: dict[str, Any]) -> None:
    """``d.name = value`` for each of ``values`` (fields of the model) at once: what
    pydantic's ``__setattr__`` does for them, as its models here do not validate
    assignments (the value goes in ``__dict__``, the name in the fields set)."""
    d.__dict__.update(values)
    d.__pydantic_fields_set__.update(values)


def _execute_count(d: InstanceData, run_count: int) -> int:
    """``execute_count`` after one more ``execute`` record of run ``run_count``.

    A task counts every call of ``execute`` (a retry its ``on_error`` scheduled
    is the same run's next try, and still a call); the other kinds count runs.
    """
    return d.execute_count + 1 if d.kind == "task" else run_count
