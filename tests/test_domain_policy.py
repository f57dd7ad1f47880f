# The aggregate's fields change through the commands between asserts, which mypy
# cannot see: it calls the asserts after a narrowing one unreachable.
# mypy: disable-error-code="unreachable"
"""The domain plans and finishes runs under each kind's policy (no runtime involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import Intents
from durable_jobs._domain.policy import ContinuousPolicy, DebouncePolicy, RunEnd
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def hook(error: BaseException, ctx: object) -> str:
    return "pause"


def continuous(policy: ContinuousPolicy) -> ContinuousInstance:
    inst, _ = ContinuousInstance.start(None, "job", "i", now=T, state=0, first_run_at=T)
    inst.collect_events()
    return inst


def test_begin_run_needs_a_due_alarm_unless_manual() -> None:
    policy = ContinuousPolicy(every(HOUR))
    inst = continuous(policy)
    assert inst.begin_run(now=T - MINUTE, manual=False, policy=policy) is None
    ticket = inst.begin_run(now=T, manual=False, policy=policy)
    assert ticket is not None and (ticket.run_count, ticket.attempt) == (1, 1)
    assert inst.begin_run(now=T - MINUTE, manual=True, policy=policy) is not None


def test_a_misfire_skip_moves_the_alarm_instead_of_running() -> None:
    policy = ContinuousPolicy(every(HOUR), misfire="skip")
    inst = continuous(policy)
    ticket = inst.begin_run(now=T, manual=False, policy=policy)
    assert ticket is not None
    assert inst.finish_run(ticket, now=T, policy=policy, intents=Intents()) is RunEnd.DONE
    assert inst.d.alarm_at == T + HOUR
    inst.collect_events()
    late = T + 3 * HOUR + MINUTE
    assert inst.begin_run(now=late, manual=False, policy=policy) is None
    assert inst.d.alarm_at == T + 4 * HOUR  # the missed runs are skipped
    run_once = ContinuousPolicy(every(HOUR))
    assert inst.begin_run(now=late + 2 * HOUR, manual=False, policy=run_once) is not None


def test_a_misfire_skip_moves_a_first_slot_that_never_ran() -> None:
    """start_immediately=False: the first alarm is a slot of the schedule, and a
    clock that jumps past it (or a stall) skips it like any other; a first run
    that a start made due at once is not a slot, and runs however late."""
    policy = ContinuousPolicy(every(HOUR), misfire="skip")
    inst, _ = ContinuousInstance.start(None, "job", "i", now=T, state=0, first_run_at=T + HOUR)
    late = T + 5 * HOUR + 10 * timedelta(seconds=1)
    assert inst.begin_run(now=late, manual=False, policy=policy) is None
    assert inst.d.alarm_at == T + 6 * HOUR  # on the grid of the missed slot
    assert inst.begin_run(now=T + 6 * HOUR, manual=False, policy=policy) is not None
    at_once = continuous(policy)  # first_run_at=T: the start made it due
    assert at_once.begin_run(now=late, manual=False, policy=policy) is not None


def test_a_run_made_due_by_a_trigger_is_not_a_slot_and_runs_however_late() -> None:
    """A trigger made while no runtime served the store (the CLI on SQLite, or no worker
    up) sets the alarm to ring at once: misfire="skip" dropped it as a missed slot when
    the runtime started later, and the run the operator asked for never came. It runs;
    the schedule's own slots are still skipped after it, and it survives a rebuild."""
    policy = ContinuousPolicy(every(HOUR), misfire="skip")
    inst = continuous(policy)
    ticket = inst.begin_run(now=T, manual=False, policy=policy)
    assert ticket is not None
    assert inst.finish_run(ticket, now=T, policy=policy, intents=Intents()) is RunEnd.DONE
    triggered = T + 10 * MINUTE
    assert inst.due_now(now=triggered)
    events = inst.collect_events()
    assert inst.d.alarm_manual is True
    started = triggered + 2 * HOUR + 5 * MINUTE  # the runtime starts much later
    ticket = inst.begin_run(now=started, manual=False, policy=policy)
    assert ticket is not None  # not dropped
    assert inst.finish_run(ticket, now=started, policy=policy, intents=Intents()) is RunEnd.DONE
    assert inst.d.alarm_manual is False  # the next one is a slot again
    inst.collect_events()
    assert inst.begin_run(now=started + 3 * HOUR, manual=False, policy=policy) is None
    # A rebuild from the log knows the trigger's alarm as well.
    rebuilt = continuous(policy)
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt.d.alarm_manual


