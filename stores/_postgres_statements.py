"""The handler statements (``ctx.execute``) of a Postgres commit, run in its transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.generators import send

from durable_jobs.adapters import StatementFailed
from durable_jobs.stores._postgres_conn import _SERVER_GOING_AWAY

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg.sql import Composed

__all__ = ["STATEMENT_SHARE", "out_of_reach", "run_statements", "statement_limit_ms", "synced"]


def run_statements(
    curs: Cursor[DictRow],
    runs: Sequence[tuple[UUID, Sequence[Any]]],
    search_path: Composed,
    *,
    pipeline: psycopg.Pipeline | None = None,
) -> None:
    """Run each run's ``ctx.execute`` statements, unqualified names resolving in
    the store's schema first, then ``public`` (``search_path`` sets that); a failing one raises
    :class:`StatementFailed` (the transaction then rolls back).

    All of them go in one round trip, synced before and after, and an error
    shows up there. When the transaction holds one run's statements, the error
    names its instance and the failing statement's index: with several
    statements, each has its own cursor, and the failing one is the first left
    without a result (those after it were aborted). With several runs it names
    neither (the group commit then writes each run alone, which finds them), so
    that a group's statements share one cursor.

    ``pipeline`` is the commit's open pipeline (see ``insert_in_one_round_trip``).
    It is synced itself, not through a nested pipeline block: psycopg ends a
    nested block with a Flush after its Sync, and a Postgres server that reads a
    Flush stops the ``idle_in_transaction_session_timeout`` that the Sync
    started. A process frozen right after its statements (SIGSTOP, a paused VM)
    then kept its transaction, with the row locks of its index rows, open for as
    long as it stayed frozen, and the other workers' commits waited for it. Synced
    directly, the server ends such a transaction after the lease (the commit sets
    that timeout). Without a pipeline given (a recorder that inserts events
    eventsourcing's way), a nested block is used.
    """
    if not runs:
        return
    conn = curs.connection
    one_run = len(runs) == 1
    # A cursor each costs about 10 µs: only where it tells which statement failed.
    apart = one_run and len(runs[0][1]) > 1
    setup = conn.cursor() if apart else curs
    sent: list[Cursor[Any]] = []
    try:
        if pipeline is not None:
            # Errors of the statements queued before these are raised here, as when a
            # nested block was entered.
            synced(pipeline, conn)
            _queue(curs, setup, search_path, runs, sent, apart=apart)
            synced(pipeline, conn)
        else:
            with conn.pipeline():
                _queue(curs, setup, search_path, runs, sent, apart=apart)
    except _Unsendable as bad:
        # Found before anything of it was sent: which one is known, in a group too.
        raise StatementFailed(
            runs[0][0] if one_run else None, bad.error, statement=bad.index if one_run else None
        ) from bad.error
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            out_of_reach(exc)
        ):
            raise
        statement: int | None = 0 if one_run and not apart else None
        if apart and setup.pgresult is not None:
            statement = next((i for i, c in enumerate(sent) if c.pgresult is None), None)
        raise StatementFailed(runs[0][0] if one_run else None, exc, statement=statement) from exc
    finally:
        if apart:
            setup.close()
            for one in sent:
                one.close()


def synced(pipeline: psycopg.Pipeline, conn: psycopg.Connection[Any]) -> None:
    """``pipeline.sync()``, once everything queued has been sent to the server.

    psycopg's ``sync()`` stops sending when its queue of commands is empty, with
    one flush of libpq's output buffer after the last, and then only waits for
    results. A statement larger than the socket takes at once (a ``ctx.execute``
    parameter of a few MB, say) was then left partly unsent: the server waited for
    the rest, this process for the results, until ``query_timeout`` ended the
    commit as a server that did not answer, and every commit of the process waited
    behind it. Flushed first (reading what the server sends meanwhile), the sync
    itself is a few bytes, sent at once.
    """
    conn.wait(send(conn.pgconn))
    pipeline.sync()


#: Share of the connection's ``query_timeout`` the handler statements of a commit may
#: run on the server, all together, counted from the start of its transaction.
STATEMENT_SHARE = 0.8
#: Before each handler statement: ``statement_timeout`` set to what is left of that
#: share, or to the setting in force if it is lower (at least 1 ms), local to the
#: transaction.
_REMAINING = (
    "SELECT pg_catalog.set_config('statement_timeout', GREATEST(1, LEAST(%(budget)s - "
    "(extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint, COALESCE(NULLIF(("
    "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'"
    ")::bigint, 0), %(budget)s)))::text, true)"
)


def statement_limit_ms(conn: psycopg.Connection[Any]) -> int | None:
    """The server-side bound of a commit's handler statements, all together, from the
    start of its transaction (ms): a share of the time this process waits for the
    commit's answer. Before each statement, ``statement_timeout`` is set to what is
    left of it.

    Without it, a statement slower than ``query_timeout`` went on running on the server
    after the client gave up, inside the commit's transaction and holding its locks:
    every other commit waited behind it, and the run was tried again from scratch with
    nothing recorded, for ever. Cancelled by the server, it fails its run (SQLSTATE
    57014, "canceling statement due to statement timeout"), which the retry policy
    bounds. A run's own ``SET LOCAL statement_timeout`` may lower it, not raise it
    (the client would give up first): longer statements need a longer ``query_timeout``.
    """
    seconds = getattr(conn, "query_timeout", None)
    if not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return max(1, int(seconds * STATEMENT_SHARE * 1000))


def out_of_reach(exc: psycopg.Error) -> bool:
    """A lost connection or a server going away, not an error of the statement."""
    state = exc.sqlstate or ""
    return not state or state.startswith("08") or state in _SERVER_GOING_AWAY


class _Unsendable(Exception):
    """A statement psycopg refused to send: its index in its run's statements."""

    def __init__(self, index: int, error: psycopg.Error) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _queue(
    curs: Cursor[Any],
    setup: Cursor[Any],
    search_path: Composed,
    runs: Sequence[tuple[UUID, Sequence[Any]]],
    sent: list[Cursor[Any]],
    *,
    apart: bool,
) -> None:
    """Queue the search path and every statement of ``runs`` in the open pipeline
    (on a cursor each when ``apart``, appended to ``sent``)."""
    setup.execute(search_path)
    conn = curs.connection
    limit = statement_limit_ms(conn)
    for _, statements in runs:
        for index, st in enumerate(statements):
            if limit is not None:
                # What is left of the transaction's budget (the client waits for the whole
                # commit, not for each statement; now() is the transaction's start), or
                # the setting in force if lower (the database's, or a SET LOCAL of the run).
                setup.execute(_REMAINING, {"budget": limit})
            one = curs
            if apart:
                one = conn.cursor()
                sent.append(one)
            try:
                one.execute(st.sql, st.params)
            except TypeError as exc:
                # psycopg's refusal of parameters of the wrong kind for the placeholders
                # (a dict for %s, a sequence for %(name)s): the statement's error, as
                # on SQLite, not the store's (it failed the commit as an outage, and
                # the run was tried again, unrecorded, for ever).
                error = psycopg.ProgrammingError(f"{exc} (parameters {type(st.params).__name__})")
                error.__cause__ = exc
                raise _Unsendable(index, error) from exc
    if limit is not None:
        # The store's own statements after them (snapshots, the fence) as before.
        setup.execute("SET LOCAL statement_timeout TO DEFAULT")
