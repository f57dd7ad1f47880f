"""Retry policies: `Backoff` delays, `Retry` validation and `retry_decision`."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_jobs._domain.backoff import (
    MAX_DURATION,
    Backoff,
    Retry,
    jitter_factor,
    retry_decision,
)
from durable_jobs._errors import ConfigurationError

S = timedelta(seconds=1)
T = datetime(2024, 6, 1, 12, tzinfo=UTC)


def seconds(backoff: Backoff, count: int) -> list[float]:
    return [backoff.delay(n).total_seconds() for n in range(1, count + 1)]


# --- Backoff -----------------------------------------------------------------------------------


def test_default_exponential_backoff_doubles_up_to_thirty_seconds() -> None:
    assert seconds(Backoff.exponential(), 8) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_exponential_backoff_with_custom_base_factor_and_max() -> None:
    backoff = Backoff.exponential(base=S / 2, factor=3, max=10 * S)
    assert seconds(backoff, 5) == [0.5, 1.5, 4.5, 10, 10]
    assert Backoff.exponential(factor=1).delay(50) == S


def test_linear_backoff_adds_the_increment_up_to_max() -> None:
    assert seconds(Backoff.linear(S, 2 * S), 5) == [1, 3, 5, 7, 9]
    assert seconds(Backoff.linear(S, 2 * S, max=6 * S), 5) == [1, 3, 5, 6, 6]
    assert seconds(Backoff.linear(timedelta(0), S), 3) == [0, 1, 2]


def test_constant_backoff() -> None:
    assert seconds(Backoff.constant(5 * S), 3) == [5, 5, 5]
    assert Backoff.constant(timedelta(0)).delay(1) == timedelta(0)


def test_huge_retry_numbers_are_capped_not_overflowing() -> None:
    assert Backoff.exponential().delay(10**6) == 30 * S
    assert Backoff.exponential(factor=1e300, max=timedelta(days=1)).delay(3) == timedelta(days=1)
    assert Backoff.linear(S, timedelta(days=1), max=7 * S).delay(10**9) == 7 * S
    assert Backoff.linear(S, timedelta(days=10**4)).delay(10**6) == MAX_DURATION  # 100 years


@pytest.mark.parametrize(
    "make",
    [
        Backoff.constant,
        lambda big: Backoff.linear(S, big),
        lambda big: Backoff.linear(big, S),
        lambda big: Backoff.linear(S, S, max=big),
        lambda big: Backoff.exponential(max=big),
        lambda big: Retry(5, delay=big),
        lambda big: Retry(5, max_duration=big),
    ],
)
def test_durations_beyond_a_hundred_years_are_refused(make: Any) -> None:
    """A retry that far ahead could not be represented (and was recorded as 'no retry')."""
    make(MAX_DURATION)  # the bound itself is fine
    for big in (MAX_DURATION + S, timedelta(days=5_000_000), timedelta.max):
        with pytest.raises(ConfigurationError, match="at most 100 years"):
            make(big)


@pytest.mark.parametrize("retry_number", [0, -1, True, 1.0])
def test_delay_takes_a_retry_number_from_one(retry_number: Any) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        Backoff.exponential().delay(retry_number)


@given(
    base_ms=st.integers(1, 10_000),
    factor=st.floats(1, 10),
    cap_ms=st.integers(10_000, 10**8),
    n=st.integers(1, 200),
)
def test_exponential_delays_grow_and_stay_within_bounds(
    base_ms: int, factor: float, cap_ms: int, n: int
) -> None:
    backoff = Backoff.exponential(
        timedelta(milliseconds=base_ms), factor, timedelta(milliseconds=cap_ms)
    )
    assert timedelta(milliseconds=base_ms) <= backoff.delay(n) <= backoff.delay(n + 1)
    assert backoff.delay(n + 1) <= timedelta(milliseconds=cap_ms)


@given(
    initial_ms=st.integers(0, 10_000),
    increment_ms=st.integers(0, 10_000),
    n=st.integers(1, 10_000),
)
def test_linear_delays_follow_the_formula(initial_ms: int, increment_ms: int, n: int) -> None:
    backoff = Backoff.linear(
        timedelta(milliseconds=initial_ms), timedelta(milliseconds=increment_ms)
    )
    assert backoff.delay(n) == timedelta(milliseconds=initial_ms + (n - 1) * increment_ms)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Backoff.constant(-S), "zero or positive"),
        (lambda: Backoff.constant(5), "timedelta"),  # type: ignore[arg-type]
        (lambda: Backoff.linear(-S, S), "zero or positive"),
        (lambda: Backoff.linear(S, -S), "increment"),
        (lambda: Backoff.linear(5 * S, S, max=S), "below its first delay"),
        (lambda: Backoff.linear(S, 2.5), "timedelta"),  # type: ignore[arg-type]
        (lambda: Backoff.exponential(base=timedelta(0)), "positive"),
        (lambda: Backoff.exponential(base=-S), "positive"),
        (lambda: Backoff.exponential(factor=0.5), "factor >= 1"),
        (lambda: Backoff.exponential(factor=math.nan), "finite number"),
        (lambda: Backoff.exponential(factor=math.inf), "finite number"),
        (lambda: Backoff.exponential(factor=True), "finite number"),
        (lambda: Backoff.exponential(max=S / 2), "below its first delay"),
        (lambda: Backoff.exponential(max=None), "max"),  # type: ignore[arg-type]
        (lambda: Backoff(kind="fibonacci", initial=S), "Backoff.exponential"),  # type: ignore[arg-type]
        (lambda: Backoff(kind="constant", initial=S, factor=2), "exponential backoff only"),
        (lambda: Backoff(kind="constant", initial=S, max=S), "delay only"),
    ],
)
def test_invalid_backoff_is_a_configuration_error(make: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_backoff_repr_equality_and_describe() -> None:
    assert (
        repr(Backoff.exponential()) == "Backoff.exponential(base=0:00:01, factor=2, max=0:00:30)"
    )
    assert str(Backoff.constant(5 * S)) == "Backoff.constant(0:00:05)"
    assert repr(Backoff.linear(S, 2 * S)) == "Backoff.linear(0:00:01, 0:00:02)"
    assert repr(Backoff.linear(S, 2 * S, 9 * S)) == "Backoff.linear(0:00:01, 0:00:02, max=0:00:09)"
    assert Backoff.exponential() == Backoff.exponential(S, 2.0, 30 * S)
    assert hash(Backoff.exponential()) == hash(Backoff.exponential(S, 2.0, 30 * S))
    assert Backoff.constant(S) != Backoff.linear(S, timedelta(0))
    descriptions = [
        Backoff.exponential().describe(),
        Backoff.linear(S, 2 * S).describe(),
        Backoff.constant(5 * S).describe(),
    ]
    assert descriptions == [
        {"type": "exponential", "base_seconds": 1.0, "factor": 2.0, "max_seconds": 30.0},
        {"type": "linear", "initial_seconds": 1.0, "increment_seconds": 2.0, "max_seconds": None},
        {"type": "constant", "seconds": 5.0},
    ]
    json.dumps(descriptions)


# --- Retry -------------------------------------------------------------------------------------


def test_retry_defaults_follow_the_spec() -> None:
    retry = Retry(3)
    assert retry.max_attempts == 3
    assert retry.delay == Backoff.exponential()
    assert retry.jitter == 0.1
    assert retry.max_duration is None
    assert retry.on_exhausted == "terminate"


def test_a_plain_timedelta_delay_means_constant() -> None:
    assert Retry(3, delay=5 * S).delay == Backoff.constant(5 * S)
    assert Retry(3, delay=5 * S) == Retry(3, Backoff.constant(5 * S))


def hook(error: BaseException, ctx: object) -> None:
    """An on_exhausted hook."""


def test_retry_accepts_every_on_exhausted_choice() -> None:
    for choice in ("terminate", "pause", "continue"):
        assert Retry(2, on_exhausted=choice).on_exhausted == choice
    assert Retry(2, on_exhausted=hook).on_exhausted is hook


def test_retry_is_frozen_with_a_readable_repr_and_describe() -> None:
    retry = Retry(3, delay=Backoff.linear(S, S), jitter=0, max_duration=60 * S)
    with pytest.raises(AttributeError):
        retry.max_attempts = 4  # type: ignore[misc]
    assert repr(retry) == (
        "Retry(max_attempts=3, delay=Backoff.linear(0:00:01, 0:00:01), jitter=0.0, "
        "max_duration=datetime.timedelta(seconds=60), on_exhausted='terminate')"
    )
    assert retry.describe() == {
        "max_attempts": 3,
        "delay": {
            "type": "linear",
            "initial_seconds": 1.0,
            "increment_seconds": 1.0,
            "max_seconds": None,
        },
        "jitter": 0.0,
        "max_duration_seconds": 60.0,
        "on_exhausted": "terminate",
    }
    described = Retry(2, on_exhausted=hook).describe()
    assert described["on_exhausted"] == f"{__name__}.hook"
    json.dumps(described)
    assert hash(retry) == hash(Retry(3, Backoff.linear(S, S), 0, 60 * S))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "counts the first try"),
        ({"max_attempts": -2}, "counts the first try"),
        ({"max_attempts": 2.0}, "counts the first try"),
        ({"max_attempts": True}, "counts the first try"),
        ({"max_attempts": 3, "delay": 5}, "Backoff or a timedelta"),
        ({"max_attempts": 3, "jitter": -0.1}, r"\[0, 1\]"),
        ({"max_attempts": 3, "jitter": 1.5}, r"\[0, 1\]"),
        ({"max_attempts": 3, "jitter": math.nan}, "finite number"),
        ({"max_attempts": 3, "jitter": "10%"}, "finite number"),
        ({"max_attempts": 3, "max_duration": timedelta(0)}, "positive"),
        ({"max_attempts": 3, "max_duration": 60}, "timedelta"),
        ({"max_attempts": 3, "on_exhausted": "explode"}, "'terminate', 'pause', 'continue'"),
    ],
)
def test_invalid_retry_is_a_configuration_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Retry(**kwargs)


# --- retry_decision ----------------------------------------------------------------------------


def decide(
    retry: Retry | None, attempt: int, now: datetime, first: datetime = T, seed: int = 7
) -> datetime | None:
    return retry_decision(
        retry, attempt=attempt, first_failure_at=first, now=now, jitter_seed=seed
    )


def test_x06_retries_follow_the_policy() -> None:
    """X06 Retries follow the policy."""
    retry = Retry(max_attempts=3, delay=Backoff.exponential(), jitter=0)
    second_try = decide(retry, 1, now=T)
    assert second_try == T + S
    third_try = decide(retry, 2, now=second_try)
    assert third_try == T + 3 * S
    assert decide(retry, 3, now=third_try) is None


def test_no_policy_or_a_single_attempt_never_retries() -> None:
    assert decide(None, 1, now=T) is None
    assert decide(Retry(1), 1, now=T) is None


def test_delay_counts_from_the_failure_time() -> None:
    retry = Retry(5, delay=Backoff.linear(S, S), jitter=0)
    assert decide(retry, 3, now=T + 100 * S) == T + 103 * S


@given(
    jitter=st.floats(0, 1),
    seed=st.integers(-(2**63), 2**63),
    attempt=st.integers(1, 50),
    delay_ms=st.integers(0, 10**7),
)
def test_jitter_stays_within_bounds_and_is_deterministic(
    jitter: float, seed: int, attempt: int, delay_ms: int
) -> None:
    delay = timedelta(milliseconds=delay_ms)
    retry = Retry(100, delay=delay, jitter=jitter)
    now = T + attempt * S
    next_try = decide(retry, attempt, now=now, seed=seed)
    assert next_try is not None
    assert next_try >= now
    tolerance = timedelta(microseconds=1)  # timedelta * float rounds to the microsecond
    assert delay * (1 - jitter) - tolerance <= next_try - now <= delay * (1 + jitter) + tolerance
    assert next_try == decide(retry, attempt, now=now, seed=seed)
    assert next_try.tzinfo is UTC


def test_jitter_spreads_over_seeds_and_attempts() -> None:
    factors = [jitter_factor(0.1, seed, attempt) for seed in range(200) for attempt in (1, 2)]
    assert all(0.9 <= f < 1.1 for f in factors)
    assert min(factors) < 0.92
    assert max(factors) > 1.08
    assert abs(sum(factors) / len(factors) - 1) < 0.01
    assert jitter_factor(0.1, 1, 1) != jitter_factor(0.1, 1, 2)
    assert jitter_factor(0, 1, 1) == 1


def test_zero_jitter_gives_exact_delays() -> None:
    retry = Retry(10, delay=Backoff.exponential(), jitter=0)
    for seed in range(20):
        assert decide(retry, 4, now=T, seed=seed) == T + 8 * S


def test_max_duration_stops_retries_that_would_start_at_or_after_the_deadline() -> None:
    retry = Retry(10, delay=10 * S, jitter=0, max_duration=60 * S)
    assert decide(retry, 1, now=T) == T + 10 * S
    assert decide(retry, 5, now=T + 49 * S) == T + 59 * S
    assert decide(retry, 6, now=T + 50 * S) is None  # would start exactly at the deadline
    assert decide(retry, 6, now=T + 70 * S) is None  # the deadline has passed


@given(
    waited=st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=10)),
    seed=st.integers(0, 2**32),
)
def test_max_duration_is_never_exceeded(waited: timedelta, seed: int) -> None:
    retry = Retry(100, delay=Backoff.exponential(), max_duration=timedelta(minutes=2))
    next_try = decide(retry, 3, now=T + waited, seed=seed)
    if next_try is not None:
        assert T + waited <= next_try < T + timedelta(minutes=2)


def test_retry_decision_rejects_naive_times_and_bad_attempts() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(Retry(3), 1, now=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(Retry(3), 1, now=T, first=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="1-based"):
        decide(Retry(3), 0, now=T)


def test_a_retry_beyond_the_last_datetime_is_no_retry() -> None:
    retry = Retry(3, delay=MAX_DURATION, jitter=0)
    late = datetime(9999, 1, 1, tzinfo=UTC)
    assert decide(retry, 1, now=late, first=late) is None
