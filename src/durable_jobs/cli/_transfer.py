"""Commands that move data between stores: export (reads) and import (writes).

They run :func:`durable_jobs.maintenance.export_jsonl` and
:func:`~durable_jobs.maintenance.import_jsonl`; the JSON shapes they print are
documented there, wrapped as each command's help says.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from rich.text import Text

from durable_jobs._domain.values import DEFAULT_LIMITS
from durable_jobs._errors import ConfigurationError
from durable_jobs._store.urls import StoreURL
from durable_jobs._tools.importer import MAX_IMPORT_LIMIT
from durable_jobs.cli._app import (
    CliState,
    app,
    console,
    emit_json,
    json_option,
    opened_store,
    store_option,
)
from durable_jobs.cli._maintain import KIND
from durable_jobs.maintenance import ImportSummary, check_export, export_jsonl, import_jsonl

if TYPE_CHECKING:
    from durable_jobs._store.base import Store

__all__ = ["export", "import_"]

_T = TypeVar("_T")


EXPORT_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db export > jobs.jsonl
  durable-jobs --store sqlite:///jobs.db export --output jobs.jsonl
  durable-jobs --store sqlite:///jobs.db export --kind task --job order -o orders.jsonl

\b
The output is JSON lines: a header
  {"type": "header", "format": "durable-jobs-export", "version": 1, ...,
   "plaintext": true, "encrypted_store": BOOL},
one line per event, instance by instance, versions in order:
  {"type": "event", "instance_uuid", "kind", "job", "instance_id", "version",
   "timestamp", "topic", "name", "state": {...the stored event...}},
and a footer {"type": "footer", "instances": N, "events": N}.
Events are written decrypted (an encrypted store is read with the key(s) in
$DURABLE_JOBS_ENCRYPTION_KEY, and encrypted_store is then true): protect the
file. Without a key, the export stops at the first encrypted row.
With --output, --json prints {"instances": N, "events": N, "output": FILE}.
"""


@app.command(epilog=EXPORT_EPILOG)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE (replaced only once the export is complete; a device or FIFO is "
    "written in place) instead of stdout.",
)
@click.option("--kind", type=KIND, help="Only instances of this kind.")
@click.option("--job", help="Only instances of this job.")
@click.option("--status", help="Only instances with this status (e.g. terminated).")
@store_option
@json_option
@click.pass_obj
def export(
    state: CliState,
    *,
    output: Path | None,
    kind: str | None,
    job: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """Export the store (or the instances matching the filters) as JSON lines.

    The file can be imported into another store (`durable-jobs import`), e.g.
    from SQLite to Postgres. Reads only.
    """
    target = None if output is None else _export_target(output)
    with opened_store(state, must_exist=True) as store:
        if store.encrypted:
            click.echo(
                "warning: the store is encrypted; this export holds its data in plaintext "
                '(its header says "plaintext": true): protect the file.',
                err=True,
            )
        if output is None or target is None:
            summary = export_jsonl(store, sys.stdout, kind=kind, job=job, status=status)
            sys.stdout.flush()
            click.echo(
                f"Exported {summary.instances} instance(s), {summary.events} event(s).", err=True
            )
            return
        path, mode = target
        _refuse_the_store_itself(store, output, path)
        if mode is not None and not stat.S_ISREG(mode):
            # A device, FIFO or socket is written in place, never replaced.
            f = _open_output(output, lambda: open(path, "w", encoding="utf-8"))  # noqa: SIM115
            with f:
                summary = export_jsonl(store, f, kind=kind, job=job, status=status)
        else:
            fd, tmp = _open_output(
                output,
                lambda: tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent),
            )
            try:
                if mode is not None:
                    os.fchmod(fd, stat.S_IMODE(mode))  # an existing file keeps its mode
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    summary = export_jsonl(store, f, kind=kind, job=job, status=status)
                Path(tmp).replace(path)  # a symlink's target is replaced, the link kept
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
                raise
    if as_json:
        emit_json(
            {"instances": summary.instances, "events": summary.events, "output": str(output)}
        )
    else:
        console().print(
            Text(
                f"Exported {summary.instances} instance(s), {summary.events} event(s) to {output}."
            )
        )


def _export_target(output: Path) -> tuple[Path, int | None]:
    """The file ``--output`` names (a symlink's target) and its mode if it exists."""
    path = Path(os.path.realpath(output))
    try:
        return path, path.stat().st_mode
    except FileNotFoundError:
        pass
    except OSError as exc:
        msg = f"Cannot write --output {output}: {exc.strerror or exc}."
        raise ConfigurationError(msg) from None
    if not path.parent.is_dir():
        why = "is not a directory" if path.parent.exists() else "does not exist"
        msg = f"Cannot write --output {output}: {path.parent} {why}."
        raise ConfigurationError(msg)
    return path, None


#: The files SQLite keeps beside a database (``PATH`` + suffix), and the runtime's lock.
_STORE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".runtime-lock")


def _refuse_the_store_itself(store: Store, output: Path, path: Path) -> None:
    """:class:`ConfigurationError` if ``--output`` (``path``, its real path) is the
    SQLite store's own file or one SQLite keeps beside it: the export would replace
    the store it reads ("Reads only")."""
    try:
        database = getattr(store, "path", None)
    except ConfigurationError:  # an SQLite database in memory
        return
    if not isinstance(database, str):
        return  # not a file store
    real = os.path.realpath(database)
    for suffix in _STORE_FILE_SUFFIXES:
        same = str(path) == real + suffix
        if not same:
            with contextlib.suppress(OSError):
                same = os.path.samefile(path, real + suffix)  # a hard link, say
        if same:
            msg = (
                f"Cannot write --output {output}: it is the store's own file "
                f"({real + suffix}); an export reads the store, it never replaces it. "
                "Nothing was written."
            )
            raise ConfigurationError(msg)


