"""What a store adapter may offer beyond :class:`~durable_jobs.adapters.Store`.

Each capability is a small :class:`typing.Protocol`. The runtime and the tools
look for it on the store object (``isinstance``, once per store): an adapter
offers a capability by defining its methods, and does nothing for one it
lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable
from uuid import UUID

__all__ = ["AlarmListener", "CrossProcessLocks", "DeletesInstances", "ListensForAlarms"]


@runtime_checkable
class CrossProcessLocks(Protocol):
    """Instance locks held across processes: what a store written by several processes
    at once (``shared = True``) must offer.

    A lock is named by an instance's uuid and a scope (``"instance"`` or
    ``"flush"``). It is held by this process until released, or until the
    process dies; a lock that can be lost while the process lives on (a
    dropped connection) belongs to a *session* (:meth:`lock_session`), whose
    loss is reported to ``on_lost`` (see :meth:`watch_locks`) so the runtime
    stops the work done under it.
    """

    def try_lock(self, uuid: UUID, scope: str = "instance") -> bool:
        """Take the ``scope`` lock of ``uuid`` for this process, without waiting."""
        ...

    def unlock(self, uuid: UUID, scope: str = "instance") -> None:
        """Release a lock taken with :meth:`try_lock`."""
        ...

    def try_lock_many(self, keys: Sequence[tuple[UUID, str]]) -> list[bool]:
        """:meth:`try_lock` for each ``(uuid, scope)``, ideally in one round trip."""
        ...

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        """:meth:`unlock` for each ``(uuid, scope)``."""
        ...

    def index_versions(self, uuids: Sequence[UUID]) -> dict[UUID, int]:
        """The index version of each of ``uuids`` that has an index row, read right
        after taking their locks (so no other process changes them meanwhile)."""
        ...

    def watch_locks(self, lease: float, on_lost: Callable[[int], None]) -> None:
        """Keep this process's locks alive, giving them up after ``lease`` seconds
        without a sign of life; call ``on_lost(session)`` (from any thread) when a
        session holding locks ended while the process lives on."""
        ...

    def unwatch_locks(self) -> None:
        """Stop what :meth:`watch_locks` started."""
        ...

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        """The session holding ``uuid``'s ``scope`` lock for this process (None: locks
        that cannot be lost)."""
        ...

    def session_alive(self, session: int) -> bool:
        """Whether the lock ``session`` still holds its locks."""
        ...


@runtime_checkable
class AlarmListener(Protocol):
    """An open channel on which other processes announce the alarms they commit."""

    def fileno(self) -> int:
        """A file descriptor that becomes readable when something arrived."""
        ...

    def drain(self) -> bool:
        """Read what arrived, without blocking; True if another process set an alarm.

        Raise :class:`~durable_jobs.StoreError` if the channel was lost (the
        runtime opens a new one, and polls meanwhile).
        """
        ...

    def close(self) -> None:
        """Close the channel."""
        ...


@runtime_checkable
class ListensForAlarms(Protocol):
    """A store that can tell this process when another one commits an alarm.

    Without it, a shared store's other writers are noticed by polling only
    (``poll_interval`` of ``open_jobs``).
    """

    def open_alarm_listener(self) -> AlarmListener:
        """Open a listener (:class:`~durable_jobs.StoreError` if that failed)."""
        ...


@runtime_checkable
class DeletesInstances(Protocol):
    """A store that can purge a terminated instance (``durable_jobs.maintenance.purge``)."""

    def delete_instance_rows(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        """Delete one instance's events, snapshots and index row in one transaction,
        only if its index row says ``terminated`` at ``version``.

        Returns (events, snapshots) deleted, or None (and nothing deleted) if the
        index row did not match. Driver errors may propagate: the caller maps them.
        """
        ...
