"""The memory store's alarm index answers from a heap: same answers as a full scan."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._store.index import IndexRow

T = datetime(2026, 1, 1, tzinfo=UTC)


def _scan(
    rows: list[IndexRow],
    limit: int,
    *,
    after: datetime | None = None,
    until: datetime | None = None,
) -> list[IndexRow]:
    """What a full scan of the index answers, earliest first."""
    due = [
        (r.due_at, r.instance_uuid.hex, r)
        for r in rows
        if r.due_at is not None
        and (after is None or r.due_at > after)
        and (until is None or r.due_at <= until)
    ]
    return [r for _, _, r in sorted(due, key=lambda e: (e[0], e[1]))][:limit]


def test_next_and_due_alarms_match_a_full_scan_while_alarms_move() -> None:
    rng = random.Random(15)
    store = dj.open_store("memory://")
    try:
        live: dict[int, ContinuousInstance] = {}
        for step in range(1500):
            slot = rng.randrange(60)
            inst = live.get(slot)
            op = rng.random()
            if inst is None:
                instance_id = f"i{slot}-{step}"
                inst, _ = ContinuousInstance.start(
                    None, "job", instance_id, now=T, state={}, first_run_at=T
                )
                live[slot] = inst
            elif op < 0.6:
                # Few distinct times, so that alarms move back to a time they had.
                inst.set_alarm(T + timedelta(seconds=rng.randrange(8)), now=T)
            elif op < 0.75:
                inst.set_alarm(None, now=T)
            elif op < 0.9:
                inst.terminate(now=T, reason=None)
                del live[slot]
            else:
                inst.terminate(now=T, reason=None)
                store.save(inst)
                del live[slot]
                assert store.delete_instance(inst.id, version=inst.version)[0] == inst.version
                continue
            store.save(inst)
            if step % 10:
                continue
            rows = store.list_instances(limit=1000)
            for limit in (1, 5, 100):
                after = T + timedelta(seconds=rng.randrange(-1, 8))
                assert store.next_alarms(limit) == _scan(rows, limit)
                assert store.next_alarms(limit, after=after) == _scan(rows, limit, after=after)
                assert store.due_alarms(after, limit) == _scan(rows, limit, until=after)
    finally:
        store.close()
