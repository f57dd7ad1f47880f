"""The JSON-file adapter of docs/stores.md is complete: it passes StoreConformance.

The adapter is the doc's own code block, run as a module (``test_docs_blocks``
also runs it as a program, which drives a job on it).
"""

from __future__ import annotations

import re
import runpy
import tempfile
from pathlib import Path
from typing import Any

import pytest

from durable_jobs.adapters import CrossProcessLocks, DeletesInstances, ListensForAlarms, Store
from durable_jobs.testing import StoreConformance

DOC = Path(__file__).resolve().parents[1] / "docs" / "stores.md"


def _adapter() -> type[Store]:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
    (source,) = [b for b in blocks if "class JsonFileStore(Store)" in b]
    folder = Path(tempfile.mkdtemp(prefix="docs-adapter-"))
    module = folder / "jsonfile_store.py"
    module.write_text(source)
    namespace: dict[str, Any] = runpy.run_path(str(module), run_name="jsonfile_store")
    cls = namespace["JsonFileStore"]
    assert isinstance(cls, type)
    assert issubclass(cls, Store)
    return cls


JsonFileStore = _adapter()


class TestJsonFileStore(StoreConformance):
    store_class = JsonFileStore

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"jsonfile:///{tmp_path}/jobs.json"


def test_it_offers_no_optional_capability() -> None:
    """So the conformance suite checks what a store without them does (purge refused)."""
    for capability in (CrossProcessLocks, ListensForAlarms, DeletesInstances):
        assert not issubclass(JsonFileStore, capability)
