"""The ``durable-jobs`` command group and what every command shares.

Commands live in ``_read.py`` (list, status, history, state, diff, alarms,
stats), ``_maintain.py`` (replay, export, import, tail, purge) and
``_admin.py`` (terminate, trigger); each module
registers its commands on :data:`app` with ``@app.command()``.

Shared rules:

- the store comes from ``--store URL`` or ``DURABLE_JOBS_STORE`` (a group
  option, so it goes before the command name, or in the environment);
- every command takes ``--store`` after its name too (:func:`store_option`)
  and ``--json`` (:func:`json_option`) and then prints exactly
  one JSON document (or JSON lines, for ``export``/``tail``) to stdout;
- human output goes through :func:`console` (rich: colour on a terminal, plain
  text when piped);
- an encrypted store is read (and written) with the key(s) in
  ``DURABLE_JOBS_ENCRYPTION_KEY`` (comma-separated for several; the first
  encrypts), never from a command-line option, so keys stay out of shell
  history and process lists;
- a :class:`~durable_jobs.DurableJobsError` becomes one line on stderr,
  ``error: ...``, and exit code 1 (with ``--json``: one JSON object, see
  :func:`json_option`); a store URL is always shown redacted.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from durable_jobs._errors import ConfigurationError, DurableJobsError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.crypto import ENCRYPTION_KEY_ENV, keys_from_env
from durable_jobs._store.registry import open_store
from durable_jobs._store.urls import StoreURL
from durable_jobs._tools.text import escape_controls, printable
from durable_jobs.cli._about import version_option

__all__ = [
    "STORE_ENV",
    "TABLE_PAGE",
    "CliState",
    "Spool",
    "Unreadable",
    "app",
    "console",
    "emit_json",
    "emit_json_items",
    "escape_controls",
    "fail",
    "json_option",
    "opened_store",
    "print_wide",
    "print_wide_rows",
    "printable",
    "run",
    "set_exit_code",
    "store_option",
]

STORE_ENV = "DURABLE_JOBS_STORE"

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")

EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db list
  durable-jobs --store sqlite:///jobs.db history continuous sync acct-42
  DURABLE_JOBS_STORE=postgresql://app@db/jobs durable-jobs alarms --overdue
  durable-jobs --store sqlite:///jobs.db status task order o-7 --json

\b
An encrypted store is read with the key(s) in $DURABLE_JOBS_ENCRYPTION_KEY,
comma-separated after a key rotation (the first encrypts what the command
writes; any of them decrypts): DURABLE_JOBS_ENCRYPTION_KEY=NEW,OLD
"""


@dataclass
class CliState:
    """What the group passes to its commands (``click.pass_obj``)."""

    store_url: str | None


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option(
    "--store",
    "store_url",
    envvar=STORE_ENV,
    metavar="URL",
    help=f"Store URL (sqlite:///path.db, postgresql://...); default: ${STORE_ENV}.",
)
@version_option
@click.pass_context
def app(ctx: click.Context, store_url: str | None) -> None:
    """Inspect, replay and maintain the jobs in a durable-jobs store.

    Every command reads the store without running any job, and writes nothing
    unless its help says so (import, purge, terminate, trigger).
    """
    ctx.obj = CliState(store_url=store_url)


#: Whether the running command was given ``--json`` (its errors are JSON too).
_JSON_ERRORS: list[bool] = [False]


def json_option(fn: _F) -> _F:
    """``--json``: print one machine-readable document instead of human output.

    An error is then one JSON object on stderr, ``{"error": message, "type":
    name, "exit_code": code}``, with the same exit code as without ``--json``.
    """
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (a documented, stable shape) instead of human output.",
    )(fn)


