"""The runtime's live figures, as one frozen value (``jobs.statistics()``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RuntimeStatistics"]


@dataclass(frozen=True, slots=True, repr=False)
class RuntimeStatistics:
    """A snapshot of what one ``open_jobs`` runtime is doing and has done.

    The counters (commits, cache hits and misses) count from the start of the
    ``open_jobs`` block.
    """

    #: Runs started by an alarm and not finished yet.
    runs_in_flight: int
    #: Handler calls in progress (alarm runs and client calls such as ``trigger``).
    handlers_running: int
    #: Alarms in the scheduler's window that are due now but not started yet.
    alarms_due: int
    #: Alarms the scheduler's window holds (the next ones, at most ``alarm_window``).
    alarms_in_window: int
    #: Instances committed, and the store transactions that wrote them.
    commits: int
    commit_batches: int
    #: The most instances written in one transaction.
    largest_batch: int
    #: Loads served from the hot cache, and loads that read the store.
    cache_hits: int
    cache_misses: int
    #: Instances in the hot cache now.
    cached_instances: int
    #: Cross-process instance locks this process holds (None: the store is not shared).
    locks_held: int | None

    @property
    def mean_batch_size(self) -> float:
        """Instances per commit transaction (0.0 before the first commit)."""
        return self.commits / self.commit_batches if self.commit_batches else 0.0

    def __repr__(self) -> str:
        locks = "" if self.locks_held is None else f", locks held {self.locks_held}"
        return (
            f"<RuntimeStatistics runs in flight {self.runs_in_flight} "
            f"(handlers running {self.handlers_running}), alarms due {self.alarms_due} "
            f"of {self.alarms_in_window} in the window, commits {self.commits} in "
            f"{self.commit_batches} batches (mean {self.mean_batch_size:.1f}, largest "
            f"{self.largest_batch}), cache {self.cache_hits} hits / {self.cache_misses} "
            f"misses ({self.cached_instances} cached){locks}>"
        )
