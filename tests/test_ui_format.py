"""How the dashboard words each recorded event (the templates then escape it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from durable_jobs.ui._format import ago, describe, outcome, span, when

AT = "2026-03-02T09:45:30Z"


def test_every_record_is_described() -> None:
    cases = {
        ("started", '{"state": {"n": 0}}'): 'state {"n": 0}',
        ("state_changed", "whole"): '{"n": 1}',
        ("state_changed", "patch"): 'patch [{"op": "replace", "path": "/n", "value": 2}]',
        ("alarm_set", ""): "alarm at 2026-03-02 09:45:30",
        ("resumed", ""): "made due at 2026-03-02 09:45:30 (no handler ran)",
        ("retry_exhausted", ""): "retries exhausted: pause",
        ("flushed", ""): "batch 3: 2 event(s), reason manual",
        ("cleared", ""): "4 event(s) discarded",
    }
    data: dict[tuple[str, str], dict[str, Any]] = {
        ("started", '{"state": {"n": 0}}'): {"state": {"n": 0}},
        ("state_changed", "whole"): {"state": {"n": 1}},
        ("state_changed", "patch"): {"patch": [{"op": "replace", "path": "/n", "value": 2}]},
        ("alarm_set", ""): {"at": AT},
        ("resumed", ""): {"at": AT},
        ("retry_exhausted", ""): {"run_count": 4, "attempt": 3, "action": "pause"},
        ("flushed", ""): {"batch_no": 3, "reason": "manual", "event_count": 2},
        ("cleared", ""): {"discarded_events": 4},
    }
    for key, expected in cases.items():
        assert describe(key[0], data[key]) == expected, key


def test_a_failed_run_names_its_error_and_retry() -> None:
    failed = {
        "handler": "execute",
        "error_type": "billing.APIError",
        "message": "<b>400</b>",
        "will_retry": True,
        "retry_at": AT,
    }
    assert describe("run_failed", failed) == (
        "execute raised billing.APIError: <b>400</b>; retry at 2026-03-02 09:45:30"
    )
    assert describe("run_failed", {**failed, "will_retry": False}).endswith("; no retry")
    assert [outcome(n) for n in ("run_succeeded", "run_failed", "retry_exhausted", "x")] == [
        "ok",
        "failed",
        "exhausted",
        "",
    ]


def test_times_and_spans() -> None:
    now = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    assert when(None) == "-"
    assert when(now + timedelta(milliseconds=250)) == "2026-03-02 10:30:00.250"
    assert when("not a time") == "not a time"
    assert span(timedelta(hours=1, minutes=29, seconds=5)) == "1h 29m"
    assert ago(now - timedelta(minutes=20), now) == "20m ago"
    assert ago(now + timedelta(minutes=3), now) == "in 3m"
    assert ago(now, now) == "now"
