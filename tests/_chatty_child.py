"""A child for test_children.py: prints ``lines`` lines (and as much to stderr), then
``done``, then waits to be killed."""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    for n in range(int(sys.argv[1])):
        sys.stdout.write(f"line {n} {'x' * 60}\n")
        sys.stderr.write(f"warning {n} {'y' * 60}\n")
    sys.stdout.write("done\n")
    sys.stdout.flush()
    signal.pause()
