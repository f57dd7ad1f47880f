"""A tour of durable-jobs' storage layer on the embedded SQLite store.

Run it (``make demo``) twice: the second run picks up the instances, their
state, counters and alarms from ``demo-data/jobs.db``, because every instance
is an event-sourced log, not a row that is overwritten.

The trio runtime and the jobs client are still being built; until they land,
this demo plays the runtime's part by hand: it decides with the pure domain
(the same calls the runtime will make) and commits through the store.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import Intents
from durable_jobs._domain.task import TaskInstance

DATA = Path("demo-data")
URL = f"sqlite:///{DATA / 'jobs.db'}"
SCHEDULE = dj.every(timedelta(minutes=5))
FLUSH_AFTER = timedelta(seconds=30)
WINDOW = timedelta(hours=24)


def heartbeat(store: dj.Store, now: datetime) -> None:
    inst = store.get("continuous", "heartbeat", "demo")
    assert inst is None or isinstance(inst, ContinuousInstance)
    inst, created = ContinuousInstance.start(
        inst, "heartbeat", "demo", now=now, state={"beats": 0}, first_run_at=now
    )
    if created:
        store.save(inst)
        print("  continuous 'heartbeat/demo': started (first run due now)")
    # One run, as the scheduler would do when the alarm rings.
    ticket = inst.next_ticket(fresh=True)
    state = inst.d.state
    assert isinstance(state, dict)
    beats = state["beats"]
    assert isinstance(beats, int)
    inst.complete_run(
        ticket, Intents(state={"beats": beats + 1}), now=now, duration=0.001, schedule=SCHEDULE
    )
    store.save(inst)
    print(
        f"  continuous 'heartbeat/demo': run #{inst.d.run_count} -> beats={beats + 1}, "
        f"next run at {inst.d.alarm_at:%H:%M:%S}"
    )


def digest(store: dj.Store, now: datetime) -> None:
    found = store.get("debounce", "digest", "demo")
    assert found is None or isinstance(found, DebounceInstance)
    inst = found
    for click in ("home", "pricing", "signup"):
        # on_event would run here: it folds each click into the batch's state.
        folded = [*((inst.batch_state or []) if inst else []), click]
        inst, _ = DebounceInstance.add(
            inst,
            "digest",
            "demo",
            click,
            now=now,
            new_state=folded,
            idempotency_key=f"{now.isoformat()}-{click}",
            window=WINDOW,
            flush_after=FLUSH_AFTER,
            max_events=3,
        )
    assert inst is not None
    store.save(inst)
    # The third event filled the batch (max_events=3): its flush is due now.
    flush = inst.begin_flush(now=now, manual=False, flush_after=FLUSH_AFTER)
    assert flush is not None
    print(
        f"  debounce 'digest/demo': flushing {flush.batch.event_count} events "
        f"({flush.reason}): {flush.batch.state}"
    )
    inst.flush_succeeded(flush, now=now, duration=0.001, flush_after=FLUSH_AFTER)
    store.save(inst)
    print(f"  debounce 'digest/demo': status {inst.status}, {inst.d.run_count} flush(es) so far")


def reminder(store: dj.Store, now: datetime) -> None:
    inst = store.get("task", "reminder", "demo")
    assert inst is None or isinstance(inst, TaskInstance)
    inst, created = TaskInstance.receive(
        inst, "reminder", "demo", {"say": "hello"}, now=now, idempotency_key=None, window=WINDOW
    )
    # on_event would run here; it asks to be woken in an hour.
    inst.apply_intents(
        Intents(state={"last": "hello"}, schedule=now + timedelta(hours=1)),
        now=now,
        alarm=inst.d.alarm_at,
    )
    store.save(inst)
    print(
        f"  task 'reminder/demo': {'created' if created else 'event'} "
        f"#{inst.d.event_count}, status {inst.status}, wakes at {inst.d.alarm_at:%H:%M:%S}"
    )


def main() -> int:
    DATA.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    with dj.open_store(URL) as store:
        again = store.list_instances() != []
        print(
            f"durable-jobs demo on {store.url} ({'restarted: picking up' if again else 'fresh'})"
        )
        heartbeat(store, now)
        digest(store, now)
        reminder(store, now)

        print("\nPending alarms (from the alarm index, no aggregate rebuilt):")
        for row in store.next_alarms(10):
            print(f"  {row.due_at:%Y-%m-%d %H:%M:%S} {row.kind:<10} {row.job}/{row.instance_id}")

        inst = store.get("continuous", "heartbeat", "demo")
        assert inst is not None
        history = store.history(inst.id)
        shown_count = min(6, len(history))
        print(f"\nHistory of heartbeat/demo (the last {shown_count} of {len(history)} events):")
        for event in history[-6:]:
            fields = {
                k: v.isoformat(timespec="seconds") if isinstance(v, datetime) else v
                for k, v in vars(event).items()
                if k
                not in ("originator_id", "originator_version", "timestamp", "originator_topic")
            }
            shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
            print(f"  v{event.originator_version:<4} {event.NAME:<14} {shown}")

    print(
        "\nStopped. Everything above is committed in demo-data/jobs.db: run `make demo` again"
        " and the heartbeat continues from where it was (a restart loses nothing)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
