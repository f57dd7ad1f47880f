"""The dashboard serves a capped number of live streams, each a tail of the store in a thread.

Each open ``/events`` stream holds a thread (and on Postgres a LISTEN connection):
one beyond ``--max-live`` gets 503 with ``Retry-After``, and a slot comes back
however a stream ends (the page left, the server stopped, the tail failed).
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

import durable_jobs as dj
from _ui_fixtures import dashboard, fill_store, make_registry
from durable_jobs._errors import StoreError
from durable_jobs.maintenance import tail_position
from durable_jobs.stores._postgres_recorder import alarm_channel
from durable_jobs.ui import _shared_tail, create_app
from durable_jobs.ui._dashboard import DEFAULT_MAX_LIVE, Dashboard

WAIT = 20  # seconds something may take before the test fails
SHARED_TAIL = "durable-jobs ui tail"
CATCH_UP = "durable-jobs ui catch-up"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return fill_store(tmp_path / "jobs.db")


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_streams() -> Iterator[None]:
    """Every stream a test opened is closed at its end, whatever happened."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _open_stream(
    base: str, after: int = 999999999, headers: dict[str, str] | None = None
) -> tuple[socket.socket, int, str]:
    """A raw ``GET /events`` (with ``headers``): the socket (left open), the status and
    what came with it."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=WAIT)
    _OPEN.append(conn)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    conn.sendall(
        f"GET /events?after={after} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Accept: text/event-stream\r\n{extra}\r\n".encode()
    )
    data = b""
    deadline = time.monotonic() + WAIT
    # Headers, and for a stream its first chunk (retry:), for a refusal its whole body.
    while time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        _, sep, body = data.partition(b"\r\n\r\n")
        if sep and (b"retry:" in body or b"--max-live" in body or b"another site" in body):
            break
    status = int(data.split(b" ", 2)[1])
    return conn, status, data.decode()


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            threads = sorted(t.name for t in threading.enumerate())
            raise AssertionError(f"not within {WAIT} s: {what} (threads: {threads})")
        time.sleep(0.05)


def _settled() -> int:
    """No tail thread of an earlier test left (they end within a poll): 0."""
    _eventually(lambda: _tail_threads() == 0, "the tail threads of earlier tests ended")
    return 0


def _tail_threads() -> int:
    """The dashboard's threads reading the store: its shared tail and any catch-ups."""
    return sum(t.name in (SHARED_TAIL, CATCH_UP) for t in threading.enumerate())


def test_a_stream_beyond_the_cap_gets_503_and_a_closed_one_frees_its_slot(
    store_url: str,
) -> None:
    with dashboard(store_url, "--max-live", "2") as served:
        first, status, _ = _open_stream(served.base)
        assert status == 200
        second, status, _ = _open_stream(served.base)
        assert status == 200
        for _ in range(2):
            refused, status, text = _open_stream(served.base)
            refused.close()
            assert status == 503
            assert "\r\nretry-after: 30\r\n" in text.lower()
            assert "text/plain" in text.lower()
            assert "serves 2 live streams, its cap" in text
            assert "--max-live N" in text
        first.close()  # the page went away: its slot comes back

        def one_more_let_in() -> bool:
            conn, status, _ = _open_stream(served.base)
            if status == 200:
                second.close()
                conn.close()
                return True
            conn.close()
            return False

        _eventually(one_more_let_in, "a stream let in after one closed")
        # The pages work on without live updates, and say so when the stream is refused.
        assert dashboard_page_ok(served.base)
    warnings = served.log.count("Live stream refused")
    assert warnings == 1, served.log


def dashboard_page_ok(base: str) -> bool:
    with urllib.request.urlopen(base + "/", timeout=WAIT) as response:
        page = response.read().decode()
    return response.status == 200 and 'class="note live-paused" hidden' in page


