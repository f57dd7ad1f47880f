"""An SQLite store that cannot be written: a full disk, a file size limit.

Opening an existing store whose ``-shm`` file SQLite cannot make or grow said
only "disk I/O error"; the error now says what is wrong (the disk holding the
directory is full, or the process's file size limit) and names the directory.
A first open that fails (the tables could not be written) left an empty
database file behind; it now leaves nothing it created.

The file size limit (``RLIMIT_FSIZE``, in a child process) needs no privilege;
the full disk is a small tmpfs, mounted only when the tests run as root
(skipped otherwise).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import durable_jobs as dj

#: Opens the store at argv[1] with a file size limit of 0 bytes (writes fail with EFBIG,
#: SIGXFSZ ignored); prints the error's type and message as JSON (null: it opened).
_CHILD = """
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
import durable_jobs as dj
try:
    dj.open_store(sys.argv[1]).close()
except dj.DurableJobsError as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
else:
    print("null")
"""


def _open_limited(url: str) -> dict[str, Any] | None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] | None = json.loads(done.stdout)
    return result


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_first_open_that_cannot_write_leaves_no_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    failed = _open_limited(url)
    assert failed is not None and failed["type"] == "StoreError"
    assert failed["message"].startswith(
        f"Could not open the store {url}: this process may not write files larger than 0 "
        f"bytes (its file size limit, ulimit -f)"
    )
    assert str(tmp_path) in failed["message"]
    assert list(tmp_path.iterdir()) == []  # no database file, no -wal, -shm or -journal


def test_an_existing_store_whose_shm_file_cannot_grow_says_why(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    dj.open_store(url).close()
    before = _digest(path)
    failed = _open_limited(url)
    assert failed is not None and failed["type"] == "StoreError"
    message = failed["message"]
    assert "this process may not write files larger than 0 bytes" in message, message
    assert message.endswith("SQLite said: OperationalError: disk I/O error")
    assert _digest(path) == before  # the store is untouched, and still there
    with dj.open_store(url):  # without the limit, it opens
        pass


@contextlib.contextmanager
def _tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only), filled up once the caller has written to it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        # A connection that failed as it was made (switching to WAL on the full disk) is
        # closed by the garbage collector (sqlite3 connections are in a reference cycle
        # with their statement cache): the mount is busy until then.
        gc.collect()
        # The store left no file open on it (else: "target is busy").
        unmounted = subprocess.run(["umount", str(where)], capture_output=True, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)
        assert unmounted.returncode == 0, unmounted.stderr


def _fill(where: Path) -> None:
    with contextlib.suppress(OSError), (where / "filler").open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def _refusal(url: str) -> str:
    """The StoreError's message of opening ``url`` (the error itself is not kept)."""
    with pytest.raises(dj.StoreError) as failed:
        dj.open_store(url)
    return str(failed.value)


def test_a_full_disk_is_named_and_a_new_store_leaves_nothing(tmp_path: Path) -> None:
    with _tiny_disk(tmp_path) as disk:
        old, new = disk / "old", disk / "new"
        old.mkdir()
        new.mkdir()
        dj.open_store(f"sqlite:///{old / 'jobs.db'}").close()
        _fill(disk)
        for directory in (old, new):
            url = f"sqlite:///{directory / 'jobs.db'}"
            assert _refusal(url).startswith(
                f"Could not open the store {url}: the disk holding {directory} is full; "
                "free some room there"
            )
        assert list(new.iterdir()) == []
        assert (old / "jobs.db").exists()
