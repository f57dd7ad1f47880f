"""The copy a command decides on: equal to the committed instance, never sharing a
container an event updates in place."""

from __future__ import annotations

from datetime import UTC, datetime

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
