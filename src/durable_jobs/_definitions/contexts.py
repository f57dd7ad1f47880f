"""The ``ctx`` objects handlers receive.

Context methods only record intent; the runtime commits all of it together
after the handler returns (and none of it if the handler raises).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from durable_jobs._domain.instance import UNCHANGED, Intents
from durable_jobs._domain.statements import Statement, Writes
from durable_jobs._domain.values import check_alarm_time, check_reason
from durable_jobs._errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from durable_jobs._definitions.codecs import TypeCodec

__all__ = [
    "ContinuousContext",
    "DebounceContext",
    "DebounceEventContext",
    "TaskContext",
]

S = TypeVar("S")
E = TypeVar("E")

_new_object = object.__new__
_set_attribute = object.__setattr__


class _Context:
    """What every context says: whose handler this is."""

    def __init__(self, *, instance_id: str, job_name: str, writes: Writes | None = None) -> None:
        self._instance_id = instance_id
        self._job_name = job_name
        self._writes = writes if writes is not None else Writes(supported=False)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
        """Record an SQL statement to run when the run commits, in the same transaction.

        Nothing runs now. If the run commits, its statements run in order in
        the database transaction that stores the run's state, counters and
        next alarm: all of it commits together or none of it does. A handler
        that raises, times out or is cancelled runs none of its statements.
        Placeholders are the store driver's (SQLite ``?`` or ``:name``,
        Postgres ``%s`` or ``%(name)s``). Transaction control (``BEGIN``,
        ``COMMIT``, ``SAVEPOINT``...) and session settings (``PRAGMA``, ``SET``
        but ``SET LOCAL``, ``RESET``...) are refused with ValidationError. Needs a
        SQLite or Postgres store (ConfigurationError on the memory store).
        """
        self._writes.add(sql, params)

    @property
    def _statements(self) -> list[Statement]:
        return self._writes.statements

    @property
    def instance_id(self) -> str:
        """The instance's id, as the caller gave it."""
        return self._instance_id

    @property
    def job_name(self) -> str:
        """The job's registered name."""
        return self._job_name


class _StatefulContext(_Context, Generic[S]):
    """State intents shared by the continuous and task contexts."""

    #: Set on the context an ``on_exhausted`` hook gets: it decides by what it returns,
    #: so state and termination intents are refused there, not silently dropped.
    _exhausted_hook = False

    @staticmethod
    def _refuse_in_hook(call: str) -> None:
        msg = (
            f"ctx.{call}() does nothing in an on_exhausted hook: the hook decides by "
            "what it returns ('terminate', 'pause' or 'continue'), and the state stays "
            "the committed one. Return 'terminate' to end the instance."
        )
        raise ConfigurationError(msg)

    def __init__(
        self,
        *,
        codec: TypeCodec[Any],
        state: S,
        instance_id: str,
        job_name: str,
        writes: Writes | None = None,
    ):
        # _Context.__init__'s fields, set here: one call less for every context made.
        self._instance_id = instance_id
        self._job_name = job_name
        self._writes = writes if writes is not None else Writes(supported=False)
        self._codec = codec
        self._state = state
        self._new_state: Any = UNCHANGED
        self._terminate = False
        self._terminate_reason: str | None = None

    def _current(self) -> Any:
        return self._state if self._new_state is UNCHANGED else self._new_state

    def set_state(self, new: S) -> None:
        """Replace the state when the handler returns (validated now: a value that does
        not fit the type or cannot be stored as JSON raises ValidationError here)."""
        if self._exhausted_hook:
            self._refuse_in_hook("set_state")
        self._new_state = self._codec.checked(new)[0]

    def _intents(self, _value: object = None, schedule: Any = UNCHANGED) -> Intents:
        """What the handler asked for (``schedule``: a task's alarm). ``_value`` is
        ignored: it lets a run pass this as the handler call's ``then`` (called with
        the handler's return value) without a wrapper call on every run."""
        state = new = self._new_state
        if new is not UNCHANGED:
            codec = self._codec
            # set_state validated it; a value of a plain scalar type (immutable) is its
            # own JSON data, as set_state's dump found (see TypeCodec.dump).
            if type(new) is not codec._scalar:
                state = codec.dump(new)
        # Built without Intents' __init__ (built(Intents, ...), inline): on every run.
        intents = _new_object(Intents)
        _set_attribute(
            intents,
            "__dict__",
            {
                "state": state,
                "schedule": schedule,
                "terminate": self._terminate,
                "terminate_reason": self._terminate_reason,
                "state_version": self._codec.version,
            },
        )
        return intents


