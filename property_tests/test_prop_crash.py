"""Crash recovery: fail or "kill" the process at the k-th write, restart, lose nothing.

Each example runs a random workload (``_workloads``) on a store instrumented by
``_faults``: at its k-th write (k and the fault drawn by hypothesis) the write
fails (the runtime carries on), or the process dies before the write, inside
its transaction, after its commit but before its snapshot, or after the whole
write but before the runtime heard back. A death abandons that runtime at
once; a new runtime is then opened on the same durable data (a fresh store
object for SQLite and Postgres) some virtual time later, and left to run.

Checked, after the crash (before the new runtime starts):

1. **durability**: each instance's log starts with exactly the records the
   runtime acknowledged (its observers saw them after their commits), and
   holds nothing more, except all of the k-th write when the process died
   after committing it (never a part of it);
2. **consistency**: the instance index is exactly what the logs say (version,
   status, alarm), a snapshot-based rebuild equals a full replay, and
   ``due_alarms`` lists exactly the instances with an alarm: none orphaned.

After the new runtime ran for a while:

3. **no alarm lost**: every alarm pending at the crash fired, on time (at its
   due time, or at the restart if it was overdue); instances without an alarm
   did nothing on their own;
4. **no run committed twice**: per instance generation, committed runs of
   ``execute`` have distinct (run_count, attempt); no debounce batch, and no
   event, was flushed twice;
5. **no run lost** (at-least-once): a handler call whose commit was lost ran
   again and committed (same run, same try), unless the instance was since
   terminated or paused; every accepted debounce event was flushed, or is
   still buffered behind a paused batch, or was dropped by a later ``clear``
   or ``terminate``;
6. **handler writes** (SQLite, Postgres): the continuous and debounce handlers
   write a row with ``ctx.execute`` on every try; after the crash and at the
   end, the app's table holds exactly one row per committed successful run.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import psycopg
import pytest
import trio
from _faults import (
    COMMITTED_MODES,
    FAULT_MODES,
    Fault,
    FaultMode,
    Instrumented,
    instrument,
)
from _support import fresh_postgres_url, fresh_sqlite_url, run_virtual, slow_examples
from _workloads import (
    INSTANCES,
    RUN_TIME,
    T0,
    Call,
    Effects,
    Step,
    audit_store,
    drive,
    make_registry,
    stored_records,
    workloads,
)
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg import sql

import durable_jobs as dj
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._records import RecordedEvent

Key = tuple[str, str, str]
KEYS: dict[UUID, Key] = {instance_uuid(*key): key for key in INSTANCES}
#: How long the first runtime runs on after the workload (alarm runs write too).
FIRST_DRAIN = 30 * 60
#: How long the new runtime runs after the restart.
AFTER_RESTART = timedelta(hours=3)
SNAPSHOT_INTERVAL = 3

#: Most workloads write 5-30 times; k is often small so that most faults fire.
faults = st.builds(
    Fault,
    at_write=st.integers(1, 12) | st.integers(1, 40),
    mode=st.sampled_from(FAULT_MODES),
)
downtimes = st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(minutes=7)])


def _by_instance(records: list[RecordedEvent]) -> dict[Key, list[RecordedEvent]]:
    out: dict[Key, list[RecordedEvent]] = defaultdict(list)
    for r in records:
        out[(r.kind, r.job, r.instance_id)].append(r)
    return out


# ---- the checks ---------------------------------------------------------------------------------


def check_durable(
    store: dj.Store,
    acked: list[RecordedEvent],
    faulted: list[JobInstance.Event],
    after: list[RecordedEvent] = [],  # noqa: B006 - never mutated
) -> None:
    """1: each log is its acknowledged records, then all of ``faulted`` or none of it
    (then the records acknowledged ``after`` the restart)."""
    stored = stored_records(store)
    seen, later = _by_instance(acked), _by_instance(after)
    extra: dict[Key, list[tuple[int, str, datetime]]] = defaultdict(list)
    for e in faulted:
        extra[KEYS[e.originator_id]].append((e.originator_version, e.NAME, e.timestamp))
    for key in set(stored) | set(seen) | set(extra) | set(later):
        log, ack, tail = stored.get(key, []), seen.get(key, []), later.get(key, [])
        assert log[: len(ack)] == ack, f"{key}: an acknowledged record is lost or changed"
        assert log[len(log) - len(tail) :] == tail, f"{key}: records after the restart"
        middle = [(r.version, r.name, r.at) for r in log[len(ack) : len(log) - len(tail)]]
        assert middle == extra.get(key, []), f"{key}: unacknowledged records {middle}"


def create_app_table(url: str) -> None:
    """The app's own table, in the store's database (its tables exist already)."""
    app_sql(url, "CREATE TABLE app_writes (kind text NOT NULL, instance text NOT NULL, work text)")


def app_sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    if url.startswith("postgres"):
        server, _, schema = url.partition("?schema=")
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        with db:
            return list(db.execute(statement).fetchall())
    finally:
        db.close()


def check_writes(url: str, histories: dict[Key, list[RecordedEvent]]) -> None:
    """6: the app's table is the writes of the committed successful runs, each once."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for (kind, _, iid), records in histories.items():
        if kind == "continuous":
            for started, gen in _generations(records):
                name = cast("dict[str, int]", started.data["state"])["gen"]
                for r in _runs(gen):
                    if r.name == "run_succeeded":
                        expected[kind, iid, f"{name}:{r.run_count}"] += 1
        elif kind == "debounce":
            for batch in _flushed_batches(records):
                expected[kind, iid, ",".join(map(str, batch))] += 1
    rows = app_sql(url, "SELECT kind, instance, work FROM app_writes")
    assert Counter((str(k), str(i), str(w)) for k, i, w in rows) == expected


