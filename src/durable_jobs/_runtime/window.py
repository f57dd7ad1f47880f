"""The scheduler's bounded in-memory window of the next alarms.

The store's instance index holds every alarm; the window holds the earliest
``size`` of them (loaded with one index query, no aggregate rebuilt) plus
every change this process commits below its horizon. Memory stays bounded
however many alarms are pending: beyond the horizon, alarms stay in the
store until the window reaches them and reloads.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container, Sequence
from datetime import datetime
from operator import attrgetter
from typing import NamedTuple
from uuid import UUID

from durable_jobs._store.index import IndexRow

__all__ = ["AlarmKey", "AlarmWindow"]

_DUE_AT = attrgetter("due_at")
#: Heap entries beyond twice the alarms (and this many) make the heap be rebuilt.
_SLACK = 64


class AlarmKey(NamedTuple):
    """Which instance an alarm belongs to (a tuple: made for every alarm read or set)."""

    uuid: UUID
    kind: str
    job: str
    instance_id: str


class AlarmWindow:
    """Alarms known to be due before ``horizon`` (all of them when ``complete``).

    The rows of the last load stay as read (earliest first: a list consumed from its
    front, no entry made per row); alarms set since are in a heap. An alarm is in
    ``_due`` while it stands; an entry (row or heap) whose alarm moved, was cleared
    or was taken is skipped when met. ``_due`` is keyed by ``uuid.int``: a uuid's
    own ``__hash__`` is Python code, run on every lookup (several a run).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[datetime, int, AlarmKey]] = []
        #: The rows of the last load, earliest first, and the first not yet passed.
        self._rows: list[IndexRow] = []
        self._next = 0
        self._due: dict[int, datetime] = {}
        self._seq = 0
        self.complete = True
        self.horizon: datetime | None = None

    def __len__(self) -> int:
        return len(self._due)

    @property
    def entries(self) -> int:
        """Entries kept: the alarms, and entries an alarm that moved left behind."""
        return len(self._heap) + len(self._rows) - self._next

    def load(
        self,
        rows: Sequence[IndexRow],
        *,
        running: Container[UUID] = (),
        running_ints: Container[int] = (),
        newer: Callable[[IndexRow], tuple[bool, datetime | None]] | None = None,
    ) -> None:
        """Replace the window with ``rows`` (the earliest alarms, earliest first).

        Rows of ``running`` instances (or whose ``uuid.int`` is in ``running_ints``)
        are left out: their run sets their next alarm when it ends. ``newer(row)``
        says whether this process committed a later version of the row's instance
        than the row (read while it committed), and that version's alarm, which is
        kept instead of the stale one.
        """
        self.complete = len(rows) < self.size
        self.horizon = None if self.complete or not rows else rows[-1].due_at
        kept: list[IndexRow] = []
        current: dict[int, datetime] = {}
        moved: list[tuple[IndexRow, datetime | None]] = []
        for row in rows:
            due = row.due_at
            uuid = row.instance_uuid
            key = uuid.int
            if due is None or key in running_ints or uuid in running:
                continue
            if newer is not None:
                known, at = newer(row)
                if known:
                    moved.append((row, at))
                    continue
            current[key] = due
            kept.append(row)
        # Earliest first already (every store's order): this only checks it, in C.
        kept.sort(key=_DUE_AT)
        self._heap, self._rows, self._next, self._due = [], kept, 0, current
        for row, at in moved:
            self.set(_key(row), at)

    def _push(self, key: AlarmKey, due: datetime) -> None:
        self._due[key.uuid.int] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))

    def set(self, key: AlarmKey, due: datetime | None) -> None:
        """Record that ``key``'s alarm is now ``due`` (None: it has none)."""
        if due is None or not (self.complete or (self.horizon is not None and due < self.horizon)):
            self._due.pop(key.uuid.int, None)
            return
        current = self._due
        uuid = key.uuid.int
        if current.get(uuid) != due:
            current[uuid] = due
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, key))
            if len(self._due) > 2 * self.size:
                self._trim()
            elif len(self._heap) > 2 * len(self._due) + _SLACK:
                self._compact()

    def _compact(self) -> None:
        """Drop the entries that alarms moved later left behind (each would stay in the
        heap until its time came): an alarm moved on every commit (a debounce window
        that slides) must not grow the heap, nor the cost of a pop, without bound."""
        live: list[tuple[datetime, int, AlarmKey]] = []
        seen: set[int] = set()
        for entry in self._heap:
            uuid = entry[2].uuid.int
            if uuid not in seen and self._due.get(uuid) == entry[0]:
                seen.add(uuid)
                live.append(entry)
        heapq.heapify(live)
        self._heap = live

    def _trim(self) -> None:
        """Keep the earliest ``size`` alarms; the rest wait in the store until reloaded.

        Every alarm due before the new horizon is among those kept, so the
        window stays exact below it.
        """
        keys = {row.instance_uuid.int: _key(row) for row in self._rows[self._next :]}
        keys.update((key.uuid.int, key) for _, _, key in self._heap)
        kept = heapq.nsmallest(self.size, ((due, uuid) for uuid, due in self._due.items()))
        self.complete = False
        self.horizon = kept[-1][0]
        self._heap.clear()
        self._rows, self._next = [], 0
        self._due.clear()
        for due, uuid in kept:
            self._push(keys[uuid], due)

    def _first_row(self) -> IndexRow | None:
        """The earliest loaded row whose alarm stands (the ones before it are passed)."""
        rows, i, current = self._rows, self._next, self._due
        end = len(rows)
        while i < end:
            row = rows[i]
            if current.get(row.instance_uuid.int) == row.due_at:
                self._next = i
                return row
            i += 1
        self._next = end
        return None

    def _clean(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][2].uuid.int) != heap[0][0]:
            heapq.heappop(heap)

    def next_due(self) -> datetime | None:
        """The earliest alarm in the window."""
        self._clean()
        row = self._first_row()
        heap = self._heap
        if row is None:
            return heap[0][0] if heap else None
        due = row.due_at
        assert due is not None  # loaded rows have an alarm
        return heap[0][0] if heap and heap[0][0] < due else due

    def pop_due(self, now: datetime) -> list[AlarmKey]:
        """Remove and return every alarm due at or before ``now``, earliest first."""
        heap, current, rows = self._heap, self._due, self._rows
        due: list[AlarmKey] = []
        i, end = self._next, len(rows)
        while True:
            while heap and current.get(heap[0][2].uuid.int) != heap[0][0]:
                heapq.heappop(heap)  # left behind by an alarm that moved
            # The first loaded row whose alarm stands.
            row, at = None, None
            while i < end:
                candidate = rows[i]
                at = candidate.due_at
                if at is not None and current.get(candidate.instance_uuid.int) == at:
                    row = candidate
                    break
                i += 1
            # The earlier of it and the heap's first (on ties the row: loaded first).
            if row is not None and at is not None and not (heap and heap[0][0] < at):
                if at > now:
                    break
                del current[row.instance_uuid.int]
                due.append(_key(row))
                i += 1
            elif heap and heap[0][0] <= now:
                _, _, key = heapq.heappop(heap)
                del current[key.uuid.int]
                due.append(key)
            else:
                break
        self._next = i
        return due

    def has_due(self, now: datetime) -> bool:
        nxt = self.next_due()
        return nxt is not None and nxt <= now

    def count_due(self, now: datetime) -> int:
        """How many alarms in the window are due at or before ``now``."""
        return sum(1 for due in self._due.values() if due <= now)

    def heard_of(self, due: datetime) -> None:
        """Another process committed an alarm due at ``due``: the window is exact only
        below it from now on (it asks for a reload once ``due`` is reached)."""
        if self.complete or (self.horizon is not None and due < self.horizon):
            self.complete = False
            self.horizon = due
            self._due = {uuid: at for uuid, at in self._due.items() if at < due}

    def needs_reload(self, now: datetime) -> bool:
        """Whether alarms beyond the horizon may be due by ``now``."""
        return not self.complete and (self.horizon is None or self.horizon <= now)


_new_tuple = tuple.__new__


def alarm_key(uuid: UUID, kind: str, job: str, instance_id: str) -> AlarmKey:
    """``AlarmKey(uuid, kind, job, instance_id)`` without its Python ``__new__``."""
    return _new_tuple(AlarmKey, (uuid, kind, job, instance_id))


def _key(row: IndexRow) -> AlarmKey:
    return _new_tuple(AlarmKey, (row.instance_uuid, row.kind, row.job, row.instance_id))
