"""hypothesis strategies for durable-jobs: schedules, retry policies, ids, events, commands.

Needs hypothesis (``pip install 'durable-jobs[testing]'``)::

    from hypothesis import given
    from durable_jobs.testing import strategies as djst

    @given(djst.cron_schedules())
    def test_my_report_runs_on_time(schedule): ...

Every strategy builds valid values only (the library accepts all of them);
they shrink towards small, readable ones (whole seconds, ``* * * * *``).
"""

from __future__ import annotations

import dataclasses
from collections import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    final,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
except ImportError as exc:  # pragma: no cover - the testing extra is missing
    msg = (
        "durable_jobs.testing.strategies needs hypothesis: install the testing extra, "
        "`pip install 'durable-jobs[testing]'`."
    )
    raise ImportError(msg) from exc

import pydantic
import pydantic_core
from typing_extensions import is_typeddict  # typing's misses typing_extensions' on 3.11

from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.schedules import Cron, Every, cron, every
from durable_jobs._domain.values import check_finite, check_json_value
from durable_jobs._errors import ConfigurationError, ValidationError

_E = TypeVar("_E")
_S = TypeVar("_S")

__all__ = [
    "TIME_ZONES",
    "Command",
    "backoffs",
    "commands",
    "cron_expressions",
    "cron_schedules",
    "debounce_windows",
    "durations",
    "events_for",
    "every_schedules",
    "idempotency_keys",
    "instance_ids",
    "json_values",
    "retries",
    "schedules",
    "states_for",
    "time_zones",
    "values_of",
]

#: Zones with and without DST, on both sides of UTC, with odd offsets (the default pool).
TIME_ZONES: tuple[str, ...] = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "America/St_Johns",
)


