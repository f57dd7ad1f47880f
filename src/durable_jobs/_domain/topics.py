"""The stored names of aggregates and their events, independent of the module layout.

Rows name their aggregate ``durable_jobs:{Aggregate}`` and their event
``durable_jobs:{Aggregate}.{Event}``, so moving code never strands stored logs;
only the classes registered here (and their events) can be rebuilt from
stored rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from durable_jobs._domain.instance import JobInstance

__all__ = [
    "EVENT_NAMES",
    "aggregate_classes",
    "event_classes",
    "register_aggregate",
    "stored_topic",
]

_I = TypeVar("_I", bound="JobInstance")

_AGGREGATES_BY_TOPIC: dict[str, type[JobInstance]] = {}


def stored_topic(cls: type[JobInstance]) -> str:
    """The topic that stored rows use for aggregate class ``cls``.

    Short and independent of the module layout (``durable_jobs:TaskInstance``),
    so moving code never strands stored logs.
    """
    return f"durable_jobs:{cls.__name__}"


def register_aggregate(cls: type[_I]) -> type[_I]:
    """Class decorator: allow ``cls`` to be rebuilt from stored events and snapshots."""
    _AGGREGATES_BY_TOPIC[stored_topic(cls)] = cls
    return cls


def aggregate_classes() -> dict[str, type[JobInstance]]:
    """The aggregate classes that stored data may name, by stored topic."""
    return dict(_AGGREGATES_BY_TOPIC)


#: The events every kind of instance has.
EVENT_NAMES: tuple[str, ...] = (
    "Started",
    "Restarted",
    "Terminated",
    "StateChanged",
    "StatePatched",
    "AlarmSet",
    "AlarmCleared",
    "RunSucceeded",
    "RunFailed",
    "RetryExhausted",
    "Resumed",
    "EventAdded",
)


def event_classes() -> dict[str, type[JobInstance.Event]]:
    """The stored topic of every event class of every registered aggregate.

    Topics are ``durable_jobs:{Aggregate}.{Event}``: short, and independent of
    the module layout, so moving code never strands stored logs. An aggregate
    has the events of :data:`EVENT_NAMES` and those of its own ``OWN_EVENTS``
    (a debounce instance's batches): ``ContinuousInstance.BatchClosed`` is no
    topic.
    """
    return {
        f"durable_jobs:{agg.__name__}.{name}": getattr(agg, name)
        for agg in _AGGREGATES_BY_TOPIC.values()
        for name in (*EVENT_NAMES, *agg.OWN_EVENTS)
    }
