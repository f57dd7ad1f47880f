"""A registry of one job of each kind, random client workloads, and store audits.

The jobs are deterministic functions of what they see (so the same workload
gives the same history on every store), take virtual time to run (so runs
have durations and overlap alarms), fail on some runs and retry, and note
every handler call in :class:`Effects` (the side effects a crash may repeat):

* ``beat`` (continuous, ``every(10 min)``): counts its runs in its state; the
  first try of every third run fails (retried a minute later), and one run in
  eleven fails both tries (then the instance pauses: status ``failed``).
* ``digest`` (debounce, ``flush_after`` 5 min, ``max_events`` 3): folds event
  numbers into a list; some batches fail once (retried 30 s later), some
  fail for good (the batch is kept, paused).
* ``timer`` (task): ``send(n)`` adds ``n`` to a sum and sets the alarm
  ``4n`` minutes ahead (``n = 0`` cancels it); ``execute`` counts its runs,
  re-arms every other time, and fails on every third.

A workload is a list of :class:`Step`; :func:`drive` performs it through the
public client, waiting until the runtime is idle before each step so that
commands never race alarms (the interleaving is then the same on every
store), and returns the client's results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import trio
from eventsourcing.persistence import ApplicationRecorder
from hypothesis import strategies as st

import durable_jobs as dj
from durable_jobs._domain.ids import Kind, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._records import RecordedEvent, to_records

__all__ = [
    "CONTINUOUS",
    "DEBOUNCE",
    "IDS",
    "INSTANCES",
    "T0",
    "TASK",
    "Call",
    "Effects",
    "Step",
    "audit_store",
    "drive",
    "make_registry",
    "replay",
    "snapshot_of_client",
    "stored_records",
    "workloads",
]

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
CONTINUOUS, DEBOUNCE, TASK = "beat", "digest", "timer"
IDS = ("a", "b")
_JOBS: tuple[tuple[Kind, str], ...] = (
    ("continuous", CONTINUOUS),
    ("debounce", DEBOUNCE),
    ("task", TASK),
)
INSTANCES: tuple[tuple[Kind, str, str], ...] = tuple(
    (kind, job, iid) for kind, job in _JOBS for iid in IDS
)
#: Virtual time a handler takes (so runs have a duration, and alarms can come due meanwhile).
RUN_TIME = 0.5
EVENT_TIME = 0.25
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


class Boom(Exception):
    """A handler failure the jobs raise on purpose."""


@dataclass(frozen=True)
class Call:
    """One call of an ``execute`` handler: a side effect that a crash may make happen twice.

    ``work`` identifies what the run works on, across restarts: for ``beat``,
    (generation, run_count); for ``digest``, the batch's event numbers; for
    ``timer``, (created_at, execute_count).
    """

    kind: Kind
    instance_id: str
    work: tuple[Any, ...]
    attempt: int
    at: datetime
    manual: bool


@dataclass
class Effects:
    """What the handlers did, across every runtime of one example."""

    clock: dj.Clock | None = None
    calls: list[Call] = field(default_factory=list)
    #: Instances whose trigger/flush the driver is waiting for (their calls are manual).
    manual: set[tuple[str, str]] = field(default_factory=set)
    #: The store driver's placeholder when handlers write to ``app_writes`` with
    #: ``ctx.execute`` (SQLite, Postgres); None: they do not (memory).
    placeholder: str | None = None

    def write(self, ctx: Any, kind: Kind, work: str) -> None:
        """Record a row of ``app_writes`` for this run (before it may fail: a failed try
        must commit none)."""
        p = self.placeholder
        if p is not None:
            sql = f"INSERT INTO app_writes (kind, instance, work) VALUES ({p}, {p}, {p})"
            ctx.execute(sql, (kind, ctx.instance_id, work))

    def note(self, kind: Kind, instance_id: str, work: tuple[Any, ...], attempt: int) -> None:
        assert self.clock is not None
        self.calls.append(
            Call(
                kind,
                instance_id,
                work,
                attempt,
                self.clock.now(),
                (kind, instance_id) in self.manual,
            )
        )


def beat_fails(generation: int, run_count: int, attempt: int) -> bool:
    return (attempt == 1 and run_count % 3 == 2) or (generation + run_count) % 11 == 10


def digest_fails(events: Sequence[int], attempt: int) -> bool:
    total = sum(events)
    return (attempt == 1 and total % 4 == 1) or total % 9 == 8


def timer_fails(execute_count: int) -> bool:
    return execute_count % 3 == 2


def make_registry(effects: Effects) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        CONTINUOUS,
        state=dict[str, int],
        schedule=dj.every(10 * MINUTE),
        retry=dj.Retry(
            max_attempts=2, delay=dj.Backoff.constant(MINUTE), jitter=0, on_exhausted="pause"
        ),
    )
    async def beat(ctx: dj.ContinuousContext[dict[str, int]]) -> None:
        await trio.sleep(RUN_TIME)
        effects.note("continuous", ctx.instance_id, (ctx.state["gen"], ctx.run_count), ctx.attempt)
        effects.write(ctx, "continuous", f"{ctx.state['gen']}:{ctx.run_count}")
        if beat_fails(ctx.state["gen"], ctx.run_count, ctx.attempt):
            raise Boom(f"beat run {ctx.run_count} try {ctx.attempt}")
        ctx.update_state(lambda s: {**s, "count": s["count"] + 1})

    @registry.debounce(
        DEBOUNCE,
        event=int,
        state=list[int],
        flush_after=5 * MINUTE,
        max_events=3,
        retry=dj.Retry(
            max_attempts=2,
            delay=dj.Backoff.constant(timedelta(seconds=30)),
            jitter=0,
            on_exhausted="pause",
        ),
    )
    async def digest(ctx: dj.DebounceContext[list[int]]) -> None:
        await trio.sleep(RUN_TIME)
        effects.note("debounce", ctx.instance_id, tuple(ctx.state), ctx.attempt)
        effects.write(ctx, "debounce", ",".join(map(str, ctx.state)))
        if digest_fails(ctx.state, ctx.attempt):
            raise Boom(f"digest of {ctx.state} try {ctx.attempt}")

    @digest.on_event
    def fold(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
        return [*(ctx.state or []), ctx.event]

    @registry.task(TASK, event=int, state=dict[str, int])
    async def timer(ctx: dj.TaskContext[dict[str, int]]) -> None:
        await trio.sleep(RUN_TIME)
        effects.note("task", ctx.instance_id, (ctx.created_at, ctx.execute_count), 1)
        if timer_fails(ctx.execute_count):
            raise Boom(f"timer run {ctx.execute_count}")
        state = ctx.state or {"sum": 0, "runs": 0}
        ctx.set_state({**state, "runs": state["runs"] + 1})
        if state["runs"] % 2 == 0:
            ctx.schedule(7 * MINUTE)

    @timer.on_event
    async def on_number(event: int, ctx: dj.TaskContext[dict[str, int]]) -> None:
        await trio.sleep(EVENT_TIME)
        state = ctx.state or {"sum": 0, "runs": 0}
        ctx.set_state({**state, "sum": state["sum"] + event})
        if event == 0:
            ctx.cancel_schedule()
        else:
            ctx.schedule(4 * event * MINUTE)

    return registry


# ---- workloads ------------------------------------------------------------------------------

Op = Literal[
    "start",
    "trigger",
    "stop",
    "add",
    "flush",
    "flush_add",
    "clear",
    "send",
    "poke",
    "end",
    "sleep",
]


@dataclass(frozen=True)
class Step:
    """One client call (or a pause of ``arg`` seconds for ``sleep``).

    ``start``/``trigger``/``stop`` are ``beat``'s, ``add``/``flush``/``clear``
    ``digest``'s, ``send``/``poke`` (trigger)/``end`` (terminate) ``timer``'s;
    ``flush_add`` flushes and, while the flush handler runs, adds an event
    (which must go to the next batch).
    ``arg``: for ``add``, which idempotency key (0: none); for ``send``, the number.
    """

    op: Op
    instance_id: str = "a"
    arg: int = 0


_ids = st.sampled_from(IDS)
PAUSES = (0, 1, 30, 60, 61, 299, 300, 301, 420, 600, 3600)

STEPS = st.one_of(
    st.builds(Step, st.sampled_from(["start", "trigger", "stop"]), _ids),
    st.builds(Step, st.just("add"), _ids, st.sampled_from([0, 0, 1, 2])),
    st.builds(Step, st.just("add"), _ids, st.sampled_from([0, 0, 1, 2])),
    st.builds(Step, st.sampled_from(["flush", "clear", "flush_add"]), _ids),
    st.builds(Step, st.just("send"), _ids, st.integers(0, 3)),
    st.builds(Step, st.sampled_from(["poke", "end"]), _ids),
    st.builds(Step, st.just("sleep"), st.just("a"), st.sampled_from(PAUSES)),
    st.builds(Step, st.just("sleep"), st.just("a"), st.sampled_from(PAUSES)),
)


def workloads(max_size: int = 30) -> st.SearchStrategy[list[Step]]:
    """Random workloads; they start by starting something, so that most examples do work."""
    first = st.builds(Step, st.sampled_from(["start", "add", "send"]), _ids, st.integers(0, 2))
    return st.builds(
        lambda a, rest: [a, *rest], first, st.lists(STEPS, min_size=2, max_size=max_size)
    )


async def _call(jobs: dj.Jobs, index: int, step: Step, effects: Effects) -> object:
    iid, arg = step.instance_id, step.arg
    beat = jobs.continuous(CONTINUOUS)
    digest = jobs.debounce(DEBOUNCE)
    timer = jobs.task(TASK)
    match step.op:
        case "start":
            return await beat.start(iid, {"gen": index, "count": 0})
        case "stop":
            return await beat.terminate(iid, reason=f"step {index}")
        case "add":
            key = f"key-{arg}" if arg else None
            return await digest.add(iid, index, idempotency_key=key)
        case "clear":
            return await digest.clear(iid)
        case "send":
            return await timer.send(iid, arg)
        case "end":
            return await timer.terminate(iid)
        case "sleep":
            await trio.sleep(arg)
            return None
        case "flush_add":
            flushed: list[object] = []

            async def flush() -> None:
                flushed.append(await digest.flush(iid))

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(flush)
                    await trio.sleep(RUN_TIME / 5)  # the flush handler is running now
                    added = await digest.add(iid, index)
            except BaseExceptionGroup as group:
                # As a caller would see it: the first error (a cancellation that came
                # with it is raised again at the next checkpoint).
                errors, _ = group.split(Exception)
                if errors is None:
                    raise
                raise _first_leaf(errors) from None
            return (added, *flushed)
    kind: Kind = {"trigger": "continuous", "flush": "debounce", "poke": "task"}[step.op]  # type: ignore[assignment]
    effects.manual.add((kind, iid))
    try:
        if step.op == "trigger":
            return await beat.trigger(iid)
        if step.op == "flush":
            return await digest.flush(iid)
        try:
            return await timer.trigger(iid)
        except dj.HandlerError as exc:
            return ("HandlerError", type(exc.__cause__).__name__)
    finally:
        effects.manual.discard((kind, iid))


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first exception inside (nested) exception groups, as the caller would have seen it."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, Exception)
    return error


async def drive(
    jobs: dj.Jobs,
    steps: Sequence[Step],
    effects: Effects,
    *,
    drain: float = 3 * 3600,
    tolerate: tuple[type[Exception], ...] = (),
    observe: Callable[[], Awaitable[None]] | None = None,
) -> list[tuple[Step, object]]:
    """Perform ``steps`` (each once the runtime is idle), then let ``drain`` seconds pass.

    Returns each step with the client's result (for an exception in
    ``tolerate``, its type's name). Event numbers are step indexes, so every
    added event is unique. ``observe`` is awaited after each step, once the
    runtime is idle again.
    """
    results: list[tuple[Step, object]] = []
    for index, step in enumerate(steps, start=1):
        await jobs.wait_idle()
        try:
            result = await _call(jobs, index, step, effects)
        except tolerate as exc:
            result = ("error", type(exc).__name__)
        results.append((step, result))
        if observe is not None:
            await jobs.wait_idle()
            await observe()
    await jobs.wait_idle()
    await trio.sleep(drain)
    await jobs.wait_idle()
    return results


async def snapshot_of_client(jobs: dj.Jobs) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    """Every instance's status and state as the client reports them."""
    out: dict[tuple[str, str, str], tuple[Any, Any]] = {}
    beat = jobs.continuous(CONTINUOUS)
    digest = jobs.debounce(DEBOUNCE)
    timer = jobs.task(TASK)
    for kind, job, iid in INSTANCES:
        if kind == "continuous":
            out[(kind, job, iid)] = (await beat.status(iid), await beat.get_state(iid))
        elif kind == "debounce":
            out[(kind, job, iid)] = (await digest.status(iid), await digest.get_state(iid))
        else:
            out[(kind, job, iid)] = (await timer.status(iid), await timer.get_state(iid))
    return out


