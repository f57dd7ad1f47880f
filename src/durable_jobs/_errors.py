"""The exception hierarchy: one root, :class:`DurableJobsError`.

Every error the library raises on purpose is defined here and exported from
``durable_jobs``; each shows as ``durable_jobs.<Name>`` in reprs and
tracebacks, wherever it is raised (see :func:`_show_as_public`).
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "ActionRefused",
    "BacklogFull",
    "ConcurrencyError",
    "ConfigurationError",
    "DurableJobsError",
    "ExportFileError",
    "HandlerError",
    "HandlerTimeout",
    "HarnessStalled",
    "InstanceExistsError",
    "JobNotFound",
    "LiveInstanceError",
    "LockLost",
    "RuntimeClosed",
    "StatementFailed",
    "StoreError",
    "UnreadableIndexRow",
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

    def __init__(
        self,
        kind: str,
        name: str,
        known: list[str] | None = None,
        *,
        other_kinds: list[str] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        hint = f" Registered {kind} jobs: {', '.join(sorted(known))}." if known else ""
        if other_kinds:
            # jobs.task(a_continuous_job), say: the name is right, the kind is not.
            kinds = " and ".join(f"a {k} job" for k in sorted(other_kinds))
            hint += f" {name!r} is {kinds}: use jobs.{sorted(other_kinds)[0]}({name!r})."
        super().__init__(f"No {kind} job named {name!r} is registered.{hint}")


class HandlerError(DurableJobsError):
    """A job handler raised; the handler's exception is the ``__cause__``."""


class HandlerTimeout(DurableJobsError):
    """A handler call ran past its job's ``timeout`` and was cancelled.

    It is recorded and handled like any other handler failure: the retry
    policy, ``on_error`` and ``on_exhausted`` apply.
    """


class HarnessStalled(DurableJobsError):
    """A testing harness call could not end: handler calls wait on something other
    than virtual time (a ``trio.Event``, a socket, a worker thread), or keep running
    without ever waiting (a busy loop, which stops the clock), and nothing moved for
    the harness's ``stall_timeout`` of real time.

    ``waiting`` describes each such call: its job, instance, handler and the line
    it waits at. After a wait, the clock is at the time ``advance`` was asked for,
    not past it; after a busy loop, it is where the loop began.
    """

    def __init__(self, message: str, waiting: list[str]) -> None:
        super().__init__(message)
        #: One line per handler call still running: job, instance, handler, where it waits.
        self.waiting = waiting


class BacklogFull(DurableJobsError):
    """A debounce ``add`` was refused: the instance already holds its job's
    ``max_backlog`` closed batches waiting for their flush (failing, retrying or
    still running), and this event would close one more. Nothing was written;
    the message names the job, the instance and what to do."""


class RuntimeClosed(DurableJobsError):
    """A call came after its ``open_jobs`` block ended (or while it was ending)."""

    def __init__(
        self, call: str | None = None, *, interrupted: bool = False, advice: str | None = None
    ) -> None:
        #: What was refused, e.g. ``"status()"``; None for a run the runtime would start.
        self.call = call
        #: True: the call had begun, and was cancelled when the shutdown grace ran out.
        self.interrupted = interrupted
        if interrupted:
            msg = (
                f"{call or 'The call'} was cancelled: its open_jobs block ended and the call "
                "did not finish within the shutdown grace. Nothing of it was committed."
            )
        elif call is None:
            msg = "This jobs runtime is closed (its open_jobs block has ended); no new run starts."
        elif advice is not None:  # who closed it knows better (the testing harness)
            msg = f"{call} was refused: this jobs runtime is closed. {advice}"
        else:
            msg = (
                f"{call} was refused: this jobs runtime is closed (its open_jobs block has "
                "ended). Open a new block to use the jobs again."
            )
        super().__init__(msg)


class StoreError(DurableJobsError):
    """The store failed or holds data that cannot be read; the driver error is the cause."""


class ConcurrencyError(StoreError):
    """Another writer committed to the same instance first (version conflict)."""


class LockLost(ConcurrencyError):
    """The cross-process lock of an instance was lost while a run held it (its session
    ended, or the worker's lease expired): the run stopped and nothing it did was
    committed; the instance runs again under a new lock."""


class StatementFailed(StoreError):
    """A handler's statement (``ctx.execute``) failed when its run was committed.

    Nothing of that commit was written. ``instance_uuid`` names the run's
    instance (None: the adapter cannot tell which of the commit's runs it was;
    each is then written alone); the database error is ``error`` (and the
    ``__cause__``). ``statement`` is the failing statement's index among that
    instance's statements of the commit, in the order they ran (None: the
    adapter cannot tell). The runtime records it in the run's ``run_failed``
    and the retry policy applies; a store adapter raises it. In a task's chain
    of handlers, the index names the handler that recorded the statement: that
    handler is the one that failed (without it, the chain's first handler).
    """

    def __init__(
        self,
        instance_uuid: UUID | None,
        error: BaseException,
        *,
        statement: int | None = None,
    ) -> None:
        self.instance_uuid = instance_uuid
        self.error = error
        self.statement = statement
        whose = f" for instance {instance_uuid}" if instance_uuid is not None else ""
        text = str(error).strip() or type(error).__name__
        account = f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
        super().__init__(
            f"A statement recorded with ctx.execute(){whose} failed when its run was "
            f"committed: {account}; nothing was written."
        )
        self.__cause__ = error


class UnreadableIndexRow(StoreError):
    """An instance's index row (its status and next alarm) cannot be read: edited by
    hand or by a faulty tool. The message names the instance and the column; ``key``
    is its ``(kind, job, instance_id)`` when those columns can be read (else None).

    The instance's log is not affected. The read-only tools report such a row and
    carry on (see ``unreadable=`` of :class:`durable_jobs.Inspector`'s reads); the
    runtime refuses to serve the store until it is fixed.
    """

    def __init__(self, message: str, key: tuple[str, str, str] | None = None) -> None:
        super().__init__(message)
        self.key = key


class ExportFileError(ValidationError):
    """An export file is malformed, or not one; nothing was written.

    ``line`` is the 1-based line number the problem is on (None: the file as a whole).
    """

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        self.line = line
        self.source = source
        where = f"{source}, line {line}" if line is not None else source
        # A message may come from a check that says so itself: said once, as one sentence.
        for said in (" Nothing was written.", "; nothing was written.", "."):
            message = message.removesuffix(said)
        super().__init__(f"{where}: {message}; nothing was written.")


class InstanceExistsError(DurableJobsError):
    """An import would overwrite instances the target store already has; nothing was written."""

    def __init__(self, labels: list[str], store_url: str) -> None:
        self.labels = labels
        shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        super().__init__(
            f"The store {store_url} already has {shown}; import never overwrites an "
            "instance, so nothing was written. Import into an empty store (or one without "
            "these instances), or purge them from it first."
        )


class LiveInstanceError(DurableJobsError):
    """Purge refused: the instance is live (not terminated); nothing was deleted."""


class ActionRefused(DurableJobsError):
    """A dashboard action does not apply to the instance as it is now; nothing was written."""


def _show_as_public() -> None:
    """Name every error after the package users import it from, as trio's
    ``fixup_module_metadata`` does: a traceback or ``repr`` then says
    ``durable_jobs.JobNotFound``, not the private module it is defined in."""
    for name in __all__:
        globals()[name].__module__ = "durable_jobs"


_show_as_public()
