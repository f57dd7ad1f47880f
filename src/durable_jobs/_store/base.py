"""The store: instance logs kept by eventsourcing, plus the instance index.

A :class:`Store` owns an eventsourcing :class:`~eventsourcing.application.Application`
whose recorder is an adapter's (``durable_jobs.stores.*``, or a third party's
written against :mod:`durable_jobs.adapters`). Saving an
instance writes its new events and its index row in one transaction; loading
rebuilds it from its latest snapshot and the events after it. Every driver or
decoding failure comes out as :class:`~durable_jobs.StoreError` (or
:class:`~durable_jobs.ConcurrencyError` for a version conflict).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from itertools import chain
from typing import Any, ClassVar, Self, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import Environment

from durable_jobs._domain import continuous, debounce, task  # noqa: F401  (registers kinds)
from durable_jobs._domain.ids import Kind, check_instance_id, instance_uuid
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import (
    ConcurrencyError,
    ConfigurationError,
    DurableJobsError,
    StatementFailed,
    StoreError,
)
from durable_jobs._store.capabilities import CrossProcessLocks
from durable_jobs._store.crypto import ENCRYPTION_KEY_ENV, EncryptedRowError, make_cipher
from durable_jobs._store.errors import describe_error, driver_error, driver_errors
from durable_jobs._store.index import (
    INDEX_KWARG,
    SNAPSHOTS_KWARG,
    STATEMENTS_KWARG,
    TYPE_VERSIONS_KWARG,
    IndexRow,
    InstanceIndex,
    RunStatements,
    index_rows_from,
    type_versions_from,
)
from durable_jobs._store.mapper import CorruptEventError, JsonMapper
from durable_jobs._store.rows import RowsAndIndex, index_row_of, label
from durable_jobs._store.snapshots import snapshot_rows, write_snapshots
from durable_jobs._store.urls import StoreURL

__all__ = [
    "DEFAULT_SNAPSHOT_INTERVAL",
    "INDEX_KWARG",
    "TYPE_VERSIONS_KWARG",
    "JobsApplication",
    "StatementFailed",
    "Store",
    "index_rows_from",
    "type_versions_from",
]

log = logging.getLogger("durable_jobs.store")

DEFAULT_SNAPSHOT_INTERVAL = 100
#: Kept for code that imported them from here.
_index_row = index_row_of
_label = label


class JobsApplication(Application[UUID]):
    """The eventsourcing application of a store: wired to its adapter's factory and our
    JSON mapper (``store._app``; adapters see it in ``_open_application``)."""

    name = "DurableJobs"

    def __init__(self, store: Store) -> None:
        self._store = store
        super().__init__()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """The store's settings only (see :meth:`Store._factory_env`)."""
        # Deliberately not os.environ: eventsourcing settings of other apps in the
        # same process must not reconfigure our store.
        return Environment(name, {"IS_SNAPSHOTTING_ENABLED": "y", **self._store._factory_env()})

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        """The adapter's factory (:meth:`Store._make_factory`)."""
        return self._store._make_factory(env)

    def construct_mapper(self) -> Mapper[UUID]:
        """Our JSON mapper, encrypting rows if the store has a key."""
        return JsonMapper(self._store._cipher)


_JobsApplication = JobsApplication  # the name adapters used before


#: Idempotency keys an instance may remember per ``snapshot_interval`` of events between
#: two snapshots (see :func:`snapshot_due`).
KEYS_PER_SNAPSHOT_STEP = 1000


def snapshot_due(inst: JobInstance, added: int, interval: int) -> bool:
    """Whether ``inst``, whose last ``added`` events reach a multiple of ``interval``,
    is snapshotted now: every ``interval`` events, times one more for each
    :data:`KEYS_PER_SNAPSHOT_STEP` idempotency keys it remembers.

    A snapshot costs what the instance holds; replaying an event costs about the same
    whatever it holds. An instance that remembers 20,000 keys is snapshotted every
    21 x ``interval`` events, so its adds do not pay a whole copy every ``interval``
    (they got ten times slower), and a load replays at most that many events, which
    costs about what reading the snapshot does.
    """
    steps = 1 + len(inst.d.idempotency) // KEYS_PER_SNAPSHOT_STEP
    if steps == 1:
        return True
    every = interval * steps
    version = inst._version
    return version // every != (version - added) // every


