"""Schedules against a brute-force reference, across DST changes in several time zones.

``tests/test_schedules.py`` checks fixed expressions (only minute and hour
vary) around the 2024 changes of four zones. Here hypothesis writes whole
5-field (and 6-field) expressions — lists, ranges, steps in every field, and
day-of-month/day-of-week combinations that exercise the OR rule — and places
them around the DST change of a random year in zones with unusual changes:

* ``Europe/Berlin`` and ``America/New_York``: one hour, at 02:00/03:00 local;
* ``Australia/Lord_Howe``: a 30-minute change;
* ``America/Santiago``: at midnight, so the skipped hour is 00:00-01:00 of
  one day and the repeated hour 23:00-00:00 straddles two dates;
* ``Asia/Kolkata`` (+05:30, no DST) and ``UTC``: controls.

The reference (written from the rule in ``durable_jobs._domain.schedules``'s
docstring, not from its code) walks real time minute by minute (second by
second for 6 fields) and reads the local wall clock at each instant:

* A cron expression matches a set of local wall-clock readings: every field
  must match, except that day-of-month and day-of-week are OR-ed when neither
  field starts with ``*`` (Debian cron; cronsim's parser).
* **Fixed-time** expressions (minute and hour fields both not starting with
  ``*``) name wall-clock times: each matching wall time ``w`` fires once, at
  the first instant whose reading is at least ``w``. That is ``w`` itself on a
  normal day, its *first* occurrence when fall-back repeats it, and the end
  of the gap when spring-forward skips it.
* **Interval** expressions (minute or hour starting with ``*``) run in real
  time: they fire at every instant whose reading matches, so in both copies
  of a repeated hour and never in a skipped one.

``every(d)`` is elapsed time: the next fire is ``d`` of real time later, so
across a change the wall clock moves by ``d`` plus the change.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from _support import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from durable_jobs import cron, every
from durable_jobs._domain.schedules import Schedule
from durable_jobs._errors import ConfigurationError

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DST_ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago")
FLAT_ZONES = ("Asia/Kolkata", "UTC")
YEARS = (2005, 2035)


# ---- the reference ----------------------------------------------------------------------------


def _field(spec: str, lo: int, hi: int) -> frozenset[int]:
    """The values of one cron field: ``*``, ``a``, ``a-b``, each optionally ``/step``, in lists."""
    values: set[int] = set()
    for term in spec.split(","):
        span, _, step = term.partition("/")
        if span == "*":
            first, last = lo, hi
        elif "-" in span:
            a, b = span.split("-")
            first, last = int(a), int(b)
        else:
            first = last = int(span)
        values.update(range(first, last + 1, int(step) if step else 1))
    return frozenset(values)


@dataclass(frozen=True)
class Reference:
    """What a cron expression matches, and how it treats DST (see the module docstring)."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # cron numbering: 0 = Sunday (7 is folded onto 0)
    days_or: bool
    fixed_time: bool

    @classmethod
    def parse(cls, expr: str) -> Reference:
        minute, hour, dom, month, dow, *second = expr.split()
        return cls(
            seconds=_field(second[0], 0, 59) if second else frozenset({0}),
            minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23),
            days=_field(dom, 1, 31),
            months=_field(month, 1, 12),
            weekdays=frozenset(d % 7 for d in _field(dow, 0, 7)),
            days_or=not dom.startswith("*") and not dow.startswith("*"),
            fixed_time=not minute.startswith("*") and not hour.startswith("*"),
        )

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_dom = day.day in self.days
        by_dow = (day.weekday() + 1) % 7 in self.weekdays
        return (by_dom or by_dow) if self.days_or else (by_dom and by_dow)

    def matches(self, wall: datetime) -> bool:
        return (
            wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and self.day_matches(wall.date())
        )

    def walls(self, first: datetime, last: datetime, step: timedelta) -> Iterator[datetime]:
        """Matching naive wall times in [first, last], enumerated from the calendar."""
        day = first.date()
        while day <= last.date():
            if self.day_matches(day):
                for h in sorted(self.hours):
                    for m in sorted(self.minutes):
                        for s in sorted(self.seconds) if step == SECOND else (0,):
                            wall = datetime(day.year, day.month, day.day, h, m, s)
                            if first <= wall <= last:
                                yield wall
            day += timedelta(days=1)


