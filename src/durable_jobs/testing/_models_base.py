"""What the reference models share: markers, run records, the retry rules, the model base.

Pure Python and synchronous, like the models themselves (see
:mod:`durable_jobs.testing._models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, final

from durable_jobs._domain.backoff import Retry, jitter_factor
from durable_jobs._domain.ids import Kind, instance_uuid

#: A model can say no more than this many runs happen at one instant (a runaway loop).
MAX_RUNS_PER_STEP = 10_000


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by a ``model_execute`` hook: the handler terminates its instance.
TERMINATE: Any = _Marker("TERMINATE")
#: A :class:`TaskStep` field the handler leaves as it is.
UNCHANGED: Any = _Marker("UNCHANGED")
#: A state the model cannot know (the machine has no hook for it): not compared.
UNKNOWN: Any = _Marker("UNKNOWN")


@final
@dataclass(frozen=True, slots=True)
class ModelContext:
    """What a ``model_*`` hook knows about the run it models."""

    instance_id: str
    now: datetime
    run_count: int
    attempt: int


@final
@dataclass(frozen=True, slots=True)
class ExpectedRun:
    """A handler call the model expects the log to record (compared with a ``Run``)."""

    handler: str
    run_count: int
    attempt: int
    outcome: Literal["succeeded", "failed"]
    at: datetime


def retry_time(
    retry: Retry | None,
    *,
    kind: Kind,
    job: str,
    instance_id: str,
    run_count: int,
    attempt: int,
    first_failure_at: datetime,
    now: datetime,
) -> datetime | None:
    """When try ``attempt`` (which failed at ``now``) runs again, or None (the retry rules).

    The delay is the policy's backoff for that retry, times the jitter
    factor; the jitter is the runtime's deterministic one (a function of the
    instance and the run), so the model can predict exact times.
    """
    if retry is None or attempt >= retry.max_attempts:
        return None
    factor = 1.0
    if retry.jitter:
        seed = (instance_uuid(kind, job, instance_id).int & 0xFFFFFFFFFFFF) ^ run_count
        factor = jitter_factor(retry.jitter, seed, attempt)
        assert 1 - retry.jitter <= factor < 1 + retry.jitter
    try:
        at = now + retry.delay.delay(attempt) * factor
        if retry.max_duration is not None and at >= first_failure_at + retry.max_duration:
            return None
    except OverflowError:
        return None
    return at


class _FailureMirror:
    """The model's copy of a FailurePlan: which calls the machine made fail."""

    def __init__(self) -> None:
        self.planned: dict[tuple[str, str], int] = {}

    def plan(self, instance_id: str, times: int, handler: str = "execute") -> None:
        key = (instance_id, handler)
        self.planned[key] = self.planned.get(key, 0) + times

    def take(self, instance_id: str, handler: str = "execute") -> bool:
        key = (instance_id, handler)
        left = self.planned.get(key, 0)
        if left <= 0:
            return False
        if left == 1:
            del self.planned[key]
        else:
            self.planned[key] = left - 1
        return True

    def pending(self, instance_id: str, handler: str = "execute") -> int:
        return self.planned.get((instance_id, handler), 0)


class _Model:
    kind: Kind

    def __init__(self, job_name: str, now: datetime) -> None:
        self.job_name = job_name
        self.now = now
        self.failures = _FailureMirror()
        self.runs: dict[str, list[ExpectedRun]] = {}

    def _record(self, instance_id: str, run: ExpectedRun) -> None:
        self.runs.setdefault(instance_id, []).append(run)

    def _failed(
        self,
        instance_id: str,
        retry: Retry | None,
        *,
        run_count: int,
        attempt: int,
        first_failure_at: datetime | None,
    ) -> datetime | None:
        """Record a failed ``execute`` try; when it runs again, or None (the retry rules)."""
        now = self.now
        self._record(instance_id, ExpectedRun("execute", run_count, attempt, "failed", now))
        first = first_failure_at if attempt > 1 else None
        return retry_time(
            retry,
            kind=self.kind,
            job=self.job_name,
            instance_id=instance_id,
            run_count=run_count,
            attempt=attempt,
            first_failure_at=first or now,
            now=now,
        )

    def _due(self, target: datetime) -> list[tuple[datetime, str]]:
        raise NotImplementedError

    def _fire(self, instance_id: str) -> None:
        raise NotImplementedError

    def advance(self, target: datetime, *, running: bool = True) -> None:
        """Let time pass until ``target``; each alarm due meanwhile fires at its time.

        ``running=False``: the process is down, nothing fires (see :meth:`settle`
        after the restart).
        """
        for _ in range(MAX_RUNS_PER_STEP):
            due = self._due(target) if running else []
            if not due:
                self.now = max(self.now, target)
                return
            at, instance_id = min(due)
            self.now = max(self.now, at)
            self._fire(instance_id)
        msg = f"more than {MAX_RUNS_PER_STEP} runs before {target}: a runaway schedule?"
        raise AssertionError(msg)

    def settle(self) -> None:
        """Run everything that is due now (what ``wait_idle`` waits for)."""
        self.advance(self.now)
