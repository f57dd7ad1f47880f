"""A store for the dashboard tests, the dashboard as a real process, a real browser.

The store is an SQLite file filled by the runtime in virtual time (a job that
fails three times, a state holding HTML, a debounce batch). The dashboard
runs as ``durable-jobs ui`` in a child process on 127.0.0.1, on a free port
(``--port 0``; it prints the URL it bound). The browser is Debian's headless
Chromium driven by Selenium through /usr/bin/chromedriver: nothing is
downloaded at run time (``scripts/ensure-chromium`` installs them).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
import trio.testing
from pydantic import BaseModel
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import durable_jobs as dj

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HTML_TEXT = "<script>window.__pwned = 1</script><b>bold</b> & <i>more</i>"


class Counter(BaseModel):
    n: int = 0


class Note(BaseModel):
    text: str = ""


def make_registry() -> dj.Registry:
    registry = dj.Registry()
    calls = [0]

    @registry.continuous(
        "flaky",
        state=Counter,
        schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(
            3,
            delay=dj.Backoff.exponential(base=timedelta(seconds=30), max=timedelta(minutes=5)),
            jitter=0,
            on_exhausted="pause",
        ),
    )
    async def flaky(ctx: dj.ContinuousContext[Counter]) -> None:
        calls[0] += 1
        msg = f"upstream answered 503 (call {calls[0]})"
        raise ConnectionError(msg)

    @registry.continuous(
        "notes", state=Note, schedule=dj.every(timedelta(days=1)), start_immediately=False
    )
    async def notes(ctx: dj.ContinuousContext[Note]) -> None:
        pass

    @registry.debounce("digest", event=str, state=list[str], flush_after=timedelta(minutes=5))
    async def digest(ctx: dj.DebounceContext[list[str]]) -> None:
        pass

    @digest.on_event
    def collect(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event]

    return registry


async def _fill(url: str) -> None:
    async with dj.open_jobs(make_registry(), url, clock=dj.VirtualClock(START)) as jobs:
        await jobs.continuous("flaky").start("acct-1", Counter())
        await jobs.continuous("notes").start("page", Note(text=HTML_TEXT))
        await trio.sleep(600)
        await jobs.wait_idle()
        # An open batch, so the digest has something to flush.
        await jobs.debounce("digest").add("ann", "first")


def fill_store(path: Path) -> str:
    """Fill an SQLite store at ``path`` in virtual time; its URL."""
    url = f"sqlite:///{path}"
    trio.run(_fill, url, clock=trio.testing.MockClock(autojump_threshold=0))
    return url


@dataclass
class Served:
    """A running dashboard: its base URL; once stopped, everything it printed."""

    base: str
    log: str = ""


@contextmanager
def dashboard(url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``durable-jobs ui`` on ``url`` in a child process, stopped (Ctrl-C) at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable_jobs", "ui", "--store", url, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    served = Served(base="")
    first = ""
    try:
        first, served.base = _read_url(proc)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        served.log = first + out + err


def _read_url(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The first line the dashboard printed, and the URL in it."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30  # a start-up bound, not a timing assertion
        while time.monotonic() < deadline:
            if sel.select(timeout=deadline - time.monotonic()):
                line = proc.stdout.readline()
                if not line:
                    break
                found = re.search(r"http://127\.0\.0\.1:\d+", line)
                if found:
                    return line, found.group(0)
    assert proc.stderr is not None
    proc.kill()
    raise AssertionError(f"the dashboard did not start: {proc.stderr.read()}")


def chromium() -> webdriver.Chrome:
    """Debian's Chromium, headless, driven by its chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
