"""A jobs app run as a child process, whose printed lines the crash tests read.

Both of a child's pipes are drained at all times by a reader thread each, also
while the parent waits for another child. A pipe nobody reads fills up (64 KiB
on Linux) and the child then blocks in its next ``print``: on a busy machine a
two-worker test saw the first worker block that way while holding instance
locks, so that the second one, which the test was reading, waited for them and
printed nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

READ_TIMEOUT = 60.0
#: What a failure message shows of the child's stderr (its end).
STDERR_TAIL = 4000


class Child:
    """One jobs app process (``python SCRIPT ARGS...``) whose lines the parent reads."""

    def __init__(self, script: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(script.parent)},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        #: Every line the child printed on stdout so far (stripped).
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._stdout_done = False
        self._stderr: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True),
        ]
        self._pending: list[str] = []
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            with self._new:
                self._pending.append(raw.decode().strip())
                self._new.notify_all()
        with self._new:
            self._stdout_done = True
            self._new.notify_all()

    def _read_stderr(self, pipe: IO[bytes]) -> None:
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            self._stderr.append(chunk)

    def _take_pending(self) -> None:
        """Move the lines read so far into :attr:`lines` (called holding ``_new``)."""
        self.lines.extend(self._pending)
        self._pending.clear()

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-STDERR_TAIL:]

    def read_until(self, done: Callable[[list[str]], bool]) -> None:
        """Wait until ``done(lines)``; a child that hangs or exits fails the test."""
        with self._new:
            self._take_pending()
            while not done(self.lines):
                if self._stdout_done and not self._pending:
                    self.proc.wait()
                    for reader in self._readers:
                        reader.join()
                    code = self.proc.returncode
                    pytest.fail(f"the child exited early (code {code}): {self.stderr_tail()}")
                if not self._new.wait_for(
                    lambda: bool(self._pending) or self._stdout_done, timeout=READ_TIMEOUT
                ):
                    pytest.fail(
                        f"the child printed nothing for {READ_TIMEOUT} s (a hang); "
                        f"its last lines: {self.lines[-5:]}; its stderr: {self.stderr_tail()}"
                    )
                self._take_pending()

    def kill(self) -> list[str]:
        """SIGKILL it; every line it wrote before dying counts too (an acknowledgement)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for reader in self._readers:
            reader.join()
        with self._new:
            self._take_pending()
        assert self.proc.returncode == -signal.SIGKILL
        return self.lines

    def cleanup(self) -> None:
        """Whatever happened: no child left running, no pipe left open."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
