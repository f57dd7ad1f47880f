# Assertions narrow the attributes of a mutable aggregate, and the commands that change
# them next are invisible to mypy, which then calls the following asserts unreachable.
# mypy: disable-error-code="unreachable"
"""Debounce instances: the decide functions against SPEC §1 (idempotency), §3, §5, §6.

The runtime is played by hand: it folds each event with ``on_event`` (here:
appending the event to a list) and passes the result to ``add``; a flush is
``begin_flush`` (the first commit), the handler, then ``flush_succeeded`` or
``flush_failed`` (the second commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.batches import Batch
from durable_jobs._domain.debounce import DebounceInstance, FlushTicket
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import JobInstance, RunTicket
from durable_jobs._errors import DurableJobsError

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
FLUSH_AFTER = timedelta(minutes=5)
WINDOW = timedelta(hours=24)
JOB = "batcher"


class Log:
    """The instance's log as a store would keep it: every event ever collected."""

    def __init__(self) -> None:
        self.events: list[JobInstance.Event] = []

    def take(self, agg: JobInstance | None) -> list[JobInstance.Event]:
        if agg is None:
            return []
        new = [cast(JobInstance.Event, e) for e in agg.collect_events()]
        self.events.extend(new)
        return new

    def names(self) -> list[str]:
        return [e.NAME for e in self.events]

    def of(self, name: str) -> list[JobInstance.Event]:
        return [e for e in self.events if name == e.NAME]


def names(events: Sequence[JobInstance.Event]) -> list[str]:
    return [e.NAME for e in events]


def replay(events: Sequence[JobInstance.Event]) -> DebounceInstance:
    agg: Any = None
    for e in events:
        agg = e.mutate(agg)
    assert isinstance(agg, DebounceInstance)
    return agg


class Batcher:
    """A debounce job's instance "b1" driven like the runtime drives it.

    ``on_event`` folds events into a list (``ctx.state`` is None for the first
    event of a batch). Every command's events go to ``log``.
    """

    def __init__(
        self,
        *,
        max_events: int | None = 10,
        flush_after: timedelta = FLUSH_AFTER,
        window: timedelta = WINDOW,
    ) -> None:
        self.inst: DebounceInstance | None = None
        self.log = Log()
        self.max_events = max_events
        self.flush_after = flush_after
        self.window = window

    @property
    def i(self) -> DebounceInstance:
        assert self.inst is not None
        return self.inst

    def add(self, event: Any, *, now: datetime, key: str | None = None) -> bool:
        """Add ``event`` unless ``key`` is a duplicate; returns whether it opened a batch."""
        if key is not None and self.inst is not None:
            assert not self.inst.is_duplicate(key, now=now, window=self.window)
        state = None if self.inst is None else self.inst.batch_state
        folded = [*(state or []), event]
        self.inst, opened = DebounceInstance.add(
            self.inst,
            JOB,
            "b1",
            event,
            now=now,
            new_state=folded,
            idempotency_key=key,
            window=self.window,
            flush_after=self.flush_after,
            max_events=self.max_events,
        )
        self.log.take(self.inst)
        return opened

    def duplicate(self, key: str, *, now: datetime) -> bool:
        return self.i.is_duplicate(key, now=now, window=self.window)

    def begin(self, *, now: datetime, manual: bool = False) -> FlushTicket | None:
        flush = self.i.begin_flush(now=now, manual=manual, flush_after=self.flush_after)
        self.log.take(self.i)
        return flush

    def succeeded(self, flush: FlushTicket, *, now: datetime, duration: float = 0.0) -> bool:
        ok = self.i.flush_succeeded(
            flush, now=now, duration=duration, flush_after=self.flush_after
        )
        self.log.take(self.i)
        return ok

    def failed(
        self,
        flush: FlushTicket,
        *,
        now: datetime,
        retry: Retry | None,
        error: BaseException | None = None,
    ) -> tuple[bool, datetime | None]:
        retry_at = self.i.plan_retry(flush.ticket, retry, now=now)
        exhausted = None
        if retry is not None and retry_at is None:
            assert isinstance(retry.on_exhausted, str)
            exhausted = retry.on_exhausted
        ok = self.i.flush_failed(
            flush,
            error or RuntimeError("flush failed"),
            now=now,
            retry_at=retry_at,
            exhausted=exhausted,
            flush_after=self.flush_after,
        )
        self.log.take(self.i)
        return ok, retry_at

    def clear(self, *, now: datetime) -> int:
        n = self.i.clear(now=now)
        self.log.take(self.i)
        return n

    def alarm(self) -> datetime | None:
        return self.i.d.alarm_at

    def status(self) -> str:
        return self.i.status