@functools.lru_cache(maxsize=64)
def _timeline(
    tz: str, start: datetime, end: datetime, step: timedelta
) -> tuple[tuple[datetime, ...], tuple[datetime, ...], tuple[datetime, ...]]:
    """Instants from ``start`` to ``end`` every ``step``, their readings and running maxima."""
    zone = ZoneInfo(tz)
    instants = tuple(start + i * step for i in range((end - start) // step + 1))
    readings = tuple(u.astimezone(zone).replace(tzinfo=None) for u in instants)
    highest: list[datetime] = []
    for r in readings:
        highest.append(max(r, highest[-1]) if highest else r)
    return instants, readings, tuple(highest)


def reference_fires(
    expr: str, tz: str, start: datetime, end: datetime, step: timedelta = MINUTE
) -> list[datetime]:
    """Every fire instant in (start, end), by brute force over every ``step`` of real time."""
    ref = Reference.parse(expr)
    # From a whole step (minute) well before ``start``: a fixed time skipped just
    # before ``start`` fires after the gap, which may be inside the window.
    warmup = start - 3 * HOUR
    warmup -= (warmup - datetime(2000, 1, 1, tzinfo=UTC)) % step
    instants, readings, highest = _timeline(tz, warmup, end, step)
    fires: set[datetime] = set()
    if ref.fixed_time:
        for wall in ref.walls(highest[0], highest[-1], step):
            # The first instant whose reading is at least ``wall``.
            fires.add(instants[bisect.bisect_left(highest, wall)])
    else:
        fires.update(u for u, r in zip(instants, readings, strict=True) if ref.matches(r))
    return sorted(u for u in fires if start < u < end)


def implementation_fires(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    t = schedule.next_fire(start)
    while t < end:
        fires.append(t)
        t = schedule.next_fire(t)
    return fires


@functools.cache
def offset_changes(tz: str, year: int) -> tuple[datetime, ...]:
    """The instants (UTC, whole minutes) at which ``tz``'s UTC offset changed in ``year``."""
    zone = ZoneInfo(tz)
    changes = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    offset = t.astimezone(zone).utcoffset()
    while t.year == year:
        nxt = t + HOUR
        if nxt.astimezone(zone).utcoffset() != offset:
            # Narrow the change down to the minute.
            while t.astimezone(zone).utcoffset() == offset:
                t += MINUTE
            changes.append(t)
            offset = t.astimezone(zone).utcoffset()
            t = t.replace(minute=0)
        t += HOUR
    return tuple(changes)


# ---- strategies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    tz: str
    start: datetime
    end: datetime

    def local_dates(self) -> list[date]:
        zone = ZoneInfo(self.tz)
        first = (self.start - 3 * HOUR).astimezone(zone).date()
        last = self.end.astimezone(zone).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@st.composite
def windows(draw: st.DrawFn, *, span: timedelta = timedelta(hours=30)) -> Window:
    """``span`` of real time around a DST change (or any day of a zone without DST)."""
    tz = draw(st.sampled_from(DST_ZONES + FLAT_ZONES), label="tz")
    year = draw(st.integers(*YEARS), label="year")
    changes = offset_changes(tz, year)
    if changes:
        centre = draw(st.sampled_from(changes), label="change")
    else:
        centre = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 364)))
    lead = draw(st.integers(1, span // MINUTE - 1), label="minutes before the change")
    start = centre - lead * MINUTE
    start += timedelta(seconds=draw(st.integers(0, 59)))  # need not be a whole minute
    return Window(tz, start, start + span)


def _values(lo: int, hi: int, likely: list[int]) -> st.SearchStrategy[int]:
    """A field value, often one of ``likely`` (so that the expression fires in the window)."""
    return st.sampled_from(likely) | st.integers(lo, hi) if likely else st.integers(lo, hi)


def fields(lo: int, hi: int, likely: list[int] | None = None) -> st.SearchStrategy[str]:
    """One cron field: ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` or a list of values and ranges."""
    value = _values(lo, hi, likely or [])
    span = st.tuples(value, value).map(sorted).filter(lambda ab: ab[0] < ab[1])
    term = st.one_of(
        value.map(str),
        span.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(span, st.integers(1, 9)).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )
    return st.one_of(
        st.just("*"),
        st.integers(1, max(1, hi // 2)).map("*/{}".format),
        term,
        st.lists(term, min_size=2, max_size=3).map(",".join),
    )


@st.composite
def expressions(draw: st.DrawFn, window: Window, *, with_seconds: bool = False) -> str:
    """A cron expression likely to fire near the DST change of ``window``."""
    dates = window.local_dates()
    # The hours around a change (00-03 local, and 23 for Santiago) are the interesting ones.
    minute = draw(fields(0, 59, [0, 15, 29, 30, 31, 45, 59]), label="minute")
    hour = draw(fields(0, 23, [0, 1, 2, 3, 23]), label="hour")
    # Day fields are mostly "*", else biased to the window's dates; both restricted
    # means the OR rule.
    star_or = st.just("*") | st.just("*")
    dom = draw(star_or | fields(1, 31, [d.day for d in dates]), label="day of month")
    month = draw(star_or | fields(1, 12, [d.month for d in dates]), label="month")
    dow = draw(star_or | fields(0, 7, [(d.weekday() + 1) % 7 for d in dates]), label="day of week")
    expr = f"{minute} {hour} {dom} {month} {dow}"
    if with_seconds:
        expr += " " + draw(fields(0, 59, [0, 30, 59]), label="second")
    return expr


def build(expr: str, tz: str) -> Schedule:
    """``cron(expr, tz)``; expressions the library rejects (Feb 30, …) are not examples."""
    try:
        return cron(expr, tz)
    except ConfigurationError:
        assume(False)
        raise


# ---- properties ---------------------------------------------------------------------------------


@settings(max_examples=examples(150))
@given(st.data())
def test_cron_fires_exactly_at_the_reference_times_across_dst(data: st.DataObject) -> None:
    """From the window's start, chaining ``next_fire`` gives exactly the brute-force fires."""
    window = data.draw(windows(), label="window")
    expr = data.draw(expressions(window), label="expr")
    schedule = build(expr, window.tz)
    expected = reference_fires(expr, window.tz, window.start, window.end)
    assert implementation_fires(schedule, window.start, window.end) == expected


@settings(max_examples=examples(150))
@given(st.data())
def test_cron_next_fire_from_any_instant_is_the_next_reference_fire(data: st.DataObject) -> None:
    """``next_fire(after)`` from an arbitrary instant (µs, inside a repeated or skipped hour)."""
    window = data.draw(windows(), label="window")
    expr = data.draw(expressions(window), label="expr")
    schedule = build(expr, window.tz)
    fires = reference_fires(expr, window.tz, window.start, window.end)
    after = window.start + timedelta(
        microseconds=data.draw(st.integers(0, (window.end - window.start) // timedelta(0, 0, 1)))
    )
    # Also as a local time: the same instant, whatever its zone and fold.
    later = [t for t in fires if t > after]
    assume(later)
    assert schedule.next_fire(after) == later[0]
    assert schedule.next_fire(after.astimezone(ZoneInfo(window.tz))) == later[0]


@settings(max_examples=examples(40))
@given(st.data())
def test_six_field_cron_fires_at_the_second_by_second_reference_times(
    data: st.DataObject,
) -> None:
    window = data.draw(windows(span=timedelta(hours=3)), label="window")
    expr = data.draw(expressions(window, with_seconds=True), label="expr")
    schedule = build(expr, window.tz)
    expected = reference_fires(expr, window.tz, window.start, window.end, step=SECOND)
    assert implementation_fires(schedule, window.start, window.end) == expected


@settings(max_examples=examples(60))
@given(
    window=windows(span=timedelta(days=3)),
    minutes=st.integers(1, 36 * 60),
    local=st.booleans(),
)
def test_every_counts_elapsed_time_across_dst(window: Window, minutes: int, local: bool) -> None:
    """``every(d)``: fires ``d`` of real time apart (counted minute by minute), whatever the
    wall clock says; across a change the wall clock moves by ``d`` plus the change."""
    zone = ZoneInfo(window.tz)
    duration = minutes * MINUTE
    schedule = every(duration)
    after = window.start.astimezone(zone) if local else window.start
    fire = schedule.next_fire(after)
    # Brute force: tick real minutes from `after` until `minutes` of them have passed.
    instant, ticks = window.start, 0
    while ticks < minutes:
        instant += MINUTE
        ticks += 1
    assert fire == instant
    assert fire.tzinfo is UTC
    before, later = after.astimezone(zone), fire.astimezone(zone)
    wall_moved = later.replace(tzinfo=None) - before.replace(tzinfo=None)
    change = later.utcoffset() - before.utcoffset()  # type: ignore[operator]
    assert wall_moved == duration + change


# ---- the DST rule, spelled out ------------------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "tz", "after", "fires"),
    [
        # Berlin, 2024-03-31: 02:00 CET -> 03:00 CEST. 02:30 is skipped: fires at 03:00 CEST.
        ("30 2 * * *", "Europe/Berlin", utc(2024, 3, 30, 12), [utc(2024, 3, 31, 1)]),
        # Berlin, 2024-10-27: 03:00 CEST -> 02:00 CET. 02:30 happens twice: fires at the first.
        ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 26, 12), [utc(2024, 10, 27, 0, 30)]),
        # ... while an interval expression fires in both copies of the hour.
        (
            "30 * * * *",
            "Europe/Berlin",
            utc(2024, 10, 26, 23, 45),
            [utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 30)],
        ),
        # Lord Howe, 2024-10-06: 02:00 -> 02:30 (+10:30 -> +11). 02:15 fires at 02:30.
        ("15 2 * * *", "Australia/Lord_Howe", utc(2024, 10, 5, 12), [utc(2024, 10, 5, 15, 30)]),
        # Lord Howe, 2024-04-07: 02:00 -> 01:30. 01:45 happens twice: the first (+11).
        ("45 1 * * *", "Australia/Lord_Howe", utc(2024, 4, 6, 12), [utc(2024, 4, 6, 14, 45)]),
        # Santiago, 2024-09-08: midnight is skipped (00:00 -04 -> 01:00 -03): fires at 01:00.
        ("0 0 * * *", "America/Santiago", utc(2024, 9, 7, 12), [utc(2024, 9, 8, 4)]),
        # Santiago, 2024-04-07 00:00 -03 -> 2024-04-06 23:00 -04: 23:30 on the 6th repeats.
        ("30 23 * * *", "America/Santiago", utc(2024, 4, 6, 12), [utc(2024, 4, 7, 2, 30)]),
        # ... and the next one is on the 7th, not in the second copy of the 6th's 23:30.
        ("30 23 * * *", "America/Santiago", utc(2024, 4, 7, 2, 30), [utc(2024, 4, 8, 3, 30)]),
    ],
)
def test_documented_dst_rule(expr: str, tz: str, after: datetime, fires: list[datetime]) -> None:
    schedule = cron(expr, tz)
    t = after
    for expected in fires:
        t = schedule.next_fire(t)
        assert t == expected
    assert fires == reference_fires(expr, tz, after, fires[-1] + SECOND)
