"""What the crash tests' child processes print: one line a fact, flushed at once.

No pytest here: a child starts as fast as it can.
"""

from __future__ import annotations

import sys

import durable_jobs as dj


def say(line: str) -> None:
    """Print ``line`` and flush it, so the parent reads it before any kill."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def observe(record: dj.RecordedEvent) -> None:
    """The observer hook: one ``commit`` line per committed record."""
    say(f"commit {record.kind} {record.instance_id} {record.version} {record.name}")
