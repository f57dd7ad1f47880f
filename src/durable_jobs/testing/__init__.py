"""Testing tools for durable-jobs users (and for us).

- :func:`open_harness` / :func:`run_harness`: serve a registry on a store in
  virtual time, advance time, restart the runtime, and read what ran
  (:class:`Harness`, :class:`Run`, :class:`Flush`). :class:`FailurePlan`
  makes chosen handler calls raise :class:`InjectedFailure`.
- :mod:`durable_jobs.testing.strategies`: hypothesis strategies for
  schedules, retry policies, instance ids, events and command sequences.
- :mod:`durable_jobs.testing.machines`: hypothesis state machines that check
  a registered job against a reference model of the library's semantics.
- :class:`StoreConformance`: the behaviour every store adapter must have. A
  third-party adapter subclasses it in a pytest module, overrides the
  ``store_url`` fixture, and runs the same checks as the built-in stores.

The strategies and machines need hypothesis: ``pip install durable-jobs[testing]``.
This module itself does not.
"""

from __future__ import annotations

from durable_jobs.testing._conformance import StoreConformance
from durable_jobs.testing._harness import (
    FailurePlan,
    Flush,
    Harness,
    InjectedFailure,
    Run,
    open_harness,
    run_harness,
)

__all__ = [
    "FailurePlan",
    "Flush",
    "Harness",
    "InjectedFailure",
    "Run",
    "StoreConformance",
    "open_harness",
    "run_harness",
]
