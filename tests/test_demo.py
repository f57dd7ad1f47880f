"""The demo runs on the real runtime, and a second run picks up where the first stopped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _run(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def _beats(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"heartbeat/demo\s+beat #(\d+)", output)]


@pytest.mark.slow
def test_demo_survives_a_restart(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert "fresh start, no previous state" in first
    assert "restarted" not in first
    assert "heartbeat/demo  started, first run due now" in first
    beats = _beats(first)
    assert beats[:2] == [1, 2], first  # every(1 s): at least two beats in a run
    assert beats == list(range(1, len(beats) + 1))
    assert "flush by max_events: 3 clicks ['home', 'pricing', 'signup']" in first
    assert "flush by flush_after: 2 clicks ['docs', 'blog']" in first
    assert "send note (new instance)" in first
    assert "execute #1 from its alarm" in first
    assert "snoozed: scheduled itself again" in first
    assert "execute #2 from its alarm" in first
    assert "digest/demo     idle, 2 batches flushed in all" in first
    assert "The observer saw" in first
    assert (tmp_path / "demo-data" / "jobs.db").exists()

    second = _run(tmp_path)
    assert "restarted, picked up the previous run's state" in second
    assert f"heartbeat/demo has {beats[-1]} runs" in second
    assert "fresh start" not in second
    assert "already exists (created=False)" in second
    # The heartbeat continues from the stored count, it does not start over.
    again = _beats(second)
    assert again[0] == beats[-1] + 1, second
    assert f"continuing from the {beats[-1]} beats stored by the previous run" in second
    assert "send note (existing instance)" in second
    assert "execute #3 from its alarm" in second
    assert "digest/demo     idle, 4 batches flushed in all" in second
    assert "notes received: 2" in second
