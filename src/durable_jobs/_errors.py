"""The exception hierarchy: one root, :class:`DurableJobsError`."""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "ConfigurationError",
    "DurableJobsError",
    "HandlerError",
    "JobNotFound",
    "StoreError",
    "ValidationError",
]


class DurableJobsError(Exception):
    """Root of every error this library raises on purpose."""


class ConfigurationError(DurableJobsError):
    """A job definition, store URL or option is wrong; fix the code or the setting."""


class ValidationError(DurableJobsError):
    """The caller's input does not fit the job's type; nothing was written."""


class JobNotFound(DurableJobsError, LookupError):
    """No job of that kind is registered under that name."""

    def __init__(self, kind: str, name: str, known: list[str] | None = None) -> None:
        self.kind = kind
        self.name = name
        hint = f" Registered {kind} jobs: {', '.join(sorted(known))}." if known else ""
        super().__init__(f"No {kind} job named {name!r} is registered.{hint}")


class HandlerError(DurableJobsError):
    """A job handler raised; the handler's exception is the ``__cause__``."""


class StoreError(DurableJobsError):
    """The store failed or holds data that cannot be read; the driver error is the cause."""


class ConcurrencyError(StoreError):
    """Another writer committed to the same instance first (version conflict)."""


class LockLost(ConcurrencyError):
    """The cross-process lock of an instance was lost while a run held it (its session
    ended, or the worker's lease expired): the run stopped and nothing it did was
    committed; the instance runs again under a new lock."""
