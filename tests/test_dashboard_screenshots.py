"""scripts/dashboard_screenshots.py runs: a store filled in virtual time, the dashboard,
headless Chromium, one PNG per page (written to a temporary directory here)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "dashboard_screenshots.py"
PAGES = ("instances", "instance", "alarms", "stats")


def test_the_screenshot_script_writes_a_png_per_page(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for page in PAGES:
        data = (tmp_path / f"dashboard-{page}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1280
        assert 150 < height <= 2200
        # The committed screenshot in docs/ exists, and the page shows it.
        assert (ROOT / "docs" / "img" / f"dashboard-{page}.png").is_file()
        assert f"img/dashboard-{page}.png" in (ROOT / "docs" / "debugging.md").read_text()
