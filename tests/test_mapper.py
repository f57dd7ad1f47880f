"""The JSON mapper: every event round-trips exactly; nothing foreign is decoded."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from _event_histories import every_event_history
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import EVENT_NAMES, InstanceSnapshot, event_classes
from durable_jobs._domain.task import TaskInstance
from durable_jobs._store.mapper import CorruptEventError, JsonMapper

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
W = timedelta(hours=1)
mapper = JsonMapper()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _roundtrip(event: Any) -> Any:
    stored = mapper.to_stored_event(event)
    json.loads(stored.state)  # plain JSON on disk
    return mapper.to_domain_event(stored)


def _every_event() -> list[Any]:
    return [e for agg in every_event_history() for e in agg.collect_events()]


def test_every_event_class_round_trips() -> None:
    events = _every_event()
    names = {type(e).__name__ for e in events}
    assert names == {*EVENT_NAMES, *DebounceInstance.OWN_EVENTS}
    for event in events:
        assert _roundtrip(event) == event


def test_topics_are_short_and_stable() -> None:
    topics = event_classes()
    assert "durable_jobs:TaskInstance.EventAdded" in topics
    assert all(t.startswith("durable_jobs:") for t in topics)
    started = mapper.to_stored_event(_every_event()[0])
    assert b'"originator_topic":"durable_jobs:ContinuousInstance"' in started.state


@given(json_values)
def test_a_created_event_stores_the_fields_it_always_stored(value: Any) -> None:
    """The JSON of a created event (the short aggregate topic spliced into the
    event's own JSON) holds exactly what the earlier dump-to-Python-and-back wrote."""
    inst, _ = TaskInstance.receive(None, "t", "1", value, now=T, idempotency_key=None, window=W)
    created = inst.collect_events()[0]
    assert "originator_topic" in {f.name for f in dataclasses.fields(cast("Any", created))}
    stored = json.loads(mapper.to_stored_event(created).state)
    expected = TypeAdapter(type(created)).dump_python(
        created, mode="json", exclude={"originator_id", "originator_version", "type_version"}
    )
    expected["originator_topic"] = "durable_jobs:TaskInstance"
    assert stored == expected
    assert next(iter(stored)) == "originator_topic"


@given(json_values)
def test_any_json_state_round_trips_exactly(value: Any) -> None:
    inst, _ = TaskInstance.receive(None, "t", "1", value, now=T, idempotency_key=None, window=W)
    inst.set_state(value, now=T)
    for event in inst.collect_events():
        back = _roundtrip(event)
        assert back == event
    assert _same(back.state, value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(type(a) is type(b) and a == b)


def test_dicts_that_look_like_transcoded_objects_stay_dicts() -> None:
    """eventsourcing's JSONTranscoder would turn this into a datetime; ours must not."""
    tricky = {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"}
    inst, _ = TaskInstance.receive(None, "t", "1", tricky, now=T, idempotency_key=None, window=W)
    added = inst.collect_events()[1]
    assert _roundtrip(added).event == tricky


def _closed_batch() -> DebounceInstance:
    """A debounce instance holding one closed batch and one idempotency key."""
    deb, _ = DebounceInstance.add(
        None,
        "d",
        "1",
        1,
        now=T,
        new_state=[1],
        idempotency_key="k",
        window=W,
        flush_after=W,
        max_events=1,
    )
    return deb


def test_snapshot_round_trips() -> None:
    deb = _closed_batch()
    deb.collect_events()
    snap = InstanceSnapshot.take(deb)
    back = _roundtrip(snap)
    assert back == snap
    assert back.mutate(None) == deb


@pytest.mark.parametrize(
    ("topic", "state", "problem"),
    [
        ("eventsourcing.domain:Aggregate.Created", b"{}", "unknown topic"),
        # Batch events are the debounce instance's own: no other kind has them.
        ("durable_jobs:ContinuousInstance.BatchClosed", b"{}", "unknown topic"),
        ("durable_jobs:TaskInstance.Cleared", b"{}", "unknown topic"),
        ("durable_jobs:ContinuousInstance.Flushed", b"{}", "unknown topic"),
        ("durable_jobs:DebounceInstance.Cleared", b"\xff\xfe", "not JSON"),
        ("durable_jobs:DebounceInstance.Cleared", b"[1, 2]", "fields"),
        (
            "durable_jobs:DebounceInstance.Cleared",
            b'{"timestamp": "2026-01-01T00:00:00Z"}',
            "fields",
        ),
        (
            "durable_jobs:DebounceInstance.Cleared",
            b'{"timestamp": "2026-01-01T00:00:00Z", "discarded_events": "many"}',
            "discarded_events",
        ),
        (
            "durable_jobs:DebounceInstance.Cleared",
            b'{"timestamp": "2026-01-01T00:00:00Z", "discarded_events": 1, "extra": 1}',
            "fields",
        ),
    ],
)
def test_corrupt_rows_raise_with_version(topic: str, state: bytes, problem: str) -> None:
    uid = uuid4()
    with pytest.raises(CorruptEventError, match=problem) as info:
        mapper.to_domain_event(StoredEvent(uid, 7, topic, state))
    assert info.value.version == 7 and info.value.originator_id == uid


def test_events_of_other_classes_are_refused() -> None:
    with pytest.raises(TypeError, match="not an event this store records"):
        mapper.to_stored_event(object())


def test_decoded_times_are_plain_utc() -> None:
    """Times read back use ``datetime.UTC``, not a parser's own tzinfo object."""
    for event in _every_event():
        back = _roundtrip(event)
        for value in vars(back).values():
            if isinstance(value, datetime):
                assert value.tzinfo is UTC
    deb = _closed_batch()
    rebuilt = _roundtrip(InstanceSnapshot.take(deb)).mutate(None)
    assert rebuilt.d.created_at.tzinfo is UTC
    assert rebuilt.d.closed[0].started_at.tzinfo is UTC
    assert rebuilt.d.idempotency["k"].tzinfo is UTC


def _dumped_the_earlier_way(event: Any) -> bytes:
    """The JSON the mapper wrote before it planned each class: ``TypeAdapter.dump_json``
    without the ids, type version 1 or an unset trace."""
    exclude = {"originator_id", "originator_version"}
    if getattr(event, "type_version", None) == 1:
        exclude.add("type_version")
    if getattr(event, "trace", 0) is None:
        exclude.add("trace")
    adapter = TypeAdapter(type(event))
    if "originator_topic" not in {f.name for f in dataclasses.fields(event)}:
        return adapter.dump_json(event, exclude=exclude)
    data = adapter.dump_python(event, mode="json", exclude=exclude)
    data["originator_topic"] = mapper.to_stored_event(event).topic.split(".")[0]
    return json.dumps(data).encode()


def test_rows_hold_the_bytes_they_held() -> None:
    """Each class's plan (serializer, fields left out) writes what dump_json wrote,
    also for type versions above 1 and traced alarms; the row is a plain StoredEvent."""
    events = _every_event()
    inst, _ = TaskInstance.receive(None, "t", "2", {"a": 1}, now=T, idempotency_key="k",
                                   window=W, type_version=3)  # fmt: skip
    inst.set_alarm(T + W, now=T)
    inst.stamp_trace("00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    inst.set_state([1], now=T, type_version=3)
    events += inst.collect_events()
    assert any(getattr(e, "trace", None) for e in events)
    assert any(getattr(e, "type_version", 1) == 3 for e in events)
    for event in events:
        stored = mapper.to_stored_event(event)
        expected = _dumped_the_earlier_way(event)
        if "originator_topic" in json.loads(stored.state):
            assert json.loads(stored.state) == json.loads(expected)
        else:
            assert stored.state == expected
        assert stored == StoredEvent(
            event.originator_id, event.originator_version, stored.topic, stored.state
        )
        assert list(vars(stored)) == ["originator_id", "originator_version", "topic", "state"]
