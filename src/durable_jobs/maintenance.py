"""Store maintenance: replay checks, JSONL export and import, purge, tail.

Everything here works on an open :class:`~durable_jobs.Store` (see
:func:`durable_jobs.open_store`) and is what the ``durable-jobs`` command line
runs (``replay``, ``export``, ``import``, ``purge``, ``tail``):

- :func:`replay_instance` / :func:`replay_store` rebuild instances from their
  whole log and compare that with the snapshot-based rebuild and with the
  index row (status, alarm, version);
- :func:`export_jsonl` writes a store (or part of it) as JSON lines and
  :func:`import_jsonl` writes such a file into another store, versions and
  timestamps kept, index rows rebuilt;
- :func:`purge_instance` deletes a terminated instance's whole history (for
  data-removal requests);
- :func:`tail_events` follows the events other processes commit;
- :func:`terminate_instance` and :func:`trigger_instance` are the quiet admin
  path: they commit domain events (no handler runs, no overdue alarm fires),
  which a runtime serving the store then acts on.

The export format (``format`` ``durable-jobs-export``, ``version`` 1) is one
JSON object per line::

    {"type":"header","format":"durable-jobs-export","version":1,
     "exported_at":"2026-01-01T00:00:00+00:00","store":"sqlite:///jobs.db",
     "filter":{"kind":null,"job":null,"status":null},
     "plaintext":true,"encrypted_store":false}
    {"type":"event","instance_uuid":"…","kind":"continuous","job":"sync",
     "instance_id":"acct-42","version":1,"timestamp":"2026-01-01T00:00:00Z",
     "topic":"durable_jobs:ContinuousInstance.Started","name":"started",
     "state":{…the stored JSON of the event…}}
    …
    {"type":"footer","instances":12,"events":345}

Events come instance by instance, each instance's versions 1, 2, 3… in order.
``state`` is the event's stored JSON as is (it includes ``timestamp``);
``timestamp`` and ``name`` repeat what it says for readers. Snapshots are
not exported (they are a cache; an import takes new ones). The footer makes a
truncated file detectable: an import refuses a file without it.

The events are exported decrypted (``plaintext`` is true): the export of an
encrypted store (``encrypted_store`` true) holds its data in clear and must be
protected accordingly. An import into a store opened with an encryption key
encrypts every row it writes.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final, Literal, cast, final
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from durable_jobs._domain.ids import KINDS, Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance, event_classes
from durable_jobs._domain.values import MAX_NESTING, check_json_value
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    StoreError,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import CrossProcessLocks, ListensForAlarms
from durable_jobs._store.index import IndexRow
from durable_jobs._store.mapper import CorruptEventError, JsonMapper

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "AdminResult",
    "Divergence",
    "ExportFileError",
    "ExportSummary",
    "ImportSummary",
    "InstanceExistsError",
    "LiveInstanceError",
    "PurgeResult",
    "ReplayReport",
    "TailEvent",
    "check_export",
    "export_jsonl",
    "import_jsonl",
    "purge_instance",
    "replay_instance",
    "replay_store",
    "tail_events",
    "tail_position",
    "terminate_instance",
    "trigger_instance",
]

#: ``format`` of the export header line.
EXPORT_FORMAT: Final = "durable-jobs-export"
#: ``version`` of the export format this module writes and reads.
EXPORT_VERSION: Final = 1
#: Events written per import transaction (whole instances; one instance may exceed it).
IMPORT_BATCH_EVENTS: Final = 2000


# ---- errors ------------------------------------------------------------------------


class ExportFileError(ValidationError):
    """An export file is malformed, or not one; nothing was written.

    ``line`` is the 1-based line number the problem is on (None: the file as a whole).
    """

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        self.line = line
        self.source = source
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {message}; nothing was written.")


class InstanceExistsError(DurableJobsError):
    """An import would overwrite instances the target store already has; nothing was written."""

    def __init__(self, labels: list[str], store: Store) -> None:
        self.labels = labels
        shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        super().__init__(
            f"The store {store.url} already has {shown}; import never overwrites an "
            "instance, so nothing was written. Import into an empty store (or one without "
            "these instances), or purge them from it first."
        )


class LiveInstanceError(DurableJobsError):
    """Purge refused: the instance is live (not terminated); nothing was deleted."""


# ---- replay ------------------------------------------------------------------------


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
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
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
    uuid = instance_uuid(_kind(kind), job, check_instance_id(instance_id))
    return _replay(store, uuid, kind, job, instance_id)


def replay_store(
    store: Store,
    *,
    kind: str | None = None,
    job: str | None = None,
    status: str | None = None,
) -> Iterator[ReplayReport]:
    """:func:`replay_instance` for every indexed instance (filtered), in index order.

    An instance whose rows are corrupt gets a report with ``error`` and the
    check carries on with the next one.
    """
    if kind is not None:
        _kind(kind)
    for row in store.iter_instances(kind=kind, job=job, status=status):
        report = _replay(store, row.instance_uuid, row.kind, row.job, row.instance_id)
        if report is not None:
            yield report


def _replay(
    store: Store, uuid: UUID, kind: str, job: str, instance_id: str
) -> ReplayReport | None:
    report = ReplayReport(kind=kind, job=job, instance_id=instance_id, instance_uuid=uuid)
    try:
        checked = _read_consistent(store, uuid)
    except DurableJobsError as exc:
        return replace(report, error=_one_line(str(exc)))
    if checked is None:
        return None
    events, row = checked
    if not events:
        version = row.version if row is not None else None
        return replace(
            report,
            error=f"The index has a row for this instance (version {version}) "
            "but its log has no events.",
        )
    report = replace(report, events=len(events))
    full: JobInstance | None = None
    for event in events:
        try:
            full = event.mutate(full)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            return replace(
                report,
                error=f"Event version {event.originator_version} ({event.NAME}) does not "
                f"apply to the instance rebuilt so far ({problem}).",
            )
    assert isinstance(full, JobInstance)
    report = replace(report, version=full.version, status=full.status)
    try:
        snapshot_version = store.snapshot_version(uuid, lte=full.version)
        rebuilt = store.get_by_uuid(uuid, version=full.version)
    except DurableJobsError as exc:
        return replace(report, error=_one_line(str(exc)))
    divergences = [*_compare_rebuilds(full, rebuilt), *_compare_index(full, row)]
    return replace(report, snapshot_version=snapshot_version, divergences=tuple(divergences))


def _read_consistent(
    store: Store, uuid: UUID
) -> tuple[list[JobInstance.Event], IndexRow | None] | None:
    """The log and then the index row, read again if a commit landed in between."""
    for _ in range(5):
        events = store.history(uuid)
        row = store.index_row(uuid)
        if row is None and not events:
            return None
        last = events[-1].originator_version if events else 0
        if row is None or row.version <= last:
            return events, row
    return events, row


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
        ("due_at", _iso(d.alarm_at), _iso(row.due_at)),
        ("version", full.version, row.version),
    ]
    return [
        Divergence(source="index", field=name, expected=expected, found=found)
        for name, expected, found in pairs
        if expected != found
    ]


# ---- export ------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class ExportSummary:
    """How many instances and events :func:`export_jsonl` wrote."""

    instances: int
    events: int


def export_jsonl(
    store: Store,
    out: IO[str],
    *,
    kind: str | None = None,
    job: str | None = None,
    status: str | None = None,
) -> ExportSummary:
    """Write the store's instances (those matching the filters) to ``out`` as JSON lines.

    The format is in this module's docstring. Every row is decoded on the way
    (so whatever is exported can be imported): a corrupt row raises
    :class:`StoreError` naming the instance and version, and the output then
    has no footer line, which an import refuses. Reads only.
    """
    if kind is not None:
        _kind(kind)
    _write_line(
        out,
        {
            "type": "header",
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "store": str(store.url),
            "filter": {"kind": kind, "job": job, "status": status},
            # Events are exported decrypted: the file holds the plaintext even of an
            # encrypted store (``encrypted_store``), and must be protected like it.
            "plaintext": True,
            "encrypted_store": store.encrypted,
        },
    )
    instances = events = 0
    for row in store.iter_instances(kind=kind, job=job, status=status):
        stored = store.stored_events(row.instance_uuid)
        for expected, s in enumerate(stored, 1):
            store.decode(s)  # a corrupt row stops the export with a StoreError naming it
            if s.originator_version != expected:
                msg = (
                    f"Cannot export {row.kind} job {row.job!r} instance {row.instance_id!r}: "
                    f"its log skips from version {expected - 1} to {s.originator_version}."
                )
                raise StoreError(msg)
            _write_line(out, _event_line(row, s, store.plaintext(s)))
        if stored:
            instances += 1
            events += len(stored)
    _write_line(out, {"type": "footer", "instances": instances, "events": events})
    return ExportSummary(instances, events)


def _event_line(row: IndexRow, stored: StoredEvent, plaintext: bytes) -> dict[str, Any]:
    state = json.loads(plaintext)
    cls = event_classes().get(stored.topic)
    return {
        "type": "event",
        "instance_uuid": str(row.instance_uuid),
        "kind": row.kind,
        "job": row.job,
        "instance_id": row.instance_id,
        "version": stored.originator_version,
        "timestamp": state.get("timestamp") if isinstance(state, dict) else None,
        "topic": stored.topic,
        "name": cls.NAME if cls is not None else None,
        "state": state,
    }


def _write_line(out: IO[str], document: dict[str, Any]) -> None:
    out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")


# ---- import ------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_jsonl` wrote, counted again in the target store afterwards."""

    instances: int
    events: int


