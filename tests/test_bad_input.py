"""Bad input from outside: each case gets an error from our hierarchy and writes nothing.

Regression tests of bugs found by using the library as a careless or hostile
user would: NaN and infinities, lone surrogates, bytes, deep nesting, sizes
over the limits, past alarms, and paths that are directories. "Nothing
written" is checked by comparing the store's export before and after.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import T, running
from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.values import check_idempotency_key
from durable_jobs.maintenance import export_jsonl, trigger_instance
from durable_jobs.testing.strategies import idempotency_keys, instance_ids

MIB = 1024 * 1024


def export_body(store: dj.Store) -> str:
    """The store's export without its header (which holds the time of the export)."""
    out = io.StringIO()
    export_jsonl(store, out)
    return "".join(out.getvalue().splitlines(keepends=True)[1:])


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("anything", state=Any, schedule=dj.every(timedelta(hours=1)))
    async def anything(ctx: dj.ContinuousContext[Any]) -> None:
        pass

    @registry.continuous("grower", state=str, schedule=dj.every(timedelta(hours=1)))
    async def grower(ctx: dj.ContinuousContext[str]) -> None:
        ctx.set_state(ctx.state * 2)

    @registry.continuous("number", state=float, schedule=dj.every(timedelta(hours=1)))
    async def number(ctx: dj.ContinuousContext[float]) -> None:
        pass

    @registry.debounce("batch", event=Any, flush_after=timedelta(seconds=5))
    async def batch(ctx: dj.DebounceContext[Any]) -> None:
        pass

    @registry.debounce("folded", event=Any, state=Any, flush_after=timedelta(seconds=5))
    async def folded(ctx: dj.DebounceContext[Any]) -> None:
        pass

    @folded.on_event
    def fold(ctx: dj.DebounceEventContext[Any, Any]) -> Any:
        if isinstance(ctx.event, dict) and "float" in ctx.event:
            return {"v": float(ctx.event["float"])}  # {"float": "nan"} makes a NaN state
        return ctx.event

    @registry.task("setter", event=Any, state=Any)
    async def setter(ctx: dj.TaskContext[Any]) -> None:
        pass

    @setter.on_event
    async def set_it(event: Any, ctx: dj.TaskContext[Any]) -> None:
        # Commands that make a bad value inside the handler (a bad event is refused first).
        command = event if isinstance(event, dict) else {"set": event}
        if "set_float" in command:
            ctx.set_state([float(command["set_float"])])
        elif "update_float" in command:
            ctx.update_state(lambda _: {"v": float(command["update_float"])})
        elif "set_size" in command:
            ctx.set_state("y" * command["set_size"])
        elif "schedule" in command:
            # By name: a datetime or timedelta in an Any event would not read back as one.
            ctx.schedule(SCHEDULES[command["schedule"]])
        elif "set_tuple" in command:
            ctx.set_state({"t": (1, 2)})
        elif "terminate_surrogate" in command:
            ctx.terminate("\ud800")
        elif "set" in command:
            ctx.set_state(command["set"])

    return registry


REGISTRY = make_registry()
#: What the setter's ``{"schedule": name}`` event schedules.
SCHEDULES: dict[str, Any] = {
    "negative-delay": timedelta(seconds=-5),
    "past-datetime": T - timedelta(seconds=1),
    "past-epoch": T.timestamp() - 1,
    "now": timedelta(0),
    "in-an-hour": timedelta(hours=1),
    "end-of-time": datetime.max.replace(tzinfo=UTC),
}


