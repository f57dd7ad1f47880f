"""How long rebuilding a long-lived instance takes, against a short one, in one run.

Prints ratios (no absolute claims): rebuilding an instance with ~100k events
with snapshots on should cost about what a 10-event instance costs; with
snapshots off it replays everything.

    .venv/bin/python benchmarks/rebuild.py [--events 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = dj.every(timedelta(minutes=1))


def fill(store: dj.Store, instance_id: str, events: int) -> None:
    inst, _ = ContinuousInstance.start(
        None, "bench", instance_id, now=T0, state={"n": 0}, first_run_at=T0
    )
    n = 0
    while inst.version < events:
        for _ in range(min(1000, (events - inst.version) // 3 + 1)):
            n += 1
            inst.complete_run(
                inst.next_ticket(fresh=False),
                Intents(state={"n": n}),
                now=T0 + timedelta(minutes=n),
                duration=0.0,
                schedule=SCHEDULE,
            )
        store.save(inst)


def best_of(store: dj.Store, instance_id: str, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        store.get("continuous", "bench", instance_id)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for interval in (100, 0):
            url = f"sqlite:///{Path(tmp) / f'rebuild-{interval}.db'}"
            with dj.open_store(url + "?synchronous=normal", snapshot_interval=interval) as store:
                fill(store, "short", 10)
                fill(store, "long", args.events)
                short, long = best_of(store, "short"), best_of(store, "long", repeat=3)
                label = f"snapshots every {interval}" if interval else "snapshots off"
                print(
                    f"{label:>22}: rebuild {args.events} events / 10 events = "
                    f"{long / short:8.1f}x   (short {short * 1e3:.2f} ms)"
                )


if __name__ == "__main__":
    main()
