"""Every benchmark script still runs: each with ``--quick`` on memory, SQLite and Postgres.

A smoke test only: it asserts that each script exits 0 and printed its table,
never a speed. The scripts run side by side (most of their time is waiting on
commits, child processes and short real-time runs). A peer of the optional
``bench`` extra that is not installed is left out by the script itself, with
a printed note.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
TABLE = re.compile(r"^\| (store|system) \|.*\n\|(---\|)+$", re.MULTILINE)


@pytest.mark.postgres
@pytest.mark.slow
def test_every_benchmark_script_runs_quick(postgres_url: str) -> None:
    assert len(SCRIPTS) >= 6, SCRIPTS
    env = {**os.environ, "DURABLE_JOBS_TEST_POSTGRES_URL": postgres_url}
    procs = {
        script.name: subprocess.Popen(
            [sys.executable, str(script), "--quick", "--stores", "memory,sqlite,postgres"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in SCRIPTS
    }
    failures = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        if proc.returncode != 0 or not out.startswith("## ") or not TABLE.search(out):
            failures.append(f"{name}: exit {proc.returncode}\n{out[-1500:]}\n{err[-1500:]}")
        elif "note:" in out:
            print(f"{name}: " + "; ".join(line for line in out.splitlines() if "note:" in line))
    assert not failures, "\n\n".join(failures)