def check_alarms_fired(
    pending: dict[UUID, datetime], restart_at: datetime, later: list[RecordedEvent]
) -> None:
    """3: each pending alarm fired on time; nothing else happened on its own."""
    first: dict[UUID, datetime] = {}
    for r in later:
        first.setdefault(r.instance_uuid, r.at)
    assert set(first) == set(pending), "instances without an alarm ran, or alarms were lost"
    for uuid, due in pending.items():
        on_time = max(due, restart_at)
        assert on_time <= first[uuid] <= on_time + timedelta(seconds=2 * RUN_TIME), (
            f"{KEYS[uuid]}: the alarm due at {due} fired at {first[uuid]}"
        )


def _generations(records: list[RecordedEvent]) -> list[tuple[RecordedEvent, list[RecordedEvent]]]:
    """Each generation's ``started`` record and the records that follow it."""
    gens: list[tuple[RecordedEvent, list[RecordedEvent]]] = []
    for r in records:
        if r.name == "started":
            gens.append((r, []))
        else:
            gens[-1][1].append(r)
    return gens


def _runs(records: list[RecordedEvent]) -> list[RecordedEvent]:
    return [
        r
        for r in records
        if r.name in ("run_succeeded", "run_failed") and r.data["handler"] == "execute"
    ]


def check_once(histories: dict[Key, list[RecordedEvent]]) -> None:
    """4: no run, batch or event committed twice."""
    for key, records in histories.items():
        for _, gen in _generations(records):
            tries = [(r.run_count, r.attempt) for r in _runs(gen)]
            assert len(tries) == len(set(tries)), f"{key}: a run was committed twice: {tries}"
        if key[0] != "debounce":
            continue
        batches = [r.data["batch_no"] for r in records if r.name == "flushed"]
        assert len(batches) == len(set(batches)), f"{key}: a batch was flushed twice"
        flushed = [e for batch in _flushed_batches(records) for e in batch]
        assert len(flushed) == len(set(flushed)), f"{key}: an event was flushed twice"


def _flushed_batches(records: list[RecordedEvent]) -> list[tuple[int, ...]]:
    """The events of each flushed batch (the state its successful run started from)."""
    out = []
    for before, r in itertools.pairwise(records):
        if r.name == "flushed":
            assert before.name == "run_succeeded"
            out.append(tuple(cast("list[int]", before.state_before)))
    return out


