"""The LISTEN side of the alarms other processes commit on a Postgres store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from durable_jobs.adapters import StoreError, driver_errors, from_epoch

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["PostgresAlarmListener"]


class PostgresAlarmListener:
    """A LISTEN connection on the alarm channel, read without blocking.

    The runtime waits for :meth:`fileno` to be readable, then calls :meth:`drain`.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], token: str, describe: Callable[[BaseException], str]
    ) -> None:
        self._conn = conn
        self._token = token.encode()
        self._describe = describe
        #: The earliest alarm the last :meth:`drain` heard of (None: not said).
        self.earliest: datetime | None = None

    def fileno(self) -> int:
        """The connection's socket."""
        return int(self._conn.pgconn.socket)

    def drain(self) -> bool:
        """Read what arrived; True if another store announced an alarm (and then
        :attr:`earliest` says when the earliest of them is due)."""
        pgconn = self._conn.pgconn
        lost = "The alarm listener lost its connection: "
        with driver_errors(lambda exc: StoreError(lost + self._describe(exc))):
            pgconn.consume_input()
        foreign = unknown = False
        earliest: datetime | None = None
        while (note := pgconn.notifies()) is not None:
            token, _, at = note.extra.partition(b" ")
            if token == self._token:
                continue
            foreign = True
            try:
                due = from_epoch(float(at))
            except ValueError:
                unknown = True  # a payload without a time (an older version)
                continue
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        self.earliest = None if unknown else earliest
        return foreign

    def close(self) -> None:
        self._conn.close()