class Store(RowsAndIndex, ABC):
    """Where job instances live. Open one with :func:`durable_jobs.open_store`.

    Methods are synchronous and thread-safe; the runtime calls them from
    worker threads. Subclasses (the adapters, see :mod:`durable_jobs.adapters`)
    supply the eventsourcing factory whose application recorder also implements
    :class:`InstanceIndex`; they may offer optional capabilities
    (:class:`~durable_jobs.adapters.CrossProcessLocks`, ...).
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
    #: Whether handlers may record SQL with ``ctx.execute`` (run in the commit transaction).
    supports_statements: ClassVar[bool] = False
    #: Whether the recorder writes the snapshot rows of ``snapshots_from(kwargs)`` in the
    #: insert transaction (else snapshots get a transaction of their own after it).
    snapshots_in_commit: ClassVar[bool] = False
    #: False: open an existing store only (read-only tools); a missing file,
    #: schema or table is a ConfigurationError and nothing is created.
    create: bool = True

    @property
    def max_concurrency(self) -> int:
        """How many calls the runtime makes at once (threads); SQLite has one writer."""
        return 1

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the store can be reached now (after an
        outage: also make it ready for use again)."""

    def unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` (from a call of this store) means the store is out of reach
        for a while (a server down or restarting), rather than a problem with the data
        or the call: the runtime then waits for :meth:`ping` to pass."""
        return False

    def refuses_every_write(self, exc: BaseException) -> bool:
        """Whether ``exc``, from a save of several instances together, would fail each of
        them saved alone as well: the store busy, locked, full or out of reach, rather
        than something about one of them (a version conflict, a statement). The group
        commit then fails the whole group with it, instead of trying each instance
        alone, which made every caller wait for the store's own timeout once per
        instance queued before it."""
        return self.unreachable(exc)

    #: Whether an ``open_jobs`` serves this store object now (see :meth:`begin_serving`).
    _serving: bool = False

    def begin_serving(self) -> None:
        """Called by ``open_jobs`` first: one runtime at a time per store object.

        Two runtimes on one object would share its cache and, on Postgres, its
        lock session (whose locks are re-entrant), so both would run one
        instance at once. Raises :class:`ConfigurationError` while another
        ``open_jobs`` serves it; :meth:`end_serving` undoes it.
        """
        if self._serving:
            msg = (
                f"This store object ({self.url}) already serves another open_jobs: two "
                "runtimes on one store object would run one instance twice at once. Give "
                "each open_jobs its own store (the URL, or open_store(url) again; several "
                "of them on one Postgres schema share it safely)."
            )
            raise ConfigurationError(msg)
        self._serving = True

    def end_serving(self) -> None:
        """Called when ``open_jobs`` ends: undo :meth:`begin_serving`."""
        self._serving = False

    def claim_runtime(self) -> None:
        """Called by ``open_jobs`` before serving: a store that only one runtime may
        serve at a time raises :class:`ConfigurationError` if another one does."""

    def release_runtime(self) -> None:
        """Called when ``open_jobs`` ends: undo :meth:`claim_runtime`."""

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
        self.check_url(url)
        self.url = url
        self.snapshot_interval = snapshot_interval
        self.create = create
        self._app = self._open_application()

    @classmethod
    def check_url(cls, url: StoreURL) -> None:
        """Raise :class:`ConfigurationError` if this adapter refuses ``url`` (an unknown
        option, a value it cannot take), without opening or creating anything.

        Opening a store checks its URL with this first, and ``durable-jobs doctor``
        checks with it before it looks: both refuse a URL the same way, with the
        same message. Adapters that read more of the URL than its option names
        extend it (calling ``super().check_url(url)``).
        """
        url.check_options(set(cls.url_options))

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> Self:
        """Open the store named by ``url`` (already parsed; its scheme is this adapter's)."""
        return cls(url, **options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("shared") and not issubclass(cls, CrossProcessLocks):
            msg = (
                f"{cls.__qualname__} says shared = True (several processes write to it) "
                "but offers no CrossProcessLocks: two processes could run one instance."
            )
            raise TypeError(msg)

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

    def _open_application(self) -> JobsApplication:
        with self._errors(f"Could not open the store {self.url}"):
            return JobsApplication(self)

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
        except (EncryptedRowError, CorruptEventError) as exc:
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

    def get_many(
        self, keys: Sequence[tuple[Kind, str, str]]
    ) -> list[JobInstance | Exception | None]:
        """:meth:`get` of each ``(kind, job, instance_id)``, in one call: the instance,
        None, or the error its read raised (one that cannot be read fails no other).

        The runtime's reads. Where the adapter can tell which instances have an index
        row (:meth:`_indexed`, one query), those without one are None without a read
        of their log: an instance's index row is written with its events and deleted
        with them.
        """
        try:
            indexed = self._indexed([instance_uuid(*key) for key in keys])
        except Exception:
            indexed = None  # each read below meets (and reports) the problem itself
        found: list[JobInstance | Exception | None] = []
        for kind, job, instance_id in keys:
            if indexed is not None and instance_uuid(kind, job, instance_id) not in indexed:
                found.append(None)
                continue
            try:
                found.append(self.get(kind, job, instance_id))
            except Exception as exc:
                found.append(exc)
        return found

    def _indexed(self, uuids: Sequence[UUID]) -> set[UUID] | None:
        """Which of ``uuids`` have an index row, in one query; None: the adapter cannot
        tell cheaply (every instance is then read from its log)."""
        return None

    def get_by_uuid(
        self, uuid: UUID, *, version: int | None = None, label: str | None = None
    ) -> JobInstance | None:
        """Rebuild the instance with aggregate id ``uuid`` (at ``version`` if given)."""
        with self._errors(lambda exc: self._read_error(uuid, label, exc)):
            try:
                return cast("JobInstance", self._app.repository.get(uuid, version=version))
            except AggregateNotFoundError:
                return None

    def save(self, *instances: JobInstance, statements: RunStatements = ()) -> None:
        """Commit the pending events of ``instances`` and their index rows atomically.

        ``statements`` (instance uuid, its run's recorded statements) run in the
        same transaction, in order; one that fails raises :class:`StatementFailed`
        naming its instance, and nothing is written.

        Raises :class:`ConcurrencyError` if another writer saved one of them
        first; then nothing was written and the instances must be reloaded.
        After any error the instances keep their pending events, so a save
        that failed for a passing reason can simply be tried again.
        """
        if len(instances) == 1 and not statements and self._save_one(instances[0]):
            return
        if (
            statements
            and not self.supports_statements
            and any(inst.pending_events for inst in instances)
        ):
            raise ConfigurationError(f"The store {self.url} cannot run ctx.execute() statements.")
        rows: list[IndexRow] = []
        pending: list[tuple[JobInstance, list[Any]]] = []
        events: list[Any] = []
        found: list[tuple[str, str, int]] = []
        # Snapshots are due for the instances whose new events reach a multiple of it.
        snapshots = self._app.snapshots
        interval = self.snapshot_interval if snapshots is not None else 0
        due: list[JobInstance] = []
        for inst in instances:
            # _pending_events, _version: what eventsourcing's properties return.
            if not inst._pending_events:
                continue
            rows.append(index_row_of(inst))
            # Straight to the event store: eventsourcing's Application.save adds
            # nothing we use here but costs runtime protocol checks on every object.
            # inst.collect_events(), inline: the list handed over whole.
            evs = inst._pending_events
            inst._pending_events = []
            pending.append((inst, evs))
            events.extend(evs)
            for e in evs:
                version = getattr(e, "type_version", 1)
                if version > 1:
                    found.append((inst.d.kind, inst.d.job, version))
            # The new events are the versions after ``inst.version - len(evs)``.
            if interval:
                version = inst._version
                if version // interval != (version - len(evs)) // interval and snapshot_due(
                    inst, len(evs), interval
                ):
                    due.append(inst)
        if not rows:
            return
        versions = self._new_type_versions(found) if found else []
        in_commit = bool(due) and self.snapshots_in_commit
        run_statements = [(u, s) for u, s in statements if s] if statements else []
        try:
            if in_commit:
                assert snapshots is not None
                taken = snapshot_rows(due, snapshots.mapper)
                self._put(events, rows, versions, run_statements, snapshots=taken)
            else:
                self._put(events, rows, versions, run_statements)
        except BaseException:
            # Keep the instances as they were: a failed save can be retried as is.
            for inst, evs in pending:
                inst.pending_events[:0] = evs
            raise
        self._known_versions.update(versions)
        if due and not in_commit:
            self._write_snapshots(due)

    def _save_one(self, inst: JobInstance) -> bool:
        """:meth:`save` of one instance without statements, new type versions or a
        snapshot due (a run's commit on a store that does not group them): what the
        general path does, without its lists. False (nothing done): not such a save."""
        pending = inst._pending_events
        if not pending:
            return True
        for e in pending:
            if getattr(e, "type_version", 1) > 1:
                return False
        if self._app.snapshots is not None and self.snapshot_interval:
            interval, version = self.snapshot_interval, inst._version
            if version // interval != (version - len(pending)) // interval and snapshot_due(
                inst, len(pending), interval
            ):
                return False
        row = index_row_of(inst)
        evs = inst.collect_events()
        try:
            self._put(evs, [row])
        except BaseException:
            # Keep the instance as it was: a failed save can be retried as is.
            inst._pending_events[:0] = evs
            raise
        return True

    def _write_snapshots(self, due: Sequence[JobInstance]) -> None:
        """Snapshot ``due`` (committed just now) in a transaction of their own."""
        if self._app.snapshots is not None:
            write_snapshots(self._app.snapshots, due)

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
        statements: RunStatements = (),
        snapshots: Sequence[StoredEvent] = (),
    ) -> None:
        """Write ``events``, the index ``rows``, new type ``versions``, run ``statements``
        and (:attr:`snapshots_in_commit` adapters) ``snapshots`` in one transaction,
        mapping driver errors."""
        kwargs: dict[str, Any] = {
            INDEX_KWARG: rows,
            TYPE_VERSIONS_KWARG: versions,
            STATEMENTS_KWARG: statements,
        }
        if snapshots:
            kwargs[SNAPSHOTS_KWARG] = snapshots
        # self._write(lambda: self._insert_stored(events, kwargs), rows), without the
        # closure and its two calls on every save.
        try:
            self._insert_stored(events, kwargs)
        except DurableJobsError:
            raise
        except Exception as exc:
            raise self._write_failure(exc, rows) from exc

    def _insert_stored(self, events: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Map ``events`` to stored rows and insert them, with ``kwargs`` for the recorder.

        What eventsourcing's ``EventStore.put`` does, without the ``Recording``
        and ``Notification`` objects it builds for each event (nothing here reads
        them: two more objects per event for the garbage collector).
        """
        store = self._app.events
        store.recorder.insert_events(list(map(store.mapper.to_stored_event, events)), **kwargs)

    @property
    def _event_encoder(self) -> Callable[[Any], tuple[str, bytes]]:
        """The stored ``(topic, state)`` of an event (its JSON, encrypted if the store
        is), what :meth:`_insert_stored` puts in its row: for adapters that write the
        rows' values without ``StoredEvent`` objects."""
        return cast(JsonMapper, self._app.mapper).topic_and_state

    def _write(self, write: Callable[[], object], rows: Sequence[IndexRow]) -> None:
        """Run ``write`` (one transaction of events and index ``rows``), mapping driver errors."""
        # What ``with self._errors(...)`` does, without a generator context manager
        # on every save.
        try:
            write()
        except DurableJobsError:
            raise
        except Exception as exc:
            raise self._write_failure(exc, rows) from exc

    def _write_failure(self, exc: Exception, rows: Sequence[IndexRow]) -> DurableJobsError:
        """What a write of ``rows`` that failed with the driver's ``exc`` raises (its
        password removed from the chain)."""
        return driver_error(exc, lambda e: self._write_error(e, rows), self.url.password)

    def _write_error(self, exc: Exception, rows: Sequence[IndexRow]) -> StoreError:
        """The error of a write that failed with the driver's ``exc``."""
        if isinstance(exc, IntegrityError):
            if not self._is_version_conflict(exc):
                msg = (
                    f"The store {self.url} refused the write ({self._describe(exc)}); "
                    "nothing was written."
                )
                return StoreError(msg)
            names = ", ".join(label(r.kind, r.job, r.instance_id) for r in rows)
            msg = (
                f"Another writer changed {names} first (version conflict); nothing was "
                "written. Reload the instance and decide again."
            )
            return ConcurrencyError(msg)
        if self._outcome_unknown(exc):
            # The connection failed: the commit itself may have gone through.
            outcome = (
                "the connection failed, so the write may or may not have been "
                "committed: reload the instance to find out"
            )
        else:
            outcome = "nothing was written"
        return StoreError(
            f"Could not save to the store {self.url}: {self._describe(exc)}; {outcome}."
        )

    def history(
        self,
        uuid: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        limit: int | None = None,
    ) -> list[JobInstance.Event]:
        """The recorded events of one instance, oldest first (the first ``limit`` of them)."""
        with self._errors(lambda exc: self._read_error(uuid, None, exc)):
            events = self._app.events.get(uuid, gt=gt, lte=lte, limit=limit)
            return cast(list[JobInstance.Event], list(events))

    def iter_history(
        self,
        uuid: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        label: str | None = None,
        page: int = 1000,
    ) -> Iterator[JobInstance.Event]:
        """:meth:`history`, read ``page`` events at a time: a long log is never held whole."""
        with self._errors(lambda exc: self._read_error(uuid, label, exc)):
            yield from self._pages(uuid, gt=gt, lte=lte, page=page)

    def _pages(
        self, uuid: UUID, *, gt: int | None, lte: int | None, page: int
    ) -> Iterator[JobInstance.Event]:
        after = gt
        while True:
            events = cast(
                list[JobInstance.Event],
                list(self._app.events.get(uuid, gt=after, lte=lte, limit=page)),
            )
            yield from events
            if len(events) < page:
                return
            after = events[-1].originator_version

    def rebuild(
        self, uuid: UUID, *, version: int, label: str | None = None, page: int = 1000
    ) -> JobInstance | None:
        """:meth:`get_by_uuid` at ``version``, the same instance, its log read ``page``
        events at a time (from the latest snapshot at or before ``version``, else from
        the first event): a rebuild from a long log holds one page of it."""
        with self._errors(lambda exc: self._read_error(uuid, label, exc)):
            snapshots: list[Any] = []
            if self._app.snapshots is not None:
                snapshots = list(self._app.snapshots.get(uuid, desc=True, limit=1, lte=version))
            gt = snapshots[0].originator_version if snapshots else None
            agg: Any = None
            for event in chain(snapshots, self._pages(uuid, gt=gt, lte=version, page=page)):
                agg = event.mutate(agg)
            return cast("JobInstance | None", agg)

    def _errors(
        self, error: str | Callable[[Exception], DurableJobsError]
    ) -> AbstractContextManager[None]:
        """:func:`~durable_jobs.adapters.driver_errors` with this store's password."""
        return driver_errors(error, password=self.url.password)

    def _describe(self, exc: BaseException) -> str:
        """A one-line account of a driver error, with the URL's password removed everywhere."""
        return describe_error(exc, self.url.password)

    def _read_error(self, uuid: UUID, label: str | None, exc: Exception) -> StoreError:
        if label is None:
            try:
                row = self.index.index_row(uuid)
            except Exception:  # the index itself may be what is broken
                row = None
            label = _label(row.kind, row.job, row.instance_id) if row else f"instance {uuid}"
        if isinstance(exc, EncryptedRowError):
            where = f"stored {exc.row} version {exc.version}"
            if exc.version is None:
                where = "a stored row"
            key = f"encryption_key (the CLI reads {ENCRYPTION_KEY_ENV})"
            if exc.altered:
                # Both stay possible: a key id is short, so another key may share it.
                advice = (
                    f"Either the {key} is not the one that row was written with, or that "
                    "row was altered or moved in the database (restore it from a backup)"
                )
            else:
                advice = f"Open the store with the right {key}"
            msg = (
                f"Cannot read {label}: {where} could not be decrypted: {exc}. {advice}; "
                "nothing was changed."
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
