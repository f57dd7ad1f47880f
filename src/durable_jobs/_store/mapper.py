"""JSON mapping between instance events and stored rows.

Stored topics are looked up in a fixed table of our own event classes (never
imported by name from the row), and every stored event is validated against
its class with pydantic, so a corrupt or foreign row is reported instead of
turning into a wrong value. No pickle, no eval: JSON only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC
from functools import cache
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import TypeAdapter

from durable_jobs._domain.data import as_utc
from durable_jobs._domain.instance import (
    InstanceSnapshot,
    aggregate_classes,
    event_classes,
    stored_topic,
)
from durable_jobs._store.crypto import Cipher, EncryptedRowError, is_encrypted, row_aad

__all__ = ["CorruptEventError", "JsonMapper"]

SNAPSHOT_TOPIC = "durable_jobs:Snapshot"
_ID_FIELDS = ("originator_id", "originator_version")
_EXCLUDE = set(_ID_FIELDS)
_EXCLUDE_V1 = {*_ID_FIELDS, "type_version"}
_new_object = object.__new__
_set_attribute = object.__setattr__


class CorruptEventError(Exception):
    """A stored row could not be turned into an event (the store maps it to StoreError)."""

    def __init__(
        self, originator_id: UUID | str, version: int, problem: str, row: str = "event"
    ) -> None:
        self.originator_id = originator_id
        self.version = version
        self.problem = problem
        #: ``event`` or ``snapshot``: which kind of row is corrupt.
        self.row = row
        super().__init__(f"stored {row} version {version} of {originator_id}: {problem}")


class _NullTranscoder(Transcoder):
    """The mapper encodes by itself; this only satisfies the base class."""

    def encode(self, obj: Any) -> bytes:  # pragma: no cover - never called
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:  # pragma: no cover - never called
        raise NotImplementedError


@cache
def _topics() -> tuple[dict[str, type[Any]], dict[type[Any], str]]:
    by_topic: dict[str, type[Any]] = dict(event_classes())
    by_topic[SNAPSHOT_TOPIC] = InstanceSnapshot
    return by_topic, {cls: topic for topic, cls in by_topic.items()}


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
_FIELDS: dict[type[Any], frozenset[str]] = {}
_REQUIRED: dict[type[Any], frozenset[str]] = {}


#: How :meth:`JsonMapper.to_stored_event` writes each class, by class (see :func:`_plan`).
_PLANS: dict[type[Any], tuple[str, Callable[..., bytes], bool, tuple[set[str], ...]]] = {}


def _plan(cls: type[Any]) -> tuple[str, Callable[..., bytes], bool, tuple[set[str], ...]]:
    """``(stored topic, JSON serializer, created event?, fields to leave out)`` of
    ``cls``; the last by ``type_version == 1`` + 2 * ``trace is None``."""
    _, by_class = _topics()
    try:
        topic = by_class[cls]
    except KeyError:
        msg = f"{cls.__qualname__} is not an event this store records"
        raise TypeError(msg) from None
    created = "originator_topic" in _payload_fields(cls)
    excludes = []
    for v1, no_trace in ((False, False), (True, False), (False, True), (True, True)):
        exclude = set(_EXCLUDE_V1 if v1 else _EXCLUDE)
        if no_trace:
            exclude.add("trace")
        if created:
            exclude.add("originator_topic")
        excludes.append(exclude)
    return topic, _adapter(cls).serializer.to_json, created, tuple(excludes)


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def _payload_fields(cls: type[Any]) -> frozenset[str]:
    fields = _FIELDS.get(cls)
    if fields is None:
        names = (f.name for f in dataclasses.fields(cls) if f.name not in _ID_FIELDS)
        fields = _FIELDS[cls] = frozenset(names)
    return fields


def _required_fields(cls: type[Any]) -> frozenset[str]:
    """The payload fields without a default: rows written before a field with a
    default existed (``type_version``) lack it and still load."""
    fields = _REQUIRED.get(cls)
    if fields is None:
        names = (
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _ID_FIELDS
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        fields = _REQUIRED[cls] = frozenset(names)
    return fields


class JsonMapper(Mapper[UUID]):
    """Maps instance events and snapshots to JSON rows and back.

    With a ``cipher``, every row it writes is encrypted (see
    ``durable_jobs._store.crypto``); rows are decrypted on the way back, and
    plain JSON rows (written before encryption was turned on) still read.
    """

    def __init__(self, cipher: Cipher | None = None) -> None:
        super().__init__(transcoder=_NullTranscoder())
        self.row_cipher = cipher

    def plaintext(self, stored: StoredEvent) -> bytes:
        """A stored row's JSON bytes, decrypted if it is encrypted.

        Raises :class:`EncryptedRowError` if it is encrypted and no key given
        here decrypts it.
        """
        data = stored.state
        row = "snapshot" if stored.topic == SNAPSHOT_TOPIC else "event"
        if not isinstance(cast(object, data), bytes | bytearray | memoryview):
            # A hand edit or another tool left NULL, TEXT or a number in the column.
            problem = f"its payload is {type(data).__name__}, not bytes"
            raise CorruptEventError(stored.originator_id, stored.originator_version, problem, row)
        if not is_encrypted(data):
            return bytes(data)
        if self.row_cipher is None:
            error = EncryptedRowError("it is encrypted and no encryption key was given")
            error.row, error.version = row, stored.originator_version
            raise error
        aad = row_aad(stored.originator_id, stored.originator_version, stored.topic)
        try:
            return self.row_cipher.decrypt(data, aad)
        except EncryptedRowError as exc:
            exc.row, exc.version = row, stored.originator_version
            raise

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic, state = self.topic_and_state(domain_event)
        # Built without the dataclass __init__ (see built, inline): two on every run.
        stored = _new_object(StoredEvent)
        _set_attribute(
            stored,
            "__dict__",
            {
                "originator_id": domain_event.originator_id,
                "originator_version": domain_event.originator_version,
                "topic": topic,
                "state": state,
            },
        )
        return stored

    def topic_and_state(self, domain_event: Any) -> tuple[str, bytes]:
        """The stored ``topic`` and ``state`` of an event (what :meth:`to_stored_event`
        puts in its row), for adapters that write rows without ``StoredEvent`` objects."""
        cls = type(domain_event)
        plan = _PLANS.get(cls)
        if plan is None:
            plan = _PLANS[cls] = _plan(cls)
        topic, to_json, created, excludes = plan
        # Version 1 (the default) is left out: such rows are what durable-jobs wrote
        # before type versions existed, and older releases still read them. Likewise
        # an alarm set outside a traced call (no trace): the row older releases wrote.
        exclude = excludes[
            (getattr(domain_event, "type_version", None) == 1)
            + 2 * (getattr(domain_event, "trace", 0) is None)
        ]
        if created:
            # Created events: store the short aggregate topic, not eventsourcing's module
            # path. The rest is dumped like any event and the topic put in front (key
            # order means nothing to a reader; this skips a dump to Python and back).
            rest = to_json(domain_event, exclude=exclude)
            topic_json = _short_topic_json(domain_event.originator_topic)
            state = b"{" + topic_json + (b"," + rest[1:] if rest != b"{}" else b"}")
        else:
            state = to_json(domain_event, exclude=exclude)
        if self.row_cipher is not None:
            aad = row_aad(domain_event.originator_id, domain_event.originator_version, topic)
            state = self.row_cipher.encrypt(state, aad)
        return topic, state

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            return self._to_domain_event(stored_event)
        except CorruptEventError as exc:
            if stored_event.topic == SNAPSHOT_TOPIC:
                exc.row = "snapshot"
                exc.args = (f"stored snapshot version {exc.version}: {exc.problem}",)
            raise

    def _to_domain_event(self, stored_event: StoredEvent) -> Any:
        by_topic, _ = _topics()
        oid, version = stored_event.originator_id, stored_event.originator_version
        cls = by_topic.get(stored_event.topic)
        if cls is None:
            raise CorruptEventError(oid, version, f"unknown topic {stored_event.topic!r}")
        try:
            payload = json.loads(self.plaintext(stored_event))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptEventError(oid, version, f"not JSON ({exc})") from exc
        if not isinstance(payload, dict) or not (
            _required_fields(cls) <= set(payload) <= _payload_fields(cls)
        ):
            got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise CorruptEventError(
                oid,
                version,
                f"{stored_event.topic} has fields {got}, expected {sorted(_payload_fields(cls))}",
            )
        _check_topics(cls, payload, oid, version)
        payload["originator_id"] = oid if isinstance(oid, UUID) else UUID(str(oid))
        payload["originator_version"] = version
        try:
            event = _adapter(cls).validate_python(payload)
        except ValueError as exc:
            raise CorruptEventError(oid, version, str(exc)) from exc
        # eventsourcing's own field: give it datetime.UTC like our annotated fields.
        if event.timestamp.tzinfo is not UTC:
            object.__setattr__(event, "timestamp", as_utc(event.timestamp))
        return event


@cache
def _short_topic_json(topic: str) -> bytes:
    """``"originator_topic":"<short topic>"`` for eventsourcing's aggregate ``topic``."""
    short = stored_topic(resolve_topic(topic))
    return b'"originator_topic":' + json.dumps(short, ensure_ascii=False).encode()


def _check_topics(cls: type[Any], payload: dict[str, Any], oid: Any, version: int) -> None:
    """Refuse rows that would make eventsourcing import or build a foreign class.

    A created event's ``originator_topic`` is translated back from our short
    topic to the class's eventsourcing topic, which then resolves from cache.
    """
    allowed = aggregate_classes()
    key = "topic" if cls is InstanceSnapshot else "originator_topic"
    if key not in payload:
        return
    agg = allowed.get(payload[key]) if isinstance(payload[key], str) else None
    if agg is None:
        raise CorruptEventError(oid, version, f"unknown aggregate topic {payload[key]!r}")
    if key == "originator_topic":
        payload[key] = get_topic(agg)
