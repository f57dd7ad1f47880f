"""Checks of job options and handlers, run when a job is defined: a mistake is a
:class:`~durable_jobs.ConfigurationError` when the module loads, not at the first run."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from durable_jobs._domain.backoff import MAX_DURATION, Retry, check_duration_bound, from_seconds
from durable_jobs._errors import ConfigurationError

#: How long a task's or debounce job's idempotency keys are remembered, by default.
DEFAULT_IDEMPOTENCY_WINDOW = timedelta(hours=24)
#: How many closed batches a debounce instance keeps waiting for their flush.
DEFAULT_MAX_BACKLOG = 1000


def is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def check_handler(
    fn: object, *, job: str, role: str, params: str, may_be_sync: bool = False
) -> None:
    """Raise ConfigurationError unless ``fn`` is a handler taking ``params``."""
    count = len(params.split(","))
    usage = f"{'def' if may_be_sync else 'async def'} {role}({params})"
    if not callable(fn):
        msg = f"The {role} handler of job {job!r} must be callable, like `{usage}`; got {fn!r}."
        raise ConfigurationError(msg)
    if not may_be_sync and not is_async(fn):
        msg = (
            f"The {role} handler of job {job!r} ({getattr(fn, '__qualname__', fn)!r}) must be "
            f"an async function: `{usage}: ...`."
        )
        raise ConfigurationError(msg)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        sig.bind(*([None] * count))
    except TypeError:
        msg = (
            f"The {role} handler of job {job!r} ({getattr(fn, '__qualname__', fn)!r}) must "
            f"take {count} positional argument{'s' if count > 1 else ''}: `{usage}`; "
            f"its signature is {sig}."
        )
        raise ConfigurationError(msg) from None


def check_retry(retry: object, job: str) -> Retry | None:
    if retry is not None and not isinstance(retry, Retry):
        msg = f"retry of job {job!r} must be a durable_jobs.Retry or None, got {retry!r}."
        raise ConfigurationError(msg)
    return retry


def check_timeout(timeout: object, job: str) -> timedelta | None:
    """A handler timeout: None, or a positive timedelta (or number of seconds)."""
    if timeout is None:
        return None
    name = f"timeout of job {job!r}"
    if (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and timeout > 0
    ):
        if timeout > MAX_DURATION.total_seconds():
            msg = (
                f"{name} must be at most 100 years ({MAX_DURATION.days} days), "
                f"got {timeout!r:.40} seconds"
            )
            raise ConfigurationError(msg)
        return from_seconds(name, timeout)
    if isinstance(timeout, timedelta) and timeout > timedelta(0):
        check_duration_bound(name, timeout)
        return timeout
    msg = (
        f"timeout of job {job!r} must be None, a positive timedelta or a positive number "
        f"of seconds, got {timeout!r}."
    )
    raise ConfigurationError(msg)


#: The largest type version: the stores keep it in a 64-bit integer column.
MAX_TYPE_VERSION = 2**63 - 1


def check_version(version: object, job: str) -> int:
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= MAX_TYPE_VERSION
    ):
        msg = (
            f"version of job {job!r} must be an int from 1 to 2**63 - 1 (default 1), "
            f"got {version!r:.40}."
        )
        raise ConfigurationError(msg)
    return version


def check_window(window: object, job: str) -> timedelta:
    if not isinstance(window, timedelta) or window <= timedelta(0):
        msg = (
            f"idempotency_window of job {job!r} must be a positive timedelta "
            f"(default 24 hours), got {window!r}."
        )
        raise ConfigurationError(msg)
    check_duration_bound(f"idempotency_window of job {job!r}", window)
    return window


def _write_seconds(value: object, least: timedelta = timedelta(0)) -> str:
    """For a number given where a timedelta is needed (the debounce windows, like
    every(), take no bare numbers): what to write instead, if that would be taken
    (more than 0 and at least ``least``)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_DURATION.total_seconds()
        and timedelta(seconds=value) > timedelta(0)
        and timedelta(seconds=value) >= least
    ):
        return f" A number is not taken as seconds here: write timedelta(seconds={value!r})."
    return ""


def check_debounce_window(
    window: object, max_wait: object, flush_after: object, name: str
) -> None:
    """``flush_after`` positive; ``window`` fixed or sliding; ``max_wait`` only with
    sliding, a timedelta no shorter than ``flush_after``."""
    if not isinstance(flush_after, timedelta) or flush_after <= timedelta(0):
        msg = (
            f"flush_after of debounce job {name!r} must be a positive timedelta, "
            f"got {flush_after!r}.{_write_seconds(flush_after)}"
        )
        raise ConfigurationError(msg)
    check_duration_bound(f"flush_after of debounce job {name!r}", flush_after)
    if window not in ("fixed", "sliding"):
        msg = f'window of debounce job {name!r} must be "fixed" or "sliding", got {window!r}.'
        raise ConfigurationError(msg)
    if max_wait is None:
        return
    if window != "sliding":
        msg = (
            f"max_wait of debounce job {name!r} caps a sliding window: it needs "
            'window="sliding" (a fixed window flushes flush_after after the first event).'
        )
        raise ConfigurationError(msg)
    if not isinstance(max_wait, timedelta) or max_wait < flush_after:
        msg = (
            f"max_wait of debounce job {name!r} must be a timedelta >= flush_after "
            f"({flush_after}), got {max_wait!r}.{_write_seconds(max_wait, flush_after)}"
        )
        raise ConfigurationError(msg)
    check_duration_bound(f"max_wait of debounce job {name!r}", max_wait)
