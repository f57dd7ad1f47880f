"""The harness's watch over its trio run (a trio instrument and a guard thread).

It sees three ways a handler can keep a virtual-time test from ending:

- a wait for a worker thread (``trio.to_thread.run_sync``): virtual time is
  held while one runs (autojump would count the wait as idle time), and a
  thread in which nothing moves for ``stall_timeout`` is given up on: time is
  free again, and once its task is cancelled (a timeout, the shutdown) the
  task stops waiting for it, as ``abandon_on_cancel=True`` would;
- a busy loop (``while True: await trio.sleep(0)``): a task that is always
  runnable keeps trio from ever autojumping, so no virtual time passes and no
  ``timeout=`` fires. When tasks keep stepping for ``stall_timeout`` while the
  clock stands still, nothing is committed and no thread runs, the harness
  calls that were waiting are cancelled (they raise ``HarnessStalled``), and
  from then on the clock jumps to its next deadline whenever such a loop
  spins, so that the harness can still stop;
- anything else a handler waits on is the harness's own concern (``_settle``).
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

import outcome
import trio
import trio.testing

from durable_jobs._runtime import clock as _clock_module

__all__ = ["THREAD_CODE", "Watch", "all_tasks", "coroutine_frames"]

#: The code of ``trio.to_thread.run_sync``: a frame of it is a wait for a worker thread.
THREAD_CODE: CodeType | None = getattr(trio.to_thread.run_sync, "__code__", None)


def all_tasks() -> Iterator[trio.lowlevel.Task]:
    """Every task of the current trio run."""
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        yield task
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)


def coroutine_frames(coro: Any) -> Iterator[FrameType]:
    """The frames of a suspended coroutine, outermost first (through a generator that
    drives a coroutine by hand, as the runtime does to run one in a context)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            return
        yield frame
        inner = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if inner is None:
            inner = next(
                (
                    v
                    for v in frame.f_locals.values()
                    if inspect.iscoroutine(v) and v.cr_frame is not None and v is not coro
                ),
                None,
            )
        coro = inner


