"""Testing the example jobs with the durable-jobs pytest plugin, in virtual time.

The plugin comes with durable-jobs (``pip install 'durable-jobs[testing]'`` for
pytest and pytest-trio). Each class below tells it which registry to serve by
overriding ``durable_jobs_registry``; ``durable_jobs_harness`` is then an open
harness on the store the ``durable_jobs_store`` mark names: a fresh one per
test, and one run of the test per store. ``autojump_clock`` makes time virtual.

    pytest examples/test_example_jobs.py
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nightly_report
import notify_app
import pytest
import trio.testing

import durable_jobs as dj
from durable_jobs.testing import Harness
from durable_jobs.testing.pytest_plugin import HarnessRunner


def read(outbox: Path) -> list[dict[str, Any]]:
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "outbox.jsonl"
    monkeypatch.setenv(notify_app.OUTBOX_ENV, str(path))
    return path


@pytest.mark.durable_jobs_store("memory", "sqlite")
class TestNotifications:
    @pytest.fixture
    def durable_jobs_registry(self) -> dj.Registry:
        return notify_app.registry

    async def test_one_digest_ten_minutes_after_the_first_event(
        self, durable_jobs_harness: Harness, autojump_clock: trio.testing.MockClock, outbox: Path
    ) -> None:
        notifications = durable_jobs_harness.debounce(notify_app.send_digest)
        await notifications.add("ann", notify_app.Notification(text="new follower"))
        await durable_jobs_harness.advance(timedelta(minutes=9))
        await notifications.add("ann", notify_app.Notification(text="a like"))
        assert read(outbox) == []
        await durable_jobs_harness.advance(timedelta(minutes=1))
        assert read(outbox) == [
            {"to": "ann", "kind": "digest", "texts": ["new follower", "a like"]}
        ]
        [flush] = durable_jobs_harness.flushes(notify_app.send_digest, "ann")
        assert (flush.reason, flush.event_count) == ("flush_after", 2)

    async def test_twenty_events_flush_at_once(
        self, durable_jobs_harness: Harness, autojump_clock: trio.testing.MockClock, outbox: Path
    ) -> None:
        notifications = durable_jobs_harness.debounce(notify_app.send_digest)
        for n in range(20):
            await notifications.add("bob", notify_app.Notification(text=f"n{n}"))
        await durable_jobs_harness.wait_idle()
        [digest] = read(outbox)
        assert len(digest["texts"]) == 20
        assert (await notifications.status("bob")).status == "idle"

    async def test_a_reminder_survives_a_restart(
        self, durable_jobs_harness: Harness, autojump_clock: trio.testing.MockClock, outbox: Path
    ) -> None:
        sent_at = durable_jobs_harness.now()
        reminder = notify_app.Reminder(text="call Bob", in_seconds=3600)
        await durable_jobs_harness.task(notify_app.remind).send("ann", reminder)
        await durable_jobs_harness.restart(down_for=timedelta(minutes=20))
        await durable_jobs_harness.advance(timedelta(hours=1))
        assert read(outbox) == [{"to": "ann", "kind": "reminder", "text": "call Bob"}]
        [run] = durable_jobs_harness.runs(notify_app.remind, "ann")
        assert run.at == sent_at + timedelta(hours=1)

    def test_without_pytest_trio(self, durable_jobs_run: HarnessRunner, outbox: Path) -> None:
        async def scenario(harness: Harness) -> str:
            notifications = harness.debounce(notify_app.send_digest)
            await notifications.add("cy", notify_app.Notification(text="hello"))
            return (await notifications.flush("cy")).reason

        assert durable_jobs_run(scenario) == "manual"
        assert read(outbox) == [{"to": "cy", "kind": "digest", "texts": ["hello"]}]


@pytest.mark.durable_jobs_store("sqlite")
class TestNightlyReport:
    @pytest.fixture
    def durable_jobs_registry(self) -> dj.Registry:
        return nightly_report.registry

    @pytest.fixture
    def durable_jobs_options(self) -> dict[str, Any]:
        return {"start": datetime(2026, 3, 27, 12, tzinfo=UTC)}

    async def test_a_report_missed_while_down_is_sent_once_back(
        self,
        durable_jobs_harness: Harness,
        autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr(nightly_report, "clock", durable_jobs_harness.clock)
        report = durable_jobs_harness.continuous(nightly_report.nightly_report)
        await report.start("paris", nightly_report.Cursor(day=date(2026, 3, 27)))
        await durable_jobs_harness.advance(timedelta(days=1))  # Saturday 06:30 CET
        # Down from Saturday noon to Monday noon: Sunday's and Monday's 06:30 are missed.
        await durable_jobs_harness.restart(down_for=timedelta(days=2))
        await durable_jobs_harness.wait_idle()  # one catch-up run, at noon
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(" sent at ")[0] for line in lines] == [
            "report for 2026-03-27",
            "report for 2026-03-28",
            "report for 2026-03-29",
        ]
        assert lines[0].endswith("(05:30 UTC): 3 orders, 120.00 EUR")
        assert lines[2].startswith("report for 2026-03-29 sent at 2026-03-30 14:00 CEST")
        report = durable_jobs_harness.continuous(nightly_report.nightly_report)
        state = await report.get_state("paris")
        assert state == nightly_report.Cursor(day=date(2026, 3, 30))
        status = await report.status("paris")
        assert status.next_run_at == datetime(2026, 3, 31, 4, 30, tzinfo=UTC)
