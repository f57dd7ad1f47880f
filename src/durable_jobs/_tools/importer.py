"""JSONL import: an export file written into another store, versions and timestamps
kept, index rows rebuilt; nothing is written unless the whole file is sound."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final, cast, final
from uuid import UUID

import pydantic_core
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from durable_jobs._domain.ids import KINDS, Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.values import (
    DEFAULT_LIMITS,
    MAX_LIMIT,
    MAX_NESTING,
    Limits,
    LongInt,
    check_json_value,
)
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    ExportFileError,
    InstanceExistsError,
    StoreError,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import CrossProcessLocks
from durable_jobs._store.mapper import CorruptEventError, JsonMapper
from durable_jobs._tools.args import check_store
from durable_jobs._tools.common import check_key_for_writes
from durable_jobs._tools.export import EXPORT_FORMAT, EXPORT_VERSION

__all__ = ["ImportSummary", "check_export", "import_jsonl", "line_limit"]


#: Events written per import transaction (whole instances; one instance may exceed it).
IMPORT_BATCH_EVENTS: Final = 2000

#: An event line holds a few of an instance's values (its state, or a patch of it, an
#: input event) and a small envelope: a line longer than this many times the limits
#: of a state and an event, plus :data:`LINE_ENVELOPE` characters, holds more than
#: any value within them, and is refused before it is read whole or parsed.
LINE_LIMIT_FACTOR: Final = 8
LINE_ENVELOPE: Final = 1024 * 1024
#: The largest ``max_event_bytes`` / ``max_state_bytes`` an import takes (1 TiB): far
#: above any value the runtime can hold in memory, and low enough that the longest line
#: (:func:`line_limit`) is a size the operating system can read.
MAX_IMPORT_LIMIT: Final = MAX_LIMIT


def line_limit(limits: Limits) -> int:
    """The longest line (in characters, its newline aside) an import reads."""
    return LINE_LIMIT_FACTOR * (limits.max_event_bytes + limits.max_state_bytes) + LINE_ENVELOPE


@final
@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_jsonl` imported, counted again in the target store afterwards.

    ``instances`` and ``events`` are the file's, all in the store now. With
    ``resume``, ``skipped_instances`` and ``skipped_events`` of them were
    there already (written by the import it resumes) and not written again:
    when they equal ``instances`` and ``events``, the call wrote nothing.
    """

    instances: int
    events: int
    skipped_instances: int = 0
    skipped_events: int = 0

    @property
    def written_instances(self) -> int:
        """The instances this call wrote."""
        return self.instances - self.skipped_instances

    @property
    def written_events(self) -> int:
        """The events this call wrote."""
        return self.events - self.skipped_events


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
    resume: bool = False,
    max_event_bytes: int = DEFAULT_LIMITS.max_event_bytes,
    max_state_bytes: int = DEFAULT_LIMITS.max_state_bytes,
    allow_plaintext: bool = False,
) -> ImportSummary:
    """Import an export file (a path or an open text stream) into ``store``.

    The whole file is checked first: a malformed line raises
    :class:`ExportFileError` with its line number, an instance the store
    already has raises :class:`InstanceExistsError`; either way nothing is
    written. Then instances are written verbatim (versions, timestamps and
    JSON as exported) with rebuilt index rows, whole instances per
    transaction (batches of about ``batch_events`` events), and the result is
    counted again in the store. An instance that another writer creates
    during the import stops it with :class:`ConcurrencyError` (instances
    written before it stay).

    ``resume``: finish an import that was interrupted (a killed process, a lost
    connection): an instance the store already has is skipped when its log
    begins with the export's rows, the same versions, topics and JSON (a
    runtime may have run it since); any other one is still refused.

    Every state and event in the file is held to what the runtime stores:
    ``max_event_bytes`` and ``max_state_bytes`` are the limits of
    :func:`~durable_jobs.open_jobs` (1 MiB each by default; pass the app's own
    when it runs with larger ones; at most 1 TiB each, else
    :class:`ConfigurationError`), and nesting is at most 100 deep. A value
    over them is a malformed line, and so is a line longer than
    :func:`line_limit` of them (8 times both plus 1 MiB), found before it is
    read whole. A stream is copied to a temporary file as it is read (it is read
    twice: checked, then written), so memory stays at a few lines and one batch.

    An export of an encrypted store (its header says ``"encrypted_store": true``)
    into a store opened without a key would store its data in clear: that is
    refused with :class:`ConfigurationError` unless ``allow_plaintext``.
    """
    check_store(store, "import_jsonl()")
    limits = _limits(max_event_bytes, max_state_bytes)
    if not isinstance(batch_events, int) or isinstance(batch_events, bool) or batch_events < 1:
        msg = f"import_jsonl() batch_events must be a whole number >= 1, not {batch_events!r}."
        raise ValidationError(msg)
    check_key_for_writes(store, f"import into {store.url}")
    if not isinstance(cast(object, resume), bool):  # a caller may pass anything
        msg = f"import_jsonl() resume must be True or False, not {resume!r}."
        raise ValidationError(msg)
    if not isinstance(cast(object, allow_plaintext), bool):
        msg = f"import_jsonl() allow_plaintext must be True or False, not {allow_plaintext!r}."
        raise ValidationError(msg)
    with _export_lines(source, limits) as (name, lines):
        return _import(
            store,
            name,
            lines,
            resume=resume,
            batch_events=batch_events,
            limits=limits,
            allow_plaintext=allow_plaintext,
        )


