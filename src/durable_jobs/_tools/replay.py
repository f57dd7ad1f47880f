"""Replay checks: rebuild instances from their whole log and compare that with the
snapshot-based rebuild and with the index row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, final
from uuid import UUID

from durable_jobs._domain.ids import check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import DurableJobsError
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow, Unreadable
from durable_jobs._tools.args import check_store
from durable_jobs._tools.common import instance_json, isoformat, kind_of, one_line

__all__ = ["Divergence", "ReplayReport", "replay_instance", "replay_store"]


@final
@dataclass(frozen=True, kw_only=True)
class Divergence:
    """Where a rebuild or the index disagrees with the rebuild from the whole log.

    ``source`` is ``"snapshot"`` (the snapshot-based rebuild) or ``"index"``
    (the instance's index row); ``field`` names what differs (``version``,
    ``status``, ``due_at``, ``data.state``…); ``expected`` is what the full
    replay says, ``found`` what the other source says (JSON values).
    """

    source: Literal["snapshot", "index"]
    field: str
    expected: Any
    found: Any

    def as_json(self) -> dict[str, Any]:
        """``{"source", "field", "expected", "found"}``."""
        return {
            "source": self.source,
            "field": self.field,
            "expected": self.expected,
            "found": self.found,
        }


@final
@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """What :func:`replay_instance` found for one instance.

    ``version`` and ``events`` come from the full replay (None and 0 if the log
    could not be read); ``snapshot_version`` is the latest snapshot used by
    the snapshot-based rebuild (None: no snapshot, so both rebuilds replay the
    same events); ``error`` says why the instance could not be checked (a
    corrupt row, say). ``ok`` is true when there is neither.
    """

    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    version: int | None = None
    events: int = 0
    status: str | None = None
    snapshot_version: int | None = None
    divergences: tuple[Divergence, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No error and no divergence."""
        return self.error is None and not self.divergences

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: these fields, by these names."""
        return {
            **instance_json(self.kind, self.job, self.instance_id, self.instance_uuid),
            "ok": self.ok,
            "version": self.version,
            "events": self.events,
            "status": self.status,
            "snapshot_version": self.snapshot_version,
            "divergences": [d.as_json() for d in self.divergences],
            "error": self.error,
        }


def replay_instance(store: Store, kind: str, job: str, instance_id: str) -> ReplayReport | None:
    """Check one instance: full replay vs snapshot rebuild vs index row.

    None if the store has no such instance (no index row and no events).
    Problems are reported in the result (``error``/``divergences``), not raised;
    an unknown ``kind`` or malformed id raises :class:`ConfigurationError` /
    :class:`ValidationError`. Reads only.
    """
    check_store(store, "replay_instance()")
    uuid = instance_uuid(kind_of(kind), job, check_instance_id(instance_id))
    return _replay(store, uuid, kind, job, instance_id)


def replay_store(
    store: Store,
    *,
    kind: str | None = None,
    job: str | None = None,
    status: str | None = None,
    unreadable: Unreadable | None = None,
) -> Iterator[ReplayReport]:
    """:func:`replay_instance` for every indexed instance (filtered), in index order.

    An instance whose rows are corrupt gets a report with ``error`` and the
    check carries on with the next one. An index row that cannot be read fails
    the replay with a :class:`~durable_jobs.StoreError` naming it or, given
    ``unreadable``, is passed to it and left out.
    """
    check_store(store, "replay_store()")
    if kind is not None:
        kind_of(kind)
    for row in store.iter_instances(kind=kind, job=job, status=status, unreadable=unreadable):
        report = _replay(store, row.instance_uuid, row.kind, row.job, row.instance_id)
        if report is not None:
            yield report
    if kind is None and job is None and status is None:
        # Logs the index does not know: the runtime never runs them (see doctor).
        for uuid, _ in store.unindexed_logs(MAX_UNINDEXED):
            report = _replay_unindexed(store, uuid)
            if report is not None:
                yield report


#: Logs without an index row a replay of the whole store reports at most.
MAX_UNINDEXED = 1000


def _replay_unindexed(store: Store, uuid: UUID) -> ReplayReport | None:
    """The report of a log that has no index row (named by what its events say)."""
    full: JobInstance | None = None
    problem: Exception | None = None
    try:
        # Read to the end even after an event that does not apply: a row that cannot
        # be read is what is reported then.
        for event in store.iter_history(uuid, page=REPLAY_PAGE):
            if problem is None:
                try:
                    full = event.mutate(full)
                except Exception as exc:
                    problem = exc
    except Exception as exc:  # an undecodable log: named by its uuid only
        problem = exc
    if problem is not None:
        return ReplayReport(
            kind="?",
            job="?",
            instance_id="?",
            instance_uuid=uuid,
            error=f"Its log has no index row and cannot be read: {one_line(str(problem))}",
        )
    if not isinstance(full, JobInstance):
        return None
    d = full.d
    return _replay(store, uuid, d.kind, d.job, d.instance_id)


def _replay(
    store: Store, uuid: UUID, kind: str, job: str, instance_id: str
) -> ReplayReport | None:
    report = ReplayReport(kind=kind, job=job, instance_id=instance_id, instance_uuid=uuid)
    try:
        checked = _read_consistent(store, uuid)
    except DurableJobsError as exc:
        return replace(report, error=one_line(str(exc)))
    if checked is None:
        return None
    replayed, row = checked
    if not replayed.events:
        version = row.version if row is not None else None
        return replace(
            report,
            error=f"The index has a row for this instance (version {version}) "
            "but its log has no events.",
        )
    report = replace(report, events=replayed.events)
    if replayed.failed is not None:
        return replace(report, error=replayed.failed)
    full = replayed.full
    assert isinstance(full, JobInstance)
    report = replace(report, version=full.version, status=full.status)
    try:
        latest = store.snapshot_version(uuid)
        # The snapshot a rebuild at the log's end uses: the latest one, unless that one
        # lies past the end (then it is read again, below the end).
        snapshot_version = latest
        if latest is not None and latest > full.version:
            snapshot_version = store.snapshot_version(uuid, lte=full.version)
        rebuilt = store.get_by_uuid(uuid, version=full.version)
    except DurableJobsError as exc:
        return replace(report, error=one_line(str(exc)))
    divergences = [*_compare_rebuilds(full, rebuilt), *_compare_index(full, row)]
    divergences += _snapshot_past_the_log(store, uuid, full.version, latest)
    return replace(report, snapshot_version=snapshot_version, divergences=tuple(divergences))


def _snapshot_past_the_log(
    store: Store, uuid: UUID, last: int, latest: int | None
) -> list[Divergence]:
    """A ``latest`` snapshot newer than the log's ``last`` event (a hand edit, a snapshots
    table restored from another time than the events): the runtime would load it, and
    its next commit would leave a gap in the log. A commit made meanwhile (the index
    row has moved on to the snapshot's version) is not one."""
    if latest is None or latest <= last:
        return []
    try:
        row = store.index_row(uuid)
    except DurableJobsError:
        return []
    if row is not None and row.version >= latest:
        return []
    return [
        Divergence(source="snapshot", field="latest_version", expected=f"<= {last}", found=latest)
    ]


#: Events a replay reads from the store at a time (an instance's log is never held whole).
REPLAY_PAGE = 1000


@dataclass
class _Replayed:
    """An instance's log read to ``last`` (``events`` of them) and replayed: ``full``,
    or ``failed``, the account of the first event that did not apply."""

    events: int = 0
    last: int = 0
    full: JobInstance | None = None
    failed: str | None = None


def _replay_log(store: Store, uuid: UUID, lte: int | None) -> _Replayed:
    """The log up to ``lte``, replayed as it is read a page at a time; read to its end
    also after an event that does not apply (a row that cannot be read raises)."""
    out = _Replayed()
    for event in store.iter_history(uuid, lte=lte, page=REPLAY_PAGE):
        out.events += 1
        out.last = event.originator_version
        if out.failed is not None:
            continue
        try:
            out.full = event.mutate(out.full)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            out.failed = (
                f"Event version {event.originator_version} ({event.NAME}) does not "
                f"apply to the instance rebuilt so far ({problem})."
            )
    return out


def _read_consistent(store: Store, uuid: UUID) -> tuple[_Replayed, IndexRow | None] | None:
    """The index row, then the log up to the row's version, replayed: the two as one
    commit left them, even while a worker commits more (a commit writes an instance's
    events and its index row together, and a log only grows). Read again when they
    still differ (a commit that made the instance, or a purge, in between): only what
    persists is reported. Reading the whole log first and the row after used to
    report every instance committed to in between as diverging."""
    for _ in range(5):
        row = store.index_row(uuid)
        replayed = _replay_log(store, uuid, None if row is None else row.version)
        if row is None and not replayed.events:
            return None
        if row is not None and row.version == replayed.last:
            return replayed, row
    return replayed, row


def _compare_rebuilds(full: JobInstance, rebuilt: JobInstance | None) -> list[Divergence]:
    if rebuilt is None:
        return [Divergence(source="snapshot", field="instance", expected="present", found=None)]
    out: list[Divergence] = []
    for name, expected, found in (
        ("version", full.version, rebuilt.version),
        ("created_on", full.created_on.isoformat(), rebuilt.created_on.isoformat()),
        ("modified_on", full.modified_on.isoformat(), rebuilt.modified_on.isoformat()),
        ("class", type(full).__name__, type(rebuilt).__name__),
    ):
        if expected != found:
            out.append(Divergence(source="snapshot", field=name, expected=expected, found=found))
    a, b = full.d.model_dump(mode="json"), rebuilt.d.model_dump(mode="json")
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(
                Divergence(
                    source="snapshot", field=f"data.{key}", expected=a.get(key), found=b.get(key)
                )
            )
    return out


def _compare_index(full: JobInstance, row: IndexRow | None) -> list[Divergence]:
    if row is None:
        return [Divergence(source="index", field="row", expected="present", found=None)]
    d = full.d
    pairs: list[tuple[str, Any, Any]] = [
        ("kind", d.kind, row.kind),
        ("job", d.job, row.job),
        ("instance_id", d.instance_id, row.instance_id),
        ("status", full.status, row.status),
        ("due_at", isoformat(d.alarm_at), isoformat(row.due_at)),
        ("version", full.version, row.version),
    ]
    return [
        Divergence(source="index", field=name, expected=expected, found=found)
        for name, expected, found in pairs
        if expected != found
    ]