# ---- 1. NaN and infinities: refused on every path --------------------------------------

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
async def test_non_finite_numbers_are_refused_on_every_path(
    value: float, sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        setter = jobs.task("setter")
        await setter.send("t1", {"set": {"ok": 1.5}})
        before = export_body(jobs.store)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: jobs.continuous("number").start("n1", value),
            lambda: jobs.continuous("anything").start("a1", value),
            lambda: jobs.continuous("anything").start("a2", {"deep": [1, {"x": value}]}),
            lambda: jobs.debounce("batch").add("b1", value),
            lambda: jobs.debounce("batch").add("b2", [value]),
            lambda: jobs.debounce("folded").add("f1", {"v": value}),
            lambda: setter.send("t2", value),
            lambda: setter.send("t1", {"v": value}),
        ]
        for call in calls:
            with pytest.raises(dj.ValidationError, match="NaN and infinities"):
                await call()
        assert export_body(jobs.store) == before
        # In a handler, set_state and update_state refuse at once: the run fails.
        for event in ({"set_float": str(value)}, {"update_float": str(value)}):
            with pytest.raises(dj.HandlerError) as info:
                await setter.send("t1", event)
            assert isinstance(info.value.__cause__, dj.ValidationError)
        assert (await setter.get_state("t1")) == dj.TaskState({"ok": 1.5}, None)