class Watch(trio.abc.Instrument):
    """Counts the steps tasks take, holds virtual time while worker threads run, and
    catches busy loops; see the module's docstring.

    ``progress()`` counts what the jobs committed: a busy period that commits is
    not a stall. ``guard(scope)`` / ``unguard(scope)`` bracket a harness call
    that a busy loop would hang: on a stall its scope is cancelled and
    ``spinners`` names the tasks that kept running.
    """

    def __init__(
        self, clock: trio.testing.MockClock, stall_timeout: float, progress: Callable[[], int]
    ) -> None:
        self.clock = clock
        self.stall_timeout = stall_timeout
        #: Real seconds between two looks (a quarter of stall_timeout, at most 0.25 s).
        self.period = min(max(stall_timeout / 4, 0.001), 0.25)
        self.steps = 0
        self.watcher: trio.lowlevel.Task | None = None
        self.guards: list[trio.CancelScope] = []
        #: The tasks that kept running through the last busy-loop stall.
        self.spinners: list[trio.lowlevel.Task] = []
        self._progress = progress
        self._busy: set[trio.lowlevel.Task] = set()
        self._spinning: set[trio.lowlevel.Task] = set()
        self._scheduled: set[trio.lowlevel.Task] = set()
        self._threaded = False
        self._abandoning = False
        self._holding = False
        self._gave_up = False
        self._spun = False
        self._hold_steps = 0
        self._hold_since = 0.0
        self._mark: tuple[float, int] | None = None
        self._mark_at = 0.0
        self._ticker: trio.lowlevel.Task | None = None
        self._token = trio.lowlevel.current_trio_token()
        self._cond = threading.Condition()
        self._closed = False
        self._guard_thread = threading.Thread(
            target=self._guard, name="durable_jobs harness watch", daemon=True
        )
        self._guard_thread.start()

    # -- trio's instrument hooks (the trio thread) --

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self._scheduled.add(task)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._scheduled.discard(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.watcher and task is not self._ticker:
            self.steps += 1
            if self._ticking:
                self._busy.add(task)
        count = trio.testing.active_thread_count()
        if count:
            self._threaded = True
            if self._gave_up and task is not self._ticker and not self._abandoning:
                # This step may have cancelled a task that waits for a given-up thread.
                self._abandoning = True
                self._token.run_sync_soon(self._abandon_cancelled_threads)
        else:
            self._gave_up = False
        busy = count > 0 and not self._gave_up
        if busy != self._holding:
            self._set_holding(busy)

    # -- the harness's calls --

    def guard(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` should a busy loop stall the run while it is open."""
        self.guards.append(scope)
        self._mark = None
        self._wake()

    def unguard(self, scope: trio.CancelScope) -> None:
        self.guards.remove(scope)

    def close(self) -> None:
        if self._holding:
            self._set_holding(False)
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- inside --

    @property
    def _ticking(self) -> bool:
        return self._holding or self._gave_up or self._spun or bool(self.guards)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _set_holding(self, busy: bool) -> None:
        self._holding = busy
        self._hold_steps, self._hold_since = self.steps, time.monotonic()
        if busy:
            _clock_module.hold(self.clock)
            self._wake()
        else:
            _clock_module.release(self.clock)

    def _guard(self) -> None:
        """(guard thread) Have trio look after every period in which tasks stepped, and
        after ``stall_timeout`` in which none did while time is held for a thread. (Never
        while the run is idle otherwise: a look would end the idle spell that
        ``wait_all_tasks_blocked`` waits for.)"""
        with self._cond:
            seen, quiet_since, gap = -1, time.monotonic(), True
            while not self._closed:
                if not self._ticking:
                    self._cond.wait()
                    seen, gap = -1, True
                    continue
                if self._cond.wait_for(lambda: self._closed, self.period):
                    return
                steps, now = self.steps, time.monotonic()
                if steps != seen:
                    seen, quiet_since = steps, now
                elif self._holding and now - quiet_since >= self.stall_timeout:
                    quiet_since = now
                else:
                    # Nothing ran for a while: no busy loop (a loaded machine may pause
                    # one for a period or two, hence not at once).
                    gap = gap or now - quiet_since >= self.stall_timeout / 2
                    continue
                try:
                    self._token.run_sync_soon(self._tick, gap)
                except trio.RunFinishedError:
                    return
                gap = False

    def _tick(self, gap: bool) -> None:
        """(trio) One look: give up a stalled thread, catch a busy loop (``gap``: nothing
        ran for half of stall_timeout since the last look)."""
        self._ticker = trio.lowlevel.current_task()  # runs every run_sync_soon callback
        now = time.monotonic()
        busy, self._busy = self._busy, set()
        threaded, self._threaded = self._threaded, False
        busy.discard(self._ticker)
        if self._holding:
            if self.steps != self._hold_steps:
                self._hold_steps, self._hold_since = self.steps, now
            elif now - self._hold_since >= self.stall_timeout:
                self._gave_up = True
                self._set_holding(False)
        if self._spun and not any(_alive(task) for task in self.spinners):
            self._spun = False  # the busy loops are over
        self._look_for_a_busy_loop(now, busy, threaded or gap)

    def _look_for_a_busy_loop(
        self, now: float, busy: set[trio.lowlevel.Task], reset: bool
    ) -> None:
        mark = (trio.current_time(), self._progress())
        self._spinning &= busy
        if mark != self._mark or reset or not self._spinning:
            # The clock moved, something committed, a thread ran, a period passed with no
            # step, or no task kept running.
            self._mark, self._mark_at, self._spinning = mark, now, busy
            return
        if self.guards:
            if now - self._mark_at >= self.stall_timeout:
                self.spinners = list(self._spinning)
                self._spun = True
                for scope in self.guards:
                    scope.cancel()
                self._mark_at = now
        elif self._spun and not self._spinning.isdisjoint(self.spinners):
            self._jump()

    def _jump(self) -> None:
        """Move the clock to its next deadline, as autojump would were the run idle."""
        if self.clock.autojump_threshold == math.inf:  # not autojumping now, or held
            return
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if 0 < jump < math.inf:
            self.clock.jump(jump)

    def _abandon_cancelled_threads(self) -> None:
        """Stop the cancelled tasks that wait for a given-up worker thread from waiting,
        as ``abandon_on_cancel=True`` would have (the thread runs on, its result is lost)."""
        self._ticker = trio.lowlevel.current_task()
        self._abandoning = False
        if THREAD_CODE is None:
            return
        for task in list(all_tasks()):
            if task in self._scheduled:
                continue
            for frame in coroutine_frames(task.coro):
                if frame.f_code is THREAD_CODE:
                    _abandon(task, frame)
                    break


def _alive(task: trio.lowlevel.Task) -> bool:
    """Whether ``task`` has not finished (its coroutine still has a frame)."""
    return getattr(task.coro, "cr_frame", None) is not None


def _abandon(task: trio.lowlevel.Task, frame: FrameType) -> None:
    """Wake ``task`` (blocked in ``trio.to_thread.run_sync`` at ``frame``) with the
    cancellation it was refused, if it was cancelled; the thread's result is dropped."""
    names = frame.f_locals
    waiting, cancels = names.get("task_register"), names.get("cancel_register")
    if not (isinstance(waiting, list) and isinstance(cancels, list)):
        return  # another trio than we know: leave it
    if len(waiting) != 1 or waiting[0] is not task or len(cancels) != 1:
        return
    raise_cancel = cancels[0]
    if raise_cancel is None:
        return  # not cancelled: it still waits (advance raised HarnessStalled)
    waiting[0] = None  # the thread's result will not reschedule the task
    trio.lowlevel.reschedule(task, outcome.capture(raise_cancel))
