"""docs/debugging.md is what scripts/debugging_doc.py writes: real CLI output, never stale.

If this fails after a change to the CLI or the runtime, regenerate the page with
``python scripts/debugging_doc.py`` and review the diff.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "debugging_doc.py"
PAGE = ROOT / "docs" / "debugging.md"


def test_the_debugging_page_is_generated_from_real_output(tmp_path: Path) -> None:
    written = tmp_path / "debugging.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(written)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = PAGE.read_text(encoding="utf-8")
    actual = written.read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/debugging.md is stale: run `python scripts/debugging_doc.py` and review the diff"
    )
    for step in ("list", "status", "history", "state", "diff", "alarms", "stats"):
        assert f"$ durable-jobs {step}" in actual
