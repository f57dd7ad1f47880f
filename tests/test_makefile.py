"""``make demo`` installs only the runtime dependencies; ``make test`` the dev tools too.

Checked with ``make -n`` (print, run nothing) on a copy of the Makefile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _plan(cwd: Path, target: str) -> list[str]:
    done = subprocess.run(
        ["make", "-n", target], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    )
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def _copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_demo_installs_the_runtime_only(tmp_path: Path) -> None:
    cwd = _copy(tmp_path)
    assert _plan(cwd, "demo") == [".venv/bin/python -m pip install -e ."]
    assert _plan(cwd, "test") == [".venv/bin/python -m pip install -e '.[dev]'"]


def test_after_make_test_the_demo_installs_nothing(tmp_path: Path) -> None:
    cwd = _copy(tmp_path)
    venv = cwd / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    later = time.time() + 10
    for stamp in (".dev-stamp", ".runtime-stamp"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    assert _plan(cwd, "demo") == []
    assert _plan(cwd, "test") == []
    # Only the runtime installed (a demo run): the tests add the dev tools.
    (venv / ".dev-stamp").unlink()
    assert _plan(cwd, "demo") == []
    assert _plan(cwd, "test") == [".venv/bin/python -m pip install -e '.[dev]'"]
