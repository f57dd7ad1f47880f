"""Worker processes (``_pg_worker_child.py``) driven by the Postgres process tests."""

from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().with_name("_pg_worker_child.py")
#: A worker silent for this long has hung (a failure, not a timing).
READ_TIMEOUT = 60.0


@dataclass
class Worker:
    """One worker process and the lines it printed."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    lines: list[str] = field(default_factory=list)
    partial: bytes = b""

    def starts(self, instance: str) -> list[float]:
        return [float(x.split()[2]) for x in self.lines if x.startswith(f"start {instance} ")]

    def runs(self, instance: str) -> list[tuple[float, float, str]]:
        """(start, end, outcome) of every finished run of ``instance``."""
        out: list[tuple[float, float, str]] = []
        began: float | None = None
        for line in self.lines:
            word, *rest = line.split()
            if rest and rest[0] == instance and word == "start":
                began = float(rest[1])
            elif rest and rest[0] == instance and word == "end" and began is not None:
                out.append((began, float(rest[1]), rest[2]))
                began = None
        return out

    def commits(self, after: float = 0.0) -> list[str]:
        return [x for x in self.lines if x.startswith("commit ") and float(x.split()[4]) > after]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stderr(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")


class Workers:
    """Several workers read together."""

    def __init__(self, logs: Path) -> None:
        self.all: list[Worker] = []
        self._logs = logs
        self._selector = selectors.DefaultSelector()

    def start(self, name: str, url: str, *, lease: float, slow: float, mode: str = "") -> Worker:
        """Start a worker (``mode``: see ``_pg_worker_child.py``)."""
        log = self._logs / f"{name}.log"
        with log.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD), url, str(lease), str(slow), mode],
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(CHILD.parent)},
            )
        worker = Worker(name, proc, log)
        assert proc.stdout is not None
        self._selector.register(proc.stdout, selectors.EVENT_READ, worker)
        self.all.append(worker)
        return worker

    def read_until(self, done: Callable[[], bool]) -> None:
        """Read every worker's lines until ``done()``; a silent or dead worker fails."""
        while not done():
            events = self._selector.select(READ_TIMEOUT)
            if not events:
                pytest.fail(f"no worker printed anything for {READ_TIMEOUT} s (a hang)")
            for key, _ in events:
                worker: Worker = key.data
                # Unbuffered: a line read ahead into a buffer would wait for the next select.
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self._selector.unregister(key.fileobj)
                    pytest.fail(f"worker {worker.name} exited early: {worker.stderr()[-3000:]}")
                *complete, worker.partial = (worker.partial + chunk).split(b"\n")
                worker.lines.extend(x.decode().strip() for x in complete)

    def wait_for(self, seconds: float) -> None:
        """Keep reading (so no worker blocks on a full pipe) for ``seconds``."""
        end = time.monotonic() + seconds
        self.read_until(lambda: time.monotonic() >= end)

    def stop(self, worker: Worker) -> None:
        """SIGKILL it and read what it printed before."""
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)
            worker.proc.kill()
        assert worker.proc.stdout is not None
        rest = worker.partial + worker.proc.stdout.read()
        worker.partial = b""
        worker.lines.extend(x for x in rest.decode().splitlines() if x)
        worker.proc.wait()
        with suppress(KeyError, ValueError):
            self._selector.unregister(worker.proc.stdout)

    def close(self) -> None:
        for worker in self.all:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGCONT)
                worker.proc.kill()
                worker.proc.wait()
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()
        self._selector.close()


@contextmanager
def workers(logs: Path) -> Iterator[Workers]:
    group = Workers(logs)
    try:
        yield group
    finally:
        group.close()


def assert_no_overlap(workers: list[Worker], instance: str) -> None:
    """No two runs of ``instance`` (in any worker) overlapped in time."""
    runs = sorted((r, w.name) for w in workers for r in w.runs(instance))
    for ((_, end, _), a), ((start, _, _), b) in itertools.pairwise(runs):
        assert start >= end, (
            f"a run in {b} started {end - start:.3f} s before one in {a} ended: {runs}"
        )
