"""The commands that read a whole log or a whole store hold a bounded part of it
(outside review rv4-02, rv4-04, rv4-05).

``history`` kept every record it showed (about 5 KB each: 1.18 GB for an instance of
240,000 records) and ``replay --all`` every instance's report (677 MB for 150,000);
``import`` parsed a line whole before refusing it as too large. They now read a page
at a time (what a table's layout needs is measured first, and the items are kept on
disk until printed, so the output is the same) and refuse an oversized line before
reading it whole.

What is held is counted, not timed: the records (or reports) alive at once and the
rows of the largest table built, with the pages made small. Before the change both
were the whole log (or store).
"""

from __future__ import annotations

import io
import sys
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from eventsourcing.persistence import StoredEvent
from rich.table import Table

from _cli_fixtures import NOW_ISO
from _runtime import note_registry, running, sqlite_of_notes
from durable_jobs import RecordedEvent
from durable_jobs._domain.values import Limits
from durable_jobs._tools import inspector as inspector_module
from durable_jobs._tools import replay as replay_module
from durable_jobs._tools.importer import line_limit
from durable_jobs.cli import _app, run
from durable_jobs.maintenance import ReplayReport, export_jsonl

SENDS = 150  # 3 records each: the event, its run (on_event) and the state it set
PAGE = 20


@pytest.fixture(scope="module")
def long_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("long") / "long.db"
    return sqlite_of_notes(path, (("long", f"n{i}") for i in range(SENDS)))


