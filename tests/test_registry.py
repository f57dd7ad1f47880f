"""Registry and client lookup (SCENARIOS §9, G01-G21) and definition-time errors.

Everything the decorators can check without running a job is a
``ConfigurationError`` when the decorator runs, not at the first run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, assert_type, cast

import pydantic
import pytest
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import running

KINDS = ("continuous", "debounce", "task")


class Token(BaseModel):
    value: str = ""


class Webhook(BaseModel):
    body: str


class Increment(BaseModel):
    by: int = 1


class Count(BaseModel):
    n: int = 0


def define_token_refresher(registry: dj.Registry) -> dj.ContinuousJob[Token]:
    @registry.continuous("token_refresher", state=Token, schedule=dj.every(timedelta(minutes=30)))
    async def token_refresher(ctx: dj.ContinuousContext[Token]) -> None:
        pass

    return token_refresher


def define_health_check(registry: dj.Registry) -> dj.ContinuousJob[Token]:
    @registry.continuous("health_check", state=Token, schedule=dj.every(timedelta(minutes=1)))
    async def health_check(ctx: dj.ContinuousContext[Token]) -> None:
        pass

    return health_check


def define_webhook_debounce(registry: dj.Registry) -> dj.DebounceJob[Webhook, Webhook]:
    @registry.debounce(
        "webhook_debounce", event=Webhook, flush_after=timedelta(seconds=5), max_events=100
    )
    async def webhook_debounce(ctx: dj.DebounceContext[Webhook]) -> None:
        pass

    return webhook_debounce


def define_my_task(registry: dj.Registry) -> dj.TaskJob[Increment, Count]:
    @registry.task("my_task", event=Increment, state=Count)
    async def my_task(ctx: dj.TaskContext[Count]) -> None:
        pass

    @my_task.on_event
    async def on_event(event: Increment, ctx: dj.TaskContext[Count]) -> None:
        ctx.update_state(lambda s: Count(n=(s.n if s else 0) + event.by))

    return my_task


def full_registry() -> dj.Registry:
    registry = dj.Registry()
    define_token_refresher(registry)
    define_webhook_debounce(registry)
    define_my_task(registry)
    return registry


def listing(registry: dj.Registry) -> dict[str, list[str]]:
    return {kind: registry.names(kind) for kind in ("continuous", "debounce", "task")}


# ---- G01-G19: listing and lookup -----------------------------------------------------------


def test_empty_registry_has_no_jobs() -> None:
    """G01 An empty registry has no jobs."""
    registry = dj.Registry()
    assert listing(registry) == {"continuous": [], "debounce": [], "task": []}
    for kind in ("continuous", "debounce", "task"):
        with pytest.raises(dj.JobNotFound):
            registry.get(kind, "token_refresher")


def test_continuous_job_is_registered_under_its_name() -> None:
    """G02 A continuous job is registered under its name."""
    registry = dj.Registry()
    job = define_token_refresher(registry)
    assert isinstance(job, dj.ContinuousJob)
    assert listing(registry) == {"continuous": ["token_refresher"], "debounce": [], "task": []}
    assert job.schedule == dj.every(timedelta(minutes=30))
    assert job.schedule.describe() == {"type": "every", "seconds": 1800.0}


def test_debounce_job_is_registered_under_its_name() -> None:
    """G03 A debounce job is registered under its name."""
    registry = dj.Registry()
    job = define_webhook_debounce(registry)
    assert isinstance(job, dj.DebounceJob)
    assert listing(registry) == {"continuous": [], "debounce": ["webhook_debounce"], "task": []}
    assert job.max_events == 100
    assert job.flush_after == timedelta(seconds=5)


def test_task_job_is_registered_under_its_name() -> None:
    """G04 A task job is registered under its name."""
    registry = dj.Registry()
    job = define_my_task(registry)
    assert isinstance(job, dj.TaskJob)
    assert listing(registry) == {"continuous": [], "debounce": [], "task": ["my_task"]}


def test_mixed_kinds_are_listed_under_their_own_kind() -> None:
    """G05 Mixed kinds."""
    registry = full_registry()
    assert listing(registry) == {
        "continuous": ["token_refresher"],
        "debounce": ["webhook_debounce"],
        "task": ["my_task"],
    }
    for kind, name in (
        ("continuous", "webhook_debounce"),
        ("continuous", "my_task"),
        ("debounce", "token_refresher"),
        ("debounce", "my_task"),
        ("task", "token_refresher"),
        ("task", "webhook_debounce"),
    ):
        with pytest.raises(dj.JobNotFound):
            registry.get(kind, name)  # type: ignore[call-overload]


def test_the_registration_name_wins() -> None:
    """G06 The registration name wins."""
    registry = dj.Registry()

    @registry.continuous("my_custom_name", state=Token, schedule=dj.every(timedelta(minutes=1)))
    async def original_name(ctx: dj.ContinuousContext[Token]) -> None:
        pass

    assert original_name.name == "my_custom_name"
    assert registry.names("continuous") == ["my_custom_name"]
    assert registry.get("continuous", "my_custom_name") is original_name
    with pytest.raises(dj.JobNotFound) as info:
        registry.get("continuous", "original_name")
    assert (info.value.kind, info.value.name) == ("continuous", "original_name")


async def test_find_a_continuous_job(autojump_clock: trio.testing.MockClock) -> None:
    """G07 Find a continuous job."""
    registry = dj.Registry()
    job = define_token_refresher(registry)
    async with running(registry, "memory://") as jobs:
        by_name = jobs.continuous("token_refresher")
        by_definition = jobs.continuous(job)
        assert_type(by_definition, dj.ContinuousClient[Token])
        assert isinstance(by_name, dj.ContinuousClient)
        assert by_name.job is job
        assert by_definition.job is job
        assert (await by_definition.start("t", Token(value="a"))).created is True
        assert await by_name.get_state("t") == Token(value="a")


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_names_raise_job_not_found(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    """G08 Unknown continuous name (also G10, G12 for debounce and task)."""
    async with running(full_registry(), "memory://") as jobs:
        lookup = cast(Callable[[str], object], getattr(jobs, kind))
        with pytest.raises(dj.JobNotFound) as info:
            lookup("nonexistent")
        assert isinstance(info.value, dj.DurableJobsError)
        assert (info.value.kind, info.value.name) == (kind, "nonexistent")
        assert kind in str(info.value)
        assert "'nonexistent'" in str(info.value)


async def test_find_a_debounce_job(autojump_clock: trio.testing.MockClock) -> None:
    """G09 Find a debounce job."""
    registry = dj.Registry()
    job = define_webhook_debounce(registry)
    async with running(registry, "memory://") as jobs:
        client = jobs.debounce("webhook_debounce")
        assert isinstance(client, dj.DebounceClient)
        assert client.job is job
        assert jobs.debounce(job).job is job
        assert_type(jobs.debounce(job), dj.DebounceClient[Webhook, Webhook])
        result = await client.add("w", Webhook(body="x"))
        assert (result.event_count, result.created) == (1, True)


def test_unknown_debounce_name_in_the_registry() -> None:
    """G10 Unknown debounce name."""
    with pytest.raises(dj.JobNotFound) as info:
        full_registry().get("debounce", "nonexistent")
    assert (info.value.kind, info.value.name) == ("debounce", "nonexistent")


async def test_find_a_task_job(autojump_clock: trio.testing.MockClock) -> None:
    """G11 Find a task job."""
    registry = dj.Registry()
    job = define_my_task(registry)
    async with running(registry, "memory://") as jobs:
        client = jobs.task("my_task")
        assert isinstance(client, dj.TaskClient)
        assert client.job is job
        assert jobs.task(job).job is job


def test_unknown_task_name_in_the_registry() -> None:
    """G12 Unknown task name."""
    with pytest.raises(dj.JobNotFound) as info:
        full_registry().get("task", "nonexistent")
    assert (info.value.kind, info.value.name) == ("task", "nonexistent")
    assert "No task job named 'nonexistent'" in str(info.value)


def test_lookup_by_kind_and_name_continuous() -> None:
    """G13 Lookup by kind and name: continuous."""
    registry = dj.Registry()
    job = define_token_refresher(registry)
    found = registry.get("continuous", "token_refresher")
    assert found is job
    assert (found.kind, found.name) == ("continuous", "token_refresher")
    assert found.state_type is Token


def test_lookup_by_kind_and_name_debounce() -> None:
    """G14 Lookup by kind and name: debounce."""
    registry = dj.Registry()
    job = define_webhook_debounce(registry)
    found = registry.get("debounce", "webhook_debounce")
    assert found is job
    assert (found.kind, found.name, found.max_events) == ("debounce", "webhook_debounce", 100)
    assert found.state_type is Webhook  # defaults to the event type


def test_lookup_by_kind_and_name_task() -> None:
    """G15 Lookup by kind and name: task."""
    registry = dj.Registry()
    job = define_my_task(registry)
    found = registry.get("task", "my_task")
    assert found is job
    assert (found.kind, found.name, found.event_type, found.state_type) == (
        "task",
        "my_task",
        Increment,
        Count,
    )


async def test_the_wrong_kind_does_not_find_a_job(autojump_clock: trio.testing.MockClock) -> None:
    """G16 The wrong kind does not find a job."""
    async with running(full_registry(), "memory://") as jobs:
        with pytest.raises(dj.JobNotFound) as info:
            jobs.debounce("token_refresher")
        assert (info.value.kind, info.value.name) == ("debounce", "token_refresher")
        with pytest.raises(dj.JobNotFound):
            jobs.task("webhook_debounce")
        with pytest.raises(dj.JobNotFound):
            jobs.continuous("my_task")


def test_names_are_listed_per_kind() -> None:
    """G17 Names are listed per kind."""
    registry = full_registry()
    assert registry.names("continuous") == ["token_refresher"]
    assert registry.names("debounce") == ["webhook_debounce"]
    assert registry.names("task") == ["my_task"]


def test_an_empty_registry_lists_empty_kinds() -> None:
    """G18 An empty registry lists empty kinds."""
    registry = dj.Registry()
    for kind in ("continuous", "debounce", "task"):
        assert registry.names(kind) == []


def test_several_jobs_of_one_kind() -> None:
    """G19 Several jobs of one kind."""
    registry = dj.Registry()
    refresher = define_token_refresher(registry)
    health = define_health_check(registry)
    assert registry.names("continuous") == ["health_check", "token_refresher"]
    assert registry.names("debounce") == []
    assert registry.names("task") == []
    assert registry.get("continuous", "token_refresher") is refresher
    assert registry.get("continuous", "health_check") is health
    assert health.schedule == dj.every(timedelta(minutes=1))


async def test_a_registered_task_has_its_name_and_kind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """G20 A registered task has its name and kind."""
    registry = dj.Registry()
    job = define_my_task(registry)
    assert (job.name, job.kind) == ("my_task", "task")
    other = dj.Registry()
    stranger = define_my_task(other)
    renamed_registry = dj.Registry()

    @renamed_registry.task("not_served", event=Increment, state=Count)
    async def not_served(ctx: dj.TaskContext[Count]) -> None:
        pass

    async with running(registry, "memory://") as jobs:
        assert jobs.registry is registry
        assert jobs.registry.get("task", "my_task") is job
        assert_type(jobs.task(job), dj.TaskClient[Increment, Count])
        assert_type(jobs.registry.get("task", "my_task"), dj.TaskJob[Any, Any])
        assert jobs.task(job).job is job
        # A definition is looked up by name: the served registry's own definition answers.
        assert jobs.task(stranger).job is job
        with pytest.raises(dj.JobNotFound) as info:
            jobs.task(not_served)
        assert (info.value.kind, info.value.name) == ("task", "not_served")
        with pytest.raises(dj.JobNotFound):
            jobs.task("not_served")


async def test_the_task_client_sends(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """G21 The task client sends."""
    registry = dj.Registry()
    define_my_task(registry)
    async with running(registry, store_url) as jobs:
        result = await jobs.task("my_task").send("123", Increment())
        assert result == dj.SendResult(created=True, scheduled_at=None, duplicate=False)
        state = await jobs.task("my_task").get_state("123")
        assert state == dj.TaskState(Count(n=1), None)
        again = await jobs.task("my_task").send("123", Increment(by=2))
        assert again == dj.SendResult(created=False, scheduled_at=None, duplicate=False)
        assert await jobs.task("my_task").get_state("123") == dj.TaskState(Count(n=3), None)


# ---- definition-time errors ----------------------------------------------------------------


async def _execute(ctx: Any) -> None:
    pass


def test_duplicate_name_in_one_kind_is_refused() -> None:
    """Job names are unique per kind: a second registration fails when it is defined."""
    registry = dj.Registry()
    first = define_token_refresher(registry)
    with pytest.raises(dj.ConfigurationError, match="token_refresher"):
        define_token_refresher(registry)
    assert registry.names("continuous") == ["token_refresher"]
    assert registry.get("continuous", "token_refresher") is first

    define_webhook_debounce(registry)
    with pytest.raises(dj.ConfigurationError, match="webhook_debounce"):
        define_webhook_debounce(registry)
    define_my_task(registry)
    with pytest.raises(dj.ConfigurationError, match="my_task"):
        define_my_task(registry)
    assert listing(registry) == {
        "continuous": ["token_refresher"],
        "debounce": ["webhook_debounce"],
        "task": ["my_task"],
    }


def test_the_same_name_in_two_kinds_is_fine() -> None:
    """One name may be used once per kind."""
    registry = dj.Registry()
    registry.continuous("shared", state=int, schedule=dj.every(timedelta(minutes=1)))(_execute)
    registry.debounce("shared", event=int, flush_after=timedelta(seconds=1))(_execute)
    task: dj.TaskJob[int, int] = registry.task("shared", event=int, state=int)(_execute)
    task.on_event(_on_event)
    assert listing(registry) == {
        "continuous": ["shared"],
        "debounce": ["shared"],
        "task": ["shared"],
    }
    assert registry.get("continuous", "shared").kind == "continuous"
    assert registry.get("debounce", "shared").kind == "debounce"
    assert registry.get("task", "shared") is task
    registry.check()


async def _on_event(event: Any, ctx: Any) -> None:
    pass


def _define(
    registry: dj.Registry,
    kind: str,
    execute: Any,
    *,
    name: str = "job",
    event: Any = int,
    state: Any = int,
) -> None:
    """Define a job of ``kind`` (the decorator runs here)."""
    if kind == "continuous":
        registry.continuous(name, state=state, schedule=dj.every(timedelta(minutes=1)))(execute)
    elif kind == "debounce":
        registry.debounce(name, event=event, state=state, flush_after=timedelta(seconds=1))(
            execute
        )
    else:
        registry.task(name, event=event, state=state, on_event=_on_event)(execute)


@pytest.mark.parametrize(
    "name", ["", "has space", "a:b", "-leading-dash", "x" * 129, "naïve", "a/b"]
)
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_job_names_are_refused(kind: str, name: str) -> None:
    """An invalid job name is a ConfigurationError when the job is defined."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="job name"):
        _define(registry, kind, _execute, name=name)
    assert listing(registry) == {"continuous": [], "debounce": [], "task": []}