def _buffered(inst: DebounceInstance) -> set[int]:
    events: set[int] = set()
    for batch in inst.d.closed:
        events.update(cast("list[int]", batch.state))
    if inst.d.event_count:
        events.update(cast("list[int]", inst.d.state))
    return events


def check_nothing_lost(
    histories: dict[Key, list[RecordedEvent]],
    final: dict[UUID, JobInstance],
    calls: list[Call],
) -> None:
    """5: interrupted runs ran again; accepted events were flushed or dropped on purpose."""
    committed: set[tuple[Any, ...]] = set()
    ended: set[tuple[Any, ...]] = set()  # generations terminated or paused by the end
    for key, records in histories.items():
        kind, _, iid = key
        inst = final[instance_uuid(*key)]  # type: ignore[arg-type]
        if kind == "debounce":
            _check_events(key, records, cast(DebounceInstance, inst))
            continue
        gens = _generations(records)
        for n, (started, gen) in enumerate(gens, start=1):
            # A generation is known by what identifies it to the handlers.
            name: object = started.at
            if kind == "continuous":
                name = cast("dict[str, int]", started.data["state"])["gen"]
            for r in _runs(gen):
                committed.add((kind, iid, (name, r.run_count), r.attempt))
            if n < len(gens) or not inst.live or inst.status == "failed":
                ended.add((kind, iid, name))
    for call in calls:
        if call.kind == "debounce":
            # A flush's batch was then flushed, is held paused, or was dropped by a
            # clear or terminate: _check_events checked that of each of its events.
            continue
        if (call.kind, call.instance_id, call.work, call.attempt) in committed:
            continue
        generation = (call.kind, call.instance_id, call.work[0])
        assert generation in ended or (call.kind == "task" and call.manual), (
            f"{call} was interrupted and never ran again"
        )


def _check_events(key: Key, records: list[RecordedEvent], inst: DebounceInstance) -> None:
    flushed = {e for batch in _flushed_batches(records) for e in batch}
    buffered = _buffered(inst)
    for i, r in enumerate(records):
        if r.name != "event_added":
            continue
        event = r.data["event"]
        if event in flushed or event in buffered:
            continue
        dropped = any(later.name in ("cleared", "terminated") for later in records[i + 1 :])
        assert dropped, f"{key}: event {event} was accepted and then lost"
    if buffered:
        assert inst.status == "failed", f"{key}: events {buffered} wait with nothing to flush them"


# ---- one example --------------------------------------------------------------------------------


def crash_and_recover(
    store: Instrumented,
    reopen: Callable[[Instrumented], Instrumented],
    steps: list[Step],
    fault: Fault,
    downtime: timedelta,
    url: str | None = None,
) -> None:
    """Run ``steps`` on ``store`` until ``fault`` kills it, restart, run on; check 1-6.

    ``reopen`` turns the first process's store into the second's (closing the
    first if it is another object). Every store is closed afterwards. With the
    ``url`` of a SQLite or Postgres store, handlers also write with ``ctx.execute``.
    """
    effects = Effects()
    if url is not None:
        create_app_table(url)
        effects.placeholder = "%s" if url.startswith("postgres") else "?"
    acked: list[RecordedEvent] = []
    later: list[RecordedEvent] = []
    state: dict[str, Any] = {}

    async def first_life() -> None:
        clock = effects.clock = dj.VirtualClock(T0)
        async with dj.open_jobs(
            make_registry(effects),
            store,
            clock=clock,
            observers=[acked.append],
            poll_interval=None,
            shutdown_grace=0,
        ) as jobs:
            with trio.CancelScope() as scope:
                store.on_death = scope.cancel
                await drive(jobs, steps, effects, drain=FIRST_DRAIN, tolerate=(dj.StoreError,))
        state["crashed_at"] = clock.now()

    async def second_life(durable: Instrumented, restart_at: datetime) -> None:
        effects.clock = clock = dj.VirtualClock(restart_at)
        async with dj.open_jobs(
            make_registry(effects),
            durable,
            clock=clock,
            observers=[later.append],
            poll_interval=None,
        ) as jobs:
            await jobs.wait_idle()
            await trio.sleep(AFTER_RESTART.total_seconds())
            await jobs.wait_idle()

    async def main() -> None:
        await first_life()
        fired = store.writes >= fault.at_write
        committed_fault = fired and fault.mode in COMMITTED_MODES
        faulted = store.faulted_events if committed_fault else []
        calls_before = len(effects.calls)
        durable = state["durable"] = reopen(store)
        check_durable(durable, acked, faulted)
        if url is not None:
            check_writes(url, stored_records(durable))
        rebuilt = audit_store(durable)
        pending = {u: i.d.alarm_at for u, i in rebuilt.items() if i.d.alarm_at is not None}
        restart_at = state["crashed_at"] + downtime
        await second_life(durable, restart_at)
        check_alarms_fired(pending, restart_at, later)
        final = audit_store(durable)
        histories = stored_records(durable)
        check_durable(durable, acked, faulted, later)
        check_once(histories)
        check_nothing_lost(histories, final, effects.calls[:calls_before])
        if url is not None:
            check_writes(url, histories)

    try:
        run_virtual(main)
    finally:
        cast(Instrumented, state.get("durable", store)).close()


