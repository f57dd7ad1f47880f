# Assertions narrow the attributes of a mutable aggregate, and the commands that change
# them next are invisible to mypy, which then calls the following asserts unreachable.
# mypy: disable-error-code="unreachable"
"""Task instances: ``receive`` and ``apply_intents`` against SPEC §4 and §6.

The runtime is played by hand: ``send`` is ``receive`` then the ``on_event``
run's outcome committed with ``apply_intents`` (keeping the alarm unless the
handler changed it); an alarm-fired ``execute`` commits with ``alarm=None``
(the alarm was used), a ``trigger`` keeps the alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import UNCHANGED, Handler, Intents, JobInstance, RunTicket
from durable_jobs._domain.task import TaskInstance
from durable_jobs._errors import DurableJobsError

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
WINDOW = timedelta(hours=24)
JOB = "my_task"


class Log:
    def __init__(self) -> None:
        self.events: list[JobInstance.Event] = []

    def take(self, agg: JobInstance) -> list[JobInstance.Event]:
        new = [cast(JobInstance.Event, e) for e in agg.collect_events()]
        self.events.extend(new)
        return new

    def names(self) -> list[str]:
        return [e.NAME for e in self.events]


def names(events: Sequence[JobInstance.Event]) -> list[str]:
    return [e.NAME for e in events]


def replay(events: Sequence[JobInstance.Event]) -> TaskInstance:
    agg: Any = None
    for e in events:
        agg = e.mutate(agg)
    assert isinstance(agg, TaskInstance)
    return agg


def alarm(inst: TaskInstance) -> datetime | None:
    return inst.d.alarm_at


def receive(
    existing: TaskInstance | None,
    event: Any = None,
    *,
    now: datetime = T,
    key: str | None = None,
) -> tuple[TaskInstance, bool]:
    return TaskInstance.receive(
        existing,
        JOB,
        "t1",
        {"n": 1} if event is None else event,
        now=now,
        idempotency_key=key,
        window=WINDOW,
    )


def on_event(inst: TaskInstance, intents: Intents, *, now: datetime) -> None:
    """Commit an on_event run that returned ``intents``: the alarm stays unless changed."""
    inst.record_success(RunTicket(inst.d.run_count, 1), handler="on_event", now=now, duration=0)
    inst.apply_intents(intents, now=now, alarm=inst.d.alarm_at)


def execute(
    inst: TaskInstance, intents: Intents, *, now: datetime, fired_by_alarm: bool
) -> RunTicket:
    """Commit an execute run: an alarm run used its alarm, a trigger keeps it."""
    ticket = inst.next_ticket(fresh=True)
    base = None if fired_by_alarm else inst.d.alarm_at
    inst.record_success(ticket, handler="execute", now=now, duration=0.5)
    inst.apply_intents(intents, now=now, alarm=base)
    return ticket


# --- receive -----------------------------------------------------------------------------------


def test_receive_creates_the_instance_with_no_state() -> None:
    """T02 The first send creates (S01: no state until a handler sets one)."""
    inst, created = receive(None, {"kind": "increment"})
    assert created is True
    assert inst.id == instance_uuid("task", JOB, "t1")
    assert inst.d.state is None
    assert inst.d.event_count == 1
    assert inst.d.execute_count == 0
    assert inst.d.created_at == T
    assert inst.status == "idle"
    assert alarm(inst) is None
    events = [cast(JobInstance.Event, e) for e in inst.collect_events()]
    assert names(events) == ["started", "event_added"]
    started, added = events
    assert isinstance(started, TaskInstance.Started)
    assert (started.kind, started.job, started.instance_id) == ("task", JOB, "t1")
    assert started.state is None
    assert started.timestamp == T
    assert isinstance(added, TaskInstance.EventAdded)
    assert added.event == {"kind": "increment"}


def test_receive_counts_events_of_an_existing_instance() -> None:
    """T02 Every send counts. L03 Later changes carry their own time."""
    inst, _ = receive(None)
    inst.collect_events()
    again, created = receive(inst, now=T + 5 * SECOND)
    assert again is inst
    assert created is False
    assert inst.d.event_count == 2
    assert inst.d.created_at == T
    (added,) = inst.collect_events()
    assert added.timestamp == T + 5 * SECOND


def test_receive_restarts_a_terminated_instance_with_fresh_counters() -> None:
    log = Log()
    inst, _ = receive(None, key="k1")
    on_event(inst, Intents(state={"count": 3}, schedule=T + MINUTE), now=T)
    execute(inst, Intents(), now=T + MINUTE, fired_by_alarm=True)
    assert inst.d.execute_count == 1
    assert inst.terminate(now=T + 2 * MINUTE)
    log.take(inst)
    assert inst.status == "terminated"
    # Terminating keeps the counters of the generation that ended (all of them).
    assert (inst.d.run_count, inst.d.execute_count, inst.d.event_count) == (1, 1, 1)

    again, created = receive(inst, now=T + 3 * MINUTE)
    log.take(inst)
    assert again is inst
    assert created is True
    assert inst.d.generation == 2
    assert inst.d.state is None
    assert inst.d.event_count == 1
    assert inst.d.execute_count == 0
    assert inst.d.created_at == T + 3 * MINUTE
    assert inst.status == "idle"
    # Idempotency keys survive the restart.
    assert inst.is_duplicate("k1", now=T + 3 * MINUTE, window=WINDOW)
    assert replay(log.events) == inst


def test_receive_records_the_idempotency_key() -> None:
    inst, _ = receive(None, key="req-1")
    assert inst.is_duplicate("req-1", now=T + SECOND, window=WINDOW)
    assert not inst.is_duplicate("req-2", now=T + SECOND, window=WINDOW)
    assert not inst.is_duplicate("req-1", now=T + WINDOW, window=WINDOW)


# --- on_event ----------------------------------------------------------------------------------


def test_on_event_sets_the_state() -> None:
    """S02 set_state round-trips (in the log)."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(state={"count": 42, "name": "test"}), now=T)
    assert names(log.take(inst)) == ["started", "event_added", "run_succeeded", "state_changed"]
    assert inst.d.state == {"count": 42, "name": "test"}
    assert replay(log.events).d.state == {"count": 42, "name": "test"}


