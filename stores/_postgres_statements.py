"""The handler statements (``ctx.execute``) of a Postgres commit, run in its transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from durable_jobs.adapters import StatementFailed
from durable_jobs.stores._postgres_conn import _SERVER_GOING_AWAY

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg.sql import Composed

__all__ = ["out_of_reach", "run_statements"]


def run_statements(
    curs: Cursor[DictRow], runs: Sequence[tuple[UUID, Sequence[Any]]], search_path: Composed
) -> None:
    """Run each run's ``ctx.execute`` statements, unqualified names resolving in
    the store's schema first, then ``public`` (``search_path`` sets that); a failing one raises
    :class:`StatementFailed` (the transaction then rolls back).

    All of them go in one round trip: a nested pipeline syncs when it ends,
    and an error shows up there. When the transaction holds one run's
    statements, the error names its instance and the failing statement's
    index: with several statements, each has its own cursor, and the
    failing one is the first left without a result (those after it were
    aborted). With several runs it names neither (the group commit then
    writes each run alone, which finds them), so that a group's statements
    share one cursor.
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
        with conn.pipeline():
            setup.execute(search_path)
            for _, statements in runs:
                for st in statements:
                    one = curs
                    if apart:
                        one = conn.cursor()
                        sent.append(one)
                    one.execute(st.sql, st.params)
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


def out_of_reach(exc: psycopg.Error) -> bool:
    """A lost connection or a server going away, not an error of the statement."""
    state = exc.sqlstate or ""
    return not state or state.startswith("08") or state in _SERVER_GOING_AWAY
