"""Schedules of continuous jobs (`every`, `cron`) and the misfire rule.

Pure and synchronous: every function takes the time it reasons about as an
argument and never reads a clock.

Cron semantics follow Debian cron (the parser is cronsim's: names, ranges,
steps, lists, ``L``, ``W`` and ``#`` work; day-of-month and day-of-week are
OR-ed unless one of them starts with ``*``). Fire times are computed in the
schedule's time zone and returned in UTC. Across DST changes:

* A **fixed-time** expression (its minute and hour fields do not start with
  ``*``, e.g. ``0 9 * * *`` or ``30 1,13 * * 1-5``) is read as local
  wall-clock times. A time skipped by spring-forward fires once at the first
  instant after the gap (``30 2 * * *`` in New York fires at 03:00 EDT on that
  day); a time repeated by fall-back fires once, at its first occurrence.
* Any other expression (``*/15 * * * *``, ``0 * * * *``) is an interval and
  runs in real time: it fires at every instant whose local reading matches, so
  it fires in both copies of a repeated hour and the skipped hour simply has
  no instants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, final, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from durable_jobs._domain.backoff import MAX_DURATION, check_duration_bound
from durable_jobs._errors import ConfigurationError

__all__ = [
    "Cron",
    "Every",
    "MisfirePolicy",
    "Schedule",
    "catch_up",
    "cron",
    "every",
]

MisfirePolicy = Literal["run_once", "skip"]
"""What to do with an alarm that fires late: see `catch_up`."""

_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)
_MISFIRE_POLICIES: tuple[MisfirePolicy, ...] = ("run_once", "skip")


def _require_aware(name: str, value: datetime) -> datetime:
    """Return `value` in UTC, or raise if it is not a timezone-aware datetime."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # what the checks and astimezone below give it (on every run)
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{name}={value!r} is a naive datetime; pass a timezone-aware one, "
            "e.g. datetime(2024, 1, 1, tzinfo=timezone.utc)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = f"{name}={value.isoformat()} falls outside the years 1 to 9999 in UTC"
        raise ValueError(msg) from None


def _not_a_timedelta(value: object) -> ConfigurationError:
    number = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_DURATION.total_seconds()
        # Below a microsecond it would be timedelta(0), which every() refuses too.
        and timedelta(seconds=value) > timedelta(0)
    )
    example = f"timedelta(seconds={value!r})" if number else "timedelta(minutes=5)"
    return ConfigurationError(
        f"every() takes a timedelta, got {value!r}; write e.g. every({example})"
    )


@runtime_checkable
class Schedule(Protocol):
    """When a continuous job runs next."""

    def next_fire(self, after: datetime) -> datetime:
        """Return the next fire time (aware, UTC) after `after`.

        For continuous jobs `after` is when the previous run ended (or the
        start time).
        """
        ...

    def describe(self) -> dict[str, object]:
        """Return a JSON-friendly description of the schedule."""
        ...


@final
@dataclass(frozen=True, repr=False)
class Every:
    """A fixed delay: the next run is `duration` after the previous one ended."""

    duration: timedelta

    def __post_init__(self) -> None:
        if not isinstance(self.duration, timedelta):
            raise _not_a_timedelta(self.duration)
        if self.duration <= timedelta(0):
            raise ConfigurationError(
                f"every() needs a positive duration, got {self.duration}; "
                "pass e.g. timedelta(minutes=5)"
            )
        check_duration_bound("every() duration", self.duration)

    def next_fire(self, after: datetime) -> datetime:
        """Return `after + duration`, in UTC."""
        if type(after) is datetime and after.tzinfo is UTC:
            return after + self.duration  # _require_aware's first case, inline (every run)
        return _require_aware("after", after) + self.duration

    def describe(self) -> dict[str, object]:
        """Return ``{"type": "every", "seconds": ...}``."""
        return {"type": "every", "seconds": self.duration.total_seconds()}

    def __repr__(self) -> str:
        return f"every({self.duration})"

    __str__ = __repr__


