"""A jobs app run as a child process, whose printed lines the crash tests read."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

READ_TIMEOUT = 60.0


class Child:
    """One jobs app process (``python SCRIPT ARGS...``) whose lines the parent reads."""

    def __init__(self, script: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(script.parent)},
        )
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        self.lines: list[str] = []
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.stdout, selectors.EVENT_READ)

    def read_until(self, done: Callable[[list[str]], bool]) -> None:
        """Read lines until ``done(lines)``; a child that hangs or exits fails the test."""
        while not done(self.lines):
            if not self._selector.select(READ_TIMEOUT):
                pytest.fail(f"the child printed nothing for {READ_TIMEOUT} s (a hang)")
            line = self.stdout.readline()
            if not line:
                _, err = self.proc.communicate()
                pytest.fail(f"the child exited early: {err.decode()[-2000:]}")
            self.lines.append(line.decode().strip())

    def kill(self) -> list[str]:
        """SIGKILL it; every line it wrote before dying counts too (an acknowledgement)."""
        self.proc.send_signal(signal.SIGKILL)
        rest, _ = self.proc.communicate()
        self.lines.extend(x for x in rest.decode().splitlines() if x)
        self._selector.close()
        assert self.proc.returncode == -signal.SIGKILL
        return self.lines

    def cleanup(self) -> None:
        """Whatever happened: no child left running, no pipe left open."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self._selector.close()
