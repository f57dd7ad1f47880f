"""The public adapter contract (``durable_jobs.adapters``): what it exports, the
optional capabilities the runtime looks for, and the one driver-error mapping."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

import durable_jobs as dj
from durable_jobs import adapters
from durable_jobs.stores.memory import MemoryStore, _MemoryFactory
from durable_jobs.stores.postgres import PostgresStore
from durable_jobs.stores.sqlite import SQLiteStore

STORES = Path(__file__).resolve().parents[1] / "stores"


def test_our_adapters_import_durable_jobs_only_through_the_public_contract() -> None:
    """memory, sqlite and postgres are written against ``durable_jobs.adapters`` (and
    their own private modules), like a third party's adapter would be."""
    found: dict[str, set[str]] = {}
    for path in sorted(STORES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            for name in names:
                if name.startswith("durable_jobs"):
                    found.setdefault(path.name, set()).add(name)
    allowed = {"durable_jobs.adapters"}
    own = {n for n in set().union(*found.values()) if n.startswith("durable_jobs.stores._")}
    wrong = {f: sorted(n - allowed - own) for f, n in found.items() if n - allowed - own}
    assert wrong == {}
    assert {"memory.py", "sqlite.py", "postgres.py"} <= set(found)


def test_every_exported_name_is_there_and_documented() -> None:
    for name in adapters.__all__:
        obj = getattr(adapters, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name
    assert adapters.Store is dj.Store
    assert adapters.StoreError is dj.StoreError


def test_capabilities_of_our_adapters() -> None:
    both = (adapters.CrossProcessLocks, adapters.ListensForAlarms)
    for capability in (*both, adapters.DeletesInstances):
        assert issubclass(PostgresStore, capability), capability
    for cls in (MemoryStore, SQLiteStore):
        assert not any(issubclass(cls, c) for c in both), cls
        assert issubclass(cls, adapters.DeletesInstances)


def test_the_base_store_offers_no_capability() -> None:
    for capability in (
        adapters.CrossProcessLocks,
        adapters.ListensForAlarms,
        adapters.DeletesInstances,
    ):
        assert not issubclass(adapters.Store, capability)


def test_a_shared_store_without_cross_process_locks_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="CrossProcessLocks"):

        class Unsafe(adapters.Store):
            scheme = "unsafe"
            shared = True

            def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
                raise NotImplementedError


def test_purge_on_a_store_without_the_capability_is_a_store_error() -> None:
    class NoPurge(adapters.Store):
        scheme = "nopurge"

        def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
            return _MemoryFactory(env)

    with NoPurge(adapters.StoreURL.parse("nopurge://")) as store:
        assert not isinstance(store, adapters.DeletesInstances)
        with pytest.raises(dj.StoreError, match="cannot delete instances"):
            store.delete_instance(uuid4(), version=1)


# ---- driver_errors ---------------------------------------------------------------------


def test_driver_errors_maps_any_exception_to_store_error_naming_it() -> None:
    with pytest.raises(dj.StoreError) as caught, adapters.driver_errors("Could not read X"):
        raise OSError("disk on fire")
    assert str(caught.value) == "Could not read X: OSError: disk on fire"
    assert isinstance(caught.value.__cause__, OSError)


def test_driver_errors_removes_the_password_from_the_message_and_the_chain() -> None:
    secret = "pa/ss w0rd"

    def connect() -> None:
        try:
            raise ValueError(f"login with {secret} refused")
        except ValueError as inner:
            raise RuntimeError(f"connect failed ({secret})") from inner

    with (
        pytest.raises(dj.StoreError) as caught,
        adapters.driver_errors("Could not connect", password=secret),
    ):
        connect()
    assert secret not in str(caught.value)
    cause = caught.value.__cause__
    assert cause is not None
    assert secret not in str(cause)
    assert cause.__cause__ is not None
    assert secret not in str(cause.__cause__)
    assert "***" in str(caught.value)


def test_driver_errors_lets_our_errors_and_base_exceptions_through() -> None:
    with pytest.raises(dj.ConcurrencyError), adapters.driver_errors("x"):
        raise dj.ConcurrencyError("ours")
    with pytest.raises(KeyboardInterrupt), adapters.driver_errors("x"):
        raise KeyboardInterrupt


def test_driver_errors_with_a_callable_raises_what_it_returns() -> None:
    def conflict(exc: Exception) -> dj.DurableJobsError:
        return dj.ConcurrencyError(f"taken: {adapters.describe_error(exc)}")

    with (
        pytest.raises(dj.ConcurrencyError, match="taken: KeyError"),
        adapters.driver_errors(conflict),
    ):
        raise KeyError("v3")


def test_nothing_raised_nothing_mapped() -> None:
    with adapters.driver_errors("x"):
        value = 1
    assert value == 1