def test_valid_job_names_are_accepted() -> None:
    """The edges of the name rule are accepted."""
    registry = dj.Registry()
    for name in ("a", "_private", "v1.2-beta_3", "9lives", "x" * 128):
        registry.continuous(name, state=int, schedule=dj.every(timedelta(minutes=1)))(_execute)
    assert registry.names("continuous") == sorted(
        ["a", "_private", "v1.2-beta_3", "9lives", "x" * 128]
    )


def _sync_execute(ctx: Any) -> None:
    pass


async def _two_args(ctx: Any, extra: Any) -> None:
    pass


async def _no_args() -> None:
    pass


@pytest.mark.parametrize("kind", KINDS)
def test_execute_must_be_async(kind: str) -> None:
    """A plain function as execute is refused when the job is defined."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="async"):
        _define(registry, kind, _sync_execute)
    assert registry.names(kind) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("execute", [_two_args, _no_args], ids=["two", "none"])
@pytest.mark.parametrize("kind", KINDS)
def test_execute_must_take_one_argument(kind: str, execute: Any) -> None:
    """execute(ctx) with the wrong number of parameters is refused when defined."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="positional argument"):
        _define(registry, kind, execute)
    assert registry.names(kind) == []  # type: ignore[arg-type]


async def _on_event_one(event: Any) -> None:
    pass


