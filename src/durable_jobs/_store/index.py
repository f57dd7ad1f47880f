"""The instance index: one row per instance, with its next alarm.

Written by the store adapters in the same transaction as the instance's
events, so an alarm can never be lost or orphaned by a crash. It answers
"which alarms are due" and "which instances exist" without rebuilding any
aggregate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from durable_jobs._errors import UnreadableIndexRow

if TYPE_CHECKING:
    from eventsourcing.persistence import StoredEvent

    from durable_jobs._domain.statements import Statement

__all__ = [
    "INDEX_COLUMNS",
    "INDEX_KWARG",
    "SNAPSHOTS_KWARG",
    "STATEMENTS_KWARG",
    "TYPE_VERSIONS_KWARG",
    "IndexRow",
    "InstanceIndex",
    "RunStatements",
    "Unreadable",
    "from_epoch",
    "index_rows_from",
    "reporting_unreadable",
    "rows_from",
    "snapshots_from",
    "statements_from",
    "to_epoch",
    "type_versions_from",
]

#: Keyword argument of ``insert_events`` carrying the index rows of a save.
INDEX_KWARG: Final = "dj_index"
#: Keyword argument of ``insert_events`` carrying the new ``(kind, job, type_version)``.
TYPE_VERSIONS_KWARG: Final = "dj_type_versions"
#: Keyword argument of ``insert_events`` carrying the runs' ``ctx.execute`` statements.
STATEMENTS_KWARG: Final = "dj_statements"
#: Keyword argument of ``insert_events`` carrying snapshot rows to write in the same
#: transaction (only to an adapter whose ``Store.snapshots_in_commit`` is True).
SNAPSHOTS_KWARG: Final = "dj_snapshots"
#: What a save passes down: each instance's recorded statements, in commit order.
RunStatements = Sequence[tuple[UUID, Sequence["Statement"]]]


def to_epoch(at: datetime | None) -> float | None:
    """Seconds since the epoch (how the index stores times), None for None."""
    return None if at is None else at.timestamp()


def from_epoch(seconds: float | None) -> datetime | None:
    """The UTC datetime of epoch ``seconds``, None for None."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class IndexRow:
    """What the index knows of one instance."""

    instance_uuid: UUID
    kind: str
    job: str
    instance_id: str
    status: str
    due_at: datetime | None
    version: int
    updated_at: datetime

    def as_params(self) -> tuple[Any, ...]:
        """The row as SQL parameters, in column order."""
        # What to_epoch and UUID.hex give, without their Python calls (on every save).
        due_at = self.due_at
        return (
            f"{self.instance_uuid.int:032x}",
            self.kind,
            self.job,
            self.instance_id,
            self.status,
            None if due_at is None else due_at.timestamp(),
            self.version,
            self.updated_at.timestamp(),
        )

    @classmethod
    def from_params(cls, row: Sequence[Any]) -> IndexRow:
        """Inverse of :meth:`as_params` (a row read back from SQL)."""
        uuid, kind, job, instance_id, status, due_at, version, updated_at = row
        if not isinstance(uuid, UUID):
            # Reads of the alarm window meet the same instances again and again.
            text = uuid
            uuid = _UUIDS.get(text)
            if uuid is None:
                uuid = UUID(hex=text)
                if len(_UUIDS) >= _MAX_UUIDS:
                    _UUIDS.clear()
                _UUIDS[text] = uuid
        # cls(...) without the frozen dataclass's __init__ (one object.__setattr__ a
        # field): the same fields in the same order. Made for every row of a window
        # read, about one a run under load.
        made = _new_object(cls)
        _set_attribute(
            made,
            "__dict__",
            {
                "instance_uuid": uuid,
                "kind": kind,
                "job": job,
                "instance_id": instance_id,
                "status": status,
                "due_at": None if due_at is None else _from_timestamp(due_at, UTC),
                "version": int(version),
                "updated_at": _from_timestamp(float(updated_at), UTC),
            },
        )
        return made


