"""Events are applied by ``JobInstance.trigger_event`` itself (no ``mutate`` checks):
the instances and events are exactly those eventsourcing's way makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from _event_histories import every_event_history
from durable_jobs._domain import instance as instance_module
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import EVENT_NAMES, JobInstance
from durable_jobs._domain.task import TaskInstance

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
W = timedelta(hours=1)


def _stock(agg: JobInstance, event_class: type[Any], **kwargs: Any) -> None:
    """eventsourcing's own ``trigger_event`` (what ours must match)."""
    Aggregate.trigger_event(agg, event_class, **kwargs)


def _histories() -> list[JobInstance]:
    """Instances that recorded every event class the domain triggers."""
    return every_event_history()


def test_every_triggered_event_is_the_object_its_init_makes() -> None:
    built: set[str] = set()
    for agg in _histories():
        for event in agg.pending_events[1:]:  # the first is the created event
            cls: Any = type(event)
            stock = cls(**{f.name: getattr(event, f.name) for f in dataclasses.fields(cls)})
            assert event == stock
            # Same attributes in the same order (records list them in this order).
            assert list(vars(event).items()) == list(vars(stock).items())
            built.add(cls.__name__)
    names = {*EVENT_NAMES, *DebounceInstance.OWN_EVENTS} - {"Started"}
    assert names <= built
    # ... and every one of them took the short way.
    fast = {cls.__name__ for cls, plain in instance_module._PLAIN.items() if plain}
    assert names <= fast


def test_the_instance_moves_on_exactly_as_with_the_stock_trigger() -> None:
    ours, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    stock, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    later = T + W
    ours.trigger_event(ours.AlarmSet, timestamp=later, at=later)  # trace left to its default
    _stock(stock, stock.AlarmSet, timestamp=later, at=later)
    ours.trigger_event(ours.Terminated, timestamp=later, reason=None)
    _stock(stock, stock.Terminated, timestamp=later, reason=None)
    assert ours.pending_events == stock.pending_events
    assert [list(vars(e)) for e in ours.pending_events] == [
        list(vars(e)) for e in stock.pending_events
    ]
    assert (ours.version, ours.modified_on, ours.d) == (stock.version, stock.modified_on, stock.d)
    assert getattr(ours.pending_events[1], "trace", 0) is None
    assert ours.version == 4 and ours.modified_on == later


def test_other_calls_take_the_stock_way_with_the_same_result() -> None:
    ours, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    # Fields out of declaration order are put in it.
    ours.trigger_event(ours.RunSucceeded, handler="execute", timestamp=T, duration=1.0,
                       attempt=1, run_count=1)  # fmt: skip
    event: Any = ours.pending_events[-1]
    assert list(vars(event)) == [f.name for f in dataclasses.fields(event)]
    assert ours.d.run_count == 1 and ours.version == 3
    # No timestamp: eventsourcing's way (it reads the clock).
    ours.trigger_event(ours.AlarmCleared, timestamp=None)
    assert ours.pending_events[-1].timestamp is not None and ours.d.alarm_at is None
    # Ids given: eventsourcing's way (its own win).
    ours.trigger_event(ours.Resumed, timestamp=T, at=T, originator_version=99)
    assert ours.pending_events[-1].originator_version == 5 and ours.version == 5
    # A missing field is eventsourcing's error, and records nothing.
    with pytest.raises(TypeError, match="Can't construct event"):
        ours.trigger_event(ours.Terminated, timestamp=T)
    # An apply that raises records nothing either.
    with pytest.raises(Exception):  # noqa: B017, PT011
        ours.trigger_event(ours.StatePatched, timestamp=T, patch=[{"op": "nonsense"}])
    assert ours.version == 5 and len(ours.pending_events) == 5


def test_events_of_another_kind_are_left_to_eventsourcing() -> None:
    # The created event has its own mutate.
    assert not instance_module._is_plain(ContinuousInstance.Started)
    assert instance_module._is_plain(ContinuousInstance.AlarmSet)

    @dataclasses.dataclass(frozen=True)
    class Own(ContinuousInstance.AlarmCleared):
        def mutate(self, aggregate: Any) -> Any:
            raise ValueError("own")

    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    with pytest.raises(ValueError, match="own"):
        inst.trigger_event(Own, timestamp=T)
    assert instance_module._PLAIN[Own] is False


def test_collect_events_hands_over_the_pending_events() -> None:
    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    pending = inst.pending_events
    collected = inst.collect_events()
    assert collected is pending and len(collected) == 2
    assert inst.pending_events == [] and inst.pending_events is not collected
    inst.set_alarm(None, now=T)
    assert len(inst.pending_events) == 1 and len(collected) == 2


