"""The dashboard's actions commit domain events, and a worker serving the store acts on them.

No handler runs in the dashboard: "run now" and "resume" set the alarm (a
debounce batch is closed for a manual flush), "terminate" records the end,
"purge" deletes a terminated instance. Real SQLite files and the real Postgres.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trio
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, parked_job, running
from _ui_fixtures import dashboard
from durable_jobs.ui._actions import ActionRefused, available, perform


class Counter(BaseModel):
    n: int = 0


def make_registry(fail: list[bool]) -> dj.Registry:
    """A daily continuous job (failing while ``fail[0]``) and a debounce job."""
    registry = dj.Registry()

    @registry.continuous(
        "daily",
        state=Counter,
        schedule=dj.every(timedelta(days=1)),
        start_immediately=False,
        retry=dj.Retry(2, delay=dj.Backoff.constant(MINUTE), jitter=0, on_exhausted="pause"),
    )
    async def daily(ctx: dj.ContinuousContext[Counter]) -> None:
        if fail[0]:
            raise RuntimeError("down")
        ctx.set_state(Counter(n=ctx.state.n + 1))

    @registry.debounce("digest", event=str, flush_after=timedelta(hours=1))
    async def digest(ctx: dj.DebounceContext[str]) -> None:
        pass

    @registry.debounce(
        "fragile",
        event=str,
        flush_after=timedelta(minutes=5),
        retry=dj.Retry(2, delay=dj.Backoff.constant(MINUTE), jitter=0, on_exhausted="pause"),
    )
    async def fragile(ctx: dj.DebounceContext[str]) -> None:
        if fail[0]:
            raise RuntimeError("down")

    return registry


@pytest.fixture
def store(durable_store_url: str) -> Iterator[dj.Store]:
    opened = dj.open_store(durable_store_url)
    yield opened
    opened.close()


def _names(store: dj.Store, kind: str, job: str, instance_id: str) -> list[str]:
    return [r.name for r in dj.Inspector(store).history(kind, job, instance_id)]


async def test_run_now_sets_the_alarm_to_now_and_a_worker_runs_it(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    registry = make_registry([False])
    async with running(registry, durable_store_url) as jobs:
        await jobs.continuous("daily").start("a", Counter())
    now = T + HOUR
    result = perform(store, "run_now", "continuous", "daily", "a", now=now)
    assert "due now" in result.message
    view = dj.Inspector(store).state_at("continuous", "daily", "a")
    assert view is not None and view.due_at == now
    async with running(registry, durable_store_url, clock=dj.VirtualClock(now)) as jobs:
        await advance(jobs, SECOND)
    assert _names(store, "continuous", "daily", "a")[-4:] == [
        "alarm_set",  # the dashboard's
        "run_succeeded",
        "state_changed",
        "alarm_set",  # the next day's
    ]


async def test_resume_ends_the_pause_through_the_next_successful_run(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    fail = [True]
    registry = make_registry(fail)
    async with running(registry, durable_store_url) as jobs:
        await jobs.continuous("daily").start("a", Counter())
        await advance(jobs, timedelta(days=1, minutes=2))
        assert (await jobs.continuous("daily").status("a")).status == "failed"
    inspector = dj.Inspector(store)
    summary = inspector.status("continuous", "daily", "a")
    assert summary is not None
    assert available("continuous", summary.status, buffered=None, closed=False) == [
        "resume",
        "terminate",
    ]
    now = T + timedelta(days=2)
    perform(store, "resume", "continuous", "daily", "a", now=now)
    fail[0] = False
    async with running(registry, durable_store_url, clock=dj.VirtualClock(now)) as jobs:
        await advance(jobs, SECOND)
        assert (await jobs.continuous("daily").status("a")).status == "running"


async def test_run_now_closes_a_debounce_batch_for_a_manual_flush(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    registry = make_registry([False])
    async with running(registry, durable_store_url) as jobs:
        await jobs.debounce("digest").add("ann", "x")
    perform(store, "run_now", "debounce", "digest", "ann", now=T + MINUTE)
    async with running(registry, durable_store_url, clock=dj.VirtualClock(T + MINUTE)) as jobs:
        await advance(jobs, SECOND)
    records = dj.Inspector(store).history("debounce", "digest", "ann")
    flushed = [r for r in records if r.name == "flushed"]
    assert [(r.data["reason"], r.data["event_count"]) for r in flushed] == [("manual", 1)]


async def test_resume_a_paused_debounce_batch(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    fail = [True]
    registry = make_registry(fail)
    async with running(registry, durable_store_url) as jobs:
        await jobs.debounce("fragile").add("ann", "x")
        await advance(jobs, timedelta(minutes=10))
        assert (await jobs.debounce("fragile").status("ann")).status == "failed"
    now = T + HOUR
    perform(store, "resume", "debounce", "fragile", "ann", now=now)
    fail[0] = False
    async with running(registry, durable_store_url, clock=dj.VirtualClock(now)) as jobs:
        await advance(jobs, SECOND)
        assert (await jobs.debounce("fragile").status("ann")).status == "idle"
    names = _names(store, "debounce", "fragile", "ann")
    assert names[names.index("resumed") :][:2] == ["resumed", "alarm_set"]
    assert "flushed" in names[names.index("resumed") :]


async def test_terminate_then_purge(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    registry = make_registry([False])
    async with running(registry, durable_store_url) as jobs:
        await jobs.continuous("daily").start("a", Counter())
    with pytest.raises(dj.DurableJobsError, match="live"):
        perform(store, "purge", "continuous", "daily", "a", now=T)
    perform(store, "terminate", "continuous", "daily", "a", now=T + HOUR)
    assert _names(store, "continuous", "daily", "a")[-2:] == ["alarm_cleared", "terminated"]
    with pytest.raises(ActionRefused, match="terminated"):
        perform(store, "terminate", "continuous", "daily", "a", now=T + HOUR)
    assert "Purged" in perform(store, "purge", "continuous", "daily", "a", now=T).message
    assert dj.Inspector(store).status("continuous", "daily", "a") is None


async def test_sqlite_refuses_actions_while_a_runtime_serves_it(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = make_registry([False])
    with dj.open_store(sqlite_url) as store:
        async with running(registry, sqlite_url) as jobs:
            await jobs.continuous("daily").start("a", Counter())
            before = _names(store, "continuous", "daily", "a")
            for action in ("run_now", "terminate"):
                with pytest.raises(ActionRefused, match="while a jobs runtime serves"):
                    perform(store, action, "continuous", "daily", "a", now=T)
            assert _names(store, "continuous", "daily", "a") == before


@pytest.mark.postgres
async def test_postgres_worker_sees_a_termination_committed_while_it_serves(
    pg_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = make_registry([False])
    with dj.open_store(pg_url) as store:
        async with running(registry, pg_url) as jobs:
            daily = jobs.continuous("daily")
            await daily.start("a", Counter())
            assert (await daily.status("a")).status == "running"
            # Called from the trio thread: no virtual time passes meanwhile (in a worker
            # thread, the autojump clock would race ahead to the next alarm).
            perform(store, "terminate", "continuous", "daily", "a", now=T)
            assert (await daily.status("a")).status == "not_found"
            # And an alarm set from the dashboard is run by this worker.
            await daily.start("b", Counter())
            perform(store, "run_now", "continuous", "daily", "b", now=T + SECOND)
            # The worker hears of the new alarm by NOTIFY, which arrives in real time
            # (and, failing that, by its poll every 5 s of virtual time): give it up to
            # 10 virtual seconds, not exactly the one second a loaded machine can miss.
            for _ in range(10):
                await advance(jobs, SECOND)
                if (await daily.status("b")).run_count:
                    break
            assert (await daily.status("b")).run_count == 1


def _fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.postgres
async def test_a_dashboard_action_waits_for_a_run_in_flight_in_a_worker(pg_url: str) -> None:
    """Postgres, a worker running the instance: a dashboard action was refused at once
    (409, pointing to ``wait=``/``--wait``, which the dashboard does not have), so an
    instance whose runs follow each other closely could hardly be acted on. It waits
    for the run in flight (up to ACTION_WAIT), in a thread of its own: the pages are
    served meanwhile. Refused still, it says to try again."""
    registry, running_now, release = parked_job()

    form = {"action": "terminate", "kind": "continuous", "job": "slow", "id": "i"}
    # The store (its schema) exists before the dashboard opens it.
    with dj.open_store(pg_url) as admin, dashboard(pg_url, "--allow-actions") as served:
        base = served.base
        async with dj.open_jobs(registry, pg_url) as jobs:
            await jobs.continuous("slow").start("i", 0)
            await running_now.wait()
            now = datetime.now(UTC)
            with pytest.raises(ActionRefused, match="still busy") as refused:
                await trio.to_thread.run_sync(
                    lambda: perform(admin, *form.values(), now=now, wait=0)
                )
            assert "try again in a moment" in str(refused.value)
            assert "wait=" not in str(refused.value) and "--wait" not in str(refused.value)
            confirm = base + "/confirm?" + urllib.parse.urlencode(form)
            status, page = await trio.to_thread.run_sync(_fetch, confirm)
            assert status == 200
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
            answered: list[tuple[int, str]] = []

            async def confirmed() -> None:
                answer = await trio.to_thread.run_sync(lambda: _fetch(base + "/action", fields))
                answered.append(answer)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(confirmed)
                # The pages are served while the action waits for the run.
                instance = (
                    base
                    + "/instance?"
                    + urllib.parse.urlencode({"kind": "continuous", "job": "slow", "id": "i"})
                )
                for url in (base + "/", base + "/alarms", instance, confirm):
                    status, _ = await trio.to_thread.run_sync(_fetch, url)
                    assert status == 200, url
                assert not answered, answered  # still waiting for the run
                release.set()
            status, body = answered[0]
            assert status == 200, body
            assert "Terminated continuous job &#39;slow&#39; instance &#39;i&#39;" in body
            history = await jobs.continuous("slow").history("i")
    # The run in flight committed first; the termination came after it.
    recorded = [r.name for r in history]
    assert recorded[-1] == "terminated" and "run_succeeded" in recorded[:-1], recorded


async def test_a_terminated_instance_whose_log_is_unreadable_can_be_purged(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Its confirmation page reads the index row (the log cannot be read) and the purge
    goes through, as the error message itself advises. The
    page read the log and answered 503, and the purge was refused as "started again"."""
    import sqlite3

    async with running(make_registry([False]), sqlite_url) as jobs:
        await jobs.continuous("daily").start("a", Counter())
        await jobs.continuous("daily").terminate("a")
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE stored_events SET state = x'7b7b7b' WHERE originator_version = 1")
        conn.commit()
    finally:
        conn.close()
    with dashboard(sqlite_url, "--allow-actions") as served:
        query = urllib.parse.urlencode(
            {"action": "purge", "kind": "continuous", "job": "daily", "id": "a"}
        )
        code, page = await trio.to_thread.run_sync(_fetch, f"{served.base}/confirm?{query}")
        assert code == 200, page
        form = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', page))
        code, page = await trio.to_thread.run_sync(_fetch, f"{served.base}/action", form)
        assert code == 200, page
        assert "Purged continuous job" in page
    with dj.open_store(sqlite_url) as store:
        assert store.list_instances() == []


