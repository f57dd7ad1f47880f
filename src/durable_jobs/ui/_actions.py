"""What the dashboard's action buttons do: commit domain events that workers act on.

No handler runs here. "Run now" and "resume" make the instance's next run due
now (:func:`durable_jobs.maintenance.trigger_instance`: a paused run is
resumed, a waiting retry brought forward, a debounce instance's open batch
closed for a manual flush), so a worker serving the store runs it;
"terminate" records the instance's end
(:func:`~durable_jobs.maintenance.terminate_instance`); "purge" deletes a
terminated instance's history (:func:`~durable_jobs.maintenance.purge_instance`).

Each holds the instance's lock while it reads and commits (on Postgres, a run
of the instance in flight in a worker is waited for, up to :data:`ACTION_WAIT`),
and is refused on an SQLite store that a jobs runtime serves (that process keeps
instances in memory and would not see the change). Each applies to the instance
as its confirmation page showed it (:class:`Seen`): one started again since, or
purged and started again, is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, final

from durable_jobs._domain.ids import KINDS, check_instance_id
from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.values import check_alarm_time
from durable_jobs._errors import (
    ActionRefused,
    ConcurrencyError,
    ConfigurationError,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs._tools.admin import AdminResult, _admin
from durable_jobs._tools.purge import purge_checked

__all__ = [
    "ACTIONS",
    "ACTION_WAIT",
    "Action",
    "ActionRefused",
    "ActionResult",
    "Seen",
    "available",
    "perform",
]

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

#: How long an action waits for a run of the instance in flight in a worker
#: (Postgres: the run holds the instance's lock until it commits), in seconds. The
#: command line waits 30 s by default; a page gets its answer sooner, and the
#: operator can try again.
ACTION_WAIT: Final = 10.0


@final
@dataclass(frozen=True)
class Seen:
    """The instance as the confirmation page showed it; the action applies to that
    instance only. Later runs of the same generation are fine (an instance that runs
    every second must still be terminable); a new generation (terminated and started
    again) or a lower version (purged and started again) is another instance."""

    version: int
    generation: int | None
    #: When that generation began (ISO 8601): a purge starts generations at 1 again.
    born: str | None = None


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
    store: Store,
    action: str,
    kind: str,
    job: str,
    instance_id: str,
    *,
    now: datetime,
    seen: Seen | None = None,
    wait: float = ACTION_WAIT,
) -> ActionResult:
    """Do ``action`` on the instance if it is still the one ``seen`` (None: whatever it
    is now). A blocking store call, up to ``wait`` seconds waiting for a run in
    flight: run it in a thread."""
    if action not in ACTIONS:
        msg = f"Unknown action {action!r}: expected one of {', '.join(ACTIONS)}."
        raise ValidationError(msg)
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ValidationError(msg)
    check_instance_id(instance_id)
    label = f"{kind} job {job!r} instance {instance_id!r}"

    def check(version: int, generation: int | None, born: str | None) -> None:
        # Runs while the instance's lock is held: raising leaves it unchanged.
        if seen is None:
            return
        if (
            version >= seen.version
            and seen.generation in (None, generation)
            and seen.born in (None, born)
        ):
            return
        shown = _version_words(seen.version, seen.generation, seen.born)
        msg = (
            f"{label} changed since the confirmation page was shown: it showed {shown}, "
            f"it is now at {_version_words(version, generation, born)} (started again). "
            "Nothing was written: reload the instance's page and confirm again if it still "
            "applies."
        )
        raise ActionRefused(msg)

    def checked(change: Callable[[JobInstance], bool]) -> Callable[[JobInstance], bool]:
        def apply(agg: JobInstance) -> bool:
            check(agg.version, agg.d.generation, agg.d.created_at.isoformat())
            return change(agg)

        return apply

    with _LOCK:
        try:
            if action == "purge":
                purged = purge_checked(store, kind, job, instance_id, wait=wait, check=check)
                if not purged.purged:
                    raise ActionRefused(f"There is no {label} to purge.")
                return ActionResult(
                    f"Purged {label}: {purged.events} event(s) and {purged.snapshots} "
                    "snapshot(s) deleted."
                )
            result: AdminResult
            if action == "terminate":
                result = _admin(
                    store,
                    kind,
                    job,
                    instance_id,
                    action="terminate",
                    change=checked(lambda agg: agg.terminate(now=now, reason=TERMINATE_REASON)),
                    wait=wait,
                )
            else:
                at = check_alarm_time(now, "the dashboard's clock")

                def due_now(agg: JobInstance) -> bool:
                    # A form sent twice (a double click) acts once: the second finds
                    # the instance resumed, or its run due, and writes nothing.
                    _check_not_done(agg, action, label, at)
                    return agg.due_now(now=at)

                result = _admin(
                    store,
                    kind,
                    job,
                    instance_id,
                    action="trigger",
                    change=checked(due_now),
                    wait=wait,
                )
        except ConcurrencyError as exc:  # a run in flight went on past the wait
            msg = (
                f"{label} is still busy after {wait:g} s: a run of it in flight in a worker "
                "holds it. Nothing was written; try again in a moment."
            )
            raise ActionRefused(msg) from exc
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


def _check_not_done(agg: JobInstance, action: str, label: str, now: datetime) -> None:
    """Refuse (:class:`ActionRefused`) a resume of an instance that is not paused, or a
    run now of one whose next run is due already: done before, by this form sent twice
    (say), or otherwise. Called under the instance's lock, before anything is written."""
    d = agg.d
    if not d.live:
        return  # terminated: _admin says so
    if action == "resume" and not d.paused:
        msg = (
            f"{label} is not paused (it was resumed already, or ran since the confirmation "
            "page was shown): nothing was written. Its page shows how it is now."
        )
        raise ActionRefused(msg)
    if action == "run_now" and not d.paused and d.alarm_at is not None and d.alarm_at <= now:
        msg = (
            f"The next run of {label} is due already (since {d.alarm_at.isoformat()}), so a "
            "worker serving the store runs it: nothing was written. Its page shows how it "
            "is now."
        )
        raise ActionRefused(msg)


def _version_words(version: int, generation: int | None, born: str | None) -> str:
    details = [f"generation {generation}"] if generation else []
    if born:
        details.append(f"started {born}")
    return f"version {version}" + (f" ({', '.join(details)})" if details else "")
