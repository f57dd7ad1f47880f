"""JSONL export of a store (or part of it): the format the import reads."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, final

from eventsourcing.persistence import StoredEvent

from durable_jobs._domain.ids import identity_problem
from durable_jobs._domain.instance import event_classes
from durable_jobs._errors import ConfigurationError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow
from durable_jobs._tools.args import check_filter, check_status, check_store
from durable_jobs._tools.common import kind_of

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ExportSummary", "export_jsonl"]


#: ``format`` of the export header line.
EXPORT_FORMAT: Final = "durable-jobs-export"
#: ``version`` of the export format this module writes and reads.
EXPORT_VERSION: Final = 1


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
    check_store(store, "export_jsonl()")
    if isinstance(out, str | os.PathLike) or not callable(getattr(out, "write", None)):
        msg = (
            "export_jsonl() writes to an open text stream, not "
            f"{type(out).__name__}: with open(path, 'w', encoding='utf-8') as out: ..."
        )
        raise ConfigurationError(msg)
    given: object = out  # typed as text; a caller may still pass a binary file
    if isinstance(given, io.RawIOBase | io.BufferedIOBase) or "b" in str(getattr(out, "mode", "")):
        msg = "export_jsonl() writes text (JSON lines): open the file with 'w', not 'wb'."
        raise ConfigurationError(msg)
    if kind is not None:
        kind_of(kind)
    # A typo must not make an empty export that looks like a good one.
    check_filter("job", job)
    check_status(status)
    if kind is None and job is None and status is None:
        # An export leaves nothing out: a log the index does not know would be.
        orphans = store.unindexed_logs(5)
        if orphans:
            named = ", ".join(f"{uuid} ({last} events)" for uuid, last in orphans)
            msg = (
                f"Cannot export {store.url}: instance logs without an index row ({named}"
                f"{', ...' if len(orphans) == 5 else ''}) would be left out. `durable-jobs "
                "doctor` names them all; restore the index table from the same backup as the "
                "events. Nothing was written."
            )
            raise StoreError(msg)
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
        problem = identity_problem(row.kind, row.job, row.instance_id, row.instance_uuid)
        if problem is not None:
            # The import of this export would refuse the row: refuse it here, naming it.
            msg = (
                f"Cannot export the index row of instance {row.instance_uuid}: {problem} "
                "(edited outside durable-jobs?). `durable-jobs doctor` names every such row."
            )
            raise StoreError(msg)
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
