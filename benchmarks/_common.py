"""Shared helpers of the benchmark scripts (not a benchmark itself).

Every script prints a header naming the machine, Python and store versions,
then one Markdown table whose ratios compare figures measured in the same
run. ``--quick`` makes every size tiny (the smoke test uses it); it checks
that the script works, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import durable_jobs as dj
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._store.base import INDEX_KWARG, Store, _index_row
from durable_jobs._store.index import IndexRow

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get(
    "DURABLE_JOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STORES = ("memory", "sqlite", "postgres")
STORE_LABELS = {
    "memory": "memory",
    "sqlite": "SQLite (synchronous=full)",
    "postgres": "Postgres",
}
#: The optional peers (the ``bench`` extra); a missing one is skipped with a note.
PEERS = {
    "apscheduler": "apscheduler",
    "pgqueuer": "pgqueuer",
    "procrastinate": "procrastinate",
}


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` and ``--stores``."""
    p = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, no figures")
    p.add_argument(
        "--stores",
        default=",".join(STORES),
        help="comma-separated subset of memory,sqlite,postgres (default: all)",
    )
    return p


def stores_arg(value: str, allowed: Sequence[str] = STORES) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in names if s not in STORES]
    if bad:
        raise SystemExit(f"unknown store(s) {bad}; use memory, sqlite, postgres")
    return [s for s in names if s in allowed]


# ---- environment ----------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def postgres_version() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]).split()[0] if row else None


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def header(title: str) -> None:
    """Print the benchmark's title and what it ran on."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pg = postgres_version() or "unreachable"
    peers = ", ".join(
        f"{name} {_version(dist) or 'not installed'}" for name, dist in PEERS.items()
    )
    print(f"## {title}")
    print()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load} | "
        f"{platform.system()} {platform.release()}"
    )
    print(
        f"Python {platform.python_version()} | durable-jobs {dj.__version__} | "
        f"eventsourcing {_version('eventsourcing')} | trio {_version('trio')} | "
        f"SQLite {sqlite3.sqlite_version} | Postgres {pg} | psycopg {_version('psycopg')}"
    )
    print(f"peers: {peers} | commit {git_commit()}")
    print()


def peer_missing(name: str) -> bool:
    """True (and a printed note) if the optional peer ``name`` is not installed."""
    if importlib.util.find_spec(name) is None:
        print(f"note: {name} is not installed (pip install -e '.[bench]'): its columns are '-'")
        return True
    return False


# ---- tables -----------------------------------------------------------------------------


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (what docs/performance.md quotes)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")
    print()
    sys.stdout.flush()


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(ours: float | None, base: float | None) -> str | None:
    if ours is None or not base:
        return None
    return f"{ours / base:.2f}x"


def ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds * 1e3:.1f} ms"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest-rank."""
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---- stores -----------------------------------------------------------------------------


@dataclass
class Target:
    """One store to measure: its label, URL, and a fresh place for it."""

    kind: str  # memory | sqlite | postgres
    url: str
    schema: str | None = None  # Postgres: the schema to drop afterwards

    @property
    def label(self) -> str:
        return STORE_LABELS[self.kind]


def pg_url(schema: str | None = None) -> str:
    base = PG_URL.split("?", 1)[0]
    return f"{base}?schema={schema}" if schema else base


def drop_schema(schema: str) -> None:
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def check_postgres() -> None:
    try:
        psycopg.connect(pg_url(), connect_timeout=5).close()
    except psycopg.Error as exc:
        raise SystemExit(
            f"Postgres at {pg_url().rpartition('@')[2]} is unreachable ({type(exc).__name__}); "
            "start it or pass --stores memory,sqlite"
        ) from None


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def target(kind: str, tmp: Path, name: str) -> Iterator[Target]:
    """A fresh, empty store of ``kind`` (a new SQLite file or Postgres schema)."""
    if kind == "memory":
        yield Target(kind, "memory://")
    elif kind == "sqlite":
        yield Target(kind, f"sqlite:///{tmp / (unique(name) + '.db')}")
    else:
        schema = unique(f"djb_{name}")
        try:
            yield Target(kind, pg_url(schema), schema)
        finally:
            drop_schema(schema)


def open_target(t: Target, **options: Any) -> Store:
    return dj.open_store(t.url, **options)


# ---- filling stores fast ----------------------------------------------------------------


def fill_pending(
    store: Store,
    kind: str,
    job: str,
    count: int,
    make: Callable[[str], Any],
    *,
    batch: int = 5000,
    prefix: str = "i",
) -> None:
    """Write ``count`` instances made by ``make(instance_id)`` (a domain instance with
    pending events), mapping one template through the store's own mapper and
    recorder: the rows are exactly what ``Store.save`` writes, made without running
    the domain ``count`` times."""
    template_id = f"{prefix}TEMPLATE"
    inst = make(template_id)
    events = inst.collect_events()
    stored = [store._app.mapper.to_stored_event(e) for e in events]
    row = _index_row(inst)
    needle = json.dumps(template_id).encode()
    for start in range(0, count, batch):
        out = []
        rows = []
        for k in range(start, min(count, start + batch)):
            iid = f"{prefix}{k}"
            uid = instance_uuid(kind, job, iid)  # type: ignore[arg-type]
            swap = json.dumps(iid).encode()
            out += [
                type(se)(
                    originator_id=uid,
                    originator_version=se.originator_version,
                    topic=se.topic,
                    state=se.state.replace(needle, swap),
                )
                for se in stored
            ]
            rows.append(
                IndexRow(
                    uid,
                    row.kind,
                    row.job,
                    iid,
                    row.status,
                    row.due_at,
                    row.version,
                    row.updated_at,
                )
            )
        store._app.recorder.insert_events(out, **{INDEX_KWARG: rows})


def continuous_due(at: datetime, instance_id: str) -> Any:
    """A new continuous instance of job "bench" (state 0) whose first run is due ``at``."""
    from durable_jobs._domain.continuous import ContinuousInstance

    return ContinuousInstance.start(None, "bench", instance_id, now=at, state=0, first_run_at=at)[
        0
    ]


# ---- child processes --------------------------------------------------------------------


def run_child(args: Sequence[str], timeout: float) -> dict[str, Any] | None:
    """Run ``python args...`` and return the JSON object on its last stdout line.

    A child that fails prints its stderr's tail and yields None (its cells show '-').
    """
    try:
        proc = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"note: {' '.join(args[:2])} took longer than {timeout:.0f} s: skipped")
        return None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"note: {' '.join(args[:2])} failed (exit {proc.returncode}): {tail}")
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def now_utc() -> datetime:
    return datetime.now(UTC)


def far_future() -> datetime:
    return now_utc() + timedelta(days=1)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
