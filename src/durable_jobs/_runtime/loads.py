"""Batched loads: instances to read from the store go to it together.

On a blocking store (SQLite, Postgres) every read is a worker-thread round
trip, and on SQLite those round trips queue behind each other and behind the
commits. Reads that queue while one is in flight are made in one thread call
instead (like group commit), at most ``store.max_concurrency`` such calls at a
time. One read that fails fails only the load it belongs to. A queued load
waits parked (:class:`~durable_jobs._runtime.parking.Handoff`), not in a
shielded cancel scope on an event of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from durable_jobs._domain.ids import Kind
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import DurableJobsError
from durable_jobs._runtime.parking import Handoff
from durable_jobs._store.base import Store

__all__ = ["BatchedLoads"]

#: Most instances read in one thread call.
MAX_LOAD_BATCH = 64


class _Load(Handoff):
    """One instance waiting to be read, and what the read found (the caller waits for
    it even if cancelled meanwhile: the read is on its way)."""

    __slots__ = ("agg", "error", "key")

    def __init__(self, key: tuple[Kind, str, str]) -> None:
        super().__init__()
        self.key = key
        self.agg: JobInstance | None = None
        self.error: Exception | None = None


class BatchedLoads:
    """Reads instances, alone or (while :meth:`run` serves) in batches."""

    def __init__(self, store: Store, io: Callable[..., Awaitable[Any]]) -> None:
        self.store = store
        self._io = io
        self._running = False
        self._queue: list[_Load] = []
        self._ready = trio.Event()
        #: Thread calls that read instances, and the instances they read.
        self.batches = 0
        self.reads = 0

    async def get(self, kind: Kind, job: str, instance_id: str) -> JobInstance | None:
        """The stored instance (:meth:`Store.get`), read with whatever else is waiting."""
        if not self._running:
            self.batches += 1
            self.reads += 1
            keys = [(kind, job, instance_id)]
            if self.store.blocking:
                (found,) = await self._io(self.store.get_many, keys)
            else:
                # A store that never blocks is read inline, without a checkpoint: a
                # command took the instance's lock just before (a checkpoint), and a
                # read from the cache makes none either.
                (found,) = self.store.get_many(keys)
            if isinstance(found, Exception):
                raise found
            agg: JobInstance | None = found
            return agg
        load = _Load((kind, job, instance_id))
        self._queue.append(load)
        self._ready.set()
        # The read is on its way (a thread call is not cancelled): wait for it; a
        # cancellation shows at the caller's next checkpoint.
        await load.wait()
        if load.error is not None:
            raise load.error
        return load.agg

    async def run(self) -> None:
        """Read waiting instances together (runs until cancelled)."""
        slots = trio.Semaphore(max(1, self.store.max_concurrency))
        self._running = True
        try:
            async with trio.open_nursery() as readers:
                while True:
                    while not self._queue:
                        await self._ready.wait()
                        self._ready = trio.Event()
                    await slots.acquire()
                    batch = self._queue[:MAX_LOAD_BATCH]
                    del self._queue[:MAX_LOAD_BATCH]
                    readers.start_soon(self._serve, batch, slots)
        finally:
            self._running = False
            # Loads queued after the last batch was taken: read them now.
            left, self._queue = self._queue, []
            if left:
                with trio.CancelScope(shield=True):
                    await self._read(left)

    async def _serve(self, batch: list[_Load], slots: trio.Semaphore) -> None:
        try:
            with trio.CancelScope(shield=True):
                await self._read(batch)
        finally:
            slots.release()

    async def _read(self, batch: list[_Load]) -> None:
        try:
            found = await self._io(self.store.get_many, [load.key for load in batch])
            self.batches += 1
            self.reads += len(batch)
            for load, agg in zip(batch, found, strict=True):
                if isinstance(agg, Exception):
                    load.error = agg
                else:
                    load.agg = agg
        except Exception as exc:
            for load in batch:
                load.error = exc
        except BaseException as fatal:
            # Not a store failure (KeyboardInterrupt, a bug): the reader dies and takes
            # the runtime down with it, but no load may take "not found" for an answer.
            for load in batch:
                load.error = DurableJobsError("The read was interrupted.")
                load.error.__cause__ = fatal
            raise
        finally:
            for load in batch:
                load.finish()
