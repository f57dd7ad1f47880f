"""A real crash test of the store layer: SIGKILL a writer mid-flight, then audit the store.

The store promises that a crash at any point loses no committed state, event
or alarm, and never orphans an alarm: ``Store.save`` writes an instance's
events and its ``dj_instances`` row in one transaction. Here a child process
(``tests/_crash_child.py``) drives ~20 instances of all three kinds through a
seeded, deterministic workload on a virtual clock, saving continuously (often
several instances in one group commit) and acknowledging each save on stdout
once ``save`` returned. The parent SIGKILLs it after a seeded number of saves,
reopens the store and checks:

1. every acknowledged save is there (version, alarm and status);
2. beyond that, at most the one save in flight when the writer died was
   committed, and then all of it (a group commit is all or nothing). The
   parent runs the same workload in memory, so it knows exactly which
   instances that save touched and what everything must look like;
3. every instance in the event log has an index row with exactly its version,
   status, alarm and update time, no index row lacks a log, and ``due_alarms``
   lists exactly the live instances with an alarm (none orphaned or missing);
4. a full replay of each instance's history equals its snapshot-based rebuild;
5. the store is still writable.

Each case crashes a writer CYCLES times, each time differently (see MODES):
the next writer reloads the instances from the store and carries on from there.
"""

from __future__ import annotations

import copy
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import pytest
from eventsourcing.persistence import ApplicationRecorder

from _crash_child import (
    CYCLE_SPAN,
    KEYS,
    SNAPSHOT_INTERVAL,
    T0,
    Ack,
    Key,
    State,
    Workload,
    ack,
    ack_line,
    key_of,
    load,
)
from durable_jobs import open_store
from durable_jobs._domain.instance import JobInstance

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durable_jobs._store.base import Store

CHILD = Path(__file__).resolve().with_name("_crash_child.py")
#: How long the parent waits for the writer's lines before failing (a hang, not a crash).
READ_TIMEOUT = 30.0
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
#: How each crash happens. "T": the parent SIGKILLs the writer as soon as it
#: reads the line saying that a save is inside its transaction, before the
#: commit; the writer runs on meanwhile, so the kill lands a little later: in
#: the middle of the commit's writes, or after it and before the save was
#: acknowledged. "hold": the writer waits inside the transaction (index rows
#: written, not committed) and is killed there. "die": the writer SIGKILLs
#: itself at a seeded Python or C call or return inside ``save``: reproducible,
#: and anywhere (between any two statements, right before or after the commit,
#: in the snapshot write that follows it).
MODES = ("die", "T", "die", "hold")
#: The most calls and returns a "die" crash counts from its save on (a
#: save makes roughly 600 on SQLite and 3000 on Postgres).
DIE_WITHIN = 3000
#: Crashes per case: one in each mode.
CYCLES = len(MODES)


class _Replay:
    """The parent's copy of one writer's workload, checked against what the writer printed."""

    def __init__(self, seed: int, cycle: int, state: State) -> None:
        self.sim = Workload(seed, cycle, state)
        self.acks: list[str] = []
        self.began = 0
        self.in_transaction: set[int] = set()

    def line(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "B":
            self.began += 1
            assert int(rest) == self.began
        elif kind == "T":
            self.in_transaction.add(int(rest))
        else:
            assert kind == "A", f"unexpected line {line!r}"
            batch = self.sim.next_save()
            assert rest == ack_line(batch), f"the writer diverged at save {len(self.acks) + 1}"
            for inst in batch:
                inst.collect_events()  # what a successful save does to them
            self.acks.append(rest)


def _read_until(
    proc: subprocess.Popen[bytes], marker: str | None, count: int, stderr: Path
) -> tuple[list[str], bytes]:
    """Read the writer's output up to its ``count``-th line starting with ``marker``.

    Returns the lines before that one and the bytes read from it on (parsed
    later: the caller kills first). With no marker, reads until the writer
    dies. Fails if it exits unexpectedly or stalls for READ_TIMEOUT.
    """
    out = proc.stdout
    assert out is not None
    lines: list[str] = []
    buffer = b""
    seen = 0
    deadline = time.monotonic() + READ_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(out, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                pytest.fail(
                    f"The writer printed {len(lines)} lines in {READ_TIMEOUT} s, then hung"
                )
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                if marker is None:
                    return lines, buffer
                proc.wait()
                pytest.fail(
                    f"The writer died on its own (exit {proc.returncode}) after {seen} "
                    f"{marker!r} lines:\n{stderr.read_text()}"
                )
            buffer += chunk
            while b"\n" in buffer:
                line, rest = buffer.split(b"\n", 1)
                if marker is not None and line.startswith(marker.encode()):
                    seen += 1
                    if seen == count:
                        return lines, buffer
                lines.append(line.decode())
                buffer = rest


def _crash_writer(
    url: str, seed: int, cycle: int, mode: str, count: int, replay: _Replay, tmp_path: Path
) -> None:
    """Run a writer, crash it as ``mode`` says at save ``count``, feed its lines to ``replay``."""
    stderr_path = tmp_path / f"writer-{cycle}.stderr"
    if mode == "die":
        plan = f"die:{count}:{random.Random(seed * 1000 + cycle).randint(1, DIE_WITHIN)}"
    else:
        plan = f"hold:{count}" if mode == "hold" else "run"
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, str(CHILD), url, str(seed), str(cycle), plan],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        ) as proc,
    ):
        try:
            marker = {"die": None, "hold": "T"}.get(mode, mode)
            lines, unread = _read_until(proc, marker, count, stderr_path)
            if marker is not None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=READ_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, stderr_path.read_text()
        # What the writer printed before it died that we had not read yet.
        assert proc.stdout is not None
        tail = (unread + proc.stdout.read()).split(b"\n")
    # One short write to a pipe is atomic: no line is ever cut.
    assert tail[-1] == b"", f"partial line {tail[-1]!r}"
    for line in [*lines, *(raw.decode() for raw in tail[:-1])]:
        replay.line(line)


