"""docs/testing.md does not lie: every ```python block runs (as ``__main__``) and asserts.

Like ``test_docs.py`` for the guide: each block is a complete program, run in a
fresh namespace in an empty temporary working directory.
"""

from __future__ import annotations

import ast
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "testing.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, source)`` of every ```python block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = [pytest.param(source, id=f"testing.md:{line}") for line, source in python_blocks(DOC)]


def test_the_testing_page_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("source", BLOCKS)
def test_python_block_runs(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = ast.parse(source, filename=str(DOC))
    assert any(isinstance(node, ast.Assert) for node in ast.walk(tree)), (
        "every example must check what it shows with at least one assert"
    )
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