def _import(
    store: Store,
    name: str,
    lines: Callable[[], Iterable[str]],
    *,
    resume: bool,
    batch_events: int,
    limits: Limits,
    allow_plaintext: bool,
) -> ImportSummary:
    """:func:`import_jsonl` once its arguments are checked and its file is open."""
    expected: dict[UUID, int] = {}
    existing: list[str] = []
    done: set[UUID] = set()  # written by the import this one resumes
    for group in _read_export(lines(), name, limits):
        assert group.agg is not None
        expected[group.uuid] = group.agg.version
        if store.index_row(group.uuid) is not None or store.stored_events(group.uuid, limit=1):
            if resume and _already_imported(store, group):
                done.add(group.uuid)
            else:
                existing.append(group.label)
    if existing:
        raise InstanceExistsError(existing, str(store.url))
    if not store.encrypted and not allow_plaintext and _from_encrypted_store(lines):
        msg = (
            f"{name} is an export of an encrypted store (its header says "
            f'"encrypted_store": true), and {store.url} is opened without an encryption '
            "key: the import would store its data in clear. Give the store's key "
            "($DURABLE_JOBS_ENCRYPTION_KEY, or encryption_key= of open_store) to keep it "
            "encrypted, or pass --allow-plaintext (allow_plaintext=True) to store it in "
            "clear on purpose. Nothing was written."
        )
        raise ConfigurationError(msg)

    # Like terminate and trigger: a runtime serving this (SQLite) store keeps its alarms
    # in memory and would never hear of the imported ones.
    try:
        store.claim_runtime()
    except ConfigurationError as exc:
        if isinstance(exc.__cause__, OSError):  # the file itself, not a runtime serving it
            raise
        msg = (
            f"Cannot import into {store.url} while a jobs runtime serves it (it keeps the "
            "alarms in memory and would not run the imported ones); stop it first. "
            "Nothing was written."
        )
        raise ConfigurationError(msg) from exc
    try:
        return _write_all(store, lines, name, expected, batch_events, done=done, limits=limits)
    finally:
        store.release_runtime()


def _from_encrypted_store(lines: Callable[[], Iterable[str]]) -> bool:
    """Whether the header line (checked already) says the export is of an encrypted store."""
    for text in lines():
        header = json.loads(text)
        return isinstance(header, dict) and header.get("encrypted_store") is True
    return False


