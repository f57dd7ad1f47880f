"""The dashboard over plain HTTP requests: which Host it answers, what a confirmed form may do.

A real ``durable-jobs ui`` process on a real SQLite file (tests/_ui_fixtures.py).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import durable_jobs as dj
from _ui_fixtures import dashboard, fill_store

WAIT = 20  # seconds a request may take before the test fails


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return fill_store(tmp_path / "jobs.db")


def _fetch(
    url: str, *, host: str | None = None, data: dict[str, str] | None = None
) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _status(url: str, kind: str, job: str, instance_id: str) -> str:
    with dj.Inspector(url) as inspector:
        summary = inspector.status(kind, job, instance_id)
    assert summary is not None
    return summary.status


def test_a_foreign_host_header_is_refused_before_any_page_or_action(store_url: str) -> None:
    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions", "--allow-host", "dash.example.org") as served:
        port = served.base.rsplit(":", 1)[1]
        ours = (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "dash.example.org")
        for host in ours:
            status, _ = _fetch(served.base + "/", host=host)
            assert status == 200, host
        foreign = f"rebind.evil.example:{port}"
        status, body = _fetch(served.base + "/", host=foreign)
        assert status == 400
        assert "Unknown Host header" in body
        confirm = served.base + "/confirm?" + urllib.parse.urlencode(form)
        status, body = _fetch(confirm, host=foreign)
        assert status == 400
        assert "csrf_token" not in body
        status, _ = _fetch(served.base + "/action", host=foreign, data=form)
        assert status == 400
    assert _status(store_url, "continuous", "notes", "page") == "running"