def _sync_on_event(event: Any, ctx: Any) -> None:
    pass


def test_task_handlers_are_checked_when_attached() -> None:
    """Task on_event(event, ctx), on_idle(ctx), on_error(error, ctx): arity and async
    (refused by a type checker too: hence the ignores)."""
    registry = dj.Registry()
    job: dj.TaskJob[int, int] = registry.task("t", event=int, state=int)(_execute)
    with pytest.raises(dj.ConfigurationError, match="2 positional arguments"):
        job.on_event(_on_event_one)  # type: ignore[arg-type]
    with pytest.raises(dj.ConfigurationError, match="async"):
        job.on_event(_sync_on_event)  # type: ignore[arg-type]
    with pytest.raises(dj.ConfigurationError, match="1 positional argument"):
        job.on_idle(_on_event)  # type: ignore[arg-type]
    with pytest.raises(dj.ConfigurationError, match="2 positional arguments"):
        job.on_error(_execute)  # type: ignore[arg-type]
    with pytest.raises(dj.ConfigurationError, match="on_event"):
        registry.task("t2", event=int, state=int, on_event=cast(Any, _on_event_one))(_execute)
    assert registry.names("task") == ["t"]
    # None of the refused handlers was attached: on_event is still missing.
    with pytest.raises(dj.ConfigurationError, match="on_event"):
        registry.check()