async def test_reducer_output_is_checked_like_any_state(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        before = export_body(jobs.store)
        # The reducer's failure, not the caller's (the event fits): a HandlerError, as
        # for a task's on_event; it was a ValidationError, the caller's-input error.
        with pytest.raises(dj.HandlerError, match=r"reducer .* does not fit") as info:
            await jobs.debounce("folded").add("f1", {"float": "nan"})
        assert isinstance(info.value.__cause__, dj.ValidationError)
        assert "state['v'] is nan" in str(info.value.__cause__)
        assert export_body(jobs.store) == before


def test_import_refuses_non_finite_numbers(tmp_path: Any, sqlite_url: str) -> None:
    from durable_jobs.maintenance import ExportFileError, import_jsonl

    source = tmp_path / "source.db"

    async def fill() -> None:
        async with running(REGISTRY, f"sqlite:///{source}") as jobs:
            await jobs.continuous("number").start("n1", 2.5)

    trio.run(fill, clock=MockClock(autojump_threshold=0))
    with dj.open_store(f"sqlite:///{source}") as store:
        text = io.StringIO()
        export_jsonl(store, text)
    bad = text.getvalue().replace('"state":2.5', '"state":NaN')
    assert bad != text.getvalue()
    with dj.open_store(sqlite_url) as target:
        empty = export_body(target)
        with pytest.raises(ExportFileError, match="NaN"):
            import_jsonl(target, io.StringIO(bad))
        assert export_body(target) == empty


# ---- 3. raw exceptions: lone surrogates, bytes, deep nesting ---------------------------


async def test_lone_surrogates_bytes_and_deep_nesting_are_validation_errors(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        anything = jobs.continuous("anything")
        batch = jobs.debounce("batch")
        setter = jobs.task("setter")
        await setter.send("t1", 1)
        before = export_body(jobs.store)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: anything.start("\ud800", 1),
            lambda: anything.start("a\udfffb", 1),
            lambda: anything.status("\ud800"),
            lambda: anything.get_state("\ud800"),
            lambda: anything.history("\ud800"),
            lambda: anything.start("a1", {"\ud800": 1}),
            lambda: anything.start("a1", ["ok", "x\udc80"]),
            lambda: anything.start("a1", nested(1000)),
            lambda: anything.start("a1", nested(150)),
            lambda: anything.terminate("a1", "\ud800"),
            lambda: batch.add("b1", b"\xff"),
            lambda: batch.add("b1", 1, idempotency_key="\ud800"),
            lambda: batch.add("\udc00", 1),
            lambda: setter.send("t1", 1, idempotency_key="k\udfff"),
            lambda: setter.send("t1", {"x": b"\xfe\xff"}),
            lambda: setter.terminate("t1", "\udbff"),
        ]
        for call in calls:
            with pytest.raises(dj.ValidationError):
                await call()
        assert export_body(jobs.store) == before
        # A handler's terminate reason is checked too: the run fails, nothing is kept.
        with pytest.raises(dj.HandlerError) as info:
            await setter.send("t1", {"terminate_surrogate": True})
        assert isinstance(info.value.__cause__, dj.ValidationError)


CHANGED_BY_JSON = [
    pytest.param({1: "one"}, "the key 1", id="int-key"),
    pytest.param({"tags": {"a", "b"}}, "['tags'] is a set", id="set"),
    pytest.param((1, 2), "is a tuple", id="tuple"),
    pytest.param([datetime(2026, 1, 1, tzinfo=UTC)], "[0] is a datetime", id="datetime"),
]


@pytest.mark.parametrize(("value", "where"), CHANGED_BY_JSON)
async def test_values_a_permissive_type_would_change_are_refused(
    sqlite_url: str, autojump_clock: MockClock, value: Any, where: str
) -> None:
    """With ``Any`` as the type, these read back otherwise (a list, a str key, a str):
    they were stored and silently changed; now every path refuses them, and nothing is
    written."""
    async with running(REGISTRY, sqlite_url) as jobs:
        anything = jobs.continuous("anything")
        setter = jobs.task("setter")
        await setter.send("t1", 1)
        before = export_body(jobs.store)
        for call in (
            lambda: anything.start("a1", value),
            lambda: jobs.debounce("batch").add("b1", value),
            lambda: setter.send("t2", value),
        ):
            with pytest.raises(dj.ValidationError, match=re.escape(where)):
                await call()
        assert export_body(jobs.store) == before
        # set_state in a handler: the handler call fails on it (its state is not kept).
        with pytest.raises(dj.HandlerError) as info:
            await setter.send("t1", {"set_tuple": True})
        assert isinstance(info.value.__cause__, dj.ValidationError)
        assert "state['t'] is a tuple" in str(info.value.__cause__)


def make_typed_registry() -> dj.Registry:
    """Jobs whose types take only string keys: pydantic refuses an int key itself."""
    registry = dj.Registry()

    @registry.continuous("anything", state=Any, schedule=dj.every(timedelta(hours=1)))
    async def anything(ctx: dj.ContinuousContext[Any]) -> None:
        pass

    @registry.continuous("typed", state=dict[str, Any], schedule=dj.every(timedelta(hours=1)))
    async def typed(ctx: dj.ContinuousContext[dict[str, Any]]) -> None:
        pass

    @registry.task("typed_task", event=dict[str, Any], state=Any)
    async def typed_task(ctx: dj.TaskContext[Any]) -> None:
        pass

    @typed_task.on_event
    async def keep(event: dict[str, Any], ctx: dj.TaskContext[Any]) -> None:
        pass

    return registry


#: A value, and what every refusal of it says (as a state, where it is named "state").
PLAINLY_REFUSED = [
    pytest.param({1: 2}, "state has the key 1, which is not a string", id="int-key"),
    pytest.param({"a": 10**5000}, "state['a'] is an int of more than 4,300 digits", id="huge-int"),
    pytest.param(
        {"n": [-(10**4300)]}, "state['n'][0] is an int of more than 4,300", id="huge-negative"
    ),
    pytest.param(
        {"\udfff": 1},
        "a key of state contains a lone surrogate (U+DFFF at position 0), which is not "
        "valid Unicode",
        id="surrogate-key",
    ),
    pytest.param(
        {"x": {"a\ud800": 1}}, "a key of state['x'] contains a lone surrogate", id="nested"
    ),
]


@pytest.mark.parametrize(("value", "says"), PLAINLY_REFUSED)
async def test_a_state_or_event_that_cannot_be_stored_is_refused_plainly(
    autojump_clock: MockClock, value: Any, says: str
) -> None:
    """With ``dict[str, Any]`` an int key gave pydantic's dump ("1 validation error for
    dict[str,any] ... errors.pydantic.dev"), an int of 5,001 digits "Invalid JSON:
    number out of range at line 1 column 4307", and a key with a lone surrogate "reads
    back from JSON as a string key" (pydantic's JSON mode had made it U+FFFD)."""
    async with running(make_typed_registry(), "memory://") as jobs:
        await jobs.task("typed_task").send("t1", {"ok": 1})
        before = export_body(jobs.store)
        calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("state", lambda: jobs.continuous("typed").start("c1", value)),
            ("event", lambda: jobs.task("typed_task").send("t1", value)),
        ]
        if "has the key" not in says:  # (with Any, an int key reads back as a str key)
            calls.append(("state", lambda: jobs.continuous("anything").start("c1", value)))
        for what, call in calls:
            with pytest.raises(dj.ValidationError) as info:
                await call()
            text = str(info.value)
            assert says.replace("state", what, 1) in text
            assert text.endswith("Nothing was written."), text
            for raw in ("pydantic", "Invalid JSON", "reads back", "string_type"):
                assert raw not in text, text
        assert export_body(jobs.store) == before