@final
@dataclass(frozen=True, repr=False)
class Cron:
    """A cron expression evaluated in an IANA time zone (see the module docstring)."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ConfigurationError(
                f"cron() takes the expression as a string, got {self.expr!r}; "
                "write e.g. cron('0 9 * * *')"
            )
        if not isinstance(self.tz, str):
            raise ConfigurationError(
                f"cron() takes tz as an IANA zone name string, got {self.tz!r}; "
                "write e.g. tz='Europe/Paris'"
            )
        # Normalise whitespace so that equal schedules compare equal.
        object.__setattr__(self, "expr", " ".join(self.expr.split()))
        parts = self.expr.split(" ")
        if len(parts) not in (5, 6):
            raise ConfigurationError(
                f"Cron expression {self.expr!r} has {len(parts)} fields; use 5 "
                "('minute hour day-of-month month day-of-week', e.g. '0 9 * * *') "
                "or 6 with seconds last (e.g. '0 9 * * * 30')"
            )
        try:
            CronSim(self._cronsim_expr, datetime(2000, 1, 1))
        except (CronSimError, ValueError) as exc:
            raise ConfigurationError(
                f"Invalid cron expression {self.expr!r}: {exc}. Fields are 'minute "
                "hour day-of-month month day-of-week [second]', e.g. '*/15 9-17 * * 1-5'"
            ) from exc
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(
                f"Unknown time zone {self.tz!r}; pass an IANA name such as 'UTC' or "
                "'America/New_York' (on systems without zone data, install tzdata)"
            ) from exc

    @property
    def _cronsim_expr(self) -> str:
        # cronsim puts the seconds field first; ours is last (croniter's order).
        parts = self.expr.split(" ")
        if len(parts) == 5:
            return "0 " + self.expr
        return " ".join([parts[5], *parts[:5]])

    @property
    def _wall_clock(self) -> bool:
        # Debian cron's rule: fixed minute and hour mean wall-clock times.
        minute, hour = self.expr.split(" ")[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def next_fire(self, after: datetime) -> datetime:
        """Return the first fire time strictly after `after`, in UTC."""
        after = _require_aware("after", after)
        zone = ZoneInfo(self.tz)
        try:
            if self._wall_clock:
                return self._next_wall_clock(after, zone)
            return self._next_real_time(after, zone)
        except StopIteration:
            raise ConfigurationError(
                f"{self!r} does not fire in the 50 years after {after.isoformat()}; "
                "check its day-of-month, month and day-of-week fields"
            ) from None

    def _walls_after(self, start: datetime) -> Iterator[datetime]:
        """Matching wall-clock times strictly after naive `start` (no DST involved)."""
        return CronSim(self._cronsim_expr, start)

    def _next_wall_clock(self, after: datetime, zone: ZoneInfo) -> datetime:
        local = after.astimezone(zone)
        start = local.replace(tzinfo=None)
        if local.fold == 1 and _is_ambiguous(start, zone):
            # `after` is in the second copy of a repeated period, whose times
            # already fired in the first copy: resume where the repetition ends.
            start = _end_of_repetition(start, zone) - _TICK
        for wall in self._walls_after(start):
            fire = _first_instant_reading(wall, zone)
            if fire > after:
                return fire
        raise StopIteration  # pragma: no cover - CronSim stops itself

    def _next_real_time(self, after: datetime, zone: ZoneInfo) -> datetime:
        local = after.astimezone(zone)
        reading = local.replace(tzinfo=None)
        repeated: datetime | None = None
        if local.fold == 0 and _is_ambiguous(reading, zone):
            # `after` is in the first copy of a repeated period: the readings
            # from its start up to `after`'s come round again after the change.
            wall = next(self._walls_after(_start_of_repetition(reading, zone) - _TICK))
            if wall <= reading:
                repeated = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        walls = self._walls_after(reading)
        while True:
            wall = next(walls)
            if _is_skipped(wall, zone):
                # No instant reads as `wall`: resume at the end of the gap.
                gap_end = _reading(_first_instant_reading(wall, zone), zone)
                walls = self._walls_after(gap_end - _TICK)
                continue
            for fold in (0, 1):
                fire = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if fire > after:
                    return fire if repeated is None else min(fire, repeated)

    def describe(self) -> dict[str, object]:
        """Return ``{"type": "cron", "expr": ..., "tz": ...}``."""
        return {"type": "cron", "expr": self.expr, "tz": self.tz}

    def __repr__(self) -> str:
        return f"cron({self.expr!r}, tz={self.tz!r})"

    __str__ = __repr__


def _reading(instant: datetime, zone: ZoneInfo) -> datetime:
    """The local wall clock (naive) at `instant`."""
    # Through UTC: astimezone() to an instant's own zone does not normalise it.
    return instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def _is_skipped(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether no instant reads as `wall` (it is in a spring-forward gap)."""
    return _reading(wall.replace(tzinfo=zone), zone) != wall


