# Assertions narrow the attributes of a mutable aggregate, and the commands that change
# them next are invisible to mypy, which then calls the following asserts unreachable.
# mypy: disable-error-code="unreachable"
"""Continuous instances: the decide functions against SPEC §2, §5 and §6.

The runtime is not involved: each test plays its part by hand (compute the
ticket, "run" the handler, commit its outcome with ``complete_run`` or
``fail_run``) with fixed times, and reads the aggregate and its events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import (
    UNCHANGED,
    Intents,
    JobInstance,
    RunTicket,
    error_type_name,
)
from durable_jobs._domain.schedules import Schedule, cron, every
from durable_jobs._errors import DurableJobsError

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HALF_HOUR = timedelta(minutes=30)
HOUR = timedelta(hours=1)
EVERY_30_MIN = every(HALF_HOUR)
EVERY_HOUR = every(HOUR)
JOB = "counter"


def counter(count: int, last_run: float | None = None) -> dict[str, Any]:
    """The JSON form of SCENARIOS' ``Counter(count, last_run)``."""
    return {"count": count, "last_run": last_run}


class Log:
    """The instance's log as a store would keep it: every event ever collected."""

    def __init__(self) -> None:
        self.events: list[JobInstance.Event] = []

    def take(self, agg: JobInstance) -> list[JobInstance.Event]:
        """Collect the pending events of ``agg`` (as a commit would) and return them."""
        new = [cast(JobInstance.Event, e) for e in agg.collect_events()]
        self.events.extend(new)
        return new

    def names(self) -> list[str]:
        return [e.NAME for e in self.events]

    def of(self, name: str) -> list[JobInstance.Event]:
        return [e for e in self.events if name == e.NAME]


def alarm(inst: JobInstance) -> datetime | None:
    """The pending alarm (a function, so that type checkers do not narrow it)."""
    return inst.d.alarm_at


def live(inst: JobInstance) -> bool:
    return inst.live


def names(events: Sequence[JobInstance.Event]) -> list[str]:
    return [e.NAME for e in events]


def replay(events: Sequence[JobInstance.Event]) -> ContinuousInstance:
    """Rebuild an aggregate from its events, as a repository does."""
    agg: Any = None
    for e in events:
        agg = e.mutate(agg)
    assert isinstance(agg, ContinuousInstance)
    return agg


def state_before(log: Log, record: JobInstance.Event) -> Any:
    """The state at the version before a run record: what that run started from."""
    return replay(log.events[: record.originator_version - 1]).d.state


def start(
    state: Any = None,
    *,
    log: Log | None = None,
    now: datetime = T,
    first_run_at: datetime | None = None,
    existing: ContinuousInstance | None = None,
    instance_id: str = "c1",
) -> ContinuousInstance:
    inst, created = ContinuousInstance.start(
        existing,
        JOB,
        instance_id,
        now=now,
        state=counter(0) if state is None else state,
        first_run_at=now if first_run_at is None else first_run_at,
    )
    assert created
    if log is not None:
        log.take(inst)
    return inst


def succeed(
    inst: ContinuousInstance,
    *,
    now: datetime,
    intents: Intents | None = None,
    fresh: bool = False,
    schedule: Schedule = EVERY_30_MIN,
    duration: float = 0.0,
) -> RunTicket:
    """Run the next execute (an alarm run, or a trigger if ``fresh``) successfully."""
    ticket = inst.next_ticket(fresh=fresh)
    inst.complete_run(ticket, intents or Intents(), now=now, duration=duration, schedule=schedule)
    return ticket


def fail(
    inst: ContinuousInstance,
    *,
    now: datetime,
    retry: Retry | None,
    fresh: bool = False,
    schedule: Schedule = EVERY_30_MIN,
    error: BaseException | None = None,
) -> tuple[RunTicket, datetime | None]:
    """Run the next execute and let it raise; commit as the runtime would."""
    ticket = inst.next_ticket(fresh=fresh)
    retry_at = inst.plan_retry(ticket, retry, now=now)
    exhausted = None
    if retry is not None and retry_at is None:
        assert isinstance(retry.on_exhausted, str)
        exhausted = retry.on_exhausted
    inst.fail_run(
        ticket,
        error or RuntimeError("Intentional test failure"),
        now=now,
        schedule=schedule,
        retry=retry,
        retry_at=retry_at,
        exhausted=exhausted,
    )
    return ticket, retry_at


# --- start -------------------------------------------------------------------------------------


