"""Snapshots of saved instances: how they are taken and written.

A snapshot is a cache (an instance rebuilds from its events without it), so
one that cannot be taken or written is logged and left out, never raised. An
adapter whose recorder writes the rows of ``snapshots_from(kwargs)`` in the
insert transaction says so with ``Store.snapshots_in_commit``: the snapshots
then cost no transaction (and, on SQLite, no fsync) of their own. Otherwise
they are written after the commit, all of one save in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import EventStore, Mapper, StoredEvent

from durable_jobs._domain.instance import InstanceSnapshot, JobInstance
from durable_jobs._telemetry import log_fields

__all__ = ["snapshot_rows", "write_snapshots"]

log = logging.getLogger("durable_jobs.store")


def snapshot_rows(instances: Sequence[JobInstance], mapper: Mapper[Any]) -> list[StoredEvent]:
    """The snapshot rows of ``instances`` as they stand (encrypted like events when
    the store is); one that cannot be taken is logged and left out."""
    rows = []
    for inst in instances:
        try:
            rows.append(mapper.to_stored_event(InstanceSnapshot.take(inst)))
        except Exception:
            _warn(inst)
    return rows


def write_snapshots(snapshots: EventStore[Any], instances: Sequence[JobInstance]) -> None:
    """Snapshot ``instances`` (committed already) in one transaction of their own."""
    taken = []
    for inst in instances:
        try:
            taken.append((inst, InstanceSnapshot.take(inst)))
        except Exception:
            _warn(inst)
    if not taken:
        return
    try:
        snapshots.put([snapshot for _, snapshot in taken])
    except Exception:
        for inst, _ in taken:
            _warn(inst)


def _warn(inst: JobInstance) -> None:
    d = inst.d
    log.warning(
        "Could not snapshot %s job %r instance %r; it will replay its events",
        d.kind,
        d.job,
        d.instance_id,
        exc_info=True,
        extra=log_fields(d.kind, d.job, d.instance_id),
    )
