"""Retry policies: `Backoff` delays, `Retry` and the pure `retry_decision`.

Pure and synchronous: no clock reads and no global randomness. Jitter is
derived from a caller-supplied seed and the attempt number, so replaying the
same history gives the same retry times.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias, final

from durable_jobs._errors import ConfigurationError

__all__ = [
    "Backoff",
    "BackoffKind",
    "ExhaustedHook",
    "OnExhausted",
    "Retry",
    "jitter_factor",
    "retry_decision",
]

BackoffKind = Literal["constant", "linear", "exponential"]
OnExhausted = Literal["terminate", "pause", "continue"]
"""What happens when retries run out (``"continue"`` is for continuous jobs only)."""
ExhaustedHook: TypeAlias = Callable[[BaseException, Any], Any]
"""A callable ``(error, ctx)`` that decides what happens when retries run out."""

_ON_EXHAUSTED: tuple[OnExhausted, ...] = ("terminate", "pause", "continue")
_ZERO = timedelta(0)
#: The longest duration a definition takes (schedule, retry delay, debounce window...):
#: 100 years, so an alarm set that far ahead is always a representable datetime.
MAX_DURATION = timedelta(days=36_525)


def check_duration_bound(name: str, value: timedelta) -> None:
    """Refuse a duration above `MAX_DURATION` (its alarm could not be represented)."""
    if value > MAX_DURATION:
        raise ConfigurationError(
            f"{name} must be at most 100 years ({MAX_DURATION.days} days), got {value}"
        )


def from_seconds(name: str, seconds: float) -> timedelta:
    """A finite number of seconds as a timedelta, refused (ConfigurationError) when it
    is positive but rounds to zero: a timedelta holds whole microseconds."""
    value = timedelta(seconds=seconds)
    if seconds > 0 and value == _ZERO:
        raise ConfigurationError(
            f"{name} must be at least a microsecond (the smallest duration a timedelta "
            f"holds), got {seconds!r} seconds, which rounds to 0; write e.g. "
            "timedelta(milliseconds=1)"
        )
    return value


def _require_timedelta(name: str, value: object, *, positive: bool = False) -> timedelta:
    if not isinstance(value, timedelta):
        raise ConfigurationError(
            f"{name} must be a timedelta, got {value!r}; write e.g. timedelta(seconds=5)"
        )
    if value < _ZERO or (positive and value == _ZERO):
        need = "positive" if positive else "zero or positive"
        raise ConfigurationError(f"{name} must be {need}, got {value}")
    check_duration_bound(name, value)
    return value


def _require_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@final
@dataclass(frozen=True, repr=False, kw_only=True)
class Backoff:
    """How long to wait before retry number n; build one with a classmethod.

    `initial` is the constant delay, the first linear delay or the exponential
    base; `max` caps the delay (``None``: no cap, linear only).
    """

    kind: BackoffKind
    initial: timedelta
    increment: timedelta = _ZERO
    factor: float = 1.0
    max: timedelta | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "linear", "exponential"):
            raise ConfigurationError(
                f"Unknown backoff kind {self.kind!r}; use Backoff.constant(), "
                "Backoff.linear() or Backoff.exponential()"
            )
        label = {"constant": "delay", "linear": "initial", "exponential": "base"}[self.kind]
        _require_timedelta(
            f"Backoff.{self.kind}() {label}", self.initial, positive=self.kind == "exponential"
        )
        _require_timedelta("Backoff.linear() increment", self.increment)
        factor = _require_number("Backoff factor", self.factor)
        object.__setattr__(self, "factor", factor)
        if self.max is not None:
            _require_timedelta("Backoff max", self.max)
            if self.max < self.initial:
                raise ConfigurationError(
                    f"Backoff max ({self.max}) is below its first delay ({self.initial}); "
                    "raise max or lower the first delay"
                )
        if self.kind == "exponential":
            if factor < 1:
                raise ConfigurationError(
                    f"Backoff.exponential() needs factor >= 1, got {factor}; "
                    "for a fixed delay use Backoff.constant()"
                )
            if self.max is None:
                raise ConfigurationError(
                    "Backoff.exponential() needs a max delay; pass e.g. max=timedelta(minutes=5)"
                )
        elif factor != 1:
            raise ConfigurationError(
                f"factor applies to exponential backoff only, not {self.kind}; "
                "use Backoff.exponential(base, factor, max)"
            )
        if self.kind == "constant" and (self.increment or self.max is not None):
            raise ConfigurationError(
                "Backoff.constant() takes a delay only; for an increment or a max "
                "use Backoff.linear(initial, increment, max)"
            )

    @classmethod
    def constant(cls, delay: timedelta) -> Backoff:
        """The same delay before every retry."""
        return cls(kind="constant", initial=delay)

    @classmethod
    def linear(
        cls, initial: timedelta, increment: timedelta, max: timedelta | None = None
    ) -> Backoff:
        """``initial``, ``initial + increment``, … capped by `max` (if given)."""
        return cls(kind="linear", initial=initial, increment=increment, max=max)

    @classmethod
    def exponential(
        cls,
        base: timedelta = timedelta(seconds=1),
        factor: float = 2,
        max: timedelta = timedelta(seconds=30),
    ) -> Backoff:
        """``base * factor ** (n - 1)`` capped by `max` (default 1 s, 2 s, 4 s … 30 s)."""
        return cls(kind="exponential", initial=base, factor=factor, max=max)

    def delay(self, retry_number: int) -> timedelta:
        """Return the delay before retry `retry_number` (1 is the first retry)."""
        if isinstance(retry_number, bool) or not isinstance(retry_number, int) or retry_number < 1:
            raise ValueError(f"retry_number must be an int >= 1, got {retry_number!r}")
        steps = retry_number - 1
        try:
            if self.kind == "constant":
                return self.initial
            if self.kind == "linear":
                delay = self.initial + steps * self.increment
            else:
                delay = self.initial * (self.factor**steps)
        except OverflowError:
            delay = timedelta.max
        return min(delay, MAX_DURATION if self.max is None else self.max)

    def describe(self) -> dict[str, object]:
        """Return a JSON-friendly description, e.g. ``{"type": "constant", "seconds": 5.0}``."""
        cap = None if self.max is None else self.max.total_seconds()
        if self.kind == "constant":
            return {"type": "constant", "seconds": self.initial.total_seconds()}
        if self.kind == "linear":
            return {
                "type": "linear",
                "initial_seconds": self.initial.total_seconds(),
                "increment_seconds": self.increment.total_seconds(),
                "max_seconds": cap,
            }
        return {
            "type": "exponential",
            "base_seconds": self.initial.total_seconds(),
            "factor": self.factor,
            "max_seconds": cap,
        }

    def __repr__(self) -> str:
        if self.kind == "constant":
            return f"Backoff.constant({self.initial})"
        if self.kind == "linear":
            cap = "" if self.max is None else f", max={self.max}"
            return f"Backoff.linear({self.initial}, {self.increment}{cap})"
        return f"Backoff.exponential(base={self.initial}, factor={self.factor:g}, max={self.max})"

    __str__ = __repr__


@final
@dataclass(frozen=True, init=False)
class Retry:
    """A retry policy: `max_attempts` counts the first try (1 means no retry).

    `delay` is a `Backoff` (a plain timedelta means `Backoff.constant`),
    `jitter` a fraction in [0, 1] (±10% by default), `max_duration` stops
    retrying once that much time has passed since the first failed try, and
    `on_exhausted` says what happens then: ``"terminate"``, ``"pause"``,
    ``"continue"`` (continuous jobs) or a hook ``(error, ctx)``.
    """

    max_attempts: int
    delay: Backoff
    jitter: float
    max_duration: timedelta | None
    on_exhausted: OnExhausted | ExhaustedHook

    def __init__(
        self,
        max_attempts: int,
        delay: Backoff | timedelta = Backoff.exponential(),  # noqa: B008 - frozen, immutable
        jitter: float = 0.1,
        max_duration: timedelta | None = None,
        on_exhausted: OnExhausted | ExhaustedHook = "terminate",
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(
                f"Retry max_attempts must be an int >= 1 (it counts the first try; "
                f"1 means no retry, 3 means two retries), got {max_attempts!r}"
            )
        if isinstance(delay, timedelta):
            delay = Backoff.constant(delay)
        elif not isinstance(delay, Backoff):
            raise ConfigurationError(
                f"Retry delay must be a Backoff or a timedelta, got {delay!r}; "
                "write e.g. Backoff.exponential() or timedelta(seconds=5)"
            )
        jitter = _require_number("Retry jitter", jitter)
        if not 0 <= jitter <= 1:
            raise ConfigurationError(
                f"Retry jitter is a fraction in [0, 1] (0.1 means ±10%), got {jitter}"
            )
        if max_duration is not None:
            _require_timedelta("Retry max_duration", max_duration, positive=True)
        if not callable(on_exhausted) and on_exhausted not in _ON_EXHAUSTED:
            raise ConfigurationError(
                f"Retry on_exhausted must be 'terminate', 'pause', 'continue' or a "
                f"callable (error, ctx), got {on_exhausted!r}"
            )
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "delay", delay)
        object.__setattr__(self, "jitter", jitter)
        object.__setattr__(self, "max_duration", max_duration)
        object.__setattr__(self, "on_exhausted", on_exhausted)

    def describe(self) -> dict[str, object]:
        """Return a JSON-friendly description (a hook is shown by its qualified name)."""
        hook = self.on_exhausted
        on_exhausted = hook if isinstance(hook, str) else _qualified_name(hook)
        return {
            "max_attempts": self.max_attempts,
            "delay": self.delay.describe(),
            "jitter": self.jitter,
            "max_duration_seconds": (
                None if self.max_duration is None else self.max_duration.total_seconds()
            ),
            "on_exhausted": on_exhausted,
        }


def _qualified_name(hook: ExhaustedHook) -> str:
    module = getattr(hook, "__module__", None)
    name = getattr(hook, "__qualname__", type(hook).__qualname__)
    return f"{module}.{name}" if module else str(name)


def jitter_factor(jitter: float, jitter_seed: int, attempt: int) -> float:
    """Return a factor in [1 - jitter, 1 + jitter), a pure function of its arguments."""
    digest = hashlib.blake2b(
        f"{jitter_seed}:{attempt}".encode(), digest_size=8, person=b"dj-retry-jitter"
    ).digest()
    unit = int.from_bytes(digest, "big") / 2**64  # uniform in [0, 1)
    return 1 + jitter * (2 * unit - 1)


def retry_decision(
    retry: Retry | None,
    *,
    attempt: int,
    first_failure_at: datetime,
    now: datetime,
    jitter_seed: int,
) -> datetime | None:
    """Return when to make the next try after try `attempt` failed at `now` (UTC).

    ``None`` means retries are exhausted: there is no policy, `attempt` has
    reached `max_attempts`, or the next try would start at or after
    ``first_failure_at + max_duration`` (a try never starts once `max_duration`
    has passed since the first failed try). The delay is
    ``retry.delay.delay(attempt)`` times `jitter_factor`, counted from `now`.
    """
    for name, value in (("first_failure_at", first_failure_at), ("now", now)):
        if value.utcoffset() is None:
            raise ValueError(f"{name}={value!r} is naive; pass a timezone-aware datetime")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt!r}")
    if retry is None or attempt >= retry.max_attempts:
        return None
    factor = jitter_factor(retry.jitter, jitter_seed, attempt) if retry.jitter else 1.0
    try:
        next_try = now.astimezone(UTC) + retry.delay.delay(attempt) * factor
        if retry.max_duration is not None and next_try >= first_failure_at + retry.max_duration:
            return None
    except OverflowError:  # beyond year 9999: that try would never be due
        return None
    return next_try