def _replay_history(events: Sequence[JobInstance.Event]) -> JobInstance:
    agg: Any = None
    for event in events:
        agg = event.mutate(agg)
    assert isinstance(agg, JobInstance)
    return agg


def _logged_uuids(store: Store) -> set[UUID]:
    """Every aggregate id with an event in the log (read from the log, not the index)."""
    recorder = store.events.recorder
    assert isinstance(recorder, ApplicationRecorder)
    ids: set[UUID] = set()
    start = 1
    while True:
        page = recorder.select_notifications(start, 1000)
        ids |= {UUID(str(n.originator_id)) for n in page}
        if len(page) < 1000:
            return ids
        start = page[-1].id + 1


def _check_consistent(store: Store) -> dict[UUID, JobInstance]:
    """Checks 3 and 4 on every instance the store holds; the rebuilt instances."""
    logged = _logged_uuids(store)
    rows = {row.instance_uuid: row for row in store.iter_instances()}
    assert set(rows) == logged, (
        f"index rows without a log: {set(rows) - logged}; logs without an index row: "
        f"{logged - set(rows)}"
    )
    rebuilt: dict[UUID, JobInstance] = {}
    for uuid in logged:
        inst = store.get_by_uuid(uuid)
        assert inst is not None
        row = rows[uuid]
        assert (row.kind, row.job, row.instance_id) == key_of(inst)
        found = (row.version, row.status, row.due_at, row.updated_at)
        want = (inst.version, inst.status, inst.d.alarm_at, inst.modified_on)
        assert found == want, f"index row of {key_of(inst)} (version, status, alarm, updated)"
        assert store.index_row(uuid) == row
        history = store.history(uuid)
        assert [e.originator_version for e in history] == list(range(1, inst.version + 1))
        assert _replay_history(history) == inst, f"{key_of(inst)}: replay != snapshot rebuild"
        rebuilt[uuid] = inst
    alarms = {(r.instance_uuid, r.due_at) for r in store.due_alarms(FAR_FUTURE, limit=10_000)}
    expected = {(u, i.d.alarm_at) for u, i in rebuilt.items() if i.d.alarm_at is not None}
    assert alarms == expected, "due_alarms is not exactly the live instances' alarms"
    assert all(rebuilt[u].live for u, _ in alarms)
    return rebuilt


def _check_acks(acks: list[str], stored: State, in_flight: dict[Key, int]) -> None:
    """Checks 1 and 2 from the acknowledgements alone: nothing acknowledged was lost."""
    last: dict[Key, Ack] = {}
    for line in acks:
        for item in json.loads(line):
            acked = cast("Ack", tuple(item))
            last[acked[:3]] = acked
    for key, (*_, version, alarm, status) in last.items():
        inst = stored[key]
        assert inst is not None, f"acknowledged {key} is gone"
        assert inst.version >= version, f"acknowledged version {version} of {key} was lost"
        if inst.version == version:
            assert ack(inst)[4:] == (alarm, status), f"acknowledged save of {key} was changed"
        else:
            # Only the save in flight can have committed unacknowledged, and only its events.
            assert inst.version == in_flight.get(key), f"{key} is ahead of any possible save"


