"""A call handed to another task, whose caller waits for its outcome uncancellably.

Group commit and the cross-process lock calls both queue work for a task that
makes it in batches; the caller must wait until it is made even if cancelled
meanwhile (a write on its way, a lock the store took), and sees a cancellation
at its next checkpoint. One parked task does that, without the cost of a
shielded cancel scope and an event on every call.
"""

from __future__ import annotations

import trio

__all__ = ["Handoff"]


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class Handoff:
    """Base of a queued call: :meth:`wait` parks the caller until :meth:`finish`."""

    __slots__ = ("_waiter", "done")

    def __init__(self) -> None:
        #: Whether the call was made (its outcome is known).
        self.done = False
        self._waiter: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Wait until the call was made, not cancellable."""
        if not self.done:
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(_cannot_abort)

    def finish(self) -> None:
        """The call was made: wake the waiting task (once)."""
        if self.done:
            return
        self.done = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)