# --- add ---------------------------------------------------------------------------------------


def test_the_first_add_creates_the_instance_and_opens_the_window() -> None:
    """D01 The first add opens the window."""
    b = Batcher()
    opened = b.add({"type": "webhook", "data": 1}, now=T)

    assert opened is True
    i = b.i
    assert i.id == instance_uuid("debounce", JOB, "b1")
    assert i.status == "debouncing"
    assert i.d.event_count == 1
    assert i.buffered_events == 1
    assert i.started_at == T
    assert b.alarm() == T + FLUSH_AFTER
    assert i.current_state == [{"type": "webhook", "data": 1}]
    assert b.log.names() == ["started", "event_added", "state_changed", "alarm_set"]
    started, added, changed, alarm_set = b.log.events
    assert isinstance(started, DebounceInstance.Started)
    assert started.state is None
    assert isinstance(added, DebounceInstance.EventAdded)
    assert added.event == {"type": "webhook", "data": 1}
    assert added.idempotency_key is None
    assert added.expired_keys == []
    assert added.timestamp == T
    assert isinstance(changed, DebounceInstance.StateChanged)
    assert changed.state == [{"type": "webhook", "data": 1}]
    assert isinstance(alarm_set, DebounceInstance.AlarmSet)
    assert alarm_set.at == T + FLUSH_AFTER


def test_later_adds_do_not_move_the_alarm() -> None:
    """D03 event_count counts the adds. D10 Status while debouncing (fixed window)."""
    b = Batcher()
    assert b.add(1, now=T) is True
    n = len(b.log.events)
    assert b.add(2, now=T + MINUTE) is False
    assert b.add(3, now=T + 4 * MINUTE) is False

    assert names(b.log.events[n:]) == ["event_added", "state_changed"] * 2
    assert b.alarm() == T + FLUSH_AFTER
    assert b.i.started_at == T
    assert b.i.d.event_count == 3
    assert b.i.buffered_events == 3
    assert b.status() == "debouncing"


def test_on_event_state_is_what_the_caller_folded() -> None:
    """D02 on_event folds each event into the state."""
    b = Batcher()
    b.add({"first": True}, now=T)
    assert b.i.batch_state == [{"first": True}]
    b.add({"second": True}, now=T + SECOND)
    assert b.i.current_state == [{"first": True}, {"second": True}]
    assert b.i.d.state == [{"first": True}, {"second": True}]
    states = [cast(DebounceInstance.StateChanged, e).state for e in b.log.of("state_changed")]
    assert states == [[{"first": True}], [{"first": True}, {"second": True}]]


def test_an_empty_instance_gives_on_event_no_state() -> None:
    """SPEC §3: ``ctx.state`` is None for the first event of a batch."""
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    # A flush in flight: the open batch is empty again.
    assert b.i.batch_state is None
    b.succeeded(flush, now=T + SECOND)
    assert b.i.batch_state is None


def test_state_is_kept_per_batch() -> None:
    b = Batcher()
    b.add("a", now=T)
    b.add("b", now=T + SECOND)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    b.add("c", now=T + FLUSH_AFTER + SECOND)
    assert flush.batch.state == ["a", "b"]
    assert b.i.d.closed[0].state == ["a", "b"]
    assert b.i.batch_state == ["c"]
    # get_state reports the batch that flushes next: the closed one.
    assert b.i.current_state == ["a", "b"]


def test_reaching_max_events_closes_the_batch_and_makes_the_flush_due_now() -> None:
    """D04 Reaching max_events flushes at once (will_flush_at = now)."""
    b = Batcher(max_events=3, flush_after=timedelta(minutes=10))
    b.add(1, now=T)
    assert b.i.will_flush_at == T + timedelta(minutes=10)
    b.add(2, now=T + SECOND)
    n = len(b.log.events)
    b.add(3, now=T + 2 * SECOND)
    assert b.i.will_flush_at == T + 2 * SECOND

    new = b.log.events[n:]
    assert names(new) == ["event_added", "state_changed", "batch_closed", "alarm_set"]
    closed = new[2]
    assert isinstance(closed, DebounceInstance.BatchClosed)
    assert (closed.batch_no, closed.reason, closed.event_count) == (1, "max_events", 3)
    assert b.alarm() == T + 2 * SECOND
    assert b.i.d.closed == [
        Batch(batch_no=1, event_count=3, state=[1, 2, 3], started_at=T, reason="max_events")
    ]
    assert b.i.d.event_count == 0
    assert b.i.buffered_events == 3
    assert b.status() == "debouncing"
    assert b.i.current_state == [1, 2, 3]
    assert b.i.started_at == T

    flush = b.begin(now=T + 2 * SECOND)
    assert flush is not None
    assert flush.reason == "max_events"
    assert flush.batch.event_count == 3
    assert flush.ticket == RunTicket(1, 1)


