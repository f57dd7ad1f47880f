"""The dashboard takes an instance id exactly as sent, and every link and form of it
carries the id exactly as stored.

An id may hold anything but NUL: leading and trailing spaces, NBSP, newlines, tabs and
carriage returns included. The dashboard stripped ``?id=``, so the list's link to
``"trail "`` opened (and could terminate) ``"trail"``, another instance, and the ids
``" lead"`` and ``"x\\u00a0"`` gave 404. It showed the id ``"a\\nb"`` as ``"a b"``:
single-line values show newlines, tabs and carriage returns as escapes, as the CLI does.
"""

from __future__ import annotations

import html
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import durable_jobs as dj
from _ui_fixtures import START, chromium, dashboard
from durable_jobs._tools.text import printable

WAIT = 20  # seconds a request or a condition may take before the test fails
TRAIL = "trail"
#: Ids that stripping, or a form's newline conversion, would turn into another.
IDS = (TRAIL, "trail ", " lead", "x\u00a0", "a\nb\tc", "cr\rx", "crlf\r\n")
ODD = IDS[1:]


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("notes", state=int, schedule=dj.every(timedelta(hours=1)))
    async def notes(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state((ctx.state or 0) + 1)

    return registry


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    async def fill() -> None:
        async with dj.open_jobs(_registry(), url, clock=dj.VirtualClock(START)) as jobs:
            for instance_id in IDS:
                await jobs.continuous("notes").start(instance_id, 0)
            await trio.sleep(3600)  # a run each: versions to pick and diff
            await jobs.wait_idle()

    trio.run(fill, clock=trio.testing.MockClock(autojump_threshold=0))
    return url


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _instance_url(base: str, instance_id: str) -> str:
    return f"{base}/instance?" + urllib.parse.urlencode(
        {"kind": "continuous", "job": "notes", "id": instance_id}
    )


def _id_of(href: str | None) -> str:
    assert href is not None
    return urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["id"][0]


def _statuses(url: str) -> dict[str, str]:
    with dj.Inspector(url) as inspector:
        found = {i: inspector.status("continuous", "notes", i) for i in IDS}
    return {i: s.status if s is not None else "gone" for i, s in found.items()}


def _first_event(base: str, path: str) -> str:
    """What the event stream at ``path`` sends up to its first event."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = b""
        while not re.search(rb"event: .*?\n\n", data, re.S):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


def test_every_id_opens_its_own_instance_and_shows_escaped(store_url: str) -> None:
    with dashboard(store_url) as served:
        base = served.base
        status, page = _fetch(base + "/")
        assert status == 200
        # The list links to each id as stored, and shows it on one line.
        linked = re.findall(r'<td><a href="(/instance\?[^"]*)">([^<]*)</a></td>', page)
        assert len(linked) == len(IDS)
        for href, shown in linked:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(html.unescape(href)).query)
            instance_id = query["id"][0]
            assert instance_id in IDS
            assert html.unescape(shown) == printable(instance_id)
            status, page = _fetch(base + html.unescape(href))
            assert status == 200, instance_id
            heading = re.search(r'<span class="iid">([^<]*)</span>', page)
            assert heading is not None
            assert html.unescape(heading.group(1)) == printable(instance_id)
            title = re.search(r"<title>([^<]*)</title>", page)
            assert title is not None
            assert printable(instance_id) in html.unescape(title.group(1))
        # Newlines, tabs and carriage returns of ids show as escapes.
        _, page = _fetch(base + "/")
        assert ">a\\nb\\tc<" in page
        assert ">cr\\rx<" in page
        # Stripped, " lead" is no instance, and "trail " is "trail".
        status, _ = _fetch(_instance_url(base, "lead"))
        assert status == 404
        # The live stream of "a\nb\tc" streams its records, its id shown escaped.
        quoted = urllib.parse.urlencode({"kind": "continuous", "job": "notes", "id": "a\nb\tc"})
        timeline = _first_event(base, f"/events?after=0&{quoted}")
        assert "event: record" in timeline
        assert "id=a%0Ab%09c" in timeline
        # The feed shows the ids escaped: a raw newline ends an SSE data line.
        feed = _first_event(base, "/events?after=0")
        assert "event: feed" in feed
        assert "· a\nb" not in feed


def test_the_search_box_drops_surrounding_whitespace(store_url: str) -> None:
    with dashboard(store_url) as served:
        _, page = _fetch(served.base + "/?" + urllib.parse.urlencode({"q": "  lead "}))
        shown = re.findall(r'<td><a href="/instance\?[^"]*">([^<]*)</a></td>', page)
        assert shown == [" lead"]


def test_the_pages_forms_and_actions_act_on_the_id_as_stored(
    store_url: str, browser: webdriver.Chrome
) -> None:
    with dashboard(store_url, "--allow-actions") as served:
        base = served.base
        for instance_id in ODD:
            browser.get(base + "/")
            links = browser.find_elements(By.CSS_SELECTOR, "#instances td a[href^='/instance?']")
            (link,) = (a for a in links if _id_of(a.get_attribute("href")) == instance_id)
            assert link.get_property("textContent") == printable(instance_id)
            link.click()

            def iid(driver: webdriver.Chrome) -> str:
                found = driver.find_element(By.CSS_SELECTOR, "h1 .iid")
                return str(found.get_property("textContent"))

            WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"))
            assert iid(browser) == printable(instance_id)
            # The version picker's and the diff's forms keep to this instance.
            browser.find_element(By.CSS_SELECTOR, "#state form button").click()
            WebDriverWait(browser, WAIT).until(lambda d: "v=" in d.current_url)
            assert iid(browser) == printable(instance_id)
            browser.find_element(By.CSS_SELECTOR, "#diff form button").click()
            WebDriverWait(browser, WAIT).until(lambda d: "from=" in d.current_url)
            assert iid(browser) == printable(instance_id)
            # Terminate, confirmed: this instance and no other.
            browser.find_element(By.CSS_SELECTOR, "a.action-terminate").click()
            WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "confirm"))
            browser.find_element(By.ID, "confirm").click()
            WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "result"))
            browser.find_element(By.LINK_TEXT, "Back to the instance").click()
            WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"))
            assert iid(browser) == printable(instance_id)
            statuses = _statuses(store_url)
            assert statuses[instance_id] == "terminated", (instance_id, statuses)
            assert statuses[TRAIL] == "running"
    assert sorted(i for i, s in _statuses(store_url).items() if s == "running") == [TRAIL]
