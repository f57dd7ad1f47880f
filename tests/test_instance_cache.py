"""The hot cache of committed instances: least recently used ones go first, and an
older version never replaces a newer one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from uuid import UUID

from durable_jobs._domain.instance import JobInstance
from durable_jobs._runtime.cache import InstanceCache


@dataclass
class _Instance:
    # The attributes behind eventsourcing's id and version properties (what the
    # cache reads), and the properties.
    _id: UUID
    _version: int

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def version(self) -> int:
        return self._version


def inst(n: int, version: int = 1) -> JobInstance:
    return cast(JobInstance, _Instance(UUID(int=n), version))


def test_the_least_recently_used_instance_is_dropped_first() -> None:
    cache = InstanceCache(3)
    for n in (1, 2, 3):
        cache.remember(inst(n))
    cache.hit(UUID(int=1))  # used: now the most recent
    cache.remember(inst(2, 2))  # a new version: the most recent too
    cache.remember(inst(4))
    assert cache.peek(UUID(int=3)) is None  # the least recently used
    assert [cache.peek(UUID(int=n)) is not None for n in (1, 2, 4)] == [True] * 3
    cache.remember(inst(5))
    assert cache.peek(UUID(int=1)) is None
    assert len(cache) == 3 and cache.hits == 1


def test_an_older_version_does_not_replace_a_newer_one() -> None:
    cache = InstanceCache(2)
    newer = inst(1, 5)
    cache.remember(newer)
    cache.remember(inst(1, 4))
    assert cache.peek(UUID(int=1)) is newer
    same = inst(1, 5)
    cache.remember(same)  # the same version (as committed again): taken
    assert cache.peek(UUID(int=1)) is same
    cache.evict(UUID(int=1))
    assert cache.peek(UUID(int=1)) is None and len(cache) == 0
