"""What the dashboard's action buttons do: commit domain events that workers act on.

No handler runs here. "Run now" and "resume" make the instance's next run due
now (:func:`durable_jobs.maintenance.trigger_instance`: a paused run is
resumed, a waiting retry brought forward, a debounce instance's open batch
closed for a manual flush), so a worker serving the store runs it;
"terminate" records the instance's end
(:func:`~durable_jobs.maintenance.terminate_instance`); "purge" deletes a
terminated instance's history (:func:`~durable_jobs.maintenance.purge_instance`).

Each holds the instance's lock while it reads and commits, and is refused on
an SQLite store that a jobs runtime serves (that process keeps instances in
memory and would not see the change).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, final

from durable_jobs._domain.ids import KINDS, check_instance_id
from durable_jobs._errors import ActionRefused, ConfigurationError, ValidationError
from durable_jobs._store.base import Store
from durable_jobs.maintenance import purge_instance, terminate_instance, trigger_instance

__all__ = ["ACTIONS", "Action", "ActionRefused", "ActionResult", "available", "perform"]

Action = Literal["run_now", "resume", "terminate", "purge"]

#: Every action, with the words its button and confirmation page use.
ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "run_now": ("Run now", "make its next run due now, so a worker serving the store runs it"),
    "resume": ("Resume", "make its paused run due now, so a worker serving the store runs it"),
    "terminate": ("Terminate", "end it: its alarm is cleared and no handler runs for it again"),
    "purge": ("Purge", "delete its whole history (events, snapshots, index row); irreversible"),
}

#: The reason recorded on a ``terminated`` event committed from the dashboard.
TERMINATE_REASON: Final = "terminated from the dashboard"


@final
@dataclass(frozen=True)
class ActionResult:
    """What an action committed, in words."""

    message: str


# One action at a time per process: an SQLite claim is per store object.
_LOCK = threading.Lock()


def available(kind: str, status: str, *, buffered: int | None, closed: bool) -> list[Action]:
    """The actions that apply to an instance of ``kind`` in ``status``.

    ``buffered`` is a debounce instance's open batch size, ``closed`` whether
    it has batches waiting to flush.
    """
    if status == "terminated":
        return ["purge"]
    out: list[Action] = []
    if status == "failed":
        out.append("resume")
    elif kind != "debounce" or buffered or closed:
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
            purged = purge_instance(store, kind, job, instance_id)
            if not purged.purged:
                raise ActionRefused(f"There is no {label} to purge.")
            return ActionResult(
                f"Purged {label}: {purged.events} event(s) and {purged.snapshots} "
                "snapshot(s) deleted."
            )
        try:
            if action == "terminate":
                result = terminate_instance(
                    store, kind, job, instance_id, reason=TERMINATE_REASON, now=now
                )
            else:
                result = trigger_instance(store, kind, job, instance_id, now=now)
        except ConfigurationError as exc:  # an SQLite store a runtime serves
            raise ActionRefused(str(exc)) from exc
    if not result.found:
        raise ActionRefused(f"There is no {label}.")
    if not result.done:
        why = "is terminated" if action == "terminate" else "is terminated or has nothing to run"
        raise ActionRefused(f"{label} {why}; nothing was written.")
    if action == "terminate":
        return ActionResult(f"Terminated {label}.")
    return ActionResult(
        f"Made the next run of {label} due now (status {result.status}): a worker serving "
        "the store runs it."
    )
