"""``new_data``: a new instance's data built without validating our own plain values
again, the same as pydantic builds it; anything else still validated by pydantic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from durable_jobs._domain.batches import DebounceData
from durable_jobs._domain.data import InstanceData, new_data

NOW = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def _both(cls: type[InstanceData], **values: Any) -> tuple[InstanceData, InstanceData]:
    fields: dict[str, Any] = {
        "kind": "task",
        "job": "j",
        "instance_id": "i",
        "created_at": NOW,
        "state": None,
        "state_version": 1,
        **values,
    }
    return new_data(cls, **fields), cls(**fields)


@pytest.mark.parametrize("cls", [InstanceData, DebounceData])
@pytest.mark.parametrize("state", [None, 0, 7, -1.5, True, "text", {"a": [1, {"b": None}]}, [1]])
@pytest.mark.parametrize("kind", ["continuous", "debounce", "task"])
def test_same_as_pydantic(cls: type[InstanceData], state: Any, kind: str) -> None:
    fast, slow = _both(cls, kind=kind, state=state, state_version=3)
    assert fast == slow
    assert list(fast.__dict__) == list(slow.__dict__)  # the fields in the same order
    assert fast.model_fields_set == slow.model_fields_set
    assert repr(fast) == repr(slow)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__


def test_containers_are_its_own() -> None:
    """Fields with a default factory get a new container each (never shared)."""
    one, _ = _both(DebounceData)
    two, _ = _both(DebounceData)
    assert isinstance(one, DebounceData) and isinstance(two, DebounceData)
    assert one.idempotency == {} and one.idempotency is not two.idempotency
    assert one.closed == [] and one.closed is not two.closed


def test_other_values_are_validated() -> None:
    """What is not of the exact type a field takes goes through pydantic as before."""
    paris = timezone(timedelta(hours=1))
    fast, slow = _both(InstanceData, created_at=NOW.astimezone(paris))
    assert fast == slow and fast.created_at.tzinfo is UTC
    state = {"a": [1, 2]}
    fast, _ = _both(InstanceData, state=state)
    assert fast.state == state
    with pytest.raises(ValidationError):
        _both(InstanceData, kind="nope")
    with pytest.raises(ValidationError):
        _both(InstanceData, created_at=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValidationError):
        new_data(
            InstanceData,
            kind="task",
            job="j",
            instance_id="i",
            created_at=NOW,
            state={1, 2},  # not JSON
            state_version=1,
        )
