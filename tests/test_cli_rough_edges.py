"""CLI details a new user tripped on: rounded durations, JSON errors, usage and
table wording, and tail speaking like history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from trio.testing import MockClock

from _cli_fixtures import NOW_ISO, fill, invoke
from durable_jobs.cli._render import _offset, _span, _took


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)
    monkeypatch.setenv("DURABLE_JOBS_NOW", NOW_ISO)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.25, "0.25s"),
        (2.9, "3s"),
        (2.999, "3s"),
        (59.6, "1m"),
        (119.99, "2m"),
        (90.4, "1m 30s"),
        (3599.7, "1h"),
        (2 * 3600 - 20, "2h"),
        (2 * 86400 - 1, "2d"),
        (86400 + 3600 + 61, "1d 1h"),
    ],
)
def test_durations_are_rounded_not_cut(seconds: float, shown: str) -> None:
    assert _span(timedelta(seconds=seconds)) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (8e-05, "80µs"),
        (0.0000125, "12.5µs"),
        (0.0125, "12.5ms"),
        (0.25, "250ms"),
        (1.25, "1.25s"),
        (59.4, "59.4s"),
        (125, "2m 5s"),
        (None, "-"),
        ("n/a", "n/a"),
    ],
)
def test_handler_durations_read_at_any_scale(seconds: object, shown: str) -> None:
    # History and tail printed a handler that took 80 µs as "ok in 8e-05s".
    assert _took(seconds) == shown
    assert "e-" not in _took(seconds)


def test_an_alarm_3s_ahead_reads_plus_3s() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert _offset(now + timedelta(seconds=2.9995), now) == "+3s"


async def test_json_errors_are_json_with_the_same_exit_code(
    sqlite_url: str, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill(sqlite_url)
    for args, code in [
        (("status", "task", "reminder", "nobody"), 1),  # an error of ours
        (("list", "--kind", "cron"), 1),
        (("list", "--no-such-option"), 2),  # a usage error
    ]:
        plain = invoke(capsys, "--store", sqlite_url, *args)
        assert plain[0] == code and plain[1] == ""
        assert not plain[2].lstrip().startswith("{")
        as_json = invoke(capsys, "--store", sqlite_url, *args, "--json")
        assert as_json[0] == code and as_json[1] == ""
        document = json.loads(as_json[2])
        assert document["exit_code"] == code and document["error"] and document["type"]
    # No store at all: a configuration error, as JSON too.
    code, out, err = invoke(capsys, "--store", "sqlite:///no/such/file.db", "list", "--json")
    assert code == 1 and out == ""
    assert json.loads(err)["type"] == "ConfigurationError"


def test_replay_usage_shows_id_optional(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "replay", "--help")
    assert code == 0
    usage = out.splitlines()[0]
    assert usage.endswith("[JOB] [ID]"), usage


async def test_human_tables_have_no_trailing_spaces(
    sqlite_url: str, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill(sqlite_url)
    for args in [
        ("list",),
        ("status", "continuous", "sync", "acct-bad"),
        ("history", "continuous", "sync", "acct-bad"),
        ("alarms",),
        ("stats",),
        ("replay", "--all"),
    ]:
        code, out, err = invoke(capsys, "--store", sqlite_url, *args)
        assert code == 0, err
        assert out.strip()
        padded = [line for line in out.splitlines() if line != line.rstrip()]
        assert padded == [], (args, padded)


async def test_tail_says_try_and_formats_times_like_history(
    sqlite_url: str, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill(sqlite_url)
    code, out, err = invoke(capsys, "--store", sqlite_url, "tail", "--after", "0", "--for", "0s")
    assert code == 0, err
    assert "attempt" not in out
    assert "T" not in "".join(line.split()[1] for line in out.splitlines())  # no ISO times
    failed = [line for line in out.splitlines() if "run_failed" in line]
    assert failed
    assert "execute run 1 try 1 failed: ConnectionError" in failed[0], failed[0]
    assert "; retry at 2026-01-01 00:00:10" in failed[0], failed[0]
    code, history, _ = invoke(
        capsys, "--store", sqlite_url, "history", "continuous", "sync", "acct-bad"
    )
    assert "execute run 1 try 1 failed: ConnectionError" in history


@pytest.mark.parametrize("command", ["list", "alarms"])
def test_limit_help_says_its_range(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """`--limit` is refused over 10000: its help says so."""
    code, out, _ = invoke(capsys, command, "--help")
    assert code == 0
    assert "from 1 to 10000" in " ".join(out.split())