@final
class ContinuousContext(_StatefulContext[S]):
    """What a continuous job's ``execute(ctx)`` sees and can ask for."""

    def __init__(
        self,
        *,
        codec: TypeCodec[Any],
        state: S,
        instance_id: str,
        job_name: str,
        run_count: int,
        attempt: int,
        writes: Writes | None = None,
    ) -> None:
        # _StatefulContext.__init__'s fields, set here: one call less on every run.
        self._instance_id = instance_id
        self._job_name = job_name
        self._writes = writes if writes is not None else Writes(supported=False)
        self._codec = codec
        self._state = state
        self._new_state: Any = UNCHANGED
        self._terminate = False
        self._terminate_reason: str | None = None
        self._run_count = run_count
        self._attempt = attempt

    @property
    def state(self) -> S:
        """The state: as committed, or as this handler last set it."""
        return self._current()  # type: ignore[no-any-return]

    def update_state(self, fn: Callable[[S], S]) -> None:
        """Replace the state with ``fn(state)``."""
        self.set_state(fn(self.state))

    @property
    def run_count(self) -> int:
        """Which run this is (1 on the first; a retry keeps its run's number)."""
        return self._run_count

    @property
    def attempt(self) -> int:
        """Which try of this run (1 on the first)."""
        return self._attempt

    @property
    def is_retry(self) -> bool:
        """Whether this try retries a failed one."""
        return self._attempt > 1

    def terminate(self, reason: str | None = None) -> None:
        """End the instance when the handler returns (alarm cancelled, state removed)."""
        if self._exhausted_hook:
            self._refuse_in_hook("terminate")
        self._terminate_reason = check_reason(reason)
        self._terminate = True

    def __repr__(self) -> str:
        return (
            f"<ContinuousContext {self._job_name}/{self._instance_id} run {self._run_count} "
            f"attempt {self._attempt}>"
        )


@final
class DebounceEventContext(_Context, Generic[E, S]):
    """What a debounce job's ``on_event(ctx)`` reducer sees; it returns the new state."""

    def __init__(
        self,
        *,
        event: E,
        state: S | None,
        event_count: int,
        instance_id: str,
        job_name: str,
        writes: Writes | None = None,
    ) -> None:
        super().__init__(instance_id=instance_id, job_name=job_name, writes=writes)
        self._event = event
        self._state = state
        self._event_count = event_count

    @property
    def event(self) -> E:
        """The event being added (validated)."""
        return self._event

    @property
    def state(self) -> S | None:
        """The batch's state so far; None for the first event of a batch."""
        return self._state

    @property
    def event_count(self) -> int:
        """Events in the batch, including this one."""
        return self._event_count


@final
class DebounceContext(_Context, Generic[S]):
    """What a debounce job's ``execute(ctx)`` (the flush) sees."""

    def __init__(
        self,
        *,
        state: S,
        event_count: int,
        debounce_started_at: datetime,
        flush_reason: str,
        attempt: int,
        instance_id: str,
        job_name: str,
        writes: Writes | None = None,
    ) -> None:
        self._state = state
        self._event_count = event_count
        self._started = debounce_started_at
        self._reason = flush_reason
        self._attempt = attempt
        super().__init__(instance_id=instance_id, job_name=job_name, writes=writes)

    @property
    def state(self) -> S:
        """The batch's accumulated state."""
        return self._state

    @property
    def event_count(self) -> int:
        """Events in the batch."""
        return self._event_count

    @property
    def debounce_started_at(self) -> datetime:
        """When the batch received its first event."""
        return self._started

    @property
    def flush_reason(self) -> str:
        """``flush_after``, ``max_wait``, ``max_events`` or ``manual``.

        A retry keeps the first try's reason.
        """
        return self._reason

    @property
    def attempt(self) -> int:
        """Which try of this flush (1 on the first)."""
        return self._attempt

    @property
    def is_retry(self) -> bool:
        """Whether this try retries a failed flush."""
        return self._attempt > 1

    def __repr__(self) -> str:
        return (
            f"<DebounceContext {self._job_name}/{self._instance_id} {self._event_count} events "
            f"({self._reason}) attempt {self._attempt}>"
        )