def test_on_event_that_changes_nothing_records_only_its_run() -> None:
    inst, _ = receive(None)
    inst.collect_events()
    on_event(inst, Intents(), now=T)
    assert names([cast(JobInstance.Event, e) for e in inst.collect_events()]) == ["run_succeeded"]
    assert inst.d.state is None


def test_on_event_keeps_the_alarm_unless_it_changes_it() -> None:
    """T06 ctx.schedule in on_event sets the alarm; a later event that schedules nothing keeps it.

    A05 scheduled_at reads the alarm.
    """
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + 500 * SECOND), now=T)
    assert alarm(inst) == T + 500 * SECOND
    assert inst.status == "active"
    inst.collect_events()

    receive(inst, now=T + SECOND)
    on_event(inst, Intents(state={"count": 1}), now=T + SECOND)
    new = [cast(JobInstance.Event, e) for e in inst.collect_events()]
    assert names(new) == ["event_added", "run_succeeded", "state_changed"]
    assert alarm(inst) == T + 500 * SECOND


def test_a_new_schedule_replaces_the_alarm() -> None:
    """A07 Relative times use the current clock: the later schedule replaces the alarm."""
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + MINUTE), now=T)
    receive(inst, now=T + 30 * SECOND)
    on_event(inst, Intents(schedule=T + 30 * SECOND + MINUTE), now=T + 30 * SECOND)
    assert alarm(inst) == T + 90 * SECOND


def test_the_last_schedule_is_the_one_alarm() -> None:
    """A06 The last schedule wins (the context keeps the last; the domain sets one alarm)."""
    log = Log()
    inst, _ = receive(None)
    log.take(inst)
    on_event(inst, Intents(schedule=T + 200 * SECOND), now=T)
    new = log.take(inst)
    assert names(new) == ["run_succeeded", "alarm_set"]
    assert alarm(inst) == T + 200 * SECOND


def test_schedule_none_cancels_the_alarm() -> None:
    """A04 cancel_schedule undoes schedule (T07 cancel_schedule removes the alarm)."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + 1000 * SECOND), now=T)
    log.take(inst)
    receive(inst, now=T + SECOND)
    on_event(inst, Intents(schedule=None), now=T + SECOND)
    new = log.take(inst)
    assert names(new) == ["event_added", "run_succeeded", "alarm_cleared"]
    assert alarm(inst) is None
    assert inst.status == "idle"


def test_schedule_none_without_an_alarm_records_nothing() -> None:
    inst, _ = receive(None)
    inst.collect_events()
    inst.apply_intents(Intents(schedule=None), now=T, alarm=None)
    assert inst.collect_events() == []


def test_scheduling_the_same_time_again_records_nothing() -> None:
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + MINUTE), now=T)
    inst.collect_events()
    inst.apply_intents(Intents(schedule=T + MINUTE), now=T, alarm=alarm(inst))
    assert inst.collect_events() == []


def test_setting_the_state_to_none_is_a_change() -> None:
    inst, _ = receive(None)
    on_event(inst, Intents(state={"count": 1}), now=T)
    on_event(inst, Intents(state=None), now=T + SECOND)
    assert inst.d.state is None
    assert Intents(state=None).state_changed
    assert not Intents().state_changed
    assert Intents(schedule=None).schedule_changed
    assert not Intents(schedule=UNCHANGED).schedule_changed


# --- execute -----------------------------------------------------------------------------------


def test_an_alarm_fired_execute_that_schedules_nothing_leaves_no_alarm() -> None:
    """X15 Task scheduled_at is the committed alarm: idle, None after the alarm fired."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + 5 * SECOND), now=T)
    log.take(inst)
    ticket = execute(inst, Intents(), now=T + 5 * SECOND, fired_by_alarm=True)
    new = log.take(inst)

    assert ticket == RunTicket(1, 1)
    assert names(new) == ["run_succeeded", "alarm_cleared"]
    run = new[0]
    assert isinstance(run, TaskInstance.RunSucceeded)
    assert (run.handler, run.run_count, run.attempt) == ("execute", 1, 1)
    assert alarm(inst) is None
    assert inst.status == "idle"
    assert inst.d.execute_count == 1


