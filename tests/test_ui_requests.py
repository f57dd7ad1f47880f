"""The dashboard over plain HTTP requests: which Host it answers, what a confirmed form may do.

A real ``durable-jobs ui`` process on a real SQLite file (tests/_ui_fixtures.py).
"""

from __future__ import annotations

import base64
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import note_registry, running
from _ui_fixtures import Note, dashboard, fill_store, make_registry
from durable_jobs.ui._app import TIMELINE_PAGE

WAIT = 20  # seconds a request may take before the test fails


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return fill_store(tmp_path / "jobs.db")


def _fetch(
    url: str,
    *,
    host: str | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _hidden_fields(page: str) -> dict[str, str]:
    """The hidden fields of a page's forms (a confirmation's token, action, instance)."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))


def _status(url: str, kind: str, job: str, instance_id: str) -> str:
    with dj.Inspector(url) as inspector:
        summary = inspector.status(kind, job, instance_id)
    assert summary is not None
    return summary.status


def test_a_foreign_host_header_is_refused_before_any_page_or_action(store_url: str) -> None:
    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions", "--allow-host", "dash.example.org") as served:
        port = served.base.rsplit(":", 1)[1]
        ours = (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "dash.example.org")
        for host in ours:
            status, _ = _fetch(served.base + "/", host=host)
            assert status == 200, host
        foreign = f"rebind.evil.example:{port}"
        status, body = _fetch(served.base + "/", host=foreign)
        assert status == 400
        assert "Unknown Host header" in body
        # A Host is host[:port], nothing else: a part of one that reads like ours is not.
        for malformed in (
            f"127.0.0.1:{port}@rebind.evil.example",
            f"localhost:{port}/rebind.evil.example",
            f"localhost rebind.evil.example:{port}",
            f"localhost:{port}:{port}",
            f"[::1]rebind.evil.example:{port}",
            f"[::1:{port}",
            f"localhost:{port}?x",
        ):
            status, body = _fetch(served.base + "/", host=malformed)
            assert status == 400, malformed
            assert "Unknown Host header" in body
        confirm = served.base + "/confirm?" + urllib.parse.urlencode(form)
        status, body = _fetch(confirm, host=foreign)
        assert status == 400
        assert "csrf_token" not in body
        status, _ = _fetch(served.base + "/action", host=foreign, data=form)
        assert status == 400
    assert _status(store_url, "continuous", "notes", "page") == "running"


def test_a_csrf_token_confirms_only_its_own_action_on_its_own_instance(store_url: str) -> None:
    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions") as served:
        status, body = _fetch(served.base + "/confirm?" + urllib.parse.urlencode(form))
        assert status == 200
        fields = _hidden_fields(body)
        token = fields.pop("csrf_token")
        # The form names the id percent-encoded (iq), as a browser sends it back unchanged.
        named = {k: fields[k] for k in ("action", "kind", "job")}
        assert {**named, "id": fields["iq"]} == form
        form = fields  # with the version and generation the page showed
        others = [
            {**form, "job": "flaky", "iq": "acct-1"},  # another instance
            {**form, "iq": "other"},
            {**form, "action": "purge"},  # another action
            {**form, "action": "run_now"},
            {**form, "version": str(int(form["version"]) + 1)},  # another version shown
            {**form, "generation": "2"},
        ]
        for other in others:
            status, body = _fetch(served.base + "/action", data={**other, "csrf_token": token})
            assert status == 403, other
            assert "CSRF token is missing or wrong" in body
        assert _status(store_url, "continuous", "flaky", "acct-1") == "failed"
        assert _status(store_url, "continuous", "notes", "page") == "running"
        status, body = _fetch(served.base + "/action", data={**form, "csrf_token": token})
        assert status == 200
        assert "Terminated continuous job &#39;notes&#39; instance &#39;page&#39;" in body
    assert _status(store_url, "continuous", "notes", "page") == "terminated"


def test_a_form_sent_by_another_site_is_refused_as_such(store_url: str) -> None:
    """A valid token does not let a page of another site act, and the refusal names the
    Origin, not the token (which is right)."""
    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions") as served:
        status, body = _fetch(served.base + "/confirm?" + urllib.parse.urlencode(form))
        assert status == 200
        fields = _hidden_fields(body)
        foreign = [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # a page on another port (localhost:3000)
        ]
        for headers in foreign:
            status, body = _fetch(served.base + "/action", data=fields, headers=headers)
            assert status == 403, headers
            assert "sent by a page of another site" in body, body
            assert "CSRF token" not in body
            assert "Nothing was changed" in body
        _, body = _fetch(
            served.base + "/action", data=fields, headers={"Origin": "http://evil.example"}
        )
        assert "its Origin is &#39;http://evil.example&#39;, not this dashboard&#39;s" in body
        for scheme in ("https", "ftp"):  # another host, and this one in another scheme
            other = {"Origin": f"{scheme}://evil.example"}
            assert _fetch(served.base + "/action", data=fields, headers=other)[0] == 403
        netloc = served.base.split("://", 1)[1]
        other = {"Origin": f"ftp://{netloc}"}
        assert _fetch(served.base + "/action", data=fields, headers=other)[0] == 403
        assert _status(store_url, "continuous", "notes", "page") == "running"
        # Behind a proxy that adds TLS, the page is https:// with the same host: served.
        ours = {"Origin": f"https://{netloc}", "Sec-Fetch-Site": "same-origin"}
        status, body = _fetch(served.base + "/action", data=fields, headers=ours)
        assert status == 200
        assert "Terminated continuous job" in body
    assert _status(store_url, "continuous", "notes", "page") == "terminated"


def test_a_confirmation_acts_only_on_the_instance_its_page_showed(store_url: str) -> None:
    """A confirmation page opened for one generation, confirmed after that generation
    was terminated and the id started again, is refused (409, nothing written): it
    terminated the new generation. Runs of the same generation since the page was
    shown do not stale it (an instance that runs every second must stay terminable)."""
    from durable_jobs.maintenance import terminate_instance, trigger_instance

    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions") as served:
        served_url = served.base
        confirm = served_url + "/confirm?" + urllib.parse.urlencode(form)
        status, page = _fetch(confirm)
        assert status == 200
        # The page says which version and generation the operator confirms.
        seen = re.search(r'id="seen">(.*?)</p>', page, re.S)
        assert seen is not None
        assert re.search(r'version <strong class="version">\d+</strong>', seen.group(1))
        assert 'generation <strong class="generation">1</strong>' in seen.group(1)
        stale = _hidden_fields(page)
        assert stale["generation"] == "1"
        # Meanwhile the generation shown ends elsewhere and the app starts the id again.
        with dj.open_store(store_url) as store:
            assert terminate_instance(store, "continuous", "notes", "page").done
        trio.run(_start_again, store_url)
        with dj.Inspector(store_url) as inspector:
            before = inspector.status("continuous", "notes", "page")
        assert before is not None and before.generation == 2
        status, body = _fetch(served_url + "/action", data=stale)
        assert status == 409, body
        assert "changed since the confirmation page was shown" in body
        assert "reload the instance&#39;s page" in body
        with dj.Inspector(store_url) as inspector:
            after = inspector.status("continuous", "notes", "page")
        assert after is not None
        assert (after.status, after.version) == ("running", before.version)
        # A page of the new generation stays good while the instance moves on.
        status, page = _fetch(confirm)
        assert status == 200
        fresh = _hidden_fields(page)
        with dj.open_store(store_url) as store:
            assert trigger_instance(store, "continuous", "notes", "page").done
        with dj.Inspector(store_url) as inspector:
            moved = inspector.status("continuous", "notes", "page")
        assert moved is not None and moved.version > int(fresh["version"])
        status, body = _fetch(served_url + "/action", data=fresh)
        assert status == 200, body
    assert _status(store_url, "continuous", "notes", "page") == "terminated"


def test_a_confirmation_is_refused_after_a_purge_and_a_new_start(store_url: str) -> None:
    """A purge starts generations at 1 again: the confirmation also carries when the
    generation it showed began, so a stale page does not act on the new instance."""
    from durable_jobs.maintenance import purge_instance, terminate_instance

    form = {"action": "terminate", "kind": "continuous", "job": "notes", "id": "page"}
    with dashboard(store_url, "--allow-actions") as served:
        status, page = _fetch(served.base + "/confirm?" + urllib.parse.urlencode(form))
        assert status == 200
        stale = _hidden_fields(page)
        assert stale["generation"] == "1" and stale["born"]
        with dj.open_store(store_url) as store:
            assert terminate_instance(store, "continuous", "notes", "page").done
            assert purge_instance(store, "continuous", "notes", "page").purged
        trio.run(_start_again, store_url)
        with dj.Inspector(store_url) as inspector:
            again = inspector.status("continuous", "notes", "page")
        assert again is not None and again.generation == 1  # the same number as shown
        status, body = _fetch(served.base + "/action", data=stale)
        assert status == 409, body
        assert "changed since the confirmation page was shown" in body
    assert _status(store_url, "continuous", "notes", "page") == "running"


async def _start_again(url: str) -> None:
    async with dj.open_jobs(make_registry(), url) as jobs:
        await jobs.continuous("notes").start("page", Note(text="again"))


def test_an_instance_timeline_shows_one_page_of_records(tmp_path: Path) -> None:
    """A long-lived instance's page holds the latest 200 records, with links to the
    earlier ones (a log of 60,000 records made a 35 MB page, and seconds of server time
    on every view, whatever version was asked for)."""
    url = f"sqlite:///{tmp_path / 'long.db'}"

    async def fill() -> None:
        async with running(note_registry(), url) as jobs:
            for i in range(150):
                await jobs.task("note").send("long", f"n{i}")

    trio.run(fill, clock=trio.testing.MockClock(autojump_threshold=0))
    with dj.Inspector(url) as inspector:
        summary = inspector.status("task", "note", "long")
    assert summary is not None
    last = summary.version
    assert last > 2 * TIMELINE_PAGE  # three pages at least

    def versions(page: str) -> list[int]:
        return [int(v) for v in re.findall(r'<tr data-key="v(\d+)"', page)]

    base = "/instance?kind=task&job=note&id=long"
    with dashboard(url) as served:
        code, page = _fetch(served.base + base + "&v=3")
        assert code == 200
        assert versions(page) == list(range(last - TIMELINE_PAGE + 1, last + 1))
        assert 'data-live="/events?' in page  # the latest page follows new records
        earlier = re.search(r'href="([^"]*upto=(\d+))" rel="prev"', page)
        assert earlier is not None and int(earlier.group(2)) == last - TIMELINE_PAGE
        code, page = _fetch(served.base + earlier.group(1).replace("&amp;", "&"))
        assert code == 200
        assert versions(page) == list(
            range(last - 2 * TIMELINE_PAGE + 1, last - TIMELINE_PAGE + 1)
        )
        assert 'data-live="/events?' not in page
        assert 'rel="next"' in page
        code, page = _fetch(served.base + base + "&upto=5")
        assert (code, versions(page)) == (200, [1, 2, 3, 4, 5])
        assert 'rel="prev"' not in page
        code, page = _fetch(served.base + base + "&upto=0")
        assert code == 400


def test_a_live_stream_position_out_of_range_is_refused(store_url: str) -> None:
    with dashboard(store_url) as served:
        code, body = _fetch(served.base + "/events?after=99999999999999999999999")
        assert code == 400 and "from 0 to" in body
        code, _ = _fetch(served.base + "/events?after=abc")
        assert code == 400


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _post_unfollowed(url: str, data: dict[str, str]) -> tuple[int, str]:
    """POST ``data``; the status and the Location header, the redirect not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    body = urllib.parse.urlencode(data).encode()
    try:
        with opener.open(urllib.request.Request(url, data=body), timeout=WAIT) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_an_action_sent_twice_acts_once_and_its_done_page_is_a_get(store_url: str) -> None:
    """A Resume form sent twice (a double click, or a refresh of the Done page, which
    was the POST's own answer) resumed the instance twice: the second, on an instance
    already running, wrote another alarm_set. The POST now redirects (303) to a Done
    page that a refresh shows again without sending anything, and the form sent again
    is refused (409: not paused), writing nothing. A Done page the dashboard did not
    send you to (its query not signed by it) is refused."""
    form = {"action": "resume", "kind": "continuous", "job": "flaky", "id": "acct-1"}
    assert _status(store_url, "continuous", "flaky", "acct-1") == "failed"
    with dashboard(store_url, "--allow-actions") as served:
        status, page = _fetch(served.base + "/confirm?" + urllib.parse.urlencode(form))
        assert status == 200
        fields = _hidden_fields(page)
        status, location = _post_unfollowed(served.base + "/action", fields)
        assert status == 303
        assert location.startswith("/done?")
        for _ in range(2):  # shown, then refreshed
            status, body = _fetch(served.base + location)
            assert status == 200, body
            assert "Made the next run of continuous job &#39;flaky&#39;" in body
            assert 'href="/instance?kind=continuous&amp;job=flaky&amp;id=acct-1"' in body
        with dj.Inspector(store_url) as inspector:
            before = inspector.history("continuous", "flaky", "acct-1")
        assert [r.name for r in before][-2:] == ["resumed", "alarm_set"]
        status, body = _fetch(served.base + "/action", data=fields)
        assert status == 409, body
        assert "is not paused" in body
        assert "nothing was written" in body
        with dj.Inspector(store_url) as inspector:
            assert inspector.history("continuous", "flaky", "acct-1") == before
        forged = location.replace("Made+the+next+run", "Deleted+everything+in")
        assert forged != location
        status, body = _fetch(served.base + forged)
        assert status == 400
        assert "Deleted everything" not in body


#: The safety headers every response carries, refusals and errors included.
SAFETY = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"
    ),
}