def test_events_set_the_data_s_fields_as_setattr_does() -> None:
    """``Terminated`` and ``RunSucceeded`` write several fields at once, past pydantic's
    ``__setattr__``: that is only the same while the models do not validate assignments."""
    from durable_jobs._domain import events
    from durable_jobs._domain.batches import DebounceData
    from durable_jobs._domain.data import InstanceData

    for model in (InstanceData, DebounceData):
        assert not model.model_config.get("validate_assignment")
        assert not model.model_config.get("frozen")
        a, b = (
            model(kind="task", job="j", instance_id="i", created_at=T, state=1, alarm_at=T)
            for _ in range(2)
        )
        values = {"live": False, "state": None, "alarm_at": None, "attempt": 0, "paused": False}
        events._assign(a, values)
        for name, value in values.items():
            setattr(b, name, value)
        assert a == b and a.model_fields_set == b.model_fields_set
        assert list(vars(a)) == list(vars(b))
    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    inst.terminate(now=T, reason=None)
    assert {"live", "state", "paused"} <= inst.d.model_fields_set
    assert (inst.d.live, inst.d.alarm_at, inst.status) == (False, None, "terminated")


@pytest.mark.parametrize("cls", [ContinuousInstance, DebounceInstance, TaskInstance])
def test_create_makes_the_instance_eventsourcing_s_create_makes(cls: type[JobInstance]) -> None:
    ours = cls.create("j", "i", now=T, state={"a": [1]}, type_version=2)
    stock = cls._create(
        cls.Started,
        id=ours.id,
        timestamp=T,
        kind=cls.kind,
        job="j",
        instance_id="i",
        state={"a": [1]},
        type_version=2,
    )
    assert instance_module._plain_created_topic(cls) is not None
    assert ours.pending_events == stock.pending_events
    assert list(vars(ours)) == list(vars(stock))
    assert vars(ours) == vars(stock)
    # ... and what its event rebuilds.
    (event,) = stock.collect_events()
    assert event.mutate(None) == stock
    assert (ours.version, ours.created_on, ours.modified_on) == (1, T, T)


def test_create_leaves_an_aggregate_of_another_make_to_eventsourcing() -> None:
    class Mentions(ContinuousInstance):
        def __init__(self, id: Any) -> None:
            self.seen = id

    assert instance_module._plain_created_topic(Mentions) is None
    inst = Mentions.create("j", "i", now=T, state=None)
    assert inst.seen == inst.id and inst.d.job == "j"


@pytest.mark.parametrize("cls", [ContinuousInstance, TaskInstance, DebounceInstance])
def test_a_run_s_success_and_alarm_are_the_events_the_stock_trigger_makes(
    cls: type[JobInstance],
) -> None:
    """``record_success`` and ``set_alarm`` build their events themselves once
    ``trigger_event`` has built one of the class (``_FIELDS``): the same events, the
    same attributes in the same order, and the instance moves on the same way."""
    for _ in range(2):  # the first run may take trigger_event's way, the second not
        ours = cls.create("j", "1", now=T, state=1)
        stock = cls.create("j", "1", now=T, state=1)
        ticket = ours.next_ticket(fresh=True)
        later = T + W
        assert ours.record_success(ticket, handler="execute", now=later, duration=0.25)
        _stock(
            stock,
            stock.RunSucceeded,
            timestamp=later,
            handler="execute",
            run_count=ticket.run_count,
            attempt=ticket.attempt,
            duration=0.25,
        )
        ours.set_alarm(later + W, now=later)
        _stock(stock, stock.AlarmSet, timestamp=later, at=later + W)
        assert ours.pending_events == stock.pending_events
        assert [list(vars(e).items()) for e in ours.pending_events] == [
            list(vars(e).items()) for e in stock.pending_events
        ]
        assert [repr(e) for e in ours.pending_events] == [repr(e) for e in stock.pending_events]
        assert (ours.version, ours.modified_on, ours.d) == (
            stock.version,
            stock.modified_on,
            stock.d,
        )
    assert instance_module._FIELDS[cls.RunSucceeded] == instance_module._RUN_SUCCEEDED_FIELDS
    assert instance_module._FIELDS[cls.AlarmSet] == instance_module._ALARM_SET_FIELDS


def test_a_success_or_alarm_event_of_other_fields_is_left_to_trigger_event() -> None:
    class Other(ContinuousInstance):
        kind = "continuous"

        @dataclasses.dataclass(frozen=True)
        class AlarmSet(ContinuousInstance.AlarmSet):
            note: str = "x"

        @dataclasses.dataclass(frozen=True)
        class RunSucceeded(ContinuousInstance.RunSucceeded):
            note: str = "y"

    for _ in range(2):
        inst = Other.create("j", "1", now=T, state=1)
        inst.record_success(inst.next_ticket(fresh=True), handler="execute", now=T, duration=0)
        inst.set_alarm(T + W, now=T)
        success, alarm = inst.pending_events[-2:]
        assert type(success) is Other.RunSucceeded and vars(success)["note"] == "y"
        assert type(alarm) is Other.AlarmSet and vars(alarm)["note"] == "x"
