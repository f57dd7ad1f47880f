"""Evolving state and event types: ``version``, upcasters, the refusal at ``open_jobs``,
``Inspector.check`` and ``durable-jobs check``, on real SQLite and Postgres stores
written by an older definition of the same jobs.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, T, advance, running
from durable_jobs.cli import run as cli
from durable_jobs.maintenance import export_jsonl, import_jsonl

# ---- the same jobs at versions 1, 2 and 3 ------------------------------------------------
#
# state v1: {"n": 5}; v2 renames it: {"count": 5}; v3 adds a required unit: {"count": 5,
# "unit": "items"}. Events (debounce, task) follow the same steps: v1 {"text": "a"};
# v2 {"body": "a"}; v3 {"body": "a", "lang": "en"}.


class StateV1(BaseModel):
    n: int


class StateV2(BaseModel):
    count: int


class StateV3(BaseModel):
    count: int
    unit: str


class EventV1(BaseModel):
    text: str


class EventV2(BaseModel):
    body: str


class EventV3(BaseModel):
    body: str
    lang: str


STATES: dict[int, type[BaseModel]] = {1: StateV1, 2: StateV2, 3: StateV3}
EVENTS: dict[int, type[BaseModel]] = {1: EventV1, 2: EventV2, 3: EventV3}


def state_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    return {"count": data["n"]}


def state_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "unit": "items"}


def event_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    return {"body": data["text"]}


def event_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "lang": "en"}


def _bump(state: Any) -> Any:
    """The state after one run, at any version."""
    if isinstance(state, StateV1):
        return StateV1(n=state.n + 1)
    if isinstance(state, StateV3):
        return StateV3(count=state.count + 1, unit=state.unit)
    return StateV2(count=state.count + 1)


def _text(event: Any) -> str:
    return str(event.text if isinstance(event, EventV1) else event.body)


def make_registry(
    version: int,
    *,
    state_upcasters: tuple[int, ...] | None = None,
    event_upcasters: tuple[int, ...] | None = None,
    seen: list[Any] | None = None,
) -> dj.Registry:
    """The app's jobs at ``version``, with the upcasters up to it (or only those given)."""
    ups_state = {1: state_1_to_2, 2: state_2_to_3}
    ups_event = {1: event_1_to_2, 2: event_2_to_3}
    state_steps = range(1, version) if state_upcasters is None else state_upcasters
    event_steps = range(1, version) if event_upcasters is None else event_upcasters
    seen = seen if seen is not None else []
    state_t, event_t = STATES[version], EVENTS[version]
    registry = dj.Registry()

    @registry.continuous(
        "counter", state=state_t, schedule=dj.every(HOUR), start_immediately=False,
        version=version,
    )  # fmt: skip
    async def counter(ctx: dj.ContinuousContext[Any]) -> None:
        seen.append(("counter", ctx.state))
        ctx.set_state(_bump(ctx.state))

    @registry.debounce("inbox", event=event_t, flush_after=MINUTE, version=version)
    async def inbox(ctx: dj.DebounceContext[Any]) -> None:
        seen.append(("inbox", ctx.state))

    @registry.task("notes", event=event_t, state=state_t, version=version)
    async def notes(ctx: dj.TaskContext[Any]) -> None:
        seen.append(("notes-execute", ctx.state))

    @notes.on_event
    async def on_note(event: Any, ctx: dj.TaskContext[Any]) -> None:
        seen.append(("notes-event", event, ctx.state))
        if ctx.state is None:
            first = {1: StateV1(n=1), 2: StateV2(count=1), 3: StateV3(count=1, unit="notes")}
            ctx.set_state(first[version])
        else:
            ctx.set_state(_bump(ctx.state))

    for step in state_steps:
        counter.upcast_state(from_version=step)(ups_state[step])
        notes.upcast_state(from_version=step)(ups_state[step])
    for step in event_steps:
        inbox.upcast_event(from_version=step)(ups_event[step])
        notes.upcast_event(from_version=step)(ups_event[step])
    return registry


async def write_v1(url: str | dj.Store) -> None:
    """Instances written by version 1 of the app: a state, a buffered batch, a task state."""
    async with running(make_registry(1), url) as jobs:
        await jobs.continuous("counter").start("c1", StateV1(n=5))
        await jobs.debounce("inbox").add("d1", EventV1(text="hello"))
        await jobs.task("notes").send("t1", EventV1(text="first"))