def test_a_key_that_is_not_a_string_is_named_where_it_is() -> None:
    codec: TypeCodec[Any] = TypeCodec(dict[str, list[dict[str, int]]], what="state", job="j")
    says = "state['x'][1] has the key 2, which is not a string: JSON object keys are strings"
    with pytest.raises(dj.ValidationError, match=re.escape(says)):
        codec.checked({"x": [{}, {"a": 1, 2: 3}]})
    # Another problem too: pydantic's own message names them all.
    with pytest.raises(dj.ValidationError, match="2 validation errors"):
        codec.checked({"x": [{2: 3}, {"a": "b"}]})


def test_surrogate_ids_through_the_inspector(sqlite_url: str) -> None:
    with dj.open_store(sqlite_url) as store:
        inspector = dj.Inspector(store)
        with pytest.raises(dj.ValidationError):
            inspector.status("task", "setter", "\ud800")


def test_a_directory_as_sqlite_path_is_a_configuration_error(tmp_path: Any) -> None:
    (tmp_path / "some_dir").mkdir()
    for url in (f"sqlite:///{tmp_path}/some_dir/", f"sqlite:///{tmp_path}/some_dir"):
        with pytest.raises(dj.ConfigurationError, match="is a directory"):
            dj.open_store(url)

    async def open_it() -> None:
        async with running(REGISTRY, f"sqlite:///{tmp_path}/some_dir/"):
            pass  # pragma: no cover - refused

    with pytest.raises(dj.ConfigurationError, match="is a directory"):
        trio.run(open_it)
    assert [p.name for p in tmp_path.iterdir()] == ["some_dir"]
    assert list((tmp_path / "some_dir").iterdir()) == []


# ---- limits --------------------------------------------------------------------------------


