"""The examples run: the web app survives restarts (graceful and kill -9), the nightly report runs.

The web app (``examples/notify_app.py``) is started as its own process on
127.0.0.1 (port 0: a free one; it prints the address it got), driven over
HTTP with httpx, stopped with SIGTERM and then killed with SIGKILL, and
restarted each time on the same store: every notification and reminder
accepted before is still there, and each is delivered exactly once.
Nothing here waits on the clock: the app's windows are minutes long, and the
test asks for the flushes and the reminder (``flush``, ``trigger``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class App:
    """One process of the example app."""

    def __init__(self, store: str, outbox: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / "notify_app.py"),
                "--store",
                store,
                "--outbox",
                str(outbox),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        with ThreadPoolExecutor(1) as pool:
            line = pool.submit(self.process.stdout.readline).result(timeout=120)
        if not line.startswith("listening on http://127.0.0.1:"):
            self.process.kill()
            _, err = self.process.communicate(timeout=60)
            pytest.fail(f"the app did not start: {line!r}\n{err}")
        self.url = line.split()[-1]
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def post(self, path: str, body: Any = None, key: str | None = None) -> Any:
        headers = {"idempotency-key": key} if key else {}
        response = self.http.post(path, json=body, headers=headers)
        assert response.status_code in (200, 202), response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self, how: signal.Signals) -> int:
        self.http.close()
        self.process.send_signal(how)
        _, err = self.process.communicate(timeout=120)
        if how is signal.SIGTERM:
            assert "Traceback" not in err, err
        return self.process.returncode


@contextmanager
def cleanup(apps: list[App]) -> Iterator[None]:
    try:
        yield
    finally:
        for app in apps:
            if app.process.poll() is None:
                app.process.kill()
                app.process.communicate(timeout=60)


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_the_web_app_loses_nothing_across_restarts(tmp_path: Path, durable_store_url: str) -> None:
    outbox = tmp_path / "outbox.jsonl"
    apps: list[App] = []
    with cleanup(apps):
        apps.append(first := App(durable_store_url, outbox))
        assert first.get("/health") == {"ok": True}
        for n in range(3):
            added = first.post("/users/ann/notifications", {"text": f"ann {n}"}, key=f"a{n}")
            assert added["event_count"] == n + 1 and not added["duplicate"]
        repeat = first.post("/users/ann/notifications", {"text": "ann 0"}, key="a0")
        assert repeat["duplicate"] is True and repeat["event_count"] == 3
        first.post("/users/bob/notifications", {"text": "bob 0"})
        sent = first.post("/users/ann/reminders", {"text": "call Bob", "in_seconds": 3600})
        assert sent["created"] is True
        bad = first.http.post("/users/ann/notifications", json={"txt": "typo"})
        assert bad.status_code == 422
        assert first.stop(signal.SIGTERM) == 0  # a graceful stop

        apps.append(second := App(durable_store_url, outbox))
        ann = second.get("/users/ann/notifications")
        assert (ann["status"], ann["pending"]) == ("debouncing", ["ann 0", "ann 1", "ann 2"])
        reminder = second.get("/users/ann/reminders")
        assert reminder["status"] == "active"
        assert reminder["scheduled_at"] == sent["scheduled_at"]
        assert reminder["reminder"] == {"pending": "call Bob", "sent": 0}
        second.post("/users/ann/notifications", {"text": "ann 3"}, key="a3")
        second.post("/users/ann/notifications", {"text": "ann 1"}, key="a1")  # a duplicate
        assert second.stop(signal.SIGKILL) == -signal.SIGKILL  # a crash

        apps.append(third := App(durable_store_url, outbox))
        ann = third.get("/users/ann/notifications")
        assert ann["pending"] == ["ann 0", "ann 1", "ann 2", "ann 3"]
        assert third.get("/users/bob/notifications")["pending"] == ["bob 0"]
        assert outbox_lines(outbox) == []  # nothing was due yet

        assert third.post("/users/ann/notifications/flush")["event_count"] == 4
        assert third.post("/users/bob/notifications/flush")["flushed"] is True
        assert third.post("/users/ann/reminders/trigger")["triggered"] is True
        assert third.get("/users/ann/notifications")["status"] == "idle"
        assert third.get("/users/ann/reminders")["reminder"] == {"pending": None, "sent": 1}
        assert third.stop(signal.SIGTERM) == 0

    assert sorted(outbox_lines(outbox), key=lambda m: (m["to"], m["kind"])) == [
        {"to": "ann", "kind": "digest", "texts": ["ann 0", "ann 1", "ann 2", "ann 3"]},
        {"to": "ann", "kind": "reminder", "text": "call Bob"},
        {"to": "bob", "kind": "digest", "texts": ["bob 0"]},
    ]


def test_the_nightly_report_runs_in_virtual_time() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "nightly_report.py"), "--simulate-days", "4"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 06:30 in Paris: 05:30 UTC in winter, 04:30 UTC once summer time starts (29 March).
    assert lines == [
        "report for 2026-03-27 sent at 2026-03-28 06:30 CET (05:30 UTC): 3 orders, 120.00 EUR",
        "report for 2026-03-28 sent at 2026-03-29 06:30 CEST (04:30 UTC): 0 orders, 0.00 EUR",
        "report for 2026-03-29 sent at 2026-03-30 06:30 CEST (04:30 UTC): 1 orders, 15.50 EUR",
        "report for 2026-03-30 sent at 2026-03-31 06:30 CEST (04:30 UTC): 0 orders, 0.00 EUR",
    ], done.stdout
