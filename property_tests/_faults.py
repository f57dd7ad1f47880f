"""A store that records what it commits and can fail, or "die", at its k-th write.

:func:`instrument` turns an open store (memory, SQLite, Postgres) into an
:class:`Instrumented` one by swapping in a subclass of its own class that
overrides a few methods; the real adapter does every read and write.

* **Recording**: after each successful save, a :class:`View` of every saved
  instance (what the runtime now holds as committed) keyed by its version.
* **Faults** (:class:`Fault`), at the k-th write (a ``save`` with events):

  - ``fail``: the write raises :class:`~durable_jobs.StoreError` and nothing is
    written; the store keeps working (a passing outage);
  - ``kill_before``: the process "dies" before the write reaches the store;
  - ``kill_mid``: it dies inside the store's transaction, after the events and
    index rows were written and before the commit (the adapter's
    ``fault_hook`` test seam): the transaction must roll back;
  - ``kill_after_commit``: it dies after the commit, before the snapshot that
    the write crossed (if any) was written (SQLite writes snapshots in the
    commit: there it dies right after the commit);
  - ``kill_after``: it dies after the whole write, before the runtime heard
    back: committed, never acknowledged.

  A death marks the store dead (every later call raises :class:`ProcessKilled`
  and nothing more is written) and calls ``on_death``, with which the test
  abandons the runtime. That is what a ``kill -9`` does, as far as the
  durable store can tell; the runtime objects are then dropped and a fresh
  runtime is opened on the same durable data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast
from uuid import UUID

import trio

from durable_jobs import Store, StoreError
from durable_jobs._domain.instance import JobInstance
from durable_jobs._store.index import RunStatements, Unreadable

__all__ = [
    "FAULT_MODES",
    "KILL_MODES",
    "Fault",
    "FaultMode",
    "Instrumented",
    "ProcessKilled",
    "View",
    "instrument",
    "view",
]

FaultMode = Literal["fail", "kill_before", "kill_mid", "kill_after_commit", "kill_after"]
FAULT_MODES: tuple[FaultMode, ...] = (
    "fail",
    "kill_before",
    "kill_mid",
    "kill_after_commit",
    "kill_after",
)
KILL_MODES: frozenset[FaultMode] = frozenset(FAULT_MODES) - {"fail"}
#: Modes after which the k-th write is in the store (committed, not acknowledged).
COMMITTED_MODES: frozenset[FaultMode] = frozenset({"kill_after_commit", "kill_after"})


class ProcessKilled(StoreError):
    """The simulated process died: this store object refuses every call from now on."""


class InjectedFailure(StoreError):
    """A write that failed on purpose; nothing was written."""


@dataclass(frozen=True)
class Fault:
    """What happens at the ``at_write``-th write (1-based)."""

    at_write: int
    mode: FaultMode


@dataclass(frozen=True)
class View:
    """An instance as the runtime held it after a commit (its whole data, as JSON)."""

    cls: str
    uuid: UUID
    version: int
    created_on: datetime
    modified_on: datetime
    data: dict[str, Any]


def view(inst: JobInstance) -> View:
    """The comparable content of an aggregate."""
    return View(
        cls=type(inst).__name__,
        uuid=inst.id,
        version=inst.version,
        created_on=inst.created_on,
        modified_on=inst.modified_on,
        data=inst.d.model_dump(mode="json"),
    )


def _in_trio_thread(fn: Callable[[], None]) -> None:
    """Call ``fn`` in trio's thread: from a worker thread, or directly if already there."""
    try:
        trio.from_thread.run_sync(fn)
    except RuntimeError:  # not a trio worker thread: we are in trio's own thread
        fn()


