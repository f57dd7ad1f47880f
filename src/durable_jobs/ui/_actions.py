"""What the dashboard's action buttons do: commit domain events that workers act on.

No handler runs here. "Run now" sets the instance's alarm to now (a debounce
instance also closes its open batch for a manual flush), so the next worker
serving the store runs it; "resume" does the same for a paused continuous
instance (the run that succeeds clears the pause); "terminate" records the
instance's end; "purge" deletes a terminated instance's history
(:func:`durable_jobs.maintenance.purge_instance`).

Every action holds the instance's lock while it reads and commits, and is
refused on an SQLite store that a jobs runtime serves (that process keeps
instances in memory and would not see the change), as ``purge`` is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, final
from uuid import UUID

from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import KINDS, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs.maintenance import purge_instance

__all__ = ["ACTIONS", "Action", "ActionRefused", "ActionResult", "available", "perform"]

Action = Literal["run_now", "resume", "terminate", "purge"]

#: Every action, with the words its button and confirmation page use.
ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "run_now": ("Run now", "set its alarm to now, so the next worker serving the store runs it"),
    "resume": ("Resume", "set its alarm to now; the run that succeeds ends the pause"),
    "terminate": ("Terminate", "end it: its alarm is cleared and no handler runs for it again"),
    "purge": ("Purge", "delete its whole history (events, snapshots, index row); irreversible"),
}

#: The reason recorded on a ``terminated`` event committed from the dashboard.
TERMINATE_REASON: Final = "terminated from the dashboard"


class ActionRefused(DurableJobsError):
    """The action does not apply to the instance as it is now; nothing was written."""


@final
@dataclass(frozen=True)
class ActionResult:
    """What an action committed, in words."""

    message: str


# One action at a time per process: an SQLite claim is per store object.
_LOCK = threading.Lock()


def available(kind: str, status: str, *, buffered: int | None, closed: bool) -> list[Action]:
    """The actions that apply to an instance of ``kind`` in ``status``.

    ``buffered`` is the debounce instance's open batch size, ``closed`` whether
    it has batches waiting.
    """
    if status == "terminated":
        return ["purge"]
    out: list[Action] = []
    if kind == "debounce":
        if buffered and not closed:
            out.append("run_now")
    elif status == "failed":
        out.append("resume")
    else:
        out.append("run_now")
    out.append("terminate")
    return out


def perform(
    store: Store, action: str, kind: str, job: str, instance_id: str, *, now: datetime
) -> ActionResult:
    """Do ``action`` on the instance (a blocking store call: run it in a thread)."""
    if action not in ACTIONS:
        msg = f"Unknown action {action!r}: expected one of {', '.join(ACTIONS)}."
        raise ValidationError(msg)
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ValidationError(msg)
    check_instance_id(instance_id)
    label = f"{kind} job {job!r} instance {instance_id!r}"
    with _LOCK:
        if action == "purge":
            result = purge_instance(store, kind, job, instance_id)
            if not result.purged:
                raise ActionRefused(f"There is no {label} to purge.")
            return ActionResult(
                f"Purged {label}: {result.events} event(s) and {result.snapshots} "
                "snapshot(s) deleted."
            )
        step = {"run_now": _run_now, "resume": _resume, "terminate": _terminate}[action]
        return _commit(store, label, instance_uuid(kind, job, instance_id), step, now)


def _commit(
    store: Store,
    label: str,
    uuid: UUID,
    step: Callable[[JobInstance, str, datetime], str],
    now: datetime,
) -> ActionResult:
    try:
        store.claim_runtime()
    except ConfigurationError as exc:
        msg = (
            f"Cannot change {label} while a jobs runtime serves {store.url} (it keeps "
            "instances in memory and would not see the change); stop it first, or use "
            "a Postgres store."
        )
        raise ActionRefused(msg) from exc
    try:
        if not store.try_lock(uuid):
            msg = f"{label} is busy in another process (a run or call holds it); try again."
            raise ConcurrencyError(msg)
        try:
            agg = store.get_by_uuid(uuid, label=label)
            if agg is None:
                raise ActionRefused(f"There is no {label}.")
            if not agg.live:
                raise ActionRefused(f"{label} is terminated; nothing to do.")
            message = step(agg, label, now)
            store.save(agg)
        finally:
            store.unlock(uuid)
    finally:
        store.release_runtime()
    return ActionResult(message)


def _run_now(agg: JobInstance, label: str, now: datetime) -> str:
    if isinstance(agg, DebounceInstance):
        if agg.d.closed:
            msg = (
                f"{label} has a batch waiting for its flush (or its retry); flush it from "
                "the app (the dashboard runs no handler)."
            )
            raise ActionRefused(msg)
        if not agg.d.event_count:
            raise ActionRefused(f"{label} has no buffered events to flush.")
        agg.close_batch("manual", now=now)
        # With a closed batch, the alarm is the batch's due time (now); flush_after is unused.
        agg.sync_alarm(now=now, flush_after=timedelta(0))
        return f"Closed the open batch of {label} for a manual flush, due now."
    if agg.d.alarm_at is not None and agg.d.alarm_at <= now:
        raise ActionRefused(f"{label} is already due (its alarm rang); a worker runs it.")
    agg.set_alarm(now, now=now)
    return f"Set the alarm of {label} to now: the next worker serving the store runs it."


def _resume(agg: JobInstance, label: str, now: datetime) -> str:
    if agg.status != "failed":
        raise ActionRefused(f"{label} is not paused (status {agg.status!r}).")
    if isinstance(agg, DebounceInstance):
        msg = (
            f"{label} has a paused batch: resume it with a manual flush from the app "
            "(the dashboard runs no handler)."
        )
        raise ActionRefused(msg)
    agg.set_alarm(now, now=now)
    return f"Set the alarm of {label} to now: its next successful run ends the pause."


def _terminate(agg: JobInstance, label: str, now: datetime) -> str:
    agg.terminate(now=now, reason=TERMINATE_REASON)
    return f"Terminated {label}."
