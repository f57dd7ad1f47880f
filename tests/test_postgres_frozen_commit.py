"""A worker frozen (SIGSTOP, a paused VM) in the middle of a commit transaction.

Its transaction holds the events table's lock and the row locks of the index rows
it writes, so every other worker's commit waits for it. The server must end that
transaction after the lease, or after ``COMMIT_IDLE_MAX`` if the lease is longer.
"""

from __future__ import annotations

import secrets
import signal
import time
from pathlib import Path

import psycopg
import pytest

import _children as children
from durable_jobs.stores._postgres_recorder import COMMIT_IDLE_MAX

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


@pytest.mark.parametrize("lease", [2, 120])
def test_a_transaction_left_open_by_a_frozen_worker_ends_after_the_lease(
    pg_url: str, postgres_url: str, lease: int
) -> None:
    """Before the fix, the commit's handler statements were synced through a nested
    psycopg pipeline, which ends with a Flush after its Sync; the server then did not
    count the idle time (``idle_in_transaction_session_timeout``) and the frozen
    worker's transaction stayed open, with its row locks, as long as it was frozen.

    With a long lease (120 s, longer than this test's patience), the transaction ends
    after ``COMMIT_IDLE_MAX`` (5 s): it used to be the lease, for which every
    worker's commits waited."""
    assert COMMIT_IDLE_MAX < PATIENCE < 120
    mark = secrets.token_hex(8)
    child = children.Child(CHILD, pg_url, mark, str(lease))
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
        # Woken, it finds that transaction gone: its run goes again and commits.
        _poll(
            lambda: any(state == "active" for _, state in _backends(postgres_url, mark)),
            "the woken worker's next commit",
        )
        assert child.proc.poll() is None
    finally:
        child.cleanup()
