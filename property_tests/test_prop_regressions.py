"""Minimal reproductions of bugs the property tests found.

A bug not yet fixed is ``xfail(strict=True)``: when the library is fixed the
test passes, the strict xfail then fails the run, and whoever fixed it removes
the marker. The ones below are fixed and stay as regression tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Runs in a child process: a hang cannot be cancelled from inside (the stranded
#: waits are shielded), so the parent enforces a wall-clock limit.
BASE_EXCEPTION_IN_SAVE = """
import sys
from datetime import timedelta

import trio
import trio.testing

import durable_jobs as dj
from durable_jobs._store.urls import StoreURL
from durable_jobs.stores.sqlite import SQLiteStore


class Interrupted(BaseException):
    '''Like KeyboardInterrupt: not an Exception.'''


class InterruptedStore(SQLiteStore):
    def save(self, *instances):
        raise Interrupted


registry = dj.Registry()


@registry.continuous("beat", state=int, schedule=dj.every(timedelta(minutes=1)))
async def beat(ctx):
    pass


async def main():
    store = InterruptedStore.from_url(StoreURL.parse(sys.argv[1]))
    try:
        async with dj.open_jobs(registry, store, clock=dj.VirtualClock()) as jobs:
            await jobs.continuous("beat").start("a", 0)
    except Interrupted:
        print("raised")
    finally:
        store.close()


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
"""


def test_a_base_exception_in_a_store_write_propagates_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """Found by the crash properties' first design, which "killed" the process with a
    BaseException raised by the store: on SQLite (group commit) the runtime hung."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", BASE_EXCEPTION_IN_SAVE, url],
            capture_output=True,
            text=True,
            timeout=8,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("open_jobs hung after a BaseException in a store write")
    assert done.stdout.strip() == "raised", done.stderr