def _open_output(output: Path, opener: Callable[[], _T]) -> _T:
    """``opener()``, its OSError as a one-line error naming ``--output``."""
    try:
        return opener()
    except OSError as exc:
        msg = f"Cannot write --output {output}: {exc.strerror or exc}."
        raise ConfigurationError(msg) from None


IMPORT_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db export -o jobs.jsonl
  durable-jobs --store postgresql://app@db/jobs import jobs.jsonl
  durable-jobs --store sqlite:///copy.db import - < jobs.jsonl

\b
JSON (--json): {"instances": N, "events": N, "skipped_instances": N,
  "skipped_events": N, "verified": true, "store": URL}: the file's instances and
  events, all in the store now; with --resume, the skipped ones were there
  already (the interrupted import wrote them) and were not written again.
"""


@app.command("import", epilog=IMPORT_EPILOG)
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str)
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an import of this FILE that was interrupted: skip the instances it "
    "wrote already (a store log that begins with the file's rows).",
)
@click.option(
    "--allow-plaintext",
    is_flag=True,
    help="Import an export of an encrypted store into a store opened without a key, "
    "storing its data in clear (refused without this flag).",
)
@click.option(
    "--max-event-bytes",
    type=click.IntRange(1, MAX_IMPORT_LIMIT),
    default=DEFAULT_LIMITS.max_event_bytes,
    show_default=True,
    help="The largest event (as UTF-8 JSON) the file may hold: the app's max_event_bytes "
    "of open_jobs, when it runs with a larger one.",
)
@click.option(
    "--max-state-bytes",
    type=click.IntRange(1, MAX_IMPORT_LIMIT),
    default=DEFAULT_LIMITS.max_state_bytes,
    show_default=True,
    help="The largest state (as UTF-8 JSON) the file may hold: the app's max_state_bytes "
    "of open_jobs, when it runs with a larger one.",
)
@store_option
@json_option
@click.pass_obj
def import_(
    state: CliState,
    *,
    file: str,
    resume: bool,
    allow_plaintext: bool,
    max_event_bytes: int,
    max_state_bytes: int,
    as_json: bool,
) -> None:
    """Import an export FILE ('-': stdin) into the store. Writes.

    The whole file is checked first: a malformed line (reported with its
    number) or an instance the store already has stops the import before
    anything is written. Then whole instances are written, a batch per
    transaction: an import that is interrupted (Ctrl-C, a lost connection)
    leaves the batches written so far, and the same command with --resume
    finishes it, saying how many instances it skipped (on an import that had
    finished: "Nothing new to import", and nothing is written). Versions and
    timestamps are kept, index rows rebuilt, and the result is counted again in
    the store. The store is created if missing.
    Refused while a jobs runtime serves an SQLite store (it would not run the
    imported alarms): stop it first.

    Values are held to what the runtime stores: a state or event over the
    size limits (1 MiB each, or --max-state-bytes / --max-event-bytes) or
    nested deeper than 100 is a malformed line.
    """
    # A file is checked before the store is opened, so a malformed one leaves
    # nothing behind (not even a new, empty database or schema). Standard input
    # is read once the store is open; a new SQLite file is removed if it fails.
    if file != "-":
        check_export(file, max_event_bytes=max_event_bytes, max_state_bytes=max_state_bytes)
    new_file = _new_sqlite_file(state)
    try:
        with opened_store(state, must_exist=False) as store:
            summary = import_jsonl(
                store,
                sys.stdin if file == "-" else file,
                resume=resume,
                max_event_bytes=max_event_bytes,
                max_state_bytes=max_state_bytes,
                allow_plaintext=allow_plaintext,
            )
            url = str(store.url)
    except BaseException:
        if new_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                # ValueError: a path no file can have (a NUL byte): nothing to remove.
                with contextlib.suppress(OSError, ValueError):
                    Path(new_file + suffix).unlink()
        raise
    if as_json:
        emit_json(
            {
                "instances": summary.instances,
                "events": summary.events,
                "skipped_instances": summary.skipped_instances,
                "skipped_events": summary.skipped_events,
                "verified": True,
                "store": url,
            }
        )
    else:
        console().print(Text(_imported(summary, url)))


def _imported(summary: ImportSummary, url: str) -> str:
    """What an import did, in a line: a resumed one says what it skipped."""
    if not summary.skipped_instances:
        return (
            f"Imported {summary.instances} instance(s), {summary.events} event(s) into "
            f"{url}; verified: the store has them all."
        )
    if not summary.written_instances:
        return (
            f"Nothing new to import: {url} has all {summary.instances} instance(s), "
            f"{summary.events} event(s) of the file already (an earlier import of it wrote "
            "them); nothing was written. Verified: the store has them all."
        )
    return (
        f"Imported {summary.written_instances} instance(s), {summary.written_events} "
        f"event(s) into {url}, finishing an earlier import (the {summary.skipped_instances} "
        f"instance(s), {summary.skipped_events} event(s) it wrote were skipped); verified: "
        f"the store has all {summary.instances} instance(s), {summary.events} event(s)."
    )


def _new_sqlite_file(state: CliState) -> str | None:
    """The path of the SQLite store if it does not exist yet (the import creates it)."""
    if not state.store_url:
        return None
    url = StoreURL.parse(state.store_url)
    path = url.path[1:] if url.scheme == "sqlite" and url.path.startswith("/") else ""
    return path if path and not url.host and not os.path.lexists(path) else None