def to_alarm_time(when: object, now: datetime, *, earliest: datetime | None = None) -> datetime:
    """``schedule(when)``'s argument as a UTC time: a timedelta from now, an aware
    datetime, or epoch seconds.

    A time in the past is refused (ValidationError): a negative timedelta, or a
    datetime or epoch seconds before ``earliest`` (when the handler started;
    ``now`` if not given). An alarm in the past would fire at once, and a task
    that reschedules itself so would run without end. Use ``timedelta(0)`` to
    run again as soon as possible.
    """
    at = _alarm_time(when, now)
    if isinstance(when, timedelta):
        if when < timedelta(0):
            msg = (
                f"schedule() got a negative delay {when!r}: an alarm cannot be set in the "
                "past; use timedelta(0) to run again as soon as possible."
            )
            raise ValidationError(msg)
    elif at < (earliest or now):
        msg = (
            f"schedule() got {at.isoformat()}, before the handler started "
            f"({(earliest or now).isoformat()}): an alarm cannot be set in the past; "
            "use timedelta(0) to run again as soon as possible."
        )
        raise ValidationError(msg)
    return check_alarm_time(at, "schedule()")


def _alarm_time(when: object, now: datetime) -> datetime:
    if isinstance(when, timedelta):
        try:
            return now + when
        except OverflowError as exc:
            raise ValidationError(f"schedule() got a delay out of range: {when!r}") from exc
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            msg = (
                f"schedule() got a naive datetime {when!r}; pass a timezone-aware one "
                "(e.g. datetime.now(UTC) + ...) or a timedelta from now."
            )
            raise ValidationError(msg)
        try:
            return when.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError(f"schedule() got a datetime out of range: {when!r}") from exc
    if isinstance(when, int | float) and not isinstance(when, bool):
        try:
            return datetime.fromtimestamp(when, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValidationError(f"schedule() got epoch seconds out of range: {when!r}") from exc
    msg = (
        f"schedule() takes a timedelta (from now), a timezone-aware datetime or epoch "
        f"seconds, not {when!r}."
    )
    raise ValidationError(msg)


@final
class TaskContext(_StatefulContext[S]):
    """What every handler of a task job sees and can ask for."""

    def __init__(
        self,
        *,
        codec: TypeCodec[Any],
        state: S,
        instance_id: str,
        job_name: str,
        now: Callable[[], datetime],
        scheduled_at: datetime | None,
        event_count: int,
        execute_count: int,
        created_at: datetime,
        writes: Writes | None = None,
        started: datetime | None = None,
    ) -> None:
        # _StatefulContext.__init__'s fields, set here: one call less on every job.
        self._instance_id = instance_id
        self._job_name = job_name
        self._writes = writes if writes is not None else Writes(supported=False)
        self._codec = codec
        self._state = state
        self._new_state: Any = UNCHANGED
        self._terminate = False
        self._terminate_reason: str | None = None
        self._now = now
        #: When the handler starts (``started``: ``now()`` as the runtime read it just
        #: before): schedule() refuses earlier times.
        self._started = now() if started is None else started
        self._scheduled: Any = UNCHANGED
        self._committed_alarm = scheduled_at
        self._event_count = event_count
        self._execute_count = execute_count
        self._created_at = created_at

    @property
    def state(self) -> S | None:
        """The state: as committed (None until a handler set one), or as this handler set it."""
        return self._current()  # type: ignore[no-any-return]

    def update_state(self, fn: Callable[[S | None], S]) -> None:
        """Replace the state with ``fn(state)``; ``state`` is None until a handler set one."""
        self.set_state(fn(self.state))

    def schedule(self, when: timedelta | datetime | float) -> None:
        """Set the one alarm: a timedelta from now, an aware datetime, or epoch seconds."""
        self._scheduled = to_alarm_time(when, self._now(), earliest=self._started)

    def cancel_schedule(self) -> None:
        """Remove the alarm."""
        self._scheduled = None

    @property
    def scheduled_at(self) -> datetime | None:
        """The alarm as it stands (None: no alarm)."""
        return self._committed_alarm if self._scheduled is UNCHANGED else self._scheduled

    def terminate(self, reason: str | None = None) -> None:
        """End the instance when the handler returns (alarm cancelled, state removed)."""
        self._terminate_reason = check_reason(reason)
        self._terminate = True

    @property
    def event_count(self) -> int:
        """Events received by this instance."""
        return self._event_count

    @property
    def execute_count(self) -> int:
        """Runs of ``execute`` so far (including this one, inside ``execute``)."""
        return self._execute_count

    @property
    def created_at(self) -> datetime:
        """When the instance was created (the job clock's time)."""
        return self._created_at

    def intents(self, _value: object = None) -> Intents:
        """What the handler asked for so far (for the runtime; not for handlers).
        ``_value`` is ignored: it lets a call pass this as the handler call's ``then``."""
        return self._intents(schedule=self._scheduled)

    def __repr__(self) -> str:
        return f"<TaskContext {self._job_name}/{self._instance_id}>"
