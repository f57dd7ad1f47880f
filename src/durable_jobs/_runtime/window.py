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
from typing import NamedTuple
from uuid import UUID

from durable_jobs._store.index import IndexRow

__all__ = ["AlarmKey", "AlarmWindow"]

#: Heap entries beyond twice the alarms (and this many) make the heap be rebuilt.
_SLACK = 64


class AlarmKey(NamedTuple):
    """Which instance an alarm belongs to (a tuple: made for every alarm read or set)."""

    uuid: UUID
    kind: str
    job: str
    instance_id: str


class AlarmWindow:
    """Alarms known to be due before ``horizon`` (all of them when ``complete``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[datetime, int, AlarmKey]] = []
        self._due: dict[UUID, datetime] = {}
        self._seq = 0
        self.complete = True
        self.horizon: datetime | None = None

    def __len__(self) -> int:
        return len(self._due)

    @property
    def entries(self) -> int:
        """Entries in the heap: the alarms, and entries an alarm that moved left behind."""
        return len(self._heap)

    def load(
        self,
        rows: Sequence[IndexRow],
        *,
        running: Container[UUID] = (),
        newer: Callable[[IndexRow], tuple[bool, datetime | None]] | None = None,
    ) -> None:
        """Replace the window with ``rows`` (the earliest alarms, earliest first).

        Rows of ``running`` instances are left out: their run sets their next alarm
        when it ends. ``newer(row)`` says whether this process committed a later
        version of the row's instance than the row (read while it committed), and
        that version's alarm, which is kept instead of the stale one.
        """
        self.complete = len(rows) < self.size
        self.horizon = None if self.complete or not rows else rows[-1].due_at
        heap: list[tuple[datetime, int, AlarmKey]] = []
        due_at: dict[UUID, datetime] = {}
        self._heap, self._due = heap, due_at
        seq = self._seq
        moved: list[tuple[AlarmKey, datetime | None]] = []
        for row in rows:
            due = row.due_at
            uuid = row.instance_uuid
            if due is None or uuid in running:
                continue
            key = AlarmKey(uuid, row.kind, row.job, row.instance_id)
            if newer is not None:
                known, at = newer(row)
                if known:
                    moved.append((key, at))
                    continue
            due_at[uuid] = due
            seq += 1
            heap.append((due, seq, key))
        self._seq = seq
        # Rows come earliest first, so this only checks (in C) that the list is a heap.
        heapq.heapify(heap)
        for key, at in moved:
            self.set(key, at)

    def _push(self, key: AlarmKey, due: datetime) -> None:
        self._due[key.uuid] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))

    def set(self, key: AlarmKey, due: datetime | None) -> None:
        """Record that ``key``'s alarm is now ``due`` (None: it has none)."""
        if due is None or not (self.complete or (self.horizon is not None and due < self.horizon)):
            self._due.pop(key.uuid, None)
            return
        if self._due.get(key.uuid) != due:
            self._push(key, due)
            if len(self._due) > 2 * self.size:
                self._trim()
            elif len(self._heap) > 2 * len(self._due) + _SLACK:
                self._compact()

    def _compact(self) -> None:
        """Drop the entries that alarms moved later left behind (each would stay in the
        heap until its time came): an alarm moved on every commit (a debounce window
        that slides) must not grow the heap, nor the cost of a pop, without bound."""
        live: list[tuple[datetime, int, AlarmKey]] = []
        seen: set[UUID] = set()
        for entry in self._heap:
            uuid = entry[2].uuid
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
        keys = {key.uuid: key for _, _, key in self._heap}
        kept = heapq.nsmallest(self.size, ((due, uuid) for uuid, due in self._due.items()))
        self.complete = False
        self.horizon = kept[-1][0]
        self._heap.clear()
        self._due.clear()
        for due, uuid in kept:
            self._push(keys[uuid], due)

    def _clean(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][2].uuid) != heap[0][0]:
            heapq.heappop(heap)

    def next_due(self) -> datetime | None:
        """The earliest alarm in the window."""
        self._clean()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[AlarmKey]:
        """Remove and return every alarm due at or before ``now``, earliest first."""
        heap, current = self._heap, self._due
        due: list[AlarmKey] = []
        while heap:
            at, _, key = heap[0]
            uuid = key.uuid
            if current.get(uuid) != at:
                heapq.heappop(heap)  # left behind by an alarm that moved
            elif at > now:
                break
            else:
                heapq.heappop(heap)
                del current[uuid]
                due.append(key)
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