def test_debounce_reducer_may_be_plain_but_takes_one_argument() -> None:
    """The debounce on_event reducer may be a plain function; its arity is checked."""
    registry = dj.Registry()
    job: dj.DebounceJob[int, int] = registry.debounce(
        "d", event=int, flush_after=timedelta(seconds=1)
    )(_execute)
    with pytest.raises(dj.ConfigurationError, match="1 positional argument"):
        job.on_event(_sync_on_event)  # type: ignore[arg-type]

    def reducer(ctx: dj.DebounceEventContext[int, int]) -> int:
        return ctx.event

    assert job.on_event(reducer) is reducer


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-1)], ids=["zero", "neg"])
def test_every_needs_a_positive_duration(duration: timedelta) -> None:
    """every(0) (or negative) is a ConfigurationError at once."""
    with pytest.raises(dj.ConfigurationError, match="positive"):
        dj.every(duration)


def test_every_needs_a_timedelta() -> None:
    """every(60) is not silently taken as seconds."""
    with pytest.raises(dj.ConfigurationError):
        dj.every(cast(Any, 60))


def test_every_of_a_number_suggests_a_valid_timedelta() -> None:
    """every(5) suggests timedelta(seconds=5); a number below a microsecond is not
    suggested as timedelta(seconds=...), which would be 0 and refused in turn."""
    with pytest.raises(dj.ConfigurationError, match=r"every\(timedelta\(seconds=5\)\)"):
        dj.every(cast(Any, 5))
    with pytest.raises(dj.ConfigurationError) as refused:
        dj.every(cast(Any, 1e-9))
    assert "seconds=1e-09" not in str(refused.value)
    assert "every(timedelta(minutes=5))" in str(refused.value)