def _headers_of(
    url: str,
    *,
    auth: str | None = None,
    host: str | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message]:
    """The status and headers of a request (a redirect not followed, a stream not read)."""
    opener = urllib.request.build_opener(_NoRedirect)
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if host is not None:
        request.add_header("Host", host)
    try:
        with opener.open(request, timeout=WAIT) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers


def test_every_response_carries_the_safety_headers_and_no_store(store_url: str) -> None:
    """Refusals and errors too (the 401 of basic auth had none); every response but the
    static assets' is ``Cache-Control: no-store``: pages show states and payloads."""
    auth = "admin:s3cret-pass"
    instance = {"kind": "continuous", "job": "notes", "id": "page"}
    confirm = {"action": "terminate", **instance}
    args = ("--allow-actions", "--auth-env", "DASH_AUTH")
    with dashboard(store_url, *args, env={"DASH_AUTH": auth}) as served:
        base = served.base
        port = base.rsplit(":", 1)[1]
        _, page = _fetch_auth(base + "/confirm?" + urllib.parse.urlencode(confirm), auth)
        fields = _hidden_fields(page)
        assert "csrf_token" in fields
        evil = {"Origin": "http://evil.example"}
        requests: list[tuple[int, str, dict[str, Any]]] = [
            (200, "/", {}),
            (200, "/?q=page&kind=continuous", {}),
            (200, "/instance?" + urllib.parse.urlencode(instance), {}),
            (404, "/instance?" + urllib.parse.urlencode({**instance, "id": "nope"}), {}),
            (200, "/alarms", {}),
            (200, "/stats", {}),
            (200, "/confirm?" + urllib.parse.urlencode(confirm), {}),
            (400, "/done", {}),
            (400, "/?limit=9999", {}),
            (404, "/nope", {}),
            (200, "/events?after=999999999", {}),
            (403, "/events", {"headers": evil}),
            (403, "/action", {"data": {**fields, "csrf_token": "forged"}}),
            (403, "/action", {"data": fields, "headers": evil}),
            (303, "/action", {"data": fields}),
            (401, "/", {"auth": None}),
            (401, "/events", {"auth": "admin:wrong"}),
            (400, "/", {"host": f"rebind.evil.example:{port}"}),
        ]
        for status, path, kw in requests:
            got, headers = _headers_of(base + path, **{"auth": auth, **kw})
            assert got == status, (path, kw)
            for name, value in SAFETY.items():
                assert headers.get_all(name) == [value], (path, kw, name, headers)
            assert headers.get_all("Cache-Control") == ["no-store"], (path, kw, headers)
        for asset in ("/static/app.css", "/static/live.js"):
            got, headers = _headers_of(base + asset, auth=auth)
            assert got == 200
            for name, value in SAFETY.items():
                assert headers.get_all(name) == [value], (asset, name)
            assert headers.get_all("Cache-Control") == ["no-cache"], asset
    assert _status(store_url, "continuous", "notes", "page") == "terminated"


