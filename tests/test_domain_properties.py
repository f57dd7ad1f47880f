"""Hypothesis: random command sequences on each kind keep the domain's invariants.

Each test drives one instance the way the runtime would (only commands the
runtime can issue in that situation), keeps a small reference model, and after
every step checks: the log rebuilds the live aggregate (and so does a JSON
snapshot); the version is the number of events; a terminated instance has no
alarm; plus the kind's own rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance, FlushTicket
from durable_jobs._domain.instance import (
    UNCHANGED,
    InstanceSnapshot,
    Intents,
    JobInstance,
    RunTicket,
)
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SCHEDULE = every(timedelta(minutes=10))
FLUSH_AFTER = timedelta(minutes=5)
WINDOW = timedelta(hours=1)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

steps = st.integers(min_value=1, max_value=30)
pauses = st.sampled_from(
    [timedelta(0), SECOND, 10 * SECOND, timedelta(minutes=3), timedelta(minutes=10), WINDOW]
)


def retries(*, exhausted: Sequence[str]) -> st.SearchStrategy[Retry | None]:
    policy = st.builds(
        Retry,
        max_attempts=st.integers(min_value=1, max_value=4),
        delay=st.sampled_from(
            [timedelta(seconds=5), Backoff.exponential(), Backoff.linear(SECOND, SECOND)]
        ),
        jitter=st.sampled_from([0.0, 0.1]),
        max_duration=st.sampled_from([None, timedelta(seconds=20)]),
        on_exhausted=st.sampled_from(list(exhausted)),
    )
    return st.one_of(st.none(), policy, policy)


def replay(events: Sequence[JobInstance.Event]) -> JobInstance:
    agg: Any = None
    for e in events:
        agg = e.mutate(agg)
    assert isinstance(agg, JobInstance)
    return agg


def check_log(inst: JobInstance, log: list[JobInstance.Event]) -> None:
    """Collect the pending events into ``log`` and check the kind-independent invariants."""
    log.extend(cast(JobInstance.Event, e) for e in inst.collect_events())
    assert inst.version == len(log)
    assert [e.originator_version for e in log] == list(range(1, len(log) + 1))
    assert all(e.originator_id == inst.id for e in log)
    assert all(e.NAME for e in log)
    rebuilt = replay(log)
    assert type(rebuilt) is type(inst)
    assert rebuilt == inst
    # A snapshot, through JSON, rebuilds it too.
    snap = InstanceSnapshot.take(inst)
    stored = InstanceSnapshot(
        originator_id=snap.originator_id,
        originator_version=snap.originator_version,
        timestamp=snap.timestamp,
        topic=snap.topic,
        state=json.loads(json.dumps(snap.state)),
    )
    assert stored.mutate(None) == inst
    if not inst.live:
        assert inst.d.alarm_at is None
        assert inst.d.state is None
        assert inst.status == "terminated"


# --- continuous --------------------------------------------------------------------------------


@dataclass
class ContinuousModel:
    live: bool = False
    generation: int = 0
    run_count: int = 0
    attempt: int = 0  # the failed try of the run waiting for a retry (0: none)
    retry_at: datetime | None = None
    paused: bool = False
    state: Any = None
    alarm_at: datetime | None = None


@SETTINGS
@given(st.data(), retries(exhausted=["terminate", "pause", "continue"]))
def test_continuous_command_sequences(data: st.DataObject, retry: Retry | None) -> None:
    inst: ContinuousInstance | None = None
    log: list[JobInstance.Event] = []
    m = ContinuousModel()
    now = T
    for _ in range(data.draw(steps)):
        now += data.draw(pauses)
        options = ["start"]
        if m.live:
            options += ["trigger", "terminate"] + (["alarm"] * 4 if m.alarm_at else [])
        command = data.draw(st.sampled_from(options))
        if command == "start":
            immediately = data.draw(st.booleans())
            first = now if immediately else SCHEDULE.next_fire(now)
            state = data.draw(st.integers(0, 9))
            inst, created = ContinuousInstance.start(
                inst, "job", "c1", now=now, state=state, first_run_at=first
            )
            assert created is not m.live
            if created:
                m = ContinuousModel(
                    live=True, generation=m.generation + 1, state=state, alarm_at=first
                )
            else:
                assert inst.collect_events() == []
        elif command == "terminate":
            assert inst is not None
            assert inst.terminate(now=now)
            m = ContinuousModel(generation=m.generation, run_count=m.run_count)
        else:
            assert inst is not None
            fresh = command == "trigger"
            if not fresh:
                assert m.alarm_at is not None
                now = max(now, m.alarm_at)
            ticket = inst.next_ticket(fresh=fresh)
            retrying = m.attempt > 0 and not fresh
            if retrying:
                expected = RunTicket(m.run_count, m.attempt + 1, inst.d.generation)
            else:
                expected = RunTicket(m.run_count + 1, 1, inst.d.generation)
            assert ticket == expected
            m.run_count = ticket.run_count
            if data.draw(st.booleans(), label="succeeds"):
                new_state = data.draw(st.sampled_from([UNCHANGED, 0, 1, 2]))
                terminate = data.draw(st.integers(0, 9)) == 0
                inst.complete_run(
                    ticket,
                    Intents(state=new_state, terminate=terminate),
                    now=now,
                    duration=0.0,
                    schedule=SCHEDULE,
                )
                if terminate:
                    m = ContinuousModel(generation=m.generation, run_count=m.run_count)
                else:
                    if new_state is not UNCHANGED:
                        m.state = new_state
                    m.attempt, m.retry_at, m.paused = 0, None, False
                    m.alarm_at = SCHEDULE.next_fire(now)
            else:
                retry_at = inst.plan_retry(ticket, retry, now=now)
                action = None
                if retry is not None and retry_at is None:
                    assert isinstance(retry.on_exhausted, str)
                    action = retry.on_exhausted
                inst.fail_run(
                    ticket,
                    RuntimeError("boom"),
                    now=now,
                    schedule=SCHEDULE,
                    retry=retry,
                    retry_at=retry_at,
                    exhausted=action,
                )
                if retry_at is not None:
                    assert retry is not None
                    assert ticket.attempt < retry.max_attempts
                    assert retry_at > now
                    m.attempt, m.retry_at, m.paused, m.alarm_at = (
                        ticket.attempt,
                        retry_at,
                        False,
                        retry_at,
                    )
                elif action == "terminate":
                    m = ContinuousModel(generation=m.generation, run_count=m.run_count)
                else:
                    m.attempt, m.retry_at = 0, None
                    m.paused = action == "pause"
                    m.alarm_at = None if m.paused else SCHEDULE.next_fire(now)

        assert inst is not None
        check_log(inst, log)
        d = inst.d
        assert inst.live is m.live
        assert d.generation == m.generation
        assert d.run_count == m.run_count
        assert d.alarm_at == m.alarm_at
        assert d.state == m.state
        assert inst.status == ("terminated" if not m.live else "failed" if m.paused else "running")
        # attempt == 0 unless a retry alarm is pending.
        assert d.attempt == m.attempt
        if d.attempt:
            assert d.alarm_at is not None
            assert d.alarm_at == m.retry_at
            assert inst.status == "running"
            assert d.first_failure_at is not None
        else:
            assert d.first_failure_at is None
        if m.paused:
            assert d.alarm_at is None


# --- debounce ----------------------------------------------------------------------------------


@dataclass
class DebounceModel:
    next_event: int = 0
    accepted: list[int] = field(default_factory=list)
    flushed: list[list[int]] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    keys: dict[str, datetime] = field(default_factory=dict)


@SETTINGS
@given(
    st.data(),
    retries(exhausted=["terminate", "pause"]),
    st.none() | st.integers(min_value=1, max_value=4),
)
def test_debounce_command_sequences(
    data: st.DataObject, retry: Retry | None, max_events: int | None
) -> None:
    inst: DebounceInstance | None = None
    log: list[JobInstance.Event] = []
    m = DebounceModel()
    in_flight: FlushTicket | None = None
    stale = False  # the flush in flight lost its batch (clear or terminate)
    now = T
    key_pool = ["k1", "k2", "k3"]
    for _ in range(data.draw(steps)):
        now += data.draw(pauses)
        options = ["add"] * 3
        if inst is not None:
            options += ["clear", "terminate"]
            if in_flight is not None:
                options += ["finish"] * 4
            else:
                # The runtime runs one flush of an instance at a time.
                options += ["flush"] + (["alarm"] * 4 if inst.d.alarm_at else [])
        command = data.draw(st.sampled_from(options))
        if command == "add":
            key = data.draw(st.sampled_from([None, *key_pool]))
            if key is not None:
                duplicate = key in m.keys and now < m.keys[key] + WINDOW
                if inst is not None:
                    assert inst.is_duplicate(key, now=now, window=WINDOW) is duplicate
                if duplicate:
                    continue
            event = m.next_event
            m.next_event += 1
            # SPEC's `created`: the add opened a batch on a new, idle or terminated instance.
            was_empty = inst is None or not inst.live or inst.status == "idle"
            state = None if inst is None else inst.batch_state
            inst, opened = DebounceInstance.add(
                inst,
                "job",
                "b1",
                event,
                now=now,
                new_state=[*(state or []), event],
                idempotency_key=key,
                window=WINDOW,
                flush_after=FLUSH_AFTER,
                max_events=max_events,
            )
            assert opened is was_empty
            m.accepted.append(event)
            m.keys = {k: at for k, at in m.keys.items() if now < at + WINDOW}
            if key is not None:
                m.keys[key] = now
        elif inst is None:
            raise AssertionError(command)
        elif command in ("alarm", "flush"):
            manual = command == "flush"
            if not manual:
                assert inst.d.alarm_at is not None
                now = max(now, inst.d.alarm_at)
            before = inst.version
            flush = inst.begin_flush(now=now, manual=manual, flush_after=FLUSH_AFTER)
            if flush is None:
                assert inst.collect_events() == [] and inst.version == before
                if manual:
                    assert inst.buffered_events == 0
            else:
                in_flight, stale = flush, False
                assert flush.batch == inst.d.closed[0]
                assert flush.reason == ("manual" if manual else flush.batch.reason)
                assert flush.batch.event_count == len(cast(list[int], flush.batch.state))
        elif command == "finish":
            assert in_flight is not None
            flush, in_flight = in_flight, None
            before = inst.version
            if data.draw(st.booleans(), label="succeeds"):
                ok = inst.flush_succeeded(flush, now=now, duration=0.0, flush_after=FLUSH_AFTER)
                if ok:
                    m.flushed.append(cast(list[int], flush.batch.state))
            else:
                retry_at = inst.plan_retry(flush.ticket, retry, now=now)
                action = None
                if retry is not None and retry_at is None:
                    assert isinstance(retry.on_exhausted, str)
                    action = retry.on_exhausted
                buffered = _buffered(inst)
                ok = inst.flush_failed(
                    flush,
                    RuntimeError("boom"),
                    now=now,
                    retry_at=retry_at,
                    exhausted=action,
                    flush_after=FLUSH_AFTER,
                )
                if ok and action == "terminate":
                    m.discarded.extend(buffered)
                if ok and retry_at is not None:
                    assert inst.d.alarm_at == retry_at
            assert ok is not stale
            if not ok:
                assert inst.collect_events() == [] and inst.version == before
        elif command == "clear":
            buffered = _buffered(inst)
            assert inst.clear(now=now) == len(buffered)
            m.discarded.extend(buffered)
            stale = stale or (in_flight is not None and bool(buffered))
        else:
            buffered = _buffered(inst)
            terminated = inst.terminate(now=now)
            m.discarded.extend(buffered)
            stale = stale or (in_flight is not None and terminated)

        assert inst is not None
        check_log(inst, log)
        _check_debounce(inst, m, max_events)


def _buffered(inst: DebounceInstance) -> list[int]:
    """Every event not yet flushed, oldest batch first."""
    events: list[int] = []
    for batch in inst.d.closed:
        events.extend(cast(list[int], batch.state))
    if inst.d.event_count:
        events.extend(cast(list[int], inst.d.state))
    return events


def _check_debounce(inst: DebounceInstance, m: DebounceModel, max_events: int | None) -> None:
    d = inst.d
    # No batch exceeds max_events; the open one is closed when it reaches it.
    for batch in d.closed:
        assert 0 < batch.event_count == len(cast(list[int], batch.state))
        assert max_events is None or batch.event_count <= max_events
    assert max_events is None or d.event_count < max_events
    assert d.event_count == len(cast(list[int], d.state or []))
    # buffered_events is the sum of the batch counts, and it is every unflushed event.
    buffered = _buffered(inst)
    assert inst.buffered_events == d.event_count + sum(b.event_count for b in d.closed)
    assert inst.buffered_events == len(buffered)
    # Nothing is lost or flushed twice, and batches flush in order.
    flushed = [e for batch in m.flushed for e in batch]
    everything = flushed + m.discarded + buffered
    assert sorted(everything) == m.accepted
    assert flushed == sorted(flushed)
    assert buffered == sorted(buffered)
    assert [b.batch_no for b in d.closed] == sorted({b.batch_no for b in d.closed})
    # Status, state and alarm agree.
    if not inst.live:
        assert inst.status == "terminated"
        assert buffered == []
    elif not buffered:
        assert inst.status == "idle"
        assert d.alarm_at is None
        assert inst.current_state is None
        assert inst.started_at is None
    elif d.closed and d.paused:
        assert inst.status == "failed"
        assert d.alarm_at is None
    else:
        assert inst.status == "debouncing"
        # A waiting batch is never stranded: something will flush it.
        assert d.alarm_at is not None
        if not d.closed:
            assert d.batch_started_at is not None
            assert d.alarm_at == d.batch_started_at + FLUSH_AFTER
    if d.closed:
        assert inst.current_state == d.closed[0].state
        assert inst.started_at == d.closed[0].started_at
    elif buffered:
        assert inst.current_state == d.state
        assert inst.started_at == d.batch_started_at
    if not d.closed:
        assert d.attempt == 0
        assert not d.paused


# --- task --------------------------------------------------------------------------------------


@dataclass
class TaskModel:
    live: bool = False
    event_count: int = 0
    execute_count: int = 0
    state: Any = None
    alarm_at: datetime | None = None


def _intents(data: st.DataObject, now: datetime) -> Intents:
    return Intents(
        state=data.draw(st.sampled_from([UNCHANGED, None, 1, 2])),
        schedule=data.draw(
            st.sampled_from([UNCHANGED, None, now + SECOND, now + timedelta(minutes=2)])
        ),
        terminate=data.draw(st.integers(0, 14)) == 0,
    )


def _apply(m: TaskModel, intents: Intents, *, base: datetime | None) -> TaskModel:
    if intents.terminate:
        return TaskModel(live=False, event_count=m.event_count, execute_count=m.execute_count)
    if intents.state_changed:
        m.state = intents.state
    m.alarm_at = intents.schedule if intents.schedule_changed else base
    return m


@SETTINGS
@given(st.data())
def test_task_command_sequences(data: st.DataObject) -> None:
    inst: TaskInstance | None = None
    log: list[JobInstance.Event] = []
    m = TaskModel()
    now = T
    for _ in range(data.draw(steps)):
        now += data.draw(pauses)
        options = ["send", "send"]
        if m.live:
            options += ["trigger", "terminate"] + (["alarm"] * 2 if m.alarm_at else [])
        command = data.draw(st.sampled_from(options))
        if command == "send":
            inst, created = TaskInstance.receive(
                inst, "job", "t1", {"n": 1}, now=now, idempotency_key=None, window=WINDOW
            )
            assert created is not m.live
            if created:
                m = TaskModel(live=True)
            m.event_count += 1
            intents = _intents(data, now)
            inst.record_success(
                RunTicket(0, 1, inst.d.generation), handler="on_event", now=now, duration=0.0
            )
            inst.apply_intents(intents, now=now, alarm=inst.d.alarm_at)
            m = _apply(m, intents, base=m.alarm_at)
        elif inst is None:
            raise AssertionError(command)
        elif command == "terminate":
            assert inst.terminate(now=now)
            m = _apply(m, Intents(terminate=True), base=None)
        else:
            fired_by_alarm = command == "alarm"
            if fired_by_alarm:
                assert m.alarm_at is not None
                now = max(now, m.alarm_at)
            base = None if fired_by_alarm else m.alarm_at
            ticket = inst.next_ticket(fresh=True)
            assert ticket == RunTicket(m.execute_count + 1, 1, inst.d.generation)
            m.execute_count += 1
            intents = _intents(data, now)
            if data.draw(st.booleans(), label="succeeds"):
                inst.record_success(ticket, handler="execute", now=now, duration=0.0)
            else:
                # The handler's own intents are dropped; on_error's (here: intents) apply.
                inst.record_failure(
                    ticket, RuntimeError("boom"), handler="execute", now=now, retry_at=None
                )
            inst.apply_intents(intents, now=now, alarm=base)
            m = _apply(m, intents, base=base)

        assert inst is not None
        check_log(inst, log)
        d = inst.d
        assert inst.live is m.live
        assert d.alarm_at == m.alarm_at
        if m.live:
            assert d.state == m.state
            assert d.event_count == m.event_count
            assert d.execute_count == m.execute_count
            assert inst.status == ("active" if d.alarm_at is not None else "idle")