@dataclass
class _Group:
    """One instance read from an export file."""

    uuid: UUID
    label: str
    line: int
    stored: list[StoredEvent] = field(default_factory=list)
    agg: JobInstance | None = None


def import_jsonl(
    store: Store,
    source: str | os.PathLike[str] | IO[str],
    *,
    batch_events: int = IMPORT_BATCH_EVENTS,
) -> ImportSummary:
    """Import an export file (a path or an open text stream) into ``store``.

    The whole file is checked first: a malformed line raises
    :class:`ExportFileError` with its line number, an instance the store
    already has raises :class:`InstanceExistsError`; either way nothing is
    written. Then instances are written verbatim (versions, timestamps and
    JSON as exported) with rebuilt index rows, whole instances per
    transaction, and the result is counted again in the store. An instance
    that another writer creates during the import stops it with
    :class:`ConcurrencyError` (instances written before it stay).
    """
    name, lines = _export_lines(source)
    expected: dict[UUID, int] = {}
    existing: list[str] = []
    for group in _read_export(lines(), name):
        assert group.agg is not None
        expected[group.uuid] = group.agg.version
        if store.index_row(group.uuid) is not None or store.stored_events(group.uuid, limit=1):
            existing.append(group.label)
    if existing:
        raise InstanceExistsError(existing, store)

    batch: list[_Group] = []
    size = 0
    for group in _read_export(lines(), name):
        if group.uuid not in expected:  # the file changed under us
            raise ExportFileError("the file changed during the import", source=name)
        batch.append(group)
        size += len(group.stored)
        if size >= batch_events:
            _write_batch(store, batch)
            batch, size = [], 0
    if batch:
        _write_batch(store, batch)
    return _verify(store, expected)