def test_start_creates_a_running_instance_due_now() -> None:
    """C01 Start creates the instance and runs it at once (its first run is due now)."""
    inst, created = ContinuousInstance.start(
        None, JOB, "c1", now=T, state=counter(0), first_run_at=T
    )
    assert created is True
    assert inst.id == instance_uuid("continuous", JOB, "c1")
    assert inst.status == "running"
    assert live(inst)
    assert inst.d.state == counter(0)
    assert alarm(inst) == T
    assert inst.d.run_count == 0
    assert inst.d.attempt == 0
    assert inst.d.created_at == T
    assert inst.d.generation == 1
    assert (inst.d.kind, inst.d.job, inst.d.instance_id) == ("continuous", JOB, "c1")
    events = inst.collect_events()
    assert [cast(JobInstance.Event, e).NAME for e in events] == ["started", "alarm_set"]
    started = cast(ContinuousInstance.Started, events[0])
    assert (started.kind, started.job, started.instance_id) == ("continuous", JOB, "c1")
    assert started.state == counter(0)
    assert started.timestamp == T
    assert cast(ContinuousInstance.AlarmSet, events[1]).at == T
    assert inst.version == 2


def test_start_without_start_immediately_waits_for_the_schedule() -> None:
    """C03 start_immediately=False waits for the schedule."""
    inst = start(first_run_at=EVERY_HOUR.next_fire(T))
    assert alarm(inst) == T + HOUR
    assert inst.d.run_count == 0
    assert inst.status == "running"


def test_start_with_a_cron_schedule_waits_for_its_first_fire() -> None:
    schedule = cron("0 9 * * *", tz="America/New_York")
    inst = start(first_run_at=schedule.next_fire(T))
    # 2026-03-01 is in winter time: 09:00 EST is 14:00 UTC, the same day.
    assert alarm(inst) == datetime(2026, 3, 1, 14, tzinfo=UTC)


def test_starting_a_live_instance_returns_it_unchanged() -> None:
    """C02 Starting again returns the existing instance."""
    log = Log()
    inst = start(counter(0), log=log)
    succeed(inst, now=T + SECOND, intents=Intents(state=counter(1)))
    log.take(inst)
    version = inst.version

    again, created = ContinuousInstance.start(
        inst, JOB, "c1", now=T + MINUTE, state=counter(100), first_run_at=T + MINUTE
    )

    assert created is False
    assert again is inst
    assert inst.collect_events() == []
    assert inst.version == version
    assert inst.d.state == counter(1)
    assert inst.d.run_count == 1
    assert alarm(inst) == T + SECOND + HALF_HOUR


def test_starting_a_paused_instance_returns_it_unchanged() -> None:
    inst = start()
    fail(inst, now=T, retry=Retry(1, jitter=0, on_exhausted="pause"))
    inst.collect_events()
    again, created = ContinuousInstance.start(
        inst, JOB, "c1", now=T + MINUTE, state=counter(9), first_run_at=T + MINUTE
    )
    assert (again, created) == (inst, False)
    assert inst.status == "failed"
    assert inst.collect_events() == []


def test_restart_after_terminate_is_a_new_generation() -> None:
    """L05 Terminate deletes the live record, not the history; a new start is fresh."""
    log = Log()
    inst = start(counter(0), log=log)
    succeed(inst, now=T + SECOND, intents=Intents(state=counter(1)))
    fail(inst, now=T + HOUR, retry=Retry(3, jitter=0))
    assert inst.d.attempt == 1
    assert inst.terminate(now=T + 2 * HOUR, reason="user requested")
    log.take(inst)
    assert inst.status == "terminated"
    assert not live(inst)
    assert inst.d.state is None
    assert alarm(inst) is None
    terminated = cast(ContinuousInstance.Terminated, log.events[-1])
    assert terminated.NAME == "terminated"
    assert terminated.reason == "user requested"

    again, created = ContinuousInstance.start(
        inst, JOB, "c1", now=T + 3 * HOUR, state=counter(50), first_run_at=T + 3 * HOUR
    )
    new = log.take(again)

    assert created is True
    assert again is inst
    assert inst.id == instance_uuid("continuous", JOB, "c1")
    assert live(inst)
    assert inst.status == "running"
    assert inst.d.generation == 2
    assert inst.d.state == counter(50)
    assert inst.d.created_at == T + 3 * HOUR
    # Fresh counters.
    assert inst.d.run_count == 0
    assert inst.d.attempt == 0
    assert inst.d.first_failure_at is None
    assert alarm(inst) == T + 3 * HOUR
    assert names(new) == ["started", "alarm_set"]
    assert isinstance(new[0], ContinuousInstance.Restarted)
    # The log keeps the old generation, and the next run is run 1 again.
    assert log.names()[:2] == ["started", "alarm_set"]
    assert "terminated" in log.names()
    assert log.names().count("started") == 2
    assert inst.next_ticket(fresh=False) == RunTicket(1, 1, generation=2)
    assert replay(log.events) == inst
    old = replay(log.events[: terminated.originator_version])
    assert old.d.generation == 1
    assert not live(old)
    assert old.d.run_count == 2


