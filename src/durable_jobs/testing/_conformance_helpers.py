"""What the store conformance suite's checks share: sample instances, fault injection, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from eventsourcing.persistence import StoredEvent

from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents, JobInstance
from durable_jobs._domain.schedules import every
from durable_jobs._errors import StoreError
from durable_jobs._store.base import Store

__all__ = [
    "HOURLY",
    "T0",
    "WINDOW",
    "ConformanceChecks",
    "InjectedFault",
]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOURLY = every(timedelta(hours=1))
WINDOW = timedelta(hours=24)


class InjectedFault(Exception):
    """Raised by the conformance suite inside a store's write transaction."""


def _raise_fault() -> None:
    raise InjectedFault("fault injected between the event write and the index write")


def _save_failing(store: Store, *instances: JobInstance) -> None:
    """Save with a fault injected inside the write transaction; the save must fail."""
    store.index.fault_hook = _raise_fault
    try:
        with pytest.raises((InjectedFault, StoreError)):
            store.save(*instances)
    finally:
        store.index.fault_hook = None


def _continuous(
    job: str,
    instance_id: str,
    *,
    at: datetime = T0,
    due: datetime | None = None,
    state: Any = None,
) -> ContinuousInstance:
    inst, _ = ContinuousInstance.start(
        None,
        job,
        instance_id,
        now=at,
        state=state if state is not None else {"n": 0},
        first_run_at=due or at,
    )
    return inst


def _run(inst: ContinuousInstance, n: int, *, start: datetime = T0) -> None:
    """``n`` successful runs, each incrementing ``state["n"]``."""
    for i in range(n):
        ticket = inst.next_ticket(fresh=False)
        now = start + timedelta(minutes=i + 1)
        inst.complete_run(
            ticket,
            Intents(state={"n": _count(inst) + 1}),
            now=now,
            duration=0.01,
            schedule=HOURLY,
        )


def _count(inst: JobInstance) -> int:
    state = inst.d.state
    assert isinstance(state, dict)
    n = state["n"]
    assert isinstance(n, int)
    return n


def _replay(events: list[JobInstance.Event]) -> JobInstance:
    agg: Any = None
    for event in events:
        agg = event.mutate(agg)
    assert isinstance(agg, JobInstance)
    return agg


def _replay_rows(store: Store, rows: list[StoredEvent]) -> JobInstance:
    """The instance ``rows`` rebuild to."""
    return _replay([store.decode(r) for r in rows])


class ConformanceChecks:
    """Base of the suite's groups of checks; :class:`StoreConformance` sets these."""

    #: Events between snapshots used by the suite.
    snapshot_interval: ClassVar[int]

    if TYPE_CHECKING:

        def open(self, url: str, **options: Any) -> Store:
            """Open ``url`` the way the suite does."""