def check_export(source: str | os.PathLike[str] | IO[str]) -> int:
    """Check an export file as :func:`import_jsonl` does before it writes, without a
    store: a malformed line raises :class:`ExportFileError`. Returns the number of
    instances in it. A stream is read to its end."""
    name, lines = _export_lines(source)
    return sum(1 for _ in _read_export(lines(), name))


def _export_lines(
    source: str | os.PathLike[str] | IO[str],
) -> tuple[str, Callable[[], Iterator[str]]]:
    """The name of ``source`` and a function giving its lines (again on each call)."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)

        def from_file() -> Iterator[str]:
            try:
                with open(path, encoding="utf-8") as f:
                    yield from f
            except OSError as exc:
                raise ExportFileError(f"cannot read the file ({exc})", source=path) from exc
            except UnicodeDecodeError as exc:
                raise ExportFileError(f"not UTF-8 text ({exc})", source=path) from exc

        return path, from_file
    name = getattr(source, "name", None) or "<stream>"
    buffered = list(source)

    def from_buffer() -> Iterator[str]:
        return iter(buffered)

    return str(name), from_buffer


def _no_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number (NaN and infinities cannot be stored)"
    raise ValueError(msg)


def _write_batch(store: Store, batch: list[_Group]) -> None:
    stored = [s for g in batch for s in g.stored]
    instances = [g.agg for g in batch if g.agg is not None]
    try:
        store.import_events(stored, instances)
    except ConcurrencyError as exc:
        labels = ", ".join(g.label for g in batch[:3])
        msg = (
            f"Another writer created one of {labels}{' …' if len(batch) > 3 else ''} in "
            f"{store.url} during the import; this batch was not written (earlier ones were)."
        )
        raise ConcurrencyError(msg) from exc


def _verify(store: Store, expected: dict[UUID, int]) -> ImportSummary:
    for uuid, version in expected.items():
        row = store.index_row(uuid)
        last = store.stored_events(uuid, desc=True, limit=1)
        found = last[0].originator_version if last else 0
        if row is None or row.version != version or found != version:
            msg = (
                f"Import verification failed for instance {uuid} in {store.url}: expected "
                f"{version} events, found {found} (index version "
                f"{row.version if row else None})."
            )
            raise StoreError(msg)
    return ImportSummary(len(expected), sum(expected.values()))


def _read_export(lines: Iterable[str], source: str) -> Iterator[_Group]:
    """The instances of an export file, each complete and rebuilt; raises ExportFileError."""
    mapper = JsonMapper()
    seen: dict[UUID, int] = {}
    group: _Group | None = None
    instances = events = 0
    footer = False
    number = 0

    def bad(message: str) -> ExportFileError:
        return ExportFileError(message, source=source, line=number)

    for number, text in enumerate(lines, 1):
        if footer:
            raise bad("a line after the footer line")
        try:
            doc = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise bad(f"not a JSON object ({exc.msg} at column {exc.colno})") from exc
        except (ValueError, RecursionError) as exc:
            raise bad(f"not storable JSON ({exc or 'nested too deep'})") from exc
        if not isinstance(doc, dict):
            raise bad(f"not a JSON object but {type(doc).__name__}")
        kind_of_line = doc.get("type")
        if number == 1:
            _check_header(doc, bad)
            continue
        if kind_of_line == "header":
            raise bad("a second header line")
        if kind_of_line == "footer":
            if group is not None:
                yield _finish(group, bad)
                group = None
            if doc.get("instances") != instances or doc.get("events") != events:
                raise bad(
                    f"the footer counts {doc.get('instances')!r} instances and "
                    f"{doc.get('events')!r} events, the file has {instances} and {events}"
                )
            footer = True
            continue
        if kind_of_line != "event":
            raise bad(f"unknown line type {kind_of_line!r} (expected event or footer)")
        uuid, version, stored, label = _parse_event(doc, bad)
        if group is None or group.uuid != uuid:
            if group is not None:
                yield _finish(group, bad)
            if uuid in seen:
                raise bad(
                    f"events of {label} continue here after other instances "
                    f"(it started on line {seen[uuid]}); an instance's events must be together"
                )
            seen[uuid] = number
            group = _Group(uuid=uuid, label=label, line=number)
            instances += 1
        _add_event(group, mapper, version, stored, bad)
        events += 1
    if number == 0:
        raise ExportFileError("the file is empty", source=source)
    if not footer:
        raise ExportFileError(
            f"the file ends at line {number} without its footer line (truncated?)",
            source=source,
        )


def _add_event(
    group: _Group, mapper: JsonMapper, version: int, stored: StoredEvent, bad: Any
) -> None:
    """Append one event to ``group``, replaying it on the instance rebuilt so far."""
    label = group.label
    if version != len(group.stored) + 1:
        raise bad(
            f"{label} version {version} follows version {len(group.stored)}; "
            "versions must be 1, 2, 3... in order"
        )
    try:
        event = mapper.to_domain_event(stored)
        group.agg = event.mutate(group.agg)
    except CorruptEventError as exc:
        raise bad(f"{label} version {version} is not a valid event ({exc.problem})") from exc
    except Exception as exc:
        raise bad(
            f"{label} version {version} does not apply to the instance "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    group.stored.append(stored)


def _check_header(doc: dict[str, Any], bad: Any) -> None:
    if doc.get("type") != "header" or doc.get("format") != EXPORT_FORMAT:
        raise bad(f"not a durable-jobs export (the first line must be its {EXPORT_FORMAT} header)")
    if doc.get("version") != EXPORT_VERSION:
        raise bad(
            f"export format version {doc.get('version')!r}; this version of durable-jobs "
            f"reads version {EXPORT_VERSION}"
        )


def _parse_event(doc: dict[str, Any], bad: Any) -> tuple[UUID, int, StoredEvent, str]:
    for key, types in (
        ("instance_uuid", str),
        ("kind", str),
        ("job", str),
        ("instance_id", str),
        ("topic", str),
        ("state", dict),
    ):
        if not isinstance(doc.get(key), types):
            raise bad(f"the event has no {key!r} {types.__name__}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"the event's 'version' must be a whole number >= 1, not {version!r}")
    kind, job, instance_id = doc["kind"], doc["job"], doc["instance_id"]
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    label = f"{kind} job {job!r} instance {instance_id!r}"
    try:
        uuid = UUID(doc["instance_uuid"])
        expected = instance_uuid(cast(Kind, kind), job, check_instance_id(instance_id))
    except (ValueError, ValidationError) as exc:
        raise bad(f"bad instance of {label} ({exc})") from exc
    if uuid != expected:
        raise bad(f"instance_uuid {uuid} is not the id of {label} ({expected})")
    try:
        check_json_value(doc["state"], "the event's 'state'", max_depth=MAX_NESTING + 8)
    except ValidationError as exc:
        raise bad(str(exc)) from None
    state = json.dumps(doc["state"], ensure_ascii=False, separators=(",", ":")).encode()
    return uuid, version, StoredEvent(uuid, version, doc["topic"], state), label


def _finish(group: _Group, bad: Any) -> _Group:
    agg = group.agg
    assert agg is not None
    d = agg.d
    if f"{d.kind} job {d.job!r} instance {d.instance_id!r}" != group.label:
        raise bad(f"the events of {group.label} (from line {group.line}) rebuild another instance")
    return group


# ---- purge -------------------------------------------------------------------------


@final
@dataclass(frozen=True, kw_only=True)
class PurgeResult:
    """What :func:`purge_instance` deleted (``purged`` is False for an unknown instance)."""

    purged: bool
    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    events: int = 0
    snapshots: int = 0

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: these fields, by these names."""
        return {
            "purged": self.purged,
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
            "events": self.events,
            "snapshots": self.snapshots,
        }