def test_terminate_twice_finds_nothing() -> None:
    """C06 A second terminate finds nothing."""
    inst = start()
    assert inst.terminate(now=T + SECOND) is True
    inst.collect_events()
    assert inst.terminate(now=T + 2 * SECOND) is False
    assert inst.collect_events() == []


def test_terminate_without_a_reason_records_none() -> None:
    log = Log()
    inst = start(log=log)
    inst.terminate(now=T + SECOND)
    cleared, event = log.take(inst)
    assert isinstance(cleared, ContinuousInstance.AlarmCleared)
    assert isinstance(event, ContinuousInstance.Terminated)
    assert event.reason is None
    assert event.timestamp == T + SECOND


# --- tickets -----------------------------------------------------------------------------------


def test_next_ticket_of_a_new_instance_is_run_one_attempt_one() -> None:
    inst = start()
    for fresh in (False, True):
        ticket = inst.next_ticket(fresh=fresh)
        assert ticket == RunTicket(run_count=1, attempt=1)
        assert ticket.is_retry is False


def test_next_ticket_retries_the_waiting_run_unless_fresh() -> None:
    inst = start()
    fail(inst, now=T, retry=Retry(3, jitter=0))
    retry = inst.next_ticket(fresh=False)
    assert retry == RunTicket(run_count=1, attempt=2)
    assert retry.is_retry
    trigger = inst.next_ticket(fresh=True)
    assert trigger == RunTicket(run_count=2, attempt=1)
    assert not trigger.is_retry


def test_next_ticket_after_a_success_is_the_next_run() -> None:
    inst = start()
    succeed(inst, now=T)
    assert inst.next_ticket(fresh=False) == RunTicket(2, 1)
    assert inst.next_ticket(fresh=True) == RunTicket(2, 1)


# --- complete_run ------------------------------------------------------------------------------


def test_complete_run_records_the_run_the_state_and_the_next_alarm() -> None:
    """C13 The alarm runs the job and reschedules (30 min after the run ended)."""
    log = Log()
    inst = start(counter(0), log=log)
    end = T + 2 * SECOND
    ticket = succeed(inst, now=end, intents=Intents(state=counter(1, 2.0)), duration=2.0)
    new = log.take(inst)

    assert ticket == RunTicket(1, 1)
    assert names(new) == ["run_succeeded", "state_changed", "alarm_set"]
    run = new[0]
    assert isinstance(run, ContinuousInstance.RunSucceeded)
    assert (run.handler, run.run_count, run.attempt, run.duration) == ("execute", 1, 1, 2.0)
    assert run.timestamp == end
    changed = new[1]
    assert isinstance(changed, ContinuousInstance.StateChanged)
    assert changed.state == counter(1, 2.0)
    alarm_set = new[2]
    assert isinstance(alarm_set, ContinuousInstance.AlarmSet)
    assert alarm_set.at == EVERY_30_MIN.next_fire(end) == end + HALF_HOUR

    assert inst.d.state == counter(1, 2.0)
    assert inst.d.run_count == 1
    assert inst.d.attempt == 0
    assert alarm(inst) == end + HALF_HOUR
    assert inst.status == "running"


def test_complete_run_without_a_state_change_records_none() -> None:
    log = Log()
    inst = start(counter(3), log=log)
    succeed(inst, now=T, intents=Intents(state=UNCHANGED))
    assert names(log.take(inst)) == ["run_succeeded", "alarm_set"]
    assert inst.d.state == counter(3)


def test_complete_run_records_a_state_set_to_an_equal_value() -> None:
    log = Log()
    inst = start(counter(3), log=log)
    succeed(inst, now=T, intents=Intents(state=counter(3)))
    assert names(log.take(inst)) == ["run_succeeded", "state_changed", "alarm_set"]


def test_complete_run_uses_the_cron_schedule() -> None:
    schedule = cron("*/15 * * * *")
    inst = start(first_run_at=T)
    succeed(inst, now=T + 3 * MINUTE, schedule=schedule)
    assert alarm(inst) == T + 15 * MINUTE


def test_a_later_run_is_scheduled_from_its_own_end() -> None:
    """C10 Status of a running instance: next run 30 min after the last run ended."""
    inst = start()
    succeed(inst, now=T + SECOND)
    succeed(inst, now=T + SECOND + HALF_HOUR + 5 * SECOND)
    assert inst.d.run_count == 2
    assert alarm(inst) == T + 6 * SECOND + 2 * HALF_HOUR


def test_complete_run_with_terminate_ends_the_instance() -> None:
    """C16 ctx.terminate on the first run."""
    log = Log()
    inst = start({"max_runs": 1, "current_run": 0}, log=log)
    succeed(
        inst,
        now=T + SECOND,
        intents=Intents(terminate=True, terminate_reason="max runs reached"),
    )
    new = log.take(inst)

    assert names(new) == ["run_succeeded", "alarm_cleared", "terminated"]
    terminated = new[-1]
    assert isinstance(terminated, ContinuousInstance.Terminated)
    assert terminated.reason == "max runs reached"
    assert inst.status == "terminated"
    assert not live(inst)
    assert alarm(inst) is None
    assert inst.d.state is None