def _raw_rows(url: str) -> list[tuple[int, str]]:
    """(version, JSON) of every stored event row of the store, in order."""
    with dj.open_store(url) as store:
        out: list[tuple[int, str]] = []
        for row in store.list_instances():
            out.extend(
                (s.originator_version, bytes(s.state).decode())
                for s in store.stored_events(row.instance_uuid)
            )
        return out


# ---- compatible changes ----------------------------------------------------------------------


class Wide(BaseModel):
    count: int
    legacy: str


class Narrow(BaseModel):
    count: int
    note: str = "default"
    extra: int | None = None


async def test_compatible_changes_need_no_version(
    durable_store_url: str, autojump_clock: Any
) -> None:
    """A new field with a default, a new optional field and a removed field: old logs load."""
    old = dj.Registry()

    @old.continuous("c", state=Wide, schedule=dj.every(HOUR), start_immediately=False)
    async def c_old(ctx: dj.ContinuousContext[Wide]) -> None:
        pass

    new = dj.Registry()

    @new.continuous("c", state=Narrow, schedule=dj.every(HOUR), start_immediately=False)
    async def c_new(ctx: dj.ContinuousContext[Narrow]) -> None:
        ctx.set_state(Narrow(count=ctx.state.count + 1, note=ctx.state.note))

    async with running(old, durable_store_url) as jobs:
        await jobs.continuous("c").start("x", Wide(count=1, legacy="gone"))
    async with running(new, durable_store_url) as jobs:
        client = jobs.continuous("c")
        assert await client.get_state("x") == Narrow(count=1)
        await client.trigger("x")
        assert await client.get_state("x") == Narrow(count=2)
    with dj.Inspector(durable_store_url) as inspector:
        assert inspector.check(new).ok


# ---- an upcaster chain ------------------------------------------------------------------------


async def test_upcaster_chain_1_2_3(durable_store_url: str, autojump_clock: Any) -> None:
    """Data of versions 1 and 2 reads as version 3 through the chain; new data is written
    at version 3 and the stored log is never rewritten."""
    await write_v1(durable_store_url)
    async with running(make_registry(2), durable_store_url) as jobs:
        # Version 2 reads version 1 and writes version 2.
        assert await jobs.continuous("counter").get_state("c1") == StateV2(count=5)
        await jobs.continuous("counter").start("c2", StateV2(count=50))
        await jobs.debounce("inbox").add("d2", EventV2(body="two"))
    rows_before = _raw_rows(durable_store_url)
    seen: list[Any] = []
    async with running(make_registry(3, seen=seen), durable_store_url) as jobs:
        counter = jobs.continuous("counter")
        assert await counter.get_state("c1") == StateV3(count=5, unit="items")
        assert await counter.get_state("c2") == StateV3(count=50, unit="items")
        # The debounce state is the (upcast) event; the flush sees version 3.
        assert await jobs.debounce("inbox").get_state("d1") == EventV3(body="hello", lang="en")
        task = await jobs.task("notes").get_state("t1")
        assert task is not None
        assert task.state == StateV3(count=1, unit="items")
        # Handlers see the upcast values and write version 3.
        await counter.trigger("c1")
        await jobs.task("notes").send("t1", EventV3(body="second", lang="fr"))
        await advance(jobs, 2 * MINUTE)
        assert await counter.get_state("c1") == StateV3(count=6, unit="items")
        history = await counter.history("c1")
        assert ("counter", StateV3(count=5, unit="items")) in seen
        assert ("inbox", EventV3(body="hello", lang="en")) in seen
        assert ("inbox", EventV3(body="two", lang="en")) in seen
        assert (
            "notes-event",
            EventV3(body="second", lang="fr"),
            StateV3(count=1, unit="items"),
        ) in seen
        # The history shows what was stored, with the version it was written at.
        started, changed = history[0], history[-1]
        assert (started.data["state"], started.data["type_version"]) == ({"n": 5}, 1)
        changed = next(r for r in reversed(history) if r.name == "state_changed")
        assert changed.data == {"state": {"count": 6, "unit": "items"}, "type_version": 3}
    rows_after = _raw_rows(durable_store_url)
    # The log is append-only: every row written before is still there, byte for byte.
    assert all(row in rows_after for row in rows_before)
    with dj.Inspector(durable_store_url) as inspector:
        report = inspector.check(make_registry(3))
        assert (report.ok, report.checked) == (True, 5)


