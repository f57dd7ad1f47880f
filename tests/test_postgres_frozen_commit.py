"""A worker frozen (SIGSTOP, a paused VM) in the middle of a commit transaction.

Its transaction holds the row locks of the index rows it writes, so every other
worker's commit that touches them waits for it. The server must end that
transaction after the lease, as it ends the frozen worker's lock session.
"""

from __future__ import annotations

import secrets
import signal
import time
from pathlib import Path

import psycopg
import pytest

import _children as children

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHILD = Path(__file__).resolve().with_name("_frozen_commit_child.py")
#: How long the test waits for a state of the server it polls for: a bound for a hang,
#: not a measure of speed (the lease is 2 s).
PATIENCE = 60.0


def _backends(postgres_url: str, mark: str) -> list[tuple[int, str]]:
    """The server sessions whose last statement was the child's handler statement."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE query LIKE %s AND pid <> "
            "pg_backend_pid()",
            [f"SELECT pg_sleep(0.5) -- {mark}"],
        ).fetchall()
    return [(pid, state) for pid, state in rows]


def _poll(done: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PATIENCE} s: {what}")
        time.sleep(0.05)  # polling the server's state, not timing anything


def test_a_transaction_left_open_by_a_frozen_worker_ends_after_the_lease(
    pg_url: str, postgres_url: str
) -> None:
    """Before the fix, the commit's handler statements were synced through a nested
    psycopg pipeline, which ends with a Flush after its Sync; the server then did not
    count the idle time (``idle_in_transaction_session_timeout``) and the frozen
    worker's transaction stayed open, with its row locks, as long as it was frozen."""
    mark = secrets.token_hex(8)
    child = children.Child(CHILD, pg_url, mark)
    try:
        child.read_until(lambda seen: "ready" in seen)
        for _ in range(10):
            # Freeze it while its commit's statement runs on the server: the server
            # finishes it and then waits for the rest of the transaction.
            _poll(
                lambda: any(state == "active" for _, state in _backends(postgres_url, mark)),
                "the child's handler statement running",
            )
            child.proc.send_signal(signal.SIGSTOP)
            if any(
                state in ("active", "idle in transaction")
                for _, state in _backends(postgres_url, mark)
            ):
                break  # frozen inside the transaction
            child.proc.send_signal(signal.SIGCONT)  # frozen just after it: again
        else:
            pytest.fail("the child was never frozen inside its commit transaction")
        try:
            _poll(
                lambda: (
                    not any(
                        state in ("active", "idle in transaction")
                        for _, state in _backends(postgres_url, mark)
                    )
                ),
                "the frozen worker's transaction ended by the server",
            )
        finally:
            child.proc.send_signal(signal.SIGCONT)
    finally:
        child.cleanup()
