"""Postgres restarted, killed and stopped under a running app, on a server of our own.

The server is started by the test (``_own_postgres.py``: initdb and pg_ctl on a
free port in a temporary directory), never the shared one. The app rides the
outages out by itself: client calls fail with ``StoreError`` within the URL's
``connect_timeout``, due runs wait and resume once the server accepts
connections again, and nothing acknowledged is lost.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio

import durable_jobs as dj
from _own_postgres import OwnPostgres
from _pg_workers import Worker, workers
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs.maintenance import tail_events, tail_position
from test_cli_tail_outage import end_tail, start_tail, write

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONNECT_TIMEOUT = 2


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


def store_url(server: OwnPostgres, schema: str) -> str:
    return f"{server.url}?schema={schema}&connect_timeout={CONNECT_TIMEOUT}"


def runs_after(worker: Worker, moment: float) -> list[float]:
    """When the worker committed alarm runs of the quick instances after ``moment``."""
    return [
        float(c.split()[4])
        for c in worker.commits(after=moment)
        if c.split()[1].startswith(("q", "c")) and c.split()[3] == "run_succeeded"
    ]


def audit(url: str, worker: Worker) -> None:
    """Every acknowledged add and start is stored; every instance kept its alarm; no
    run was committed twice."""
    added = {int(x.split()[1]) for x in worker.lines if x.startswith("added ")}
    started = {x.split()[1] for x in worker.lines if x.startswith("started ")}
    assert added and started
    with dj.open_store(url) as store:
        digest = store.get("debounce", "digest", "d1")
        assert isinstance(digest, DebounceInstance)
        history = store.history(digest.id)
        stored = [e.event for e in history if e.NAME == "event_added"]  # type: ignore[attr-defined]
        assert added <= set(stored), sorted(added - set(stored))[:10]
        assert len(stored) == len(set(stored)), "an event was added twice"
        for instance_id in started | {"q1", "q2"}:
            inst = store.get("continuous", "quick", instance_id)
            assert inst is not None, f"the acknowledged start of {instance_id} was lost"
            assert inst.d.alarm_at is not None, f"{instance_id} lost its alarm"
            counts = [
                e.run_count  # type: ignore[attr-defined]
                for e in store.history(inst.id)
                if e.NAME == "run_succeeded"
            ]
            assert counts == list(range(1, len(counts) + 1)), instance_id
        for row in store.list_instances():
            inst = store.get(row.kind, row.job, row.instance_id)  # type: ignore[arg-type]
            assert inst is not None
            assert (row.version, row.due_at) == (inst.version, inst.d.alarm_at), row


def test_restarts_and_a_stop_lose_nothing_and_runs_resume(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    """A worker that also makes client calls, through a fast restart, an immediate one
    (a crash) and a 10 s stop: it recovers by itself, and everything it was told was
    done is there."""
    url = store_url(own_postgres, "dj_outages")
    figures: list[str] = []
    with workers(tmp_path) as group:
        worker = group.start("w", url, lease=30, slow=0.2, mode="produce")
        group.read_until(lambda: len(runs_after(worker, 0)) >= 5)
        for what, outage in (("restart -m fast", "fast"), ("restart -m immediate", "immediate")):
            own_postgres.restart(outage)
            up = time.time()
            group.read_until(lambda up=up: bool(runs_after(worker, up)))  # type: ignore[misc]
            figures.append(f"{what}: runs resumed {runs_after(worker, up)[0] - up:.2f} s after")
        own_postgres.stop()
        down = time.time()
        group.wait_for(10.0)
        refused = [float(x.split()[2]) for x in worker.lines if x.startswith("refused ")]
        assert refused, "no call failed while the server was down"
        own_postgres.start()
        up = time.time()
        group.read_until(lambda: bool(runs_after(worker, up)))
        figures.append(
            f"stopped {up - down:.0f} s: runs resumed {runs_after(worker, up)[0] - up:.2f} s "
            f"after the start; calls failed within {max(refused):.2f} s "
            f"(connect_timeout {CONNECT_TIMEOUT} s)"
        )
        # Acknowledged calls again, after the outage, without a restart of the app.
        acked = len([x for x in worker.lines if x.startswith("added ")])
        group.read_until(lambda: len([x for x in worker.lines if x.startswith("added ")]) > acked)
        group.stop(worker)
        logged = worker.stderr()
    print("\n" + "\n".join(figures))
    # Due runs waited for the store as a whole (one probe), not each on its own
    # growing backoff (which left them minutes behind after a long outage).
    assert "is reachable again" in logged
    assert "could not run" not in logged, logged[-3000:]
    audit(url, worker)


def _hourly_beat() -> dj.Registry:
    """One continuous job, ``beat``, due every hour: nothing runs while a test watches."""
    registry = dj.Registry()

    @registry.continuous("beat", state=int, schedule=dj.every(timedelta(hours=1)))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        pass

    return registry


async def test_calls_fail_within_connect_timeout_and_work_again(
    own_postgres: OwnPostgres,
) -> None:
    """Server down: a client call raises StoreError within connect_timeout (not three
    times it); back up: the same open app works again."""
    url = store_url(own_postgres, "dj_call_bound")
    registry = _hourly_beat()
    async with dj.open_jobs(registry, url) as jobs:
        client = jobs.continuous("beat")
        await client.start("b1", 0)
        await trio.to_thread.run_sync(own_postgres.stop)
        try:
            calls = (
                lambda: client.status("b2"),
                lambda: client.start("b2", 0),
                lambda: client.history("b1"),
            )
            for call in calls:
                began = time.monotonic()
                with pytest.raises(dj.StoreError):
                    await call()
                took = time.monotonic() - began
                # Bounded by the timeout (plus scheduling slack), not a multiple of it.
                assert took < CONNECT_TIMEOUT + 1.0, took
        finally:
            await trio.to_thread.run_sync(own_postgres.start)
        assert (await client.status("b1")).status == "running"
        await client.start("b2", 0)


async def test_the_tail_reads_fail_within_connect_timeout(own_postgres: OwnPostgres) -> None:
    """The reads of the dashboard's live feed and of ``durable-jobs tail`` (the newest
    position, the notifications after one) fail like the other reads while the server
    is down: within connect_timeout. They kept upstream's ten tries, each waiting
    connect_timeout for a pooled connection: dashboard pages took 17 to 32 s to fail."""
    url = store_url(own_postgres, "dj_tail_bound")
    registry = _hourly_beat()
    async with dj.open_jobs(registry, url) as jobs:
        await jobs.continuous("beat").start("b1", 0)
    with dj.open_store(url) as store:
        assert tail_position(store) > 0
        assert list(tail_events(store, after=0, duration=0))
        own_postgres.stop()
        try:
            reads = (
                lambda: tail_position(store),
                lambda: list(tail_events(store, after=0, duration=0)),
                lambda: tail_position(store),
            )
            for read in reads:
                began = time.monotonic()
                with pytest.raises(dj.StoreError):
                    read()
                took = time.monotonic() - began
                assert took < CONNECT_TIMEOUT + 1.0, took
        finally:
            own_postgres.start()
        assert tail_position(store) > 0


def test_the_tail_command_follows_through_a_stop_and_a_restart(
    own_postgres: OwnPostgres,
) -> None:
    """``durable-jobs tail`` (a process of its own) waits out the server stopped, then
    restarted, and prints every event once, in order, with a notice on stderr."""
    url = store_url(own_postgres, "dj_tail_follows")
    with dj.open_store(url) as writer:
        write(writer, range(2))
    tail, out, err = start_tail(url, "--after", "0", "--poll", "50ms", "--json")
    try:
        with dj.open_store(url) as writer:
            first = writer.last_position()
        out.wait("events", lambda lines: len(lines) == first)
        own_postgres.stop()
        try:
            err.wait("outage notice", lambda lines: '"out_of_reach"' in "".join(lines))
        finally:
            own_postgres.start()
        err.wait("back notice", lambda lines: '"back"' in "".join(lines))
        with dj.open_store(url) as writer:
            write(writer, range(2, 4))
            second = writer.last_position()
            out.wait("events", lambda lines: len(lines) == second)
            own_postgres.restart()  # the tail may or may not try a read meanwhile
            write(writer, range(4, 6))
            last = writer.last_position()
            expected = [note.id for note in writer.events_after(0, 1000)]
        out.wait("every event", lambda lines: len(lines) == last)
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=60) == 0
    finally:
        end_tail(tail, out, err)
    assert [json.loads(x)["position"] for x in out.lines] == expected
    notices = [json.loads(x) for x in err.lines]
    kinds = [n["type"] for n in notices]
    assert kinds[:2] == ["out_of_reach", "back"]
    assert kinds[2:] in ([], ["out_of_reach", "back"])
    assert notices[0]["position"] == first
