"""CLI input an outside review found accepted or answered with a traceback.

Each is a one-line error (JSON with --json) that writes nothing. Real SQLite files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import durable_jobs as dj
from durable_jobs.cli import run


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "args",
    [["list"], ["alarms"], ["stats"], ["export"], ["trigger", "task", "t", "x"]],
)
def test_memory_store_is_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(capsys, "--store", "memory://", *args)
    assert (code, out) == (1, "")
    assert "memory://" in one_error_line(err)
    code, out, err = invoke(capsys, "--store", "memory://", *args, "--json")
    assert code == 1
    assert json.loads(err)["type"] == "ConfigurationError"


def test_import_into_memory_store_is_refused(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(sqlite_url).close()
    dump = tmp_path / "dump.jsonl"
    assert invoke(capsys, "--store", sqlite_url, "export", "-o", str(dump))[0] == 0
    code, out, err = invoke(capsys, "--store", "memory://", "import", str(dump))
    assert (code, out) == (1, "")
    assert "memory://" in one_error_line(err)
