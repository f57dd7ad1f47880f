"""SQL statements a handler records with ``ctx.execute``, to run in its run's commit.

Recording is pure: nothing runs here. The store runs a run's statements, in
order, inside the transaction that stores the run's events and index row, so
the handler's own writes commit exactly when the run does. What can be
checked without a database is checked here, when the handler calls
``ctx.execute``: the types, that the statement does not try to end or split
the commit's transaction, and that it does not change the connection's session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from durable_jobs._errors import ConfigurationError, ValidationError

__all__ = ["Statement", "Writes"]

#: Statements that would end, split or leave the commit's transaction.
_TRANSACTION_CONTROL = re.compile(
    r"(BEGIN|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|START\s+TRANSACTION"
    r"|PREPARE\s+TRANSACTION|SET\s+TRANSACTION|SET\s+SESSION\s+CHARACTERISTICS"
    r"|VACUUM|ATTACH|DETACH)\b",
    re.IGNORECASE,
)
#: Statements that change the connection's session, which would outlive the run on the
#: store's own (pooled) connection: SQLite's PRAGMA, Postgres' SET (but SET LOCAL and SET
#: CONSTRAINTS, which end with the transaction), RESET, DISCARD, LOAD, LISTEN, UNLISTEN.
_SESSION = re.compile(
    r"(PRAGMA|SET(?!\s+(LOCAL|CONSTRAINTS)\b)|RESET|DISCARD|LOAD|LISTEN|UNLISTEN)\b",
    re.IGNORECASE,
)
#: Statements that leave an object in the connection's session, which would outlive the
#: run on the store's pooled connection and clash with the next run that makes it again,
#: or break the store's own statements: Postgres' PREPARE and DEALLOCATE (which can drop
#: the prepared statements the store itself uses), and a temporary table, view or
#: sequence (Postgres and SQLite) unless it is dropped at commit (``ON COMMIT DROP``).
_SESSION_OBJECT = re.compile(
    r"(PREPARE|DEALLOCATE"
    r"|CREATE\s+(OR\s+REPLACE\s+)?((GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY)"
    r"(\s+(UNLOGGED|RECURSIVE))?\s+(TABLE|VIEW|SEQUENCE|TRIGGER))\b",
    re.IGNORECASE,
)
#: The same objects made in the temporary schema by name (``CREATE TABLE pg_temp.x``,
#: SQLite's ``CREATE VIEW temp.v``, ``CREATE TRIGGER temp.t``), and Postgres' ``SELECT ...
#: INTO TEMP x`` (anywhere in the text: it follows the select list).
_TEMP_SCHEMA_OBJECT = re.compile(
    r"CREATE\s+(OR\s+REPLACE\s+)?((UNLOGGED|RECURSIVE|MATERIALIZED)\s+)?"
    r"(TABLE|VIEW|SEQUENCE|TRIGGER|FUNCTION|PROCEDURE|TYPE|DOMAIN|AGGREGATE)"
    r"\s+(IF\s+NOT\s+EXISTS\s+)?([\"\[`']?(pg_temp(_\d+)?|temp)[\"\]`']?\s*\.)",
    re.IGNORECASE,
)
#: ``SELECT ... INTO pg_temp.x``: a table made in the temporary schema by name.
_INTO_TEMP_SCHEMA = re.compile(r"\bINTO\s+\"?pg_temp(_\d+)?\"?\s*\.", re.IGNORECASE)
#: Comments, left out of a statement before its first words are matched.
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
#: Double-quoted identifiers (``"on commit drop"`` is a column name, not the clause).
_QUOTED_IDENTIFIERS = re.compile(r'"(?:[^"]|"")*"')
#: Postgres' Unicode-escaped identifiers: ``U&"set\005fconfig"`` is ``set_config``.
_UNICODE_IDENTIFIER = re.compile(r'\b[Uu]&"((?:[^"]|"")*)"')
_UNICODE_ESCAPE = re.compile(r"\\(\\|\+[0-9A-Fa-f]{6}|[0-9A-Fa-f]{4})")
#: (Looked for in the statement's code, string literals and comments left out; an
#: ``INSERT INTO temp ...``, a table named temp, is not one.)
_INTO_TEMP = re.compile(
    r"\bINTO\s+((GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY)\s+(UNLOGGED\s+)?(TABLE\s+)?"
    r"(?!(VALUES|SELECT|DEFAULT|OVERRIDING|WITH)\b)[A-Za-z_\"]",
    re.IGNORECASE,
)
_SELECT_OR_WITH = re.compile(r"(SELECT|WITH)\b", re.IGNORECASE)
#: Postgres' ``UPDATE pg_settings``: ``SET`` by another name (anywhere: after a CTE too).
_PG_SETTINGS = re.compile(
    r"\bUPDATE\s+(ONLY\s+)?(\"?pg_catalog\"?\s*\.\s*)?\"?pg_settings\b", re.IGNORECASE
)
#: What :func:`_code` leaves out: string literals ('...', with '' inside), dollar-quoted
#: strings ($tag$...$tag$), quoted identifiers are kept; -- and /* */ comments.
_NOT_CODE = re.compile(
    # E'...' first: Postgres' escape strings, where \' is a quote inside the string.
    r"(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\$([A-Za-z_]\w*|)\$.*?\$\1\$"
    r"|--[^\n]*|/\*.*?\*/",
    re.DOTALL,
)
#: Statements whose effect lasts until the end of the transaction and reaches the
#: statements after them: Postgres' SET LOCAL and SET CONSTRAINTS (at the start), and a
#: ``set_config(...)`` call anywhere in the text (its third argument may make it local).
#: A run that records one commits in a transaction of its own, not in a group with other
#: runs (their statements would run with its settings).
_TRANSACTION_SETTING = re.compile(r"SET\s+(LOCAL|CONSTRAINTS)\b", re.IGNORECASE)
_SET_CONFIG = re.compile(r"(\b|\")set_config\"?\s*\(", re.IGNORECASE)
#: A cursor kept open after the commit (Postgres' ``DECLARE ... WITH HOLD``).
_HELD_CURSOR = re.compile(r"DECLARE\b.*\bWITH\s+HOLD\b", re.IGNORECASE | re.DOTALL)
_ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.IGNORECASE)
#: Leading comments, whitespace, empty statements (``;``) and byte-order marks, skipped
#: before looking at the first keyword: SQLite skips them all before a statement.
#: (A statement that still gets past this check is refused by the store itself: the
#: SQLite store denies transaction control while it prepares the runs' statements.)
_LEADING = re.compile(r"([\s;\ufeff]+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)
#: Longest statement text accepted (characters).
MAX_SQL = 100_000


@dataclass(frozen=True, slots=True)
class Statement:
    """One recorded ``ctx.execute(sql, params)``."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any] | None = None
    #: Whether the statement's effect reaches the statements after it in the transaction
    #: (a setting, a temporary table): its run then commits in a transaction of its own.
    alone: bool = False


