"""The store: instance logs kept by eventsourcing, plus the instance index.

A :class:`Store` owns an eventsourcing :class:`~eventsourcing.application.Application`
whose recorder is one of our adapters (``durable_jobs.stores.*``). Saving an
instance writes its new events and its index row in one transaction; loading
rebuilds it from its latest snapshot and the events after it. Every driver or
decoding failure comes out as :class:`~durable_jobs.StoreError` (or
:class:`~durable_jobs.ConcurrencyError` for a version conflict).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Mapper,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import Environment

from durable_jobs._domain import continuous, debounce, task  # noqa: F401  (registers kinds)
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import InstanceSnapshot, JobInstance
from durable_jobs._errors import ConcurrencyError, ConfigurationError, DurableJobsError, StoreError
from durable_jobs._store.crypto import (
    ENCRYPTION_KEY_ENV,
    EncryptedRowError,
    is_encrypted,
    make_cipher,
    row_aad,
)
from durable_jobs._store.index import IndexRow, InstanceIndex
from durable_jobs._store.mapper import CorruptEventError, JsonMapper
from durable_jobs._store.urls import StoreURL, scrub, scrub_chain

__all__ = ["DEFAULT_SNAPSHOT_INTERVAL", "Store"]

log = logging.getLogger("durable_jobs.store")
_T = TypeVar("_T")

DEFAULT_SNAPSHOT_INTERVAL = 100
INDEX_KWARG = "dj_index"
TYPE_VERSIONS_KWARG = "dj_type_versions"


class AlarmListener(Protocol):
    """What :meth:`Store.open_alarm_listener` returns."""

    def fileno(self) -> int: ...

    def drain(self) -> bool: ...

    def close(self) -> None: ...


class _JobsApplication(Application[UUID]):
    """eventsourcing application wired to one store adapter and our JSON mapper."""

    name = "DurableJobs"

    def __init__(self, store: Store) -> None:
        self._store = store
        super().__init__()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Deliberately not os.environ: eventsourcing settings of other apps in the
        # same process must not reconfigure our store.
        return Environment(name, {"IS_SNAPSHOTTING_ENABLED": "y", **self._store._factory_env()})

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        return self._store._make_factory(env)

    def construct_mapper(self) -> Mapper[UUID]:
        return JsonMapper(self._store._cipher)


class Store(ABC):
    """Where job instances live. Open one with :func:`durable_jobs.open_store`.

    Methods are synchronous and thread-safe; the runtime calls them from
    worker threads. Subclasses (the adapters) supply the eventsourcing factory
    whose application recorder also implements :class:`InstanceIndex`.
    """

    #: URL scheme(s) of the adapter (documentation; resolution is by entry point).
    scheme: ClassVar[str]
    #: ``?name=value`` options the adapter's URL accepts.
    url_options: ClassVar[frozenset[str]] = frozenset()
    #: Whether what is saved survives the process.
    durable: ClassVar[bool] = True
    #: Whether other processes may write to the same store at the same time.
    shared: ClassVar[bool] = False
    #: Whether calls may block (on disk or network): the runtime then makes them in
    #: worker threads; calls of a store that never blocks are made inline.
    blocking: ClassVar[bool] = True
    #: False: open an existing store only (read-only tools); a missing file,
    #: schema or table is a ConfigurationError and nothing is created.
    create: bool = True

    @property
    def max_concurrency(self) -> int:
        """How many calls the runtime makes at once (threads); SQLite has one writer."""
        return 1

    # ---- cross-process instance locks ----------------------------------------------

    def try_lock(self, uuid: UUID, scope: str = "instance") -> bool:
        """Take the ``scope`` lock of instance ``uuid`` for this process, without waiting.

        Shared stores (several processes) serialise runs of one instance with
        it; it is released by :meth:`unlock` or when the process dies. Stores
        written by one process need none: this default always succeeds.
        """
        return True

    def unlock(self, uuid: UUID, scope: str = "instance") -> None:  # noqa: B027 - a no-op here
        """Release a lock taken with :meth:`try_lock`."""

    def try_lock_many(self, keys: Sequence[tuple[UUID, str]]) -> list[bool]:
        """:meth:`try_lock` for each ``(uuid, scope)``; an adapter may do it in one round trip."""
        return [self.try_lock(uuid, scope) for uuid, scope in keys]

    def index_versions(self, uuids: Sequence[UUID]) -> dict[UUID, int]:
        """The index version of each of ``uuids`` that has an index row."""
        rows = (self.index_row(uuid) for uuid in uuids)
        return {row.instance_uuid: row.version for row in rows if row is not None}

    def unlock_many(self, keys: Sequence[tuple[UUID, str]]) -> None:
        """:meth:`unlock` for each ``(uuid, scope)``."""
        for uuid, scope in keys:
            self.unlock(uuid, scope)

    def watch_locks(self, lease: float, on_lost: Callable[[int], None]) -> None:  # noqa: B027
        """Keep this process's locks alive, and give them up after ``lease`` seconds
        without a sign of life; ``on_lost(session)`` is called, from any thread, when a
        session holding locks ended while the process lives on. A no-op here: locks
        that live in the process cannot be lost."""

    def unwatch_locks(self) -> None:  # noqa: B027 - nothing watched here
        """Stop what :meth:`watch_locks` started."""

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        """The session holding ``uuid``'s ``scope`` lock for this process (None: none,
        or locks that cannot be lost)."""
        return None

    def session_alive(self, session: int) -> bool:
        """Whether the lock ``session`` still holds its locks."""
        return True

    def ping(self) -> None:  # noqa: B027 - nothing to reach here
        """Raise :class:`StoreError` unless the store can be reached now (after an
        outage: also make it ready for use again)."""

    def unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` (from a call of this store) means the store is out of reach
        for a while (a server down or restarting), rather than a problem with the data
        or the call: the runtime then waits for :meth:`ping` to pass."""
        return False

    def claim_runtime(self) -> None:  # noqa: B027 - nothing to claim here
        """Called by ``open_jobs`` before serving: a store that only one runtime may
        serve at a time raises :class:`ConfigurationError` if another one does."""

    def release_runtime(self) -> None:  # noqa: B027 - nothing to release here
        """Called when ``open_jobs`` ends: undo :meth:`claim_runtime`."""

    def open_alarm_listener(self) -> AlarmListener | None:
        """A way to hear of alarms other processes commit, or None (then only polling).

        The runtime waits until ``fileno()`` is readable and then calls ``drain()``,
        which reads without blocking and says whether another process set an alarm.
        """
        return None

    def __init__(
        self,
        url: StoreURL,
        *,
        snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        encryption_key: str | Sequence[str] | None = None,
        create: bool = True,
    ) -> None:
        # First: a malformed key is refused before anything is opened or created.
        self._cipher = make_cipher(encryption_key)
        #: (kind, job, type version) this store object wrote or found recorded.
        self._known_versions: set[tuple[str, str, int]] = set()
        if not isinstance(snapshot_interval, int) or snapshot_interval < 0:
            msg = (
                "snapshot_interval must be a whole number >= 0 (0 turns snapshots off), "
                f"not {snapshot_interval!r}."
            )
            raise ConfigurationError(msg)
        if not isinstance(create, bool):
            raise ConfigurationError(f"create must be True or False, not {create!r}.")
        url.check_options(set(self.url_options))
        self.url = url
        self.snapshot_interval = snapshot_interval
        self.create = create
        self._app = self._open_application()

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> Self:
        """Open the store named by ``url`` (already parsed; its scheme is this adapter's)."""
        return cls(url, **options)

    # ---- adapter hooks -----------------------------------------------------------

    def _factory_env(self) -> dict[str, str]:
        """eventsourcing environment settings for :meth:`_make_factory`."""
        return {}

    @abstractmethod
    def _make_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        """The eventsourcing factory whose application recorder is our adapter."""

    def _is_version_conflict(self, exc: IntegrityError) -> bool:
        """Whether ``exc`` means an event version was already taken (not another constraint).

        The default recognises SQLite's and eventsourcing's in-memory messages;
        adapters whose drivers say it differently override this.
        """
        text = str(exc)
        return "UNIQUE constraint failed: stored_events" in text or "already recorded" in text

    def _outcome_unknown(self, exc: Exception) -> bool:
        """Whether a failed write may have committed all the same (a connection lost
        during the commit). The default says so for any driver operational error;
        adapters that know better (a local file) override it."""
        return isinstance(exc, OperationalError | InterfaceError)

    def _open_application(self) -> _JobsApplication:
        try:
            return _JobsApplication(self)
        except DurableJobsError:
            raise
        except Exception as exc:
            raise StoreError(
                f"Could not open the store {self.url}: {self._describe(exc)}"
            ) from exc

    @property
    def encrypted(self) -> bool:
        """Whether this store was opened with an encryption key (new rows are encrypted)."""
        return self._cipher is not None

    def plaintext(self, stored: StoredEvent) -> bytes:
        """A stored row's JSON, decrypted if it is encrypted; :class:`StoreError` if it
        is encrypted and no key given to this store decrypts it."""
        mapper = cast(JsonMapper, self._app.mapper)
        try:
            return mapper.plaintext(stored)
        except EncryptedRowError as exc:
            uuid = stored.originator_id
            raise self._read_error(
                uuid if isinstance(uuid, UUID) else UUID(str(uuid)), None, exc
            ) from None

    def check_key(self) -> None:
        """Raise :class:`StoreError` if the newest row is encrypted and this store's
        keys (or lack of one) cannot decrypt it: a wrong or missing key, found with
        one read instead of at the first instance that needs it."""
        position = self.last_position()
        if position:
            for row in self.events_after(position - 1, 1):
                self.plaintext(row)

    @property
    def index(self) -> InstanceIndex:
        """The recorder's instance index."""
        return cast("InstanceIndex", self._app.recorder)

    @property
    def events(self) -> EventStore[UUID]:
        """The eventsourcing event store (for tools that read raw logs)."""
        return self._app.events

    # ---- instances ---------------------------------------------------------------

    def get(self, kind: Kind, job: str, instance_id: str) -> JobInstance | None:
        """Rebuild an instance from its log, or None if it never existed."""
        check_instance_id(instance_id)
        return self.get_by_uuid(
            instance_uuid(kind, job, instance_id), label=_label(kind, job, instance_id)
        )

    def get_by_uuid(
        self, uuid: UUID, *, version: int | None = None, label: str | None = None
    ) -> JobInstance | None:
        """Rebuild the instance with aggregate id ``uuid`` (at ``version`` if given)."""
        try:
            return cast("JobInstance", self._app.repository.get(uuid, version=version))
        except AggregateNotFoundError:
            return None
        except DurableJobsError:
            raise
        except Exception as exc:
            raise self._read_error(uuid, label, exc) from exc

    def save(self, *instances: JobInstance) -> None:
        """Commit the pending events of ``instances`` and their index rows atomically.

        Raises :class:`ConcurrencyError` if another writer saved one of them
        first; then nothing was written and the instances must be reloaded.
        After any error the instances keep their pending events, so a save
        that failed for a passing reason can simply be tried again.
        """
        rows = [_index_row(i) for i in instances if i.pending_events]
        if not rows:
            return
        # Straight to the event store: eventsourcing's Application.save adds
        # nothing we use here but costs runtime protocol checks on every object.
        pending = [(inst, inst.collect_events()) for inst in instances]
        events = [e for _, evs in pending for e in evs]
        versions = self._new_type_versions(
            (inst.d.kind, inst.d.job, getattr(e, "type_version", 1))
            for inst, evs in pending
            for e in evs
        )
        try:
            self._put(events, rows, versions)
        except BaseException:
            # Keep the instances as they were: a failed save can be retried as is.
            for inst, evs in pending:
                inst.pending_events[:0] = evs
            raise
        self._known_versions.update(versions)
        self._snapshot(instances, events)

    def _new_type_versions(
        self, found: Iterable[tuple[str, str, int]]
    ) -> list[tuple[str, str, int]]:
        """The type versions above 1 among ``found`` this store has not recorded yet."""
        return sorted({v for v in found if v[2] > 1 and v not in self._known_versions})

    def recorded_type_versions(self) -> dict[tuple[str, str], set[int]] | None:
        """The type versions above 1 ever written, by (kind, job); None if the adapter
        does not record them (see :meth:`InstanceIndex.select_type_versions`)."""
        found = self._query(self.index.select_type_versions)
        if found is None:
            return None
        out: dict[tuple[str, str], set[int]] = {}
        for kind, job, version in found:
            out.setdefault((kind, job), set()).add(int(version))
            self._known_versions.add((kind, job, int(version)))
        return out

    def _put(
        self,
        events: Sequence[Any],
        rows: Sequence[IndexRow],
        versions: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        """Write ``events``, the index ``rows`` and new type ``versions`` in one
        transaction, mapping driver errors."""
        kwargs = {INDEX_KWARG: rows, TYPE_VERSIONS_KWARG: versions}
        self._write(lambda: self._app.events.put(events, **kwargs), rows)

    def _write(self, write: Callable[[], object], rows: Sequence[IndexRow]) -> None:
        """Run ``write`` (one transaction of events and index ``rows``), mapping driver errors."""
        try:
            write()
        except IntegrityError as exc:
            if not self._is_version_conflict(exc):
                msg = (
                    f"The store {self.url} refused the write ({self._describe(exc)}); "
                    "nothing was written."
                )
                raise StoreError(msg) from exc
            names = ", ".join(_label(r.kind, r.job, r.instance_id) for r in rows)
            msg = (
                f"Another writer changed {names} first (version conflict); nothing was "
                "written. Reload the instance and decide again."
            )
            raise ConcurrencyError(msg) from exc
        except DurableJobsError:
            raise
        except Exception as exc:
            if self._outcome_unknown(exc):
                # The connection failed: the commit itself may have gone through.
                outcome = (
                    "the connection failed, so the write may or may not have been "
                    "committed: reload the instance to find out"
                )
            else:
                outcome = "nothing was written"
            msg = f"Could not save to the store {self.url}: {self._describe(exc)}; {outcome}."
            raise StoreError(msg) from exc

    def _snapshot(self, instances: Sequence[JobInstance], events: Sequence[Any]) -> None:
        """Snapshot each saved instance whose new events crossed a multiple of the interval.

        The in-memory aggregate is snapshotted (no re-read). The events are
        committed already: a failed snapshot is logged, never raised, since a
        snapshot is only a cache.
        """
        interval = self.snapshot_interval
        snapshots = self._app.snapshots
        if not interval or snapshots is None:
            return
        crossed = {e.originator_id for e in events if e.originator_version % interval == 0}
        for inst in instances:
            if inst.id not in crossed:
                continue
            try:
                snapshots.put([InstanceSnapshot.take(inst)])
            except Exception:
                log.warning(
                    "Could not snapshot instance %s; it will replay its events",
                    inst.id,
                    exc_info=True,
                )

    def history(
        self, uuid: UUID, *, gt: int | None = None, lte: int | None = None
    ) -> list[JobInstance.Event]:
        """The recorded events of one instance, oldest first."""
        try:
            return cast(list[JobInstance.Event], list(self._app.events.get(uuid, gt=gt, lte=lte)))
        except DurableJobsError:
            raise
        except Exception as exc:
            raise self._read_error(uuid, None, exc) from exc

    # ---- maintenance: raw rows (export/import, purge, tail) ------------------------

    def stored_events(
        self,
        uuid: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """One instance's rows exactly as stored (topic and JSON, not decoded), oldest
        first (newest first with ``desc``)."""
        recorder = self._app.recorder
        return self._query(
            lambda: list(recorder.select_events(uuid, gt=gt, lte=lte, desc=desc, limit=limit))
        )

    def decode(self, stored: StoredEvent) -> JobInstance.Event:
        """The event of one stored row; a corrupt row raises :class:`StoreError` naming it."""
        try:
            return cast("JobInstance.Event", self._app.mapper.to_domain_event(stored))
        except Exception as exc:
            uuid = stored.originator_id
            raise self._read_error(
                uuid if isinstance(uuid, UUID) else UUID(str(uuid)), None, exc
            ) from exc

    def snapshot_version(self, uuid: UUID, *, lte: int | None = None) -> int | None:
        """The version of the latest snapshot of ``uuid`` (at most ``lte``), or None."""
        snapshots = self._app.snapshots
        if snapshots is None:
            return None
        recorder = snapshots.recorder
        rows = self._query(lambda: recorder.select_events(uuid, lte=lte, desc=True, limit=1))
        return rows[0].originator_version if rows else None

    def import_events(
        self, stored: Sequence[StoredEvent], instances: Sequence[JobInstance]
    ) -> None:
        """Write rows recorded elsewhere verbatim (versions, timestamps, JSON), in one
        transaction with the index rows of ``instances`` (rebuilt from those rows).

        ``instances`` are the aggregates the rows rebuild to, with no pending
        events. If any of the versions is already taken, :class:`ConcurrencyError`
        is raised and nothing is written. Instances at least
        ``snapshot_interval`` events long are snapshotted afterwards (a cache).
        """
        rows = [_index_row(i) for i in instances]
        recorder = self._app.recorder
        versions = self._new_type_versions(
            (i.d.kind, i.d.job, version) for i in instances for version in i.type_versions()
        )
        if self._cipher is not None:
            # Plain rows (from an export) are encrypted like every row this store writes.
            cipher = self._cipher
            stored = [
                s
                if is_encrypted(s.state)
                else StoredEvent(
                    s.originator_id,
                    s.originator_version,
                    s.topic,
                    cipher.encrypt(
                        bytes(s.state), row_aad(s.originator_id, s.originator_version, s.topic)
                    ),
                )
                for s in stored
            ]
        kwargs = {INDEX_KWARG: rows, TYPE_VERSIONS_KWARG: versions}
        self._write(lambda: recorder.insert_events(list(stored), **kwargs), rows)
        self._known_versions.update(versions)
        snapshots = self._app.snapshots
        interval = self.snapshot_interval
        if snapshots is None or not interval:
            return
        for inst in instances:
            if inst.version >= interval:
                try:
                    snapshots.put([InstanceSnapshot.take(inst)])
                except Exception:
                    log.warning("Could not snapshot imported instance %s", inst.id, exc_info=True)

    def delete_instance(self, uuid: UUID, *, version: int) -> tuple[int, int]:
        """Delete a terminated instance's events, snapshots and index row, in one transaction.

        Only if its index row still says ``terminated`` at ``version``; else
        :class:`ConcurrencyError` and nothing is deleted. Returns how many
        events and snapshots were deleted. Adapters implement
        :meth:`_delete_instance`; one that does not cannot purge.
        """
        try:
            counts = self._delete_instance(uuid, version)
        except NotImplementedError:
            msg = f"The store {self.url} ({type(self).__name__}) cannot delete instances."
            raise StoreError(msg) from None
        except DurableJobsError:
            raise
        except Exception as exc:
            msg = f"Could not purge {uuid} in the store {self.url}: {self._describe(exc)}"
            raise StoreError(msg) from exc
        if counts is None:
            msg = (
                f"Instance {uuid} changed while it was being deleted (it is no longer "
                f"terminated at version {version}); nothing was deleted."
            )
            raise ConcurrencyError(msg)
        return counts

    def _delete_instance(self, uuid: UUID, version: int) -> tuple[int, int] | None:
        """Adapter hook of :meth:`delete_instance`: None if the index row did not match."""
        raise NotImplementedError

    def last_position(self) -> int:
        """The global position of the latest committed event (0: none); see events_after."""
        return self._query(lambda: self._app.recorder.max_notification_id() or 0)

    def events_after(self, position: int, limit: int = 500) -> list[Notification]:
        """Rows committed after global ``position``, in commit order (``.id`` is the position)."""
        recorder = self._app.recorder
        return self._query(
            lambda: list(recorder.select_notifications(position, limit, inclusive_of_start=False))
        )

    # ---- the index ---------------------------------------------------------------

    def due_alarms(self, before: datetime, limit: int = 1000) -> list[IndexRow]:
        """Instances whose alarm is due at or before ``before``, earliest first."""
        return self._query(lambda: self.index.due_alarms(before, limit))

    def next_alarms(self, limit: int = 1000, after: datetime | None = None) -> list[IndexRow]:
        """The next ``limit`` alarms, earliest first."""
        return self._query(lambda: self.index.next_alarms(limit, after))

    def index_row(self, uuid: UUID) -> IndexRow | None:
        """The index row of one instance."""
        return self._query(lambda: self.index.index_row(uuid))

    def list_instances(
        self,
        *,
        kind: str | None = None,
        job: str | None = None,
        status: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[IndexRow]:
        """Index rows ordered by (kind, job, instance_id); page with ``after``."""
        return self._query(
            lambda: self.index.select_index(
                kind=kind, job=job, status=status, after=after, limit=limit
            )
        )

    def iter_instances(self, **filters: Any) -> Iterator[IndexRow]:
        """Every index row matching ``filters`` (see :meth:`list_instances`), paged."""
        after: tuple[str, str, str] | None = None
        while True:
            page = self.list_instances(after=after, limit=500, **filters)
            yield from page
            if len(page) < 500:
                return
            last = page[-1]
            after = (last.kind, last.job, last.instance_id)

    def _query(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except DurableJobsError:
            raise
        except Exception as exc:
            raise StoreError(
                f"Could not read the store {self.url}: {self._describe(exc)}"
            ) from exc

    def _describe(self, exc: BaseException) -> str:
        """A one-line account of a driver error, with the URL's password removed everywhere."""
        scrub_chain(exc, self.url.password)
        return scrub(_describe(exc), self.url.password)

    def _read_error(self, uuid: UUID, label: str | None, exc: Exception) -> StoreError:
        if label is None:
            try:
                row = self.index.index_row(uuid)
            except Exception:  # the index itself may be what is broken
                row = None
            label = _label(row.kind, row.job, row.instance_id) if row else f"instance {uuid}"
        if isinstance(exc, EncryptedRowError):
            msg = (
                f"Cannot read {label}: a stored row could not be decrypted: {exc}. Open the "
                "store with the right encryption_key (the CLI reads "
                f"{ENCRYPTION_KEY_ENV}); nothing was changed."
            )
        elif isinstance(exc, CorruptEventError):
            msg = (
                f"Cannot read {label}: stored {exc.row} version {exc.version} is corrupt "
                f"({exc.problem}). Nothing was changed; repair or purge that instance."
            )
        else:
            msg = f"Cannot read {label} from the store {self.url}: {self._describe(exc)}"
        return StoreError(msg)

    # ---- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        self._app.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def _label(kind: str, job: str, instance_id: str) -> str:
    return f"{kind} job {job!r} instance {instance_id!r}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _index_row(inst: JobInstance) -> IndexRow:
    d = inst.d
    return IndexRow(
        instance_uuid=inst.id,
        kind=d.kind,
        job=d.job,
        instance_id=d.instance_id,
        status=inst.status,
        due_at=d.alarm_at,
        version=inst.version,
        updated_at=inst.modified_on,
    )


def index_rows_from(kwargs: dict[str, Any]) -> Sequence[IndexRow]:
    """The index rows a save passed down to ``insert_events``."""
    return cast("Sequence[IndexRow]", kwargs.get(INDEX_KWARG) or ())


def type_versions_from(kwargs: dict[str, Any]) -> Sequence[tuple[str, str, int]]:
    """The new ``(kind, job, type_version)`` a save passed down to ``insert_events``."""
    return cast("Sequence[tuple[str, str, int]]", kwargs.get(TYPE_VERSIONS_KWARG) or ())
