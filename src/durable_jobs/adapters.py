"""What a store adapter is written against: the public contract of ``durable_jobs`` stores.

A store adapter makes :func:`durable_jobs.open_store` (and so ``open_jobs``,
the CLI and the tools) work on another database. It is a subclass of
:class:`Store` that names an eventsourcing infrastructure factory whose
application recorder also keeps the instance index (:class:`InstanceIndex`):

- ``_make_factory(env)`` (required) returns the eventsourcing factory;
  ``_factory_env()`` the settings it reads from ``env`` (from the store URL).
- The recorder's ``insert_events(events, **kwargs)`` writes the events and, in
  the same transaction, upserts the rows of :func:`index_rows_from` (keeping,
  per instance, the row of the highest version) and records the
  ``(kind, job, version)`` of :func:`type_versions_from`; a store with
  ``supports_statements = True`` also runs the ``ctx.execute`` statements of
  :func:`statements_from`, in order, raising :class:`StatementFailed` when one
  fails; then it calls ``_run_fault_hook()``. It answers the queries of
  :class:`InstanceIndex`, turning the rows it reads back into :class:`IndexRow` s
  with :func:`rows_from` (which names a row that cannot be read, and lets the
  read-only tools skip it and carry on).
- ``_is_version_conflict(exc)`` says whether an ``IntegrityError`` of the
  driver means "this event version was already taken"; ``_outcome_unknown(exc)``
  whether a failed write may have committed all the same.
- Class attributes: ``scheme``, ``url_options``, ``durable``, ``shared``,
  ``blocking`` (see :class:`Store`).

Optional capabilities are small protocols the runtime and the tools look for:
:class:`CrossProcessLocks` (required when ``shared = True``),
:class:`ListensForAlarms` (returns an :class:`AlarmListener`) and
:class:`DeletesInstances` (purge). Driver exceptions become
:class:`~durable_jobs.StoreError` through one context manager,
:func:`driver_errors`. The errors an adapter raises are re-exported here too.

Register the adapter under the ``durable_jobs.stores`` entry-point group (the
name is the URL scheme), and check it with
:class:`durable_jobs.testing.StoreConformance`. The docs' "Stores" page walks
through a complete one.
"""

from __future__ import annotations

from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    LockLost,
    StoreError,
)
from durable_jobs._store.base import JobsApplication, StatementFailed, Store
from durable_jobs._store.capabilities import (
    AlarmListener,
    CrossProcessLocks,
    DeletesInstances,
    ListensForAlarms,
)
from durable_jobs._store.errors import describe_error, driver_errors, error_chain
from durable_jobs._store.index import (
    INDEX_COLUMNS,
    INDEX_KWARG,
    SNAPSHOTS_KWARG,
    STATEMENTS_KWARG,
    TYPE_VERSIONS_KWARG,
    IndexRow,
    InstanceIndex,
    from_epoch,
    index_rows_from,
    rows_from,
    snapshots_from,
    statements_from,
    to_epoch,
    type_versions_from,
)
from durable_jobs._store.urls import StoreURL, scrub, scrub_chain
from durable_jobs._telemetry import log_fields

__all__ = [
    "INDEX_COLUMNS",
    "INDEX_KWARG",
    "SNAPSHOTS_KWARG",
    "STATEMENTS_KWARG",
    "TYPE_VERSIONS_KWARG",
    "AlarmListener",
    "ConcurrencyError",
    "ConfigurationError",
    "CrossProcessLocks",
    "DeletesInstances",
    "DurableJobsError",
    "IndexRow",
    "InstanceIndex",
    "JobsApplication",
    "ListensForAlarms",
    "LockLost",
    "StatementFailed",
    "Store",
    "StoreError",
    "StoreURL",
    "describe_error",
    "driver_errors",
    "error_chain",
    "from_epoch",
    "index_rows_from",
    "log_fields",
    "rows_from",
    "scrub",
    "scrub_chain",
    "snapshots_from",
    "statements_from",
    "to_epoch",
    "type_versions_from",
]