def test_terminate_with_a_state_change_records_both_and_sets_no_alarm() -> None:
    """C17 ctx.terminate in an alarm run stops the schedule."""
    log = Log()
    inst = start({"max_runs": 2, "current_run": 0}, log=log)
    succeed(inst, now=T, intents=Intents(state={"max_runs": 2, "current_run": 1}))
    assert alarm(inst) == T + HALF_HOUR
    log.take(inst)
    succeed(
        inst,
        now=T + HALF_HOUR,
        intents=Intents(
            state={"max_runs": 2, "current_run": 2},
            terminate=True,
            terminate_reason="max runs reached",
        ),
    )
    new = log.take(inst)
    assert names(new) == ["run_succeeded", "state_changed", "alarm_cleared", "terminated"]
    assert cast(ContinuousInstance.RunSucceeded, new[0]).run_count == 2
    assert inst.status == "terminated"
    assert alarm(inst) is None
    assert "alarm_set" not in names(new)


# --- fail_run: retries -------------------------------------------------------------------------


def test_fail_run_with_a_retry_pending() -> None:
    """X06 Retries follow the policy (the first failure)."""
    log = Log()
    inst = start(counter(42, 999.0), log=log)
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)
    ticket, retry_at = fail(inst, now=T, retry=retry, error=RuntimeError("boom at try 1"))
    new = log.take(inst)

    assert ticket == RunTicket(1, 1)
    assert retry_at == T + SECOND
    assert names(new) == ["run_failed", "alarm_set"]
    failed = new[0]
    assert isinstance(failed, ContinuousInstance.RunFailed)
    assert failed.handler == "execute"
    assert failed.error_type == "RuntimeError"
    assert failed.message == "boom at try 1"
    assert (failed.run_count, failed.attempt) == (1, 1)
    assert failed.will_retry is True
    assert failed.retry_at == T + SECOND
    assert failed.timestamp == T
    assert cast(ContinuousInstance.AlarmSet, new[1]).at == T + SECOND

    assert inst.status == "running"
    assert alarm(inst) == T + SECOND
    assert inst.d.attempt == 1
    assert inst.d.first_failure_at == T
    assert inst.d.run_count == 1
    # A failed run commits none of the handler's state changes.
    assert inst.d.state == counter(42, 999.0)


def test_retries_follow_exponential_backoff_and_succeed_on_the_third_try() -> None:
    """X06 Retries follow the policy: tries at T, T + 1 s, T + 3 s; one run_count."""
    log = Log()
    inst = start(log=log)
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)

    tries: list[tuple[datetime, RunTicket]] = []
    now = T
    for _ in range(2):
        ticket, retry_at = fail(inst, now=now, retry=retry)
        tries.append((now, ticket))
        assert retry_at is not None
        assert alarm(inst) == retry_at
        assert inst.status == "running"
        now = retry_at
    tries.append((now, succeed(inst, now=now)))
    log.take(inst)

    assert [(at - T, t.attempt, t.is_retry) for at, t in tries] == [
        (timedelta(0), 1, False),
        (SECOND, 2, True),
        (3 * SECOND, 3, True),
    ]
    assert {t.run_count for _, t in tries} == {1}
    failures = [cast(ContinuousInstance.RunFailed, e) for e in log.of("run_failed")]
    assert [(f.attempt, f.will_retry, f.run_count) for f in failures] == [
        (1, True, 1),
        (2, True, 1),
    ]
    assert all(f.message == "Intentional test failure" for f in failures)
    (ok,) = log.of("run_succeeded")
    assert (cast(ContinuousInstance.RunSucceeded, ok).attempt, ok.originator_id) == (3, inst.id)
    assert inst.d.run_count == 1
    assert inst.d.attempt == 0
    assert inst.d.first_failure_at is None
    assert alarm(inst) == T + 3 * SECOND + HALF_HOUR


def test_first_failure_at_stays_at_the_first_failed_try() -> None:
    inst = start()
    retry = Retry(max_attempts=5, delay=timedelta(seconds=10), jitter=0)
    _, at = fail(inst, now=T, retry=retry)
    assert at is not None
    fail(inst, now=at, retry=retry)
    assert inst.d.first_failure_at == T
    assert inst.d.attempt == 2


def test_max_duration_counts_from_the_first_failed_try() -> None:
    inst = start()
    retry = Retry(
        max_attempts=10,
        delay=timedelta(seconds=10),
        jitter=0,
        max_duration=timedelta(seconds=15),
        on_exhausted="continue",
    )
    _, at = fail(inst, now=T, retry=retry)
    assert at == T + 10 * SECOND
    # The next try would start at T + 20 s, past T + 15 s: exhausted.
    assert inst.plan_retry(inst.next_ticket(fresh=False), retry, now=at) is None