@pytest.mark.parametrize("misfire", ["sometimes", "RUN_ONCE", None, ""])
def test_bad_misfire_policy_is_refused(misfire: object) -> None:
    """misfire must be 'run_once' or 'skip'."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="misfire"):
        registry.continuous(
            "c",
            state=int,
            schedule=dj.every(timedelta(minutes=1)),
            misfire=cast(Any, misfire),
        )(_execute)
    assert registry.names("continuous") == []


def test_skip_misfire_is_accepted() -> None:
    """Both documented policies are accepted and kept."""
    registry = dj.Registry()
    job: dj.ContinuousJob[int] = registry.continuous(
        "c", state=int, schedule=dj.every(timedelta(minutes=1)), misfire="skip"
    )(_execute)
    assert job.misfire == "skip"
    default: dj.ContinuousJob[int] = registry.continuous(
        "d", state=int, schedule=dj.every(timedelta(minutes=1))
    )(_execute)
    assert default.misfire == "run_once"


def test_schedule_must_come_from_every_or_cron() -> None:
    """A bare timedelta is not a schedule."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="schedule"):
        registry.continuous("c", state=int, schedule=cast(Any, timedelta(minutes=1)))(_execute)


@pytest.mark.parametrize(
    "flush_after", [timedelta(0), timedelta(seconds=-5)], ids=["zero", "negative"]
)
def test_debounce_flush_after_must_be_positive(flush_after: timedelta) -> None:
    """flush_after <= 0 is refused when the debounce job is defined."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="flush_after"):
        registry.debounce("d", event=int, flush_after=flush_after)(_execute)
    assert registry.names("debounce") == []


@pytest.mark.parametrize(
    "options",
    [
        {"flush_after": timedelta(days=3_000_000)},
        {"flush_after": timedelta(seconds=1), "window": "sliding", "max_wait": timedelta.max},
        {"flush_after": timedelta(seconds=1), "idempotency_window": timedelta(days=40_000)},
    ],
    ids=["flush_after", "max_wait", "idempotency_window"],
)
def test_debounce_durations_beyond_a_hundred_years_are_refused(options: dict[str, Any]) -> None:
    """Their alarms could not be represented: add() raised a bare OverflowError."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="at most 100 years"):
        registry.debounce("d", event=int, **options)(_execute)  # type: ignore[no-untyped-call]
    assert registry.names("debounce") == []


