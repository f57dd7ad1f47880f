"""Purge: delete a terminated instance's whole history (for data-removal requests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final
from uuid import UUID

from durable_jobs._domain.ids import check_instance_id, instance_uuid
from durable_jobs._errors import (
    LiveInstanceError,
    StoreError,
)
from durable_jobs._store.base import Store
from durable_jobs._tools.args import check_store
from durable_jobs._tools.common import holding_instance, instance_json, kind_of

__all__ = ["PurgeResult", "purge_instance"]


@final
@dataclass(frozen=True, kw_only=True)
class PurgeResult:
    """What :func:`purge_instance` deleted (``purged`` is False for an unknown instance)."""

    purged: bool
    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    events: int = 0
    snapshots: int = 0

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: these fields, by these names."""
        return {
            "purged": self.purged,
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "events": self.events,
            "snapshots": self.snapshots,
        }


def purge_instance(store: Store, kind: str, job: str, instance_id: str) -> PurgeResult:
    """Delete a terminated instance's whole history: events, snapshots and index row.

    For data-removal requests; the id can be started again afterwards, as a
    brand-new instance. A live instance (not terminated) raises
    :class:`LiveInstanceError` and nothing is deleted; so does an SQLite store
    that a jobs runtime is serving (stop it first: it keeps instances in
    memory). On a shared store (Postgres) the instance's cross-process lock is
    held while deleting, so no run of it can commit meanwhile. An unknown
    instance gives ``purged=False``.
    """
    check_store(store, "purge_instance()")
    return purge_checked(store, kind, job, instance_id)


def purge_checked(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    wait: float = 0.0,
    check: Callable[[int, int | None, str | None], None] | None = None,
) -> PurgeResult:
    """:func:`purge_instance`, waiting up to ``wait`` seconds for the instance's lock
    (Postgres), and calling ``check(version, generation, born)`` with the instance's
    version, generation and when that generation began (ISO 8601; both None if its log
    is unreadable) while it is held: it raises to refuse, and nothing is deleted (the
    dashboard's check that the instance is still the one its confirmation page
    showed)."""
    uuid = instance_uuid(kind_of(kind), job, check_instance_id(instance_id))
    label = f"{kind} job {job!r} instance {instance_id!r}"
    result = PurgeResult(
        purged=False, kind=kind, job=job, instance_id=instance_id, instance_uuid=uuid
    )
    refused = LiveInstanceError(
        f"Cannot purge {label} while a jobs runtime serves {store.url} (it keeps "
        "instances in memory); stop it, then purge."
    )
    with holding_instance(store, uuid, label, refused=refused, wait=wait):
        row = store.index_row(uuid)
        if row is None:
            return result
        live = row.status != "terminated"
        if not live:
            try:
                agg = store.get_by_uuid(uuid, label=label)
            except StoreError:
                agg = None  # a corrupt log: the index row decides
            live = agg is not None and agg.live
            if check is not None:
                check(
                    row.version,
                    agg.d.generation if agg is not None else None,
                    agg.d.created_at.isoformat() if agg is not None else None,
                )
        if live:
            msg = (
                f"Refusing to purge {label}: it is live (status {row.status!r}). "
                "Terminate it first, then purge; nothing was deleted."
            )
            raise LiveInstanceError(msg)
        events, snapshots = store.delete_instance(uuid, version=row.version)
    return PurgeResult(
        purged=True,
        kind=kind,
        job=job,
        instance_id=instance_id,
        instance_uuid=uuid,
        events=events,
        snapshots=snapshots,
    )
