"""Shared fixtures (tests/ and property_tests/): a store URL per adapter, an open store.

Postgres tests use the server named by ``DURABLE_JOBS_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``), each in a fresh
schema dropped afterwards. If that server is unreachable they fail: they are
never skipped. Deselect them with ``-m "not postgres"``.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from psycopg.rows import TupleRow

from durable_jobs._store.registry import open_store
from durable_jobs._store.urls import redact

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from durable_jobs._store.base import Store

# Hypothesis: no per-example deadline (a loaded CI machine is not a bug), and a
# "thorough" profile for long local runs: HYPOTHESIS_PROFILE=thorough.
settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("thorough", deadline=None, print_blob=True, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

POSTGRES_URL_ENV = "DURABLE_JOBS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def connect_postgres(url: str) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to the test server (``url`` without store options)."""
    return psycopg.connect(url.partition("?")[0], autocommit=True, connect_timeout=5)


def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    with connect_postgres(url) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL (no options); fails the test if the server is unreachable."""
    url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    try:
        connect_postgres(url).close()
    except psycopg.Error as exc:
        problem = str(exc)
    else:
        return url
    pytest.fail(
        f"The Postgres test server {redact(url)} is unreachable: {problem}\nStart it "
        f"(e.g. pg_ctlcluster <version> main start) or point {POSTGRES_URL_ENV} at one; "
        'deselect these tests with -m "not postgres".',
        pytrace=False,
    )


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name on the test server; the schema is dropped after the test."""
    schema = f"dj_test_{secrets.token_hex(6)}"
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture
def pg_url(postgres_url: str, pg_schema: str) -> str:
    """A Postgres store URL on a fresh schema, dropped after the test."""
    return f"{postgres_url}?schema={pg_schema}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite store URL on a fresh file (absolute path: ``sqlite:////...``)."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def _url_for(request: pytest.FixtureRequest, name: str) -> str:
    if name == "memory":
        return "memory://"
    return str(request.getfixturevalue("sqlite_url" if name == "sqlite" else "pg_url"))


_MEMORY = pytest.param("memory", id="memory")
_SQLITE = pytest.param("sqlite", id="sqlite")
_POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=[_MEMORY, _SQLITE, _POSTGRES])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store URL of each adapter."""
    return _url_for(request, request.param)


@pytest.fixture(params=[_SQLITE, _POSTGRES])
def durable_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store URL of each durable adapter."""
    return _url_for(request, request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on ``store_url``, closed after the test."""
    opened = open_store(store_url)
    yield opened
    opened.close()