def test_max_events_one_closes_at_the_first_add() -> None:
    b = Batcher(max_events=1)
    assert b.add("only", now=T) is True
    assert b.log.names() == [
        "started",
        "event_added",
        "state_changed",
        "batch_closed",
        "alarm_set",
    ]
    assert b.alarm() == T
    assert b.i.d.closed[0].event_count == 1


def test_a_batch_never_exceeds_max_events() -> None:
    b = Batcher(max_events=3)
    for n in range(7):
        b.add(n, now=T + n * SECOND)
    assert [batch.event_count for batch in b.i.d.closed] == [3, 3]
    assert [batch.state for batch in b.i.d.closed] == [[0, 1, 2], [3, 4, 5]]
    assert b.i.d.event_count == 1
    assert b.i.batch_state == [6]
    assert b.i.buffered_events == 7
    # The second batch waits behind the first, whose flush is due.
    assert b.alarm() == T + 2 * SECOND


# --- begin_flush -------------------------------------------------------------------------------


def test_begin_flush_before_the_window_ends_does_nothing() -> None:
    b = Batcher()
    b.add(1, now=T)
    n = len(b.log.events)
    assert b.begin(now=T + FLUSH_AFTER - SECOND) is None
    assert len(b.log.events) == n
    assert b.i.d.closed == []


def test_the_window_end_closes_the_batch_for_a_flush() -> None:
    """D05 The window's end flushes."""
    b = Batcher()
    b.add({"type": "webhook"}, now=T)
    n = len(b.log.events)
    flush = b.begin(now=T + FLUSH_AFTER)

    assert flush is not None
    assert flush.reason == "flush_after"
    assert flush.ticket == RunTicket(1, 1)
    assert flush.ticket.is_retry is False
    assert flush.batch.event_count == 1
    assert flush.batch.state == [{"type": "webhook"}]
    assert flush.batch.started_at == T
    assert names(b.log.events[n:]) == ["batch_closed"]
    # The closed batch is due now: its alarm (already at the window end) stays.
    assert b.alarm() == T + FLUSH_AFTER
    assert b.status() == "debouncing"
    assert b.i.buffered_events == 1


def test_a_late_window_flush_moves_the_alarm_to_the_close_time() -> None:
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T + FLUSH_AFTER + MINUTE)
    assert flush is not None
    assert flush.reason == "flush_after"
    assert b.alarm() == T + FLUSH_AFTER + MINUTE


def test_a_manual_flush_closes_the_batch_with_reason_manual() -> None:
    """D06 Manual flush below max_events."""
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T + SECOND, manual=True)
    assert flush is not None
    assert flush.reason == "manual"
    assert flush.batch.reason == "manual"
    assert flush.batch.event_count == 1
    assert b.log.of("batch_closed")
    assert b.alarm() == T + SECOND
    assert b.succeeded(flush, now=T + 2 * SECOND)
    (flushed,) = b.log.of("flushed")
    assert isinstance(flushed, DebounceInstance.Flushed)
    assert (flushed.reason, flushed.event_count) == ("manual", 1)


def test_flushing_an_empty_instance_runs_nothing() -> None:
    """D08 Flushing an empty instance runs nothing."""
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    b.succeeded(flush, now=T)
    n = len(b.log.events)
    assert b.begin(now=T + SECOND, manual=True) is None
    assert b.begin(now=T + 2 * FLUSH_AFTER) is None
    assert len(b.log.events) == n


def test_a_terminated_instance_does_not_flush() -> None:
    b = Batcher()
    b.add(1, now=T)
    b.i.terminate(now=T + SECOND)
    assert b.begin(now=T + FLUSH_AFTER, manual=True) is None
    assert b.begin(now=T + FLUSH_AFTER) is None
    assert b.status() == "terminated"


def test_a_second_begin_flush_returns_the_same_head_batch() -> None:
    """The head batch stays due until its flush commits (a crash re-runs it)."""
    b = Batcher()
    b.add(1, now=T)
    first = b.begin(now=T + FLUSH_AFTER)
    assert first is not None
    n = len(b.log.events)
    again = b.begin(now=T + FLUSH_AFTER + SECOND)
    assert again is not None
    assert again.batch == first.batch
    assert again.ticket == first.ticket
    assert len(b.log.events) == n


