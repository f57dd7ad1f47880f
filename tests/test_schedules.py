"""Schedules: `every`, `cron` (checked against a brute-force reference) and `catch_up`."""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from durable_jobs._domain.schedules import Cron, Every, Schedule, catch_up, cron, every
from durable_jobs._errors import ConfigurationError

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- brute-force reference ---------------------------------------------------------------------
#
# A cron expression matches a set M of local wall-clock readings. The reference walks real time
# in steps of one minute (or one second) and decides at each instant s whether it fires:
#   * interval expressions (minute or hour field starts with "*"): s fires iff reading(s) is in M;
#   * fixed-time expressions: wall time w fires at the first instant whose reading is >= w, so s
#     fires iff some w in M lies in (highest reading before s, reading(s)]. That is w itself when
#     w exists, its first occurrence when it is repeated, and the end of the gap when skipped.


def _field(spec: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for term in spec.split(","):
        rng, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if rng == "*":
            first, last = lo, hi
        elif "-" in rng:
            first, last = (int(x) for x in rng.split("-"))
        else:
            first = int(rng)
            last = hi if step_text else first
        values.update(range(first, last + 1, step))
    return values


@functools.cache
def _matcher(expr: str) -> tuple[bool, Callable[[datetime], bool]]:
    fields = expr.split()
    minute, hour, dom, month, dow = fields[:5]
    seconds = _field(fields[5], 0, 59) if len(fields) == 6 else {0}
    minutes, hours = _field(minute, 0, 59), _field(hour, 0, 23)
    doms, months = _field(dom, 1, 31), _field(month, 1, 12)
    dows = {d % 7 for d in _field(dow, 0, 7)}
    day_and = dom.startswith("*") or dow.startswith("*")

    def matches(w: datetime) -> bool:
        dom_ok = w.day in doms
        dow_ok = (w.weekday() + 1) % 7 in dows
        day_ok = (dom_ok and dow_ok) if day_and else (dom_ok or dow_ok)
        return (
            w.second in seconds
            and w.minute in minutes
            and w.hour in hours
            and w.month in months
            and day_ok
        )

    wall_clock = not minute.startswith("*") and not hour.startswith("*")
    return wall_clock, matches


@functools.cache
def _readings(tz: str, start: datetime, end: datetime, step: timedelta) -> tuple[datetime, ...]:
    zone = ZoneInfo(tz)
    count = (end - start) // step
    return tuple((start + i * step).astimezone(zone).replace(tzinfo=None) for i in range(count))


@functools.cache
def reference_fires(
    expr: str, tz: str, start: datetime, end: datetime, step: timedelta = MINUTE
) -> tuple[datetime, ...]:
    """Fire instants in (start, end), by brute force over every `step` of real time."""
    warmup = start - timedelta(hours=4)
    readings = _readings(tz, warmup, end, step)
    wall_clock, matches = _matcher(expr)
    fires: list[datetime] = []
    highest = readings[0]
    for i, reading in enumerate(readings[1:], start=1):
        if wall_clock:
            fired = False
            w = highest + step
            while w <= reading and not fired:
                fired = matches(w)
                w += step
            highest = max(highest, reading)
        else:
            fired = matches(reading)
        instant = warmup + i * step
        if fired and instant > start:
            fires.append(instant)
    return tuple(fires)


def implementation_fires(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    t = schedule.next_fire(start)
    while t < end:
        fires.append(t)
        t = schedule.next_fire(t)
    return fires


@functools.cache
def dst_windows(tz: str, half_width: timedelta) -> tuple[tuple[datetime, datetime], ...]:
    """Windows around each 2024 UTC-offset change of `tz`, in whole minutes."""
    zone = ZoneInfo(tz)
    windows = []
    t = utc(2024, 1, 1)
    offset = t.astimezone(zone).utcoffset()
    while t.year == 2024:
        t += timedelta(hours=1)
        if (new := t.astimezone(zone).utcoffset()) != offset:
            offset = new
            windows.append((t - half_width, t + half_width))
    assert len(windows) == 2
    return tuple(windows)


DAY_WINDOWS = [(tz, w) for tz in ZONES for w in dst_windows(tz, timedelta(hours=20))]
EXPRESSIONS = [
    "0 9 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "0 2 * * *",
    "59 1 * * *",
    "45 2 * * *",
    "15,45 1-3 * * *",
    "0,30 2-3 * * *",
    "0 0-23/2 * * *",
    "45 1 * * 0",
    "*/15 * * * *",
    "0 * * * *",
    "10 * * * *",
    "*/7 1-2 * * *",
    "5 */2 * * *",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize(("tz", "window"), DAY_WINDOWS)
def test_cron_matches_brute_force_across_dst(
    expr: str, tz: str, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    expected = reference_fires(expr, tz, start, end)
    assert expected, "every expression fires at least once a day"
    assert tuple(implementation_fires(cron(expr, tz), start, end)) == expected


SECOND_EXPRESSIONS = ["30 1 * * * */20", "0 2 * * * 30", "15 2 * * * 0,45", "* * * * * 0,30"]
SECOND_WINDOWS = [
    (tz, w)
    for tz in ("America/New_York", "Australia/Lord_Howe")
    for w in dst_windows(tz, timedelta(minutes=45))
]


@pytest.mark.parametrize("expr", SECOND_EXPRESSIONS)
@pytest.mark.parametrize(("tz", "window"), SECOND_WINDOWS)
def test_six_field_cron_matches_second_by_second_reference(
    expr: str, tz: str, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    expected = reference_fires(expr, tz, start, end, step=SECOND)
    assert tuple(implementation_fires(cron(expr, tz), start, end)) == expected


@settings(max_examples=300, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    zone_window=st.sampled_from(DAY_WINDOWS),
    offset=st.integers(min_value=0, max_value=40 * 3600 * 10**6),
)
def test_cron_next_fire_is_the_first_reference_fire_after(
    expr: str, zone_window: tuple[str, tuple[datetime, datetime]], offset: int
) -> None:
    tz, (start, end) = zone_window
    after = start + timedelta(microseconds=offset)
    later = [t for t in reference_fires(expr, tz, start, end) if t > after]
    assume(later)
    assert cron(expr, tz).next_fire(after) == later[0]


def _field_strategy(hi: int) -> st.SearchStrategy[str]:
    value = st.integers(0, hi)
    return st.one_of(
        st.just("*"),
        st.builds("*/{}".format, st.integers(1, hi)),
        value.map(str),
        st.lists(value, min_size=2, max_size=4, unique=True).map(
            lambda vs: ",".join(map(str, sorted(vs)))
        ),
        # "a-b/n" with a < b: cron libraries disagree on the degenerate "a-a/n".
        st.tuples(value, value, st.integers(1, 7))
        .filter(lambda t: t[0] != t[1])
        .map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"),
    )


@settings(max_examples=100, deadline=None)
@given(
    minute=_field_strategy(59),
    hour=_field_strategy(23),
    zone_window=st.sampled_from(DAY_WINDOWS),
    offset=st.integers(min_value=0, max_value=30 * 3600),
)
def test_random_cron_matches_brute_force(
    minute: str, hour: str, zone_window: tuple[str, tuple[datetime, datetime]], offset: int
) -> None:
    tz, (start, end) = zone_window
    expr = f"{minute} {hour} * * *"
    after = start + timedelta(seconds=offset)
    later = [t for t in reference_fires(expr, tz, start, end) if t > after]
    assume(later)
    assert cron(expr, tz).next_fire(after) == later[0]


@settings(max_examples=200, deadline=None)
@given(
    expr=st.sampled_from([*EXPRESSIONS, "0 0 29 2 *", "0 12 * * 1-5", "30 6 1 * *"]),
    tz=st.sampled_from([*ZONES, "UTC", "Asia/Kolkata", "America/Sao_Paulo"]),
    after=st.datetimes(
        min_value=datetime(1980, 1, 1), max_value=datetime(2070, 1, 1), timezones=st.just(UTC)
    ),
)
def test_cron_next_fire_is_strictly_later_aware_utc_and_repeatable(
    expr: str, tz: str, after: datetime
) -> None:
    schedule = cron(expr, tz)
    fire = schedule.next_fire(after)
    assert fire > after
    assert fire.tzinfo is UTC
    assert schedule.next_fire(after.astimezone(ZoneInfo(tz))) == fire
    assert schedule.next_fire(fire - timedelta(microseconds=1)) == fire


# --- cron examples -----------------------------------------------------------------------------


def test_x11_cron_in_a_time_zone_across_dst() -> None:
    """X11 Cron in a time zone across DST."""
    schedule = cron("0 9 * * *", tz="America/New_York")
    new_york = ZoneInfo("America/New_York")
    fires = implementation_fires(schedule, utc(2024, 1, 1), utc(2025, 1, 1))
    assert len(fires) == 366
    assert all(a < b for a, b in itertools.pairwise(fires))
    for fire in fires:
        local = fire.astimezone(new_york)
        assert (local.hour, local.minute, local.second) == (9, 0, 0)
        summer = local.dst() != timedelta(0)
        assert fire.hour == (13 if summer else 14)
    assert utc(2024, 3, 9, 14) in fires
    assert utc(2024, 3, 10, 13) in fires
    assert utc(2024, 11, 2, 13) in fires
    assert utc(2024, 11, 3, 14) in fires


def test_time_skipped_by_spring_forward_fires_at_the_end_of_the_gap() -> None:
    schedule = cron("30 2 * * *", tz="America/New_York")
    assert schedule.next_fire(utc(2024, 3, 10, 6)) == utc(2024, 3, 10, 7)  # 03:00 EDT
    assert schedule.next_fire(utc(2024, 3, 10, 7)) == utc(2024, 3, 11, 6, 30)


def test_time_skipped_by_a_thirty_minute_shift_fires_at_the_end_of_the_gap() -> None:
    schedule = cron("15 2 * * *", tz="Australia/Lord_Howe")
    # 2024-10-06 02:00 LHST (+10:30) became 02:30 LHDT (+11:00).
    assert schedule.next_fire(utc(2024, 10, 5, 12)) == utc(2024, 10, 5, 15, 30)


def test_fixed_time_in_a_repeated_hour_fires_once() -> None:
    schedule = cron("30 1 * * *", tz="America/New_York")
    assert schedule.next_fire(utc(2024, 11, 3, 5)) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT
    assert schedule.next_fire(utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 4, 6, 30)
    # From inside the second 01:00-02:00 (EST), 01:45 has already fired at 01:45 EDT.
    assert cron("45 1 * * *", "America/New_York").next_fire(utc(2024, 11, 3, 6, 10)) == utc(
        2024, 11, 4, 6, 45
    )


def test_interval_expression_fires_in_both_copies_of_a_repeated_hour() -> None:
    schedule = cron("*/30 * * * *", tz="America/New_York")
    fires = implementation_fires(schedule, utc(2024, 11, 3, 4, 59), utc(2024, 11, 3, 7, 1))
    assert fires == [utc(2024, 11, 3, 5), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6),
                     utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 7)]  # fmt: skip


def test_six_field_expression_has_seconds_last() -> None:
    schedule = cron("0 9 * * * 30")
    assert schedule.next_fire(utc(2024, 5, 1, 8)) == utc(2024, 5, 1, 9, 0, 30)
    assert schedule.next_fire(utc(2024, 5, 1, 9, 0, 30)) == utc(2024, 5, 2, 9, 0, 30)


def test_cron_next_fire_is_strictly_after_a_fire_time_and_its_fractions() -> None:
    schedule = cron("* * * * *")
    assert schedule.next_fire(utc(2024, 5, 1, 9)) == utc(2024, 5, 1, 9, 1)
    half = utc(2024, 5, 1, 8, 59, 59) + timedelta(microseconds=500_000)
    assert schedule.next_fire(half) == utc(2024, 5, 1, 9)


def test_cron_accepts_names_and_normalises_whitespace() -> None:
    assert cron("  0  9 * *   mon-fri ") == cron("0 9 * * mon-fri")
    # 2024-05-04 is a Saturday.
    assert cron("0 9 * * mon-fri").next_fire(utc(2024, 5, 4)) == utc(2024, 5, 6, 9)


def test_cron_repr_equality_and_describe() -> None:
    schedule = cron("0 9 * * *", tz="America/New_York")
    assert repr(schedule) == "cron('0 9 * * *', tz='America/New_York')"
    assert str(schedule) == repr(schedule)
    assert schedule == Cron("0 9 * * *", "America/New_York")
    assert hash(schedule) == hash(Cron("0 9 * * *", "America/New_York"))
    assert schedule != cron("0 9 * * *")
    assert schedule.describe() == {"type": "cron", "expr": "0 9 * * *", "tz": "America/New_York"}
    json.dumps(schedule.describe())
    assert isinstance(schedule, Schedule)


@pytest.mark.parametrize(
    "expr",
    ["", "0 9 * *", "0 9 * * * * *", "61 * * * *", "0 24 * * *", "a b c d e", "0 0 31 2 *",
     "*/0 * * * *", "0 9 * * * 60"],
)  # fmt: skip
def test_invalid_cron_expression_is_a_configuration_error(expr: str) -> None:
    with pytest.raises(ConfigurationError, match=r"(?i)cron expression") as info:
        cron(expr)
    assert "e.g." in str(info.value)


def test_invalid_cron_field_chains_the_parser_error() -> None:
    with pytest.raises(ConfigurationError, match="61") as info:
        cron("61 * * * *")
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Not A Zone"])
def test_unknown_time_zone_is_a_configuration_error(tz: str) -> None:
    with pytest.raises(ConfigurationError, match="time zone") as info:
        cron("0 9 * * *", tz=tz)
    assert info.value.__cause__ is not None


def test_cron_rejects_non_string_arguments() -> None:
    with pytest.raises(ConfigurationError, match="string"):
        cron(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="IANA"):
        cron("0 9 * * *", tz=ZoneInfo("UTC"))  # type: ignore[arg-type]


def test_next_fire_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron("0 9 * * *").next_fire(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        every(MINUTE).next_fire(datetime(2024, 1, 1))


# --- every -------------------------------------------------------------------------------------


@given(
    seconds=st.floats(min_value=1e-3, max_value=1e7, allow_nan=False),
    after=st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")]),
    ),
)
def test_every_next_fire_is_after_plus_duration_in_utc(seconds: float, after: datetime) -> None:
    duration = timedelta(seconds=seconds)
    fire = every(duration).next_fire(after)
    assert fire - after == duration  # elapsed time, not wall-clock arithmetic
    assert fire == after.astimezone(UTC) + duration
    assert fire.tzinfo is UTC


def test_every_repr_equality_and_describe() -> None:
    schedule = every(timedelta(minutes=30))
    assert repr(schedule) == "every(0:30:00)"
    assert str(schedule) == "every(0:30:00)"
    assert schedule == Every(timedelta(seconds=1800))
    assert hash(schedule) == hash(Every(timedelta(seconds=1800)))
    assert schedule.describe() == {"type": "every", "seconds": 1800.0}
    json.dumps(schedule.describe())
    assert isinstance(schedule, Schedule)


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-1)])
def test_every_needs_a_positive_duration(duration: timedelta) -> None:
    with pytest.raises(ConfigurationError, match="positive duration"):
        every(duration)


