"""Objects a run builds without their dataclass ``__init__`` (``built``): each equals,
reprs and stores exactly like the one ``__init__`` makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from _event_histories import every_event_history
from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._definitions.contexts import ContinuousContext
from durable_jobs._domain import instance as instance_module
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents, RunTicket
from durable_jobs._store.index import IndexRow
from durable_jobs._store.mapper import JsonMapper
from durable_jobs._store.rows import index_row_of

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _by_init(obj: Any) -> Any:
    cls = type(obj)
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})


def test_every_event_is_what_its_init_makes() -> None:
    mapper = JsonMapper()
    built = 0
    for inst in every_event_history():
        for event in inst.pending_events:
            ref = _by_init(event)
            assert event == ref and repr(event) == repr(ref)
            assert list(vars(event)) == list(vars(ref))
            assert mapper.to_stored_event(event) == mapper.to_stored_event(ref)
            assert mapper.topic_and_state(event) == mapper.topic_and_state(ref)
            built += type(instance_module._PLAIN.get(type(event))) is tuple
    # Every event but the created ones is built the cheap way.
    assert built >= 25


def test_a_run_builds_its_ticket_intents_rows_and_events_cheaply() -> None:
    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state={"n": 1}, first_run_at=T)
    ticket = inst.next_ticket(fresh=False)
    assert ticket == RunTicket(1, 1, 1) and repr(ticket) == repr(RunTicket(1, 1, 1))
    codec: TypeCodec[Any] = TypeCodec(dict, what="state", job="c")
    ctx: ContinuousContext[Any] = ContinuousContext(
        codec=codec, state={"n": 1}, instance_id="1", job_name="c", run_count=1, attempt=1
    )
    ctx.set_state({"n": 2})
    intents = ctx._intents(None)  # as the run calls it: then(handler return value)
    assert intents == _by_init(intents) and list(vars(intents)) == list(vars(_by_init(intents)))
    assert intents == Intents(state={"n": 2}, state_version=1)
    for plan in (instance_module._PLAIN[type(e)] for e in inst.pending_events[1:]):
        assert type(plan) is tuple
    row = index_row_of(inst)
    assert row == _by_init(row) and repr(row) == repr(_by_init(row))
    stored = JsonMapper().to_stored_event(inst.pending_events[-1])
    assert stored == _by_init(stored) and repr(stored) == repr(_by_init(stored))


def test_an_event_whose_init_does_more_is_built_by_it() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stamped(ContinuousInstance.AlarmCleared):
        def __post_init__(self) -> None:
            super().__post_init__()
            object.__setattr__(self, "extra", 1)

    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state=1, first_run_at=T)
    inst.trigger_event(Stamped, timestamp=T)
    assert instance_module._PLAIN[Stamped] is True
    assert vars(inst.pending_events[-1])["extra"] == 1


def test_an_index_row_read_back_is_what_its_init_makes() -> None:
    """The rows of a window read (about one a run under load) are built without the
    frozen dataclass's ``__init__``, from SQLite's text uuid and epoch floats and from
    Postgres's uuid."""
    inst, _ = ContinuousInstance.start(None, "c", "1", now=T, state={"n": 1}, first_run_at=T)
    written = index_row_of(inst)
    text = written.as_params()
    native = (written.instance_uuid, *text[1:])
    for params in (text, native, (*text[:5], None, *text[6:])):
        row = IndexRow.from_params(params)
        ref = _by_init(row)
        assert row == ref and repr(row) == repr(ref) and hash(row) == hash(ref)
        assert list(vars(row)) == list(vars(ref))
        assert type(row.version) is int and row.updated_at.tzinfo is UTC
    assert IndexRow.from_params(text) == written