# --- flush outcomes ----------------------------------------------------------------------------


def test_a_successful_flush_empties_the_instance() -> None:
    """D07 A successful flush empties the instance."""
    b = Batcher()
    b.add(1, now=T, key="k1")
    b.add(2, now=T + SECOND)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    n = len(b.log.events)
    assert b.succeeded(flush, now=T + FLUSH_AFTER + SECOND, duration=1.0) is True

    new = b.log.events[n:]
    assert names(new) == ["run_succeeded", "flushed", "alarm_cleared"]
    run, flushed, _ = new
    assert isinstance(run, DebounceInstance.RunSucceeded)
    assert (run.handler, run.run_count, run.attempt, run.duration) == ("execute", 1, 1, 1.0)
    assert isinstance(flushed, DebounceInstance.Flushed)
    assert (flushed.batch_no, flushed.reason, flushed.event_count) == (1, "flush_after", 2)
    i = b.i
    assert i.status == "idle"
    assert i.live
    assert i.buffered_events == 0
    assert i.current_state is None
    assert i.started_at is None
    assert b.alarm() is None
    assert i.d.run_count == 1
    assert b.duplicate("k1", now=T + FLUSH_AFTER + 2 * SECOND)


def test_the_flush_run_records_the_state_it_started_from() -> None:
    """R01 (debounce) The state a run started from is the state before its record."""
    b = Batcher()
    b.add("a", now=T)
    b.add("b", now=T + SECOND)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    b.add("c", now=T + FLUSH_AFTER + SECOND)
    b.succeeded(flush, now=T + FLUSH_AFTER + 2 * SECOND)
    (run,) = b.log.of("run_succeeded")
    before = replay(b.log.events[: run.originator_version - 1])
    assert before.current_state == ["a", "b"]


def test_events_added_during_a_flush_belong_to_the_next_batch() -> None:
    """X04 Events added during a flush belong to the next batch."""
    b = Batcher()
    b.add("a", now=T)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    late = T + FLUSH_AFTER + SECOND
    opened = b.add("late", now=late)
    # It opened the next batch, but the instance was not new or idle: not `created` (SPEC §3).
    assert opened is False
    assert b.alarm() == T + FLUSH_AFTER  # the closed batch is still due
    assert b.i.buffered_events == 2
    assert b.succeeded(flush, now=late + SECOND) is True

    (flushed,) = b.log.of("flushed")
    assert cast(DebounceInstance.Flushed, flushed).event_count == 1
    assert flush.batch.state == ["a"]
    assert b.status() == "debouncing"
    assert b.i.buffered_events == 1
    assert b.i.current_state == ["late"]
    assert b.i.started_at == late
    assert b.alarm() == late + FLUSH_AFTER

    # The late event is flushed later, once, in the next batch.
    assert b.begin(now=late + FLUSH_AFTER - SECOND) is None
    nxt = b.begin(now=late + FLUSH_AFTER)
    assert nxt is not None
    assert nxt.batch.state == ["late"]
    assert nxt.batch.batch_no == 2
    assert nxt.ticket == RunTicket(2, 1)
    assert b.succeeded(nxt, now=late + FLUSH_AFTER)
    assert b.status() == "idle"
    flushed_counts = [cast(DebounceInstance.Flushed, e).event_count for e in b.log.of("flushed")]
    assert flushed_counts == [1, 1]


def test_events_added_while_a_flush_waits_for_its_retry_belong_to_the_next_batch() -> None:
    """X04 Events added during a flush (waiting for a retry) belong to the next batch."""
    b = Batcher(max_events=3)
    for n in range(3):
        b.add(n, now=T + n * SECOND)
    flush = b.begin(now=T + 2 * SECOND)
    assert flush is not None
    _, retry_at = b.failed(
        flush, now=T + 3 * SECOND, retry=Retry(3, delay=timedelta(seconds=10), jitter=0)
    )
    assert retry_at == T + 13 * SECOND
    b.add("late", now=T + 4 * SECOND)
    assert b.alarm() == retry_at
    assert b.i.current_state == [0, 1, 2]
    assert b.i.buffered_events == 4

    assert b.begin(now=T + 12 * SECOND) is None
    again = b.begin(now=retry_at)
    assert again is not None
    assert again.batch.state == [0, 1, 2]
    assert again.reason == "max_events"
    assert again.ticket == RunTicket(1, 2)
    assert again.ticket.is_retry
    assert b.succeeded(again, now=retry_at)
    assert b.i.current_state == ["late"]
    assert b.alarm() == T + 4 * SECOND + FLUSH_AFTER