@pytest.mark.parametrize("duration", [5, 2.5, "5m", None])
def test_every_needs_a_timedelta(duration: object) -> None:
    with pytest.raises(ConfigurationError, match="timedelta"):
        every(duration)  # type: ignore[arg-type]


def test_every_beyond_a_hundred_years_is_refused() -> None:
    """Its next alarm could overflow after the handler ran (retried, re-run forever)."""
    assert every(timedelta(days=36_525)).next_fire(utc(9000, 1, 1)) > utc(9099, 12, 31)
    for duration in (timedelta(days=36_525, microseconds=1), timedelta(days=3_000_000)):
        with pytest.raises(ConfigurationError, match="at most 100 years"):
            every(duration)


@pytest.mark.parametrize("number", [math.nan, math.inf, -5, 0, 1e300])
def test_every_of_a_number_never_suggests_an_impossible_timedelta(number: float) -> None:
    with pytest.raises(ConfigurationError, match="takes a timedelta") as caught:
        every(number)  # type: ignore[arg-type]
    assert f"seconds={number}" not in str(caught.value)
    assert "timedelta(minutes=5)" in str(caught.value)


# --- catch_up ----------------------------------------------------------------------------------

HOUR = timedelta(hours=1)
T = utc(2024, 6, 1, 12)