class Instrumented(Store):
    """The methods :func:`instrument` adds (mixed in before the adapter's own class)."""

    fault: Fault | None
    writes: int
    dead: bool
    on_death: Callable[[], None] | None
    #: The events of the faulted write (committed iff its mode is in COMMITTED_MODES).
    faulted_events: list[JobInstance.Event]
    #: ``(uuid, version)`` -> the instance as committed at that version.
    views: dict[tuple[UUID, int], View]
    _guard: threading.Lock

    def _setup(self, fault: Fault | None) -> None:
        self.fault = fault
        self.writes = 0
        self.dead = False
        self.on_death = None
        self.faulted_events = []
        self.views = {}
        self._guard = threading.Lock()

    def revive(self) -> None:
        """A new "process" on the same data (memory stores, which cannot be reopened)."""
        self.dead = False
        self.fault = None

    def _alive(self) -> None:
        if self.dead:
            raise ProcessKilled("this process is dead (simulated kill)")

    def _die(self) -> ProcessKilled:
        self.dead = True
        if self.on_death is not None:
            _in_trio_thread(self.on_death)
        return ProcessKilled("the process was killed (simulated) during this write")

    # ---- writes ---------------------------------------------------------------------------

    def save(self, *instances: JobInstance, statements: RunStatements = ()) -> None:
        self._alive()
        if not any(i.pending_events for i in instances):
            return
        with self._guard:
            self.writes += 1
            faulted = self.fault is not None and self.writes == self.fault.at_write
        if not faulted:
            super().save(*instances, statements=statements)
            self._record(instances)
            return
        assert self.fault is not None
        mode = self.fault.mode
        self.faulted_events = [
            cast("JobInstance.Event", e) for i in instances for e in i.pending_events
        ]
        if mode == "fail":
            raise InjectedFailure(f"injected failure of write {self.writes}; nothing was written")
        if mode == "kill_before":
            raise self._die()
        if mode == "kill_mid":
            self.index.fault_hook = self._kill_in_transaction
            try:
                super().save(*instances, statements=statements)
            except ProcessKilled:
                raise self._die() from None
            finally:
                self.index.fault_hook = None
            raise AssertionError("the fault hook did not run")
        if mode == "kill_after_commit":
            self._kill_at_snapshot = True
            try:
                super().save(*instances, statements=statements)
            finally:
                self._kill_at_snapshot = False
            raise self._die()  # no snapshot was due: it died right after the commit
        super().save(*instances, statements=statements)
        raise self._die()

    _kill_at_snapshot = False

    def _kill_in_transaction(self) -> None:
        self.dead = True
        raise ProcessKilled("the process was killed (simulated) inside the transaction")

    def _write_snapshots(self, due: Sequence[JobInstance]) -> None:
        if self._kill_at_snapshot:
            raise self._die()
        super()._write_snapshots(due)

    def _record(self, instances: Sequence[JobInstance]) -> None:
        for inst in instances:
            self.views[(inst.id, inst.version)] = view(inst)

    # ---- reads ----------------------------------------------------------------------------

    def get_by_uuid(
        self, uuid: UUID, *, version: int | None = None, label: str | None = None
    ) -> JobInstance | None:
        self._alive()
        return super().get_by_uuid(uuid, version=version, label=label)

    def history(
        self,
        uuid: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        limit: int | None = None,
    ) -> list[JobInstance.Event]:
        self._alive()
        return super().history(uuid, gt=gt, lte=lte, limit=limit)

    def _pages(
        self, uuid: UUID, *, gt: int | None, lte: int | None, page: int
    ) -> Iterator[JobInstance.Event]:
        self._alive()
        return super()._pages(uuid, gt=gt, lte=lte, page=page)

    def _query(self, fn: Callable[[], Any], unreadable: Unreadable | None = None) -> Any:
        self._alive()
        return super()._query(fn, unreadable)


_CLASSES: dict[type[Store], type[Store]] = {}


def instrument(store: Store, fault: Fault | None = None) -> Instrumented:
    """Make ``store`` (already open) record its commits and fail as ``fault`` says."""
    base = type(store)
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = type(f"Instrumented{base.__name__}", (Instrumented, base), {})
    store.__class__ = cls
    inst = cast(Instrumented, store)
    inst._setup(fault)
    return inst
