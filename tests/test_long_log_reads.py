"""Reading the latest records of a long log reads only those (outside review rv4-01/03).

``status``, ``history --last N`` and the dashboard's instance page read a long-lived
instance's whole log (9 to 14 s and 220 MB on 240,001 records) to show a summary, 5
records or the latest 200. They now read the instance from its latest snapshot and
the records shown from the log's tail: here a bounded number of stored rows (events
and snapshots) is decoded, whatever the log's length. (A run's ``state_before``,
shown by ``--json`` and ``--states``, still rebuilds the instance before that run.)
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import durable_jobs as dj
from _cli_fixtures import NOW_ISO
from _runtime import sqlite_of_notes
from durable_jobs._store.mapper import JsonMapper
from durable_jobs.cli import run
from durable_jobs.ui import create_app
from durable_jobs.ui._app import TIMELINE_PAGE

SENDS = 1000  # 3 records each: the event, its run (on_event) and the state it set


@pytest.fixture(scope="module")
def long_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("long") / "long.db"
    return sqlite_of_notes(path, (("long", f"n{i}") for i in range(SENDS)))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many stored rows were decoded (one item per row), from now on."""
    rows: list[int] = []
    original = JsonMapper.to_domain_event

    def counting(self: JsonMapper, stored: Any) -> Any:
        rows.append(1)
        return original(self, stored)

    monkeypatch.setattr(JsonMapper, "to_domain_event", counting)
    return rows


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)
    monkeypatch.setenv("DURABLE_JOBS_NOW", NOW_ISO)

    def invoke(url: str, *args: str) -> str:
        capsys.readouterr()
        code = run(["--store", url, *args])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out

    return invoke


def _latest(url: str) -> int:
    with dj.Inspector(url) as inspector:
        summary = inspector.status("task", "note", "long")
    assert summary is not None
    return summary.version


def test_status_and_the_last_records_read_the_tail_only(
    long_url: str, cli: Any, decoded: list[int]
) -> None:
    last = _latest(long_url)
    assert last == 3 * SENDS + 1
    whole = cli(long_url, "history", "task", "note", "long")  # reads everything
    whole_json = json.loads(cli(long_url, "history", "task", "note", "long", "--json"))

    decoded.clear()
    status = cli(long_url, "status", "task", "note", "long")
    assert "events received  1000" in status
    assert len(decoded) <= 510  # the latest snapshot and the last 500 records
    decoded.clear()
    shown = cli(long_url, "history", "task", "note", "long", "--last", "5")
    assert len(decoded) <= 10
    # The same rows as the whole history's last five.
    assert shown.splitlines()[0].endswith(f": 5 of {last} records, now idle")
    assert shown.splitlines()[1:] == [*whole.splitlines()[1:3], *whole.splitlines()[-5:]]
    document = json.loads(
        cli(long_url, "history", "task", "note", "long", "--last", "5", "--json")
    )
    assert document["records"] == whole_json["records"][-5:]


def test_the_dashboard_instance_page_reads_one_page(long_url: str, decoded: list[int]) -> None:
    last = _latest(long_url)

    async def view(store: dj.Store) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            params = {"kind": "task", "job": "note", "id": "long"}
            return await client.get("/instance", params=params)

    with dj.open_store(long_url) as store:
        decoded.clear()
        page = trio.run(view, store)
    assert page.status_code == 200
    assert f'<tr data-key="v{last - TIMELINE_PAGE + 1}"' in page.text
    assert f'<tr data-key="v{last - TIMELINE_PAGE}"' not in page.text
    assert len(decoded) <= TIMELINE_PAGE + 10  # the page's records and the snapshot
