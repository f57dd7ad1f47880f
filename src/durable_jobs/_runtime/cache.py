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
    """A copy of a committed aggregate to decide on (the cached one is never mutated).

    Its attributes (eventsourcing's and ``d``) are set one by one, not through a
    ``__dict__``: the copy keeps them inline, without a dict object of its own for the
    garbage collector to traverse while it is cached (one a run).
    """
    new = object.__new__(type(agg))
    new._id = agg._id
    new._version = agg._version
    new._created_on = agg._created_on
    new._modified_on = agg._modified_on
    new._pending_events = []
    new.d = agg.d.clone()
    return new


class InstanceCache:
    """Committed instances by uuid, at most ``size`` of them.

    Kept by ``uuid.int``: a uuid's own ``__hash__`` is Python code, run on every
    lookup (several a run), an int's is not.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, JobInstance] = OrderedDict()
        #: Loads served from the cache, and loads that read the store.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, uuid: UUID) -> JobInstance | None:
        """The cached instance, without counting a hit or refreshing it."""
        return self._items.get(uuid.int)

    def hit(self, uuid: UUID) -> None:
        """A load used the cached instance: it is the most recently used."""
        self.hits += 1
        self._items.move_to_end(uuid.int)

    def use(self, uuid: UUID) -> JobInstance | None:
        """The cached instance, counted as a hit and made the most recently used (a
        :meth:`peek` and a :meth:`hit`); None (nothing counted) if not cached."""
        items, key = self._items, uuid.int
        agg = items.get(key)
        if agg is not None:
            self.hits += 1
            items.move_to_end(key)
        return agg

    def remember(self, agg: JobInstance) -> None:
        """Cache a committed instance (unless a newer version is cached already)."""
        # _id and _version: what eventsourcing's id and version properties return.
        items, key = self._items, agg._id.int
        cached = items.get(key)
        if cached is not None:
            if cached._version > agg._version:
                return
            items.move_to_end(key)  # then replaced in place: most recently used
        items[key] = agg
        while len(items) > self.size:
            items.popitem(last=False)

    def evict(self, uuid: UUID) -> None:
        self._items.pop(uuid.int, None)