def test_a_failed_flush_with_a_retry_keeps_the_batch_and_its_reason() -> None:
    """SPEC §3: a retry of a flush keeps the flush_reason of the flush that failed."""
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    n = len(b.log.events)
    ok, retry_at = b.failed(
        flush,
        now=T + FLUSH_AFTER,
        retry=Retry(3, delay=timedelta(seconds=30), jitter=0),
        error=ValueError("bad payload"),
    )
    assert ok is True
    assert retry_at == T + FLUSH_AFTER + 30 * SECOND

    new = b.log.events[n:]
    assert names(new) == ["run_failed", "alarm_set"]
    failed = new[0]
    assert isinstance(failed, DebounceInstance.RunFailed)
    assert failed.error_type == "ValueError"
    assert failed.message == "bad payload"
    assert (failed.run_count, failed.attempt, failed.will_retry) == (1, 1, True)
    assert failed.retry_at == retry_at
    assert failed.flush_reason == "flush_after"
    assert b.status() == "debouncing"
    assert b.alarm() == retry_at
    assert b.i.buffered_events == 1
    assert b.i.d.attempt == 1

    again = b.begin(now=retry_at)
    assert again is not None
    assert again.reason == "flush_after"
    assert again.ticket == RunTicket(1, 2)


def test_a_retry_of_a_manual_flush_stays_manual() -> None:
    """SPEC §3: a retry keeps the reason, and a manual flush's reason is manual."""
    b = Batcher(max_events=2)
    b.add(1, now=T)
    b.add(2, now=T)  # closed with max_events
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    assert flush.reason == "manual"
    _, retry_at = b.failed(flush, now=T, retry=Retry(2, delay=SECOND, jitter=0))
    assert retry_at is not None
    again = b.begin(now=retry_at)
    assert again is not None
    assert again.reason == "manual"
    assert again.batch.reason == "manual"


def test_a_failed_flush_without_retry_keeps_its_buffer_paused() -> None:
    """X05 A failed flush keeps its buffer."""
    b = Batcher()
    b.add("a", now=T)
    b.add("b", now=T + SECOND)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    n = len(b.log.events)
    ok, _ = b.failed(flush, now=T + FLUSH_AFTER + SECOND, retry=None)
    assert ok

    new = b.log.events[n:]
    assert names(new) == ["run_failed", "alarm_cleared"]
    failed = new[0]
    assert isinstance(failed, DebounceInstance.RunFailed)
    assert failed.will_retry is False
    assert b.status() == "failed"
    assert b.i.buffered_events == 2
    assert b.i.current_state == ["a", "b"]
    assert b.i.started_at == T
    assert b.alarm() is None
    assert b.begin(now=T + FLUSH_AFTER * 10) is None  # never on its own

    manual = b.begin(now=T + HOUR, manual=True)
    assert manual is not None
    assert manual.reason == "manual"
    assert manual.batch.batch_no == flush.batch.batch_no
    assert manual.batch.state == ["a", "b"]
    assert manual.ticket == RunTicket(2, 1)
    assert b.succeeded(manual, now=T + HOUR)
    assert b.status() == "idle"
    assert b.i.buffered_events == 0
    assert b.alarm() is None
    (flushed,) = b.log.of("flushed")
    assert cast(DebounceInstance.Flushed, flushed).reason == "manual"


def test_a_manual_flush_of_a_failed_batch_that_fails_again_stays_failed() -> None:
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    b.failed(flush, now=T, retry=None)
    again = b.begin(now=T + MINUTE, manual=True)
    assert again is not None
    b.failed(again, now=T + MINUTE, retry=None)
    assert b.status() == "failed"
    assert b.i.buffered_events == 1
    assert b.i.d.run_count == 2


def test_exhausted_retries_with_terminate_end_the_instance() -> None:
    """X07 on_exhausted "terminate" (debounce)."""
    b = Batcher()
    b.add(1, now=T)
    retry = Retry(2, delay=SECOND, jitter=0, on_exhausted="terminate")
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    _, at = b.failed(flush, now=T, retry=retry)
    assert at is not None
    again = b.begin(now=at)
    assert again is not None
    assert again.ticket == RunTicket(1, 2)
    n = len(b.log.events)
    b.failed(again, now=at, retry=retry)
    assert names(b.log.events[n:]) == [
        "run_failed",
        "retry_exhausted",
        "alarm_cleared",
        "terminated",
    ]
    exhausted = b.log.events[n + 1]
    assert isinstance(exhausted, DebounceInstance.RetryExhausted)
    assert (exhausted.attempt, exhausted.action) == (2, "terminate")
    assert b.status() == "terminated"
    assert b.alarm() is None
    assert b.i.buffered_events == 0


