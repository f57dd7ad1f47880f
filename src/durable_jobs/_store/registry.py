"""Finding a store adapter by URL scheme (entry-point group ``durable_jobs.stores``)."""

from __future__ import annotations

import difflib
import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from durable_jobs._errors import ConfigurationError
from durable_jobs._store.base import Store
from durable_jobs._store.urls import StoreURL

__all__ = ["ENTRY_POINT_GROUP", "adapter_for", "open_store", "store_schemes"]

ENTRY_POINT_GROUP = "durable_jobs.stores"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def store_schemes() -> list[str]:
    """The URL schemes of every installed store adapter."""
    return sorted(_entry_points())


def open_store(url: str, **options: Any) -> Store:
    """Open the store named by ``url``; close it with ``store.close()`` or ``with``.

    ``url`` is ``memory://``, ``sqlite:///path.db`` (relative) or
    ``sqlite:////abs/path.db``, or ``postgresql://user:password@host:port/db``
    (``?schema=NAME`` optional); other schemes come from third-party adapters
    registered under the ``durable_jobs.stores`` entry-point group.
    ``options``: ``snapshot_interval`` (events between snapshots, default 100;
    0 turns snapshots off), ``create`` (default True; False opens an existing
    store only: a missing SQLite file or Postgres schema is a
    ConfigurationError, and nothing is created) and adapter-specific settings.
    A new SQLite file is created with mode 0600.
    """
    parsed = StoreURL.parse(url)
    cls = adapter_for(parsed)
    _check_options(cls, parsed.scheme, options)
    return cls.from_url(parsed, **options)


def adapter_for(parsed: StoreURL) -> type[Store]:
    """The store class of ``parsed``'s scheme (ConfigurationError if none is installed).

    What :func:`open_store` opens; ``durable-jobs doctor`` checks a URL with its
    :meth:`~Store.check_url`, as opening the store does.
    """
    adapters = _entry_points()
    ep = adapters.get(parsed.scheme)
    if ep is None:
        accepted = (
            ", ".join(f"{s}://" for s in sorted(adapters)) or "none (is durable-jobs installed?)"
        )
        msg = f"Unknown store scheme {parsed.scheme!r} in {str(parsed)!r}; accepted: {accepted}."
        raise ConfigurationError(msg)
    try:
        cls = ep.load()
    except Exception as exc:
        msg = f"The store adapter for {parsed.scheme!r} ({ep.value}) failed to import: {exc}"
        raise ConfigurationError(msg) from exc
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        msg = f"The entry point {ep.value} for {parsed.scheme!r} is not a durable_jobs Store."
        raise ConfigurationError(msg)
    return cls


def _check_options(cls: type[Store], scheme: str, options: dict[str, Any]) -> None:
    """ConfigurationError for an option the adapter does not take (a typo would
    otherwise be a bare TypeError from deep inside), naming the accepted ones.
    An adapter whose ``__init__`` takes ``**kwargs`` checks its options itself."""
    if not options:
        return
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the adapter checks
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = sorted(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in ("self", "url")
    )
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, accepted, n=1)]
        hint = f" Did you mean {', '.join(map(repr, hints))}?" if hints else ""
        msg = (
            f"Unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} for a {scheme} store; accepted: "
            f"{', '.join(accepted) or 'none'}.{hint}"
        )
        raise ConfigurationError(msg)