_new_object = object.__new__
_set_attribute = object.__setattr__
_from_timestamp = datetime.fromtimestamp

#: The uuids of index rows read back, by their text (at most ``_MAX_UUIDS``).
_UUIDS: dict[str, UUID] = {}
_MAX_UUIDS: Final = 65536


#: The index's columns, in the order of :meth:`IndexRow.as_params`.
INDEX_COLUMNS: Final = "instance_uuid, kind, job, instance_id, status, due_at, version, updated_at"


#: Told of each index row a read leaves out because it cannot be read.
Unreadable = Callable[[UnreadableIndexRow], None]

#: Set by :func:`reporting_unreadable` around a read of the read-only tools.
_unreadable: ContextVar[Unreadable | None] = ContextVar("durable_jobs_unreadable", default=None)


@contextmanager
def reporting_unreadable(unreadable: Unreadable | None) -> Iterator[None]:
    """Within the block, :func:`rows_from` passes each row it cannot read to
    ``unreadable`` and leaves it out, instead of failing the whole read (None: fail).

    The read-only tools list what they can and report the rest; the runtime
    never sets it, so a store with a corrupt index row does not serve.
    """
    token = _unreadable.set(unreadable)
    try:
        yield
    finally:
        _unreadable.reset(token)


def rows_from(raw: Sequence[Sequence[Any]]) -> list[IndexRow]:
    """The :class:`IndexRow` s of rows read back from SQL (see :meth:`IndexRow.from_params`).

    A row that cannot be read (a hand-edited ``due_at`` of ``'soon'`` or ``1e300``,
    say) is a :class:`~durable_jobs.StoreError` naming the instance and the
    column: raised, or within :func:`reporting_unreadable`, reported and left out.
    """
    try:
        return [IndexRow.from_params(r) for r in raw]
    except Exception:  # noqa: S110 - found again, row by row, below
        pass
    unreadable = _unreadable.get()
    rows: list[IndexRow] = []
    for r in raw:
        try:
            rows.append(IndexRow.from_params(r))
        except Exception as exc:
            error = _unreadable_row(r, exc)
            if unreadable is None:
                raise error from exc
            unreadable(error)
    return rows


def _unreadable_row(row: Sequence[Any], exc: Exception) -> UnreadableIndexRow:
    names = INDEX_COLUMNS.split(", ")
    values = dict(zip(names, row, strict=False))
    uuid = values.get("instance_uuid")
    what = f"instance {str(uuid)[:40]!r}"
    kind, job, instance_id = values.get("kind"), values.get("job"), values.get("instance_id")
    key = None
    if isinstance(kind, str) and isinstance(job, str) and isinstance(instance_id, str):
        what = f"{kind[:40]} job {job[:80]!r} instance {instance_id[:80]!r} ({what})"
        key = (kind, job, instance_id)
    column = next((n for n in names if not _readable(n, values.get(n))), None)
    problem = (
        f"its {column} is {values.get(column)!r:.60}"
        if column is not None
        else f"{type(exc).__name__}: {str(exc)[:200]}"
    )
    msg = (
        f"The index row of {what} cannot be read: {problem}. The instance's log is not "
        "affected; `durable-jobs doctor` lists every such row."
    )
    return UnreadableIndexRow(msg, key)


def _readable(column: str, value: Any) -> bool:
    """Whether :meth:`IndexRow.from_params` reads ``value`` in ``column``, as it does."""
    try:
        if column == "instance_uuid":
            return isinstance(value, UUID) or bool(UUID(hex=value))
        if column in ("kind", "job", "instance_id", "status"):
            return isinstance(value, str)
        if column == "version":
            int(value)
        elif column == "due_at":
            return value is None or bool(datetime.fromtimestamp(value, UTC))
        else:
            datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError, AttributeError):
        return False
    return True


def index_rows_from(kwargs: dict[str, Any]) -> Sequence[IndexRow]:
    """The index rows a save passed down to the recorder's ``insert_events``."""
    # Typed by annotation, not cast(): these run on every save.
    rows: Sequence[IndexRow] = kwargs.get(INDEX_KWARG) or ()
    return rows


