"""The hot cache of committed instances (least recently used ones are dropped).

Only committed instances go in. Commands decide on a :func:`clone` and put
it in only once its events are written, so readers that use the cache
without the instance lock never see uncommitted state.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar
from uuid import UUID

from durable_jobs._domain.instance import JobInstance

__all__ = ["InstanceCache", "clone"]

_A = TypeVar("_A", bound=JobInstance)


def clone(agg: _A) -> _A:
    """A copy of a committed aggregate to decide on (the cached one is never mutated)."""
    new = object.__new__(type(agg))
    new.__dict__.update(agg.__dict__)
    new._pending_events = []
    new.d = agg.d.clone()
    return new


class InstanceCache:
    """Committed instances by uuid, at most ``size`` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[UUID, JobInstance] = OrderedDict()
        #: Loads served from the cache, and loads that read the store.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, uuid: UUID) -> JobInstance | None:
        """The cached instance, without counting a hit or refreshing it."""
        return self._items.get(uuid)

    def hit(self, uuid: UUID) -> None:
        """A load used the cached instance: it is the most recently used."""
        self.hits += 1
        self._items.move_to_end(uuid)

    def remember(self, agg: JobInstance) -> None:
        """Cache a committed instance (unless a newer version is cached already)."""
        items, uuid = self._items, agg.id
        cached = items.get(uuid)
        if cached is not None:
            if cached.version > agg.version:
                return
            items.move_to_end(uuid)  # then replaced in place: most recently used
        items[uuid] = agg
        while len(items) > self.size:
            items.popitem(last=False)

    def evict(self, uuid: UUID) -> None:
        self._items.pop(uuid, None)
