"""The README's demo runs, and a second run picks up where the first stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _run(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO)], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_survives_a_restart(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert "(fresh)" in first
    assert "run #1 -> beats=1" in first
    assert "flushing 3 events (max_events)" in first
    assert (tmp_path / "demo-data" / "jobs.db").exists()
    second = _run(tmp_path)
    assert "restarted: picking up" in second
    assert "run #2 -> beats=2" in second
    assert "2 flush(es) so far" in second
    assert "event #2" in second
