"""``durable-jobs tail`` following a Postgres store that goes out of reach and comes back.

The tail runs as its own process, on the test server through a TCP proxy that
the test cuts (every connection dropped, new ones closed at once) and
restores, while a writer commits straight to the server before, during and
after the outage.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO
from urllib.parse import quote, urlsplit

import pytest

import durable_jobs as dj
from _proxy import TcpProxy
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._errors import StoreError
from durable_jobs.cli import run
from durable_jobs.maintenance import TailEvent
from durable_jobs.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.postgres

T = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "tail-Zq7-sEcReT"
#: Longest wait for a condition (the tail retries at most every 10 s).
WAIT = 60.0


class _Lines:
    """The lines a stream of the tail's process has written so far (read by a thread)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                with self.changed:
                    self.lines.append(line.rstrip("\n"))
                    self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def end(self) -> None:
        """Wait for the rest (the process has ended)."""
        self.reader.join(timeout=WAIT)

    def wait(self, what: str, done: Callable[[list[str]], bool]) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.ended or done(self.lines), timeout=WAIT)
            if not done(self.lines):
                ended = "the stream ended" if self.ended else f"not within {WAIT} s"
                pytest.fail(f"no {what} ({ended}); got {self.lines}")


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(postgres_url)
    p = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.close()


def _proxied(postgres_url: str, proxy: TcpProxy, schema: str) -> str:
    parts = urlsplit(postgres_url)
    user = quote(parts.username or "postgres", safe="")
    return (
        f"postgresql://{user}:{quote(SECRET, safe='')}@127.0.0.1:{proxy.port}"
        f"{parts.path}?schema={schema}&connect_timeout=2&pool_size=1"
    )


def start_tail(url: str, *args: str) -> tuple[subprocess.Popen[str], _Lines, _Lines]:
    """``durable-jobs --store url tail *args`` in a process of its own."""
    command = [sys.executable, "-m", "durable_jobs", "--store", url, "tail", *args]
    tail = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert tail.stdout is not None and tail.stderr is not None
    return tail, _Lines(tail.stdout), _Lines(tail.stderr)


def end_tail(tail: subprocess.Popen[str], out: _Lines, err: _Lines) -> None:
    if tail.poll() is None:
        tail.kill()
        tail.wait()
    out.end()
    err.end()


def write(store: dj.Store, ids: range) -> None:
    for i in ids:
        inst, _ = ContinuousInstance.start(None, "j", f"i{i}", now=T, state=i, first_run_at=T)
        store.save(inst)


def test_tail_follows_through_an_outage_with_no_gap_and_no_duplicate(
    postgres_url: str, pg_url: str, pg_schema: str, proxy: TcpProxy
) -> None:
    with dj.open_store(pg_url) as writer:
        write(writer, range(3))  # before the tail starts: it starts from position 0
        tail, out, err = start_tail(
            _proxied(postgres_url, proxy, pg_schema), "--after", "0", "--poll", "50ms", "--json"
        )
        try:
            before = writer.last_position()
            out.wait("events before the outage", lambda lines: len(lines) >= before)
            proxy.cut()
            write(writer, range(3, 6))  # during: committed while the tail cannot read
            err.wait("outage notice", lambda lines: any("out of reach" in x for x in lines))
            write(writer, range(6, 9))
            proxy.restore()
            err.wait("back notice", lambda lines: any('"back"' in x for x in lines))
            write(writer, range(9, 12))  # after
            last = writer.last_position()
            out.wait("every event", lambda lines: len(lines) >= last)
            tail.send_signal(signal.SIGINT)  # Ctrl-C
            assert tail.wait(timeout=WAIT) == 0
        finally:
            end_tail(tail, out, err)
        expected = [note.id for note in writer.events_after(0, 1000)]
    assert len(expected) == last
    events = [json.loads(x) for x in out.lines]
    assert [e["position"] for e in events] == expected  # each once, in order
    assert {e["instance_id"] for e in events} == {f"i{i}" for i in range(12)}
    notices = [json.loads(x) for x in err.lines]
    assert [n["type"] for n in notices] == ["out_of_reach", "back"]
    away, back = notices
    assert away["position"] == back["position"] == before
    assert "still following after position" in away["notice"]
    assert "trying again every 1 s to 10 s" in away["notice"]
    assert back["notice"].startswith("store back after ")
    assert SECRET not in "\n".join(err.lines + out.lines)


class _Outage(Exception):
    """What a driver raises when the server goes away (for :func:`_failing_tail`)."""


def _failing_tail(cause: Exception) -> Callable[..., Iterator[TailEvent]]:
    """A ``tail_events`` whose read fails with a StoreError caused by ``cause``."""

    def tail_events(*_: object, **__: object) -> Iterator[TailEvent]:
        yield from ()  # a generator, as the real one: it fails at its first read
        raise StoreError("Could not read the store: gone") from cause

    return tail_events


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["--for", "0"], _Outage()),  # a one-shot read: an outage is its error, as before
        ([], ValueError("not an outage")),  # following: any other error ends it
    ],
)
def test_a_tail_ends_on_an_error_it_cannot_ride_out(
    args: list[str],
    cause: Exception,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dj.open_store(sqlite_url).close()
    monkeypatch.setattr(
        SQLiteStore, "unreachable", lambda _, exc: isinstance(exc.__cause__, _Outage)
    )
    monkeypatch.setattr("durable_jobs.cli._maintain.tail_events", _failing_tail(cause))
    code = run(["--store", sqlite_url, "tail", "--json", *args])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert json.loads(captured.err) == {
        "error": "Could not read the store: gone",
        "type": "StoreError",
        "exit_code": 1,
    }


def test_ctrl_c_ends_a_tail_waiting_out_an_outage(
    postgres_url: str, pg_url: str, pg_schema: str, proxy: TcpProxy
) -> None:
    with dj.open_store(pg_url) as writer:
        write(writer, range(1))
        last = writer.last_position()
    url = _proxied(postgres_url, proxy, pg_schema)
    tail, out, err = start_tail(url, "--after", "0", "--poll", "50ms")
    try:
        out.wait("events", lambda lines: len(lines) == last)
        proxy.cut()
        err.wait("outage notice", lambda lines: any("out of reach" in x for x in lines))
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=WAIT) == 0
    finally:
        end_tail(tail, out, err)
    (notice,) = err.lines
    assert notice.startswith("tail: store out of reach (Could not read the store postgresql://")
    assert notice.endswith(
        f"still following after position {last}, trying again every 1 s to 10 s"
    )
    assert SECRET not in notice
    assert len(out.lines) == last


def test_an_outage_that_outlasts_for_ends_the_tail_with_its_error(
    postgres_url: str, pg_url: str, pg_schema: str, proxy: TcpProxy
) -> None:
    """What was committed until the end of ``--for`` cannot be reported: exit code 1."""
    with dj.open_store(pg_url) as writer:
        write(writer, range(1))
        last = writer.last_position()
    url = _proxied(postgres_url, proxy, pg_schema)
    tail, out, err = start_tail(url, "--after", "0", "--for", "6s", "--poll", "50ms", "--json")
    try:
        out.wait("events", lambda lines: len(lines) == last)
        proxy.cut()
        assert tail.wait(timeout=WAIT) == 1
    finally:
        end_tail(tail, out, err)
    assert [json.loads(x)["position"] for x in out.lines] == list(range(1, last + 1))
    notice, error = (json.loads(x) for x in err.lines)
    assert notice["type"] == "out_of_reach"
    assert error["type"] == "StoreError" and error["exit_code"] == 1
