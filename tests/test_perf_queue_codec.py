"""TypeCodec.checked (the client's validate-and-dump in one call, with its fast path for
small ints and bools) gives what validate then dump give, and refuses what they refuse;
so does a context's set_state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._definitions.contexts import TaskContext
from durable_jobs._domain.ids import NAMESPACE, instance_uuid
from durable_jobs._domain.instance import UNCHANGED
from durable_jobs._domain.values import Limits, limits_in_effect
from durable_jobs._errors import ValidationError

VALUES = [0, 1, -1, 2**63 - 1, -(2**63) + 1, 2**63, -(2**63), 2**70, True, False, "5", 5.0]


@pytest.mark.parametrize("tp", [int, bool, str, float])
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("limit", [1, 5, 19, 20, 21, 1 << 20])
def test_checked_is_validate_then_dump(tp: type, value: object, limit: int) -> None:
    codec: TypeCodec[object] = TypeCodec(tp, what="event", job="j")
    with limits_in_effect(Limits(max_event_bytes=limit)):
        refused: str | None = None
        try:
            expected = codec.validate(value)
            expected_json = codec.dump(expected)
        except ValidationError as exc:
            refused = str(exc)
        if refused is not None:
            with pytest.raises(ValidationError) as got:
                codec.checked(value)
            assert str(got.value) == refused
            return
        valid, data = codec.checked(value)
    assert (type(valid), valid) == (type(expected), expected)
    assert (type(data), data) == (type(expected_json), expected_json)


def test_state_limit_bounds_state_codecs() -> None:
    codec: TypeCodec[int] = TypeCodec(int, what="state", job="j")
    with limits_in_effect(Limits(max_state_bytes=2, max_event_bytes=1 << 20)):
        assert codec.checked(12) == (12, 12)
        with pytest.raises(ValidationError, match="max_state_bytes"):
            codec.checked(123)


@pytest.mark.parametrize("instance_id", ["a", "j12345", "é" * 40, "x" * 512])
def test_instance_uuid_is_uuid5(instance_id: str) -> None:
    import uuid

    for kind, job in [("task", "q"), ("debounce", "a.b-c"), ("continuous", "_x")]:
        expected = uuid.uuid5(NAMESPACE, f"{kind}:{job}:{instance_id}")
        assert instance_uuid(kind, job, instance_id) == expected  # type: ignore[arg-type]
        assert instance_uuid(kind, job, instance_id) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("tp", [int, bool, str, float])
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("limit", [1, 19, 20, 1 << 20])
def test_set_state_then_intents_is_validate_then_dump(tp: type, value: object, limit: int) -> None:
    """A context's set_state (checked, and no second dump of a plain scalar in its
    intents) records what validate then dump give, and refuses what they refuse."""
    codec: TypeCodec[object] = TypeCodec(tp, what="state", job="j")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ctx: TaskContext[object] = TaskContext(
        codec=codec,
        state=None,
        instance_id="i",
        job_name="j",
        now=lambda: now,
        scheduled_at=None,
        event_count=1,
        execute_count=0,
        created_at=now,
    )
    with limits_in_effect(Limits(max_state_bytes=limit)):
        refused: str | None = None
        try:
            expected = codec.dump(codec.validate(value))
        except ValidationError as exc:
            refused = str(exc)
        if refused is not None:
            with pytest.raises(ValidationError) as got:
                ctx.set_state(value)
            assert str(got.value) == refused
            assert ctx.intents().state is UNCHANGED
            return
        ctx.set_state(value)
        state = ctx.intents().state
    assert (type(state), state) == (type(expected), expected)


@pytest.mark.parametrize("tp", [int, bool, str, float])
@pytest.mark.parametrize("value", [*VALUES, None, [1], {"a": 1}, 1.5])
@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_is_upcast_then_from_json(tp: type, value: object, version: int) -> None:
    """TypeCodec.read (with its fast path for small ints and bools stored at the current
    version) gives what upcasting then the JSON round trip give, and refuses what they
    refuse."""
    codec: TypeCodec[object] = TypeCodec(
        tp, what="state", job="j", version=2, upcasters={1: lambda data: data}
    )
    refused: Exception | None = None
    try:
        expected = codec.from_json(codec.upcast(value, version))
    except Exception as exc:
        refused = exc
    if refused is not None:
        with pytest.raises(type(refused)) as got:
            codec.read(value, version)
        assert str(got.value) == str(refused)
        return
    got_value = codec.read(value, version)
    assert (type(got_value), got_value) == (type(expected), expected)