# ---- reading and auditing a store -------------------------------------------------------------


def replay(events: Sequence[JobInstance.Event]) -> JobInstance:
    """An instance rebuilt from its whole log, event by event (no snapshot)."""
    agg: Any = None
    for event in events:
        agg = event.mutate(agg)
    assert isinstance(agg, JobInstance)
    return agg


def stored_records(store: dj.Store) -> dict[tuple[str, str, str], list[RecordedEvent]]:
    """The history of each instance of :data:`INSTANCES` that has one, as the history API
    gives it."""
    out: dict[tuple[str, str, str], list[RecordedEvent]] = {}
    for kind, job, iid in INSTANCES:
        events = store.history(instance_uuid(kind, job, iid))
        if events:
            out[(kind, job, iid)] = to_records(events, kind=kind, job=job, instance_id=iid)
    return out


def _logged_uuids(store: dj.Store) -> set[UUID]:
    """Every aggregate id with an event in the log (read from the log, not the index)."""
    recorder = store.events.recorder
    assert isinstance(recorder, ApplicationRecorder)
    ids: set[UUID] = set()
    start = 1
    while True:
        page = recorder.select_notifications(start, 500)
        ids |= {UUID(str(n.originator_id)) for n in page}
        if len(page) < 500:
            return ids
        start = page[-1].id + 1


