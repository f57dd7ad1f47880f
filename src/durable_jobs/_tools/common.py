"""Small helpers the maintenance operations share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from durable_jobs._domain.ids import KINDS, Kind
from durable_jobs._errors import ConcurrencyError, ConfigurationError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import CrossProcessLocks


def kind_of(kind: str) -> Kind:
    """``kind`` if it names a job kind, else :class:`ConfigurationError`."""
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: use one of {', '.join(KINDS)}."
        raise ConfigurationError(msg)
    return kind


def isoformat(at: datetime | None) -> str | None:
    """``at`` as ISO 8601 in UTC with a ``Z``, how every JSON document of the tools
    shows times (None stays None)."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def instance_json(kind: str, job: str, instance_id: str, uuid: UUID) -> dict[str, Any]:
    """An instance's identity as the JSON shapes start it: kind, job, id and UUID."""
    return {"kind": kind, "job": job, "instance_id": instance_id, "instance_uuid": str(uuid)}


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())


def check_key_for_writes(store: Store, action: str) -> None:
    """Refuse to ``action`` (a write) with :class:`StoreError` if the store's newest row
    cannot be read with the key given (or without one): the runtime's start-up guard.

    No row in clear then lands in an encrypted store from a tool run without the key;
    such a row would also turn the guard off for the next process started without one.
    """
    try:
        store.check_key()
    except StoreError as exc:
        msg = f"Cannot {action}: {exc} Nothing was written."
        raise StoreError(msg) from exc


#: Longest pause between two tries of a busy instance's lock (seconds).
_RETRY_LOCK_MAX = 0.05


@contextmanager
def holding_instance(
    store: Store, uuid: UUID, label: str, *, refused: Exception, wait: float = 0.0
) -> Iterator[None]:
    """Hold instance ``uuid`` of ``store`` for a change made outside any runtime.

    Refused (``refused`` is raised) while a jobs runtime serves an SQLite store: it keeps
    instances in memory and would not see the change. On a shared store (Postgres) the
    instance's cross-process lock is held, so no run of it commits meanwhile; a lock held
    elsewhere (a run in flight) is tried again for up to ``wait`` seconds, then raises
    :class:`ConcurrencyError`.
    """
    try:
        store.claim_runtime()
    except ConfigurationError as exc:
        if isinstance(exc.__cause__, OSError):  # the file itself, not a runtime serving it
            raise
        raise refused from exc
    try:
        locks = store if isinstance(store, CrossProcessLocks) else None
        if locks is not None and not _take(locks, uuid, wait):
            if wait:
                msg = (
                    f"{label} was still busy in another process (a run or call holds it) "
                    f"after {wait:g} s; try again, or wait longer."
                )
            else:
                msg = (
                    f"{label} is busy in another process (a run or call holds it); try "
                    "again, or wait for the run to end (wait=, the command line's --wait)."
                )
            raise ConcurrencyError(msg)
        try:
            yield
        finally:
            if locks is not None:
                locks.unlock(uuid)
    finally:
        store.release_runtime()


def _take(locks: CrossProcessLocks, uuid: UUID, wait: float) -> bool:
    """Take ``uuid``'s lock, trying again for up to ``wait`` seconds while it is held
    (by a run in flight: the lock is free between two runs)."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while not locks.try_lock(uuid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))  # a poll of another process's lock, not a timing
        pause = min(pause * 2, _RETRY_LOCK_MAX)
    return True