def _audit(url: str, mode: str, replay: _Replay) -> tuple[State, str]:
    """Checks 1 to 4 after a crash; what the store holds, and whether the save in flight won."""
    acks = replay.acks
    assert replay.began - len(acks) in (0, 1)
    # The state after the acknowledged saves, and after the one in flight too.
    acked = copy.deepcopy(replay.sim.instances)
    batch = replay.sim.next_save()
    for inst in batch:
        inst.collect_events()
    in_flight = {key_of(inst): inst.version for inst in batch}

    with open_store(url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        stored = load(store)
        _check_acks(acks, stored, in_flight)
        rebuilt = _check_consistent(store)
    assert {i.id for i in stored.values() if i is not None} == set(rebuilt)
    # Exactly the acknowledged saves, plus all or nothing of the save in flight.
    for key in KEYS:
        if key not in in_flight:
            assert stored[key] == acked[key], f"{key} differs from its last acknowledged save"
    now_in = [stored[k] == replay.sim.instances[k] for k in in_flight]
    was_in = [stored[k] == acked[k] for k in in_flight]
    assert all(now_in) or all(was_in), f"the save in flight was torn: {now_in}, {was_in}"
    if all(now_in):
        # Committed, so it had begun and reached its transaction before dying.
        assert replay.began > len(acks) and len(acks) + 1 in replay.in_transaction
        assert mode != "hold", "a save killed before its commit was committed"
    return stored, "committed" if all(now_in) else "lost"


def _crash_cycles(url: str, seed: int, tmp_path: Path) -> list[str]:
    """Crash a writer CYCLES times, auditing the store after each; how each crash ended."""
    rng = random.Random(seed)
    state: State = dict.fromkeys(KEYS)
    outcomes: list[str] = []
    for cycle in range(CYCLES):
        mode = MODES[(seed + cycle) % len(MODES)]
        count = rng.randint(5, 60)
        replay = _Replay(seed, cycle, state)
        try:
            _crash_writer(url, seed, cycle, mode, count, replay, tmp_path)
            state, outcome = _audit(url, mode, replay)
        except AssertionError as exc:
            exc.add_note(
                f"Crash {cycle + 1} of {CYCLES} (mode {mode!r} at save {count}); "
                f"{len(replay.acks)} saves were acknowledged."
            )
            raise
        outcomes.append(f"{mode}:{outcome}")

    with open_store(url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        # 5: still writable, in one group commit touching every live instance.
        later = T0 + CYCLES * CYCLE_SPAN
        live = [i for i in state.values() if i is not None and i.live]
        assert live
        for n, inst in enumerate(live):
            inst.set_state({"after": "crash"}, now=later)
            inst.set_alarm(later + timedelta(minutes=n), now=later)
        store.save(*live)
        rebuilt = _check_consistent(store)
        for inst in live:
            assert rebuilt[inst.id] == inst
        # Check 4 compared two ways of rebuilding: some rebuilds started from a snapshot.
        snapshots = store._app.snapshots
        assert snapshots is not None
        assert any(
            0 < s.originator_version < inst.version
            for inst in live
            for s in snapshots.get(inst.id, desc=True, limit=1)
        )
    return outcomes


SQLITE_SEEDS = [11, 12, 13, 14]
SQLITE_NORMAL_SEEDS = [21, 22]
POSTGRES_SEEDS = [31, 32, 33]


@pytest.mark.parametrize("seed", SQLITE_SEEDS)
def test_sqlite_survives_sigkill(sqlite_url: str, seed: int, tmp_path: Path) -> None:
    _crash_cycles(sqlite_url, seed, tmp_path)


@pytest.mark.parametrize("seed", SQLITE_NORMAL_SEEDS)
def test_sqlite_synchronous_normal_survives_sigkill(
    sqlite_url: str, seed: int, tmp_path: Path
) -> None:
    """A process crash (unlike a power loss) loses no commit even without fsync per commit."""
    _crash_cycles(f"{sqlite_url}?synchronous=normal", seed, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("seed", POSTGRES_SEEDS)
def test_postgres_survives_sigkill(pg_url: str, seed: int, tmp_path: Path) -> None:
    _crash_cycles(pg_url, seed, tmp_path)
