"""Group commit: instances waiting to be written go to the store together.

On a blocking store (SQLite, Postgres) one writer takes everything that
queued during the previous write and saves it in one transaction; it runs in a
worker thread and takes the next group itself, while the trio thread goes on
with the runs. Commits
serialise in the store anyway (SQLite has one writer; eventsourcing's
Postgres recorder locks the events table), so one writer makes the biggest
groups. A conflict in a group fails only the commit that caused it.

A commit may carry the SQL statements its handler recorded (``ctx.execute``);
they run in the same transaction. A statement that fails rolls the group
back; the commit it belongs to fails (:class:`StatementFailed`) and the
others are written again together, without it.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.statements import Statement
from durable_jobs._errors import DurableJobsError
from durable_jobs._runtime.parking import Handoff, _cannot_abort
from durable_jobs._store.base import StatementFailed, Store
from durable_jobs._telemetry import telemetry

__all__ = ["GroupCommit"]

log = logging.getLogger("durable_jobs.runtime")

#: Most commits written in one transaction.
MAX_GROUP_COMMIT = 100


class _Commit(Handoff):
    """One aggregate waiting to be written, and the outcome of its write (the caller
    waits for it even if cancelled meanwhile: the write is on its way)."""

    __slots__ = ("agg", "error", "statements")

    def __init__(self, agg: JobInstance, statements: Sequence[Statement] = ()) -> None:
        # Handoff.__init__'s fields, set here: one call less on every commit.
        self.done = False
        self._waiter = None
        self.agg = agg
        self.statements = statements
        self.error: Exception | None = None


def _same_error(exc: Exception) -> Exception:
    """Another instance of ``exc`` (the same type, message and cause), for another
    caller to raise: one exception object raised in several tasks would collect all
    their tracebacks."""
    other = copy.copy(exc)
    other.__cause__ = exc.__cause__
    other.__traceback__ = None
    return other


class GroupCommit:
    """Writes instances, alone or (while :meth:`run` serves) in groups."""

    def __init__(
        self,
        store: Store,
        io: Callable[..., Awaitable[Any]],
        waiting: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self._io = io
        #: Whether another store call waits for a thread (read by the writing thread,
        #: which then lets it go first).
        self._waiting = waiting
        self._enabled = False
        self._queue: list[_Commit] = []
        self._ready = trio.Event()
        #: Instances written, transactions that wrote them, and the largest group.
        self.commits = 0
        self.batches = 0
        self.largest_batch = 0

    def _count(self, size: int) -> None:
        self.commits += size
        self.batches += 1
        self.largest_batch = max(self.largest_batch, size)
        telemetry.record_commit(size)

    async def commit(
        self,
        agg: JobInstance,
        statements: Sequence[Statement] = (),
        *,
        schedule_point: bool = True,
    ) -> None:
        """Save ``agg`` (and run its run's ``statements``), in one transaction with
        whatever other commits are waiting.

        Without ``schedule_point``, a store that does not block is written at once
        (after a cancellation check): the objects of a run then die young, instead of
        waiting for every other ready task and being promoted by the garbage collector
        (whose full collections were a third of a run's CPU on the memory store).
        """
        if not self._enabled:
            if not schedule_point and not self.store.blocking:
                await trio.lowlevel.checkpoint_if_cancelled()
                if statements:
                    self._save_now([_Commit(agg, statements)])
                else:
                    self.store.save(agg)  # what _save_now makes of it, without the wrapping
            else:
                await self._save([_Commit(agg, statements)])
            # _count(1), one call less a run.
            self.commits += 1
            self.batches += 1
            if not self.largest_batch:  # max(largest_batch, 1)
                self.largest_batch = 1
            telemetry.record_commit(1)
            return
        item = _Commit(agg, statements)
        self._queue.append(item)
        self._ready.set()
        # The write is already on its way: wait for its outcome even if cancelled
        # (item.wait(), inline: a coroutine less on every run).
        if not item.done:
            item._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        if item.error is not None:
            raise item.error

    def start(self) -> None:
        """Queue commits from now on, for :meth:`run` (started next) to write."""
        self._enabled = True

    def stop(self) -> None:
        """Write alone from now on (every run has ended, so no commit is queued)."""
        self._enabled = False

    async def run(self) -> None:
        """Write waiting commits together: everything that queued during the last write.

        The writes are made by a worker thread that goes on to the next group as soon
        as one is written (see :meth:`_drain`), without waiting for this task to be
        scheduled again: under load that wait (the trio thread running a whole batch of
        runs first) was as long as the write itself.
        """
        try:
            while True:
                while not self._queue:
                    await self._ready.wait()
                    self._ready = trio.Event()
                with trio.CancelScope(shield=True):
                    await self._io(self._drain, trio.lowlevel.current_trio_token())
        finally:
            # Stopped: at shutdown nothing is queued any more; if the writer died (a
            # bug, say), the commits queued behind the group it failed on are not
            # written, and their callers must not wait for it forever.
            self._enabled = False
            stranded = self._queue[:]
            del self._queue[:]
            for c in stranded:
                c.error = DurableJobsError(
                    "The commit was not written: the store's writer stopped before it."
                )
                c.finish()

    def _drain(self, token: trio.lowlevel.TrioToken) -> None:
        """(In a worker thread.) Write the queued commits, a group of up to
        :data:`MAX_GROUP_COMMIT` at a time, until none is left or another store call
        waits for a thread (on SQLite, with its one connection, a read would otherwise
        wait until the runs stop committing). Each group's commits are finished by the
        trio thread (:meth:`_finished`) as soon as it is written.

        Only this thread takes from the queue; the trio thread only appends to it, so
        a slice and a deletion of the same length take exactly the group."""
        queue, waiting = self._queue, self._waiting
        while True:
            batch = queue[:MAX_GROUP_COMMIT]
            if not batch:
                return
            del queue[: len(batch)]
            written: list[int] = []
            try:
                self._save_batch(batch, written)
            except BaseException as fatal:
                # Not a store failure (a bug): the writer dies and takes the runtime
                # down with it, but no waiting commit may wait for it forever.
                for c in batch:
                    if c.error is None:
                        msg = "The commit's outcome is unknown: the store write was interrupted."
                        c.error = DurableJobsError(msg)
                        c.error.__cause__ = fatal
                token.run_sync_soon(self._finished, batch, written)
                raise
            token.run_sync_soon(self._finished, batch, written)
            if waiting is not None and waiting():
                return

    def _finished(self, batch: list[_Commit], written: list[int]) -> None:
        """(In the trio thread, as a ``run_sync_soon`` callback: it must not raise, or
        the trio run dies.) Wake the commits of a written group, and count its
        transactions."""
        for c in batch:
            c.finish()
        try:
            for size in written:
                self._count(size)
        except Exception:
            log.exception("Could not count a group commit's transactions")

    def _call(self, batch: Sequence[_Commit]) -> Callable[..., None]:
        statements = [(c.agg.id, c.statements) for c in batch if c.statements]
        if not statements:
            return self.store.save
        return functools.partial(self.store.save, statements=statements)

    async def _save(self, batch: Sequence[_Commit]) -> None:
        # A list, not a generator: resumed once per commit of the batch.
        await self._io(self._call(batch), *[c.agg for c in batch])

    def _save_now(self, batch: Sequence[_Commit]) -> None:
        self._call(batch)(*(c.agg for c in batch))

    def _save_batch(self, batch: list[_Commit], written: list[int]) -> None:
        """Write ``batch`` (in a worker thread), in one transaction if it can; the size
        of each transaction made goes to ``written``; a commit that failed has its
        ``error``."""
        if len(batch) > 1:
            # A run whose statements change the transaction's settings (SET LOCAL, say)
            # commits alone, after the others: they must not run with its settings.
            alone = [c for c in batch if c.statements and any(s.alone for s in c.statements)]
            if alone:
                rest = [c for c in batch if not (c.statements and c in alone)]
                if rest:
                    self._save_batch(rest, written)
                self._save_each(alone, written)
                return
        try:
            self._save_now(batch)
            written.append(len(batch))
        except StatementFailed as failed:
            # That run's statement failed: it alone fails; the rest go again together.
            rest = [c for c in batch if c.agg.id != failed.instance_uuid]
            if len(rest) == len(batch):
                # Which run's statement failed is unknown: each run is written alone.
                self._save_each(batch, written)
                return
            for c in batch:
                if c.agg.id == failed.instance_uuid:
                    c.error = failed
            if rest:
                self._save_batch(rest, written)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            elif self.store.refuses_every_write(exc):
                # The store refused the group as a whole (locked by another program,
                # full, out of reach): each alone would wait for the same refusal.
                batch[0].error = exc
                for c in batch[1:]:
                    c.error = _same_error(exc)
            else:
                # One commit's conflict must not fail the others: write each alone.
                self._save_each(batch, written)

    def _save_each(self, batch: Sequence[_Commit], written: list[int]) -> None:
        for c in batch:
            try:
                self._save_now([c])
                written.append(1)
            except Exception as one:
                c.error = one