async def test_resume_and_run_now_sent_twice_act_once(
    durable_store_url: str, store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    """A resume of an instance that is not paused (any more), or a run now of one whose
    run is due already, is refused and writes nothing: the same form sent twice (a
    double click, a browser re-sending it) acts once. Before, the second resume wrote
    another alarm_set, and a second run now on a debounce instance closed whatever
    batch had opened meanwhile."""
    fail = [True]
    registry = make_registry(fail)
    async with running(registry, durable_store_url) as jobs:
        await jobs.continuous("daily").start("a", Counter())
        await advance(jobs, timedelta(days=1, minutes=2))
        assert (await jobs.continuous("daily").status("a")).status == "failed"
        await jobs.debounce("digest").add("ann", "x")
    now = T + timedelta(days=2)
    perform(store, "resume", "continuous", "daily", "a", now=now)
    before = _names(store, "continuous", "daily", "a")
    with pytest.raises(ActionRefused, match="is not paused"):
        perform(store, "resume", "continuous", "daily", "a", now=now + SECOND)
    with pytest.raises(ActionRefused, match="due already"):
        perform(store, "run_now", "continuous", "daily", "a", now=now + SECOND)
    assert _names(store, "continuous", "daily", "a") == before
    # The batch opened at T + 1 day 2 min flushes an hour later: run it now, twice.
    at = T + timedelta(days=1, minutes=10)
    perform(store, "run_now", "debounce", "digest", "ann", now=at)
    before = _names(store, "debounce", "digest", "ann")
    assert before[-1] == "alarm_set"
    with pytest.raises(ActionRefused, match="due already"):
        perform(store, "run_now", "debounce", "digest", "ann", now=at + SECOND)
    assert _names(store, "debounce", "digest", "ann") == before
