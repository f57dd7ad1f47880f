"""``durable-jobs export --output FILE``: where the file goes, what happens to one already there.

A real SQLite store; the files, links and FIFO are real too.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import durable_jobs as dj
from durable_jobs.cli import run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> tuple[int, str, str]:
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def url(sqlite_url: str) -> str:
    dj.open_store(sqlite_url).close()
    return sqlite_url


def _is_export(text: str) -> bool:
    lines = [json.loads(line) for line in text.splitlines()]
    return bool(lines[0]["type"] == "header") and lines[-1] == {
        "type": "footer",
        "instances": 0,
        "events": 0,
    }


def test_a_missing_directory_is_a_one_line_error(url: str, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.jsonl"
    code, stdout, err = cli("--store", url, "export", "-o", str(out))
    assert (code, stdout) == (1, "")
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "does not exist" in err
    code, _, err = cli("--store", url, "export", "--json", "-o", str(out))
    assert code == 1
    assert json.loads(err)["exit_code"] == 1
    assert not out.parent.exists()
    code, _, err = cli("--store", url, "export", "-o", str(tmp_path / "jobs.db" / "x.jsonl"))
    assert code == 1 and err.startswith("error: Cannot write --output") and "Traceback" not in err


def test_an_existing_file_keeps_its_mode(url: str, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "keep.jsonl"
    out.write_text("old\n")
    out.chmod(0o644)
    code, _, err = cli("--store", url, "export", "-o", str(out))
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert _is_export(out.read_text())
    new = tmp_path / "new.jsonl"
    assert cli("--store", url, "export", "-o", str(new))[0] == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_a_symlink_is_kept_and_its_target_written(url: str, cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    code, _, err = cli("--store", url, "export", "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and link.readlink() == target
    assert _is_export(target.read_text())


def test_a_fifo_is_written_in_place(url: str, cli: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # A reader is there first (non-blocking), so the export's open does not wait;
    # the small export fits in the pipe's buffer.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, _, err = cli("--store", url, "export", "-o", str(fifo))
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(reader, 65536):
                chunks.append(chunk)
    finally:
        os.close(reader)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert _is_export(b"".join(chunks).decode())
    assert list(tmp_path.glob("*.part")) == []


@pytest.mark.parametrize("spelling", ["same", "link", "wal", "relative"])
def test_the_store_itself_is_never_the_output(
    url: str, cli: Any, tmp_path: Path, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export "reads only": ``-o`` naming the SQLite store's own file (or a link to
    it, or the WAL beside it) is refused, and the store still opens afterwards."""
    database = Path(url.removeprefix("sqlite:///"))
    before = database.read_bytes()
    if spelling == "same":
        out = str(database)
    elif spelling == "link":
        link = tmp_path / "alias.jsonl"
        link.symlink_to(database)
        out = str(link)
    elif spelling == "wal":
        out = str(database) + "-wal"
    else:
        monkeypatch.chdir(database.parent)
        out = database.name
    code, stdout, err = cli("--store", url, "export", "-o", out)
    assert (code, stdout) == (1, "")
    assert err.startswith("error: Cannot write --output") and "store's own file" in err, err
    assert err.count("\n") == 1
    assert database.read_bytes() == before
    with dj.open_store(url) as store:
        assert store.list_instances() == []
    code, _, err = cli("--store", url, "export", "-o", str(tmp_path / "fine.jsonl"))
    assert code == 0, err


def test_an_import_into_a_path_no_file_can_have_is_a_one_line_error(
    cli: Any, tmp_path: Path
) -> None:
    export = tmp_path / "e.jsonl"
    export.write_text(
        '{"type":"header","format":"durable-jobs-export","version":1,"plaintext":true,'
        '"encrypted_store":false}\n{"type":"footer","instances":0,"events":0}\n'
    )
    code, _, err = cli("--store", "sqlite:///%00x.db", "import", str(export))
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x00" not in err