def purge_instance(store: Store, kind: str, job: str, instance_id: str) -> PurgeResult:
    """Delete a terminated instance's whole history: events, snapshots and index row.

    For data-removal requests; the id can be started again afterwards, as a
    brand-new instance. A live instance (not terminated) raises
    :class:`LiveInstanceError` and nothing is deleted; so does an SQLite store
    that a jobs runtime is serving (stop it first: it keeps instances in
    memory). On a shared store (Postgres) the instance's cross-process lock is
    held while deleting, so no run of it can commit meanwhile. An unknown
    instance gives ``purged=False``.
    """
    uuid = instance_uuid(_kind(kind), job, check_instance_id(instance_id))
    label = f"{kind} job {job!r} instance {instance_id!r}"
    result = PurgeResult(
        purged=False, kind=kind, job=job, instance_id=instance_id, instance_uuid=uuid
    )
    try:
        store.claim_runtime()
    except ConfigurationError as exc:
        msg = (
            f"Cannot purge {label} while a jobs runtime serves {store.url} (it keeps "
            "instances in memory); stop it, then purge."
        )
        raise LiveInstanceError(msg) from exc
    try:
        locks = store if isinstance(store, CrossProcessLocks) else None
        if locks is not None and not locks.try_lock(uuid):
            msg = f"{label} is busy in another process (a run or call holds it); try again."
            raise ConcurrencyError(msg)
        try:
            row = store.index_row(uuid)
            if row is None:
                return result
            live = row.status != "terminated"
            if not live:
                try:
                    agg = store.get_by_uuid(uuid, label=label)
                except StoreError:
                    agg = None  # a corrupt log: the index row decides
                live = agg is not None and agg.live
            if live:
                msg = (
                    f"Refusing to purge {label}: it is live (status {row.status!r}). "
                    "Terminate it first, then purge; nothing was deleted."
                )
                raise LiveInstanceError(msg)
            events, snapshots = store.delete_instance(uuid, version=row.version)
        finally:
            if locks is not None:
                locks.unlock(uuid)
    finally:
        store.release_runtime()
    return PurgeResult(
        purged=True,
        kind=kind,
        job=job,
        instance_id=instance_id,
        instance_uuid=uuid,
        events=events,
        snapshots=snapshots,
    )


