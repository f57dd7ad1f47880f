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
- :mod:`durable_jobs.testing.pytest_plugin`: the pytest plugin (loaded by
  pytest by itself): harness, store URL and Postgres fixtures, and the
  ``durable_jobs_store`` mark.

The strategies and machines need hypothesis, and :class:`StoreConformance`
and the plugin need pytest: ``pip install 'durable-jobs[testing]'``. This
module itself needs neither: ``StoreConformance`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_jobs.testing._harness import (
    FailurePlan,
    Flush,
    Harness,
    HarnessStalled,
    InjectedFailure,
    Run,
    open_harness,
    run_harness,
)

if TYPE_CHECKING:
    from durable_jobs.testing._conformance import StoreConformance

__all__ = [
    "FailurePlan",
    "Flush",
    "Harness",
    "HarnessStalled",
    "InjectedFailure",
    "Run",
    "StoreConformance",
    "open_harness",
    "run_harness",
]


def __getattr__(name: str) -> Any:
    """Import :class:`StoreConformance` (and so pytest) only when it is asked for."""
    if name == "StoreConformance":
        try:
            from durable_jobs.testing._conformance import StoreConformance
        except ImportError as exc:
            msg = "StoreConformance needs pytest: pip install 'durable-jobs[testing]'"
            raise ImportError(msg) from exc
        return StoreConformance
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
