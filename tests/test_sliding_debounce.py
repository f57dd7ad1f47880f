"""Sliding debounce windows: every accepted add moves the open batch's flush to
``min(now + flush_after, started_at + max_wait)``; on each store, in virtual time,
across restarts; and the registry's validation of ``window`` and ``max_wait``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import InstanceSnapshot
from test_runtime_debounce import (
    FLUSH_AFTER,
    IDLE,
    Rig,
    add_all,
    batcher,
    hook,
    nothing_more_flushes,
    summary,
)

MAX_WAIT = 12 * MINUTE


def sliding(**options: Any) -> Rig:
    """``batcher`` (flush_after=5 min, max_events=10) with a sliding window."""
    return batcher(window="sliding", **options)


# ---- the window slides --------------------------------------------------------------------


async def test_each_add_moves_the_flush(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Each accepted add moves the flush to flush_after after itself."""
    async with sliding().run(store_url) as (probe, jobs, client):
        first = await client.add("b1", hook(1))
        assert first == dj.AddResult(1, T + FLUSH_AFTER, created=True, duplicate=False)
        await advance(jobs, 4 * MINUTE)
        second = await client.add("b1", hook(2))
        assert second == dj.AddResult(2, T + 9 * MINUTE, created=False, duplicate=False)
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 2, T, T + 9 * MINUTE)
        history = await client.history("b1")
        assert names(history)[-3:] == ["event_added", "state_changed", "alarm_set"]
        assert history[-1].data["at"] == T + 9 * MINUTE
        await advance(jobs, 4 * MINUTE)  # T+8: the fixed window would have flushed at T+5
        assert probe.flushes == []
        third = await client.add("b1", hook(3))
        assert third.will_flush_at == T + 13 * MINUTE
        await advance(jobs, FLUSH_AFTER - SECOND)
        assert probe.flushes == []
        await advance(jobs, SECOND)
        assert summary(probe.flushes) == [(3, [1, 2, 3], "flush_after", 1, T + 13 * MINUTE)]
        assert await client.status("b1") == IDLE
        # The next batch opens a fresh window.
        again = await client.add("b1", hook(4))
        assert again == dj.AddResult(1, T + 18 * MINUTE, created=True, duplicate=False)


