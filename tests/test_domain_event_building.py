"""Events are built by ``JobInstance.trigger_event`` itself (no dataclass ``__init__``,
no ``mutate`` checks): the objects are exactly those eventsourcing's way builds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from durable_jobs._domain import instance as instance_module
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import EVENT_NAMES, Intents, JobInstance, RunTicket
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
W = timedelta(hours=1)


def _stock(agg: JobInstance, event_class: type[Any], **kwargs: Any) -> None:
    """eventsourcing's own ``trigger_event`` (what ours must match)."""
    Aggregate.trigger_event(agg, event_class, **kwargs)


def _histories() -> list[JobInstance]:
    """Instances that recorded every event class the domain triggers."""
    cont, _ = ContinuousInstance.start(None, "c", "1", now=T, state={"n": 1}, first_run_at=T)
    ticket = cont.next_ticket(fresh=False)
    cont.fail_run(ticket, ValueError("x"), now=T, schedule=every(W), retry=None, retry_at=T + W)
    cont.complete_run(
        cont.next_ticket(fresh=False), Intents(state=2), now=T, duration=0.5, schedule=every(W)
    )
    cont.record_exhausted(RunTicket(3, 2), "pause", now=T)
    cont.due_now(now=T)
    cont.stamp_trace("00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    cont.terminate(now=T, reason="done")
    cont.restart(now=T, state=None, type_version=2)
    deb, _ = DebounceInstance.add(
        None,
        "d",
        "1",
        {"e": 1},
        now=T,
        new_state=[{"e": 1}],
        idempotency_key="k",
        window=W,
        flush_after=W,
        max_events=1,
    )
    flush = deb.begin_flush(now=T, manual=False, flush_after=W)
    assert flush is not None
    deb.flush_succeeded(flush, now=T, duration=1.0, flush_after=W)
    deb.add(
        deb,
        "d",
        "1",
        2,
        now=T,
        new_state=2,
        idempotency_key=None,
        window=W,
        flush_after=W,
        max_events=None,
    )
    deb.clear(now=T)
    task, _ = TaskInstance.receive(None, "t", "1", "go", now=T, idempotency_key=None, window=W)
    task.set_state(["x" * 100] * 4, now=T)
    task.set_state(["x" * 100] * 5, now=T)  # a patch
    return [cont, deb, task]


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
    # ... and every one of them took the fast way.
    fast = {cls.__name__ for cls, calls in instance_module._SHAPES.items() if calls}
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
    # Fields out of declaration order, and a missing timestamp: eventsourcing's way.
    ours.trigger_event(ours.RunSucceeded, handler="execute", timestamp=T, duration=1.0,
                       attempt=1, run_count=1)  # fmt: skip
    event: Any = ours.pending_events[-1]
    assert list(vars(event)) == [f.name for f in dataclasses.fields(event)]
    assert ours.d.run_count == 1 and ours.version == 3
    ours.trigger_event(ours.AlarmCleared, timestamp=None)
    assert ours.pending_events[-1].timestamp is not None and ours.d.alarm_at is None
    # A missing field is eventsourcing's error, and records nothing.
    with pytest.raises(TypeError, match="Can't construct event"):
        ours.trigger_event(ours.Terminated, timestamp=T)
    # An apply that raises records nothing either.
    with pytest.raises(Exception):  # noqa: B017, PT011
        ours.trigger_event(ours.StatePatched, timestamp=T, patch=[{"op": "nonsense"}])
    assert ours.version == 4 and len(ours.pending_events) == 4


def test_events_of_another_shape_are_left_to_eventsourcing() -> None:
    shape = instance_module._event_shape
    # The created event has its own mutate.
    assert shape(ContinuousInstance.Started) == ()

    @dataclasses.dataclass(frozen=True)
    class Checked(ContinuousInstance.AlarmCleared):
        def __post_init__(self) -> None:
            raise ValueError("checked")

    assert shape(Checked) == ()
    assert shape(object) == ()
    names, required, defaults = shape(ContinuousInstance.AlarmSet)
    assert names == ("timestamp", "at", "trace") and required == 2
    assert defaults[2] == ("trace", None)
    assert instance_module._calls(shape(ContinuousInstance.AlarmSet)) == {
        ("timestamp", "at"): (("trace", None),),
        ("timestamp", "at", "trace"): (),
    }


def test_collect_events_hands_over_the_pending_events() -> None:
    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    pending = inst.pending_events
    collected = inst.collect_events()
    assert collected is pending and len(collected) == 2
    assert inst.pending_events == [] and inst.pending_events is not collected
    inst.set_alarm(None, now=T)
    assert len(inst.pending_events) == 1 and len(collected) == 2