def test_exhausted_retries_with_pause_keep_the_buffer_and_a_manual_flush_resumes() -> None:
    """X07 on_exhausted "pause" (debounce): status failed, no alarm; flush resumes."""
    b = Batcher()
    b.add(1, now=T)
    retry = Retry(2, delay=SECOND, jitter=0, on_exhausted="pause")
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    _, at = b.failed(flush, now=T + FLUSH_AFTER, retry=retry)
    assert at is not None
    again = b.begin(now=at)
    assert again is not None
    b.failed(again, now=at, retry=retry)
    assert "retry_exhausted" in b.log.names()
    assert b.status() == "failed"
    assert b.alarm() is None
    assert b.i.buffered_events == 1
    assert b.i.d.attempt == 0

    manual = b.begin(now=at + MINUTE, manual=True)
    assert manual is not None
    assert manual.reason == "manual"
    assert manual.ticket == RunTicket(2, 1)
    assert b.succeeded(manual, now=at + MINUTE)
    assert b.status() == "idle"


def test_exhausted_continue_never_leaves_a_batch_waiting_with_no_alarm() -> None:
    """SPEC §5: "continue" is for continuous jobs; a debounce batch must not be stranded.

    A hook can return "continue" for a debounce job too. Either the domain
    refuses it, or the batch must end up paused (status ``failed``) or due.
    """
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    try:
        b.i.flush_failed(
            flush,
            RuntimeError("x"),
            now=T,
            retry_at=None,
            exhausted="continue",
            flush_after=FLUSH_AFTER,
        )
    except (ValueError, AssertionError, DurableJobsError):
        return
    waiting = b.status() == "debouncing" and b.i.buffered_events > 0
    assert not (waiting and b.alarm() is None)


def test_a_second_completion_of_the_same_flush_records_nothing() -> None:
    """At-least-once: a flush that ran twice (a crash, a second worker) commits once."""
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    assert b.succeeded(flush, now=T + FLUSH_AFTER) is True
    n = len(b.log.events)
    assert b.succeeded(flush, now=T + FLUSH_AFTER + SECOND) is False
    assert b.failed(flush, now=T + FLUSH_AFTER + SECOND, retry=None) == (False, None)
    assert len(b.log.events) == n
    assert b.status() == "idle"


def test_batches_closed_during_a_flush_flush_in_order() -> None:
    """X04 with max_events: a batch filled during a flush waits, then flushes at once."""
    b = Batcher(max_events=2)
    b.add("a", now=T)
    b.add("b", now=T)
    first = b.begin(now=T)
    assert first is not None
    b.add("c", now=T + SECOND)
    b.add("d", now=T + 2 * SECOND)  # closes batch 2 behind the running batch 1
    assert [batch.batch_no for batch in b.i.d.closed] == [1, 2]
    assert b.i.buffered_events == 4
    assert b.succeeded(first, now=T + 3 * SECOND)
    assert b.alarm() == T + 3 * SECOND  # batch 2 is due at once
    second = b.begin(now=T + 3 * SECOND)
    assert second is not None
    assert (second.batch.batch_no, second.reason, second.batch.state) == (
        2,
        "max_events",
        ["c", "d"],
    )
    assert b.succeeded(second, now=T + 3 * SECOND)
    assert b.status() == "idle"


# --- clear -------------------------------------------------------------------------------------


def test_clear_drops_the_buffer_unprocessed() -> None:
    """D09 Clear drops the buffer unprocessed."""
    b = Batcher()
    b.add(1, now=T, key="k")
    b.add(2, now=T + SECOND)
    n = len(b.log.events)
    assert b.clear(now=T + 2 * SECOND) == 2
    new = b.log.events[n:]
    assert names(new) == ["cleared", "alarm_cleared"]
    assert cast(DebounceInstance.Cleared, new[0]).discarded_events == 2
    assert b.status() == "idle"
    assert b.i.live
    assert b.i.buffered_events == 0
    assert b.i.current_state is None
    assert b.i.started_at is None
    assert b.alarm() is None
    assert b.duplicate("k", now=T + 3 * SECOND)


def test_clear_counts_closed_batches_too() -> None:
    b = Batcher(max_events=2)
    for n in range(5):
        b.add(n, now=T + n * SECOND)
    assert len(b.i.d.closed) == 2
    assert b.clear(now=T + MINUTE) == 5
    assert b.i.d.closed == []
    assert b.status() == "idle"


