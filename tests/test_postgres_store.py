"""What is Postgres-specific: URLs and options, connection errors (fast, no
password anywhere), schemas, atomicity of events and index rows, conflicts
between processes, and the alarm index."""

from __future__ import annotations

import gc
import select
import socket
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment
from psycopg import sql

from _proxy import TcpProxy
from durable_jobs import (
    ConcurrencyError,
    ConfigurationError,
    Inspector,
    LockLost,
    StoreError,
    open_store,
)
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._store.index import IndexRow
from durable_jobs._store.urls import StoreURL
from durable_jobs.stores import _postgres_recorder as postgres_recorder
from durable_jobs.stores.postgres import (
    PostgresApplicationRecorderWithIndex,
    PostgresFactoryWithIndex,
    PostgresStore,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from durable_jobs._store.base import Store

pytestmark = pytest.mark.postgres

T = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "Zq7-sEcReT-pw"


def _start(job: str = "job", instance_id: str = "id-1", at: datetime = T) -> ContinuousInstance:
    inst, _ = ContinuousInstance.start(
        None, job, instance_id, now=T, state={"n": 0}, first_run_at=at
    )
    return inst


def _recorder(store: Store) -> PostgresApplicationRecorderWithIndex:
    recorder = store.index
    assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
    return recorder


def _end_lock_session(store: PostgresStore, postgres_url: str) -> None:
    """End ``store``'s lock session from outside, as an admin's pg_terminate_backend.
    With a timeout it returns once the backend is gone (and its locks with it): without
    one, a commit right after could still find them held (1 run in 20)."""
    session = store._locks._conn
    assert session is not None
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (session.info.backend_pid,))


def _count(store: Store, table: str) -> int:
    recorder = _recorder(store)
    query = sql.SQL("SELECT count(*) AS n FROM {}.{}").format(
        sql.Identifier(recorder.datastore.schema), sql.Identifier(table)
    )
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(query)
        row = curs.fetchone()
    assert row is not None
    return int(row["n"])


def _with_auth(base: str, user: str, password: str, dbname: str | None = None) -> str:
    parts = urlsplit(base)
    db = dbname if dbname is not None else parts.path.lstrip("/")
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{parts.hostname}:{parts.port or 5432}/{db}"
    )


@pytest.fixture
def opened(pg_url: str) -> Iterator[list[Store]]:
    """Stores opened by the test, closed after it (before its schema is dropped)."""
    stores: list[Store] = []
    yield stores
    for s in stores:
        s.close()


@pytest.fixture
def pg_store(pg_url: str, opened: list[Store]) -> Store:
    s = open_store(pg_url)
    opened.append(s)
    return s


# ---- URLs and options ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://postgres@127.0.0.1:5432", "postgresql://user:password@"),
        ("postgresql://postgres@127.0.0.1:5432/", "no database"),
        ("postgresql://127.0.0.1:5432/test", "no user"),
        ("postgresql://postgres@:5432/test", "no host"),
        ("postgresql://postgres@127.0.0.1/a/b", "malformed database name"),
        ("postgresql://postgres@127.0.0.1/test?sslmode=required", "sslmode must be one of"),
        ("postgresql://postgres@127.0.0.1/test?sslcompression=1", "Unknown option"),
        ("postgresql://postgres@127.0.0.1/test?query_timeout=0", "query_timeout"),
        ("postgresql://postgres@127.0.0.1/test?schema=MySchema", "lower-case"),
        ("postgresql://postgres@127.0.0.1/test?schema=a-b", "lower-case"),
        ("postgresql://postgres@127.0.0.1/test?schema=", "lower-case"),
        (f"postgresql://postgres@127.0.0.1/test?schema={'s' * 64}", "lower-case"),
        ("postgresql://postgres@127.0.0.1/test?connect_timeout=soon", "connect_timeout"),
        ("postgresql://postgres@127.0.0.1/test?connect_timeout=0", "connect_timeout"),
        ("postgresql://postgres@127.0.0.1/test?pool_size=-1", "pool_size"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle) as info:
        open_store(url)
    if "no " in needle:
        assert "postgresql://user:password@localhost:5432/dbname" in str(info.value)


