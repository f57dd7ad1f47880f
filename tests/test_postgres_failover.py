"""libpq multi-host URLs: a primary and its standby in one store URL, and a failover.

``postgresql://u@db1:5432,db2:5432/jobs?target_session_attrs=read-write``
makes libpq try the hosts in order and keep the session that takes writes.
The servers are the test's own (``_own_postgres.py``): a primary, and a
streaming replica made from it with ``pg_basebackup -R``. The failover test
stops the primary under a running worker and promotes the standby; the worker
carries on by itself and nothing it acknowledged is lost.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio

import durable_jobs as dj
from _own_postgres import OwnPostgres
from _pg_workers import workers
from durable_jobs._store.urls import StoreURL
from durable_jobs.stores.postgres import libpq_hosts
from test_postgres_outages import audit, runs_after

pytestmark = [pytest.mark.postgres]


# -- the URL form ---------------------------------------------------------------


def test_a_multi_host_url_keeps_every_host_in_order_and_hides_the_password() -> None:
    url = StoreURL.parse(
        "postgresql://app:s3cr%2Fet@db1:5432,[fd00::2]:6432,db3/jobs"
        "?target_session_attrs=read-write"
    )
    assert url.hosts == (("db1", 5432), ("fd00::2", 6432), ("db3", None))
    assert url.password == "s3cr/et"
    shown = str(url) + repr(url)
    assert "s3cr" not in shown
    assert str(url) == (
        "postgresql://app:***@db1:5432,[fd00::2]:6432,db3/jobs?target_session_attrs=read-write"
    )
    assert libpq_hosts(url) == {
        "host": "db1,fd00::2,db3",
        "port": "5432,6432,5432",
        "target_session_attrs": "read-write",
    }


def test_a_single_host_url_is_unchanged() -> None:
    url = StoreURL.parse("postgresql://app@db1:6000/jobs")
    assert (url.host, url.port, url.hosts) == ("db1", 6000, ())
    assert libpq_hosts(url) == {"host": "db1", "port": 6000, "target_session_attrs": None}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db1:54x2,db2/jobs",
        "postgresql://app:secret@db1,,db2/jobs",
        "postgresql://app:secret@db1:99999,db2/jobs",
        "postgresql://app:secret@[::1]x,db2/jobs",
    ],
)
def test_a_malformed_host_list_is_refused_without_the_password(url: str) -> None:
    with pytest.raises(dj.ConfigurationError, match=r"host or port|Invalid port 99999") as caught:
        dj.open_store(url)
    assert "secret" not in str(caught.value)


def test_an_unknown_target_session_attrs_is_refused() -> None:
    with pytest.raises(dj.ConfigurationError, match="target_session_attrs must be one of"):
        dj.open_store("postgresql://app@db1,db2/jobs?target_session_attrs=writable")


def test_sqlite_and_memory_refuse_a_host_list() -> None:
    with pytest.raises(dj.ConfigurationError):
        dj.open_store("sqlite://a,b/jobs.db")
    with pytest.raises(dj.ConfigurationError):
        dj.open_store("memory://a,b")


# -- a primary and its standby ----------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[OwnPostgres, OwnPostgres]]:
    primary = OwnPostgres()
    try:
        standby = OwnPostgres(standby_of=primary)
        try:
            yield primary, standby
        finally:
            standby.close()
    finally:
        primary.close()


def pair_url(first: OwnPostgres, second: OwnPostgres, schema: str) -> str:
    return (
        f"postgresql://postgres@127.0.0.1:{first.port},127.0.0.1:{second.port}/postgres"
        f"?schema={schema}&connect_timeout=2&target_session_attrs=read-write"
    )


async def test_read_write_finds_the_primary_behind_a_standby_listed_first(
    pair: tuple[OwnPostgres, OwnPostgres],
) -> None:
    """The standby answers first but is read-only; libpq moves on to the primary, so
    the store opens, writes, and the jobs run."""
    primary, standby = pair
    registry = dj.Registry()

    @registry.continuous("beat", state=int, schedule=dj.every(timedelta(milliseconds=10)))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    url = pair_url(standby, primary, "dj_multi_host")
    async with dj.open_jobs(registry, url) as jobs:
        await jobs.continuous("beat").start("b1", 0)
        with trio.fail_after(30):
            while (await jobs.continuous("beat").get_state("b1") or 0) < 3:
                await trio.sleep(0.01)
    # What was written is on the primary (and streams to the standby).
    with dj.open_store(f"{primary.url}?schema=dj_multi_host") as store:
        assert store.get("continuous", "beat", "b1") is not None


def test_doctor_reads_the_primary_behind_a_standby_listed_first(
    pair: tuple[OwnPostgres, OwnPostgres],
) -> None:
    primary, standby = pair
    url = pair_url(standby, primary, "dj_multi_host")
    with dj.open_store(url):
        pass
    done = subprocess.run(
        [sys.executable, "-m", "durable_jobs", "doctor", "--store", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "connected       yes" in done.stdout


@pytest.mark.slow
def test_a_failover_to_the_promoted_standby_loses_nothing_and_runs_resume(
    tmp_path: Path,
) -> None:
    """A worker making calls and runs on primary+standby; the primary stops, the
    standby is promoted: calls fail with StoreError meanwhile, then the same
    process writes to the new primary, with every acknowledged call there."""
    primary = OwnPostgres()
    try:
        standby = OwnPostgres(standby_of=primary)
        try:
            url = pair_url(primary, standby, "dj_failover")
            with workers(tmp_path) as group:
                worker = group.start("w", url, lease=30, slow=0.2, mode="produce")
                group.read_until(lambda: len(runs_after(worker, 0)) >= 5)
                primary.stop("fast")
                down = time.time()
                standby.promote()
                up = time.time()
                group.read_until(lambda: bool(runs_after(worker, up)))
                resumed = runs_after(worker, up)[0] - up
                acked = len([x for x in worker.lines if x.startswith("added ")])
                group.read_until(
                    lambda: len([x for x in worker.lines if x.startswith("added ")]) > acked
                )
                group.stop(worker)
                logged = worker.stderr()
            print(
                f"\nfailover: primary stopped, standby promoted {up - down:.2f} s later; "
                f"runs resumed {resumed:.2f} s after the promotion"
            )
            assert "could not run" not in logged, logged[-3000:]
            # Everything acknowledged before and after is on the new primary.
            audit(f"{standby.url}?schema=dj_failover", worker)
        finally:
            standby.close()
    finally:
        primary.close()
