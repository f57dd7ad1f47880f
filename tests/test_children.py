"""The crash tests' child harness (tests/_children.py) itself."""

from __future__ import annotations

from pathlib import Path

import _children as children

CHATTY = Path(__file__).resolve().with_name("_chatty_child.py")


def test_a_child_not_being_read_is_drained_and_never_blocks() -> None:
    """A child that prints far more than a pipe holds (64 KiB), on stdout and stderr,
    while the parent waits on another child, is not blocked in its prints.

    Before the harness drained every pipe in a thread, the second child printed its
    ``done`` only after the parent read the first one: a two-worker crash test whose
    first worker held instance locks while blocked that way hung the second one."""
    first = children.Child(CHATTY, "20000")  # about 1.4 MB on each pipe
    second = children.Child(CHATTY, "20000")
    try:
        # Read only the second: the first must reach its ``done`` all the same.
        second.read_until(lambda seen: "done" in seen)
        first.read_until(lambda seen: "done" in seen)
        assert len(first.lines) == 20001
        assert first.lines[0].startswith("line 0 ") and first.lines[-1] == "done"
        assert first.kill() == first.lines
        assert "warning 19999" in first.stderr_tail()  # read to its end by then
    finally:
        first.cleanup()
        second.cleanup()