async def test_upcasters_get_a_copy_and_may_raise(
    durable_store_url: str, autojump_clock: Any
) -> None:
    """An upcaster that mutates its input does not change the cached log; one that raises
    is a StoreError naming the instance (and ``terminate`` still works)."""
    await write_v1(durable_store_url)
    registry = make_registry(2, state_upcasters=())

    def mutating(data: dict[str, Any]) -> dict[str, Any]:
        data["count"] = data.pop("n") * 10
        return data

    registry.get("continuous", "counter").upcast_state(from_version=1)(mutating)

    raised = KeyError("no such field")

    def broken(data: dict[str, Any]) -> dict[str, Any]:
        raise raised

    registry.get("task", "notes").upcast_state(from_version=1)(broken)
    async with running(registry, durable_store_url) as jobs:
        counter = jobs.continuous("counter")
        assert await counter.get_state("c1") == StateV2(count=50)
        assert await counter.get_state("c1") == StateV2(count=50)
        with pytest.raises(
            dj.StoreError, match=r"task job 'notes' instance 't1'.*upcaster.*raised KeyError"
        ) as info:
            await jobs.task("notes").get_state("t1")
        # The decode error is the upcaster's own, for the caller to catch or inspect.
        assert info.value.__cause__ is raised
        assert (await jobs.task("notes").terminate("t1")).terminated
    with dj.Inspector(durable_store_url) as inspector:
        report = inspector.check(registry)
    assert report.ok  # the broken instance is terminated: nothing left to read


async def test_a_flush_of_a_batch_no_upcaster_reads_writes_nothing(
    durable_store_url: str, autojump_clock: Any
) -> None:
    """A debounce batch whose state an upcaster cannot read: ``flush`` (and the alarm)
    is a StoreError, and the batch stays open with its alarm as it was. The batch
    used to be closed and its alarm moved before the state was read."""

    def digest(version: int) -> dj.Registry:
        registry = dj.Registry()

        @registry.debounce(
            "digest", event=dict, state=dict, flush_after=timedelta(hours=1), version=version
        )
        async def flush(ctx: dj.DebounceContext[Any]) -> None:
            pass

        @flush.on_event
        def reduce(ctx: dj.DebounceEventContext[Any, Any]) -> Any:
            return {"n": (ctx.state or {"n": 0})["n"] + 1}

        if version > 1:

            def broken(data: Any) -> Any:
                raise KeyError("no such field")

            flush.upcast_state(from_version=1)(broken)
            flush.upcast_event(from_version=1)(lambda data: data)
        return registry

    async with running(digest(1), durable_store_url) as jobs:
        await jobs.debounce("digest").add("d1", {"x": 1})
        await jobs.debounce("digest").add("d1", {"x": 2})
    with dj.Inspector(durable_store_url) as inspector:
        before = [r.name for r in inspector.history("debounce", "digest", "d1")]
    async with running(digest(2), durable_store_url) as jobs:
        with pytest.raises(dj.StoreError, match="upcaster"):
            await jobs.debounce("digest").flush("d1")
        await trio.sleep(2 * 3600)  # the batch's alarm: refused the same way
    with dj.Inspector(durable_store_url) as inspector:
        after = [r.name for r in inspector.history("debounce", "digest", "d1")]
    assert after == before


# ---- refusals at open_jobs ----------------------------------------------------------------------