@pytest.mark.parametrize("max_events", [0, -1, True, 2.5])
def test_debounce_max_events_must_be_a_positive_int(max_events: object) -> None:
    """max_events 0 (or negative, or not an int) is refused when defined."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="max_events"):
        registry.debounce(
            "d", event=int, flush_after=timedelta(seconds=1), max_events=cast(Any, max_events)
        )(_execute)
    assert registry.names("debounce") == []


def test_debounce_max_events_one_is_fine() -> None:
    """The smallest batch size is accepted."""
    registry = dj.Registry()
    job: dj.DebounceJob[int, int] = registry.debounce(
        "d", event=int, flush_after=timedelta(seconds=1), max_events=1
    )(_execute)
    assert job.max_events == 1


def test_debounce_retry_continue_is_refused() -> None:
    """on_exhausted='continue' is for continuous jobs: a debounce job would drop a batch."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="continue"):
        registry.debounce(
            "d",
            event=int,
            flush_after=timedelta(seconds=1),
            retry=dj.Retry(max_attempts=3, on_exhausted="continue"),
        )(_execute)
    assert registry.names("debounce") == []
    for ok in ("pause", "terminate"):
        registry.debounce(
            f"d_{ok}",
            event=int,
            flush_after=timedelta(seconds=1),
            retry=dj.Retry(max_attempts=3, on_exhausted=ok),
        )(_execute)
    registry.continuous(
        "c",
        state=int,
        schedule=dj.every(timedelta(minutes=1)),
        retry=dj.Retry(max_attempts=3, on_exhausted="continue"),
    )(_execute)
    assert registry.names("debounce") == ["d_pause", "d_terminate"]


class Opaque:
    """A class pydantic has no schema for."""

    def __init__(self, handle: object) -> None:
        self.handle = handle


@pytest.mark.parametrize("where", ["continuous", "debounce_event", "debounce_state", "task"])
def test_a_state_type_pydantic_cannot_handle_is_refused(where: str) -> None:
    """A state or event type that TypeAdapter cannot handle fails when the job is defined."""
    registry = dj.Registry()
    kind = where.partition("_")[0]
    event: Any = Opaque if where == "debounce_event" else int
    state: Any = int if where == "debounce_event" else Opaque
    with pytest.raises(dj.ConfigurationError, match="Opaque"):
        _define(registry, kind, _execute, event=event, state=state)
    assert listing(registry) == {"continuous": [], "debounce": [], "task": []}


@pytest.mark.parametrize(
    "where", ["continuous", "debounce_event", "debounce_state", "task_event", "task_state"]
)
@pytest.mark.parametrize(
    "bad",
    [lambda: 1, print, functools.partial(dict), dict.fromkeys, str.upper],
    ids=["lambda", "builtin", "partial", "classmethod", "method"],
)
def test_a_function_as_a_state_or_event_type_is_refused(where: str, bad: Any) -> None:
    """``state=lambda: 1`` was accepted (pydantic validates a callable's arguments),
    then every start failed with "Arguments must be a tuple, list or a dictionary"."""
    registry = dj.Registry()
    kind, _, what = where.partition("_")
    what = what or "state"
    types: dict[str, Any] = {"event": int, "state": int, what: bad}
    with pytest.raises(dj.ConfigurationError, match=f"The {what} type of job 'job'") as info:
        _define(registry, kind, _execute, **types)
    assert "is a function, not a type" in str(info.value)
    assert listing(registry) == {"continuous": [], "debounce": [], "task": []}


def test_plain_types_are_accepted_as_state() -> None:
    """int, str, float and dict types are fine state types."""
    registry = dj.Registry()
    for i, tp in enumerate([int, str, float, dict[str, int], list[int] | None]):
        registry.continuous(f"c{i}", state=tp, schedule=dj.every(timedelta(minutes=1)))(_execute)
    assert len(registry.names("continuous")) == 5


