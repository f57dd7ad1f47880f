"""The store conformance suite: what every store adapter must do.

Use it from a pytest module::

    from durable_jobs.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mystore://{tmp_path}/db"   # a fresh, empty location per test

Each test opens the URL with :func:`durable_jobs.open_store` (or, if the
subclass sets ``store_class``, with that adapter class, so an adapter can be
checked before its entry point is installed). For durable
stores (``Store.durable``) the suite opens the same URL twice to play two
processes; for a non-durable store it uses one store object.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from durable_jobs._store.base import Store
from durable_jobs._store.registry import open_store
from durable_jobs._store.urls import StoreURL
from durable_jobs.testing._conformance_basics import BasicChecks
from durable_jobs.testing._conformance_log import LogChecks

__all__ = ["StoreConformance"]


# pytest collects inherited tests base by base in reverse MRO order: BasicChecks' first.
class StoreConformance(LogChecks, BasicChecks):
    """Checks every store adapter must pass. Override the ``store_url`` fixture."""

    #: Events between snapshots used by the suite (small, so snapshots happen).
    snapshot_interval: ClassVar[int] = 7
    #: The adapter class to open ``store_url`` with; None: the one installed for its
    #: scheme (entry-point group ``durable_jobs.stores``), as ``open_store`` finds it.
    store_class: ClassVar[type[Store] | None] = None

    def open(self, url: str, **options: Any) -> Store:
        """Open ``url`` the way this suite does (see :attr:`store_class`)."""
        if self.store_class is None:
            return open_store(url, **options)
        return self.store_class.from_url(StoreURL.parse(url), **options)

    @pytest.fixture
    def store_url(self) -> str:
        """A URL of a fresh, empty store location (override in your subclass)."""
        raise NotImplementedError(
            "Override the store_url fixture in your StoreConformance subclass."
        )

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        """The store at ``store_url``, opened for the test and closed after it."""
        with self.open(store_url, snapshot_interval=self.snapshot_interval) as store:
            yield store

    @pytest.fixture
    def second_store(self, store: Store, store_url: str) -> Iterator[Store]:
        """A second handle on the same data: another process for durable stores."""
        if not store.durable:
            yield store
            return
        with self.open(store_url, snapshot_interval=self.snapshot_interval) as other:
            yield other
