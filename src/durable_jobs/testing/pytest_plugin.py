"""The durable-jobs pytest plugin: a virtual-time harness per test, on the store you choose.

pytest loads it by itself once durable-jobs is installed (entry point
``pytest11``, name ``durable_jobs``); ``-p no:durable_jobs`` turns it off.
It needs nothing but pytest; the async :func:`durable_jobs_harness` fixture
needs pytest-trio (``trio_mode = true``, or ``@pytest.mark.trio`` on the test).

Fixtures:

``durable_jobs_registry``
    The :class:`~durable_jobs.Registry` to serve. Override it in your
    ``conftest.py`` or test module; the default fails the test, saying so.
``durable_jobs_options``
    Keyword arguments for :func:`~durable_jobs.testing.open_harness`
    (``start=``, ``observers=``, any :func:`~durable_jobs.open_jobs` option).
    Default: none.
``durable_jobs_store_url``
    A fresh, empty store URL for this test: ``memory://``, a temporary SQLite
    file, or a new schema on the Postgres server (dropped after the test).
``durable_jobs_harness``
    (async, pytest-trio) an open :class:`~durable_jobs.testing.Harness` on
    that store. The test also takes pytest-trio's ``autojump_clock`` fixture,
    which makes trio run in virtual time.
``durable_jobs_run``
    (synchronous, no pytest-trio needed) ``durable_jobs_run(scenario)`` runs
    ``await scenario(harness)`` in a fresh ``trio.run`` on a mock clock and
    returns its result.
``durable_jobs_postgres_url``
    (session) the Postgres server's URL; the test fails, with what to do, when
    none is configured or it cannot be reached.

After a test that took ``durable_jobs_harness`` or ``durable_jobs_run``, a
failure a :class:`~durable_jobs.testing.FailurePlan` still has planned (no
call took it) fails the test, and is cleared so that the next test's runs do
not take it.

Mark: ``@pytest.mark.durable_jobs_store("memory", "sqlite", "postgres")``
chooses the stores a test runs on; with several names the test runs once per
store. Unmarked tests use ``--durable-jobs-store`` (default ``memory``).

Options: ``--durable-jobs-store NAME[,NAME...]`` and
``--durable-jobs-postgres-url URL`` (or the ``durable_jobs_postgres_url`` ini
setting, or the ``DURABLE_JOBS_TEST_POSTGRES_URL`` environment variable).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from durable_jobs._definitions.registry import Registry
from durable_jobs._store.urls import redact
from durable_jobs.testing._failures import take_unused_failures
from durable_jobs.testing._harness import Harness, open_harness, run_harness

__all__ = ["POSTGRES_URL_ENV", "STORE_NAMES", "HarnessRunner"]

T = TypeVar("T")

#: The environment variable naming the Postgres server for ``postgres`` tests.
POSTGRES_URL_ENV = "DURABLE_JOBS_TEST_POSTGRES_URL"
#: The store names the ``durable_jobs_store`` mark and option accept.
STORE_NAMES = ("memory", "sqlite", "postgres")
_MARK = "durable_jobs_store"


class HarnessRunner(Protocol):
    """The type of the ``durable_jobs_run`` fixture."""

    def __call__(self, scenario: Callable[[Harness], Awaitable[T]], /) -> T:
        """Run ``await scenario(harness)`` in a fresh ``trio.run`` on a mock clock."""
        ...


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--durable-jobs-store`` and ``--durable-jobs-postgres-url`` options."""
    group = parser.getgroup("durable_jobs", "durable-jobs")
    group.addoption(
        "--durable-jobs-store",
        metavar="NAME[,NAME...]",
        default=None,
        help="store(s) for tests without the durable_jobs_store mark: "
        "memory (default), sqlite, postgres",
    )
    group.addoption(
        "--durable-jobs-postgres-url",
        metavar="URL",
        default=None,
        help=f"Postgres server for postgres store tests (default: ${POSTGRES_URL_ENV})",
    )
    parser.addini(
        "durable_jobs_postgres_url",
        "Postgres server for durable-jobs postgres store tests",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``durable_jobs_store`` mark."""
    config.addinivalue_line(
        "markers",
        f"{_MARK}(*names): run the test on these durable-jobs stores "
        "(memory, sqlite, postgres), once per store",
    )


def _names(value: Any, where: str) -> tuple[str, ...]:
    names = tuple(str(n).strip() for n in value if str(n).strip())
    bad = [n for n in names if n not in STORE_NAMES]
    if not names or bad:
        msg = f"{where}: store names must be among {', '.join(STORE_NAMES)}; got {names!r}"
        raise pytest.UsageError(msg)
    return names


def _default_names(config: pytest.Config) -> tuple[str, ...]:
    option = config.getoption("--durable-jobs-store")
    if option is None:
        return ("memory",)
    return _names(str(option).split(","), "--durable-jobs-store")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test that uses ``durable_jobs_store_url`` once per chosen store."""
    if "durable_jobs_store_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(_MARK)
    if marker is not None:
        names = _names(marker.args, f"@pytest.mark.{_MARK} on {metafunc.definition.nodeid}")
    else:
        names = _default_names(metafunc.config)
    metafunc.parametrize("durable_jobs_store_url", names, indirect=True, ids=list(names))


@pytest.fixture
def durable_jobs_registry() -> Registry:
    """The registry the harness serves: override this fixture with your own."""
    pytest.fail(
        "Override the durable_jobs_registry fixture (in conftest.py or the test module) "
        "to return the durable_jobs.Registry your jobs are registered on.",
        pytrace=False,
    )


@pytest.fixture
def durable_jobs_options() -> dict[str, Any]:
    """Keyword arguments for ``open_harness``/``run_harness``: override to set ``start=`` etc."""
    return {}


@pytest.fixture(scope="session")
def durable_jobs_postgres_url(pytestconfig: pytest.Config) -> str:
    """The Postgres server for ``postgres`` store tests (fails the test if unset or down)."""
    url = (
        pytestconfig.getoption("--durable-jobs-postgres-url")
        or pytestconfig.getini("durable_jobs_postgres_url")
        or os.environ.get(POSTGRES_URL_ENV)
    )
    if not url:
        pytest.fail(
            "A durable_jobs_store('postgres') test needs a Postgres server: pass "
            f"--durable-jobs-postgres-url URL or set {POSTGRES_URL_ENV}.",
            pytrace=False,
        )
    import psycopg

    try:
        psycopg.connect(_server(str(url)), connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(
            f"The Postgres server {redact(str(url))} is unreachable: {exc}",
            pytrace=False,
        )
    return str(url)


def _server(url: str) -> str:
    """``url`` without its query (our store options are not libpq's)."""
    return urlunsplit(urlsplit(url)._replace(query=""))


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))