def test_finish_run_asks_for_the_exhausted_decision_only_from_a_hook() -> None:
    error = RuntimeError("boom")
    asked = ContinuousPolicy(every(HOUR), retry=Retry(1, on_exhausted=hook))
    inst = continuous(asked)
    ticket = inst.begin_run(now=T, manual=False, policy=asked)
    assert ticket is not None
    assert inst.finish_run(ticket, now=T, policy=asked, error=error) is RunEnd.ASK_EXHAUSTED
    assert inst.collect_events() == []  # nothing recorded yet
    end = inst.finish_run(ticket, now=T, policy=asked, error=error, exhausted="pause")
    assert end is RunEnd.DONE
    assert inst.status == "failed"

    fixed = ContinuousPolicy(every(HOUR), retry=Retry(1, on_exhausted="terminate"))
    inst = continuous(fixed)
    ticket = inst.begin_run(now=T, manual=False, policy=fixed)
    assert ticket is not None
    assert inst.finish_run(ticket, now=T, policy=fixed, error=error) is RunEnd.DONE
    assert inst.status == "terminated"

    retrying = ContinuousPolicy(every(HOUR), retry=Retry(2, delay=MINUTE, jitter=0))
    inst = continuous(retrying)
    ticket = inst.begin_run(now=T, manual=False, policy=retrying)
    assert ticket is not None
    assert inst.finish_run(ticket, now=T, policy=retrying, error=error) is RunEnd.RETRY
    assert inst.d.alarm_at == T + MINUTE


def test_finish_flush_under_a_policy() -> None:
    policy = DebouncePolicy(
        MINUTE, max_events=2, retry=Retry(2, delay=Backoff.constant(MINUTE), jitter=0)
    )
    inst, opened = DebounceInstance.collect(
        None, "job", "i", 1, now=T, new_state=1, idempotency_key=None, policy=policy
    )
    assert opened and inst.d.alarm_at == T + MINUTE
    inst, _ = DebounceInstance.collect(
        inst, "job", "i", 2, now=T, new_state=3, idempotency_key=None, policy=policy
    )
    assert inst.d.alarm_at == T  # max_events closed the batch: due now
    flush = inst.plan_flush(now=T, manual=False, policy=policy)
    assert flush is not None and flush.reason == "max_events"
    error = RuntimeError("x")
    assert inst.finish_flush(flush, now=T, policy=policy, error=error) is RunEnd.RETRY
    retry = inst.plan_flush(now=T + MINUTE, manual=False, policy=policy)
    assert retry is not None and retry.ticket.attempt == 2
    assert inst.finish_flush(retry, now=T + MINUTE, policy=policy) is RunEnd.DONE
    assert inst.finish_flush(retry, now=T + MINUTE, policy=policy) is RunEnd.STALE


def test_the_task_chain_is_decided_in_the_domain() -> None:
    inst, _ = TaskInstance.receive(
        None, "job", "i", 1, now=T, idempotency_key=None, window=timedelta(days=1)
    )
    ticket = inst.idle_ticket()
    error = RuntimeError("x")
    follow = inst.handler_failed(
        ticket, error, handler="execute", now=T, alarm=None, has_on_error=True
    )
    assert follow == "on_error"
    assert (
        inst.handler_failed(
            ticket, error, handler="on_error", now=T, alarm=None, has_on_error=True
        )
        is None
    )
    idle = inst.handler_succeeded(
        ticket, Intents(), handler="on_error", now=T, duration=0, alarm=None, has_on_idle=True
    )
    assert idle == "on_idle"
    assert (
        inst.handler_succeeded(
            ticket, Intents(), handler="on_idle", now=T, duration=0, alarm=None, has_on_idle=True
        )
        is None
    )
    assert inst.retry_scheduled(failed=True, by_alarm=True, alarm_before=None) is False
    inst.set_alarm(T + MINUTE, now=T)
    assert inst.retry_scheduled(failed=True, by_alarm=True, alarm_before=None) is True
    assert inst.retry_scheduled(failed=True, by_alarm=False, alarm_before=T + MINUTE) is False
    assert inst.retry_scheduled(failed=False, by_alarm=True, alarm_before=None) is False
