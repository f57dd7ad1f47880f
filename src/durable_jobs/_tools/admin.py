"""The quiet admin path: terminate or trigger an instance by committing domain events
(no handler runs, no overdue alarm fires); a runtime serving the store then acts on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, final
from uuid import UUID

from durable_jobs._domain.ids import check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.values import check_alarm_time, check_reason
from durable_jobs._errors import ConfigurationError, ValidationError
from durable_jobs._store.base import Store
from durable_jobs._tools.args import check_seconds, check_store
from durable_jobs._tools.common import (
    check_key_for_writes,
    holding_instance,
    instance_json,
    isoformat,
    kind_of,
)

__all__ = ["AdminResult", "terminate_instance", "trigger_instance"]


@final
@dataclass(frozen=True, kw_only=True)
class AdminResult:
    """What :func:`terminate_instance` or :func:`trigger_instance` committed.

    ``done`` is False (nothing written) for an unknown or terminated instance,
    or, for a trigger, one with nothing to run (an empty debounce instance).
    ``status``, ``due_at`` and ``version`` describe the instance afterwards.
    """

    action: Literal["terminate", "trigger"]
    done: bool
    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    found: bool
    status: str | None = None
    due_at: datetime | None = None
    version: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: these fields, by these names."""
        return {
            "action": self.action,
            "done": self.done,
            "found": self.found,
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "status": self.status,
            "due_at": isoformat(self.due_at),
            "version": self.version,
        }


def _admin(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    action: Literal["terminate", "trigger"],
    change: Callable[[JobInstance], bool],
    wait: float = 0.0,
) -> AdminResult:
    """Load one instance, apply ``change`` (the domain decides), commit what it recorded.

    Refused while a jobs runtime serves an SQLite store (it keeps instances in
    memory and would not see the commit); on a shared store (Postgres) the
    instance's cross-process lock is held, so no run of it commits meanwhile.
    """
    uuid = instance_uuid(kind_of(kind), job, check_instance_id(instance_id))
    label = f"{kind} job {job!r} instance {instance_id!r}"
    result = AdminResult(
        action=action,
        done=False,
        found=False,
        kind=kind,
        job=job,
        instance_id=instance_id,
        instance_uuid=uuid,
    )
    refused = ConfigurationError(
        f"Cannot {action} {label} while a jobs runtime serves {store.url} (it keeps "
        f"instances in memory); stop it first, or call {action} through its client."
    )
    check_key_for_writes(store, f"{action} {label} in {store.url}")
    with holding_instance(store, uuid, label, refused=refused, wait=wait):
        agg = store.get_by_uuid(uuid, label=label)
        if agg is None:
            return result
        done = change(agg)
        if done:
            store.save(agg)
    return replace(
        result,
        done=done,
        found=True,
        status=agg.status,
        due_at=agg.d.alarm_at,
        version=agg.version,
    )


def terminate_instance(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
    wait: timedelta | float = 0.0,
) -> AdminResult:
    """Terminate one instance without running anything: what ``terminate(id)`` does.

    Its state, alarm, pending retry and buffered events are removed (the
    log and counters stay). No handler runs and no other alarm fires, so it
    needs no registry. ``now`` (default: the wall clock, UTC) stamps the record.
    On Postgres, an instance a worker is running is waited for up to ``wait``
    (a timedelta or seconds, at most an hour), then
    :class:`~durable_jobs.ConcurrencyError` ("busy").
    """
    check_store(store, "terminate_instance()")
    at = _when(now, "terminate_instance()")
    checked = check_reason(reason)  # recorded in the log: checked as the client does
    return _admin(
        store,
        kind,
        job,
        instance_id,
        action="terminate",
        change=lambda agg: agg.terminate(now=at, reason=checked),
        wait=check_seconds(wait, "terminate_instance() wait", positive=False, most=MAX_WAIT),
    )


def trigger_instance(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    now: datetime | None = None,
    wait: timedelta | float = 0.0,
) -> AdminResult:
    """Make one instance's next run due now, for a runtime serving the store to run.

    A paused instance (status ``failed``) is resumed, a waiting retry is
    brought forward, a debounce instance's open batch is closed (reason
    ``manual``); its alarm is set to ``now``. Nothing runs here: the run
    happens when a runtime serves the store (at once if one is running on
    Postgres, else when one starts). ``done`` is False for an unknown or
    terminated instance, or an empty debounce one. ``wait``: as for
    :func:`terminate_instance`.
    """
    check_store(store, "trigger_instance()")
    at = check_alarm_time(_when(now, "trigger_instance()"), "trigger_instance()")
    return _admin(
        store,
        kind,
        job,
        instance_id,
        action="trigger",
        change=lambda agg: agg.due_now(now=at),
        wait=check_seconds(wait, "trigger_instance() wait", positive=False, most=MAX_WAIT),
    )


#: Longest wait for a busy instance (seconds): an hour.
MAX_WAIT = 3600.0


def _when(now: object, call: str) -> datetime:
    """An admin call's ``now``: the wall clock (UTC) for None, else an aware datetime
    (ValidationError otherwise: it is recorded in the log)."""
    if now is None:
        return datetime.now(UTC)
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        msg = f"{call} now must be a timezone-aware datetime or None, got {now!r:.60}."
        raise ValidationError(msg)
    try:
        # In UTC, as every stored time (one that no UTC datetime can hold would be
        # written and then never read back).
        return now.astimezone(UTC)
    except OverflowError:
        msg = f"{call} now must fall within the years 1 to 9999 in UTC, not {now.isoformat()}."
        raise ValidationError(msg) from None