# ---- tail --------------------------------------------------------------------------


@final
@dataclass(frozen=True, kw_only=True)
class TailEvent:
    """One committed event, as :func:`tail_events` reports it.

    ``position`` is the event's global position in the store (pass the last one
    seen as ``after`` to carry on later). ``kind``/``job``/``instance_id`` are
    None if the instance has no index row any more (purged); ``name`` and
    ``state`` are None, and ``error`` says why, if the row does not decode.
    """

    position: int
    instance_uuid: UUID
    kind: str | None
    job: str | None
    instance_id: str | None
    version: int
    timestamp: str | None
    topic: str
    name: str | None
    state: Any
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: an export event line plus ``position`` and ``error``."""
        return {
            "type": "event",
            "position": self.position,
            "instance_uuid": str(self.instance_uuid),
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "version": self.version,
            "timestamp": self.timestamp,
            "topic": self.topic,
            "name": self.name,
            "state": self.state,
            "error": self.error,
        }


def tail_position(store: Store) -> int:
    """The global position of the latest committed event (0 for an empty store)."""
    return store.last_position()


def tail_events(
    store: Store,
    *,
    after: int | None = None,
    duration: timedelta | float | None = None,
    limit: int | None = None,
    poll_interval: timedelta | float = 0.25,
    stop: threading.Event | None = None,
) -> Generator[TailEvent, None, None]:
    """Yield events as they are committed, oldest first.

    Starts after global position ``after`` (default: now, the latest
    committed event) and ends after ``duration`` (None: never), after
    ``limit`` events, or once ``stop`` is set (having reported what was
    committed until then). Shared stores (Postgres) wake up
    on their NOTIFY channel and also poll every ``poll_interval`` (not every
    commit notifies); the others poll. Reads only.
    """
    wait = poll_interval.total_seconds() if isinstance(poll_interval, timedelta) else poll_interval
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    deadline = None if seconds is None else time.monotonic() + seconds
    position = tail_position(store) if after is None else after
    names: dict[UUID, tuple[str, str, str] | None] = {}
    listener = store.open_alarm_listener() if isinstance(store, ListensForAlarms) else None
    seen = 0
    ending = False
    try:
        while True:
            batch = store.events_after(position, 500)
            for note in batch:
                yield _tail_event(store, note, names)
                position = note.id
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if len(batch) == 500:
                continue
            if ending:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or (stop is not None and stop.is_set()):
                ending = True  # one more read: what was committed until now is reported
                continue
            timeout = wait if remaining is None else min(wait, remaining)
            if listener is not None:
                ready, _, _ = select.select([listener.fileno()], [], [], timeout)
                if ready:
                    listener.drain()
            elif stop is not None:
                stop.wait(timeout)
            else:
                time.sleep(timeout)
    finally:
        if listener is not None:
            listener.close()


def _tail_event(
    store: Store, note: Notification, names: dict[UUID, tuple[str, str, str] | None]
) -> TailEvent:
    oid = note.originator_id
    uuid = oid if isinstance(oid, UUID) else UUID(str(oid))
    if uuid not in names:
        row = store.index_row(uuid)
        names[uuid] = (row.kind, row.job, row.instance_id) if row is not None else None
    cls = event_classes().get(note.topic)
    state: Any = None
    error: str | None = None
    try:
        state = json.loads(store.plaintext(note))
    except StoreError as exc:
        error = str(exc)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        error = f"stored event is not JSON ({exc})"
    if cls is None:
        error = error or f"unknown topic {note.topic!r}"
    key = names[uuid]
    started = cls is not None and issubclass(cls, JobInstance.Started)
    if key is None and isinstance(state, dict) and started:
        key = (str(state.get("kind")), str(state.get("job")), str(state.get("instance_id")))
    return TailEvent(
        position=note.id,
        instance_uuid=uuid,
        kind=key[0] if key else None,
        job=key[1] if key else None,
        instance_id=key[2] if key else None,
        version=note.originator_version,
        timestamp=state.get("timestamp") if isinstance(state, dict) else None,
        topic=note.topic,
        name=cls.NAME if cls is not None else None,
        state=state,
        error=error,
    )


# ---- helpers -----------------------------------------------------------------------


# ---- admin: terminate and trigger without handlers -----------------------------------


@final
@dataclass(frozen=True, kw_only=True)
class AdminResult:
    """What :func:`terminate_instance` or :func:`trigger_instance` committed.

    ``done`` is False (nothing written) for an unknown or terminated instance,
    or, for a trigger, one with nothing to run (an empty debounce instance).
    ``status``, ``due_at`` and ``version`` describe the instance afterwards.
    """

    action: Literal["terminate", "trigger"]
    done: bool
    kind: str
    job: str
    instance_id: str
    instance_uuid: UUID
    found: bool
    status: str | None = None
    due_at: datetime | None = None
    version: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: these fields, by these names."""
        return {
            "action": self.action,
            "done": self.done,
            "found": self.found,
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "instance_uuid": str(self.instance_uuid),
            "status": self.status,
            "due_at": _iso(self.due_at),
            "version": self.version,
        }