def audit_store(store: dj.Store) -> dict[UUID, JobInstance]:
    """Check that the instance index is exactly what the logs say; the rebuilt instances.

    Every instance with a log has an index row with its kind, job, id,
    version, status, alarm and update time, and no row lacks a log; the
    snapshot-based rebuild equals a full replay of the log, whose versions
    have no gaps; ``due_alarms`` lists exactly the live instances that have an
    alarm (no alarm is orphaned or missing).
    """
    logged = _logged_uuids(store)
    rows = {row.instance_uuid: row for row in store.iter_instances()}
    assert set(rows) == logged, (
        f"index rows without a log: {set(rows) - logged}; "
        f"logs without an index row: {logged - set(rows)}"
    )
    rebuilt: dict[UUID, JobInstance] = {}
    for uuid in logged:
        inst = store.get_by_uuid(uuid)
        assert inst is not None
        history = store.history(uuid)
        assert [e.originator_version for e in history] == list(range(1, inst.version + 1))
        assert replay(history) == inst, f"{uuid}: full replay != snapshot-based rebuild"
        d, row = inst.d, rows[uuid]
        assert (row.kind, row.job, row.instance_id) == (d.kind, d.job, d.instance_id)
        assert instance_uuid(d.kind, d.job, d.instance_id) == uuid
        found = (row.version, row.status, row.due_at, row.updated_at)
        want = (inst.version, inst.status, d.alarm_at, inst.modified_on)
        assert found == want, f"index row of {d.kind}/{d.job}/{d.instance_id} is stale"
        if not inst.live:
            assert d.alarm_at is None, "a terminated instance has an alarm"
        rebuilt[uuid] = inst
    due = {(r.instance_uuid, r.due_at) for r in store.due_alarms(FAR_FUTURE, limit=10_000)}
    want_due = {(u, i.d.alarm_at) for u, i in rebuilt.items() if i.d.alarm_at is not None}
    assert due == want_due, "due_alarms is not exactly the instances' alarms"
    return rebuilt