def _revive(store: Instrumented) -> Instrumented:
    """The memory store cannot be reopened: the same object, alive again, plays the new one."""
    store.revive()
    return store


@slow_examples(300)
@given(steps=workloads(), fault=faults, downtime=downtimes)
@example(
    steps=[Step("add", "a"), Step("add", "a"), Step("add", "a"), Step("sleep", arg=60)],
    fault=Fault(4, "kill_after"),
    downtime=timedelta(0),
)
def test_crash_recovery_on_memory(steps: list[Step], fault: Fault, downtime: timedelta) -> None:
    store = instrument(dj.open_store("memory://", snapshot_interval=SNAPSHOT_INTERVAL), fault)
    crash_and_recover(store, _revive, steps, fault, downtime)


def _reopen(url: str) -> Callable[[Instrumented], Instrumented]:
    def reopen(store: Instrumented) -> Instrumented:
        store.close()
        return instrument(dj.open_store(url, snapshot_interval=SNAPSHOT_INTERVAL))

    return reopen


@slow_examples(80)
@given(steps=workloads(), fault=faults, downtime=downtimes)
def test_crash_recovery_on_sqlite(steps: list[Step], fault: Fault, downtime: timedelta) -> None:
    with fresh_sqlite_url() as url:
        store = instrument(dj.open_store(url, snapshot_interval=SNAPSHOT_INTERVAL), fault)
        crash_and_recover(store, _reopen(url), steps, fault, downtime, url)


@pytest.mark.postgres
@slow_examples(15)
@given(steps=workloads(max_size=15), fault=faults, downtime=downtimes)
def test_crash_recovery_on_postgres(
    postgres_url: str, steps: list[Step], fault: Fault, downtime: timedelta
) -> None:
    with fresh_postgres_url(postgres_url) as url:
        store = instrument(dj.open_store(url, snapshot_interval=SNAPSHOT_INTERVAL), fault)
        crash_and_recover(store, _reopen(url), steps, fault, downtime, url)


@pytest.mark.parametrize("mode", FAULT_MODES)
def test_each_fault_mode_fires_and_recovers(mode: FaultMode) -> None:
    """The machinery itself: every mode fires in a workload that writes often enough."""
    steps = [Step("start", "a"), Step("add", "b"), Step("send", "a", 1), Step("sleep", arg=600)]
    store = instrument(
        dj.open_store("memory://", snapshot_interval=SNAPSHOT_INTERVAL), Fault(3, mode)
    )
    crash_and_recover(store, _revive, steps, Fault(3, mode), timedelta(0))
    assert store.writes >= 3
    assert store.faulted_events
