"""Our three stores against the public store conformance suite."""

from __future__ import annotations

import pytest

from durable_jobs.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url
