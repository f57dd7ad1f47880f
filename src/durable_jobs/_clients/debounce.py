"""The client of one debounce job: add, flush, clear, status, get_state, history."""

from __future__ import annotations

from typing import Generic, TypeVar, final

from durable_jobs._clients.base import KindClient, limited
from durable_jobs._clients.results import AddResult, ClearResult, DebounceStatus, FlushResult
from durable_jobs._definitions.jobs import DebounceJob
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.values import DEFAULT_LIMITS, Limits, check_idempotency_key
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.runtime import Runtime

__all__ = ["DebounceClient"]

S = TypeVar("S")
E = TypeVar("E")


def _debounce_status(agg: DebounceInstance | None) -> DebounceStatus:
    if agg is None or not agg.live:
        return DebounceStatus("not_found", 0, None, None)
    return DebounceStatus(
        agg.status,  # type: ignore[arg-type]
        agg.buffered_events,
        agg.started_at,
        agg.will_flush_at,
    )


@final
class DebounceClient(KindClient, Generic[E, S]):
    """Commands and reads of one debounce job's instances."""

    def __init__(
        self, runtime: Runtime, job: DebounceJob[E, S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job

    @limited
    async def add(
        self,
        id: str,
        event: E,
        idempotency_key: str | None = None,
    ) -> AddResult:
        """Add ``event`` to the open batch; returns without waiting for any flush."""
        check_instance_id(id)
        key = check_idempotency_key(idempotency_key)
        value, event_json = self.job.event_codec.checked(event)

        async def run() -> AddResult:
            agg, opened, duplicate = await self._rt.debounce.add(
                self.job, id, value, event_json, key
            )
            return AddResult(agg.buffered_events, agg.will_flush_at, opened, duplicate)

        return await self._rt.command(run, self._call("add"))

    @limited
    async def flush(self, id: str) -> FlushResult:
        """Flush the next batch now and return after the flush committed (or failed)."""
        check_instance_id(id)

        async def run() -> FlushResult:
            flush = self._rt.debounce.flush
            flushed, count, reason, retry = await flush(self.job, id, manual=True)
            return FlushResult(flushed, count, reason, retry)  # type: ignore[arg-type]

        return await self._rt.command(run, self._call("flush"))

    @limited
    async def clear(self, id: str) -> ClearResult:
        """Drop every buffered event unprocessed."""
        check_instance_id(id)

        async def run() -> ClearResult:
            discarded = await self._rt.debounce.clear(self.job, id)
            return ClearResult(discarded > 0, discarded)

        return await self._rt.command(run, self._call("clear"))

    @limited
    async def status(self, id: str) -> DebounceStatus:
        """The instance's status, pending event count and flush time (``not_found`` if none)."""
        return _debounce_status(await self._load(DebounceInstance, id, "status"))

    @limited
    async def get_state(self, id: str) -> S | None:
        """The state of the batch that flushes next, or None."""
        agg = await self._load(DebounceInstance, id, "get_state")
        if agg is None or not agg.live:
            return None
        return self._rt.decode_state(  # type: ignore[no-any-return]
            self.job.state_codec, agg, agg.current_state, agg.current_state_version
        )

    @limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("debounce", self.job.name, id)
