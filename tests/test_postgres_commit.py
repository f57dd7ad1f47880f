"""The transaction of a Postgres commit: sent at once and synced once, the fence
checked by the server in it (stores/_postgres_commit.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql
from psycopg._pipeline_base import BasePipeline

from durable_jobs import LockLost, open_store
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs.stores._postgres_locks import FENCE_FAILED, FENCE_QUERY, fence_params
from durable_jobs.stores.postgres import PostgresApplicationRecorderWithIndex, PostgresStore

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres

T = datetime(2026, 1, 1, tzinfo=UTC)


def _start(instance_id: str) -> ContinuousInstance:
    inst, _ = ContinuousInstance.start(
        None, "job", instance_id, now=T, state={"n": 0}, first_run_at=T
    )
    return inst


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    yield store
    store.close()


def _recorder(store: PostgresStore) -> PostgresApplicationRecorderWithIndex:
    recorder = store.index
    assert isinstance(recorder, PostgresApplicationRecorderWithIndex)
    return recorder


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the Sync messages psycopg's pipelines send (one round trip each)."""
    sent: list[int] = []
    enqueue = BasePipeline._enqueue_sync

    def counted(self: BasePipeline) -> None:
        sent.append(1)
        enqueue(self)

    monkeypatch.setattr(BasePipeline, "_enqueue_sync", counted)
    return sent


def _idle(store: PostgresStore) -> None:
    with _recorder(store).datastore.get_connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_fenced_commit_is_one_round_trip(pg_store: PostgresStore, syncs: list[int]) -> None:
    first, second = _start("id-1"), _start("id-2")
    pg_store.save(first, second)
    assert pg_store.try_lock_many([(first.id, "instance"), (second.id, "instance")]) == [
        True,
        True,
    ]
    first.reschedule(T + timedelta(hours=1), now=T)
    second.reschedule(T + timedelta(hours=2), now=T)
    syncs.clear()
    pg_store.save(first, second)
    assert len(syncs) == 1
    for inst, due in ((first, T + timedelta(hours=1)), (second, T + timedelta(hours=2))):
        row = pg_store.index_row(inst.id)
        assert row is not None and (row.version, row.due_at) == (inst.version, due)
        stored = pg_store.get("continuous", "job", inst.d.instance_id)
        assert stored is not None and stored.version == inst.version == 3
    _idle(pg_store)


def test_the_fence_refuses_a_commit_when_one_of_its_locks_is_gone(
    pg_store: PostgresStore,
) -> None:
    """The session lives on but no longer holds one of the commit's two locks: the
    server's fence fails, nothing of either instance is written (LockLost)."""
    first, second = _start("id-1"), _start("id-2")
    pg_store.save(first, second)
    saved = first.version
    assert all(pg_store.try_lock_many([(first.id, "instance"), (second.id, "instance")]))
    session = pg_store._locks._conn
    assert session is not None
    # Released behind the store's back: its bookkeeping still has it held.
    session.execute("SELECT pg_advisory_unlock(%s)", (pg_store._lock_key(second.id, "instance"),))
    first.reschedule(T + timedelta(hours=1), now=T)
    second.reschedule(T + timedelta(hours=2), now=T)
    with pytest.raises(LockLost):
        pg_store.save(first, second)
    for inst in (first, second):
        row = pg_store.index_row(inst.id)
        assert row is not None and (row.version, row.due_at) == (saved, T)
        stored = pg_store.get("continuous", "job", inst.d.instance_id)
        assert stored is not None and stored.version == saved
    _idle(pg_store)
    # Both locks held again: the same commit goes through.
    assert pg_store.try_lock(second.id)
    pg_store.save(first, second)
    row = pg_store.index_row(second.id)
    assert row is not None and row.version == saved + 1


def test_an_insert_returns_the_notification_ids(pg_store: PostgresStore) -> None:
    recorder = _recorder(pg_store)
    stored: list[Any] = []
    for instance_id in ("id-1", "id-2"):
        inst = _start(instance_id)
        inst.reschedule(T + timedelta(hours=1), now=T)
        stored += [pg_store._app.mapper.to_stored_event(e) for e in inst.collect_events()]
    ids = recorder.insert_events(stored)
    assert ids is not None and len(ids) == len(stored) == 6
    assert list(ids) == sorted(ids) and len(set(ids)) == 6
    notifications = recorder.select_notifications(start=None, limit=10)
    assert [n.id for n in notifications] == list(ids)


