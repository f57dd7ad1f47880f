"""A debounce instance whose flush keeps failing keeps at most ``max_backlog`` closed
batches: an ``add`` that would close one more raises ``BacklogFull`` and writes
nothing (the domain rule, then the public API on each store, in virtual time)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import SECOND, T, running
from durable_jobs._domain.debounce import DebounceInstance

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


# ---- the domain rule ------------------------------------------------------------------


def domain_add(
    inst: DebounceInstance | None, event: int, *, max_backlog: int | None
) -> DebounceInstance:
    state = [*((inst.batch_state or []) if inst is not None else []), event]
    inst, _ = DebounceInstance.add(
        inst,
        "sink",
        "wh",
        event,
        now=T0,
        new_state=state,
        idempotency_key=None,
        window=timedelta(hours=24),
        flush_after=timedelta(minutes=5),
        max_events=2,
        max_backlog=max_backlog,
    )
    inst.collect_events()
    return inst


def test_an_add_that_would_close_a_batch_beyond_the_bound_is_refused() -> None:
    inst = None
    for n in range(4):  # two batches of two, closed, never flushed
        inst = domain_add(inst, n, max_backlog=2)
    assert inst is not None
    assert len(inst.d.closed) == 2
    assert inst.at_backlog_bound(2)
    inst = domain_add(inst, 4, max_backlog=2)  # the open batch may still fill
    version = inst.version
    with pytest.raises(dj.BacklogFull, match=r"'sink'.*'wh'.*2 closed batches"):
        domain_add(inst, 5, max_backlog=2)
    assert inst.version == version
    assert list(inst.collect_events()) == []
    assert inst.buffered_events == 5


def test_without_a_bound_the_closed_batches_pile_up() -> None:
    inst = None
    for n in range(20):
        inst = domain_add(inst, n, max_backlog=None)
    assert inst is not None
    assert len(inst.d.closed) == 10
    assert not inst.backlog_full(max_events=2, max_backlog=None)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_max_backlog_must_be_a_positive_int_or_none(bad: Any) -> None:
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="max_backlog of debounce job 'sink'"):

        @registry.debounce("sink", event=int, flush_after=SECOND, max_backlog=bad)
        async def sink(ctx: dj.DebounceContext[int]) -> None:
            pass


# ---- through the public API -------------------------------------------------------------


class Sink:
    """Debounce job ``sink``: max_events=2, max_backlog=3; its flush raises while ``down``."""

    def __init__(self, *, retry: dj.Retry | None = None, max_backlog: int | None = 3) -> None:
        self.registry = dj.Registry()
        self.down = True
        self.flushed: list[list[int]] = []
        self.reduced = 0

        @self.registry.debounce(
            "sink",
            event=int,
            state=list[int],
            flush_after=timedelta(minutes=5),
            max_events=2,
            max_backlog=max_backlog,
            retry=retry,
        )
        async def sink(ctx: dj.DebounceContext[list[int]]) -> None:
            if self.down:
                raise ConnectionError("warehouse down")
            self.flushed.append(ctx.state)

        @sink.on_event
        def fold(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
            self.reduced += 1
            return [*(ctx.state or []), ctx.event]

        self.job = sink


def backlog_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "max_backlog" in r.getMessage()]


async def test_a_failed_flush_bounds_its_backlog(
    store_url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durable_jobs")
    sink = Sink()
    async with running(sink.registry, store_url) as jobs:
        client = jobs.debounce(sink.job)
        for n in range(6):  # three closed batches, the first one's flush failed
            await client.add("wh", n, idempotency_key=f"k{n}")
            await jobs.wait_idle()
        await client.add("wh", 6)  # the open batch still takes events
        assert await client.status("wh") == dj.DebounceStatus("failed", 7, T, None)
        warned = backlog_warnings(caplog)
        assert len(warned) == 1
        assert warned[0].levelno == logging.WARNING
        assert (warned[0].dj_kind, warned[0].dj_job, warned[0].dj_instance_id) == (  # type: ignore[attr-defined]
            "debounce",
            "sink",
            "wh",
        )
        records = len(await client.history("wh"))
        reduced = sink.reduced
        for n in range(3):
            with pytest.raises(dj.BacklogFull) as refused:
                await client.add("wh", 7 + n)
        message = str(refused.value)
        for part in ("'sink'", "'wh'", "3 closed batches", "failed", "flush('wh')", "clear('wh')"):
            assert part in message
        assert "max_backlog" in message
        # Nothing was written, and the reducer did not run.
        assert len(await client.history("wh")) == records
        assert sink.reduced == reduced
        assert await client.status("wh") == dj.DebounceStatus("failed", 7, T, None)
        # A repeated key is still acknowledged as a duplicate.
        again = await client.add("wh", 0, idempotency_key="k0")
        assert again.duplicate
        assert len(backlog_warnings(caplog)) == 1  # one WARNING, not one per refusal
        # Fixed: one manual flush drains the backlog, and adds are accepted again.
        sink.down = False
        assert (await client.flush("wh")).flushed
        await jobs.wait_idle()
        assert sink.flushed == [[0, 1], [2, 3], [4, 5]]
        assert (await client.add("wh", 7)).event_count == 2  # [6, 7], closed
        await jobs.wait_idle()
        assert sink.flushed[-1] == [6, 7]


async def test_a_retrying_flush_says_so(autojump_clock: trio.testing.MockClock) -> None:
    retry = dj.Retry(max_attempts=5, delay=dj.Backoff.constant(timedelta(hours=1)), jitter=0)
    sink = Sink(retry=retry, max_backlog=1)
    async with running(sink.registry, "memory://") as jobs:
        client = jobs.debounce(sink.job)
        for n in range(3):
            await client.add("wh", n)
            await jobs.wait_idle()
        with pytest.raises(dj.BacklogFull, match=r"1 closed batches .*retrying \(try 2"):
            await client.add("wh", 3)


async def test_no_bound_when_max_backlog_is_none(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink(max_backlog=None)
    async with running(sink.registry, "memory://") as jobs:
        client = jobs.debounce(sink.job)
        for n in range(40):
            await client.add("wh", n)
        await jobs.wait_idle()
        assert (await client.status("wh")).event_count == 40


def test_the_testing_model_knows_the_bound() -> None:
    """The DebounceMachine's model refuses the same add the library refuses."""
    from durable_jobs.testing._models import DebounceModel

    sink = Sink(max_backlog=1)
    model = DebounceModel(sink.job, T0)
    for n in range(3):  # one closed batch (its flush not run), one open event
        model.add("wh", n)
    with pytest.raises(dj.BacklogFull):
        model.add("wh", 3)
    assert model.status("wh").event_count == 3


async def test_a_healthy_flush_at_the_bound_warns_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Reaching the bound while the flush only runs is back-pressure, not a failure."""
    caplog.set_level(logging.WARNING, logger="durable_jobs")
    sink = Sink(max_backlog=1)
    sink.down = False
    async with running(sink.registry, "memory://") as jobs:
        client = jobs.debounce(sink.job)
        for n in range(8):
            await client.add("wh", n)
            await jobs.wait_idle()
        assert sink.flushed == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert backlog_warnings(caplog) == []


async def test_a_flush_failing_at_the_bound_warns_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With max_backlog=1 the bound is reached before the flush fails: the failure says so."""
    caplog.set_level(logging.WARNING, logger="durable_jobs")
    sink = Sink(max_backlog=1)
    async with running(sink.registry, "memory://") as jobs:
        client = jobs.debounce(sink.job)
        for n in range(3):
            await client.add("wh", n)
            await jobs.wait_idle()
        assert len(backlog_warnings(caplog)) == 1
        for n in range(3):
            with pytest.raises(dj.BacklogFull):
                await client.add("wh", 3 + n)
        assert (await client.flush("wh")).reason == "failed"  # by hand: says it again
        await jobs.wait_idle()
    assert len(backlog_warnings(caplog)) == 2
