"""Clocks: the system clock's naps, the virtual clock's mapping to trio time, held time."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from durable_jobs._runtime.clock import hold_virtual_time

T = datetime(2026, 1, 1, tzinfo=UTC)


async def test_virtual_time_follows_trio_and_jumps(autojump_clock: trio.testing.MockClock) -> None:
    clock = dj.VirtualClock(T)
    assert clock.now() == T
    await trio.sleep(90)
    assert clock.now() == T + timedelta(seconds=90)
    jumped: list[int] = []
    unsubscribe = clock.on_jump(lambda: jumped.append(1))
    clock.jump(timedelta(hours=-1))
    assert clock.now() == T + timedelta(seconds=90) - timedelta(hours=1)
    unsubscribe()
    clock.jump(timedelta(hours=1))
    assert jumped == [1]


async def test_a_virtual_deadline_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    """Sleeping until deadline(t) lands exactly on t (no off-by-a-microsecond spin)."""
    clock = dj.VirtualClock(T)
    for target in (
        T + timedelta(microseconds=1),
        T + timedelta(seconds=1.000001),
        T + timedelta(days=3),
    ):
        await trio.sleep_until(clock.deadline(target))
        assert clock.now() == target


async def test_the_system_clock_naps_at_most_max_nap() -> None:
    clock = dj.SystemClock(max_nap=timedelta(milliseconds=200))
    now = trio.current_time()
    far = clock.deadline(clock.now() + timedelta(hours=1))
    assert now <= far <= trio.current_time() + 0.2
    past = clock.deadline(clock.now() - timedelta(hours=1))
    assert past <= trio.current_time()
    assert clock.now().tzinfo is UTC


def test_clock_settings_are_checked() -> None:
    with pytest.raises(dj.ConfigurationError):
        dj.SystemClock(max_nap=timedelta(0))
    with pytest.raises(dj.ConfigurationError):
        dj.VirtualClock(datetime(2026, 1, 1))  # naive
    with pytest.raises(dj.ConfigurationError):
        dj.VirtualClock(T).jump(5)  # type: ignore[arg-type]
    # Past the times a store keeps: every later read of the clock would fail.
    with pytest.raises(dj.ConfigurationError, match="latest time a store keeps"):
        dj.VirtualClock(datetime.max.replace(tzinfo=UTC))


async def test_a_jump_past_the_times_a_store_keeps_is_refused_and_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = dj.VirtualClock(T)
    await trio.sleep(5)
    before = clock.now()
    for delta in (timedelta(days=3_000_000), timedelta.max, -timedelta(days=800_000)):
        with pytest.raises(dj.ValidationError, match="the clock did not move"):
            clock.jump(delta)
        assert clock.now() == before
    clock.jump(timedelta(days=365))  # within: fine
    assert clock.now() == before + timedelta(days=365)


async def test_held_time_stops_autojump_and_restores_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with hold_virtual_time():
        assert autojump_clock.autojump_threshold == math.inf
        with hold_virtual_time():
            assert autojump_clock.autojump_threshold == math.inf
        assert autojump_clock.autojump_threshold == math.inf
    assert autojump_clock.autojump_threshold == 0


async def test_held_time_is_a_no_op_outside_a_mock_clock() -> None:
    with hold_virtual_time():
        await trio.lowlevel.checkpoint()


async def test_a_mock_clock_with_the_system_clock_is_pointed_out(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Virtual trio time with wall-clock jobs would wait for real time: say so."""
    async with dj.open_jobs(dj.Registry(), "memory://"):
        pass
    assert "pass clock=durable_jobs.VirtualClock()" in caplog.text
    caplog.clear()
    async with dj.open_jobs(dj.Registry(), "memory://", clock=dj.VirtualClock()):
        pass
    assert "VirtualClock" not in caplog.text


async def test_durations_may_be_given_in_seconds(autojump_clock: trio.testing.MockClock) -> None:
    """shutdown_grace=5 means five seconds, as SPEC writes it; nonsense is refused."""
    async with dj.open_jobs(
        dj.Registry(), "memory://", clock=dj.VirtualClock(), shutdown_grace=5, poll_interval=2.5
    ):
        pass
    bad_options: list[dict[str, Any]] = [
        {"shutdown_grace": -1},
        {"poll_interval": 0},
        {"shutdown_grace": "5s"},
    ]
    for bad in bad_options:
        with pytest.raises(dj.ConfigurationError):
            async with dj.open_jobs(
                dj.Registry(),
                "memory://",
                clock=dj.VirtualClock(),
                **bad,
            ):
                pass  # pragma: no cover


@pytest.mark.parametrize("name", ["shutdown_grace", "poll_interval", "lease"])
async def test_seconds_below_a_microsecond_are_refused_not_zero(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A positive number of seconds a timedelta would round to 0 is refused as such,
    not taken as 0 (nor refused as if it were not positive)."""
    tiny: dict[str, Any] = {name: 1e-9}
    with pytest.raises(dj.ConfigurationError, match=rf"^{name} must be at least a microsecond"):
        async with dj.open_jobs(dj.Registry(), "memory://", clock=dj.VirtualClock(), **tiny):
            pass  # pragma: no cover


_NO_TESTING = """
import sys, threading, trio
from durable_jobs._runtime.clock import in_thread

async def main():
    main_thread = threading.get_ident()
    got = await in_thread(lambda a, b: (a + b, threading.get_ident() != main_thread), 2, 3)
    assert got == (5, True), got
    assert "trio.testing" not in sys.modules
    print("ok")

trio.run(main)
"""


def test_in_thread_without_trio_testing_imported_runs_the_call_in_a_thread() -> None:
    """An application never imports ``trio.testing``: then no MockClock can exist and
    ``in_thread`` goes straight to the worker thread (tests always have it imported)."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_TESTING], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