def test_postgres_scheme_alias_and_options(postgres_url: str, pg_schema: str) -> None:
    alias = postgres_url.replace("postgresql://", "postgres://", 1)
    with open_store(f"{alias}?schema={pg_schema}&pool_size=3&connect_timeout=7") as store:
        assert isinstance(store, PostgresStore)
        assert store.schema == pg_schema
        datastore = _recorder(store).datastore
        assert datastore.schema == pg_schema
        assert datastore.pool.max_size == 3
        assert datastore.pool.timeout == 7
        assert not datastore.enable_db_functions


def test_default_schema_is_public(postgres_url: str) -> None:
    store = PostgresStore.__new__(PostgresStore)  # settings only: nothing is opened
    store.url = StoreURL.parse(postgres_url)
    assert store.schema == "public"
    env = store._factory_env()
    assert env[PostgresFactory.POSTGRES_SCHEMA] == "public"
    assert env[PostgresFactory.POSTGRES_POOL_SIZE] == "5"
    assert env[PostgresFactory.POSTGRES_CONNECT_TIMEOUT] == "5"
    assert env[PostgresFactory.POSTGRES_ENABLE_DB_FUNCTIONS] == "no"


@pytest.mark.parametrize(
    "schema",
    ["information_schema", "pg_catalog", "pg_jobs", "select", "user", "order", "between", "int"],
)
def test_system_schemas_and_reserved_words_are_refused(postgres_url: str, schema: str) -> None:
    """information_schema got the jobs tables; a reserved word failed with an SQL syntax
    error (StoreError), as did a column-name keyword ('between'). All are now a
    ConfigurationError, and nothing is created."""
    with pytest.raises(ConfigurationError, match=f"Invalid schema '{schema}'"):
        open_store(f"{postgres_url}?schema={schema}")
    with psycopg.connect(postgres_url) as conn:
        system = schema in ("information_schema", "pg_catalog")
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        assert found == (1 if system else 0,)
        made = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
            "'information_schema' AND table_name LIKE 'dj%'"
        ).fetchone()
        assert made == (0,)


def test_a_non_reserved_keyword_is_a_usable_schema(postgres_url: str) -> None:
    """Only keywords that break the tables' type name are refused: 'action' works."""
    url = f"{postgres_url}?schema=action"
    try:
        with open_store(url) as store:
            assert store.list_instances() == []
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS action CASCADE")


