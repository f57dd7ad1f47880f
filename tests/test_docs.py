"""The docs do not lie: every ```python block of the guide and the README runs and asserts.

Each block is a complete program: it runs in a fresh namespace (as ``__main__``,
like ``python snippet.py``) in an empty temporary working directory, and must
contain at least one ``assert`` so that running it checks what the text claims.
"""

from __future__ import annotations

import ast
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "guide.md", ROOT / "README.md"]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, source)`` of every ```python block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = [
    pytest.param(path, source, id=f"{path.name}:{line}")
    for path in DOCS
    for line, source in python_blocks(path)
]


def test_the_guide_and_the_readme_have_examples() -> None:
    counts = {path.name: len(python_blocks(path)) for path in DOCS}
    assert counts["guide.md"] >= 10, counts
    assert counts["README.md"] >= 1, counts


@pytest.mark.parametrize(("path", "source"), BLOCKS)
def test_python_block_runs(
    path: Path, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = ast.parse(source, filename=str(path))
    assert any(isinstance(node, ast.Assert) for node in ast.walk(tree)), (
        "every example must check what it shows with at least one assert"
    )
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
