"""A Postgres store over TLS, set in its URL (``?sslmode=verify-full&sslrootcert=...``).

A server of the test's own (tests/_own_postgres.py) with a self-signed
certificate for 127.0.0.1 that refuses TCP connections without TLS. Every
connection the store makes (the pool, the lock session, the alarm listener,
``doctor``'s) carries the URL's TLS settings: verified against the right
certificate, the runtime serves; against another, or without TLS, it cannot
connect, and says so without the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import trio

import durable_jobs as dj
from _cli_fixtures import invoke
from _own_postgres import OwnPostgres, make_certificate


@pytest.fixture(scope="module")
def server() -> Iterator[OwnPostgres]:
    own = OwnPostgres(tls=True)
    try:
        yield own
    finally:
        own.close()


def _url(server: OwnPostgres, query: str) -> str:
    return f"postgresql://postgres:s3cret-pw@127.0.0.1:{server.port}/postgres?{query}"


def _serve(url: str) -> list[int]:
    """Start an instance and wait for its third run (the first two committed); the
    states the runs saw."""
    registry = dj.Registry()
    runs: list[int] = []
    second = trio.Event()

    @registry.continuous("tick", state=int, schedule=dj.every(timedelta(milliseconds=1)))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        runs.append(ctx.state)
        ctx.set_state(ctx.state + 1)
        if len(runs) == 3:
            second.set()  # the second run has committed: the third began after it

    store = dj.open_store(url)

    async def main() -> None:
        async with dj.open_jobs(registry, store) as jobs:
            await jobs.continuous("tick").start("t", 0)
            with trio.fail_after(30):
                await second.wait()

    try:
        trio.run(main)
    finally:
        store.close()
    return runs


def test_the_store_serves_over_verified_tls(
    server: OwnPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.certificate is not None
    # A connection made without the URL's settings would take this, and be refused.
    monkeypatch.setenv("PGSSLMODE", "disable")
    url = _url(server, f"schema=tls_ok&sslmode=verify-full&sslrootcert={server.certificate}")
    assert _serve(url)[:3] == [0, 1, 2]
    with psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user="postgres",
        dbname="postgres",
        sslmode="require",
    ) as conn:
        (state,) = conn.execute(
            "SELECT count(*) FROM tls_ok.durablejobs_events"  # the runs committed
        ).fetchone() or (0,)
    assert state >= 3


def test_another_certificate_is_refused(server: OwnPostgres, tmp_path: Path) -> None:
    other, _ = make_certificate(tmp_path)
    url = _url(server, f"schema=tls_no&sslmode=verify-full&sslrootcert={other}")
    with pytest.raises(dj.StoreError, match="certificate verify failed") as caught:
        dj.open_store(url)
    assert "s3cret-pw" not in str(caught.value)


def test_no_tls_is_refused_by_this_server(server: OwnPostgres) -> None:
    with pytest.raises(dj.StoreError, match="no encryption") as caught:
        dj.open_store(_url(server, "schema=tls_off&sslmode=disable"))
    assert "s3cret-pw" not in str(caught.value)


def test_doctor_connects_with_the_urls_tls(
    server: OwnPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.certificate is not None
    good = _url(server, f"schema=tls_doc&sslmode=verify-full&sslrootcert={server.certificate}")
    store = dj.open_store(good)
    store.close()
    code, out, _ = invoke(capsys, "--store", good, "doctor")
    assert (code, out.splitlines()[-1]) == (0, "ok")
    code, out, _ = invoke(
        capsys, "--store", _url(server, "schema=tls_doc&sslmode=disable"), "doctor"
    )
    assert code == 1
    assert "no encryption" in out
    assert "s3cret-pw" not in out


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslmode=bogus", "sslmode must be one of disable, allow, prefer, require"),
        ("sslrootcert=", "sslrootcert in the store URL must be a non-empty value"),
        ("sslmode=require&sslcompression=1", "Unknown option(s) sslcompression"),
    ],
)
def test_bad_tls_settings_are_configuration_errors(query: str, message: str) -> None:
    url = f"postgresql://app:s3cret-pw@db.example:6543/jobs?{query}"
    with pytest.raises(dj.ConfigurationError) as caught:
        dj.open_store(url)
    assert message in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    if "Unknown" in message:
        # The URL as given, but for its password and options.
        assert "'postgresql://app:***@db.example:6543/jobs'" in str(caught.value)
