"""Workers serving one shared store: which one is an instance's preferred worker.

Workers that run alarms list each other through their lock sessions (see
:class:`~durable_jobs._runtime.locks.InstanceLocks`); each instance has one
preferred worker among them, chosen by rendezvous hashing, and the others let
its alarms wait a little (``PREFERRED_GRACE``), so that workers do not take
turns on one instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from durable_jobs._telemetry import log_fields

__all__ = [
    "MAX_DEFERRED",
    "MEMBERS_REFRESH",
    "PREFERRED_GRACE",
    "PREFERRED_WAIT_MAX",
    "PREFER_WORKERS",
    "LockRounds",
    "instance_fields",
    "preferred",
]

#: Whether a worker puts off the alarms of instances that another live worker prefers.
#: It was off for a round: a worker could take over an instance whose holder's lock
#: session had just been cut while that holder was still running it. Two fixes closed
#: that: the holder hears of a cut session at once (its keeper watches every connection
#: of the session, not only those open when it last slept), and a worker that runs an
#: alarm it had put off for another worker, whose instance is still at the version seen
#: then, waits the takeover grace first (as after finding the lock held).
PREFER_WORKERS = True
#: How late an alarm may be before a worker runs it although another live worker is
#: the instance's preferred one (see :meth:`InstanceLocks.prefers`).
PREFERRED_GRACE = timedelta(seconds=2)
#: The latest a worker lets an alarm wait for another preferred worker.
PREFERRED_WAIT_MAX = timedelta(seconds=20)
#: Alarms put off for their preferred worker, remembered at most.
MAX_DEFERRED = 100_000
#: How often the list of the workers serving the store is read again (with a lock call).
MEMBERS_REFRESH = timedelta(seconds=1)


@runtime_checkable
class LockRounds(Protocol):
    """A store whose lock calls (releases, takes, index rows, workers) are made in one
    call, one thread hop (``PostgresStore.lock_round``)."""

    def lock_round(
        self,
        release: Sequence[tuple[UUID, str]],
        take: Sequence[tuple[UUID, str]],
        *,
        members: bool = False,
        join: bool = False,
    ) -> tuple[list[bool], dict[UUID, tuple[Any, ...]], list[int] | None, int]: ...


def preferred(uuid: UUID, members: Sequence[int]) -> int:
    """The preferred worker of ``uuid`` among ``members`` (rendezvous hashing: about
    an equal share each, and when a member joins or leaves only its share moves)."""
    key = uuid.int & _MASK64
    return max(members, key=lambda m: _mix(key ^ (m * _GOLDEN & _MASK64)))


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: int) -> int:
    """splitmix64's finalizer: a 64-bit number whose bits all depend on all of ``x``'s
    (the score of a worker for an instance, in :func:`preferred`)."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def instance_fields(uuid: UUID, names: tuple[str, str, str] | None) -> dict[str, Any]:
    """The structured ``extra`` fields of a log record about instance ``uuid`` (none
    when its names are unknown: the message names its uuid)."""
    return {} if names is None else log_fields(*names)