def test_an_alarm_fired_execute_that_schedules_again_is_reported() -> None:
    """X15 had execute scheduled T + 1 min, that is reported."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + 5 * SECOND), now=T)
    log.take(inst)
    execute(inst, Intents(schedule=T + MINUTE), now=T + 5 * SECOND, fired_by_alarm=True)
    assert names(log.take(inst)) == ["run_succeeded", "alarm_set"]
    assert alarm(inst) == T + MINUTE
    assert inst.status == "active"


def test_a_trigger_keeps_the_alarm_unless_changed() -> None:
    """SPEC §4 trigger: an existing alarm stays unless a handler changes it."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(schedule=T + MINUTE), now=T)
    log.take(inst)
    execute(inst, Intents(state={"done": True}), now=T + SECOND, fired_by_alarm=False)
    assert names(log.take(inst)) == ["run_succeeded", "state_changed"]
    assert alarm(inst) == T + MINUTE
    execute(inst, Intents(schedule=None), now=T + 2 * SECOND, fired_by_alarm=False)
    assert alarm(inst) is None


def test_execute_count_counts_execute_runs_only() -> None:
    """T04 trigger runs execute and counts it; T08 the alarm runs execute (failed runs too)."""
    inst, _ = receive(None)
    on_event(inst, Intents(), now=T)
    assert inst.d.execute_count == 0

    execute(inst, Intents(), now=T + SECOND, fired_by_alarm=False)
    assert inst.d.execute_count == 1

    ticket = inst.next_ticket(fresh=True)
    assert ticket == RunTicket(2, 1)
    inst.record_failure(ticket, RuntimeError("x"), handler="execute", now=T, retry_at=None)
    assert inst.d.execute_count == 2
    assert inst.d.attempt == 0

    handlers: tuple[Handler, ...] = ("on_event", "on_idle", "on_error")
    for handler in handlers:
        inst.record_success(RunTicket(9, 1), handler=handler, now=T, duration=0)
        inst.record_failure(RunTicket(9, 1), ValueError(), handler=handler, now=T, retry_at=None)
    assert inst.d.execute_count == 2
    assert inst.next_ticket(fresh=True) == RunTicket(3, 1)