def _already_imported(store: Store, group: _Group) -> bool:
    """Whether the store's log of ``group``'s instance begins with the export's rows
    (what an interrupted import of the same file wrote; a runtime may have added more)."""
    rows = store.stored_events(group.uuid)
    if len(rows) < len(group.stored):
        return False
    return all(
        (have.originator_version, have.topic, store.plaintext(have))
        == (want.originator_version, want.topic, bytes(want.state))
        for have, want in zip(rows, group.stored, strict=False)
    )


def _write_all(
    store: Store,
    lines: Callable[[], Iterable[str]],
    name: str,
    expected: dict[UUID, int],
    batch_events: int,
    *,
    done: set[UUID],
    limits: Limits,
) -> ImportSummary:
    """Write the instances of the export (but those ``done`` already), in batches, and
    verify them."""
    batch: list[_Group] = []
    size = 0
    for group in _read_export(lines(), name, limits):
        if group.uuid not in expected:  # the file changed under us
            raise ExportFileError("the file changed during the import", source=name)
        if group.uuid in done:
            continue
        batch.append(group)
        size += len(group.stored)
        if size >= batch_events:
            _write_batch(store, batch)
            batch, size = [], 0
    if batch:
        _write_batch(store, batch)
    return _verify(store, expected, done)


def check_export(
    source: str | os.PathLike[str] | IO[str],
    *,
    max_event_bytes: int = DEFAULT_LIMITS.max_event_bytes,
    max_state_bytes: int = DEFAULT_LIMITS.max_state_bytes,
) -> int:
    """Check an export file as :func:`import_jsonl` does before it writes (with the
    same size limits), without a store: a malformed line raises
    :class:`ExportFileError`. Returns the number of instances in it. A stream is
    read to its end."""
    limits = _limits(max_event_bytes, max_state_bytes)
    with _export_lines(source, limits) as (name, lines):
        return sum(1 for _ in _read_export(lines(), name, limits))


def _limits(max_event_bytes: int, max_state_bytes: int) -> Limits:
    """The size limits an import holds values to (ConfigurationError if not sizes from 1
    to :data:`MAX_IMPORT_LIMIT`: :class:`Limits` checks them)."""
    return Limits(max_event_bytes=max_event_bytes, max_state_bytes=max_state_bytes)


@contextlib.contextmanager
def _export_lines(
    source: str | os.PathLike[str] | IO[str], limits: Limits
) -> Iterator[tuple[str, Callable[[], Iterator[str]]]]:
    """The name of ``source`` and a function giving its lines (again on each call).

    A line longer than :func:`line_limit` is an :class:`ExportFileError` naming it,
    found without reading it whole: lines are read at most that long.
    """
    if not isinstance(source, str | os.PathLike) and not callable(
        getattr(source, "__iter__", None)
    ):
        msg = f"An export is read from a path or an open text stream, not {type(source).__name__}."
        raise ConfigurationError(msg)
    longest = line_limit(limits)
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)

        def from_file() -> Iterator[str]:
            try:
                with open(path, encoding="utf-8") as f:
                    yield from _bounded_lines(f, longest, path)
            except OSError as exc:
                raise ExportFileError(f"cannot read the file ({exc})", source=path) from exc
            except UnicodeDecodeError as exc:
                raise ExportFileError(f"not UTF-8 text ({exc})", source=path) from exc
            except ValueError as exc:  # a NUL byte or a lone surrogate in the name
                msg = f"cannot open a file of that name ({exc})"
                # The name escaped: it must not break the output that shows the error.
                raise ExportFileError(msg, source=ascii(path)) from exc

        yield path, from_file
        return
    name = str(getattr(source, "name", None) or "<stream>")
    # A stream is read once, but checked and then written: its lines go to a temporary
    # file (deleted when closed or collected), not to memory, so an import of any size
    # from standard input holds one line at a time. "\n" ends a line, nothing else.
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n") as spool:
        for line in _bounded_lines(source, longest, name):
            spool.write(line if line.endswith("\n") else line + "\n")

        def from_spool() -> Iterator[str]:
            spool.seek(0)
            # Not `yield from spool`: closing this generator early (a reader that
            # stops after the header) would close the file for the next reader.
            for line in spool:  # noqa: UP028
                yield line

        yield name, from_spool