#: How long the teardown waits for the locks its schema's DROP needs (seconds).
DROP_LOCK_WAIT = 10


def _drop_schema(url: str, schema: str) -> None:
    """Drop the test's schema; a session of the test that still holds a lock on it (a
    connection of its own left in a transaction) fails the teardown after
    :data:`DROP_LOCK_WAIT` seconds, naming it, instead of hanging pytest for ever."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(_server(url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{DROP_LOCK_WAIT}s")))
        try:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        except psycopg.errors.LockNotAvailable:
            holders = conn.execute(
                "SELECT pid, state, left(query, 80) FROM pg_catalog.pg_stat_activity "
                "WHERE pid IN (SELECT pid FROM pg_catalog.pg_locks WHERE granted) "
                "AND pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchall()
            sessions = "; ".join(f"pid {p} ({st}): {q!r}" for p, st, q in holders) or "-"
            msg = (
                f"durable_jobs_store_url could not drop its schema {schema!r} within "
                f"{DROP_LOCK_WAIT} s: a session still holds a lock on it (a connection of "
                "the test left in a transaction? commit or close it before the test ends). "
                f"Sessions holding locks: {sessions}. Drop the schema by hand."
            )
            pytest.fail(msg, pytrace=False)


@pytest.fixture
def durable_jobs_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL for this test, of the store the mark or option chose."""
    name = getattr(request, "param", None) or _default_names(request.config)[0]
    if name == "memory":
        yield "memory://"
    elif name == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        server = request.getfixturevalue("durable_jobs_postgres_url")
        schema = f"dj_test_{secrets.token_hex(6)}"
        try:
            yield _with_schema(server, schema)
        finally:
            _drop_schema(server, schema)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before each test (its fixtures included): failures an earlier test planned and
    left are dropped, silently (a test without this plugin's fixtures, a hypothesis
    machine that meant to leave them): they are that test's, and this test's runs
    must not take them."""
    take_unused_failures()


def _no_unused_failures() -> None:
    """Fail the test's teardown if a FailurePlan still has failures it planned (and clear
    them): no call took them, so the test did not test what it meant to, and the next
    test's runs would take them instead."""
    unused = take_unused_failures()
    if unused:
        listed = "; ".join(unused)
        msg = (
            f"The test planned failures that no handler call took: {listed}. The next "
            "test's runs would have taken them (they are cleared now). Let the runs that "
            "take them happen (advance far enough), or call failures.clear() at the end "
            "of the test if leaving them unused is what it meant."
        )
        pytest.fail(msg, pytrace=False)


@pytest.fixture
async def durable_jobs_harness(
    durable_jobs_registry: Registry,
    durable_jobs_store_url: str,
    durable_jobs_options: dict[str, Any],
) -> AsyncIterator[Harness]:
    """An open harness on ``durable_jobs_store_url`` (take ``autojump_clock`` too).

    Its teardown fails the test if a :class:`~durable_jobs.testing.FailurePlan`
    still has planned failures that no call took (and clears them).
    """
    async with open_harness(
        durable_jobs_registry, durable_jobs_store_url, **durable_jobs_options
    ) as harness:
        yield harness
    _no_unused_failures()


@pytest.fixture
def durable_jobs_run(
    durable_jobs_registry: Registry,
    durable_jobs_store_url: str,
    durable_jobs_options: dict[str, Any],
) -> Iterator[HarnessRunner]:
    """``durable_jobs_run(scenario)``: ``run_harness`` on this test's registry and store.

    Its teardown fails the test if a :class:`~durable_jobs.testing.FailurePlan`
    still has planned failures that no call took (and clears them).
    """

    def run(scenario: Callable[[Harness], Awaitable[T]], /) -> T:
        return run_harness(
            scenario, durable_jobs_registry, durable_jobs_store_url, **durable_jobs_options
        )

    yield run
    _no_unused_failures()
