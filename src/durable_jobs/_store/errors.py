"""The one place where a driver's exceptions become :class:`~durable_jobs.StoreError`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from durable_jobs._errors import DurableJobsError, StoreError
from durable_jobs._store.urls import scrub, scrub_chain

__all__ = ["describe_error", "driver_error", "driver_errors", "error_chain"]


def describe_error(exc: BaseException, password: str | None = None) -> str:
    """A one-line account of ``exc`` (``Type: message``), ``password`` removed."""
    text = str(exc).strip() or type(exc).__name__
    described = f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
    return scrub(described, password)


@contextmanager
def driver_errors(
    error: str | Callable[[Exception], DurableJobsError], *, password: str | None = None
) -> Iterator[None]:
    """Turn any exception raised in the block into :class:`~durable_jobs.StoreError`.

    Our own errors (:class:`~durable_jobs.DurableJobsError`) and
    ``BaseException`` s that are not ``Exception`` s (cancellation, ``KeyboardInterrupt``)
    pass through. Any other exception becomes ``StoreError(f"{error}: {account}")``
    (the account is :func:`describe_error`), chained to it, or, if ``error`` is a
    callable, whatever error ``error(exc)`` returns. ``password`` is removed from
    the message and from every message of the chain first, so it never reaches a
    log or a traceback::

        with driver_errors(f"Could not read the store {url}", password=url.password):
            rows = connection.execute(query, params).fetchall()
    """
    try:
        yield
    except DurableJobsError:
        raise
    except Exception as exc:
        raise driver_error(exc, error, password) from exc


def driver_error(
    exc: Exception, error: str | Callable[[Exception], DurableJobsError], password: str | None
) -> DurableJobsError:
    """The error :func:`driver_errors` raises (from ``exc``) for the driver's ``exc``
    (not one of ours): ``password`` is removed from its chain first."""
    scrub_chain(exc, password)
    if callable(error):
        return error(exc)
    return StoreError(f"{error}: {describe_error(exc, password)}")


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (``__cause__``, else
    ``__context__``), outermost first: where a store looks for its driver's error
    behind one of ours (see ``Store.unreachable``)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
