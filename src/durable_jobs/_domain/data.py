"""The values an instance is made of: its data, run tickets and handler intents.

Pure and kind-neutral; the debounce batches live in :mod:`.batches`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from durable_jobs._domain.backoff import OnExhausted
from durable_jobs._domain.ids import KINDS, Kind

__all__ = [
    "UNCHANGED",
    "ExhaustedAction",
    "Handler",
    "InstanceData",
    "Intents",
    "RunTicket",
    "UtcDatetime",
    "as_utc",
    "built",
    "new_data",
]

_T = TypeVar("_T")

Handler = Literal["execute", "on_event", "on_idle", "on_error"]
ExhaustedAction = OnExhausted


def as_utc(value: datetime) -> datetime:
    """Stored times come back as ``datetime.UTC`` times (pydantic would give its own tzinfo)."""
    if value.tzinfo is None:
        msg = "a stored time must be timezone-aware"
        raise ValueError(msg)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = f"a stored time must fall within the years 1 to 9999 in UTC, not {value.isoformat()}"
        raise ValueError(msg) from None


#: A timezone-aware datetime that is normalised to ``datetime.UTC`` when validated.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]

_new_object = object.__new__
_set_attribute = object.__setattr__


def built(cls: type[_T], values: dict[str, Any]) -> _T:
    """An instance of the frozen dataclass ``cls`` (no ``__slots__``, no ``__post_init__``
    to run) with ``values``, a new dict of *every* field's value, as its ``__dict__``.

    What its ``__init__`` makes, without one ``object.__setattr__`` per field: the
    objects a run builds (tickets, intents, events, stored rows) cost a third less.
    """
    obj = _new_object(cls)
    _set_attribute(obj, "__dict__", values)
    return obj


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


class InstanceData(BaseModel):
    """Everything an instance knows; rebuilt from its log, stored whole in snapshots.

    The kinds that know more extend it (a debounce instance's batches).
    """

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
    # Whether the alarm was set to ring at the moment it was set (a trigger, a start
    # that runs at once): a run asked for, not a slot of the schedule, so a continuous
    # job's misfire="skip" does not drop it however late it runs.
    alarm_manual: bool = False
    run_count: int = 0
    # The last failed try of the run that is waiting for a retry (0: none waiting).
    attempt: int = 0
    first_failure_at: UtcDatetime | None = None
    paused: bool = False
    # Task: events received; debounce: events in the open batch.
    event_count: int = 0
    # Task: calls of execute (retries included); other kinds: runs.
    execute_count: int = 0
    # Accepted idempotency keys and when they were accepted (a factory, not a default
    # pydantic deep-copies for every instance built: every new instance, every load).
    idempotency: dict[str, UtcDatetime] = Field(default_factory=dict)

    #: The fields whose containers events update in place (:meth:`clone` copies them).
    _containers: ClassVar[tuple[str, ...]] = ("idempotency",)

    def clone(self) -> Self:
        """A copy to decide on. Events replace values (states are never mutated in
        place) except the containers they update, which are copied: much cheaper
        than a deep copy. What ``model_copy`` does, without its generic steps (it
        ran on every run): no extra fields, no private attributes."""
        cls = type(self)
        new = cls.__new__(cls)
        values = self.__dict__.copy()
        for name in self._containers:
            values[name] = values[name].copy()
        _set = object.__setattr__
        _set(new, "__dict__", values)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", self.__pydantic_fields_set__.union(self._containers))
        _set(new, "__pydantic_private__", None)
        return new


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


#: JSON values whose pydantic validation (as ``JsonValue``) gives them back as they are.
_PLAIN_JSON: frozenset[type] = frozenset({type(None), str, int, float, bool})
#: Per data model: its fields' defaults, in declaration order (a default factory as
#: itself, to call for each instance), and the fields that have a factory.
_DEFAULTS: dict[type[InstanceData], tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}


def _defaults(cls: type[InstanceData]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    found = _DEFAULTS.get(cls)
    if found is None:
        values: dict[str, Any] = {}
        factories: list[tuple[str, Any]] = []
        for name, field in cls.model_fields.items():
            if field.default_factory is not None:
                values[name] = None
                factories.append((name, field.default_factory))
            else:
                # A required field (no default) is always given: its place is kept.
                values[name] = None if field.is_required() else field.default
        found = _DEFAULTS[cls] = (values, tuple(factories))
    return found


def new_data(
    cls: type[InstanceData],
    *,
    kind: str,
    job: str,
    instance_id: str,
    created_at: datetime,
    state: Any,
    state_version: int,
    **more: Any,
) -> InstanceData:
    """``cls(kind=..., ...)``: the data of a new instance (or generation).

    Built as pydantic would build it, without validating again what needs no
    validation: our own values of the exact types the fields take (a UTC time, a
    plain JSON ``state``). Anything else is validated by pydantic, as before.
    """
    if (
        type(job) is str
        and type(instance_id) is str
        and kind in KINDS
        and type(created_at) is datetime
        and created_at.tzinfo is UTC
        and type(state) in _PLAIN_JSON
        and type(state_version) is int
        and not more
    ):
        template, factories = _defaults(cls)
        values = template.copy()
        values["kind"] = kind
        values["job"] = job
        values["instance_id"] = instance_id
        values["created_at"] = created_at
        values["state"] = state
        values["state_version"] = state_version
        for name, factory in factories:
            values[name] = factory()
        new = _new_object(cls)
        _set_attribute(new, "__dict__", values)
        _set_attribute(new, "__pydantic_extra__", None)
        _set_attribute(new, "__pydantic_fields_set__", set(_GIVEN))
        _set_attribute(new, "__pydantic_private__", None)
        return new
    return cls(
        kind=kind,  # type: ignore[arg-type]  # validated here
        job=job,
        instance_id=instance_id,
        created_at=created_at,
        state=state,
        state_version=state_version,
        **more,
    )


_GIVEN = ("kind", "job", "instance_id", "created_at", "state", "state_version")
