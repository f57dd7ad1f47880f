"""Alarm lateness in real time: steady rates of alarms, and a burst.

Each alarm is a task instance: ``send(id, due)`` runs ``on_event``, which
schedules the alarm at ``due``; the alarm's ``execute`` notes how late it
started (job clock now - due). Steady: sends at ``--rates`` per second for
``--seconds``, each alarm due ``--lead`` after its send was started (open
loop: a slow send does not slow the next ones; a send that returned after its
alarm was due is counted). Burst: ``--burst`` alarms are written first, all due
at one instant ``--burst-lead`` after the runtime (re)started; their lateness
shows how fast a backlog drains. Runs are bounded: alarms still not run after
``--drain`` seconds are counted as missed.

Where the time of the late alarms (over 5 ms) went: the full garbage collections
during the case (the longest pause), and the part of those alarms' lateness spent
inside a collection. ``--gc-freeze`` runs each case the way an application with a
latency target would: ``gc.freeze()`` after startup, so that full collections skip
the objects of the imports (see docs/performance.md, "Lateness: before and after").

    .venv/bin/python benchmarks/lateness.py [--quick] [--rates 100,1000] [--burst 1000]
        [--gc-freeze]
"""

from __future__ import annotations

import argparse
import gc
import math
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
from _common import (
    Target,
    check_postgres,
    header,
    open_target,
    parser,
    percentile,
    stores_arg,
    table,
    target,
)

import durable_jobs as dj
from durable_jobs._store.base import Store


class ShiftedClock(dj.Clock):
    """The system clock moved by a fixed offset (to make a burst due right after startup)."""

    def __init__(self, shift: timedelta) -> None:
        super().__init__()
        self.shift = shift

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def deadline(self, when: datetime) -> float:
        wait = (when - self.now()).total_seconds()
        return trio.current_time() + max(0.0, min(wait, 1.0))


#: An alarm later than this is "late" in the breakdown columns.
LATE = 0.005


class Pauses:
    """The garbage collector's pauses (wall-clock start, end, generation) while active."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, int]] = []
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.time()
        else:
            self.spans.append((self._start, time.time(), info["generation"]))

    def __enter__(self) -> Pauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def full(self) -> list[float]:
        return [end - start for start, end, gen in self.spans if gen == 2]

    def within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b, _ in self.spans)


@dataclass
class Probe:
    clock: dj.Clock = field(default_factory=dj.SystemClock)
    late: dict[str, float] = field(default_factory=dict)
    #: When each alarm's execute started (wall clock).
    started: dict[str, float] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    expected: int = 0

    def registry(self) -> dj.Registry:
        reg = dj.Registry()

        @reg.task("late", event=float, state=float)
        async def late(ctx: dj.TaskContext[float]) -> None:
            assert ctx.state is not None
            self.late[ctx.instance_id] = self.clock.now().timestamp() - ctx.state
            self.started[ctx.instance_id] = time.time()
            if len(self.late) >= self.expected:
                self.done.set()

        @late.on_event
        async def schedule(event: float, ctx: dj.TaskContext[float]) -> None:
            ctx.set_state(event)
            due = datetime.fromtimestamp(event, UTC)
            # A send that returned after its due time: an alarm cannot be set in the
            # past, so it rings at once (its lateness is still measured from ``due``).
            ctx.schedule(due if due > self.clock.now() else timedelta(0))

        return reg


@dataclass
class Result:
    case: str
    alarms: int
    late: list[float]
    late_sends: int
    wall: float
    #: Full collections during the case, the longest (seconds), and the share of the
    #: lateness over :data:`LATE` spent inside a collection (any generation).
    full_gcs: int = 0
    longest_gc: float = 0.0
    late_in_gc: float = math.nan
    #: CPU of the process (all threads) over the case, seconds.
    cpu: float = math.nan

    def row(self, label: str) -> list[object]:
        missed = self.alarms - len(self.late)
        values = self.late or [math.nan]
        return [
            label,
            self.case,
            self.alarms,
            f"{percentile(values, 0.5) * 1e3:.1f}",
            f"{percentile(values, 0.99) * 1e3:.1f}",
            f"{max(values) * 1e3:.1f}",
            self.late_sends,
            missed,
            sum(1 for v in self.late if v > LATE),
            self.full_gcs,
            f"{self.longest_gc * 1e3:.1f}",
            "-" if math.isnan(self.late_in_gc) else f"{self.late_in_gc:.0%}",
            f"{self.cpu / self.alarms * 1e6:.0f}",
        ]


def traced(result: Result, probe: Probe, pauses: Pauses) -> Result:
    """``result`` with the garbage collector's part in it."""
    full = pauses.full()
    result.full_gcs = len(full)
    result.longest_gc = max((b - a for a, b, _ in pauses.spans), default=0.0)
    late = [(probe.started[k], v) for k, v in probe.late.items() if v > LATE]
    total = sum(v for _, v in late)
    if total:
        result.late_in_gc = sum(pauses.within(start - v, start) for start, v in late) / total
    return result


