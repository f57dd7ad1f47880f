"""One tail of the store per dashboard, fanned out to every open live stream.

A single thread follows the store (on Postgres: one LISTEN connection) from
when the first stream subscribes until the last one leaves; each stream first
catches up on what was committed since its page was rendered (a short read
of its own), then takes the shared events it has not seen yet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import trio

from durable_jobs._errors import DurableJobsError
from durable_jobs._store.base import Store
from durable_jobs.maintenance import TailEvent, tail_events, tail_position

__all__ = ["TAIL_POLL", "SharedTail", "Subscription", "follow"]

log = logging.getLogger("durable_jobs.ui")

#: How often a tail looks for new events (Postgres also wakes on NOTIFY).
TAIL_POLL: Final = 0.25
#: Events a stream may fall behind the shared tail before it is dropped (its
#: browser reconnects and catches up from the last event it got).
BUFFER: Final = 1000
#: How long :meth:`SharedTail.close` waits for the tail's threads to end (seconds).
CLOSE_WAIT: Final = 10.0

Item = TailEvent | DurableJobsError
Subscription = tuple[trio.MemorySendChannel[Item], trio.MemoryReceiveChannel[Item]]


def follow(
    store: Store, after: int, stop: threading.Event, *, catch_up: bool = False
) -> Iterator[TailEvent]:
    """The store's events after ``after`` (only those committed by now if ``catch_up``)."""
    events = tail_events(
        store, after=after, poll_interval=TAIL_POLL, stop=stop, duration=0 if catch_up else None
    )
    try:
        yield from events
    finally:
        events.close()


class SharedTail:
    """The one tail of a dashboard's store, started and stopped with its subscribers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._subscribers: set[trio.MemorySendChannel[Item]] = set()
        self._running: threading.Event | None = None  # the running thread's stop
        self._token: trio.lowlevel.TrioToken | None = None  # the trio run it reports to
        self._starting = trio.Lock()
        #: The tail threads started, until :meth:`close` has seen them end.
        self._threads: list[threading.Thread] = []

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, run: Callable[..., Awaitable[Any]]) -> Subscription:
        """A channel of every event the shared tail reads from now on.

        The tail starts at the store's position as of this call (or earlier), so
        a catch-up read started after it misses nothing.
        """
        send, receive = trio.open_memory_channel[Item](BUFFER)
        async with self._starting:
            if self._token is not trio.lowlevel.current_trio_token():
                # The app served again: whatever the last run left is of no use.
                if self._running is not None:
                    self._running.set()
                self._running = None
                self._subscribers.clear()
            if self._running is None:
                start = await run(tail_position, self.store)
                self._start(start)
            self._subscribers.add(send)
        return send, receive

    def unsubscribe(self, send: trio.MemorySendChannel[Item]) -> None:
        self._subscribers.discard(send)
        send.close()
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        if not self._subscribers and self._running is not None:
            self._running.set()
            self._running = None

    def _start(self, start: int) -> None:
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()

        def pump() -> None:
            try:
                for event in follow(self.store, start, stop):
                    trio.from_thread.run_sync(self._fan_out, stop, event, trio_token=token)
            except DurableJobsError as exc:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(self._fan_out, stop, exc, trio_token=token)
            except trio.RunFinishedError:
                pass  # the server stopped
            finally:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(self._ended, stop, trio_token=token)

        thread = threading.Thread(target=pump, name="durable-jobs ui tail", daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        self._running = stop
        self._token = token

    async def close(self) -> None:
        """Stop the tail and wait (up to :data:`CLOSE_WAIT`) for its threads to end: the
        dashboard stops serving, and its store may be closed next, which must not
        happen under a read of the tail's thread (the SQLite module can crash then)."""
        if self._running is not None:
            self._running.set()
            self._running = None
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()
        threads, self._threads = self._threads, []
        for thread in threads:
            await trio.to_thread.run_sync(thread.join, CLOSE_WAIT, abandon_on_cancel=True)
            if thread.is_alive():
                log.warning("The dashboard's store tail did not stop within %g s.", CLOSE_WAIT)

    def _fan_out(self, stop: threading.Event, item: Item) -> None:
        if self._running is not stop:
            return  # a tail being stopped: its subscribers are gone
        for send in list(self._subscribers):
            try:
                send.send_nowait(item)
            except trio.WouldBlock:
                # Too far behind: its stream ends, and its browser reconnects and catches up.
                log.info("A live stream fell %d events behind: it starts again.", BUFFER)
                self._subscribers.discard(send)
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)
        self._stop_if_idle()

    def _ended(self, stop: threading.Event) -> None:
        """The thread ended (an error, or stopped): the next subscriber starts another."""
        if self._running is stop:
            for send in self._subscribers:
                send.close()
            self._subscribers.clear()
            self._running = None