def test_plan_retry_is_none_without_a_policy() -> None:
    inst = start()
    assert inst.plan_retry(inst.next_ticket(fresh=False), None, now=T) is None


def test_plan_retry_jitter_is_bounded_and_replayable() -> None:
    retry = Retry(max_attempts=3, delay=timedelta(seconds=100), jitter=0.1)
    a = start(instance_id="a")
    b = start(instance_id="a")
    at_a = a.plan_retry(RunTicket(1, 1), retry, now=T)
    at_b = b.plan_retry(RunTicket(1, 1), retry, now=T)
    assert at_a == at_b
    assert at_a is not None
    assert T + 90 * SECOND <= at_a <= T + 110 * SECOND


def test_third_failure_exhausts_max_attempts_three() -> None:
    inst = start()
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)
    _, at1 = fail(inst, now=T, retry=retry)
    assert at1 is not None
    _, at2 = fail(inst, now=at1, retry=retry)
    assert at2 is not None
    ticket = inst.next_ticket(fresh=False)
    assert ticket == RunTicket(1, 3)
    assert inst.plan_retry(ticket, retry, now=at2) is None


def test_a_trigger_during_the_retry_wait_restarts_at_attempt_one() -> None:
    """X06 A trigger during the wait restarts at attempt 1 (C07: run_count 2)."""
    log = Log()
    inst = start(log=log)
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)
    fail(inst, now=T, retry=retry)
    assert alarm(inst) == T + SECOND

    ticket = succeed(inst, now=T + SECOND / 2, fresh=True)
    log.take(inst)

    assert ticket == RunTicket(run_count=2, attempt=1)
    assert inst.d.run_count == 2
    assert inst.d.attempt == 0
    assert inst.d.first_failure_at is None
    # The retry alarm is replaced by the next regular run, counted from this run's end.
    assert alarm(inst) == T + SECOND / 2 + HALF_HOUR
    assert inst.status == "running"


def test_a_failing_trigger_during_the_retry_wait_starts_a_new_retry_sequence() -> None:
    """X06 A trigger during the wait restarts at attempt 1."""
    inst = start()
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)
    fail(inst, now=T, retry=retry)
    ticket, at = fail(inst, now=T + 10 * SECOND, retry=retry, fresh=True)
    assert ticket == RunTicket(2, 1)
    assert at == T + 11 * SECOND
    assert inst.d.attempt == 1
    assert inst.d.first_failure_at == T + 10 * SECOND
    assert inst.next_ticket(fresh=False) == RunTicket(2, 2)


# --- fail_run: no policy, exhausted ------------------------------------------------------------


def test_a_failure_without_retry_keeps_the_schedule() -> None:
    """C15 A failing run without retry keeps the schedule (SPEC: better than the original)."""
    log = Log()
    inst = start(counter(42, 999.0), log=log)
    fail(inst, now=T, retry=None, schedule=EVERY_HOUR)
    new = log.take(inst)

    assert names(new) == ["run_failed", "alarm_set"]
    failed = new[0]
    assert isinstance(failed, ContinuousInstance.RunFailed)
    assert failed.will_retry is False
    assert failed.retry_at is None
    assert "Intentional test failure" in failed.message
    assert inst.status == "running"
    assert alarm(inst) == T + HOUR
    assert inst.d.state == counter(42, 999.0)
    assert inst.d.attempt == 0
    assert inst.d.first_failure_at is None
    assert inst.d.run_count == 1
    assert "retry_exhausted" not in log.names()


def test_runs_without_retry_keep_counting() -> None:
    inst = start()
    fail(inst, now=T, retry=None)
    fail(inst, now=T + HALF_HOUR, retry=None)
    assert inst.d.run_count == 2
    assert inst.next_ticket(fresh=False) == RunTicket(3, 1)


def test_exhausted_retries_with_terminate_end_the_instance() -> None:
    """X07 on_exhausted "terminate": retry_exhausted after try 2, then not_found."""
    log = Log()
    inst = start(log=log)
    retry = Retry(max_attempts=2, delay=timedelta(seconds=5), jitter=0, on_exhausted="terminate")
    _, at = fail(inst, now=T, retry=retry)
    assert at == T + 5 * SECOND
    log.take(inst)
    ticket, at2 = fail(inst, now=at, retry=retry)
    new = log.take(inst)

    assert ticket == RunTicket(1, 2)
    assert at2 is None
    assert names(new) == ["run_failed", "retry_exhausted", "alarm_cleared", "terminated"]
    failed, exhausted, _cleared, terminated = new
    assert isinstance(failed, ContinuousInstance.RunFailed)
    assert (failed.attempt, failed.will_retry) == (2, False)
    assert isinstance(exhausted, ContinuousInstance.RetryExhausted)
    assert (exhausted.run_count, exhausted.attempt, exhausted.action) == (1, 2, "terminate")
    assert isinstance(terminated, ContinuousInstance.Terminated)
    assert inst.status == "terminated"
    assert alarm(inst) is None
    assert inst.d.state is None