def test_a_commit_notifies_its_events_and_alarms_once_committed(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    """Upstream's notification of new events and the alarm notification go in the
    transaction's first statement; they are delivered when it commits, and not for a
    commit the fence refuses."""
    recorder = _recorder(pg_store)
    recorder.notify_token = "tok"
    with psycopg.connect(postgres_url, autocommit=True) as listener:
        for channel in (recorder.channel_name, recorder.alarm_channel):
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

        def heard() -> list[tuple[str, str]]:
            # A query round trip: what was sent before it has arrived by its answer.
            listener.execute("SELECT 1")
            return [(n.channel, n.payload) for n in listener.notifies(timeout=0)]

        inst = _start("id-1")
        pg_store.save(inst)
        due = T.timestamp()
        # Upstream's channel is the database's (other schemas' commits notify it too).
        notes = heard()
        assert (recorder.channel_name, "") in notes
        assert [n for n in notes if n[0] == recorder.alarm_channel] == [
            (recorder.alarm_channel, f"tok {due!r}")
        ]
        assert pg_store.try_lock(inst.id)
        session = pg_store._locks._conn
        assert session is not None
        session.execute(
            "SELECT pg_advisory_unlock(%s)", (pg_store._lock_key(inst.id, "instance"),)
        )
        inst.reschedule(T + timedelta(hours=1), now=T)
        with pytest.raises(LockLost):
            pg_store.save(inst)
        assert [n for n in heard() if n[0] == recorder.alarm_channel] == []


def _held(conn: psycopg.Connection[Any], keys: list[int]) -> None:
    conn.execute("SELECT pg_advisory_lock(k) FROM unnest(%s::int8[]) AS k", (keys,))


def _fence(conn: psycopg.Connection[Any], pairs: list[tuple[int, int]]) -> Any:
    row = conn.execute(FENCE_QUERY, fence_params(pairs)).fetchone()
    assert row is not None
    return row[0]


def test_the_fence_reads_lock_keys_of_every_sign(postgres_url: str) -> None:
    """pg_locks shows a bigint key as two unsigned halves: keys with the top bit set, or
    either half zero or all ones, are recognised as held, and one not held fails it."""
    keys = [-(2**63), -1, 0, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, -(2**32), -12345678901]
    mark = 987_654_321_987
    with (
        psycopg.connect(postgres_url, autocommit=True) as holder,
        psycopg.connect(postgres_url, autocommit=True) as other,
    ):
        _held(holder, [mark, *keys])
        assert _fence(other, [(k, mark) for k in keys]) == len(keys)
        # Held by a backend that does not hold the marker: not ours.
        _held(other, [mark + 1])
        with pytest.raises(psycopg.Error) as lost:
            _fence(holder, [(keys[0], mark + 1)])
        assert lost.value.sqlstate == FENCE_FAILED
        holder.execute("SELECT pg_advisory_unlock(%s)", (keys[3],))
        with pytest.raises(psycopg.Error) as one_gone:
            _fence(other, [(k, mark) for k in keys])
        assert one_gone.value.sqlstate == FENCE_FAILED
        assert f"{len(keys) - 1} of {len(keys)} held" in str(one_gone.value)


def _rows_made(plan: dict[str, Any]) -> list[int]:
    """Rows each node of an EXPLAIN ANALYZE plan made, over all its loops."""
    made = [int(plan["Actual Rows"]) * int(plan["Actual Loops"])]
    for child in plan.get("Plans", ()):
        made += _rows_made(child)
    return made


def test_the_fence_does_work_in_proportion_to_the_locks_held(postgres_url: str) -> None:
    """A worker holding many locks (a large max_concurrent_runs, or many callers) commits
    with a fence whose work grows with the locks held, not with their square: it once
    joined every advisory lock to every other of its backend (90,000 rows for 300 locks,
    0.9 s a commit with 2,000). Counted in rows made by the plan, not timed."""
    held = 300
    mark = 424_242
    keys = [(-1) ** i * (7_919 * i + 1) for i in range(held)]
    with (
        psycopg.connect(postgres_url, autocommit=True) as holder,
        psycopg.connect(postgres_url, autocommit=True) as other,
    ):
        _held(holder, [mark, *keys])
        pairs = [(k, mark) for k in keys[:50]]
        assert _fence(other, pairs) == 50
        row = other.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + FENCE_QUERY, fence_params(pairs)
        ).fetchone()
        assert row is not None
        locks_now = other.execute("SELECT count(*) FROM pg_catalog.pg_locks").fetchone()
        assert locks_now is not None
        made = _rows_made(row[0][0]["Plan"])
        # Each node reads pg_locks once or joins by hash: never far beyond what is held.
        assert max(made) <= 2 * int(locks_now[0]) + len(pairs), made
