"""The dashboard in a real headless Chromium, served by ``durable-jobs ui`` in its own process.

Waits are Selenium's (a condition polled until it holds, with a generous bound),
never sleeps; nothing asserts how fast anything is.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import durable_jobs as dj
from _ui_fixtures import HTML_TEXT, Served, chromium, dashboard, fill_store, make_registry

WAIT = 20  # seconds a condition may take to hold before the test fails


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A store of this test's own (the test changes it)."""
    return fill_store(tmp_path / "jobs.db")


@pytest.fixture(scope="module")
def shared_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store that the tests only read."""
    return fill_store(tmp_path_factory.mktemp("shared") / "jobs.db")


@pytest.fixture(scope="module")
def shared(shared_url: str) -> Iterator[Served]:
    """A read-only dashboard on the shared store."""
    with dashboard(shared_url) as served:
        yield served


def _instance(base: str, kind: str, job: str, instance_id: str) -> str:
    return f"{base}/instance?" + urllib.parse.urlencode(
        {"kind": kind, "job": job, "id": instance_id}
    )


def _fetch(
    url: str, *, data: dict[str, str] | None = None, auth: str | None = None
) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_timeline_of_a_failing_job_shows_every_attempt_and_error(
    shared: Served, browser: webdriver.Chrome
) -> None:
    base = shared.base
    browser.get(_instance(base, "continuous", "flaky", "acct-1"))
    failed = browser.find_elements(By.CSS_SELECTOR, "#timeline tr.ev-run_failed")
    assert [row.find_element(By.CSS_SELECTOR, "td.attempt").text for row in failed] == [
        "1",
        "2",
        "3",
    ]
    details = [row.find_element(By.CSS_SELECTOR, "td.detail").text for row in failed]
    for call, text in enumerate(details, 1):
        assert f"ConnectionError: upstream answered 503 (call {call})" in text
    assert "retry at 2026-03-02 09:00:30" in details[0]
    assert "no retry" in details[2]
    exhausted = browser.find_element(By.CSS_SELECTOR, "#timeline tr.ev-retry_exhausted")
    assert "retries exhausted: pause" in exhausted.text
    status = browser.find_element(By.CSS_SELECTOR, "#summary .status").text
    assert status.startswith("failed")
    # The state at an earlier version, and a diff, from the same page.
    browser.find_element(By.CSS_SELECTOR, "#timeline tr[data-key='v2'] td.num a").click()
    assert "State at version 2" in browser.find_element(By.CSS_SELECTOR, "#state h2").text


def test_an_event_committed_by_a_running_runtime_appears_without_a_reload(
    store_url: str, browser: webdriver.Chrome
) -> None:
    with dashboard(store_url) as served:
        base = served.base
        browser.get(_instance(base, "debounce", "digest", "ann"))
        browser.execute_script("window.__same_page = true;")
        shown = len(browser.find_elements(By.CSS_SELECTOR, "#timeline tr"))

        async def add() -> None:
            async with dj.open_jobs(make_registry(), store_url) as jobs:
                await jobs.debounce("digest").add("ann", "live <em>event</em>")

        trio.run(add)

        def arrived(driver: webdriver.Chrome) -> bool:
            rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.ev-event_added")
            return any("live <em>event</em>" in row.text for row in rows)

        WebDriverWait(browser, WAIT).until(arrived)
        assert browser.execute_script("return window.__same_page === true;")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline tr")) > shown
        assert not browser.find_elements(By.CSS_SELECTOR, "#timeline em")


def test_a_page_refused_its_live_stream_says_live_updates_are_paused(
    shared_url: str, shared: Served, browser: webdriver.Chrome
) -> None:
    paused = "live updates paused"
    with dashboard(shared_url, "--max-live", "0") as served:
        for url in (served.base + "/", _instance(served.base, "continuous", "flaky", "acct-1")):
            browser.get(url)
            WebDriverWait(browser, WAIT).until(
                lambda driver: paused in driver.find_element(By.TAG_NAME, "body").text
            )
            assert browser.find_elements(By.CSS_SELECTOR, ".live-dot.paused")
            assert "acct-1" in browser.find_element(By.TAG_NAME, "body").text
    # A dashboard with room for the stream says nothing of the kind.
    browser.get(shared.base + "/")
    WebDriverWait(browser, WAIT).until(
        lambda driver: driver.execute_script("return document.readyState === 'complete';")
    )
    assert paused not in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".live-dot.paused")


def test_actions_are_absent_without_allow_actions_and_refused_without_the_csrf_token(
    store_url: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    page = "continuous", "flaky", "acct-1"
    form = {"action": "terminate", "kind": "continuous", "job": "flaky", "id": "acct-1"}
    with dashboard(store_url) as served:
        base = served.base
        browser.get(_instance(base, *page))
        assert "read-only" in browser.find_element(By.CSS_SELECTOR, "header .mode").text
        assert not browser.find_elements(By.CSS_SELECTOR, "section.actions, a.button")
        status, _ = _fetch(f"{base}/confirm?" + urllib.parse.urlencode(form))
        assert status == 403
        status, body = _fetch(f"{base}/action", data=form)
        assert status == 403
        assert "read-only" in body

    with dashboard(store_url, "--allow-actions") as served:
        base = served.base
        browser.get(_instance(base, *page))
        labels = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "section.actions a")]
        assert labels == ["Resume", "Terminate"]
        for token in (None, "forged"):
            data = form if token is None else {**form, "csrf_token": token}
            status, body = _fetch(f"{base}/action", data=data)
            assert status == 403
            assert "CSRF token is missing or wrong" in body
        with dj.Inspector(store_url) as inspector:
            summary = inspector.status(*page)
            assert summary is not None and summary.status == "failed"

        # While a runtime serves the SQLite store, even a confirmed action is refused.
        browser.find_element(By.CSS_SELECTOR, "a.action-terminate").click()
        holder = dj.open_store(store_url)
        holder.claim_runtime()
        try:
            browser.find_element(By.ID, "confirm").click()
            WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.ID, "message"))
            assert "while a jobs runtime serves" in browser.find_element(By.ID, "message").text
        finally:
            holder.close()

        # Confirmed, with the page's token and no runtime: the terminated event is committed.
        browser.get(_instance(base, *page))
        browser.find_element(By.CSS_SELECTOR, "a.action-terminate").click()
        browser.find_element(By.ID, "confirm").click()
        # The click starts the POST; wait for its answer page (a result or a message).
        WebDriverWait(browser, WAIT).until(
            lambda b: b.find_elements(By.ID, "result") or b.find_elements(By.ID, "message")
        )
        result = browser.find_elements(By.ID, "result")
        assert result, browser.find_element(By.TAG_NAME, "body").text
        assert result[0].text.startswith("Terminated")
        with dj.Inspector(store_url) as inspector:
            last = inspector.history(*page)[-1]
        assert (last.name, last.data["reason"]) == ("terminated", "terminated from the dashboard")


def test_a_state_holding_html_is_shown_escaped(shared: Served, browser: webdriver.Chrome) -> None:
    base = shared.base
    browser.get(_instance(base, "continuous", "notes", "page"))
    assert f'"text": "{HTML_TEXT}"' in browser.find_element(By.ID, "state-json").text
    started = browser.find_element(By.CSS_SELECTOR, "#timeline tr.ev-started td.detail")
    assert HTML_TEXT in started.text
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main b, main i")
    assert browser.execute_script("return window.__pwned === undefined;")
    status, html = _fetch(_instance(base, "continuous", "notes", "page"))
    assert status == 200
    assert "<script>window.__pwned" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;b&gt;" in html


def test_basic_auth_refuses_a_wrong_password(shared_url: str, browser: webdriver.Chrome) -> None:
    secret = "s3cret-pass"
    env = {"DASH_AUTH": f"admin:{secret}"}
    with dashboard(shared_url, "--auth-env", "DASH_AUTH", env=env) as served:
        base = served.base
        browser.get(f"{base}/")
        assert not browser.find_elements(By.ID, "instances")
        try:
            _browser_auth(browser, "admin:wrong")
            browser.get(f"{base}/")
            assert not browser.find_elements(By.ID, "instances")
            _browser_auth(browser, f"admin:{secret}")
            browser.get(f"{base}/")
            assert browser.find_elements(By.ID, "instances")
        finally:
            browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        assert _fetch(f"{base}/", auth="admin:wrong")[0] == 401
        assert _fetch(f"{base}/", auth=f"nobody:{secret}")[0] == 401
        assert _fetch(f"{base}/")[0] == 401
        status, body = _fetch(f"{base}/stats", auth=f"admin:{secret}")
        assert status == 200
        assert "flaky" in body
    assert secret not in served.log


def _browser_auth(browser: webdriver.Chrome, credentials: str) -> None:
    """Make the browser send ``Authorization: Basic ...`` with every request."""
    token = base64.b64encode(credentials.encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )


def test_instances_filter_search_and_pages_then_alarms_and_stats(
    shared: Served, browser: webdriver.Chrome
) -> None:
    def ids() -> list[str]:
        return [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#instances td a")]

    base = shared.base
    browser.get(f"{base}/")
    assert ids() == ["acct-1", "page", "ann"]
    browser.get(f"{base}/?kind=continuous")
    assert ids() == ["acct-1", "page"]
    browser.get(f"{base}/?status=failed")
    assert ids() == ["acct-1"]
    browser.get(f"{base}/?q=AG")  # any part of the id, any case
    assert ids() == ["page"]
    # One a page: "next page" walks the filtered list to its end.
    browser.get(f"{base}/?kind=continuous&limit=1")
    seen = ids()
    while browser.find_elements(By.ID, "next-page"):
        browser.find_element(By.ID, "next-page").click()
        seen += ids()
    assert seen == ["acct-1", "page"]
    browser.get(f"{base}/?q=a&limit=1")
    browser.find_element(By.ID, "next-page").click()
    assert ids() == ["page"]
    # The recent events, newest first.
    feed = browser.find_elements(By.CSS_SELECTOR, "#feed tr td.name")
    assert feed and feed[0].text == "alarm_set"

    browser.get(f"{base}/alarms")
    overdue = browser.find_element(By.ID, "overdue").text
    assert "notes" in overdue and "digest" in overdue and "late by" in overdue
    assert "flaky" not in overdue  # paused: no alarm

    browser.get(f"{base}/stats")
    rows = {
        tuple(td.text for td in row.find_elements(By.TAG_NAME, "td")[:3])
        for row in browser.find_elements(By.CSS_SELECTOR, "#stats tbody tr")
    }
    assert rows == {
        ("continuous", "flaky", "1"),
        ("continuous", "notes", "1"),
        (
            "debounce",
            "digest",
            "1",
        ),
    }