async def test_missing_upcaster_refuses_to_start(
    durable_store_url: str, autojump_clock: Any
) -> None:
    await write_v1(durable_store_url)
    rows = _raw_rows(durable_store_url)
    seen: list[Any] = []
    registry = make_registry(3, state_upcasters=(2,), seen=seen)
    with pytest.raises(dj.ConfigurationError) as info:
        async with running(registry, durable_store_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    message = str(info.value)
    assert "continuous job 'counter'" in message
    assert "version 1 (1 instance)" in message
    assert "upcast_state(from_version=1)" in message
    assert "task job 'notes'" in message
    # The events have all their upcasters: the debounce job is not named.
    assert "inbox" not in message
    assert seen == []
    assert _raw_rows(durable_store_url) == rows  # nothing was written
    # The same code sees the problem without starting: Inspector.check lists the instances.
    with dj.Inspector(durable_store_url) as inspector:
        report = inspector.check(registry)
    assert not report.ok
    failed = sorted(
        (f.kind, f.job, f.instance_id, f.what, f.type_version) for f in report.failures
    )
    assert failed == [
        ("continuous", "counter", "c1", "state", 1),
        ("task", "notes", "t1", "state", 1),
    ]
    assert "upcast_state(from_version=1)" in report.failures[0].problem


async def test_a_raised_version_needs_every_upcaster_even_on_an_empty_store(
    durable_store_url: str, tmp_path: Path, autojump_clock: Any
) -> None:
    """Raising ``version`` needs one upcaster per step, even one that returns its input,
    whatever the store holds: a version-3 job without its upcasters opened on a new
    store (and wrote version-3 records) until it met older data in another one."""
    registry = make_registry(3, state_upcasters=(2,), event_upcasters=(1, 2))
    with pytest.raises(dj.ConfigurationError) as info:
        async with running(registry, durable_store_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    message = str(info.value)
    assert "continuous job 'counter' is at version 3" in message
    assert "task job 'notes' is at version 3" in message
    assert "@job.upcast_state(from_version=1)" in message
    assert "one upcaster per step" in message
    assert "inbox" not in message  # the debounce job has every upcaster it needs
    with dj.open_store(durable_store_url) as store:
        assert store.list_instances() == []  # nothing was written
    # The deploy gate agrees with the deploy: check refuses the same registry.
    with (
        dj.Inspector(durable_store_url) as inspector,
        pytest.raises(dj.ConfigurationError, match="one upcaster per step"),
    ):
        inspector.check(registry)
    # With every step (two that change the JSON, none missing) it opens and runs.
    async with running(make_registry(3), durable_store_url) as jobs:
        await jobs.continuous("counter").start("c1", StateV3(count=1, unit="u"))


async def test_rollback_refuses_to_start(durable_store_url: str, autojump_clock: Any) -> None:
    """A store written by version 2 refuses version 1 of the code: it cannot read it."""
    async with running(make_registry(2), durable_store_url) as jobs:
        await jobs.continuous("counter").start("c1", StateV2(count=1))
        await jobs.continuous("counter").start("c2", StateV2(count=2))
    with pytest.raises(dj.ConfigurationError) as info:
        async with running(make_registry(1), durable_store_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    message = str(info.value)
    assert "continuous job 'counter' (code: version 1; stored: version 2 (2 instances))" in message
    assert "rolled back" in message
    # Terminated instances hold no state: they do not block a start.
    async with running(make_registry(2), durable_store_url) as jobs:
        await jobs.continuous("counter").terminate("c1")
        await jobs.continuous("counter").terminate("c2")
    async with running(make_registry(1), durable_store_url) as jobs:
        assert await jobs.continuous("counter").get_state("c1") is None


@pytest.mark.postgres
async def test_an_older_worker_during_a_deploy_says_to_finish_it(
    pg_url: str, autojump_clock: Any
) -> None:
    """A process of the old code still running while the new one writes (a rolling
    deploy): its calls on an instance the new code wrote fail, saying why, not "register
    an upcaster or terminate the instance" (no upcaster goes back; terminating would
    throw the state away)."""
    async with running(make_registry(1), pg_url) as old:
        await old.continuous("counter").start("c1", StateV1(n=5))
        async with running(make_registry(2), pg_url) as new:
            await new.continuous("counter").trigger("c1")
            assert await new.continuous("counter").get_state("c1") == StateV2(count=6)
        with pytest.raises(dj.StoreError) as info:
            await old.continuous("counter").get_state("c1")
    message = str(info.value)
    # No decode error under it to give: the message says it all (no private class).
    assert info.value.__cause__ is None
    assert "written at version 2" in message
    assert "older code than the process that wrote it" in message
    assert "Finish the deploy" in message
    assert "terminate" not in message


# ---- snapshots --------------------------------------------------------------------------------


async def test_snapshots_taken_before_and_after_the_change(
    durable_store_url: str, autojump_clock: Any
) -> None:
    """A snapshot taken by version 1 and one taken by version 2 both load under version 3."""
    store = dj.open_store(durable_store_url, snapshot_interval=2)

    def latest_snapshot() -> tuple[int, dict[str, Any]]:
        snapshots = store._app.snapshots
        assert snapshots is not None
        row = snapshots.recorder.select_events(uuid, desc=True, limit=1)[0]
        return row.originator_version, json.loads(bytes(row.state))["state"]["data"]

    try:
        async with running(make_registry(1), store) as jobs:
            counter = jobs.continuous("counter")
            await counter.start("c1", StateV1(n=1))
            await counter.trigger("c1")
        uuid = store.list_instances()[0].instance_uuid
        v1_snapshot, data = latest_snapshot()
        # Version 1 is the default, left out (the snapshot older releases wrote).
        assert (data["state"], "state_version" in data) == ({"n": 2}, False)
        # Version 3 reads the instance from the snapshot version 1 took.
        async with running(make_registry(3), store) as jobs:
            assert await jobs.continuous("counter").get_state("c1") == StateV3(
                count=2, unit="items"
            )
        async with running(make_registry(2), store) as jobs:
            counter = jobs.continuous("counter")
            assert await counter.get_state("c1") == StateV2(count=2)
            await counter.trigger("c1")
            await counter.trigger("c1")
        v2_snapshot, data = latest_snapshot()
        assert v2_snapshot > v1_snapshot
        assert (data["state"], data["state_version"]) == ({"count": 4}, 2)
        # And from the snapshot version 2 took.
        async with running(make_registry(3), store) as jobs:
            assert await jobs.continuous("counter").get_state("c1") == StateV3(
                count=4, unit="items"
            )
        old = store.get_by_uuid(uuid, version=v1_snapshot)
        assert old is not None
        assert (old.d.state, old.d.state_version) == ({"n": 2}, 1)
    finally:
        store.close()


# ---- the command line ---------------------------------------------------------------------------


def _write_app(tmp_path: Path, name: str, version: int, upcasters: tuple[int, ...]) -> str:
    """A module defining the app's registry, as ``durable-jobs check --app`` imports it."""
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from test_type_evolution import make_registry
            registry = make_registry({version}, state_upcasters={upcasters!r})
            """
        )
    )
    return f"{name}:registry"


async def test_cli_check(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: Any,
) -> None:
    await write_v1(sqlite_url)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    good = _write_app(tmp_path, "app_good", 3, (1, 2))
    bad = _write_app(tmp_path, "app_bad", 3, (2,))
    before = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    capsys.readouterr()

    assert cli(["--store", sqlite_url, "check", "--app", good]) == 0
    out = capsys.readouterr().out
    assert "Checked 3 live instance(s): all readable." in out

    assert cli(["--store", sqlite_url, "check", "--app", bad, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["checked"]) == (False, 3)
    assert sorted(f["instance_id"] for f in report["failures"]) == ["c1", "t1"]
    assert all(f["type_version"] == 1 for f in report["failures"])

    assert cli(["--store", sqlite_url, "check", "--app", bad]) == 1
    out = capsys.readouterr().out
    assert "FAIL continuous counter 'c1' state (type version 1)" in out
    assert "2 would fail" in out

    assert cli(["--store", sqlite_url, "check", "--app", "app_good:nothing"]) == 1
    assert "has no attribute" in capsys.readouterr().err
    assert cli(["--store", sqlite_url, "check", "--app", "no_colon"]) == 1
    assert "module:attribute" in capsys.readouterr().err
    assert cli(["--store", sqlite_url, "check", "--app", "json:dumps"]) == 1
    assert "is a function, not a durable_jobs.Registry" in capsys.readouterr().err
    assert cli(["--store", sqlite_url, "check", "--app", "sys:maxsize"]) == 1
    assert "'sys:maxsize' is an int, not a durable_jobs.Registry" in capsys.readouterr().err
    # Read only: the file is unchanged.
    assert Path(sqlite_url.removeprefix("sqlite:///")).read_bytes() == before


async def test_cli_check_lists_live_instances_of_jobs_the_app_does_not_define(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: Any,
) -> None:
    await write_v1(sqlite_url)
    # An app that defines none of the store's jobs (e.g. a wrong --app).
    (tmp_path / "app_other.py").write_text(
        "import durable_jobs\nregistry = durable_jobs.Registry()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    capsys.readouterr()
    assert cli(["--store", sqlite_url, "check", "--app", "app_other:registry"]) == 0
    out = capsys.readouterr().out
    assert "Checked 0 live instance(s): all readable." in out
    assert "Not checked: 3 live instance(s) of jobs the app does not define" in out
    assert "continuous counter (1), debounce inbox (1), task notes (1)" in out
    assert cli(["--store", sqlite_url, "check", "--app", "app_other:registry", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["not_checked"] == [
        {"kind": "continuous", "job": "counter", "live_instances": 1},
        {"kind": "debounce", "job": "inbox", "live_instances": 1},
        {"kind": "task", "job": "notes", "live_instances": 1},
    ]


# ---- definitions ----------------------------------------------------------------------------


def _noop_up(data: Any) -> Any:
    return data


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda job: job.upcast_state(from_version=0)(_noop_up), "from_version"),
        (lambda job: job.upcast_state(from_version=3)(_noop_up), "from 1 to 2"),
        (lambda job: job.upcast_state(from_version=True)(_noop_up), "from_version"),
        (lambda job: job.upcast_event(from_version=1)(_noop_up), "no event type"),
        (lambda job: job.upcast_state(from_version=1)(42), "callable"),
    ],
)
def test_bad_upcasters_are_configuration_errors(make: Callable[[Any], Any], match: str) -> None:
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), version=3)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    with pytest.raises(dj.ConfigurationError, match=match):
        make(c)


def test_version_and_upcaster_rules() -> None:
    registry = dj.Registry()
    # 2**63 does not fit the stores' 64-bit column: refused here, not at the first write.
    for bad in (0, -1, True, 1.5, "2", 2**63):
        with pytest.raises(dj.ConfigurationError, match="version of job"):
            registry.continuous("c", state=int, schedule=dj.every(HOUR), version=bad)(  # type: ignore[arg-type]
                _async_noop
            )

    @registry.debounce("d", event=int, flush_after=MINUTE, version=2)
    async def d(ctx: dj.DebounceContext[int]) -> None:
        pass

    with pytest.raises(dj.ConfigurationError, match="upcast_event instead"):
        d.upcast_state(from_version=1)
    d.upcast_event(from_version=1)(_noop_up)
    with pytest.raises(dj.ConfigurationError, match="already has"):
        d.upcast_event(from_version=1)(_noop_up)

    async def async_up(data: Any) -> Any:
        return data

    @registry.task("t", event=int, state=int, version=2)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    with pytest.raises(dj.ConfigurationError, match="plain"):
        t.upcast_state(from_version=1)(async_up)
    assert t.missing_upcasters(1) == [
        "upcast_state(from_version=1)",
        "upcast_event(from_version=1)",
    ]
    assert t.missing_upcasters(2) == []


def test_a_huge_version_is_checked_without_a_loop_over_every_version() -> None:
    """version=10**12 made open_jobs spin (missing_upcasters listed every step below it)."""
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), version=10**12)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    c.upcast_state(from_version=3)(_noop_up)
    c.upcast_state(from_version=10)(_noop_up)
    assert c.missing_upcasters(1) == [
        "upcast_state(from_version=1)",
        "upcast_state(from_version=2)",
        "upcast_state(from_version=N) for N = 4 to 9",
        f"upcast_state(from_version=N) for N = 11 to {10**12 - 1}",
    ]
    assert c.missing_upcasters(10**12) == []


async def _async_noop(ctx: Any) -> None:
    pass


def test_rows_without_a_type_version_are_version_1(sqlite_url: str, autojump_clock: Any) -> None:
    """Logs written before versions existed have no ``type_version``: they read as 1."""
    from eventsourcing.persistence import StoredEvent

    from durable_jobs._store.mapper import JsonMapper

    mapper = JsonMapper()
    registry = make_registry(1)
    from durable_jobs._domain.continuous import ContinuousInstance
    from durable_jobs._domain.instance import InstanceSnapshot

    inst = ContinuousInstance.create("counter", "c1", now=T, state={"n": 1}, type_version=1)
    stored = mapper.to_stored_event(inst.pending_events[0])
    payload = json.loads(stored.state)
    # Version 1 is not written: the row is what older releases wrote (and still read).
    assert "type_version" not in payload
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(payload).encode(),
    )
    event = mapper.to_domain_event(old)
    assert event.type_version == 1
    rebuilt = event.mutate(None)
    assert (rebuilt.d.state, rebuilt.d.state_version) == ({"n": 1}, 1)
    snapshot = InstanceSnapshot.take(rebuilt)
    assert "state_version" not in snapshot.state["data"]
    assert snapshot.mutate(None).d.state_version == 1
    # Other versions are written, and read back.
    inst = ContinuousInstance.create("counter", "c2", now=T, state={"count": 1}, type_version=2)
    stored = mapper.to_stored_event(inst.pending_events[0])
    assert json.loads(stored.state)["type_version"] == 2
    rebuilt = mapper.to_domain_event(stored).mutate(None)
    assert InstanceSnapshot.take(rebuilt).state["data"]["state_version"] == 2
    assert InstanceSnapshot.take(rebuilt).mutate(None).d.state_version == 2
    assert registry.get("continuous", "counter").state_codec.read({"n": 1}, 1) == StateV1(n=1)


# ---- what the store records, so that a start reads no instance needlessly ----------


async def test_the_store_records_the_versions_written(
    durable_store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: Any,
) -> None:
    """Every type version above 1 ever written is recorded (in the save's transaction):
    a start reads instances only of jobs for which a recorded version is a problem."""
    await write_v1(durable_store_url)
    async with running(make_registry(2), durable_store_url) as jobs:
        await jobs.continuous("counter").start("c2", StateV2(count=2))
    with dj.open_store(durable_store_url) as store:
        assert store.recorded_type_versions() == {("continuous", "counter"): {2}}
        # Complete chains and no newer version: the start reads no instance at all.
        reads: list[Any] = []
        real = store.get_by_uuid

        def counting(*args: Any, **kwargs: Any) -> Any:
            reads.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "get_by_uuid", counting)
        async with running(make_registry(3), store) as jobs:
            pass
        assert reads == []
        # Version 1 again: only the counter's instances are read (version 2 was written
        # for it), and the start is refused; the other jobs are not read.
        with pytest.raises(dj.ConfigurationError, match="rolled back"):
            async with running(make_registry(1), store):
                pytest.fail("open_jobs must refuse")  # pragma: no cover
        assert len(reads) == 2
        # An adapter that does not record versions: every live instance is read.
        monkeypatch.setattr(store, "recorded_type_versions", lambda: None)
        reads.clear()
        async with running(make_registry(2), store):
            pass
        assert len(reads) == 4
        exported = tmp_path / "export.jsonl"
        with exported.open("w") as f:
            export_jsonl(store, f)
    # An import records the versions it brings.
    target = f"sqlite:///{tmp_path / 'target.db'}"
    with dj.open_store(target) as store, exported.open() as f:
        import_jsonl(store, f)
        assert store.recorded_type_versions() == {("continuous", "counter"): {2}}


async def test_check_reports_an_upcaster_open_jobs_requires_though_no_json_needs_it(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A task job's version bumped for its state, with only upcast_state: no stored JSON
    needs an event upcaster (task events are handled at send), but open_jobs refuses to
    start without one. check said "all readable" and the deploy then failed."""

    def task_registry(version: int) -> dj.Registry:
        registry = dj.Registry()

        @registry.task("t", event=int, state=int, version=version)
        async def t(ctx: dj.TaskContext[int]) -> None:
            pass

        @t.on_event
        async def keep(event: int, ctx: dj.TaskContext[int]) -> None:
            ctx.set_state(event)

        if version > 1:

            @t.upcast_state(from_version=1)
            def up(state: Any) -> Any:
                return state

        return registry

    async with running(task_registry(1), sqlite_url) as jobs:
        await jobs.task("t").send("a", 1)
    with dj.Inspector(sqlite_url) as inspector:
        report = inspector.check(task_registry(2))
    assert not report.ok
    [failure] = report.failures
    assert (failure.what, failure.type_version) == ("upcasters", 1)
    assert "upcast_event(from_version=1)" in failure.problem
    with pytest.raises(dj.ConfigurationError, match="upcast_event"):
        async with running(task_registry(2), sqlite_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