def test_exhausted_retries_with_pause_keep_the_state_and_stop() -> None:
    """X07 on_exhausted "pause": state kept, status failed, no alarm; trigger resumes."""
    log = Log()
    inst = start(counter(7), log=log)
    retry = Retry(max_attempts=2, delay=timedelta(seconds=5), jitter=0, on_exhausted="pause")
    _, at = fail(inst, now=T, retry=retry)
    assert at is not None
    log.take(inst)
    fail(inst, now=at, retry=retry)
    new = log.take(inst)

    assert names(new) == ["run_failed", "retry_exhausted", "alarm_cleared"]
    assert cast(ContinuousInstance.RetryExhausted, new[1]).action == "pause"
    assert inst.status == "failed"
    assert live(inst)
    assert alarm(inst) is None
    assert inst.d.state == counter(7)
    assert inst.d.attempt == 0

    # A trigger is a fresh run: it resumes the instance.
    ticket = succeed(inst, now=at + MINUTE, fresh=True, intents=Intents(state=counter(8)))
    assert ticket == RunTicket(2, 1)
    assert inst.status == "running"
    assert alarm(inst) == at + MINUTE + HALF_HOUR
    assert inst.d.state == counter(8)


def test_a_paused_instance_whose_trigger_fails_again_waits_for_a_retry() -> None:
    inst = start()
    retry = Retry(max_attempts=2, delay=timedelta(seconds=5), jitter=0, on_exhausted="pause")
    fail(inst, now=T, retry=retry)
    fail(inst, now=T + 5 * SECOND, retry=retry)
    assert inst.status == "failed"
    ticket, at = fail(inst, now=T + MINUTE, retry=retry, fresh=True)
    assert ticket == RunTicket(2, 1)
    assert at == T + MINUTE + 5 * SECOND
    assert inst.status == "running"
    assert alarm(inst) == at


def test_exhausted_retries_with_continue_schedule_the_next_regular_run() -> None:
    """X08 on_exhausted "continue": the next regular run is scheduled, status running."""
    log = Log()
    inst = start(log=log)
    retry = Retry(max_attempts=2, delay=timedelta(seconds=5), jitter=0, on_exhausted="continue")
    fail(inst, now=T, retry=retry)
    log.take(inst)
    fail(inst, now=T + 5 * SECOND, retry=retry)
    new = log.take(inst)

    assert names(new) == ["run_failed", "retry_exhausted", "alarm_set"]
    assert cast(ContinuousInstance.RetryExhausted, new[1]).action == "continue"
    assert inst.status == "running"
    assert alarm(inst) == T + 5 * SECOND + HALF_HOUR
    assert inst.d.attempt == 0
    assert inst.next_ticket(fresh=False) == RunTicket(2, 1)


def test_a_hook_decision_is_applied() -> None:
    """X08 A callable on_exhausted decides (here: terminate)."""
    inst = start()

    def hook(error: BaseException, ctx: Any) -> str:
        return "terminate"

    retry = Retry(max_attempts=1, jitter=0, on_exhausted=hook)
    ticket = inst.next_ticket(fresh=False)
    assert inst.plan_retry(ticket, retry, now=T) is None
    inst.fail_run(
        ticket,
        RuntimeError("x"),
        now=T,
        schedule=EVERY_30_MIN,
        retry=retry,
        retry_at=None,
        exhausted="terminate",
    )
    assert inst.status == "terminated"


def test_run_count_counts_runs_not_retries() -> None:
    """SPEC §2: run_count counts runs, succeeded or failed; retries do not count again."""
    inst = start()
    retry = Retry(max_attempts=3, delay=timedelta(seconds=5), jitter=0, on_exhausted="continue")
    fail(inst, now=T, retry=retry)  # run 1, try 1
    fail(inst, now=T + 5 * SECOND, retry=retry)  # run 1, try 2
    succeed(inst, now=T + 10 * SECOND)  # run 1, try 3
    assert inst.d.run_count == 1
    succeed(inst, now=T + HOUR)  # run 2
    fail(inst, now=T + 2 * HOUR, retry=retry)  # run 3
    fail(inst, now=T + 2 * HOUR + 5 * SECOND, retry=retry)
    fail(inst, now=T + 2 * HOUR + 10 * SECOND, retry=retry)  # exhausted: continue
    assert inst.d.run_count == 3
    succeed(inst, now=T + 3 * HOUR, fresh=True)  # a trigger: run 4
    assert inst.d.run_count == 4


