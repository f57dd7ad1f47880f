"""The client of one continuous job: start, trigger, status, get_state, terminate, history."""

from __future__ import annotations

from typing import Generic, TypeVar, final

from durable_jobs._clients.base import KindClient, limited
from durable_jobs._clients.results import (
    ContinuousStatus,
    StartResult,
    TerminateResult,
    TriggerResult,
)
from durable_jobs._definitions.jobs import ContinuousJob
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.values import DEFAULT_LIMITS, Limits
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.runtime import Runtime

__all__ = ["ContinuousClient"]

S = TypeVar("S")


def _continuous_status(agg: ContinuousInstance | None) -> ContinuousStatus:
    if agg is None or not agg.live:
        return ContinuousStatus("not_found", 0, None)
    return ContinuousStatus(agg.status, agg.d.run_count, agg.d.alarm_at)  # type: ignore[arg-type]


@final
class ContinuousClient(KindClient, Generic[S]):
    """Commands and reads of one continuous job's instances."""

    def __init__(
        self, runtime: Runtime, job: ContinuousJob[S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job

    @limited
    async def start(self, id: str, input: S) -> StartResult:
        """Create instance ``id`` with ``input`` as its state (an existing one is kept)."""
        check_instance_id(id)
        state_json = self.job.state_codec.checked(input)[1]

        async def run() -> StartResult:
            agg, created = await self._rt.continuous.start(self.job, id, state_json)
            return StartResult(created, _continuous_status(agg))

        return await self._rt.command(run, self._call("start"))

    @limited
    async def trigger(self, id: str) -> TriggerResult:
        """Run now, bypassing the schedule, and return after the run committed."""
        check_instance_id(id)

        async def run() -> TriggerResult:
            return TriggerResult(*await self._rt.continuous.run(self.job, id, manual=True))

        return await self._rt.command(run, self._call("trigger"))

    @limited
    async def status(self, id: str) -> ContinuousStatus:
        """The instance's status, run count and next run time (``not_found`` if none)."""
        return _continuous_status(await self._load(ContinuousInstance, id, "status"))

    @limited
    async def get_state(self, id: str) -> S | None:
        """The committed state, or None if there is no such (live) instance."""
        agg = await self._load(ContinuousInstance, id, "get_state")
        if agg is None or not agg.live:
            return None
        return self._rt.decode_state(  # type: ignore[no-any-return]
            self.job.state_codec, agg, agg.d.state, agg.d.state_version
        )

    @limited
    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Cancel the alarm and remove the state; the history stays."""
        return await self._terminate(ContinuousInstance, id, reason)

    @limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("continuous", self.job.name, id)
