"""The dashboard shows stored control and format characters as escapes, as the CLI does.

An id such as ``"\\u202egnp.exe"`` would otherwise show reversed ("exe.png"):
HTML escaping leaves bidi overrides, zero-width spaces and ESC as they are.
Each value a template shows goes through the same escaping as the CLI's
``printable()``, JSON and messages keeping their newlines and tabs (blocks in
``<pre>``); form fields send the stored value back unchanged.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from markupsafe import Markup
from pydantic import BaseModel

import durable_jobs as dj
from _ui_fixtures import START, dashboard
from durable_jobs._tools.text import printable, printable_lines
from durable_jobs.ui._dashboard import _env

WAIT = 20  # seconds a request may take before the test fails
RLO, ZWSP, ESC = "\u202e", "\u200b", "\x1b"
RAW = (RLO, ZWSP, ESC)
SPOOF = f"{RLO}gnp.exe"  # shows as "exe.png"
HIDDEN = f"acme{ZWSP}"  # shows as "acme"
SPELT = "acme\\u200b"  # spells out HIDDEN's escape: must not show like it
COLOURED = f"x{ESC}[31my"
IDS = (SPOOF, HIDDEN, COLOURED, SPELT)


class Note(BaseModel):
    text: str = ""


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        "notes",
        state=Note,
        schedule=dj.every(timedelta(hours=1)),
    )
    async def notes(ctx: dj.ContinuousContext[Note]) -> None:
        msg = f"upstream said {RLO}kcatta{ZWSP} {ESC}[2J and\nmore"
        raise ConnectionError(msg)

    return registry


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    async def fill() -> None:
        async with dj.open_jobs(_registry(), url, clock=dj.VirtualClock(START)) as jobs:
            notes = jobs.continuous("notes")
            for instance_id in IDS:
                await notes.start(instance_id, Note(text=f"{instance_id} says\t{RLO}olleh"))
            await trio.sleep(3600)
            await jobs.wait_idle()
            await notes.terminate(HIDDEN, reason=f"because {RLO}nosaer{ZWSP} {ESC}[0m")

    trio.run(fill, clock=trio.testing.MockClock(autojump_threshold=0))
    return url


def _fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _instance_url(base: str, instance_id: str) -> str:
    return f"{base}/instance?" + urllib.parse.urlencode(
        {"kind": "continuous", "job": "notes", "id": instance_id}
    )


HIDDEN_FIELD = re.compile(r'<input type="hidden" name="\w+" value="[^"]*">')


def _no_raw(text: str) -> None:
    """No raw control or format character shown: hidden form fields send the stored
    value back as it is (they are not shown)."""
    text = HIDDEN_FIELD.sub("", text)
    found = {f"U+{ord(c):04X}" for c in text if c in RAW}
    assert not found, f"raw {sorted(found)} in the page"


def _stream(base: str, path: str) -> str:
    """What ``path`` (an event stream) sends within a few seconds."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = b""
        conn.settimeout(1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if b"event: " in data:
                    break
                continue
            if not chunk:
                break
            data += chunk
    return data.decode()


def test_ids_states_errors_and_reasons_show_escaped_on_every_page_and_stream(
    store_url: str,
) -> None:
    with dashboard(store_url) as served:
        base = served.base
        status, page = _fetch(base + "/")
        assert status == 200
        _no_raw(page)
        assert "\\u202egnp.exe" in page
        assert "x\\x1b[31my" in page
        # HIDDEN and SPELT show apart: a backslash is shown doubled.
        shown = re.findall(r'<td><a href="/instance\?[^"]*">([^<]*)</a>', page)
        assert sorted(shown) == sorted(
            ["\\u202egnp.exe", "acme\\u200b", "x\\x1b[31my", "acme\\\\u200b"]
        )
        # Links carry the id percent-encoded, as it is stored.
        assert "id=%E2%80%AEgnp.exe" in page
        for instance_id in IDS:
            status, page = _fetch(_instance_url(base, instance_id))
            assert status == 200, instance_id
            _no_raw(page)
            assert printable(instance_id) in page
            assert "upstream said \\u202ekcatta\\u200b \\x1b[2J and" in page
            # The state in <pre> keeps its JSON layout (newlines, indent).
            state = re.search(r'<pre class="json" id="state-json">(.*?)</pre>', page, re.S)
            if instance_id != HIDDEN:  # terminated: no state
                assert state is not None
                assert state.group(1).startswith("{\n  ")
                assert "\\u202eolleh" in state.group(1)
                # JSON escapes its backslashes itself: they are not doubled again.
                if instance_id == SPELT:
                    assert "acme\\\\u200b says\\t\\u202eolleh&#34;" in state.group(1)
        _, page = _fetch(_instance_url(base, HIDDEN))
        assert "because \\u202enosaer\\u200b \\x1b[0m" in page
        for path in ("/alarms", "/stats"):
            status, page = _fetch(base + path)
            assert status == 200
            _no_raw(page)
        feed = _stream(base, "/events?after=0")
        assert "event: feed" in feed
        _no_raw(feed)
        assert "\\u202egnp.exe" in feed
        quoted = urllib.parse.urlencode({"kind": "continuous", "job": "notes", "id": SPOOF})
        timeline = _stream(base, f"/events?after=0&{quoted}")
        assert "event: record" in timeline
        _no_raw(timeline)
        assert "\\u202ekcatta" in timeline


def test_an_action_on_an_id_holding_a_bidi_override_acts_on_that_id(store_url: str) -> None:
    with dashboard(store_url, "--allow-actions") as served:
        _, page = _fetch(_instance_url(served.base, SPOOF))
        # The forms send the id back as it is stored (percent-encoded: iq).
        quoted = urllib.parse.quote(SPOOF, safe="")
        assert f'name="iq" value="{quoted}"' in page
        confirm = (
            served.base
            + "/confirm?"
            + urllib.parse.urlencode(
                {"action": "terminate", "kind": "continuous", "job": "notes", "id": SPOOF}
            )
        )
        status, page = _fetch(confirm)
        assert status == 200
        assert f'name="iq" value="{quoted}"' in page
        form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
        status, page = _fetch(served.base + "/action", data=form)
        assert status == 200, page
        _no_raw(page)
    with dj.Inspector(store_url) as inspector:
        summary = inspector.status("continuous", "notes", SPOOF)
    assert summary is not None
    assert summary.status == "terminated"


def test_the_dashboards_escaping_keeps_markup_newlines_and_tabs() -> None:
    assert printable_lines(f"a\n\tb{RLO}c{ESC}\r") == "a\n\tb\\u202ec\\x1b\\r"
    assert printable(f"a\n\tb{RLO}") == "a\\n\\tb\\u202e"
    # A backslash is doubled, so text spelling out an escape shows apart from it.
    assert printable("a\\u200b") == "a\\\\u200b" != printable(f"a{ZWSP}")
    assert printable_lines("a\\n\n") == "a\\\\n\n"
    env = _env()
    shown = env.from_string("{{ x }}|{{ m }}|{{ v | verbatim }}|{{ n }}").render(
        x=f"<b>{RLO}</b>", m=Markup(f"<i>{ZWSP}</i>"), v=f"{RLO}&", n=3
    )
    assert shown == f"&lt;b&gt;\\u202e&lt;/b&gt;|<i>\\u200b</i>|{RLO}&amp;|3"


def test_the_cli_still_imports_printable() -> None:
    from durable_jobs.cli._app import printable as cli_printable

    assert cli_printable is printable


def test_a_library_message_is_not_escaped_twice_on_a_page() -> None:
    """A library message quotes ids with repr (its backslashes are escapes already): the
    pages escape only its control characters, as the CLI does."""
    from durable_jobs.ui._dashboard import _env

    template = _env().from_string("{{ error | message }}")
    message = "Cannot read continuous job 'daily' instance 'a\\\\b': corrupt"
    assert template.render(error=message) == message.replace("'", "&#39;")
