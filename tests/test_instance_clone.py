"""The copy a command decides on: equal to the committed instance, never sharing a
container an event updates in place."""

from __future__ import annotations

from datetime import UTC, datetime

import durable_jobs as dj
from durable_jobs._domain.batches import Batch, DebounceData
from durable_jobs._domain.data import InstanceData

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_clone_is_equal_and_its_idempotency_keys_are_its_own() -> None:
    d = InstanceData(
        kind="task", job="j", instance_id="i", created_at=T, state={"n": 1}, idempotency={"k": T}
    )
    c = d.clone()
    assert type(c) is InstanceData
    assert c == d and c is not d
    assert c.model_dump() == d.model_dump()
    assert c.model_fields_set == d.model_fields_set | {"idempotency"}
    c.idempotency["other"] = T
    c.run_count = 5
    assert d.idempotency == {"k": T} and d.run_count == 0
    assert c.clone() == c


def test_a_debounce_clone_has_its_own_closed_batches() -> None:
    d = DebounceData(kind="debounce", job="j", instance_id="i", created_at=T)
    d.closed.append(Batch(batch_no=1, event_count=1, state=None, started_at=T, reason="manual"))
    c = d.clone()
    assert type(c) is DebounceData
    assert c == d
    c.closed.append(Batch(batch_no=1, event_count=1, state=None, started_at=T, reason="manual"))
    c.idempotency["k"] = T
    assert len(d.closed) == 1 and d.idempotency == {}


def test_an_instance_clone_is_equal_and_keeps_its_attributes_without_a_dict() -> None:
    # Set one by one: its values stay inline, no dict object for the garbage collector.
    import gc

    from durable_jobs._domain.continuous import ContinuousInstance
    from durable_jobs._domain.debounce import DebounceInstance
    from durable_jobs._domain.task import TaskInstance
    from durable_jobs._runtime.cache import clone

    store = dj.open_store("memory://")
    try:
        for cls in (ContinuousInstance, DebounceInstance, TaskInstance):
            made = cls.create("j", "i", now=T, state={"n": 1})
            store.save(made)
            loaded = store.get(cls.kind, "j", "i")
            for inst in (made, loaded):
                assert inst is not None
                c = clone(inst)
                assert type(c) is cls
                assert not any(type(r) is dict for r in gc.get_referents(c))
                assert vars(c).keys() == vars(inst).keys()
                assert c == inst and c.d is not inst.d
                assert c.pending_events == [] and c._pending_events is not inst._pending_events
    finally:
        store.close()
