"""Every error the library raises on purpose is in ``_errors.py``, exported from
``durable_jobs``, and named ``durable_jobs.<Name>`` wherever it is raised."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import pkgutil
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
from trio.testing import MockClock

import durable_jobs as dj
import durable_jobs.maintenance
import durable_jobs.ui
from durable_jobs import _errors


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(dj.__path__, prefix="durable_jobs."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def _library_errors() -> dict[str, type[BaseException]]:
    """Every subclass of DurableJobsError defined in any module of the package."""
    found: dict[str, type[BaseException]] = {}
    for name in _all_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, dj.DurableJobsError):
                found[value.__qualname__] = value
    return found


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception(exc)[-1].strip()


def test_every_library_error_is_defined_in_errors_and_exported() -> None:
    errors = _library_errors()
    assert len(errors) >= 14
    for qualname, cls in errors.items():
        assert vars(_errors).get(qualname) is cls, f"{qualname} is not defined in _errors.py"
        assert getattr(dj, qualname) is cls, f"durable_jobs.{qualname} is missing"
        assert qualname in dj.__all__
        assert cls.__module__ == "durable_jobs", qualname
    assert set(_errors.__all__) == set(errors)


def test_every_error_has_a_docstring() -> None:
    for name in _errors.__all__:
        assert (getattr(dj, name).__doc__ or "").strip(), name


def test_the_modules_that_name_errors_give_the_same_classes() -> None:
    assert durable_jobs.maintenance.ExportFileError is dj.ExportFileError
    assert durable_jobs.maintenance.InstanceExistsError is dj.InstanceExistsError
    assert durable_jobs.maintenance.LiveInstanceError is dj.LiveInstanceError
    assert durable_jobs.ui.ActionRefused is dj.ActionRefused


def test_a_raised_job_not_found_shows_its_public_name() -> None:
    registry = dj.Registry()
    with pytest.raises(dj.JobNotFound) as info:
        registry.get("task", "missing")
    assert repr(type(info.value)) == "<class 'durable_jobs.JobNotFound'>"
    assert _last_line(info.value).startswith("durable_jobs.JobNotFound: No task job named")


async def test_a_job_asked_for_as_another_kind_is_named_with_its_kind(
    autojump_clock: MockClock,
) -> None:
    """``jobs.task(heartbeat)`` with a continuous job said only "No task job named
    'heartbeat' is registered" (a newcomer's review): it says what it is and what to
    call instead."""
    registry = dj.Registry()

    @registry.continuous("heartbeat", state=int, schedule=dj.every(timedelta(minutes=1)))
    async def heartbeat(ctx: dj.ContinuousContext[int]) -> None:
        pass

    async with dj.open_jobs(registry, "memory://") as jobs:
        with pytest.raises(dj.JobNotFound) as info:
            jobs.task(heartbeat)  # type: ignore[call-overload]
    assert "'heartbeat' is a continuous job: use jobs.continuous('heartbeat')." in str(info.value)


def test_a_raised_configuration_error_shows_its_public_name() -> None:
    with pytest.raises(dj.ConfigurationError) as info:
        dj.open_store("nosuchscheme://x")
    assert _last_line(info.value).startswith("durable_jobs.ConfigurationError: ")


def test_a_raised_export_file_error_shows_its_public_name(tmp_path: Path) -> None:
    store = dj.open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with pytest.raises(dj.ExportFileError) as info:
            durable_jobs.maintenance.import_jsonl(store, io.StringIO("not json\n"))
    finally:
        store.close()
    line = _last_line(info.value)
    assert line.startswith("durable_jobs.ExportFileError: "), line
    assert "nothing was written" in line


def test_a_raised_runtime_closed_shows_its_public_name() -> None:
    text = "".join(traceback.format_exception(dj.RuntimeClosed("status()")))
    assert "durable_jobs.RuntimeClosed: status() was refused" in text
    assert "_errors" not in text


def test_the_hierarchy_is_unchanged() -> None:
    assert issubclass(dj.ExportFileError, dj.ValidationError)
    assert issubclass(dj.LockLost, dj.ConcurrencyError)
    assert issubclass(dj.ConcurrencyError, dj.StoreError)
    assert issubclass(dj.JobNotFound, LookupError)
    for name in _errors.__all__:
        assert issubclass(getattr(dj, name), dj.DurableJobsError)


def test_open_jobs_under_asyncio_says_to_use_trio() -> None:
    """Under ``asyncio.run`` it failed with trio's bare "RuntimeError: must be called
    from async context" (a newcomer's review)."""

    async def main() -> None:
        async with dj.open_jobs(dj.Registry(), "memory://"):
            pass  # pragma: no cover

    with pytest.raises(dj.ConfigurationError, match=r"start it with trio\.run\(main\)"):
        asyncio.run(main())