async def test_max_wait_caps_a_steady_stream(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Adds 4 minutes apart never let a 5-minute quiet period pass: max_wait flushes."""
    async with sliding(max_wait=MAX_WAIT).run(store_url) as (probe, jobs, client):
        results = []
        for n in range(5):  # T, T+4, T+8, T+12 (flushes at T+12 first), T+16
            results.append(await client.add("b1", hook(n)))
            await advance(jobs, 4 * MINUTE)
        assert [r.will_flush_at for r in results[:3]] == [
            T + 5 * MINUTE,
            T + 9 * MINUTE,
            T + MAX_WAIT,  # min(T+13, T+12): the cap
        ]
        # At T+12 the flush of [0, 1, 2] was due (max_wait) before the add of 3.
        assert summary(probe.flushes)[0] == (3, [0, 1, 2], "max_wait", 1, T + MAX_WAIT)
        assert results[3] == dj.AddResult(1, T + 17 * MINUTE, created=True, duplicate=False)
        assert results[4].will_flush_at == T + 21 * MINUTE
        await advance(jobs, HOUR)
        assert summary(probe.flushes)[1] == (2, [3, 4], "flush_after", 1, T + 21 * MINUTE)


async def test_max_wait_equal_to_flush_after_is_a_fixed_window_with_its_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """max_wait == flush_after: a later add cannot move the flush; the cap set it."""
    rig = sliding(max_wait=FLUSH_AFTER)
    async with rig.run("memory://", 1) as (probe, jobs, client):
        await advance(jobs, MINUTE)
        second = await client.add("b1", hook(2))
        assert second.will_flush_at == T + FLUSH_AFTER
        await advance(jobs, HOUR)
        assert summary(probe.flushes) == [(2, [1, 2], "max_wait", 1, T + FLUSH_AFTER)]


async def test_a_tie_between_the_quiet_period_and_the_cap_is_flush_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The cap is the reason only when it comes strictly first: a batch quiet for the
    whole flush_after when the cap falls due (a lone event with max_wait ==
    flush_after) flushes for flush_after."""
    rig = sliding(max_wait=FLUSH_AFTER)
    async with rig.run("memory://", 1) as (probe, jobs, _):
        await advance(jobs, HOUR)
        assert summary(probe.flushes) == [(1, [1], "flush_after", 1, T + FLUSH_AFTER)]


async def test_a_duplicate_key_does_not_move_the_flush(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A repeated idempotency key is not accepted: the flush stays where it was."""
    async with sliding().run(store_url) as (probe, jobs, client):
        await client.add("b1", hook(1), idempotency_key="k")
        await advance(jobs, 3 * MINUTE)
        repeat = await client.add("b1", hook(2), idempotency_key="k")
        assert repeat == dj.AddResult(1, T + FLUSH_AFTER, created=False, duplicate=True)
        await advance(jobs, 2 * MINUTE)
        assert summary(probe.flushes) == [(1, [1], "flush_after", 1, T + FLUSH_AFTER)]


async def test_max_events_and_manual_flushes_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """max_events closes the batch at once; a manual flush is manual; both windows."""
    async with sliding(max_events=2, max_wait=MAX_WAIT).run("memory://") as (p, jobs, client):
        await add_all(client, 1)
        await advance(jobs, MINUTE)
        closing = await client.add("b1", hook(2))
        assert closing.will_flush_at == T + MINUTE
        await jobs.wait_idle()
        await client.add("b1", hook(3))
        flushed = await client.flush("b1")
        assert flushed == dj.FlushResult(True, 1, "manual", False)
        assert [(f.event_count, f.flush_reason) for f in p.flushes] == [
            (2, "max_events"),
            (1, "manual"),
        ]


async def test_events_added_while_a_retry_waits_slide_after_it(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A batch waiting for its retry keeps its reason (max_wait); the next batch's
    window, armed once it flushed, counts from its own latest event."""
    retry = dj.Retry(max_attempts=2, delay=dj.Backoff.constant(10 * MINUTE), jitter=0)
    rig = sliding(max_wait=6 * MINUTE, failures=1, retry=retry)
    async with rig.run(store_url) as (probe, jobs, client):
        await add_all(client, 1)
        await advance(jobs, 4 * MINUTE)
        await add_all(client, 2)  # due min(T+9, T+6) = T+6: max_wait
        await advance(jobs, 2 * MINUTE)  # T+6: fails, retry at T+16
        await add_all(client, 3)  # the next batch
        await advance(jobs, 3 * MINUTE)
        await add_all(client, 4)  # T+9: its quiet period would end at T+14
        await advance(jobs, HOUR)
        assert summary(probe.flushes) == [
            (2, [1, 2], "max_wait", 1, T + 6 * MINUTE),
            (2, [1, 2], "max_wait", 2, T + 16 * MINUTE),
            # started T+6 (cap T+12), last event T+9: due T+12 but armed only after
            # the retry succeeded at T+16, so it flushes then, for the cap.
            (2, [3, 4], "max_wait", 1, T + 16 * MINUTE),
        ]


async def test_the_committed_alarm_survives_a_restart(
    durable_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """After a restart the slid alarm (and the cap) still hold: the log is the truth."""
    rig = sliding(max_wait=MAX_WAIT)
    async with rig.run(durable_store_url, 1) as (_, jobs, client):
        await advance(jobs, 3 * MINUTE)
        moved = await client.add("b1", hook(2))
        assert moved.will_flush_at == T + 8 * MINUTE
    await trio.sleep(MINUTE.total_seconds())  # T+4, nothing running
    async with rig.run(durable_store_url) as (probe, jobs, client):
        assert await client.status("b1") == dj.DebounceStatus("debouncing", 2, T, T + 8 * MINUTE)
        await advance(jobs, 3 * MINUTE + 30 * SECOND)  # T+7:30
        capped = await client.add("b1", hook(3))
        assert capped.will_flush_at == T + MAX_WAIT  # before T+12:30: the cap
    await trio.sleep(MINUTE.total_seconds())  # T+8:30: the old alarm passes, no runtime
    async with rig.run(durable_store_url) as (probe, jobs, client):
        await advance(jobs, 3 * MINUTE + 30 * SECOND - SECOND)
        assert probe.flushes == []
        await advance(jobs, SECOND)
        assert summary(probe.flushes) == [(3, [1, 2, 3], "max_wait", 1, T + MAX_WAIT)]
        await nothing_more_flushes(jobs, probe, 1)


def test_the_domain_decides_the_due_time() -> None:
    """``open_batch_due`` for each window; a batch with no latest-add time (logged
    before sliding windows existed) counts from its first event."""
    inst, _ = DebounceInstance.add(
        None,
        "j",
        "i",
        1,
        now=T,
        new_state=1,
        idempotency_key=None,
        window=HOUR,
        flush_after=FLUSH_AFTER,
        max_events=None,
        flush_window="sliding",
        max_wait=MAX_WAIT,
    )
    assert inst.will_flush_at == T + FLUSH_AFTER
    inst.record_event(2, now=T + 10 * MINUTE, idempotency_key=None, window=HOUR)
    assert inst.open_batch_due(flush_after=FLUSH_AFTER) == (T + FLUSH_AFTER, "flush_after")
    assert inst.open_batch_due(flush_after=FLUSH_AFTER, flush_window="sliding") == (
        T + 15 * MINUTE,
        "flush_after",
    )
    capped = inst.open_batch_due(
        flush_after=FLUSH_AFTER, flush_window="sliding", max_wait=MAX_WAIT
    )
    assert capped == (T + MAX_WAIT, "max_wait")
    inst.d.batch_last_added_at = None
    assert inst.open_batch_due(flush_after=FLUSH_AFTER, flush_window="sliding") == (
        T + FLUSH_AFTER,
        "flush_after",
    )


def test_a_snapshot_keeps_the_latest_add_and_older_snapshots_still_load() -> None:
    """The latest add's time goes through a JSON snapshot; a snapshot written before
    sliding windows existed (no such field) loads, its batch counting from its first event."""
    inst, _ = DebounceInstance.add(
        None,
        "j",
        "i",
        1,
        now=T,
        new_state=1,
        idempotency_key=None,
        window=HOUR,
        flush_after=FLUSH_AFTER,
        max_events=None,
    )
    inst.record_event(2, now=T + MINUTE, idempotency_key=None, window=HOUR)
    snap = InstanceSnapshot.take(inst)
    state = json.loads(json.dumps(snap.state))
    assert state["data"]["batch_last_added_at"] is not None
    restored = replace(snap, state=state).mutate(None)
    assert restored.d.batch_last_added_at == T + MINUTE
    del state["data"]["batch_last_added_at"]
    old = replace(snap, state=state).mutate(None)
    assert old.d.batch_last_added_at is None
    assert old.open_batch_due(flush_after=FLUSH_AFTER, flush_window="sliding") == (
        T + FLUSH_AFTER,
        "flush_after",
    )


# ---- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_wait": HOUR}, 'needs window="sliding"'),
        ({"window": "fixed", "max_wait": HOUR}, 'needs window="sliding"'),
        ({"window": "sliding", "max_wait": FLUSH_AFTER - SECOND}, ">= flush_after"),
        ({"window": "sliding", "max_wait": 60}, ">= flush_after"),
        ({"window": "rolling"}, '"fixed" or "sliding"'),
        ({"window": None}, '"fixed" or "sliding"'),
    ],
)
def test_bad_window_options_are_refused(options: dict[str, Any], message: str) -> None:
    registry = dj.Registry()

    async def execute(ctx: dj.DebounceContext[int]) -> None: ...

    register: Any = registry.debounce
    job_class: Any = dj.DebounceJob
    with pytest.raises(dj.ConfigurationError, match=message):
        register("d", event=int, flush_after=FLUSH_AFTER, **options)(execute)
    with pytest.raises(dj.ConfigurationError, match=message):
        job_class("d", event=int, state=None, flush_after=FLUSH_AFTER, execute=execute, **options)
    assert registry.names("debounce") == []


def test_a_number_of_seconds_for_a_window_is_refused_saying_what_to_write() -> None:
    """flush_after and max_wait take a timedelta, as every() does (a bare number is not
    silently taken as seconds); the refusal says what to write, when that would do."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match=r"write timedelta\(seconds=30\)"):
        registry.debounce("d", event=int, flush_after=cast(Any, 30))
    with pytest.raises(dj.ConfigurationError, match=r"write timedelta\(seconds=3600\)"):
        registry.debounce(
            "d", event=int, flush_after=FLUSH_AFTER, window="sliding", max_wait=cast(Any, 3600)
        )
    # 60 s would be shorter than flush_after: not suggested.
    with pytest.raises(dj.ConfigurationError) as refused:
        registry.debounce(
            "d", event=int, flush_after=FLUSH_AFTER, window="sliding", max_wait=cast(Any, 60)
        )
    assert "write timedelta" not in str(refused.value)


def test_the_options_reach_the_policy() -> None:
    registry = dj.Registry()

    @registry.debounce(
        "d", event=int, flush_after=FLUSH_AFTER, window="sliding", max_wait=MAX_WAIT
    )
    async def d(ctx: dj.DebounceContext[int]) -> None: ...

    assert (d.window, d.max_wait) == ("sliding", MAX_WAIT)
    assert (d.policy.window, d.policy.max_wait) == ("sliding", MAX_WAIT)
    assert _default_window().policy.window == "fixed"


def _default_window() -> dj.DebounceJob[int, int]:
    registry = dj.Registry()

    @registry.debounce("d", event=int, flush_after=FLUSH_AFTER)
    async def d(ctx: dj.DebounceContext[int]) -> None: ...

    return d
