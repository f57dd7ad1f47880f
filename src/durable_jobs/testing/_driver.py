"""A harness served by a trio loop in a helper thread, driven from synchronous code.

hypothesis runs a state machine's rules as plain method calls; each rule
hands its async work to the loop with ``trio.from_thread.run``. Virtual time
stands still between calls (the ``MockClock`` autojump threshold is infinite
then) and moves only inside them, so nothing runs ahead while hypothesis is
choosing the next step.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar, final

import trio
import trio.testing

from durable_jobs._definitions.registry import Registry
from durable_jobs._runtime.clock import VIRTUAL_EPOCH
from durable_jobs._store.base import Store
from durable_jobs.testing._harness import Harness, _set_autojump, autojumping, open_harness

__all__ = ["HarnessThread"]

T = TypeVar("T")

#: A call that waits longer than this in virtual time is stuck (a deadlock): it fails.
STUCK_AFTER = 400 * 24 * 3600.0


@final
class HarnessThread:
    """An :func:`open_harness` block kept open in a helper thread's trio loop.

    ``call(fn, *args)`` runs ``await fn(harness, *args)`` in that loop (with
    virtual time free to move) and returns its result or raises its error;
    :meth:`close` leaves the block and joins the thread. Always close it.
    """

    def __init__(
        self,
        registry: Registry,
        store: str | Store = "memory://",
        *,
        start: datetime = VIRTUAL_EPOCH,
        **options: Any,
    ) -> None:
        self._registry = registry
        self._store = store
        self._start = start
        self._options = options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._harness: Harness | None = None
        self._thread = threading.Thread(target=self._thread_main, name="durable-jobs harness")
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait()
        self._raise_if_ended()

    def _raise_if_ended(self) -> None:
        """Raise the error the loop ended with, if it ended (joining its thread)."""
        error = self._error
        if error is not None:
            self._thread.join()
            raise error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=trio.testing.MockClock(autojump_threshold=math.inf))
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with open_harness(
            self._registry, self._store, start=self._start, **self._options
        ) as harness:
            self._harness = harness
            self._ready.set()
            await self._stop.wait()
            # Shutting down may need virtual time (the shutdown grace of runs in flight).
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, trio.testing.MockClock)
            _set_autojump(clock, 0)

    @property
    def harness(self) -> Harness:
        if self._harness is None:  # pragma: no cover - set before __init__ returns
            raise RuntimeError("the harness thread has not started")
        return self._harness

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(harness, *args)`` in the loop; virtual time moves only meanwhile."""
        if self._token is None or self._stop is None or self._stop.is_set():
            raise RuntimeError("this HarnessThread is closed")
        harness = self.harness

        async def run() -> T:
            with (
                harness._guarded(f"the step {getattr(fn, '__qualname__', fn)}"),
                autojumping(),
                trio.fail_after(STUCK_AFTER),
            ):
                return await fn(harness, *args)

        try:
            return trio.from_thread.run(run, trio_token=self._token)
        except trio.RunFinishedError:
            # The loop ended on its own: the runtime failed. Say why.
            self._thread.join()
            if self._error is not None:
                raise self._error from None
            raise

    def close(self) -> None:
        """Leave the harness (the runtime shuts down) and join the thread; idempotent."""
        if self._token is not None and self._stop is not None and not self._stop.is_set():
            stop = self._stop
            with contextlib.suppress(trio.RunFinishedError):  # the loop already ended
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error
