"""The bad-input campaign: garbage into every client method, open_store, Inspector and the CLI.

Inputs of every odd kind: ids, job names, events, states, idempotency keys and
reasons with lone surrogates, NUL, ESC, newlines, bidi overrides and C1
controls; huge and deeply nested values; NaN and infinities; bytes; wrong
types; and malformed store URLs whose passwords hold ``/``, ``:``, ``@``,
``#`` or ``?``. The properties:

- every call either raises an error of our hierarchy (``DurableJobsError``)
  or succeeds; nothing else escapes;
- a refused call (ValidationError, ConfigurationError, JobNotFound) leaves the
  store's export byte for byte as it was;
- a value accepted as JSON-exact data reads back unchanged, through the
  running runtime and after a restart on the same SQLite file;
- the Inspector and the read-only CLI commands never change the store, and
  the CLI's human output holds no terminal control character;
- no message (nor its traceback) shows a piece of a URL's password.

With ``HYPOTHESIS_PROFILE=thorough`` each test prints how many inputs it tried.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from _support import examples, fresh_sqlite_url, run_virtual
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_jobs as dj
from durable_jobs.cli import run
from durable_jobs.maintenance import export_jsonl

MIB = 1024 * 1024


class Huge:
    """Stands for a string over the 1 MiB limits (a short repr in failure reports)."""

    text = "h" * (MIB + 10)

    def __repr__(self) -> str:
        return "Huge()"


def real(value: Any) -> Any:
    return Huge.text if isinstance(value, Huge) else value


T0 = datetime(2026, 1, 1, tzinfo=UTC)

# ---- what the campaign sends -------------------------------------------------------------

ODD_CHARS = [
    "\ud800", "\udfff", "\udc80", "\x00", "\x1b", "\n", "\r", "\t", "\x07", "\x7f", "\x9b",
    "\u202e", "\u2066", "\u2028", "\ufeff", "/", ":", "@", "#", "?", "%", "[", "]", "\\",
    '"', "'", "é", "\U0001f4a5", "a", "b",
]  # fmt: skip

odd_text = st.one_of(
    st.text(max_size=16),
    st.text(alphabet=st.sampled_from(ODD_CHARS), max_size=12),
    st.sampled_from(["", " ", "i" * 513, "k" * 1025, "[bold]x[/]", "a\x1b[31mRED"]),
    st.builds(Huge),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63),
    st.floats(),  # NaN and infinities included
    odd_text,
    st.binary(max_size=6),
)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


values = st.one_of(
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(odd_text, inner, max_size=4)
            | st.tuples(inner, inner)
        ),
        max_leaves=10,
    ),
    st.integers(min_value=95, max_value=1100).map(nested),
    st.sampled_from([object(), {1, 2}, complex(1, 2), {1: "int key"}, {("t",): 1}]),
)
ids = st.one_of(odd_text, st.integers(), st.none(), st.binary(max_size=4), st.floats())
keys = st.one_of(st.none(), odd_text, st.integers(), st.binary(max_size=4))
names = st.one_of(st.sampled_from(["anything", "setter", "batch"]), odd_text, st.integers())

CALLS = [
    "start", "start_number", "status", "get_state", "history", "trigger", "terminate",
    "add", "flush", "clear", "batch_status", "send", "task_trigger", "task_terminate",
    "task_status", "by_name",
]  # fmt: skip
calls = st.lists(st.tuples(st.sampled_from(CALLS), ids, values, keys), min_size=1, max_size=4)


def report(capsys: pytest.CaptureFixture[str], name: str, counts: Counter[str]) -> None:
    """Print the number of inputs tried, under the thorough profile."""
    if os.environ.get("HYPOTHESIS_PROFILE") != "thorough":
        return
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    with capsys.disabled():
        print(f"\nbad-input campaign, {name}: {total} inputs ({detail})")


# ---- the jobs under test -------------------------------------------------------------------


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("anything", state=Any, schedule=dj.every(timedelta(hours=1)))
    async def anything(ctx: dj.ContinuousContext[Any]) -> None:
        pass

    @registry.continuous("number", state=float, schedule=dj.every(timedelta(hours=1)))
    async def number(ctx: dj.ContinuousContext[float]) -> None:
        pass

    @registry.debounce("batch", event=Any, flush_after=timedelta(seconds=5))
    async def batch(ctx: dj.DebounceContext[Any]) -> None:
        pass

    @registry.task("setter", event=Any, state=Any)
    async def setter(ctx: dj.TaskContext[Any]) -> None:
        pass

    @setter.on_event
    async def set_it(event: Any, ctx: dj.TaskContext[Any]) -> None:
        ctx.set_state(event)

    return registry


REGISTRY = make_registry()
REFUSED = (dj.ValidationError, dj.ConfigurationError, dj.JobNotFound)


def export_body(store: dj.Store) -> str:
    """The store's export without its header (which holds the time of the export)."""
    out = io.StringIO()
    export_jsonl(store, out)
    return "".join(out.getvalue().splitlines(keepends=True)[1:])


