"""A Postgres server that stops answering without closing its connections.

Every process of a server of the test's own is stopped (SIGSTOP), as a paused
VM or hung storage would leave it: the kernel still acknowledges what is
sent, so neither TCP keepalives nor ``connect_timeout`` end a wait for an
answer. Each wait ends after the URL's ``query_timeout``: client calls raise
``StoreError`` instead of hanging, and once the server answers again the
runtime goes on, nothing acknowledged lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

import durable_jobs as dj
from _own_postgres import OwnPostgres
from _runtime import note_registry

#: How long a call may take before the test calls it hung: several query_timeouts.
HUNG = 30


@contextmanager
def frozen(server: OwnPostgres) -> Iterator[None]:
    """Every process of ``server`` stopped for the block, then continued."""
    found = subprocess.run(
        ["pgrep", "-f", str(server.data)], capture_output=True, text=True, check=False
    ).stdout.split()
    postmaster = [int(p) for p in found]
    assert postmaster, "the server's postmaster was not found"
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster[0])], capture_output=True, text=True, check=False
    ).stdout.split()
    pids = postmaster + [int(c) for c in children]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_client_calls_fail_instead_of_hanging_and_the_runtime_goes_on() -> None:
    server = OwnPostgres()
    url = f"{server.url}?schema=frozen&connect_timeout=2&query_timeout=2"
    failed: list[str] = []

    async def main() -> None:
        async with dj.open_jobs(note_registry(), url) as jobs:
            notes = jobs.task("note")
            await notes.send("a", "before")
            calls: list[tuple[str, Any]] = [
                ("send", lambda: notes.send("a", "during")),
                ("status", lambda: notes.status("a")),
                ("get_state", lambda: notes.get_state("a")),
                ("send to a new instance", lambda: notes.send("b", "new")),
            ]
            with frozen(server):
                for name, call in calls:
                    with trio.fail_after(HUNG), pytest.raises(dj.StoreError) as caught:
                        await call()
                    assert "s3cret" not in str(caught.value)
                    failed.append(name)
            with trio.fail_after(HUNG):
                await notes.send("a", "after")
                a = await notes.get_state("a")
                assert a is not None
                assert a.state == "after"
                b = await notes.get_state("b")
                assert b is None or b.state == "new"  # that send's outcome was unknown

    try:
        trio.run(main)
    finally:
        server.close()
    assert failed == ["send", "status", "get_state", "send to a new instance"]


def test_a_query_waits_at_most_query_timeout() -> None:
    """The store itself, without the runtime: a read on a frozen server fails after
    ``query_timeout``, and the next one after the thaw succeeds."""
    server = OwnPostgres()
    try:
        store = dj.open_store(
            f"{server.url}?schema=frozen_reads&query_timeout=1&connect_timeout=1"
        )
        try:
            assert store.list_instances() == []
            with frozen(server), pytest.raises(dj.StoreError, match="Could not read the store"):
                # No answer within query_timeout, then a new connection, which gets no
                # answer within connect_timeout either.
                store.list_instances()
            assert store.list_instances() == []
        finally:
            store.close()
    finally:
        server.close()


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "soon"])
def test_query_timeout_must_be_whole_seconds(value: str) -> None:
    with pytest.raises(dj.ConfigurationError, match="query_timeout must be a whole number"):
        dj.open_store(f"postgresql://app:s3cret@db.example/jobs?query_timeout={value}")