@pytest.mark.parametrize("schedule", [every(HOUR), cron("0 * * * *")])
def test_x09_misfire_run_once_catches_up_once(schedule: Schedule) -> None:
    """X09 Misfire "run_once" catches up once."""
    now = T + 5 * HOUR + timedelta(minutes=7)
    assert catch_up(schedule, T, now, "run_once") == now


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [(every(HOUR), T + 6 * HOUR), (cron("0 * * * *"), T + 6 * HOUR),
     (every(timedelta(minutes=50)), T + 7 * timedelta(minutes=50))],
)  # fmt: skip
def test_x10_misfire_skip_drops_missed_slots(schedule: Schedule, expected: datetime) -> None:
    """X10 Misfire "skip" drops missed slots."""
    now = T + 5 * HOUR + timedelta(minutes=7)
    assert catch_up(schedule, T, now, "skip") == expected


@pytest.mark.parametrize("schedule", [every(HOUR), cron("0 * * * *")])
def test_skip_treats_lateness_under_one_slot_as_no_misfire(schedule: Schedule) -> None:
    now = T + timedelta(minutes=59, seconds=59)
    assert catch_up(schedule, T, now, "skip") == now
    assert catch_up(schedule, T, T, "skip") == T


def test_skip_when_late_by_exactly_one_slot_moves_to_the_next_slot() -> None:
    assert catch_up(every(HOUR), T, T + HOUR, "skip") == T + 2 * HOUR
    assert catch_up(cron("0 * * * *"), T, T + HOUR, "skip") == T + 2 * HOUR


@pytest.mark.parametrize("policy", ["run_once", "skip"])
def test_catch_up_keeps_the_due_time_if_the_clock_is_behind(policy: str) -> None:
    assert catch_up(every(HOUR), T, T - HOUR, policy) == T  # type: ignore[arg-type]


def test_catch_up_rejects_unknown_policies_and_naive_times() -> None:
    with pytest.raises(ConfigurationError, match="'run_once' or 'skip'"):
        catch_up(every(HOUR), T, T, "latest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        catch_up(every(HOUR), datetime(2024, 1, 1), T, "skip")


@given(
    minutes=st.integers(1, 24 * 60),
    late=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    policy=st.sampled_from(["run_once", "skip"]),
)
def test_catch_up_every_properties(minutes: int, late: timedelta, policy: str) -> None:
    duration = timedelta(minutes=minutes)
    now = T + late
    result = catch_up(every(duration), T, now, policy)  # type: ignore[arg-type]
    if policy == "run_once" or late < duration:
        assert result == now
    else:
        assert now < result <= now + duration
        assert (result - T) % duration == timedelta(0)
    assert result.tzinfo is UTC