def test_db_functions_are_refused(postgres_url: str, pg_schema: str) -> None:
    parts = urlsplit(postgres_url)
    env = Environment(
        "DurableJobs",
        {
            PostgresFactory.POSTGRES_DBNAME: parts.path.lstrip("/"),
            PostgresFactory.POSTGRES_HOST: parts.hostname or "",
            PostgresFactory.POSTGRES_USER: parts.username or "",
            PostgresFactory.POSTGRES_PASSWORD: "",
            PostgresFactory.POSTGRES_SCHEMA: pg_schema,
            PostgresFactory.POSTGRES_ENABLE_DB_FUNCTIONS: "y",
        },
    )
    with pytest.raises(ConfigurationError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        PostgresFactoryWithIndex(env)
    datastore = PostgresDatastore(
        parts.path.lstrip("/"),
        parts.hostname or "",
        parts.port or 5432,
        parts.username or "",
        "",
        schema=pg_schema,
        enable_db_functions=True,
    )
    try:
        with pytest.raises(ConfigurationError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
            PostgresApplicationRecorderWithIndex(datastore)
    finally:
        datastore.close()


# ---- connection failures -------------------------------------------------------------


def _assert_no_secret(err: BaseException, *extra: object) -> None:
    texts = [str(err), repr(err), "".join(traceback.format_exception(err))]
    texts += [str(x) for x in extra] + [repr(x) for x in extra]
    for text in texts:
        assert SECRET not in text
        assert quote(SECRET, safe="") not in text


def test_closed_port_fails_fast_without_password() -> None:
    url = f"postgresql://someone:{SECRET}@127.0.0.1:1/test?connect_timeout=3"
    with pytest.raises(StoreError) as info:
        open_store(url)
    err = info.value
    assert isinstance(err.__cause__, psycopg.OperationalError)
    assert "127.0.0.1:1" in str(err)
    assert "***" in str(err)
    _assert_no_secret(err)


def test_silent_server_fails_after_one_connection_attempt() -> None:
    """A hung server costs one ``connect_timeout``: one probe, no pool retry loop."""
    # A socket that accepts TCP connections and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        url = f"postgresql://someone:{SECRET}@127.0.0.1:{port}/test?connect_timeout=2"
        with pytest.raises(StoreError) as info:
            open_store(url)
        listener.setblocking(False)
        accepted = []
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            accepted.append(conn)
            conn.close()
    assert len(accepted) == 1
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    _assert_no_secret(info.value)


@pytest.mark.parametrize("problem", ["user", "database"])
def test_live_server_wrong_user_or_db_without_password(postgres_url: str, problem: str) -> None:
    parts = urlsplit(postgres_url)
    user = "dj_no_such_user" if problem == "user" else (parts.username or "postgres")
    dbname = "dj_no_such_db" if problem == "database" else None
    url = _with_auth(postgres_url, user, SECRET, dbname)
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert ("dj_no_such_user" if problem == "user" else "dj_no_such_db") in str(info.value)
    _assert_no_secret(info.value)


def test_password_never_shown_by_an_open_store(
    postgres_url: str, pg_schema: str, opened: list[Store]
) -> None:
    # Trust auth accepts any password, so the store opens.
    parts = urlsplit(postgres_url)
    password = SECRET + "@:/%?&"
    url = _with_auth(postgres_url, parts.username or "postgres", password)
    store = open_store(f"{url}?schema={pg_schema}")
    opened.append(store)
    for text in (str(store), repr(store), str(store.url), repr(store.url)):
        assert SECRET not in text
    assert "***" in str(store)


def test_server_going_away_is_a_store_error_not_a_hang(postgres_url: str, pg_schema: str) -> None:
    """Once open, a vanished server fails saves and reads with StoreError (no password)."""
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        url = _with_auth(postgres_url, parts.username or "postgres", SECRET)
        url = url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")
        store = open_store(f"{url}?schema={pg_schema}&connect_timeout=2&pool_size=1")
        try:
            inst, _ = ContinuousInstance.start(None, "j", "gone", now=T, state=1, first_run_at=T)
            store.save(inst)
            proxy.close()
            inst.terminate(now=T)
            with pytest.raises(StoreError) as saving:
                store.save(inst)
            assert not isinstance(saving.value, ConcurrencyError)
            assert isinstance(saving.value.__cause__, Exception)
            assert "may or may not have been committed" in str(saving.value)
            _assert_no_secret(saving.value, store)
            with pytest.raises(StoreError) as reading:
                store.get("continuous", "j", "gone")
            _assert_no_secret(reading.value)
        finally:
            store.close()
    finally:
        proxy.close()
    # Nothing of the failed save reached the server.
    with open_store(f"{postgres_url}?schema={pg_schema}") as direct:
        again = direct.get("continuous", "j", "gone")
        assert again is not None and again.live


def test_a_commit_whose_acknowledgement_was_lost_is_not_a_conflict(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server committed, the connection dropped before it said so: the retry must
    recognise its own events instead of reporting a version conflict."""
    inst, _ = ContinuousInstance.start(None, "j", "lost-ack", now=T, state=1, first_run_at=T)
    calls: list[str] = []
    real = postgres_recorder._insert_events_once
    first_try = {"mode": "commit, then drop"}

    def flaky(self: Any, stored_events: Any, **kwargs: Any) -> Any:
        calls.append(first_try["mode"] if not calls else "retry")
        if len(calls) == 1 and first_try["mode"] == "drop before commit":
            raise OperationalError("server closed the connection unexpectedly")
        result = real(self, stored_events, **kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(postgres_recorder, "_insert_events_once", flaky)
    pg_store.save(inst)
    assert calls == ["commit, then drop", "retry"]
    assert pg_store.get("continuous", "j", "lost-ack") == inst

    # Another writer's commit found by the retry is still a conflict.
    other = pg_store.get("continuous", "j", "lost-ack")
    assert isinstance(other, ContinuousInstance)
    other.terminate(now=T)
    pg_store.save(other)
    calls.clear()
    first_try["mode"] = "drop before commit"
    inst.set_alarm(None, now=T + timedelta(seconds=1))
    with pytest.raises(ConcurrencyError):
        pg_store.save(inst)
    assert calls == ["drop before commit", "retry"]


# ---- schemas -------------------------------------------------------------------------


def test_schema_and_tables_are_created(pg_store: Store, postgres_url: str, pg_schema: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (pg_schema,),
            )
        }
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,)
            )
        }
    assert {"durablejobs_events", "durablejobs_snapshots", "dj_instances"} <= tables
    assert "dj_instances_due_at" in indexes


def test_reopening_a_schema_keeps_its_instances(pg_url: str, opened: list[Store]) -> None:
    first = open_store(pg_url)
    opened.append(first)
    first.save(_start())
    first.close()
    second = open_store(pg_url)
    opened.append(second)
    inst = second.get("continuous", "job", "id-1")
    assert inst is not None
    assert inst.version == 2
    assert [r.instance_id for r in second.due_alarms(T)] == ["id-1"]


def test_schemas_are_isolated(postgres_url: str, pg_schema: str, opened: list[Store]) -> None:
    other_schema = pg_schema + "_b"
    try:
        a = open_store(f"{postgres_url}?schema={pg_schema}")
        opened.append(a)
        b = open_store(f"{postgres_url}?schema={other_schema}")
        opened.append(b)
        a.save(_start())
        assert a.get("continuous", "job", "id-1") is not None
        assert b.get("continuous", "job", "id-1") is None
        assert b.due_alarms(T + timedelta(days=1)) == []
        assert b.next_alarms() == []
        assert b.list_instances() == []
        b.save(_start(instance_id="id-2"))
        assert [r.instance_id for r in a.list_instances()] == ["id-1"]
        assert [r.instance_id for r in b.list_instances()] == ["id-2"]
    finally:
        for s in opened:
            s.close()
        opened.clear()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other_schema))
            )


# ---- atomicity -----------------------------------------------------------------------


class Boom(Exception):
    pass


def _boom() -> None:
    raise Boom("injected")


def _assert_nothing_committed(store: Store, events: int, version: int | None) -> None:
    assert _count(store, "durablejobs_events") == events
    row = store.index_row(_start().id)
    assert (row.version if row else None) == version
    inst = store.get("continuous", "job", "id-1")
    assert (inst.version if inst else None) == version


def test_python_fault_in_the_transaction_commits_nothing(pg_store: Store) -> None:
    recorder = _recorder(pg_store)
    recorder.fault_hook = _boom
    with pytest.raises(StoreError) as info:
        pg_store.save(_start())
    assert isinstance(info.value.__cause__, Boom)
    _assert_nothing_committed(pg_store, events=0, version=None)
    assert _count(pg_store, "dj_instances") == 0

    # An update of an existing instance rolls back too.
    recorder.fault_hook = None
    inst = _start()
    pg_store.save(inst)
    inst.reschedule(T + timedelta(hours=1), now=T)
    recorder.fault_hook = _boom
    with pytest.raises(StoreError):
        pg_store.save(inst)
    _assert_nothing_committed(pg_store, events=2, version=2)
    row = pg_store.index_row(inst.id)
    assert row is not None
    assert row.due_at == T


def test_a_commit_under_a_lost_lock_is_refused_and_rolled_back(
    pg_store: Store,
    pg_url: str,
    postgres_url: str,
    opened: list[Store],
) -> None:
    """The fence of a commit finds its lock session gone: LockLost, nothing written,
    the pooled connection handed back idle; and when another writer committed the
    instance meanwhile, the lost lock (not the version conflict) is what is said."""
    assert isinstance(pg_store, PostgresStore)
    inst = _start()
    pg_store.save(inst)
    assert pg_store.try_lock(inst.id)
    _end_lock_session(pg_store, postgres_url)
    inst.reschedule(T + timedelta(hours=1), now=T)
    with pytest.raises(LockLost):
        pg_store.save(inst)
    _assert_nothing_committed(pg_store, events=2, version=2)

    other = open_store(pg_url)
    opened.append(other)
    newer = other.get("continuous", "job", "id-1")
    assert isinstance(newer, ContinuousInstance)
    newer.reschedule(T + timedelta(hours=2), now=T)
    other.save(newer)
    with pytest.raises(LockLost):
        pg_store.save(inst)
    row = pg_store.index_row(inst.id)
    assert row is not None and row.due_at == T + timedelta(hours=2)
    with _recorder(pg_store).datastore.get_connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # Instances without a lock commit as before.
    pg_store.save(_start(instance_id="id-2"))
    assert pg_store.get("continuous", "job", "id-2") is not None


@pytest.mark.parametrize("first_try", ["commit, then drop", "drop before commit"])
def test_a_commit_whose_answer_and_lock_session_were_lost_is_not_refused_if_it_went_through(
    pg_store: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch, first_try: str
) -> None:
    """The lock session ends with the connection of a commit (an admin ending every
    session, a server restart): the retry's fence then fails. If the first try had
    committed, that is its success, not LockLost: a caller told "nothing was written"
    decides again and commits the same send twice (outside review: 66 of 3,915 sends
    committed twice while sessions were ended every 0.5 s)."""
    assert isinstance(pg_store, PostgresStore)
    inst = _start()
    pg_store.save(inst)
    assert pg_store.try_lock(inst.id)
    real = postgres_recorder._insert_events_once
    calls: list[str] = []

    def flaky(self: Any, stored_events: Any, **kwargs: Any) -> Any:
        calls.append(first_try if not calls else "retry")
        if len(calls) > 1:
            return real(self, stored_events, **kwargs)
        if first_try == "commit, then drop":
            real(self, stored_events, **kwargs)
        _end_lock_session(pg_store, postgres_url)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(postgres_recorder, "_insert_events_once", flaky)
    inst.reschedule(T + timedelta(hours=1), now=T)
    if first_try == "commit, then drop":
        pg_store.save(inst)  # the first try's commit is this save's success
        assert pg_store.get("continuous", "job", "id-1") == inst
    else:
        with pytest.raises(LockLost):
            pg_store.save(inst)
        _assert_nothing_committed(pg_store, events=2, version=2)
    assert calls == [first_try, "retry"]


@pytest.mark.parametrize("failure", ["trigger", "check"])
def test_database_failure_of_the_index_upsert_commits_nothing(
    pg_store: Store, postgres_url: str, pg_schema: str, failure: str
) -> None:
    inst = _start()
    pg_store.save(inst)
    schema = sql.Identifier(pg_schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        if failure == "trigger":
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION {}.dj_fail() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$BEGIN RAISE EXCEPTION 'index write refused'; END$$"
                ).format(schema)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER dj_fail BEFORE INSERT OR UPDATE ON {}.dj_instances "
                    "FOR EACH ROW EXECUTE FUNCTION {}.dj_fail()"
                ).format(schema, schema)
            )
        else:
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {}.dj_instances ADD CONSTRAINT dj_fail CHECK (version < 3)"
                ).format(schema)
            )
    inst.reschedule(T + timedelta(hours=1), now=T)
    with pytest.raises(StoreError) as info:
        pg_store.save(inst)
    if failure == "trigger":
        assert "index write refused" in str(info.value)
    _assert_nothing_committed(pg_store, events=2, version=2)
    # A new instance fails the same way (trigger) or goes through (check).
    if failure == "trigger":
        with pytest.raises(StoreError):
            pg_store.save(_start(instance_id="id-2"))
        assert _count(pg_store, "durablejobs_events") == 2


def test_duplicate_rows_in_one_save_keep_the_newest(pg_store: Store) -> None:
    recorder = _recorder(pg_store)
    inst = _start()
    # The same instance twice in one save: one upsert cannot touch a row twice.
    pg_store.save(inst, inst)
    row = pg_store.index_row(inst.id)
    assert row is not None
    assert row.version == 2

    def row_at(version: int, due: datetime) -> IndexRow:
        return IndexRow(inst.id, "continuous", "job", "id-1", "running", due, version, T)

    rows = [
        row_at(5, T + timedelta(hours=5)),
        row_at(7, T + timedelta(hours=7)),
        row_at(6, T + timedelta(hours=6)),
    ]
    recorder.insert_events([], dj_index=rows)
    row = pg_store.index_row(inst.id)
    assert row is not None
    assert (row.version, row.due_at) == (7, T + timedelta(hours=7))
    # An older row never overwrites a newer one.
    recorder.insert_events([], dj_index=[row_at(4, T)])
    row = pg_store.index_row(inst.id)
    assert row is not None
    assert row.version == 7


# ---- concurrency ---------------------------------------------------------------------


def test_two_writers_of_one_version_conflict(pg_url: str, opened: list[Store]) -> None:
    a = open_store(pg_url)
    opened.append(a)
    b = open_store(pg_url)
    opened.append(b)
    a.save(_start())
    mine = a.get("continuous", "job", "id-1")
    theirs = b.get("continuous", "job", "id-1")
    assert isinstance(mine, ContinuousInstance)
    assert isinstance(theirs, ContinuousInstance)
    mine.reschedule(T + timedelta(hours=1), now=T)
    theirs.reschedule(T + timedelta(hours=2), now=T)
    a.save(mine)
    with pytest.raises(ConcurrencyError) as info:
        b.save(theirs)
    assert isinstance(info.value.__cause__, IntegrityError)
    assert "job" in str(info.value)
    for s in (a, b):
        inst = s.get("continuous", "job", "id-1")
        assert inst is not None
        assert inst.version == 3
        assert inst.d.alarm_at == T + timedelta(hours=1)
        row = s.index_row(inst.id)
        assert row is not None
        assert (row.version, row.due_at) == (3, T + timedelta(hours=1))


def test_integrity_error_becomes_concurrency_error(pg_store: Store) -> None:
    inst = _start()
    pg_store.save(inst)
    stale = _start()  # a second "first" version of the same instance
    with pytest.raises(ConcurrencyError) as info:
        pg_store.save(stale)
    assert isinstance(info.value.__cause__, IntegrityError)
    assert _count(pg_store, "durablejobs_events") == 2


# ---- the alarm index -----------------------------------------------------------------


def test_alarm_and_listing_queries(pg_store: Store) -> None:
    ids = ["b", "A", "é", "Z", "a", "id-10", "id-9"]
    for n, instance_id in enumerate(ids):
        pg_store.save(_start(instance_id=instance_id, at=T + timedelta(minutes=n)))
    due = pg_store.due_alarms(T + timedelta(minutes=2), limit=10)
    assert [r.instance_id for r in due] == ids[:3]
    assert [r.instance_id for r in pg_store.due_alarms(T + timedelta(hours=1), limit=2)] == ids[:2]
    after = pg_store.next_alarms(limit=2, after=T + timedelta(minutes=4))
    assert [r.instance_id for r in after] == ids[5:7]
    assert len(pg_store.next_alarms()) == len(ids)
    # Listing order is code-point order, as in the other stores (collation "C").
    listed = [r.instance_id for r in pg_store.iter_instances(kind="continuous")]
    assert listed == sorted(ids)
    page = pg_store.list_instances(after=("continuous", "job", "Z"), limit=2)
    assert [r.instance_id for r in page] == sorted(ids)[2:4]
    assert pg_store.list_instances(kind="task") == []
    assert len(pg_store.list_instances(job="job", status="running", limit=100)) == len(ids)


def test_due_alarm_queries_can_use_the_partial_index(pg_store: Store) -> None:
    for n in range(20):
        pg_store.save(_start(instance_id=f"id-{n}", at=T + timedelta(minutes=n)))
    recorder = _recorder(pg_store)
    queries: list[tuple[Any, tuple[Any, ...]]] = [
        (recorder.sql_due_alarms, (T.timestamp(), 10)),
        (recorder.sql_next_alarms, (10,)),
        (recorder.sql_next_alarms_after, (T.timestamp(), 10)),
    ]
    with recorder.datastore.transaction(commit=False) as curs:
        # With so few rows a sequential scan is cheaper; forbid it to see whether
        # the index matches the queries at all.
        curs.execute("SET LOCAL enable_seqscan = off")
        for query, params in queries:
            curs.execute(sql.SQL("EXPLAIN ") + query, params)
            plan = "\n".join(str(next(iter(r.values()))) for r in curs.fetchall())
            assert "dj_instances_due_at" in plan, plan


def test_opens_a_schema_made_by_a_dba_without_database_privileges(
    postgres_url: str, pg_schema: str, opened: list[Store]
) -> None:
    # The app's role owns its schema but may not create schemas in the database.
    role = f"{pg_schema}_role"
    ident = sql.Identifier(role)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(pg_schema), ident)
        )
    try:
        url = _with_auth(postgres_url, role, "")
        store = open_store(f"{url}?schema={pg_schema}")
        opened.append(store)
        store.save(_start())
        assert store.get("continuous", "job", "id-1") is not None
    finally:
        for s in opened:
            s.close()
        opened.clear()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(pg_schema))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def test_the_alarm_listener_hears_the_earliest_alarm_of_other_stores(
    pg_url: str, opened: list[Store]
) -> None:
    """A commit announces its earliest alarm; a listener skips its own store's commits."""
    import select

    mine, other = open_store(pg_url), open_store(pg_url)
    opened += [mine, other]
    assert isinstance(mine, PostgresStore)
    listener = mine.open_alarm_listener()
    try:
        mine.save(_start(instance_id="own", at=T))
        other.save(_start(instance_id="a", at=T + timedelta(hours=2)))
        other.save(_start(instance_id="b", at=T + timedelta(hours=1)), _start(instance_id="c"))
        heard = False
        for _ in range(50):
            select.select([listener.fileno()], [], [], 0.1)
            heard = listener.drain() or heard
            if heard and listener.earliest == T:
                break
        assert heard
        # Of the other store's commits, the earliest alarm ("c", due at T); not "own".
        assert listener.earliest == T
        mine.save(_start(instance_id="own2", at=T - timedelta(hours=1)))
        select.select([listener.fileno()], [], [], 0.5)
        assert not listener.drain()
    finally:
        listener.close()


def test_a_session_cut_before_the_keepers_first_ping_is_reported_at_once(
    pg_store: Store, postgres_url: str
) -> None:
    """The lock session's connection is opened after its keeper started (the first lock
    taken): the keeper watches it from then on, so a session cut before the keeper's
    first ping (a quarter of the lease: 15 minutes here) is reported as soon as the
    server closes it, and the runs under its locks are stopped then, not at the ping."""
    assert isinstance(pg_store, PostgresStore)
    lost = threading.Event()
    pg_store.watch_locks(3600.0, lambda _session: lost.set())
    try:
        assert pg_store.try_lock(uuid4())
        _end_lock_session(pg_store, postgres_url)
        assert lost.wait(60), "the cut session was reported only at the keeper's ping"
    finally:
        pg_store.unwatch_locks()


def _alive(predicate: Any) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if predicate(o))


def test_a_store_opened_and_closed_again_and_again_leaves_nothing_behind(pg_url: str) -> None:
    """An Inspector (or open_jobs) per request: each Postgres store opened and closed
    stayed in memory for good (a weak-keyed map whose values held their key kept the
    datastore and its closed pool), and psycopg's caches kept four adapter classes
    per store (keyed by the type info each store fetched anew): about 30 KB each."""

    def composite_classes(o: object) -> bool:
        return isinstance(o, type) and "stored_event_uuid" in o.__name__.lower()

    def cycle() -> None:
        with Inspector(pg_url) as inspector:
            inspector.stats()

    open_store(pg_url).close()  # the store's tables (an Inspector opens it read-only)

    def datastores(o: object) -> bool:
        return isinstance(o, PostgresDatastore)

    cycle()
    # Counted before and after: other tests' stores may be open meanwhile.
    stores, classes = _alive(datastores), _alive(composite_classes)
    for _ in range(5):
        cycle()
    assert (_alive(datastores), _alive(composite_classes)) == (stores, classes)


def _snapshot_table_options(pg_url: str, schema: str) -> list[str]:
    with psycopg.connect(pg_url.partition("?")[0], autocommit=True) as conn:
        row = conn.execute(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'durablejobs_snapshots'",
            (schema,),
        ).fetchone()
    assert row is not None
    return list(row[0] or [])


def test_the_snapshots_table_is_vacuumed_like_a_table_rows_are_deleted_from(
    pg_url: str, pg_schema: str
) -> None:
    """eventsourcing creates its tables for appends (autovacuum after 100,000,000 dead
    rows); a new snapshot deletes the instance's older ones, so the snapshots table
    kept every one ever replaced (20 live rows, 5,980 dead, 26 MB)."""
    open_store(pg_url).close()
    options = _snapshot_table_options(pg_url, pg_schema)
    assert not [o for o in options if o.startswith("autovacuum_vacuum_")], options
    # A store made by an earlier release: mended by the next writer that opens it, not
    # by a reader.
    with psycopg.connect(pg_url.partition("?")[0], autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "ALTER TABLE {}.durablejobs_snapshots SET (autovacuum_vacuum_threshold = "
                "100000000, autovacuum_vacuum_scale_factor = 0.5)"
            ).format(sql.Identifier(pg_schema))
        )
    with Inspector(pg_url) as inspector:
        inspector.stats()
    assert "autovacuum_vacuum_threshold=100000000" in _snapshot_table_options(pg_url, pg_schema)
    open_store(pg_url).close()
    options = _snapshot_table_options(pg_url, pg_schema)
    assert not [o for o in options if o.startswith("autovacuum_vacuum_")], options
    assert "autovacuum_enabled=true" in options  # the rest is left as it was


def test_a_role_that_does_not_own_the_snapshots_table_opens_the_store_and_is_told(
    pg_url: str, pg_schema: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Mending an older store's snapshots table needs its owner: an app role with
    only the rights to read and write rows still opens the store, and the log says
    what the owner should run."""
    role, password = f"dj_app_{uuid4().hex[:8]}", uuid4().hex
    open_store(pg_url).close()
    schema, who = sql.Identifier(pg_schema), sql.Identifier(role)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (row and row[0]):  # pragma: no cover - the CI server's user is a superuser
            pytest.skip("the test server's user cannot create a role")
        conn.execute(
            sql.SQL(
                "ALTER TABLE {}.durablejobs_snapshots SET (autovacuum_vacuum_threshold = "
                "100000000, autovacuum_vacuum_scale_factor = 0.5)"
            ).format(schema)
        )
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(who, sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, who))
        conn.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}"
            ).format(schema, who)
        )
    parts = urlsplit(postgres_url)
    as_app = parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port or 5432}")
    try:
        with (
            caplog.at_level("WARNING", logger="durable_jobs.store"),
            open_store(f"{as_app.geturl()}?schema={pg_schema}") as store,
        ):
            assert store.list_instances() == []
        assert "must be owner" in caplog.text
        assert "RESET (autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor)" in caplog.text
        assert password not in caplog.text
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(who))
            conn.execute(sql.SQL("DROP ROLE {}").format(who))
    assert "autovacuum_vacuum_threshold=100000000" in _snapshot_table_options(pg_url, pg_schema)


def test_a_session_the_server_ended_as_idle_is_the_store_out_of_reach(
    pg_store: Store, postgres_url: str
) -> None:
    """The server ends a session idle for its ``idle_session_timeout`` (what ends the
    lock session of a worker cut off for its lease): the store out of reach for a
    while, logged at WARNING and waited out, not an ERROR "could not run" (network
    review: logged once at ERROR during a one-way loss)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET idle_session_timeout = '50ms'")
        ended: psycopg.Error | None = None
        deadline = time.monotonic() + 30
        while ended is None and time.monotonic() < deadline:
            select.select([conn.pgconn.socket], [], [], 1.0)  # the server's goodbye
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                ended = exc
    assert isinstance(ended, psycopg.errors.IdleSessionTimeout), ended
    wrapped = StoreError("Could not take or release an instance lock")
    wrapped.__cause__ = ended
    assert pg_store.unreachable(wrapped)


def test_a_save_that_never_got_a_connection_says_nothing_was_written(
    pg_url: str, opened: list[Store]
) -> None:
    """No pooled connection came within connect_timeout (the pool's one connection
    taken): nothing of the write reached the server, and the error says so, not
    "may or may not have been committed" (network review: 5 such errors, 0 writes)."""
    store = open_store(f"{pg_url}&connect_timeout=2&pool_size=1")
    opened.append(store)
    inst, _ = ContinuousInstance.start(None, "j", "no-conn", now=T, state=1, first_run_at=T)
    # The pool's only connection taken:
    with _recorder(store).datastore.get_connection(), pytest.raises(StoreError) as saving:
        store.save(inst)
    assert "nothing was written" in str(saving.value), saving.value
    assert "may or may not" not in str(saving.value)
    assert store.get("continuous", "j", "no-conn") is None
