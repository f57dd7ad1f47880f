"""What `durable-jobs import --resume` says it did (real SQLite files).

An outside review: `import --resume` of a file already imported in full wrote nothing
(right) but printed "Imported 4000 instance(s), 20000 event(s) ...", as a real import.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trio.testing import MockClock

import durable_jobs as dj
from _cli_fixtures import fill, invoke
from durable_jobs.maintenance import import_jsonl


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)


async def test_a_resumed_import_says_what_it_wrote_and_what_it_skipped(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], autojump_clock: MockClock
) -> None:
    await fill(sqlite_url)  # 4 instances: 2 of continuous job sync, and 2 others
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    assert invoke(capsys, "--store", sqlite_url, "export", "-o", str(whole))[0] == 0
    assert (
        invoke(capsys, "--store", sqlite_url, "export", "--job", "sync", "-o", str(part))[0] == 0
    )
    events = json.loads(whole.read_text().splitlines()[-1])["events"]
    sync_events = json.loads(part.read_text().splitlines()[-1])["events"]
    target = f"sqlite:///{tmp_path / 'target.db'}"

    code, out, err = invoke(capsys, "--store", target, "import", str(part))  # interrupted
    assert code == 0, err
    assert out.startswith(f"Imported 2 instance(s), {sync_events} event(s) into")

    code, out, err = invoke(capsys, "--store", target, "import", "--resume", str(whole))
    assert code == 0, err
    assert out.startswith(f"Imported 2 instance(s), {events - sync_events} event(s) into")
    assert "finishing an earlier import (the 2 instance(s), " in out
    assert f"the store has all 4 instance(s), {events} event(s)." in " ".join(out.split())

    for extra in ([], ["--json"]):  # finished already: nothing new
        code, out, err = invoke(
            capsys, "--store", target, "import", "--resume", str(whole), *extra
        )
        assert code == 0, err
        if extra:
            assert json.loads(out) == {
                "instances": 4,
                "events": events,
                "skipped_instances": 4,
                "skipped_events": events,
                "verified": True,
                "store": target,
            }
        else:
            assert out.startswith("Nothing new to import: "), out
            assert "Imported" not in out
            assert "nothing was written" in " ".join(out.split())

    with dj.open_store(target) as store:
        summary = import_jsonl(store, whole, resume=True)
    assert (summary.written_instances, summary.written_events) == (0, 0)
    assert (summary.instances, summary.events) == (4, events)

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, out, err = invoke(capsys, "--store", fresh, "import", "--json", str(whole))
    assert code == 0, err
    document = json.loads(out)
    assert (document["skipped_instances"], document["skipped_events"]) == (0, 0)