def test_reschedule_moves_the_alarm_once() -> None:
    log = Log()
    inst = start(log=log)
    inst.reschedule(T + HOUR, now=T)
    inst.reschedule(T + HOUR, now=T)
    new = log.take(inst)
    assert names(new) == ["alarm_set"]
    assert alarm(inst) == T + HOUR


@pytest.mark.parametrize("outcome", ["succeeded", "failed with a retry", "failed"])
def test_a_run_committed_after_terminate_does_not_revive_the_instance(outcome: str) -> None:
    """C14 No run after terminate; SPEC §2 terminate cancels the alarm and removes the state.

    A run in flight when a client's terminate commits first (the runtime then
    reloads the aggregate after the version conflict and commits the run again)
    must leave the instance terminated: no alarm, no state.
    """
    inst = start(counter(0))
    ticket = inst.next_ticket(fresh=False)
    assert inst.terminate(now=T + SECOND, reason="user requested")
    inst.collect_events()
    try:
        if outcome == "succeeded":
            inst.complete_run(
                ticket,
                Intents(state=counter(1)),
                now=T + 2 * SECOND,
                duration=1.0,
                schedule=EVERY_30_MIN,
            )
        else:
            retry = Retry(3, jitter=0) if outcome == "failed with a retry" else None
            inst.fail_run(
                ticket,
                RuntimeError("x"),
                now=T + 2 * SECOND,
                schedule=EVERY_30_MIN,
                retry=retry,
                retry_at=inst.plan_retry(ticket, retry, now=T + 2 * SECOND),
            )
    except (ValueError, AssertionError, DurableJobsError):
        pass
    assert not live(inst)
    assert alarm(inst) is None
    assert inst.d.state is None


def test_a_run_of_an_old_generation_does_not_touch_the_new_one() -> None:
    """L05 A new start gives a fresh instance with the new input, even against a late commit."""
    inst = start(counter(0))
    for n in range(3):
        succeed(inst, now=T + n * HALF_HOUR)
    old_ticket = inst.next_ticket(fresh=False)
    inst.terminate(now=T + 2 * HOUR)
    ContinuousInstance.start(
        inst, JOB, "c1", now=T + 2 * HOUR, state=counter(50), first_run_at=T + 3 * HOUR
    )
    inst.collect_events()
    with contextlib.suppress(ValueError, AssertionError, DurableJobsError):
        inst.complete_run(
            old_ticket,
            Intents(state=counter(4)),
            now=T + 2 * HOUR + SECOND,
            duration=1.0,
            schedule=EVERY_30_MIN,
        )
    assert inst.d.generation == 2
    assert inst.d.state == counter(50)
    assert inst.d.run_count == 0
    assert alarm(inst) == T + 3 * HOUR


# --- recorded events ---------------------------------------------------------------------------


def test_event_names_are_the_spec_names() -> None:
    """SPEC §6 names the records of the log."""
    expected: dict[type[JobInstance.Event], str] = {
        ContinuousInstance.Started: "started",
        ContinuousInstance.Restarted: "started",
        ContinuousInstance.Terminated: "terminated",
        ContinuousInstance.StateChanged: "state_changed",
        ContinuousInstance.AlarmSet: "alarm_set",
        ContinuousInstance.AlarmCleared: "alarm_cleared",
        ContinuousInstance.RunSucceeded: "run_succeeded",
        ContinuousInstance.RunFailed: "run_failed",
        ContinuousInstance.RetryExhausted: "retry_exhausted",
        ContinuousInstance.EventAdded: "event_added",
        DebounceInstance.Flushed: "flushed",
        DebounceInstance.Cleared: "cleared",
        # Not in SPEC §6's list: debounce's first flush commit (see the design notes).
        DebounceInstance.BatchClosed: "batch_closed",
    }
    assert {cls: cls.NAME for cls in expected} == expected


def test_batch_events_and_fields_are_debounce_only() -> None:
    """A continuous instance has no batches: no batch events, no batch fields."""
    for name in ("BatchClosed", "Flushed", "Cleared"):
        assert not hasattr(ContinuousInstance, name)
        assert hasattr(DebounceInstance, name)
    inst = start(counter(100), log=Log())
    data = inst.d.model_dump()
    for field in ("closed", "next_batch_no", "closed_due_at", "batch_started_at"):
        assert field not in data


def test_run_records_carry_run_count_attempt_and_timing() -> None:
    """R06 Run records carry identity and timing."""
    log = Log()
    inst = start(counter(100), log=log)
    succeed(inst, now=T + SECOND, duration=0.25)
    log.take(inst)
    (run,) = log.of("run_succeeded")
    assert isinstance(run, ContinuousInstance.RunSucceeded)
    assert run.originator_id == inst.id == instance_uuid("continuous", JOB, "c1")
    assert run.originator_version == 3
    assert run.timestamp == T + SECOND
    assert (run.run_count, run.attempt) == (1, 1)
    assert isinstance(run.duration, float)
    assert run.duration == 0.25
    # Every event of the log has its version (consecutive) and its time.
    assert [e.originator_version for e in log.events] == list(range(1, len(log.events) + 1))


