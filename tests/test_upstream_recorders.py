"""eventsourcing's own recorder test cases, run unchanged against our recorders.

Our adapters subclass eventsourcing's application recorders (adding the
instance index), so they must still keep upstream's whole recorder contract.
Each store gets:

- ``ApplicationRecorderTestCase`` and ``NonInterleavingNotificationIDsBaseCase``
  on our application recorder (plus upstream's optional subscription test
  where the recorder supports subscriptions);
- ``InfrastructureFactoryTestCase`` on our factory subclass;
- ``TrackingRecorderTestCase`` on the tracking recorder our factory builds
  (upstream's class: our factories must keep building a working one);
- ``AggregateRecorderTestCase`` on the aggregate recorder our factory builds
  for snapshots. (It cannot run on an application recorder: it asserts that
  ``insert_events`` returns None, where an application recorder must return
  notification ids.)

The upstream base classes are reached through the module, never imported by
name, so pytest does not collect the abstract bases.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.popo import POPOAggregateRecorder, POPOProcessRecorder, POPOTrackingRecorder
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
    SQLiteTrackingRecorder,
)
from eventsourcing.tests import persistence as upstream
from eventsourcing.utils import Environment, get_topic
from psycopg import sql

from durable_jobs.stores.memory import MemoryApplicationRecorder, _MemoryFactory
from durable_jobs.stores.postgres import (
    PostgresApplicationRecorderWithIndex,
    PostgresFactoryWithIndex,
    PostgresSnapshotRecorder,
)
from durable_jobs.stores.sqlite import SQLiteApplicationRecorderWithIndex, _SQLiteFactory

if TYPE_CHECKING:
    from eventsourcing.persistence import (
        AggregateRecorder,
        ApplicationRecorder,
        ProcessRecorder,
        TrackingRecorder,
    )


class JoinsStrayThreads:
    """After each test, waits for the (non-daemon) threads the test left running.

    Upstream's concurrent tests stop their reader threads with a flag but never
    join them: closing a database while one still reads crashes sqlite3.
    """

    def setUp(self) -> None:
        self._threads_before = set(threading.enumerate())
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        for thread in set(threading.enumerate()) - self._threads_before:
            if not thread.daemon:
                thread.join(timeout=30)
        super().tearDown()  # type: ignore[misc]


# ---- memory ------------------------------------------------------------------------


class TestMemoryApplicationRecorder(JoinsStrayThreads, upstream.ApplicationRecorderTestCase):
    def create_recorder(self) -> MemoryApplicationRecorder:
        return MemoryApplicationRecorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestMemoryNonInterleavingNotificationIDs(
    JoinsStrayThreads, upstream.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> MemoryApplicationRecorder:
        return MemoryApplicationRecorder()


class TestMemorySnapshotRecorder(JoinsStrayThreads, upstream.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return _MemoryFactory(Environment("DurableJobs")).aggregate_recorder("snapshots")


class TestMemoryTrackingRecorder(JoinsStrayThreads, upstream.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return _MemoryFactory(Environment("DurableJobs")).tracking_recorder()


class TestMemoryFactory(JoinsStrayThreads, upstream.InfrastructureFactoryTestCase[_MemoryFactory]):
    class TrackingRecorderSubclass(POPOTrackingRecorder):
        pass

    def setUp(self) -> None:
        self.env = Environment("TestCase")
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = get_topic(_MemoryFactory)
        super().setUp()

    def expected_factory_class(self) -> type[_MemoryFactory]:
        return _MemoryFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return POPOAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return MemoryApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return POPOTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return POPOProcessRecorder


# ---- SQLite ------------------------------------------------------------------------


class SQLiteFiles:
    """Each recorder gets a new database file in a directory removed after the test."""

    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="dj_upstream_")
        self._datastores: list[SQLiteDatastore] = []
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for datastore in self._datastores:
            datastore.close()
        self._tmp.cleanup()

    def new_datastore(self) -> SQLiteDatastore:
        path = Path(self._tmp.name) / f"{len(self._datastores)}.db"
        datastore = SQLiteDatastore(db_name=str(path), pool_size=100)
        self._datastores.append(datastore)
        return datastore


class TestSQLiteApplicationRecorder(
    JoinsStrayThreads, SQLiteFiles, upstream.ApplicationRecorderTestCase
):
    def create_recorder(self) -> SQLiteApplicationRecorderWithIndex:
        recorder = SQLiteApplicationRecorderWithIndex(self.new_datastore())
        recorder.create_table()
        return recorder


class TestSQLiteNonInterleavingNotificationIDs(
    JoinsStrayThreads, SQLiteFiles, upstream.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> SQLiteApplicationRecorderWithIndex:
        recorder = SQLiteApplicationRecorderWithIndex(self.new_datastore())
        recorder.create_table()
        return recorder


class TestSQLiteSnapshotRecorder(
    JoinsStrayThreads, SQLiteFiles, upstream.AggregateRecorderTestCase
):
    def create_recorder(self) -> AggregateRecorder:
        path = Path(self._tmp.name) / f"snapshots-{secrets.token_hex(4)}.db"
        factory = _SQLiteFactory(
            Environment("DurableJobs", {SQLiteFactory.SQLITE_DBNAME: str(path)}),
            synchronous="FULL",
        )
        self._datastores.append(factory.datastore)
        return factory.aggregate_recorder("snapshots")


class TestSQLiteTrackingRecorder(
    JoinsStrayThreads, SQLiteFiles, upstream.TrackingRecorderTestCase
):
    def create_recorder(self) -> TrackingRecorder:
        path = Path(self._tmp.name) / f"tracking-{secrets.token_hex(4)}.db"
        factory = _SQLiteFactory(
            Environment("DurableJobs", {SQLiteFactory.SQLITE_DBNAME: str(path)})
        )
        self._datastores.append(factory.datastore)
        return factory.tracking_recorder()


class TestSQLiteFactory(JoinsStrayThreads, upstream.InfrastructureFactoryTestCase[_SQLiteFactory]):
    class TrackingRecorderSubclass(SQLiteTrackingRecorder):
        pass

    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="dj_upstream_")
        self.env = Environment("TestCase")
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = get_topic(_SQLiteFactory)
        self.env[SQLiteFactory.SQLITE_DBNAME] = str(Path(self._tmp.name) / "factory.db")
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self._tmp.cleanup()

    def expected_factory_class(self) -> type[_SQLiteFactory]:
        return _SQLiteFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SQLiteAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return SQLiteApplicationRecorderWithIndex

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return SQLiteProcessRecorder


# ---- Postgres ----------------------------------------------------------------------


class PostgresSchema:
    """A fresh schema per test on the test server, dropped afterwards.

    ``datastore`` has room for upstream's concurrent tests (12 connections).
    """

    postgres_url: str
    schema: str
    datastore: PostgresDatastore

    @pytest.fixture(autouse=True)
    def _postgres_server(self, postgres_url: str, pg_schema: str) -> None:
        self.postgres_url = postgres_url
        self.schema = pg_schema

    def connection_env(self) -> dict[str, str]:
        url = urlsplit(self.postgres_url)
        return {
            PostgresFactory.POSTGRES_DBNAME: url.path.lstrip("/"),
            PostgresFactory.POSTGRES_HOST: url.hostname or "127.0.0.1",
            PostgresFactory.POSTGRES_PORT: str(url.port or 5432),
            PostgresFactory.POSTGRES_USER: url.username or "postgres",
            PostgresFactory.POSTGRES_PASSWORD: url.password or "",
            PostgresFactory.POSTGRES_SCHEMA: self.schema,
        }

    def setUp(self) -> None:
        env = self.connection_env()
        self.datastore = PostgresDatastore(
            dbname=env[PostgresFactory.POSTGRES_DBNAME],
            host=env[PostgresFactory.POSTGRES_HOST],
            port=env[PostgresFactory.POSTGRES_PORT],
            user=env[PostgresFactory.POSTGRES_USER],
            password=env[PostgresFactory.POSTGRES_PASSWORD],
            schema=self.schema,
            pool_size=2,
            max_overflow=12,
        )
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        self.datastore.close()


class PostgresRecorder(PostgresSchema):
    def create_recorder(self) -> PostgresApplicationRecorderWithIndex:
        recorder = PostgresApplicationRecorderWithIndex(self.datastore)
        recorder.create_table()
        return recorder


@pytest.mark.postgres
class TestPostgresApplicationRecorder(
    JoinsStrayThreads, PostgresRecorder, upstream.ApplicationRecorderTestCase
):
    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


@pytest.mark.postgres
class TestPostgresNonInterleavingNotificationIDs(
    JoinsStrayThreads, PostgresRecorder, upstream.NonInterleavingNotificationIDsBaseCase
):
    pass


@pytest.mark.postgres
class TestPostgresSnapshotRecorder(
    JoinsStrayThreads, PostgresSchema, upstream.AggregateRecorderTestCase
):
    def create_recorder(self) -> PostgresAggregateRecorder:
        env = Environment("DurableJobs", self.connection_env())
        factory = PostgresFactoryWithIndex(env)
        self.addCleanup(factory.close)
        # The schema is created by our application recorder; snapshots come second.
        factory.application_recorder()
        recorder = factory.aggregate_recorder("snapshots")
        assert isinstance(recorder, PostgresAggregateRecorder)
        return recorder


@pytest.mark.postgres
class TestPostgresTrackingRecorder(
    JoinsStrayThreads, PostgresSchema, upstream.TrackingRecorderTestCase
):
    def create_recorder(self) -> TrackingRecorder:
        factory = PostgresFactoryWithIndex(Environment("DurableJobs", self.connection_env()))
        self.addCleanup(factory.close)
        factory.application_recorder()  # creates the schema
        return factory.tracking_recorder()


@pytest.mark.postgres
class TestPostgresFactory(
    JoinsStrayThreads,
    PostgresSchema,
    upstream.InfrastructureFactoryTestCase[PostgresFactoryWithIndex],
):
    class TrackingRecorderSubclass(PostgresTrackingRecorder):
        pass

    def setUp(self) -> None:
        self.env = Environment("TestCase", self.connection_env())
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = get_topic(PostgresFactoryWithIndex)
        super().setUp()
        # Upstream's case builds recorders in the schema before any application
        # recorder could create it.
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))

    def expected_factory_class(self) -> type[PostgresFactoryWithIndex]:
        return PostgresFactoryWithIndex

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return PostgresSnapshotRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return PostgresApplicationRecorderWithIndex

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return PostgresProcessRecorder
