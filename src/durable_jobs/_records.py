"""Recorded events as the history API and observers see them (docs/events.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, final
from uuid import UUID

from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import JobInstance

__all__ = ["RecordedEvent", "iter_records", "to_records"]

_BASE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
_RUN_RECORDS = frozenset({"run_succeeded", "run_failed", "retry_exhausted"})


@final
@dataclass(frozen=True, kw_only=True)
class RecordedEvent:
    """One record of an instance's log.

    ``name`` is the record's name (``started``, ``run_succeeded``, …); ``data``
    holds its own fields (``docs/events.md``). Run records also carry
    ``run_count``, ``attempt`` and ``state_before``: the state (as JSON) that
    the run started from. ``(instance_uuid, version)`` is unique.
    """

    name: str
    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    version: int
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    run_count: int | None = None
    attempt: int | None = None
    state_before: Any = None

    @property
    def is_run(self) -> bool:
        """Whether this records a handler run (or its retries running out)."""
        return self.name in _RUN_RECORDS


def _state_of(agg: JobInstance | None) -> Any:
    if agg is None:
        return None
    if isinstance(agg, DebounceInstance):
        return agg.current_state
    return agg.d.state


def to_records(
    events: Iterable[JobInstance.Event],
    *,
    kind: str,
    job: str,
    instance_id: str,
    before: JobInstance | None = None,
    rebuild: Callable[[int], JobInstance | None] | None = None,
    states: bool = True,
) -> list[RecordedEvent]:
    """Records of ``events`` (in order), replayed on ``before`` to know each run's state.

    With ``rebuild`` instead of ``before``, nothing is replayed until the first run
    record: ``rebuild(version)`` then gives the instance right after record ``version``
    (the one before that run), and the rest is replayed on it. Records with no run
    need no earlier state, so the instance is then never rebuilt. With ``states``
    False, nothing is replayed and run records' ``state_before`` is None.
    """
    return list(
        iter_records(
            events,
            kind=kind,
            job=job,
            instance_id=instance_id,
            before=before,
            rebuild=rebuild,
            states=states,
        )
    )


def iter_records(
    events: Iterable[JobInstance.Event],
    *,
    kind: str,
    job: str,
    instance_id: str,
    before: JobInstance | None = None,
    rebuild: Callable[[int], JobInstance | None] | None = None,
    states: bool = True,
) -> Iterator[RecordedEvent]:
    """:func:`to_records`, one record at a time: ``events`` are read as the records are
    taken (a paged read holds one page), the instance carried along."""
    agg = before
    replaying = states and rebuild is None
    for event in events:
        data = {
            k: v
            for k, v in vars(event).items()
            # An alarm's trace is OpenTelemetry's business (and None unless traced).
            if k not in _BASE_FIELDS and k != "trace"
        }
        name = event.NAME
        run = name in _RUN_RECORDS
        if run and states and not replaying:
            assert rebuild is not None
            agg = rebuild(event.originator_version - 1)
            replaying = True
        yield (
            RecordedEvent(
                name=name,
                kind=kind,
                job=job,
                instance_id=instance_id,
                instance_uuid=event.originator_id,
                version=event.originator_version,
                at=event.timestamp,
                data=data,
                run_count=data.get("run_count") if run else None,
                attempt=data.get("attempt") if run else None,
                state_before=_state_of(agg) if run and states else None,
            )
        )
        if replaying:
            agg = event.mutate(agg)