def _bounded_lines(stream: IO[str] | Iterable[str], longest: int, name: str) -> Iterator[str]:
    """The lines of ``stream``, each read at most ``longest`` characters (and its
    newline) long: a longer one is an ExportFileError, the rest of it left unread."""
    readline = getattr(stream, "readline", None)
    if not callable(readline):  # any iterable of lines: already read
        lines: Iterator[str] = iter(stream)
    else:
        lines = iter(lambda: readline(longest + 1), "")
    for number, line in enumerate(lines, 1):
        if len(line) > longest and not (len(line) == longest + 1 and line.endswith("\n")):
            msg = (
                f"the line is longer than {longest:,} characters, more than an event "
                f"whose values are within the size limits ({LINE_LIMIT_FACTOR} times "
                "max_event_bytes and max_state_bytes, and a 1 MiB envelope) can take; "
                "if the app runs with larger limits, import with --max-event-bytes and "
                "--max-state-bytes (import_jsonl(max_event_bytes=..., max_state_bytes=...)) "
                "set to them"
            )
            raise ExportFileError(msg, source=name, line=number)
        yield line


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


def _verify(store: Store, expected: dict[UUID, int], done: set[UUID]) -> ImportSummary:
    # On a shared store (Postgres) a live worker may already have run an imported
    # instance whose alarm was due: more events than imported is fine there, and so it
    # is for an instance an interrupted import wrote (a runtime may have run it since).
    live_writers = isinstance(store, CrossProcessLocks)
    for uuid, version in expected.items():
        row = store.index_row(uuid)
        last = store.stored_events(uuid, desc=True, limit=1)
        found = last[0].originator_version if last else 0
        more_is_fine = live_writers or uuid in done
        if more_is_fine and row is not None and found >= version and row.version >= version:
            continue
        if row is None or row.version != version or found != version:
            msg = (
                f"Import verification failed for instance {uuid} in {store.url}: expected "
                f"{version} events, found {found} (index version "
                f"{row.version if row else None})."
            )
            raise StoreError(msg)
    return ImportSummary(
        len(expected),
        sum(expected.values()),
        skipped_instances=len(done),
        skipped_events=sum(expected[uuid] for uuid in done),
    )


def _read_export(lines: Iterable[str], source: str, limits: Limits) -> Iterator[_Group]:
    """The instances of an export file, each complete and rebuilt; raises ExportFileError."""
    mapper = JsonMapper()
    seen: dict[UUID, int] = {}
    group: _Group | None = None
    instances = events = 0
    footer = False
    number = 0

    def bad(message: str, line: int | None = None) -> ExportFileError:
        return ExportFileError(message, source=source, line=line or number)

    for number, text in enumerate(lines, 1):
        if footer:
            raise bad("a line after the footer line")
        try:
            # An int too long to read is kept (LongInt): refused where it is, as the runtime does.
            doc = json.loads(text, parse_constant=_no_constant, parse_int=LongInt.parse)
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
                yield _finish(group, bad, limits)
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
                yield _finish(group, bad, limits)
            if uuid in seen:
                raise bad(
                    f"events of {label} continue here after other instances "
                    f"(it started on line {seen[uuid]}); an instance's events must be together"
                )
            seen[uuid] = number
            group = _Group(uuid=uuid, label=label, line=number)
            instances += 1
        _add_event(group, mapper, version, stored, bad, limits=limits)
        events += 1
    if number == 0:
        raise ExportFileError("the file is empty", source=source)
    if not footer:
        raise ExportFileError(
            f"the file ends at line {number} without its footer line (truncated?)",
            source=source,
        )