def _admin(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    action: Literal["terminate", "trigger"],
    change: Callable[[JobInstance], bool],
) -> AdminResult:
    """Load one instance, apply ``change`` (the domain decides), commit what it recorded.

    Refused while a jobs runtime serves an SQLite store (it keeps instances in
    memory and would not see the commit); on a shared store (Postgres) the
    instance's cross-process lock is held, so no run of it commits meanwhile.
    """
    uuid = instance_uuid(_kind(kind), job, check_instance_id(instance_id))
    label = f"{kind} job {job!r} instance {instance_id!r}"
    result = AdminResult(
        action=action,
        done=False,
        found=False,
        kind=kind,
        job=job,
        instance_id=instance_id,
        instance_uuid=uuid,
    )
    try:
        store.claim_runtime()
    except ConfigurationError as exc:
        msg = (
            f"Cannot {action} {label} while a jobs runtime serves {store.url} (it keeps "
            f"instances in memory); stop it first, or call {action} through its client."
        )
        raise ConfigurationError(msg) from exc
    try:
        locks = store if isinstance(store, CrossProcessLocks) else None
        if locks is not None and not locks.try_lock(uuid):
            msg = f"{label} is busy in another process (a run or call holds it); try again."
            raise ConcurrencyError(msg)
        try:
            agg = store.get_by_uuid(uuid, label=label)
            if agg is None:
                return result
            done = change(agg)
            if done:
                store.save(agg)
        finally:
            if locks is not None:
                locks.unlock(uuid)
    finally:
        store.release_runtime()
    return replace(
        result,
        done=done,
        found=True,
        status=agg.status,
        due_at=agg.d.alarm_at,
        version=agg.version,
    )


