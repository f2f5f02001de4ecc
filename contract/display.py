"""Text a device or a log's writer chose, made safe to show to a person (terminal or
browser): one rule for the fleet CLI, the console, the agent's local CLI and the model
tools, which all print such text."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable shown as ``?`` (whitespace as a
    space): a device chooses its log lines, sources and labels, and an escape sequence
    must not drive the operator's terminal, nor a bidi override (U+202E) or an invisible
    mark make a line read differently from what it says."""
    return "".join(c if c.isprintable() else (" " if c.isspace() else "?") for c in text)


def printable_lines(text: str) -> str:
    """:func:`printable` for text of several lines: its line breaks (``\\n``) kept."""
    return "\n".join(printable(part) for part in text.split("\n"))
