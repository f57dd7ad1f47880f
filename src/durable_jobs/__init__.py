"""Durable continuous, debounce and task jobs for trio applications.

Every job instance is an event-sourced aggregate rebuilt from its append-only
log, kept in memory, SQLite or Postgres, and driven by a trio scheduler that
picks its pending alarms back up after a restart.
"""

import logging as _logging

from durable_jobs._client import (
    AddResult,
    ClearResult,
    ContinuousClient,
    ContinuousStatus,
    DebounceClient,
    DebounceStatus,
    FlushResult,
    Jobs,
    SendResult,
    StartResult,
    TaskClient,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
    open_jobs,
    serve,
)
from durable_jobs._definitions.contexts import (
    ContinuousContext,
    DebounceContext,
    DebounceEventContext,
    TaskContext,
)
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.backoff import Backoff, Retry
from durable_jobs._domain.schedules import cron, every
from durable_jobs._domain.values import Limits
from durable_jobs._errors import (
    ActionRefused,
    BacklogFull,
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    ExportFileError,
    HandlerError,
    HandlerTimeout,
    HarnessStalled,
    InstanceExistsError,
    JobNotFound,
    LiveInstanceError,
    LockLost,
    RuntimeClosed,
    StatementFailed,
    StoreError,
    UnreadableIndexRow,
    ValidationError,
)
from durable_jobs._evolution import CheckFailure, CheckReport
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.clock import Clock, SystemClock, VirtualClock
from durable_jobs._runtime.statistics import RuntimeStatistics
from durable_jobs._store.base import Store
from durable_jobs._store.crypto import generate_key
from durable_jobs._store.registry import open_store, store_schemes
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.views import (
    InstancePage,
    InstanceSummary,
    JobStats,
    PendingAlarm,
    StateAt,
    StateChange,
    StateDiff,
)

__all__ = [
    "ActionRefused",
    "AddResult",
    "BacklogFull",
    "Backoff",
    "CheckFailure",
    "CheckReport",
    "ClearResult",
    "Clock",
    "ConcurrencyError",
    "ConfigurationError",
    "ContinuousClient",
    "ContinuousContext",
    "ContinuousJob",
    "ContinuousStatus",
    "DebounceClient",
    "DebounceContext",
    "DebounceEventContext",
    "DebounceJob",
    "DebounceStatus",
    "DurableJobsError",
    "ExportFileError",
    "FlushResult",
    "HandlerError",
    "HandlerTimeout",
    "HarnessStalled",
    "Inspector",
    "InstanceExistsError",
    "InstancePage",
    "InstanceSummary",
    "JobDefinition",
    "JobNotFound",
    "JobStats",
    "Jobs",
    "Limits",
    "LiveInstanceError",
    "LockLost",
    "PendingAlarm",
    "RecordedEvent",
    "Registry",
    "Retry",
    "RuntimeClosed",
    "RuntimeStatistics",
    "SendResult",
    "StartResult",
    "StateAt",
    "StateChange",
    "StateDiff",
    "StatementFailed",
    "Store",
    "StoreError",
    "SystemClock",
    "TaskClient",
    "TaskContext",
    "TaskJob",
    "TaskState",
    "TaskStatus",
    "TerminateResult",
    "TriggerResult",
    "UnreadableIndexRow",
    "ValidationError",
    "VirtualClock",
    "__version__",
    "cron",
    "every",
    "generate_key",
    "open_jobs",
    "open_store",
    "serve",
    "store_schemes",
]

__version__ = "0.1.0"

# A library logs and leaves handling to the application (loggers under "durable_jobs").
_logging.getLogger("durable_jobs").addHandler(_logging.NullHandler())
