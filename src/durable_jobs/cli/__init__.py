"""The ``durable-jobs`` command line (also ``python -m durable_jobs``).

See ``durable-jobs --help`` and docs/debugging.md.
"""

from __future__ import annotations

import logging
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
    if not logging.getLogger().handlers:
        # The library's loggers only have a NullHandler; the command is an application:
        # its warnings go to stderr as plain lines (as Python's last-resort handler would).
        stderr = logging.StreamHandler()
        stderr.setLevel(logging.WARNING)
        logging.getLogger("durable_jobs").addHandler(stderr)
    sys.exit(run(sys.argv[1:]))
