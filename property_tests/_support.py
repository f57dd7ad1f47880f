"""Helpers shared by the property tests (hypothesis).

The fixtures of the root ``conftest.py`` (store URLs, Postgres schemas) apply
here too; there is no ``conftest.py`` in this folder (mypy wants one module
named ``conftest``). Module names here must differ from those in ``tests/``:
pytest imports both folders by basename.

Profiles: ``HYPOTHESIS_PROFILE=thorough`` for long local runs; the default
profile keeps the whole ``make test`` under its 10-minute budget on 2 cores.
Tests size their example counts with :func:`examples`, which scales them with
the loaded profile.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from psycopg import sql

__all__ = [
    "DEFAULT_PROFILE_EXAMPLES",
    "examples",
    "fresh_postgres_url",
    "fresh_sqlite_url",
    "run_virtual",
    "slow_examples",
]

_T = TypeVar("_T")

#: ``max_examples`` of the "default" profile (hypothesis's own default).
DEFAULT_PROFILE_EXAMPLES = 100


def examples(n: int) -> int:
    """``n`` examples under the default profile, proportionally more under a bigger one.

    The "thorough" profile (``max_examples=2000``) runs 20 times as many. Tests
    set ``max_examples`` explicitly (the default profile's 100 would blow the
    time budget of the slow ones), so they scale it through this.
    """
    loaded = settings().max_examples
    return max(1, n * loaded // DEFAULT_PROFILE_EXAMPLES)


def slow_examples(n: int) -> settings:
    """Settings for tests whose examples each run a whole runtime: ``examples(n)`` of them.

    ``too_slow`` is expected (each example is a trio run with store I/O), and so
    is ``data_too_large`` for long workloads; every other health check stays.
    """
    return settings(
        max_examples=examples(n),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def run_virtual(fn: Callable[[], Awaitable[_T]]) -> _T:
    """``trio.run(fn)`` on ``MockClock(autojump_threshold=0)``: one trio run per example.

    That is how trio runs inside hypothesis through public APIs only: each
    example is a whole ``trio.run``, so hypothesis never sees a coroutine.
    """
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


@contextmanager
def fresh_sqlite_url() -> Iterator[str]:
    """A URL on a new SQLite file in a temporary directory, removed afterwards.

    For use inside a hypothesis test body: a function-scoped fixture would be
    shared by all examples (and hypothesis warns about it).
    """
    folder = tempfile.mkdtemp(prefix="dj-prop-")
    try:
        yield f"sqlite:///{os.path.join(folder, 'jobs.db')}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_postgres_url(server_url: str) -> Iterator[str]:
    """A store URL on a new schema of ``server_url`` (the session fixture), dropped afterwards."""
    schema = f"dj_prop_{secrets.token_hex(6)}"
    try:
        yield f"{server_url}?schema={schema}"
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
