"""Read-only commands: list, status, history, state, diff, alarms, stats."""

from __future__ import annotations
