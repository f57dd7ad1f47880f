"""Every public name has a docstring, so the API reference (docs/api.md) shows none missing.

Public: the names in ``__all__`` of ``durable_jobs``, ``durable_jobs.adapters``,
``durable_jobs.testing`` and ``durable_jobs.maintenance``, and every public method and property
defined on their classes (``StoreConformance``'s test methods excepted: their
names say what they check). A docstring inherited from a base class does not
count: the reference shows only what the class itself says.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import durable_jobs
import durable_jobs.adapters
import durable_jobs.maintenance
import durable_jobs.testing
from durable_jobs.testing import pytest_plugin

MODULES: list[ModuleType] = [
    durable_jobs,
    durable_jobs.adapters,
    durable_jobs.testing,
    durable_jobs.maintenance,
    pytest_plugin,
]


def own_doc(obj: object) -> str | None:
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        return obj.__doc__
    return getattr(obj, "__doc__", None)


def undocumented() -> list[str]:
    missing = []
    for module in MODULES:
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        for name in module.__all__:
            obj = getattr(module, name)
            if name == "__version__" or not (
                callable(obj) or inspect.isclass(obj) or inspect.ismodule(obj)
            ):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_") or attr.startswith("test_"):
                    continue
                if not (
                    callable(value) or isinstance(value, (property, classmethod, staticmethod))
                ):
                    continue
                if not (own_doc(value) or "").strip():
                    missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert undocumented() == []