async def test_default_limits_refuse_big_events_states_and_keys(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        assert jobs.limits == dj.Limits(MIB, MIB, 1024)
        before = export_body(jobs.store)
        big = "x" * MIB
        with pytest.raises(dj.ValidationError, match=r"max_event_bytes.*Nothing was written"):
            await jobs.debounce("batch").add("b1", big)
        with pytest.raises(dj.ValidationError, match=r"max_state_bytes"):
            await jobs.continuous("anything").start("a1", {"big": big})
        with pytest.raises(dj.ValidationError, match=r"1,024 bytes \(max_key_bytes"):
            await jobs.debounce("batch").add("b1", 1, idempotency_key="k" * 1025)
        with pytest.raises(dj.ValidationError, match=r"max_key_bytes"):
            await jobs.debounce("batch").add("b1", 1, idempotency_key="é" * 513)  # 1026 bytes
        assert export_body(jobs.store) == before
        # Just under the limits is accepted.
        await jobs.debounce("batch").add("b1", "x" * (MIB - 100), idempotency_key="k" * 1024)


async def test_limits_are_options_of_open_jobs(sqlite_url: str, autojump_clock: MockClock) -> None:
    async with running(
        REGISTRY, sqlite_url, max_event_bytes=100, max_state_bytes=200, max_key_bytes=8
    ) as jobs:
        setter = jobs.task("setter")
        with pytest.raises(dj.ValidationError, match=r"over the limit of 100 bytes"):
            await jobs.debounce("batch").add("b1", "x" * 100)
        with pytest.raises(dj.ValidationError, match=r"limit of 8 bytes"):
            await setter.send("t1", 1, idempotency_key="123456789")
        await setter.send("t1", {"set_size": 90})
        # A handler setting a state over the limit fails its run; the state stays.
        with pytest.raises(dj.HandlerError) as info:
            await setter.send("t1", {"set_size": 300})
        assert "max_state_bytes" in str(info.value.__cause__)
        assert (await setter.get_state("t1")) == dj.TaskState("y" * 90, None)


async def test_limits_hold_in_runs_fired_by_alarms(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url, max_state_bytes=200) as jobs:
        grower = jobs.continuous("grower")
        await grower.start("g", "x" * 60)  # runs at once, then every hour: 120, 240 bytes
        await trio.sleep(3 * 3600)
        await jobs.wait_idle()
        assert await grower.get_state("g") == "x" * 120
        failed = [r for r in await grower.history("g") if r.name == "run_failed"]
        assert failed
        assert all(r.data["error_type"].endswith(".ValidationError") for r in failed)
        assert "max_state_bytes" in failed[0].data["message"]


@pytest.mark.parametrize(
    "options",
    [{"max_event_bytes": 0}, {"max_state_bytes": -1}, {"max_key_bytes": "1"}],
)
async def test_bad_limits_are_configuration_errors(
    options: dict[str, Any], autojump_clock: MockClock
) -> None:
    with pytest.raises(dj.ConfigurationError, match="must be an int from 1 to"):
        async with running(REGISTRY, "memory://", **options):
            pass  # pragma: no cover - refused


# ---- 6. alarms in the past -----------------------------------------------------------------


@pytest.mark.parametrize("when", ["negative-delay", "past-datetime", "past-epoch"])
async def test_schedule_in_the_past_is_refused(
    when: str, sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        setter = jobs.task("setter")
        with pytest.raises(dj.HandlerError) as info:
            await setter.send("t1", {"schedule": when})
        assert isinstance(info.value.__cause__, dj.ValidationError)
        assert "in the past" in str(info.value.__cause__)
        with trio.fail_after(60):  # virtual time: nothing runs without end
            await jobs.wait_idle()
        status = await setter.status("t1")
        assert (status.scheduled_at, status.execute_count) == (None, 0)


async def test_an_alarm_the_index_cannot_keep_is_refused(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """An alarm in the last moments of year 9999 was committed, stored in the index as
    epoch seconds past datetime.max, and every later open of the store failed on that
    row (UnreadableIndexRow). Refused now, by the handler's schedule() and the admin
    trigger alike; the store opens again."""
    async with running(REGISTRY, sqlite_url) as jobs:
        with pytest.raises(dj.HandlerError) as info:
            await jobs.task("setter").send("t1", {"schedule": "end-of-time"})
        assert isinstance(info.value.__cause__, dj.ValidationError)
        assert "later than the latest alarm" in str(info.value.__cause__)
    end = datetime.max.replace(tzinfo=UTC)
    with (
        dj.open_store(sqlite_url) as store,
        pytest.raises(dj.ValidationError, match="later than the latest alarm"),
    ):
        trigger_instance(store, "task", "setter", "t1", now=end)
    async with running(REGISTRY, sqlite_url) as jobs:
        assert (await jobs.task("setter").status("t1")).status == "idle"


async def test_schedule_now_runs_once(sqlite_url: str, autojump_clock: MockClock) -> None:
    async with running(REGISTRY, sqlite_url) as jobs:
        setter = jobs.task("setter")
        await setter.send("t1", {"schedule": "now"})
        await trio.sleep(1)
        await jobs.wait_idle()
        assert (await setter.status("t1")).execute_count == 1


# ---- the testing strategies make only what can be stored --------------------------------


@settings(max_examples=1000, deadline=None)
@given(instance_id=instance_ids(), key=idempotency_keys(pool=None))
def test_the_testing_strategies_make_only_storable_ids_and_keys(
    instance_id: str, key: str
) -> None:
    """durable_jobs.testing drew lone surrogates (about 1 id in 400), which are refused."""
    check_instance_id(instance_id)
    check_idempotency_key(key)