async def steady(
    store: Store, rate: int, seconds: float, lead: float, drain: float, frozen: bool = False
) -> Result:
    probe = Probe()
    n = max(1, round(rate * seconds))
    probe.expected = n
    late_sends = 0
    prefix = f"r{rate}-"
    freeze(frozen)
    pauses = Pauses()
    async with dj.open_jobs(probe.registry(), store, clock=probe.clock) as jobs:
        client = jobs.task("late")
        start_wall, start = time.time(), trio.current_time()
        cpu = time.process_time()
        pauses.__enter__()

        async def send(k: int, due: float) -> None:
            nonlocal late_sends
            await client.send(f"{prefix}{k}", due)
            if time.time() > due:
                late_sends += 1

        async with trio.open_nursery() as nursery:
            for k in range(n):
                await trio.sleep_until(start + k / rate)
                nursery.start_soon(send, k, start_wall + k / rate + lead)
        with trio.move_on_after(lead + drain):
            await probe.done.wait()
        wall = time.time() - start_wall
        pauses.__exit__()
        cpu = time.process_time() - cpu
    result = Result(f"steady {rate}/s", n, list(probe.late.values()), late_sends, wall, cpu=cpu)
    return traced(result, probe, pauses)


async def burst(
    store: Store, count: int, lead: float, drain: float, in_flight: int, frozen: bool = False
) -> Result:
    due = datetime.now(UTC) + timedelta(hours=1)
    # Write the burst while its alarms are an hour away ...
    writer = Probe()
    async with dj.open_jobs(writer.registry(), store) as jobs:
        client = jobs.task("late")
        limit = trio.Semaphore(in_flight)

        async def send(k: int) -> None:
            await client.send(f"b{k}", due.timestamp())
            limit.release()

        async with trio.open_nursery() as nursery:
            for k in range(count):
                await limit.acquire()
                nursery.start_soon(send, k)
    # ... then start again on a clock where they fall due ``lead`` after the start.
    probe = Probe(clock=ShiftedClock(due - datetime.now(UTC) - timedelta(seconds=lead)))
    probe.expected = count
    t0 = time.time()
    freeze(frozen)
    cpu = time.process_time()
    with Pauses() as pauses:
        async with dj.open_jobs(probe.registry(), store, clock=probe.clock):
            with trio.move_on_after(lead + drain):
                await probe.done.wait()
    cpu = time.process_time() - cpu
    wall = time.time() - t0
    result = Result(f"burst of {count}", count, list(probe.late.values()), 0, wall, cpu=cpu)
    return traced(result, probe, pauses)


def freeze(frozen: bool) -> None:
    """``--gc-freeze``: freeze the heap before a case (after its imports and setup)."""
    if frozen:
        gc.collect()
        gc.freeze()


def measure(t: Target, rates: list[int], a: argparse.Namespace) -> list[list[object]]:
    store = open_target(t)
    rows: list[list[object]] = []
    try:
        for rate in rates:
            r = trio.run(steady, store, rate, a.seconds, a.lead, a.drain, a.gc_freeze)
            rows.append(r.row(t.label))
        if a.burst:
            r = trio.run(burst, store, a.burst, a.burst_lead, a.drain, 64, a.gc_freeze)
            rows.append(r.row(t.label))
    finally:
        store.close()
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rates", default="100,1000", help="alarms per second, comma-separated")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each steady run")
    p.add_argument("--lead", type=float, default=0.05, help="alarm due this long after its send")
    p.add_argument("--burst", type=int, default=1000, help="alarms in the burst (0: none)")
    p.add_argument("--burst-lead", type=float, default=1.0)
    p.add_argument("--drain", type=float, default=10.0, help="wait this long for late alarms")
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before each case, as an application with a latency target would",
    )
    a = p.parse_args()
    if a.quick:
        a.seconds, a.burst, a.burst_lead, a.drain = 0.2, 20, 0.2, 3.0
    rates = [int(r) for r in a.rates.split(",") if r.strip()]
    stores = stores_arg(a.stores)
    header(
        f"Alarm lateness (steady runs of {a.seconds:g} s, alarm due {a.lead * 1e3:.0f} ms "
        f"after its send; burst of {a.burst} due {a.burst_lead:g} s after start"
        f"{'; gc.freeze() before each case' if a.gc_freeze else ''})"
    )
    if "postgres" in stores:
        check_postgres()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind in stores:
            with target(kind, Path(d), "late") as t:
                rows += measure(t, rates, a)
    table(
        [
            "store",
            "case",
            "alarms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "sends returned after due",
            "missed",
            f"late > {LATE * 1e3:g} ms",
            "full GCs",
            "longest GC ms",
            "of their lateness in GC",
            "CPU µs per alarm",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