class Held:
    """The most objects of a class alive at once, and the most rows a table held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        self.objects = 0
        self.rows = 0
        alive: dict[int, weakref.ref[Any]] = {}  # by id: a dataclass may not hash

        def track(obj: object) -> None:
            key = id(obj)
            alive[key] = weakref.ref(obj, lambda _: alive.pop(key, None))
            self.objects = max(self.objects, len(alive))

        init = vars(cls)["__init__"]  # a dataclass: its own

        def counting_init(obj: object, *args: Any, **kwargs: Any) -> None:
            init(obj, *args, **kwargs)
            track(obj)

        def counting_setstate(obj: object, state: dict[str, Any]) -> None:
            # What unpickling does without __setstate__ (it does not call __init__).
            obj.__dict__.update(state)
            track(obj)

        add_row = Table.add_row

        def counting_add_row(table: Table, *cells: Any, **kwargs: Any) -> None:
            add_row(table, *cells, **kwargs)
            self.rows = max(self.rows, table.row_count)

        monkeypatch.setattr(cls, "__init__", counting_init)
        monkeypatch.setattr(cls, "__setstate__", counting_setstate, raising=False)
        monkeypatch.setattr(Table, "add_row", counting_add_row)

    def reset(self) -> None:
        self.objects = self.rows = 0


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)
    monkeypatch.setenv("DURABLE_JOBS_NOW", NOW_ISO)

    def invoke(*args: str, code: int = 0) -> str:
        capsys.readouterr()
        got = run(list(args))
        captured = capsys.readouterr()
        assert got == code, captured.err
        return captured.out

    return invoke


def test_history_holds_a_page_of_records(
    long_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = ("--store", long_url, "history", "task", "note", "long")
    whole = {extra: cli(*command, *extra) for extra in ((), ("--json",), ("--states",))}
    held = Held(monkeypatch, RecordedEvent)
    monkeypatch.setattr(inspector_module, "HISTORY_PAGE", PAGE, raising=False)
    monkeypatch.setattr(_app, "TABLE_PAGE", PAGE, raising=False)
    for extra, before in whole.items():
        held.reset()
        # The same output, laid out and printed a page at a time.
        assert cli(*command, *extra) == before
        assert held.objects <= 2 * PAGE + 2, extra  # 451 before
        assert held.rows <= PAGE + 2, extra  # 451 before


def test_a_run_state_before_the_latest_snapshot_is_rebuilt_a_page_at_a_time(
    long_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store keeps an instance's latest snapshot only (here at the log's end): the
    # state a run shown started from is rebuilt from the log's first record.
    command = ("--store", long_url, "history", "task", "note", "long", "--from", "396")
    shown = {extra: cli(*command, "--to", "399", extra) for extra in ("--json", "--states")}
    held = Held(monkeypatch, StoredEvent)
    monkeypatch.setattr(inspector_module, "HISTORY_PAGE", PAGE, raising=False)
    for extra, before in shown.items():
        held.reset()
        assert cli(*command, "--to", "399", extra) == before
        # A page, or the records after the latest snapshot (at most its interval, 100)
        # that the instance now is read with: 395 before (the log up to the run).
        assert held.objects <= 100 + 2, extra


INSTANCES = 120


@pytest.fixture(scope="module")
def many_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("many") / "many.db"
    return sqlite_of_notes(path, ((f"i{i:03d}", "x") for i in range(INSTANCES)))


def test_replay_all_holds_a_page_of_reports(
    many_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = ("--store", many_url, "replay", "--all")
    whole = {extra: cli(*command, *extra) for extra in ((), ("--json",))}
    held = Held(monkeypatch, ReplayReport)
    monkeypatch.setattr(_app, "TABLE_PAGE", PAGE, raising=False)
    for extra, before in whole.items():
        held.reset()
        # The same output, laid out and printed a page at a time.
        assert cli(*command, *extra) == before
        assert f"{INSTANCES} instance(s) checked" in before or f'"checked": {INSTANCES}' in before
        # A report is remade (replace()) as its checks go: a few per instance.
        assert held.objects <= PAGE + 10, extra  # every report (121) before
        assert held.rows <= PAGE + 2, extra  # 120 before


BIG = 6 * 1024 * 1024  # the characters of the value in the line too long


@pytest.fixture(scope="module")
def long_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export whose third line's event is a string of BIG characters."""

    async def export() -> str:
        async with running(note_registry(), "memory://") as jobs:
            await jobs.task("note").send("big", "PLACE")
            out = io.StringIO()
            export_jsonl(jobs.store, out)
            return out.getvalue()

    text = trio.run(export, clock=trio.testing.MockClock(autojump_threshold=0))
    lines = text.splitlines(keepends=True)
    assert '"PLACE"' in lines[2]
    path = tmp_path_factory.mktemp("import") / "long-line.jsonl"
    path.write_text("".join([*lines[:2], lines[2].replace("PLACE", "x" * BIG), *lines[3:]]))
    return path


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_import_refuses_a_line_too_long_before_reading_it_whole(
    source: str,
    long_line: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("COLUMNS", "DURABLE_JOBS_STORE"):
        monkeypatch.delenv(name, raising=False)
    limits = ("--max-event-bytes", "1024", "--max-state-bytes", "1024")
    target = tmp_path / "target.db"
    if source == "stdin":
        monkeypatch.setattr(sys, "stdin", io.StringIO(long_line.read_text()))
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = run(
            [
                "--store",
                f"sqlite:///{target}",
                "import",
                "-" if source == "stdin" else str(long_line),
                *limits,
            ]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert code == 1
    limit = line_limit(Limits(max_event_bytes=1024, max_state_bytes=1024))
    assert limit < BIG // 4
    # At most a line of the limit's length, read and decoded: 6 MiB and more before
    # (the line read whole, then parsed).
    assert peak < 4 * limit + 2_000_000, peak
    name = "<stream>" if source == "stdin" else str(long_line)  # a StringIO has no name
    assert err.startswith(f"error: {name}, line 3: the line is longer than 1,064,960 characters")
    assert err.rstrip().endswith("set to them; nothing was written.")
    assert out == ""
    assert not target.exists()  # nothing written, not even a new file


def test_replay_of_a_long_log_holds_a_page_of_it(
    long_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = ("--store", long_url, "replay", "task", "note", "long")
    whole = {extra: cli(*command, *extra) for extra in ((), ("--json",))}
    held = Held(monkeypatch, StoredEvent)
    monkeypatch.setattr(replay_module, "REPLAY_PAGE", PAGE, raising=False)
    for extra, before in whole.items():
        held.reset()
        assert cli(*command, *extra) == before
        # A page, or the records after the latest snapshot (at most its interval, 100)
        # that the snapshot-based rebuild reads: the whole log (451) before.
        assert held.objects <= 100 + 2, extra
