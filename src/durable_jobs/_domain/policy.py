"""Each kind's policy as one value, and how a run ends.

The runtime hands a job's policy to the domain, which plans a run (a ticket,
or nothing to do) and finishes it (events recorded, or a request for the
``on_exhausted`` decision). An option that changes *when* or *how* runs
happen belongs in a policy: the domain reads it, the registry fills it, and
the runtime only passes it along.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.schedules import MisfirePolicy, Schedule

__all__ = ["ContinuousPolicy", "DebouncePolicy", "RunEnd", "Window"]

#: How a debounce batch's flush time is set: by its first event (``fixed``) or by
#: every accepted event (``sliding``, capped by ``max_wait``).
Window = Literal["fixed", "sliding"]


@dataclass(frozen=True, slots=True)
class ContinuousPolicy:
    """How a continuous job's runs are scheduled and retried."""

    schedule: Schedule
    misfire: MisfirePolicy = "run_once"
    retry: Retry | None = None
    start_immediately: bool = True


@dataclass(frozen=True, slots=True)
class DebouncePolicy:
    """How a debounce job's batches close, flush and are retried."""

    flush_after: timedelta
    max_events: int | None = None
    retry: Retry | None = None
    idempotency_window: timedelta = timedelta(hours=24)
    #: ``fixed``: the flush is due ``flush_after`` after the batch's first event.
    #: ``sliding``: each accepted event moves it to ``flush_after`` after itself,
    #: but never later than ``max_wait`` after the first event (None: no cap).
    window: Window = "fixed"
    max_wait: timedelta | None = None
    #: How many closed batches may wait for their flush (running, retrying or
    #: failed); an add that would close one more is refused (None: no bound).
    max_backlog: int | None = 1000


class RunEnd(enum.Enum):
    """What finishing a run came to."""

    #: Recorded: a success, or a failure with no retry.
    DONE = "done"
    #: Recorded: a failure whose retry is scheduled.
    RETRY = "retry"
    #: Nothing recorded yet: the retries ran out and the policy's ``on_exhausted``
    #: hook must decide; finish again with its decision.
    ASK_EXHAUSTED = "ask_exhausted"
    #: Nothing recorded: the run no longer applies (terminated, restarted or cleared
    #: while it was in flight).
    STALE = "stale"
