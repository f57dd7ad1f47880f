"""The fast paths of a client call: a plain scalar value stored without pydantic's
dumps, instance ids made from a per-job prefix, and a commit that leaves no alarm
not waking the scheduler. Each must give what the full path gives, and refuse what
it refuses, with the same message."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_jobs as dj
from _runtime import HOUR, MINUTE, T, running
from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._domain.batches import DebounceData
from durable_jobs._domain.ids import NAMESPACE, instance_uuid
from durable_jobs._domain.values import Limits, limits_in_effect
from durable_jobs._errors import ValidationError

SCALARS: list[Any] = [int, str, bool, float]


def full_path(tp: Any) -> TypeCodec[Any]:
    """A codec of ``tp`` whose dump never takes the scalar fast path."""
    codec: TypeCodec[Any] = TypeCodec(tp, what="event", job="j")
    codec._scalar = None
    return codec


def outcome(codec: TypeCodec[Any], value: Any) -> tuple[str, Any]:
    try:
        data = codec.dump(codec.validate(value))
    except ValidationError as exc:
        return "refused", str(exc)
    return "stored", (type(data), data)


def test_the_plain_scalar_types_take_the_fast_path() -> None:
    for tp in SCALARS:
        assert TypeCodec(tp, what="event", job="j")._scalar is tp
    for tp in (int | None, dict[str, Any], list[int], Any):
        assert TypeCodec(tp, what="event", job="j")._scalar is None


def test_a_scalar_dump_makes_no_pydantic_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken (pydantic's serializer is not called) and stores the value."""
    codec: TypeCodec[Any] = TypeCodec(int, what="event", job="j")
    monkeypatch.setattr(codec.adapter, "serializer", _Refusing())
    assert codec.dump(5) == 5
    with pytest.raises(ValidationError, match="the full path was taken"):
        codec.dump(2**64)  # too wide for the fast path


class _Refusing:
    def to_python(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full path was taken")


scalar_values = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(),
    st.text(alphabet=st.characters(codec=None)),  # lone surrogates too
    st.booleans(),
    st.floats(),  # NaN and infinities too
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=400, deadline=None)
@given(value=scalar_values, tp=st.sampled_from(SCALARS))
def test_a_scalar_is_stored_or_refused_as_the_full_path_does(value: Any, tp: Any) -> None:
    fast: TypeCodec[Any] = TypeCodec(tp, what="event", job="j")
    assert outcome(fast, value) == outcome(full_path(tp), value)


@pytest.mark.parametrize(
    ("tp", "value", "message"),
    [
        (float, math.nan, "NaN and infinities cannot be stored"),
        (float, -math.inf, "NaN and infinities cannot be stored"),
        (str, "a\ud800", "lone surrogate"),
        (str, "x" * 20, "max_event_bytes"),
        (int, 10**20, "max_event_bytes"),
        (int, 123456, "max_event_bytes"),
    ],
)
def test_what_the_fast_path_must_refuse_is_refused(tp: Any, value: Any, message: str) -> None:
    codec: TypeCodec[Any] = TypeCodec(tp, what="event", job="j")
    with limits_in_effect(Limits(max_event_bytes=5)):
        with pytest.raises(ValidationError, match=message) as fast:
            codec.dump(value)
        with pytest.raises(ValidationError) as full:
            full_path(tp).dump(value)
    assert str(fast.value) == str(full.value)


def test_a_value_at_the_size_limit_is_stored() -> None:
    codec: TypeCodec[Any] = TypeCodec(str, what="event", job="j")
    with limits_in_effect(Limits(max_event_bytes=5)):
        assert codec.dump("abc") == "abc"  # '"abc"' is 5 bytes
        with pytest.raises(ValidationError, match="max_event_bytes"):
            codec.dump("abcd")


job_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["continuous", "debounce", "task"]),
    job=job_names,
    instance_id=st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        min_size=1,
    ),
)
def test_instance_uuid_is_uuid5_of_kind_job_and_id(kind: Any, job: str, instance_id: str) -> None:
    expected = uuid.uuid5(NAMESPACE, f"{kind}:{job}:{instance_id}")
    got = instance_uuid(kind, job, instance_id)
    assert got == expected
    assert (got.version, got.variant, str(got), got.bytes) == (
        5,
        uuid.RFC_4122,
        str(expected),
        expected.bytes,
    )


async def test_a_send_that_leaves_no_alarm_does_not_wake_the_scheduler(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """With no alarm set anywhere the scheduler sleeps until woken: a send whose
    instance has no alarm gives it nothing to look at (each woke it for a pass), and
    one that sets an alarm still wakes it, and the alarm runs at its time."""
    clock = dj.VirtualClock(T)
    ran: list[tuple[str, datetime]] = []
    reg = dj.Registry()

    @reg.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        ran.append((ctx.instance_id, clock.now()))

    @t.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        if event:
            ctx.schedule(timedelta(minutes=event))

    async with running(reg, store_url, clock=clock) as jobs:
        task = jobs.task("t")
        await jobs.wait_idle()
        scheduler = jobs._rt.scheduler
        before = scheduler.passes
        for n in range(50):
            await task.send(f"none{n}", 0)
            for _ in range(3):
                await trio.lowlevel.checkpoint()
        assert scheduler.passes - before <= 1
        await task.send("alarm", 5)
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        assert scheduler.passes - before >= 1
        await trio.sleep(HOUR.total_seconds())
        await jobs.wait_idle()
    assert ran == [("alarm", T + 5 * MINUTE)]


def test_instance_data_containers_are_fresh_for_every_instance() -> None:
    """The containers' defaults are factories (pydantic deep-copied a ``{}`` default for
    every instance built): each instance still gets its own, empty, stored as before."""
    made = [
        DebounceData(kind="debounce", job="d", instance_id=str(k), created_at=T) for k in range(2)
    ]
    made[0].idempotency["key"] = T
    made[0].closed.append(None)  # type: ignore[arg-type]
    assert made[1].idempotency == {} and made[1].closed == []
    dumped = made[1].model_dump(mode="json")
    assert (dumped["idempotency"], dumped["closed"]) == ({}, [])
    assert "idempotency" not in made[1].model_fields_set
