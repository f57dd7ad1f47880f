"""The client of one task job: send, trigger, status, get_state, terminate, history."""

from __future__ import annotations

from typing import Generic, TypeVar, final

from durable_jobs._clients.base import KindClient, limited
from durable_jobs._clients.results import (
    SendResult,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
)
from durable_jobs._definitions.jobs import TaskJob
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.task import TaskInstance
from durable_jobs._domain.values import DEFAULT_LIMITS, Limits, check_idempotency_key
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.runtime import Runtime

__all__ = ["TaskClient"]

S = TypeVar("S")
E = TypeVar("E")


def _task_status(agg: TaskInstance | None) -> TaskStatus:
    if agg is None or not agg.live:
        return TaskStatus("not_found", None, 0, 0, None)
    d = agg.d
    return TaskStatus(agg.status, d.alarm_at, d.event_count, d.execute_count, d.created_at)  # type: ignore[arg-type]


@final
class TaskClient(KindClient, Generic[E, S]):
    """Commands and reads of one task job's instances."""

    def __init__(
        self, runtime: Runtime, job: TaskJob[E, S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job
        self._send_call = self._call("send")

    @limited
    async def send(
        self,
        id: str,
        event: E,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Deliver ``event``: runs ``on_event`` (and ``on_idle``) and commits."""
        check_instance_id(id)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        value, event_json = self.job.event_codec.checked(event)

        async def run() -> SendResult:
            agg, created, duplicate = await self._rt.task.send(
                self.job, id, value, event_json, key
            )
            return SendResult(created, agg.d.alarm_at, duplicate)

        return await self._rt.command(run, self._send_call)

    @limited
    async def trigger(self, id: str) -> TriggerResult:
        """Run ``execute`` now and return after it committed; the alarm stays."""
        check_instance_id(id)

        async def run() -> TriggerResult:
            return TriggerResult(*await self._rt.task.execute(self.job, id, by_alarm=False))

        return await self._rt.command(run, self._call("trigger"))

    @limited
    async def status(self, id: str) -> TaskStatus:
        """The instance's status, alarm and counters (``not_found`` if none)."""
        return _task_status(await self._load(TaskInstance, id, "status"))

    @limited
    async def get_state(self, id: str) -> TaskState[S] | None:
        """The committed state and the pending alarm, or None if there is no such instance."""
        agg = await self._load(TaskInstance, id, "get_state")
        if agg is None or not agg.live:
            return None
        state = self._rt.decode_state(self.job.state_codec, agg, agg.d.state, agg.d.state_version)
        return TaskState(state, agg.d.alarm_at)

    @limited
    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Cancel the alarm and remove the state; the history stays."""
        return await self._terminate(TaskInstance, id, reason)

    @limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("task", self.job.name, id)
