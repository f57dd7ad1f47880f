"""Stored strings made safe to show: control and format characters written as escapes.

The CLI and the dashboard (:func:`printable`; the dashboard's blocks of lines
with :func:`printable_lines`) show ids, states and messages read from a store; a
character that moves the cursor or reorders the text (ESC, U+202E) must not act
on the terminal or the page. A
backslash is shown doubled, so what is shown reads back one way only: the id
``acme`` + U+200B shows as ``acme\\u200b``, the id spelling out ``acme\\u200b``
(backslash, ``u200b``) as ``acme\\\\u200b``.

Text that escapes its backslashes itself (JSON, the ``repr`` of ids quoted in
messages) goes through :func:`escape_controls` instead: doubling them again would
only make it harder to read, and it cannot be mistaken for an escape.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["escape_controls", "escape_controls_lines", "printable", "printable_lines"]

#: Characters never shown as they are: C0 and C1 controls (ESC starts terminal
#: commands, a newline would split a table row), line separators, lone
#: surrogates (from undecodable command-line bytes; they cannot be encoded), and
#: every format character (Unicode category Cf, as of Unicode 14): bidirectional
#: overrides and isolates reorder what is shown, and zero-width ones (U+200B,
#: U+FEFF, the soft hyphen U+00AD) are invisible, so ``acme`` and ``acme\u200b``
#: would show alike.
UNPRINTABLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)
#: :data:`UNPRINTABLE` and the backslash, which starts every escape shown.
_UNPRINTABLE_OR_BACKSLASH: Final = re.compile(r"\\|" + UNPRINTABLE.pattern)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
#: What :func:`printable_lines` leaves as it is: line breaks and tabs.
_LAYOUT: Final = frozenset("\n\t")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape_but_layout(match: re.Match[str]) -> str:
    ch = match.group()
    return ch if ch in _LAYOUT else _escape(match)


def printable(text: str) -> str:
    """``text`` with control, format (bidi, zero-width) and line-separator
    characters written as escapes (``\\x1b``, ``\\n``, ``\\u202e``, ``\\u200b``) and
    each backslash doubled (``\\\\``), so no text shows like an escape: what human
    output shows of data (instance ids, states, messages). ``--json`` output is
    JSON and left as it is."""
    return _UNPRINTABLE_OR_BACKSLASH.sub(_escape, text)


def printable_lines(text: str) -> str:
    """:func:`printable`, but newlines and tabs stay as they are: for text laid
    out in lines."""
    return _UNPRINTABLE_OR_BACKSLASH.sub(_escape_but_layout, text)


def escape_controls(text: str) -> str:
    """:func:`printable` without doubling backslashes: for text whose own syntax
    escapes them (JSON, a message quoting ids with ``repr``), and over text that
    already went through :func:`printable` (its escapes must not be escaped again)."""
    return UNPRINTABLE.sub(_escape, text)


def escape_controls_lines(text: str) -> str:
    """:func:`escape_controls`, but newlines and tabs stay as they are (the
    dashboard's ``<pre>`` blocks: JSON, tracebacks)."""
    return UNPRINTABLE.sub(_escape_but_layout, text)
