"""The one table of instance statuses, per kind (the domain's ``status`` values).

The client, the ``Inspector`` and the CLI read it from here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["KIND_STATUSES", "STATUSES"]

#: The statuses each kind's instances can have (``status`` of each aggregate).
KIND_STATUSES: Final[dict[str, tuple[str, ...]]] = {
    "continuous": ("running", "failed", "terminated"),
    "debounce": ("debouncing", "failed", "idle", "terminated"),
    "task": ("active", "idle", "terminated"),
}

#: Every status an instance can have, each once, ``terminated`` last.
STATUSES: Final[tuple[str, ...]] = (
    *dict.fromkeys(
        s for statuses in KIND_STATUSES.values() for s in statuses if s != "terminated"
    ),
    "terminated",
)