def test_clear_of_a_failed_batch_unpauses_the_instance() -> None:
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    b.failed(flush, now=T, retry=None)
    assert b.status() == "failed"
    assert b.clear(now=T + SECOND) == 1
    assert b.status() == "idle"
    assert b.add(2, now=T + MINUTE) is True
    assert b.alarm() == T + MINUTE + FLUSH_AFTER


def test_clear_of_an_empty_or_terminated_instance_records_nothing() -> None:
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    b.succeeded(flush, now=T)
    n = len(b.log.events)
    assert b.clear(now=T + SECOND) == 0
    b.i.terminate(now=T + 2 * SECOND)
    b.log.take(b.i)
    m = len(b.log.events)
    assert m == n + 1
    assert b.clear(now=T + 3 * SECOND) == 0
    assert len(b.log.events) == m


def test_a_flush_that_completes_after_a_clear_records_nothing() -> None:
    b = Batcher()
    b.add(1, now=T)
    flush = b.begin(now=T + FLUSH_AFTER)
    assert flush is not None
    b.clear(now=T + FLUSH_AFTER + SECOND)
    # The same batch number must not match a batch opened after the clear.
    b.add(2, now=T + FLUSH_AFTER + 2 * SECOND)
    n = len(b.log.events)
    assert b.succeeded(flush, now=T + FLUSH_AFTER + 3 * SECOND) is False
    assert b.failed(flush, now=T + FLUSH_AFTER + 3 * SECOND, retry=None) == (False, None)
    assert len(b.log.events) == n
    assert b.i.buffered_events == 1
    assert b.i.d.run_count == 0


def test_a_flush_that_completes_after_a_clear_and_a_new_closed_batch_records_nothing() -> None:
    b = Batcher(max_events=1)
    b.add(1, now=T)
    flush = b.begin(now=T)
    assert flush is not None
    b.clear(now=T + SECOND)
    b.add(2, now=T + 2 * SECOND)  # closes batch 2 at once
    assert b.i.d.closed[0].batch_no == 2
    n = len(b.log.events)
    assert b.succeeded(flush, now=T + 3 * SECOND) is False
    assert len(b.log.events) == n
    assert b.i.current_state == [2]


def test_a_flush_that_completes_after_terminate_and_restart_records_nothing() -> None:
    b = Batcher(max_events=1)
    b.add(1, now=T)
    flush = b.begin(now=T)
    assert flush is not None
    b.i.terminate(now=T + SECOND)
    assert b.add(2, now=T + 2 * SECOND) is True  # a new generation
    assert b.i.d.generation == 2
    assert b.i.d.closed[0].batch_no != flush.batch.batch_no
    assert b.succeeded(flush, now=T + 3 * SECOND) is False


# --- status ------------------------------------------------------------------------------------


def test_status_values() -> None:
    b = Batcher()
    b.add(1, now=T)
    assert b.status() == "debouncing"
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    assert b.status() == "debouncing"  # a closed batch is running
    b.failed(flush, now=T, retry=None)
    assert b.status() == "failed"
    again = b.begin(now=T, manual=True)
    assert again is not None
    b.succeeded(again, now=T)
    assert b.status() == "idle"
    b.i.terminate(now=T)
    assert b.status() == "terminated"
    assert b.i.buffered_events == 0


def test_started_at_is_the_first_event_of_the_batch_that_flushes_next() -> None:
    b = Batcher(max_events=2)
    b.add(1, now=T)
    b.add(2, now=T + SECOND)  # closed
    b.add(3, now=T + MINUTE)  # the open batch
    assert b.i.started_at == T
    flush = b.begin(now=T + MINUTE)
    assert flush is not None
    b.succeeded(flush, now=T + MINUTE)
    assert b.i.started_at == T + MINUTE


def test_the_log_rebuilds_the_live_instance() -> None:
    b = Batcher(max_events=2)
    b.add(1, now=T, key="a")
    b.add(2, now=T + SECOND, key="b")
    flush = b.begin(now=T + SECOND)
    assert flush is not None
    b.add(3, now=T + 2 * SECOND)
    b.failed(flush, now=T + 3 * SECOND, retry=None)
    assert replay(b.log.events) == b.i
    assert b.i.version == len(b.log.events)


# --- idempotency keys --------------------------------------------------------------------------


def test_a_new_key_is_accepted_and_recorded_with_its_event() -> None:
    """K01 A new key is accepted."""
    b = Batcher()
    b.add("e", now=T, key="event-123")
    assert b.i.d.event_count == 1
    (added,) = b.log.of("event_added")
    assert cast(DebounceInstance.EventAdded, added).idempotency_key == "event-123"
    assert b.i.d.idempotency == {"event-123": T}


