"""Tail: follow the events that other processes commit to a store."""

from __future__ import annotations

import json
import select
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, final
from uuid import UUID

from eventsourcing.persistence import Notification

from durable_jobs._domain.instance import JobInstance, event_classes
from durable_jobs._errors import StoreError, UnreadableIndexRow, ValidationError
from durable_jobs._store.base import Store
from durable_jobs._store.capabilities import AlarmListener, ListensForAlarms
from durable_jobs._tools.args import MAX_POSITION, check_seconds, check_store

__all__ = ["TailEvent", "tail_events", "tail_position"]


@final
@dataclass(frozen=True, kw_only=True)
class TailEvent:
    """One committed event, as :func:`tail_events` reports it.

    ``position`` is the event's global position in the store (pass the last one
    seen as ``after`` to carry on later). ``kind``/``job``/``instance_id`` are
    None if the instance has no index row any more (purged); ``name`` and
    ``state`` are None, and ``error`` says why, if the row does not decode.
    """

    position: int
    instance_uuid: UUID
    kind: str | None
    job: str | None
    instance_id: str | None
    version: int
    timestamp: str | None
    topic: str
    name: str | None
    state: Any
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape: an export event line plus ``position`` and ``error``."""
        return {
            "type": "event",
            "position": self.position,
            "instance_uuid": str(self.instance_uuid),
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "version": self.version,
            "timestamp": self.timestamp,
            "topic": self.topic,
            "name": self.name,
            "state": self.state,
            "error": self.error,
        }


def tail_position(store: Store) -> int:
    """The global position of the latest committed event (0 for an empty store)."""
    check_store(store, "tail_position()")
    return store.last_position()


def tail_events(
    store: Store,
    *,
    after: int | None = None,
    duration: timedelta | float | None = None,
    limit: int | None = None,
    poll_interval: timedelta | float = 0.25,
    stop: threading.Event | None = None,
) -> Generator[TailEvent, None, None]:
    """Yield events as they are committed, oldest first.

    Starts after global position ``after`` (default: now, the latest
    committed event) and ends after ``duration`` (None: never), after
    ``limit`` events, or once ``stop`` is set (having reported what was
    committed until then). Shared stores (Postgres) wake up
    on their NOTIFY channel and also poll every ``poll_interval`` (not every
    commit notifies); the others poll. Reads only. A bad argument (a
    ``poll_interval`` that is not a positive finite duration, say) raises
    :class:`ValidationError` at the call.
    """
    check_store(store, "tail_events()")
    wait = check_seconds(poll_interval, "tail_events() poll_interval", positive=True)
    seconds = (
        None
        if duration is None
        else check_seconds(duration, "tail_events() duration", positive=False)
    )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"tail_events() limit must be None or an int >= 1, got {limit!r}.")
    if after is not None and (
        isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_POSITION
    ):
        msg = (
            "tail_events() after must be None or a position (an int from 0 to "
            f"{MAX_POSITION}), got {after!r}."
        )
        raise ValidationError(msg)
    # Checked at the call (a generator's body would only run at the first next()).
    return _tail(store, after, seconds, limit=limit, wait=wait, stop=stop)


def _tail(
    store: Store,
    after: int | None,
    seconds: float | None,
    *,
    limit: int | None,
    wait: float,
    stop: threading.Event | None,
) -> Generator[TailEvent, None, None]:
    deadline = None if seconds is None else time.monotonic() + seconds
    position = tail_position(store) if after is None else after
    names: dict[UUID, tuple[str, str, str] | None] = {}
    # A read of what is committed by now (duration 0) never waits: no LISTEN connection.
    waits = seconds is None or seconds > 0
    listens = waits and isinstance(store, ListensForAlarms)
    listener = _listen(store) if listens else None
    # When to try again to LISTEN, after a listener was refused or lost (polling meanwhile).
    listen_again = None if listener is not None or not listens else time.monotonic()
    seen = 0
    ending = False
    try:
        while True:
            batch = store.events_after(position, 500)
            for note in batch:
                yield _tail_event(store, note, names)
                position = note.id
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if len(batch) == 500:
                continue
            if ending:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or (stop is not None and stop.is_set()):
                ending = True  # one more read: what was committed until now is reported
                continue
            timeout = wait if remaining is None else min(wait, remaining)
            if listen_again is not None and time.monotonic() >= listen_again:
                listener = _listen(store)
                listen_again = None if listener is not None else time.monotonic() + RELISTEN
            if listener is not None:
                ready, _, _ = select.select([listener.fileno()], [], [], timeout)
                if ready:
                    try:
                        listener.drain()
                    except StoreError:
                        # Its connection ended (the server's idle_session_timeout, a
                        # pg_terminate_backend, a restart): poll, and LISTEN again later.
                        listener.close()
                        listener = None
                        listen_again = time.monotonic() + RELISTEN
            elif stop is not None:
                stop.wait(timeout)
            else:
                time.sleep(timeout)
    finally:
        if listener is not None:
            listener.close()


#: Seconds between tries to LISTEN again, after a listener was refused or lost.
RELISTEN = 5.0


def _listen(store: Store) -> AlarmListener | None:
    """A LISTEN connection on ``store``, or None if the server refuses one now (a
    standby, say, or an outage): then the tail polls."""
    assert isinstance(store, ListensForAlarms)
    try:
        return store.open_alarm_listener()
    except StoreError:
        return None


def _tail_event(
    store: Store, note: Notification, names: dict[UUID, tuple[str, str, str] | None]
) -> TailEvent:
    oid = note.originator_id
    uuid = oid if isinstance(oid, UUID) else UUID(str(oid))
    if uuid not in names:
        try:
            row = store.index_row(uuid)
        except UnreadableIndexRow:
            row = None  # named from its Started event, as without a row; list reports it
        names[uuid] = (row.kind, row.job, row.instance_id) if row is not None else None
    cls = event_classes().get(note.topic)
    state: Any = None
    error: str | None = None
    try:
        state = json.loads(store.plaintext(note))
    except StoreError as exc:
        error = str(exc)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        error = f"stored event is not JSON ({exc})"
    if cls is None:
        error = error or f"unknown topic {note.topic!r}"
    key = names[uuid]
    started = cls is not None and issubclass(cls, JobInstance.Started)
    if key is None and isinstance(state, dict) and started:
        key = (str(state.get("kind")), str(state.get("job")), str(state.get("instance_id")))
    return TailEvent(
        position=note.id,
        instance_uuid=uuid,
        kind=key[0] if key else None,
        job=key[1] if key else None,
        instance_id=key[2] if key else None,
        version=note.originator_version,
        timestamp=state.get("timestamp") if isinstance(state, dict) else None,
        topic=note.topic,
        name=cls.NAME if cls is not None else None,
        state=state,
        error=error,
    )