def json_exact(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON data that must read back exactly as it is."""
    if depth > 90:
        return False
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) < 1000 and not re.search("[\ud800-\udfff]", value)
    if isinstance(value, list):
        return all(json_exact(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_exact(k) for k in value) and all(
            json_exact(v, depth + 1) for v in value.values()
        )
    return False


async def call(jobs: dj.Jobs, name: str, instance_id: Any, value: Any, key: Any) -> Any:
    """One client call; a value accepted as JSON-exact data must read back unchanged."""
    instance_id, value, key = real(instance_id), real(value), real(key)
    anything = jobs.continuous("anything")
    batch = jobs.debounce("batch")
    setter = jobs.task("setter")
    if name == "start":
        started = await anything.start(instance_id, value)
        if started.created and json_exact(value):
            assert await anything.get_state(instance_id) == value
    elif name == "start_number":
        await jobs.continuous("number").start(instance_id, value)
    elif name == "status":
        await anything.status(instance_id)
    elif name == "get_state":
        await anything.get_state(instance_id)
    elif name == "history":
        await anything.history(instance_id)
    elif name == "trigger":
        await anything.trigger(instance_id)
    elif name == "terminate":
        await anything.terminate(instance_id, key)
    elif name == "add":
        added_result = await batch.add(instance_id, value, idempotency_key=key)
        if not added_result.duplicate and json_exact(value):
            added = [r for r in await batch.history(instance_id) if r.name == "event_added"]
            assert added[-1].data["event"] == value
    elif name == "flush":
        await batch.flush(instance_id)
    elif name == "clear":
        await batch.clear(instance_id)
    elif name == "batch_status":
        await batch.status(instance_id)
    elif name == "send":
        sent = await setter.send(instance_id, value, idempotency_key=key)
        if not sent.duplicate and json_exact(value):
            assert await setter.get_state(instance_id) == dj.TaskState(value, None)
    elif name == "task_trigger":
        await setter.trigger(instance_id)
    elif name == "task_terminate":
        await setter.terminate(instance_id, key)
    elif name == "task_status":
        await setter.status(instance_id)
    else:
        jobs.task(value)  # a job by an odd name (or of an odd type)


async def states(jobs: dj.Jobs, touched: set[str]) -> dict[str, Any]:
    """Every state the client reads for the ids ``touched``."""
    found: dict[str, Any] = {}
    for instance_id in sorted(touched):
        found[f"a:{instance_id}"] = await jobs.continuous("anything").get_state(instance_id)
        found[f"n:{instance_id}"] = await jobs.continuous("number").get_state(instance_id)
        found[f"b:{instance_id}"] = await jobs.debounce("batch").get_state(instance_id)
        found[f"s:{instance_id}"] = await jobs.task("setter").get_state(instance_id)
    return found


async def campaign(url: str, plan: list[tuple[str, Any, Any, Any]], counts: Counter[str]) -> None:
    """Run ``plan`` on ``url``; on a durable store, check that a restart reads the same."""
    touched: set[str] = set()
    async with dj.open_jobs(REGISTRY, url, clock=dj.VirtualClock(T0), poll_interval=None) as jobs:
        for name, instance_id, value, key in plan:
            counts[name] += 1
            before = export_body(jobs.store)
            try:
                await call(jobs, name, instance_id, value, key)
            except REFUSED:
                assert export_body(jobs.store) == before, name
            except dj.DurableJobsError:
                pass  # e.g. HandlerError: recorded, and in our hierarchy
            else:
                if isinstance(instance_id, str):
                    touched.add(instance_id)
        seen = await states(jobs, touched)
    if url.startswith("sqlite"):
        async with dj.open_jobs(
            REGISTRY, url, clock=dj.VirtualClock(T0), poll_interval=None, run_alarms=True
        ) as jobs:
            assert await states(jobs, touched) == seen  # the same after a restart


def test_client_methods_with_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()

    @settings(
        max_examples=examples(60),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(plan=calls)
    def on_memory(plan: list[tuple[str, Any, Any, Any]]) -> None:
        run_virtual(lambda: campaign("memory://", plan, counts))

    on_memory()
    report(capsys, "client methods (memory)", counts)


def test_client_methods_with_garbage_then_a_restart(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()

    @settings(
        max_examples=examples(12),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(plan=calls)
    def on_sqlite(plan: list[tuple[str, Any, Any, Any]]) -> None:
        with fresh_sqlite_url() as url:
            run_virtual(lambda: campaign(url, plan, counts))

    on_sqlite()
    report(capsys, "client methods (SQLite, then a restart)", counts)


# ---- store URLs: open_store, open_jobs, Inspector, the CLI -------------------------------

SECRET_TOKENS = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=6, max_size=10)
URL_SPECIALS = st.sampled_from(["/", ":", "@", "#", "?", "/:", "%", "%2F", "//", "@@", ""])


@st.composite
def leaky_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A store URL, often malformed, whose password is made of secret tokens."""
    tokens = draw(st.lists(SECRET_TOKENS, min_size=1, max_size=3))
    separators = draw(st.lists(URL_SPECIALS, min_size=len(tokens), max_size=len(tokens)))
    password = "".join(s + t for s, t in zip(separators, tokens, strict=True))
    scheme = draw(st.sampled_from(["postgresql", "postgres", "sqlite", "memory", "pg", ""]))
    start = draw(st.sampled_from(["://", ":/", ":", ":///", "//", "://u@"]))
    user = draw(st.sampled_from(["u", "app", "", "me:"]))
    host = draw(
        st.sampled_from(["127.0.0.1:1", "localhost:1", "127.0.0.1:x", "", "h:99999", "[::1]:1"])
    )
    tail = draw(st.sampled_from(["/db", "/db?schema=x", "", "/db?schema=Bad", "/a/b", "/db?x=1"]))
    url = f"{scheme}{start}{user}:{password}@{host}{tail}"
    if url.startswith("sqlite:///"):
        # A file path, not user information: an OS error may quote it (the URL
        # shown is redacted all the same). Nothing to keep secret there.
        return url, []
    return url, tokens


def assert_no_secret(text: str, tokens: list[str]) -> None:
    for token in tokens:
        assert token not in text, text


@contextmanager
def in_temporary_directory() -> Iterator[None]:
    """Run in a new, empty working directory (relative SQLite paths land there)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="dj-bad-url-") as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(old)


def test_store_urls_with_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()

    @settings(max_examples=examples(80), suppress_health_check=[HealthCheck.too_slow])
    @given(case=leaky_urls())
    def check(case: tuple[str, list[str]]) -> None:
        url, tokens = case
        with in_temporary_directory():
            openers: list[tuple[str, Callable[[], object]]] = [
                ("open_store", lambda: dj.open_store(url).close()),
                ("open_store(create=False)", lambda: dj.open_store(url, create=False).close()),
                ("Inspector", lambda: dj.Inspector(url).close()),
                ("open_jobs", lambda: trio.run(_open_jobs, url)),
            ]
            for name, open_it in openers:
                counts[name] += 1
                try:
                    open_it()
                except dj.DurableJobsError as exc:
                    assert_no_secret("".join(traceback.format_exception(exc)), tokens)
            for args, env in ((["--store", url, "list"], None), (["alarms"], url)):
                counts["cli"] += 1
                out, err = io.StringIO(), io.StringIO()
                if env is not None:
                    os.environ["DURABLE_JOBS_STORE"] = env
                try:
                    with redirect_stdout(out), redirect_stderr(err):
                        code = run(args)
                finally:
                    os.environ.pop("DURABLE_JOBS_STORE", None)
                assert code in (0, 1), err.getvalue()
                assert_no_secret(out.getvalue() + err.getvalue(), tokens)

    check()
    report(capsys, "store URLs", counts)


async def _open_jobs(url: str) -> None:
    async with dj.open_jobs(REGISTRY, url, clock=dj.VirtualClock(T0), poll_interval=None):
        pass


# ---- the Inspector and the CLI on a real store ----------------------------------------------


def _fill(url: str) -> None:
    async def fill() -> None:
        async with dj.open_jobs(REGISTRY, url, clock=dj.VirtualClock(T0), poll_interval=None) as j:
            await j.continuous("anything").start("a1", {"n": 1})
            await j.debounce("batch").add("b\x1b[31m1", "e", idempotency_key="k")
            await j.task("setter").send("line\n2", [1, 2])
            await j.task("setter").send("rtl\u202e3", {"x": None})

    run_virtual(fill)


kinds = st.one_of(st.sampled_from(["continuous", "debounce", "task"]), odd_text, st.integers())
numbers = st.one_of(st.integers(), st.none(), st.floats(), odd_text)
times = st.one_of(
    st.none(), st.datetimes(), st.datetimes(timezones=st.just(UTC)), odd_text, st.integers()
)
inspector_calls = st.tuples(
    st.sampled_from(["instances", "status", "history", "state_at", "diff", "alarms", "stats"]),
    kinds,
    names,
    ids,
    numbers,
    numbers,
    times,
)


def _inspect(inspector: dj.Inspector, args: tuple[Any, ...]) -> None:
    name, kind, job, instance_id, a, b, at = args
    if name == "instances":
        inspector.instances(kind=kind, job=job, status=instance_id, cursor=job, limit=a)
    elif name == "status":
        inspector.status(kind, job, instance_id)
    elif name == "history":
        inspector.history(kind, job, instance_id, from_version=a, to_version=b)
    elif name == "state_at":
        inspector.state_at(kind, job, instance_id, version=a, at=at)
    elif name == "diff":
        inspector.diff(kind, job, instance_id, a, b, full=bool(at))
    elif name == "alarms":
        inspector.alarms(now=at, overdue=bool(a), limit=b)
    else:
        inspector.stats(kind=kind, job=job, now=at)


def test_inspector_with_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()
    with fresh_sqlite_url() as url:
        _fill(url)
        with dj.open_store(url) as store:
            before = export_body(store)
            inspector = dj.Inspector(store)

            @settings(max_examples=examples(150))
            @given(args=inspector_calls)
            def check(args: tuple[Any, ...]) -> None:
                counts[args[0]] += 1
                with suppress(dj.DurableJobsError):
                    _inspect(inspector, args)

            check()
            assert export_body(store) == before  # the Inspector never writes
    report(capsys, "Inspector", counts)


VALUE_OPTIONS = {"--kind", "--job", "--status", "--cursor"}
UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
cli_args = st.one_of(
    st.tuples(st.just("list"), st.sampled_from(["--kind", "--job", "--status", "--cursor"]), ids),
    st.tuples(
        st.sampled_from(["status", "history", "state"]),
        st.one_of(st.sampled_from(["task", "debounce", "continuous"]), odd_text),
        st.one_of(names, st.sampled_from(["setter", "batch"])),
        st.one_of(ids, st.sampled_from(["line\n2", "rtl\u202e3", "b\x1b[31m1"])),
    ),
    st.tuples(st.just("diff"), st.just("task"), st.just("setter"), st.just("line\n2"), ids, ids),
    st.tuples(
        st.sampled_from(["alarms", "stats", "replay", "export"]),
        st.sampled_from(["--json", "--all", "--overdue", "--kind", "--job"]),
        st.one_of(odd_text, st.sampled_from(["task", "setter", "--json"])),
    ),
)


def test_read_only_cli_with_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()
    with fresh_sqlite_url() as url:
        _fill(url)
        with dj.open_store(url) as store:
            before = export_body(store)

        @settings(max_examples=examples(60), suppress_health_check=[HealthCheck.too_slow])
        @given(args=cli_args)
        def check(args: tuple[Any, ...]) -> None:
            argv = ["--store", url, *(a if isinstance(a, str) else repr(a) for a in args)]
            counts[str(args[0])] += 1
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = run(argv)
            assert code in (0, 1, 2), err.getvalue()
            # --json (not taken as an option's value) prints JSON, kept as it is; so
            # does export.
            json_mode = argv[-1] == "--json" and argv[-2] not in VALUE_OPTIONS
            if not json_mode and args[0] != "export":
                assert not UNPRINTABLE.search(out.getvalue()), out.getvalue()
            if "--json" not in argv:  # with --json, errors are JSON on stderr, kept as is
                assert not UNPRINTABLE.search(err.getvalue()), err.getvalue()
            if code == 0 and json_mode and args[0] != "export":
                json.loads(out.getvalue())

        check()
        with dj.open_store(url) as store:
            assert export_body(store) == before  # read-only commands wrote nothing
    report(capsys, "read-only CLI", counts)