def test_a_task_without_on_event_is_refused_by_check() -> None:
    """registry.check() names the task job that has no on_event handler."""
    registry = dj.Registry()
    registry.task("lonely", event=int, state=int)(_execute)
    with pytest.raises(dj.ConfigurationError) as info:
        registry.check()
    assert "lonely" in str(info.value)
    assert "on_event" in str(info.value)


async def test_a_task_without_on_event_is_refused_by_open_jobs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """open_jobs refuses a registry with an incomplete task job before serving it."""
    registry = dj.Registry()
    registry.task("lonely", event=int, state=int)(_execute)
    body_ran = False
    with pytest.raises(dj.ConfigurationError, match="lonely"):
        async with dj.open_jobs(registry, "memory://", clock=dj.VirtualClock()):
            body_ran = True
    assert body_ran is False


def test_a_second_on_event_is_refused() -> None:
    """A task or debounce job has one on_event handler; a second is refused."""
    registry = dj.Registry()
    task: dj.TaskJob[int, int] = registry.task("t", event=int, state=int)(_execute)
    task.on_event(_on_event)

    async def another(event: Any, ctx: Any) -> None:
        pass

    with pytest.raises(dj.ConfigurationError, match="already has"):
        task.on_event(another)
    assert task.event_handler is _on_event

    passed: dj.TaskJob[int, int] = registry.task("t2", event=int, state=int, on_event=_on_event)(
        _execute
    )
    with pytest.raises(dj.ConfigurationError, match="already has"):
        passed.on_event(another)

    debounce: dj.DebounceJob[int, int] = registry.debounce(
        "d", event=int, flush_after=timedelta(seconds=1)
    )(_execute)

    def reducer(ctx: Any) -> int:
        return 1

    def reducer2(ctx: Any) -> int:
        return 2

    debounce.on_event(reducer)
    with pytest.raises(dj.ConfigurationError, match="already has"):
        debounce.on_event(reducer2)
    assert debounce.reducer is reducer

    task.on_idle(_execute)
    with pytest.raises(dj.ConfigurationError, match="already has"):
        task.on_idle(_execute)
    task.on_error(_on_event)
    with pytest.raises(dj.ConfigurationError, match="already has"):
        task.on_error(_on_event)


def test_an_unknown_kind_is_a_configuration_error() -> None:
    """names() and get() only know the three kinds."""
    registry = full_registry()
    with pytest.raises(dj.ConfigurationError, match="worker_pool"):
        registry.names(cast(Any, "worker_pool"))
    with pytest.raises(dj.ConfigurationError, match="worker_pool"):
        registry.get(cast(Any, "worker_pool"), "my_task")


def test_a_debounce_job_whose_state_can_never_read_its_events_needs_a_reducer() -> None:
    """With no reducer a debounce job's state is the latest event: registry.check()
    (run by open_jobs) refuses a state type that can never read one (its schema reads
    only a JSON kind the event is never stored as), naming the job and the way out; a
    reducer, or types that may fit, make it acceptable."""
    registry = dj.Registry()
    registry.debounce("digest", event=str, state=list[str], flush_after=timedelta(minutes=1))(
        _execute
    )
    with pytest.raises(dj.ConfigurationError) as info:
        registry.check()
    message = str(info.value)
    assert "'digest'" in message
    assert "add an on_event reducer" in message
    assert "make the state type match the event type" in message
    registry.get("debounce", "digest").on_event(lambda ctx: [ctx.event])
    registry.check()


class Before(BaseModel):
    """A state a model_validator(mode="before") builds from a plain string."""

    items: list[str]

    @pydantic.model_validator(mode="before")
    @classmethod
    def wrap(cls, data: Any) -> Any:
        return {"items": [data]} if isinstance(data, str) else data


@pytest.mark.parametrize(
    ("event", "state"),
    [
        (str, int),  # "12" reads as 12: decided per add
        (int, float),
        (Webhook, dict[str, Any]),
        (Webhook, Token),  # an object either way: decided per add
        (str, Before),
        (str, str | None),
        (list[int], tuple[int, ...]),
    ],
)
def test_a_debounce_job_whose_state_may_read_its_events_needs_no_reducer(
    event: Any, state: Any
) -> None:
    """What the schemas cannot decide is left to each add (a HandlerError there)."""
    registry = dj.Registry()
    registry.debounce("d", event=event, state=state, flush_after=timedelta(minutes=1))(_execute)
    registry.check()