def test_run_failed_names_a_non_builtin_error_type_with_its_module() -> None:
    class QuotaError(Exception):
        pass

    log = Log()
    inst = start(log=log)
    fail(inst, now=T, retry=None, error=QuotaError("over quota"))
    log.take(inst)
    (failed,) = log.of("run_failed")
    assert isinstance(failed, ContinuousInstance.RunFailed)
    assert failed.error_type == error_type_name(QuotaError())
    assert failed.error_type == f"{__name__}.{QuotaError.__qualname__}"
    assert failed.message == "over quota"


def test_a_successful_run_is_recorded_with_its_pre_run_state() -> None:
    """R01 A successful run is recorded."""
    log = Log()
    inst = start(counter(5), log=log)
    succeed(inst, now=T, intents=Intents(state=counter(6, 0.0)))
    log.take(inst)
    (run,) = log.of("run_succeeded")
    assert isinstance(run, ContinuousInstance.RunSucceeded)
    assert (run.run_count, run.attempt) == (1, 1)
    assert state_before(log, run) == counter(5)


def test_the_pre_run_state_is_taken_before_the_handler_change() -> None:
    """R02 Pre-run state is taken before the handler's change."""
    log = Log()
    inst = start(counter(10), log=log)
    succeed(inst, now=T, intents=Intents(state=counter(11)))
    log.take(inst)
    (run,) = log.of("run_succeeded")
    assert state_before(log, run)["count"] == 10
    assert inst.d.state == counter(11)


@pytest.mark.parametrize("falsy", [counter(0), 0, 0.0, "", [], {}, False])
def test_falsy_pre_run_states_are_kept_as_they_are(falsy: Any) -> None:
    """R03 Falsy states are recorded as they are."""
    log = Log()
    inst = start(falsy, log=log)
    succeed(inst, now=T, intents=Intents(state=counter(1)))
    log.take(inst)
    (run,) = log.of("run_succeeded")
    before = state_before(log, run)
    assert before == falsy
    assert type(before) is type(falsy)


def test_a_failed_run_is_recorded_with_its_pre_run_state() -> None:
    """R04 A failed run is recorded."""
    log = Log()
    inst = start(counter(42, 999.0), log=log)
    fail(inst, now=T, retry=None, schedule=EVERY_HOUR)
    log.take(inst)
    (failed,) = log.of("run_failed")
    assert isinstance(failed, ContinuousInstance.RunFailed)
    assert failed.will_retry is False
    assert "Intentional test failure" in failed.message
    assert state_before(log, failed) == counter(42, 999.0)


def test_each_run_records_its_own_pre_run_state() -> None:
    """R05 Each run records its own pre-run state."""
    log = Log()
    inst = start(counter(0), log=log)
    succeed(inst, now=T, intents=Intents(state=counter(1)))
    succeed(inst, now=T + HALF_HOUR, intents=Intents(state=counter(2)))
    fail(inst, now=T + HOUR, retry=None)
    succeed(inst, now=T + 2 * HOUR, intents=Intents(state=counter(3)))
    log.take(inst)
    runs = [e for e in log.events if e.NAME in ("run_succeeded", "run_failed")]
    assert [state_before(log, r)["count"] for r in runs] == [0, 1, 2, 2]
    assert [cast(ContinuousInstance.RunSucceeded, r).run_count for r in runs] == [1, 2, 3, 4]


def test_the_log_rebuilds_the_live_instance() -> None:
    log = Log()
    inst = start(counter(0), log=log)
    retry = Retry(max_attempts=2, delay=timedelta(seconds=5), jitter=0, on_exhausted="pause")
    succeed(inst, now=T, intents=Intents(state=counter(1)))
    fail(inst, now=T + HALF_HOUR, retry=retry)
    log.take(inst)
    assert replay(log.events) == inst
    fail(inst, now=T + HALF_HOUR + 5 * SECOND, retry=retry)
    log.take(inst)
    rebuilt = replay(log.events)
    assert rebuilt == inst
    assert rebuilt.status == "failed"
    assert rebuilt.version == len(log.events)


def test_first_run_at_is_now_or_the_first_scheduled_time() -> None:
    """C01/C03 start_immediately runs now; otherwise the first scheduled time."""
    assert ContinuousInstance.first_run_at(EVERY_HOUR, now=T, start_immediately=True) == T
    assert ContinuousInstance.first_run_at(EVERY_HOUR, now=T, start_immediately=False) == T + HOUR
    nine = cron("0 9 * * *", tz="UTC")
    assert ContinuousInstance.first_run_at(nine, now=T, start_immediately=False) == datetime(
        2026, 3, 2, 9, tzinfo=UTC
    )