class Writes:
    """The statements one handler call recorded, in order.

    ``supported`` says whether the store can run them (SQLite and Postgres
    can; the memory store cannot, so ``add`` raises ConfigurationError).
    """

    __slots__ = ("statements", "supported")

    def __init__(self, *, supported: bool) -> None:
        self.supported = supported
        self.statements: list[Statement] = []

    def add(self, sql: object, params: object = None) -> None:
        """Record one statement after checking it (ValidationError: nothing recorded)."""
        if not self.supported:
            msg = (
                "ctx.execute() needs a SQLite or Postgres store: it runs the statement in "
                "the database transaction that commits the run, and the memory store has "
                "no database. Open the jobs with e.g. store='sqlite:///app.db'."
            )
            raise ConfigurationError(msg)
        self.statements.append(check_statement(sql, params))


def check_statement(sql: object, params: object = None) -> Statement:
    """``(sql, params)`` as a :class:`Statement`, or ValidationError saying what is wrong."""
    if not isinstance(sql, str):
        msg = f"ctx.execute() takes the SQL as a str, not {type(sql).__name__}: {sql!r:.80}"
        raise ValidationError(msg)
    if not sql.strip():
        raise ValidationError("ctx.execute() got an empty SQL statement.")
    _check_encodable(sql, "its SQL")
    if len(sql) > MAX_SQL:
        msg = f"ctx.execute() got {len(sql)} characters of SQL; at most {MAX_SQL} are accepted."
        raise ValidationError(msg)
    start = _LEADING.match(sql)
    head = sql[start.end() if start else 0 :]
    if _TRANSACTION_CONTROL.match(head):
        msg = (
            f"ctx.execute() refuses transaction control ({head.split(None, 1)[0]!r}): the "
            "statement runs inside the transaction that commits the run, which the library "
            "opens and commits itself. Record only the statements that change your data."
        )
        raise ValidationError(msg)
    code = _code(head)
    pg_settings = _PG_SETTINGS.search(code)
    if _SESSION.match(head) or pg_settings:
        what = "UPDATE pg_settings" if pg_settings else _first_words(head)
        msg = (
            f"ctx.execute() refuses session settings ({what!r}): the "
            "statement runs on the store's own connection, which later commits of every "
            "job share, and a setting would outlive the run. Use SET LOCAL (Postgres), "
            "which ends with the run's transaction, or set it in the database's own "
            "configuration."
        )
        raise ValidationError(msg)
    kept: str | None = None
    alone = bool(_TRANSACTION_SETTING.match(head) or _SET_CONFIG.search(code))
    if _HELD_CURSOR.match(head):
        kept = "DECLARE ... WITH HOLD"
    elif _SELECT_OR_WITH.match(head) and (_into_temp(code) or _INTO_TEMP_SCHEMA.search(code)):
        kept = "SELECT ... INTO TEMP"
    elif (
        made := _SESSION_OBJECT.match(head)
        or _TEMP_SCHEMA_OBJECT.match(_COMMENTS.sub(" ", head))
        or _TEMP_SCHEMA_OBJECT.match(code)
    ) is not None:
        if not _dropped_at_commit(made, _QUOTED_IDENTIFIERS.sub(" ", code)):
            kept = " ".join(made.group().split())
        alone = True  # the next run in the transaction could not make it again
    if kept is not None:
        msg = (
            f"ctx.execute() refuses statements that leave something in the session ({kept!r}): "
            "the statement runs on the store's own connection, which later commits of every "
            "job share, so what it makes would outlive the run (and DEALLOCATE would drop the "
            "store's own prepared statements). Use a temporary table with ON COMMIT DROP "
            "(Postgres), or a regular table."
        )
        raise ValidationError(msg)
    if params is None:
        return Statement(sql, None, alone)
    if isinstance(params, Mapping):
        if not all(isinstance(k, str) for k in params):
            msg = f"ctx.execute() named parameters need str keys, got {list(params)!r:.80}"
            raise ValidationError(msg)
        for key, value in params.items():
            _check_param(value, f"parameter {key!r}")
        return Statement(sql, dict(params), alone)
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
        msg = (
            "ctx.execute() takes params as a sequence (tuple or list, for ? or %s "
            "placeholders) or a mapping (for :name or %(name)s), not "
            f"{type(params).__name__}: {params!r:.80}"
        )
        raise ValidationError(msg)
    values = tuple(params)
    for index, value in enumerate(values):
        _check_param(value, f"parameter {index}")
    return Statement(sql, values, alone)