def test_a_failed_execute_keeps_the_last_committed_state() -> None:
    """X14 Task handler errors: without on_error the state stays, run_failed is recorded."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(state={"count": 1}), now=T)
    log.take(inst)
    ticket = inst.next_ticket(fresh=True)
    inst.record_failure(ticket, RuntimeError("boom"), handler="execute", now=T, retry_at=None)
    new = log.take(inst)
    assert names(new) == ["run_failed"]
    failed = new[0]
    assert isinstance(failed, TaskInstance.RunFailed)
    assert (failed.handler, failed.error_type) == ("execute", "RuntimeError")
    assert failed.message == "boom"
    assert failed.will_retry is False
    assert inst.d.state == {"count": 1}


def test_on_error_can_schedule_a_retry() -> None:
    """X14 With an on_error that schedules 30 s: the alarm is at now + 30 s."""
    log = Log()
    inst, _ = receive(None)
    ticket = inst.next_ticket(fresh=True)
    inst.record_failure(ticket, RuntimeError("boom"), handler="execute", now=T, retry_at=None)
    inst.record_success(ticket, handler="on_error", now=T, duration=0)
    inst.apply_intents(Intents(schedule=T + 30 * SECOND), now=T, alarm=alarm(inst))
    new = log.take(inst)
    assert names(new)[-3:] == ["run_failed", "run_succeeded", "alarm_set"]
    assert alarm(inst) == T + 30 * SECOND
    assert inst.status == "active"


def test_on_idle_can_rearm() -> None:
    """T10 on_idle can re-arm."""
    inst, _ = receive(None)
    on_event(inst, Intents(), now=T)
    assert alarm(inst) is None  # so the runtime runs on_idle
    inst.record_success(RunTicket(0, 1), handler="on_idle", now=T, duration=0)
    inst.apply_intents(Intents(schedule=T + 10 * SECOND), now=T, alarm=alarm(inst))
    assert alarm(inst) == T + 10 * SECOND
    assert inst.status == "active"


# --- terminate ---------------------------------------------------------------------------------


def test_a_handler_can_terminate() -> None:
    """T11 Terminate purges state and cancels the alarm (from a handler)."""
    log = Log()
    inst, _ = receive(None)
    on_event(inst, Intents(state={"count": 1}, schedule=T + MINUTE), now=T)
    log.take(inst)
    on_event(inst, Intents(state={"count": 2}, terminate=True, terminate_reason="done"), now=T)
    new = log.take(inst)
    assert names(new) == ["run_succeeded", "state_changed", "alarm_cleared", "terminated"]
    terminated = new[-1]
    assert isinstance(terminated, TaskInstance.Terminated)
    assert terminated.reason == "done"
    assert inst.status == "terminated"
    assert not inst.live
    assert inst.d.state is None
    assert alarm(inst) is None
    assert replay(log.events) == inst


def test_a_terminate_intent_wins_over_a_schedule() -> None:
    inst, _ = receive(None)
    inst.apply_intents(Intents(schedule=T + MINUTE, terminate=True), now=T, alarm=None)
    assert inst.status == "terminated"
    assert alarm(inst) is None


def test_terminate_from_the_client() -> None:
    """T11 Terminate purges state and cancels the alarm."""
    inst, _ = receive(None)
    on_event(inst, Intents(state={"count": 1}, schedule=T + MINUTE), now=T)
    assert inst.terminate(now=T + SECOND)
    assert inst.status == "terminated"
    assert alarm(inst) is None
    assert inst.d.state is None
    assert inst.terminate(now=T + 2 * SECOND) is False


def test_a_handler_outcome_committed_after_terminate_does_not_revive_the_instance() -> None:
    """T11 Terminate purges state and cancels the alarm, also against a late commit."""
    inst, _ = receive(None)
    assert inst.terminate(now=T + SECOND)
    inst.collect_events()
    try:
        inst.record_success(RunTicket(1, 1), handler="execute", now=T + 2 * SECOND, duration=1.0)
        inst.apply_intents(
            Intents(state={"count": 1}, schedule=T + MINUTE), now=T + 2 * SECOND, alarm=None
        )
    except (ValueError, AssertionError, DurableJobsError):
        pass
    assert not inst.live
    assert alarm(inst) is None
    assert inst.d.state is None


def test_status_follows_the_alarm() -> None:
    inst, _ = receive(None)
    assert inst.status == "idle"
    inst.set_alarm(T + MINUTE, now=T)
    assert inst.status == "active"
    inst.set_alarm(None, now=T)
    assert inst.status == "idle"


# --- idempotency keys at scale -----------------------------------------------------------------


class _CountingKeys(dict[str, datetime]):
    """The instance's key map, counting the entries a scan of it looks at."""

    looked_at = 0

    def items(self) -> Any:
        for item in super().items():
            _CountingKeys.looked_at += 1
            yield item


def test_forgetting_keys_looks_only_at_the_expired_ones_and_one_more() -> None:
    """Keys are kept in the order they were accepted, so the expired ones lead: an add
    looks at them and at the first key still in its window, not at every key (an add
    with 20,000 keys remembered was ten times slower than with none)."""
    inst: TaskInstance | None = None
    for i in range(1000):  # one a minute: all within the window
        inst, _ = receive(inst, now=T + i * MINUTE, key=f"k{i}")
    assert inst is not None
    inst.collect_events()
    # Accepted again once expired: forgotten first, then added at the end.
    later = T + WINDOW + 5 * MINUTE
    inst.d.idempotency = _CountingKeys(inst.d.idempotency)
    _CountingKeys.looked_at = 0
    expired = inst.expired_keys(now=later, window=WINDOW)
    assert expired == [f"k{i}" for i in range(6)]  # accepted at T .. T+5 min
    assert _CountingKeys.looked_at == len(expired) + 1
    inst, _ = receive(inst, now=later, key="k0")
    [added] = inst.collect_events()
    assert isinstance(added, TaskInstance.EventAdded)
    assert added.expired_keys == expired
    assert list(inst.d.idempotency)[-1] == "k0"
    assert inst.is_duplicate("k0", now=later + MINUTE, window=WINDOW)
    assert not inst.is_duplicate("k3", now=later + MINUTE, window=WINDOW)
