"""Testing tools for durable-jobs users (and for us).

- :class:`StoreConformance`: the behaviour every store adapter must have. A
  third-party adapter subclasses it in a pytest module, overrides the
  ``store_url`` fixture, and runs the same checks as the built-in stores.
"""

from __future__ import annotations

from durable_jobs.testing._conformance import StoreConformance

__all__ = ["StoreConformance"]
