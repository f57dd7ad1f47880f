"""Commands that check or move data: replay, export, import, tail, purge."""

from __future__ import annotations