def durations(
    min_value: timedelta = timedelta(seconds=1),
    max_value: timedelta = timedelta(days=1),
    *,
    resolution: timedelta = timedelta(seconds=1),
) -> st.SearchStrategy[timedelta]:
    """Durations between the bounds, in whole multiples of ``resolution`` (shrinks to small)."""
    if resolution <= timedelta(0):
        raise ValueError(f"resolution must be positive, got {resolution}")
    low = -(-min_value // resolution)  # ceil
    high = max_value // resolution
    if low > high:
        raise ValueError(f"no multiple of {resolution} lies in [{min_value}, {max_value}]")
    # Built as timedelta(seconds=...) (or microseconds=), not mapped with a lambda:
    # hypothesis prints a shrunk step with the drawn value in the call that made it,
    # and `n * resolution` pasted into a test is a NameError (and reads as µs).
    step = resolution // timedelta(microseconds=1)
    if step % 1_000_000 == 0:
        seconds = step // 1_000_000
        return st.builds(timedelta, seconds=st.integers(low, high).map(seconds.__mul__))
    return st.builds(timedelta, microseconds=st.integers(low, high).map(step.__mul__))


def every_schedules(
    min_value: timedelta = timedelta(seconds=1), max_value: timedelta = timedelta(days=1)
) -> st.SearchStrategy[Every]:
    """``every(duration)`` schedules (positive, whole seconds)."""
    return durations(max(min_value, timedelta(seconds=1)), max_value).map(every)


@st.composite
def debounce_windows(
    draw: st.DrawFn, flush_after: timedelta, *, max_factor: int = 10
) -> dict[str, Any]:
    """The window options of a debounce job flushing ``flush_after`` after an event:
    ``{"window": "fixed"}``, or ``{"window": "sliding", "max_wait": ...}`` with
    ``max_wait`` None or between ``flush_after`` and ``max_factor`` times it
    (whole seconds). Pass them on: ``registry.debounce(..., **options)``."""
    window = draw(st.sampled_from(["fixed", "sliding"]))
    if window == "fixed":
        return {"window": "fixed"}
    cap = max(flush_after, max_factor * flush_after)
    low = -(-flush_after // timedelta(seconds=1))
    max_wait = draw(
        st.none()
        | durations(
            max(timedelta(seconds=low), timedelta(seconds=1)),
            max(cap, timedelta(seconds=low)),
        )
    )
    return {"window": "sliding", "max_wait": max_wait}


def _field(low: int, high: int, *, names: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """One cron field: ``*``, a value, a range, a step, a list (values within the bounds)."""
    value = st.integers(low, high)
    single = value.map(str)
    if names:
        single = single | st.sampled_from(list(names))
    ranges = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    steps = st.tuples(st.sampled_from(["*", f"{low}"]), st.integers(1, max(1, high - low))).map(
        lambda sn: f"{sn[0]}/{sn[1]}"
    )
    lists = st.lists(value, min_size=2, max_size=4, unique=True).map(
        lambda vs: ",".join(str(v) for v in sorted(vs))
    )
    return st.just("*") | single | ranges | steps | lists


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@st.composite
def cron_expressions(draw: st.DrawFn, *, seconds: bool | None = None) -> str:
    """Valid cron expressions that fire (5 fields, or 6 with seconds last).

    Day-of-month stays within 1-28 so that every expression fires in every
    month. ``seconds``: True always adds the 6th field, False never, None
    sometimes.
    """
    fields = [
        draw(_field(0, 59)),
        draw(_field(0, 23)),
        draw(_field(1, 28)),
        draw(_field(1, 12, names=_MONTHS)),
        draw(_field(0, 6, names=_DAYS)),
    ]
    with_seconds = draw(st.booleans()) if seconds is None else seconds
    if with_seconds:
        fields.append(draw(_field(0, 59)))
    return " ".join(fields)


def time_zones(zones: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """IANA zone names: ``zones``, or :data:`TIME_ZONES` (shrinks to ``UTC``)."""
    return st.sampled_from(list(zones or TIME_ZONES))


def cron_schedules(
    expressions: st.SearchStrategy[str] | None = None,
    zones: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Cron]:
    """``cron(expr, tz)`` schedules from :func:`cron_expressions` and :func:`time_zones`."""
    return st.builds(cron, expressions or cron_expressions(), zones or time_zones())


def schedules() -> st.SearchStrategy[Every | Cron]:
    """``every`` or ``cron`` schedules."""
    return every_schedules() | cron_schedules()


def backoffs(
    max_delay: timedelta = timedelta(minutes=10),
) -> st.SearchStrategy[Backoff]:
    """Constant, linear and exponential ``Backoff`` policies, delays up to ``max_delay``."""
    delay = durations(timedelta(0), max_delay)
    positive = durations(timedelta(seconds=1), max_delay)
    constant = delay.map(Backoff.constant)
    linear = st.builds(
        lambda initial, increment, cap: Backoff.linear(
            initial, increment, None if cap is None else max(cap, initial)
        ),
        delay,
        delay,
        st.none() | delay,
    )
    exponential = st.builds(
        lambda base, factor, cap: Backoff.exponential(base, factor, max(cap, base)),
        positive,
        st.sampled_from([1, 1.5, 2, 3]),
        positive,
    )
    return constant | linear | exponential


def retries(
    *,
    max_attempts: st.SearchStrategy[int] | None = None,
    jitter: st.SearchStrategy[float] | None = None,
    on_exhausted: Sequence[Literal["terminate", "pause", "continue"]] = (
        "terminate",
        "pause",
        "continue",
    ),
    max_delay: timedelta = timedelta(minutes=10),
) -> st.SearchStrategy[Retry]:
    """``Retry`` policies. Use ``on_exhausted=("terminate", "pause")`` for debounce jobs."""
    return st.builds(
        Retry,
        max_attempts=max_attempts or st.integers(1, 5),
        delay=backoffs(max_delay) | durations(timedelta(0), max_delay),
        jitter=jitter if jitter is not None else st.sampled_from([0, 0.1, 0.5, 1]),
        max_duration=st.none() | durations(timedelta(seconds=1), 10 * max_delay),
        on_exhausted=st.sampled_from(list(on_exhausted)),
    )


def instance_ids(*, pool: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Instance ids: from ``pool`` (so that commands meet on the same instances), or any valid id.

    Valid ids are 1-512 characters of valid Unicode without NUL (lone
    surrogates cannot be stored); they are drawn from all of Unicode.
    """
    if pool is not None:
        return st.sampled_from(list(pool))
    return st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=1,
        max_size=40,
    )


def idempotency_keys(*, pool: Sequence[str] | None = ("k1", "k2", "k3")) -> st.SearchStrategy[str]:
    """Idempotency keys: from ``pool`` (repeats happen), or any valid key if ``pool`` is None."""
    if pool is not None:
        return st.sampled_from(list(pool))
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)


def values_of(tp: Any) -> st.SearchStrategy[Any]:
    """Values of type ``tp`` as the library stores them: validated, and read back from JSON.

    Built with ``st.from_type`` (pydantic models, dataclasses, TypedDicts and
    plain types); values that pydantic rejects, that the library refuses to
    store (NaN, infinities, lone surrogates, nesting over 100) or that do not
    survive a JSON round trip are filtered out. ``Any`` within ``tp`` (say
    ``dict[str, Any]``, or a model's ``Any`` field) can only hold what JSON
    holds, so it is drawn as :func:`json_values`. Register a strategy for a
    type of yours with ``st.register_type_strategy`` if ``from_type`` cannot
    build it well; a type that cannot be drawn at all raises ConfigurationError
    when the first value is drawn.
    """
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(tp)

    def stored(value: Any) -> Any:
        try:
            valid = adapter.validate_python(value)
            check_finite(adapter.dump_python(valid), "value")  # NaN and inf are refused
            data = adapter.dump_python(valid, mode="json")
            check_json_value(data, "value")  # so are lone surrogates and deep nesting
            return adapter.validate_json(pydantic_core.to_json(data))
        except (
            pydantic.ValidationError,
            pydantic_core.PydanticSerializationError,
            ValueError,
            ValidationError,
        ):
            return _INVALID

    return _explained(_drawing(tp, {}), tp).map(stored).filter(lambda v: v is not _INVALID)


_short_text = st.text(st.characters(codec="utf-8"), max_size=20)

#: Hashable JSON values: what ``Any`` holds in a set or as a dict key.
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _short_text
)


def json_values(*, max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """JSON values: None, bools, ints within 64 bits, finite floats, short text (no lone
    surrogates), and lists and string-keyed dicts of them (up to ``max_leaves`` leaves).

    What :func:`values_of` draws where a type says ``Any``.
    """
    return st.recursive(
        _json_scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(_short_text, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _mentions_any(tp: Any, seen: set[int]) -> bool:
    """Whether ``tp`` holds ``Any`` anywhere: in its arguments, or in the fields of the
    models, dataclasses and TypedDicts it holds (``seen``: the classes looked at)."""
    if tp is Any:
        return True
    args = get_args(tp)
    if args:
        return any(_mentions_any(arg, seen) for arg in args if arg is not Ellipsis)
    fields = _fields(tp)
    if fields is None or id(tp) in seen:
        return False
    seen.add(id(tp))
    return any(_mentions_any(field, seen) for field, _ in fields.values())


def _fields(tp: Any) -> dict[str, tuple[Any, bool]] | None:
    """The fields of a pydantic model, dataclass or TypedDict ``tp`` as given to it
    (``{key: (type, required)}``), or None for any other type."""
    if not isinstance(tp, type):
        return None
    if issubclass(tp, pydantic.BaseModel):
        fields: dict[str, tuple[Any, bool]] = {}
        for name, info in tp.model_fields.items():
            key = next(
                (a for a in (info.validation_alias, info.alias) if isinstance(a, str)), name
            )
            fields[key] = (info.annotation, info.is_required())
        return fields
    if dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        return {
            f.name: (
                hints.get(f.name, Any),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(tp)
            if f.init
        }
    if is_typeddict(tp):
        hints = get_type_hints(tp)
        required: frozenset[str] = getattr(tp, "__required_keys__", frozenset(hints))
        return {key: (hint, key in required) for key, hint in hints.items()}
    return None


def _drawing(tp: Any, classes: dict[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """What to draw for ``tp``: ``st.from_type``, except where ``tp`` holds ``Any``,
    which hypothesis cannot draw: there JSON values, in containers and fields built
    here. Models, dataclasses and TypedDicts are drawn as dicts of their fields, which
    :func:`values_of` validates into them (``classes``: those being built, for
    recursive types)."""
    if tp is Any:
        return json_values()
    if not _mentions_any(tp, set()):
        return st.from_type(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _drawing(args[0], classes)  # its constraints are checked by validation
    if origin is Union or origin is UnionType:
        return st.one_of([_drawing(arg, classes) for arg in args])
    if origin in (list, abc.Sequence, abc.MutableSequence):
        return st.lists(_drawing(args[0], classes), max_size=5)
    if origin in (set, frozenset, abc.Set, abc.MutableSet):
        return st.sets(_hashable(args[0], classes), max_size=5)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_drawing(args[0], classes), max_size=5).map(tuple)
        return st.tuples(*(_drawing(arg, classes) for arg in args))
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        keys = _hashable(args[0], classes)
        return st.dictionaries(keys, _drawing(args[1], classes), max_size=5)
    fields = _fields(tp)
    if fields is None:
        return st.from_type(tp)  # fails when drawn; _explained says what to do
    if id(tp) not in classes:
        classes[id(tp)] = st.deferred(
            lambda: st.fixed_dictionaries(
                {key: _drawing(hint, classes) for key, (hint, needed) in fields.items() if needed},
                optional={
                    key: _drawing(hint, classes)
                    for key, (hint, needed) in fields.items()
                    if not needed
                },
            )
        )
    return classes[id(tp)]


def _hashable(tp: Any, classes: dict[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Set elements and dict keys: JSON scalars where ``tp`` is ``Any``."""
    return _json_scalars if tp is Any else _drawing(tp, classes)


def _explained(strategy: st.SearchStrategy[Any], tp: Any) -> st.SearchStrategy[Any]:
    """``strategy``, whose failure to build a value of ``tp`` says what to do about it."""

    @st.composite
    def drawn(draw: st.DrawFn) -> Any:
        try:
            return draw(strategy)
        except InvalidArgument as exc:
            msg = (
                f"Cannot draw values of {tp!r}: {exc}. Give the values "
                "yourself: override events() (inputs() for a continuous job) in your "
                "machine, draw them with a strategy of yours instead of values_of(), "
                "events_for() or states_for(), or register one for your type with "
                "hypothesis.strategies.register_type_strategy()."
            )
            raise ConfigurationError(msg) from exc

    return drawn()


_INVALID = object()


def events_for(job: DebounceJob[_E, Any] | TaskJob[_E, Any]) -> st.SearchStrategy[_E]:
    """Events that ``job`` accepts (from its event type, see :func:`values_of`)."""
    if not isinstance(job, DebounceJob | TaskJob):
        raise TypeError(f"events_for() takes a debounce or task job, got {job!r}")
    events: st.SearchStrategy[_E] = values_of(job.event_type)
    return events


@overload
def states_for(job: ContinuousJob[_S]) -> st.SearchStrategy[_S]: ...
@overload
def states_for(job: DebounceJob[Any, _S] | TaskJob[Any, _S]) -> st.SearchStrategy[_S]: ...
@overload
def states_for(job: JobDefinition) -> st.SearchStrategy[Any]: ...
def states_for(job: JobDefinition) -> st.SearchStrategy[Any]:
    """States of ``job``'s state type (say, a continuous job's ``start`` input)."""
    return values_of(job.state_type)


# ---- command sequences -------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Command:
    """One step of a scenario: a client call, time passing, a failure or a restart.

    ``op`` is the client method (``start``, ``trigger``, ``terminate``,
    ``status``, ``get_state``; ``add``, ``flush``, ``clear``; ``send``), or
    ``advance`` (``delta``), ``restart`` (``delta``: time down) or ``fail``
    (the next ``times`` runs of the instance fail, see ``FailurePlan``).
    """

    op: str
    instance_id: str | None = None
    value: Any = None
    idempotency_key: str | None = None
    delta: timedelta | None = None
    times: int = 1

    def __repr__(self) -> str:
        parts = [repr(self.op)]
        if self.instance_id is not None:
            parts.append(repr(self.instance_id))
        if self.value is not None:
            parts.append(f"value={self.value!r}")
        if self.idempotency_key is not None:
            parts.append(f"idempotency_key={self.idempotency_key!r}")
        if self.delta is not None:
            parts.append(f"delta={self.delta!r}")
        if self.op == "fail":
            parts.append(f"times={self.times}")
        return f"Command({', '.join(parts)})"


def commands(
    job: ContinuousJob[Any] | DebounceJob[Any, Any] | TaskJob[Any, Any],
    *,
    ids: Sequence[str] = ("a", "b"),
    max_advance: timedelta = timedelta(hours=1),
    restarts: bool = True,
    failures: bool = True,
    min_size: int = 0,
    max_size: int = 30,
) -> st.SearchStrategy[list[Command]]:
    """Lists of :class:`Command` for ``job``: its client calls on instances ``ids``, time
    advances up to ``max_advance``, planned failures and restarts, interleaved.

    Play them with your own loop over a harness (``durable_jobs.testing.open_harness``).
    """
    instance = st.sampled_from(list(ids))
    keys = st.none() | idempotency_keys()
    delta = durations(timedelta(0), max_advance)
    steps: list[st.SearchStrategy[Command]] = [
        st.builds(Command, op=st.just("advance"), delta=delta),
        st.builds(Command, op=st.sampled_from(["status", "get_state"]), instance_id=instance),
    ]
    if isinstance(job, ContinuousJob):
        steps += [
            st.builds(Command, op=st.just("start"), instance_id=instance, value=states_for(job)),
            st.builds(Command, op=st.sampled_from(["trigger", "terminate"]), instance_id=instance),
        ]
    elif isinstance(job, DebounceJob):
        steps += [
            st.builds(
                Command,
                op=st.just("add"),
                instance_id=instance,
                value=events_for(job),
                idempotency_key=keys,
            ),
            st.builds(Command, op=st.sampled_from(["flush", "clear"]), instance_id=instance),
        ]
    elif isinstance(job, TaskJob):
        steps += [
            st.builds(
                Command,
                op=st.just("send"),
                instance_id=instance,
                value=events_for(job),
                idempotency_key=keys,
            ),
            st.builds(Command, op=st.sampled_from(["trigger", "terminate"]), instance_id=instance),
        ]
    else:
        raise TypeError(f"commands() takes a job definition, got {job!r}")
    if failures:
        steps.append(
            st.builds(Command, op=st.just("fail"), instance_id=instance, times=st.integers(1, 3))
        )
    if restarts:
        steps.append(
            st.builds(Command, op=st.just("restart"), delta=st.just(timedelta(0)) | delta)
        )
    return st.lists(st.one_of(steps), min_size=min_size, max_size=max_size)
