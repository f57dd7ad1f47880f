"""The writer of ``test_crash_recovery``: a deterministic workload that saves forever.

Run as ``python tests/_crash_child.py URL SEED CYCLE PLAN``: it opens the
store, reloads its ~20 instances, then drives them through a seeded workload
on a virtual clock (never the wall clock), saving each step's changes (often
several instances in one group commit) and printing an acknowledgement line
per save after ``save`` returned, until it is killed (see :func:`main`). The
test runs the same workload in memory to know exactly what the store must
hold. No pytest here: the writer starts as fast as it can.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from durable_jobs import open_store
from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance, FlushTicket
from durable_jobs._domain.instance import UNCHANGED, Intents, JobInstance
from durable_jobs._domain.schedules import every
from durable_jobs._domain.task import TaskInstance

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from durable_jobs._domain.ids import Kind
    from durable_jobs._store.base import Store

#: (kind, job, instance_id) of one instance.
Key = tuple[str, str, str]
#: What the child prints for each instance of a save: kind, job, id, version, alarm, status.
Ack = tuple[str, str, str, int, str, str]
State = dict[Key, JobInstance | None]

SNAPSHOT_INTERVAL = 5
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: Virtual time between crash cycles (far more than a cycle's workload advances it).
CYCLE_SPAN = timedelta(days=30)
WINDOW = timedelta(hours=1)

KEYS: tuple[Key, ...] = (
    *(("continuous", job, f"c{n}") for job in ("metrics", "sync.v2") for n in range(4)),
    *(("debounce", "digest", f"d{n}") for n in range(6)),
    *(("task", "order", f"t{n}") for n in range(6)),
)


@dataclass(frozen=True)
class Profile:
    """The job configuration an instance is driven with."""

    interval: timedelta
    retry: Retry
    flush_after: timedelta
    max_events: int | None


def _profile(key: Key) -> Profile:
    n = KEYS.index(key)
    return Profile(
        interval=timedelta(minutes=1 + n % 5),
        retry=Retry(1 + n % 3, delay=timedelta(seconds=10 + n)),
        flush_after=timedelta(minutes=1 + n % 3),
        max_events=(None, 2, 3)[n % 3],
    )


PROFILES = {key: _profile(key) for key in KEYS}


class Workload:
    """A deterministic stream of saves: the same seed, cycle and start state give the same saves.

    ``instances`` is the state the cycle starts from (what the store held when
    the previous writer died); it is updated in place as saves are produced.
    """

    def __init__(self, seed: int, cycle: int, instances: State) -> None:
        self.rng = random.Random(seed * 1000 + cycle)
        self.now = T0 + cycle * CYCLE_SPAN
        self.instances = instances
        self.flushes: dict[Key, FlushTicket] = {}
        self.serial = 0

    def next_save(self) -> list[JobInstance]:
        """Act on 1-4 instances; the ones with new events are saved together."""
        while True:
            rng = self.rng
            self.now += timedelta(
                seconds=rng.randint(0, 90), microseconds=rng.randint(0, 10**6 - 1)
            )
            group = rng.sample(KEYS, k=rng.choice((1, 1, 1, 2, 3, 4)))
            touched = [self._act(key) for key in group]
            batch = [inst for inst in touched if inst is not None and inst.pending_events]
            if batch:
                return batch

    # ---- one action per kind -------------------------------------------------------

    def _act(self, key: Key) -> JobInstance | None:
        self.serial += 1
        inst = self.instances[key]
        if key[0] == "continuous":
            assert inst is None or isinstance(inst, ContinuousInstance)
            inst = self._continuous(key, inst)
        elif key[0] == "debounce":
            assert inst is None or isinstance(inst, DebounceInstance)
            inst = self._debounce(key, inst)
        else:
            assert inst is None or isinstance(inst, TaskInstance)
            inst = self._task(key, inst)
        self.instances[key] = inst
        return inst

    def _state(self) -> dict[str, Any]:
        # Sometimes several pages big, so a save spans many database pages.
        pad = self.rng.choice((0, 0, 10, 300, 6000))
        return {"serial": self.serial, "pad": "x" * pad}

    def _later(self) -> datetime:
        return self.now + timedelta(seconds=self.rng.randint(1, 600))

    def _key(self) -> str | None:
        return f"k{self.serial}" if self.rng.random() < 0.5 else None

    def _continuous(self, key: Key, inst: ContinuousInstance | None) -> ContinuousInstance | None:
        rng, now, prof = self.rng, self.now, PROFILES[key]
        schedule = every(prof.interval)
        if inst is None or not inst.live:
            if inst is not None and rng.random() < 0.5:
                return inst  # stays terminated a while
            inst, _ = ContinuousInstance.start(
                inst, key[1], key[2], now=now, state=self._state(), first_run_at=self._later()
            )
            return inst
        r = rng.random()
        if r < 0.45:
            intents = Intents(
                state=self._state(),
                schedule=rng.choice((UNCHANGED, UNCHANGED, self._later(), None)),
                terminate=rng.random() < 0.05,
                terminate_reason="done",
            )
            inst.complete_run(
                inst.next_ticket(fresh=False), intents, now=now, duration=0.5, schedule=schedule
            )
        elif r < 0.85:
            ticket = inst.next_ticket(fresh=False)
            retry_at = inst.plan_retry(ticket, prof.retry, now=now)
            inst.fail_run(
                ticket,
                RuntimeError(f"boom {self.serial}"),
                now=now,
                schedule=schedule,
                retry=prof.retry,
                retry_at=retry_at,
                exhausted=rng.choice(("terminate", "pause", "continue")),
            )
        elif r < 0.93:
            inst.terminate(now=now, reason="stopped")
        else:
            inst.reschedule(self._later(), now=now)
        return inst

    def _debounce(self, key: Key, inst: DebounceInstance | None) -> DebounceInstance:
        rng, now, prof = self.rng, self.now, PROFILES[key]
        flush = self.flushes.pop(key, None)
        if inst is not None and flush is not None:
            if rng.random() < 0.6:
                inst.flush_succeeded(flush, now=now, duration=0.1, flush_after=prof.flush_after)
            else:
                retry_at = inst.plan_retry(flush.ticket, prof.retry, now=now)
                inst.flush_failed(
                    flush,
                    RuntimeError(f"flush {self.serial}"),
                    now=now,
                    retry_at=retry_at,
                    exhausted=None if retry_at else rng.choice(("pause", "terminate", "continue")),
                    flush_after=prof.flush_after,
                )
            return inst
        r = rng.random()
        if inst is None or r < 0.55:
            before = inst.batch_state if inst is not None and inst.live else None
            count = before["n"] if isinstance(before, dict) else 0
            inst, _ = DebounceInstance.add(
                inst,
                key[1],
                key[2],
                {"event": self.serial},
                now=now,
                new_state={"n": count + 1, **self._state()},
                idempotency_key=self._key(),
                window=WINDOW,
                flush_after=prof.flush_after,
                max_events=prof.max_events,
            )
        elif r < 0.85:
            ticket = inst.begin_flush(
                now=now, manual=rng.random() < 0.2, flush_after=prof.flush_after
            )
            if ticket is not None:
                self.flushes[key] = ticket
        elif r < 0.95:
            inst.clear(now=now)
        else:
            inst.terminate(now=now, reason="stopped")
        return inst

    def _task(self, key: Key, inst: TaskInstance | None) -> TaskInstance:
        rng, now = self.rng, self.now
        r = rng.random()
        if inst is None or not inst.live or r < 0.5:
            inst, _ = TaskInstance.receive(
                inst,
                key[1],
                key[2],
                {"event": self.serial},
                now=now,
                idempotency_key=self._key(),
                window=WINDOW,
            )
            alarm = inst.d.alarm_at  # a send keeps the alarm unless the handler changes it
        elif r < 0.9:
            alarm = None  # the alarm fired: it is used up
        else:
            inst.terminate(now=now, reason="stopped")
            return inst
        intents = Intents(
            state=rng.choice((UNCHANGED, self._state())),
            schedule=rng.choice((UNCHANGED, self._later(), None)),
            terminate=rng.random() < 0.05,
        )
        inst.apply_intents(intents, now=now, alarm=alarm)
        return inst


def key_of(inst: JobInstance) -> Key:
    return (inst.d.kind, inst.d.job, inst.d.instance_id)


def ack(inst: JobInstance) -> Ack:
    alarm = inst.d.alarm_at.isoformat() if inst.d.alarm_at else "-"
    return (*key_of(inst), inst.version, alarm, inst.status)


def ack_line(batch: Sequence[JobInstance]) -> str:
    return json.dumps([ack(inst) for inst in batch])


def load(store: Store) -> State:
    """Every instance of the workload as the store has it (None: never saved)."""
    return {key: store.get(cast("Kind", key[0]), key[1], key[2]) for key in KEYS}


class Tripwire:
    """A profile function that SIGKILLs this process at the ``at``-th call or return it sees."""

    def __init__(self, at: int) -> None:
        self.left = at

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        self.left -= 1
        if self.left == 0:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: Sequence[str]) -> None:
    """The writer: reload every instance, then save the workload's changes until killed.

    Around save number ``n`` it prints ``B n`` (about to save), ``T n`` (inside
    the write transaction, from the index's fault hook: the index rows are
    written, the commit is not done) and, once ``save`` returned, ``A`` and the
    save's acknowledgement. The last argument says how it ends: ``run`` (until
    the parent kills it), ``hold:N`` (at save N it stops right after printing
    ``T`` and waits to be killed) or ``die:N:K`` (from save N on it counts the
    Python and C calls and returns inside ``save`` and SIGKILLs itself at the
    K-th: a crash at a reproducible point, anywhere in the store's code).
    """
    url, seed, cycle, plan = argv[0], int(argv[1]), int(argv[2]), argv[3].split(":")
    hold = int(plan[1]) if plan[0] == "hold" else 0
    tripwire = Tripwire(int(plan[2])) if plan[0] == "die" else None
    armed_from = int(plan[1]) if tripwire else 0
    store = open_store(url, snapshot_interval=SNAPSHOT_INTERVAL)
    workload = Workload(seed, cycle, load(store))
    n = 0

    def in_transaction() -> None:
        os.write(1, b"T %d\n" % n)
        if n == hold:
            signal.pause()

    store.index.fault_hook = in_transaction
    while True:
        batch = workload.next_save()
        n += 1
        os.write(1, b"B %d\n" % n)
        if tripwire and n >= armed_from:
            sys.setprofile(tripwire)
        store.save(*batch)
        sys.setprofile(None)
        os.write(1, b"A " + ack_line(batch).encode() + b"\n")


if __name__ == "__main__":
    main(sys.argv[1:])