def _add_event(
    group: _Group,
    mapper: JsonMapper,
    version: int,
    stored: StoredEvent,
    bad: Any,
    *,
    limits: Limits,
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
    except CorruptEventError as exc:
        raise bad(f"{label} version {version} is not a valid event ({exc.problem})") from exc
    # Checked here, not left to the aggregate's asserts (gone under python -O: a
    # second 'started' then replaced the instance and the file was imported).
    if isinstance(event, Aggregate.Created) != (version == 1):
        raise bad(
            f"{label} version {version} is a {getattr(event, 'NAME', '?')!r} record: "
            "an instance's log begins with one 'started' record (version 1) and has "
            "no other"
        )
    try:
        group.agg = event.mutate(group.agg)
    except Exception as exc:
        raise bad(
            f"{label} version {version} does not apply to the instance "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    # The row's topic must name an event of this instance's own class: the state
    # says which class the instance is, the topic which event class reads it.
    owner = type(group.agg)
    if getattr(owner, type(event).__name__, None) is not type(event):
        raise bad(
            f"{label} version {version} has the topic {stored.topic!r}, an event of "
            f"another kind's instances than this {getattr(owner, 'kind', '?')} instance"
        )
    # The user values the event records whole: a state (started, state_changed) or an
    # input event (event_added). A state patched into being is checked once rebuilt.
    where = f"{label} version {version}"
    for attr, what in (("state", "state"), ("event", "event")):
        if attr in getattr(type(event), "__dataclass_fields__", ()):
            _check_user_value(getattr(event, attr), what, f"{where}: its {what}", limits, bad)
    group.stored.append(stored)


#: By what a user value is: the import_jsonl() option and CLI flag of its limit.
_LIMIT_OPTIONS: Final = {
    "event": ("max_event_bytes", "--max-event-bytes"),
    "state": ("max_state_bytes", "--max-state-bytes"),
}


def _check_user_value(value: Any, what: str, where: str, limits: Limits, bad: Any) -> None:
    """Raise ``bad(...)`` unless ``value`` (a ``state`` or an ``event``) is what the
    runtime would store: nested at most MAX_NESTING deep and, as the runtime measures
    it (its JSON, pydantic's compact UTF-8), within its size limit."""
    if value is None:
        return
    try:
        check_json_value(value, what)
    except ValidationError as exc:
        if "levels deep" in str(exc):
            raise bad(
                f"{where} is nested deeper than stored values may be ({MAX_NESTING} levels)"
            ) from None
        raise bad(f"{where}: {str(exc).removesuffix(' Nothing was written.')}") from None
    try:
        size = len(pydantic_core.to_json(value))
    except Exception as exc:  # what the runtime's JSON writer cannot write either
        raise bad(f"{where} cannot be stored as JSON ({exc})") from None
    name, limit = limits.for_value(what)
    if size > limit:
        option, flag = _LIMIT_OPTIONS[what]
        raise bad(
            f"{where} is {size:,} bytes as JSON, over the limit of {limit:,} bytes "
            f"({name} of open_jobs); if the app runs with a larger {name}, import with "
            f"{flag} (import_jsonl({option}=...)) set to it"
        )


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
        if "levels deep" in str(exc):
            # Said without the path (hundreds of characters) and in the limit users know.
            raise bad(
                f"the event's 'state' is nested deeper than stored values may be ({MAX_NESTING} "
                "levels, within the event's own few)"
            ) from None
        raise bad(str(exc).removesuffix(" Nothing was written.")) from None
    state = json.dumps(doc["state"], ensure_ascii=False, separators=(",", ":")).encode()
    return uuid, version, StoredEvent(uuid, version, doc["topic"], state), label


def _finish(group: _Group, bad: Any, limits: Limits) -> _Group:
    agg = group.agg
    assert agg is not None
    d = agg.d
    if f"{d.kind} job {d.job!r} instance {d.instance_id!r}" != group.label:
        raise bad(f"the events of {group.label} (from line {group.line}) rebuild another instance")
    # The states the runtime will read (a debounce batch's, patched event by event,
    # too), as rebuilt from the whole log.
    for held, value, _ in agg.held_json():
        where = f"{group.label} (its events from this line on): the {held} they rebuild"
        _check_user_value(value, "state", where, limits, lambda m: bad(m, group.line))
    return group
