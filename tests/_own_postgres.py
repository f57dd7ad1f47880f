"""A Postgres server of the test's own, to restart and stop (never the shared one).

``initdb`` into a temporary directory and ``pg_ctl`` on a free local port, with
the binaries found under ``/usr/lib/postgresql/*/bin`` (or on ``PATH``). When
the tests run as root, the server runs as the ``postgres`` user (Postgres
refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found (install the Postgres server binaries)", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnPostgres:
    """A throwaway server: :attr:`url`, :meth:`restart`, :meth:`stop`, :meth:`start`;
    ``OwnPostgres(standby_of=primary)`` is a streaming replica of another, to
    :meth:`promote`."""

    def __init__(self, *, standby_of: OwnPostgres | None = None) -> None:
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres"}
        self.dir = Path(tempfile.mkdtemp(prefix="dj-own-pg-"))
        if self._as:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if standby_of is None:
            self._run(
                _bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        else:
            # A streaming replica: a base backup with standby.signal and the primary's
            # address written (-R), read-only until promote().
            self._run(
                _bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(standby_of.port),
                "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
            )  # fmt: skip
        self.start()

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            args, capture_output=True, text=True, check=False, cwd=self.dir, **self._as
        )
        if done.returncode:
            pytest.fail(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def _ctl(self, *args: str) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start it; returns once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c fsync=off"
        )
        self._ctl("-l", str(self.dir / "log"), "-o", options, "start")

    def promote(self) -> None:
        """Make a standby the primary; returns once it takes writes."""
        self._ctl("promote")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """Restart it (``fast`` or ``immediate``); returns once it accepts connections."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
            cwd=self.dir,
            **self._as,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
