"""Handler calls take the caller's start time and say when they ended (one clock read
each instead of two), and metrics the OpenTelemetry API would drop are not made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from durable_jobs._runtime.clock import VirtualClock
from durable_jobs._runtime.handlers import HandlerCalls
from durable_jobs._telemetry import _OpenTelemetry, telemetry


async def test_a_call_times_out_from_the_start_its_caller_gave_and_says_when_it_ended(
    autojump_clock: MockClock,
) -> None:
    registry = dj.Registry()

    @registry.continuous(
        "c", state=int, schedule=dj.every(timedelta(hours=1)), timeout=timedelta(seconds=10)
    )
    async def c(ctx: object) -> None:
        await trio.sleep(60)

    clock = VirtualClock()
    calls = HandlerCalls(clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(calls.run)
        started = clock.now() - timedelta(seconds=4)
        t0 = trio.current_time()
        outcome = await calls.call(c, "execute", c.execute, None, instance_id="x", started=started)
        assert isinstance(outcome.error, dj.HandlerTimeout)
        assert trio.current_time() - t0 == pytest.approx(6)
        assert outcome.ended == clock.now()

        quick = await calls.call(c, "execute", lambda _: None, None, instance_id="y")
        assert quick.error is None and quick.ended == clock.now()
        nursery.cancel_scope.cancel()


class _Instrument:
    """Stands for the OpenTelemetry API's proxy instrument (it drops what it is given
    until a meter provider is set, then hands it on)."""

    def __init__(self) -> None:
        self._real_instrument: object = None
        self.got: list[tuple[str, float, Any]] = []

    def add(self, amount: float, attributes: Any = None) -> None:
        self.got.append(("add", amount, attributes))

    def record(self, amount: float, attributes: Any = None) -> None:
        self.got.append(("record", amount, attributes))


def test_metrics_are_not_made_while_dropped_and_are_recorded_once_a_provider_is_set() -> None:
    assert isinstance(telemetry, _OpenTelemetry)
    t = _OpenTelemetry()
    proxy = _Instrument()
    t._runs = t._duration = t._lateness = t._batch = proxy
    t.record_run("continuous", "j", "execute", "succeeded", 0.5)
    t.record_lateness("continuous", "j", 0.25)
    t.record_commit(3)
    assert proxy.got == []

    proxy._real_instrument = object()  # a provider was set: the proxy hands on from now
    t.record_run("continuous", "j", "execute", "succeeded", 0.5)
    t.record_run("continuous", "j", "execute", "failed", 0.75)
    t.record_run("continuous", "j", "execute", "succeeded", 1.0)
    t.record_lateness("continuous", "j", -0.1)
    t.record_commit(3)
    run = {
        "durable_jobs.kind": "continuous",
        "durable_jobs.job": "j",
        "durable_jobs.handler": "execute",
        "durable_jobs.outcome": "succeeded",
    }
    failed = dict(run, **{"durable_jobs.outcome": "failed"})
    job = {"durable_jobs.kind": "continuous", "durable_jobs.job": "j"}
    assert proxy.got == [
        ("add", 1, run),
        ("record", 0.5, run),
        ("add", 1, failed),
        ("record", 0.75, failed),
        ("add", 1, run),
        ("record", 1.0, run),
        ("record", 0.0, job),
        ("record", 3, None),
    ]
    # The attributes of one (kind, job, handler, outcome) are made once.
    assert proxy.got[0][2] is proxy.got[4][2]


class _Awaitable:
    """Not a coroutine, but awaitable: awaited all the same."""

    def __await__(self) -> Any:
        yield from trio.lowlevel.checkpoint().__await__()
        return "awaited"


async def test_a_call_without_a_timeout_awaits_what_is_awaitable_and_applies_then(
    autojump_clock: MockClock,
) -> None:
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(hours=1)))
    async def c(ctx: object) -> None: ...

    calls = HandlerCalls(VirtualClock())

    async def coroutine(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x + 1

    def plain(x: int) -> int:
        return x * 10

    def then(v: object) -> tuple[str, object]:
        return ("then", v)

    got = [
        (await calls.call(c, "execute", fn, 4, instance_id="x", then=then)).value
        for fn in (coroutine, plain, lambda _: _Awaitable())
    ]
    assert got == [("then", 5), ("then", 40), ("then", "awaited")]
    bad = await calls.call(c, "execute", lambda _: 1 / 0, 4, instance_id="x")
    assert isinstance(bad.error, ZeroDivisionError) and calls.running == 0