def statements_from(kwargs: dict[str, Any]) -> RunStatements:
    """The runs' ``ctx.execute`` statements a save passed down to ``insert_events``:
    ``(instance uuid, statements)`` pairs, each statement with ``.sql`` and ``.params``,
    to run in order in the same transaction (see ``Store.supports_statements``)."""
    statements: RunStatements = kwargs.get(STATEMENTS_KWARG) or ()
    return statements


def snapshots_from(kwargs: dict[str, Any]) -> Sequence[StoredEvent]:
    """The snapshot rows a save passed down to ``insert_events``, to write in its
    transaction to the snapshots table (an existing row at that version is left:
    it holds the same state)."""
    snapshots: Sequence[StoredEvent] = kwargs.get(SNAPSHOTS_KWARG) or ()
    return snapshots


def type_versions_from(kwargs: dict[str, Any]) -> Sequence[tuple[str, str, int]]:
    """The new ``(kind, job, type_version)`` a save passed down to ``insert_events``."""
    versions: Sequence[tuple[str, str, int]] = kwargs.get(TYPE_VERSIONS_KWARG) or ()
    return versions


class InstanceIndex(ABC):
    """Queries every store adapter's recorder answers from its instance index.

    Mixed into the adapter's eventsourcing application recorder, whose
    ``insert_events`` also upserts the rows given by :func:`index_rows_from`
    (keeping, per instance, the row with the highest version) in the same
    transaction as the events, and calls :meth:`_run_fault_hook` last.
    """

    #: Test seam: called inside the write transaction after the index rows were
    #: written and before it commits. Raising there must leave nothing behind.
    fault_hook: Callable[[], None] | None = None

    def _run_fault_hook(self) -> None:
        if self.fault_hook is not None:
            self.fault_hook()

    def select_type_versions(self) -> list[tuple[str, str, int]] | None:
        """Every ``(kind, job, type_version)`` above 1 ever written to this store.

        Adapters record them in the insert transaction (the ``dj_type_versions``
        keyword of ``insert_events``: only versions not recorded yet). None
        (this default) means the adapter does not: ``open_jobs`` then reads
        every live instance to check the versions it holds.
        """
        return None

    def select_unindexed(self, limit: int) -> list[tuple[UUID, int]] | None:
        """Up to ``limit`` instance logs that have no index row: (uuid, last version).
        None (this default): the adapter cannot tell."""
        return None

    @abstractmethod
    def due_alarms(self, before: datetime, limit: int) -> list[IndexRow]:
        """Instances whose alarm is at or before ``before``, earliest first."""

    @abstractmethod
    def next_alarms(self, limit: int, after: datetime | None = None) -> list[IndexRow]:
        """The next ``limit`` alarms (strictly after ``after`` if given), earliest first."""

    def next_alarms_of(self, jobs: Collection[tuple[str, str]], limit: int) -> list[IndexRow]:
        """The next ``limit`` alarms of instances of ``jobs`` (``(kind, job)`` pairs),
        earliest first: what a runtime reads once it met an alarm of a job its registry
        does not define (a job removed, or added by a newer release), whose instances
        wait for a process that defines it and must not fill its window.

        This default reads :meth:`next_alarms` and leaves the others out, reading
        twice as many again until it has ``limit`` or there are no more; an adapter
        should filter in its query instead."""
        wanted = set(jobs)
        asked = limit
        while True:
            rows = self.next_alarms(asked)
            kept = [r for r in rows if (r.kind, r.job) in wanted]
            if len(kept) >= limit or len(rows) < asked:
                return kept[:limit]
            asked *= 2

    @abstractmethod
    def index_row(self, instance_uuid: UUID) -> IndexRow | None:
        """The index row of one instance, or None."""

    @abstractmethod
    def select_index(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[IndexRow]:
        """Rows ordered by (kind, job, instance_id), filtered, after the key ``after``."""
