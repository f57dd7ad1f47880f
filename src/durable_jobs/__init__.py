"""Durable continuous, debounce and task jobs for trio applications.

Every job instance is an event-sourced aggregate rebuilt from its append-only
log, kept in memory, SQLite or Postgres.
"""

from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.schedules import cron, every
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    HandlerError,
    JobNotFound,
    StoreError,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs._store.registry import open_store, store_schemes

__all__ = [
    "Backoff",
    "ConcurrencyError",
    "ConfigurationError",
    "DurableJobsError",
    "HandlerError",
    "JobNotFound",
    "Retry",
    "Store",
    "StoreError",
    "ValidationError",
    "__version__",
    "cron",
    "every",
    "open_store",
    "store_schemes",
]

__version__ = "0.1.0"
