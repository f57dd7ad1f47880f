"""Instances of every kind that together record every event class the domain has
(for the tests of the mapper and of how events are built)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import Intents, JobInstance, RunTicket
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
W = timedelta(hours=1)


def every_event_history() -> list[JobInstance]:
    """A continuous, a debounce and a task instance, with their events pending (the
    created event first): between them, every event class, and both a failure with
    a retry time and one without."""
    cont, _ = ContinuousInstance.start(None, "c", "1", now=T, state={"n": 1}, first_run_at=T)
    ticket = cont.next_ticket(fresh=False)
    cont.fail_run(ticket, ValueError("bad"), now=T, schedule=every(W), retry=None, retry_at=T + W)
    ticket = cont.next_ticket(fresh=False)
    cont.fail_run(ticket, KeyError("k"), now=T, schedule=every(W), retry=None, retry_at=None)
    cont.complete_run(
        cont.next_ticket(fresh=True),
        Intents(state=[1, "x"]),
        now=T,
        duration=0.5,
        schedule=every(W),
    )
    cont.record_exhausted(RunTicket(3, 2), "pause", now=T)
    cont.due_now(now=T)
    cont.stamp_trace("00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    cont.terminate(now=T, reason="done")
    cont.restart(now=T, state=None, type_version=2)
    cont.set_alarm(None, now=T)
    deb, _ = DebounceInstance.add(
        None,
        "d",
        "1",
        {"e": 1},
        now=T,
        new_state=[{"e": 1}],
        idempotency_key="k",
        window=W,
        flush_after=W,
        max_events=1,
    )
    flush = deb.begin_flush(now=T, manual=False, flush_after=W)
    assert flush is not None
    deb.flush_succeeded(flush, now=T, duration=1.0, flush_after=W)
    deb.add(
        deb,
        "d",
        "1",
        2,
        now=T,
        new_state=2,
        idempotency_key=None,
        window=W,
        flush_after=W,
        max_events=None,
    )
    deb.clear(now=T)
    deb.record_exhausted(RunTicket(1, 3), "pause", now=T)
    task, _ = TaskInstance.receive(None, "t", "1", "go", now=T, idempotency_key=None, window=W)
    task.set_state(["x" * 100] * 4, now=T)
    task.set_state(["x" * 100] * 5, now=T)  # one item appended: recorded as a patch
    task.trigger_event(TaskInstance.Resumed, timestamp=T, at=T)
    return [cont, deb, task]
