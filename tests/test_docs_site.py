"""The docs site builds strictly: a broken link or anchor fails ``make docs`` (and ``make test``).

Checked on a copy of the site's sources: it builds as it is, and one bad link
or one bad anchor added to a page makes the build fail. (``mkdocs build
--strict --quiet`` would not fail: quiet hides the warnings strict counts, so
the Makefile must not pass ``--quiet``; the last test checks that.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "out"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "mkdocs_hooks.py", tmp_path / "scripts")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    (tmp_path / "src").symlink_to(ROOT / "src")
    return tmp_path


@pytest.mark.slow
def test_a_broken_link_or_anchor_fails_the_build(sources: Path) -> None:
    done = build(sources)
    assert done.returncode == 0, done.stderr
    assert "durable_jobs.open_jobs" in (sources / "out" / "api" / "index.html").read_text()
    assert "durable-jobs doctor" in (sources / "out" / "cli" / "index.html").read_text()

    page = sources / "docs" / "concepts.md"
    original = page.read_text(encoding="utf-8")
    page.write_text(original + "\nSee [nowhere](no-such-page.md).\n", encoding="utf-8")
    done = build(sources)
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr

    page.write_text(original + "\nSee [retries](retries.md#no-such-anchor).\n", encoding="utf-8")
    done = build(sources)
    assert done.returncode != 0
    assert "no-such-anchor" in done.stderr


def test_make_docs_is_strict_and_not_quiet() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    [line] = [x for x in makefile.splitlines() if "mkdocs build" in x]
    assert "--strict" in line
    assert "--quiet" not in line and " -q" not in line


def test_every_repository_file_the_docs_name_exists() -> None:
    """A page naming e.g. examples/x.py or tests/x.py names a file that exists."""
    root = Path(__file__).resolve().parents[1]
    named = re.compile(r"\b((?:examples|tests|scripts|benchmarks|property_tests)/[\w./-]+\.py)\b")
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    missing = [
        f"{page.name}: {path}"
        for page in pages
        for path in named.findall(page.read_text(encoding="utf-8"))
        if not (root / path).is_file()
    ]
    assert missing == []
