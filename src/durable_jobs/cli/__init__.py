"""The ``durable-jobs`` command line (also ``python -m durable_jobs``).

See ``durable-jobs --help`` and docs/debugging.md.
"""

from __future__ import annotations

import sys

from durable_jobs.cli import (  # noqa: F401 - they register the commands
    _admin,
    _alarms,
    _check,
    _doctor,
    _history,
    _maintain,
    _read,
    _transfer,
    _ui,
)
from durable_jobs.cli._app import app, run

__all__ = ["app", "main", "run"]


def main() -> None:
    """Console-script entry point: run the command line and exit with its code."""
    sys.exit(run(sys.argv[1:]))
