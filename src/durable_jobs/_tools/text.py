"""Stored strings made safe to show: control and format characters written as escapes.

The CLI (:func:`printable`) and the dashboard (:func:`printable_lines`) show ids,
states and messages read from a store; a character that moves the cursor or
reorders the text (ESC, U+202E) must not act on the terminal or the page.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable", "printable_lines"]

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
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
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
    characters written as escapes (``\\x1b``, ``\\n``, ``\\u202e``, ``\\u200b``):
    what human output shows of data (instance ids, states, messages).
    ``--json`` output is JSON and left as it is."""
    return UNPRINTABLE.sub(_escape, text)


def printable_lines(text: str) -> str:
    """:func:`printable`, but newlines and tabs stay as they are: for text laid
    out in lines (the dashboard's ``<pre>`` blocks: JSON, tracebacks)."""
    return UNPRINTABLE.sub(_escape_but_layout, text)