def _check_encodable(text: str, what: str) -> None:
    """ValidationError if ``text`` holds a lone surrogate (a file name from ``os.listdir``,
    bytes decoded with ``surrogateescape``): no driver can send it, and it failed the
    commit as a store error instead of the run."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        msg = (
            f"ctx.execute() got {what} with a lone surrogate ({text!r:.80}), which cannot "
            "be sent to the database: decode it first (os.fsencode(name).decode('utf-8', "
            "'replace'), say)."
        )
        raise ValidationError(msg) from None


def _check_param(value: object, what: str) -> None:
    """:func:`_check_encodable` of a text parameter, or of the texts of a list of them."""
    if isinstance(value, str):
        _check_encodable(value, what)
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, str):
                _check_encodable(item, what)


def _code(sql: str) -> str:
    """``sql`` without its string literals and comments (each left as one space), so that
    a word inside a string (``'copied INTO temp storage'``) is not taken for code, and
    with Postgres' Unicode-escaped identifiers (``U&"set\\005fconfig"``) spelled out."""
    return _UNICODE_IDENTIFIER.sub(_spelled_out, _NOT_CODE.sub(" ", sql))


def _spelled_out(found: re.Match[str]) -> str:
    def one(escape: re.Match[str]) -> str:
        code = escape.group(1)
        return "\\" if code == "\\" else chr(int(code.lstrip("+"), 16))

    try:
        return '"' + _UNICODE_ESCAPE.sub(one, found.group(1)) + '"'
    except (ValueError, OverflowError):  # not a code point: left as written
        return found.group()


def _into_temp(code: str) -> bool:
    """Whether ``code`` holds a ``SELECT ... INTO TEMP name`` (not ``INSERT INTO temp``)."""
    for found in _INTO_TEMP.finditer(code):
        before = code[: found.start()].rstrip().upper()
        if not before.endswith("INSERT"):
            return True
    return False


def _first_words(head: str) -> str:
    """The start of a statement, for a message (the statement itself may be long)."""
    return " ".join(head.split()[:2])[:60]


def _dropped_at_commit(made: re.Match[str], code: str) -> bool:
    """Whether the session object ``made`` is a temporary one that ends with the
    transaction (``ON COMMIT DROP``, Postgres, in ``code``: the statement without its
    literals, comments and quoted identifiers)."""
    return "TEMP" in made.group().upper() and bool(_ON_COMMIT_DROP.search(code))
