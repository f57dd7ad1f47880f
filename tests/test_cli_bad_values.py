"""CLI input an outside review found accepted or answered with a traceback.

Each is a one-line error (JSON with --json) that writes nothing. Real SQLite files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trio.testing import MockClock

import durable_jobs as dj
from _cli_fixtures import fill, invoke


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)


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


def usage_error(code: int, out: str, err: str, *words: str) -> None:
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("duration", ["1000000000d", "99999999999999999999d", "9" * 400])
def test_tail_for_too_long_is_a_usage_error(
    sqlite_url: str, duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(sqlite_url).close()
    usage_error(*invoke(capsys, "--store", sqlite_url, "tail", "--for", duration), "too long")
    code, _, err = invoke(capsys, "--store", sqlite_url, "tail", "--for", duration, "--json")
    assert code == 2 and "too long" in json.loads(err)["error"]


def test_tail_poll_and_after_bounds(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    dj.open_store(sqlite_url).close()
    tail = ("--store", sqlite_url, "tail", "--for", "0")
    for poll in ("0s", "0", "0.5ms"):
        usage_error(*invoke(capsys, *tail, "--poll", poll), "--poll", "too short")
    assert invoke(capsys, *tail, "--poll", "1ms")[0] == 0
    usage_error(*invoke(capsys, *tail, "--after", str(2**63)), "--after")
    usage_error(*invoke(capsys, *tail, "--after", "9" * 23), "--after")
    assert invoke(capsys, *tail, "--after", str(2**63 - 1))[0] == 0


async def test_history_version_bounds(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], autojump_clock: MockClock
) -> None:
    await fill(sqlite_url)
    history = ("--store", sqlite_url, "history", "continuous", "sync", "acct-ok")
    for option in ("--from", "--to"):
        for value in ("0", "-1", "9" * 23):
            usage_error(*invoke(capsys, *history, option, value), option)
    usage_error(*invoke(capsys, *history, "--from", "5", "--to", "2"), "--from 5", "--to 2")
    code, out, err = invoke(capsys, *history, "--from", "2", "--to", "2", "--json")
    assert code == 0, err
    assert [r["version"] for r in json.loads(out)["records"]] == [2]


async def test_an_instance_not_found_points_where_listing_finds_something(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], autojump_clock: MockClock
) -> None:
    """A misspelt job name was told to try `durable-jobs list --job <the same name>`,
    which finds nothing either (a newcomer's review): with no instance of that job at
    all, it says so and points to `stats`, which lists the jobs the store has."""
    await fill(sqlite_url)
    code, _, err = invoke(capsys, "--store", sqlite_url, "status", "continuous", "sync", "nope")
    assert code == 1
    assert "see `durable-jobs list --kind continuous --job sync`" in err
    code, _, err = invoke(capsys, "--store", sqlite_url, "status", "continuous", "synk", "acct-ok")
    assert code == 1
    assert "nor any instance of a continuous job named 'synk'" in err
    assert "`durable-jobs stats --kind continuous`" in err
    assert "list --kind continuous --job synk" not in err


#: Out of range for every numeric option below (and a few that are not numbers at all).
_HUGE = ["9223372036854775807", "9223372036854775808", "99999999999999999999999", "9" * 400]
_OUT_OF_RANGE = ["0", "-1", *_HUGE, "nan", "inf", "1e400", "1.5"]
_INSTANCE = ("continuous", "sync", "acct-ok")


def _numeric_cases(dump: str) -> list[tuple[str, ...]]:
    """Every numeric option of every command, each with values it must refuse."""
    cases: list[tuple[str, ...]] = []
    for value in _OUT_OF_RANGE:
        cases += [
            ("import", dump, "--max-event-bytes", value),
            ("import", dump, "--max-state-bytes", value),
            ("list", "--limit", value),
            ("alarms", "--limit", value),
            ("state", *_INSTANCE, "--at", value),
            ("diff", *_INSTANCE, value, "1"),
            ("diff", *_INSTANCE, "1", value),
            ("terminate", *_INSTANCE, "--wait", {"0": "3601", "1.5": "-0.5"}.get(value, value)),
            ("trigger", *_INSTANCE, "--wait", {"0": "3601", "1.5": "-0.5"}.get(value, value)),
            ("tail", "--for", "0", "--poll", value if value != "1.5" else "0.5ms"),
        ]
        if value not in ("0", "1.5"):  # a valid --last, --count, --for (tail --for 0: once)
            cases += [
                ("tail", "--for", value),
                ("tail", "--for", "0", "--count", value) if value[0] in "-n0i1" else (),
            ]
        if value != _HUGE[0]:  # the largest version or position there can be
            cases += [
                ("history", *_INSTANCE, "--from", value),
                ("history", *_INSTANCE, "--to", value),
                ("tail", "--for", "0", "--after", value if value != "0" else "-5"),
            ]
        if value not in ("0", *_HUGE):  # --last 9...9: every record
            cases.append(("history", *_INSTANCE, "--last", value))
    cases += [("ui", "--port", value) for value in ("-1", "65536", "9" * 400, "nan")]
    cases += [("ui", "--max-live", value) for value in ("-1", "nan", "1.5")]  # any N >= 0 goes
    return [case for case in cases if case]


async def test_out_of_range_numbers_are_one_line_errors_that_write_nothing(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], autojump_clock: MockClock
) -> None:
    """`import --max-state-bytes 99999999999999999999999` (or `--max-event-bytes 2**63-1`)
    ended in an OverflowError traceback, also with --json (an outside review). Every
    numeric option of every command, out of range, is a usage error (exit 2) or the
    library's one-line error (exit 1), JSON with --json, and writes nothing."""
    await fill(sqlite_url)
    dump = tmp_path / "dump.jsonl"
    assert invoke(capsys, "--store", sqlite_url, "export", "-o", str(dump))[0] == 0
    before = dump.read_text().splitlines()[1:]  # the header line holds the time
    target = tmp_path / "new.db"
    for case in _numeric_cases(str(dump)):
        store = f"sqlite:///{target}" if case[0] == "import" else sqlite_url
        code, out, err = invoke(capsys, "--store", store, *case)
        assert code in (1, 2), (case, code, out, err)
        assert "Traceback" not in err, case
        if code == 1:
            one_error_line(err)
        if case[0] != "ui":  # the dashboard takes no --json
            code_json, _, err = invoke(capsys, "--store", store, *case, "--json")
            assert code_json == code, case
            assert json.loads(err)["exit_code"] == code, case
        assert not target.exists(), case
    assert invoke(capsys, "--store", sqlite_url, "export", "-o", str(dump))[0] == 0
    assert dump.read_text().splitlines()[1:] == before  # nothing written


@pytest.mark.parametrize("option", ["--max-event-bytes", "--max-state-bytes"])
def test_import_size_limits_name_their_range(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_text("")
    target = tmp_path / "new.db"
    for value in ("9223372036854775807", str(2**40 + 1)):
        usage_error(
            *invoke(capsys, "--store", f"sqlite:///{target}", "import", str(dump), option, value),
            option,
            "1<=x<=1099511627776",
        )
    assert not target.exists()