def test_a_stream_asked_for_by_another_site_is_refused_and_takes_no_slot(
    store_url: str,
) -> None:
    """A page of another site (an ``EventSource``, or an ``<img src>`` that sends no
    ``Origin``) gets 403: such pages held every slot, and the dashboard's own got 503."""
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    foreign = [
        evil,
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"},
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "image"},  # localhost:3000
    ]
    with dashboard(store_url, "--max-live", "2") as served:
        for headers in foreign * 2:  # more than the cap
            conn, status, text = _open_stream(served.base, headers=headers)
            assert status == 403, headers
            assert "another site" in text
            assert "retry:" not in text
        held = []  # none was let in: both slots are free for the dashboard's own pages
        port = served.base.rsplit(":", 1)[1]
        ours = [
            {},  # curl, a script
            {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
        ]
        for headers in ours:
            conn, status, text = _open_stream(served.base, headers=headers)
            assert status == 200, text
            held.append(conn)
        assert _open_stream(served.base)[1] == 503
    assert "Live stream refused" in served.log


def test_the_cli_default_is_the_dashboards() -> None:
    from durable_jobs.cli._ui import ui

    option = next(p for p in ui.params if p.name == "max_live")
    assert option.default == DEFAULT_MAX_LIVE == 16


def test_max_live_must_not_be_negative(tmp_path: Path) -> None:
    with (
        dj.open_store(f"sqlite:///{tmp_path / 'jobs.db'}") as store,
        pytest.raises(dj.ValidationError, match="max_live must be 0 or more"),
    ):
        create_app(store, max_live=-1)


# ---- in process: the slot count itself ---------------------------------------------------


def _dashboard_of(app: Any) -> Dashboard:
    while not hasattr(app, "state"):
        app = app.app
    dash: Dashboard = app.state.dashboard
    return dash


@contextmanager
def _served(url: str, max_live: int) -> Iterator[tuple[str, Dashboard, Callable[[], None]]]:
    """The dashboard on store ``url`` served by Hypercorn in a thread: its URL, its state,
    a stop."""
    with dj.open_store(url) as store, _serving(create_app(store, max_live=max_live)) as served:
        yield served


@contextmanager
def _serving(app: Any) -> Iterator[tuple[str, Dashboard, Callable[[], None]]]:
    started: list[str] = []
    ready = threading.Event()
    stopping: list[Callable[[], None]] = []
    errors: list[BaseException] = []

    async def main() -> None:
        stop = trio.Event()
        token = trio.lowlevel.current_trio_token()
        stopping.append(lambda: trio.from_thread.run_sync(stop.set, trio_token=token))
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app,
                    config,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                    mode="asgi",
                )
            )
            started.extend(urls)
            ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(WAIT), "the server did not start"
    assert not errors, errors
    stopped = [False]

    def stop() -> None:
        if not stopped[0]:
            stopped[0] = True
            stopping[0]()
            thread.join(WAIT)
            assert not thread.is_alive(), "the server did not stop"

    try:
        yield started[0], _dashboard_of(app), stop
    finally:
        stop()
    assert not errors, errors


def test_stopping_the_server_gives_back_every_slot_and_ends_every_tail(
    tmp_path: Path,
) -> None:
    before = _settled()
    with _served(fill_store(tmp_path / "jobs.db"), max_live=3) as (base, dash, stop):
        streams = [_open_stream(base) for _ in range(3)]
        assert [status for _, status, _ in streams] == [200, 200, 200]
        assert dash.live.open == 3
        refused, status, _ = _open_stream(base)
        refused.close()
        assert status == 503
        stop()
        _eventually(lambda: dash.live.open == 0, "every slot given back")
        _eventually(lambda: _tail_threads() == before, "every tail thread ended")
        for conn, _, _ in streams:
            conn.close()


def test_a_failed_tail_gives_back_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = threading.Event()

    def failing_tail(*args: Any, **kwargs: Any) -> Iterator[Any]:
        failed.set()
        yield from ()  # a generator, as tail_events is
        raise StoreError("the store went away")

    monkeypatch.setattr(_shared_tail, "tail_events", failing_tail)
    with _served(fill_store(tmp_path / "jobs.db"), max_live=1) as (base, dash, _):
        conn, status, _ = _open_stream(base)
        assert status == 200
        assert failed.wait(WAIT)
        _eventually(lambda: dash.live.open == 0, "the failed stream's slot given back")
        again, status, _ = _open_stream(base)  # the one slot is free again
        assert status == 200
        again.close()
        conn.close()


def test_a_disconnected_page_gives_back_its_slot_and_ends_its_tail(tmp_path: Path) -> None:
    before = _settled()
    with _served(fill_store(tmp_path / "jobs.db"), max_live=2) as (base, dash, _):
        conns = [_open_stream(base)[0] for _ in range(2)]
        assert dash.live.open == 2
        # One tail for both (their catch-up reads have ended).
        _eventually(lambda: _tail_threads() == before + 1, "one shared tail thread")
        for conn in conns:
            conn.close()
        _eventually(lambda: dash.live.open == 0, "the closed streams' slots given back")
        _eventually(lambda: _tail_threads() == before, "their tail threads ended")


def test_max_live_zero_turns_live_updates_off(tmp_path: Path) -> None:
    with _served(fill_store(tmp_path / "jobs.db"), max_live=0) as (base, dash, _):
        conn, status, text = _open_stream(base)
        conn.close()
        assert status == 503
        assert "serves no live streams" in text
        assert dash.live.open == 0


def _ids_until(conn: socket.socket, wanted: int, seen: str) -> list[int]:
    """The ``id:`` of each event a stream sends, until it sends ``wanted``."""
    data = seen
    deadline = time.monotonic() + WAIT
    while True:
        ids = [int(n) for n in re.findall(r"^id: (\d+)$", data, re.M)]
        if wanted in ids:
            return ids
        assert time.monotonic() < deadline, f"no event {wanted} within {WAIT} s: {ids}"
        chunk = conn.recv(65536)
        assert chunk, f"the stream ended before event {wanted}: {ids}"
        data += chunk.decode()


