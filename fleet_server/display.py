"""Text a device chose, made safe to show to an operator (terminal or browser)."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable shown as ``?`` (whitespace as a
    space): a device chooses its log lines, sources and labels, and an escape sequence
    must not drive the operator's terminal, nor a bidi override (U+202E) or an invisible
    mark make a line read differently from what it says."""
    return "".join(c if c.isprintable() else (" " if c.isspace() else "?") for c in text)
