"""Replay with upcasters equals the live aggregate.

A random workload runs through the real runtime on SQLite (snapshots every 3
events) in phases, each served by one version of the app's job definitions
(versions only go up: 1, 2, 3; the state and event types change at each step
and upcasters bridge them). At the end of every phase, for every instance:

1. the state the live client reads (``get_state``: the runtime's aggregate,
   upcast to the phase's version) equals
2. a replay of the whole stored log, event by event, decoded with the phase's
   codec (upcasting the version each JSON was written with), and
3. the store's own rebuild (from its latest snapshot), decoded the same way;
4. and all of them equal a model of the workload (a counter per instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import trio
from _support import fresh_sqlite_url, run_virtual, slow_examples
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import durable_jobs as dj
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import Kind
from durable_jobs._domain.instance import JobInstance

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class S1(BaseModel):
    n: int


class S2(BaseModel):
    count: int


class S3(BaseModel):
    count: int
    unit: str


STATE: dict[int, type[BaseModel]] = {1: S1, 2: S2, 3: S3}


def make_state(version: int, count: int) -> BaseModel:
    if version == 1:
        return S1(n=count)
    if version == 2:
        return S2(count=count)
    return S3(count=count, unit="v3")


def count_of(state: Any) -> int:
    return int(state.n if isinstance(state, S1) else state.count)


def bump(state: Any, by: int) -> Any:
    if isinstance(state, S1):
        return S1(n=state.n + by)
    if isinstance(state, S3):
        return S3(count=state.count + by, unit=state.unit)
    return S2(count=state.count + by)


def registry_at(version: int) -> dj.Registry:
    registry = dj.Registry()
    state_t = STATE[version]

    @registry.continuous(
        "counter", state=state_t, schedule=dj.every(MINUTE * 5), start_immediately=False,
        version=version,
    )  # fmt: skip
    async def counter(ctx: dj.ContinuousContext[Any]) -> None:
        ctx.set_state(bump(ctx.state, 1))

    # The task's events are states too: each adds its count.
    @registry.task("adder", event=state_t, state=state_t, version=version)
    async def adder(ctx: dj.TaskContext[Any]) -> None:
        pass

    @adder.on_event
    async def on_add(event: Any, ctx: dj.TaskContext[Any]) -> None:
        ctx.set_state(event if ctx.state is None else bump(ctx.state, count_of(event)))

    @registry.debounce("inbox", event=state_t, flush_after=MINUTE, version=version)
    async def inbox(ctx: dj.DebounceContext[Any]) -> None:
        pass

    @inbox.on_event
    def fold(ctx: dj.DebounceEventContext[Any, Any]) -> Any:
        return ctx.event if ctx.state is None else bump(ctx.state, count_of(ctx.event))

    ups = {1: lambda d: {"count": d["n"]}, 2: lambda d: {**d, "unit": "up"}}
    for step in range(1, version):
        counter.upcast_state(from_version=step)(ups[step])
        adder.upcast_state(from_version=step)(ups[step])
        adder.upcast_event(from_version=step)(ups[step])
        inbox.upcast_event(from_version=step)(ups[step])
    return registry


@dataclass
class Phase:
    version: int
    ops: list[tuple[str, str, int]]


IDS = st.sampled_from(["a", "b"])
OPS = st.one_of(
    st.tuples(st.just("start"), IDS, st.integers(0, 9)),
    st.tuples(st.just("trigger"), IDS, st.just(0)),
    st.tuples(st.just("send"), IDS, st.integers(0, 9)),
    st.tuples(st.just("add"), IDS, st.integers(0, 9)),
    st.tuples(st.just("wait"), st.just(""), st.integers(1, 7)),
)


@st.composite
def phases(draw: st.DrawFn) -> list[Phase]:
    versions = sorted(draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)))
    return [Phase(v, draw(st.lists(OPS, max_size=8))) for v in versions]


def replay(events: list[JobInstance.Event]) -> JobInstance:
    agg: Any = None
    for event in events:
        agg = event.mutate(agg)
    assert agg is not None
    return cast(JobInstance, agg)


async def run_phase(store: dj.Store, phase: Phase, model: dict[tuple[str, str], int]) -> None:
    version = phase.version
    async with dj.open_jobs(
        registry_at(version), store, clock=dj.VirtualClock(T0), poll_interval=None
    ) as jobs:
        for op, iid, value in phase.ops:
            if op == "start":
                if model.get(("counter", iid)) is None:
                    model[("counter", iid)] = value
                await jobs.continuous("counter").start(iid, make_state(version, value))
            elif op == "trigger":
                result = await jobs.continuous("counter").trigger(iid)
                if result.triggered:
                    model[("counter", iid)] += 1
            elif op == "send":
                await jobs.task("adder").send(iid, make_state(version, value))
                model[("adder", iid)] = model.get(("adder", iid), 0) + value
            elif op == "add":
                await jobs.debounce("inbox").add(iid, make_state(version, value))
            else:
                # Debounce batches flush, counters run on their schedule.
                await trio.sleep((value * MINUTE).total_seconds())
                await jobs.wait_idle()
        await jobs.wait_idle()
        registry = registry_at(version)
        for row in store.list_instances():
            if row.status == "terminated":
                continue
            job = registry.get(cast("Kind", row.kind), row.job)
            codec = job.state_codec
            live_agg = store.get_by_uuid(row.instance_uuid)
            replayed = replay(store.history(row.instance_uuid))
            assert live_agg is not None
            assert replayed.d == live_agg.d
            live: Any
            if row.kind == "continuous":
                live = await jobs.continuous("counter").get_state(row.instance_id)
                read = codec.read(replayed.d.state, replayed.d.state_version)
            elif row.kind == "task":
                state = await jobs.task("adder").get_state(row.instance_id)
                assert state is not None
                live = state.state
                read = codec.read(replayed.d.state, replayed.d.state_version)
            else:
                live = await jobs.debounce("inbox").get_state(row.instance_id)
                assert isinstance(replayed, DebounceInstance)
                data = replayed.current_state
                read = None if data is None else codec.read(data, replayed.current_state_version)
            assert live == read
            assert live is None or type(live) is STATE[version]
            if row.kind != "debounce":
                assert live is not None
                # Counters also run on their schedule while waiting: at least the model.
                expected = model.get((row.job, row.instance_id))
                assert expected is not None
                if row.kind == "task":
                    assert count_of(live) == expected
                else:
                    assert count_of(live) >= expected
                    model[(row.job, row.instance_id)] = count_of(live)


@slow_examples(15)
@given(phases())
def test_replay_with_upcasters_equals_live(plan: list[Phase]) -> None:
    with fresh_sqlite_url() as url:
        store = dj.open_store(url, snapshot_interval=3)
        model: dict[tuple[str, str], int] = {}

        async def main() -> None:
            for phase in plan:
                await run_phase(store, phase, model)

        try:
            run_virtual(main)
        finally:
            store.close()