def test_every_stream_gets_each_event_once_in_order_from_one_shared_tail(
    tmp_path: Path,
) -> None:
    url = fill_store(tmp_path / "jobs.db")
    before = _settled()
    with _served(url, max_live=4) as (base, dash, _):
        now = tail_position(dash.store)
        assert now > 3
        # One page rendered long ago (it catches up), two rendered now.
        behind = _open_stream(base, after=1)
        current = [_open_stream(base, after=now) for _ in range(2)]
        _eventually(lambda: _tail_threads() == before + 1, "one shared tail, catch-ups done")
        assert dash.tail.subscribers == 3

        async def add() -> None:
            async with dj.open_jobs(make_registry(), url) as jobs:
                await jobs.debounce("digest").add("ann", "live")

        trio.run(add)
        added = tail_position(dash.store)
        assert added > now
        ids = _ids_until(behind[0], added, behind[2])
        assert ids == sorted(set(ids)), "each event once, in order"
        assert ids == list(range(2, added + 1))
        for conn, status, text in current:
            assert status == 200
            ids = _ids_until(conn, added, text)
            assert ids == list(range(now + 1, added + 1))
        assert _tail_threads() == before + 1


def test_an_app_served_again_has_live_updates_again(tmp_path: Path) -> None:
    url = fill_store(tmp_path / "jobs.db")
    before = _settled()
    with dj.open_store(url) as store:
        app = create_app(store, max_live=2)
        for _ in range(2):
            with _serving(app) as (base, dash, stop):
                conn, status, first = _open_stream(base, after=1)
                assert status == 200
                # What came with the headers counts: the events may share a chunk with
                # the stream's first line (waiting for more then timed out, now and then).
                ids = _ids_until(conn, 2, first)
                assert ids[0] == 2
                stop()
                # Ended (joined) when the app stopped serving, before its caller may close
                # the store: a tail thread still reading then crashed a later test.
                assert _tail_threads() == before
                _eventually(lambda: dash.live.open == 0, "every slot given back")


@pytest.mark.postgres
def test_on_postgres_the_streams_share_one_listen_connection(pg_url: str) -> None:
    async def fill() -> None:
        async with dj.open_jobs(make_registry(), pg_url) as jobs:
            await jobs.debounce("digest").add("ann", "first")

    trio.run(fill)
    schema = pg_url.rsplit("schema=", 1)[1]
    listen = f'LISTEN "{alarm_channel(schema)}"'

    def listening() -> int:
        with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = %s", (listen,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    with _served(pg_url, max_live=8) as (base, dash, stop):
        for _ in range(6):
            _open_stream(base, after=1)
        assert dash.live.open == 6
        _eventually(lambda: listening() == 1, "one LISTEN connection for the six streams")
        stop()
        _eventually(lambda: listening() == 0, "no LISTEN connection once the server stopped")


@pytest.mark.postgres
def test_a_catch_up_read_opens_no_listen_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fill() -> None:
        async with dj.open_jobs(make_registry(), pg_url) as jobs:
            await jobs.debounce("digest").add("ann", "first")

    trio.run(fill)
    with dj.open_store(pg_url) as store:

        def no_listener() -> None:
            raise AssertionError("a read of what is committed by now opened a LISTEN connection")

        monkeypatch.setattr(store, "open_alarm_listener", no_listener)
        events = list(dj.maintenance.tail_events(store, after=0, duration=0))
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    assert events


def test_a_catch_up_ends_the_stream_after_a_buffer_of_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/events?after=0`` re-read the store's whole history in one request (16,000
    events in 10 s on a store of 100,000, holding a live slot and a connection): a
    catch-up now ends the stream once it has sent a buffer's worth, as a stream that
    falls behind does, and the browser reconnects from the last event it got."""
    url = fill_store(tmp_path / "jobs.db")
    monkeypatch.setattr(_shared_tail, "BUFFER", 2)
    before = _settled()
    with dj.open_store(url) as store:
        assert tail_position(store) > 3
        app = create_app(store, max_live=2)
        with _serving(app) as (base, _, stop):
            conn, status, first = _open_stream(base, after=0)
            assert status == 200
            data = first.encode()
            deadline = time.monotonic() + WAIT
            while not data.endswith(b"\r\n0\r\n\r\n"):  # the response's last chunk
                assert time.monotonic() < deadline, "the stream did not end"
                chunk = conn.recv(65536)
                assert chunk, "the connection closed before the response ended"
                data += chunk
            ids = [int(n) for n in re.findall(rb"^id: (\d+)$", data, re.M)]
            assert ids == [1, 2]
            # Again from the last one it got, as the browser does.
            conn, status, first = _open_stream(base, after=2)
            assert _ids_until(conn, 4, first)[:2] == [3, 4]
            stop()
            _eventually(lambda: _tail_threads() == before, "the tail threads ended")