def _raw_head(base: str, target: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers answered to ``GET target``, sent as bytes as they are."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as conn:
        conn.sendall(b"GET " + target + f" HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, *lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = [line.partition(":") for line in lines]
    return int(status_line.split()[1]), [(k.strip().lower(), v.strip()) for k, _, v in fields]


def test_the_servers_own_refusals_carry_the_safety_headers(store_url: str) -> None:
    """Hypercorn answers a request it cannot parse or will not take before the app sees
    it (a NUL in the path, a request head beyond its limit): with the safety headers
    too, once each."""
    with dashboard(store_url) as served:
        refused = (
            (b"/?q=" + b"x" * 300_000, 431),
            (b"/inst\x00ance", 400),
        )
        for target, expected in refused:
            status, headers = _raw_head(served.base, target)
            assert status == expected, target[:20]
            for name, value in SAFETY.items():
                assert [v for k, v in headers if k == name.lower()] == [value], (expected, name)
        # The app's responses carry them once each too.
        status, headers = _raw_head(served.base, b"/")
        assert status == 200
        for name, value in SAFETY.items():
            assert [v for k, v in headers if k == name.lower()] == [value], name


def _fetch_auth(url: str, auth: str) -> tuple[int, str]:
    token = base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return response.status, response.read().decode()