def test_an_accepted_key_is_recognised_within_its_window() -> None:
    """K02 An accepted key is recognised. K04 Repeats stay duplicates."""
    b = Batcher()
    b.add("e", now=T, key="event-123")
    for dt in (timedelta(0), SECOND, WINDOW - SECOND):
        assert b.duplicate("event-123", now=T + dt)
    # is_duplicate is a query: it records nothing.
    assert b.i.collect_events() == []
    assert b.i.d.event_count == 1


def test_keys_are_independent() -> None:
    """K05 Keys are independent."""
    b = Batcher()
    b.add("a", now=T, key="event-a")
    b.add("b", now=T, key="event-b")
    assert not b.duplicate("event-c", now=T)
    b.add("c", now=T, key="event-c")
    assert b.i.d.event_count == 3


def test_a_key_outlives_its_batch_flushed() -> None:
    """K06 A key outlives its batch (flushed), not its window."""
    b = Batcher()
    b.add("x", now=T, key="event-x")
    flush = b.begin(now=T, manual=True)
    assert flush is not None
    b.succeeded(flush, now=T + SECOND)
    assert b.duplicate("event-x", now=T + MINUTE)
    assert not b.duplicate("event-x", now=T + WINDOW)
    assert not b.duplicate("event-x", now=T + WINDOW + SECOND)


def test_a_key_outlives_its_batch_cleared() -> None:
    """K06 A key outlives its batch (cleared), not its window."""
    b = Batcher()
    b.add("x", now=T, key="event-x")
    b.clear(now=T + SECOND)
    assert b.duplicate("event-x", now=T + MINUTE)
    assert not b.duplicate("event-x", now=T + WINDOW)


def test_a_key_outlives_terminate_and_restart() -> None:
    b = Batcher()
    b.add("x", now=T, key="event-x")
    b.i.terminate(now=T + SECOND)
    assert b.duplicate("event-x", now=T + MINUTE)
    b.add("y", now=T + MINUTE, key="event-y")
    assert b.i.d.generation == 2
    assert b.duplicate("event-x", now=T + 2 * MINUTE)


def test_expired_keys_are_dropped_with_the_next_event() -> None:
    """K06 Once the idempotency window has passed, the key counts as new."""
    b = Batcher()
    b.add("x", now=T, key="event-x")
    b.add("y", now=T + MINUTE, key="event-y")
    later = T + WINDOW
    assert not b.duplicate("event-x", now=later)
    assert b.duplicate("event-y", now=later)
    assert set(b.i.d.idempotency) == {"event-x", "event-y"}

    b.add("x again", now=later, key="event-x")
    added = cast(DebounceInstance.EventAdded, b.log.of("event_added")[-1])
    assert added.expired_keys == ["event-x"]
    assert added.idempotency_key == "event-x"
    # The key was dropped and accepted again, now.
    assert b.i.d.idempotency == {"event-x": later, "event-y": T + MINUTE}
    assert b.duplicate("event-x", now=later + SECOND)

    b.add("z", now=later + MINUTE)
    added = cast(DebounceInstance.EventAdded, b.log.of("event_added")[-1])
    assert added.expired_keys == ["event-y"]
    assert b.i.d.idempotency == {"event-x": later}
    assert replay(b.log.events) == b.i


def test_a_short_window() -> None:
    b = Batcher(window=timedelta(seconds=10))
    b.add(1, now=T, key="k")
    assert b.duplicate("k", now=T + 9 * SECOND)
    assert not b.duplicate("k", now=T + 10 * SECOND)


@pytest.mark.parametrize(
    "key",
    [
        "path/to/resource",
        "urn:event:123",
        "with-dashes",
        "with_underscores",
        "dots.in.key",
        "spaces in key",
        "special@#$chars",
        "ünïcödé ✓",
        "",
    ],
)
def test_any_characters_work_in_keys(key: str) -> None:
    """K07 Any characters work in keys."""
    b = Batcher()
    b.add(0, now=T, key="other")
    assert not b.duplicate(key, now=T)
    b.add(1, now=T, key=key)
    assert b.duplicate(key, now=T + SECOND)
    assert replay(b.log.events).d.idempotency[key] == T


def test_keys_that_prefix_each_other_do_not_collide() -> None:
    """K08 Keys that prefix each other do not collide."""
    b = Batcher()
    for key in ("123", "1234", "12345"):
        assert b.inst is None or not b.duplicate(key, now=T)
        b.add(key, now=T, key=key)
    assert not b.duplicate("123456", now=T)
    b.add("123456", now=T, key="123456")
    assert b.i.d.event_count == 4