def terminate_instance(
    store: Store,
    kind: str,
    job: str,
    instance_id: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> AdminResult:
    """Terminate one instance without running anything: what ``terminate(id)`` does.

    Its state, alarm, pending retry and buffered events are removed (the
    log and counters stay). No handler runs and no other alarm fires, so it
    needs no registry. ``now`` (default: the wall clock, UTC) stamps the record.
    """
    at = now or datetime.now(UTC)
    return _admin(
        store,
        kind,
        job,
        instance_id,
        action="terminate",
        change=lambda agg: agg.terminate(now=at, reason=reason),
    )


def trigger_instance(
    store: Store, kind: str, job: str, instance_id: str, *, now: datetime | None = None
) -> AdminResult:
    """Make one instance's next run due now, for a runtime serving the store to run.

    A paused instance (status ``failed``) is resumed, a waiting retry is
    brought forward, a debounce instance's open batch is closed (reason
    ``manual``); its alarm is set to ``now``. Nothing runs here: the run
    happens when a runtime serves the store (at once if one is running on
    Postgres, else when one starts). ``done`` is False for an unknown or
    terminated instance, or an empty debounce one.
    """
    at = now or datetime.now(UTC)
    return _admin(
        store, kind, job, instance_id, action="trigger", change=lambda agg: agg.due_now(now=at)
    )


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: use one of {', '.join(KINDS)}."
        raise ConfigurationError(msg)
    return kind


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _one_line(text: str) -> str:
    return " ".join(text.split())