def _is_ambiguous(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether two instants read as `wall` (it is in a repeated period)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset() and not _is_skipped(wall, zone)


def _fold_size(wall: datetime, zone: ZoneInfo) -> timedelta:
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None
    assert second is not None
    return abs(first - second)


def _bisect(lo: datetime, hi: datetime, is_past: Callable[[datetime], bool]) -> datetime:
    """Return the first whole second from `lo` (where `is_past` is false) up to `hi` (true)."""
    low, high = 0, math.ceil((hi - lo) / _SECOND)
    while high - low > 1:
        mid = (low + high) // 2
        if is_past(lo + mid * _SECOND):
            high = mid
        else:
            low = mid
    return lo + high * _SECOND


def _start_of_repetition(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first wall time of the repeated period that contains `wall`."""
    wall = wall.replace(microsecond=0)
    return _bisect(wall - _fold_size(wall, zone), wall, lambda w: _is_ambiguous(w, zone))


def _end_of_repetition(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first wall time after the repeated period that contains `wall`."""
    wall = wall.replace(microsecond=0)
    return _bisect(wall, wall + _fold_size(wall, zone), lambda w: not _is_ambiguous(w, zone))


def _first_instant_reading(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant whose reading is at least `wall` (UTC).

    That is `wall`'s first occurrence, or the end of the gap that skips it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _reading(first, zone) == wall:
        return first
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # reads before the gap
    return _bisect(before, first, lambda instant: _reading(instant, zone) > wall)


def every(duration: timedelta) -> Every:
    """Fixed delay: run again `duration` after the previous run ended."""
    return Every(duration)


def cron(expr: str, tz: str = "UTC") -> Cron:
    """Run at the times of a cron expression in IANA time zone `tz`.

    Five fields (``minute hour day-of-month month day-of-week``) or six, with
    seconds last. Raises `ConfigurationError` for a bad expression or zone.
    """
    return Cron(expr, tz)


def catch_up(
    schedule: Schedule, due_at: datetime, now: datetime, policy: MisfirePolicy
) -> datetime:
    """Return when an alarm due at `due_at`, handled at `now`, should run (UTC).

    ``"run_once"``: now, one run however many slots were missed.
    ``"skip"``: now if the alarm is late by less than one full slot (that is
    lateness, not a misfire); otherwise the next slot strictly after `now`
    (for `every`, on the grid ``due_at + k * duration``). If `now` is before
    `due_at` (the clock went back), the alarm keeps its time.
    """
    due_at = _require_aware("due_at", due_at)
    now = _require_aware("now", now)
    if policy not in _MISFIRE_POLICIES:
        raise ConfigurationError(f"Unknown misfire policy {policy!r}; use 'run_once' or 'skip'")
    if now < due_at:
        return due_at
    if policy == "run_once" or schedule.next_fire(due_at) > now:
        return now
    if isinstance(schedule, Every):
        # First slot strictly after now on the grid due_at + k * duration.
        return due_at + ((now - due_at) // schedule.duration + 1) * schedule.duration
    return _require_aware("next_fire()", schedule.next_fire(now))
