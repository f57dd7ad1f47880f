"""Take the dashboard screenshots in docs/img/ from a store filled in virtual time.

Usage: ``python scripts/dashboard_screenshots.py [OUTPUT_DIR]`` (default: docs/img).

The store is the one docs/debugging.md walks through (``debugging_doc.fill``:
the runtime in virtual time from a fixed start, in a temporary directory).
The dashboard serves it in this process, its clock fixed at the walk-through's
"now", and Debian's headless Chromium (``scripts/ensure-chromium``) takes one
PNG per page. ``tests/test_dashboard_screenshots.py`` runs this script.
"""

from __future__ import annotations

import base64
import os
import queue
import sys
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import trio
import trio.testing
from debugging_doc import NOW, STORE, fill
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import durable_jobs as dj
from durable_jobs.ui import serve

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "docs" / "img"
WIDTH = 1280
MAX_HEIGHT = 2200

ACME = urlencode({"kind": "continuous", "job": "invoice-sync", "id": "acme"})
#: File name and page (each shot is the whole page, up to MAX_HEIGHT pixels).
SHOTS = [
    ("dashboard-instances.png", "/"),
    ("dashboard-instance.png", f"/instance?{ACME}&from=3&to=8"),
    ("dashboard-alarms.png", "/alarms"),
    ("dashboard-stats.png", "/stats"),
]


def start_server(
    store: dj.Store, now: datetime
) -> tuple[str, trio.lowlevel.TrioToken, trio.Event]:
    """Serve the dashboard in a thread; its URL, and what stops it."""
    found: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: serve(
                    store,
                    port=0,
                    now=lambda: now,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            found.put((urls[0], trio.lowlevel.current_trio_token(), stop))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            found.put(exc)

    threading.Thread(target=run, name="dashboard", daemon=True).start()
    got = found.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    return got


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shoot(driver: webdriver.Chrome, base: str, output: Path) -> list[Path]:
    written = []
    for name, path in SHOTS:
        driver.get(base + path)
        # The whole page (not the window): down to the end of its content, up to MAX_HEIGHT.
        bottom = driver.execute_script(
            "return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"
        )
        height = min(int(bottom), MAX_HEIGHT)
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
            },
        )
        target = output / name
        target.write_bytes(base64.b64decode(shot["data"]))
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    output = Path(argv[0]).resolve() if argv else DEFAULT_OUTPUT
    output.mkdir(parents=True, exist_ok=True)
    now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    with tempfile.TemporaryDirectory() as tmp:
        previous = Path.cwd()
        os.chdir(tmp)
        try:
            trio.run(fill, STORE, clock=trio.testing.MockClock(autojump_threshold=0))
            with dj.open_store(STORE) as store:
                base, token, stop = start_server(store, now)
                driver = browser()
                try:
                    written = shoot(driver, base, output)
                finally:
                    driver.quit()
                    trio.from_thread.run_sync(stop.set, trio_token=token)
        finally:
            os.chdir(previous)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
