"""Where the runtime's time comes from: :class:`SystemClock` or :class:`VirtualClock`.

The domain never reads a clock; the runtime asks its :class:`Clock` for "now"
(a UTC datetime) and for the trio deadline at which a given time will have
come. Alarms are absolute times, so a clock that jumps (the wall clock set
forward or back) moves when they fire but can neither lose one nor fire one
twice: a run moves or clears its alarm in the same commit.
"""

from __future__ import annotations

import functools
import math
import sys
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast, final

import trio

from durable_jobs._domain.values import LATEST_ALARM
from durable_jobs._errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from trio.testing import MockClock

__all__ = [
    "Clock",
    "SystemClock",
    "VirtualClock",
    "current_mock_clock",
    "hold_virtual_time",
    "in_thread",
]

_T = TypeVar("_T")

#: Where a VirtualClock starts unless told otherwise.
VIRTUAL_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock(ABC):
    """The time of a job runtime. Subclass to supply your own."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    @abstractmethod
    def deadline(self, when: datetime) -> float:
        """The ``trio.current_time()`` at which to look at the clock again to catch ``when``.

        It may be earlier than ``when`` (the runtime then checks and sleeps
        again), never meaningfully later.
        """

    def on_jump(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` whenever the clock jumps; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _jumped(self) -> None:
        for listener in list(self._listeners):
            listener()


@final
class SystemClock(Clock):
    """The system wall clock (UTC). Jumps are noticed within ``max_nap``."""

    def __init__(self, max_nap: timedelta = timedelta(seconds=1)) -> None:
        super().__init__()
        if not isinstance(max_nap, timedelta) or max_nap <= timedelta(0):
            raise ConfigurationError(f"max_nap must be a positive timedelta, got {max_nap!r}")
        self._max_nap = max_nap.total_seconds()
        # What now() returns, read without a Python frame (two clock reads a run).
        self.now = functools.partial(datetime.now, UTC)  # type: ignore[method-assign]

    def now(self) -> datetime:
        """The system's time, in UTC."""
        return datetime.now(UTC)

    def deadline(self, when: datetime) -> float:
        """When to look again: at ``when``, or sooner (naps are capped, to notice clock jumps)."""
        wait = (when - self.now()).total_seconds()
        return trio.current_time() + max(0.0, min(wait, self._max_nap))

    def __repr__(self) -> str:
        return "SystemClock()"


@final
class VirtualClock(Clock):
    """Job time that follows trio's clock: under ``trio.testing.MockClock`` it is virtual.

    ``now()`` is ``start`` plus the trio time elapsed since the clock was first
    read, plus every :meth:`jump`. With ``MockClock(autojump_threshold=0)`` a
    test of "every hour for a week" runs in milliseconds. Store calls made by
    the runtime take no virtual time (see :func:`hold_virtual_time`).
    """

    def __init__(self, start: datetime = VIRTUAL_EPOCH) -> None:
        super().__init__()
        if not isinstance(start, datetime) or start.utcoffset() is None:
            raise ConfigurationError(
                f"VirtualClock start must be a timezone-aware datetime, got {start!r}"
            )
        try:
            utc_start = start.astimezone(UTC)
        except OverflowError:
            msg = f"VirtualClock start must fall within the years 1 to 9999 in UTC, got {start!r}"
            raise ConfigurationError(msg) from None
        if utc_start > LATEST_ALARM:
            msg = (
                f"VirtualClock start must be at most {LATEST_ALARM.isoformat()} (the latest "
                f"time a store keeps), got {start.isoformat()}"
            )
            raise ConfigurationError(msg)
        self._start = utc_start
        self._base: float | None = None
        self._offset = timedelta(0)

    def _elapsed_us(self) -> int:
        t = trio.current_time()
        if self._base is None:
            self._base = t
        return round((t - self._base) * 1_000_000)

    def now(self) -> datetime:
        """The virtual time: the start plus the trio time elapsed since."""
        return self._start + self._offset + timedelta(microseconds=self._elapsed_us())

    def deadline(self, when: datetime) -> float:
        """The trio time at which the virtual clock reaches ``when``."""
        self._elapsed_us()
        assert self._base is not None
        us = (when - self._start - self._offset) // timedelta(microseconds=1)
        return self._base + us / 1_000_000

    def jump(self, delta: timedelta) -> None:
        """Move this clock's time by ``delta`` (forward or back) without trio time passing.

        Models the wall clock being set: alarms are absolute times, so a jump
        forward makes those it passes due at once, a jump back delays them.
        """
        if not isinstance(delta, timedelta):
            raise ConfigurationError(f"jump() takes a timedelta, got {delta!r}")
        elapsed = timedelta(0)
        if self._base is not None:  # read in a trio run: time has passed since
            elapsed = timedelta(microseconds=self._elapsed_us())
        try:
            after = self._start + self._offset + elapsed + delta
        except OverflowError:
            after = None
        if after is None or not EARLIEST_TIME <= after <= LATEST_ALARM:
            # The clock would be read at every step from then on, and fail every time.
            msg = (
                f"jump({delta!r}) would move the clock past the times a store keeps "
                f"({EARLIEST_TIME.date().isoformat()} to {LATEST_ALARM.isoformat()}); the "
                "clock did not move."
            )
            raise ValidationError(msg)
        self._offset += delta
        self._jumped()

    def __repr__(self) -> str:
        return f"VirtualClock(start={self._start.isoformat()})"