def _store_after_command(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(CliState).store_url = value


def store_option(fn: _F) -> _F:
    """``--store`` accepted after the command name too (it overrides the group's)."""
    return click.option(
        "--store",
        metavar="URL",
        expose_value=False,
        is_eager=True,
        callback=_store_after_command,
        help=f"Store URL; the same as the option before the command (default: ${STORE_ENV}).",
    )(fn)


class _SafeConsole(Console):
    """A rich console that never writes a control character it did not make itself.

    Commands pass data through :func:`printable` (before layout, so a newline
    in an id cannot split a row); this is the safety net for anything missed:
    control characters in text segments are escaped, except the newlines rich
    lays out itself (backslashes are left alone: the escapes of :func:`printable`
    must not be escaped again).
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        safe = (
            seg
            if seg.control or seg.text == "\n"
            else Segment(_escape_inline(seg.text), seg.style)
            for seg in buffer
        )
        return super()._render_buffer(safe)


def _escape_inline(text: str) -> str:
    """:func:`escape_controls` for a rendered segment, keeping the line breaks rich made."""
    if "\n" not in text:
        return escape_controls(text)
    return "\n".join(escape_controls(part) for part in text.split("\n"))


_console: Console | None = None


def console() -> Console:
    """The rich console on stdout: colour on a terminal, plain text when piped."""
    global _console  # noqa: PLW0603 - one console per process, made on first use
    if _console is None or _console.file is not sys.stdout:
        _console = _SafeConsole(file=sys.stdout, highlight=False, soft_wrap=True)
    return _console


#: The widest a table gets when output is piped (tables take only the width they need).
_PIPED_WIDTH = 400


def print_wide(renderable: RenderableType) -> None:
    """Print a table or grid: fitted to a terminal; at its natural width when piped.

    Piped output (files, ``less``, ``grep``) is not wrapped at rich's default
    80 columns unless ``$COLUMNS`` asks for a width. Lines never end in the
    spaces that pad a table's cells.
    """
    out = console()
    width = out.width if out.is_terminal or os.environ.get("COLUMNS") else _PIPED_WIDTH
    options = out.options.update(width=width)
    for line in out.render_lines(renderable, options, pad=False, new_lines=False):
        text = Text()
        for seg in line:
            if not seg.control:
                text.append(seg.text, seg.style)
        text.rstrip()
        out.print(text)


#: Rows a streamed table lays out and prints at a time.
TABLE_PAGE = 500


def print_wide_rows(
    make_table: Callable[[], Table],
    rows: Callable[[], Iterable[Sequence[RenderableType]]],
    *,
    page: int | None = None,
) -> None:
    """:func:`print_wide` of the table ``make_table()`` with every row of ``rows()``:
    the same lines, holding ``page`` rows (:data:`TABLE_PAGE`) at a time.

    ``rows`` is called twice: once to measure its cells (keeping, per column, the
    widest cell and the one with the longest word: they alone set the column's
    width), once to print them a page at a time, laid out at the widths the whole
    table would have.
    """
    page = page or TABLE_PAGE
    out = console()
    width = out.width if out.is_terminal or os.environ.get("COLUMNS") else _PIPED_WIDTH
    options = out.options.update(width=width)
    proxy = make_table()
    count = len(proxy.columns)
    widest: list[tuple[int, RenderableType]] = [(-1, "")] * count
    wordiest: list[tuple[int, RenderableType]] = [(-1, "")] * count
    any_row = False
    for row in rows():
        any_row = True
        for i, cell in enumerate(row):
            low, high = Measurement.get(out, options, cell)
            if high > widest[i][0]:
                widest[i] = (high, cell)
            if low > wordiest[i][0]:
                wordiest[i] = (low, cell)
    if not any_row:
        print_wide(proxy)
        return
    proxy.add_row(*(cell for _, cell in widest))
    proxy.add_row(*(cell for _, cell in wordiest))
    # What Table.__rich_console__ lays the whole table out with.
    table_options = options.update_width(options.max_width - proxy._extra_width)
    widths = proxy._calculate_column_widths(out, table_options)
    first = True
    chunk: list[Sequence[RenderableType]] = []

    def flush() -> None:
        nonlocal first
        table = make_table()
        table.show_header = table.show_header and first
        for i, column in enumerate(table.columns):
            column.width = widths[i] - table._get_padding_width(i)
        for cells in chunk:
            table.add_row(*cells)
        print_wide(table)
        first = False
        chunk.clear()

    for row in rows():
        chunk.append(row)
        if len(chunk) >= page:
            flush()
    if chunk:
        flush()


class Spool(Generic[_T]):
    """Items written to a temporary file as they come and read back, in order, as
    often as needed: what a command prints after counting it holds one at a time."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.count = 0

    def add(self, item: _T) -> None:
        pickle.dump(item, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __iter__(self) -> Iterator[_T]:
        self._file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self._file)  # noqa: S301 - our own temporary file

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emit_json(document: Any) -> None:
    """Print ``document`` as JSON (datetimes and UUIDs as strings) and a newline."""
    click.echo(json.dumps(document, default=str, ensure_ascii=False, sort_keys=False))


def emit_json_items(document: dict[str, Any], key: str) -> None:
    """:func:`emit_json` of ``document``, whose ``key`` is an iterable written one item
    at a time (the same text as the whole document dumped at once)."""
    keys = list(document)
    at = keys.index(key)
    head = {k: document[k] for k in keys[:at]}
    rest = {k: document[k] for k in keys[at + 1 :]}
    opening = json.dumps({**head, key: []}, default=str, ensure_ascii=False)
    click.echo(opening[:-2], nl=False)  # up to the list's "["
    for i, item in enumerate(document[key]):
        text = json.dumps(item, default=str, ensure_ascii=False)
        click.echo(f", {text}" if i else text, nl=False)
    closing = json.dumps(rest, default=str, ensure_ascii=False)
    click.echo(f"], {closing[1:]}" if rest else "]}")


def fail(message: str) -> NoReturn:
    """Stop with ``error: message`` on stderr and exit code 1."""
    raise DurableJobsError(message)


@contextmanager
def opened_store(state: CliState, *, must_exist: bool = True) -> Iterator[Store]:
    """The store named by ``--store``/``$DURABLE_JOBS_STORE``, closed afterwards.

    With ``must_exist`` (every read-only command), the store is opened
    read-only: an SQLite file or a Postgres schema that does not exist is an
    error, never created.
    """
    url = state.store_url
    if not url:
        msg = f"No store given: pass --store URL or set {STORE_ENV}."
        raise ConfigurationError(msg)
    if StoreURL.parse(url).scheme == "memory":
        msg = (
            "memory:// lives in one process's memory: a command would see it empty (and "
            "what it wrote would be lost). Give an sqlite:/// or postgresql:// store."
        )
        raise ConfigurationError(msg)
    store = open_store(
        url,
        create=not must_exist,
        encryption_key=keys_from_env(os.environ.get(ENCRYPTION_KEY_ENV)),
    )
    try:
        yield store
    finally:
        store.close()


def run(args: list[str] | None = None) -> int:
    """Run the command line; return the exit code (errors printed as one line)."""
    argv = sys.argv[1:] if args is None else list(args)
    _JSON_ERRORS[0] = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
    try:
        app.main(args=argv, prog_name="durable-jobs", standalone_mode=False)
    except click.exceptions.Abort:
        return _error("Aborted.", "Aborted", 1, plain="Aborted.")
    except click.ClickException as exc:
        if not _JSON_ERRORS[0]:
            # Usage errors quote the arguments: escape control characters in them too.
            shown = io.StringIO()
            exc.show(file=shown)
            click.echo(_escape_inline(shown.getvalue()), err=True, nl=False)
            return exc.exit_code
        return _error(exc.format_message(), type(exc).__name__, exc.exit_code)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except DurableJobsError as exc:
        return _error(str(exc), type(exc).__name__, 1)
    except KeyboardInterrupt:
        return 130
    return _exit_code()


def _error(message: str, kind: str, code: int, *, plain: str | None = None) -> int:
    """Report an error on stderr: ``error: ...``, or a JSON object with ``--json``."""
    text = _one_line(message)
    if _JSON_ERRORS[0]:
        document = {"error": text, "type": kind, "exit_code": code}
        click.echo(json.dumps(document, ensure_ascii=False), err=True)
    else:
        click.echo(plain if plain is not None else f"error: {escape_controls(text)}", err=True)
    return code


class Unreadable:
    """Collects the index rows a read-only command could not read and left out
    (pass ``unreadable.append`` to the read); :meth:`report` prints each on stderr,
    as an error line, and makes the command exit with code 1."""

    def __init__(self) -> None:
        self.errors: list[StoreError] = []

    def append(self, error: StoreError) -> None:
        self.errors.append(error)

    def report(self) -> None:
        for error in self.errors:
            _error(str(error), type(error).__name__, 1)
        if self.errors:
            set_exit_code(1)


def _one_line(text: str) -> str:
    return " ".join(text.split())


_EXIT: list[int] = [0]


def set_exit_code(code: int) -> None:
    """Make the process exit with ``code`` once the command returns normally."""
    _EXIT[0] = max(_EXIT[0], code)


def _exit_code() -> int:
    code, _EXIT[0] = _EXIT[0], 0
    return code
