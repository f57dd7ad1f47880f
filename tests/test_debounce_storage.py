"""Debounce storage grows with what was added, not with the whole state per add.

The state of a debounce batch is the fold of its events. Each ``add`` records
the event and the state's change as a JSON Patch (RFC 6902) when that is
smaller than the state, so a batch of n events takes space in proportion to
n, not n squared; snapshots still hold the whole state. Replay, time travel
and the CLI rebuild the state from the log alone, without the app's reducer.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_jobs as dj
from _runtime import HOUR, T, running
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.patch import apply_state_patch, state_patch
from durable_jobs.cli import run

PAYLOAD = "x" * 1024


def list_registry() -> dj.Registry:
    """The guide's list reducer: the batch's state is every event so far."""
    registry = dj.Registry()

    @registry.debounce(
        "collect", event=dict[str, Any], state=list[dict[str, Any]], flush_after=24 * HOUR
    )
    async def collect(ctx: dj.DebounceContext[list[dict[str, Any]]]) -> None:
        return None

    @collect.on_event
    def fold(ctx: dj.DebounceEventContext[dict[str, Any], list[dict[str, Any]]]) -> Any:
        return [*(ctx.state or []), ctx.event]

    return registry


def _size(path: Path) -> int:
    return sum(
        os.path.getsize(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


async def test_800_adds_of_1_kib_take_under_20_mb(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    db = tmp_path / "jobs.db"
    async with running(list_registry(), f"sqlite:///{db}") as jobs:
        client = jobs.debounce("collect")
        for n in range(800):
            await client.add("u1", {"n": n, "payload": PAYLOAD})
        state = await client.get_state("u1")
    assert state is not None and len(state) == 800
    size = _size(db)
    print(f"800 adds of 1 KiB: {size / 1e6:.1f} MB on disk")
    assert size < 20_000_000, f"{size / 1e6:.1f} MB"


def _events(n: int) -> list[dict[str, Any]]:
    return [{"n": i, "payload": PAYLOAD} for i in range(n)]


async def test_replay_and_time_travel_need_no_app_code(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    # Snapshots every 7 records: rebuilds start from a snapshot and apply patches.
    with dj.open_store(url, snapshot_interval=7) as store:
        async with running(list_registry(), store) as jobs:
            for event in _events(30):
                await jobs.debounce("collect").add("u1", event)
                await trio.sleep(1)
    # No registry from here on: only the log (and its snapshots).
    with dj.Inspector(url) as inspector:
        records = inspector.history("debounce", "collect", "u1")
        changes = [r for r in records if r.name == "state_changed"]
        assert len(changes) == 30
        # The first adds record the whole state (a patch would not be much smaller),
        # then each records only what it added.
        assert "state" in changes[0].data
        assert all(set(r.data) == {"patch"} for r in changes[2:])
        for k, record in enumerate(changes, start=1):
            view = inspector.state_at("debounce", "collect", "u1", version=record.version)
            assert view is not None and view.state == _events(k)
        at = changes[9].at
        view = inspector.state_at("debounce", "collect", "u1", at=at)
        assert view is not None and view.state == _events(10)
    version = changes[4].version
    assert (
        run(["--store", url, "state", "debounce", "collect", "u1", "--at", str(version), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["state"] == _events(5)
    assert run(["--store", url, "history", "debounce", "collect", "u1"]) == 0
    assert 'patch [{"op": "add", "path": "/2"' in capsys.readouterr().out
    # A runtime rebuilt from the log (snapshot and patches) goes on from the same state.
    async with running(list_registry(), url) as jobs:
        await jobs.debounce("collect").add("u1", {"n": 30, "payload": PAYLOAD})
        assert await jobs.debounce("collect").get_state("u1") == _events(31)


def _old_way(n: int) -> DebounceInstance:
    """An instance as versions before patches wrote it: the whole state at every add."""
    agg: DebounceInstance | None = None
    state: list[dict[str, Any]] = []
    for event in _events(n):
        state = [*state, event]
        agg = DebounceInstance.live_instance(agg, "collect", "u1", now=T, state=None)
        agg.record_event(event, now=T, idempotency_key=None, window=HOUR)
        agg.trigger_event(DebounceInstance.StateChanged, timestamp=T, state=state)
        agg.sync_alarm(now=T, flush_after=24 * HOUR)
    assert agg is not None
    return agg


async def test_a_store_written_the_old_way_still_loads(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with dj.open_store(url, snapshot_interval=0) as store:
        store.save(_old_way(5))
    db = sqlite3.connect(tmp_path / "jobs.db")
    topics = [t for (t,) in db.execute("SELECT topic FROM stored_events")]
    db.close()
    assert topics.count("durable_jobs:DebounceInstance.StateChanged") == 5
    with dj.Inspector(url) as inspector:
        view = inspector.state_at("debounce", "collect", "u1", version=6)  # after the 2nd add
        assert view is not None and view.state == _events(2)
    async with running(list_registry(), url) as jobs:
        client = jobs.debounce("collect")
        assert await client.get_state("u1") == _events(5)
        await client.add("u1", {"n": 5, "payload": PAYLOAD})
        assert await client.get_state("u1") == _events(6)
        history = await client.history("u1")
    assert set(history[-1].data) == {"patch"} or set(history[-2].data) == {"patch"}


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=30,
)


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON, keys in the same order (an object's key order is part of its value)."""
    return json.dumps(a) == json.dumps(b)


@settings(max_examples=300, deadline=None)
@given(old=_json_values, new=_json_values, extra=st.lists(_json_values, max_size=3))
def test_a_patch_rebuilds_the_new_state_exactly(old: Any, new: Any, extra: list[Any]) -> None:
    pairs = [(old, new), ([old], [old, *extra]), ({"a": old, "b": 1}, {"a": new})]
    if isinstance(new, dict):
        pairs.append((new, dict(reversed(new.items()))))
    for before, after in pairs:
        patch = state_patch(before, after)
        if patch is not None:
            assert _same_json(apply_state_patch(before, patch), after)


def test_a_patch_keeps_the_order_of_an_objects_keys() -> None:
    padding = {f"padding_{i}": "x" * 50 for i in range(10)}
    old: dict[str, Any] = {"alice": 3, "bob": 2, **padding}
    news: list[dict[str, Any]] = [
        {"carol": 100, "alice": 3, "bob": 2, **padding},  # a new key first
        {"bob": 2, "alice": 3, **padding},  # two keys swapped
        {"wrap": {"bob": 2, "alice": 3}, **padding},  # a nested object, reordered
    ]
    for new in news:
        for before in [old, {"wrap": {"alice": 3, "bob": 2}, **padding}]:
            patch = state_patch(before, new)
            rebuilt = new if patch is None else apply_state_patch(before, patch)
            assert list(rebuilt) == list(new)
            assert _same_json(rebuilt, new)


def test_patches_tell_1_from_true() -> None:
    big = ["x" * 100] * 5
    for old, new in [([*big, 1], [*big, True]), ([*big, {"a": 1}], [*big, {"a": 1.0}])]:
        patch = state_patch(old, new)
        assert patch is not None and patch != []
        assert _same_json(apply_state_patch(old, patch), new)