#: The earliest time a jump may move a virtual clock to (a year 1 time cannot be shifted).
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)


def current_mock_clock() -> MockClock | None:
    """trio's clock if it is a ``trio.testing.MockClock`` (None outside trio too).

    Looked up in ``sys.modules`` rather than imported: a MockClock exists only
    once ``trio.testing`` has been imported, and importing it here would load
    pytest into every application that has it installed (``trio.testing``
    imports it), with its import time and its objects on the heap.
    """
    testing = sys.modules.get("trio.testing")
    if testing is None:
        return None
    try:
        clock = trio.lowlevel.current_clock()
    except RuntimeError:
        return None
    return cast("MockClock", clock) if isinstance(clock, testing.MockClock) else None


_holds: weakref.WeakKeyDictionary[MockClock, tuple[int, float]] = weakref.WeakKeyDictionary()


@contextmanager
def hold_virtual_time() -> Iterator[None]:
    """Stop a ``MockClock`` from autojumping while the block runs (store I/O in a thread).

    A task waiting for a worker thread counts as blocked, so autojump would
    otherwise move virtual time while a store call is in flight and fire
    alarms early. Outside a ``MockClock`` this does nothing.
    """
    clock = current_mock_clock()
    if clock is None:
        yield
        return
    hold(clock)
    try:
        yield
    finally:
        release(clock)


def hold(clock: MockClock) -> None:
    """Stop ``clock`` from autojumping until the matching :func:`release` (holds nest)."""
    count, saved = _holds.get(clock, (0, clock.autojump_threshold))
    if count == 0:
        saved = clock.autojump_threshold
        clock.autojump_threshold = math.inf
    _holds[clock] = (count + 1, saved)


def release(clock: MockClock) -> None:
    """End one :func:`hold`; the last one gives ``clock`` its threshold back."""
    count, saved = _holds[clock]
    if count == 1:
        del _holds[clock]
        clock.autojump_threshold = saved
    else:
        _holds[clock] = (count - 1, saved)


async def in_thread(
    fn: Callable[..., _T], *args: Any, limiter: trio.CapacityLimiter | None = None
) -> _T:
    """``fn(*args)`` in a worker thread, taking no virtual time (:func:`hold_virtual_time`)."""
    if "trio.testing" not in sys.modules:
        # No MockClock can exist (see current_mock_clock): nothing to hold.
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
    with hold_virtual_time():
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
